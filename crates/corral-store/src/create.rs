//! Creating a model: from an existing model or from uploaded GGUF blobs, plus the small layers a
//! Modelfile adds.
//!
//! Creation has two phases so that the HTTP layer can answer bad input with a proper status code
//! before it starts streaming progress: [`Store::prepare_create`] checks everything that can be
//! wrong with the request (missing base model or blob, a file that is not GGUF, a corrupt GGUF
//! header) and pins every blob it will use; [`Prepared::commit`] writes the new layers and the
//! manifest, reporting progress as Ollama does.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path};

use corral_gguf::{Gguf, GgufError};
use corral_types::format::human_number;
use corral_types::manifest::*;
use corral_types::{Digest, Layer, Manifest, ModelConfig, ModelName, Overlay};
use serde_json::Map;

use crate::refs::PinGuard;
use crate::{Store, StoreError};

/// What a new model is built on.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// An existing model's layers (`FROM llama3.2`).
    Model(ModelName),
    /// Uploaded blobs by relative file name (`FROM ./model.gguf`).
    Files(Vec<(String, Digest)>),
}

/// A create request, validated by the caller as far as names and parameter types go.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub name: ModelName,
    pub source: ModelSource,
    pub adapters: Vec<(String, Digest)>,
    /// A draft model for speculative decoding (`DRAFT`): a GGUF with the model's vocabulary.
    pub draft: Vec<(String, Digest)>,
    /// Template, system, licenses, parameters and messages to layer on top.
    pub overlay: Overlay,
}

/// Why a create request cannot be carried out. Everything but `Store` is the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("model \"{0}\" not found")]
    BaseNotFound(String),
    #[error("blob \"{0}\" not found, upload it with POST /api/blobs/{0} first")]
    BlobNotFound(Digest),
    #[error("file path must be relative: {0:?}")]
    BadPath(String),
    #[error("{file}: invalid GGUF file: {error}")]
    InvalidGguf { file: String, error: GgufError },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A create that passed every check, holding pins on the blobs it will reference.
#[derive(Debug)]
pub struct Prepared {
    store: Store,
    name: ModelName,
    /// Layers taken as they are (base model layers, uploaded GGUFs).
    base: Vec<Layer>,
    /// New small layers: media type and content.
    new: Vec<(&'static str, Vec<u8>)>,
    config: ModelConfig,
    ggufs_parsed: usize,
    _pins: PinGuard,
}

/// Accepts `files` keys only if they are plain relative paths (no `..`, no root, no NUL).
fn check_relative(path: &str) -> Result<(), CreateError> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
        && !path.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(CreateError::BadPath(path.to_string()))
    }
}

/// Reads a GGUF blob's header, or says it is not GGUF (`Ok(None)`).
fn inspect(store: &Store, file: &str, digest: &Digest) -> Result<Option<Gguf>, CreateError> {
    let path = store.blob_path(digest);
    let mut head = [0u8; 4];
    let n = File::open(&path).and_then(|mut f| f.read(&mut head)).map_err(|e| StoreError::io(&path, e))?;
    if !corral_gguf::has_magic(&head[..n]) {
        return Ok(None);
    }
    corral_gguf::read_path(&path).map(Some).map_err(|error| CreateError::InvalidGguf { file: file.to_string(), error })
}

fn is_projector(g: &Gguf) -> bool {
    g.architecture() == Some("clip") || matches!(g.get_str("general.type"), Some("mmproj" | "projector"))
}

