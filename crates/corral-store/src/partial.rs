//! Resumable downloads: `blobs/sha256-<hex>-partial` files fetched as independent byte ranges
//! (parts), so several connections can fill one blob, and never visible as blobs until their size
//! and digest check out.
//!
//! Beside the data file, `sha256-<hex>-partial.parts` records how many bytes of each part are
//! written: a header (blob size, part size) and one little-endian `u64` per part. A part's count is
//! updated only after its bytes are written, so after a crash every counted byte is on disk and a
//! resumed download fetches only the rest. A data file without a matching state file (an Ollama
//! leftover, say) is started over.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use corral_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::blobs::Committed;
use crate::refs::PinGuard;
use crate::{fsutil, Result, Store, StoreError};

/// Suffix of partial downloads (Ollama uses the same one, so its leftovers are recognised too).
const PARTIAL: &str = "-partial";
/// Suffix of the state file beside a partial download.
const STATE: &str = "-partial.parts";
/// State file header: magic, blob size, part size.
const MAGIC: u64 = u64::from_le_bytes(*b"corral01");
const HEADER: u64 = 24;

/// A download in progress toward a known digest and size.
pub struct PartialBlob {
    store: Store,
    path: PathBuf,
    state_path: PathBuf,
    files: Arc<Files>,
    parts: Vec<Part>,
    digest: Digest,
    size: u64,
}

/// The data and state files, shared by the writers of all parts.
struct Files {
    /// The size of the whole blob.
    size: u64,
    data: File,
    state: File,
    path: PathBuf,
}

/// One byte range of the blob, `start..end`, of which `done` bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub start: u64,
    pub end: u64,
    pub done: u64,
}

impl Part {
    /// The next byte to fetch.
    pub fn next(&self) -> u64 {
        self.start + self.done
    }

    pub fn is_complete(&self) -> bool {
        self.start + self.done == self.end
    }
}

fn split(size: u64, part_size: u64) -> Vec<Part> {
    let part_size = part_size.max(1);
    (0..size.div_ceil(part_size))
        .map(|i| Part { index: i as usize, start: i * part_size, end: ((i + 1) * part_size).min(size), done: 0 })
        .collect()
}

impl Store {
    /// Opens (or continues) the partial download of `digest`, which the registry says is `size`
    /// bytes, split into parts of `part_size` bytes. A download already under way keeps the part
    /// size it started with.
    pub fn partial_blob(&self, digest: &Digest, size: u64, part_size: u64) -> Result<PartialBlob> {
        let path = self.blobs.join(format!("{}{PARTIAL}", digest.file_name()));
        let state_path = self.blobs.join(format!("{}{STATE}", digest.file_name()));
        let open = |p: &PathBuf| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(p)
                .map_err(|e| StoreError::io(p, e))
        };
        let data = open(&path)?;
        let state = open(&state_path)?;
        let parts = match read_state(&state, size) {
            Some(parts) if data.metadata().is_ok_and(|m| m.len() == size) => parts,
            _ => {
                let parts = split(size, part_size);
                data.set_len(0).and_then(|()| data.set_len(size)).map_err(|e| StoreError::io(&path, e))?;
                let mut header = Vec::with_capacity(HEADER as usize + 8 * parts.len());
                for v in [MAGIC, size, part_size.max(1)].into_iter().chain(parts.iter().map(|_| 0)) {
                    header.extend_from_slice(&v.to_le_bytes());
                }
                state.set_len(0).map_err(|e| StoreError::io(&state_path, e))?;
                state.write_all_at(&header, 0).map_err(|e| StoreError::io(&state_path, e))?;
                parts
            }
        };
        fsutil::touch(&path);
        fsutil::touch(&state_path);
        Ok(PartialBlob {
            store: self.clone(),
            files: Arc::new(Files { size, data, state, path: path.clone() }),
            path,
            state_path,
            parts,
            digest: *digest,
            size,
        })
    }
}

/// The parts recorded in a state file, if it describes a download of `size` bytes and its counts
/// are possible.
fn read_state(state: &File, size: u64) -> Option<Vec<Part>> {
    let mut bytes = Vec::new();
    (&*state).read_to_end(&mut bytes).ok()?;
    let word = |i: usize| bytes.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if word(0)? != MAGIC || word(1)? != size {
        return None;
    }
    let mut parts = split(size, word(2)?);
    if bytes.len() != HEADER as usize + 8 * parts.len() {
        return None;
    }
    for (i, p) in parts.iter_mut().enumerate() {
        p.done = word(3 + i)?;
        if p.done > p.end - p.start {
            return None;
        }
    }
    Some(parts)
}

impl PartialBlob {
    /// All parts, with what is already written of each.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Bytes already written.
    pub fn done(&self) -> u64 {
        self.parts.iter().map(|p| p.done).sum()
    }

    /// A writer filling `part` from where it stands. Writers of different parts may run at once.
    pub fn writer(&self, part: &Part) -> PartWriter {
        PartWriter { files: self.files.clone(), part: *part }
    }

    /// Records what the writers of this download reached (call once they are done).
    pub fn update(&mut self, part: &Part) {
        if let Some(p) = self.parts.get_mut(part.index) {
            p.done = part.done;
        }
    }

