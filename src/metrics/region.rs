//! Shared memory for one worker's metrics: a memfd the supervisor creates and the
//! worker inherits, mapped by both.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use super::layout::WorkerMetrics;
use super::MetricsError;

/// A mapping of one [`WorkerMetrics`].
pub struct Region {
    memory: NonNull<WorkerMetrics>,
    /// The memfd behind a shared region (None for a private one).
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping holds only atomics and lives as long as the Region.
unsafe impl Send for Region {}
// SAFETY: as above; all access goes through atomics.
unsafe impl Sync for Region {}

impl Region {
    /// A new zeroed region backed by a memfd (closed on exec unless handed to a worker).
    pub fn shared() -> Result<Self, MetricsError> {
        // SAFETY: memfd_create with a static, NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"wsgi-gateway-metrics".as_ptr(), libc::MFD_CLOEXEC) };
        if fd == -1 {
            return Err(MetricsError::Region(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(WorkerMetrics::SIZE).expect("the region fits off_t");
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } == -1 {
            return Err(MetricsError::Region(std::io::Error::last_os_error()));
        }
        let region = Self::map(Some(fd))?;
        region.metrics().initialise();
        Ok(region)
    }

    /// The region a supervisor handed over as descriptor `fd`.
    ///
    /// # Safety
    /// `fd` must be an open memfd of at least [`WorkerMetrics::SIZE`] bytes that this
    /// process owns.
    pub unsafe fn inherited(fd: RawFd) -> Result<Self, MetricsError> {
        // SAFETY: guaranteed by the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Not for the application's subprocesses.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat fills the buffer for an open descriptor.
        if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } == -1 {
            return Err(MetricsError::Region(std::io::Error::last_os_error()));
        }
        // SAFETY: fstat succeeded.
        let size = unsafe { stat.assume_init() }.st_size;
        if usize::try_from(size).ok() != Some(WorkerMetrics::SIZE) {
            return Err(MetricsError::Layout);
        }
        let region = Self::map(Some(fd))?;
        if !region.metrics().is_compatible() {
            return Err(MetricsError::Layout);
        }
        Ok(region)
    }

    /// A region private to this process (no supervisor to read it).
    pub fn private() -> Result<Self, MetricsError> {
        let region = Self::map(None)?;
        region.metrics().initialise();
        Ok(region)
    }

    fn map(fd: Option<OwnedFd>) -> Result<Self, MetricsError> {
        let (flags, raw) = match &fd {
            Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping of the right size; the kernel zero-fills new pages.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                WorkerMetrics::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            return Err(MetricsError::Region(std::io::Error::last_os_error()));
        }
        let memory = NonNull::new(memory.cast::<WorkerMetrics>()).ok_or(MetricsError::Layout)?;
        Ok(Self { memory, fd })
    }

    /// The metrics in this region.
    pub fn metrics(&self) -> &WorkerMetrics {
        // SAFETY: the mapping is page-aligned, sized for WorkerMetrics, zero-initialised
        // (a valid value of all-atomic fields) and lives until drop.
        unsafe { self.memory.as_ref() }
    }

    /// The memfd to hand to a worker.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `map`; no reference outlives self.
        unsafe { libc::munmap(self.memory.as_ptr().cast(), WorkerMetrics::SIZE) };
    }
}
