//! The Llama 4 projector translation against the test kit's fixtures: the published file read
//! through it is the reference projector, and towers it cannot serve are refused.

use corral_gguf::{GgmlType, Gguf};

use super::*;
use crate::clip::testing::{assert_reads_as_reference, set, translated_after};

/// The test kit's published Llama 4 (a 64-wide language model, its tower) and the reference
/// projector llama.cpp's converter writes for the same tower.
fn fixtures() -> (Vec<u8>, Vec<u8>) {
    let tok = corral_testkit::letters_tokenizer("abcdefgh");
    let published = corral_testkit::tiny_llama4(corral_testkit::Layout::Published, &tok, 3);
    (published, corral_testkit::llama4_reference_projector(64))
}

/// The published fixture, edited, through the projector translation.
fn with(edit: &dyn Fn(&mut Gguf)) -> Option<crate::Translation> {
    translated_after(&fixtures().0, edit)
}

/// The published fixture, translated, reads as the projector llama.cpp's converter writes, key
/// for key and byte for byte: names and keys only, no tensor reordered or converted.
#[test]
fn the_published_fixture_reads_as_the_reference_projector() {
    let (published, reference) = fixtures();
    let t = assert_reads_as_reference("llama4", &published, &reference);
    assert_eq!(t.handler, "llama4");
    assert!(t.assembled.is_empty() && t.promoted.is_empty() && t.rows_as_f32.is_empty());
    let g = corral_gguf::read_bytes(&published).unwrap();
    let out = t.apply(&g);
    assert_eq!(out.get("clip.vision.projector.scale_factor"), Some(&MetaValue::U32(2)));
    assert_eq!(out.get("clip.vision.attention.layer_norm_epsilon"), Some(&MetaValue::F32(1e-5)));
    assert!(t.renames.contains(&("v.positional_embedding_vlm".into(), "v.position_embd.weight".into())));
    assert!(t.renames.contains(&("v.vision_adapter.mlp.fc1.weight".into(), "mm.model.mlp.1.weight".into())));
    assert!(t.hidden.contains("token_embd.weight") && t.hidden.contains("blk.0.attn_norm.weight"));
    // The text side still hides the whole tower from the language model's loader.
    let text = crate::translate(&g).unwrap().expect("a published llama4");
    assert!(text.hidden.contains("v.blk.0.attn_q.weight") && text.hidden.contains("mm.linear_1.weight"));
}

#[test]
fn f16_embeddings_are_widened_and_the_files_epsilon_kept() {
    let half = |g: &mut Gguf| {
        for t in
            g.tensors.iter_mut().filter(|t| t.name == "v.class_embedding" || t.name == "v.positional_embedding_vlm")
        {
            t.kind = GgmlType::F16;
            t.size /= 2;
        }
    };
    let t = with(&half).expect("a tower with F16 embeddings");
    assert_eq!(t.promoted, ["v.class_embd", "v.position_embd.weight"]);
    let eps = with(&|g| set(g, "llama4.vision.layer_norm_epsilon", MetaValue::F32(1e-6))).unwrap();
    assert!(eps
        .edits
        .contains(&crate::Edit::Set("clip.vision.attention.layer_norm_epsilon".into(), MetaValue::F32(1e-6))));
    // Without the key, the checkpoints' 1e-5; without a ratio, the adapter's width gives 2.
    let bare = |g: &mut Gguf| {
        g.metadata.retain(|(k, _)| k != "llama4.vision.layer_norm_epsilon" && k != "llama4.vision.pixel_shuffle_ratio")
    };
    let t = with(&bare).unwrap();
    assert!(t
        .edits
        .contains(&crate::Edit::Set("clip.vision.attention.layer_norm_epsilon".into(), MetaValue::F32(1e-5))));
    assert!(t.edits.contains(&crate::Edit::Set("clip.vision.projector.scale_factor".into(), MetaValue::U32(2))));
}

#[test]
fn towers_clip_cpp_would_compute_differently_are_not_translated() {
    assert!(with(&|_| {}).is_some());
    assert!(with(&|g| g.metadata.retain(|(k, _)| k != "llama4.vision.rope.freq_base")).is_some());
    assert!(with(&|g| set(g, "llama4.vision.rope.freq_base", MetaValue::F32(5e5))).is_none());
    // A ratio that disagrees with the adapter's width; patches the shuffle cannot tile (70 / 14).
    assert!(with(&|g| set(g, "llama4.vision.pixel_shuffle_ratio", MetaValue::F32(0.25))).is_none());
    assert!(with(&|g| set(g, "llama4.vision.image_size", MetaValue::U32(70))).is_none());
}

#[test]
fn towers_of_inconsistent_sizes_are_refused() {
    for key in [
        "llama4.embedding_length",
        "llama4.vision.block_count",
        "llama4.vision.embedding_length",
        "llama4.vision.attention.head_count",
        "llama4.vision.feed_forward_length",
        "llama4.vision.image_size",
        "llama4.vision.patch_size",
    ] {
        assert!(with(&|g| g.metadata.retain(|(k, _)| k != key)).is_none(), "without {key}");
    }
    // Heads that do not split the tower in halves of pairs; more blocks than tensors; another
    // picture size than the position embeddings'; a projector of another width than the text's.
    assert!(with(&|g| set(g, "llama4.vision.attention.head_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "llama4.vision.attention.head_count", MetaValue::U32(16))).is_none());
    assert!(with(&|g| set(g, "llama4.vision.block_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "llama4.vision.image_size", MetaValue::U32(112))).is_none());
    assert!(with(&|g| set(g, "llama4.embedding_length", MetaValue::U32(96))).is_none());
    for name in
        TENSORS.iter().copied().chain(["v.blk.1.mlp.fc2.bias", "v.blk.0.attn_k.weight", "v.blk.0.ffn_norm.bias"])
    {
        assert!(with(&|g| g.tensors.retain(|t| t.name != name)).is_none(), "without {name}");
    }
}