/// Whether a draft model's tokens mean what the target's do: the same tokenizer, the same token
/// at every id both have, and sizes apart by at most 128 (padding or a few added tokens, as
/// llama.cpp allows), so the ids a draft proposes can be checked by the target as they are.
fn same_vocabulary(target: &Gguf, draft: &Gguf) -> Result<(), String> {
    let model = |g: &Gguf| g.get_str("tokenizer.ggml.model").unwrap_or("none").to_string();
    if model(target) != model(draft) {
        return Err(format!("its tokenizer is {}, the model's is {}", model(draft), model(target)));
    }
    fn tokens(g: &Gguf) -> Result<&[String], String> {
        match g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(corral_gguf::ArrayValue::String(t)) => Ok(t),
            _ => Err("no token list".to_string()),
        }
    }
    let (t, d) = (tokens(target)?, tokens(draft)?);
    if t.len().abs_diff(d.len()) > 128 {
        return Err(format!("it has {} tokens, the model {}", d.len(), t.len()));
    }
    if let Some(i) = t.iter().zip(d.iter()).position(|(a, b)| a != b) {
        return Err(format!("token {i} is {:?} in it and {:?} in the model", d[i], t[i]));
    }
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        if target.get_u64(key) != draft.get_u64(key) {
            return Err(format!(
                "{key} differs: {:?} in it, {:?} in the model",
                draft.get_u64(key),
                target.get_u64(key)
            ));
        }
    }
    Ok(())
}

/// Fills config fields the base did not set from the weights' header (base values win, as in
/// Ollama's `cmp.Or`).
fn fill_config(config: &mut ModelConfig, g: &Gguf) {
    let arch = g.architecture().unwrap_or_default().to_string();
    if config.model_format.is_empty() {
        config.model_format = "gguf".into();
    }
    if config.model_family.is_empty() {
        config.model_family = arch.clone();
    }
    if config.model_type.is_empty() {
        config.model_type = human_number(g.parameter_count());
    }
    if config.file_type.is_empty() {
        config.file_type = g.file_type().unwrap_or_default();
    }
    let families = config.model_families.get_or_insert_with(Vec::new);
    if !arch.is_empty() && !families.contains(&arch) {
        families.push(arch);
    }
}

