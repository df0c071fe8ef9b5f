//! [`LlamaEngine`]: llama.cpp behind the [`Engine`] trait, with continuous batching.
//!
//! The engine thread owns the backend, the model, one context with `parallel` sequence slots,
//! and the loop. Each turn of the loop:
//!
//! 1. takes new commands (blocking only when there is nothing to do);
//! 2. drops cancelled jobs (their cells stay as the slot's prompt cache);
//! 3. gives waiting completions free slots (tokenizing their prompts);
//! 4. moves running jobs into the holes finished ones left, so the busy slots stay one run of
//!    sequence ids (one llama.cpp pass per step);
//! 5. builds one batch: the pending token of every generating job, and prompt chunks of prompting
//!    jobs up to `num_batch` tokens (an eighth of that while any job generates, so running streams
//!    are not stalled), shared out from a rotating job so no prompt starves;
//! 6. decodes it and samples every job whose last batch entry asked for logits.
//!
//! Cancellation is therefore noticed within one decode step, prompt processing included.
//!
//! Speculative decoding (a request with [`Speculation`]): after its pending token a generating job
//! puts a few drafted tokens in the same batch, each at the next position and each asking for
//! logits. Sampling then walks the draft: the token chosen from the logits before a drafted token
//! is compared with it, and while they agree the drafted token (already decoded) stands and the
//! next position's logits are used; at the first disagreement the chosen token replaces the draft
//! and the rest of the draft's cells are removed. The tokens chosen are the ones the model would
//! have chosen one step at a time, however good the draft: with a sampler the draft is a certain
//! guess, and "draw from the model, keep the guess if the draw equals it" is the exact acceptance
//! rule for that case (see [`crate::speculative`]). Drafts come from the draft model when one is
//! loaded ([`crate::draft`]), else from prompt lookup. The loop times its decode steps and the
//! draft model's proposals, and a job drafts only while that pays ([`crate::pace`]).
//!
//! This file holds the handle other threads use (it only sends commands to the engine thread);
//! the thread's work is split by what it is about:
//!
//! - `load`: initialising llama.cpp, loading the model(s), and what the load reports;
//! - `step`: the loop itself, building one batch per step and sampling from it;
//! - `admit`: which slot a new completion gets, and keeping the busy slots together;
//! - `job`: a running completion's state, and the drafts it makes each step;
//! - `think`: following a thinking budget through the output;
//! - `output`: what a chosen token does, and how a job ends;
//! - `embed`: pooled embeddings, which use the context without the loop's slots;
//! - `media`: images and sounds in prompts, through the projector;
//! - `feed`: a prompt's image or sound going into its sequence while the others decode.
//!
//! [`Speculation`]: corral_types::runner::Speculation

mod admit;
mod embed;
mod feed;
mod job;
mod load;
mod media;
mod output;
mod step;
mod think;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use corral_types::runner::{CompletionRequest, EmbedRequest, Embedded, KvCells, LoadOptions, RunnerInfo};
use llama_cpp_2::token::LlamaToken;

use crate::{CancelOnDrop, Engine, EngineError, Sink};

pub use load::llama_backend;
pub(crate) use load::{init_backend, quiet};

enum Command {
    Tokenize(String, Sender<Vec<u32>>),
    Detokenize(Vec<u32>, Sender<Result<String, String>>),
    Complete(Box<CompletionRequest>, Box<dyn Sink>, Arc<AtomicU8>),
    Embed(EmbedRequest, Sender<Result<Embedded, EngineError>>),
}

/// A model loaded by llama.cpp on its own thread.
pub struct LlamaEngine {
    commands: Mutex<Sender<Command>>,
    info: RunnerInfo,
    embedding: bool,
    cells: Arc<CellCounts>,
}

/// KV cells held by running jobs and by idle slots' caches, published by the engine thread after
/// every step so a metrics scrape never waits for a decode.
#[derive(Default)]
struct CellCounts {
    used: AtomicU64,
    cached: AtomicU64,
    moves: AtomicU64,
}

impl LlamaEngine {
    /// Loads the model (reporting progress from 0 to 1) and starts the engine thread. Returns
    /// once the model is ready or has failed to load.
    pub fn load(opts: LoadOptions, progress: impl FnMut(f32) + Send + 'static) -> Result<Self, EngineError> {
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let embedding = opts.embedding;
        let cells = Arc::new(CellCounts::default());
        let published = cells.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || load::engine_thread(opts, progress, ready_tx, cmd_rx, published))
            .map_err(|e| EngineError::Load(format!("could not start the engine thread: {e}")))?;
        let info = ready_rx.recv().map_err(|_| EngineError::Load("the engine thread died while loading".into()))??;
        Ok(LlamaEngine { commands: Mutex::new(cmd_tx), info, embedding, cells })
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.commands.lock().unwrap_or_else(|p| p.into_inner()).send(cmd).map_err(|_| EngineError::Stopped)
    }
}

impl Engine for LlamaEngine {
    fn info(&self) -> RunnerInfo {
        self.info.clone()
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Tokenize(text.to_string(), tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }

    fn detokenize(&self, tokens: &[u32]) -> Result<String, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Detokenize(tokens.to_vec(), tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)?.map_err(EngineError::Request)
    }

    fn complete_into(&self, request: CompletionRequest, sink: Box<dyn Sink>) -> Result<CancelOnDrop, EngineError> {
        let cancel = Arc::new(AtomicU8::new(crate::wish::RUN));
        self.send(Command::Complete(Box::new(request), sink, cancel.clone()))?;
        Ok(CancelOnDrop(cancel))
    }

    fn embed(&self, request: EmbedRequest) -> Result<Embedded, EngineError> {
        if !self.embedding {
            return Err(EngineError::Request("this model does not produce embeddings".into()));
        }
        let (tx, rx) = mpsc::channel();
        self.send(Command::Embed(request, tx))?;
        rx.recv().map_err(|_| EngineError::Stopped)?
    }

    fn cells(&self) -> KvCells {
        KvCells {
            used: self.cells.used.load(Ordering::Relaxed),
            cached: self.cells.cached.load(Ordering::Relaxed),
            moves: self.cells.moves.load(Ordering::Relaxed),
            total: u64::from(self.info.num_ctx) * u64::from(self.info.parallel),
        }
    }
}

/// Vocabulary ids as the protocol carries them; the placeholders of media are left out.
fn to_u32(tokens: &[LlamaToken]) -> Vec<u32> {
    tokens.iter().filter(|t| !media::is_placeholder(**t)).map(|t| t.0 as u32).collect()
}
