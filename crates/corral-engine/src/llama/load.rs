//! Starting the engine thread: llama.cpp's backend (once per process), the model, its LoRA
//! adapters, its context and the optional draft model, then the [`RunnerInfo`] the load reports
//! before the thread turns into the decode loop.
//!
//! Everything here runs once per model, so it is kept apart from the per-step code. The sizes
//! derived from [`LoadOptions`] and the memory estimate are plain functions, tested below.

use std::num::NonZeroU32;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use corral_types::runner::{KvCacheType, LoadOptions, RunnerInfo};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use super::media::Projector;
use super::step::Loop;
use super::{CellCounts, Command};
use crate::draft::{Drafter, VOCAB_SLACK};
use crate::offload;
use crate::EngineError;

/// llama.cpp's backend can be initialised once per process, after its backend modules are loaded
/// (from the default library directory unless the process loaded them earlier); the first load
/// decides whether its logs are shown. (A runner process loads one model; tests load several.)
fn backend(verbose: bool) -> Result<&'static LlamaBackend, String> {
    static BACKEND: std::sync::OnceLock<Result<LlamaBackend, String>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // Before anything is loaded, so the module loader's own lines go through it too.
            crate::log::install(verbose);
            crate::backends::load(None, &[], Default::default())?;
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Initialises llama.cpp's backend, quietly (for work that loads no model: quantizing).
pub(crate) fn init_backend() -> Result<(), String> {
    backend(false).map(|_| ())
}

/// llama.cpp's backend, initialised as the engines initialise it, for code that calls llama.cpp
/// directly in a process that also runs engines (the tests' reference runs): the backend can be
/// initialised only once per process, so it must be this one.
pub fn llama_backend() -> Result<&'static LlamaBackend, String> {
    backend(false)
}

/// Hides llama.cpp's and ggml's log lines (keeping the last warnings and errors, see
/// [`crate::log`]).
pub(crate) fn quiet() {
    crate::log::install(false);
}

/// Why a model did not load, naming its architecture and any translation applied to it.
fn load_failure(path: &str, prepared: &crate::compat::Prepared, error: &str) -> String {
    let arch = prepared.architecture.as_deref().unwrap_or("unknown");
    // llama-cpp-2's words for "llama.cpp returned no model"; the reasons follow from its log.
    let error = if error == "null result from llama cpp" { "llama.cpp did not load it" } else { error };
    match prepared.translated {
        Some(handler) => format!(
            "could not load model {path} (architecture {arch}, translated from Ollama's {handler} layout): {error}"
        ),
        None => format!("could not load model {path} (architecture {arch}): {error}"),
    }
}

/// The context's size, from the load options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Sequence slots.
    pub(super) parallel: u32,
    /// Positions of each slot.
    pub(super) num_ctx: u32,
    /// Most tokens in one batch.
    pub(super) num_batch: u32,
}

impl Shape {
    fn of(opts: &LoadOptions) -> Shape {
        let parallel = opts.parallel.max(1);
        let num_ctx = opts.num_ctx.max(16);
        // An embedding model sees each input whole in one micro-batch (its attention is not causal),
        // so a batch holds every slot's full context.
        let num_batch = if opts.embedding { num_ctx * parallel } else { opts.num_batch.max(32) };
        Shape { parallel, num_ctx, num_batch }
    }

    /// Positions of the whole context, every slot's together.
    fn cells(&self) -> u32 {
        self.num_ctx * self.parallel
    }
}

