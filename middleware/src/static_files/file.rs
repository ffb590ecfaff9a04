//! What a lookup finds: a small file loaded into memory with everything needed to
//! answer without the disk (its bytes, headers made once, precompressed siblings, room
//! for compressed-once variants), or a large file opened for streaming.
//!
//! [`find`] runs on the blocking pool. Given the cached version of the path, it only
//! resolves and stats (revalidation); it reads the file again when the fingerprint
//! differs, or when the cached version was *racy* (modified within a second of being
//! read, when a second write could leave size and mtime unchanged).

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::HeaderValue;

use super::resolve::{self, Fingerprint, Resolution, Sibling, SIBLINGS};
use super::response::Representation;
use crate::compression::{compressible_media_type, negotiate, Encoding};

/// How long a cached lookup is trusted before the file is looked at again: the bound
/// on serving a changed, replaced or deleted file. A request that finds it older waits
/// for the lookup.
pub(crate) const REVALIDATE_AFTER_MS: u64 = 1000;

/// From this age on, a hit still serves the cached lookup but starts one revalidation
/// in the background, so under steady traffic no request waits for the disk and the
/// requests in flight when an entry expires do not all look it up at once.
pub(crate) const REFRESH_AFTER_MS: u64 = REVALIDATE_AFTER_MS / 2;

/// The headers of one representation, made once.
#[derive(Debug)]
pub(crate) struct Meta {
    len: u64,
    content_length: HeaderValue,
    etag: HeaderValue,
    last_modified: HeaderValue,
    modified_secs: u64,
}

impl Meta {
    /// Headers for `len` bytes of the file version `fingerprint`; `encoding` makes the
    /// ETag distinct for an encoded variant.
    fn new(len: u64, fingerprint: &Fingerprint, encoding: Option<Encoding>) -> Self {
        let tag = match encoding {
            None => format!("\"{:x}-{:x}\"", len, fingerprint.mtime_nanos()),
            Some(encoding) => format!(
                "\"{:x}-{:x}-{}\"",
                len,
                fingerprint.mtime_nanos(),
                encoding.token()
            ),
        };
        let modified =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(fingerprint.mtime_secs());
        Self {
            len,
            content_length: HeaderValue::from(len),
            etag: HeaderValue::try_from(tag).expect("hex digits and a token"),
            last_modified: HeaderValue::try_from(httpdate::fmt_http_date(modified))
                .expect("an HTTP date"),
            modified_secs: fingerprint.mtime_secs(),
        }
    }

    /// This representation's headers, with the file's media type and `encoding`.
    pub(crate) fn representation<'a>(
        &'a self,
        content_type: &'a HeaderValue,
        encoding: Option<Encoding>,
    ) -> Representation<'a> {
        Representation {
            len: self.len,
            content_length: &self.content_length,
            etag: &self.etag,
            last_modified: &self.last_modified,
            modified_secs: self.modified_secs,
            content_type,
            encoding,
        }
    }
}

/// A representation held in memory.
#[derive(Debug)]
pub(crate) struct Variant {
    /// Its headers.
    pub meta: Meta,
    /// Its bytes.
    pub body: Bytes,
}

/// A small file in memory.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// The file as it is.
    pub identity: Variant,
    /// Its media type, from the extension.
    pub content_type: HeaderValue,
    /// Whether its media type is worth compressing.
    pub compressible: bool,
    /// `.br`, `.zst`, `.gz` files next to it, by [`resolve::slot`].
    pub siblings: [Option<Variant>; 3],
    /// Variants compressed once by this layer, by [`resolve::slot`].
    pub made: [OnceLock<Variant>; 3],
    /// Whether a compressed-once variant was started, by [`resolve::slot`].
    pub making: [AtomicBool; 3],
    fingerprint: Fingerprint,
    sibling_fingerprints: [Option<Fingerprint>; 3],
    /// Modified within a second of being read: read again at the next revalidation.
    racy: bool,
    /// When the lookup was last confirmed, in ms of the layer's clock.
    validated_ms: AtomicU64,
    /// A background revalidation is under way.
    pub refreshing: AtomicBool,
}

impl CachedFile {
    /// Milliseconds since the lookup was last confirmed.
    pub(crate) fn age(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.validated_ms.load(Ordering::Relaxed))
    }

    /// Bytes held: the file, its siblings and the variants made so far.
    pub(crate) fn weight(&self) -> u64 {
        let variants = self.siblings.iter().flatten();
        let made = self.made.iter().filter_map(OnceLock::get);
        self.identity.body.len() as u64
            + variants
                .chain(made)
                .map(|v| v.body.len() as u64)
                .sum::<u64>()
    }

    /// Store a compressed-once variant; returns its size if it was not there yet.
    pub(crate) fn set_made(&self, encoding: Encoding, body: Vec<u8>) -> Option<u64> {
        let len = body.len() as u64;
        let variant = Variant {
            meta: Meta::new(len, &self.fingerprint, Some(encoding)),
            body: Bytes::from(body),
        };
        self.made[resolve::slot(encoding)]
            .set(variant)
            .ok()
            .map(|()| len)
    }

    /// Whether a fresh resolution shows the same versions of the file and siblings.
    fn unchanged(&self, fingerprint: &Fingerprint, siblings: &[Option<Sibling>; 3]) -> bool {
        !self.racy
            && self.fingerprint == *fingerprint
            && self
                .sibling_fingerprints
                .iter()
                .zip(siblings)
                .all(|(cached, now)| *cached == now.as_ref().map(|s| s.fingerprint))
    }
}

