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

mod wire;

use wire::{Body, Echo, ErrorObject, Incomplete, InputDetails, Item, OutputDetails, Part, ResponseObject, Usage};

use super::openai::{error, think};
use crate::extract::JsonBody;
use crate::infer::answer::{random_hex, Answer, Collected, Delta, Event, Finish};
use crate::infer::options;
use crate::infer::request::{Chat, Overlay, Settings};
use crate::infer::start::{start_chat, Started};
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
        template: None,
        settings: Settings { format, think, ..Settings::new(options) },
    })
}

/// The parts of a response that do not depend on its output.
struct Shell {
    id: String,
    created_at: u64,
    model: String,
    echo: Echo,
}

impl Shell {
    fn new(req: &ResponsesRequest) -> Self {
        let created_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let echo = Echo {
            instructions: req.instructions.clone(),
            max_output_tokens: req.max_output_tokens,
            temperature: req.temperature.unwrap_or(1.0),
            top_p: req.top_p.unwrap_or(1.0),
            tools: req.tools.clone().unwrap_or_default(),
            tool_choice: "auto",
            parallel_tool_calls: true,
            reasoning: req.reasoning.clone().unwrap_or(json!({"effort": null, "summary": null})),
            text: req.text.clone().unwrap_or(json!({"format": {"type": "text"}})),
            truncation: "disabled",
            store: false,
            background: false,
            metadata: Map::new(),
            previous_response_id: None,
        };
        Shell { id: hex_id("resp"), created_at, model: req.model.clone(), echo }
    }

    fn response(&self, status: &'static str, output: Vec<Item>, finish: Option<&Finish>) -> ResponseObject {
        ResponseObject {
            id: self.id.clone(),
            object: "response",
            created_at: self.created_at,
            status,
            model: self.model.clone(),
            output,
            error: None,
            incomplete_details: finish
                .filter(|f| f.reason == DoneReason::Length)
                .map(|_| Incomplete { reason: "max_output_tokens" }),
            usage: finish.map(|f| {
                let cached = f.usage.cached_tokens;
                let (i, o) = (f.whole_prompt_tokens(), f.usage.generated_tokens);
                Usage {
                    input_tokens: i,
                    output_tokens: o,
                    total_tokens: i + o,
                    input_tokens_details: InputDetails { cached_tokens: cached },
                    output_tokens_details: OutputDetails { reasoning_tokens: 0 },
                }
            }),
            echo: self.echo.clone(),
        }
    }
}

fn status(finish: Option<&Finish>) -> &'static str {
    match finish {
        Some(f) if f.reason == DoneReason::Length => "incomplete",
        _ => "completed",
    }
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
                    output.push(Item::reasoning(hex_id("rs"), &delta.thinking));
                }
                if !delta.content.is_empty() || delta.calls.is_empty() {
                    output.push(Item::message(hex_id("msg"), Some(&delta.content), "completed"));
                }
                output.extend(delta.calls.iter().map(|c| Item::call(c, c.arguments_json(), "completed")));
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
    let mut output: Vec<Item> = Vec::new();
    let mut text: Option<OpenText> = None;
    let mut thinking = String::new();
    answer_stream(answer, Framing::Sse, move |event| {
        let mut out = Vec::new();
        let mut emit = |kind: &str, body: Body| {
            out.push(sse(Some(kind), &wire::Event { body, kind, sequence_number: seq }));
            seq += 1;
        };
        if !started {
            started = true;
            let r = shell.response("in_progress", Vec::new(), None);
            emit("response.created", Body::Response { response: Box::new(r.clone()) });
            emit("response.in_progress", Body::Response { response: Box::new(r) });
        }
        let close_text = |text: &mut Option<OpenText>, output: &mut Vec<Item>, emit: &mut dyn FnMut(&str, Body)| {
            if let Some(t) = text.take() {
                let (i, id) = (t.index, t.id.clone());
                let done =
                    Body::TextDone { item_id: id.clone(), output_index: i, content_index: 0, text: t.text.clone() };
                emit("response.output_text.done", done);
                let part = Part::text(&t.text);
                emit(
                    "response.content_part.done",
                    Body::Part { item_id: id.clone(), output_index: i, content_index: 0, part },
                );
                let item = Item::message(id, Some(&t.text), "completed");
                emit("response.output_item.done", Body::Item { output_index: i, item: item.clone() });
                output[i] = item;
            }
        };
        match event {
            Some(Event::Delta(Delta { content, thinking: th, calls, .. })) => {
                thinking.push_str(&th);
                if !content.is_empty() {
                    if text.is_none() {
                        let (index, id) = (output.len(), hex_id("msg"));
                        let empty = Item::message(id.clone(), None, "in_progress");
                        emit("response.output_item.added", Body::Item { output_index: index, item: empty });
                        let part = Part::text("");
                        emit(
                            "response.content_part.added",
                            Body::Part { item_id: id.clone(), output_index: index, content_index: 0, part },
                        );
                        output.push(Item::message(id.clone(), Some(""), "in_progress"));
                        text = Some(OpenText { index, id, text: String::new() });
                    }
                    let t = text.as_mut().expect("opened above");
                    t.text.push_str(&content);
                    let delta = Body::TextDelta {
                        item_id: t.id.clone(),
                        output_index: t.index,
                        content_index: 0,
                        delta: content,
                    };
                    emit("response.output_text.delta", delta);
                }
                for c in &calls {
                    close_text(&mut text, &mut output, &mut emit);
                    let index = output.len();
                    let item = Item::call(c, String::new(), "in_progress");
                    let Item::FunctionCall { id, .. } = &item else { unreachable!("a call item") };
                    let id = id.clone();
                    emit("response.output_item.added", Body::Item { output_index: index, item });
                    let args = c.arguments_json();
                    let delta = Body::ArgumentsDelta { item_id: id.clone(), output_index: index, delta: args.clone() };
                    emit("response.function_call_arguments.delta", delta);
                    let done = Body::ArgumentsDone { item_id: id, output_index: index, arguments: args.clone() };
                    emit("response.function_call_arguments.done", done);
                    let item = Item::call(c, args, "completed");
                    emit("response.output_item.done", Body::Item { output_index: index, item: item.clone() });
                    output.push(item);
                }
            }
            Some(Event::Done(f)) => {
                close_text(&mut text, &mut output, &mut emit);
                if !thinking.is_empty() {
                    output.insert(0, Item::reasoning(hex_id("rs"), &thinking));
                }
                let kind = if f.reason == DoneReason::Length { "response.incomplete" } else { "response.completed" };
                let response = Box::new(shell.response(status(Some(&f)), output.clone(), Some(&f)));
                emit(kind, Body::Response { response });
            }
            Some(Event::Error(e)) => {
                let mut response = Box::new(shell.response("failed", output.clone(), None));
                response.error = Some(ErrorObject { code: "server_error", message: e.message });
                emit("response.failed", Body::Response { response });
            }
            None => {}
        }
        out
    })
}
