//! More architectures that Ollama published in a layout of its own, as tiny random-weight models
//! written in both layouts (the scheme is `random_arch`'s: one seeded generator, the same tensors
//! with the same bytes in both copies, the llama.cpp copy the reference that loads on its own).
//!
//! - [`tiny_olmo3`]: OLMo 3, llama.cpp's `olmo2` graph with three sliding-window blocks to one
//!   full-attention block, YaRN on the full ones only, and norms after attention and after the
//!   feed-forward. Ollama calls the architecture `olmo3` and prefixes every key so.
//! - [`tiny_llama4`]: Llama 4, dense and mixture-of-experts blocks in turn (one routed expert of
//!   four plus a shared one), chunked attention with a last block without RoPE. Ollama's file is
//!   the same text model with the vision tower, the projector and their keys in it.
//! - [`tiny_glm4moelite`]: GLM-4.7 Flash, DeepSeek-V2 style multi-head latent attention with the
//!   K and V up-projections split for absorption, a dense first block and a MoE second one with
//!   sigmoid routing and a shared expert. llama.cpp loads it as `deepseek2` and counts the latent
//!   as one KV head; Ollama's `glm4moelite` writes the per-head sizes where llama.cpp has the
//!   latent ones and the reverse, and no expert groups or end-of-turn tokens.
//! - [`tiny_nemotron_h_moe`]: Nemotron 3 Super's shape, Mamba-2, attention and latent MoE blocks
//!   mixed (the experts work in a narrower latent space). Ollama names the latent projections
//!   `ffn_latent_in/out` (llama.cpp: `ffn_latent_down/up`), leaves out `moe_latent_size`, and
//!   keeps multi-token-prediction tensors in the file.
//! - [`tiny_deepseekocr`]: DeepSeek-OCR's language model, plain multi-head attention with a dense
//!   first block and DeepSeek MoE after it. Ollama's `deepseekocr` lacks the expert widths, the
//!   shared expert count and the norm epsilon, and carries the SAM, CLIP and projector weights.
//! - [`tiny_laguna`]: Laguna XS.2's shape, a full-attention block then sliding-window ones (with
//!   their own RoPE), a per-head softplus gate on the attention output, and a sigmoid-routed MoE
//!   after a dense first block. Ollama writes the sliding-window RoPE keys as `rope.swa.*` and
//!   names the gate `attn_g`.
//! - [`tiny_lfm2moe`]: LFM2-MoE, LFM2's convolution and attention blocks with dense feed-forwards
//!   in the leading blocks and sigmoid-routed experts (with a routing bias) after them. Ollama's
//!   copy differs as its LFM2 does: the last norm is `output_norm`, the pre-tokenizer `default`,
//!   and the dense width the one from before the converter shrank it.
//!
//! Tensors only one layout has (vision, MTP) are drawn after all the others, so the shared ones
//! have the same bytes whatever the layout.

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::random_arch::{Layout, Model};

/// Sets a per-block array of counts (`head_count_kv`, `feed_forward_length`).
fn per_block(m: &mut Model, suffix: &str, values: &[u64]) {
    let values = values.iter().map(|v| *v as u32).collect();
    m.key(suffix, MetaValue::Array(ArrayValue::U32(values)));
}

/// Q, K, V and output projections of block `i`, without biases.
fn attention(m: &mut Model, i: usize, e: u64, heads: u64, kv_heads: u64, head_dim: u64) {
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    m.matrix(&format!("blk.{i}.attn_q.weight"), &[e, q]);
    m.matrix(&format!("blk.{i}.attn_k.weight"), &[e, kv]);
    m.matrix(&format!("blk.{i}.attn_v.weight"), &[e, kv]);
    m.matrix(&format!("blk.{i}.attn_output.weight"), &[q, e]);
}

/// A SwiGLU feed-forward of block `i`: `ffn_gate/up/down<suffix>` (suffix `` or `_shexp`).
fn swiglu(m: &mut Model, i: usize, suffix: &str, e: u64, ff: u64) {
    m.matrix(&format!("blk.{i}.ffn_gate{suffix}.weight"), &[e, ff]);
    m.matrix(&format!("blk.{i}.ffn_up{suffix}.weight"), &[e, ff]);
    m.matrix(&format!("blk.{i}.ffn_down{suffix}.weight"), &[ff, e]);
}

/// The router and the stacked experts of block `i`, gated (SwiGLU) or not (Nemotron's squared
/// ReLU); `width` is what the experts read and write (the embedding, or Nemotron's latent).
fn experts(m: &mut Model, i: usize, e: u64, width: u64, ff: u64, n: u64, gated: bool) {
    m.matrix(&format!("blk.{i}.ffn_gate_inp.weight"), &[e, n]);
    if gated {
        m.matrix(&format!("blk.{i}.ffn_gate_exps.weight"), &[width, ff, n]);
    }
    m.matrix(&format!("blk.{i}.ffn_up_exps.weight"), &[width, ff, n]);
    m.matrix(&format!("blk.{i}.ffn_down_exps.weight"), &[ff, width, n]);
}

