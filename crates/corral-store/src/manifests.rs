//! Manifests: case-insensitive lookup, atomic writes, listing, copy and delete.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use corral_types::{Digest, Manifest, ModelName};

use crate::fsutil::{self, read_bounded};
use crate::refs::Locked;
use crate::{Result, Store, StoreError};

/// Largest manifest file read. Tensor-layer models have manifests of a few hundred KB.
const MAX_MANIFEST: u64 = 32 << 20;

/// A manifest as found on disk.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The name, in the casing stored on disk.
    pub name: ModelName,
    pub manifest: Manifest,
    /// sha256 of the manifest file: the model's ID.
    pub digest: Digest,
    pub modified: SystemTime,
    /// The file's bytes, as read (a copy or a push sends exactly these).
    pub bytes: Vec<u8>,
}

/// The entry of `dir` equal to `want`, preferring an exact match over a case-insensitive one.
fn find_entry(dir: &Path, want: &str) -> Option<String> {
    if dir.join(want).exists() {
        return Some(want.to_string());
    }
    let entries = fs::read_dir(dir).ok()?;
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).find(|n| n.eq_ignore_ascii_case(want))
}

impl Store {
    /// The stored casing of `name`, if a manifest with that name exists (compared
    /// case-insensitively, as Ollama does).
    pub fn resolve(&self, name: &ModelName) -> Option<ModelName> {
        let mut dir = self.manifests.clone();
        let mut parts = Vec::with_capacity(4);
        for part in name.path_parts() {
            let found = find_entry(&dir, part)?;
            dir.push(&found);
            parts.push(found);
        }
        dir.is_file().then(|| name.with_parts([&parts[0], &parts[1], &parts[2], &parts[3]]))
    }

    /// The name a new manifest for `name` should be written under: each existing directory level
    /// keeps its stored casing, new levels take the user's.
    fn resolve_for_write(&self, name: &ModelName) -> ModelName {
        let mut dir = self.manifests.clone();
        let mut parts: Vec<String> = Vec::with_capacity(4);
        let mut existing = true;
        for part in name.path_parts() {
            let chosen = if existing { find_entry(&dir, part) } else { None };
            existing = chosen.is_some();
            let chosen = chosen.unwrap_or_else(|| part.to_string());
            dir.push(&chosen);
            parts.push(chosen);
        }
        name.with_parts([&parts[0], &parts[1], &parts[2], &parts[3]])
    }

