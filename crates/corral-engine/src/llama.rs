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

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use corral_types::runner::{
    CompletionRequest, DoneReason, EmbedRequest, Embedded, KvCacheType, KvCells, LoadOptions, RunnerInfo, Speculation,
    ThinkBudget, TokenLogprob, Usage,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::draft::{Drafter, VOCAB_SLACK};
use crate::offload;
use crate::pace::{Cost, Payoff, StepCost};
use crate::sample::{self, Picker};
use crate::slots::{self, SlotState};
use crate::speculative::{self, DraftLength};
use crate::stop::StopBuffer;
use crate::{CancelOnDrop, Engine, EngineError, Event, Sink};

enum Command {
    Tokenize(String, Sender<Vec<u32>>),
    Detokenize(Vec<u32>, Sender<Result<String, String>>),
    Complete(CompletionRequest, Box<dyn Sink>, Arc<AtomicU8>),
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
            .spawn(move || engine_thread(opts, progress, ready_tx, cmd_rx, published))
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
        self.send(Command::Complete(request, sink, cancel.clone()))?;
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

/// llama.cpp's backend can be initialised once per process, after its backend modules are loaded
/// (from the default library directory unless the process loaded them earlier); the first load
/// decides whether its logs are shown. (A runner process loads one model; tests load several.)
fn backend(verbose: bool) -> Result<&'static LlamaBackend, String> {
    static BACKEND: std::sync::OnceLock<Result<LlamaBackend, String>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            if !verbose {
                // Before anything is loaded, so the module loader's own lines stay quiet too.
                quiet();
            }
            crate::backends::load(None, &[])?;
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if !verbose {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Initialises llama.cpp's backend, quietly (for work that loads no model: quantizing).
pub(crate) fn init_backend() -> Result<(), String> {
    backend(false).map(|_| ())
}

/// Drops llama.cpp's and ggml's log lines.
pub(crate) fn quiet() {
    unsafe extern "C" fn drop_line(
        _level: llama_cpp_sys_2::ggml_log_level,
        _text: *const std::ffi::c_char,
        _user_data: *mut std::ffi::c_void,
    ) {
    }
    // SAFETY: installs a function that ignores its arguments; llama_log_set also sets ggml's.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(drop_line), std::ptr::null_mut()) }
}

fn engine_thread(
    opts: LoadOptions,
    mut progress: impl FnMut(f32) + Send + 'static,
    ready: Sender<Result<RunnerInfo, EngineError>>,
    commands: Receiver<Command>,
    cells: Arc<CellCounts>,
) {
    let fail = |msg: String| {
        let _ = ready.send(Err(EngineError::Load(msg)));
    };
    let backend = match backend(opts.verbose) {
        Ok(b) => b,
        Err(e) => return fail(format!("could not initialise llama.cpp: {e}")),
    };
    let (progress_tx, progress_rx) = mpsc::channel::<f32>();
    let forward = std::thread::spawn(move || {
        for p in progress_rx {
            progress(p);
        }
    });
    let parallel = opts.parallel.max(1);
    let num_ctx = opts.num_ctx.max(16);
    let threads = if opts.num_thread > 0 {
        opts.num_thread as i32
    } else {
        std::thread::available_parallelism().map_or(4, |n| n.get() as i32)
    };
    // An embedding model sees each input whole in one micro-batch (its attention is not causal),
    // so a batch holds every slot's full context.
    let num_batch = if opts.embedding { num_ctx * parallel } else { opts.num_batch.max(32) };
    let mut ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(num_ctx * parallel))
        .with_n_batch(num_batch)
        .with_n_ubatch(num_batch)
        .with_n_seq_max(parallel)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_embeddings(opts.embedding);
    let mut params = LlamaModelParams::default().with_progress_callback(move |p| {
        let _ = progress_tx.send(p);
        true
    });
    if let Some(mmap) = opts.use_mmap {
        params = params.with_use_mmap(mmap);
    }
    let (params, offload) = match offload::configure(&opts, params, &mut ctx_params) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let model = LlamaModel::load_from_file(backend, &opts.model_path, &params);
    drop(params); // ends the progress channel
    let _ = forward.join();
    let mut model = match model {
        Ok(m) => m,
        Err(e) => return fail(format!("could not load model {}: {e}", opts.model_path)),
    };
    let mut adapters = Vec::new();
    for (path, scale) in &opts.adapters {
        match model.lora_adapter_init(path) {
            Ok(a) => adapters.push((a, *scale)),
            Err(e) => return fail(format!("could not load adapter {path}: {e}")),
        }
    }
    let mut offload = offload;
    // The draft's context has the same shape, with an f16 cache (it is small, and a quantized
    // cache does not suit every head size).
    let draft_ctx_params = offload::with_kv_cache_type(ctx_params.clone(), KvCacheType::F16);
    let created = match model.new_context(backend, ctx_params.clone()) {
        // A quantized cache needs rows that are whole blocks of 32 (a head size of 16 is not): as
        // Ollama does, such a model gets an f16 cache instead of no context at all.
        Err(e) if offload.kv_cache_type.quantized() => {
            eprintln!(
                "runner: warning: a {} KV cache did not fit this model ({e}); using f16",
                offload.kv_cache_type.as_str()
            );
            offload.kv_cache_type = KvCacheType::F16;
            model.new_context(backend, offload::with_kv_cache_type(ctx_params, KvCacheType::F16))
        }
        other => other,
    };
    let mut ctx = match created {
        Ok(c) => c,
        Err(e) => return fail(format!("could not create a context of {} tokens: {e}", num_ctx * parallel)),
    };
    for (adapter, scale) in &mut adapters {
        if let Err(e) = ctx.lora_adapter_set(adapter, *scale) {
            return fail(format!("could not apply adapter: {e}"));
        }
    }
    let draft_model = match &opts.draft_path {
        Some(path) => {
            // Wholly on the GPUs unless the request keeps the model on the CPU.
            let params = LlamaModelParams::default().with_n_gpu_layers(if opts.num_gpu == 0 { 0 } else { 999 });
            match LlamaModel::load_from_file(backend, path, &params) {
                Ok(m) if (m.n_vocab() - model.n_vocab()).abs() > VOCAB_SLACK => {
                    return fail(format!(
                        "the draft model {path} has {} tokens and the model {}: they do not share a vocabulary",
                        m.n_vocab(),
                        model.n_vocab()
                    ))
                }
                Ok(m) => Some(m),
                Err(e) => return fail(format!("could not load draft model {path}: {e}")),
            }
        }
        None => None,
    };
    let drafter = match &draft_model {
        Some(m) => match m.new_context(backend, draft_ctx_params) {
            Ok(c) => Some(Drafter::new(m, c, parallel as usize, num_batch as usize, model.n_vocab())),
            Err(e) => return fail(format!("could not create the draft model's context: {e}")),
        },
        None => None,
    };

    let kv_bytes = offload.kv_cache_type.bytes(kv_elements(&model, num_ctx * parallel));
    let layers = model.n_layer() + 1; // and the output layer, as llama.cpp counts offloaded layers
    let devices = offload.used();
    let gpu_bytes: u64 = devices.iter().map(|d| d.bytes).sum();
    let gpu_layers = offload.gpu_layers.min(layers);
    // Wholly on GPUs, the measured GPU memory is the model's size (weights, cache and compute
    // buffers); otherwise the estimate, and at least what the GPUs took.
    let draft_bytes =
        draft_model.as_ref().map_or(0, |m| m.size() + KvCacheType::F16.bytes(kv_elements(m, num_ctx * parallel)));
    let memory_bytes = draft_bytes
        + if gpu_layers == layers && gpu_bytes > 0 { gpu_bytes } else { (model.size() + kv_bytes).max(gpu_bytes) };
    let info = RunnerInfo {
        num_ctx,
        n_ctx_train: model.n_ctx_train(),
        parallel,
        memory_bytes,
        add_bos: model.vocab().should_add_bos(),
        layers,
        gpu_layers,
        devices,
        cpu_variant: crate::backends::load(None, &[]).ok().and_then(|b| b.cpu_variant.clone()),
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    Loop {
        model: &model,
        ctx: &mut ctx,
        num_ctx,
        num_batch,
        slots: (0..parallel).map(|_| None).collect(),
        cached: (0..parallel).map(|_| Vec::new()).collect(),
        in_batch: vec![false; parallel as usize],
        rotate: 0,
        // Recurrent state cannot be copied between sequences the way KV cells can.
        movable: !model.is_recurrent() && !model.is_hybrid(),
        window: sliding_window(&model),
        cells,
        drafter,
        step_cost: StepCost::default(),
        prompt_in_step: false,
    }
    .run(commands);
}

/// Elements of `model`'s KV cache for `cells` positions: K and V, per layer and position.
fn kv_elements(model: &LlamaModel, cells: u32) -> u64 {
    let head_dim = model.n_embd() as u64 / u64::from(model.n_head().max(1));
    2 * u64::from(model.n_layer()) * u64::from(cells) * head_dim * u64::from(model.n_head_kv())
}

/// The sliding attention window from the GGUF metadata (`<arch>.attention.sliding_window`).
fn sliding_window(model: &LlamaModel) -> Option<u32> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok()?.parse().ok().filter(|w| *w > 0)
}

/// Completions waiting for a slot: the request, where its events go, and its owner's wish.
type Waiting = VecDeque<(CompletionRequest, Box<dyn Sink>, Arc<AtomicU8>)>;

/// Hands a job's last event to its sink and sends it on.
fn last(sink: &mut dyn Sink, event: Event) {
    sink.event(event);
    sink.flush();
}

/// A completion occupying a slot.
struct Job {
    events: Box<dyn Sink>,
    cancel: Arc<AtomicU8>,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already decoded (or found in the slot's cache).
    fed: usize,
    /// Prompt tokens found in the slot's cache, not decoded again.
    reused: usize,
    /// Decode steps that included this job together with another one.
    shared_steps: u32,
    /// Tokens kept at the start when the context is shifted.
    num_keep: u32,
    /// The context may be shifted at all.
    may_shift: bool,
    /// The context was shifted: the KV cells no longer hold a prefix of prompt + output.
    shifted: bool,
    /// KV position of the next token.
    n_past: i32,
    /// Sampled token waiting to be decoded.
    next: Option<LlamaToken>,
    output: Vec<LlamaToken>,
    picker: Picker,
    stop: StopBuffer,
    num_predict: Option<u32>,
    logprobs: Option<u32>,
    started: Instant,
    first_token: Option<Instant>,
    /// Batch index of this job's logits in the current step.
    logits_at: Option<i32>,
    /// The thinking bound, while it may still apply.
    think: Option<Thinking>,
    /// Tokens written for the model (a closing tag), taken instead of sampling, one per step.
    forced: VecDeque<LlamaToken>,
    /// Speculative decoding, when the request asked for it.
    drafting: Option<Drafting>,
}

/// A job's speculative decoding state.
struct Drafting {
    length: DraftLength,
    /// The prompt and the answer so far, where drafts are looked up.
    seen: Vec<LlamaToken>,
    /// Tokens drafted in the batch being decoded, after the job's pending token.
    draft: Vec<LlamaToken>,
    proposed: u32,
    accepted: u32,
    /// Whether drafting pays for this job now.
    payoff: Payoff,
    /// Draft whether it pays or not.
    always: bool,
}

/// Shortest and longest n-gram prompt lookup matches: a match of one token drafts at nearly
/// every step and is wrong most of the time.
const LOOKUP_NGRAM: (usize, usize) = (2, 4);

impl Drafting {
    fn new(spec: Speculation, prompt: &[LlamaToken]) -> Option<Self> {
        let max = spec.max_tokens.min(16) as usize;
        (max > 0).then(|| Drafting {
            length: DraftLength::new(1, max),
            seen: prompt.to_vec(),
            draft: Vec::new(),
            proposed: 0,
            accepted: 0,
            payoff: Payoff::new(),
            always: spec.always,
        })
    }
}

/// What became of a job after one of its tokens.
#[derive(PartialEq, Eq)]
enum Flow {
    Going,
    Ended,
}

/// Where a job is in its thinking, for [`ThinkBudget`].
struct Thinking {
    budget: ThinkBudget,
    inside: bool,
    /// Thinking tokens generated so far.
    spent: u32,
    /// The latest output text, to find a tag cut across tokens.
    tail: String,
}

impl Thinking {
    /// Follows one more token of output; true when the budget is spent inside the thinking.
    fn after(&mut self, text: &str) -> ThinkStep {
        self.tail.push_str(text);
        let tag = if self.inside { &self.budget.close } else { &self.budget.open };
        if self.tail.contains(tag.as_str()) {
            if self.inside {
                return ThinkStep::Closed;
            }
            self.inside = true;
            self.tail.clear();
            return ThinkStep::Going;
        }
        // Keep only what a tag could still end in.
        let keep = self.budget.open.len().max(self.budget.close.len());
        if self.tail.len() > keep {
            let mut cut = self.tail.len() - keep;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
        if self.inside {
            self.spent += 1;
            if self.spent >= self.budget.tokens {
                return ThinkStep::Spent;
            }
        }
        ThinkStep::Going
    }
}

enum ThinkStep {
    Going,
    /// The model closed its thinking itself.
    Closed,
    /// The budget is spent: the closing tag is to be written.
    Spent,
}

struct Loop<'m, 'c, 'd> {
    model: &'m LlamaModel,
    ctx: &'c mut LlamaContext<'m>,
    num_ctx: u32,
    num_batch: u32,
    slots: Vec<Option<Job>>,
    /// What each idle slot's sequence still holds in the KV cache (the prompt and answer of its
    /// last job), so a prompt sharing a prefix with it skips that prefix.
    cached: Vec<Vec<LlamaToken>>,
    /// Which slots have tokens in the batch being built.
    in_batch: Vec<bool>,
    /// Where the next prompt chunk round starts (fairness between long prompts).
    rotate: usize,
    /// Running sequences may be moved to other slots (see [`Loop::close_gaps`]).
    movable: bool,
    /// The model's sliding attention window, if it has one.
    window: Option<u32>,
    cells: Arc<CellCounts>,
    /// The draft model, if one was loaded.
    drafter: Option<Drafter<'d>>,
    /// The decode steps' time, fitted to their size (what a drafted token costs to check).
    step_cost: StepCost,
    /// The batch being decoded holds prompt tokens (its time says nothing about decode steps).
    prompt_in_step: bool,
}

fn to_u32(tokens: &[LlamaToken]) -> Vec<u32> {
    tokens.iter().map(|t| t.0 as u32).collect()
}

impl Loop<'_, '_, '_> {
    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(text.as_bytes(), true, true);
        // A template that writes the BOS token itself, plus add_special, would give two.
        if tokens.len() >= 2 && tokens[0] == vocab.bos() && tokens[1] == vocab.bos() {
            tokens.remove(0);
        }
        tokens
    }

    fn run(mut self, commands: Receiver<Command>) {
        let mut waiting = Waiting::new();
        let mut closed = false;
        let mut batch = LlamaBatch::new(self.num_batch as usize, 1);
        loop {
            let busy = self.slots.iter().any(Option::is_some) || !waiting.is_empty();
            if !busy {
                self.publish_cells();
                if closed {
                    return;
                }
                match commands.recv() {
                    Ok(cmd) => self.handle(cmd, &mut waiting),
                    Err(_) => return,
                }
            }
            loop {
                match commands.try_recv() {
                    Ok(cmd) => self.handle(cmd, &mut waiting),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Cancelled jobs go first, so their slots (and cached prompts) are free for new ones.
            self.drop_cancelled();
            self.admit(&mut waiting);
            self.close_gaps();
            if self.fill(&mut batch) == 0 {
                continue;
            }
            let in_batch: Vec<usize> = (0..self.slots.len()).filter(|i| self.in_batch[*i]).collect();
            if in_batch.len() > 1 {
                for &i in &in_batch {
                    if let Some(job) = self.slots[i].as_mut() {
                        job.shared_steps += 1;
                    }
                }
            }
            let started = Instant::now();
            if let Err(e) = self.ctx.decode(&mut batch) {
                let msg = format!("llama.cpp failed to decode a batch: {e}");
                for i in 0..self.slots.len() {
                    if self.slots[i].as_ref().is_some_and(|j| j.logits_at.is_some() || j.fed > 0) {
                        self.fail(i, &msg);
                    }
                }
                continue;
            }
            for i in 0..self.slots.len() {
                self.sample(i);
            }
            // Sampling is timed with the decode: checking a drafted token samples one more row.
            if !self.prompt_in_step {
                self.step_cost.record(batch.n_tokens() as usize, started.elapsed().as_secs_f64());
            }
            // One step's tokens go out together (jobs that ended this step have sent theirs).
            for job in self.slots.iter_mut().flatten() {
                job.events.flush();
            }
            self.publish_cells();
        }
    }

    /// Moves running jobs so the busy slots form one run of sequence ids.
    ///
    /// Each sequence has its own KV stream and llama.cpp decodes a batch in one pass per run of
    /// consecutive sequence ids, so when jobs in the middle finish, every later step pays for an
    /// extra pass until the rest end. Copying a job's stream into the hole costs one copy of
    /// `num_ctx` cells (tens of MB, a few milliseconds), about what one extra pass costs: it pays
    /// for itself at the next step. The copy is queued by llama.cpp and done at the start of the
    /// next decode, before anything is written. A job whose context was shifted is not moved: a
    /// pending shift would not travel with its cells.
    fn close_gaps(&mut self) {
        if !self.movable {
            return;
        }
        loop {
            let busy: Vec<usize> = (0..self.slots.len()).filter(|i| self.slots[*i].is_some()).collect();
            let (Some(&lo), Some(&hi)) = (busy.first(), busy.last()) else { return };
            let Some(hole) = (lo..hi).find(|i| self.slots[*i].is_none()) else { return };
            if self.slots[hi].as_ref().is_some_and(|j| j.shifted) {
                return;
            }
            let (from, to) = (hi as i32, hole as i32);
            if self.ctx.kv_cache_seq_cp(from, to, None, None).is_err() {
                return;
            }
            let _ = self.ctx.clear_kv_cache_seq(Some(hi as u32), None, None);
            self.slots[hole] = self.slots[hi].take();
            if let Some(d) = self.drafter.as_mut() {
                d.moved(hi, hole);
            }
            self.cached[hole].clear();
            self.cached[hi].clear();
            self.cells.moves.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the KV cells held by running jobs (what they have decoded) and by idle slots.
    fn publish_cells(&self) {
        let used: i64 = self.slots.iter().flatten().map(|j| i64::from(j.n_past.max(0))).sum();
        let cached: usize =
            (0..self.slots.len()).filter(|i| self.slots[*i].is_none()).map(|i| self.cached[i].len()).sum();
        self.cells.used.store(used as u64, Ordering::Relaxed);
        self.cells.cached.store(cached as u64, Ordering::Relaxed);
    }

    /// Embeds the inputs, as many sequences per batch as there are slots and tokens for.
    fn embed(&mut self, req: &EmbedRequest) -> Result<Embedded, EngineError> {
        let limit = self.num_ctx as usize;
        let mut seqs = Vec::with_capacity(req.inputs.len());
        for text in &req.inputs {
            // Special tokens are added ([CLS] … [SEP]) but not parsed out of the text.
            let mut tokens = self.model.vocab().tokenize(text.as_bytes(), true, false);
            if tokens.len() > limit {
                if !req.truncate {
                    return Err(EngineError::ContextLength(format!(
                        "the input length exceeds the context length: the input is {} tokens and the context is {limit} tokens",
                        tokens.len()
                    )));
                }
                let last = tokens[tokens.len() - 1];
                tokens.truncate(limit);
                // Keep the closing separator (BERT's [SEP]) where the model adds one.
                if last == self.model.vocab().sep() {
                    tokens[limit - 1] = last;
                }
            }
            seqs.push(tokens);
        }
        let mut vectors = vec![Vec::new(); seqs.len()];
        let mut batch = LlamaBatch::new(self.num_batch as usize, self.slots.len() as i32);
        let mut next = 0;
        while next < seqs.len() {
            batch.clear();
            let mut group = Vec::new();
            let mut used = 0;
            while next < seqs.len()
                && group.len() < self.slots.len()
                && used + seqs[next].len() <= self.num_batch as usize
            {
                batch
                    .add_sequence(&seqs[next], group.len() as i32, true)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                used += seqs[next].len();
                group.push(next);
                next += 1;
            }
            self.ctx.clear_kv_cache();
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Internal(format!("llama.cpp failed to embed a batch: {e}")))?;
            for (seq, &input) in group.iter().enumerate() {
                let v = self
                    .ctx
                    .embeddings_seq_ith(seq as i32)
                    .map_err(|e| EngineError::Internal(format!("no embedding: {e}")))?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(EngineError::Internal(
                        "the model produced an embedding with NaN or infinite values".into(),
                    ));
                }
                vectors[input] = v.to_vec();
            }
        }
        let prompt_tokens = seqs.iter().map(Vec::len).sum::<usize>() as u32;
        Ok(Embedded { vectors, prompt_tokens })
    }

    fn handle(&mut self, cmd: Command, waiting: &mut Waiting) {
        match cmd {
            Command::Tokenize(text, reply) => {
                let _ = reply.send(to_u32(&self.tokenize(&text)));
            }
            Command::Detokenize(tokens, reply) => {
                let n_vocab = self.model.n_vocab() as u32;
                let result = match tokens.iter().find(|t| **t >= n_vocab) {
                    Some(bad) => Err(format!("token {bad} is outside the vocabulary of {n_vocab} tokens")),
                    None if tokens.is_empty() => Ok(String::new()),
                    None => {
                        let tokens: Vec<LlamaToken> = tokens.iter().map(|t| LlamaToken(*t as i32)).collect();
                        Ok(String::from_utf8_lossy(&self.model.vocab().detokenize(&tokens, false, true)).into_owned())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Complete(req, events, cancel) => waiting.push_back((req, events, cancel)),
            Command::Embed(req, reply) => {
                let _ = reply.send(self.embed(&req));
            }
        }
    }

    /// The idle slot for `prompt` (see [`crate::slots`]) and how many prompt tokens it already has.
    fn pick_slot(&self, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        let states: Vec<SlotState> = (0..self.slots.len())
            .map(|i| SlotState {
                busy: self.slots[i].is_some(),
                held: self.cached[i].len(),
                common: self.cached[i].iter().zip(prompt).take_while(|(a, b)| a == b).count(),
            })
            .collect();
        slots::choose(&states).map(|i| (i, states[i].common))
    }

    /// Moves waiting completions into free slots.
    fn admit(&mut self, waiting: &mut Waiting) {
        while self.slots.iter().any(Option::is_none) {
            let Some((req, mut events, cancel)) = waiting.pop_front() else { return };
            if cancel.load(Ordering::Relaxed) != crate::wish::RUN {
                continue;
            }
            let prompt = self.tokenize(&req.prompt);
            let error = if prompt.is_empty() {
                Some(EngineError::Request("the prompt is empty".to_string()))
            } else if prompt.len() >= self.num_ctx as usize {
                Some(EngineError::ContextLength(format!(
                    "the prompt is {} tokens, which does not fit the context of {} tokens",
                    prompt.len(),
                    self.num_ctx
                )))
            } else {
                None
            };
            if let Some(e) = error {
                last(&mut *events, Event::Error(e));
                continue;
            }
            let grammar = match req.constraint.as_ref().map(crate::grammar::to_gbnf).transpose() {
                Ok(g) => g,
                Err(e) => {
                    last(&mut *events, Event::Error(EngineError::Request(e)));
                    continue;
                }
            };
            let picker = match sample::picker(self.model, &req.sampling, grammar.as_deref(), self.num_ctx) {
                Ok(p) => p,
                Err(e) => {
                    last(&mut *events, Event::Error(EngineError::Request(e)));
                    continue;
                }
            };
            let (free, mut reuse) = self.pick_slot(&prompt).expect("a slot is free");
            // The last prompt token is always decoded again: its logits give the first answer token.
            reuse = reuse.min(prompt.len() - 1);
            let trimmed = self.ctx.clear_kv_cache_seq(Some(free as u32), Some(reuse as u32), None).unwrap_or(false);
            // A memory that cannot drop a suffix (recurrent models), or a sliding window that lost
            // part of the prefix: start over.
            if !trimmed || !slots::prefix_usable(reuse, self.ctx.kv_cache_seq_pos_min(free as i32), self.window) {
                reuse = 0;
                let _ = self.ctx.clear_kv_cache_seq(Some(free as u32), None, None);
            }
            self.cached[free].clear();
            // Rejected drafts are removed from the cache, which recurrent state cannot do.
            let drafting = req.speculation.filter(|_| self.movable).and_then(|s| Drafting::new(s, &prompt));
            self.slots[free] = Some(Job {
                events,
                cancel,
                prompt,
                fed: reuse,
                reused: reuse,
                shared_steps: 0,
                num_keep: req.num_keep.unwrap_or(4),
                may_shift: req.shift,
                shifted: false,
                n_past: reuse as i32,
                next: None,
                output: Vec::new(),
                picker,
                stop: StopBuffer::new(req.stop),
                num_predict: req.num_predict,
                logprobs: req.logprobs,
                started: Instant::now(),
                first_token: None,
                logits_at: None,
                think: req.think_budget.map(|budget| Thinking {
                    inside: budget.inside,
                    budget,
                    spent: 0,
                    tail: String::new(),
                }),
                forced: VecDeque::new(),
                drafting,
            });
        }
    }

    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            match self.slots[i].as_ref().map(|j| j.cancel.load(Ordering::Relaxed)) {
                Some(crate::wish::CANCEL) => self.free(i),
                Some(crate::wish::STOP) => self.finish(i, DoneReason::Stop),
                _ => {}
            }
        }
    }

    /// Fills the batch for this step; returns the number of tokens in it.
    ///
    /// Every generating job's pending token goes in; prompt chunks share the rest, starting from a
    /// rotating job. While any job is generating, prompts get only an eighth of `num_batch` per
    /// step: a step lasts as long as its prompt tokens take (512 of them are three seconds for a
    /// 0.5B model on two cores), and every running stream waits that long for its next token.
    /// Prompt throughput on CPU is about the same for 64-token chunks as for 512. Entries are
    /// then written in sequence order: llama.cpp cuts a step into passes at each break in the run
    /// of sequence ids it meets, so a prompt chunk written after every decode token would cost a
    /// pass of its own. Drafted tokens follow their job's pending token; they take room from
    /// the batch before prompt chunks do.
    fn fill(&mut self, batch: &mut LlamaBatch) -> i32 {
        batch.clear();
        let n = self.slots.len();
        let decoding = self.slots.iter().flatten().filter(|j| j.next.is_some()).count();
        let mut room = (self.num_batch as usize).saturating_sub(decoding);
        let cost = self.draft_cost(decoding);
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            if let Some(job) = slot {
                room -= draft(job, seq, self.drafter.as_mut(), cost, self.num_ctx, room);
            }
        }
        let share = if decoding > 0 { (self.num_batch as usize / 8).max(16) } else { self.num_batch as usize };
        let mut budget = share.min(room);
        // How many prompt tokens each slot feeds this step.
        let mut chunk = vec![0; n];
        self.rotate = (self.rotate + 1) % n;
        for k in 0..n {
            let seq = (self.rotate + k) % n;
            let Some(job) = self.slots[seq].as_ref() else { continue };
            chunk[seq] = (job.prompt.len() - job.fed).min(budget);
            budget -= chunk[seq];
        }
        self.prompt_in_step = chunk.iter().any(|c| *c > 0);
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            self.in_batch[seq] = false;
            let Some(job) = slot else { continue };
            job.logits_at = None;
            if let Some(token) = job.next.take() {
                batch.add(token, job.n_past, &[seq as i32], true).expect("batch has room for one token per slot");
                job.n_past += 1;
                job.logits_at = Some(batch.n_tokens() - 1);
                for &t in job.drafting.iter().flat_map(|d| &d.draft) {
                    batch.add(t, job.n_past, &[seq as i32], true).expect("drafts fit the room left");
                    job.n_past += 1;
                }
                self.in_batch[seq] = true;
            } else if chunk[seq] > 0 {
                for t in job.fed..job.fed + chunk[seq] {
                    let last = t == job.prompt.len() - 1;
                    batch.add(job.prompt[t], t as i32, &[seq as i32], last).expect("within the batch budget");
                    if last {
                        job.logits_at = Some(batch.n_tokens() - 1);
                    }
                }
                job.fed += chunk[seq];
                job.n_past = job.fed as i32;
                self.in_batch[seq] = true;
            }
        }
        batch.n_tokens()
    }

    /// What a drafted token costs and a kept one saves at a step with `decoding` plain tokens, once
    /// measured.
    fn draft_cost(&self, decoding: usize) -> Option<Cost> {
        let check = self.step_cost.per_token()?;
        let step = self.step_cost.step(decoding)?;
        let propose = match &self.drafter {
            Some(d) => d.cost_per_proposal()?,
            None => 0.0,
        };
        Some(Cost { per_draft: propose + check, per_token: step / decoding.max(1) as f64 })
    }

    /// Chooses slot `i`'s next token from the step's logits, and walks its draft while the
    /// chosen tokens agree with it (see the module docs).
    fn sample(&mut self, i: usize) {
        let Some(job) = self.slots[i].as_mut() else { return };
        let Some(at) = job.logits_at.take() else { return };
        job.first_token.get_or_insert_with(Instant::now);
        let draft = job.drafting.as_mut().map(|d| std::mem::take(&mut d.draft)).unwrap_or_default();
        // Only the pending token surely stays: n_past grows again with each drafted token kept.
        job.n_past -= draft.len() as i32;
        for (j, at) in (at..).enumerate().take(draft.len() + 1) {
            let Some(job) = self.slots[i].as_mut() else { return };
            let forced = job.forced.pop_front();
            let token = match (forced, &mut job.picker) {
                (Some(token), _) => token,
                (None, Picker::Argmax) => LlamaToken(sample::argmax(self.ctx.get_logits_ith(at)) as i32),
                (None, Picker::Chain(s)) => s.sample(self.ctx, at),
            };
            let kept = draft.get(j) == Some(&token) && forced.is_none();
            if self.take(i, token, at, forced.is_some()) == Flow::Ended {
                return;
            }
            let Some(job) = self.slots[i].as_mut() else { return };
            // A token that ended in forced text is decoded again, after it, as a pending token.
            if kept && job.forced.is_empty() {
                job.n_past += 1;
                continue;
            }
            if let Some(d) = job.drafting.as_mut() {
                d.length.record(draft.len(), j);
                d.payoff.record(draft.len(), j);
                d.proposed += draft.len() as u32;
                d.accepted += j as u32;
            }
            if !draft.is_empty() {
                // The rejected drafts' cells, and nothing else: the sequence holds n_past cells.
                let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), Some(job.n_past as u32), None);
            }
            job.next = Some(token);
            return;
        }
    }

    /// Sends `token`, chosen for slot `i` from the logits at batch index `at` (or `forced`), and
    /// ends the job if it is the last one.
    fn take(&mut self, i: usize, token: LlamaToken, at: i32, forced: bool) -> Flow {
        let Some(job) = self.slots[i].as_mut() else { return Flow::Ended };
        let vocab = self.model.vocab();
        let piece = |t: LlamaToken| vocab.token_to_piece(t, true, None);
        let logprob = job.logprobs.filter(|_| !forced).map(|top| {
            let (lp, alternatives) = sample::logprobs(self.ctx.get_logits_ith(at), token.0 as usize, top as usize);
            let bytes = piece(token);
            TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                logprob: lp,
                bytes,
                top_logprobs: alternatives
                    .into_iter()
                    .map(|(t, lp)| sample::top_logprob(piece(LlamaToken(t as i32)), lp))
                    .collect(),
            }
        });
        if vocab.is_eog(token) && !forced {
            self.finish(i, DoneReason::Stop);
            return Flow::Ended;
        }
        job.output.push(token);
        if let Some(d) = job.drafting.as_mut() {
            d.seen.push(token);
        }
        let bytes = piece(token);
        if !forced {
            if let Some(thinking) = job.think.as_mut() {
                match thinking.after(&String::from_utf8_lossy(&bytes)) {
                    ThinkStep::Going => {}
                    ThinkStep::Closed => job.think = None,
                    ThinkStep::Spent => {
                        // The closing tag follows this token, as if the model had written it.
                        let close = format!("\n{}\n\n", thinking.budget.close);
                        job.forced = vocab.tokenize(close.as_bytes(), false, true).into();
                        job.think = None;
                    }
                }
            }
        }
        let (text, stopped) = job.stop.push(&bytes);
        if (!text.is_empty() || logprob.is_some()) && !job.events.event(Event::Token { text, logprob }) {
            self.free(i);
            return Flow::Ended;
        }
        if stopped {
            self.finish(i, DoneReason::Stop);
            return Flow::Ended;
        }
        let budget_spent = job.num_predict.is_some_and(|n| job.output.len() as u32 >= n);
        let context_full = job.n_past + 1 >= self.num_ctx as i32;
        // Without a budget, a full context ends the answer; with one, the context shifts.
        let shift = context_full && job.num_predict.is_some() && job.may_shift;
        if budget_spent || (context_full && !(shift && self.shift(i))) {
            self.finish(i, DoneReason::Length);
            return Flow::Ended;
        }
        Flow::Going
    }

    /// Context shift: drops the older half of slot `i`'s tokens after the first `num_keep` and
    /// moves the rest down, as Ollama does, so a generation can outgrow the context. False if the
    /// model's memory cannot do it.
    fn shift(&mut self, i: usize) -> bool {
        let Some(job) = self.slots[i].as_mut() else { return false };
        let keep = (job.num_keep.min(job.prompt.len() as u32) as i32).min(job.n_past / 2);
        let discard = (job.n_past - keep) / 2;
        if discard <= 0 {
            return false;
        }
        let seq = i as u32;
        let dropped =
            self.ctx.clear_kv_cache_seq(Some(seq), Some(keep as u32), Some((keep + discard) as u32)).unwrap_or(false);
        if !dropped || self.ctx.kv_cache_seq_add(i as i32, Some((keep + discard) as u32), None, -discard).is_err() {
            return false;
        }
        job.n_past -= discard;
        job.shifted = true;
        true
    }

    fn finish(&mut self, i: usize, reason: DoneReason) {
        let Some(mut job) = self.slots[i].take() else { return };
        let rest = job.stop.flush();
        if !rest.is_empty() {
            job.events.event(Event::Token { text: rest, logprob: None });
        }
        let first = job.first_token.unwrap_or(job.started);
        let usage = Usage {
            prompt_tokens: (job.prompt.len() - job.reused) as u32,
            prompt_ns: (first - job.started).as_nanos() as u64,
            generated_tokens: job.output.len() as u32,
            generation_ns: first.elapsed().as_nanos() as u64,
            cached_tokens: job.reused as u32,
            shared_steps: job.shared_steps,
            draft_tokens: job.drafting.as_ref().map_or(0, |d| d.proposed),
            draft_accepted: job.drafting.as_ref().map_or(0, |d| d.accepted),
        };
        let mut tokens = to_u32(&job.prompt);
        tokens.extend(to_u32(&job.output));
        last(&mut *job.events, Event::Done { reason, usage, tokens });
        self.keep(i, job);
    }

    /// Remembers what slot `i`'s sequence holds in the KV cache after `job`: the prompt fed so far
    /// and the answer tokens decoded (the last sampled one never was).
    fn keep(&mut self, i: usize, job: Job) {
        if job.drafting.is_some() {
            // Drafted cells past what the job kept (it ended in the middle of its draft).
            let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), Some(job.n_past.max(0) as u32), None);
        }
        if job.shifted {
            // Its cells no longer hold a prefix of anything a prompt could start with.
            self.cached[i].clear();
            let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
            return;
        }
        let mut held = job.prompt;
        held.truncate(job.fed);
        if job.fed == held.len() {
            held.extend(job.output);
        }
        held.truncate(job.n_past.max(0) as usize);
        self.cached[i] = held;
    }

    fn fail(&mut self, i: usize, msg: &str) {
        if let Some(mut job) = self.slots[i].take() {
            last(&mut *job.events, Event::Error(EngineError::Internal(msg.to_string())));
        }
        // After a failed decode the sequence's cells are not trusted.
        self.cached[i].clear();
        let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
    }

    /// Ends slot `i`'s job without an answer (cancelled, or its receiver is gone); what it
    /// decoded stays cached.
    fn free(&mut self, i: usize) {
        if let Some(job) = self.slots[i].take() {
            self.keep(i, job);
        }
    }
}