/// The routing score bias of sigmoid-routed experts (`e_score_correction_bias`).
fn expert_bias(m: &mut Model, i: usize, n: u64) {
    m.small(&format!("blk.{i}.exp_probs_b.bias"), &[n], 0.1);
}

// OLMo 3, at the scale of a test.
const OLMO_EMBD: u64 = 64;
const OLMO_HEADS: u64 = 4;
const OLMO_KV_HEADS: u64 = 2;
const OLMO_FFN: u64 = 128;
const OLMO_CONTEXT: u64 = 4096;
/// Short, so that a test's prompt and answer outgrow it and the window changes the answer.
const OLMO_WINDOW: u64 = 8;
/// Which blocks attend through the window: three of every four, as in the released models.
const OLMO_SLIDING: [bool; 4] = [true, true, true, false];
/// YaRN on the full-attention blocks, over a context short enough for a test to pass it.
const OLMO_ROPE_FACTOR: f32 = 8.0;
const OLMO_ORIGINAL_CONTEXT: u64 = 16;

/// An OLMo 3 model with random weights in `layout`: llama.cpp's converter writes it as `olmo2`,
/// Ollama's as `olmo3`, with the same keys under the two prefixes (the sliding-window pattern a
/// bool per block) and the same tensors. Untied output head.
pub fn tiny_olmo3(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let arch = if layout == Layout::LlamaCpp { "olmo2" } else { "olmo3" };
    let mut m = Model::new(arch, tokenizer, Some("dbrx"), seed);
    let (e, blocks) = (OLMO_EMBD, OLMO_SLIDING.len());
    let head_dim = e / OLMO_HEADS;
    m.u32("context_length", OLMO_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", blocks as u64);
    m.u32("feed_forward_length", OLMO_FFN);
    m.u32("attention.head_count", OLMO_HEADS);
    m.u32("attention.head_count_kv", OLMO_KV_HEADS);
    m.f32("attention.layer_norm_rms_epsilon", 1e-6);
    m.u32("attention.sliding_window", OLMO_WINDOW);
    m.key("attention.sliding_window_pattern", MetaValue::Array(ArrayValue::Bool(OLMO_SLIDING.to_vec())));
    m.f32("rope.freq_base", 500_000.0);
    m.key("rope.scaling.type", MetaValue::String("yarn".into()));
    m.f32("rope.scaling.factor", OLMO_ROPE_FACTOR);
    m.u32("rope.scaling.original_context_length", OLMO_ORIGINAL_CONTEXT);
    m.f32("rope.scaling.attn_factor", 1.2);

    m.embeddings(e);
    for i in 0..blocks {
        attention(&mut m, i, e, OLMO_HEADS, OLMO_KV_HEADS, head_dim);
        // OLMo normalises the whole Q and K projections, not each head.
        m.norm(&format!("blk.{i}.attn_q_norm.weight"), e);
        m.norm(&format!("blk.{i}.attn_k_norm.weight"), OLMO_KV_HEADS * head_dim);
        m.norm(&format!("blk.{i}.post_attention_norm.weight"), e);
        swiglu(&mut m, i, "", e, OLMO_FFN);
        m.norm(&format!("blk.{i}.post_ffw_norm.weight"), e);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    m.finish()
}

// Llama 4, at the scale of a test.
const L4_EMBD: u64 = 64;
const L4_HEADS: u64 = 4;
const L4_KV_HEADS: u64 = 2;
const L4_FFN: u64 = 128;
const L4_EXPERT_FFN: u64 = 64;
const L4_EXPERTS: u64 = 4;
const L4_EXPERTS_USED: u64 = 1;
/// Every second block is a MoE block, as in Maverick (Scout's step is 1).
const L4_MOE_STEP: u64 = 2;
/// Four blocks: llama.cpp leaves RoPE out of every fourth, so the last one runs without it.
const L4_BLOCKS: u64 = 4;
const L4_CONTEXT: u64 = 8192;

/// A Llama 4 model with random weights in `layout`: dense SwiGLU blocks and MoE blocks (sigmoid
/// routing, one expert of four, a shared expert) in turn. The published copy adds Ollama's vision
/// keys and a whole random vision tower and projector (`v.*`, `mm.*`: `crate::published_llama4`).
pub fn tiny_llama4(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let mut m = Model::new("llama4", tokenizer, Some("llama4"), seed);
    let (e, head_dim) = (L4_EMBD, L4_EMBD / L4_HEADS);
    let vocab = m.vocab;
    m.u32("vocab_size", vocab);
    m.u32("context_length", L4_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", L4_BLOCKS);
    m.u32("feed_forward_length", L4_FFN);
    m.u32("expert_feed_forward_length", L4_EXPERT_FFN);
    m.u32("expert_count", L4_EXPERTS);
    m.u32("expert_used_count", L4_EXPERTS_USED);
    m.u32("interleave_moe_layer_step", L4_MOE_STEP);
    m.u32("attention.head_count", L4_HEADS);
    m.u32("attention.head_count_kv", L4_KV_HEADS);
    m.u32("rope.dimension_count", head_dim);
    m.f32("rope.freq_base", 500_000.0);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.embeddings(e);
    for i in 0..L4_BLOCKS as usize {
        m.norm(&format!("blk.{i}.attn_norm.weight"), e);
        attention(&mut m, i, e, L4_HEADS, L4_KV_HEADS, head_dim);
        m.norm(&format!("blk.{i}.ffn_norm.weight"), e);
        if (i as u64 + 1).is_multiple_of(L4_MOE_STEP) {
            experts(&mut m, i, e, e, L4_EXPERT_FFN, L4_EXPERTS, true);
            swiglu(&mut m, i, "_shexp", e, L4_EXPERT_FFN);
        } else {
            swiglu(&mut m, i, "", e, L4_FFN);
        }
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if layout == Layout::Published {
        crate::published_llama4::add_published_llama4_tower(&mut m.w, e);
    }
    m.finish()
}

// GLM-4.7 Flash, at the scale of a test.
const GLM_EMBD: u64 = 64;
const GLM_HEADS: u64 = 4;
const GLM_Q_RANK: u64 = 32;
/// The latent KV width, the one KV head of llama.cpp's absorbed attention.
const GLM_KV_RANK: u64 = 32;
/// Rotary and non-rotary parts of each query and key head; their sum equals the value head, as
/// in the released model (192 + 64 = 256), which Ollama's per-head convention relies on.
const GLM_ROPE_DIM: u64 = 16;
const GLM_NOPE_DIM: u64 = 16;
const GLM_V_DIM: u64 = 32;
const GLM_FFN: u64 = 128;
const GLM_EXPERT_FFN: u64 = 32;
const GLM_EXPERTS: u64 = 4;
const GLM_EXPERTS_USED: u64 = 2;
/// `tokenizer.ggml.eos_token_ids`: EOS, then the end-of-turn and end-of-message tokens.
const GLM_EOS_IDS: [i32; 3] = [2, 1, 0];

/// A GLM-4.7 Flash model with random weights in `layout`. llama.cpp's layout is `deepseek2` with
/// one KV head, key and value lengths of the latent (`kv_lora_rank + rope`, `kv_lora_rank`), the
/// per-head sizes as `*_mla`, expert groups of 1, and EOT/EOM set. Ollama's `glm4moelite` has the
/// KV heads of the model, the per-head sizes as key and value lengths and the latent ones as
/// `*_mla`, and neither expert groups nor EOT/EOM. Same tensors (`attn_k_b`/`attn_v_b` split).
pub fn tiny_glm4moelite(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new(if llama_cpp { "deepseek2" } else { "glm4moelite" }, tokenizer, Some("glm4"), seed);
    m.w.set("tokenizer.ggml.eos_token_ids", MetaValue::Array(ArrayValue::I32(GLM_EOS_IDS.to_vec())));
    let e = GLM_EMBD;
    let k_head = GLM_NOPE_DIM + GLM_ROPE_DIM;
    m.u32("context_length", 4096);
    m.u32("embedding_length", e);
    m.u32("block_count", 2);
    m.u32("leading_dense_block_count", 1);
    m.u32("feed_forward_length", GLM_FFN);
    m.u32("attention.head_count", GLM_HEADS);
    m.u32("attention.q_lora_rank", GLM_Q_RANK);
    m.u32("attention.kv_lora_rank", GLM_KV_RANK);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.u32("rope.dimension_count", GLM_ROPE_DIM);
    m.f32("rope.freq_base", 1_000_000.0);
    m.u32("expert_count", GLM_EXPERTS);
    m.u32("expert_used_count", GLM_EXPERTS_USED);
    m.u32("expert_shared_count", 1);
    m.u32("expert_feed_forward_length", GLM_EXPERT_FFN);
    // Sigmoid routing, normalised, scaled as in the released model.
    m.u32("expert_gating_func", 2);
    m.key("expert_weights_norm", MetaValue::Bool(true));
    m.f32("expert_weights_scale", 1.8);
    let (latent_k, latent_v) = (GLM_KV_RANK + GLM_ROPE_DIM, GLM_KV_RANK);
    if llama_cpp {
        m.u32("attention.head_count_kv", 1);
        m.u32("attention.key_length", latent_k);
        m.u32("attention.value_length", latent_v);
        m.u32("attention.key_length_mla", k_head);
        m.u32("attention.value_length_mla", GLM_V_DIM);
        m.u32("expert_group_count", 1);
        m.u32("expert_group_used_count", 1);
        m.w.set("tokenizer.ggml.eot_token_id", MetaValue::U32(GLM_EOS_IDS[1] as u32));
        m.w.set("tokenizer.ggml.eom_token_id", MetaValue::U32(GLM_EOS_IDS[2] as u32));
    } else {
        m.u32("attention.head_count_kv", GLM_HEADS);
        m.u32("attention.key_length", k_head);
        m.u32("attention.value_length", GLM_V_DIM);
        m.u32("attention.key_length_mla", latent_k);
        m.u32("attention.value_length_mla", latent_v);
    }

    m.embeddings(e);
    for i in 0..2 {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        m.matrix(&b("attn_q_a.weight"), &[e, GLM_Q_RANK]);
        m.norm(&b("attn_q_a_norm.weight"), GLM_Q_RANK);
        m.matrix(&b("attn_q_b.weight"), &[GLM_Q_RANK, GLM_HEADS * k_head]);
        // The compressed KV and the shared rotary key, from one projection.
        m.matrix(&b("attn_kv_a_mqa.weight"), &[e, GLM_KV_RANK + GLM_ROPE_DIM]);
        m.norm(&b("attn_kv_a_norm.weight"), GLM_KV_RANK);
        m.matrix(&b("attn_k_b.weight"), &[GLM_NOPE_DIM, GLM_KV_RANK, GLM_HEADS]);
        m.matrix(&b("attn_v_b.weight"), &[GLM_KV_RANK, GLM_V_DIM, GLM_HEADS]);
        m.matrix(&b("attn_output.weight"), &[GLM_HEADS * GLM_V_DIM, e]);
        m.norm(&b("ffn_norm.weight"), e);
        if i == 0 {
            swiglu(&mut m, i, "", e, GLM_FFN);
        } else {
            experts(&mut m, i, e, e, GLM_EXPERT_FFN, GLM_EXPERTS, true);
            expert_bias(&mut m, i, GLM_EXPERTS);
            swiglu(&mut m, i, "_shexp", e, GLM_EXPERT_FFN);
        }
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    m.finish()
}

// Nemotron-H MoE with latent experts, at the scale of a test.
const NEM_EMBD: u64 = 64;
/// Block kinds, as in the converters' `hybrid_override_pattern`: Mamba-2, MoE, attention.
const NEM_PATTERN: [char; 4] = ['M', 'E', '*', 'E'];
const NEM_HEADS: u64 = 4;
const NEM_KV_HEADS: u64 = 2;
const NEM_HEAD_DIM: u64 = 16;
const NEM_EXPERTS: u64 = 4;
const NEM_EXPERTS_USED: u64 = 2;
const NEM_EXPERT_FFN: u64 = 64;
const NEM_SHARED_FFN: u64 = 64;
/// The width the experts work in, narrower than the embedding.
const NEM_LATENT: u64 = 32;
const NEM_CONV: u64 = 4;
const NEM_SSM_HEADS: u64 = 4;
const NEM_SSM_INNER: u64 = 64;
const NEM_SSM_STATE: u64 = 16;
const NEM_SSM_GROUPS: u64 = 1;

/// A Nemotron-H MoE model with latent experts and random weights in `layout`: per-block KV head
/// counts and feed-forward widths tell Mamba-2 (both 0), attention (FFN 0) and MoE blocks apart.
/// llama.cpp's layout names the latent projections `ffn_latent_down/up` and has
/// `moe_latent_size`; the published one names them `ffn_latent_in/out`, lacks the key, and ends
/// with two multi-token-prediction tensors (`mtp.*`).
pub fn tiny_nemotron_h_moe(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new("nemotron_h_moe", tokenizer, Some("default"), seed);
    let e = NEM_EMBD;
    let kinds = |f: fn(char) -> u64| NEM_PATTERN.iter().map(|c| f(*c)).collect::<Vec<u64>>();
    m.u32("context_length", 4096);
    m.u32("embedding_length", e);
    m.u32("block_count", NEM_PATTERN.len() as u64);
    m.u32("attention.head_count", NEM_HEADS);
    per_block(&mut m, "attention.head_count_kv", &kinds(|c| if c == '*' { NEM_KV_HEADS } else { 0 }));
    per_block(&mut m, "feed_forward_length", &kinds(|c| if c == 'E' { NEM_EXPERT_FFN } else { 0 }));
    m.u32("attention.key_length", NEM_HEAD_DIM);
    m.u32("attention.value_length", NEM_HEAD_DIM);
    m.f32("attention.layer_norm_epsilon", 1e-5);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.f32("rope.freq_base", 10_000.0);
    m.u32("ssm.conv_kernel", NEM_CONV);
    m.u32("ssm.inner_size", NEM_SSM_INNER);
    m.u32("ssm.state_size", NEM_SSM_STATE);
    m.u32("ssm.group_count", NEM_SSM_GROUPS);
    m.u32("ssm.time_step_rank", NEM_SSM_HEADS);
    m.u32("expert_count", NEM_EXPERTS);
    m.u32("expert_used_count", NEM_EXPERTS_USED);
    m.u32("expert_feed_forward_length", NEM_EXPERT_FFN);
    m.u32("expert_shared_count", 1);
    m.u32("expert_shared_feed_forward_length", NEM_SHARED_FFN);
    m.key("expert_weights_norm", MetaValue::Bool(true));
    m.f32("expert_weights_scale", 2.5);
    if llama_cpp {
        m.u32("moe_latent_size", NEM_LATENT);
    }
    let (latent_in, latent_out) =
        if llama_cpp { ("ffn_latent_down", "ffn_latent_up") } else { ("ffn_latent_in", "ffn_latent_out") };

    m.embeddings(e);
    for (i, kind) in NEM_PATTERN.iter().enumerate() {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        match kind {
            'M' => mamba2(&mut m, i, e),
            '*' => attention(&mut m, i, e, NEM_HEADS, NEM_KV_HEADS, NEM_HEAD_DIM),
            _ => {
                experts(&mut m, i, e, NEM_LATENT, NEM_EXPERT_FFN, NEM_EXPERTS, false);
                expert_bias(&mut m, i, NEM_EXPERTS);
                m.matrix(&b(&format!("{latent_in}.weight")), &[e, NEM_LATENT]);
                m.matrix(&b(&format!("{latent_out}.weight")), &[NEM_LATENT, e]);
                m.matrix(&b("ffn_up_shexp.weight"), &[e, NEM_SHARED_FFN]);
                m.matrix(&b("ffn_down_shexp.weight"), &[NEM_SHARED_FFN, e]);
            }
        }
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if !llama_cpp {
        m.stand_ins(&[
            ("mtp.layers.0.mixer.experts.0.up_proj.weight", &[e, NEM_EXPERT_FFN]),
            ("mtp.layers.0.mixer.experts.0.down_proj.weight", &[NEM_EXPERT_FFN, e]),
        ]);
    }
    m.finish()
}

/// A Mamba-2 mixer of block `i`: the input projection (gate, signal, B, C and a step per head),
/// the causal convolution, the per-head decay (negative, as the converters store `-exp(A_log)`),
/// skip and step bias, the grouped norm and the output projection.
fn mamba2(m: &mut Model, i: usize, e: u64) {
    let b = |stem: &str| format!("blk.{i}.{stem}");
    let (inner, heads, bc) = (NEM_SSM_INNER, NEM_SSM_HEADS, 2 * NEM_SSM_GROUPS * NEM_SSM_STATE);
    m.matrix(&b("ssm_in.weight"), &[e, 2 * inner + bc + heads]);
    m.small(&b("ssm_conv1d.weight"), &[NEM_CONV, inner + bc], 0.5);
    m.small(&b("ssm_conv1d.bias"), &[inner + bc], 0.1);
    m.small(&b("ssm_dt.bias"), &[heads], 0.5);
    let decay = m.uniform(heads, -2.0, -0.5);
    m.w.add_f32(&b("ssm_a"), &[1, heads], &decay);
    let skip = m.uniform(heads, 0.8, 1.2);
    m.w.add_f32(&b("ssm_d"), &[1, heads], &skip);
    m.norm(&b("ssm_norm.weight"), inner);
    m.matrix(&b("ssm_out.weight"), &[inner, e]);
}

// DeepSeek-OCR's language model, at the scale of a test.
const OCR_EMBD: u64 = 64;
const OCR_HEADS: u64 = 4;
const OCR_FFN: u64 = 128;
const OCR_EXPERTS: u64 = 4;
const OCR_EXPERTS_USED: u64 = 2;
const OCR_EXPERT_FFN: u64 = 32;
/// Two shared experts, so the count Ollama leaves out is not the width's trivial divisor.
const OCR_SHARED: u64 = 2;

/// DeepSeek-OCR's language model with random weights in `layout`: multi-head attention with RoPE
/// at llama.cpp's default base (its OCR graph insists on it), a dense first block, then DeepSeek
/// MoE (softmax routing, shared experts). llama.cpp's `deepseek2-ocr` has the expert width, the
/// shared expert count and the norm epsilon; Ollama's `deepseekocr` has none of them, but the
/// vision and SAM keys and stand-in `s.*`, `v.*` and `mm.*` tensors.
pub fn tiny_deepseekocr(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new(if llama_cpp { "deepseek2-ocr" } else { "deepseekocr" }, tokenizer, Some("default"), seed);
    let e = OCR_EMBD;
    m.u32("context_length", 8192);
    m.u32("embedding_length", e);
    m.u32("block_count", 2);
    m.u32("feed_forward_length", OCR_FFN);
    m.u32("attention.head_count", OCR_HEADS);
    m.u32("attention.head_count_kv", OCR_HEADS);
    m.u32("expert_count", OCR_EXPERTS);
    m.u32("expert_used_count", OCR_EXPERTS_USED);
    m.u32("leading_dense_block_count", 1);
    if llama_cpp {
        m.f32("attention.layer_norm_rms_epsilon", 1e-6);
        m.u32("expert_feed_forward_length", OCR_EXPERT_FFN);
        m.u32("expert_shared_count", OCR_SHARED);
    } else {
        m.u32("vision.block_count", 1);
        m.u32("vision.embedding_length", 16);
        m.u32("vision.head_count", 2);
        m.u32("sam.block_count", 1);
        m.u32("sam.embedding_length", 16);
        m.key("sam.global_attention_indexes", MetaValue::Array(ArrayValue::I32(vec![0])));
    }

    m.embeddings(e);
    for i in 0..2 {
        m.norm(&format!("blk.{i}.attn_norm.weight"), e);
        attention(&mut m, i, e, OCR_HEADS, OCR_HEADS, e / OCR_HEADS);
        m.norm(&format!("blk.{i}.ffn_norm.weight"), e);
        if i == 0 {
            swiglu(&mut m, i, "", e, OCR_FFN);
        } else {
            experts(&mut m, i, e, e, OCR_EXPERT_FFN, OCR_EXPERTS, true);
            swiglu(&mut m, i, "_shexp", e, OCR_EXPERT_FFN * OCR_SHARED);
        }
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if !llama_cpp {
        m.stand_ins(&[
            ("s.patch_embd.weight", &[4, 4, 3, 16]),
            ("s.blk.0.attn.qkv.weight", &[16, 48]),
            ("v.blk.0.self_attn.qkv_proj.weight", &[16, 48]),
            ("mm.layers.weight", &[32, e]),
            ("mm.image_newline", &[e]),
        ]);
    }
    m.finish()
}

// Laguna, at the scale of a test.
const LAG_EMBD: u64 = 64;
/// Full attention in the first block of each four, a sliding window in the others, and more
/// heads in the sliding ones (as XS.2: 48 and 64).
const LAG_SLIDING: [bool; 4] = [false, true, true, true];
const LAG_HEADS: [u64; 4] = [4, 8, 8, 8];
const LAG_KV_HEADS: u64 = 2;
const LAG_HEAD_DIM: u64 = 16;
/// The full blocks rotate half of each head (with YaRN), the sliding ones all of it.
const LAG_ROPE_DIM: u64 = 8;
const LAG_SWA_ROPE_DIM: u64 = 16;
const LAG_SWA_FREQ_BASE: f32 = 10_000.0;
const LAG_WINDOW: u64 = 8;
const LAG_FFN: u64 = 128;
const LAG_EXPERTS: u64 = 4;
const LAG_EXPERTS_USED: u64 = 2;
const LAG_EXPERT_FFN: u64 = 32;

/// A Laguna model with random weights in `layout`: per-block head counts, a per-head softplus
/// gate on the attention output, QK norms, a dense first block and sigmoid-routed MoE with a
/// shared expert after it. llama.cpp's layout has the sliding blocks' RoPE as
/// `rope.dimension_count_swa` and `rope.freq_base_swa` and the gate as `attn_gate`; Ollama's
/// has `rope.swa.dimension_count`, `rope.swa.freq_base`, `attn_g`, and keys of its own engine.
pub fn tiny_laguna(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new("laguna", tokenizer, Some("laguna"), seed);
    let (e, blocks) = (LAG_EMBD, LAG_SLIDING.len());
    m.u32("context_length", 4096);
    m.u32("embedding_length", e);
    m.u32("block_count", blocks as u64);
    m.u32("feed_forward_length", LAG_FFN);
    m.u32("leading_dense_block_count", 1);
    per_block(&mut m, "attention.head_count", &LAG_HEADS);
    m.u32("attention.head_count_kv", LAG_KV_HEADS);
    m.u32("attention.key_length", LAG_HEAD_DIM);
    m.u32("attention.value_length", LAG_HEAD_DIM);
    m.f32("attention.layer_norm_rms_epsilon", 1e-6);
    m.u32("attention.sliding_window", LAG_WINDOW);
    m.key("attention.sliding_window_pattern", MetaValue::Array(ArrayValue::Bool(LAG_SLIDING.to_vec())));
    m.u32("expert_count", LAG_EXPERTS);
    m.u32("expert_used_count", LAG_EXPERTS_USED);
    m.u32("expert_feed_forward_length", LAG_EXPERT_FFN);
    m.u32("expert_shared_feed_forward_length", LAG_EXPERT_FFN);
    m.u32("expert_shared_count", 1);
    m.key("expert_weights_norm", MetaValue::Bool(true));
    m.f32("expert_weights_scale", 2.5);
    m.u32("expert_gating_func", 2);
    m.f32("rope.freq_base", 500_000.0);
    m.u32("rope.dimension_count", LAG_ROPE_DIM);
    m.key("rope.scaling.type", MetaValue::String("yarn".into()));
    m.f32("rope.scaling.factor", 8.0);
    m.u32("rope.scaling.original_context_length", 16);
    if llama_cpp {
        m.u32("rope.dimension_count_swa", LAG_SWA_ROPE_DIM);
        m.f32("rope.freq_base_swa", LAG_SWA_FREQ_BASE);
    } else {
        m.u32("rope.swa.dimension_count", LAG_SWA_ROPE_DIM);
        m.f32("rope.swa.freq_base", LAG_SWA_FREQ_BASE);
        // Ollama's own engine reads these; llama.cpp does not (the beta values are its defaults).
        let types = LAG_SLIDING.iter().map(|s| u32::from(*s)).collect();
        m.key("attention.layer_types", MetaValue::Array(ArrayValue::U32(types)));
        m.u32("attention.gating_type", 1);
        m.key("attention.qk_norm", MetaValue::Bool(true));
        m.u32("decoder_sparse_step", 1);
        m.f32("rope.scaling.beta_fast", 32.0);
        m.f32("rope.scaling.beta_slow", 1.0);
        m.key("rope.swa.scaling.type", MetaValue::String("linear".into()));
    }
    let gate = if llama_cpp { "attn_gate" } else { "attn_g" };

    m.embeddings(e);
    for (i, heads) in LAG_HEADS.iter().enumerate() {
        m.norm(&format!("blk.{i}.attn_norm.weight"), e);
        attention(&mut m, i, e, *heads, LAG_KV_HEADS, LAG_HEAD_DIM);
        m.norm(&format!("blk.{i}.attn_q_norm.weight"), LAG_HEAD_DIM);
        m.norm(&format!("blk.{i}.attn_k_norm.weight"), LAG_HEAD_DIM);
        // One gate value per head.
        m.matrix(&format!("blk.{i}.{gate}.weight"), &[e, *heads]);
        m.norm(&format!("blk.{i}.ffn_norm.weight"), e);
        if i == 0 {
            swiglu(&mut m, i, "", e, LAG_FFN);
        } else {
            experts(&mut m, i, e, e, LAG_EXPERT_FFN, LAG_EXPERTS, true);
            expert_bias(&mut m, i, LAG_EXPERTS);
            swiglu(&mut m, i, "_shexp", e, LAG_EXPERT_FFN);
        }
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    m.finish()
}

// LFM2-MoE, at the scale of a test.
const LFMOE_EMBD: u64 = 64;
const LFMOE_HEADS: u64 = 4;
const LFMOE_KV_HEADS: u64 = 2;
const LFMOE_FFN: u64 = 128;
const LFMOE_CONV: u64 = 3;
/// Which blocks attend (the others convolve); the first two have dense feed-forwards, so each
/// kind of block meets both kinds of feed-forward.
const LFMOE_ATTENTION: [bool; 4] = [false, true, false, true];
const LFMOE_DENSE: u64 = 2;
const LFMOE_EXPERTS: u64 = 4;
const LFMOE_EXPERTS_USED: u64 = 2;
const LFMOE_EXPERT_FFN: u64 = 32;

/// An LFM2-MoE model with random weights in `layout`: short-convolution and attention blocks
/// (a KV head count of zero marks a convolution), dense SwiGLU feed-forwards in the leading
/// blocks and sigmoid-routed experts with a routing bias after them. As with LFM2, llama.cpp's
/// layout has the last norm as `token_embd_norm.weight`, the `lfm2` pre-tokenizer and the dense
/// width of the tensors; Ollama's has `output_norm.weight`, `default` and a wider width.
pub fn tiny_lfm2moe(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new("lfm2moe", tokenizer, Some(if llama_cpp { "lfm2" } else { "default" }), seed);
    let (e, head_dim) = (LFMOE_EMBD, LFMOE_EMBD / LFMOE_HEADS);
    let vocab = m.vocab;
    m.u32("vocab_size", vocab);
    m.u32("context_length", 2048);
    m.u32("embedding_length", e);
    m.u32("block_count", LFMOE_ATTENTION.len() as u64);
    m.u32("feed_forward_length", if llama_cpp { LFMOE_FFN } else { LFMOE_FFN * 3 / 2 });
    m.u32("attention.head_count", LFMOE_HEADS);
    let kv_heads: Vec<u64> = LFMOE_ATTENTION.iter().map(|a| if *a { LFMOE_KV_HEADS } else { 0 }).collect();
    per_block(&mut m, "attention.head_count_kv", &kv_heads);
    m.u32("attention.key_length", head_dim);
    m.u32("attention.value_length", head_dim);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.u32("shortconv.l_cache", LFMOE_CONV);
    m.f32("rope.freq_base", 1_000_000.0);
    m.u32("leading_dense_block_count", LFMOE_DENSE);
    m.u32("expert_count", LFMOE_EXPERTS);
    m.u32("expert_used_count", LFMOE_EXPERTS_USED);
    m.u32("expert_feed_forward_length", LFMOE_EXPERT_FFN);
    m.u32("expert_gating_func", 2);

    m.embeddings(e);
    for (i, attends) in LFMOE_ATTENTION.iter().enumerate() {
        m.norm(&format!("blk.{i}.attn_norm.weight"), e);
        if *attends {
            m.norm(&format!("blk.{i}.attn_q_norm.weight"), head_dim);
            m.norm(&format!("blk.{i}.attn_k_norm.weight"), head_dim);
            attention(&mut m, i, e, LFMOE_HEADS, LFMOE_KV_HEADS, head_dim);
        } else {
            // The input projection gives the two gates and the convolved signal, side by side.
            m.matrix(&format!("blk.{i}.shortconv.in_proj.weight"), &[e, 3 * e]);
            m.small(&format!("blk.{i}.shortconv.conv.weight"), &[LFMOE_CONV, e], 0.5);
            m.matrix(&format!("blk.{i}.shortconv.out_proj.weight"), &[e, e]);
        }
        m.norm(&format!("blk.{i}.ffn_norm.weight"), e);
        if (i as u64) < LFMOE_DENSE {
            swiglu(&mut m, i, "", e, LFMOE_FFN);
        } else {
            experts(&mut m, i, e, e, LFMOE_EXPERT_FFN, LFMOE_EXPERTS, true);
            expert_bias(&mut m, i, LFMOE_EXPERTS);
        }
    }
    m.norm(if llama_cpp { "token_embd_norm.weight" } else { "output_norm.weight" }, e);
    m.head(e);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_arch::testing::assert_same_weights;

    #[test]
    fn both_layouts_hold_the_same_weights() {
        assert_same_weights(tiny_olmo3, &[], &[], None);
        assert_same_weights(tiny_llama4, &[], &["v.", "mm."], None);
        assert_same_weights(tiny_glm4moelite, &[], &[], None);
        let latent = [(".ffn_latent_down", ".ffn_latent_in"), (".ffn_latent_up", ".ffn_latent_out")];
        assert_same_weights(tiny_nemotron_h_moe, &latent, &["mtp."], None);
        assert_same_weights(tiny_deepseekocr, &[], &["s.", "v.", "mm."], None);
        assert_same_weights(tiny_laguna, &[(".attn_gate.", ".attn_g.")], &[], None);
        assert_same_weights(tiny_lfm2moe, &[("token_embd_norm", "output_norm")], &[], None);
    }

    #[test]
    fn published_headers_are_ollamas() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let read = |bytes: Vec<u8>| corral_gguf::read_bytes(&bytes).unwrap();
        let olmo = read(tiny_olmo3(Layout::Published, &tok, 1));
        assert_eq!(olmo.architecture(), Some("olmo3"));
        assert!(olmo.metadata.iter().all(|(k, _)| !k.starts_with("olmo2.")));

        let glm = read(tiny_glm4moelite(Layout::Published, &tok, 1));
        assert_eq!(glm.arch_u64("attention.head_count_kv"), Some(GLM_HEADS));
        assert_eq!(glm.arch_u64("attention.key_length"), Some(GLM_NOPE_DIM + GLM_ROPE_DIM));
        assert_eq!(glm.arch_u64("attention.key_length_mla"), Some(GLM_KV_RANK + GLM_ROPE_DIM));
        assert!(glm.get("glm4moelite.expert_group_count").is_none());
        assert!(glm.get("tokenizer.ggml.eot_token_id").is_none());
        let reference = read(tiny_glm4moelite(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.arch_u64("attention.value_length"), Some(GLM_KV_RANK));

        let nemotron = read(tiny_nemotron_h_moe(Layout::Published, &tok, 1));
        assert!(nemotron.get("nemotron_h_moe.moe_latent_size").is_none());
        let latent_in = nemotron.tensors.iter().find(|t| t.name == "blk.1.ffn_latent_in.weight").unwrap();
        assert_eq!(latent_in.dims, [NEM_EMBD, NEM_LATENT]);

        let lfm = read(tiny_lfm2moe(Layout::Published, &tok, 1));
        assert_eq!(lfm.get_str("tokenizer.ggml.pre"), Some("default"));
        assert_eq!(lfm.arch_u64("feed_forward_length"), Some(LFMOE_FFN * 3 / 2));
        assert!(lfm.tensors.iter().any(|t| t.name == "output_norm.weight"));
    }
}
