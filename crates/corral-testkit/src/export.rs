//! A GGUF back to a Hugging Face model directory, as the field publishes models: `config.json`,
//! sharded `model-0000N-of-0000M.safetensors` with their index (F16 weights, dequantized), the
//! tokenizer (`tokenizer.json` for byte-level BPE, SentencePiece's `tokenizer.model` for a
//! `llama`-model vocabulary such as Gemma's) and `tokenizer_config.json` (special and added
//! tokens, the chat template). No such model ships anywhere reachable here, so the import tests make their own from
//! the models they fetch, and check the import reproduces the original.
//!
//! llama.cpp's converter permutes the rows of a llama model's Q and K projections (it interleaves
//! the two rotary halves of each head); the export undoes that, as the original checkpoint has it.
//! qwen2 and gemma3 models keep their rows as they are. llama.cpp's converter adds one to Gemma's
//! norm weights (Hugging Face's Gemma scales by `1 + w`); the export takes it off again. Vocabulary entries llama.cpp added only to pad the
//! token list to the embeddings' rows (type unused) are left out, as the original has no such
//! tokens.

use std::collections::BTreeMap;
use std::path::Path;

use corral_gguf::{dequantize, ArrayValue, MetaValue};
use serde_json::{json, Map, Value};

/// Hugging Face's pre-tokenizer for each llama.cpp `tokenizer.ggml.pre` this can write.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split =
        |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    Some(match pre {
        "smollm" => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        "gpt2" => byte_level(true),
        "qwen2" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        "llama-bpe" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        _ => return None,
    })
}

/// The Hugging Face name of a GGUF tensor of a llama-style decoder (`gemma`: Gemma's four norms
/// per block, where the one llama calls `post_attention_layernorm` comes before the feed-forward).
fn hf_name(gguf: &str, gemma: bool) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.into());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let (part, kind) = part.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "post_attention_norm" if gemma => "post_attention_layernorm",
        "post_ffw_norm" if gemma => "post_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's interleaving of the rotary halves in each head's rows of a Q or K
