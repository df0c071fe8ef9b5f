//! What the BERT-family encoders have in common once converted: GGUF's `bert` tensor names,
//! the loop that reads every safetensors shard and writes the tensors it keeps, and the checks
//! that what llama.cpp will ask for is there with the shape it will ask for.
//!
//! Tensor types follow llama.cpp's converter: vectors (norms, biases) and the two small lookup
//! tables, `position_embd` and `token_types`, stay F32; every other matrix becomes F16, or Q8_0
//! when its rows split into Q8_0's blocks of 32.

use std::collections::BTreeMap;

use corral_gguf::{GgmlType, GgufWriter, MetaValue};
use serde_json::Value;

use crate::safetensors::{Safetensors, Tensor};
use crate::{read, ConvertError, Files, Quantize};

/// The sizes of a BERT-family encoder, and how it pools (llama.cpp's pooling type).
pub(crate) struct Shape {
    pub(crate) ctx: u64,
    pub(crate) embd: u64,
    pub(crate) ffn: u64,
    pub(crate) layers: u64,
    pub(crate) heads: u64,
    pub(crate) eps: f32,
    pub(crate) pooling: u32,
}

/// A writer holding the `general.*` and `bert.*` keys of an encoder of `shape`, named after the
/// last part of `config.json`'s `_name_or_path` (else `fallback`).
pub(crate) fn header(config: &Value, fallback: &str, quantize: Quantize, shape: &Shape) -> GgufWriter {
    let name =
        config.get("_name_or_path").and_then(Value::as_str).and_then(|p| p.rsplit('/').next()).unwrap_or(fallback);
    let u32_of = |n: u64| MetaValue::U32(n as u32);
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::String("bert".into()))
        .set("general.name", MetaValue::String(name.into()))
        .set("general.file_type", MetaValue::U32(quantize.file_type()))
        .set("general.quantization_version", MetaValue::U32(2))
        .set("bert.context_length", u32_of(shape.ctx))
        .set("bert.embedding_length", u32_of(shape.embd))
        .set("bert.feed_forward_length", u32_of(shape.ffn))
        .set("bert.block_count", u32_of(shape.layers))
        .set("bert.attention.head_count", u32_of(shape.heads))
        .set("bert.attention.layer_norm_epsilon", MetaValue::F32(shape.eps))
        .set("bert.attention.causal", MetaValue::Bool(false))
        .set("bert.pooling_type", MetaValue::U32(shape.pooling));
    w
}

/// GGUF's name of a BERT encoder tensor (Hugging Face's name with or without its `bert.`
/// prefix), or `None` for tensors GGUF does not keep. A cross-encoder (`classifier`) keeps its
/// pooler and classifier as llama.cpp's `cls` and `cls.output`.
pub(crate) fn bert_name(hf: &str, classifier: bool) -> Option<String> {
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

/// What [`add_tensors`] wrote: each GGUF tensor's dimensions (GGUF order, innermost first) and
/// the number of parameters.
pub(crate) struct Written {
    pub dims: BTreeMap<String, Vec<u64>>,
    pub parameters: u64,
}

impl Written {
    /// An error naming the first of `names` that was not written.
    pub fn require<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> Result<(), ConvertError> {
        match names.find(|n| !self.dims.contains_key(*n)) {
            Some(missing) => Err(ConvertError::Invalid(format!("the model has no tensor for {missing}"))),
            None => Ok(()),
        }
    }

    /// An error unless `name`, when written, has the dimensions `want`.
    pub fn expect(&self, name: &str, want: &[u64]) -> Result<(), ConvertError> {
        match self.dims.get(name) {
            Some(got) if got != want => {
                Err(ConvertError::Invalid(format!("tensor {name} is {got:?}, expected {want:?} (GGUF order)")))
            }
            _ => Ok(()),
        }
    }
}

/// The tensors every BERT-architecture block has, for `layers` blocks, with the embeddings.
pub(crate) fn required(layers: u64) -> Vec<String> {
    let mut names =
        vec!["token_embd.weight".to_string(), "position_embd.weight".into(), "token_embd_norm.weight".into()];
    for n in 0..layers {
        for part in
            ["attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down", "layer_output_norm"]
        {
            names.push(format!("blk.{n}.{part}.weight"));
        }
    }
    names
}

/// Writes every tensor of every `*.safetensors` shard in `files` that `name` gives a GGUF name,
/// after `adjust` (which sees the GGUF name and may change the tensor, or refuse it).
pub(crate) fn add_tensors(
    files: &Files,
    w: &mut GgufWriter,
    quantize: Quantize,
    name: impl Fn(&str) -> Option<String>,
    adjust: impl Fn(&str, Tensor) -> Result<Tensor, ConvertError>,
) -> Result<Written, ConvertError> {
    let mut shards: Vec<&String> = files.keys().filter(|n| n.ends_with(".safetensors")).collect();
    shards.sort();
    if shards.is_empty() {
        return Err(ConvertError::Invalid("no .safetensors file in the model directory".into()));
    }
    let mut written = Written { dims: BTreeMap::new(), parameters: 0 };
    for shard in shards {
        let in_shard = |e: ConvertError| ConvertError::Invalid(format!("{shard}: {e}"));
        let st = Safetensors::parse(read(files, shard)?.unwrap_or_default()).map_err(in_shard)?;
        for hf in st.names().map(String::from).collect::<Vec<_>>() {
            let Some(name) = name(&hf) else { continue };
            if written.dims.contains_key(&name) {
                return Err(ConvertError::Invalid(format!("{shard}: a second tensor for {name} ({hf})")));
            }
            let t = adjust(&name, st.get(&hf).map_err(in_shard)?)?;
            written.parameters += t.values.len() as u64;
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            let matrix = dims.len() >= 2 && name != "token_types.weight" && name != "position_embd.weight";
            match quantize {
                Quantize::Q8_0 if matrix && dims[0].is_multiple_of(32) => w.add_q8_0(&name, &dims, &t.values),
                _ if matrix => {
                    let data = t.values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
                    w.add_tensor(&name, &dims, GgmlType::F16, data)
                }
                _ => w.add_f32(&name, &dims, &t.values),
            };
            written.dims.insert(name, dims);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf_bert() {
        assert_eq!(bert_name("embeddings.word_embeddings.weight", false).as_deref(), Some("token_embd.weight"));
        assert_eq!(
            bert_name("bert.encoder.layer.5.output.LayerNorm.bias", false).as_deref(),
            Some("blk.5.layer_output_norm.bias")
        );
        assert_eq!(
            bert_name("encoder.layer.0.attention.self.query.weight", false).as_deref(),
            Some("blk.0.attn_q.weight")
        );
        assert_eq!(bert_name("embeddings.position_ids", false), None);
        // The pooler and classifier are kept for a cross-encoder only.
        assert_eq!(bert_name("pooler.dense.weight", false), None);
        assert_eq!(bert_name("bert.pooler.dense.weight", true).as_deref(), Some("cls.weight"));
        assert_eq!(bert_name("classifier.bias", true).as_deref(), Some("cls.output.bias"));
    }
}
