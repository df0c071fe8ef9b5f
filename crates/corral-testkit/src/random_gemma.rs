//! Three Gemma variants whose published files differ from llama.cpp's, as tiny random-weight
//! models in both layouts (the scheme of `random_arch`: one seeded generator, the same tensors
//! with the same bytes in both copies, the llama.cpp copy as the reference that must load alone).
//!
//! - [`tiny_gemma3n`]: Gemma 3n, with its alternating-update streams (AltUp), low-rank residual
//!   (Laurel) and per-layer token embeddings. Ollama's file kept the multimodal markers: its
//!   token list and main embedding have a few rows more than the per-layer embedding, where
//!   llama.cpp wants both at the text vocabulary. The tokenizer is SentencePiece-shaped (byte
//!   tokens `<0xXX>`, some `<unusedN>`); the published copy types those tokens the way the
//!   translation corrects (bytes as normal tokens, unused ones as control) and lists only EOS as
//!   an end token, where llama.cpp's has bytes typed as bytes and `<end_of_turn>` added.
//! - [`tiny_gemma4`]: Gemma 4 without experts, in the E2B shape: sliding-window and full
//!   attention blocks of different head widths, proportional RoPE factors, per-layer
//!   embeddings and a scalar per block. Ollama's file names the tokenizer `llama` and carries the
//!   audio and vision encoders and their projectors (`a.*`, `v.*`, `mm.*`) with their keys.
//! - [`tiny_embeddinggemma`]: EmbeddingGemma, a bidirectional Gemma 3 encoder followed by mean
//!   pooling and two dense projections. Ollama wrote it as a `gemma3` file (keys under
//!   `gemma3.`, the projections as `dense.0`/`dense.1`, the last norm as `norm`); llama.cpp
//!   loads it as `gemma-embedding`, with `dense_2`/`dense_3` and their sizes as keys.
//!
//! Gemma 3n hard-codes some widths in llama.cpp (4 AltUp streams, a Laurel rank of 64 and
//! per-layer inputs 256 wide), so the fixture uses those; everything else is test-sized.

