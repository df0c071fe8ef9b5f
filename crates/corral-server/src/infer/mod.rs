//! What `/api/generate` and `/api/chat` share: finding the model and its metadata, scheduling a
//! runner, and streaming the runner's output as Ollama's response chunks.

pub mod answer;
pub mod options;
pub mod parse;
pub mod prompt;

use std::sync::Arc;
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use corral_gguf::Gguf;
use corral_store::{Model, ModelError, StoreError};
use corral_types::api::{ChatResponse, GenerateResponse, Message, Metrics};
use corral_types::duration::KeepAlive;
use corral_types::runner::KvCacheType;
use corral_types::ModelName;
use serde_json::Value;

use crate::placement::Needs;
use crate::sched::{Lease, LoadRequest, SchedError};
use crate::stream::{answer_stream, to_line, Framing};
use crate::{ApiError, AppState};
use answer::{Answer, Collected, Delta, Event, Finish};

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> Self {
        match e {
            SchedError::Busy => ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            SchedError::Runner(e) => ApiError::internal(e.to_string()),
        }
    }
}

/// A stored model with its parsed GGUF header.
pub struct Resolved {
    pub model: Model,
    pub gguf: Arc<Gguf>,
}

impl Resolved {
    pub fn short_name(&self) -> String {
        self.model.name.display_shortest()
    }

    pub fn weights(&self) -> Result<String, ApiError> {
        self.model
            .model_path
            .as_ref()
            .map(|p| p.display().to_string())
            .ok_or_else(|| ApiError::bad_request(format!("model '{}' has no weights to run", self.short_name())))
    }

    /// Ollama's capability list for this model.
    pub fn capabilities(&self) -> Vec<String> {
        crate::show::capabilities(&self.model, Some(&self.gguf))
    }

    /// Whether `capability` is in [`Resolved::capabilities`].
    pub fn can(&self, capability: &str) -> bool {
        self.capabilities().iter().any(|c| c == capability)
    }

    /// 400 unless the model can do `what` (a capability name).
    pub fn require(&self, capability: &str, verb: &str) -> Result<(), ApiError> {
        if self.can(capability) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("\"{}\" does not support {verb}", self.short_name())))
        }
    }
}

/// Loads a model's manifest and, cached by manifest digest, its GGUF header (`None` for a model
/// without weights). Blocking: call it on the blocking pool. `raw` is the name as given, for the
/// 404 message.
pub fn load(state: &AppState, name: &ModelName, raw: &str) -> Result<(Model, Option<Arc<Gguf>>), ApiError> {
    let model = state.store.load_model(name).map_err(|e| match e {
        ModelError::Store(StoreError::ModelNotFound(_)) => ApiError::not_found(format!("model '{raw}' not found")),
        other => other.into(),
    })?;
    let Some(path) = model.model_path.clone() else { return Ok((model, None)) };
    let mut cache = state.headers.lock().unwrap_or_else(|p| p.into_inner());
    let gguf = match cache.get(&model.digest) {
        Some(g) => g.clone(),
        None => {
            let g = Arc::new(
                corral_gguf::read_path(&path)
                    .map_err(|e| ApiError::internal(format!("model '{raw}' has unreadable weights: {e}")))?,
            );
            cache.insert(model.digest, g.clone());
            g
        }
    };
    Ok((model, Some(gguf)))
}

/// [`load`] on the blocking pool, for a model that must have weights (to run it).
pub async fn resolve(state: &AppState, name: &ModelName, raw: &str) -> Result<Resolved, ApiError> {
    let (state, name, raw) = (state.clone(), name.clone(), raw.to_string());
    crate::routes::blocking(move || {
        let (model, gguf) = load(&state, &name, &raw)?;
        let gguf = gguf.ok_or_else(|| ApiError::bad_request(format!("model '{raw}' has no weights")))?;
        Ok(Resolved { model, gguf })
    })
    .await
}

