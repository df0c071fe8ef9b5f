//! Push: each blob the registry lacks (HEAD first; cross-repository mount when the layer came from
//! another model on the same registry; else a chunked upload session), then the manifest.

use std::io::{Read, Seek, SeekFrom};

use corral_store::{unblock, AsyncStore, StoreError};
use corral_types::api::ProgressResponse;
use corral_types::{Layer, ModelName};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use crate::{repo, short, Progress, Registry, RegistryError, Repo, MANIFEST_V2};

/// Bytes per PATCH of an upload session.
const CHUNK: u64 = 32 << 20;

fn transfer(layer: &Layer, completed: u64) -> ProgressResponse {
    ProgressResponse {
        status: format!("pushing {}", short(&layer.digest)),
        digest: Some(layer.digest.to_string()),
        total: Some(layer.size),
        completed: Some(completed),
    }
}

/// Resolves an upload `Location` (often relative) against the registry.
fn absolute(repo: &Repo, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{}{}", repo.base, location)
    }
}

fn location(repo: &Repo, resp: &reqwest::Response, what: &str) -> Result<String, RegistryError> {
    let loc = resp
        .headers()
        .get("Docker-Upload-Location")
        .or_else(|| resp.headers().get(LOCATION))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Status {
            what: what.into(),
            status: resp.status().as_u16(),
            body: "no upload location".into(),
        })?;
    Ok(absolute(repo, loc))
}

impl Registry {
    /// Pushes `name` from `store`.
    pub async fn push(
        &self,
        store: &AsyncStore,
        name: &ModelName,
        insecure: bool,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let repo = repo(name, insecure, None)?;
        progress(ProgressResponse::status("retrieving manifest"));
        let target = name.clone();
        let mut stored = store.run(move |s| s.read_manifest(&target)).await?;
        let bytes = bytes::Bytes::from(std::mem::take(&mut stored.bytes));
        let blobs: Vec<Layer> =
            stored.manifest.layers.iter().chain(std::iter::once(&stored.manifest.config)).cloned().collect();
        for layer in &blobs {
            self.push_blob(store, &repo, name, layer, progress).await?;
        }
        progress(ProgressResponse::status("pushing manifest"));
        let url = repo.url(&format!("manifests/{}", repo.reference));
        let make = || self.http.put(&url).header(CONTENT_TYPE, MANIFEST_V2).body(bytes.clone());
        self.send("pushing manifest", &repo, &make).await?;
        progress(ProgressResponse::status("success"));
        Ok(())
    }

    async fn push_blob(
        &self,
        store: &AsyncStore,
        repo: &Repo,
        name: &ModelName,
        layer: &Layer,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let what = format!("pushing {}", short(&layer.digest));
        let blob_url = repo.url(&format!("blobs/{}", layer.digest));
        if let Ok(r) = self.send(&what, repo, &|| self.http.head(&blob_url)).await {
            if r.status() == StatusCode::OK {
                progress(transfer(layer, layer.size));
                return Ok(());
            }
        }
        // A layer inherited from another model on the same registry can be mounted, not copied.
        let mut start = repo.url("blobs/uploads/");
        if let Some(from) = layer.from.as_deref().and_then(|f| ModelName::parse(f).ok()) {
            if from.host().eq_ignore_ascii_case(name.host()) {
                start = format!("{start}?mount={}&from={}/{}", layer.digest, from.namespace(), from.model());
            }
        }
        let resp = self.send(&what, repo, &|| self.http.post(&start).header(CONTENT_LENGTH, 0)).await?;
        if resp.status() == StatusCode::CREATED {
            progress(transfer(layer, layer.size));
            return Ok(());
        }
        let mut upload = location(repo, &resp, &what)?;
        let path = store.blocking().blob_path(&layer.digest);
        let opened = path.clone();
        let mut file = Some(unblock(move || std::fs::File::open(&opened)).await.map_err(|e| StoreError::io(&path, e))?);
        let mut sent = 0u64;
        progress(transfer(layer, 0));
        while sent < layer.size {
            let n = CHUNK.min(layer.size - sent);
            let mut f = file.take().expect("the file is back after each read");
            let (f, buf) = unblock(move || {
                let mut buf = vec![0u8; n as usize];
                let read = f.seek(SeekFrom::Start(sent)).and_then(|_| f.read_exact(&mut buf));
                (f, read.map(|_| buf))
            })
            .await;
            file = Some(f);
            let buf = buf.map_err(|e| StoreError::io(&path, e))?;
            let buf = bytes::Bytes::from(buf);
            let make = || {
                self.http
                    .patch(&upload)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("Content-Range", format!("{}-{}", sent, sent + n - 1))
                    .header(CONTENT_LENGTH, n)
                    .body(buf.clone())
            };
            let resp = self.send(&what, repo, &make).await?;
            upload = location(repo, &resp, &what)?;
            sent += n;
            progress(transfer(layer, sent));
        }
        let sep = if upload.contains('?') { '&' } else { '?' };
        let finish = format!("{upload}{sep}digest={}", layer.digest);
        self.send(&what, repo, &|| self.http.put(&finish).header(CONTENT_LENGTH, 0)).await?;
        Ok(())
    }
}