use corral_gguf::{ArrayValue, Gguf, MetaValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::random_arch::{Layout, Model};

/// The sizes of one Gemma attention and feed-forward block.
struct Shape {
    embd: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    ffn: u64,
}

/// Gemma's block body, the same in every variant: pre- and post-norms around attention (with
/// per-head Q and K norms) and around a gated feed-forward.
fn gemma_block(m: &mut Model, i: usize, s: &Shape) {
    let b = |stem: &str| format!("blk.{i}.{stem}.weight");
    let (e, q, kv) = (s.embd, s.heads * s.head_dim, s.kv_heads * s.head_dim);
    m.norm(&b("attn_norm"), e);
    m.matrix(&b("attn_q"), &[e, q]);
    m.matrix(&b("attn_k"), &[e, kv]);
    m.matrix(&b("attn_v"), &[e, kv]);
    m.matrix(&b("attn_output"), &[q, e]);
    m.norm(&b("attn_q_norm"), s.head_dim);
    m.norm(&b("attn_k_norm"), s.head_dim);
    m.norm(&b("post_attention_norm"), e);
    m.norm(&b("ffn_norm"), e);
    m.matrix(&b("ffn_gate"), &[e, s.ffn]);
    m.matrix(&b("ffn_up"), &[e, s.ffn]);
    m.matrix(&b("ffn_down"), &[s.ffn, e]);
    m.norm(&b("post_ffw_norm"), e);
}

/// The keys every Gemma here has, under the file's prefix.
fn gemma_keys(m: &mut Model, s: &Shape, blocks: usize, window: u64) {
    m.u32("context_length", 2048);
    m.u32("embedding_length", s.embd);
    m.u32("block_count", blocks as u64);
    m.u32("feed_forward_length", s.ffn);
    m.u32("attention.head_count", s.heads);
    m.u32("attention.head_count_kv", s.kv_heads);
    m.u32("attention.key_length", s.head_dim);
    m.u32("attention.value_length", s.head_dim);
    m.f32("attention.layer_norm_rms_epsilon", 1e-6);
    m.f32("rope.freq_base", 1_000_000.0);
    m.u32("attention.sliding_window", window);
}

/// Which blocks use the sliding window, as the bool array Gemma 3n and 4 files carry.
fn window_pattern(m: &mut Model, sliding: &[bool]) {
    m.key("attention.sliding_window_pattern", MetaValue::Array(ArrayValue::Bool(sliding.to_vec())));
}

/// The bound of the token embeddings' values. Gemma multiplies them by the square root of the
/// width on the way in and ties the output to them: at unit size the embedding swamps what the
/// blocks add, and a random model only repeats the prompt's last token.
const EMBEDDING_SCALE: f32 = 0.3;

/// A table of rows looked up by token (values in `±EMBEDDING_SCALE`), Q8_0.
fn table(m: &mut Model, name: &str, width: u64, rows: u64) {
    let values = m.uniform(width * rows, -EMBEDDING_SCALE, EMBEDDING_SCALE);
    m.w.add_q8_0(name, &[width, rows], &values);
}

/// Per-layer embeddings (Gemma 3n and 4): a `width`-wide slice per block of a token table, the
/// projection of the main embedding that is added to it, and that projection's norm.
fn per_layer_inputs(m: &mut Model, embd: u64, width: u64, blocks: usize, vocab: u64) {
    let all = width * blocks as u64;
    table(m, "per_layer_token_embd.weight", all, vocab);
    m.matrix("per_layer_model_proj.weight", &[embd, all]);
    m.norm("per_layer_proj_norm.weight", width);
}

/// A block's use of its per-layer input: gate, projection back, norm.
fn per_layer_block(m: &mut Model, i: usize, embd: u64, width: u64) {
    m.matrix(&format!("blk.{i}.inp_gate.weight"), &[embd, width]);
    m.matrix(&format!("blk.{i}.proj.weight"), &[width, embd]);
    m.norm(&format!("blk.{i}.post_norm.weight"), embd);
}

/// Sets `key` in a header's metadata, in place when it is there.
fn put(g: &mut Gguf, key: &str, value: MetaValue) {
    match g.metadata.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => g.metadata.push((key.to_string(), value)),
    }
}

// Gemma 3n, at the scale of a test (see the module's note on the fixed widths).
const G3N: Shape = Shape { embd: 64, heads: 2, kv_heads: 1, head_dim: 32, ffn: 128 };
const G3N_SLIDING: [bool; 2] = [true, false];
const G3N_ALTUP: u64 = 4;
const G3N_LAUREL_RANK: u64 = 64;
const G3N_PER_LAYER: u64 = 256;
/// The text vocabulary: a prefix of the source's, so the per-layer table stays small.
const G3N_VOCAB: usize = 8192;
/// The multimodal markers past the text vocabulary in Ollama's file (262400 - 262144 in the
/// released models; a few here).
const G3N_MARKERS: [&str; 8] = [
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<start_of_audio>",
    "<end_of_audio>",
    "<audio_soft_token>",
    "<mm_pad_0>",
    "<mm_pad_1>",
];
/// Where the 256 byte tokens and the few unused ones sit in the Gemma 3n vocabulary.
const G3N_BYTES: usize = 17;
const G3N_UNUSED: usize = G3N_BYTES + 256;
const G3N_UNUSED_COUNT: usize = 3;
/// `<end_of_turn>` in Gemma's vocabulary, which the translation adds to the end tokens.
const G3N_END_OF_TURN: i32 = 106;
/// Mixed into the seed for the marker rows, so they do not shift the shared generator.
const G3N_MARKER_SEED: u64 = 0x6d6d;

/// SentencePiece token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const BYTE: i32 = 6;

