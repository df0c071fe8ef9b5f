//! The store for async code: the same operations, run on tokio's blocking pool.
//!
//! The store does synchronous file I/O (writes, `fsync`, renames), which must not run on the
//! runtime's own threads: a slow disk would stall every connection. Before this module, the
//! server and the registry each dealt with that in their own way (`spawn_blocking`,
//! `block_in_place`, which a current-thread runtime refuses with a panic, or not at all); now
//! they go through [`AsyncStore`], [`BlobSink`] and [`PartWriter::write_async`].

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{BlobWriter, Committed, Digest, PartWriter, Result, Store, StoreError};

/// Runs `f` on the blocking pool. A panic in `f` is resumed here, as if it had run inline.
pub async fn unblock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    join(tokio::task::spawn_blocking(f).await)
}

fn join<T>(joined: std::result::Result<T, tokio::task::JoinError>) -> T {
    match joined {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task; nothing is waiting for it then.
            Err(e) => panic!("a store task was cancelled: {e}"),
        },
    }
}

/// A [`Store`] whose work runs off the async threads.
#[derive(Debug, Clone)]
pub struct AsyncStore(Store);

impl AsyncStore {
    pub fn new(store: Store) -> Self {
        AsyncStore(store)
    }

    /// The synchronous store, for code that already runs on a blocking thread.
    pub fn blocking(&self) -> &Store {
        &self.0
    }

    /// Runs `f` with the store on the blocking pool.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> T + Send + 'static) -> T {
        let store = self.0.clone();
        unblock(move || f(&store)).await
    }

    /// A new blob written chunk by chunk from async code (an upload); see [`BlobSink`].
    pub async fn blob_sink(&self) -> Result<BlobSink> {
        let writer = self.run(|s| s.blob_writer()).await?;
        // A few chunks in flight: the network and the disk overlap, and memory stays bounded.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(chunk) = rx.blocking_recv() {
                writer.write(&chunk)?;
            }
            Ok(writer)
        });
        Ok(BlobSink { tx: Some(tx), task })
    }
}

/// A blob being written from async code by a blocking task. Dropping it without
/// [`BlobSink::commit`] discards what was written.
pub struct BlobSink {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    task: JoinHandle<Result<BlobWriter>>,
}

impl BlobSink {
    /// Appends a chunk. An error is the write's (the disk is full…); the sink is done then.
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        let Some(tx) = &self.tx else { return Err(StoreError::Closed) };
        if tx.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The writing task ended early: it has the reason.
        self.tx = None;
        match join((&mut self.task).await) {
            Err(e) => Err(e),
            Ok(_) => Err(StoreError::Closed),
        }
    }

    /// Verifies the digest (against `expected`, if given) and makes the blob visible, as
    /// [`BlobWriter::commit`].
    pub async fn commit(mut self, expected: Option<Digest>) -> Result<Committed> {
        if self.tx.take().is_none() {
            return Err(StoreError::Closed);
        }
        let writer = join((&mut self.task).await)?;
        unblock(move || writer.commit(expected.as_ref())).await
    }
}

impl PartWriter {
    /// [`PartWriter::write`] on the blocking pool.
    pub async fn write_async(&mut self, buf: Vec<u8>) -> Result<()> {
        let mut writer = self.clone();
        let (writer, result) = unblock(move || {
            let result = writer.write(&buf);
            (writer, result)
        })
        .await;
        *self = writer;
        result
    }
}
