//! OpenAI's Responses API (`POST /v1/responses`), stateless as in Ollama: a translator into the
//! native chat request and back. `previous_response_id`, `store`, background runs and built-in
//! tools are not supported.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::{FunctionCall, Message, ToolCall};
use corral_types::runner::Constraint;
use corral_types::runner::DoneReason;
use serde::Deserialize;
use serde_json::{json, Map, Value};

mod events;
mod wire;

use events::ResponseEvents;

use wire::{Echo, Incomplete, InputDetails, Item, OutputDetails, ResponseObject, Usage};

use super::openai::think;
use crate::extract::{ContextHint, JsonBody};
use crate::infer::answer::{random_hex, Collected, Finish};
use crate::infer::options;
use crate::infer::request::{Chat, ContentPart, RequestSettings};
use crate::infer::start::{start_chat, Started};
use crate::stream::{answer_stream, Framing};
use crate::{ApiError, AppState};
use corral_types::params::Options;

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

/// The parts of a `string | [{type: input_text|output_text|text, text} | {type: input_image,
/// image_url}]` content; an image must be a `data:` URL, any other part type is a 400.
fn content_parts(v: &Value) -> Result<Vec<ContentPart>, ApiError> {
    let parts = match v {
        Value::String(s) => return Ok(vec![ContentPart::Text(s.clone())]),
        Value::Array(parts) => parts,
        _ => return Ok(Vec::new()),
    };
    parts
        .iter()
        .map(|p| match p.get("type").and_then(Value::as_str).unwrap_or_default() {
            "input_text" | "output_text" | "text" => {
                Ok(ContentPart::Text(p.get("text").and_then(Value::as_str).unwrap_or_default().to_string()))
            }
            "input_image" => {
                let url = p.get("image_url").and_then(Value::as_str).unwrap_or_default();
                let data = url.split_once(";base64,").map(|(_, d)| d).ok_or_else(|| {
                    ApiError::bad_request(
                        "image URLs are not currently supported, please use base64 encoded data instead",
                    )
                })?;
                Ok(ContentPart::Image(data.to_string()))
            }
            other => Err(ApiError::bad_request(format!("unsupported content part type {other:?}"))),
        })
        .collect()
}

/// A content's parts as one message of `role`.
fn message_of(role: &str, content: &Value) -> Result<Message, ApiError> {
    let mut m = Message::new(role, "");
    for part in content_parts(content)? {
        part.add_to(&mut m);
    }
    Ok(m)
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
    // Tool names by call id, for the results that name only the call.
    let mut names: HashMap<String, String> = HashMap::new();
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let role = if role == "developer" { "system" } else { role };
                out.push(message_of(role, item.get("content").unwrap_or(&Value::Null))?);
            }
            "function_call" => {
                let id = item.get("call_id").and_then(Value::as_str).map(String::from);
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                if let Some(id) = &id {
                    names.insert(id.clone(), name.clone());
                }
                let arguments = match item.get("arguments") {
                    Some(Value::String(s)) => serde_json::from_str::<Map<String, Value>>(s)
                        .map_err(|_| ApiError::bad_request("invalid tool call arguments"))?,
                    _ => Map::new(),
                };
                let function = FunctionCall { name, arguments };
                match out.last_mut() {
                    Some(m) if m.role == "assistant" && m.content.is_empty() => {
                        let calls = m.tool_calls.get_or_insert_with(Vec::new);
                        calls.push(ToolCall { id, index: calls.len(), function });
                    }
                    _ => {
                        let mut m = Message::new("assistant", "");
                        m.tool_calls = Some(vec![ToolCall { id, index: 0, function }]);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                let id = item.get("call_id").and_then(Value::as_str).unwrap_or_default();
                // A tool's output is its text (images in it are dropped, as before).
                let mut m = message_of("tool", item.get("output").unwrap_or(&Value::Null))?;
                m.images = None;
                m.tool_call_id = Some(id.to_string());
                m.tool_name = names.get(id).cloned();
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
    let options = Options {
        temperature: Some(req.temperature.unwrap_or(1.0) as f32),
        top_p: Some(req.top_p.unwrap_or(1.0) as f32),
        num_predict: req.max_output_tokens,
        ..Options::default()
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
        settings: RequestSettings { format, think, ..RequestSettings::new(options) },
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
    hint: ContextHint,
    JsonBody(req): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let shell = Shell::new(&req);
    let mut native = native(&req)?;
    hint.apply(&mut native.settings.options);
    if native.messages.is_empty() {
        return Err(ApiError::bad_request("input is required"));
    }
    match start_chat(&state, native, false).await? {
        Started::Rendered(prompt) => Ok(super::native::debug_response(&req.model, true, prompt)),
        Started::Immediate(..) => Err(ApiError::bad_request("input is required")),
        Started::Answer(answer, _) if req.stream => Ok(answer_stream(answer, Framing::Sse, ResponseEvents::new(shell))),
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
}
