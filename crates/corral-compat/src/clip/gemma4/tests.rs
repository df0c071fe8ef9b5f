//! The Gemma 4 projector translation against the test kit's fixtures: the published file read
//! through it is the reference projector, and towers it cannot serve are refused.

use corral_gguf::Gguf;

use super::*;
use crate::clip::testing::{assert_reads_as_reference, set, translated_after};
use crate::clip::translate_clip;

/// The test kit's published Gemma 4 (a 64-wide language model, its towers) and the reference
/// projector for the same vision tower.
fn fixtures() -> (Vec<u8>, Vec<u8>) {
    let tok = corral_testkit::letters_tokenizer("abcdefgh");
    let published = corral_testkit::tiny_gemma4(corral_testkit::Layout::Published, &tok, 3);
    (published, corral_testkit::gemma4_reference_projector(64))
}

fn published() -> Gguf {
    corral_gguf::read_bytes(&fixtures().0).unwrap()
}

/// The published fixture, edited, through the projector translation.
fn with(edit: &dyn Fn(&mut Gguf)) -> Option<crate::Translation> {
    translated_after(&fixtures().0, edit)
}

/// The published fixture, translated, reads as the reference projector (both towers), key for
/// key and byte for byte: the vision tower by keys only, no tensor of it renamed, reordered or
/// converted; the audio tower also by renames (see `gemma4a`'s tests).
#[test]
fn the_published_fixture_reads_as_the_reference_projector() {
    let (published, reference) = fixtures();
    let t = assert_reads_as_reference("gemma4", &published, &reference);
    assert_eq!(t.handler, "gemma4");
    assert!(t.renames.iter().all(|(from, _)| from.starts_with("a.") || from.starts_with("mm.a.")), "{:?}", t.renames);
    assert!(t.assembled.is_empty() && t.promoted.is_empty() && t.rows_as_f32.is_empty());
    let g = corral_gguf::read_bytes(&published).unwrap();
    let out = t.apply(&g);
    assert_eq!(out.get("clip.vision.projector.scale_factor"), Some(&MetaValue::U32(2)));
    assert_eq!(out.get("clip.vision.image_size"), Some(&MetaValue::U32(224)));
    for name in ["v.clamp_data", "token_embd.weight"] {
        assert!(t.hidden.contains(name), "{name} is not hidden");
    }
    assert!(!t.hidden.iter().any(|n| n.starts_with("a.") || n.starts_with("mm.")), "{:?}", t.hidden);
    // The text side still hides both towers from the language model's loader.
    let text = crate::translate(&g).unwrap().expect("a published gemma4");
    assert!(text.hidden.contains("v.blk.0.attn_q.weight") && text.hidden.contains("mm.input_projection.weight"));
}

#[test]
fn missing_settings_take_clip_cpps_defaults() {
    let bare = |g: &mut Gguf| {
        g.metadata.retain(|(k, _)| {
            k != "gemma4.vision.attention.layer_norm_epsilon" && k != "gemma4.vision.projector.scale_factor"
        })
    };
    let mut g = published();
    bare(&mut g);
    let t = translate_clip(&g).expect("a tower without the optional keys");
    let eps = crate::Edit::Set("clip.vision.attention.layer_norm_epsilon".into(), MetaValue::F32(1e-6));
    assert!(t.edits.contains(&eps));
    // clip.cpp then pools 3×3, as Ollama's engine does.
    assert!(t.apply(&g).get("clip.vision.projector.scale_factor").is_none());
}

#[test]
fn towers_clip_cpp_would_compute_differently_are_not_translated() {
    assert!(with(&|_| {}).is_some());
    assert!(with(&|g| set(g, "gemma4.vision.rope.freq_base", MetaValue::F32(100.0))).is_some());
    assert!(with(&|g| set(g, "gemma4.vision.rope.freq_base", MetaValue::F32(10_000.0))).is_none());
    assert!(with(&|g| set(g, "gemma4.vision.num_channels", MetaValue::U32(1))).is_none());
    assert!(with(&|g| set(g, "gemma4.vision.projector.scale_factor", MetaValue::U32(0))).is_none());
}

#[test]
fn towers_of_inconsistent_sizes_are_refused() {
    for key in [
        "gemma4.embedding_length",
        "gemma4.vision.block_count",
        "gemma4.vision.embedding_length",
        "gemma4.vision.attention.head_count",
        "gemma4.vision.feed_forward_length",
        "gemma4.vision.patch_size",
    ] {
        assert!(with(&|g| g.metadata.retain(|(k, _)| k != key)).is_none(), "without {key}");
    }
    // Heads that do not split the tower in halves of pairs; more blocks than tensors; another
    // patch size than the convolution's; a projector of another width than the text's.
    assert!(with(&|g| set(g, "gemma4.vision.attention.head_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "gemma4.vision.attention.head_count", MetaValue::U32(16))).is_none());
    assert!(with(&|g| set(g, "gemma4.vision.block_count", MetaValue::U32(3))).is_none());
    assert!(with(&|g| set(g, "gemma4.vision.patch_size", MetaValue::U32(8))).is_none());
    assert!(with(&|g| set(g, "gemma4.embedding_length", MetaValue::U32(96))).is_none());
    for name in TENSORS.iter().copied().chain(["v.blk.1.ffn_gate.weight", "v.blk.0.attn_k_norm.weight"]) {
        assert!(with(&|g| g.tensors.retain(|t| t.name != name)).is_none(), "without {name}");
    }
}
