//! Fixtures for Corral's tests.
//!
//! - [`tiny_llama`]: a llama-architecture GGUF with random weights, written by the project's own
//!   GGUF writer. With SmolLM2's tokenizer copied in it is a real, loadable model of about 8.5 MB
//!   whose greedy output still depends on the prompt; without one it is a valid GGUF for tests
//!   that only need the file format.
//! - [`letters_tokenizer`]: a vocabulary of a few letters for [`tiny_llama`], for tests that
//!   count every token's draws.
//! - [`smollm2`]: the path of SmolLM2-135M-Instruct, fetched by `scripts/fetch-models.sh`.
//! - [`export_hf`]: a GGUF back to a Hugging Face model directory (the import tests' fixture).
//! - [`gemma3_as_published`]: a real model rewritten in the layout Ollama published it in, and
//!   [`gemma3_reference_projector`], its vision tower as llama.cpp's separate projector (so is
//!   [`qwen25vl_reference_projector`] for the tower of [`tiny_qwen25vl`]'s published layout, and
//!   [`qwen3vl_reference_projector`] for that of [`tiny_qwen3vl`] and [`tiny_qwen3vlmoe`],
//!   [`llama4_reference_projector`] for that of [`tiny_llama4`], [`gemma4_reference_projector`]
//!   for the vision and audio towers of [`tiny_gemma4`]).
//! - `tiny_<architecture>` ([`tiny_gpt_oss`], [`tiny_gemma4`], [`tiny_glmocr`], [`tiny_qwen35`]…):
//!   random models of real structure written both in llama.cpp's layout and in the one Ollama
//!   published them in ([`Layout`]), the same weights in both; [`dequantized`] makes any GGUF a
//!   quantizer's input.
//! - [`projector::tiny_vision_projector`]: a random-weight multimodal projector (mmproj) as wide
//!   as a given language model, and [`projector::png`], pictures to show it.
//! - [`projector_qwen::tiny_qwen2vl_projector`]: a random-weight Qwen2-VL vision projector for
//!   the Qwen2-VL family of language models ([`tiny_qwen25vl`] in llama.cpp's layout).
//! - [`reranker::tiny_reranker`]: a random-weight BERT cross-encoder reranker (RANK pooling, a
//!   one-score classification head) with MiniLM's WordPiece tokenizer, for `/v1/rerank`.
//! - [`xlmr::tiny_xlmr_cross_encoder`]: a random-weight XLM-RoBERTa cross-encoder as a Hugging
//!   Face directory (`config.json`, a Unigram `tokenizer.json` with a precompiled character map,
//!   `model.safetensors`), the input `corral create` turns into a bge-reranker-v2-m3-like GGUF.
//! - [`audio::tiny_audio_projector`]: a random-weight audio projector (a Whisper encoder and
//!   Ultravox's projector) as wide as a given language model, and [`audio::wav`], sounds to play it.

pub mod audio;
mod export;
pub mod projector;
pub mod projector_qwen;
mod published;
mod published_gemma4;
mod published_gemma4_audio;
mod published_llama4;
mod published_mistral3;
mod published_qwen;
mod published_qwen3vl;
mod random_arch;
mod random_arch2;
mod random_gemma;
mod random_glm;
mod random_other;
mod random_qwen;
pub mod reranker;
pub mod xlmr;

pub use export::{export_hf, sentencepiece_model, write_safetensors};
pub use published::{
    as_nemotron_omni, dequantized, gemma3_as_published, gemma3_reference_projector, Gemma3Tower, GEMMA3_TOWER,
};
pub use published_gemma4::{gemma4_reference_projector, Gemma4Tower, GEMMA4_TOWER};
pub use published_gemma4_audio::{Gemma4AudioTower, GEMMA4_AUDIO_TOWER};
pub use published_llama4::{llama4_reference_projector, Llama4Tower, LLAMA4_TOWER};
pub use published_mistral3::{mistral3_reference_projector, Mistral3Tower, IMAGE_TOKENS, MISTRAL3_TOWER};
pub use published_qwen::{qwen25vl_reference_projector, Qwen25VlTower, QWEN25VL_TOWER};
pub use published_qwen3vl::{qwen3vl_reference_projector, Qwen3VlTower, QWEN3VL_TOWER};
pub use random_arch::{tiny_gpt_oss, tiny_lfm2, Layout};
pub use random_arch2::{tiny_llama3, tiny_mistral3, tiny_qwen3vl};
pub use random_gemma::{tiny_embeddinggemma, tiny_gemma3n, tiny_gemma4};
pub use random_glm::tiny_glmocr;
pub use random_other::{
    tiny_deepseekocr, tiny_glm4moelite, tiny_laguna, tiny_lfm2moe, tiny_llama4, tiny_nemotron_h_moe, tiny_olmo3,
};
pub use random_qwen::{tiny_qwen25vl, tiny_qwen35, tiny_qwen35moe, tiny_qwen3next, tiny_qwen3vlmoe};

