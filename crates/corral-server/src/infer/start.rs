//! The core of an answer, whatever the protocol: check the request against the model, load it,
//! render and fit the prompt, and start the generation. Every protocol's route builds a typed
//! [`Chat`] or [`Generate`], calls [`start_chat`] or [`start_generate`], and
//! encodes the [`Started`] it gets back, the answer's events included, in its own format.
//!
//! Nothing here knows a protocol's response shape, and nothing here imports from `routes`.

use std::time::Instant;

use corral_types::api::Message;
use corral_types::duration::KeepAlive;
use corral_types::runner::{CompletionRequest, ThinkBudget};
use serde_json::Value;

use super::answer::Answer;
use super::media;
use super::options::{self, Effective};
use super::parse::OutputParser;
use super::prompt::{fit, Renderer};
use super::request::{Chat, Generate, RequestSettings, Think};
use super::Resolved;
use crate::names::parse_name;
use crate::{ApiError, AppState};
use corral_types::params::Options;

/// The smallest context of a model with a projector.
const MIN_MEDIA_CTX: u32 = 2048;

/// Options in effect for `r` with the request's `options` over the model's PARAMETERs.
pub fn resolve_options(state: &AppState, r: &Resolved, request: &Options) -> Result<Effective, ApiError> {
    let adapters = r.model.adapter_paths.iter().map(|p| (p.display().to_string(), 1.0)).collect();
    let n_ctx_train = r.gguf.arch_u64("context_length").unwrap_or(0) as u32;
    let layers = request.clone().over(Options::from_json(&r.model.parameters));
    let draft = r.model.draft_path.as_ref().map(|p| p.display().to_string());
    let mut eff = options::effective(&r.weights()?, adapters, draft, n_ctx_train, layers, &state.config.defaults);
    // Ollama's layout has one projector layer.
    eff.load.projector_path = r.model.projector_paths.first().map(|p| p.display().to_string());
    if eff.load.projector_path.is_none() && r.loaded.vision_projector {
        // Ollama's published layout: the model file is its own projector, as Ollama passes it.
        eff.load.projector_path = r.model.model_path.as_ref().map(|p| p.display().to_string());
    }
    // As in Ollama, a model that reads images gets at least 2048 positions (an image alone can
    // take hundreds), within what it was trained for.
    if eff.load.projector_path.is_some() {
        let floor = if n_ctx_train > 0 { MIN_MEDIA_CTX.min(n_ctx_train) } else { MIN_MEDIA_CTX };
        eff.load.num_ctx = eff.load.num_ctx.max(floor);
    }
    if eff.stop.is_empty() {
        eff.stop = super::prompt::default_stops(&r.model, &r.gguf);
    }
    Ok(eff)
}

fn completion(eff: &Effective, prompt: String, settings: &RequestSettings) -> CompletionRequest {
    CompletionRequest {
        prompt,
        sampling: eff.sampling.clone(),
        num_predict: eff.num_predict,
        num_keep: eff.num_keep,
        shift: settings.shift,
        stop: eff.stop.clone(),
        constraint: settings.format.clone(),
        logprobs: settings.logprobs,
        think_budget: None,
        speculation: eff.speculation,
        media: Vec::new(),
    }
}

/// The model a request names, with its manifest and GGUF header, and the keep-alive in force.
async fn prelude(state: &AppState, model: &str, settings: &RequestSettings) -> Result<(Resolved, KeepAlive), ApiError> {
    let name = parse_name(model)?;
    let resolved = super::resolve(state, &name, model).await?;
    Ok((resolved, settings.keep_alive.unwrap_or(state.config.keep_alive)))
}

/// When a request arrived, and how long loading its model took.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub started: Instant,
    pub load_ns: u64,
}

/// Why an answer ended without generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immediate {
    /// The request only loaded the model (no prompt, no messages).
    Load,
    /// The request unloaded the model (`keep_alive: 0` and nothing to answer).
    Unload,
}

