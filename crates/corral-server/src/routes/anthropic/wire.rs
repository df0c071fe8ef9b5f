//! Anthropic's response objects and stream events, as typed structs (`type` first, then the
//! fields in the order Anthropic writes them).

use serde::Serialize;
use serde_json::{Map, Value};

use corral_types::api::ToolCall;

/// A whole message (also the `message` of `message_start`, empty then).
#[derive(Debug, Serialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<Block>,
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// Token counts. Anthropic counts cache reads apart from the input tokens.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// A content block.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Thinking { thinking: String, signature: String },
    Text { text: String },
    ToolUse { id: String, name: String, input: Map<String, Value> },
}

impl Block {
    /// A tool call as a `tool_use` block (`toolu_…` ids, from the call's own).
    pub fn tool_use(c: &ToolCall, input: Map<String, Value>) -> Self {
        let id = c.id.as_deref().unwrap_or_default();
        Block::ToolUse { id: format!("toolu_{}", id.trim_start_matches("call_")), name: c.function.name.clone(), input }
    }
}

/// What a `content_block_delta` adds.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

/// `message_delta`'s `delta`.
#[derive(Debug, Serialize)]
pub struct MessageDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
}

/// An `error` event's or body's `error`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

/// One event of a streamed message; its SSE `event:` name is [`StreamEvent::name`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart { message: Message },
    Ping,
    ContentBlockStart { index: usize, content_block: Block },
    ContentBlockDelta { index: usize, delta: BlockDelta },
    ContentBlockStop { index: usize },
    MessageDelta { delta: MessageDelta, usage: Usage },
    MessageStop,
    Error { error: ErrorBody },
}

impl StreamEvent {
    /// The SSE event name: the same as the `type`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// The answer of `/v1/messages/count_tokens`.
#[derive(Debug, Serialize)]
pub struct TokenCount {
    pub input_tokens: usize,
}
