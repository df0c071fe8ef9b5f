//! Anthropic's Messages API (`POST /v1/messages`): a translator into the native chat request and
//! back, with Anthropic's content blocks, stop reasons, error shape and streaming events
//! (`message_start`, `ping`, `content_block_start|delta|stop`, `message_delta`, `message_stop`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::{FunctionCall, Message, ToolCall};
use corral_types::runner::DoneReason;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

use crate::extract::{ContextHint, JsonBody};
use crate::infer::request::{Chat, ContentPart, RequestSettings, Think};
use crate::infer::start::{count_chat_tokens, start_chat, Started};
use corral_types::params::Options;
mod events;
mod wire;

use events::MessageEvents;

use wire::{Block, Usage};

use crate::infer::answer::{random_hex, Collected, Finish};
use crate::stream::{answer_stream, Framing};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub(super) struct MessagesRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    max_tokens: i64,
    #[serde(default)]
    messages: Vec<InMessage>,
    system: Option<Value>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    stop_sequences: Option<Vec<String>>,
    tools: Option<Vec<Value>>,
    thinking: Option<Value>,
    /// `{"effort": "low" | "medium" | "high" | "max"}`: how hard to think when `thinking` is absent.
    output_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Value,
}

/// Text of a `string | [{type: "text", text}]` value.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// One content block of a message, as clients send them.
enum InBlock {
    Part(ContentPart),
    Thinking(String),
    /// Its content is encrypted: dropped.
    RedactedThinking,
    ToolUse {
        id: Option<String>,
        function: FunctionCall,
    },
    /// A tool's result (its text) for the call `id`.
    ToolResult {
        id: String,
        text: String,
    },
}

impl InBlock {
    /// A block by its `type`; an image must be base64 data, any other type is a 400 naming it.
    fn parse(b: &Value) -> Result<InBlock, ApiError> {
        let str_of = |key: &str| b.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => InBlock::Part(ContentPart::Text(str_of("text"))),
            "image" => {
                let source = b.get("source").cloned().unwrap_or_default();
                let kind = source.get("type").and_then(Value::as_str).unwrap_or_default();
                if kind != "base64" {
                    return Err(ApiError::bad_request(format!(
                        "invalid image source type: {kind}. Only base64 images are supported."
                    )));
                }
                InBlock::Part(ContentPart::Image(source.get("data").and_then(Value::as_str).unwrap_or_default().into()))
            }
            "thinking" => InBlock::Thinking(str_of("thinking")),
            "redacted_thinking" => InBlock::RedactedThinking,
            "tool_use" => InBlock::ToolUse {
                id: b.get("id").and_then(Value::as_str).map(String::from),
                function: FunctionCall {
                    name: str_of("name"),
                    arguments: b.get("input").and_then(Value::as_object).cloned().unwrap_or_default(),
                },
            },
            "tool_result" => InBlock::ToolResult {
                id: str_of("tool_use_id"),
                text: text_of(b.get("content").unwrap_or(&Value::Null)),
            },
            other => return Err(ApiError::bad_request(format!("unsupported content block type: {other:?}"))),
        })
    }
}

/// Anthropic messages as native ones: a user turn's `tool_result` blocks become `tool` messages,
/// an assistant's `tool_use` blocks its tool calls, `thinking` blocks its thinking.
fn messages(system: Option<&Value>, input: Vec<InMessage>) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    if let Some(s) = system {
        let text = text_of(s);
        if !text.is_empty() {
            out.push(Message::new("system", &text));
        }
    }
    // Tool names by call id, for the results that name only the call.
    let mut names: HashMap<String, String> = HashMap::new();
    for m in input {
        let role = m.role.to_ascii_lowercase();
        let blocks = match m.content {
            Value::String(s) => {
                out.push(Message::new(&role, &s));
                continue;
            }
            Value::Array(blocks) => blocks,
            other => {
                return Err(ApiError::bad_request(format!("invalid content for a {role} message: {other}")));
            }
        };
        let mut msg = Message::new(&role, "");
        for block in blocks.iter().map(InBlock::parse) {
            match block? {
                InBlock::Part(part) => part.add_to(&mut msg),
                InBlock::Thinking(t) => msg.thinking.get_or_insert_with(String::new).push_str(&t),
                InBlock::RedactedThinking => {}
                InBlock::ToolUse { id, function } => {
                    if let Some(i) = &id {
                        names.insert(i.clone(), function.name.clone());
                    }
                    let calls = msg.tool_calls.get_or_insert_with(Vec::new);
                    calls.push(ToolCall { id, index: calls.len(), function });
                }
                InBlock::ToolResult { id, text } => {
                    let mut result = Message::new("tool", &text);
                    result.tool_name = names.get(&id).cloned();
                    result.tool_call_id = Some(id);
                    out.push(result);
                }
            }
        }
        if !msg.content.is_empty() || msg.images.is_some() || msg.tool_calls.is_some() || msg.thinking.is_some() {
            out.push(msg);
        }
    }
    Ok(out)
}

