//! The model store, in Ollama's on-disk layout:
//!
//! ```text
//! <root>/blobs/sha256-<hex>                             content-addressed, immutable
//! <root>/manifests/<host>/<namespace>/<model>/<tag>     Docker schema-2 manifest JSON
//! ```
//!
//! A store Ollama wrote is readable here and the reverse. What this crate adds is discipline:
//!
//! - Architecture invariant: a blob is never visible under its final name before its digest has
//!   been verified. Blobs are streamed to a temp file in `blobs/`, hashed on the way, fsynced and
//!   renamed ([`BlobWriter`]).
//! - Architecture invariant: a manifest never points at a blob that is absent. Manifests are
//!   written (atomically, by rename) only after checking every blob they list, under the same lock
//!   that blob garbage collection takes; blobs that an unfinished create is about to reference are
//!   pinned ([`Pins`]) so a concurrent delete cannot collect them.
//! - Architecture invariant: no path is built from unvalidated input. Paths come from
//!   [`ModelName`] parts and [`Digest`]s, both validated at parse time.
//! - Architecture invariant: the store never touches the network.

mod blobs;
mod create;
mod fsutil;
mod manifests;
mod model;
#[cfg(feature = "tokio")]
mod nonblocking;
mod partial;
mod projector;
mod prune;
mod refs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_types::{Digest, ModelName};

pub use blobs::{BlobWriter, Committed, ExternalBlob};
pub use create::{CreateError, CreateSpec, ModelSource, Prepared};
pub use manifests::StoredManifest;
pub use model::{Model, ModelError};
#[cfg(feature = "tokio")]
pub use nonblocking::{unblock, AsyncStore, BlobSink};
pub use partial::{Part, PartWriter, PartialBlob};
pub use prune::PruneReport;
pub use refs::{PinGuard, Pins};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("blob \"{0}\" not found")]
    BlobNotFound(Digest),
    #[error("digest mismatch, expected \"{expected}\", got \"{actual}\"")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} is {actual} bytes, expected {expected}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("manifest {}: {reason}", path.display())]
    CorruptManifest { path: PathBuf, reason: String },
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    /// A blob sink was used after it failed.
    #[error("the blob writer has already failed or finished")]
    Closed,
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_path_buf(), source }
    }

    /// Whether this is the disk (or the file system's quota) being full: ENOSPC, which a temp
    /// file's writes wrap, keeping only its kind.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull)
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options fixed when the store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Keep blobs that no manifest references (`OLLAMA_NOPRUNE`).
    pub noprune: bool,
}

/// A handle on one models directory. Cheap to clone; clones share the pin table and its lock.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    manifests: PathBuf,
    options: StoreOptions,
    pins: Arc<Pins>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Store> {
        let root = root.into();
        let blobs = root.join("blobs");
        let manifests = root.join("manifests");
        for dir in [&blobs, &manifests] {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        Ok(Store { root, blobs, manifests, options, pins: Arc::new(Pins::default()) })
    }

    /// The models directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.file_name())
    }

    /// Whether the blob exists.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        let mut p = self.manifests.clone();
        p.extend(name.path_parts());
        p
    }
}
