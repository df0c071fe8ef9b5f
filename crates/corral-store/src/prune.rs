//! Start-up cleanup: legacy blob names, unreferenced blobs, crash leftovers, empty directories.

use std::fs;
use std::time::{Duration, SystemTime};

use corral_types::Digest;

use crate::fsutil::{self, TEMP_PREFIX};
use crate::{Result, Store, StoreError};

/// What [`Store::prune`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs no manifest referenced.
    pub removed_blobs: usize,
    /// Temp files and other non-blob files left by crashes.
    pub removed_other: usize,
    /// `sha256:<hex>` files renamed to `sha256-<hex>` (an old Ollama layout).
    pub renamed: usize,
    /// Pruning of blobs was skipped because some manifest could not be read.
    pub skipped_unreadable: bool,
}

impl Store {
    /// Removes blobs no manifest references and files that are not blobs, leaving anything
    /// modified within `grace` alone: another process (an Ollama or a second Corral on the same
    /// directory) may be about to reference it. Does nothing to blobs if any manifest is
    /// unreadable, since that manifest might reference them.
    pub fn prune(&self, grace: Duration) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut locked = self.pins.lock();
        let rd = fs::read_dir(&self.blobs).map_err(|e| StoreError::io(&self.blobs, e))?;
        let mut files = Vec::new();
        for entry in rd.filter_map(|e| e.ok()) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if let Some(hex) = name.strip_prefix("sha256:") {
                if let Ok(d) = Digest::parse(&format!("sha256:{hex}")) {
                    let target = self.blob_path(&d);
                    if !target.exists() && fs::rename(&path, &target).is_ok() {
                        report.renamed += 1;
                        files.push((d.file_name(), target));
                        continue;
                    }
                }
            }
            files.push((name, path));
        }

        let refs = match self.referenced(&mut locked) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("not pruning blobs: {e}");
                report.skipped_unreadable = true;
                None
            }
        };
        let now = SystemTime::now();
        for (name, path) in files {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            // A temp file whose writer died is a leftover whatever its age.
            if age < grace && !fsutil::writer_gone(&name) {
                continue;
            }
            let removable = match Digest::parse(&name) {
                Ok(d) if name == d.file_name() => {
                    let unused = refs.as_ref().is_some_and(|r| !r.contains(&d));
                    if unused {
                        report.removed_blobs += 1;
                    }
                    unused
                }
                _ => {
                    // Not a blob name in canonical form: a crash leftover or a stray file.
                    let ours = name.starts_with(TEMP_PREFIX);
                    if ours || refs.is_some() {
                        report.removed_other += 1;
                        true
                    } else {
                        false
                    }
                }
            };
            if removable {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!("could not remove {}: {e}", path.display());
                }
            }
        }
        drop(locked);
        report.removed_other += self.sweep_manifests(grace);
        Ok(report)
    }

    /// Removes the manifests' crash leftovers (temp files of a write cut short: their writer is
    /// gone, or they are older than `grace`) and empty directories. Returns the files removed.
    fn sweep_manifests(&self, grace: Duration) -> usize {
        fn walk(dir: &std::path::Path, depth: usize, grace: Duration, removed: &mut usize) {
            if depth > 3 {
                return;
            }
            let Ok(rd) = fs::read_dir(dir) else { return };
            for entry in rd.filter_map(|e| e.ok()) {
                let p = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, depth + 1, grace, removed);
                    let _ = fs::remove_dir(&p); // only succeeds when empty
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let old = || {
                    entry
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|a| a >= grace)
                };
                if name.starts_with(TEMP_PREFIX) && (fsutil::writer_gone(&name) || old()) && fs::remove_file(&p).is_ok()
                {
                    *removed += 1;
                }
            }
        }
        let mut removed = 0;
        walk(&self.manifests, 0, grace, &mut removed);
        removed
    }
}
