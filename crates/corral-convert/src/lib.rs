//! Safetensors models to GGUF, as Ollama's `create` does with `FROM <directory>`.
//!
//! BERT encoders (sentence-embedding models such as all-MiniLM-L6-v2), and decoder language
//! models: llama, Mistral, qwen2, qwen3, gemma2 and gemma3 ([`decoder`], with byte-level BPE
//! tokenizers from [`tokenizer`] or SentencePiece ones from [`sentencepiece`]). For BERT, tensor
//! names follow GGUF's BERT naming, metadata `bert.*`, and the WordPiece vocabulary is
//! written the way llama.cpp's own converter writes it (word pieces without their `##`, whole
//! words with a leading `▁`), so llama.cpp's WPM tokenizer reproduces the Python one.
//!
//! Everything read is bounded and checked: a tensor whose range, dtype or shape does not add up,
//! a missing tensor, or a vocabulary that does not match the model is an error naming it.

pub mod decoder;
pub mod safetensors;
pub mod sentencepiece;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use corral_gguf::{ArrayValue, GgmlType, GgufWriter, MetaValue};
use serde_json::Value;

use safetensors::Safetensors;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("reading {name}: {source}")]
    Io { name: String, source: std::io::Error },
}

/// The tensor type of the converted weights (`create --quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    F16,
    Q8_0,
}

impl Quantize {
    /// `f16` or `q8_0`, any case.
    pub fn parse(s: &str) -> Result<Self, ConvertError> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(Quantize::F16),
            "q8_0" => Ok(Quantize::Q8_0),
            other => Err(ConvertError::Unsupported(format!(
                "unsupported quantization type {other:?} for a safetensors model (supported: f16, q8_0)"
            ))),
        }
    }

    fn file_type(self) -> u32 {
        match self {
            Quantize::F16 => 1,
            Quantize::Q8_0 => 7,
        }
    }
}

/// Largest single file read (weights included).
const MAX_FILE: u64 = 4 << 30;

/// Whether `names` (a model directory's files) look like a safetensors model.
pub fn is_safetensors_model<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    names.any(|n| n.ends_with(".safetensors"))
}

/// The files of a model directory by relative name (`config.json`, `model.safetensors`, …).
pub type Files = BTreeMap<String, PathBuf>;

fn read(files: &Files, name: &str) -> Result<Option<Vec<u8>>, ConvertError> {
    let Some(path) = files.get(name) else { return Ok(None) };
    let io = |source| ConvertError::Io { name: name.to_string(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(ConvertError::Invalid(format!("{name} is larger than {MAX_FILE} bytes")));
    }
    std::fs::read(path).map(Some).map_err(io)
}

fn read_json(files: &Files, name: &str) -> Result<Option<Value>, ConvertError> {
    match read(files, name)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| ConvertError::Invalid(format!("{name}: {e}"))),
    }
}

fn hparam(config: &Value, key: &str) -> Result<u64, ConvertError> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .filter(|v| *v > 0 && *v <= 1 << 24)
        .ok_or_else(|| ConvertError::Invalid(format!("config.json: {key} is missing or out of range")))
}

/// The WordPiece vocabulary, in id order, and which ids are control tokens.
fn vocabulary(files: &Files) -> Result<(Vec<String>, Vec<bool>), ConvertError> {
    let tokenizer = read_json(files, "tokenizer.json")?;
    let mut tokens: Vec<String> = match read(files, "vocab.txt")? {
        Some(bytes) => String::from_utf8_lossy(&bytes).lines().map(String::from).collect(),
        None => {
            let vocab = tokenizer
                .as_ref()
                .and_then(|t| t.get("model")?.get("vocab")?.as_object().cloned())
                .ok_or_else(|| ConvertError::Invalid("no vocab.txt and no vocabulary in tokenizer.json".into()))?;
            let mut by_id: Vec<(u64, String)> =
                vocab.into_iter().filter_map(|(t, id)| Some((id.as_u64()?, t))).collect();
            by_id.sort();
            if by_id.iter().enumerate().any(|(i, (id, _))| *id != i as u64) {
                return Err(ConvertError::Invalid("tokenizer.json: vocabulary ids are not 0..n".into()));
            }
            by_id.into_iter().map(|(_, t)| t).collect()
        }
    };
    let mut control = vec![false; tokens.len()];
    let added = tokenizer.as_ref().and_then(|t| t.get("added_tokens")?.as_array().cloned()).unwrap_or_default();
    for a in &added {
        if let (Some(id), Some(content)) =
            (a.get("id").and_then(Value::as_u64), a.get("content").and_then(Value::as_str))
        {
            let id = id as usize;
            if id >= tokens.len() {
                tokens.resize(id + 1, String::new());
                control.resize(id + 1, false);
            }
            tokens[id] = content.to_string();
            control[id] = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        }
    }
    if added.is_empty() {
        for (i, t) in tokens.iter().enumerate() {
            control[i] = matches!(t.as_str(), "[PAD]" | "[UNK]" | "[CLS]" | "[SEP]" | "[MASK]");
        }
    }
    Ok((tokens, control))
}