impl Immediate {
    /// Ollama's `done_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Immediate::Load => "load",
            Immediate::Unload => "unload",
        }
    }
}

/// What a generate or chat request starts.
// One per request, moved once into the protocol's encoder: boxing the answer would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Started {
    /// Answered without generating.
    Immediate(Immediate, Timing),
    /// `_debug_render_only`: the rendered prompt.
    Rendered(String),
    /// An answer being generated.
    Answer(Answer, Timing),
}

/// Starts a generate request: checks, loads the model, renders the prompt, starts the answer.
pub async fn start_generate(state: &AppState, req: Generate) -> Result<Started, ApiError> {
    let started = Instant::now();
    if req.model.trim().is_empty() {
        return Err(ApiError::not_found("model '' not found"));
    }
    if req.raw && (req.template.is_some() || req.system.is_some() || req.context.is_some()) {
        return Err(ApiError::bad_request("raw mode does not support template, system, or context"));
    }
    let (r, keep_alive) = prelude(state, &req.model, &req.settings).await?;
    let mut timing = Timing { started, load_ns: 0 };
    if req.prompt.is_empty() && keep_alive.is_zero() {
        state.scheduler.unload(&r.weights()?);
        return Ok(Started::Immediate(Immediate::Unload, timing));
    }
    r.require("completion", "generate")?;
    require_media(&r, !req.images.is_empty())?;
    let think = thinking(&r, req.settings.think.as_ref(), false)?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        r.require("insert", "insert")?;
    }
    let mut renderer = Renderer::for_model(
        &r.model,
        &r.gguf,
        req.template.as_deref().filter(|t| !t.is_empty()),
        state.templates.clone(),
    )?;
    renderer.think(template_thinking(think, req.settings.think.as_ref()));
    // Fill in the middle: the prompt is the text before the insertion point, `suffix` after it.
    let insert = req.suffix.as_deref().filter(|s| !s.is_empty() && !req.raw);
    // Images are checked before the model is loaded: a bad one is a 400 that costs no load.
    let mut messages = generate_messages(&r, &req);
    let images = media::attach(&mut messages)?;
    if req.settings.debug_render_only && !req.raw {
        let prompt = match insert {
            Some(suffix) => renderer.render_insert(&messages, suffix, &r.gguf).await?,
            None => renderer.render(&messages, None).await?,
        };
        return Ok(Started::Rendered(media::show_tags(&prompt)));
    }
    let eff = resolve_options(state, &r, &req.settings.options)?;
    let lease = super::acquire(state, &r, &eff, keep_alive).await?;
    timing.load_ns = started.elapsed().as_nanos() as u64;
    if req.prompt.is_empty() {
        return Ok(Started::Immediate(Immediate::Load, timing));
    }
    let runner = lease.runner.clone();
    let num_ctx = eff.load.num_ctx;
    let mut prompt = if req.raw {
        // The images go before the prompt, as the user message's content has them.
        messages.pop().map(|m| m.content).unwrap_or_default()
    } else if let Some(suffix) = insert {
        // Nothing to drop to fit: it fits whole or is a 400, below.
        renderer.render_insert(&messages, suffix, &r.gguf).await?
    } else {
        fit(&renderer, &runner, messages, None, num_ctx, true).await?
    };
    if let Some(context) = req.context.as_ref().filter(|c| !c.is_empty()) {
        let before = runner.detokenize(context).await.map_err(|e| match ApiError::from(e) {
            e if e.status.is_client_error() => ApiError::bad_request(format!("invalid context: {}", e.message)),
            e => e,
        })?;
        prompt = before + &prompt;
    }
    let (prompt, media) = media::place(&prompt, images);
    if req.raw || req.context.is_some() || insert.is_some() {
        let n = runner.tokenize(&prompt).await?.len();
        if n >= num_ctx as usize {
            return Err(ApiError::bad_request(format!(
                "the input length exceeds the context length: the prompt is {n} tokens and the context is {num_ctx} tokens"
            )));
        }
    }
    let family = renderer.family();
    let parser = OutputParser::new(think.unwrap_or(false) && !req.raw, opens_thinking(&prompt, family), Vec::new())
        .with_family(family);
    let mut request = completion(&eff, prompt, &req.settings);
    state.metrics.media_sent(media.len());
    request.media = media;
    let completion = runner.complete(request).await?;
    let answer = Answer::new(completion, parser, lease, state.metrics.clone(), started);
    Ok(Started::Answer(answer, timing))
}

