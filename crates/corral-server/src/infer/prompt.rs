//! From a conversation to prompt text: which template, what goes in, and dropping old turns when
//! the conversation is longer than the context.

use corral_gguf::Gguf;
use corral_store::Model;
use corral_template::{JinjaTemplate, RenderOptions};
use corral_types::api::Message;
use serde_json::Value;

use crate::runner::Runner;
use crate::ApiError;

/// How a model turns messages into a prompt.
pub enum Renderer {
    /// The GGUF's `tokenizer.chat_template`.
    Jinja(JinjaTemplate),
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
    /// Picks the model's renderer.
    pub fn for_model(model: &Model, gguf: &Gguf) -> Result<Self, ApiError> {
        if model.template.is_some() {
            return Err(ApiError::internal(
                "this model has a Go TEMPLATE, and Go-template rendering is not implemented in Corral yet",
            ));
        }
        match gguf.get_str("tokenizer.chat_template") {
            Some(src) => {
                let bos = special_token(gguf, "tokenizer.ggml.bos_token_id");
                let eos = special_token(gguf, "tokenizer.ggml.eos_token_id");
                JinjaTemplate::new(src, &bos, &eos).map(Renderer::Jinja).map_err(|e| ApiError::internal(e.to_string()))
            }
            None => Ok(Renderer::Raw),
        }
    }

    /// Renders `messages`, ready for the assistant's answer.
    pub fn render(&self, messages: &[Message], tools: Option<&Value>) -> Result<String, ApiError> {
        match self {
            Renderer::Jinja(t) => {
                let opts = RenderOptions { tools: tools.cloned(), add_generation_prompt: true, enable_thinking: None };
                t.render(messages, &opts).map_err(|e| ApiError::internal(e.to_string()))
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
        let prompt = renderer.render(&messages, tools)?;
        let n = runner.tokenize(&prompt).await.map_err(|e| ApiError::internal(e.to_string()))?.len();
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
