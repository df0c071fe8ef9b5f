//! JSON types of Ollama's native API (`/api/*`), shared by the server and the client.
//!
//! Field names, `omitempty` behaviour and the deprecated aliases (`name` for `model`,
//! `quantization` for `quantize`) follow Ollama's `api/types.go`; unknown fields are ignored on
//! input, as Go's decoder does.

use std::collections::BTreeMap;

use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of every native error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

/// `GET /api/version`: the version of Ollama's API the server speaks (Corral answers the Ollama
/// release it implements, since clients compare this number with the one they need).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
}

/// The header of a Corral server's `/api/version` answer that carries Corral's own version (an
/// Ollama server has none).
pub const CORRAL_VERSION_HEADER: &str = "x-corral-version";
/// The header in which a client of the OpenAI or Anthropic API, which have no `num_ctx`, asks for
/// a context length: the server takes it as the request's `num_ctx`, and `corral launch` makes
/// the coding agents send it.
pub const CONTEXT_HEADER: &str = "X-Corral-Num-Ctx";

/// The `details` object of list, show and ps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDetails {
    #[serde(default)]
    pub parent_model: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub families: Option<Vec<String>>,
    #[serde(default)]
    pub parameter_size: String,
    #[serde(default)]
    pub quantization_level: String,
}

/// One entry of `GET /api/tags`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListModel {
    pub name: String,
    pub model: String,
    pub modified_at: DateTime<Local>,
    pub size: u64,
    /// Hex sha256 of the manifest file, without the `sha256:` prefix.
    pub digest: String,
    pub details: ModelDetails,
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub models: Vec<ListModel>,
}

/// A chat message, as stored in a model's messages layer and sent to `/api/chat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A function a model called: what the output parser reads from the answer and every protocol
/// writes in its own shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// Always a JSON object (protocols that send a string are decoded at their edge).
    pub arguments: Map<String, Value>,
}

/// A tool call of a message or an answer: its function call, its place among the message's
/// calls, and the id that protocols tie results to (absent in native requests that send none).
///
/// On the wire it is Ollama's `{"id"?, "function": {"index", "name", "arguments"}}`, `index`
/// always written; on input a missing `index`, `name` or `arguments` (or a null one) is 0, "" or
/// `{}`, as Go's decoder leaves them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "NativeToolCall", into = "NativeToolCall")]
pub struct ToolCall {
    pub id: Option<String>,
    pub index: usize,
    pub function: FunctionCall,
}

/// [`ToolCall`] as Ollama's JSON nests it.
#[derive(Clone, Serialize, Deserialize)]
struct NativeToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default)]
    function: NativeFunction,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct NativeFunction {
    #[serde(default, deserialize_with = "null_as_default")]
    index: usize,
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    arguments: Map<String, Value>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl From<NativeToolCall> for ToolCall {
    fn from(n: NativeToolCall) -> Self {
        let NativeFunction { index, name, arguments } = n.function;
        ToolCall { id: n.id, index, function: FunctionCall { name, arguments } }
    }
}

impl From<ToolCall> for NativeToolCall {
    fn from(c: ToolCall) -> Self {
        let FunctionCall { name, arguments } = c.function;
        NativeToolCall { id: c.id, function: NativeFunction { index: c.index, name, arguments } }
    }
}

impl ToolCall {
    /// A call with an id, `index`-th in its message.
    pub fn new(id: impl Into<String>, index: usize, function: FunctionCall) -> Self {
        ToolCall { id: Some(id.into()), index, function }
    }

    /// The arguments as a JSON string (OpenAI's and the Responses API's form).
    pub fn arguments_json(&self) -> String {
        serde_json::to_string(&self.function.arguments).unwrap_or_else(|_| "{}".into())
    }
}

impl Message {
    /// A plain text message.
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.to_string(), content: content.to_string(), ..Default::default() }
    }
}

/// `POST /api/show`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verbose: bool,
    /// Replaces the model's SYSTEM in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Merged over the model's parameters in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
}

/// One tensor in `show --verbose`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub shape: Vec<u64>,
}

/// `POST /api/show` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowResponse {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub license: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub modelfile: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parameters: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    #[serde(default)]
    pub details: ModelDetails,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub model_info: Map<String, Value>,
    /// The projector's metadata, as `model_info` has the model's (vision models).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub projector_info: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<DateTime<Local>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires: String,
}