impl Store {
    /// Checks a create request and pins what it needs. See the module docs.
    pub fn prepare_create(&self, spec: CreateSpec) -> Result<Prepared, CreateError> {
        let mut pins = PinGuard::empty(&self.pins);
        let mut config = ModelConfig::default();
        let mut base: Vec<Layer> = Vec::new();
        let mut base_params = Map::new();
        let mut weights: Option<Gguf> = None;
        let mut ggufs_parsed = 0;

        match &spec.source {
            ModelSource::Model(from) => {
                let model = self.load_model(from).map_err(|e| match e {
                    crate::ModelError::Store(StoreError::ModelNotFound(_)) => {
                        CreateError::BaseNotFound(from.display_shortest())
                    }
                    crate::ModelError::Store(e) => CreateError::Store(e),
                    other => CreateError::Unsupported(other.to_string()),
                })?;
                let digests: Vec<Digest> = model.manifest.layers.iter().map(|l| l.digest).collect();
                pins.absorb(self.pin_existing(&digests).map_err(blob_error)?);
                let short = model.name.display_shortest();
                base = model.manifest.layers.iter().map(|l| Layer { from: Some(short.clone()), ..l.clone() }).collect();
                config = model.config;
                base_params = model.parameters;
                if config.model_family.is_empty() {
                    if let Some(path) = &model.model_path {
                        let g = corral_gguf::read_path(path)
                            .map_err(|error| CreateError::InvalidGguf { file: short.clone(), error })?;
                        weights = Some(g);
                    }
                }
            }
            ModelSource::Files(files) => {
                if files.is_empty() {
                    return Err(CreateError::Unsupported("neither 'from' or 'files' was specified".into()));
                }
                let mut projectors = Vec::new();
                for (file, digest) in files {
                    check_relative(file)?;
                    pins.absorb(self.pin_existing(&[*digest]).map_err(blob_error)?);
                    let Some(g) = inspect(self, file, digest)? else {
                        return Err(CreateError::Unsupported(format!(
                            "{file} is not a GGUF file: only GGUF models can be imported (safetensors conversion is not supported yet)"
                        )));
                    };
                    ggufs_parsed += 1;
                    let size = self.blob_size(digest)?;
                    if is_projector(&g) {
                        base.push(Layer::new(MEDIA_TYPE_PROJECTOR, *digest, size));
                        projectors.push((file.clone(), g));
                    } else if weights.is_some() {
                        return Err(CreateError::Unsupported(format!(
                            "more than one GGUF model among the files ({file}); split GGUF models are not supported yet"
                        )));
                    } else {
                        base.insert(0, Layer::new(MEDIA_TYPE_MODEL, *digest, size));
                        weights = Some(g);
                    }
                }
                let Some(model) = &weights else {
                    return Err(CreateError::Unsupported("no GGUF model among the files".into()));
                };
                for (file, projector) in &projectors {
                    if let Some(why) = crate::projector::mismatch(projector, model) {
                        return Err(CreateError::Unsupported(format!(
                            "projector {file} does not fit the model: {why}"
                        )));
                    }
                }
            }
        }
        if let Some(g) = &weights {
            fill_config(&mut config, g);
        }

        if spec.adapters.len() > 1 {
            return Err(CreateError::Unsupported("only one adapter is currently supported".into()));
        }
        if let Some((file, digest)) = spec.adapters.first() {
            check_relative(file)?;
            pins.absorb(self.pin_existing(&[*digest]).map_err(blob_error)?);
            match inspect(self, file, digest)? {
                Some(g) if g.get_str("general.type") == Some("adapter") => {}
                _ => return Err(CreateError::Unsupported(format!("{file} is not a GGUF LoRA adapter"))),
            }
            ggufs_parsed += 1;
            base.retain(|l| l.media_type != MEDIA_TYPE_ADAPTER);
            base.push(Layer::new(MEDIA_TYPE_ADAPTER, *digest, self.blob_size(digest)?));
        }

        if spec.draft.len() > 1 {
            return Err(CreateError::Unsupported("only one draft model is supported".into()));
        }
        if let Some((file, digest)) = spec.draft.first() {
            check_relative(file)?;
            pins.absorb(self.pin_existing(&[*digest]).map_err(blob_error)?);
            let draft = match inspect(self, file, digest)? {
                Some(g) if !is_projector(&g) && g.get_str("general.type") != Some("adapter") => g,
                _ => return Err(CreateError::Unsupported(format!("draft model {file} is not a GGUF model"))),
            };
            ggufs_parsed += 1;
            let target = match weights.take() {
                Some(g) => g,
                None => {
                    let layer = base
                        .iter()
                        .find(|l| l.media_type == MEDIA_TYPE_MODEL)
                        .ok_or_else(|| CreateError::Unsupported("a draft model needs a model to draft for".into()))?;
                    let path = self.blob_path(&layer.digest);
                    corral_gguf::read_path(&path)
                        .map_err(|error| CreateError::InvalidGguf { file: "the model".into(), error })?
                }
            };
            same_vocabulary(&target, &draft).map_err(|why| {
                CreateError::Unsupported(format!("draft model {file} does not share the model's vocabulary: {why}"))
            })?;
            base.retain(|l| l.media_type != MEDIA_TYPE_DRAFT);
            base.push(Layer::new(MEDIA_TYPE_DRAFT, *digest, self.blob_size(digest)?));
        }

        let mut new: Vec<(&'static str, Vec<u8>)> = Vec::new();
        if let Some(t) = spec.overlay.template {
            base.retain(|l| l.media_type != MEDIA_TYPE_TEMPLATE && l.media_type != MEDIA_TYPE_PROMPT);
            new.push((MEDIA_TYPE_TEMPLATE, t.into_bytes()));
        }
        if let Some(s) = spec.overlay.system {
            base.retain(|l| l.media_type != MEDIA_TYPE_SYSTEM);
            new.push((MEDIA_TYPE_SYSTEM, s.into_bytes()));
        }
        for license in spec.overlay.license {
            let digest = Digest::of(license.as_bytes());
            if !base.iter().any(|l| l.digest == digest) {
                new.push((MEDIA_TYPE_LICENSE, license.into_bytes()));
            }
        }
        if !spec.overlay.parameters.is_empty() {
            base_params.extend(spec.overlay.parameters);
            // Go marshals maps with sorted keys; doing the same keeps the layer digest stable.
            let sorted: std::collections::BTreeMap<_, _> = base_params.into_iter().collect();
            base.retain(|l| l.media_type != MEDIA_TYPE_PARAMS);
            new.push((MEDIA_TYPE_PARAMS, serde_json::to_vec(&sorted).expect("params serialise")));
        }
        if !spec.overlay.messages.is_empty() {
            base.retain(|l| l.media_type != MEDIA_TYPE_MESSAGES);
            new.push((MEDIA_TYPE_MESSAGES, serde_json::to_vec(&spec.overlay.messages).expect("messages serialise")));
        }

        if let Some(r) = spec.overlay.requires {
            config.requires = r;
        }
        if let Some(r) = spec.overlay.renderer {
            config.renderer = r;
        }
        if let Some(p) = spec.overlay.parser {
            config.parser = p;
        }
        config.architecture = "amd64".into();
        config.os = "linux".into();

        Ok(Prepared { store: self.clone(), name: spec.name, base, new, config, ggufs_parsed, _pins: pins })
    }
}

fn blob_error(e: StoreError) -> CreateError {
    match e {
        StoreError::BlobNotFound(d) => CreateError::BlobNotFound(d),
        other => CreateError::Store(other),
    }
}

impl Prepared {
    /// The weights' blob (the model layer), if the model has one.
    pub fn weights(&self) -> Option<Digest> {
        self.base.iter().find(|l| l.media_type == MEDIA_TYPE_MODEL).map(|l| l.digest)
    }

