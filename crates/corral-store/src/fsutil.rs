//! Crash-safe file primitives: write to a temp file beside the target, fsync, rename, fsync the
//! directory. A reader sees the old file or the new one, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::{Result, StoreError};

/// Prefix of every temp file the store creates; such files are never valid blob or tag names, so
/// listings skip them and prune can recognise leftovers from a crash.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Atomically replaces `path` with `bytes`.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("store paths always have a parent");
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir).map_err(|e| StoreError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| StoreError::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| StoreError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| StoreError::io(path, e.error))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}

/// Sets a file's mtime to now: a reused blob counts as fresh for the prune grace period.
pub(crate) fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Reads a whole file, refusing files over `limit` bytes before reading them.
pub(crate) fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| StoreError::io(path, e))?;
    if meta.len() > limit {
        return Err(StoreError::TooLarge { what: what.to_string(), size: meta.len(), limit });
    }
    fs::read(path).map_err(|e| StoreError::io(path, e))
}
