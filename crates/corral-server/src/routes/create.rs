//! `POST /api/create`.
//!
//! Everything that can be wrong with the request is checked before the first byte of the
//! response, so bad input gets a real 4xx; then progress streams while layers and the manifest
//! are written.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use corral_store::{CreateSpec, ModelSource};
use corral_types::api::{model_or_name, CreateRequest, ProgressResponse};
use corral_types::{params, Digest, Overlay};
use std::collections::BTreeMap;

use super::{blocking, parse_name};
use crate::extract::JsonBody;
use crate::stream::{self, Work};
use crate::{ApiError, AppState};

fn digests(files: BTreeMap<String, String>) -> Result<Vec<(String, Digest)>, ApiError> {
    files
        .into_iter()
        .map(|(file, d)| {
            let digest = Digest::parse(&d)
                .map_err(|_| ApiError::bad_request(format!("invalid digest format for {file:?}: {d:?}")))?;
            Ok((file, digest))
        })
        .collect()
}

/// `from` may name a blob instead of a model: `sha256:<hex>`, `sha256-<hex>` or `@sha256:<hex>`.
fn blob_reference(from: &str) -> Option<Digest> {
    Digest::parse(from.strip_prefix('@').unwrap_or(from)).ok()
}

fn spec_from_request(req: CreateRequest) -> Result<CreateSpec, ApiError> {
    let name =
        parse_name(model_or_name(&req.model, &req.name)).map_err(|_| ApiError::bad_request("invalid model name"))?;
    if let Some(q) = req.quantize.or(req.quantization).filter(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "quantization is not supported by this server yet (asked for {q:?}); import an already quantized GGUF"
        )));
    }
    let source = match (req.from.filter(|f| !f.trim().is_empty()), req.files.filter(|f| !f.is_empty())) {
        (Some(from), _) => match blob_reference(&from) {
            Some(d) => ModelSource::Files(vec![("model.gguf".into(), d)]),
            None => ModelSource::Model(parse_name(&from)?),
        },
        (None, Some(files)) => ModelSource::Files(digests(files)?),
        (None, None) => return Err(ApiError::bad_request("neither 'from' or 'files' was specified")),
    };
    let (parameters, ignored) = params::check_json_options(&req.parameters.unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !ignored.is_empty() {
        tracing::warn!(?ignored, "ignoring deprecated parameters");
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(t) = req.template.as_deref().filter(|t| !t.is_empty()) {
        corral_template::GoTemplate::parse(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(CreateSpec {
        name,
        source,
        adapters: digests(req.adapters.unwrap_or_default())?,
        overlay: Overlay {
            template: non_empty(req.template),
            system: non_empty(req.system),
            license: req.license.map(|l| l.into_vec()).unwrap_or_default(),
            parameters,
            messages: req.messages.unwrap_or_default(),
            requires: non_empty(req.requires),
            renderer: non_empty(req.renderer),
            parser: non_empty(req.parser),
        },
    })
}

pub(super) async fn create(State(state): State<AppState>, JsonBody(req): JsonBody<CreateRequest>) -> Response {
    let streaming = req.stream.unwrap_or(true);
    let spec = match spec_from_request(req) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let store = state.store.clone();
    let prepared = match blocking(move || Ok(store.prepare_create(spec)?)).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let work: Work = Box::new(move |progress| {
        prepared.commit(&mut |status| progress(ProgressResponse::status(status))).map_err(ApiError::from)
    });
    stream::progress(streaming, work).await
}