/// projection (`rows` of `cols` values, `heads` heads).
fn unpermute(values: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf_row = h * 2 * half + i * 2 + j;
                let hf_row = h * 2 * half + j * half + i;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&values[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    out
}

/// Writes one safetensors file of F16 tensors.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<u64>, Vec<f32>)]) {
    let mut header = Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()));
        header.insert(name.clone(), json!({"dtype": "F16", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut head = serde_json::to_vec(&header).unwrap();
    while !(8 + head.len()).is_multiple_of(8) {
        head.push(b' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend(head);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// Appends protocol-buffer field `number` of wire type `wire` (its key) to `out`.
fn proto_key(number: u64, wire: u64, out: &mut Vec<u8>) {
    proto_varint(number << 3 | wire, out);
}

fn proto_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn proto_bytes(number: u64, data: &[u8], out: &mut Vec<u8>) {
    proto_key(number, 2, out);
    proto_varint(data.len() as u64, out);
    out.extend(data);
}

/// SentencePiece's `ModelProto` with these pieces (text, score, type) and the normalizer's
/// `add_dummy_prefix`: what a `tokenizer.model` holds that a converter reads.
pub fn sentencepiece_model(pieces: &[(String, f32, i32)], add_dummy_prefix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (text, score, kind) in pieces {
        let mut p = Vec::new();
        proto_bytes(1, text.as_bytes(), &mut p);
        proto_key(2, 5, &mut p);
        p.extend(score.to_le_bytes());
        proto_key(3, 0, &mut p);
        proto_varint(*kind as u64, &mut p);
        proto_bytes(1, &p, &mut out);
    }
    let mut normalizer = Vec::new();
    proto_key(3, 0, &mut normalizer);
    proto_varint(u64::from(add_dummy_prefix), &mut normalizer);
    proto_bytes(3, &normalizer, &mut out);
    out
}

/// Exports the llama, qwen2 or gemma3 GGUF at `gguf_path` into `dir` in `shards` safetensors
/// files.
pub fn export_hf(gguf_path: &Path, dir: &Path, shards: usize) {
    let bytes = std::fs::read(gguf_path).unwrap();
    let g = corral_gguf::read_bytes(&bytes).unwrap();
    let arch = g.architecture().expect("an architecture").to_string();
    let (hf_arch, permuted) = match arch.as_str() {
        "llama" => ("LlamaForCausalLM", true),
        "qwen2" => ("Qwen2ForCausalLM", false),
        "gemma3" => ("Gemma3ForCausalLM", false),
        other => panic!("{other} models are not exported"),
    };
    let u = |k: &str| g.arch_u64(k).unwrap_or_else(|| panic!("{arch}.{k}"));
    let f = |k: &str| match g.get(&format!("{arch}.{k}")) {
        Some(MetaValue::F32(v)) => f64::from(*v),
        other => panic!("{arch}.{k}: {other:?}"),
    };
    let (heads, kv_heads) = (u("attention.head_count") as usize, u("attention.head_count_kv") as usize);
    let gemma = arch == "gemma3";

    let mut tensors = Vec::new();
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        let values = dequantize(t.kind, &bytes[start..start + t.size as usize], t.elements() as usize)
            .unwrap_or_else(|| panic!("{}: cannot read {}", t.name, t.kind.name()));
        let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
        let values = match (permuted, t.name.as_str().rsplit('.').collect::<Vec<_>>().as_slice()) {
            (true, ["weight", "attn_q", ..]) => unpermute(&values, shape[0] as usize, shape[1] as usize, heads),
            (true, ["weight", "attn_k", ..]) => unpermute(&values, shape[0] as usize, shape[1] as usize, kv_heads),
            _ if gemma && t.name.ends_with("norm.weight") => values.iter().map(|v| v - 1.0).collect(),
            _ => values,
        };
        let name = hf_name(&t.name, gemma).unwrap_or_else(|| panic!("no Hugging Face name for {}", t.name));
        tensors.push((name, shape, values));
    }
    let tied = !g.tensors.iter().any(|t| t.name == "output.weight");

    // Shards of about equal size, and the index that maps each tensor to its file.
    let total: usize = tensors.iter().map(|t| t.2.len()).sum();
    let mut weight_map = Map::new();
    let (mut shard, mut in_shard, mut pending) = (1, 0usize, Vec::new());
    let file = |n: usize| format!("model-{n:05}-of-{shards:05}.safetensors");
    for t in tensors {
        in_shard += t.2.len();
        weight_map.insert(t.0.clone(), json!(file(shard)));
        pending.push(t);
        if in_shard * shards >= total * shard && shard < shards {
            write_safetensors(&dir.join(file(shard)), &std::mem::take(&mut pending));
            shard += 1;
        }
    }
    write_safetensors(&dir.join(file(shard)), &pending);
    let index = json!({"metadata": {"total_size": total * 2}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();

    // The tokenizer.
    let strings = |k: &str| match g.get(k) {
        Some(MetaValue::Array(ArrayValue::String(v))) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let tokens = strings("tokenizer.ggml.tokens");
    let types: Vec<i32> = match g.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(ArrayValue::I32(v))) => v.clone(),
        _ => vec![1; tokens.len()],
    };
    let special = |id: Option<u64>| id.and_then(|i| tokens.get(i as usize)).cloned();
    let (bos, eos) = (g.get_u64("tokenizer.ggml.bos_token_id"), g.get_u64("tokenizer.ggml.eos_token_id"));
    let sentencepiece = g.get_str("tokenizer.ggml.model") == Some("llama");
    // Control tokens (3) are special added tokens, user-defined ones (4) plain added tokens (which
    // a SentencePiece model spells with '▁' for their spaces); unused ones (5) are llama.cpp's
    // padding.
    let spelled = |i: usize| match (sentencepiece, types.get(i)) {
        (true, Some(4)) => tokens[i].replace(' ', "\u{2581}"),
        _ => tokens[i].clone(),
    };
    let added: Vec<(usize, Value)> = (0..tokens.len())
        .filter_map(|i| {
            let special = match types.get(i) {
                Some(3) => true,
                Some(4) => false,
                _ => return None,
            };
            Some((i, json!({"content": spelled(i), "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": special})))
        })
        .collect();
    if sentencepiece {
        let scores = match g.get("tokenizer.ggml.scores") {
            Some(MetaValue::Array(ArrayValue::F32(v))) => v.clone(),
            other => panic!("tokenizer.ggml.scores: {other:?}"),
        };
        let pieces: Vec<(String, f32, i32)> =
            (0..tokens.len()).map(|i| (spelled(i), scores[i], types.get(i).copied().unwrap_or(1))).collect();
        let space_prefix = !matches!(g.get("tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(false)));
        std::fs::write(dir.join("tokenizer.model"), sentencepiece_model(&pieces, space_prefix)).unwrap();
    } else {
        let vocab: BTreeMap<&str, usize> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| types.get(*i) != Some(&5))
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("gpt2");
        let added: Vec<Value> = added
            .iter()
            .map(|(i, t)| {
                let mut t = t.clone();
                t["id"] = json!(i);
                t
            })
            .collect();
        let tokenizer = json!({
            "version": "1.0",
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer(pre).unwrap_or_else(|| panic!("no pre-tokenizer for {pre}")),
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                      "vocab": vocab, "merges": strings("tokenizer.ggml.merges")},
        });
        std::fs::write(dir.join("tokenizer.json"), serde_json::to_vec(&tokenizer).unwrap()).unwrap();
    }
    let flag = |k: &str| matches!(g.get(k), Some(MetaValue::Bool(true)));
    let mut tokenizer_config = json!({
        "add_bos_token": flag("tokenizer.ggml.add_bos_token"),
        "add_eos_token": flag("tokenizer.ggml.add_eos_token"),
        "bos_token": special(bos), "eos_token": special(eos),
        "unk_token": special(g.get_u64("tokenizer.ggml.unknown_token_id")),
        "pad_token": special(g.get_u64("tokenizer.ggml.padding_token_id")),
        "model_max_length": u("context_length"),
    });
    if let Some(template) = g.get_str("tokenizer.chat_template") {
        tokenizer_config["chat_template"] = json!(template);
    }
    if sentencepiece {
        let decoder: Map<String, Value> = added.into_iter().map(|(i, t)| (i.to_string(), t)).collect();
        tokenizer_config["added_tokens_decoder"] = Value::Object(decoder);
    }
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_vec_pretty(&tokenizer_config).unwrap()).unwrap();

    let mut config = json!({
        "architectures": [hf_arch], "model_type": arch, "torch_dtype": "float16",
        "hidden_size": u("embedding_length"), "intermediate_size": u("feed_forward_length"),
        "num_hidden_layers": u("block_count"), "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": f("attention.layer_norm_rms_epsilon"), "rope_theta": f("rope.freq_base"),
        "max_position_embeddings": u("context_length"), "vocab_size": tokens.len(),
        "tie_word_embeddings": tied, "bos_token_id": bos, "eos_token_id": eos,
    });
    if gemma {
        // Gemma 3's text model: heads wider than embedding / heads, local layers in a window
        // with their own rope base (llama.cpp fixes it at 10,000), queries scaled by head width.
        let head_dim = u("attention.key_length");
        let extra = json!({"model_type": "gemma3_text", "head_dim": head_dim,
            "sliding_window": u("attention.sliding_window"), "rope_local_base_freq": 10000.0,
            "query_pre_attn_scalar": head_dim, "hidden_activation": "gelu_pytorch_tanh", "rope_scaling": null});
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    }
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_undoes_llama_cpps_row_order() {
        // Two heads of four rows: llama.cpp's order is (h, i, j) for HF's (h, j, i).
        let gguf: Vec<f32> = (0..8).map(|r| r as f32).collect();
        assert_eq!(unpermute(&gguf, 8, 1, 2), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    }
}
