//! The inference engine.
//!
//! [`Engine`] is what the rest of Corral needs from a loaded model: tokenize, detokenize, and
//! stream a completion. [`LlamaEngine`] implements it on llama.cpp (through `llama-cpp-2`) with a
//! continuous-batching loop: one engine thread owns the model and a context with several sequence
//! slots, and each step decodes one batch that mixes the next token of every generating sequence
//! with chunks of new prompts, then samples each sequence on its own.
//!
//! Architecture invariant: the engine knows nothing about HTTP or JSON wire formats; it speaks
//! the plain request and event types of `corral_types::runner`.
//!
//! Architecture invariant: llama.cpp objects never leave the engine thread (a `llama_context` is
//! not thread-safe); other threads talk to it through channels.

pub mod backends;
pub mod compat;
mod draft;
mod grammar;
mod llama;
mod log;
mod offload;
mod pace;
pub mod quantize;
pub mod rpc;
mod sample;
mod slots;
pub mod speculative;
mod stop;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use corral_types::runner::{
    CompletionRequest, DoneReason, EmbedRequest, Embedded, KvCells, RunnerInfo, TokenLogprob, Usage,
};

pub use llama::{llama_backend, LlamaEngine};
pub use stop::StopBuffer;

/// Has ggml call `hook` with its message just before it aborts the process (a failed assertion,
/// an RPC peer that stopped answering): the process's last chance to say why.
pub fn on_abort(hook: extern "C" fn(*const std::ffi::c_char)) {
    // SAFETY: a plain function pointer, kept by ggml for the life of the process.
    unsafe { llama_cpp_sys_2::ggml_set_abort_callback(Some(hook)) };
}

/// What can go wrong talking to an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Load(String),
    /// The request cannot be served (too long, wrong kind of model…).
    #[error("{0}")]
    Request(String),
    /// The input is longer than the context and may not be cut.
    #[error("{0}")]
    ContextLength(String),
    /// llama.cpp failed on a request it accepted (a decode error, non-finite output).
    #[error("{0}")]
    Internal(String),
    /// The engine thread is gone (it failed or was shut down).
    #[error("the model engine has stopped")]
    Stopped,
}

impl EngineError {
    /// The kind the runner protocol carries, which the server acts on.
    pub fn kind(&self) -> corral_types::runner::ErrorKind {
        use corral_types::runner::ErrorKind;
        match self {
            EngineError::Load(_) | EngineError::Internal(_) => ErrorKind::Internal,
            EngineError::Request(_) => ErrorKind::Invalid,
            EngineError::ContextLength(_) => ErrorKind::ContextLength,
            EngineError::Stopped => ErrorKind::Stopped,
        }
    }
}

/// One event of a completion.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text to send (already free of stop sequences, whole UTF-8 characters only).
    Token { text: String, logprob: Option<TokenLogprob> },
    /// The last event of a successful completion. `tokens` is prompt plus output.
    Done { reason: DoneReason, usage: Usage, tokens: Vec<u32> },
    /// The last event of a failed completion: `Request` or `ContextLength` for one that could not
    /// start as asked, `Internal` for a decode that failed.
    Error(EngineError),
}

/// Where the events of a completion go, on the engine thread.
///
/// The engine hands each event over as it happens and calls [`Sink::flush`] once the step that
/// made them is over, so a sink that writes to a socket can send one step's tokens of every
/// sequence in one write, between decode steps, with no thread of its own to wake per token
/// (on a machine whose cores all run the model, each extra wake-up takes a core from it).
pub trait Sink: Send {
    /// Takes one event; `false` when nobody wants the rest (the engine then cancels the job).
    fn event(&mut self, event: Event) -> bool;
    /// Sends on what was taken since the last call. The engine calls it after every step in
    /// which the sink got events, and right after the last event.
    fn flush(&mut self) {}
}

impl Sink for Sender<Event> {
    fn event(&mut self, event: Event) -> bool {
        self.send(event).is_ok()
    }
}

/// A running completion: its events, and the handle that cancels it when dropped.
#[derive(Debug)]
pub struct Generation {
    pub events: Receiver<Event>,
    pub cancel: CancelOnDrop,
}

impl Generation {
    /// Asks the engine to stop this generation.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// What the owner of a generation wants of it (the engine checks between steps).
pub(crate) mod wish {
    /// Go on.
    pub const RUN: u8 = 0;
    /// Drop it: nobody wants the output.
    pub const CANCEL: u8 = 1;
    /// End it now as if a stop sequence matched, with its `Done` (the caller has what it needs).
    pub const STOP: u8 = 2;
}

/// Stops a generation at the engine's next step, prompt processing included, when dropped (or
/// when [`CancelOnDrop::cancel`] is called). Keep it alive as long as the output is wanted.
#[derive(Debug)]
pub struct CancelOnDrop(Arc<AtomicU8>);

impl CancelOnDrop {
    pub fn cancel(&self) {
        self.0.store(wish::CANCEL, Ordering::Relaxed);
    }

    /// Ends the generation at the next step with `Done { reason: Stop }` and its usage.
    pub fn stop(&self) {
        let _ = self.0.compare_exchange(wish::RUN, wish::STOP, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = self.0.compare_exchange(wish::RUN, wish::CANCEL, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A loaded model.
pub trait Engine: Send + Sync {
    /// What was loaded.
    fn info(&self) -> RunnerInfo;
    /// Tokens of `text`, special tokens parsed, BOS added if the model wants one.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError>;
    /// Text of `tokens`.
    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError>;
    /// Starts a completion whose events go to `sink`; dropping the handle cancels it.
    fn complete_into(&self, request: CompletionRequest, sink: Box<dyn Sink>) -> Result<CancelOnDrop, EngineError>;
    /// Starts a completion whose events come through a channel.
    fn complete(&self, request: CompletionRequest) -> Result<Generation, EngineError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let cancel = self.complete_into(request, Box::new(tx))?;
        Ok(Generation { events: rx, cancel })
    }
    /// Pooled embeddings of texts, batched together (an embedding model only).
    fn embed(&self, request: EmbedRequest) -> Result<Embedded, EngineError>;
    /// KV cache cells in use, as of the last decode step (never waits for the engine).
    fn cells(&self) -> KvCells;
}
