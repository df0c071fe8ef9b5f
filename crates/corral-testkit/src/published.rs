//! Real models rewritten the way Ollama's converter published them, for the tests of Corral's
//! load-time translation (`corral-compat`): the same weights in both layouts, so a test can load
//! each and compare what they compute.

use std::path::Path;

use corral_gguf::{ArrayValue, Gguf, GgufWriter, MetaValue};
use rand::{Rng, SeedableRng};

/// Every tensor of `g` (read from `bytes`) added to `w` as it is.
fn copy_tensors(w: &mut GgufWriter, g: &Gguf, bytes: &[u8]) {
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        w.add_tensor(&t.name, &t.dims, t.kind, bytes[start..start + t.size as usize].to_vec());
    }
}

fn random_f32(rng: &mut rand::rngs::StdRng, n: u64) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-0.05..0.05)).collect()
}

/// Gemma 3 (llama.cpp's layout, e.g. [`crate::gemma3`]) as Ollama publishes Gemma 3: a vision
/// tower and projector in the file (random, small: nothing reads them for text), the RoPE bases
/// under their nested names, no RMS-norm epsilon (the file's must be the 1e-6 Ollama assumes),
/// the image token count, and one more token in the tokenizer arrays than the embedding has rows.
pub fn gemma3_as_published(src: &Path) -> Vec<u8> {
    let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let g = corral_gguf::read_bytes(&bytes).expect("a GGUF");
    assert_eq!(g.architecture(), Some("gemma3"));
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        match (key.as_str(), value) {
            ("gemma3.attention.layer_norm_rms_epsilon", MetaValue::F32(eps)) => {
                assert!((eps - 1e-6).abs() < 1e-12, "Ollama's translation assumes 1e-6, the file has {eps}");
            }
            ("gemma3.rope.freq_base", v) => {
                w.set("gemma3.rope.global.freq_base", v.clone());
                w.set("gemma3.rope.local.freq_base", MetaValue::F32(10_000.0));
            }
            ("tokenizer.ggml.tokens", MetaValue::Array(ArrayValue::String(t))) => {
                let mut t = t.clone();
                t.push("<image_soft_token>".into());
                w.set(key, MetaValue::Array(ArrayValue::String(t)));
            }
            ("tokenizer.ggml.scores", MetaValue::Array(ArrayValue::F32(s))) => {
                let mut s = s.clone();
                s.push(0.0);
                w.set(key, MetaValue::Array(ArrayValue::F32(s)));
            }
            ("tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(ty))) => {
                let mut ty = ty.clone();
                ty.push(3);
                w.set(key, MetaValue::Array(ArrayValue::I32(ty)));
            }
            _ => {
                w.set(key, value.clone());
            }
        }
    }
    w.set("gemma3.mm.tokens_per_image", MetaValue::U32(256));
    w.set("gemma3.vision.block_count", MetaValue::U32(1));
    copy_tensors(&mut w, &g, &bytes);
    let embd = g.get_u64("gemma3.embedding_length").expect("embedding_length");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let vision = 32;
    w.add_f32("v.patch_embedding.weight", &[14, 14, 3, vision], &random_f32(&mut rng, 14 * 14 * 3 * vision));
    w.add_f32("v.blk.0.attn_q.weight", &[vision, vision], &random_f32(&mut rng, vision * vision));
    w.add_f32("v.post_layernorm.weight", &[vision], &vec![1.0; vision as usize]);
    w.add_f32("mm.mm_soft_emb_norm.weight", &[vision], &vec![1.0; vision as usize]);
    w.add_f32("mm.mm_input_projection.weight", &[vision, embd], &random_f32(&mut rng, vision * embd));
    w.to_bytes()
}

/// `bytes` (a GGUF) with every tensor as F32: a source for `create --quantize` in whatever layout
/// it was written in.
pub fn dequantized(bytes: &[u8]) -> Vec<u8> {
    let g = corral_gguf::read_bytes(bytes).expect("a GGUF");
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        w.set(key, value.clone());
    }
    w.set("general.file_type", MetaValue::U32(0));
    for t in &g.tensors {
        let start = (g.data_offset + t.offset) as usize;
        let data = &bytes[start..start + t.size as usize];
        let values = corral_gguf::dequantize(t.kind, data, t.elements() as usize)
            .unwrap_or_else(|| panic!("tensor {}: cannot read {}", t.name, t.kind.name()));
        w.add_f32(&t.name, &t.dims, &values);
    }
    w.to_bytes()
}

/// A Nemotron-H MoE file (llama.cpp's layout) as the unified text, vision and audio model Ollama
/// published (`nemotron_h_omni`): the architecture and its keys renamed, the media encoders' keys
/// and stand-in tensors (`a.*`, `v.*`, `mm.*`) added after the text weights.
pub fn as_nemotron_omni(bytes: &[u8]) -> Vec<u8> {
    let g = corral_gguf::read_bytes(bytes).expect("a GGUF");
    assert_eq!(g.architecture(), Some("nemotron_h_moe"));
    let mut w = GgufWriter::new();
    for (key, value) in &g.metadata {
        match key.strip_prefix("nemotron_h_moe.") {
            _ if key == "general.architecture" => w.set(key, MetaValue::String("nemotron_h_omni".into())),
            Some(rest) => w.set(&format!("nemotron_h_omni.{rest}"), value.clone()),
            None => w.set(key, value.clone()),
        };
    }
    w.set("nemotron_h_omni.vision.block_count", MetaValue::U32(1));
    w.set("nemotron_h_omni.audio.block_count", MetaValue::U32(1));
    copy_tensors(&mut w, &g, bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (name, dims) in
        [("a.conv1d.0.weight", [3u64, 16]), ("v.patch_embd.weight", [16, 16]), ("mm.vision.fc.weight", [16, 16])]
    {
        w.add_f32(name, &dims, &random_f32(&mut rng, dims.iter().product()));
    }
    w.to_bytes()
}
