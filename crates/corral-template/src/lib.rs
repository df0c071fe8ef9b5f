//! Prompt rendering.
//!
//! - [`JinjaTemplate`]: a GGUF `tokenizer.chat_template` (Hugging Face's Jinja dialect) rendered
//!   with minijinja plus Python string methods (`.strip()`, `.split()`, `.items()`…), the
//!   `raise_exception` and `strftime_now` helpers templates expect, and the usual variables
//!   (`messages`, `tools`, `add_generation_prompt`, `bos_token`, `eos_token`).
//! - [`GoTemplate`]: Ollama's Modelfile `TEMPLATE`s in Go's `text/template` syntax.
//!
//! Architecture invariant: no I/O. Templates come in as strings and prompts go out as strings;
//! the caller reads GGUF metadata and model layers.

mod gotmpl;
mod jinja;

pub use gotmpl::GoTemplate;
pub use jinja::{JinjaTemplate, RenderOptions};

/// A template that cannot be parsed or rendered, with the engine's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template error: {0}")]
pub struct TemplateError(pub String);
