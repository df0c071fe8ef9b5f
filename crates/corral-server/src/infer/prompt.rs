//! From a conversation to prompt text: which template, what goes in, and dropping old turns when
//! the conversation is longer than the context.

use corral_gguf::Gguf;
use corral_store::Model;
use corral_template::{GoTemplate, JinjaTemplate, RenderOptions};
use corral_types::api::Message;
use serde_json::Value;

use crate::runner::Runner;
use crate::ApiError;

/// How a model turns messages into a prompt.
#[derive(Clone)]
pub enum Renderer {
    /// A Modelfile TEMPLATE (Go template syntax); it takes precedence over the GGUF's.
    Go(GoTemplate),
    /// The GGUF's `tokenizer.chat_template`, and `enable_thinking` for it.
    Jinja(JinjaTemplate, Option<bool>),
    /// No template at all: the text of the turns, as they are.
    Raw,
}

/// The text of token `key` (e.g. `tokenizer.ggml.bos_token_id`) in the vocabulary.
fn special_token(g: &Gguf, key: &str) -> String {
    let (Some(id), Some(tokens)) = (g.get_u64(key), g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array())) else {
        return String::new();
    };
    match tokens {
        corral_gguf::ArrayValue::String(t) => t.get(id as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

impl Renderer {
    /// Picks the renderer: `template` (a request's override) or the model's TEMPLATE, else the
    /// GGUF chat template, else none.
    pub fn for_model(model: &Model, gguf: &Gguf, template: Option<&str>) -> Result<Self, ApiError> {
        if let Some(src) = template.or(model.template.as_deref()) {
            return GoTemplate::parse(src).map(Renderer::Go).map_err(|e| ApiError::bad_request(e.to_string()));
        }
        match gguf.get_str("tokenizer.chat_template") {
            Some(src) => {
                let bos = special_token(gguf, "tokenizer.ggml.bos_token_id");
                let eos = special_token(gguf, "tokenizer.ggml.eos_token_id");
                JinjaTemplate::new(src, &bos, &eos)
                    .map(|t| Renderer::Jinja(t, None))
                    // The model's own template is broken: the user's to know, not a fault of ours.
                    .map_err(|e| ApiError::server(e.to_string()))
            }
            None => Ok(Renderer::Raw),
        }
    }

    /// Tells templates that read it whether the model should think (`None`: leave it unset).
    pub fn think(&mut self, on: Option<bool>) {
        if let Renderer::Jinja(_, t) = self {
            *t = on;
        }
    }

    /// [`Renderer::render`] on the blocking pool: a render may take up to the template engines'
    /// step bound (a second or so for a hostile template), which must not stall the async
    /// threads that answer every other request.
    pub async fn render_off_thread(&self, messages: &[Message], tools: Option<&Value>) -> Result<String, ApiError> {
        let (renderer, messages, tools) = (self.clone(), messages.to_vec(), tools.cloned());
        corral_store::unblock(move || renderer.render(&messages, tools.as_ref())).await
    }

    /// Renders `messages`, ready for the assistant's answer.
    pub fn render(&self, messages: &[Message], tools: Option<&Value>) -> Result<String, ApiError> {
        match self {
            Renderer::Go(t) => t.render_chat(messages, tools).map_err(|e| ApiError::bad_request(e.to_string())),
            Renderer::Jinja(t, enable_thinking) => {
                let opts = RenderOptions {
                    tools: tools.cloned(),
                    add_generation_prompt: true,
                    enable_thinking: *enable_thinking,
                };
                t.render(messages, &opts).map_err(|e| ApiError::server(e.to_string()))
            }
            Renderer::Raw => Ok(messages
                .iter()
                .filter(|m| m.role != "system")
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("")),
        }
    }
}

/// End-of-turn markers that, when a template writes them, are where the model's turn ends.
const END_OF_TURN: [&str; 6] = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endoftext|>"];

/// Stop sequences for a model whose parameters set none: the end-of-turn markers its template
/// uses (llama.cpp also stops at end-of-generation tokens; this covers templates whose markers
/// are not marked as such in the vocabulary).
pub fn default_stops(model: &Model, gguf: &Gguf) -> Vec<String> {
    let text = model.template.as_deref().or_else(|| gguf.get_str("tokenizer.chat_template")).unwrap_or_default();
    END_OF_TURN.iter().filter(|m| text.contains(*m)).map(|m| m.to_string()).collect()
}

/// The prompt for `messages`, dropping the oldest turns (never a system message, never the last
/// message) until it fits in `num_ctx`. With `truncate` off, or when even the last message alone
/// does not fit, that is a 400 rather than a silently cut prompt.
pub async fn fit(
    renderer: &Renderer,
    runner: &Runner,
    mut messages: Vec<Message>,
    tools: Option<&Value>,
    num_ctx: u32,
    truncate: bool,
) -> Result<String, ApiError> {
    loop {
        let prompt = renderer.render_off_thread(&messages, tools).await?;
        let n = runner.tokenize(&prompt).await?.len();
        if n < num_ctx as usize {
            return Ok(prompt);
        }
        let last = messages.len().saturating_sub(1);
        let droppable = messages.iter().position(|m| m.role != "system").filter(|i| *i < last);
        match droppable {
            Some(i) if truncate => {
                tracing::debug!(tokens = n, num_ctx, "dropping the oldest message to fit the context");
                messages.remove(i);
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "the input length exceeds the context length: the prompt is {n} tokens and the context is {num_ctx} tokens (set num_ctx higher or shorten the input)"
                )))
            }
        }
    }
}