fn native(req: MessagesRequest) -> Result<Chat, ApiError> {
    if req.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    if req.max_tokens <= 0 {
        return Err(ApiError::bad_request("max_tokens is required and must be positive"));
    }
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("messages is required"));
    }
    let options = Options {
        num_predict: Some(req.max_tokens),
        temperature: req.temperature.map(|t| t as f32),
        top_p: req.top_p.map(|p| p as f32),
        top_k: req.top_k,
        stop: req.stop_sequences.filter(|s| !s.is_empty()),
        ..Options::default()
    };
    let tools = req.tools.map(|tools| {
        tools
            .into_iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.get("name"),
                    "description": t.get("description"), "parameters": t.get("input_schema")}})
            })
            .collect::<Vec<_>>()
    });
    let think = req.thinking.as_ref().and_then(|t| match t.get("type").and_then(Value::as_str) {
        Some("enabled") => Some(Think::On),
        Some("disabled") => Some(Think::Off),
        _ => None,
    });
    // An effort says how hard to think when `thinking` does not say whether to (as Ollama).
    let effort = req.output_config.as_ref().and_then(|c| c.get("effort")).and_then(Value::as_str);
    let think = think.or_else(|| match effort? {
        level @ ("low" | "medium" | "high" | "max") => Some(Think::Level(level.to_string())),
        "xhigh" => Some(Think::Level("high".into())),
        _ => None,
    });
    let think_budget = req
        .thinking
        .as_ref()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, u64::from(u32::MAX)) as u32);
    Ok(Chat {
        model: req.model,
        messages: messages(req.system.as_ref(), req.messages)?,
        tools: tools.unwrap_or_default(),
        truncate: true,
        template: None,
        settings: RequestSettings { think, think_budget, ..RequestSettings::new(options) },
    })
}

fn stop_reason(f: &Finish, calls: bool) -> &'static str {
    match f.reason {
        _ if calls => "tool_use",
        DoneReason::Length => "max_tokens",
        DoneReason::Stop => "end_turn",
    }
}

pub(super) async fn messages_route(
    State(state): State<AppState>,
    hint: ContextHint,
    JsonBody(req): JsonBody<MessagesRequest>,
) -> Result<Response, ApiError> {
    let model = req.model.clone();
    let streaming = req.stream;
    // A rough count for `message_start`, before the prompt is tokenized (as Ollama does).
    let estimate =
        serde_json::to_string(&req.messages.iter().map(|m| &m.content).collect::<Vec<_>>()).map_or(0, |s| s.len() / 4);
    let mut native = native(req)?;
    hint.apply(&mut native.settings.options);
    match start_chat(&state, native, true).await? {
        Started::Rendered(prompt) => Ok(super::native::debug_response(&model, true, prompt)),
        Started::Immediate(..) => Err(ApiError::bad_request("messages is required")),
        Started::Answer(answer, _) if streaming => {
            let events = MessageEvents::new(format!("msg_{}", random_hex(12)), &model, estimate);
            Ok(answer_stream(answer, Framing::Sse, events))
        }
        Started::Answer(answer, _) => {
            let all = answer.collect().await?;
            Ok(Json(message(&model, all)).into_response())
        }
    }
}

/// `POST /v1/messages/count_tokens`: the request of `/v1/messages` (without `max_tokens`) and
/// `{"input_tokens": N}`, N being exactly what the answer's `usage.input_tokens` would be: the
/// conversation rendered with the model's template and tokenized by its runner. Ollama does not
/// route it; Claude Code calls it.
pub(super) async fn count_tokens_route(
    State(state): State<AppState>,
    hint: ContextHint,
    JsonBody(mut req): JsonBody<MessagesRequest>,
) -> Result<Response, ApiError> {
    // Counting needs no answer length; the translation below asks for one.
    req.max_tokens = req.max_tokens.max(1);
    // The count loads the model as the answer will (the same context), so that the answer that
    // follows needs no second load.
    let mut native = native(req)?;
    hint.apply(&mut native.settings.options);
    let input_tokens = count_chat_tokens(&state, native, true).await?;
    Ok(Json(wire::TokenCount { input_tokens }).into_response())
}

fn message(model: &str, all: Collected) -> wire::Message {
    let Collected { delta, finish } = all;
    let mut content = Vec::new();
    if !delta.thinking.is_empty() {
        content.push(Block::Thinking { thinking: delta.thinking, signature: String::new() });
    }
    if !delta.content.is_empty() || delta.calls.is_empty() {
        content.push(Block::Text { text: delta.content });
    }
    content.extend(delta.calls.iter().map(|c| Block::tool_use(c, c.function.arguments.clone())));
    let (input, output, cached) =
        finish.as_ref().map_or((0, 0, 0), |f| (f.usage.prompt_tokens, f.usage.generated_tokens, f.usage.cached_tokens));
    wire::Message {
        id: format!("msg_{}", random_hex(12)),
        kind: "message",
        role: "assistant",
        model: model.to_string(),
        content,
        stop_reason: finish.as_ref().map(|f| stop_reason(f, !delta.calls.is_empty())),
        stop_sequence: None,
        usage: Usage {
            input_tokens: input.into(),
            output_tokens: output.into(),
            cache_read_input_tokens: Some(cached.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn think_of(extra: Value) -> Option<Think> {
        let mut body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        native(serde_json::from_value(body).unwrap()).unwrap().settings.think
    }

    #[test]
    fn thinking_and_effort_become_think_levels() {
        assert_eq!(think_of(json!({})), None);
        assert_eq!(think_of(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})), Some(Think::On));
        assert_eq!(think_of(json!({"thinking": {"type": "disabled"}})), Some(Think::Off));
        assert_eq!(think_of(json!({"output_config": {"effort": "low"}})), Some(Think::Level("low".into())));
        assert_eq!(think_of(json!({"output_config": {"effort": "xhigh"}})), Some(Think::Level("high".into())));
        // `thinking` says whether; it wins over an effort.
        let both = json!({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}});
        assert_eq!(think_of(both), Some(Think::Off));
    }
}
