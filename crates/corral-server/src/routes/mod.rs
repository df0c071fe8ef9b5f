//! The route table.

mod anthropic;
mod blobs;
mod create;
mod embed;
mod models;
mod native;
mod openai;
mod ps;
mod quantize;
mod responses;
mod transfer;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use corral_types::api::VersionResponse;

use crate::{AppState, VERSION};

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version).head(version))
        .route("/api/status", get(status))
        .route("/api/tags", get(models::list).head(models::list))
        .route("/api/show", post(models::show))
        .route("/api/copy", post(models::copy))
        .route("/api/delete", delete(models::delete))
        .route("/api/create", post(create::create))
        .route("/api/blobs/{digest}", post(blobs::upload).head(blobs::head))
        .route("/api/generate", post(native::generate))
        .route("/api/chat", post(native::chat))
        .route("/api/ps", get(ps::ps))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/api/embed", post(embed::api_embed))
        .route("/api/embeddings", post(embed::api_embeddings))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/api/pull", post(transfer::pull))
        .route("/api/push", post(transfer::push))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages_route))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens_route))
        .route("/v1/models/{*model}", get(openai::model))
        .fallback(not_found)
        .with_state(state)
}

async fn root() -> impl IntoResponse {
    // Clients probe this text to recognise an Ollama-compatible server.
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Ollama is running")
}

async fn version() -> Json<VersionResponse> {
    Json(VersionResponse { version: VERSION.to_string() })
}

/// `GET /api/status`. Ollama's says whether its cloud models (proxied to ollama.com) are turned
/// off, and by what (`OLLAMA_NO_CLOUD`, its config file). Corral proxies nothing: they are always
/// off, by nothing a user set.
async fn status() -> Json<serde_json::Value> {
    Json(serde_json::json!({"cloud": {"disabled": true, "source": "none"}}))
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "404 page not found")
}