use std::path::{Path, PathBuf};

use corral_gguf::{ArrayValue, Gguf, GgufWriter, MetaValue};
use rand::{Rng, SeedableRng};

/// Where `scripts/fetch-models.sh` puts the models: `$CORRAL_TEST_MODELS`, else
/// `$XDG_CACHE_HOME/corral/test-models`, else `~/.cache/corral/test-models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CORRAL_TEST_MODELS") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("corral/test-models")
}

/// Path of SmolLM2-135M-Instruct Q4_1. Panics with instructions when it has not been fetched: a
/// test that needs a real model must not pass without one.
pub fn smollm2() -> PathBuf {
    let p = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models.sh first", p.display());
    p
}

/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the tools model), fetched by `scripts/fetch-models.sh`.
pub fn qwen_coder() -> PathBuf {
    let p = models_dir().join("Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models.sh first", p.display());
    p
}

/// Gemma 3 270M base Q4_K_M (sliding-window attention, no chat template), fetched by
/// `scripts/fetch-models.sh`.
pub fn gemma3() -> PathBuf {
    let p = models_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models.sh first", p.display());
    p
}

/// The all-MiniLM-L6-v2 safetensors directory, fetched by `scripts/fetch-models.sh`.
pub fn minilm_dir() -> PathBuf {
    let p = models_dir().join("all-MiniLM-L6-v2");
    assert!(p.join("model.safetensors").is_file(), "{} is missing: run scripts/fetch-models.sh first", p.display());
    p
}

/// sentence-transformers' own embeddings of three texts with all-MiniLM-L6-v2 (L2-normalised):
/// the texts and their vectors.
pub fn minilm_goldens() -> (Vec<String>, Vec<Vec<f32>>) {
    let v: serde_json::Value = serde_json::from_str(include_str!("../data/minilm-goldens.json")).unwrap();
    let texts = v["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let vectors = v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    (texts, vectors)
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Every file under `dir`, as sorted relative paths: a snapshot that proves an operation left a
/// directory unchanged.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Shape of a tiny llama model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub embd: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub ffn: u64,
    pub context: u32,
    pub seed: u64,
    /// Unquantized F32 weights (a source for `create --quantize`) instead of Q8_0.
    pub f32: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec { embd: 64, layers: 2, heads: 4, kv_heads: 2, ffn: 128, context: 2048, seed: 42, f32: false }
    }
}

