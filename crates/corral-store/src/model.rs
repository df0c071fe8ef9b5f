//! A stored model, assembled from its manifest and layers: what `show` prints and what a runner
//! will load.

use std::path::PathBuf;
use std::time::SystemTime;

use corral_types::api::Message;
use corral_types::manifest::*;
use corral_types::{Digest, Manifest, ModelConfig, ModelName};
use serde_json::{Map, Value};

use crate::{Store, StoreError};

/// Why a stored model could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {digest} ({media_type}) is corrupt: {reason}")]
    BadLayer { digest: Digest, media_type: String, reason: String },
}

/// Everything a manifest says about a model, with the small layers read.
#[derive(Debug, Clone)]
pub struct Model {
    /// The name in its stored casing.
    pub name: ModelName,
    /// sha256 of the manifest.
    pub digest: Digest,
    pub modified: SystemTime,
    pub manifest: Manifest,
    pub config: ModelConfig,
    /// The GGUF weights, if the model has any.
    pub model_path: Option<PathBuf>,
    /// `from` of the weights layer: the model this one was built on.
    pub parent_model: String,
    pub adapter_paths: Vec<PathBuf>,
    pub projector_paths: Vec<PathBuf>,
    pub draft_path: Option<PathBuf>,
    pub template: Option<String>,
    pub system: Option<String>,
    pub license: Vec<String>,
    pub parameters: Map<String, Value>,
    pub messages: Vec<Message>,
}

fn bad(layer: &Layer, reason: impl ToString) -> ModelError {
    ModelError::BadLayer { digest: layer.digest, media_type: layer.media_type.clone(), reason: reason.to_string() }
}

impl Store {
    /// Reads a model's manifest, config and text layers.
    pub fn load_model(&self, name: &ModelName) -> Result<Model, ModelError> {
        let stored = self.read_manifest(name)?;
        let manifest = stored.manifest;
        let config_bytes = self.read_blob(&manifest.config)?;
        let config: ModelConfig = serde_json::from_slice(&config_bytes).map_err(|e| bad(&manifest.config, e))?;
        let mut m = Model {
            name: stored.name,
            digest: stored.digest,
            modified: stored.modified,
            manifest: manifest.clone(),
            config,
            model_path: None,
            parent_model: String::new(),
            adapter_paths: Vec::new(),
            projector_paths: Vec::new(),
            draft_path: None,
            template: None,
            system: None,
            license: Vec::new(),
            parameters: Map::new(),
            messages: Vec::new(),
        };
        let text = |layer: &Layer| -> Result<String, ModelError> {
            String::from_utf8(self.read_blob(layer)?).map_err(|e| bad(layer, e))
        };
        for layer in &manifest.layers {
            let path = self.blob_path(&layer.digest);
            match layer.media_type.as_str() {
                MEDIA_TYPE_MODEL => {
                    m.model_path = Some(path);
                    m.parent_model = layer.from.clone().unwrap_or_default();
                }
                MEDIA_TYPE_ADAPTER => m.adapter_paths.push(path),
                MEDIA_TYPE_PROJECTOR => m.projector_paths.push(path),
                MEDIA_TYPE_DRAFT => m.draft_path = Some(path),
                MEDIA_TYPE_TEMPLATE | MEDIA_TYPE_PROMPT => m.template = Some(text(layer)?),
                MEDIA_TYPE_SYSTEM => m.system = Some(text(layer)?),
                MEDIA_TYPE_LICENSE => m.license.push(text(layer)?),
                MEDIA_TYPE_PARAMS => {
                    m.parameters = serde_json::from_slice(&self.read_blob(layer)?).map_err(|e| bad(layer, e))?;
                }
                MEDIA_TYPE_MESSAGES => {
                    m.messages = serde_json::from_slice(&self.read_blob(layer)?).map_err(|e| bad(layer, e))?;
                }
                other => tracing::debug!("ignoring layer of type {other}"),
            }
        }
        Ok(m)
    }
}
