//! Pull: manifest, then each missing blob (resumable, verified), then the manifest is written.

use std::time::{Duration, Instant};

use corral_store::{Committed, PinGuard, Store, StoreError};
use corral_types::api::ProgressResponse;
use corral_types::{Digest, Layer, Manifest, ModelName};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, RANGE};
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
        store: &Store,
        name: &ModelName,
        digest: Option<&Digest>,
        insecure: bool,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let repo = repo(name, insecure, digest.map(|d| d.to_string()).as_deref())?;
        progress(status("pulling manifest"));
        let bytes = self.manifest(&repo, name).await?;
        if let Some(want) = digest {
            let got = Digest::of(&bytes);
            if got != *want {
                return Err(RegistryError::BadManifest(format!("manifest digest is {got}, expected {want}")));
            }
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadManifest(e.to_string()))?;
        if manifest.schema_version != 2 {
            return Err(RegistryError::BadManifest(format!("schema version {} (expected 2)", manifest.schema_version)));
        }

        let mut pins: Vec<PinGuard> = Vec::new();
        let blobs: Vec<Layer> = manifest.layers.iter().chain(std::iter::once(&manifest.config)).cloned().collect();
        for layer in &blobs {
            let lock = self.download_lock(&layer.digest);
            let _guard = lock.lock().await;
            if let Ok(pin) = store.pin_existing(&[layer.digest]) {
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
        let old = store.write_raw_manifest(name, bytes)?;
        drop(pins);
        if let Some(old) = old {
            let kept: std::collections::HashSet<Digest> = manifest.blobs().map(|l| l.digest).collect();
            if old.manifest.blobs().any(|l| !kept.contains(&l.digest)) {
                progress(status("removing unused layers"));
                store.release_old(&old)?;
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

    /// Downloads one blob into the store, resuming a partial file and retrying transport errors
    /// and stalls with backoff. The blob is verified by the store before it becomes visible.
    async fn download(
        &self,
        store: &Store,
        repo: &Repo,
        layer: &Layer,
        progress: Progress<'_>,
    ) -> Result<Committed, RegistryError> {
        let what = format!("pulling {}", short(&layer.digest));
        let mut partial = tokio::task::block_in_place(|| store.partial_blob(&layer.digest, layer.size))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_into(repo, layer, &mut partial, progress, &what).await {
                Ok(()) => break,
                Err(
                    e @ (RegistryError::Http { .. } | RegistryError::Stalled { .. } | RegistryError::Incomplete { .. }),
                ) if attempt < ATTEMPTS => {
                    let wait = Duration::from_millis(250 * 2u64.pow(attempt.min(6)));
                    tracing::warn!("{e}; retrying in {wait:?} (attempt {attempt} of {ATTEMPTS})");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(tokio::task::block_in_place(|| partial.finish())?)
    }

    /// One GET of the rest of a blob into `partial`.
    async fn fetch_into(
        &self,
        repo: &Repo,
        layer: &Layer,
        partial: &mut corral_store::PartialBlob,
        progress: Progress<'_>,
        what: &str,
    ) -> Result<(), RegistryError> {
        if partial.len() == layer.size {
            return Ok(());
        }
        let url = repo.url(&format!("blobs/{}", layer.digest));
        let from = partial.len();
        let make = || {
            let rb = self.http.get(&url);
            if from > 0 {
                rb.header(RANGE, format!("bytes={from}-"))
            } else {
                rb
            }
        };
        let resp = self.send(what, repo, &make).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                tracing::info!(digest = %layer.digest, from = partial.len(), "resuming download")
            }
            StatusCode::OK if !partial.is_empty() => tokio::task::block_in_place(|| partial.restart())?,
            StatusCode::OK => {}
            other => {
                return Err(RegistryError::Status {
                    what: what.to_string(),
                    status: other.as_u16(),
                    body: String::new(),
                })
            }
        }
        let mut stream = resp.bytes_stream();
        let mut last_report = Instant::now();
        loop {
            let next = match tokio::time::timeout(self.stall, stream.next()).await {
                Ok(n) => n,
                Err(_) => return Err(RegistryError::Stalled { what: what.to_string(), seconds: self.stall.as_secs() }),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| RegistryError::Http { what: what.to_string(), source: e.without_url() })?;
            tokio::task::block_in_place(|| partial.write(&chunk))?;
            if last_report.elapsed() >= Duration::from_millis(100) {
                last_report = Instant::now();
                progress(transfer(layer, Some(partial.len())));
            }
        }
        progress(transfer(layer, Some(partial.len())));
        if partial.len() < layer.size {
            // The connection ended early: the next attempt resumes from here.
            return Err(RegistryError::Incomplete { what: what.to_string(), got: partial.len(), expected: layer.size });
        }
        Ok(())
    }
}
