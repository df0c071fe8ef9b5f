//! The Mistral 3 projector translation against the test kit's fixtures: the published file read
//! through it is the reference projector, and towers it cannot serve are refused.

use corral_gguf::{ArrayValue, Gguf};

use super::*;
use crate::clip::testing::{assert_reads_as_reference, set};
use crate::clip::translate_clip;

/// The test kit's published Mistral 3 (a 64-wide language model, its tower) and the same
/// weights in llama.cpp's layout: the text model and the reference projector.
fn fixtures() -> (Vec<u8>, Vec<u8>) {
    let tok = corral_testkit::letters_tokenizer("abcdefgh");
    let published = corral_testkit::tiny_mistral3(corral_testkit::Layout::Published, &tok, 3);
    let text = corral_testkit::tiny_mistral3(corral_testkit::Layout::LlamaCpp, &tok, 3);
    (published, corral_testkit::mistral3_reference_projector(&text))
}

fn published() -> Gguf {
    corral_gguf::read_bytes(&fixtures().0).unwrap()
}

#[test]
fn adjacent_pairs_interleave_each_heads_two_halves() {
    // One head of 8 rows: pairs (0, 4), (1, 5), (2, 6), (3, 7).
    let order: Vec<u64> = (0..8).map(|r| adjacent_pairs_row(r, 8)).collect();
    assert_eq!(order, [0, 4, 1, 5, 2, 6, 3, 7]);
    // The second head's rows stay in it.
    let order: Vec<u64> = (8..16).map(|r| adjacent_pairs_row(r, 8)).collect();
    assert_eq!(order, [8, 12, 9, 13, 10, 14, 11, 15]);
    // The converter's way: a head as 2 × head_dim/2 rows, the two axes swapped; every row once.
    for head_dim in [4u64, 16, 64] {
        let mut swapped = Vec::new();
        for head in 0..3 {
            for j in 0..head_dim / 2 {
                for side in 0..2 {
                    swapped.push(head * head_dim + side * head_dim / 2 + j);
                }
            }
        }
        let order: Vec<u64> = (0..3 * head_dim).map(|r| adjacent_pairs_row(r, head_dim)).collect();
        assert_eq!(order, swapped, "{head_dim}");
    }
}