/// A SentencePiece-shaped vocabulary grown from `source`'s first tokens: byte tokens and
/// `<unusedN>` tokens in place of some, typed as `layout` does, the multimodal markers appended
/// in Ollama's copy, no merges, and end tokens as each side lists them.
fn gemma3n_tokenizer(source: &Gguf, layout: Layout) -> Gguf {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut g = source.clone();
    let Some(MetaValue::Array(ArrayValue::String(all))) = source.get("tokenizer.ggml.tokens") else {
        panic!("the tokenizer source has no tokens");
    };
    let n = all.len().min(G3N_VOCAB);
    let mut tokens = all[..n].to_vec();
    let mut types = match source.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(ArrayValue::I32(t))) => t[..n].to_vec(),
        _ => vec![NORMAL; n],
    };
    let mut rename = |i: usize, token: String, ty: i32| {
        if i < n {
            tokens[i] = token;
            types[i] = ty;
        }
    };
    for byte in 0..256 {
        rename(G3N_BYTES + byte, format!("<0x{byte:02X}>"), if llama_cpp { BYTE } else { NORMAL });
    }
    for k in 0..G3N_UNUSED_COUNT {
        rename(G3N_UNUSED + k, format!("<unused{k}>"), if llama_cpp { NORMAL } else { CONTROL });
    }
    if !llama_cpp {
        tokens.extend(G3N_MARKERS.iter().map(|t| t.to_string()));
        types.extend(G3N_MARKERS.iter().map(|_| CONTROL));
    }
    let eos = match source.get("tokenizer.ggml.eos_token_id") {
        Some(MetaValue::U32(id)) => *id as i32,
        _ => 1,
    };
    let ends = if llama_cpp { vec![eos, G3N_END_OF_TURN] } else { vec![eos] };
    g.metadata.retain(|(k, _)| k != "tokenizer.ggml.merges" && k != "tokenizer.ggml.scores");
    put(&mut g, "tokenizer.ggml.model", MetaValue::String("llama".into()));
    put(&mut g, "tokenizer.ggml.tokens", MetaValue::Array(ArrayValue::String(tokens)));
    put(&mut g, "tokenizer.ggml.token_type", MetaValue::Array(ArrayValue::I32(types)));
    put(&mut g, "tokenizer.ggml.eos_token_ids", MetaValue::Array(ArrayValue::I32(ends)));
    g
}

/// A Gemma 3n model with random weights in `layout`: a sliding-window block and a full one,
/// each with AltUp prediction and correction, Laurel and a per-layer input; the output tied to
/// the embedding, as in the released models. In Ollama's copy the token list and `token_embd`
/// have the multimodal markers' rows after the text vocabulary's (drawn from a generator of
/// their own, so the text rows' bytes are the reference's), which the per-layer table lacks.
pub fn tiny_gemma3n(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let vocabulary = gemma3n_tokenizer(tokenizer, layout);
    let mut m = Model::new("gemma3n", &vocabulary, None, seed);
    let s = &G3N;
    let (e, blocks) = (s.embd, G3N_SLIDING.len());
    let text = m.vocab - if layout == Layout::LlamaCpp { 0 } else { G3N_MARKERS.len() as u64 };
    gemma_keys(&mut m, s, blocks, 16);
    m.f32("rope.freq_base_swa", 10_000.0);
    window_pattern(&mut m, &G3N_SLIDING);
    m.u32("embedding_length_per_layer_input", G3N_PER_LAYER);
    m.u32("altup.num_inputs", G3N_ALTUP);
    m.u32("altup.active_idx", 0);
    m.f32("final_logit_softcapping", 30.0);

    let mut rows = m.uniform(e * text, -EMBEDDING_SCALE, EMBEDDING_SCALE);
    let mut markers = StdRng::seed_from_u64(seed ^ G3N_MARKER_SEED);
    rows.extend((0..e * (m.vocab - text)).map(|_| markers.gen_range(-EMBEDDING_SCALE..EMBEDDING_SCALE)));
    m.w.add_q8_0("token_embd.weight", &[e, m.vocab], &rows);
    per_layer_inputs(&mut m, e, G3N_PER_LAYER, blocks, text);
    // The extra streams are the embedding projected three ways, and projected back at the end.
    m.matrix("altup_proj.weight", &[e, e, G3N_ALTUP - 1]);
    m.matrix("altup_unembd_proj.weight", &[e, e, G3N_ALTUP - 1]);
    m.norm("output_norm.weight", e);
    for i in 0..blocks {
        let b = |stem: &str| format!("blk.{i}.{stem}.weight");
        gemma_block(&mut m, i, s);
        per_layer_block(&mut m, i, e, G3N_PER_LAYER);
        // The router's mixing coefficients, too small for Q8_0 blocks: F32.
        m.small(&b("altup_correct_coef"), &[G3N_ALTUP, G3N_ALTUP], 0.5);
        m.norm(&b("altup_correct_scale"), e);
        m.small(&b("altup_predict_coef"), &[G3N_ALTUP, G3N_ALTUP * G3N_ALTUP], 0.5);
        m.matrix(&b("altup_router"), &[e, G3N_ALTUP]);
        m.norm(&b("altup_router_norm"), e);
        m.matrix(&b("laurel_l"), &[e, G3N_LAUREL_RANK]);
        m.matrix(&b("laurel_r"), &[G3N_LAUREL_RANK, e]);
        m.norm(&b("laurel_post_norm"), e);
    }
    m.finish()
}