/// A file too large for the cache, opened.
#[derive(Debug)]
pub(crate) struct LargeFile {
    /// The open file (the chosen sibling when encoded).
    pub file: File,
    /// Its headers.
    pub meta: Meta,
    /// Its media type.
    pub content_type: HeaderValue,
    /// The coding of the chosen sibling.
    pub encoding: Option<Encoding>,
    /// Whether precompressed siblings exist (the response varies).
    pub vary: bool,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Found {
    /// A small file, in memory (the cached one if it did not change).
    Small(Arc<CachedFile>),
    /// A large file, to stream.
    Large(LargeFile),
    /// A directory with an index, asked for without its trailing slash.
    Directory,
    /// Nothing there.
    Missing,
    /// Outside the folder or unreadable.
    Forbidden,
    /// The file could not be read.
    Failed(std::io::Error),
}

/// What a lookup needs to know about the layer.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The served folder as configured; resolved again at each lookup, so a symlink
    /// swapped to a new release (`current -> releases/42`) is followed within the
    /// cache's one-second freshness bound, as nginx follows it.
    pub root: std::path::PathBuf,
    /// Whether to look for `.br`/`.zst`/`.gz` siblings.
    pub precompressed: bool,
    /// Files (and siblings) up to this size are held in memory.
    pub max_file: u64,
}

/// Look `relative` up (blocking). `cached` is the version in the cache, if any:
/// returned as it is, marked validated at `now_ms`, when the file did not change.
/// `accept` (the request's `Accept-Encoding`) picks the sibling of a large file.
pub(crate) fn find(
    settings: &Settings,
    relative: &str,
    cached: Option<&Arc<CachedFile>>,
    accept: Option<&HeaderValue>,
    now_ms: u64,
) -> Found {
    let root = match std::fs::canonicalize(&settings.root) {
        Ok(root) => root,
        // The folder is gone (mid-deploy): like a missing file.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(error) => return Found::Failed(error),
    };
    let (path, fingerprint, siblings) =
        match resolve::resolve(&root, relative, settings.precompressed) {
            Resolution::File {
                path,
                fingerprint,
                siblings,
            } => (path, fingerprint, siblings),
            Resolution::Directory => return Found::Directory,
            Resolution::Missing => return Found::Missing,
            Resolution::Forbidden => return Found::Forbidden,
        };
    if let Some(cached) = cached.filter(|c| c.unchanged(&fingerprint, &siblings)) {
        cached.validated_ms.store(now_ms, Ordering::Relaxed);
        return Found::Small(cached.clone());
    }
    let content_type = content_type(&path);
    let small = fingerprint.len <= settings.max_file
        && siblings
            .iter()
            .flatten()
            .all(|s| s.fingerprint.len <= settings.max_file);
    let loaded = if small {
        load(
            &path,
            &siblings,
            content_type.clone(),
            settings.max_file,
            now_ms,
        )
        .map(|file| Found::Small(Arc::new(file)))
    } else {
        Err(std::io::ErrorKind::FileTooLarge.into())
    };
    // Large, or grew past the limit since it was stat'ed: stream it.
    let result = match loaded {
        Err(error) if error.kind() == std::io::ErrorKind::FileTooLarge => {
            open_large(&path, &siblings, content_type, accept).map(Found::Large)
        }
        other => other,
    };
    result.unwrap_or_else(|error| match error.kind() {
        std::io::ErrorKind::NotFound => Found::Missing,
        std::io::ErrorKind::PermissionDenied => Found::Forbidden,
        _ => Found::Failed(error),
    })
}

fn content_type(path: &std::path::Path) -> HeaderValue {
    let essence = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    HeaderValue::from_static(essence)
}

