//! Probes for orchestrators, and the models loaded before the server counts as ready.
//!
//! - `GET /health` (liveness): 200 whenever the server answers HTTP. It touches no model and no
//!   store, so a slow load or a busy runner never gets a healthy server restarted.
//! - `GET /ready` (readiness): 503 until every model named in `CORRAL_PRELOAD` is loaded, 200
//!   after, and 503 again once shutdown has begun, so a load balancer (the Kubernetes inference
//!   gateway among them) sends requests only to a replica that can answer them at once. A preload
//!   that fails keeps the server unready, with the reason in the body and the log: a replica
//!   missing its model must not take traffic.
//!
//! Ollama has neither probe nor preloading (llama-server loads its model before it listens). The
//! preloaded models are loaded as `POST /api/generate` with no prompt loads one, kept loaded
//! (`keep_alive` forever), one after another in the order named.

use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use corral_types::duration::KeepAlive;
use corral_types::params::Options;
use serde_json::{json, Value};

use crate::infer::request::{Generate, RequestSettings};
use crate::AppState;

/// Where the preloads stand.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// These models are still to be loaded.
    Loading(Vec<String>),
    Ready,
    /// This model could not be loaded, for this reason.
    Failed(String, String),
}

/// Whether the models to preload are loaded.
#[derive(Debug)]
pub struct Readiness(Mutex<Stage>);

impl Readiness {
    /// Ready at once when nothing is to be preloaded.
    pub fn new(preload: &[String]) -> Self {
        Readiness(Mutex::new(if preload.is_empty() { Stage::Ready } else { Stage::Loading(preload.to_vec()) }))
    }

    fn stage(&self) -> Stage {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, stage: Stage) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = stage;
    }
}

/// Loads the models of `CORRAL_PRELOAD` in the background, in order, and marks the server ready
/// when all are loaded. Called once when the server starts listening.
pub fn start_preload(state: &AppState) {
    let names = state.config.preload.clone();
    if names.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for (i, name) in names.iter().enumerate() {
            state.readiness.set(Stage::Loading(names[i..].to_vec()));
            tracing::info!(model = %name, "preloading model (CORRAL_PRELOAD)");
            if let Err(error) = load(&state, name).await {
                tracing::error!(model = %name, "preloading failed, the server stays unready: {error}");
                state.readiness.set(Stage::Failed(name.clone(), error));
                return;
            }
        }
        tracing::info!(models = %names.join(","), "preloaded models are loaded: ready");
        state.readiness.set(Stage::Ready);
    });
}

/// Loads `name` and keeps it loaded, as a generate request with no prompt does.
async fn load(state: &AppState, name: &str) -> Result<(), String> {
    let settings = RequestSettings { keep_alive: Some(KeepAlive::Forever), ..RequestSettings::new(Options::default()) };
    let request = Generate {
        model: name.to_string(),
        prompt: String::new(),
        suffix: None,
        system: None,
        template: None,
        context: None,
        raw: false,
        images: Vec::new(),
        settings,
    };
    crate::infer::start::start_generate(state, request).await.map(|_| ()).map_err(|e| e.message)
}

/// `GET /health`.
pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let unready = |body: Value| (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    if state.scheduler.closing() {
        return unready(json!({"status": "shutting down"}));
    }
    match state.readiness.stage() {
        Stage::Ready => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Stage::Loading(models) => unready(json!({"status": "loading", "loading": models})),
        Stage::Failed(model, error) => unready(json!({"status": "failed", "model": model, "error": error})),
    }
}