/// The request's `keep_alive`, or the server default.
pub fn keep_alive(state: &AppState, v: Option<&Value>) -> Result<KeepAlive, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(state.config.keep_alive),
        Some(v) => KeepAlive::from_json(v).map_err(ApiError::bad_request),
    }
}

/// What placement knows of a runner of this model: its weights, KV cache elements for `num_ctx`
/// positions in each of `parallel` slots, and its blocks.
fn needs(g: &Gguf, weights_bytes: u64, num_ctx: u32, parallel: u32) -> Needs {
    let layers = g.arch_u64("block_count").unwrap_or(0);
    let embd = g.arch_u64("embedding_length").unwrap_or(0);
    let heads = g.arch_u64("attention.head_count").unwrap_or(1).max(1);
    let kv_heads = g.arch_u64("attention.head_count_kv").unwrap_or(heads);
    let kv_elements = 2 * layers * u64::from(num_ctx) * u64::from(parallel) * (embd / heads) * kv_heads;
    Needs { weights: weights_bytes, kv_elements, layers: u32::try_from(layers).unwrap_or(u32::MAX) }
}

/// Rough memory a runner of this model needs: the weights plus the KV cache.
fn estimate(needs: &Needs, kv: KvCacheType) -> u64 {
    needs.weights.saturating_add(kv.bytes(needs.kv_elements))
}

/// Sequences decoded together when `OLLAMA_NUM_PARALLEL` is unset: 4, or fewer when a runner
/// with that many would take more than three quarters of the available memory (`needs(p)` is the
/// estimate for `p` sequences).
fn auto_parallel(needs: impl Fn(u32) -> u64, available: Option<u64>) -> u32 {
    let Some(available) = available else { return 4 };
    [4, 2].into_iter().find(|p| needs(*p) <= available / 4 * 3).unwrap_or(1)
}

/// Free memory of the GPUs a model may use (none with `num_gpu` 0), as the probe saw it at start.
fn gpu_room(state: &AppState, num_gpu: i32) -> u64 {
    if num_gpu == 0 {
        return 0;
    }
    crate::placement::Gpu::from_devices(&state.config.backends.devices, |_| 0)
        .iter()
        .map(|g| g.free.saturating_sub(crate::placement::FIT_MARGIN + state.config.gpu.overhead))
        .sum()
}

/// Schedules a runner for `resolved` with `opts`.
pub async fn acquire(
    state: &AppState,
    r: &Resolved,
    opts: &options::Effective,
    keep_alive: KeepAlive,
) -> Result<Lease, ApiError> {
    let weights = std::fs::metadata(&opts.load.model_path).map(|m| m.len()).unwrap_or(0);
    let mut options = opts.load.clone();
    let kv = state.config.gpu.kv_cache_type;
    if options.parallel == 0 {
        let room = crate::sched::available_memory().map(|host| host.saturating_add(gpu_room(state, options.num_gpu)));
        options.parallel = auto_parallel(|p| estimate(&needs(&r.gguf, weights, options.num_ctx, p), kv), room);
    }
    let needs = needs(&r.gguf, weights, options.num_ctx, options.parallel);
    let config = &r.model.config;
    let req = LoadRequest {
        name: r.short_name(),
        digest: r.model.digest.hex(),
        details: corral_types::api::ModelDetails {
            parent_model: r.model.parent_model.clone(),
            format: config.model_format.clone(),
            family: config.model_family.clone(),
            families: config.model_families.clone(),
            parameter_size: config.model_type.clone(),
            quantization_level: config.file_type.clone(),
        },
        estimate: estimate(&needs, kv),
        needs,
        options,
        keep_alive,
    };
    Ok(state.scheduler.acquire(req).await?)
}

/// Which response shape to produce.
pub enum Kind {
    Generate { context: bool },
    Chat,
}