    fn read_manifest_at(&self, name: ModelName) -> Result<StoredManifest> {
        let path = self.manifest_path(&name);
        let bytes = read_bounded(&path, MAX_MANIFEST, "manifest")?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::CorruptManifest { path: path.clone(), reason: e.to_string() })?;
        let modified = fs::metadata(&path).and_then(|m| m.modified()).map_err(|e| StoreError::io(&path, e))?;
        Ok(StoredManifest { name, manifest, digest: Digest::of(&bytes), modified, bytes })
    }

    /// Reads the manifest of `name` (case-insensitively).
    pub fn read_manifest(&self, name: &ModelName) -> Result<StoredManifest> {
        let stored = self.resolve(name).ok_or_else(|| StoreError::ModelNotFound(name.display_shortest()))?;
        self.read_manifest_at(stored)
    }

    /// Every model in the store, most recently modified first. Unreadable manifests and paths
    /// that are not valid names are skipped with a warning, as Ollama does.
    pub fn list(&self) -> Result<Vec<StoredManifest>> {
        let mut out = Vec::new();
        for name in self.manifest_names()? {
            match self.read_manifest_at(name) {
                Ok(m) => out.push(m),
                Err(e) => tracing::warn!("skipping manifest: {e}"),
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.modified));
        Ok(out)
    }

    /// Names of every manifest file under `manifests/<host>/<ns>/<model>/<tag>`.
    pub(crate) fn manifest_names(&self) -> Result<Vec<ModelName>> {
        fn entries(dir: &Path, want_dir: bool) -> Result<Vec<String>> {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StoreError::io(dir, e)),
            };
            Ok(rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| if want_dir { t.is_dir() } else { t.is_file() }))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect())
        }
        let mut names = Vec::new();
        let root = &self.manifests;
        for host in entries(root, true)? {
            for ns in entries(&root.join(&host), true)? {
                for model in entries(&root.join(&host).join(&ns), true)? {
                    for tag in entries(&root.join(&host).join(&ns).join(&model), false)? {
                        match ModelName::from_parts(&host, &ns, &model, &tag) {
                            Some(n) => names.push(n),
                            None if tag.starts_with(fsutil::TEMP_PREFIX) => {}
                            None => tracing::warn!("ignoring manifest with an invalid name: {host}/{ns}/{model}/{tag}"),
                        }
                    }
                }
            }
        }
        Ok(names)
    }

    /// Writes `manifest` under `name` after checking that every blob it lists exists. Returns the
    /// manifest it replaced, if any. The caller's pins must cover blobs not yet referenced.
    pub fn write_manifest(&self, name: &ModelName, manifest: &Manifest) -> Result<Option<StoredManifest>> {
        let locked = self.pins.lock();
        self.write_manifest_locked(&locked, name, manifest.to_bytes(), manifest)
    }

    /// Writes manifest bytes exactly as received (a pull keeps the registry's bytes, so the
    /// model's ID matches the registry's manifest digest). Same checks as [`Store::write_manifest`].
    pub fn write_raw_manifest(&self, name: &ModelName, bytes: Vec<u8>) -> Result<Option<StoredManifest>> {
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::CorruptManifest { path: self.manifest_path(name), reason: e.to_string() })?;
        let locked = self.pins.lock();
        self.write_manifest_locked(&locked, name, bytes, &manifest)
    }

    fn write_manifest_locked(
        &self,
        _locked: &Locked<'_>,
        name: &ModelName,
        bytes: Vec<u8>,
        manifest: &Manifest,
    ) -> Result<Option<StoredManifest>> {
        if let Some(missing) = manifest.blobs().find(|l| !self.has_blob(&l.digest)) {
            return Err(StoreError::BlobNotFound(missing.digest));
        }
        let target = self.resolve_for_write(name);
        let old = self.resolve(&target).and_then(|n| self.read_manifest_at(n).ok());
        fsutil::atomic_write(&self.manifest_path(&target), &bytes)?;
        Ok(old)
    }

    /// Copies a model: the manifest file, byte for byte (the blobs are shared).
    pub fn copy(&self, src: &ModelName, dst: &ModelName) -> Result<()> {
        let locked = self.pins.lock();
        let source = self.read_manifest(src)?;
        self.write_manifest_locked(&locked, dst, source.bytes, &source.manifest)?;
        Ok(())
    }

    /// Deletes a model's manifest, then those of its blobs no other manifest (or pin) references.
    pub fn delete(&self, name: &ModelName) -> Result<()> {
        let mut locked = self.pins.lock();
        let stored = self.read_manifest(name)?;
        let path = self.manifest_path(&stored.name);
        fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        self.remove_empty_dirs(path.parent());
        let candidates: Vec<Digest> = stored.manifest.blobs().map(|l| l.digest).collect();
        self.remove_unreferenced(&mut locked, &candidates)?;
        Ok(())
    }

    /// After a model was overwritten (create, pull): removes the old manifest's blobs that nothing references any
    /// more, unless pruning is off.
    pub fn release_old(&self, old: &StoredManifest) -> Result<()> {
        if self.options.noprune {
            return Ok(());
        }
        let mut locked = self.pins.lock();
        let candidates: Vec<Digest> = old.manifest.blobs().map(|l| l.digest).collect();
        self.remove_unreferenced(&mut locked, &candidates)
    }

    /// Every digest referenced by a readable manifest, plus the pinned and leased ones.
    pub(crate) fn referenced(&self, locked: &mut Locked<'_>) -> Result<HashSet<Digest>> {
        let mut refs: HashSet<Digest> = locked.protected().collect();
        for name in self.manifest_names()? {
            match self.read_manifest_at(name) {
                Ok(m) => refs.extend(m.manifest.blobs().map(|l| l.digest)),
                // An unreadable manifest might reference anything: refuse to guess.
                Err(e) => return Err(e),
            }
        }
        Ok(refs)
    }

    fn remove_unreferenced(&self, locked: &mut Locked<'_>, candidates: &[Digest]) -> Result<()> {
        let refs = match self.referenced(locked) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("not removing unused blobs because a manifest could not be read: {e}");
                return Ok(());
            }
        };
        for d in candidates.iter().filter(|d| !refs.contains(d)) {
            let path = self.blob_path(d);
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!("removed unused blob {d}"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// Removes now-empty directories from `dir` up to (not including) `manifests/`.
    pub(crate) fn remove_empty_dirs(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if d == self.manifests || !d.starts_with(&self.manifests) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}
