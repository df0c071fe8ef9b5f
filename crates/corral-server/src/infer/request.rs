//! The one typed request of the core. Every protocol builds a [`Chat`] or a [`Generate`]
//! directly, with typed options, thinking, format and keep-alive; the native API's JSON values
//! are checked and typed once, at its edge ([`Chat::from_native`], [`Generate::from_native`]).

use corral_types::api::{ChatRequest, GenerateRequest, Message};
use corral_types::duration::KeepAlive;
use corral_types::params::{check_json_options, Options, Unknown};
use corral_types::runner::Constraint;
use serde_json::{Map, Value};

use super::options;
use crate::ApiError;

/// A native request's `options`: every value checked against Ollama's option types (a 400 names
/// the bad one); unknown names, and options llama.cpp has no use for, are ignored with a warning,
/// as Ollama does.
pub fn request_options(map: Option<&Map<String, Value>>) -> Result<Options, ApiError> {
    let Some(map) = map else { return Ok(Options::default()) };
    let (checked, ignored) =
        check_json_options(map, Unknown::Ignore).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !ignored.is_empty() {
        tracing::warn!(?ignored, "invalid option provided");
    }
    Ok(Options::from_json(&checked))
}

/// A native `keep_alive` value; `None` when absent or null (the server's default applies).
pub fn keep_alive(v: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => KeepAlive::from_json(v).map(Some).map_err(ApiError::bad_request),
    }
}

/// What a request asks of a model's thinking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Think {
    Off,
    On,
    /// `low`, `medium`, `high` or `max`: thinking, at that effort where the model has levels.
    Level(String),
}

impl Think {
    /// The native `think` value: `true`/`false` or a level; anything else is a 400 with
    /// Ollama's message. `None` for an absent or null value.
    pub fn from_json(v: Option<&Value>) -> Result<Option<Think>, ApiError> {
        const CHOICES: &str = r#""high", "medium", "low", "max", true, or false"#;
        Ok(Some(match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Bool(true)) => Think::On,
            Some(Value::Bool(false)) => Think::Off,
            Some(Value::String(s)) if matches!(s.as_str(), "low" | "medium" | "high" | "max") => {
                Think::Level(s.clone())
            }
            Some(Value::String(s)) => {
                return Err(ApiError::bad_request(format!("invalid think value: {s:?} (must be {CHOICES})")))
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "think must be a boolean or string ({CHOICES}), not {other}"
                )))
            }
        }))
    }

    /// The effort asked, for a level.
    pub fn level(&self) -> Option<&str> {
        match self {
            Think::Level(l) => Some(l),
            _ => None,
        }
    }

    /// Whether the model should think.
    pub fn wanted(&self) -> bool {
        !matches!(self, Think::Off)
    }
}

/// The fields native generate and chat requests share, as they come.
struct Native<'a> {
    think: Option<&'a Value>,
    format: Option<&'a Value>,
    options: Option<&'a Map<String, Value>>,
    keep_alive: Option<&'a Value>,
    logprobs: bool,
    top_logprobs: Option<i64>,
    shift: Option<bool>,
    debug_render_only: bool,
}

/// [`Native`] of a `ChatRequest` or a `GenerateRequest` (two types with the same field names).
macro_rules! native_settings {
    ($req:expr) => {
        RequestSettings::from_native(Native {
            think: $req.think.as_ref(),
            format: $req.format.as_ref(),
            options: $req.options.as_ref(),
            keep_alive: $req.keep_alive.as_ref(),
            logprobs: $req.logprobs,
            top_logprobs: $req.top_logprobs,
            shift: $req.shift,
            debug_render_only: $req.debug_render_only,
        })
    };
}

/// What generate and chat requests share.
#[derive(Debug, Clone, Default)]
pub struct RequestSettings {
    pub think: Option<Think>,
    /// Most tokens to think (Anthropic's `budget_tokens`).
    pub think_budget: Option<u32>,
    pub format: Option<Constraint>,
    pub options: Options,
    /// `None`: the server's default.
    pub keep_alive: Option<KeepAlive>,
    /// Log-probabilities with this many alternatives per token.
    pub logprobs: Option<u32>,
    /// `false`: a full context ends the answer.
    pub shift: bool,
    /// Render the prompt and answer with it instead of generating.
    pub debug_render_only: bool,
}

