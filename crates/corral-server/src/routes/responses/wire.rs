//! The Responses API's objects and stream events, as typed structs, in the field order OpenAI
//! writes them (an event's own fields first, then `type` and `sequence_number`).

use serde::Serialize;
use serde_json::{Map, Value};

use corral_types::api::ToolCall;

/// A response: its state, its output so far, and the request's settings echoed back.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub model: String,
    pub output: Vec<Item>,
    pub error: Option<ErrorObject>,
    pub incomplete_details: Option<Incomplete>,
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub echo: Echo,
}

/// The request's settings, as a response repeats them.
#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub temperature: f64,
    pub top_p: f64,
    pub tools: Vec<Value>,
    pub tool_choice: &'static str,
    pub parallel_tool_calls: bool,
    pub reasoning: Value,
    pub text: Value,
    pub truncation: &'static str,
    pub store: bool,
    pub background: bool,
    pub metadata: Map<String, Value>,
    pub previous_response_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorObject {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incomplete {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
    pub input_tokens_details: InputDetails,
    pub output_tokens_details: OutputDetails,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputDetails {
    pub reasoning_tokens: u32,
}

/// An output item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Reasoning { id: String, summary: Vec<Summary> },
    Message { id: String, status: &'static str, role: &'static str, content: Vec<Part> },
    FunctionCall { id: String, call_id: String, name: String, arguments: String, status: &'static str },
}

impl Item {
    pub fn reasoning(id: String, text: &str) -> Self {
        Item::Reasoning { id, summary: vec![Summary::SummaryText { text: text.to_string() }] }
    }

    /// A message item with `text` (no content part at all when `text` is `None`).
    pub fn message(id: String, text: Option<&str>, status: &'static str) -> Self {
        let content = text.map(|t| vec![Part::text(t)]).unwrap_or_default();
        Item::Message { id, status, role: "assistant", content }
    }

    /// A tool call as a `function_call` item (`fc_…` ids, from the call's own).
    pub fn call(c: &ToolCall, arguments: String, status: &'static str) -> Self {
        let call_id = c.id.clone().unwrap_or_default();
        Item::FunctionCall {
            id: format!("fc_{}", call_id.trim_start_matches("call_")),
            call_id,
            name: c.function.name.clone(),
            arguments,
            status,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Summary {
    SummaryText { text: String },
}

/// A content part of a message item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    OutputText { text: String, annotations: Vec<Value> },
}

impl Part {
    pub fn text(t: &str) -> Self {
        Part::OutputText { text: t.to_string(), annotations: Vec::new() }
    }
}

/// The fields of a stream event, before its `type` and `sequence_number`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Body {
    Response { response: Box<ResponseObject> },
    Item { output_index: usize, item: Item },
    Part { item_id: String, output_index: usize, content_index: usize, part: Part },
    TextDelta { item_id: String, output_index: usize, content_index: usize, delta: String },
    TextDone { item_id: String, output_index: usize, content_index: usize, text: String },
    ArgumentsDelta { item_id: String, output_index: usize, delta: String },
    ArgumentsDone { item_id: String, output_index: usize, arguments: String },
}

/// A stream event.
#[derive(Debug, Serialize)]
pub struct ResponseEvent<'a> {
    #[serde(flatten)]
    pub body: Body,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub sequence_number: u64,
}
