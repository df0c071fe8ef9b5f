//! Writing and reading blobs.

use std::fs;
use std::io::{self, Read, Write};

use corral_types::{Digest, Layer};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::fsutil;
use crate::refs::PinGuard;
use crate::{Result, Store, StoreError};

/// Streams a new blob to a temp file in `blobs/`, hashing as it goes. Nothing is visible under a
/// blob name until [`BlobWriter::commit`] has checked the digest; dropping the writer deletes the
/// temp file.
pub struct BlobWriter {
    store: Store,
    file: NamedTempFile,
    hasher: Sha256,
    size: u64,
}

/// A blob that is in the store, pinned until the guard is dropped.
#[derive(Debug)]
pub struct Committed {
    pub digest: Digest,
    pub size: u64,
    /// The blob was already there (this write was a duplicate).
    pub existed: bool,
    pub pin: PinGuard,
}

impl BlobWriter {
    /// Appends bytes.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.file.write_all(buf).map_err(|e| StoreError::io(self.file.path(), e))?;
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies the digest (against `expected`, if given), makes the blob durable and visible, and
    /// pins it. On a mismatch the temp file is removed and the store is unchanged.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Committed> {
        let BlobWriter { store, file, hasher, size } = self;
        let digest = Digest::from_hasher(hasher);
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(StoreError::DigestMismatch { expected: *expected, actual: digest });
            }
        }
        file.as_file().sync_all().map_err(|e| StoreError::io(file.path(), e))?;
        let path = store.blob_path(&digest);
        let mut locked = store.pins.lock();
        let existed = path.is_file();
        if existed {
            fsutil::touch(&path);
            // `file` is dropped (deleted) at the end of this scope.
        } else {
            file.persist(&path).map_err(|e| StoreError::io(&path, e.error))?;
            fsutil::sync_dir(&store.blobs)?;
        }
        let pin = PinGuard::new(&store.pins, &mut locked, vec![digest]);
        Ok(Committed { digest, size, existed, pin })
    }
}

/// A temp file in `blobs/` for another process to fill (llama.cpp's quantizer writes its output
/// there): nothing is visible under a blob name until [`ExternalBlob::commit`] has hashed what was
/// written. Dropping it deletes the file; a server killed meanwhile leaves a temp file that the
/// next start prunes (its name carries this process's pid).
pub struct ExternalBlob {
    store: Store,
    file: NamedTempFile,
}

impl ExternalBlob {
    /// Where the other process writes.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// Hashes the file as it now is and commits it as a blob.
    pub fn commit(self) -> Result<Committed> {
        let ExternalBlob { store, file } = self;
        let mut reader = fs::File::open(file.path()).map_err(|e| StoreError::io(file.path(), e))?;
        let (mut hasher, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(file.path(), e)),
            }
        }
        BlobWriter { store, file, hasher, size }.commit(None)
    }
}

/// Longest text layer (template, system, license, params, messages) read into memory.
pub(crate) const MAX_TEXT_LAYER: u64 = 64 << 20;

impl Store {
    /// Starts writing a new blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let file = tempfile::Builder::new()
            .prefix(&fsutil::temp_prefix())
            .tempfile_in(&self.blobs)
            .map_err(|e| StoreError::io(&self.blobs, e))?;
        Ok(BlobWriter { store: self.clone(), file, hasher: Sha256::new(), size: 0 })
    }

    /// A temp file for another process to write a blob into.
    pub fn external_blob(&self) -> Result<ExternalBlob> {
        let w = self.blob_writer()?;
        Ok(ExternalBlob { store: w.store, file: w.file })
    }

    /// Copies `reader` into a new blob, verifying it against `expected` if given.
    pub fn import_blob<R: Read>(&self, mut reader: R, expected: Option<&Digest>) -> Result<Committed> {
        let mut w = self.blob_writer()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io(w.file.path(), e)),
            };
            w.write(&buf[..n])?;
        }
        w.commit(expected)
    }

    /// Stores `bytes` as a blob.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Committed> {
        let mut w = self.blob_writer()?;
        w.write(bytes)?;
        w.commit(None)
    }

    /// Pins existing blobs so they survive until the guard drops; fails if one is missing.
    pub fn pin_existing(&self, digests: &[Digest]) -> Result<PinGuard> {
        let mut locked = self.pins.lock();
        if let Some(missing) = digests.iter().find(|d| !self.has_blob(d)) {
            return Err(StoreError::BlobNotFound(*missing));
        }
        Ok(PinGuard::new(&self.pins, &mut locked, digests.to_vec()))
    }

    /// Keeps `digest` from being garbage-collected for `ttl`, even though no manifest references
    /// it yet (see [`crate::Pins`]). Returns whether the blob exists; the check and the lease are
    /// one step under the store lock, so a blob reported present cannot vanish before its create.
    pub fn lease(&self, digest: &Digest, ttl: std::time::Duration) -> bool {
        let mut locked = self.pins.lock();
        let exists = self.has_blob(digest);
        if exists {
            crate::refs::add_lease(&mut locked, *digest, ttl);
        }
        exists
    }

    /// Reads a small layer's bytes, refusing ones over [`MAX_TEXT_LAYER`].
    pub fn read_blob(&self, layer: &Layer) -> Result<Vec<u8>> {
        let path = self.blob_path(&layer.digest);
        if !path.is_file() {
            return Err(StoreError::BlobNotFound(layer.digest));
        }
        fsutil::read_bounded(&path, MAX_TEXT_LAYER, &format!("layer {}", layer.digest))
    }

    /// Size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(*digest)),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}