/// Writes a tiny llama GGUF. `tokenizer` supplies every `tokenizer.*` key (normally SmolLM2's
/// header); without it a 32-token placeholder vocabulary is used.
pub fn tiny_llama(spec: &TinySpec, tokenizer: Option<&Gguf>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let vocab = match tokenizer {
        Some(t) => {
            let mut n = 0;
            for (k, v) in t.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
                if k == "tokenizer.ggml.tokens" {
                    n = v.as_array().map_or(0, ArrayValue::len) as u64;
                }
                w.set(k, v.clone());
            }
            n
        }
        None => {
            let tokens: Vec<String> = (0..32).map(|i| format!("<t{i}>")).collect();
            w.set("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
            w.set("tokenizer.ggml.tokens", MetaValue::Array(ArrayValue::String(tokens)));
            32
        }
    };
    assert!(vocab > 0, "tokenizer source has no tokens");
    let s = spec;
    w.set("general.architecture", MetaValue::String("llama".into()))
        .set("general.name", MetaValue::String("corral-tiny".into()))
        .set("general.file_type", MetaValue::U32(if spec.f32 { 0 } else { 7 }))
        .set("llama.context_length", MetaValue::U32(s.context))
        .set("llama.embedding_length", MetaValue::U32(s.embd as u32))
        .set("llama.block_count", MetaValue::U32(s.layers as u32))
        .set("llama.feed_forward_length", MetaValue::U32(s.ffn as u32))
        .set("llama.attention.head_count", MetaValue::U32(s.heads as u32))
        .set("llama.attention.head_count_kv", MetaValue::U32(s.kv_heads as u32))
        .set("llama.rope.dimension_count", MetaValue::U32((s.embd / s.heads) as u32))
        .set("llama.rope.freq_base", MetaValue::F32(10000.0))
        .set("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .set("llama.vocab_size", MetaValue::U32(vocab as u32));

    let mut rng = rand::rngs::StdRng::seed_from_u64(s.seed);
    let mut random = |n: u64, fan_in: u64| -> Vec<f32> {
        let a = (3.0 / fan_in as f32).sqrt();
        (0..n).map(|_| rng.gen_range(-a..a)).collect()
    };
    let kv = s.embd / s.heads * s.kv_heads;
    // Weights as the spec asks: Q8_0, or F32.
    let add = |w: &mut GgufWriter, name: &str, dims: &[u64], values: &[f32]| {
        if s.f32 {
            w.add_f32(name, dims, values);
        } else {
            w.add_q8_0(name, dims, values);
        }
    };
    add(&mut w, "token_embd.weight", &[s.embd, vocab], &random(s.embd * vocab, 1));
    for i in 0..s.layers {
        let ones = vec![1.0f32; s.embd as usize];
        w.add_f32(&format!("blk.{i}.attn_norm.weight"), &[s.embd], &ones);
        for (name, out) in [("attn_q", s.embd), ("attn_k", kv), ("attn_v", kv), ("attn_output", s.embd)] {
            add(&mut w, &format!("blk.{i}.{name}.weight"), &[s.embd, out], &random(s.embd * out, s.embd));
        }
        w.add_f32(&format!("blk.{i}.ffn_norm.weight"), &[s.embd], &ones);
        add(&mut w, &format!("blk.{i}.ffn_gate.weight"), &[s.embd, s.ffn], &random(s.embd * s.ffn, s.embd));
        add(&mut w, &format!("blk.{i}.ffn_up.weight"), &[s.embd, s.ffn], &random(s.embd * s.ffn, s.embd));
        add(&mut w, &format!("blk.{i}.ffn_down.weight"), &[s.ffn, s.embd], &random(s.ffn * s.embd, s.ffn));
    }
    w.add_f32("output_norm.weight", &[s.embd], &vec![1.0; s.embd as usize]);
    // An untied output head: a tied one only repeats the last token.
    add(&mut w, "output.weight", &[s.embd, vocab], &random(s.embd * vocab, s.embd));
    w.to_bytes()
}

/// A LoRA adapter GGUF for a llama model with `layers` blocks of width `embd`: rank-`rank`
/// `lora_a`/`lora_b` pairs on every `attn_q`, random values times `scale`, as llama.cpp's
/// `convert_lora_to_gguf.py` lays them out (`lora_a` is `[embd, rank]`, `lora_b` is `[rank, embd]`).
pub fn lora_adapter(embd: u64, layers: u64, rank: u64, scale: f32, seed: u64) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", MetaValue::String("llama".into()))
        .set("general.type", MetaValue::String("adapter".into()))
        .set("general.name", MetaValue::String("corral-test-lora".into()))
        .set("adapter.type", MetaValue::String("lora".into()))
        .set("adapter.lora.alpha", MetaValue::F32(rank as f32));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut random = |n: u64| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0f32..1.0) * scale).collect() };
    for i in 0..layers {
        w.add_f32(&format!("blk.{i}.attn_q.weight.lora_a"), &[embd, rank], &random(embd * rank));
        w.add_f32(&format!("blk.{i}.attn_q.weight.lora_b"), &[rank, embd], &random(rank * embd));
    }
    w.to_bytes()
}

/// A tokenizer of one token per letter of `letters` (ASCII letters), then an end token: a
/// byte-level BPE vocabulary with no merges, so llama.cpp reads a prompt of those letters as one
/// token each. With it the tiny model has a vocabulary small enough that a test can count how
/// often every token is drawn.
pub fn letters_tokenizer(letters: &str) -> Gguf {
    assert!(letters.chars().all(|c| c.is_ascii_alphabetic()), "{letters:?}: one ASCII letter per token");
    let mut tokens: Vec<String> = letters.chars().map(String::from).collect();
    tokens.push("<|end|>".into());
    let end = tokens.len() as u32 - 1;
    // 1 = a normal token, 3 = a control token.
    let types: Vec<i32> = (0..tokens.len()).map(|i| if i as u32 == end { 3 } else { 1 }).collect();
    let metadata = vec![
        ("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::String("default".into())),
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(tokens))),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(ArrayValue::I32(types))),
        ("tokenizer.ggml.merges".into(), MetaValue::Array(ArrayValue::String(Vec::new()))),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(end)),
        ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(end)),
        ("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(false)),
    ];
    Gguf { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

/// The tiny model with SmolLM2's tokenizer: real enough for llama.cpp to load and run.
pub fn tiny_llama_with_smollm2_tokenizer(spec: &TinySpec) -> Vec<u8> {
    let tok = corral_gguf::read_path(&smollm2()).expect("SmolLM2 header parses");
    tiny_llama(spec, Some(&tok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_model_is_valid_gguf() {
        let bytes = tiny_llama(&TinySpec::default(), None);
        let g = corral_gguf::read_bytes(&bytes).unwrap();
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.file_type().as_deref(), Some("Q8_0"));
        assert_eq!(g.tensors.len(), 2 + 2 * 9 + 1);
    }

    #[test]
    fn tiny_model_with_real_tokenizer() {
        let bytes = tiny_llama_with_smollm2_tokenizer(&TinySpec::default());
        let g = corral_gguf::read_bytes(&bytes).unwrap();
        assert_eq!(g.arch_u64("vocab_size"), Some(49152));
        assert!(g.get_str("tokenizer.chat_template").is_some());
        // About 8.5 MB, as the model notes say.
        assert!((7_000_000..10_000_000).contains(&bytes.len()), "{} bytes", bytes.len());
    }
}
