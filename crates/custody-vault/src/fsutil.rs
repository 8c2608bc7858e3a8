//! Durable writes of the key file: mode 0600, temporary file, `fsync`, link or rename,
//! directory `fsync`. A crash leaves either the old file or the complete new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

/// The directory a path lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vault-keys".to_owned());
    parent_dir(path).join(format!(".{name}.{:016x}.tmp", OsRng.next_u64()))
}

fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where a write failed.
pub(crate) enum WriteFailure {
    /// The target exists and `replace` was false.
    Exists,
    /// An I/O error on `path`.
    Io(PathBuf, io::Error),
}

/// Writes `bytes` to `path` with mode 0600. With `replace == false` an existing file is
/// never touched (a hard link refuses to replace, where a rename would overwrite); with
/// `replace == true` the file is atomically replaced by a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), WriteFailure> {
    let dir = parent_dir(path);
    let temp = temp_path(path);
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e: io::Error| WriteFailure::Io(p, e)
    };
    let result = (|| {
        let mut f = create_private(&temp).map_err(io(&temp))?;
        f.write_all(bytes).map_err(io(&temp))?;
        f.sync_all().map_err(io(&temp))?;
        drop(f);
        if replace {
            fs::rename(&temp, path).map_err(io(path))?;
        } else {
            match fs::hard_link(&temp, path) {
                Ok(()) => fs::remove_file(&temp).map_err(io(&temp))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(WriteFailure::Exists)
                }
                Err(e) => return Err(WriteFailure::Io(path.to_owned(), e)),
            }
        }
        sync_dir(dir).map_err(io(dir))
    })();
    if result.is_err() {
        // Best effort: a leftover temporary file is hidden and never read.
        let _ = fs::remove_file(&temp);
    }
    result
}
