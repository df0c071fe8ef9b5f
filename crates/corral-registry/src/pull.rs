//! Pull: manifest, then each missing blob (resumable, verified), then the manifest is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_store::{unblock, AsyncStore, Committed, PartWriter, PinGuard, StoreError};
use corral_types::api::ProgressResponse;
use corral_types::{Digest, Layer, ModelName};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use crate::{
    read_bounded, repo, short, Progress, Registry, RegistryError, Repo, MANIFEST_V2, MAX_MANIFEST, OCI_MANIFEST,
};

/// Attempts per blob for transport errors and stalls (each resumes where the last stopped).
const ATTEMPTS: u32 = 6;

fn status(s: impl Into<String>) -> ProgressResponse {
    ProgressResponse::status(s)
}

fn transfer(layer: &Layer, completed: Option<u64>) -> ProgressResponse {
    ProgressResponse {
        status: format!("pulling {}", short(&layer.digest)),
        digest: Some(layer.digest.to_string()),
        total: Some(layer.size),
        completed,
    }
}

impl Registry {
    /// Pulls `name` into `store`. `digest` pins the manifest (`name@sha256:…`).
    pub async fn pull(
        &self,
        store: &AsyncStore,
        name: &ModelName,
        digest: Option<&Digest>,
        insecure: bool,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let repo = repo(name, insecure, digest.map(|d| d.to_string()).as_deref())?;
        progress(status("pulling manifest"));
        let bytes = self.manifest(&repo, name).await?;
        let manifest = crate::answers::manifest(&bytes, digest)?;

        let mut pins: Vec<PinGuard> = Vec::new();
        let blobs: Vec<Layer> = manifest.layers.iter().chain(std::iter::once(&manifest.config)).cloned().collect();
        for layer in &blobs {
            let lock = self.download_lock(&layer.digest);
            let _guard = lock.lock().await;
            let digest = layer.digest;
            if let Ok(pin) = store.run(move |s| s.pin_existing(&[digest])).await {
                // Already here (or just fetched by a concurrent pull of the same blob).
                pins.push(pin);
                progress(transfer(layer, Some(layer.size)));
                continue;
            }
            progress(transfer(layer, None));
            let committed = match self.download(store, &repo, layer, progress).await {
                Err(RegistryError::Store(StoreError::DigestMismatch { .. })) => {
                    tracing::warn!(digest = %layer.digest, "downloaded blob did not match its digest; retrying once");
                    self.download(store, &repo, layer, progress).await?
                }
                other => other?,
            };
            pins.push(committed.pin);
        }
        progress(status("verifying sha256 digest"));
        progress(status("writing manifest"));
        let target = name.clone();
        let old = store.run(move |s| s.write_raw_manifest(&target, bytes)).await?;
        drop(pins);
        if let Some(old) = old {
            let kept: std::collections::HashSet<Digest> = manifest.blobs().map(|l| l.digest).collect();
            if old.manifest.blobs().any(|l| !kept.contains(&l.digest)) {
                progress(status("removing unused layers"));
                store.run(move |s| s.release_old(&old)).await?;
            }
        }
        progress(status("success"));
        Ok(())
    }

    async fn manifest(&self, repo: &Repo, name: &ModelName) -> Result<Vec<u8>, RegistryError> {
        let url = repo.url(&format!("manifests/{}", repo.reference));
        let make = || self.http.get(&url).header(ACCEPT, format!("{MANIFEST_V2}, {OCI_MANIFEST}"));
        match self.send("pull model manifest", repo, &make).await {
            Ok(resp) => read_bounded(resp, MAX_MANIFEST).await,
            Err(RegistryError::Status { status: 404, .. }) => Err(RegistryError::NotFound(format!(
                "pull model manifest: file does not exist: {} is not in the registry at {}",
                name.display_shortest(),
                repo.base
            ))),
            Err(e) => Err(e),
        }
    }

