//! From a conversation to prompt text: which template, what goes in, and dropping old turns when
//! the conversation is longer than the context.

use std::sync::Arc;

use corral_gguf::Gguf;
use corral_store::Model;
use corral_template::{Compiled, RenderJob, Source, Thinking};
use corral_types::api::Message;
use serde_json::Value;

use crate::render::Workers;
use crate::runner::Runner;
use crate::ApiError;

/// How a model turns messages into a prompt.
#[derive(Clone)]
pub struct Renderer {
    kind: Kind,
    /// Where renders run: worker processes, or (`None`) this process's blocking threads.
    workers: Option<Arc<Workers>>,
}

#[derive(Clone)]
enum Kind {
    /// A Modelfile TEMPLATE (Go template syntax, which takes precedence over the GGUF's), or the
    /// GGUF's `tokenizer.chat_template` (Jinja), compiled here to report a broken one at once.
    Template { source: Source, compiled: Compiled, thinking: Thinking },
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
    pub fn for_model(
        model: &Model,
        gguf: &Gguf,
        template: Option<&str>,
        workers: Option<Arc<Workers>>,
    ) -> Result<Self, ApiError> {
        let source = match (template.or(model.template.as_deref()), gguf.get_str("tokenizer.chat_template")) {
            (Some(src), _) => Source::Go(src.to_string()),
            (None, Some(src)) => Source::Jinja {
                source: src.to_string(),
                bos: special_token(gguf, "tokenizer.ggml.bos_token_id"),
                eos: special_token(gguf, "tokenizer.ggml.eos_token_id"),
            },
            (None, None) => return Ok(Renderer { kind: Kind::Raw, workers }),
        };
        let compiled = Compiled::new(&source).map_err(|e| template_error(&source, e))?;
        Ok(Renderer { kind: Kind::Template { source, compiled, thinking: Thinking::default() }, workers })
    }

    /// The model family whose tool-call and thinking markers its template writes.
    pub fn family(&self) -> crate::infer::parse::Family {
        match &self.kind {
            Kind::Template { source: Source::Go(text) | Source::Jinja { source: text, .. }, .. } => {
                crate::infer::parse::Family::of_template(text)
            }
            Kind::Raw => crate::infer::parse::Family::Generic,
        }
    }

    /// Tells templates that read it whether (and how hard) the model should think: Jinja's
    /// `enable_thinking` and `reasoning_effort`, Go's `.Think`, `.ThinkLevel` and `.IsThinkSet`.
    pub fn think(&mut self, thinking: Thinking) {
        if let Kind::Template { thinking: t, .. } = &mut self.kind {
            *t = thinking;
        }
    }

    /// Renders `messages`, ready for the assistant's answer: in a worker when there are workers,
    /// else on the blocking pool (a render may take up to the engines' step bound, a second or
    /// so, which must not stall the async threads that answer every other request).
    pub async fn render(&self, messages: &[Message], tools: Option<&Value>) -> Result<String, ApiError> {
        self.run(messages, tools, None).await
    }

    /// A fill-in-the-middle prompt: `messages` end with the text before the insertion point,
    /// `suffix` is the text after it. A Go template that reads `.Suffix` writes it (as in
    /// Ollama); otherwise the vocabulary's own tokens (in `gguf`, looked up only here: it may mean
    /// a search of the whole vocabulary) go around the two (prefix, suffix, middle: the order the
    /// code models were trained on).
    pub async fn render_insert(&self, messages: &[Message], suffix: &str, gguf: &Gguf) -> Result<String, ApiError> {
        if let Kind::Template { source: Source::Go(src), .. } = &self.kind {
            if src.contains(".Suffix") {
                return self.run(messages, None, Some(suffix)).await;
            }
        }
        let Some([pre, suf, mid]) = crate::show::fill_in_middle_tokens(gguf) else {
            return Err(ApiError::bad_request(
                "the model cannot fill in the middle: no .Suffix in its template, no FIM tokens in its vocabulary",
            ));
        };
        let prompt = messages.iter().rfind(|m| m.role != "system").map_or("", |m| m.content.as_str());
        Ok(format!("{pre}{prompt}{suf}{suffix}{mid}"))
    }

    async fn run(&self, messages: &[Message], tools: Option<&Value>, suffix: Option<&str>) -> Result<String, ApiError> {
        let Kind::Template { source, compiled, thinking } = &self.kind else {
            return Ok(messages
                .iter()
                .filter(|m| m.role != "system")
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join(""));
        };
        let reply = match &self.workers {
            Some(workers) => {
                let job = RenderJob {
                    template: source.clone(),
                    messages: messages.to_vec(),
                    tools: tools.cloned(),
                    thinking: thinking.clone(),
                    suffix: suffix.map(String::from),
                };
                workers.render(&job).await
            }
            None => {
                let (compiled, messages, tools, thinking) =
                    (compiled.clone(), messages.to_vec(), tools.cloned(), thinking.clone());
                let suffix = suffix.map(String::from);
                let render = move || compiled.render(&messages, tools.as_ref(), &thinking, suffix.as_deref());
                corral_store::unblock(render).await
            }
        };
        reply.map_err(|e| template_error(source, e))
    }
}

/// A template that cannot render: the request's fault for a Go template (one a request may
/// carry, as Ollama's are checked at create), the model's for its own chat template.
fn template_error(source: &Source, e: corral_template::TemplateError) -> ApiError {
    match source {
        Source::Go(_) => ApiError::bad_request(e.to_string()),
        // The model's own template is broken: the user's to know, not a fault of ours.
        Source::Jinja { .. } => ApiError::server(e.to_string()),
    }
}

/// End-of-turn markers that, when a template writes them, are where the model's turn ends.
const END_OF_TURN: [&str; 6] = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>", "<|endoftext|>"];

/// Stop sequences for a model whose parameters set none: the end-of-turn markers its template
/// uses (llama.cpp also stops at end-of-generation tokens; this covers templates whose markers
/// are not marked as such in the vocabulary).
pub fn default_stops(model: &Model, gguf: &Gguf) -> Vec<String> {
    let text = model.template.as_deref().or_else(|| gguf.get_str("tokenizer.chat_template")).unwrap_or_default();
    stops_for_template(text)
}

/// [`default_stops`] of a template's text. gpt-oss's `<|end|>` ends one message of its answer
/// (the reasoning), not the answer: its end is a token llama.cpp stops at.
fn stops_for_template(text: &str) -> Vec<String> {
    let harmony = crate::infer::parse::Family::of_template(text) == crate::infer::parse::Family::Harmony;
    END_OF_TURN.iter().filter(|m| text.contains(*m) && !(harmony && **m == "<|end|>")).map(|m| m.to_string()).collect()
}

/// What an image is taken to cost when fitting a conversation to the context (Ollama's figure; the
/// runner refuses a prompt whose real count does not fit).
const IMAGE_TOKENS: usize = 768;

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
        let prompt = renderer.render(&messages, tools).await?;
        // An image counts as Ollama counts it before the runner has seen it: 768 tokens.
        let (text, images) = super::media::without_tags(&prompt);
        let n = runner.tokenize(&text).await?.len() + images * IMAGE_TOKENS;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_turn_markers_stop_unless_they_end_only_a_harmony_message() {
        assert_eq!(stops_for_template("<|im_start|>{{ x }}<|im_end|>"), vec!["<|im_end|>"]);
        assert_eq!(stops_for_template("<|user|>{{ x }}<|end|>"), vec!["<|end|>"]);
        let oss = "<|start|>assistant<|channel|>final<|message|>{{ x }}<|end|>";
        assert!(stops_for_template(oss).is_empty());
    }
}
