//! From a request path below the mount to a regular file inside the folder: blocking
//! file-system calls, run on the blocking pool.
//!
//! Containment: the path is percent-decoded into bytes (file names need not be UTF-8),
//! `.`/`..` segments, NUL and `\` are refused (the canonical-path layer already refuses
//! dot segments, but a Python layer above a bridged static layer can rewrite
//! `PATH_INFO`), and the result of `realpath(3)` must lie inside the canonical folder,
//! so no symlink leads out of it. Index files and precompressed siblings that are
//! symlinks are checked the same way.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::compression::Encoding;

/// The index file served for a directory.
pub(crate) const INDEX: &str = "index.html";

/// Precompressed siblings looked for, in the order of [`Encoding`] slots.
pub(crate) const SIBLINGS: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

/// The slot of `encoding` in per-encoding arrays.
pub(crate) fn slot(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Brotli => 0,
        Encoding::Zstd => 1,
        Encoding::Gzip => 2,
    }
}

/// The file-name suffix of a precompressed sibling.
fn suffix(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Brotli => ".br",
        Encoding::Zstd => ".zst",
        Encoding::Gzip => ".gz",
    }
}

/// What identifies a version of a file: when any of it differs, the file changed (in
/// place: size, mtime, ctime; replaced by a rename: device and inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    /// Size in bytes.
    pub len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    pub(crate) fn of(metadata: &Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Modification time in nanoseconds since the epoch (0 before it).
    pub(crate) fn mtime_nanos(&self) -> u128 {
        let (secs, nanos) = self.mtime;
        if secs < 0 {
            return 0;
        }
        secs as u128 * 1_000_000_000 + nanos as u128
    }

    /// Modification time in whole seconds since the epoch, as HTTP dates carry it.
    pub(crate) fn mtime_secs(&self) -> u64 {
        u64::try_from(self.mtime.0).unwrap_or(0)
    }

    /// Whether the file was modified less than a second before `now_secs` (or in the
    /// future): another write within the file system's timestamp granularity would
    /// leave the fingerprint unchanged, so content read now must be read again later.
    pub(crate) fn is_racy(&self, now: std::time::SystemTime) -> bool {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.mtime_nanos() + 1_000_000_000 > now
    }
}

/// A precompressed sibling (`app.css.br`) found next to a file.
#[derive(Clone, Debug)]
pub(crate) struct Sibling {
    /// Its real path (inside the folder).
    pub path: PathBuf,
    /// Its fingerprint, from `stat(2)`.
    pub fingerprint: Fingerprint,
}

/// A request path resolved inside the folder.
// One value per lookup, matched right away: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Resolution {
    /// A regular file (or a directory's index file).
    File {
        /// Its real path.
        path: PathBuf,
        /// Its fingerprint, from `stat(2)`.
        fingerprint: Fingerprint,
        /// Its precompressed siblings, by [`slot`].
        siblings: [Option<Sibling>; 3],
    },
    /// A directory with an index, asked for without the trailing slash.
    Directory,
    /// Nothing servable there.
    Missing,
    /// Outside the folder (`..`, a symlink out of it) or not readable.
    Forbidden,
}

/// The file the request path `relative` (canonical, percent-encoded, below the mount:
/// `""`, `"/"`, `"/css/app.css"`) names inside `root` (canonical), with the siblings
/// looked for when `precompressed`.
pub(crate) fn resolve(root: &Path, relative: &str, precompressed: bool) -> Resolution {
    let decoded: Vec<u8> = percent_encoding::percent_decode(relative.as_bytes()).collect();
    let mut candidate = root.to_path_buf();
    for segment in decoded.split(|&byte| byte == b'/') {
        match segment {
            b"" => continue,
            b"." | b".." => return Resolution::Forbidden,
            _ if segment.contains(&0) || segment.contains(&b'\\') => return Resolution::Forbidden,
            _ => candidate.push(OsStr::from_bytes(segment)),
        }
    }
    let real = match std::fs::canonicalize(&candidate) {
        Ok(real) => real,
        Err(error) => return missing_or_forbidden(&error),
    };
    if !real.starts_with(root) {
        return Resolution::Forbidden;
    }
    let metadata = match std::fs::metadata(&real) {
        Ok(metadata) => metadata,
        Err(error) => return missing_or_forbidden(&error),
    };
    let (path, metadata) = if metadata.is_dir() {
        let Some((index, metadata)) = contained_file(root, &real.join(INDEX)) else {
            return Resolution::Missing;
        };
        if !relative.ends_with('/') {
            return Resolution::Directory;
        }
        (index, metadata)
    } else if metadata.is_file() {
        (real, metadata)
    } else {
        return Resolution::Missing;
    };
    let mut siblings = [None, None, None];
    if precompressed {
        for encoding in SIBLINGS {
            siblings[slot(encoding)] =
                contained_file(root, &sibling_path(&path, encoding)).map(|(path, metadata)| {
                    Sibling {
                        path,
                        fingerprint: Fingerprint::of(&metadata),
                    }
                });
        }
    }
    Resolution::File {
        fingerprint: Fingerprint::of(&metadata),
        path,
        siblings,
    }
}

