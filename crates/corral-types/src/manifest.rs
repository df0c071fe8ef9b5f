//! The on-disk and on-the-wire model format: Docker schema-2 manifests whose layers carry Ollama's
//! media types, and the model config blob they point at.
//!
//! Field names and their order follow Ollama's Go structs, so a manifest Corral writes is byte-for-
//! byte the JSON Ollama would write for the same layers, and either program reads the other's store.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Media type of the manifest itself.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of the config descriptor.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// GGUF weights.
pub const MEDIA_TYPE_MODEL: &str = "application/vnd.ollama.image.model";
/// LoRA adapter (GGUF).
pub const MEDIA_TYPE_ADAPTER: &str = "application/vnd.ollama.image.adapter";
/// Vision/audio projector (GGUF).
pub const MEDIA_TYPE_PROJECTOR: &str = "application/vnd.ollama.image.projector";
/// Speculative-decoding draft model (GGUF).
pub const MEDIA_TYPE_DRAFT: &str = "application/vnd.ollama.image.draft";
/// Go-template prompt template (TEMPLATE).
pub const MEDIA_TYPE_TEMPLATE: &str = "application/vnd.ollama.image.template";
/// Legacy name of the template layer, still found in old stores.
pub const MEDIA_TYPE_PROMPT: &str = "application/vnd.ollama.image.prompt";
/// Default system message (SYSTEM).
pub const MEDIA_TYPE_SYSTEM: &str = "application/vnd.ollama.image.system";
/// JSON object of default options (PARAMETER).
pub const MEDIA_TYPE_PARAMS: &str = "application/vnd.ollama.image.params";
/// JSON array of messages prepended to every chat (MESSAGE).
pub const MEDIA_TYPE_MESSAGES: &str = "application/vnd.ollama.image.messages";
/// One license text (LICENSE); a model may carry several.
pub const MEDIA_TYPE_LICENSE: &str = "application/vnd.ollama.image.license";

/// A content descriptor: one blob, what it holds and how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Short name of the model this layer was inherited from (`create` with `FROM <model>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// File or tensor name, for safetensors-style models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Layer {
    /// A descriptor with no provenance.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Layer { media_type: media_type.to_string(), digest, size, from: None, name: None }
    }
}

/// A Docker schema-2 image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Layer,
    #[serde(default)]
    pub layers: Vec<Layer>,
}

impl Manifest {
    /// A schema-2 manifest for `config` and `layers`.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Self {
        Manifest { schema_version: 2, media_type: MEDIA_TYPE_MANIFEST.to_string(), config, layers }
    }

    /// Config and layers: every blob this manifest needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Total size of all blobs, the `size` Ollama reports for a model.
    pub fn total_size(&self) -> u64 {
        self.blobs().map(|l| l.size).sum()
    }

    /// The first layer of the given media type.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// Serialises the way Ollama's `json.Encoder` does: compact, with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("manifest serialisation cannot fail");
        out.push(b'\n');
        out
    }
}

/// The model config blob (`ConfigV2` in Ollama).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub model_format: String,
    #[serde(default)]
    pub model_family: String,
    #[serde(default)]
    pub model_families: Option<Vec<String>>,
    /// Human parameter count, e.g. `134.52M`.
    #[serde(default)]
    pub model_type: String,
    /// Quantisation, e.g. `Q4_K_M`.
    #[serde(default)]
    pub file_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub renderer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parser: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requires: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_model: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_length: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embedding_length: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_name: String,
    /// Always `amd64`: a field the image spec requires, not the machine's architecture.
    #[serde(default)]
    pub architecture: String,
    /// Always `linux`, for the same reason.
    #[serde(default)]
    pub os: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ModelConfig {
    /// Serialises compactly, as Ollama does.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serialisation cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest and config in the exact shape `ollama pull` leaves on disk, including fields
    /// Corral does not know (`rootfs`), which must be tolerated.
    #[test]
    fn reads_ollama_written_json() {
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:34bb5ab01051a11372a91f95f3fbbc51173eed8e7f13ec395b9ae9b8bd0e242b","size":561},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff","size":2019377376,"from":"registry.ollama.ai/library/llama3.2:latest"},{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:a70ff7e570d97baaf4e62ac6e6ad9975e04caa6d900d3742d37698494479e0cd","size":7711}]}"#;
        let m: Manifest = serde_json::from_str(manifest).unwrap();
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.total_size(), 561 + 2019377376 + 7711);
        assert_eq!(m.layers[0].from.as_deref(), Some("registry.ollama.ai/library/llama3.2:latest"));
        // Re-serialising gives back the same bytes: field names and order match Ollama's.
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), format!("{manifest}\n"));

        let config = r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"3.2B","file_type":"Q4_K_M","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"]}}"#;
        let c: ModelConfig = serde_json::from_str(config).unwrap();
        assert_eq!(c.model_family, "llama");
        assert_eq!(c.file_type, "Q4_K_M");
        assert_eq!(
            String::from_utf8(c.to_bytes()).unwrap(),
            r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"3.2B","file_type":"Q4_K_M","architecture":"amd64","os":"linux"}"#
        );
    }

    #[test]
    fn refuses_hostile_digests_in_manifests() {
        let bad = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:../../../../etc/passwd","size":1},"layers":[]}"#;
        assert!(serde_json::from_str::<Manifest>(bad).is_err());
    }
}
