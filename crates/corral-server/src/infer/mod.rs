//! The server's core: from a request to an answer, for every protocol.
//!
//! - [`request`]: the typed request every protocol builds.
//! - [`start`]: the one path of a generate or chat request (checks, load, prompt, generation).
//! - [`answer`]: the generation as protocol-neutral events (deltas, an end, an error).
//! - [`options`], [`prompt`], [`parse`]: the request's options, the prompt from the conversation,
//!   and the model's output split into content, thinking and tool calls.
//! - [`media`]: a request's images, checked, and their places in the prompt.
//! - here: finding a model and its GGUF header, and scheduling a runner for it.
//!
//! Architecture invariant: nothing under `infer` imports from `routes`; the routes translate
//! their protocol into [`start`]'s requests and its events back into their protocol.

pub mod answer;
pub mod media;
pub mod options;
pub use corral_parse as parse;
pub mod prompt;
pub mod request;
pub mod start;

use std::sync::Arc;

use corral_gguf::Gguf;
use corral_store::{Model, ModelError, StoreError};
use corral_types::duration::KeepAlive;
use corral_types::manifest::{MEDIA_TYPE_DRAFT, MEDIA_TYPE_MODEL, MEDIA_TYPE_PROJECTOR};
use corral_types::ModelName;
use serde_json::Value;

use crate::placement;
use crate::sched::{Lease, LoadRequest};
use crate::{ApiError, AppState};

/// A stored model with its parsed GGUF header.
pub struct Resolved {
    pub model: Model,
    pub gguf: Arc<Gguf>,
    /// What llama.cpp's text loader leaves of the weights (see [`Header`]).
    pub loaded: Loaded,
    /// [`Resolved::capabilities`], worked out at the first check: a request checks several, and
    /// finding fill-in-the-middle tokens can mean a search of the whole vocabulary.
    capabilities: std::sync::OnceLock<Vec<String>>,
}

impl Resolved {
    pub fn short_name(&self) -> String {
        self.model.name.display_shortest()
    }

    pub fn weights(&self) -> Result<String, ApiError> {
        self.model
            .model_path
            .as_ref()
            .map(|p| p.display().to_string())
            .ok_or_else(|| ApiError::bad_request(format!("model '{}' has no weights to run", self.short_name())))
    }

    /// Ollama's capability list for this model.
    pub fn capabilities(&self) -> &[String] {
        self.capabilities.get_or_init(|| crate::show::capabilities(&self.model, Some(&self.gguf), self.loaded))
    }

    /// Whether `capability` is in [`Resolved::capabilities`].
    pub fn can(&self, capability: &str) -> bool {
        self.capabilities().iter().any(|c| c == capability)
    }

    /// 400 unless the model can do `what` (a capability name).
    pub fn require(&self, capability: &str, verb: &str) -> Result<(), ApiError> {
        if self.can(capability) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("\"{}\" does not support {verb}", self.short_name())))
        }
    }
}

/// A model's GGUF header as the file has it (what `show` reports, as Ollama does) and what
/// the runner's text loader will leave of it.
#[derive(Debug, Clone)]
pub struct Header {
    pub gguf: Arc<Gguf>,
    pub loaded: Loaded,
}

/// What a runner loads of a model's weights: a file in a layout published for Ollama's own engine
/// is translated at load (`corral-compat`), and its embedded vision, audio and MTP tensors are
/// not loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Bytes of tensor data the runner does not load.
    pub unread: u64,
    /// The file's vision tower is among them (hidden from the text loader).
    pub vision_hidden: bool,
    /// The file's vision tower has a projector translation: the file serves as its own projector.
    pub vision_projector: bool,
    /// The model's projector (its layer, or the file itself) encodes sound (Ollama's `audio`
    /// capability).
    pub projector_audio: bool,
}

impl Loaded {
    /// Worked out once per model (the translation copies the header).
    fn of(g: &Gguf, compat: bool) -> Loaded {
        if !compat {
            return Loaded::default();
        }
        match corral_compat::translate(g) {
            Ok(Some(t)) => {
                let clip = corral_compat::translate_clip(g);
                Loaded {
                    unread: t.unread_bytes(g),
                    vision_hidden: t.hidden.iter().any(|n| n.starts_with("v.")),
                    vision_projector: clip.is_some(),
                    // The file's own audio tower, where its translation serves it.
                    projector_audio: clip.is_some_and(|c| projector_has_audio(&c.apply(g))),
                }
            }
            _ => Loaded::default(),
        }
    }
}

/// Whether a projector encodes sound: a `*.has_audio_encoder` key that is true (Ollama's rule,
/// Gemma 3n's vision projector excepted).
pub fn projector_has_audio(g: &Gguf) -> bool {
    let audio = g.metadata.iter().any(|(k, v)| {
        (k == "has_audio_encoder" || k.ends_with(".has_audio_encoder"))
            && matches!(v, corral_gguf::MetaValue::Bool(true))
    });
    audio && g.get_str("clip.vision.projector_type") != Some("gemma3nv")
}

