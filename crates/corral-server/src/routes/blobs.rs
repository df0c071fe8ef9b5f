//! `HEAD|POST /api/blobs/:digest`: the upload half of `create`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use corral_types::Digest;
use futures_util::StreamExt;
use std::time::Duration;

use crate::{ApiError, AppState};

/// How long a blob a client has checked or uploaded is kept from garbage collection while the
/// client gets round to the create that references it.
const UPLOAD_LEASE: Duration = Duration::from_secs(600);

fn parse(digest: &str) -> Result<Digest, ApiError> {
    Digest::parse(digest).map_err(|_| ApiError::bad_request("invalid digest format"))
}

pub(super) async fn head(State(state): State<AppState>, Path(digest): Path<String>) -> Result<StatusCode, ApiError> {
    let d = parse(&digest)?;
    let leased = state.store.run(move |store| store.lease(&d, UPLOAD_LEASE)).await;
    if leased {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!("blob \"{digest}\" not found")))
    }
}

/// Streams the body into the store, verifying it against the digest in the path. A body that
/// does not match, or a client that disconnects, leaves nothing behind.
pub(super) async fn upload(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let expected = parse(&digest)?;
    let mut stream = body.into_data_stream();
    if state.store.run(move |store| store.lease(&expected, UPLOAD_LEASE)).await {
        // Already stored. Read (and drop) the body anyway: answering before it is read breaks the
        // pipe under a client that sends without asking with HEAD first.
        while let Some(chunk) = stream.next().await {
            chunk.map_err(|e| ApiError::bad_request(format!("reading upload body: {e}")))?;
        }
        return Ok(StatusCode::OK);
    }
    let mut sink = state.store.blob_sink().await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading upload body: {e}")))?;
        sink.write(chunk.to_vec()).await?;
    }
    let committed = sink.commit(Some(expected)).await?;
    // Still pinned by `committed`, so the blob is there to lease.
    let digest = committed.digest;
    state.store.run(move |store| store.lease(&digest, UPLOAD_LEASE)).await;
    tracing::info!(digest = %committed.digest, size = committed.size, "stored uploaded blob");
    Ok(if committed.existed { StatusCode::OK } else { StatusCode::CREATED })
}
