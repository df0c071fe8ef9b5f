//! OpenAI's Responses API (`POST /v1/responses`), stateless as in Ollama: a translator into the
//! native chat request and back. `previous_response_id`, `store`, background runs and built-in
//! tools are not supported.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::Message;
use corral_types::runner::Constraint;
use corral_types::runner::DoneReason;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::infer::options;
use crate::infer::request::{Chat, Overlay, Settings};
use crate::infer::start::{start_chat, Started};
use super::openai::{error, think};
use crate::extract::JsonBody;
use crate::infer::answer::{random_hex, Answer, Call, Collected, Delta, Event, Finish};
use crate::stream::{answer_stream, sse, Framing};
use crate::{ApiError, AppState};

fn hex_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_hex(12))
}

#[derive(Debug, Deserialize)]
pub(super) struct ResponsesRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    instructions: Option<String>,
    tools: Option<Vec<Value>>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<i64>,
    reasoning: Option<Value>,
    text: Option<Value>,
    previous_response_id: Option<String>,
}

/// Text of a `string | [{type: input_text|output_text|text, text}]` content.
fn content_text(v: &Value) -> Result<(String, Vec<String>), ApiError> {
    match v {
        Value::String(s) => Ok((s.clone(), Vec::new())),
        Value::Array(parts) => {
            let (mut text, mut images) = (String::new(), Vec::new());
            for p in parts {
                match p.get("type").and_then(Value::as_str).unwrap_or_default() {
                    "input_text" | "output_text" | "text" => {
                        text.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default())
                    }
                    "input_image" => {
                        let url = p.get("image_url").and_then(Value::as_str).unwrap_or_default();
                        let data = url.split_once(";base64,").map(|(_, d)| d).ok_or_else(|| {
                            ApiError::bad_request(
                                "image URLs are not currently supported, please use base64 encoded data instead",
                            )
                        })?;
                        images.push(data.to_string());
                    }
                    other => return Err(ApiError::bad_request(format!("unsupported content part type {other:?}"))),
                }
            }
            Ok((text, images))
        }
        _ => Ok((String::new(), Vec::new())),
    }
}

/// Input items as native messages.
fn messages(instructions: Option<String>, input: &Value) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    if let Some(i) = instructions.filter(|i| !i.is_empty()) {
        out.push(Message::new("system", &i));
    }
    let items = match input {
        Value::String(s) => return Ok([out, vec![Message::new("user", s)]].concat()),
        Value::Array(items) => items,
        _ => return Err(ApiError::bad_request("input must be a string or an array of items")),
    };
    let mut names: Map<String, Value> = Map::new();
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let role = if role == "developer" { "system" } else { role };
                let (text, images) = content_text(item.get("content").unwrap_or(&Value::Null))?;
                let mut m = Message::new(role, &text);
                m.images = (!images.is_empty()).then_some(images);
                out.push(m);
            }
            "function_call" => {
                let call_id = item.get("call_id").cloned().unwrap_or_default();
                let name = item.get("name").cloned().unwrap_or_default();
                if let Some(id) = call_id.as_str() {
                    names.insert(id.to_string(), name.clone());
                }
                let args = match item.get("arguments") {
                    Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                        .ok()
                        .filter(Value::is_object)
                        .ok_or_else(|| ApiError::bad_request("invalid tool call arguments"))?,
                    _ => json!({}),
                };
                let call = json!({"id": call_id, "function": {"name": name, "arguments": args}});
                match out.last_mut() {
                    Some(m) if m.role == "assistant" && m.content.is_empty() => {
                        m.tool_calls.get_or_insert_with(Vec::new).push(call)
                    }
                    _ => {
                        let mut m = Message::new("assistant", "");
                        m.tool_calls = Some(vec![call]);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                let id = item.get("call_id").and_then(Value::as_str).unwrap_or_default();
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => content_text(v)?.0,
                    None => String::new(),
                };
                let mut m = Message::new("tool", &output);
                m.tool_call_id = Some(id.to_string());
                m.tool_name = names.get(id).and_then(Value::as_str).map(String::from);
                out.push(m);
            }
            "reasoning" => {}
            other => return Err(ApiError::bad_request(format!("unsupported input item type {other:?}"))),
        }
    }
    Ok(out)
}

