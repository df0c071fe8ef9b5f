//! Three more architectures whose published files differ from llama.cpp's, as tiny random-weight
//! models in both layouts (see `random_arch` for the scheme: one seeded generator, the same
//! tensors with the same bytes in both copies, the llama.cpp copy as the reference).
//!
//! - [`tiny_mistral3`]: Mistral Small 3.x / Ministral 3 (`mistral3`), llama-like attention with
//!   YaRN RoPE and an attention temperature that grows with the position. Ollama writes the YaRN
//!   and temperature values under other key names, no pre-tokenizer, and keeps a whole random
//!   vision tower and projector in the same file (`crate::published_mistral3`). Both layouts'
//!   vocabularies have Mistral's image tokens.
//! - [`tiny_qwen3vl`]: Qwen3-VL (`qwen3vl`), Qwen 3 attention with interleaved multi-axis RoPE.
//!   Ollama's file lacks the RoPE sections and the deepstack layer count llama.cpp reads; it has
//!   the vision side's deepstack indexes (one per deepstack layer) and a whole random vision
//!   tower instead (`crate::published_qwen3vl`).
//! - [`tiny_llama3`]: a llama model with a Llama 3 vocabulary (128256 tokens, the chat markers at
//!   their ids). The published copy is what the first Llama 3 files carried: no pre-tokenizer and
//!   `<|end_of_text|>` as EOS, where llama.cpp's converter writes `llama-bpe` and `<|eot_id|>`.
//!   Only tokenizer metadata differs, so without the translation this one still loads.
//!
//! Vision tensors are drawn after every text tensor, from a generator of their own, so the text
//! tensors' bytes do not depend on the layout.

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::random_arch::{Layout, Model};

// Mistral 3, at the scale of a test.
const MIS_EMBD: u64 = 64;
const MIS_BLOCKS: u64 = 2;
const MIS_HEADS: u64 = 4;
const MIS_KV_HEADS: u64 = 2;
/// Wider than `embedding_length / head_count`, as in Mistral Small (the converters write the
/// key length), and wide enough for the YaRN ramp to fall between two rotary dimensions.
const MIS_HEAD_DIM: u64 = 32;
const MIS_FFN: u64 = 128;
const MIS_CONTEXT: u64 = 512;
/// The context YaRN stretches, and the period of the attention temperature's steps: short, so
/// that a test's prompt and answer cross it and the temperature changes the logits.
const MIS_ORIGINAL_CONTEXT: u64 = 16;
/// The YaRN ramp's ends. The fast one is the released models' (and llama.cpp's default): over 16
/// positions no rotary dimension turns fast enough for it to matter. The slow one is not the
/// default (1), and moves the ramp by a dimension, so losing it on the way changes the answer.
const MIS_BETA_FAST: f32 = 32.0;
const MIS_BETA_SLOW: f32 = 2.0;
/// `mscale_all_dim` of the released models.
const MIS_MSCALE_ALL_DIM: f32 = 1.0;
/// `llama_4_scaling_beta` of the released models.
const MIS_TEMPERATURE: f32 = 0.1;