/// llama.cpp's WPM form of a WordPiece token: pieces lose `##`, words gain a leading `▁`.
fn phantom(token: &str, control: bool) -> String {
    if control || (token.starts_with('[') && token.ends_with(']')) {
        token.to_string()
    } else if let Some(piece) = token.strip_prefix("##") {
        piece.to_string()
    } else {
        format!("\u{2581}{token}")
    }
}

/// The GGUF name of a BERT tensor, or `None` for tensors GGUF does not keep. A cross-encoder
/// (`classifier`) keeps its pooler and classifier as llama.cpp's `cls` and `cls.output`.
fn gguf_name(hf: &str, classifier: bool) -> Option<String> {
    let hf = hf.strip_prefix("bert.").unwrap_or(hf);
    let head = match hf {
        "pooler.dense.weight" => "cls.weight",
        "pooler.dense.bias" => "cls.bias",
        "classifier.weight" => "cls.output.weight",
        "classifier.bias" => "cls.output.bias",
        _ => "",
    };
    if !head.is_empty() {
        return classifier.then(|| head.to_string());
    }
    let fixed = match hf {
        "embeddings.word_embeddings.weight" => "token_embd.weight",
        "embeddings.token_type_embeddings.weight" => "token_types.weight",
        "embeddings.position_embeddings.weight" => "position_embd.weight",
        "embeddings.LayerNorm.weight" => "token_embd_norm.weight",
        "embeddings.LayerNorm.bias" => "token_embd_norm.bias",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some(fixed.to_string());
    }
    let rest = hf.strip_prefix("encoder.layer.")?;
    let (n, rest) = rest.split_once('.')?;
    let n: u32 = n.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let part = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return None,
    };
    Some(format!("blk.{n}.{part}.{kind}"))
}

/// A classifier's label names in id order (`id2label`), or one unnamed label.
fn labels(config: &Value) -> Vec<String> {
    let mut named: Vec<(u64, String)> = config
        .get("id2label")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(id, name)| Some((id.parse().ok()?, name.as_str()?.to_string())))
        .collect();
    named.sort();
    if named.is_empty() {
        return vec!["LABEL_0".into()];
    }
    named.into_iter().map(|(_, n)| n).collect()
}

/// What was converted, for the caller's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub architecture: String,
    pub tensors: usize,
    pub parameters: u64,
}