impl RequestSettings {
    /// RequestSettings for a translated request: no options, context shifting on.
    pub fn new(options: Options) -> Self {
        RequestSettings { options, shift: true, ..Default::default() }
    }

    fn from_native(n: Native<'_>) -> Result<Self, ApiError> {
        let logprobs = options::logprobs(n.logprobs, n.top_logprobs)?;
        let format = options::constraint(n.format)?;
        let keep_alive = keep_alive(n.keep_alive)?;
        Ok(RequestSettings {
            think: Think::from_json(n.think)?,
            think_budget: None,
            format,
            options: request_options(n.options)?,
            keep_alive,
            logprobs,
            shift: n.shift.unwrap_or(true),
            debug_render_only: n.debug_render_only,
        })
    }
}

/// One part of a message's content, as the protocols that send content as an array of parts
/// (OpenAI's, Anthropic's, the Responses API's) have them, each read into this once at its edge.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    /// An image's base64 data.
    Image(String),
}

impl ContentPart {
    /// Adds the part to a native message: text to its content, an image to its images.
    pub fn add_to(self, message: &mut Message) {
        match self {
            ContentPart::Text(text) => message.content.push_str(&text),
            ContentPart::Image(data) => message.images.get_or_insert_with(Vec::new).push(data),
        }
    }
}

/// A chat request.
#[derive(Debug, Clone, Default)]
pub struct Chat {
    pub model: String,
    pub messages: Vec<Message>,
    /// Tool definitions (`{"type": "function", "function": {…}}`), as the templates take them.
    pub tools: Vec<Value>,
    /// `false`: a conversation longer than the context is a 400 instead of losing old turns.
    pub truncate: bool,
    /// A Go template that replaces the model's (native requests only).
    pub template: Option<String>,
    pub settings: RequestSettings,
}

/// Most messages one chat request may hold. Each is rendered and tokenized before the model
/// sees any; a body of 64 MiB could otherwise carry millions.
pub const MAX_MESSAGES: usize = 10_000;
/// Most images one chat request may carry, all messages together.
pub const MAX_IMAGES: usize = 64;

impl Chat {
    /// Refuses a request beyond [`MAX_MESSAGES`] or [`MAX_IMAGES`] with a 400 that gives its count.
    pub fn check_size(&self) -> Result<(), ApiError> {
        if self.messages.len() > MAX_MESSAGES {
            return Err(ApiError::bad_request(format!(
                "too many messages: {} (at most {MAX_MESSAGES} in one request)",
                self.messages.len()
            )));
        }
        let images: usize = self.messages.iter().map(|m| m.images.as_ref().map_or(0, Vec::len)).sum();
        if images > MAX_IMAGES {
            return Err(ApiError::bad_request(format!(
                "too many images: {images} (at most {MAX_IMAGES} in one request)"
            )));
        }
        Ok(())
    }

    /// A native `/api/chat` request, checked and typed.
    pub fn from_native(req: ChatRequest) -> Result<Self, ApiError> {
        let settings = native_settings!(req)?;
        Ok(Chat {
            model: req.model,
            messages: req.messages,
            tools: req.tools.unwrap_or_default(),
            truncate: req.truncate.unwrap_or(true),
            template: req.template.filter(|t| !t.is_empty()),
            settings,
        })
    }
}

/// A generate (completion) request.
#[derive(Debug, Clone, Default)]
pub struct Generate {
    pub model: String,
    pub prompt: String,
    pub suffix: Option<String>,
    pub system: Option<String>,
    /// A Go template that replaces the model's.
    pub template: Option<String>,
    /// Tokens of an earlier answer (`context`), continued.
    pub context: Option<Vec<u32>>,
    /// The prompt as it is, with no template.
    pub raw: bool,
    /// Images (base64), sent with the prompt.
    pub images: Vec<String>,
    pub settings: RequestSettings,
}

impl Generate {
    /// A native `/api/generate` request, checked and typed.
    pub fn from_native(req: GenerateRequest) -> Result<Self, ApiError> {
        let settings = native_settings!(req)?;
        Ok(Generate {
            model: req.model,
            prompt: req.prompt,
            suffix: req.suffix,
            system: req.system,
            template: req.template,
            context: req.context,
            raw: req.raw,
            images: req.images.unwrap_or_default(),
            settings,
        })
    }
}
