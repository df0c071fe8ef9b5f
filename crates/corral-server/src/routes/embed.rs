//! Embeddings: `POST /api/embed`, the legacy `POST /api/embeddings`, and OpenAI's
//! `POST /v1/embeddings`, all over one core that loads the model as an embedding runner and sends
//! every input of a request to it in one batched call.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::runner::EmbedRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::extract::JsonBody;
use crate::infer::request::request_options;
use crate::infer::start::resolve_options;
use crate::infer::{self, Resolved};
use crate::names::parse_name;
use crate::{ApiError, AppState};

/// Sequences an embedding runner takes in one batch.
const EMBED_SLOTS: u32 = 8;

/// Raw vectors (or a reranker's scores) and what they cost.
pub(super) struct Embeddings {
    pub(super) vectors: Vec<Vec<f32>>,
    pub(super) prompt_tokens: u32,
    pub(super) load_ns: u64,
}

/// Embeds `inputs` with `model`, or with `query` scores each input against it (a reranker). No
/// inputs only loads the model.
pub(super) async fn embed(
    state: &AppState,
    model: &str,
    inputs: Vec<String>,
    query: Option<String>,
    truncate: bool,
    keep_alive: Option<&Value>,
    options: Option<&Map<String, Value>>,
) -> Result<Embeddings, ApiError> {
    let started = Instant::now();
    let name = parse_name(model)?;
    let keep_alive = infer::keep_alive(state, keep_alive)?;
    let r: Resolved = infer::resolve(state, &name, model).await?;
    match query {
        Some(_) => r.require("rerank", "reranking")?,
        None => r.require("embedding", "embeddings")?,
    }
    let mut eff = resolve_options(state, &r, &request_options(options)?)?;
    eff.load.embedding = true;
    eff.load.parallel = EMBED_SLOTS;
    let lease = infer::acquire(state, &r, &eff, keep_alive).await?;
    let load_ns = started.elapsed().as_nanos() as u64;
    if inputs.is_empty() {
        return Ok(Embeddings { vectors: Vec::new(), prompt_tokens: 0, load_ns });
    }
    let out = lease.runner.embed(EmbedRequest { inputs, truncate, query }).await?;
    Ok(Embeddings { vectors: out.vectors, prompt_tokens: out.prompt_tokens, load_ns })
}

/// `/api/embed`'s answer.
#[derive(Debug, Serialize)]
struct EmbedResponse {
    model: String,
    embeddings: Vec<Vec<f32>>,
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u32,
}

/// `/api/embeddings`' answer: the raw vector.
#[derive(Debug, Serialize)]
struct LegacyResponse {
    embedding: Vec<f64>,
}

/// `/v1/embeddings`' answer.
#[derive(Debug, Serialize)]
struct OpenAiEmbeddings {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: String,
    usage: OpenAiUsage,
}

#[derive(Debug, Serialize)]
struct OpenAiEmbedding {
    object: &'static str,
    embedding: Vector,
    index: usize,
}

/// A vector as floats, or as the base64 of its little-endian `f32`s (`encoding_format`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
struct OpenAiUsage {
    prompt_tokens: u32,
    total_tokens: u32,
}

/// L2-normalised, after keeping the first `dimensions` values if asked.
fn normalise(mut v: Vec<f32>, dimensions: Option<usize>) -> Vec<f32> {
    if let Some(d) = dimensions.filter(|d| *d > 0 && *d < v.len()) {
        v.truncate(d);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// `input`: a string or an array of strings.
fn inputs(v: &Value) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(String::from).ok_or_else(|| ApiError::bad_request("invalid input type")))
            .collect(),
        _ => Err(ApiError::bad_request("invalid input type")),
    }
}

fn dimensions(d: Option<i64>) -> Result<Option<usize>, ApiError> {
    match d {
        Some(d) if d < 0 => Err(ApiError::bad_request(format!("invalid dimensions: {d}"))),
        Some(d) => Ok(Some(d as usize)),
        None => Ok(None),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct EmbedBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    truncate: Option<bool>,
    dimensions: Option<i64>,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

pub(super) async fn api_embed(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<EmbedBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let texts = inputs(&req.input)?;
    let dims = dimensions(req.dimensions)?;
    let e = embed(
        &state,
        &req.model,
        texts,
        None,
        req.truncate.unwrap_or(true),
        req.keep_alive.as_ref(),
        req.options.as_ref(),
    )
    .await?;
    let vectors: Vec<Vec<f32>> = e.vectors.into_iter().map(|v| normalise(v, dims)).collect();
    Ok(Json(EmbedResponse {
        model: req.model,
        embeddings: vectors,
        total_duration: started.elapsed().as_nanos() as u64,
        load_duration: e.load_ns,
        prompt_eval_count: e.prompt_tokens,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct LegacyBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    keep_alive: Option<Value>,
    options: Option<Map<String, Value>>,
}

/// The legacy endpoint: one prompt, the raw (not normalised) vector.
pub(super) async fn api_embeddings(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LegacyBody>,
) -> Result<Response, ApiError> {
    let texts = if req.prompt.is_empty() { Vec::new() } else { vec![req.prompt.clone()] };
    let e = embed(&state, &req.model, texts, None, true, req.keep_alive.as_ref(), req.options.as_ref()).await?;
    let vector: Vec<f64> = e.vectors.into_iter().next().unwrap_or_default().into_iter().map(f64::from).collect();
    Ok(Json(LegacyResponse { embedding: vector }).into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct OpenAiBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

/// OpenAI's `/v1/embeddings`: vectors as floats or base64 little-endian f32.
pub(super) async fn openai_embeddings(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<OpenAiBody>,
) -> Result<Response, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value for 'encoding_format' = {other}. Supported values: ['float', 'base64']."
            )))
        }
    };
    let texts = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => inputs(&req.input)?,
        _ => return Err(ApiError::bad_request("invalid input")),
    };
    let dims = dimensions(req.dimensions)?;
    let e = embed(&state, &req.model, texts, None, true, None, None).await?;
    let data: Vec<OpenAiEmbedding> = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let v = normalise(v, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes))
            } else {
                Vector::Floats(v)
            };
            OpenAiEmbedding { object: "embedding", embedding, index }
        })
        .collect();
    let usage = OpenAiUsage { prompt_tokens: e.prompt_tokens, total_tokens: e.prompt_tokens };
    Ok(Json(OpenAiEmbeddings { object: "list", data, model: req.model, usage }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_are_unit_length_after_cutting() {
        let v = normalise(vec![3.0, 4.0, 12.0], None);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(normalise(vec![3.0, 4.0, 12.0], Some(2)), vec![0.6, 0.8]);
        assert_eq!(normalise(vec![3.0, 4.0], Some(9)), vec![0.6, 0.8]);
        assert_eq!(normalise(vec![0.0, 0.0], None), vec![0.0, 0.0]);
    }

    #[test]
    fn inputs_are_strings() {
        assert_eq!(inputs(&json!("a")).unwrap(), ["a"]);
        assert_eq!(inputs(&json!(["a", "b"])).unwrap(), ["a", "b"]);
        assert!(inputs(&json!("")).unwrap().is_empty());
        assert!(inputs(&json!([1, 2])).is_err());
        assert!(inputs(&json!({"a": 1})).is_err());
    }
}