/// A Mistral 3 model with random weights in `layout`. Both layouts carry the YaRN type, factor
/// and original context; llama.cpp's names the ramp `rope.scaling.yarn_beta_fast/slow`, the
/// attention factor `rope.scaling.yarn_log_multiplier` and the temperature
/// `attention.temperature_scale`, and its pre-tokenizer is `tekken`. The published copy has
/// `rope.scaling.beta_fast/beta_slow/mscale/mscale_all_dim` and `rope.scaling_beta` instead, no
/// pre-tokenizer, the vision keys, and `v.*`/`mm.*` tensors. The vocabulary is `tokenizer`'s
/// with `[IMG]`, `[IMG_BREAK]` and `[IMG_END]` appended where it lacks them.
pub fn tiny_mistral3(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    let tokenizer = crate::published_mistral3::with_image_tokens(tokenizer);
    let mut m = Model::new("mistral3", &tokenizer, llama_cpp.then_some("tekken"), seed);
    let (e, q, kv) = (MIS_EMBD, MIS_HEADS * MIS_HEAD_DIM, MIS_KV_HEADS * MIS_HEAD_DIM);
    let vocab = m.vocab;
    m.u32("vocab_size", vocab);
    m.u32("context_length", MIS_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", MIS_BLOCKS);
    m.u32("feed_forward_length", MIS_FFN);
    m.u32("attention.head_count", MIS_HEADS);
    m.u32("attention.head_count_kv", MIS_KV_HEADS);
    m.u32("attention.key_length", MIS_HEAD_DIM);
    m.u32("attention.value_length", MIS_HEAD_DIM);
    m.u32("rope.dimension_count", MIS_HEAD_DIM);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);
    m.f32("rope.freq_base", 1_000_000.0);
    m.key("rope.scaling.type", MetaValue::String("yarn".into()));
    m.f32("rope.scaling.factor", (MIS_CONTEXT / MIS_ORIGINAL_CONTEXT) as f32);
    m.u32("rope.scaling.original_context_length", MIS_ORIGINAL_CONTEXT);
    if llama_cpp {
        m.f32("rope.scaling.yarn_beta_fast", MIS_BETA_FAST);
        m.f32("rope.scaling.yarn_beta_slow", MIS_BETA_SLOW);
        m.f32("rope.scaling.yarn_log_multiplier", MIS_MSCALE_ALL_DIM);
        m.f32("attention.temperature_scale", MIS_TEMPERATURE);
    } else {
        m.f32("rope.scaling.beta_fast", MIS_BETA_FAST);
        m.f32("rope.scaling.beta_slow", MIS_BETA_SLOW);
        m.f32("rope.scaling.mscale", 1.0);
        m.f32("rope.scaling.mscale_all_dim", MIS_MSCALE_ALL_DIM);
        m.f32("rope.scaling_beta", MIS_TEMPERATURE);
    }

    m.embeddings(e);
    for i in 0..MIS_BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        m.matrix(&b("attn_q.weight"), &[e, q]);
        m.matrix(&b("attn_k.weight"), &[e, kv]);
        m.matrix(&b("attn_v.weight"), &[e, kv]);
        m.matrix(&b("attn_output.weight"), &[q, e]);
        m.norm(&b("ffn_norm.weight"), e);
        m.matrix(&b("ffn_gate.weight"), &[e, MIS_FFN]);
        m.matrix(&b("ffn_up.weight"), &[e, MIS_FFN]);
        m.matrix(&b("ffn_down.weight"), &[MIS_FFN, e]);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if !llama_cpp {
        let image = crate::published_mistral3::token_id(&tokenizer, "[IMG]").expect("added above");
        crate::published_mistral3::add_published_mistral3_tower(&mut m.w, e, image);
    }
    m.finish()
}

// Qwen3-VL, at the scale of a test. The sections below are the released models', which cover
// half of a 128-wide head, so the head is that wide here too.
const QVL_EMBD: u64 = 256;
const QVL_BLOCKS: u64 = 2;
const QVL_HEADS: u64 = 2;
const QVL_KV_HEADS: u64 = 1;
const QVL_HEAD_DIM: u64 = 128;
const QVL_FFN: u64 = 384;
const QVL_CONTEXT: u64 = 4096;
/// Rotary dimensions (pairs) per position axis: time, height, width, unused.
const QVL_SECTIONS: [i32; 4] = [24, 20, 20, 0];
/// Which vision blocks feed the deepstack layers; their number is llama.cpp's
/// `n_deepstack_layers`. A text-only prompt adds nothing in those layers. Fewer than the text
/// blocks, as in the released models: llama.cpp's graph cannot add a deepstack input to the last
/// block, whose rows are already cut down to the outputs.
pub(crate) const QVL_DEEPSTACK: [i32; 1] = [2];

