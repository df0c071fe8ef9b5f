//! The one typed request of the core. Every protocol builds a [`Chat`] or a [`Generate`]
//! directly, with typed options, thinking, format and keep-alive; the native API's JSON values
//! are checked and typed once, at its edge ([`Chat::from_native`], [`Generate::from_native`]).

use corral_types::api::{ChatRequest, GenerateRequest, Message};
use corral_types::duration::KeepAlive;
use corral_types::params::{check_json_options, Unknown};
use corral_types::runner::Constraint;
use serde_json::{Map, Value};

use super::options;
use crate::ApiError;

/// Option values set by a layer: the model's PARAMETERs, then a request's `options`. Unset
/// fields fall through to the layer below (see [`Overlay::over`]), and finally to Ollama's
/// defaults in `options::effective`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Negative: a random seed.
    pub seed: Option<i64>,
    /// Zero or negative: no limit.
    pub num_predict: Option<i64>,
    /// -1: keep the whole prompt when the context shifts.
    pub num_keep: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub num_ctx: Option<i64>,
    pub num_batch: Option<i64>,
    pub num_thread: Option<i64>,
    /// -1: as many layers as fit.
    pub num_gpu: Option<i64>,
    pub main_gpu: Option<i64>,
    pub use_mmap: Option<bool>,
    /// Most tokens drafted per step for speculative decoding; 0 turns it off.
    pub draft_num_predict: Option<i64>,
}

fn f32_of(v: &Value) -> Option<f32> {
    v.as_f64().map(|f| f as f32)
}

fn i64_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

impl Overlay {
    /// From JSON options whose types were checked (a model's stored PARAMETERs are trusted as
    /// far as their types allow: a value of the wrong type is as if unset).
    pub fn from_json(map: &Map<String, Value>) -> Overlay {
        let mut o = Overlay::default();
        for (k, v) in map {
            match k.as_str() {
                "temperature" => o.temperature = f32_of(v),
                "top_k" => o.top_k = i64_of(v),
                "top_p" => o.top_p = f32_of(v),
                "min_p" => o.min_p = f32_of(v),
                "typical_p" => o.typical_p = f32_of(v),
                "repeat_last_n" => o.repeat_last_n = i64_of(v),
                "repeat_penalty" => o.repeat_penalty = f32_of(v),
                "presence_penalty" => o.presence_penalty = f32_of(v),
                "frequency_penalty" => o.frequency_penalty = f32_of(v),
                "seed" => o.seed = i64_of(v),
                "num_predict" => o.num_predict = i64_of(v),
                "num_keep" => o.num_keep = i64_of(v),
                "stop" => {
                    o.stop = v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                }
                "num_ctx" => o.num_ctx = i64_of(v),
                "num_batch" => o.num_batch = i64_of(v),
                "num_thread" => o.num_thread = i64_of(v),
                "num_gpu" => o.num_gpu = i64_of(v),
                "main_gpu" => o.main_gpu = i64_of(v),
                "use_mmap" => o.use_mmap = v.as_bool(),
                "draft_num_predict" => o.draft_num_predict = i64_of(v),
                _ => {}
            }
        }
        o
    }

    /// A native request's `options`: every value checked against Ollama's option types (a 400
    /// names the bad one); unknown names, and options llama.cpp has no use for, are ignored with
    /// a warning, as Ollama does.
    pub fn from_request(map: Option<&Map<String, Value>>) -> Result<Overlay, ApiError> {
        let Some(map) = map else { return Ok(Overlay::default()) };
        let (checked, ignored) =
            check_json_options(map, Unknown::Ignore).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !ignored.is_empty() {
            tracing::warn!(?ignored, "invalid option provided");
        }
        Ok(Overlay::from_json(&checked))
    }

    /// This layer over `base`: its set values win.
    pub fn over(self, base: Overlay) -> Overlay {
        Overlay {
            temperature: self.temperature.or(base.temperature),
            top_k: self.top_k.or(base.top_k),
            top_p: self.top_p.or(base.top_p),
            min_p: self.min_p.or(base.min_p),
            typical_p: self.typical_p.or(base.typical_p),
            repeat_last_n: self.repeat_last_n.or(base.repeat_last_n),
            repeat_penalty: self.repeat_penalty.or(base.repeat_penalty),
            presence_penalty: self.presence_penalty.or(base.presence_penalty),
            frequency_penalty: self.frequency_penalty.or(base.frequency_penalty),
            seed: self.seed.or(base.seed),
            num_predict: self.num_predict.or(base.num_predict),
            num_keep: self.num_keep.or(base.num_keep),
            stop: self.stop.or(base.stop),
            num_ctx: self.num_ctx.or(base.num_ctx),
            num_batch: self.num_batch.or(base.num_batch),
            num_thread: self.num_thread.or(base.num_thread),
            num_gpu: self.num_gpu.or(base.num_gpu),
            main_gpu: self.main_gpu.or(base.main_gpu),
            use_mmap: self.use_mmap.or(base.use_mmap),
            draft_num_predict: self.draft_num_predict.or(base.draft_num_predict),
        }
    }
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
        Settings::from_native(Native {
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
pub struct Settings {
    pub think: Option<Think>,
    /// Most tokens to think (Anthropic's `budget_tokens`).
    pub think_budget: Option<u32>,
    pub format: Option<Constraint>,
    pub options: Overlay,
    /// `None`: the server's default.
    pub keep_alive: Option<KeepAlive>,
    /// Log-probabilities with this many alternatives per token.
    pub logprobs: Option<u32>,
    /// `false`: a full context ends the answer.
    pub shift: bool,
    /// Render the prompt and answer with it instead of generating.
    pub debug_render_only: bool,
}

impl Settings {
    /// Settings for a translated request: no options, context shifting on.
    pub fn new(options: Overlay) -> Self {
        Settings { options, shift: true, ..Default::default() }
    }

    fn from_native(n: Native<'_>) -> Result<Self, ApiError> {
        let logprobs = options::logprobs(n.logprobs, n.top_logprobs)?;
        let format = options::constraint(n.format)?;
        let keep_alive = keep_alive(n.keep_alive)?;
        Ok(Settings {
            think: Think::from_json(n.think)?,
            think_budget: None,
            format,
            options: Overlay::from_request(n.options)?,
            keep_alive,
            logprobs,
            shift: n.shift.unwrap_or(true),
            debug_render_only: n.debug_render_only,
        })
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
    pub settings: Settings,
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
    pub settings: Settings,
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
            settings,
        })
    }
}