    /// Downloads one blob into the store: its missing parts over up to `connections` connections
    /// at once, each resuming where it stopped and retried on transport errors and stalls with
    /// backoff. The blob is verified by the store before it becomes visible.
    async fn download(
        &self,
        store: &AsyncStore,
        repo: &Repo,
        layer: &Layer,
        progress: Progress<'_>,
    ) -> Result<Committed, RegistryError> {
        let what = format!("pulling {}", short(&layer.digest));
        let (digest, size, part_size) = (layer.digest, layer.size, self.options.part_size);
        let mut partial = store.run(move |s| s.partial_blob(&digest, size, part_size)).await?;
        if partial.done() > 0 {
            tracing::info!(digest = %layer.digest, done = partial.done(), "resuming download");
        }
        let done = AtomicU64::new(partial.done());
        let writers: Vec<PartWriter> =
            partial.parts().iter().filter(|p| !p.is_complete()).map(|p| partial.writer(p)).collect();
        let fetches = futures_util::stream::iter(
            writers.into_iter().map(|writer| self.fetch_part(repo, &layer.digest, writer, &done, &what)),
        )
        .buffer_unordered(self.options.connections.max(1));
        let mut fetches = std::pin::pin!(fetches);
        let mut report = tokio::time::interval(Duration::from_millis(100));
        let mut failure = None;
        loop {
            tokio::select! {
                next = fetches.next() => match next {
                    Some((writer, result)) => {
                        partial.update(&writer.part());
                        if let Err(e) = result {
                            // The other parts finish (or fail) first, so that what they got is kept.
                            failure.get_or_insert(e);
                        }
                    }
                    None => break,
                },
                _ = report.tick() => progress(transfer(layer, Some(done.load(Ordering::Relaxed)))),
            }
        }
        progress(transfer(layer, Some(partial.done())));
        if let Some(e) = failure {
            if matches!(e, RegistryError::BadManifest(_) | RegistryError::Store(StoreError::TooLarge { .. })) {
                // The registry contradicts the manifest: nothing it sent can be kept.
                partial.discard();
            } else if matches!(&e, RegistryError::Store(s) if s.is_disk_full()) {
                // The disk is full: give back what this download took rather than keep it to
                // resume; the user has to make room first anyway.
                tracing::warn!(digest = %layer.digest, "disk full: discarding the partial download");
                partial.discard();
            }
            return Err(e);
        }
        Ok(unblock(move || partial.finish()).await?)
    }

    /// Fetches the rest of one part, retrying with backoff; gives the writer back with the result.
    async fn fetch_part(
        &self,
        repo: &Repo,
        digest: &Digest,
        mut writer: PartWriter,
        done: &AtomicU64,
        what: &str,
    ) -> (PartWriter, Result<(), RegistryError>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_range(repo, digest, &mut writer, done, what).await {
                Err(
                    e @ (RegistryError::Http { .. } | RegistryError::Stalled { .. } | RegistryError::Incomplete { .. }),
                ) if attempt < ATTEMPTS => {
                    let wait = Duration::from_millis(250 * 2u64.pow(attempt.min(6)));
                    tracing::warn!("{e}; retrying in {wait:?} (attempt {attempt} of {ATTEMPTS})");
                    tokio::time::sleep(wait).await;
                }
                result => return (writer, result),
            }
        }
    }

    /// One ranged GET of the rest of a part.
    async fn fetch_range(
        &self,
        repo: &Repo,
        digest: &Digest,
        writer: &mut PartWriter,
        done: &AtomicU64,
        what: &str,
    ) -> Result<(), RegistryError> {
        let part = writer.part();
        if part.is_complete() {
            return Ok(());
        }
        let url = repo.url(&format!("blobs/{digest}"));
        let (from, last, size) = (part.next(), part.end - 1, writer.blob_size());
        let make = || self.http.get(&url).header(RANGE, format!("bytes={from}-{last}"));
        let resp = self.send(what, repo, &make).await?;
        // Bytes of the body to skip before the part's next byte: a registry that ignores ranges
        // sends the whole blob from its first byte.
        // A registry that ignores ranges answers 200 with the whole blob: skip to the part's next
        // byte and stop at its end.
        let whole = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let (first, total) = crate::answers::content_range(range).unwrap_or_default();
                if total != Some(size) {
                    return Err(RegistryError::BadManifest(format!(
                        "{what}: the registry holds {} bytes, the manifest says {size} bytes",
                        total.map_or_else(|| "an unknown number of".to_string(), |t| t.to_string())
                    )));
                }
                if first != Some(from) {
                    return Err(RegistryError::BadManifest(format!(
                        "{what}: asked for bytes {from}-{last}, the registry sent {range:?}"
                    )));
                }
                false
            }
            StatusCode::OK => true,
            other => {
                return Err(RegistryError::Status {
                    what: what.to_string(),
                    status: other.as_u16(),
                    body: String::new(),
                })
            }
        };
        let mut skip = if whole { from } else { 0 };
        let mut stream = resp.bytes_stream();
        while !writer.part().is_complete() {
            let next = match tokio::time::timeout(self.stall, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Err(RegistryError::Stalled { what: what.to_string(), seconds: self.stall.as_secs() }),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| RegistryError::Http { what: what.to_string(), source: e.without_url() })?;
            let dropped = skip.min(chunk.len() as u64) as usize;
            skip -= dropped as u64;
            let mut chunk = &chunk[dropped..];
            if whole {
                let room = writer.part().end - writer.part().next();
                chunk = &chunk[..chunk.len().min(room as usize)];
            }
            if chunk.is_empty() {
                continue;
            }
            writer.write_async(chunk.to_vec()).await?;
            done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let part = writer.part();
        if !part.is_complete() {
            // The connection ended early: the next attempt resumes from here.
            return Err(RegistryError::Incomplete {
                what: what.to_string(),
                got: part.done,
                expected: part.end - part.start,
            });
        }
        Ok(())
    }
}
