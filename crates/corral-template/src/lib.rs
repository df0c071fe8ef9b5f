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
//!
//! Architecture invariant: a render is bounded. A template is code from whoever published the
//! model, so both engines stop a render after [`FUEL`] steps, when its output passes
//! [`MAX_OUTPUT`], or when macro calls nest deeper than [`MAX_DEPTH`], with an error that says which.
//! Memory is the one thing an engine cannot bound from inside (a Jinja string doubled in a short
//! loop): the server renders each [`RenderJob`] in a worker process limited to [`MAX_MEMORY`].

mod gotmpl;
mod jinja;
mod job;

pub use gotmpl::GoTemplate;
pub use jinja::{JinjaTemplate, RenderOptions};
pub use job::{Cache, Compiled, RenderJob, RenderReply, Source, Thinking};

/// Steps one render may take (template instructions, or nodes and range iterations for Go
/// templates). Real templates take a few thousand per message, so conversations of thousands of
/// messages with tools still render; two nested 10,000-step loops do not.
pub const FUEL: u64 = 50_000_000;

/// Bytes one render may produce: far more than any context holds (a million tokens are a few
/// MiB of text).
pub const MAX_OUTPUT: usize = 32 << 20;

/// Memory a template worker may hold (its data segment and anonymous mappings): a conversation
/// at the request size limit renders in a small part of it.
pub const MAX_MEMORY: u64 = 1 << 30;

/// Nesting of macro calls and includes one render may reach.
pub const MAX_DEPTH: usize = 100;

fn out_of_fuel() -> TemplateError {
    TemplateError(format!("the chat template did not finish within {FUEL} steps (a template that loops without end?)"))
}

fn too_long() -> TemplateError {
    TemplateError(format!("the chat template's output grew past {} MiB", MAX_OUTPUT >> 20))
}

/// A template that cannot be parsed or rendered, with the engine's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("template error: {0}")]
pub struct TemplateError(pub String);