// Gemma 4 (the E2B shape, no experts), at the scale of a test: the full-attention block has
// heads twice as wide as the sliding ones, as in the released models.
const G4: Shape = Shape { embd: 64, heads: 2, kv_heads: 1, head_dim: 64, ffn: 128 };
const G4_SWA_HEAD_DIM: u64 = 32;
const G4_SLIDING: [bool; 2] = [true, false];
const G4_PER_LAYER: u64 = 32;

/// A Gemma 4 model with random weights in `layout`, without experts: one sliding-window block
/// and one full-attention block (wider heads, RoPE frequency factors), per-layer inputs, a
/// scalar on each block's output and an untied output head. The tokenizer is the
/// source's vocabulary and merges with the `gemma4` pre-tokenizer; llama.cpp's copy names the
/// model `gemma4` (BPE over SentencePiece-style text), Ollama's `llama`. Ollama's copy also has
/// whole vision and audio towers with their keys (`crate::published_gemma4`,
/// `crate::published_gemma4_audio`), each drawn from its own generator after the text.
pub fn tiny_gemma4(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let mut m = Model::new("gemma4", tokenizer, Some("gemma4"), seed);
    m.w.set("tokenizer.ggml.model", MetaValue::String(if llama_cpp { "gemma4" } else { "llama" }.into()));
    let s = &G4;
    let (e, blocks, vocab) = (s.embd, G4_SLIDING.len(), m.vocab);
    gemma_keys(&mut m, s, blocks, 16);
    m.u32("attention.key_length_swa", G4_SWA_HEAD_DIM);
    m.u32("attention.value_length_swa", G4_SWA_HEAD_DIM);
    m.u32("rope.dimension_count", s.head_dim);
    m.u32("rope.dimension_count_swa", G4_SWA_HEAD_DIM);
    m.f32("rope.freq_base_swa", 10_000.0);
    window_pattern(&mut m, &G4_SLIDING);
    m.u32("embedding_length_per_layer_input", G4_PER_LAYER);
    m.u32("attention.shared_kv_layers", 0);
    m.f32("final_logit_softcapping", 30.0);

    table(&mut m, "token_embd.weight", e, vocab);
    per_layer_inputs(&mut m, e, G4_PER_LAYER, blocks, vocab);
    // One factor per rotary pair of the full-attention heads, shared by every such block.
    m.norm("rope_freqs.weight", s.head_dim / 2);
    m.norm("output_norm.weight", e);
    for (i, sliding) in G4_SLIDING.iter().enumerate() {
        let head_dim = if *sliding { G4_SWA_HEAD_DIM } else { s.head_dim };
        gemma_block(&mut m, i, &Shape { head_dim, ..G4 });
        per_layer_block(&mut m, i, e, G4_PER_LAYER);
        m.norm(&format!("blk.{i}.layer_output_scale.weight"), 1);
    }
    // Untied, unlike the released models: tied, this one still only repeats the last token.
    m.head(e);
    if !llama_cpp {
        crate::published_gemma4::add_published_gemma4_tower(&mut m.w, e);
        crate::published_gemma4_audio::add_published_gemma4_audio(&mut m.w, e);
    }
    m.finish()
}

