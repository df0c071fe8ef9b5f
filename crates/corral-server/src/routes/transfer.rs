//! `POST /api/pull` and `POST /api/push`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use corral_types::api::{model_or_name, TransferRequest};
use corral_types::Digest;

use crate::extract::JsonBody;
use crate::names::parse_name;
use crate::stream::progress_async;
use crate::{ApiError, AppState};

pub(super) async fn pull(State(state): State<AppState>, JsonBody(req): JsonBody<TransferRequest>) -> Response {
    let raw = model_or_name(&req.model, &req.name).to_string();
    let name = match parse_name(&raw) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let digest = match name.digest().map(Digest::parse).transpose() {
        Ok(d) => d,
        Err(_) => {
            return ApiError::bad_request(format!("invalid digest in {raw:?}: use name@sha256:<64 hex>"))
                .into_response()
        }
    };
    let (store, registry, insecure) = (state.store.clone(), state.registry.clone(), req.insecure);
    progress_async(req.stream.unwrap_or(true), move |report| async move {
        registry.pull(&store, &name, digest.as_ref(), insecure, &*report).await.map_err(ApiError::from)
    })
    .await
}

pub(super) async fn push(State(state): State<AppState>, JsonBody(req): JsonBody<TransferRequest>) -> Response {
    let raw = model_or_name(&req.model, &req.name).to_string();
    let name = match parse_name(&raw) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let target = name.clone();
    if state.store.run(move |store| store.resolve(&target)).await.is_none() {
        return ApiError::not_found(format!("model '{raw}' not found")).into_response();
    }
    let (store, registry, insecure) = (state.store.clone(), state.registry.clone(), req.insecure);
    progress_async(req.stream.unwrap_or(true), move |report| async move {
        registry.push(&store, &name, insecure, &*report).await.map_err(ApiError::from)
    })
    .await
}
