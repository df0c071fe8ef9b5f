//! Anthropic's Messages API (`POST /v1/messages`): a translator into the native chat request and
//! back, with Anthropic's content blocks, stop reasons, error shape and streaming events
//! (`message_start`, `ping`, `content_block_start|delta|stop`, `message_delta`, `message_stop`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::Message;
use corral_types::runner::DoneReason;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::Protocol;
use crate::extract::JsonBody;
use crate::infer::request::{Chat, Overlay, Settings, Think};
use crate::infer::start::{count_chat_tokens, start_chat, Started};
mod wire;

use wire::{Block, BlockDelta, ErrorBody, Event, MessageDelta, Usage};

use crate::infer::answer::{random_hex, Answer, Collected, Delta, Event as AnswerEvent, Finish};
use crate::stream::{answer_stream, sse, Framing};
use crate::{ApiError, AppState};

/// Anthropic's error shape.
fn error(e: ApiError) -> Response {
    e.respond(Protocol::Anthropic)
}

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
    let mut names: Map<String, Value> = Map::new();
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
        for b in blocks {
            match b.get("type").and_then(Value::as_str).unwrap_or_default() {
                "text" => msg.content.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
                "image" => {
                    let source = b.get("source").cloned().unwrap_or_default();
                    let kind = source.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                    if kind != "base64" {
                        return Err(ApiError::bad_request(format!(
                            "invalid image source type: {kind}. Only base64 images are supported."
                        )));
                    }
                    let data = source.get("data").and_then(Value::as_str).unwrap_or_default().to_string();
                    msg.images.get_or_insert_with(Vec::new).push(data);
                }
                "thinking" => {
                    let t = b.get("thinking").and_then(Value::as_str).unwrap_or_default();
                    msg.thinking.get_or_insert_with(String::new).push_str(t);
                }
                "redacted_thinking" => {}
                "tool_use" => {
                    let id = b.get("id").cloned().unwrap_or_default();
                    let name = b.get("name").cloned().unwrap_or_default();
                    if let Some(i) = id.as_str() {
                        names.insert(i.to_string(), name.clone());
                    }
                    let input = b.get("input").cloned().filter(Value::is_object).unwrap_or(json!({}));
                    let call = json!({"id": id, "function": {"name": name, "arguments": input}});
                    msg.tool_calls.get_or_insert_with(Vec::new).push(call);
                }
                "tool_result" => {
                    let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default();
                    let mut result = Message::new("tool", &text_of(b.get("content").unwrap_or(&Value::Null)));
                    result.tool_call_id = Some(id.to_string());
                    result.tool_name = names.get(id).and_then(Value::as_str).map(String::from);
                    out.push(result);
                }
                other => return Err(ApiError::bad_request(format!("unsupported content block type: {other:?}"))),
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
    let options = Overlay {
        num_predict: Some(req.max_tokens),
        temperature: req.temperature.map(|t| t as f32),
        top_p: req.top_p.map(|p| p as f32),
        top_k: req.top_k,
        stop: req.stop_sequences.filter(|s| !s.is_empty()),
        ..Overlay::default()
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
        settings: Settings { think, think_budget, ..Settings::new(options) },
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
    body: Result<JsonBody<MessagesRequest>, ApiError>,
) -> Response {
    let run = async {
        let JsonBody(req) = body?;
        let model = req.model.clone();
        let streaming = req.stream;
        // A rough count for `message_start`, before the prompt is tokenized (as Ollama does).
        let estimate = serde_json::to_string(&req.messages.iter().map(|m| &m.content).collect::<Vec<_>>())
            .map_or(0, |s| s.len() / 4);
        let native = native(req)?;
        match start_chat(&state, native, true).await? {
            Started::Rendered(prompt) => Ok(super::native::debug_response(&model, true, prompt)),
            Started::Immediate(..) => Err(ApiError::bad_request("messages is required")),
            Started::Answer(answer, _) if streaming => Ok(stream(answer, &model, estimate)),
            Started::Answer(answer, _) => {
                let all = answer.collect().await?;
                Ok(Json(message(&model, all)).into_response())
            }
        }
    };
    run.await.unwrap_or_else(error)
}

/// `POST /v1/messages/count_tokens`: the request of `/v1/messages` (without `max_tokens`) and
/// `{"input_tokens": N}`, N being exactly what the answer's `usage.input_tokens` would be: the
/// conversation rendered with the model's template and tokenized by its runner. Ollama does not
/// route it; Claude Code calls it.
pub(super) async fn count_tokens_route(
    State(state): State<AppState>,
    body: Result<JsonBody<MessagesRequest>, ApiError>,
) -> Response {
    let run = async {
        let JsonBody(mut req) = body?;
        // Counting needs no answer length; the translation below asks for one.
        req.max_tokens = req.max_tokens.max(1);
        let input_tokens = count_chat_tokens(&state, native(req)?, true).await?;
        Ok(Json(wire::TokenCount { input_tokens }).into_response())
    };
    run.await.unwrap_or_else(error)
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
    content.extend(delta.calls.iter().map(|c| Block::tool_use(c, c.call.arguments.clone())));
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

/// Which content block is open while streaming.
#[derive(PartialEq, Clone, Copy)]
enum Open {
    Thinking,
    Text,
}

fn event(e: Event) -> String {
    sse(Some(e.name()), &e)
}

fn stream(answer: Answer, model: &str, estimate: usize) -> Response {
    let id = format!("msg_{}", random_hex(12));
    let model = model.to_string();
    let mut started = false;
    let mut open: Option<Open> = None;
    let mut index = 0usize;
    let mut any_calls = false;
    answer_stream(answer, Framing::Sse, move |next| {
        let mut out = Vec::new();
        if !started {
            started = true;
            let message = wire::Message {
                id: id.clone(),
                kind: "message",
                role: "assistant",
                model: model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage { input_tokens: estimate as u64, output_tokens: 0, cache_read_input_tokens: None },
            };
            out.push(event(Event::MessageStart { message }));
            out.push(event(Event::Ping));
        }
        let close = |out: &mut Vec<String>, open: &mut Option<Open>, index: &mut usize| {
            if open.take().is_some() {
                out.push(event(Event::ContentBlockStop { index: *index }));
                *index += 1;
            }
        };
        let text = |out: &mut Vec<String>, open: &mut Option<Open>, index: &mut usize, kind: Open, t: &str| {
            if *open != Some(kind) {
                close(out, open, index);
                let content_block = match kind {
                    Open::Thinking => Block::Thinking { thinking: String::new(), signature: String::new() },
                    Open::Text => Block::Text { text: String::new() },
                };
                out.push(event(Event::ContentBlockStart { index: *index, content_block }));
                *open = Some(kind);
            }
            let delta = match kind {
                Open::Thinking => BlockDelta::Thinking { thinking: t.to_string() },
                Open::Text => BlockDelta::Text { text: t.to_string() },
            };
            out.push(event(Event::ContentBlockDelta { index: *index, delta }));
        };
        match next {
            Some(AnswerEvent::Delta(Delta { content, thinking, calls, .. })) => {
                if !thinking.is_empty() {
                    text(&mut out, &mut open, &mut index, Open::Thinking, &thinking);
                }
                if !content.is_empty() {
                    text(&mut out, &mut open, &mut index, Open::Text, &content);
                }
                for c in &calls {
                    any_calls = true;
                    close(&mut out, &mut open, &mut index);
                    // The input arrives as JSON deltas; the block starts empty.
                    out.push(event(Event::ContentBlockStart { index, content_block: Block::tool_use(c, Map::new()) }));
                    let delta = BlockDelta::InputJson { partial_json: c.arguments_json() };
                    out.push(event(Event::ContentBlockDelta { index, delta }));
                    out.push(event(Event::ContentBlockStop { index }));
                    index += 1;
                }
            }
            Some(AnswerEvent::Done(f)) => {
                close(&mut out, &mut open, &mut index);
                let delta = MessageDelta { stop_reason: stop_reason(&f, any_calls), stop_sequence: None };
                let usage = Usage {
                    input_tokens: f.usage.prompt_tokens.into(),
                    output_tokens: f.usage.generated_tokens.into(),
                    cache_read_input_tokens: Some(f.usage.cached_tokens.into()),
                };
                out.push(event(Event::MessageDelta { delta, usage }));
                out.push(event(Event::MessageStop));
            }
            Some(AnswerEvent::Error(e)) => {
                out.push(event(Event::Error { error: ErrorBody { kind: e.anthropic_type(), message: e.message } }));
            }
            None => {}
        }
        out
    })
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