/// A Qwen3-VL model with random weights in `layout`: Qwen 3 attention (per-head Q and K norms),
/// dense SwiGLU feed-forwards, an untied output head. llama.cpp's layout has
/// `rope.dimension_sections` and `n_deepstack_layers`; the published one has neither, but a
/// whole random vision tower ([`crate::QWEN3VL_TOWER`]: its `vision.*` keys, among them
/// `vision.deepstack_visual_indexes`, and `v.*` tensors), which llama.cpp's layout keeps in a
/// separate projector, [`crate::qwen3vl_reference_projector`].
pub fn tiny_qwen3vl(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let e = QVL_EMBD;
    qwen3vl(
        "qwen3vl",
        layout,
        tokenizer,
        seed,
        e,
        |_| {},
        |m, i| {
            m.matrix(&format!("blk.{i}.ffn_gate.weight"), &[e, QVL_FFN]);
            m.matrix(&format!("blk.{i}.ffn_up.weight"), &[e, QVL_FFN]);
            m.matrix(&format!("blk.{i}.ffn_down.weight"), &[QVL_FFN, e]);
        },
    )
}

/// A Qwen3-VL text model (of either kind, `arch`) `embd` wide with [`QVL_HEADS`] heads of
/// [`QVL_HEAD_DIM`]: `keys` adds the feed-forward's own keys, `ffn` writes block `i`'s
/// feed-forward after its norm.
pub(crate) fn qwen3vl(
    arch: &str,
    layout: Layout,
    tokenizer: &Gguf,
    seed: u64,
    embd: u64,
    keys: impl FnOnce(&mut Model),
    mut ffn: impl FnMut(&mut Model, u64),
) -> Vec<u8> {
    let llama_cpp = layout == Layout::LlamaCpp;
    // Both converters write Qwen's pre-tokenizer, and the translation leaves it alone.
    let mut m = Model::new(arch, tokenizer, Some("qwen2"), seed);
    let (e, q, kv) = (embd, QVL_HEADS * QVL_HEAD_DIM, QVL_KV_HEADS * QVL_HEAD_DIM);
    m.u32("context_length", QVL_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", QVL_BLOCKS);
    m.u32("feed_forward_length", QVL_FFN);
    m.u32("attention.head_count", QVL_HEADS);
    m.u32("attention.head_count_kv", QVL_KV_HEADS);
    m.u32("attention.key_length", QVL_HEAD_DIM);
    m.u32("attention.value_length", QVL_HEAD_DIM);
    m.f32("attention.layer_norm_rms_epsilon", 1e-6);
    m.f32("rope.freq_base", 5_000_000.0);
    keys(&mut m);
    if llama_cpp {
        m.key("rope.dimension_sections", MetaValue::Array(ArrayValue::I32(QVL_SECTIONS.to_vec())));
        m.u32("n_deepstack_layers", QVL_DEEPSTACK.len() as u64);
    }

    m.embeddings(e);
    for i in 0..QVL_BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        m.norm(&b("attn_q_norm.weight"), QVL_HEAD_DIM);
        m.norm(&b("attn_k_norm.weight"), QVL_HEAD_DIM);
        m.matrix(&b("attn_q.weight"), &[e, q]);
        m.matrix(&b("attn_k.weight"), &[e, kv]);
        m.matrix(&b("attn_v.weight"), &[e, kv]);
        m.matrix(&b("attn_output.weight"), &[q, e]);
        m.norm(&b("ffn_norm.weight"), e);
        ffn(&mut m, i);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    if !llama_cpp {
        // After every text tensor, from a generator of its own: the same tower for every seed.
        crate::published_qwen3vl::add_published_qwen3vl_tower(&mut m.w, arch, e);
    }
    m.finish()
}

// A llama model with a Llama 3 vocabulary.
const L3_EMBD: u64 = 64;
const L3_BLOCKS: u64 = 2;
const L3_HEADS: u64 = 4;
const L3_KV_HEADS: u64 = 2;
const L3_FFN: u64 = 128;
const L3_CONTEXT: u64 = 8192;
/// Llama 3's vocabulary: 128000 ordinary tokens, then 256 special ones.
const LLAMA3_VOCAB: u32 = 128_256;
const BEGIN_OF_TEXT: u32 = 128_000;
const END_OF_TEXT: u32 = 128_001;
const START_HEADER: u32 = 128_006;
const END_HEADER: u32 = 128_007;
const EOT: u32 = 128_009;

/// Llama 3's special tokens from 128000 on: the named ones at their ids, reserved ones around them
/// numbered in order, as in Meta's tokenizer.
fn llama3_special(id: u32, reserved: &mut u32) -> String {
    match id {
        BEGIN_OF_TEXT => "<|begin_of_text|>".into(),
        END_OF_TEXT => "<|end_of_text|>".into(),
        START_HEADER => "<|start_header_id|>".into(),
        END_HEADER => "<|end_header_id|>".into(),
        EOT => "<|eot_id|>".into(),
        _ => {
            *reserved += 1;
            format!("<|reserved_special_token_{}|>", *reserved - 1)
        }
    }
}

/// A Llama 3 shaped tokenizer built on `source`'s: its tokens, types and merges first, ordinary
/// filler tokens up to 128000, the special tokens after them; BOS `<|begin_of_text|>`. EOS is
/// `<|eot_id|>` with the end-of-turn keys llama.cpp's converter writes, or `<|end_of_text|>`
/// alone as in the published files.
fn llama3_tokenizer(source: &Gguf, layout: Layout) -> Gguf {
    let Some(MetaValue::Array(ArrayValue::String(source_tokens))) = source.get("tokenizer.ggml.tokens") else {
        panic!("the tokenizer source has no tokens");
    };
    let mut tokens = source_tokens.clone();
    assert!(tokens.len() < BEGIN_OF_TEXT as usize, "{} tokens do not fit below the special ones", tokens.len());
    // 1 = a normal token, 3 = a control token.
    let mut types = match source.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(ArrayValue::I32(t))) => t.clone(),
        _ => vec![1; tokens.len()],
    };
    for i in tokens.len() as u32..BEGIN_OF_TEXT {
        tokens.push(format!("<|filler_{i}|>"));
        types.push(1);
    }
    let mut reserved = 0;
    for id in BEGIN_OF_TEXT..LLAMA3_VOCAB {
        tokens.push(llama3_special(id, &mut reserved));
        types.push(3);
    }
    let model = source.get("tokenizer.ggml.model").cloned().unwrap_or(MetaValue::String("gpt2".into()));
    let merges = source.get("tokenizer.ggml.merges").cloned().unwrap_or(MetaValue::Array(ArrayValue::String(vec![])));
    let mut metadata = vec![
        ("tokenizer.ggml.model".to_string(), model),
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(tokens))),
        ("tokenizer.ggml.token_type".into(), MetaValue::Array(ArrayValue::I32(types))),
        ("tokenizer.ggml.merges".into(), merges),
        ("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(BEGIN_OF_TEXT)),
    ];
    if layout == Layout::LlamaCpp {
        metadata.extend([
            ("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(EOT)),
            ("tokenizer.ggml.eot_token_id".into(), MetaValue::U32(EOT)),
            ("tokenizer.ggml.eos_token_ids".into(), MetaValue::Array(ArrayValue::I32(vec![EOT as i32]))),
        ]);
    } else {
        metadata.push(("tokenizer.ggml.eos_token_id".into(), MetaValue::U32(END_OF_TEXT)));
    }
    Gguf { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

/// A llama model with a Llama 3 vocabulary grown from `tokenizer`'s (see `llama3_tokenizer`) and
/// random weights, Q8_0 like the others (the 128256-row embeddings and head are the bulk of it).
/// In llama.cpp's layout the pre-tokenizer is `llama-bpe` and EOS and EOT are `<|eot_id|>`; the
/// published copy has no pre-tokenizer and EOS `<|end_of_text|>`. No `add_bos_token` key in
/// either: the pre-tokenizer decides, and `llama-bpe` adds `<|begin_of_text|>`.
pub fn tiny_llama3(layout: Layout, tokenizer: &Gguf, seed: u64) -> Vec<u8> {
    let vocabulary = llama3_tokenizer(tokenizer, layout);
    let pre = (layout == Layout::LlamaCpp).then_some("llama-bpe");
    let mut m = Model::new("llama", &vocabulary, pre, seed);
    let (e, head_dim) = (L3_EMBD, L3_EMBD / L3_HEADS);
    let kv = L3_KV_HEADS * head_dim;
    let vocab = m.vocab;
    m.u32("vocab_size", vocab);
    m.u32("context_length", L3_CONTEXT);
    m.u32("embedding_length", e);
    m.u32("block_count", L3_BLOCKS);
    m.u32("feed_forward_length", L3_FFN);
    m.u32("attention.head_count", L3_HEADS);
    m.u32("attention.head_count_kv", L3_KV_HEADS);
    m.u32("rope.dimension_count", head_dim);
    m.f32("rope.freq_base", 500_000.0);
    m.f32("attention.layer_norm_rms_epsilon", 1e-5);

    m.embeddings(e);
    for i in 0..L3_BLOCKS {
        let b = |stem: &str| format!("blk.{i}.{stem}");
        m.norm(&b("attn_norm.weight"), e);
        m.matrix(&b("attn_q.weight"), &[e, e]);
        m.matrix(&b("attn_k.weight"), &[e, kv]);
        m.matrix(&b("attn_v.weight"), &[e, kv]);
        m.matrix(&b("attn_output.weight"), &[e, e]);
        m.norm(&b("ffn_norm.weight"), e);
        m.matrix(&b("ffn_gate.weight"), &[e, L3_FFN]);
        m.matrix(&b("ffn_up.weight"), &[e, L3_FFN]);
        m.matrix(&b("ffn_down.weight"), &[L3_FFN, e]);
    }
    m.norm("output_norm.weight", e);
    m.head(e);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_arch::testing::assert_same_weights;

    #[test]
    fn text_tensors_are_the_same_in_both_layouts() {
        assert_same_weights(tiny_mistral3, &[], &["v.", "mm."], None);
        assert_same_weights(tiny_qwen3vl, &[], &["v.", "mm."], None);
        assert_same_weights(tiny_llama3, &[], &[], None);
    }

    #[test]
    fn published_keys_are_ollamas() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let read = |bytes: Vec<u8>| corral_gguf::read_bytes(&bytes).unwrap();
        let mistral = read(tiny_mistral3(Layout::Published, &tok, 1));
        assert_eq!(mistral.get("mistral3.rope.scaling_beta"), Some(&MetaValue::F32(MIS_TEMPERATURE)));
        assert!(mistral.get("mistral3.attention.temperature_scale").is_none());
        assert!(mistral.get("tokenizer.ggml.pre").is_none());
        let reference = read(tiny_mistral3(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.get_str("tokenizer.ggml.pre"), Some("tekken"));

        let qwen = read(tiny_qwen3vl(Layout::Published, &tok, 1));
        assert!(qwen.get("qwen3vl.rope.dimension_sections").is_none());
        assert!(qwen.get("qwen3vl.n_deepstack_layers").is_none());
        let reference = read(tiny_qwen3vl(Layout::LlamaCpp, &tok, 1));
        assert_eq!(reference.arch_u64("n_deepstack_layers"), Some(QVL_DEEPSTACK.len() as u64));
    }

    #[test]
    fn llama3_vocabulary_has_its_markers_where_llama3_does() {
        let tok = crate::letters_tokenizer("abcdefgh");
        for layout in [Layout::LlamaCpp, Layout::Published] {
            let g = corral_gguf::read_bytes(&tiny_llama3(layout, &tok, 1)).unwrap();
            let Some(MetaValue::Array(ArrayValue::String(tokens))) = g.get("tokenizer.ggml.tokens") else { panic!() };
            assert_eq!(tokens.len(), LLAMA3_VOCAB as usize);
            assert_eq!(tokens[0], "a");
            for (id, text) in
                [(BEGIN_OF_TEXT, "<|begin_of_text|>"), (END_OF_TEXT, "<|end_of_text|>"), (EOT, "<|eot_id|>")]
            {
                assert_eq!(tokens[id as usize], text);
            }
            assert_eq!(tokens[128_002], "<|reserved_special_token_0|>");
            assert_eq!(tokens[128_255], "<|reserved_special_token_250|>");
            let eos = if layout == Layout::LlamaCpp { EOT } else { END_OF_TEXT };
            assert_eq!(g.get("tokenizer.ggml.eos_token_id"), Some(&MetaValue::U32(eos)));
            assert_eq!(g.arch_u64("vocab_size"), Some(u64::from(LLAMA3_VOCAB)));
        }
    }
}
