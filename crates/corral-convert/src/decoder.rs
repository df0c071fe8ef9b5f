//! Decoder language models from safetensors: llama (and Mistral, which llama.cpp runs as llama),
//! qwen2, qwen3, gemma2 and gemma3 (text). Hyper-parameters come from `config.json`, the weights
//! from every `*.safetensors` shard (their index only says which shard holds what), the tokenizer
//! from SentencePiece's `tokenizer.model` when there is one (as llama.cpp's converter prefers it),
//! else from `tokenizer.json`, and the chat template and special tokens from
//! `tokenizer_config.json`.
//!
//! Tensors take GGUF's names; a llama model's Q and K projections get llama.cpp's row order (the
//! two rotary halves of each head interleaved), which its rope expects. Gemma's norms scale by
//! `1 + w` where llama.cpp's scale by `w`, so their weights are written plus one. Matrices are
//! written as F16 (or Q8_0), norms and biases as F32.

use std::collections::BTreeMap;

use corral_gguf::{GgmlType, GgufWriter, MetaValue};
use serde_json::Value;

use crate::safetensors::Safetensors;
use crate::{read, read_json, ConvertError, Converted, Files, Quantize};

/// The architectures this converts, by llama.cpp's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
}

impl Arch {
    /// The architecture `config.json` names, if it is one of these.
    pub fn of(config: &Value) -> Option<Arch> {
        let archs = config.get("architectures").and_then(Value::as_array)?;
        archs.iter().filter_map(Value::as_str).find_map(|a| match a {
            "LlamaForCausalLM" | "MistralForCausalLM" => Some(Arch::Llama),
            "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            "Qwen3ForCausalLM" => Some(Arch::Qwen3),
            "Gemma2ForCausalLM" => Some(Arch::Gemma2),
            "Gemma3ForCausalLM" => Some(Arch::Gemma3),
            _ => None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }

    fn gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }
}

/// GGUF's name of a Hugging Face decoder tensor (`None`: not a weight, such as rotary tables).
/// Gemma has a norm before and after each block's attention and feed-forward parts; the norm
/// llama calls `post_attention_layernorm` is the one before the feed-forward.
fn gguf_name(hf: &str, arch: Arch) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (part, kind) = part.rsplit_once('.')?;
    let gguf = match part {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if arch.gemma() => "post_attention_norm",
        "pre_feedforward_layernorm" if arch.gemma() => "ffn_norm",
        "post_feedforward_layernorm" if arch.gemma() => "post_ffw_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    let layer: u32 = layer.parse().ok()?;
    Some(format!("blk.{layer}.{gguf}.{kind}"))
}

/// llama.cpp's row order for a llama Q or K projection of `heads` heads: each head's two rotary
/// halves interleaved.
fn permute(values: &[f32], rows: usize, cols: usize, heads: usize) -> Result<Vec<f32>, ConvertError> {
    if heads == 0 || !rows.is_multiple_of(heads * 2) {
        return Err(ConvertError::Invalid(format!("{rows} projection rows do not split into {heads} heads")));
    }
    let half = rows / heads / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let (from, to) = (h * 2 * half + j * half + i, h * 2 * half + i * 2 + j);
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(out)
}

fn number(config: &Value, key: &str) -> Result<u64, ConvertError> {
    config
        .get(key)
        .and_then(Value::as_u64)
        .filter(|n| *n > 0 && *n < 1 << 32)
        .ok_or_else(|| ConvertError::Invalid(format!("config.json: {key} is missing or out of range")))
}

/// Converts the decoder in `files` (its `config.json` already read) into a GGUF writer.
pub fn convert(
    files: &Files,
    config: &Value,
    arch: Arch,
    quantize: Quantize,
) -> Result<(GgufWriter, Converted), ConvertError> {
    let (embd, ffn, layers, heads) = (
        number(config, "hidden_size")?,
        number(config, "intermediate_size")?,
        number(config, "num_hidden_layers")?,
        number(config, "num_attention_heads")?,
    );
    let kv_heads = config.get("num_key_value_heads").and_then(Value::as_u64).unwrap_or(heads);
    let head_dim = config.get("head_dim").and_then(Value::as_u64).unwrap_or(embd / heads);
    let ctx = number(config, "max_position_embeddings")?;
    let eps = config.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6) as f32;
    let theta = config.get("rope_theta").and_then(Value::as_f64).unwrap_or(10000.0) as f32;
    let vocab_size = config.get("vocab_size").and_then(Value::as_u64).map(|n| n as usize);