    /// Swaps the weights for `digest` of `size` bytes (a quantized copy of them, which the caller
    /// keeps pinned until the commit), whose header is `gguf`: the model layer, and the file type
    /// in the config.
    pub fn replace_weights(&mut self, digest: Digest, size: u64, gguf: &Gguf) {
        for layer in self.base.iter_mut().filter(|l| l.media_type == MEDIA_TYPE_MODEL) {
            *layer = Layer::new(MEDIA_TYPE_MODEL, digest, size);
        }
        self.config.file_type = gguf.file_type().unwrap_or_default();
    }

    /// Writes the new layers, the config and the manifest, reporting each step. Releases blobs
    /// only the replaced manifest (if any) used.
    pub fn commit(self, progress: &mut dyn FnMut(String)) -> Result<(), StoreError> {
        let Prepared { store, name, base, new, config, ggufs_parsed, _pins: mut pins } = self;
        for _ in 0..ggufs_parsed {
            progress("parsing GGUF".into());
        }
        let mut layers = base;
        for l in &layers {
            progress(format!("using existing layer {}", l.digest));
        }
        for (media_type, bytes) in new {
            let c = store.write_blob(&bytes)?;
            progress(format!("{} layer {}", if c.existed { "using existing" } else { "creating new" }, c.digest));
            layers.push(Layer::new(media_type, c.digest, c.size));
            pins.absorb(c.pin);
        }
        let config_blob = store.write_blob(&config.to_bytes())?;
        let config_layer = Layer::new(MEDIA_TYPE_CONFIG, config_blob.digest, config_blob.size);
        pins.absorb(config_blob.pin);

        progress("writing manifest".into());
        let manifest = Manifest::new(config_layer, layers);
        let old = store.write_manifest(&name, &manifest)?;
        // The manifest holds the blobs now; the upload's lease has done its job. Other uploads of
        // the same blob still waiting for their create keep theirs.
        let unique: std::collections::HashSet<Digest> = manifest.blobs().map(|l| l.digest).collect();
        store.pins.consume_leases(unique.into_iter());
        if let Some(old) = old {
            drop(pins);
            store.release_old(&old)?;
        }
        progress("success".into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_relative;

    #[test]
    fn file_paths_must_stay_relative() {
        for ok in ["model.gguf", "sub/dir/model.gguf", "./model.gguf"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x.gguf", "a/../../x", "a\\..\\x", "x\0y"] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }
}