/// Parsed GGUF headers by manifest digest (templates, vocabulary, shapes).
pub type Headers = Arc<std::sync::Mutex<std::collections::HashMap<corral_types::Digest, Header>>>;

/// Loads a model's manifest and, cached by manifest digest in `headers`, its GGUF header (`None`
/// for a model without weights). Blocking: call it through `AsyncStore::run`. `raw` is the name
/// as given, for the 404 message; `compat`: whether runners translate published layouts.
pub fn load(
    store: &corral_store::Store,
    headers: &Headers,
    name: &ModelName,
    raw: &str,
    compat: bool,
) -> Result<(Model, Option<Header>), ApiError> {
    let model = store.load_model(name).map_err(|e| match e {
        ModelError::Store(StoreError::ModelNotFound(_)) => ApiError::not_found(format!("model '{raw}' not found")),
        other => other.into(),
    })?;
    let Some(path) = model.model_path.clone() else { return Ok((model, None)) };
    let mut cache = headers.lock().unwrap_or_else(|p| p.into_inner());
    let gguf = match cache.get(&model.digest) {
        Some(g) => g.clone(),
        None => {
            let g = corral_gguf::read_path(&path)
                .map_err(|e| ApiError::internal(format!("model '{raw}' has unreadable weights: {e}")))?;
            let mut loaded = Loaded::of(&g, compat);
            // Its header only, read once with the model's.
            loaded.projector_audio |= model
                .projector_paths
                .first()
                .and_then(|p| corral_gguf::read_path(p).ok())
                .is_some_and(|p| projector_has_audio(&p));
            let header = Header { loaded, gguf: Arc::new(g) };
            cache.insert(model.digest, header.clone());
            header
        }
    };
    Ok((model, Some(gguf)))
}

/// [`load`] on the blocking pool, for a model that must have weights (to run it).
pub async fn resolve(state: &AppState, name: &ModelName, raw: &str) -> Result<Resolved, ApiError> {
    let (headers, name, raw) = (state.headers.clone(), name.clone(), raw.to_string());
    let compat = !state.config.defaults.no_compat;
    state
        .store
        .run(move |store| {
            let (model, header) = load(store, &headers, &name, &raw, compat)?;
            let header = header.ok_or_else(|| ApiError::bad_request(format!("model '{raw}' has no weights")))?;
            Ok(Resolved { model, gguf: header.gguf, loaded: header.loaded, capabilities: Default::default() })
        })
        .await
}

/// The request's `keep_alive`, or the server default.
pub fn keep_alive(state: &AppState, v: Option<&Value>) -> Result<KeepAlive, ApiError> {
    Ok(request::keep_alive(v)?.unwrap_or(state.config.keep_alive))
}

/// Schedules a runner for `resolved` with `opts`.
pub async fn acquire(
    state: &AppState,
    r: &Resolved,
    opts: &options::Effective,
    keep_alive: KeepAlive,
) -> Result<Lease, ApiError> {
    // A draft model's weights count with the model's (their sizes are in the manifest); its KV
    // cache is counted once the runner reports what it holds.
    let layer_size = |media_type: &str| {
        r.model.manifest.layers.iter().rev().find(|l| l.media_type == media_type).map_or(0, |l| l.size)
    };
    let draft = if opts.load.draft_path.is_some() { layer_size(MEDIA_TYPE_DRAFT) } else { 0 };
    // A published file serving as its own projector: its media tensors, which the text side left.
    let projector = match &opts.load.projector_path {
        Some(p) if Some(p) == r.model.model_path.as_ref().map(|m| m.display().to_string()).as_ref() => r.loaded.unread,
        Some(_) => layer_size(MEDIA_TYPE_PROJECTOR),
        None => 0,
    };
    // Only what the runner loads: not the vision, audio or MTP tensors of a published layout.
    let weights = layer_size(MEDIA_TYPE_MODEL).saturating_sub(r.loaded.unread) + draft + projector;
    let mut options = opts.load.clone();
    let gpu = &state.config.gpu;
    if options.parallel == 0 {
        let gpus = placement::Gpu::from_devices(&state.config.backends.devices, |_| 0);
        let room = state
            .scheduler
            .available_memory()
            .map(|host| host.saturating_add(placement::gpu_room(&gpus, options.num_gpu, gpu)));
        let bytes = |p| placement::needs(&r.gguf, weights, options.num_ctx, p).bytes(gpu.kv_cache_type);
        options.parallel = placement::auto_parallel(bytes, room);
    }
    let needs = placement::needs(&r.gguf, weights, options.num_ctx, options.parallel);
    let config = &r.model.config;
    let req = LoadRequest {
        name: r.short_name(),
        digest: r.model.digest.hex(),
        details: corral_types::api::ModelDetails {
            parent_model: r.model.parent_model.clone(),
            format: config.model_format.clone(),
            family: config.model_family.clone(),
            families: config.model_families.clone(),
            parameter_size: config.model_type.clone(),
            quantization_level: config.file_type.clone(),
        },
        estimate: needs.bytes(gpu.kv_cache_type),
        needs,
        options,
        keep_alive,
    };
    Ok(state.scheduler.acquire(req).await?)
}
