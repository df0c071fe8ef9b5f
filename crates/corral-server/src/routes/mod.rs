//! The route table.

mod anthropic;
mod blobs;
mod create;
mod embed;
mod models;
mod native;
mod openai;
mod ps;
mod rerank;
mod responses;
mod transfer;

use axum::handler::Handler;
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn_with_state, map_response_with_state};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use corral_types::api::{VersionResponse, CORRAL_VERSION_HEADER};

use crate::auth::require_key;
use crate::error::{shape_errors, Protocol};
use crate::{AppState, OLLAMA_API_VERSION, VERSION};

/// Every route, in three groups by the protocol whose error shape their errors take (chosen
/// here, once: see `error.rs`). Each group's routes need an API key when keys are set (the
/// middleware sits inside the group, so a 401 takes the group's shape too), as do unknown paths.
pub(crate) fn router(state: AppState) -> Router {
    let native = Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version).head(version))
        .route("/api/status", get(status))
        .route("/health", get(crate::ready::health))
        .route("/ready", get(crate::ready::ready))
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
        .route("/api/rerank", post(rerank::api_rerank))
        .route("/api/pull", post(transfer::pull))
        .route("/api/push", post(transfer::push));
    let openai = Router::new()
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/rerank", post(rerank::v1_rerank))
        .route("/v1/reranking", post(rerank::v1_rerank))
        .route("/rerank", post(rerank::v1_rerank))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/models", get(openai::models))
        .route(
            "/v1/audio/transcriptions",
            post(openai::transcribe::transcriptions)
                .layer(axum::extract::DefaultBodyLimit::max(openai::transcribe::MAX_UPLOAD)),
        )
        .route("/v1/models/{*model}", get(openai::model));
    let anthropic = Router::new()
        .route("/v1/messages", post(anthropic::messages_route))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens_route));
    let group = |routes: Router<AppState>, protocol: Protocol| {
        routes
            .layer(from_fn_with_state(state.clone(), require_key))
            .layer(map_response_with_state(protocol, shape_errors))
    };
    Router::new()
        // The chat page's files need no key: they hold no data, and the page must load to ask
        // for one.
        .merge(crate::ui::routes(state.config.ui))
        .merge(group(native, Protocol::Native))
        .merge(group(openai, Protocol::OpenAi))
        .merge(group(anthropic, Protocol::Anthropic))
        .fallback(not_found.layer(from_fn_with_state(state.clone(), require_key)))
        .with_state(state)
}

async fn root() -> impl IntoResponse {
    // Clients probe this text to recognise an Ollama-compatible server.
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Ollama is running")
}

/// Ollama's API version in the body (what clients compare), Corral's own in a header.
async fn version() -> impl IntoResponse {
    ([(CORRAL_VERSION_HEADER, VERSION)], Json(VersionResponse { version: OLLAMA_API_VERSION.to_string() }))
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
