//! `POST /api/pull` and `POST /api/push`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_registry::RegistryError;
use corral_types::api::{model_or_name, TransferRequest};
use corral_types::Digest;

use super::parse_name;
use crate::extract::JsonBody;
use crate::stream::progress_async;
use crate::{ApiError, AppState};

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Insecure(_) => StatusCode::BAD_REQUEST,
            RegistryError::Status { status: 401 | 403, .. } | RegistryError::Auth { .. } => StatusCode::UNAUTHORIZED,
            RegistryError::Store(corral_store::StoreError::ModelNotFound(_)) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

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
    if state.store.resolve(&name).is_none() {
        return ApiError::not_found(format!("model '{raw}' not found")).into_response();
    }
    let (store, registry, insecure) = (state.store.clone(), state.registry.clone(), req.insecure);
    progress_async(req.stream.unwrap_or(true), move |report| async move {
        registry.push(&store, &name, insecure, &*report).await.map_err(ApiError::from)
    })
    .await
}