fn native(req: &ResponsesRequest) -> Result<Chat, ApiError> {
    if req.previous_response_id.is_some() {
        return Err(ApiError::bad_request(
            "previous_response_id is not supported: this server is stateless, send the whole conversation",
        ));
    }
    let options = Overlay {
        temperature: Some(req.temperature.unwrap_or(1.0) as f32),
        top_p: Some(req.top_p.unwrap_or(1.0) as f32),
        num_predict: req.max_output_tokens,
        ..Overlay::default()
    };
    // Responses tools are flat (`{type, name, description, parameters}`).
    let tools = req.tools.as_ref().map(|tools| {
        tools
            .iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
            .map(|t| {
                json!({"type": "function", "function": {"name": t.get("name"), "description": t.get("description"),
                    "parameters": t.get("parameters")}})
            })
            .collect::<Vec<_>>()
    });
    let format = match req.text.as_ref().and_then(|t| t.get("format")) {
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => f.get("schema").map(|s| options::constraint(Some(s))).transpose()?.flatten(),
            Some("json_object") => Some(Constraint::Json),
            _ => None,
        },
        None => None,
    };
    let effort = req.reasoning.as_ref().and_then(|r| r.get("effort")).and_then(Value::as_str);
    let think = effort.map(think).transpose()?;
    Ok(Chat {
        model: req.model.clone(),
        messages: messages(req.instructions.clone(), &req.input)?,
        tools: tools.unwrap_or_default(),
        truncate: true,
        settings: Settings { format, think, ..Settings::new(options) },
    })
}

/// The parts of a response that do not depend on its output.
struct Shell {
    id: String,
    created_at: u64,
    model: String,
    echo: Value,
}

impl Shell {
    fn new(req: &ResponsesRequest) -> Self {
        let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let echo = json!({
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "temperature": req.temperature.unwrap_or(1.0), "top_p": req.top_p.unwrap_or(1.0),
            "tools": req.tools.clone().unwrap_or_default(), "tool_choice": "auto", "parallel_tool_calls": true,
            "reasoning": req.reasoning.clone().unwrap_or(json!({"effort": null, "summary": null})),
            "text": req.text.clone().unwrap_or(json!({"format": {"type": "text"}})),
            "truncation": "disabled", "store": false, "background": false, "metadata": {},
            "previous_response_id": null,
        });
        Shell { id: hex_id("resp"), created_at, model: req.model.clone(), echo }
    }

    fn response(&self, status: &str, output: Vec<Value>, finish: Option<&Finish>) -> Value {
        let mut v = json!({"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
        "model": self.model, "output": output, "error": null,
        "incomplete_details": match finish { Some(f) if f.reason == DoneReason::Length => json!({"reason": "max_output_tokens"}), _ => Value::Null },
        "usage": finish.map(|f| {
            let cached = f.usage.cached_tokens;
            let (i, o) = (f.usage.prompt_tokens + cached, f.usage.generated_tokens);
            json!({"input_tokens": i, "output_tokens": o, "total_tokens": i + o,
                "input_tokens_details": {"cached_tokens": cached}, "output_tokens_details": {"reasoning_tokens": 0}})
        })});
        if let (Value::Object(v), Value::Object(echo)) = (&mut v, &self.echo) {
            v.extend(echo.clone());
        }
        v
    }
}

fn status(finish: Option<&Finish>) -> &'static str {
    match finish {
        Some(f) if f.reason == DoneReason::Length => "incomplete",
        _ => "completed",
    }
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(c: &Call, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{}", c.id.trim_start_matches("call_")), "call_id": c.id,
        "name": c.call.name, "arguments": c.arguments_json(), "status": status})
}