/// The path of a precompressed sibling of `path`.
fn sibling_path(path: &Path, encoding: Encoding) -> PathBuf {
    let mut name = path.to_path_buf().into_os_string();
    name.push(suffix(encoding));
    PathBuf::from(name)
}

/// `path` (in a directory inside `root`) if it is a regular file inside `root`: a
/// symlink is followed only when its target stays inside.
fn contained_file(root: &Path, path: &Path) -> Option<(PathBuf, Metadata)> {
    let link = std::fs::symlink_metadata(path).ok()?;
    let path = if link.file_type().is_symlink() {
        let real = std::fs::canonicalize(path).ok()?;
        if !real.starts_with(root) {
            return None;
        }
        real
    } else {
        path.to_path_buf()
    };
    let metadata = if link.file_type().is_symlink() {
        std::fs::metadata(&path).ok()?
    } else {
        link
    };
    metadata.is_file().then_some((path, metadata))
}

fn missing_or_forbidden(error: &io::Error) -> Resolution {
    match error.kind() {
        io::ErrorKind::PermissionDenied => Resolution::Forbidden,
        _ => Resolution::Missing,
    }
}

/// Open `path` and take its fingerprint from the open file, so that the fingerprint
/// belongs to the bytes read from it.
pub(crate) fn open(path: &Path) -> io::Result<(File, Fingerprint)> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file"));
    }
    Ok((file, Fingerprint::of(&metadata)))
}

/// Read `len` bytes at `offset` with `pread(2)` into a new buffer (fewer if the file
/// ends first). The buffer is not zeroed first: for the 256 KiB chunks of a large file
/// that would cost a third of the copy itself.
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buffer: Vec<u8> = Vec::with_capacity(len);
    while buffer.len() < len {
        let filled = buffer.len();
        let at = libc::off_t::try_from(offset + filled as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: the destination is the vector's spare capacity, `len - filled` bytes
        // starting at `filled`, and pread writes at most that many bytes there; the
        // file descriptor stays open for the call because `file` is borrowed.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buffer.as_mut_ptr().add(filled).cast(),
                len - filled,
                at,
            )
        };
        if read < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if read == 0 {
            break;
        }
        // SAFETY: pread initialised `read` more bytes after the first `filled`.
        unsafe { buffer.set_len(filled + read as usize) };
    }
    Ok(Bytes::from(buffer))
}

/// What [`read_cached_at`] found.
#[derive(Debug)]
pub(crate) enum CachedRead {
    /// Bytes that were in the page cache (fewer than asked if only some were; none at
    /// the end of the file).
    Read(Bytes),
    /// None of the asked bytes is in the page cache: reading them would wait for the disk.
    WouldBlock,
    /// The file system cannot tell (`RWF_NOWAIT` unsupported): ask the blocking pool.
    Unsupported,
}

