//! OpenAI's API (`/v1/chat/completions`, `/v1/completions`, `/v1/models`): a translator into the
//! native chat and generate requests and back, with OpenAI's error object and SSE framing.
//!
//! Defaults follow Ollama's translation: `stream` off, `temperature` and `top_p` 1.0 when absent.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::Message;
use corral_types::format::json_type;
use corral_types::runner::Constraint;
use serde::Deserialize;
use serde_json::{json, Value};

mod wire;

use wire::{
    ChatChoice, ChunkChoice, ChunkDelta, Envelope, FinishReason, Logprobs, Model, ModelList, TextChoice, ToolCall,
    Usage,
};

use crate::error::Protocol;
use crate::extract::JsonBody;
use crate::infer::answer::{Answer, Collected, Delta, Event};
use crate::infer::options;
use crate::infer::request::{Chat, Generate, Overlay, Settings, Think};
use crate::infer::start::{start_chat, start_generate, Started};
use crate::stream::{answer_stream, sse, Framing};
use crate::{ApiError, AppState};

/// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
pub(super) fn error(e: ApiError) -> Response {
    e.respond(Protocol::OpenAi)
}

/// An `{"error": …}` event ending a stream that failed after it started.
fn stream_error(e: &ApiError) -> String {
    sse(None, &json!({"error": {"message": e.message, "type": e.openai_type(), "param": null, "code": null}}))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn request_id(prefix: &str) -> String {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    format!("{prefix}-{}", u16::from_le_bytes(b) % 999)
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields shared by chat and completions.
#[derive(Debug, Default, Deserialize)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    stop: Option<Value>,
    seed: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
}

impl Sampling {
    /// The native options these stand for (OpenAI's defaults: `temperature` and `top_p` 1).
    fn overlay(&self) -> Result<Overlay, ApiError> {
        let stop = match &self.stop {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        bad => Err(ApiError::bad_request(format!("invalid type for 'stop' field: {}", json_type(bad)))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => {
                return Err(ApiError::bad_request(format!("invalid type for 'stop' field: {}", json_type(other))))
            }
        };
        Ok(Overlay {
            temperature: Some(self.temperature.unwrap_or(1.0) as f32),
            top_p: Some(self.top_p.filter(|p| *p != 0.0).unwrap_or(1.0) as f32),
            num_predict: self.max_completion_tokens.or(self.max_tokens),
            stop,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty.map(|p| p as f32),
            presence_penalty: self.presence_penalty.map(|p| p as f32),
            ..Overlay::default()
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ChatCompletionRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: Sampling,
    response_format: Option<Value>,
    tools: Option<Vec<Value>>,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<i64>,
    reasoning_effort: Option<String>,
    reasoning: Option<Value>,
    #[serde(default, rename = "_debug_render_only")]
    debug_render_only: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Value,
    name: Option<String>,
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
    reasoning: Option<String>,
}

/// `reasoning_effort` (or the Responses API's `reasoning.effort`) as a thinking level.
pub(super) fn think(effort: &str) -> Result<Think, ApiError> {
    let level = |l: &str| Think::Level(l.to_string());
    Ok(match effort {
        "none" => Think::Off,
        "minimal" => level("low"),
        "low" | "medium" | "high" | "max" => level(effort),
        "xhigh" | "ultra" => level("max"),
        other => return Err(ApiError::bad_request(format!("invalid reasoning value: '{other}'"))),
    })
}

/// The base64 data of a `data:image/…;base64,` URL.
fn image(url: &str) -> Result<String, ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::bad_request(
            "image URLs are not currently supported, please use base64 encoded data instead",
        ));
    }
    let (head, data) = url.split_once(',').ok_or_else(|| ApiError::bad_request("invalid image input"))?;
    let ok = head
        .strip_prefix("data:")
        .and_then(|h| h.strip_suffix(";base64"))
        .is_some_and(|t| ["", "image/jpeg", "image/jpg", "image/png", "image/webp"].contains(&t));
    if !ok {
        return Err(ApiError::bad_request("invalid image input"));
    }
    Ok(data.to_string())
}

/// OpenAI messages as native ones: text parts joined, images as base64, tool calls with their
/// arguments decoded, tool results named after the call they answer.
fn messages(input: Vec<ChatMessage>) -> Result<Vec<Message>, ApiError> {
    let mut out: Vec<Message> = Vec::new();
    for m in input {
        let mut msg = Message::new(&m.role.to_ascii_lowercase(), "");
        match m.content {
            Value::Null => {}
            Value::String(s) => msg.content = s,
            Value::Array(parts) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => msg.content.push_str(part.get("text").and_then(Value::as_str).unwrap_or("")),
                        Some("image_url") => {
                            let url = part
                                .get("image_url")
                                .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                                .ok_or_else(|| ApiError::bad_request("invalid image input"))?;
                            msg.images.get_or_insert_with(Vec::new).push(image(url)?);
                        }
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "invalid message content part type: {}",
                                other.unwrap_or("(none)")
                            )))
                        }
                    }
                }
            }
            other => return Err(ApiError::bad_request(format!("invalid message content type: {}", json_type(&other)))),
        }
        msg.thinking = m.reasoning;
        if let Some(calls) = m.tool_calls {
            let mut native = Vec::new();
            for c in calls {
                let f = c.get("function").cloned().unwrap_or_default();
                let args = match f.get("arguments") {
                    Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| ApiError::bad_request("invalid tool call arguments"))?,
                    Some(v @ Value::Object(_)) => v.clone(),
                    _ => json!({}),
                };
                native.push(json!({"id": c.get("id"), "function": {"name": f.get("name"), "arguments": args}}));
            }
            msg.tool_calls = Some(native);
        }
        if msg.role == "tool" {
            msg.tool_call_id = m.tool_call_id.clone();
            msg.tool_name = m.name.or_else(|| {
                let id = m.tool_call_id.as_deref()?;
                out.iter().rev().flat_map(|p| p.tool_calls.iter().flatten()).find_map(|c| {
                    (c.get("id").and_then(Value::as_str) == Some(id))
                        .then(|| c["function"]["name"].as_str().map(String::from))
                        .flatten()
                })
            });
        }
        out.push(msg);
    }
    Ok(out)
}

