//! `/api/tags`, `/api/show`, `/api/copy`, `/api/delete`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Local};
use corral_types::api::{
    model_or_name, CopyRequest, DeleteRequest, ListModel, ListResponse, ModelDetails, ShowRequest, ShowResponse,
};
use corral_types::{ModelConfig, ModelName};

use crate::extract::JsonBody;
use crate::names::parse_name;
use crate::{ApiError, AppState};

pub(super) async fn list(State(state): State<AppState>) -> Result<Json<ListResponse>, ApiError> {
    state
        .store
        .run(move |store| {
            let mut models = Vec::new();
            for m in store.list()? {
                let config: ModelConfig = match store.read_blob(&m.manifest.config) {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!("skipping {} in list: {e}", m.name);
                        continue;
                    }
                };
                let short = m.name.display_shortest();
                models.push(ListModel {
                    name: short.clone(),
                    model: short,
                    modified_at: DateTime::<Local>::from(m.modified),
                    size: m.manifest.total_size(),
                    digest: m.digest.hex(),
                    details: ModelDetails {
                        parent_model: String::new(),
                        format: config.model_format,
                        family: config.model_family,
                        families: config.model_families,
                        parameter_size: config.model_type,
                        quantization_level: config.file_type,
                    },
                });
            }
            Ok(Json(ListResponse { models }))
        })
        .await
}

pub(super) async fn show(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ShowRequest>,
) -> Result<Json<ShowResponse>, ApiError> {
    let raw = model_or_name(&req.model, &req.name).to_string();
    let name = parse_name(&raw)?;
    let headers = state.headers.clone();
    let compat = !state.config.defaults.no_compat;
    state
        .store
        .run(move |store| {
            let (model, header) = crate::infer::load(store, &headers, &name, &raw, compat)?;
            // Its header only; a projector that cannot be read is left out, as Ollama does.
            let projector = model.projector_paths.first().and_then(|p| corral_gguf::read_path(p).ok());
            Ok(Json(crate::show::show(
                model,
                header.as_ref(),
                projector.as_ref(),
                req.verbose,
                req.system,
                req.options,
            )))
        })
        .await
}

pub(super) async fn copy(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CopyRequest>,
) -> Result<StatusCode, ApiError> {
    let src = ModelName::parse(&req.source)
        .map_err(|_| ApiError::bad_request(format!("source \"{}\" is invalid", req.source)))?;
    let dst = ModelName::parse(&req.destination)
        .map_err(|_| ApiError::bad_request(format!("destination \"{}\" is invalid", req.destination)))?;
    state
        .store
        .run(move |store| {
            store.copy(&src, &dst).map_err(|e| match e {
                corral_store::StoreError::ModelNotFound(_) => {
                    ApiError::not_found(format!("model \"{}\" not found", req.source))
                }
                other => other.into(),
            })
        })
        .await?;
    Ok(StatusCode::OK)
}

pub(super) async fn delete(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<DeleteRequest>,
) -> Result<StatusCode, ApiError> {
    let raw = model_or_name(&req.model, &req.name).to_string();
    let name = ModelName::parse(&raw).map_err(|_| ApiError::bad_request(format!("name \"{raw}\" is invalid")))?;
    state
        .store
        .run(move |store| {
            store.delete(&name).map_err(|e| match e {
                corral_store::StoreError::ModelNotFound(_) => ApiError::not_found(format!("model '{raw}' not found")),
                other => other.into(),
            })
        })
        .await?;
    Ok(StatusCode::OK)
}
