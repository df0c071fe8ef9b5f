//! `GET /api/ps`: the loaded models.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use chrono::{Local, TimeDelta};
use corral_types::api::{ProcessResponse, RunningModel};

use crate::AppState;

pub(super) async fn ps(State(state): State<AppState>) -> Json<ProcessResponse> {
    let now = Instant::now();
    let models = state
        .scheduler
        .loaded()
        .into_iter()
        .map(|(req, runner, expires, forever)| {
            // Busy or forever: show a time far in the future, as Ollama does ("Forever").
            let left = match (forever, expires) {
                (false, Some(e)) => e.saturating_duration_since(now),
                (false, None) => Duration::from_secs(0),
                (true, _) => Duration::from_secs(200 * 365 * 24 * 3600),
            };
            RunningModel {
                name: req.name.clone(),
                model: req.name,
                size: runner.info.memory_bytes,
                digest: req.digest,
                details: req.details,
                expires_at: Local::now() + TimeDelta::from_std(left).unwrap_or(TimeDelta::MAX),
                size_vram: runner.info.gpu_bytes().min(runner.info.memory_bytes),
                context_length: runner.info.num_ctx,
                devices: runner.info.devices.clone(),
            }
        })
        .collect();
    Json(ProcessResponse { models })
}