fn native_chat(req: ChatCompletionRequest) -> Result<(Chat, bool), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("[] is too short - 'messages'"));
    }
    let format = match &req.response_format {
        None | Some(Value::Null) => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("json_object") => Some(Constraint::Json),
            Some("json_schema") => {
                let schema = f.get("json_schema").and_then(|s| s.get("schema")).cloned().unwrap_or(json!({}));
                options::constraint(Some(&schema))?
            }
            Some("text") | None => None,
            Some(other) => return Err(ApiError::bad_request(format!("invalid response_format type: {other}"))),
        },
    };
    let effort =
        req.reasoning_effort.clone().or_else(|| req.reasoning.as_ref()?.get("effort")?.as_str().map(String::from));
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let native = Chat {
        model: req.model,
        messages: messages(req.messages)?,
        tools: req.tools.unwrap_or_default(),
        truncate: true,
        template: None,
        settings: Settings {
            format,
            think: effort.as_deref().map(think).transpose()?,
            logprobs: options::logprobs(req.logprobs, req.top_logprobs)?,
            debug_render_only: req.debug_render_only,
            ..Settings::new(req.sampling.overlay()?)
        },
    };
    Ok((native, include_usage))
}

/// The envelope shared by every completion object of one answer.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(prefix: &str, model: &str) -> Self {
        Head { id: request_id(prefix), created: now(), model: model.to_string() }
    }

    fn with<C>(&self, object: &'static str, choices: Vec<C>, usage: Option<Option<Usage>>) -> Envelope<C> {
        Envelope {
            id: self.id.clone(),
            object,
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: "fp_ollama",
            choices,
            usage,
        }
    }
}

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    body: Result<JsonBody<ChatCompletionRequest>, ApiError>,
) -> Response {
    let run = async {
        let JsonBody(req) = body?;
        let model = req.model.clone();
        let streaming = req.stream;
        let (native, include_usage) = native_chat(req)?;
        match start_chat(&state, native, false).await? {
            Started::Rendered(prompt) => Ok(super::native::debug_response(&model, true, prompt)),
            Started::Immediate(..) => Err(ApiError::bad_request("[] is too short - 'messages'")),
            Started::Answer(answer, _) if streaming => Ok(stream_chat(answer, &model, include_usage)),
            Started::Answer(answer, _) => {
                let all = answer.collect().await?;
                Ok(Json(chat_completion(&model, all)).into_response())
            }
        }
    };
    run.await.unwrap_or_else(error)
}

