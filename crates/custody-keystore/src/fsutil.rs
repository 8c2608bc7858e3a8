//! Atomic, durable file writes for secret files.
//!
//! The bytes go to a hidden temporary file created with mode 0600, which is synced, then
//! given its final name without ever replacing an existing file, and the directory is
//! synced. A crash leaves either no file or the complete file under the real name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use thiserror::Error;

/// Why a secret file could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteFileError {
    /// A file with that name is already there; nothing was written.
    #[error("{path} already exists; refusing to overwrite it")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteFileError + '_ {
    move |source| WriteFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Syncs a directory so that a new name or rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new file readable and writable by the owner only (0600 on Unix).
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A hidden temporary name next to `target` in `dir`.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{:016x}.tmp", OsRng.next_u64()))
}

/// Writes `bytes` to `dir/name` with mode 0600, atomically and durably; never replaces an
/// existing file.
///
/// # Errors
/// [`WriteFileError::Exists`] if the name is taken (nothing is written), or the I/O error
/// with its path.
pub fn write_new_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, WriteFileError> {
    let target = dir.join(name);
    if target.exists() {
        return Err(WriteFileError::Exists { path: target });
    }
    let temp = temp_path(dir, name);
    let result = (|| {
        let mut f = create_private(&temp).map_err(io_err(&temp))?;
        f.write_all(bytes).map_err(io_err(&temp))?;
        f.sync_all().map_err(io_err(&temp))?;
        drop(f);
        // A hard link refuses to replace an existing file, atomically, where a rename
        // would silently overwrite.
        match fs::hard_link(&temp, &target) {
            Ok(()) => fs::remove_file(&temp).map_err(io_err(&temp))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(WriteFileError::Exists {
                    path: target.clone(),
                })
            }
            Err(_) => {
                if target.exists() {
                    return Err(WriteFileError::Exists {
                        path: target.clone(),
                    });
                }
                fs::rename(&temp, &target).map_err(io_err(&target))?;
            }
        }
        sync_dir(dir).map_err(io_err(dir))
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is hidden and never read.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| target)
}
