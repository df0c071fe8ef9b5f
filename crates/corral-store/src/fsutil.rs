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

/// The prefix of this process's temp files: [`TEMP_PREFIX`], the writer's pid, a dash. A leftover
/// whose writer is gone (killed with -9 mid-write) can then be removed at the next start at once,
/// rather than after prune's grace period.
pub(crate) fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// Whether a temp file named `name` is a leftover of a process that no longer runs on this
/// machine. `false` for our own, for a live writer, and when the name carries no pid (an older
/// layout): those are left to the grace period.
pub(crate) fn writer_gone(name: &str) -> bool {
    let Some(pid) = name.strip_prefix(TEMP_PREFIX).and_then(|rest| rest.split_once('-')).map(|(pid, _)| pid) else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) if pid != std::process::id() && pid > 0 => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Atomically replaces `path` with `bytes`.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("store paths always have a parent");
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut tmp =
        tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir).map_err(|e| StoreError::io(dir, e))?;
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