// EmbeddingGemma, at the scale of a test.
const EG: Shape = Shape { embd: 64, heads: 2, kv_heads: 1, head_dim: 32, ffn: 128 };
/// With no window pattern in the file, llama.cpp makes every sixth block full attention and the
/// others sliding; six blocks give it one full block (with none, its mask is never allocated).
const EG_BLOCKS: usize = 6;
/// The dense projections' inner width (four times the model's, as in the released one).
const EG_DENSE: u64 = 4 * EG.embd;
/// Short, so the (symmetric) window cuts into a test's inputs.
const EG_WINDOW: u64 = 8;
/// llama.cpp's `LLAMA_POOLING_TYPE_MEAN`.
const MEAN_POOLING: u64 = 1;

/// An EmbeddingGemma model with random weights in `layout`: five bidirectional sliding-window
/// blocks and a full one, mean pooling and the two dense projections, SmolLM2-style tokenizer in both. In
/// llama.cpp's layout the architecture is `gemma-embedding`, the projections are
/// `dense_2`/`dense_3` with their four sizes as keys, and the SWA RoPE base is written. Ollama's
/// is `gemma3` with `dense.0`/`dense.1`, the last norm as `norm.weight`, and the causal flag and
/// window pattern that llama.cpp's `gemma-embedding` decides for itself.
pub fn tiny_embeddinggemma(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let arch = if llama_cpp { "gemma-embedding" } else { "gemma3" };
    let mut m = Model::new(arch, tokenizer, Some("smollm"), seed);
    let (s, e) = (&EG, EG.embd);
    gemma_keys(&mut m, s, EG_BLOCKS, EG_WINDOW);
    m.u32("pooling_type", MEAN_POOLING);
    if llama_cpp {
        m.f32("rope.freq_base_swa", 10_000.0);
        m.u32("dense_2_feat_in", e);
        m.u32("dense_2_feat_out", EG_DENSE);
        m.u32("dense_3_feat_in", EG_DENSE);
        m.u32("dense_3_feat_out", e);
    } else {
        m.key("attention.causal", MetaValue::Bool(false));
        m.u32("attention.sliding_window_pattern", 6);
    }

    let vocab = m.vocab;
    table(&mut m, "token_embd.weight", e, vocab);
    for i in 0..EG_BLOCKS {
        gemma_block(&mut m, i, s);
    }
    let (norm, dense_in, dense_out) = if llama_cpp {
        ("output_norm.weight", "dense_2.weight", "dense_3.weight")
    } else {
        ("norm.weight", "dense.0.weight", "dense.1.weight")
    };
    m.norm(norm, e);
    m.matrix(dense_in, &[e, EG_DENSE]);
    m.matrix(dense_out, &[EG_DENSE, e]);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_arch::testing::assert_same_weights;

    #[test]
    fn both_layouts_hold_the_same_text_weights() {
        assert_same_weights(tiny_gemma3n, &[], &[], Some("token_embd.weight"));
        assert_same_weights(tiny_gemma4, &[], &["a.", "v.", "mm."], None);
        let renamed = [
            ("output_norm.weight", "norm.weight"),
            ("dense_2.weight", "dense.0.weight"),
            ("dense_3.weight", "dense.1.weight"),
        ];
        assert_same_weights(tiny_embeddinggemma, &renamed, &[], None);
    }

    #[test]
    fn published_gemma3n_keeps_the_markers() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let g = corral_gguf::read_bytes(&tiny_gemma3n(Layout::Published, &tok, 1)).unwrap();
        let rows = |name: &str| g.tensors.iter().find(|t| t.name == name).unwrap().dims[1];
        let tokens = g.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array).map(ArrayValue::len);
        assert_eq!(rows("token_embd.weight"), rows("per_layer_token_embd.weight") + G3N_MARKERS.len() as u64);
        assert_eq!(tokens, Some(rows("token_embd.weight") as usize));
        assert_eq!(g.get_str("tokenizer.ggml.model"), Some("llama"));
    }
}
