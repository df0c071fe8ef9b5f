//! Resumable downloads: `blobs/sha256-<hex>-partial` files that survive a crash and are continued
//! later, never visible as blobs until their size and digest check out.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use corral_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::blobs::Committed;
use crate::refs::PinGuard;
use crate::{fsutil, Result, Store, StoreError};

/// A download in progress toward a known digest and size.
pub struct PartialBlob {
    store: Store,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
    digest: Digest,
    size: u64,
}

/// Suffix of partial downloads (Ollama uses the same one, so its leftovers are recognised too).
const PARTIAL: &str = "-partial";

impl Store {
    /// Opens (or continues) the partial download of `digest`, which the registry says is `size`
    /// bytes. Bytes already downloaded are hashed again, so resuming costs a read, not a fetch.
    /// A partial file longer than `size` is discarded.
    pub fn partial_blob(&self, digest: &Digest, size: u64) -> Result<PartialBlob> {
        let path = self.blobs.join(format!("{}{PARTIAL}", digest.file_name()));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let mut len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        let mut hasher = Sha256::new();
        if len > size {
            file.set_len(0).map_err(|e| StoreError::io(&path, e))?;
            len = 0;
        } else if len > 0 {
            let mut buf = vec![0u8; 1 << 20];
            let mut reader = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
            let mut left = len;
            while left > 0 {
                let n = reader.read(&mut buf[..left.min(1 << 20) as usize]).map_err(|e| StoreError::io(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
        }
        fsutil::touch(&path);
        let _ = file.flush();
        Ok(PartialBlob { store: self.clone(), path, file, hasher, len, digest: *digest, size })
    }
}

impl PartialBlob {
    /// Bytes already present (where a ranged request should start).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops what was downloaded and starts over (the server ignored a range request).
    pub fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| StoreError::io(&self.path, e))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Appends bytes. More than the announced size is an error: the registry lied about it.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.len + buf.len() as u64 > self.size {
            let got = self.len + buf.len() as u64;
            self.discard();
            return Err(StoreError::TooLarge { what: format!("blob {}", self.digest), size: got, limit: self.size });
        }
        self.file.write_all(buf).map_err(|e| StoreError::io(&self.path, e))?;
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Removes the partial file (after a verification failure).
    fn discard(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Checks size and digest and makes the blob visible. On a mismatch the partial file is
    /// deleted (it can never become right) and the store is unchanged.
    pub fn finish(self) -> Result<Committed> {
        if self.len != self.size {
            return Err(StoreError::SizeMismatch { digest: self.digest, expected: self.size, actual: self.len });
        }
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != self.digest {
            self.discard();
            return Err(StoreError::DigestMismatch { expected: self.digest, actual });
        }
        self.file.sync_all().map_err(|e| StoreError::io(&self.path, e))?;
        let target = self.store.blob_path(&self.digest);
        let mut locked = self.store.pins.lock();
        let existed = target.is_file();
        if existed {
            self.discard();
        } else {
            fs::rename(&self.path, &target).map_err(|e| StoreError::io(&target, e))?;
            fsutil::sync_dir(&self.store.blobs)?;
        }
        let pin = PinGuard::new(&self.store.pins, &mut locked, vec![self.digest]);
        Ok(Committed { digest: self.digest, size: self.size, existed, pin })
    }
}