    let tokenizer_config = read_json(files, "tokenizer_config.json")?.unwrap_or(Value::Null);
    let tokenizer_keys = match read(files, "tokenizer.model")? {
        Some(model) => {
            let model = crate::sentencepiece::Model::parse(&model)?;
            // llama.cpp writes no space prefix for Gemma, whatever the model's normalizer says.
            let space_prefix = arch.gemma().then_some(false);
            crate::sentencepiece::keys(model, &tokenizer_config, config, vocab_size, space_prefix)?
        }
        None => {
            let tokenizer = read_json(files, "tokenizer.json")?.ok_or_else(|| {
                ConvertError::Invalid("the model directory has neither tokenizer.model nor tokenizer.json".into())
            })?;
            crate::tokenizer::bpe(&tokenizer, &tokenizer_config, config, vocab_size)?
        }
    };

    let a = arch.name();
    let mut w = GgufWriter::new();
    let name = config.get("_name_or_path").and_then(Value::as_str).and_then(|p| p.rsplit('/').next()).unwrap_or(a);
    w.set("general.architecture", MetaValue::String(a.into()))
        .set("general.name", MetaValue::String(name.into()))
        .set("general.file_type", MetaValue::U32(quantize.file_type()))
        .set("general.quantization_version", MetaValue::U32(2))
        .set(&format!("{a}.context_length"), MetaValue::U32(ctx as u32))
        .set(&format!("{a}.embedding_length"), MetaValue::U32(embd as u32))
        .set(&format!("{a}.feed_forward_length"), MetaValue::U32(ffn as u32))
        .set(&format!("{a}.block_count"), MetaValue::U32(layers as u32))
        .set(&format!("{a}.attention.head_count"), MetaValue::U32(heads as u32))
        .set(&format!("{a}.attention.head_count_kv"), MetaValue::U32(kv_heads as u32))
        .set(&format!("{a}.attention.layer_norm_rms_epsilon"), MetaValue::F32(eps))
        .set(&format!("{a}.rope.freq_base"), MetaValue::F32(theta))
        .set(&format!("{a}.rope.dimension_count"), MetaValue::U32(head_dim as u32));
    if head_dim != embd / heads {
        w.set(&format!("{a}.attention.key_length"), MetaValue::U32(head_dim as u32))
            .set(&format!("{a}.attention.value_length"), MetaValue::U32(head_dim as u32));
    }
    if let Some(n) = vocab_size {
        w.set(&format!("{a}.vocab_size"), MetaValue::U32(n as u32));
    }
    let float = |key: &str| config.get(key).and_then(Value::as_f64).map(|v| v as f32);
    if arch.gemma() {
        if let Some(window) = config.get("sliding_window").and_then(Value::as_u64) {
            w.set(&format!("{a}.attention.sliding_window"), MetaValue::U32(window as u32));
        }
    }
    if arch == Arch::Gemma2 {
        for (key, field) in [
            ("attn_logit_softcapping", "attn_logit_softcapping"),
            ("final_logit_softcapping", "final_logit_softcapping"),
        ] {
            if let Some(v) = float(field) {
                w.set(&format!("{a}.{key}"), MetaValue::F32(v));
            }
        }
    }
    // Linear rope scaling (Gemma 3 4B and up; some llama fine-tunes). Other kinds are refused
    // rather than dropped: the model would run, with wrong positions.
    if let Some(scaling) = config.get("rope_scaling").filter(|v| !v.is_null()) {
        let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(Value::as_str);
        match (kind, scaling.get("factor").and_then(Value::as_f64)) {
            (Some("linear"), Some(factor)) => {
                w.set(&format!("{a}.rope.scaling.type"), MetaValue::String("linear".into()))
                    .set(&format!("{a}.rope.scaling.factor"), MetaValue::F32(factor as f32));
            }
            (Some("default"), _) => {}
            _ => {
                return Err(ConvertError::Unsupported(format!(
                    "config.json: rope scaling {scaling} cannot be converted yet (linear can)"
                )))
            }
        }
    }
    for (key, value) in tokenizer_keys {
        w.set(&key, value);
    }