/// Drafts up to `room` tokens for the next step of `job` (in slot `seq`), if it is generating and
/// drafts: as many as its draft length allows, the context has positions for, and its token
/// budget can still use, and none while drafting does not pay at `cost`. With `drafter` the draft
/// model proposes them, else prompt lookup. Returns how many.
fn draft(
    job: &mut Job,
    seq: usize,
    drafter: Option<&mut Drafter>,
    cost: Option<Cost>,
    num_ctx: u32,
    room: usize,
) -> usize {
    let Some(d) = job.drafting.as_mut() else { return 0 };
    d.draft.clear();
    // After a context shift the answer no longer fits behind the prompt in the draft's context.
    if job.next.is_none() || !job.forced.is_empty() || (job.shifted && drafter.is_some()) {
        return 0;
    }
    // The pending token goes at n_past and the drafts after it; one position stays free for the
    // token chosen after the last draft.
    let positions = (num_ctx as i64 - i64::from(job.n_past) - 3).max(0) as usize;
    let budget = job.num_predict.map_or(usize::MAX, |n| (n as usize).saturating_sub(job.output.len() + 1));
    let allowed = if d.always {
        usize::MAX
    } else {
        let catch_up = drafter.as_ref().is_some_and(|dr| !dr.caught_up(seq, &d.seen));
        d.payoff.allowance(cost, catch_up)
    };
    let k = d.length.get().min(allowed).min(room).min(positions).min(budget);
    if k == 0 {
        return 0;
    }
    d.draft = match drafter {
        Some(drafter) => drafter.propose(seq, &d.seen, k),
        None => speculative::lookup(&d.seen, LOOKUP_NGRAM.0, LOOKUP_NGRAM.1, k),
    };
    d.draft.len()
}