/// A string or a list of strings (`license` in create requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `POST /api/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// An existing model (or `sha256:<hex>` blob) to build on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Relative file name → `sha256:<hex>` of an uploaded blob. Digests stay strings here so a bad
    /// one is reported with Ollama's message instead of a JSON decoding error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<BTreeMap<String, String>>,
    /// The draft model for speculative decoding (Modelfile `DRAFT`), by relative path and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_files: Option<BTreeMap<String, String>>,
    /// Ollama quantizes the draft with this; Corral refuses it (quantize the draft first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_quantize: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<String>,
    /// Deprecated alias of `quantize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// One line of a streamed create / pull / push.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressResponse {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

impl ProgressResponse {
    /// A status-only line.
    pub fn status(s: impl Into<String>) -> Self {
        ProgressResponse { status: s.into(), ..Default::default() }
    }
}

/// `POST /api/copy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CopyRequest {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub destination: String,
}

/// `DELETE /api/delete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Picks `model`, falling back to the deprecated `name`.
pub fn model_or_name<'a>(model: &'a str, name: &'a str) -> &'a str {
    if model.is_empty() {
        name
    } else {
        model
    }
}

/// `POST /api/generate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Tokens of an earlier answer (deprecated in Ollama, still honoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
    /// `false`: a full context ends the answer even within its `num_predict` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Render the prompt and return it in `_debug_info` instead of generating.
    #[serde(default, rename = "_debug_render_only", skip_serializing_if = "std::ops::Not::not")]
    pub debug_render_only: bool,
}

/// `POST /api/chat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// `false` refuses to drop old messages that do not fit (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// `false`: a full context ends the answer even within its `num_predict` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logprobs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Render the prompt and return it in `_debug_info` instead of generating.
    #[serde(default, rename = "_debug_render_only", skip_serializing_if = "std::ops::Not::not")]
    pub debug_render_only: bool,
    /// A Go template for this request instead of the model's (the REPL's `/set template`). Not
    /// in Ollama's chat API, whose server ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// Counts and durations (nanoseconds) on a final chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_duration: Option<u64>,
}

/// One log-probability entry of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<Logprob>>,
}

/// One chunk (or the whole answer) of `/api/generate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub model: String,
    pub created_at: DateTime<chrono::Utc>,
    pub response: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<u32>>,
    #[serde(flatten)]
    pub metrics: Metrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
}

/// One chunk (or the whole answer) of `/api/chat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    pub model: String,
    pub created_at: DateTime<chrono::Utc>,
    pub message: Message,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(flatten)]
    pub metrics: Metrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Logprob>>,
}

/// One entry of `GET /api/ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    pub expires_at: DateTime<Local>,
    pub size_vram: u64,
    pub context_length: u32,
    /// Corral's addition: the device memory it holds, by device (with the host for another
    /// host's device), so that `ps` can show a model split over several hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::runner::DeviceUse>,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessResponse {
    pub models: Vec<RunningModel>,
}

/// `POST /api/pull` and `POST /api/push`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TransferRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Deprecated alias of `model`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Allow plain HTTP to a registry that is not on loopback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_have_ollamas_shape() {
        let call = ToolCall::new(
            "call_1",
            2,
            FunctionCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}).as_object().unwrap().clone(),
            },
        );
        let wire = serde_json::to_value(&call).unwrap();
        assert_eq!(
            wire,
            json!({"id": "call_1", "function": {"index": 2, "name": "get_weather", "arguments": {"city": "Paris"}}})
        );
        assert_eq!(serde_json::from_value::<ToolCall>(wire).unwrap(), call);
        assert_eq!(call.arguments_json(), r#"{"city":"Paris"}"#);
        // What clients send: no id, no index, sometimes no or null arguments; `index` is always written.
        let sent: ToolCall = serde_json::from_value(json!({"function": {"name": "f", "arguments": null}})).unwrap();
        assert_eq!(
            sent,
            ToolCall { id: None, index: 0, function: FunctionCall { name: "f".into(), ..Default::default() } }
        );
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            json!({"function": {"index": 0, "name": "f", "arguments": {}}})
        );
        // Arguments that are no object are refused, as Ollama's decoder refuses them.
        assert!(serde_json::from_value::<ToolCall>(json!({"function": {"name": "f", "arguments": "{}"}})).is_err());
    }
}
