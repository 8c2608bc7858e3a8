//! Durable creation of private files: mode 0600, temporary file, `fsync`, hard link (never
//! replaces an existing file), directory `fsync`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Creates `path` holding `bytes` with `mode`; fails with `AlreadyExists` rather than
/// replace a file. Returns the path the error concerns with the error.
pub(crate) fn create_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (PathBuf, io::Error)> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let temp = dir.join(format!(".{name}.{:016x}.tmp", OsRng.next_u64()));
    let at = |p: &Path| {
        let p = p.to_owned();
        move |e: io::Error| (p, e)
    };
    let result = (|| {
        let mut f = open_new(&temp, mode).map_err(at(&temp))?;
        f.write_all(bytes).map_err(at(&temp))?;
        f.sync_all().map_err(at(&temp))?;
        drop(f);
        fs::hard_link(&temp, path).map_err(at(path))?;
        fs::remove_file(&temp).map_err(at(&temp))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
    })();
    if result.is_err() {
        // Best effort: a leftover temporary file is hidden and never read.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `dir` (and parents) with mode 0700 where missing.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The permission bits of a file (0 where there are none to read).
pub(crate) fn mode_of(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0
    }
}