    let mut shards: Vec<&String> = files.keys().filter(|n| n.ends_with(".safetensors")).collect();
    shards.sort();
    if shards.is_empty() {
        return Err(ConvertError::Invalid("no .safetensors file in the model directory".into()));
    }
    let mut written: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut parameters = 0u64;
    for shard in shards {
        let st = Safetensors::parse(read(files, shard)?.unwrap_or_default())?;
        for hf in st.names().map(String::from).collect::<Vec<_>>() {
            let Some(name) = gguf_name(&hf, arch) else { continue };
            let t = st.get(&hf)?;
            parameters += t.values.len() as u64;
            let dims: Vec<u64> = t.shape.iter().rev().copied().collect();
            let values = match (arch, name.rsplit('.').nth(1), t.shape.as_slice()) {
                (Arch::Llama, Some("attn_q"), [rows, cols]) => {
                    permute(&t.values, *rows as usize, *cols as usize, heads as usize)?
                }
                (Arch::Llama, Some("attn_k"), [rows, cols]) => {
                    permute(&t.values, *rows as usize, *cols as usize, kv_heads as usize)?
                }
                _ if arch.gemma() && name.ends_with("norm.weight") => t.values.iter().map(|v| v + 1.0).collect(),
                _ => t.values,
            };
            if dims.len() >= 2 {
                match quantize {
                    Quantize::Q8_0 if dims[0].is_multiple_of(32) => w.add_q8_0(&name, &dims, &values),
                    _ => {
                        let data = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
                        w.add_tensor(&name, &dims, GgmlType::F16, data)
                    }
                };
            } else {
                w.add_f32(&name, &dims, &values);
            }
            if written.insert(name.clone(), dims).is_some() {
                return Err(ConvertError::Invalid(format!("{hf} is in more than one shard")));
            }
        }
    }
    let mut required = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    let mut parts =
        vec!["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];
    match arch {
        Arch::Gemma2 => parts.extend(["post_attention_norm", "post_ffw_norm"]),
        Arch::Gemma3 => parts.extend(["post_attention_norm", "post_ffw_norm", "attn_q_norm", "attn_k_norm"]),
        Arch::Qwen3 => parts.extend(["attn_q_norm", "attn_k_norm"]),
        Arch::Llama | Arch::Qwen2 => {}
    }
    for n in 0..layers {
        for part in &parts {
            required.push(format!("blk.{n}.{part}.weight"));
        }
    }
    if let Some(missing) = required.iter().find(|r| !written.contains_key(*r)) {
        return Err(ConvertError::Invalid(format!("the model has no tensor for {missing}")));
    }
    let embd_shape = &written["token_embd.weight"];
    if embd_shape[0] != embd || vocab_size.is_some_and(|n| embd_shape[1] != n as u64) {
        return Err(ConvertError::Invalid(format!(
            "token embeddings are {embd_shape:?}, config.json says [{embd}, {vocab_size:?}]"
        )));
    }
    Ok((w, Converted { architecture: a.into(), tensors: written.len(), parameters }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf() {
        let gguf_name = |hf: &str| gguf_name(hf, Arch::Llama);
        assert_eq!(gguf_name("model.layers.3.self_attn.q_proj.weight").as_deref(), Some("blk.3.attn_q.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.k_proj.bias").as_deref(), Some("blk.0.attn_k.bias"));
        assert_eq!(gguf_name("model.layers.1.mlp.down_proj.weight").as_deref(), Some("blk.1.ffn_down.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(
            gguf_name("model.layers.2.post_attention_layernorm.weight").as_deref(),
            Some("blk.2.ffn_norm.weight")
        );
        let gemma = |hf: &str| super::gguf_name(hf, Arch::Gemma3);
        assert_eq!(
            gemma("model.layers.2.post_attention_layernorm.weight").as_deref(),
            Some("blk.2.post_attention_norm.weight")
        );
        assert_eq!(gemma("model.layers.2.pre_feedforward_layernorm.weight").as_deref(), Some("blk.2.ffn_norm.weight"));
        assert_eq!(
            gemma("model.layers.2.post_feedforward_layernorm.weight").as_deref(),
            Some("blk.2.post_ffw_norm.weight")
        );
    }

    #[test]
    fn permute_interleaves_each_heads_halves() {
        let hf: Vec<f32> = (0..8).map(|r| r as f32).collect();
        assert_eq!(permute(&hf, 8, 1, 2).unwrap(), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert!(permute(&hf, 8, 1, 3).is_err());
    }

    #[test]
    fn architectures_are_read_from_config() {
        let arch = |a: &str| Arch::of(&serde_json::json!({"architectures": [a]}));
        assert_eq!(arch("MistralForCausalLM"), Some(Arch::Llama));
        assert_eq!(arch("Qwen2ForCausalLM"), Some(Arch::Qwen2));
        assert_eq!(arch("FalconForCausalLM"), None);
    }
}
