//! `wsgi.file_wrapper`: file responses served by the gateway, not iterated in Python.
//!
//! When the application returns `environ["wsgi.file_wrapper"](f)` and `f` is a real
//! file (it has `fileno()` and it is a regular file), the gateway duplicates the
//! descriptor and streams the file from the tokio side, from the file's current position
//! and never past the application's Content-Length. Any other file-like object is
//! iterated in blocks like a normal iterable.

use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// The object behind `environ["wsgi.file_wrapper"]`.
#[pyclass(module = "wsgi_gateway", name = "FileWrapper")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

/// A regular file ready to be streamed: a private descriptor, where to start, how far.
pub struct RealFile {
    /// A duplicate of the application's descriptor.
    pub file: File,
    /// The position the application left the file at.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub len: u64,
}

impl FileWrapper {
    /// The wrapped object as a regular file, if it is one.
    pub fn real_file(&self, py: Python<'_>) -> Option<RealFile> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
        // Python's buffered readers know their logical position better than the fd.
        let offset: Option<u64> = filelike
            .call_method0("tell")
            .ok()
            .and_then(|t| t.extract().ok());
        // SAFETY: the descriptor is open for as long as the Python file object lives, and
        // we hold a reference to it; we only borrow it to duplicate it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned: OwnedFd = borrowed.try_clone_to_owned().ok()?;
        // SAFETY: `owned` is a fresh descriptor that we own.
        let file = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(owned)) };
        let metadata = file.metadata().ok()?;
        if !metadata.is_file() {
            return None;
        }
        let offset = offset.unwrap_or(0).min(metadata.len());
        Some(RealFile {
            file,
            offset,
            len: metadata.len() - offset,
        })
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        let data = data.cast_into::<PyBytes>()?;
        if data.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data)
    }

    /// Close the wrapped object, if it can be closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}