fn chat_completion(model: &str, all: Collected) -> Envelope<ChatChoice> {
    let Collected { delta, finish } = all;
    let calls = !delta.calls.is_empty();
    let message = wire::ChatMessage {
        role: "assistant",
        content: delta.content,
        reasoning: (!delta.thinking.is_empty()).then_some(delta.thinking),
        tool_calls: calls.then(|| ToolCall::list(&delta.calls)),
    };
    let choice = ChatChoice {
        index: 0,
        message,
        finish_reason: finish.as_ref().map(|f| FinishReason::of(f, calls)),
        logprobs: (!delta.logprobs.is_empty()).then(|| Logprobs::of(&delta.logprobs)),
    };
    Head::new("chatcmpl", model).with("chat.completion", vec![choice], Some(finish.as_ref().map(Usage::of)))
}

fn stream_chat(answer: Answer, model: &str, include_usage: bool) -> Response {
    let head = Head::new("chatcmpl", model);
    let mut first = true;
    let mut any_calls = false;
    answer_stream(answer, Framing::Sse, move |event| {
        let chunk = |delta: ChunkDelta, finish: Option<FinishReason>, logprobs: Option<Logprobs>| {
            let choice = ChunkChoice { index: 0, delta, finish_reason: finish, logprobs };
            sse(None, &head.with("chat.completion.chunk", vec![choice], None))
        };
        match event {
            Some(Event::Delta(d)) => {
                let mut out = Vec::new();
                let Delta { content, thinking, calls, logprobs: lps } = d;
                let mut delta = ChunkDelta::default();
                if first {
                    delta.role = Some("assistant");
                    first = false;
                }
                if !thinking.is_empty() {
                    // Reasoning goes in a chunk of its own, as Ollama does.
                    out.push(chunk(ChunkDelta { reasoning: Some(thinking), ..delta }, None, None));
                    delta = ChunkDelta::default();
                }
                if !content.is_empty() || !calls.is_empty() || !lps.is_empty() {
                    delta.content = Some(content);
                    if !calls.is_empty() {
                        any_calls = true;
                        delta.tool_calls = Some(ToolCall::list(&calls));
                    }
                    out.push(chunk(delta, None, (!lps.is_empty()).then(|| Logprobs::of(&lps))));
                }
                out
            }
            Some(Event::Done(f)) => {
                let mut out = vec![chunk(ChunkDelta::default(), Some(FinishReason::of(&f, any_calls)), None)];
                if include_usage {
                    let usage = head.with::<ChunkChoice>("chat.completion.chunk", vec![], Some(Some(Usage::of(&f))));
                    out.push(sse(None, &usage));
                }
                out.push("data: [DONE]\n\n".to_string());
                out
            }
            Some(Event::Error(e)) => vec![stream_error(&e)],
            None => Vec::new(),
        }
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct CompletionRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Value,
    suffix: Option<String>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<i64>,
    #[serde(default, rename = "_debug_render_only")]
    debug_render_only: bool,
}

pub(super) async fn completions(
    State(state): State<AppState>,
    body: Result<JsonBody<CompletionRequest>, ApiError>,
) -> Response {
    let run = async {
        let JsonBody(req) = body?;
        let prompt = match &req.prompt {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => {
                return Err(ApiError::bad_request(format!("invalid type for 'prompt' field: {}", json_type(other))))
            }
        };
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let native = Generate {
            model: req.model.clone(),
            prompt,
            suffix: req.suffix.clone(),
            settings: Settings {
                logprobs: options::logprobs(req.logprobs.is_some_and(|n| n > 0), req.logprobs.filter(|n| *n > 0))?,
                debug_render_only: req.debug_render_only,
                ..Settings::new(req.sampling.overlay()?)
            },
            ..Default::default()
        };
        let model = req.model;
        match start_generate(&state, native).await? {
            Started::Rendered(prompt) => Ok(super::native::debug_response(&model, false, prompt)),
            Started::Immediate(..) => {
                let choice = TextChoice { text: String::new(), index: 0, finish_reason: Some(FinishReason::Stop) };
                let v = Head::new("cmpl", &model).with("text_completion", vec![choice], Some(Some(Usage::default())));
                Ok(Json(v).into_response())
            }
            Started::Answer(answer, _) if req.stream => Ok(stream_completion(answer, &model, include_usage)),
            Started::Answer(answer, _) => {
                let Collected { delta, finish } = answer.collect().await?;
                let reason = finish.as_ref().map(|f| FinishReason::of(f, false));
                let choice = TextChoice { text: delta.content, index: 0, finish_reason: reason };
                let usage = Some(finish.as_ref().map(Usage::of));
                Ok(Json(Head::new("cmpl", &model).with("text_completion", vec![choice], usage)).into_response())
            }
        }
    };
    run.await.unwrap_or_else(error)
}

fn stream_completion(answer: Answer, model: &str, include_usage: bool) -> Response {
    let head = Head::new("cmpl", model);
    answer_stream(answer, Framing::Sse, move |event| {
        let chunk = |text: &str, finish: Option<FinishReason>| {
            let choice = TextChoice { text: text.to_string(), index: 0, finish_reason: finish };
            // With usage asked for, every chunk carries zero counts until the last one.
            let usage = include_usage.then_some(Some(Usage::default()));
            sse(None, &head.with("text_completion", vec![choice], usage))
        };
        match event {
            Some(Event::Delta(d)) if !d.content.is_empty() => vec![chunk(&d.content, None)],
            Some(Event::Delta(_)) | None => Vec::new(),
            Some(Event::Done(f)) => {
                let mut out = vec![chunk("", Some(FinishReason::of(&f, false)))];
                if include_usage {
                    out.push(sse(None, &head.with::<TextChoice>("text_completion", vec![], Some(Some(Usage::of(&f))))));
                }
                out.push("data: [DONE]\n\n".to_string());
                out
            }
            Some(Event::Error(e)) => vec![stream_error(&e)],
        }
    })
}

/// One model as OpenAI lists it.
fn model_object(name: &corral_types::ModelName, modified: SystemTime) -> Model {
    let created = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Model { id: name.display_shortest(), object: "model", created, owned_by: name.namespace().to_string() }
}

pub(super) async fn models(State(state): State<AppState>) -> Response {
    let listed = state.store.run(|store| store.list()).await.map_err(ApiError::from);
    match listed {
        Ok(models) => {
            let data: Vec<Model> = models.iter().map(|m| model_object(&m.name, m.modified)).collect();
            Json(ModelList { object: "list", data: (!data.is_empty()).then_some(data) }).into_response()
        }
        Err(e) => error(e),
    }
}

pub(super) async fn model(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    let run = async {
        let name = crate::names::parse_name(&model)?;
        let asked = model.clone();
        let stored = state
            .store
            .run(move |store| {
                let found = store.read_manifest(&name);
                found.map_err(|_| ApiError::not_found(format!("model '{model}' not found")))
            })
            .await?;
        // The id is the name as asked (`acc-chat`, not `acc-chat:latest`), as Ollama answers:
        // clients compare it with the name they configured.
        Ok(Json(Model { id: asked, ..model_object(&stored.name, stored.modified) }).into_response())
    };
    run.await.unwrap_or_else(error)
}