/// Builds response chunks.
pub struct Reply {
    pub kind: Kind,
    pub model: String,
    pub started: Instant,
    pub load_ns: u64,
}

impl Reply {
    fn value(&self, delta: Delta, end: End<'_>) -> Value {
        let (done_reason, finished) = match end {
            End::No => (None, None),
            End::Immediately(reason) => (Some(reason.to_string()), None),
            End::After(f) => (Some(f.reason.clone()), Some(f)),
        };
        let metrics = match finished {
            Some(f) => Metrics {
                total_duration: Some(self.started.elapsed().as_nanos() as u64),
                load_duration: Some(self.load_ns),
                prompt_eval_count: Some(f.usage.prompt_tokens),
                prompt_eval_duration: Some(f.usage.prompt_ns),
                eval_count: Some(f.usage.generated_tokens),
                eval_duration: Some(f.usage.generation_ns),
            },
            None => Metrics::default(),
        };
        let done = done_reason.is_some();
        let logprobs = (!delta.logprobs.is_empty()).then_some(delta.logprobs);
        let thinking = (!delta.thinking.is_empty()).then_some(delta.thinking);
        let v = match self.kind {
            Kind::Generate { context } => serde_json::to_value(GenerateResponse {
                model: self.model.clone(),
                created_at: Utc::now(),
                response: delta.content,
                thinking,
                done,
                done_reason,
                context: finished.and_then(|f| context.then(|| f.tokens.clone())),
                metrics,
                logprobs,
            }),
            Kind::Chat => serde_json::to_value(ChatResponse {
                model: self.model.clone(),
                created_at: Utc::now(),
                message: Message {
                    role: "assistant".into(),
                    content: delta.content,
                    thinking,
                    tool_calls: (!delta.calls.is_empty()).then(|| delta.calls.iter().map(|c| c.native()).collect()),
                    ..Default::default()
                },
                done,
                done_reason,
                metrics,
                logprobs,
            }),
        };
        v.expect("responses serialise")
    }

    /// A final answer with no generation (`done_reason` `load` or `unload`).
    pub fn immediate(&self, reason: &str) -> Response {
        Json(self.value(Delta::default(), End::Immediately(reason))).into_response()
    }
}

/// Whether, and how, a chunk ends the answer.
enum End<'a> {
    No,
    /// Done without generating (`load`, `unload`): no metrics, no context.
    Immediately(&'a str),
    /// Done after generating: the reason, counts and timings, and the tokens for `context`.
    After(&'a Finish),
}

/// Answers in Ollama's native format: NDJSON chunks, or one object with `"stream": false`. The
/// lease is held until the answer ends, and a client that disconnects cancels the generation,
/// prompt processing included.
pub async fn respond(streaming: bool, reply: Reply, answer: Answer) -> Response {
    if !streaming {
        return match answer.collect().await {
            Ok(Collected { delta, finish: Some(f) }) => Json(reply.value(delta, End::After(&f))).into_response(),
            Ok(Collected { finish: None, .. }) => ApiError::internal(crate::runner::RUNNER_STOPPED).into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        };
    }
    answer_stream(answer, Framing::Ndjson, move |event| match event {
        Some(Event::Delta(d)) => vec![to_line(&reply.value(d, End::No))],
        Some(Event::Done(f)) => vec![to_line(&reply.value(Delta::default(), End::After(&f)))],
        Some(Event::Error(error)) => {
            tracing::warn!("generation failed mid-stream: {error}");
            vec![to_line(&serde_json::json!({ "error": error }))]
        }
        None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_follows_memory() {
        let needs = |p: u32| 1000 + 500 * u64::from(p);
        assert_eq!(auto_parallel(needs, None), 4);
        assert_eq!(auto_parallel(needs, Some(10_000)), 4);
        assert_eq!(auto_parallel(needs, Some(2_700)), 2);
        assert_eq!(auto_parallel(needs, Some(1_000)), 1);
    }
}