/// Converts the BERT model in `files` into a GGUF writer.
pub fn convert(files: &Files, quantize: Quantize) -> Result<(GgufWriter, Converted), ConvertError> {
    let config = read_json(files, "config.json")?
        .ok_or_else(|| ConvertError::Invalid("config.json is missing from the model directory".into()))?;
    let archs: Vec<&str> =
        config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let is_bert =
        config.get("model_type").and_then(Value::as_str) == Some("bert") || archs.iter().any(|a| a.starts_with("Bert"));
    if !is_bert {
        if let Some(arch) = decoder::Arch::of(&config) {
            return decoder::convert(files, &config, arch, quantize);
        }
        let named = if archs.is_empty() { "none named in config.json".to_string() } else { archs.join(", ") };
        return Err(ConvertError::Unsupported(format!(
            "unsupported architecture ({named}): Corral converts BERT, llama, Mistral, qwen2, qwen3, gemma2 and gemma3 (text) models from safetensors"
        )));
    }
    let (embd, ffn, layers, heads) = (
        hparam(&config, "hidden_size")?,
        hparam(&config, "intermediate_size")?,
        hparam(&config, "num_hidden_layers")?,
        hparam(&config, "num_attention_heads")?,
    );
    let ctx = hparam(&config, "max_position_embeddings")?;
    let eps = config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32;
    let type_vocab = config.get("type_vocab_size").and_then(Value::as_u64).unwrap_or(2) as u32;
    // A cross-encoder (`BertForSequenceClassification`) scores a pair: llama.cpp's RANK pooling
    // (4), one output per label.
    let classifier = archs.contains(&"BertForSequenceClassification");
    let labels = classifier.then(|| labels(&config));
    let pooling = match read_json(files, "1_Pooling/config.json")? {
        _ if classifier => 4u32,
        Some(p) if p.get("pooling_mode_cls_token").and_then(Value::as_bool) == Some(true) => 2,
        _ => 1,
    };

    let (tokens, control) = vocabulary(files)?;
    if let Some(n) = config.get("vocab_size").and_then(Value::as_u64) {
        if n as usize != tokens.len() {
            return Err(ConvertError::Invalid(format!(
                "the vocabulary has {} tokens, config.json says {n}",
                tokens.len()
            )));
        }
    }
    let id_of = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);

    let mut w = GgufWriter::new();
    let s = |v: &str| MetaValue::String(v.to_string());
    let name = config.get("_name_or_path").and_then(Value::as_str).and_then(|p| p.rsplit('/').next()).unwrap_or("bert");
    w.set("general.architecture", s("bert"))
        .set("general.name", s(name))
        .set("general.file_type", MetaValue::U32(quantize.file_type()))
        .set("general.quantization_version", MetaValue::U32(2))
        .set("bert.context_length", MetaValue::U32(ctx as u32))
        .set("bert.embedding_length", MetaValue::U32(embd as u32))
        .set("bert.feed_forward_length", MetaValue::U32(ffn as u32))
        .set("bert.block_count", MetaValue::U32(layers as u32))
        .set("bert.attention.head_count", MetaValue::U32(heads as u32))
        .set("bert.attention.layer_norm_epsilon", MetaValue::F32(eps))
        .set("bert.attention.causal", MetaValue::Bool(false))
        .set("bert.pooling_type", MetaValue::U32(pooling))
        .set("tokenizer.ggml.model", s("bert"))
        .set("tokenizer.ggml.pre", s("jina-v2-en"))
        .set(
            "tokenizer.ggml.tokens",
            MetaValue::Array(ArrayValue::String(tokens.iter().zip(&control).map(|(t, c)| phantom(t, *c)).collect())),
        )
        .set(
            "tokenizer.ggml.token_type",
            MetaValue::Array(ArrayValue::I32(control.iter().map(|c| if *c { 3 } else { 1 }).collect())),
        )
        .set("tokenizer.ggml.token_type_count", MetaValue::U32(type_vocab))
        .set("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        // A pair is `[CLS] query [SEP] document [SEP]`: its [SEP]s are the EOS llama.cpp adds
        // after each text; a single text is `[CLS] text [SEP]`, the separator added once.
        .set("tokenizer.ggml.add_eos_token", MetaValue::Bool(classifier))
        .set("tokenizer.ggml.add_sep_token", MetaValue::Bool(!classifier))
        .set("tokenizer.ggml.normalizer.lowercase", MetaValue::Bool(true));
    if let Some(labels) = labels {
        w.set("bert.classifier.output_labels", MetaValue::Array(ArrayValue::String(labels)));
        let sep = id_of("[SEP]").ok_or_else(|| ConvertError::Invalid("the vocabulary has no [SEP] token".into()))?;
        w.set("tokenizer.ggml.eos_token_id", MetaValue::U32(sep));
    }
    for (key, token) in [
        ("tokenizer.ggml.bos_token_id", "[CLS]"),
        ("tokenizer.ggml.cls_token_id", "[CLS]"),
        ("tokenizer.ggml.seperator_token_id", "[SEP]"),
        ("tokenizer.ggml.padding_token_id", "[PAD]"),
        ("tokenizer.ggml.unknown_token_id", "[UNK]"),
        ("tokenizer.ggml.mask_token_id", "[MASK]"),
    ] {
        let id = id_of(token).ok_or_else(|| ConvertError::Invalid(format!("the vocabulary has no {token} token")))?;
        w.set(key, MetaValue::U32(id));
    }

    let mut shards: Vec<&String> = files.keys().filter(|n| n.ends_with(".safetensors")).collect();
    shards.sort();
    if shards.is_empty() {
        return Err(ConvertError::Invalid("no .safetensors file in the model directory".into()));
    }
    let mut written = BTreeMap::new();
    let mut parameters = 0u64;
    for shard in shards {
        let st = Safetensors::parse(read(files, shard)?.unwrap_or_default())?;
        for hf in st.names().map(String::from).collect::<Vec<_>>() {
            let Some(name) = gguf_name(&hf, classifier) else { continue };
            let t = st.get(&hf)?;
            parameters += t.values.len() as u64;
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            let matrix = dims.len() >= 2 && name != "token_types.weight";
            match quantize {
                Quantize::Q8_0 if matrix && dims[0].is_multiple_of(32) => w.add_q8_0(&name, &dims, &t.values),
                _ if matrix => {
                    let data = t.values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
                    w.add_tensor(&name, &dims, GgmlType::F16, data)
                }
                _ => w.add_f32(&name, &dims, &t.values),
            };
            written.insert(name, dims);
        }
    }
    let mut required =
        vec!["token_embd.weight".to_string(), "position_embd.weight".into(), "token_embd_norm.weight".into()];
    for n in 0..layers {
        for part in
            ["attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down", "layer_output_norm"]
        {
            required.push(format!("blk.{n}.{part}.weight"));
        }
    }
    if classifier {
        required.push("cls.output.weight".into());
    }
    if let Some(missing) = required.iter().find(|r| !written.contains_key(*r)) {
        return Err(ConvertError::Invalid(format!("the model has no tensor for {missing}")));
    }
    if written["token_embd.weight"] != [embd, tokens.len() as u64] {
        return Err(ConvertError::Invalid(format!(
            "token embeddings are {:?}, expected [{embd}, {}]",
            written["token_embd.weight"],
            tokens.len()
        )));
    }
    let converted = Converted { architecture: "bert".into(), tensors: written.len(), parameters };
    Ok((w, converted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf_bert() {
        assert_eq!(gguf_name("embeddings.word_embeddings.weight", false).as_deref(), Some("token_embd.weight"));
        assert_eq!(
            gguf_name("bert.encoder.layer.5.output.LayerNorm.bias", false).as_deref(),
            Some("blk.5.layer_output_norm.bias")
        );
        assert_eq!(
            gguf_name("encoder.layer.0.attention.self.query.weight", false).as_deref(),
            Some("blk.0.attn_q.weight")
        );
        assert_eq!(gguf_name("embeddings.position_ids", false), None);
        // The pooler and classifier are kept for a cross-encoder only.
        assert_eq!(gguf_name("pooler.dense.weight", false), None);
        assert_eq!(gguf_name("bert.pooler.dense.weight", true).as_deref(), Some("cls.weight"));
        assert_eq!(gguf_name("classifier.bias", true).as_deref(), Some("cls.output.bias"));
    }

    #[test]
    fn a_classifier_names_its_labels_in_id_order() {
        let config = serde_json::json!({"id2label": {"1": "relevant", "0": "irrelevant"}});
        assert_eq!(labels(&config), ["irrelevant", "relevant"]);
        assert_eq!(labels(&serde_json::json!({})), ["LABEL_0"]);
    }

    #[test]
    fn word_pieces_take_llama_cpp_form() {
        assert_eq!(phantom("##ing", false), "ing");
        assert_eq!(phantom("dog", false), "\u{2581}dog");
        assert_eq!(phantom("[CLS]", true), "[CLS]");
        assert_eq!(phantom("[unused3]", false), "[unused3]");
    }

    #[test]
    fn quantize_names() {
        assert_eq!(Quantize::parse("Q8_0").unwrap(), Quantize::Q8_0);
        assert_eq!(Quantize::parse("f16").unwrap(), Quantize::F16);
        assert!(Quantize::parse("q4_k_m").unwrap_err().to_string().contains("q4_k_m"));
    }
}
