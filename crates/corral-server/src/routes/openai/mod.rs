//! OpenAI's API (`/v1/chat/completions`, `/v1/completions`, `/v1/models`): a translator into the
//! native chat and generate requests and back, with OpenAI's error object and SSE framing.
//!
//! Defaults follow Ollama's translation: `stream` off, `temperature` and `top_p` 1.0 when absent.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::{FunctionCall, Message, ToolCall};
use corral_types::format::json_type;
use corral_types::runner::Constraint;
use serde::Deserialize;
use serde_json::{json, Map, Value};

mod chunks;
pub(super) mod transcribe;
mod wire;

use chunks::{ChatChunks, TextChunks};

use wire::{ChatChoice, Envelope, FinishReason, Logprobs, MessageToolCall, Model, ModelList, TextChoice, Usage};

use crate::extract::{ContextHint, JsonBody};
use crate::infer::answer::Collected;
use crate::infer::options;
use crate::infer::request::{Chat, ContentPart, Generate, RequestSettings, Think};
use crate::infer::start::{start_chat, start_generate, Started};
use crate::stream::{answer_stream, Framing};
use crate::{ApiError, AppState};
use corral_types::params::Options;

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
    fn options(&self) -> Result<Options, ApiError> {
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
        Ok(Options {
            temperature: Some(self.temperature.unwrap_or(1.0) as f32),
            top_p: Some(self.top_p.filter(|p| *p != 0.0).unwrap_or(1.0) as f32),
            num_predict: self.max_completion_tokens.or(self.max_tokens),
            stop,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty.map(|p| p as f32),
            presence_penalty: self.presence_penalty.map(|p| p as f32),
            ..Options::default()
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
    tool_calls: Option<Vec<InToolCall>>,
    tool_call_id: Option<String>,
    reasoning: Option<String>,
}

/// A tool call of an assistant message as OpenAI's clients send it back.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InToolCall {
    id: Option<String>,
    function: InFunction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InFunction {
    name: String,
    /// A JSON string as OpenAI writes it; an object is taken too.
    arguments: Value,
}

impl InToolCall {
    /// The call, `index`-th of its message, with its arguments decoded (an empty string is `{}`).
    fn native(self, index: usize) -> Result<ToolCall, ApiError> {
        let arguments = match self.function.arguments {
            Value::String(s) if s.trim().is_empty() => Map::new(),
            Value::String(s) => serde_json::from_str::<Map<String, Value>>(&s)
                .map_err(|_| ApiError::bad_request("invalid tool call arguments"))?,
            Value::Object(o) => o,
            _ => Map::new(),
        };
        Ok(ToolCall { id: self.id, index, function: FunctionCall { name: self.function.name, arguments } })
    }
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

/// A message's `content`: a string is one text part, null none, an array its parts; any other
/// shape, part type or image is a 400 naming it.
fn content_parts(content: Value) -> Result<Vec<ContentPart>, ApiError> {
    let parts = match content {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => return Ok(vec![ContentPart::Text(s)]),
        Value::Array(parts) => parts,
        other => return Err(ApiError::bad_request(format!("invalid message content type: {}", json_type(&other)))),
    };
    parts
        .iter()
        .map(|part| match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(ContentPart::Text(part.get("text").and_then(Value::as_str).unwrap_or("").into())),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                    .ok_or_else(|| ApiError::bad_request("invalid image input"))?;
                Ok(ContentPart::Image(image(url)?))
            }
            // Sound travels with the images, as in Ollama (the runner tells them apart by their bytes).
            Some("input_audio") => {
                let audio = part.get("input_audio").filter(|a| a.is_object());
                let audio = audio.ok_or_else(|| ApiError::bad_request("invalid input_audio format"))?;
                let data = audio.get("data").and_then(Value::as_str);
                let data = data.ok_or_else(|| ApiError::bad_request("invalid input_audio format: missing data"))?;
                Ok(ContentPart::Image(data.to_string()))
            }
            other => {
                Err(ApiError::bad_request(format!("invalid message content part type: {}", other.unwrap_or("(none)"))))
            }
        })
        .collect()
}

/// OpenAI messages as native ones: text parts joined, images as base64, tool calls with their
/// arguments decoded, tool results named after the call they answer.
fn messages(input: Vec<ChatMessage>) -> Result<Vec<Message>, ApiError> {
    let mut out: Vec<Message> = Vec::new();
    for m in input {
        let mut msg = Message::new(&m.role.to_ascii_lowercase(), "");
        for part in content_parts(m.content)? {
            part.add_to(&mut msg);
        }
        msg.thinking = m.reasoning;
        if let Some(calls) = m.tool_calls {
            msg.tool_calls = Some(calls.into_iter().enumerate().map(|(i, c)| c.native(i)).collect::<Result<_, _>>()?);
        }
        if msg.role == "tool" {
            msg.tool_call_id = m.tool_call_id.clone();
            msg.tool_name = m.name.or_else(|| {
                let id = m.tool_call_id.as_deref()?;
                out.iter()
                    .rev()
                    .flat_map(|p| p.tool_calls.iter().flatten())
                    .find(|c| c.id.as_deref() == Some(id))
                    .map(|c| c.function.name.clone())
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
        settings: RequestSettings {
            format,
            think: effort.as_deref().map(think).transpose()?,
            logprobs: options::logprobs(req.logprobs, req.top_logprobs)?,
            debug_render_only: req.debug_render_only,
            ..RequestSettings::new(req.sampling.options()?)
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
    hint: ContextHint,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let model = req.model.clone();
    let streaming = req.stream;
    let (mut native, include_usage) = native_chat(req)?;
    hint.apply(&mut native.settings.options);
    match start_chat(&state, native, false).await? {
        Started::Rendered(prompt) => Ok(super::native::debug_response(&model, true, prompt)),
        Started::Immediate(..) => Err(ApiError::bad_request("[] is too short - 'messages'")),
        Started::Answer(answer, _) if streaming => {
            Ok(answer_stream(answer, Framing::Sse, ChatChunks::new(Head::new("chatcmpl", &model), include_usage)))
        }
        Started::Answer(answer, _) => {
            let all = answer.collect().await?;
            Ok(Json(chat_completion(&model, all)).into_response())
        }
    }
}

fn chat_completion(model: &str, all: Collected) -> Envelope<ChatChoice> {
    let Collected { delta, finish } = all;
    let calls = !delta.calls.is_empty();
    let message = wire::ChatMessage {
        role: "assistant",
        content: delta.content,
        reasoning: (!delta.thinking.is_empty()).then_some(delta.thinking),
        tool_calls: calls.then(|| MessageToolCall::list(&delta.calls)),
    };
    let choice = ChatChoice {
        index: 0,
        message,
        finish_reason: finish.as_ref().map(|f| FinishReason::of(f, calls)),
        logprobs: (!delta.logprobs.is_empty()).then(|| Logprobs::of(&delta.logprobs)),
    };
    Head::new("chatcmpl", model).with("chat.completion", vec![choice], Some(finish.as_ref().map(Usage::of)))
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
    hint: ContextHint,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let prompt = match &req.prompt {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => return Err(ApiError::bad_request(format!("invalid type for 'prompt' field: {}", json_type(other)))),
    };
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let native = Generate {
        model: req.model.clone(),
        prompt,
        suffix: req.suffix.clone(),
        settings: RequestSettings {
            logprobs: options::logprobs(req.logprobs.is_some_and(|n| n > 0), req.logprobs.filter(|n| *n > 0))?,
            debug_render_only: req.debug_render_only,
            ..RequestSettings::new(req.sampling.options()?)
        },
        ..Default::default()
    };
    let mut native = native;
    hint.apply(&mut native.settings.options);
    let model = req.model;
    match start_generate(&state, native).await? {
        Started::Rendered(prompt) => Ok(super::native::debug_response(&model, false, prompt)),
        Started::Immediate(..) => {
            let choice = TextChoice { text: String::new(), index: 0, finish_reason: Some(FinishReason::Stop) };
            let v = Head::new("cmpl", &model).with("text_completion", vec![choice], Some(Some(Usage::default())));
            Ok(Json(v).into_response())
        }
        Started::Answer(answer, _) if req.stream => {
            Ok(answer_stream(answer, Framing::Sse, TextChunks { head: Head::new("cmpl", &model), include_usage }))
        }
        Started::Answer(answer, _) => {
            let Collected { delta, finish } = answer.collect().await?;
            let reason = finish.as_ref().map(|f| FinishReason::of(f, false));
            let choice = TextChoice { text: delta.content, index: 0, finish_reason: reason };
            let usage = Some(finish.as_ref().map(Usage::of));
            Ok(Json(Head::new("cmpl", &model).with("text_completion", vec![choice], usage)).into_response())
        }
    }
}

/// One model as OpenAI lists it.
fn model_object(name: &corral_types::ModelName, modified: SystemTime) -> Model {
    let created = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Model { id: name.display_shortest(), object: "model", created, owned_by: name.namespace().to_string() }
}

pub(super) async fn models(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models = state.store.run(|store| store.list()).await?;
    let data: Vec<Model> = models.iter().map(|m| model_object(&m.name, m.modified)).collect();
    Ok(Json(ModelList { object: "list", data: (!data.is_empty()).then_some(data) }))
}

pub(super) async fn model(State(state): State<AppState>, Path(model): Path<String>) -> Result<Response, ApiError> {
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
}