/// The published fixture, translated, reads as the projector llama.cpp's converter writes, key
/// for key and byte for byte: Q and K reordered, `[IMG_BREAK]`'s embedding dequantized from the
/// text model's Q8_0 embeddings.
#[test]
fn the_published_fixture_reads_as_the_reference_projector() {
    let (published, reference) = fixtures();
    let t = assert_reads_as_reference("mistral3", &published, &reference);
    assert_eq!(t.handler, "mistral3");
    let g = corral_gguf::read_bytes(&published).unwrap();
    assert_eq!(g.tensors.iter().find(|t| t.name == "token_embd.weight").unwrap().kind, GgmlType::Q8_0);
    // `[IMG_BREAK]` is the letters, `<|end|>`, then `[IMG]`: id 10.
    assert_eq!(t.rows_as_f32, [(IMG_BREAK.to_string(), "token_embd.weight".to_string(), 10)]);
    assert_eq!(t.renames.iter().filter(|(_, to)| to == IMG_BREAK).count(), 1);
    let reordered: Vec<&str> = t.assembled.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        reordered,
        ["v.blk.0.attn_q.weight", "v.blk.0.attn_k.weight", "v.blk.1.attn_q.weight", "v.blk.1.attn_k.weight"]
    );
    // One range per row, each a row of the same tensor.
    assert!(t.assembled.iter().all(|(_, ranges)| ranges.len() == 32 && ranges.iter().all(|r| r.1 == 64)));
    let out = t.apply(&g);
    assert_eq!(out.get("clip.vision.attention.layer_norm_epsilon"), Some(&MetaValue::F32(1e-5)));
    assert!(out.tensors.iter().all(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")));
    assert!(t.hidden.contains("token_embd.weight") && !t.hidden.contains("output_norm.weight"));
    // The text side still hides the whole tower from the language model's loader.
    let text = crate::translate(&g).unwrap().expect("a published mistral3");
    assert!(text.hidden.contains("v.blk.0.attn_q.weight") && text.hidden.contains("mm.linear_2.weight"));
}

#[test]
fn towers_clip_cpp_would_compute_differently_are_not_translated() {
    let with = |edit: &dyn Fn(&mut Gguf)| {
        let mut g = published();
        edit(&mut g);
        translate_clip(&g)
    };
    assert!(with(&|_| {}).is_some());
    assert!(with(&|g| g.metadata.retain(|(k, _)| k != "mistral3.vision.rope.freq_base")).is_some());
    assert!(with(&|g| set(g, "mistral3.vision.rope.freq_base", MetaValue::F32(1e6))).is_none());
    assert!(with(&|g| set(g, "mistral3.mm.projector_hidden_act", MetaValue::String("silu".into()))).is_none());
    assert!(with(&|g| set(g, "mistral3.vision.num_channels", MetaValue::U32(1))).is_none());
    // An epsilon of the file's own is kept.
    let eps = with(&|g| set(g, "mistral3.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6))).unwrap();
    assert!(eps
        .edits
        .contains(&crate::Edit::Set("clip.vision.attention.layer_norm_epsilon".into(), MetaValue::F32(1e-6))));
}

#[test]
fn towers_of_inconsistent_sizes_or_without_img_break_are_refused() {
    let with = |edit: &dyn Fn(&mut Gguf)| {
        let mut g = published();
        edit(&mut g);
        translate_clip(&g)
    };
    for key in [
        "mistral3.embedding_length",
        "mistral3.spatial_merge_size",
        "mistral3.vision.block_count",
        "mistral3.vision.attention.head_count",
        "mistral3.vision.image_size",
        "mistral3.vision.patch_size",
        "mistral3.vision.feed_forward_length",
    ] {
        assert!(with(&|g| g.metadata.retain(|(k, _)| k != key)).is_none(), "without {key}");
    }
    // Heads that do not split the tower, or disagree with the key length; more blocks than tensors.
    assert!(with(&|g| set(g, "mistral3.vision.attention.head_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "mistral3.vision.attention.head_count", MetaValue::U32(4))).is_none());
    assert!(with(&|g| set(g, "mistral3.vision.attention.key_length", MetaValue::U32(8))).is_none());
    assert!(with(&|g| set(g, "mistral3.vision.block_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "mistral3.spatial_merge_size", MetaValue::U32(1))).is_none());
    assert!(with(&|g| set(g, "mistral3.embedding_length", MetaValue::U32(96))).is_none());
    // No `[IMG_BREAK]` in the vocabulary.
    let rename_token = |g: &mut Gguf| {
        if let Some((_, MetaValue::Array(ArrayValue::String(t)))) =
            g.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.tokens")
        {
            t.iter_mut().filter(|s| *s == "[IMG_BREAK]").for_each(|s| *s = "[BREAK]".into());
        }
    };
    assert!(with(&rename_token).is_none());
    for name in TENSORS.iter().copied().chain(["v.blk.1.ffn_down.weight", "v.blk.0.attn_k.weight"]) {
        assert!(with(&|g| g.tensors.retain(|t| t.name != name)).is_none(), "without {name}");
    }
    // Q with a bias (its elements would need reordering too).
    let biased = |g: &mut Gguf| {
        let mut bias = g.tensors.iter().find(|t| t.name == "v.encoder_norm.weight").unwrap().clone();
        bias.name = "v.blk.0.attn_q.bias".into();
        g.tensors.push(bias);
    };
    assert!(with(&biased).is_none());
    // No F32 text vector to lend its place to the `[IMG_BREAK]` embedding.
    let no_slot =
        |g: &mut Gguf| g.tensors.retain(|t| t.name.starts_with("v.") || t.name.starts_with("mm.") || t.dims.len() > 1);
    assert!(with(&no_slot).is_none());
    // Another one serves when `output_norm` is not F32.
    let other_slot =
        |g: &mut Gguf| g.tensors.iter_mut().find(|t| t.name == "output_norm.weight").unwrap().kind = GgmlType::F16;
    let t = with(&other_slot).expect("blk.0.attn_norm lends its place");
    assert!(t.renames.contains(&("blk.0.attn_norm.weight".to_string(), IMG_BREAK.to_string())));
}
