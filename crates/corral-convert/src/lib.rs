//! Safetensors models to GGUF, as Ollama's `create` does with `FROM <directory>`.
//!
//! BERT encoders (sentence-embedding models such as all-MiniLM-L6-v2, and cross-encoder
//! rerankers), XLM-RoBERTa encoders (embedding models such as bge-m3 and cross-encoder rerankers
//! such as bge-reranker-v2-m3: [`xlmr`], with their Unigram tokenizer from [`unigram`]), and
//! decoder language models: llama, Mistral, qwen2, qwen3, gemma2 and gemma3 ([`decoder`], with
//! byte-level BPE tokenizers from [`tokenizer`] or SentencePiece ones from [`sentencepiece`]).
//! For BERT, tensor names follow GGUF's BERT naming, metadata `bert.*`, and the WordPiece
//! vocabulary is written the way llama.cpp's own converter writes it (word pieces without their
//! `##`, whole words with a leading `▁`), so llama.cpp's WPM tokenizer reproduces the Python one.
//!
//! Everything read is bounded and checked: a tensor whose range, dtype or shape does not add up,
//! a missing tensor, or a vocabulary that does not match the model is an error naming it.

pub mod decoder;
mod encoder;
pub mod safetensors;
pub mod sentencepiece;
mod specials;
pub mod tokenizer;
pub mod unigram;
pub mod xlmr;

use std::collections::BTreeMap;
use std::path::PathBuf;

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};
use serde_json::Value;

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
        if xlmr::is_xlmr(&config) {
            return xlmr::convert(files, &config, quantize);
        }
        if let Some(arch) = decoder::Arch::of(&config) {
            return decoder::convert(files, &config, arch, quantize);
        }
        let named = if archs.is_empty() { "none named in config.json".to_string() } else { archs.join(", ") };
        return Err(ConvertError::Unsupported(format!(
            "unsupported architecture ({named}): Corral converts BERT, XLM-RoBERTa, llama, Mistral, qwen2, qwen3, gemma2 and gemma3 (text) models from safetensors"
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

    let shape = encoder::Shape { ctx, embd, ffn, layers, heads, eps, pooling };
    let mut w = encoder::header(&config, "bert", quantize, &shape);
    let s = |v: &str| MetaValue::String(v.to_string());
    w.set("tokenizer.ggml.model", s("bert"))
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

    let written = encoder::add_tensors(files, &mut w, quantize, |hf| encoder::bert_name(hf, classifier), |_, t| Ok(t))?;
    let mut required = encoder::required(layers);
    if classifier {
        required.push("cls.output.weight".into());
    }
    written.require(required.iter().map(String::as_str))?;
    written.expect("token_embd.weight", &[embd, tokens.len() as u64])?;
    let converted =
        Converted { architecture: "bert".into(), tensors: written.dims.len(), parameters: written.parameters };
    Ok((w, converted))
}

#[cfg(test)]
mod tests {
    use super::*;

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