pub(super) fn engine_thread(
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
    let shape = Shape::of(&opts);
    let threads = if opts.num_thread > 0 {
        opts.num_thread as i32
    } else {
        std::thread::available_parallelism().map_or(4, |n| n.get() as i32)
    };
    let mut ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(shape.cells()))
        .with_n_batch(shape.num_batch)
        .with_n_ubatch(shape.num_batch)
        .with_n_seq_max(shape.parallel)
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
    let prepared = match crate::compat::prepare(&opts.model_path, !opts.no_compat) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    crate::log::take_recent();
    let model = LlamaModel::load_from_file(backend, &opts.model_path, &params);
    drop(params); // ends the progress channel
    let _ = forward.join();
    let mut model = match model {
        Ok(m) => m,
        Err(e) => return fail(crate::log::with_reasons(load_failure(&opts.model_path, &prepared, &e.to_string()))),
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
        Err(e) => return fail(format!("could not create a context of {} tokens: {e}", shape.cells())),
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
            let prepared = match crate::compat::prepare(path, !opts.no_compat) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            crate::log::take_recent();
            match LlamaModel::load_from_file(backend, path, &params) {
                Ok(m) if (m.n_vocab() - model.n_vocab()).abs() > VOCAB_SLACK => {
                    return fail(format!(
                        "the draft model {path} has {} tokens and the model {}: they do not share a vocabulary",
                        m.n_vocab(),
                        model.n_vocab()
                    ))
                }
                Ok(m) => Some(m),
                Err(e) => {
                    let text = load_failure(path, &prepared, &e.to_string());
                    return fail(crate::log::with_reasons(format!("could not load the draft model: {text}")));
                }
            }
        }
        None => None,
    };
    let drafter = match &draft_model {
        Some(m) => match m.new_context(backend, draft_ctx_params) {
            Ok(c) => Some(Drafter::new(m, c, shape.parallel as usize, shape.num_batch as usize, model.n_vocab())),
            Err(e) => return fail(format!("could not create the draft model's context: {e}")),
        },
        None => None,
    };

    let projector = match &opts.projector_path {
        Some(path) => match Projector::load(path, &model, &opts.model_path, threads, opts.num_gpu == 0, opts.no_compat)
        {
            Ok(p) => Some(p),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let projector_bytes = projector.as_ref().map_or(0, |p| p.bytes);

    let kv_bytes = offload.kv_cache_type.bytes(kv_elements(&model, shape.cells()));
    let layers = model.n_layer() + 1; // and the output layer, as llama.cpp counts offloaded layers
    let devices = offload.used(&mut ctx);
    let gpu_bytes: u64 = devices.iter().map(|d| d.bytes).sum();
    let gpu_layers = offload.gpu_layers.min(layers);
    let draft_bytes =
        draft_model.as_ref().map_or(0, |m| m.size() + KvCacheType::F16.bytes(kv_elements(m, shape.cells())));
    let memory_bytes =
        projector_bytes + draft_bytes + loaded_bytes(layers, gpu_layers, gpu_bytes, model.size() + kv_bytes);
    let info = RunnerInfo {
        num_ctx: shape.num_ctx,
        n_ctx_train: model.n_ctx_train(),
        parallel: shape.parallel,
        memory_bytes,
        add_bos: model.vocab().should_add_bos(),
        layers,
        gpu_layers,
        devices,
        cpu_variant: crate::backends::load(None, &[], Default::default()).ok().and_then(|b| b.cpu_variant.clone()),
        kv_cache_type: offload.kv_cache_type,
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    Loop::new(&model, &mut ctx, shape, cells, drafter, projector).run(commands);
}

/// Elements of `model`'s KV cache for `cells` positions: K and V, per layer and position.
fn kv_elements(model: &LlamaModel, cells: u32) -> u64 {
    kv_cache_elements(model.n_layer(), model.n_embd() as u64, model.n_head(), model.n_head_kv(), cells)
}

/// [`kv_elements`] from the model's sizes: a K and a V row of `kv_heads` heads per layer and
/// position, each head `embd / heads` wide.
fn kv_cache_elements(layers: u32, embd: u64, heads: u32, kv_heads: u32, cells: u32) -> u64 {
    let head_dim = embd / u64::from(heads.max(1));
    2 * u64::from(layers) * u64::from(cells) * head_dim * u64::from(kv_heads)
}

/// The memory a model takes, of `layers` with `gpu_layers` on GPUs that took `gpu_bytes`.
/// Wholly on GPUs, the measured GPU memory is the model's size (weights, cache and compute
/// buffers); otherwise the `estimate`, and at least what the GPUs took.
fn loaded_bytes(layers: u32, gpu_layers: u32, gpu_bytes: u64, estimate: u64) -> u64 {
    if gpu_layers == layers && gpu_bytes > 0 {
        gpu_bytes
    } else {
        estimate.max(gpu_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(num_ctx: u32, parallel: u32, num_batch: u32, embedding: bool) -> LoadOptions {
        LoadOptions { num_ctx, parallel, num_batch, embedding, ..Default::default() }
    }

    #[test]
    fn the_shape_follows_the_options_with_floors() {
        assert_eq!(Shape::of(&opts(4096, 2, 512, false)), Shape { parallel: 2, num_ctx: 4096, num_batch: 512 });
        // No slot, a tiny context or a tiny batch are raised to what the loop can work with.
        assert_eq!(Shape::of(&opts(4, 0, 8, false)), Shape { parallel: 1, num_ctx: 16, num_batch: 32 });
        assert_eq!(Shape::of(&opts(4096, 3, 512, false)).cells(), 3 * 4096);
    }

    #[test]
    fn an_embedding_batch_holds_every_slot_whole() {
        // The requested batch size is ignored: each input must fit one micro-batch.
        assert_eq!(Shape::of(&opts(512, 4, 64, true)), Shape { parallel: 4, num_ctx: 512, num_batch: 2048 });
        assert_eq!(Shape::of(&opts(0, 0, 0, true)).num_batch, 16);
    }

    #[test]
    fn kv_cache_elements_count_k_and_v_of_the_kv_heads() {
        // Qwen2.5 0.5B: 24 layers, 896 wide, 14 heads of 64, 2 KV heads (grouped-query attention).
        assert_eq!(kv_cache_elements(24, 896, 14, 2, 1000), 2 * 24 * 1000 * 64 * 2);
        // Without grouping, a layer's K and V are each as wide as the model.
        assert_eq!(kv_cache_elements(30, 576, 9, 9, 10), 2 * 30 * 10 * 576);
        // A model reporting no heads does not divide by zero.
        assert_eq!(kv_cache_elements(2, 64, 0, 1, 1), 2 * 2 * 64);
    }

    #[test]
    fn loaded_bytes_trust_the_gpus_only_when_they_hold_everything() {
        assert_eq!(loaded_bytes(25, 25, 700, 900), 700);
        // Partly offloaded: the estimate, unless the GPUs alone took more.
        assert_eq!(loaded_bytes(25, 10, 300, 900), 900);
        assert_eq!(loaded_bytes(25, 10, 1200, 900), 1200);
        // Nothing measured on the GPUs (CPU only): the estimate.
        assert_eq!(loaded_bytes(25, 25, 0, 900), 900);
    }
}