pub(super) async fn responses(
    State(state): State<AppState>,
    body: Result<JsonBody<ResponsesRequest>, ApiError>,
) -> Response {
    let run = async {
        let JsonBody(req) = body?;
        let shell = Shell::new(&req);
        let native = native(&req)?;
        if native.messages.is_empty() {
            return Err(ApiError::bad_request("input is required"));
        }
        match start_chat(&state, native, false).await? {
            Started::Rendered(prompt) => Ok(super::native::debug_response(&req.model, true, prompt)),
            Started::Immediate(..) => Err(ApiError::bad_request("input is required")),
            Started::Answer(answer, _) if req.stream => Ok(stream(answer, shell)),
            Started::Answer(answer, _) => {
                let Collected { delta, finish } = answer.collect().await?;
                let mut output = Vec::new();
                if !delta.thinking.is_empty() {
                    output.push(reasoning_item(&hex_id("rs"), &delta.thinking));
                }
                if !delta.content.is_empty() || delta.calls.is_empty() {
                    output.push(message_item(&hex_id("msg"), &delta.content, "completed"));
                }
                output.extend(delta.calls.iter().map(|c| call_item(c, "completed")));
                Ok(Json(shell.response(status(finish.as_ref()), output, finish.as_ref())).into_response())
            }
        }
    };
    run.await.unwrap_or_else(error)
}

/// The open message item while streaming text.
struct OpenText {
    index: usize,
    id: String,
    text: String,
}

fn stream(answer: Answer, shell: Shell) -> Response {
    let mut seq = 0u64;
    let mut started = false;
    let mut output: Vec<Value> = Vec::new();
    let mut text: Option<OpenText> = None;
    let mut thinking = String::new();
    answer_stream(answer, Framing::Sse, move |event| {
        let mut out = Vec::new();
        let mut emit = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(seq);
            seq += 1;
            out.push(sse(Some(kind), &data));
        };
        if !started {
            started = true;
            let r = shell.response("in_progress", Vec::new(), None);
            emit("response.created", json!({"response": r}));
            emit("response.in_progress", json!({"response": r}));
        }
        let close_text = |text: &mut Option<OpenText>, output: &mut Vec<Value>, emit: &mut dyn FnMut(&str, Value)| {
            if let Some(t) = text.take() {
                let (i, id) = (t.index, t.id.clone());
                emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "text": t.text}),
                );
                let part = json!({"type": "output_text", "text": t.text, "annotations": []});
                emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "part": part}),
                );
                let item = message_item(&id, &t.text, "completed");
                emit("response.output_item.done", json!({"output_index": i, "item": item}));
                output[i] = item;
            }
        };
        match event {
            Some(Event::Delta(Delta { content, thinking: th, calls, .. })) => {
                thinking.push_str(&th);
                if !content.is_empty() {
                    if text.is_none() {
                        let (index, id) = (output.len(), hex_id("msg"));
                        let item = message_item(&id, "", "in_progress");
                        let empty = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                        emit("response.output_item.added", json!({"output_index": index, "item": empty}));
                        let part = json!({"type": "output_text", "text": "", "annotations": []});
                        emit(
                            "response.content_part.added",
                            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                        );
                        output.push(item);
                        text = Some(OpenText { index, id, text: String::new() });
                    }
                    let t = text.as_mut().expect("opened above");
                    t.text.push_str(&content);
                    emit(
                        "response.output_text.delta",
                        json!({"item_id": t.id, "output_index": t.index, "content_index": 0, "delta": content}),
                    );
                }
                for c in &calls {
                    close_text(&mut text, &mut output, &mut emit);
                    let index = output.len();
                    let mut item = call_item(c, "in_progress");
                    item["arguments"] = json!("");
                    emit("response.output_item.added", json!({"output_index": index, "item": item}));
                    let args = c.arguments_json();
                    let id = item["id"].clone();
                    emit(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": args}),
                    );
                    emit(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": index, "arguments": args}),
                    );
                    let done = call_item(c, "completed");
                    emit("response.output_item.done", json!({"output_index": index, "item": done}));
                    output.push(done);
                }
            }
            Some(Event::Done(f)) => {
                close_text(&mut text, &mut output, &mut emit);
                if !thinking.is_empty() {
                    output.insert(0, reasoning_item(&hex_id("rs"), &thinking));
                }
                let kind = if f.reason == DoneReason::Length { "response.incomplete" } else { "response.completed" };
                emit(kind, json!({"response": shell.response(status(Some(&f)), output.clone(), Some(&f))}));
            }
            Some(Event::Error(e)) => {
                let mut r = shell.response("failed", output.clone(), None);
                r["error"] = json!({"code": "server_error", "message": e.message});
                emit("response.failed", json!({"response": r}));
            }
            None => {}
        }
        out
    })
}
