//! GLM-OCR's text model with random weights in both layouts: llama.cpp's `glm4`, whose
//! feed-forward keeps the gate and up projections in one tensor (`ffn_up`, gate rows first), and
//! Ollama's `glmocr`, which keeps them apart and names three tensors and the M-RoPE key its own
//! way. The published copy's gate and up are the reference's fused rows cut in two (Q8_0 blocks
//! never straddle a row, so the bytes are the same), which the translation joins at load.

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::random_arch::Model;
use crate::Layout;

const EMBD: u64 = 64;
const BLOCKS: u64 = 2;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const HEAD_DIM: u64 = 16;
const FFN: u64 = 96;

/// A tiny GLM-OCR text model (see the module's documentation).
pub fn tiny_glmocr(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let published = layout == Layout::Published;
    let (arch, pre) = if published { ("glmocr", "llama-bpe") } else { ("glm4", "chatglm-bpe") };
    let mut m = Model::new(arch, tokenizer, Some(pre), seed);
    m.u32("context_length", 2048);
    m.u32("embedding_length", EMBD);
    m.u32("block_count", BLOCKS);
    m.u32("feed_forward_length", FFN);
    m.u32("attention.head_count", HEADS);
    m.u32("attention.head_count_kv", KV_HEADS);
    m.u32("attention.key_length", HEAD_DIM);
    m.u32("attention.value_length", HEAD_DIM);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.f32("rope.freq_base", 10_000.0);
    // Three M-RoPE sections (a quarter of the head's rotated pairs each, less one) in Ollama's
    // key; four, padded, in llama.cpp's. Its RoPE width is the key length, which Ollama leaves
    // implicit.
    let sections = vec![2i32, 3, 3];
    if published {
        m.key("rope.mrope_section", MetaValue::Array(ArrayValue::I32(sections)));
    } else {
        let mut padded = sections;
        padded.push(0);
        m.key("rope.dimension_sections", MetaValue::Array(ArrayValue::I32(padded)));
        m.u32("rope.dimension_count", HEAD_DIM);
    }
    let name = |b: u64, reference: &str, ollama: &str| {
        format!("blk.{b}.{}.weight", if published { ollama } else { reference })
    };
    m.embeddings(EMBD);
    for b in 0..BLOCKS {
        m.norm(&format!("blk.{b}.attn_norm.weight"), EMBD);
        m.matrix(&format!("blk.{b}.attn_q.weight"), &[EMBD, HEADS * HEAD_DIM]);
        m.matrix(&format!("blk.{b}.attn_k.weight"), &[EMBD, KV_HEADS * HEAD_DIM]);
        m.matrix(&format!("blk.{b}.attn_v.weight"), &[EMBD, KV_HEADS * HEAD_DIM]);
        m.matrix(&name(b, "attn_output", "attn_out"), &[HEADS * HEAD_DIM, EMBD]);
        m.norm(&name(b, "post_attention_norm", "post_attn_norm"), EMBD);
        m.norm(&format!("blk.{b}.ffn_norm.weight"), EMBD);
        // Gate rows, then up rows.
        let bound = (3.0 / EMBD as f32).sqrt();
        let fused = m.uniform(EMBD * FFN * 2, -bound, bound);
        if published {
            let (gate, up) = fused.split_at((EMBD * FFN) as usize);
            m.w.add_q8_0(&format!("blk.{b}.ffn_gate.weight"), &[EMBD, FFN], gate);
            m.w.add_q8_0(&format!("blk.{b}.ffn_up.weight"), &[EMBD, FFN], up);
        } else {
            m.w.add_q8_0(&format!("blk.{b}.ffn_up.weight"), &[EMBD, FFN * 2], &fused);
        }
        m.matrix(&format!("blk.{b}.ffn_down.weight"), &[FFN, EMBD]);
        m.norm(&name(b, "post_ffw_norm", "post_ffn_norm"), EMBD);
    }
    m.norm("output_norm.weight", EMBD);
    m.head(EMBD);
    if published {
        // The vision tower Ollama's file carries; drawn last, so the text weights match.
        m.small("v.patch_embd.weight", &[14, 14, 3, 32], 0.1);
        m.small("mm.model.fc.weight", &[32, EMBD], 0.1);
    }
    m.finish()
}