/// Read a file whole (`FileTooLarge` if it is over `max` bytes), taking its
/// fingerprint from the open file.
fn read_whole(path: &std::path::Path, max: u64) -> std::io::Result<(Bytes, Fingerprint, bool)> {
    let (file, fingerprint) = resolve::open(path)?;
    if fingerprint.len > max {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    let body = resolve::read_at(&file, 0, fingerprint.len as usize)?;
    // Shorter than its size: it changed while we read it.
    let racy = body.len() as u64 != fingerprint.len || fingerprint.is_racy(SystemTime::now());
    Ok((body, fingerprint, racy))
}

fn load(
    path: &std::path::Path,
    siblings: &[Option<Sibling>; 3],
    content_type: HeaderValue,
    max: u64,
    now_ms: u64,
) -> std::io::Result<CachedFile> {
    let (body, fingerprint, mut racy) = read_whole(path, max)?;
    let mut loaded: [Option<Variant>; 3] = [None, None, None];
    let mut sibling_fingerprints = [None; 3];
    for (at, sibling) in siblings.iter().enumerate() {
        let Some(sibling) = sibling else { continue };
        let (body, fingerprint, sibling_racy) = match read_whole(&sibling.path, max) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::FileTooLarge => return Err(error),
            Err(_) => {
                // Gone since it was seen: the next revalidation notices.
                racy = true;
                continue;
            }
        };
        racy |= sibling_racy;
        loaded[at] = Some(Variant {
            meta: Meta::new(body.len() as u64, &fingerprint, Some(SIBLINGS[at])),
            body,
        });
        sibling_fingerprints[at] = Some(fingerprint);
    }
    Ok(CachedFile {
        identity: Variant {
            meta: Meta::new(body.len() as u64, &fingerprint, None),
            body,
        },
        compressible: content_type.to_str().is_ok_and(compressible_media_type),
        content_type,
        siblings: loaded,
        made: Default::default(),
        making: Default::default(),
        fingerprint,
        sibling_fingerprints,
        racy,
        validated_ms: AtomicU64::new(now_ms),
        refreshing: AtomicBool::new(false),
    })
}

fn open_large(
    path: &std::path::Path,
    siblings: &[Option<Sibling>; 3],
    content_type: HeaderValue,
    accept: Option<&HeaderValue>,
) -> std::io::Result<LargeFile> {
    let available: Vec<Encoding> = SIBLINGS
        .iter()
        .zip(siblings)
        .filter(|(_, sibling)| sibling.is_some())
        .map(|(encoding, _)| *encoding)
        .collect();
    let chosen = accept
        .and_then(|accept| accept.to_str().ok())
        .and_then(|accept| negotiate(accept, &available));
    let chosen_path = match chosen {
        Some(encoding) => {
            &siblings[resolve::slot(encoding)]
                .as_ref()
                .expect("an available sibling")
                .path
        }
        None => path,
    };
    let (file, fingerprint) = resolve::open(chosen_path)?;
    Ok(LargeFile {
        file,
        meta: Meta::new(fingerprint.len, &fingerprint, chosen),
        content_type,
        encoding: chosen,
        vary: !available.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(name: &str) -> Settings {
        let root = std::env::temp_dir().join(format!("static-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Settings {
            root: std::fs::canonicalize(root).unwrap(),
            precompressed: true,
            max_file: 1024,
        }
    }

    fn set_mtime(path: &std::path::Path, time: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    fn small(found: Found) -> Arc<CachedFile> {
        match found {
            Found::Small(file) => file,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn revalidation_keeps_unchanged_files_and_reloads_changed_ones() {
        let settings = settings("revalidate");
        let path = settings.root.join("a.css");
        std::fs::write(&path, "aaaa").unwrap();
        let fresh = small(find(&settings, "/a.css", None, None, 0));
        assert!(fresh.racy, "just written");
        let again = small(find(&settings, "/a.css", Some(&fresh), None, 1));
        assert!(!Arc::ptr_eq(&fresh, &again), "a racy file is read again");

        let past = SystemTime::now() - Duration::from_secs(60);
        set_mtime(&path, past);
        let settled = small(find(&settings, "/a.css", Some(&again), None, 2));
        assert!(!settled.racy);
        let kept = small(find(&settings, "/a.css", Some(&settled), None, 3000));
        assert!(Arc::ptr_eq(&settled, &kept), "unchanged: the same entry");
        assert_eq!(kept.age(3000), 0, "marked validated");

        // Same size, mtime put back: the ctime still tells.
        std::fs::write(&path, "bbbb").unwrap();
        set_mtime(&path, past);
        let changed = small(find(&settings, "/a.css", Some(&kept), None, 4000));
        assert!(!Arc::ptr_eq(&kept, &changed));
        assert_eq!(&changed.identity.body[..], b"bbbb");

        // A new sibling is a change too.
        let settled = small(find(&settings, "/a.css", Some(&changed), None, 4500));
        assert!(!settled.racy && settled.siblings.iter().all(Option::is_none));
        let sibling = settings.root.join("a.css.gz");
        std::fs::write(&sibling, "gz").unwrap();
        set_mtime(&sibling, past);
        let with_sibling = small(find(&settings, "/a.css", Some(&settled), None, 5000));
        assert!(!Arc::ptr_eq(&settled, &with_sibling));
        assert!(with_sibling.siblings[resolve::slot(Encoding::Gzip)].is_some());

        // Over the limit: streamed, not loaded.
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        match find(&settings, "/a.css", Some(&with_sibling), None, 6000) {
            Found::Large(large) => assert_eq!(large.meta.len, 2048),
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            find(&settings, "/a.css", None, None, 7000),
            Found::Missing
        ));
    }
}