    /// Removes the partial download: after a verification failure, or when the registry
    /// contradicts the manifest so that nothing downloaded can be trusted.
    pub fn discard(&self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.state_path);
    }

    /// Checks size and digest and makes the blob visible. On a digest mismatch the partial
    /// download is deleted (it can never become right) and the store is unchanged.
    pub fn finish(self) -> Result<Committed> {
        let done = self.done();
        if self.parts.iter().any(|p| !p.is_complete()) {
            return Err(StoreError::SizeMismatch { digest: self.digest, expected: self.size, actual: done });
        }
        let mut hasher = Sha256::new();
        let mut reader = &self.files.data;
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| StoreError::io(&self.path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
        }
        if read != self.size {
            self.discard();
            return Err(StoreError::SizeMismatch { digest: self.digest, expected: self.size, actual: read });
        }
        let actual = Digest::from_hasher(hasher);
        if actual != self.digest {
            self.discard();
            return Err(StoreError::DigestMismatch { expected: self.digest, actual });
        }
        self.files.data.sync_all().map_err(|e| StoreError::io(&self.path, e))?;
        let target = self.store.blob_path(&self.digest);
        let mut locked = self.store.pins.lock();
        let existed = target.is_file();
        if existed {
            let _ = fs::remove_file(&self.path);
        } else {
            fs::rename(&self.path, &target).map_err(|e| StoreError::io(&target, e))?;
            fsutil::sync_dir(&self.store.blobs)?;
        }
        let _ = fs::remove_file(&self.state_path);
        let pin = PinGuard::new(&self.store.pins, &mut locked, vec![self.digest]);
        Ok(Committed { digest: self.digest, size: self.size, existed, pin })
    }
}

/// Writes one part of a partial download, in order from where it stands. (A clone writes the
/// same part: only one of them may be used.)
#[derive(Clone)]
pub struct PartWriter {
    files: Arc<Files>,
    part: Part,
}

impl PartWriter {
    /// The part as written so far.
    pub fn part(&self) -> Part {
        self.part
    }

    /// The size of the whole blob.
    pub fn blob_size(&self) -> u64 {
        self.files.size
    }

    /// Appends bytes to the part. More than the part holds is an error: the registry sent more
    /// than the blob's announced size or than the range asked for.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        let at = self.part.next();
        if at + buf.len() as u64 > self.part.end {
            return Err(StoreError::TooLarge {
                what: format!("range {}-{} of a blob", self.part.start, self.part.end - 1),
                size: at + buf.len() as u64 - self.part.start,
                limit: self.part.end - self.part.start,
            });
        }
        self.files.data.write_all_at(buf, at).map_err(|e| StoreError::io(&self.files.path, e))?;
        self.part.done += buf.len() as u64;
        self.record()
    }

    /// Records the part's count, after its bytes were written.
    fn record(&self) -> Result<()> {
        let at = HEADER + 8 * self.part.index as u64;
        self.files
            .state
            .write_all_at(&self.part.done.to_le_bytes(), at)
            .map_err(|e| StoreError::io(&self.files.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Default::default()).unwrap();
        (tmp, store)
    }

    #[test]
    fn parts_fill_in_any_order_and_resume() {
        let (_tmp, store) = store();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let digest = Digest::of(&data);
        let mut blob = store.partial_blob(&digest, data.len() as u64, 3000).unwrap();
        assert_eq!(blob.parts().len(), 4);
        assert_eq!(blob.parts()[3], Part { index: 3, start: 9000, end: 10_000, done: 0 });
        // Part 2 complete, part 0 half, then a "crash".
        let mut w2 = blob.writer(&blob.parts()[2]);
        w2.write(&data[6000..9000]).unwrap();
        let mut w0 = blob.writer(&blob.parts()[0]);
        w0.write(&data[..1500]).unwrap();
        assert!(w0.write(&data[1500..3001]).is_err(), "past the end of the part");
        blob.update(&w2.part());
        drop(blob);

        // A different part size asked for now does not matter: the download keeps its own.
        let blob = store.partial_blob(&digest, data.len() as u64, 4096).unwrap();
        let done: Vec<u64> = blob.parts().iter().map(|p| p.done).collect();
        assert_eq!(done, [1500, 0, 3000, 0]);
        assert_eq!(blob.done(), 4500);
        let mut blob = blob;
        for p in blob.parts().to_vec() {
            let mut w = blob.writer(&p);
            w.write(&data[p.next() as usize..p.end as usize]).unwrap();
            blob.update(&w.part());
        }
        let committed = blob.finish().unwrap();
        assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), data);
        assert!(!committed.existed);
        let left: Vec<_> = std::fs::read_dir(&store.blobs).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no partial or state file left: {left:?}");
    }

    #[test]
    fn a_wrong_digest_discards_everything() {
        let (_tmp, store) = store();
        let digest = Digest::of(b"expected");
        let mut blob = store.partial_blob(&digest, 8, 5).unwrap();
        for p in blob.parts().to_vec() {
            let mut w = blob.writer(&p);
            w.write(&b"unwanted"[p.start as usize..p.end as usize]).unwrap();
            blob.update(&w.part());
        }
        assert!(matches!(blob.finish(), Err(StoreError::DigestMismatch { .. })));
        assert_eq!(std::fs::read_dir(&store.blobs).unwrap().count(), 0);
    }

    #[test]
    fn an_incomplete_download_does_not_finish_and_a_foreign_partial_starts_over() {
        let (_tmp, store) = store();
        let digest = Digest::of(b"abc");
        std::fs::write(store.blobs.join(format!("{}-partial", digest.file_name())), b"zzzzzz").unwrap();
        let blob = store.partial_blob(&digest, 3, 2).unwrap();
        assert_eq!(blob.done(), 0, "no state file: nothing is trusted");
        assert!(matches!(blob.finish(), Err(StoreError::SizeMismatch { actual: 0, .. })));
        let empty = store.partial_blob(&Digest::of(b""), 0, 2).unwrap();
        assert!(empty.parts().is_empty());
        empty.finish().unwrap();
    }
}
