//! Corral's HTTP server: Ollama's native API (`/api/*`), OpenAI's (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/models`) and Anthropic's
//! (`/v1/messages`), over the model store and the runners that hold loaded models.
//!
//! The entry points are testable in-process: [`app`] builds the router from an [`AppState`], and
//! [`run`] serves it on a listener the caller bound, until a shutdown future resolves.
//!
//! Where things live:
//! - `routes/`: the route table and one translator per protocol (request into `infer`'s typed
//!   request, its events back into the protocol's objects and stream encoders); `routes/mod.rs`
//!   groups the routes by protocol, which fixes the shape their errors take (`error.rs`).
//! - `infer/`: the core every protocol shares: options, prompt, the answer as events.
//! - `sched.rs` (which runners exist), `placement.rs` (the memory and GPU policy it asks, pure
//!   functions), `runner.rs` (the runner protocol), `backend/` (runner processes, the scripted
//!   fake for tests, `create --quantize` runs).
//! - `render.rs` (templates in worker processes), `stream.rs` (streamed bodies), `auth.rs`,
//!   `guard.rs` (host, CORS, access log), `listen.rs` (the accept loop and shutdown),
//!   `metrics.rs`, `show.rs`, `names.rs`, `extract.rs` (the bounded JSON body).
//!
//! Architecture invariant: handlers are thin. They parse and validate the request, call the
//! store through [`AsyncStore`] (its synchronous file I/O runs on the blocking pool) or the
//! scheduler, and return `Result<_, ApiError>`: the one error type, rendered in the protocol's
//! shape by its route group.
//!
//! Architecture invariant: the server reads configuration only from [`ServerConfig`]; it never
//! looks at environment variables itself.

mod auth;
mod backend;
mod error;
mod extract;
mod guard;
mod infer;
mod listen;
mod metrics;
mod names;
mod placement;
mod ready;
mod render;
mod routes;
mod runner;
mod sched;
mod show;
mod stream;
pub mod tls;
pub mod ui;

pub use ready::start_preload;

/// The checks of a request's images, for the fuzz target that feeds them hostile bytes.
pub use infer::media;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use corral_store::{AsyncStore, Store};

pub use auth::ApiKeys;
pub use backend::{Backend, Launcher, Process, Script, Scripted, ScriptedLoad};
pub use corral_types::duration::KeepAlive;
pub use corral_types::runner::Backends;
pub use error::ApiError;
pub use infer::options::Defaults;
pub use listen::{run, HEADER_READ_TIMEOUT};
pub use placement::{default_context_length, GpuConfig};
pub use render::RenderConfig;

/// Corral's own version: `corral --version`, the start-up log, and the
/// [`CORRAL_VERSION_HEADER`](corral_types::api::CORRAL_VERSION_HEADER) of `/api/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version of Ollama whose API this server implements, which `/api/version` answers. Clients
/// gate features on that number (Codex refuses an Ollama older than 0.13.4), so it is Ollama's,
/// not Corral's: raise it when `shared/reference/ollama-api.md` moves to a newer Ollama and the
/// differences are implemented.
pub const OLLAMA_API_VERSION: &str = "0.33.0";

/// Settings the server runs with, resolved once by the binary from flags and environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The models directory (`OLLAMA_MODELS`).
    pub models_dir: PathBuf,
    /// Extra CORS origins (`OLLAMA_ORIGINS`), before the built-in defaults.
    pub origins: Vec<String>,
    /// Keep unreferenced blobs (`OLLAMA_NOPRUNE`).
    pub noprune: bool,
    /// Largest JSON request body accepted.
    pub max_body_bytes: usize,
    /// This machine's host name, accepted in `Host` headers on a loopback listener.
    pub hostname: Option<String>,
    /// How runners are started: the `corral` binary (`corral runner`) and llama.cpp's libraries.
    pub launcher: Launcher,
    /// What the runner probe found at start: CPU variant, devices (their free memory then).
    pub backends: Backends,
    /// GPU settings (`OLLAMA_GPU_OVERHEAD`, `OLLAMA_SCHED_SPREAD`, `OLLAMA_FLASH_ATTENTION`,
    /// `OLLAMA_KV_CACHE_TYPE`).
    pub gpu: GpuConfig,
    /// `OLLAMA_KEEP_ALIVE`.
    pub keep_alive: KeepAlive,
    /// Per-request defaults from the environment (context length, parallelism, threads).
    pub defaults: infer::options::Defaults,
    /// `OLLAMA_MAX_LOADED_MODELS` (0 = 3).
    pub max_loaded_models: usize,
    /// `OLLAMA_MAX_QUEUE`.
    pub max_queue: usize,
    /// `OLLAMA_LOAD_TIMEOUT`.
    pub load_timeout: Duration,
    /// How long a loaded runner may leave a heartbeat unanswered before it is killed.
    pub heartbeat: Duration,
    /// How long answers in progress may go on after a shutdown signal (`CORRAL_SHUTDOWN_TIMEOUT`).
    pub shutdown_grace: Duration,
    /// Keys every request must carry (`CORRAL_API_KEYS`); none: no key asked.
    pub api_keys: ApiKeys,
    /// The longest a client may take to send a request header ([`HEADER_READ_TIMEOUT`]).
    pub header_timeout: Duration,
    /// Registry logins and trusted token realms.
    pub registry: corral_registry::RegistryOptions,
    /// Where chat templates render (worker processes started by `launcher`, or in-process).
    pub render: RenderConfig,
    /// HTTPS (`CORRAL_TLS_CERT`, `CORRAL_TLS_KEY`); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<tls::Tls>>,
    /// `CORRAL_PRELOAD`: models loaded at start, before `/ready` answers 200.
    pub preload: Vec<String>,
    /// Serve the chat page at `/ui/` (`CORRAL_UI`, on unless `0`).
    pub ui: bool,
}