/// A generate request as a conversation: system, the model's MESSAGEs (unless `context` carries
/// the history), then the prompt.
fn generate_messages(r: &Resolved, req: &Generate) -> Vec<Message> {
    let mut messages = Vec::new();
    if let Some(system) = req.system.clone().or_else(|| r.model.system.clone()).filter(|s| !s.is_empty()) {
        messages.push(Message::new("system", &system));
    }
    if req.context.is_none() {
        messages.extend(r.model.messages.iter().cloned());
    }
    let mut user = Message::new("user", &req.prompt);
    user.images = (!req.images.is_empty()).then(|| req.images.clone());
    messages.push(user);
    messages
}

/// A chat request's conversation: the model's SYSTEM (unless the request starts with one), its
/// MESSAGEs, then the request's messages.
fn chat_messages(r: &Resolved, req: &Chat) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let has_system = req.messages.first().is_some_and(|m| m.role.eq_ignore_ascii_case("system"));
    if let Some(system) = r.model.system.clone().filter(|s| !s.is_empty() && !has_system) {
        messages.push(Message::new("system", &system));
    }
    messages.extend(r.model.messages.iter().cloned());
    messages.extend(req.messages.iter().cloned().map(|mut m| {
        m.role = m.role.to_ascii_lowercase();
        m
    }));
    messages
}

/// Starts a chat request: checks, loads the model, renders and fits the conversation, starts the
/// answer. `relax_thinking` drops `think` for a model without the capability instead of a 400
/// (Anthropic's API, as Ollama does).
pub async fn start_chat(state: &AppState, req: Chat, relax_thinking: bool) -> Result<Started, ApiError> {
    let started = Instant::now();
    if req.model.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    req.check_size()?;
    let (r, keep_alive) = prelude(state, &req.model, &req.settings).await?;
    let mut timing = Timing { started, load_ns: 0 };
    if req.messages.is_empty() && keep_alive.is_zero() {
        state.scheduler.unload(&r.weights()?);
        return Ok(Started::Immediate(Immediate::Unload, timing));
    }
    let ChatPlan { think, tools, renderer } = plan_chat(state, &r, &req, relax_thinking)?;
    // Images are checked before the model is loaded: a bad one is a 400 that costs no load.
    let mut messages = chat_messages(&r, &req);
    let images = media::attach(&mut messages)?;
    if req.settings.debug_render_only {
        return Ok(Started::Rendered(media::show_tags(&renderer.render(&messages, tools.as_ref()).await?)));
    }
    let eff = resolve_options(state, &r, &req.settings.options)?;
    let lease = super::acquire(state, &r, &eff, keep_alive).await?;
    timing.load_ns = started.elapsed().as_nanos() as u64;
    if req.messages.is_empty() {
        return Ok(Started::Immediate(Immediate::Load, timing));
    }
    let prompt = fit(&renderer, &lease.runner, messages, tools.as_ref(), eff.load.num_ctx, req.truncate).await?;
    let (prompt, media) = media::place(&prompt, images);
    let tool_names = req.tools.iter().filter_map(tool_name).collect();
    let family = renderer.family();
    let inside = opens_thinking(&prompt, family);
    let parser = OutputParser::new(think.unwrap_or(false), inside, tool_names).with_family(family);
    let mut request = completion(&eff, prompt, &req.settings);
    state.metrics.media_sent(media.len());
    request.media = media;
    if let (Some(true), Some(tokens)) = (think, req.settings.think_budget) {
        let (open, close) = family.budget_tags();
        request.think_budget = Some(ThinkBudget { tokens, open: open.into(), close: close.into(), inside });
    }
    let completion = lease.runner.complete(request).await?;
    let answer = Answer::new(completion, parser, lease, state.metrics.clone(), started);
    Ok(Started::Answer(answer, timing))
}

