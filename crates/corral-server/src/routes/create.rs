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

use crate::backend::quantize::{self, Target};
use crate::extract::JsonBody;
use crate::names::parse_name;
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

/// The spec, and the quantization asked for.
fn spec_from_request(req: CreateRequest) -> Result<(CreateSpec, Option<String>), ApiError> {
    let name =
        parse_name(model_or_name(&req.model, &req.name)).map_err(|_| ApiError::bad_request("invalid model name"))?;
    let quantize = req.quantize.or(req.quantization).filter(|q| !q.is_empty());
    let source = match (req.from.filter(|f| !f.trim().is_empty()), req.files.filter(|f| !f.is_empty())) {
        (Some(from), _) => match blob_reference(&from) {
            Some(d) => ModelSource::Files(vec![("model.gguf".into(), d)]),
            None => ModelSource::Model(parse_name(&from)?),
        },
        (None, Some(files)) => ModelSource::Files(digests(files)?),
        (None, None) => return Err(ApiError::bad_request("neither 'from' or 'files' was specified")),
    };
    let (parameters, ignored) =
        params::check_json_options(&req.parameters.unwrap_or_default(), params::Unknown::Refuse)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !ignored.is_empty() {
        tracing::warn!(?ignored, "ignoring deprecated parameters");
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if req.draft_quantize.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(
            "draft_quantize is not supported: create the draft model quantized, and name that file in DRAFT",
        ));
    }
    if let Some(t) = req.template.as_deref().filter(|t| !t.is_empty()) {
        corral_template::GoTemplate::parse(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok((
        CreateSpec {
            name,
            source,
            adapters: digests(req.adapters.unwrap_or_default())?,
            draft: digests(req.draft_files.unwrap_or_default())?,
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
        },
        quantize,
    ))
}

/// Writes a GGUF into a blob.
struct BlobSink(corral_store::BlobWriter);

impl std::io::Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ollama's import: a safetensors model among the files is converted to a GGUF blob, which
/// replaces them in the spec. The returned pin keeps that blob until the create is committed.
/// Returns also the quantization still to do with llama.cpp: the converter writes F16 and Q8_0
/// itself; other types start from its F16, and a GGUF source is always quantized by llama.cpp.
fn convert_safetensors(
    store: &corral_store::Store,
    mut spec: CreateSpec,
    quantize: Option<Target>,
) -> Result<(CreateSpec, Option<corral_store::PinGuard>, Option<Target>), ApiError> {
    let ModelSource::Files(files) = &spec.source else {
        return Ok((spec, None, quantize));
    };
    if !corral_convert::is_safetensors_model(files.iter().map(|(n, _)| n.as_str())) {
        return Ok((spec, None, quantize));
    }
    let (own, pending) = match quantize {
        Some(Target { name: "Q8_0", .. }) => (corral_convert::Quantize::Q8_0, None),
        Some(Target { name: "F16", .. }) | None => (corral_convert::Quantize::F16, None),
        Some(other) => (corral_convert::Quantize::F16, Some(other)),
    };
    let mut paths = corral_convert::Files::new();
    for (name, digest) in files {
        if name.starts_with('/') || name.split(['/', '\\']).any(|c| c == "..") {
            return Err(ApiError::bad_request(format!("file path must be relative: {name:?}")));
        }
        paths.insert(name.clone(), store.blob_path(digest));
    }
    let digests: Vec<Digest> = files.iter().map(|(_, d)| *d).collect();
    let _sources = store.pin_existing(&digests)?;
    let (gguf, info) = corral_convert::convert(&paths, own).map_err(|e| match e {
        corral_convert::ConvertError::Io { .. } => ApiError::internal(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let mut sink = BlobSink(store.blob_writer()?);
    gguf.write_to(&mut sink).map_err(|e| ApiError::internal(format!("writing the converted model: {e}")))?;
    let committed = sink.0.commit(None)?;
    tracing::info!(tensors = info.tensors, parameters = info.parameters, digest = %committed.digest, "converted a {} model to GGUF ({own:?})", info.architecture);
    spec.source = ModelSource::Files(vec![("model.gguf".into(), committed.digest)]);
    Ok((spec, Some(committed.pin), pending))
}

/// A quantization to do in the streamed part of a create: the type, the weights' blob and what
/// type they are now.
struct Pending {
    target: Target,
    source: std::path::PathBuf,
    from: &'static str,
}

/// Checks before the first byte that `prepared`'s weights can be quantized to `target`.
fn plan_quantize(
    store: &corral_store::Store,
    prepared: &corral_store::Prepared,
    target: Target,
) -> Result<Pending, ApiError> {
    let digest = prepared.weights().ok_or_else(|| ApiError::bad_request("the model has no weights to quantize"))?;
    let source = store.blob_path(&digest);
    let gguf = corral_gguf::read_path(&source).map_err(|e| ApiError::bad_request(format!("the weights: {e}")))?;
    Ok(Pending { target, from: quantize::source_type(&gguf)?, source })
}

pub(super) async fn create(State(state): State<AppState>, JsonBody(req): JsonBody<CreateRequest>) -> Response {
    let streaming = req.stream.unwrap_or(true);
    let prepared = async {
        let (spec, quantize) = spec_from_request(req)?;
        let target = quantize.as_deref().map(Target::parse).transpose()?;
        state
            .store
            .run(move |store| {
                let (spec, pin, pending) = convert_safetensors(store, spec, target)?;
                let prepared = store.prepare_create(spec)?;
                let pending = pending.map(|t| plan_quantize(store, &prepared, t)).transpose()?;
                Ok::<_, ApiError>((prepared, pin, pending))
            })
            .await
    };
    let (mut prepared, pin, pending) = match prepared.await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let (store, launcher) = (state.store.blocking().clone(), state.config.launcher.clone());
    let threads = state.config.defaults.num_thread;
    let work: Work = Box::new(move |progress| {
        let _converted = pin;
        // Held until the manifest that references the quantized blob is written.
        let mut _quantized = None;
        if let Some(Pending { target, source, from }) = pending {
            let done = quantize::run(&launcher, &store, &source, from, target, threads, progress)?;
            let path = store.blob_path(&done.digest);
            let gguf = corral_gguf::read_path(&path)
                .map_err(|e| ApiError::internal(format!("the quantized model does not read back: {e}")))?;
            prepared.replace_weights(done.digest, done.size, &gguf);
            _quantized = Some(done);
        }
        prepared.commit(&mut |status| progress(ProgressResponse::status(status))).map_err(ApiError::from)
    });
    stream::progress(streaming, work).await
}