impl ServerConfig {
    /// Defaults for a models directory.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            models_dir: models_dir.into(),
            origins: Vec::new(),
            noprune: false,
            max_body_bytes: 64 << 20,
            hostname: None,
            launcher: Launcher::new("corral"),
            backends: Backends::default(),
            gpu: GpuConfig::default(),
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            defaults: infer::options::Defaults {
                num_ctx: 4096,
                parallel: 1,
                num_thread: 0,
                no_compat: false,
                draft_always: false,
            },
            max_loaded_models: 0,
            max_queue: 512,
            load_timeout: Duration::from_secs(300),
            // Seconds, not less: a machine under heavy load (swapping) may be slow to answer.
            heartbeat: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            api_keys: ApiKeys::default(),
            header_timeout: HEADER_READ_TIMEOUT,
            registry: Default::default(),
            render: RenderConfig::default(),
            tls: None,
            preload: Vec::new(),
            ui: true,
        }
    }
}

/// Why the server state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] corral_store::StoreError),
    #[error(transparent)]
    Registry(#[from] corral_registry::RegistryError),
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The model store, its work run off the async threads.
    pub store: AsyncStore,
    pub config: Arc<ServerConfig>,
    /// Whether the listener is on a loopback address, which turns on the `Host` header guard.
    pub loopback: bool,
    /// Allowed CORS origin patterns (configured ones first, then the defaults).
    origins: Arc<Vec<String>>,
    /// Loaded models.
    pub scheduler: Arc<sched::Scheduler>,
    /// The registry client (pull, push).
    pub registry: corral_registry::Registry,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Parsed GGUF headers by manifest digest (templates, vocabulary, shapes).
    headers: infer::Headers,
    /// Template workers, when renders run in them ([`RenderConfig::in_workers`]).
    templates: Option<Arc<render::Workers>>,
    /// Whether the models of `CORRAL_PRELOAD` are loaded (`/ready`).
    readiness: Arc<ready::Readiness>,
}

impl AppState {
    /// Opens the store and prepares the state for a listener bound to `addr`, with runner
    /// processes started by `config.launcher`. Must run inside a tokio runtime (the scheduler
    /// starts its expiry task).
    pub fn new(config: ServerConfig, addr: SocketAddr) -> Result<Self, StartError> {
        let backend = Arc::new(backend::Process(config.launcher.clone()));
        Self::with_backend(config, addr, backend, Duration::from_millis(250))
    }

    /// [`AppState::new`] with another backend (the scripted one in tests), and how often idle
    /// runners are checked for an expired keep-alive.
    pub fn with_backend(
        config: ServerConfig,
        addr: SocketAddr,
        backend: Arc<dyn Backend>,
        expiry_tick: Duration,
    ) -> Result<Self, StartError> {
        let store = Store::open(&config.models_dir, corral_store::StoreOptions { noprune: config.noprune })?;
        let origins = Arc::new(guard::allowed_origins(&config.origins));
        let scheduler = sched::Scheduler::new(sched::SchedConfig {
            backend,
            devices: config.backends.devices.clone(),
            gpu: config.gpu.clone(),
            max_loaded: config.max_loaded_models,
            max_queue: config.max_queue,
            load_timeout: config.load_timeout,
            expiry_tick,
            heartbeat: config.heartbeat,
        });
        let registry = corral_registry::Registry::new(config.registry.clone())?;
        let templates =
            config.render.in_workers.then(|| Arc::new(render::Workers::new(config.launcher.clone(), &config.render)));
        let readiness = Arc::new(ready::Readiness::new(&config.preload));
        Ok(AppState {
            readiness,
            store: AsyncStore::new(store),
            config: Arc::new(config),
            loopback: addr.ip().is_loopback(),
            origins,
            scheduler,
            registry,
            metrics: Arc::default(),
            headers: Arc::default(),
            templates,
        })
    }
}

/// Blobs modified within this window are never pruned at start-up: another process may be in
/// the middle of creating or pulling a model that will reference them.
pub const PRUNE_GRACE: Duration = Duration::from_secs(3600);

/// Start-up housekeeping: prune unreferenced blobs unless `noprune`.
pub fn startup(state: &AppState) {
    if state.config.noprune {
        tracing::info!("OLLAMA_NOPRUNE set: not pruning unused blobs");
        return;
    }
    match state.store.blocking().prune(PRUNE_GRACE) {
        Ok(r) => tracing::info!(
            removed_blobs = r.removed_blobs,
            removed_other = r.removed_other,
            renamed = r.renamed,
            "pruned models directory"
        ),
        Err(e) => tracing::warn!("could not prune models directory: {e}"),
    }
}

/// The router with every route and middleware.
pub fn app(state: AppState) -> Router {
    // API keys are checked inside each route group (`routes::router`), so inside CORS: a
    // preflight needs no key, and a 401 still carries the CORS headers.
    routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::cors))
        .layer(axum::middleware::from_fn_with_state(state, guard::allowed_hosts))
        .layer(axum::middleware::from_fn(guard::log_requests))
}