/// Read up to `len` bytes at `offset`, but only what the page cache already holds:
/// `preadv2(2)` with `RWF_NOWAIT` never waits for the disk, so it can run on the I/O
/// thread, the way nginx reads a file in its event loop, without a blocking-pool round
/// trip per chunk; a cold file still goes to the pool.
pub(crate) fn read_cached_at(file: &File, offset: u64, len: usize) -> io::Result<CachedRead> {
    let at = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let mut buffer: Vec<u8> = Vec::with_capacity(len);
    let slice = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: len,
    };
    loop {
        // SAFETY: the one iovec is the vector's spare capacity, `len` bytes, and
        // preadv2 writes at most that many bytes there; the descriptor stays open for
        // the call because `file` is borrowed.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &slice, 1, at, libc::RWF_NOWAIT) };
        if read >= 0 {
            // SAFETY: preadv2 initialised the first `read` bytes.
            unsafe { buffer.set_len(read as usize) };
            return Ok(CachedRead::Read(Bytes::from(buffer)));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(CachedRead::WouldBlock),
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                return Ok(CachedRead::Unsupported)
            }
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("static-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::canonicalize(dir).unwrap()
    }

    #[test]
    fn files_index_and_siblings_resolve_inside_the_folder() {
        let root = scratch("inside");
        let site = root.join("site");
        std::fs::create_dir_all(site.join("docs")).unwrap();
        std::fs::write(site.join("caf\u{e9}.css"), "x").unwrap();
        std::fs::write(site.join("docs/index.html"), "<h1>").unwrap();
        std::fs::write(site.join("docs/index.html.gz"), "gz").unwrap();
        std::fs::write(root.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), site.join("leak")).unwrap();
        std::os::unix::fs::symlink(root.join("secret"), site.join("docs/index.html.br")).unwrap();

        let file = resolve(&site, "/caf%C3%A9.css", true);
        assert!(matches!(file, Resolution::File { ref path, .. } if path.ends_with("café.css")));
        match resolve(&site, "/docs/", true) {
            Resolution::File { path, siblings, .. } => {
                assert!(path.ends_with("docs/index.html"));
                assert!(siblings[slot(Encoding::Gzip)].is_some());
                assert!(
                    siblings[slot(Encoding::Brotli)].is_none(),
                    "sibling leads out"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(&site, "/docs", true),
            Resolution::Directory
        ));
        assert!(matches!(
            resolve(&site, "/leak", true),
            Resolution::Forbidden
        ));
        assert!(matches!(
            resolve(&site, "/../secret", true),
            Resolution::Forbidden
        ));
        assert!(matches!(
            resolve(&site, "/%2E%2E/secret", true),
            Resolution::Forbidden
        ));
        assert!(matches!(
            resolve(&site, "/..%5Csecret", true),
            Resolution::Forbidden
        ));
        assert!(matches!(
            resolve(&site, "/nothing", true),
            Resolution::Missing
        ));
        assert!(matches!(
            resolve(&site, "/caf%C3%A9.css/x", true),
            Resolution::Missing
        ));
        assert!(
            matches!(resolve(&site, "", true), Resolution::Missing),
            "no index"
        );
    }

    #[test]
    fn preads_stop_at_the_end_of_the_file() {
        let root = scratch("pread");
        std::fs::write(root.join("f"), b"0123456789").unwrap();
        let (file, fingerprint) = open(&root.join("f")).unwrap();
        assert_eq!(fingerprint.len, 10);
        assert_eq!(&read_at(&file, 2, 3).unwrap()[..], b"234");
        assert_eq!(&read_at(&file, 8, 100).unwrap()[..], b"89");
        assert!(read_at(&file, 20, 5).unwrap().is_empty());
    }

    /// Whether the page holding byte `offset` of `file` is in the page cache
    /// (`mincore(2)` on a mapping that touches nothing).
    fn is_resident(file: &File, offset: usize) -> bool {
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a read-only shared mapping of an open file, never dereferenced, and
        // unmapped before returning; mincore writes one byte per page into `pages`,
        // which has room for every page of the mapping.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED, "mmap");
            let mut pages = vec![0u8; len.div_ceil(page)];
            let status = libc::mincore(addr, len, pages.as_mut_ptr());
            libc::munmap(addr, len);
            assert_eq!(status, 0, "mincore");
            pages[offset / page] & 1 == 1
        }
    }

    #[test]
    fn cached_reads_return_page_cache_bytes_and_never_wait_for_the_disk() {
        let root = scratch("nowait");
        let content: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
        std::fs::write(root.join("f"), &content).unwrap();
        let (file, _) = open(&root.join("f")).unwrap();
        // Just written: in the page cache.
        match read_cached_at(&file, 1000, 5000).unwrap() {
            CachedRead::Read(bytes) => assert_eq!(&bytes[..], &content[1000..6000]),
            CachedRead::Unsupported => return, // this file system cannot say
            CachedRead::WouldBlock => panic!("a file just written is in the page cache"),
        }
        match read_cached_at(&file, 2_000_000, 10).unwrap() {
            CachedRead::Read(bytes) => assert!(bytes.is_empty(), "the end of the file"),
            other => panic!("past the end: {other:?}"),
        }
        // Written back and dropped from the page cache: reading it would wait.
        file.sync_all().unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if is_resident(&file, 500_000) {
            // tmpfs keeps files in memory: there is no disk to wait for.
            eprintln!("the page stayed in memory (tmpfs?): no eviction to observe");
        } else {
            match read_cached_at(&file, 500_000, 4096).unwrap() {
                CachedRead::WouldBlock => {}
                CachedRead::Read(bytes) => {
                    panic!("{} bytes read from an evicted file", bytes.len())
                }
                CachedRead::Unsupported => panic!("supported a moment ago"),
            }
        }
        assert_eq!(
            &read_at(&file, 500_000, 4096).unwrap()[..],
            &content[500_000..504_096]
        );
    }
}