/// What a chat needs before its model is loaded.
struct ChatPlan {
    think: Option<bool>,
    tools: Option<Value>,
    renderer: Renderer,
}

/// Checks what `req` asks of the model (chat, thinking, tools) and picks its renderer.
fn plan_chat(state: &AppState, r: &Resolved, req: &Chat, relax_thinking: bool) -> Result<ChatPlan, ApiError> {
    r.require("completion", "chat")?;
    require_media(r, req.messages.iter().any(|m| m.images.as_ref().is_some_and(|i| !i.is_empty())))?;
    let think = thinking(r, req.settings.think.as_ref(), relax_thinking)?;
    let tools = (!req.tools.is_empty()).then(|| Value::Array(req.tools.clone()));
    if tools.is_some() && !r.can("tools") {
        return Err(ApiError::bad_request(format!("{} does not support tools", r.model.name)));
    }
    let mut renderer = Renderer::for_model(&r.model, &r.gguf, req.template.as_deref(), state.templates.clone())?;
    renderer.think(template_thinking(think, req.settings.think.as_ref()));
    Ok(ChatPlan { think, tools, renderer })
}

/// How many tokens the prompt of `req` has: the conversation rendered as [`start_chat`] renders
/// it (all of it, not trimmed to the context) and tokenized by the model's runner, which is
/// loaded if it is not (Anthropic's `count_tokens`).
pub async fn count_chat_tokens(state: &AppState, req: Chat, relax_thinking: bool) -> Result<usize, ApiError> {
    if req.model.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    req.check_size()?;
    let (r, keep_alive) = prelude(state, &req.model, &req.settings).await?;
    let plan = plan_chat(state, &r, &req, relax_thinking)?;
    let eff = resolve_options(state, &r, &req.settings.options)?;
    let lease = super::acquire(state, &r, &eff, keep_alive).await?;
    let mut messages = chat_messages(&r, &req);
    media::attach(&mut messages)?;
    let prompt = plan.renderer.render(&messages, plan.tools.as_ref()).await?;
    Ok(lease.runner.tokenize(&prompt).await?.len())
}

/// A request with images (`sent`) needs a model that reads them: Ollama's words otherwise.
fn require_media(r: &Resolved, sent: bool) -> Result<(), ApiError> {
    if sent && !r.can("vision") && !r.can("audio") {
        return Err(ApiError::bad_request("this model is missing data required for image input"));
    }
    Ok(())
}

/// The name of a tool definition (`{"type": "function", "function": {"name": …}}`).
fn tool_name(tool: &Value) -> Option<String> {
    tool.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).map(String::from)
}

/// What the template is told: whether to think (as decided), the level asked, and whether the
/// request said.
fn template_thinking(on: Option<bool>, asked: Option<&Think>) -> corral_template::Thinking {
    corral_template::Thinking { on, level: asked.and_then(Think::level).map(String::from), set: asked.is_some() }
}

/// Whether the rendered prompt leaves the answer inside a thinking block.
fn opens_thinking(prompt: &str, family: super::parse::Family) -> bool {
    prompt.trim_end().ends_with(family.think_tags().0)
}

/// Whether to think: the request's `think`, else on for models that can (as Ollama does). `None`
/// for models without the capability; asking one to think is a 400 unless `relax`.
fn thinking(r: &Resolved, think: Option<&Think>, relax: bool) -> Result<Option<bool>, ApiError> {
    let capable = r.can("thinking");
    let wanted = think.map(Think::wanted);
    match wanted {
        Some(true) if !capable && !relax => {
            Err(ApiError::bad_request(format!("\"{}\" does not support thinking", r.short_name())))
        }
        _ if !capable => Ok(None),
        None => Ok(Some(true)),
        Some(on) => Ok(Some(on)),
    }
}
