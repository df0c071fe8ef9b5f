//! Reranking: a query scored against documents by a cross-encoder (a GGUF with llama.cpp's RANK
//! pooling, capability `rerank`).
//!
//! - `POST /v1/rerank` (also `/rerank` and `/v1/reranking`, as llama-server answers them): the
//!   Cohere/Jina shape that LangChain, LlamaIndex and Open WebUI send: `model`, `query`,
//!   `documents` (strings, or objects with a `text`), `top_n`, `return_documents`. The answer is
//!   `{model, object: "list", usage, results: [{index, relevance_score, document?}]}`, the results
//!   best first.
//! - `POST /api/rerank`: the same request in Ollama's style (`keep_alive`, `options`, `truncate`),
//!   answered with `{model, results, total_duration, load_duration, prompt_eval_count}`.
//!
//! A score is the model's raw output for the pair (`BOS query EOS SEP document EOS`, laid out by
//! the engine as llama.cpp's server lays it out), not squashed into 0–1, as llama-server gives it.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::embed::embed;
use crate::extract::JsonBody;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(super) struct RerankBody {
    #[serde(default)]
    model: String,
    query: String,
    documents: Vec<Value>,
    top_n: Option<i64>,
    #[serde(default)]
    return_documents: bool,
    truncate: Option<bool>,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize)]
struct Ranked {
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Value>,
}

#[derive(Debug, Serialize)]
struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
}

/// A document's text: a string, or an object's `text`.
fn text_of(index: usize, document: &Value) -> Result<String, ApiError> {
    match document {
        Value::String(s) => Ok(s.clone()),
        Value::Object(o) => match o.get("text") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(ApiError::bad_request(format!("document {index} has no \"text\" string"))),
        },
        _ => Err(ApiError::bad_request(format!("document {index} must be a string or an object with \"text\""))),
    }
}

/// The documents scored against the query, best first, at most `top_n`; and what it cost.
async fn rank(state: &AppState, req: &RerankBody) -> Result<(Vec<Ranked>, super::embed::Embeddings), ApiError> {
    if req.model.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    if req.documents.is_empty() {
        return Err(ApiError::bad_request("documents must not be empty"));
    }
    let top_n = match req.top_n {
        Some(n) if n < 1 => return Err(ApiError::bad_request(format!("invalid top_n: {n} (at least 1)"))),
        Some(n) => n as usize,
        None => req.documents.len(),
    };
    let texts = req.documents.iter().enumerate().map(|(i, d)| text_of(i, d)).collect::<Result<Vec<_>, _>>()?;
    let (truncate, keep_alive, options) = (req.truncate.unwrap_or(true), req.keep_alive.as_ref(), req.options.as_ref());
    let scored = embed(state, &req.model, texts, Some(req.query.clone()), truncate, keep_alive, options).await?;
    let mut ranked: Vec<Ranked> = scored
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Ranked {
            index,
            relevance_score: v.first().copied().unwrap_or(f32::NAN),
            document: req.return_documents.then(|| req.documents[index].clone()),
        })
        .collect();
    ranked.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    ranked.truncate(top_n);
    Ok((ranked, scored))
}

pub(super) async fn v1_rerank(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RerankBody>,
) -> Result<Response, ApiError> {
    let (mut results, scored) = rank(&state, &req).await?;
    // The Jina/llama-server shape: a document is `{"text": …}`.
    for r in &mut results {
        if let Some(Value::String(text)) = &r.document {
            r.document = Some(serde_json::json!({ "text": text.clone() }));
        }
    }
    let usage = Usage { prompt_tokens: scored.prompt_tokens, total_tokens: scored.prompt_tokens };
    Ok(Json(serde_json::json!({ "model": req.model, "object": "list", "usage": usage, "results": results }))
        .into_response())
}

pub(super) async fn api_rerank(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RerankBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (results, scored) = rank(&state, &req).await?;
    Ok(Json(serde_json::json!({
        "model": req.model,
        "results": results,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": scored.load_ns,
        "prompt_eval_count": scored.prompt_tokens,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_strings_or_objects_with_text() {
        assert_eq!(text_of(0, &Value::from("a panda")).unwrap(), "a panda");
        assert_eq!(text_of(1, &serde_json::json!({"text": "a bear", "id": 7})).unwrap(), "a bear");
        let e = text_of(2, &serde_json::json!({"title": "x"})).unwrap_err();
        assert_eq!(e.message, "document 2 has no \"text\" string");
        let e = text_of(3, &Value::from(5)).unwrap_err();
        assert_eq!(e.message, "document 3 must be a string or an object with \"text\"");
    }
}
