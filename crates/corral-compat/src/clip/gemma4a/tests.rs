//! The Gemma 4 audio translation against the test kit's published Gemma 4 (whose reference
//! projector holds both towers, checked byte for byte in `gemma4`'s tests): what is renamed, in
//! which order, and the towers it leaves to the pictures alone.

use corral_gguf::{GgmlType, Gguf, MetaValue};

use crate::clip::testing::{set, translated_after};
use crate::Translation;

/// A change made to the published header before it is translated.
type Edit = dyn Fn(&mut Gguf);

fn published() -> Vec<u8> {
    let tok = corral_testkit::letters_tokenizer("abcdefgh");
    corral_testkit::tiny_gemma4(corral_testkit::Layout::Published, &tok, 3)
}

fn with(edit: &Edit) -> Translation {
    translated_after(&published(), edit).expect("the vision tower is translated either way")
}

/// Whether the translation serves the audio tower: its keys, and none of its tensors hidden.
fn serves_audio(t: &Translation) -> bool {
    let g = corral_gguf::read_bytes(&published()).unwrap();
    let out = t.apply(&g);
    let audio = out.get("clip.has_audio_encoder") == Some(&MetaValue::Bool(true))
        && out.get_str("clip.audio.projector_type") == Some("gemma4a")
        && out.get_str("clip.vision.projector_type") == Some("gemma4v")
        && out.get("clip.projector_type").is_none();
    let hidden = t.hidden.iter().any(|n| n.starts_with("a.") || n.starts_with("mm.a."));
    assert_eq!(audio, !hidden, "keys and tensors disagree: {:?}", t.hidden);
    audio
}

#[test]
fn the_audio_tower_is_renamed_in_an_order_no_name_is_taken_twice_in() {
    let t = with(&|_| {});
    assert!(serves_audio(&t));
    let at = |from: &str, to: &str| {
        t.renames.iter().position(|(f, d)| f == from && d == to).unwrap_or_else(|| panic!("{from} → {to} missing"))
    };
    // A name is freed before it is taken.
    assert!(
        at("a.blk.1.ln2.weight", "a.blk.1.attn_post_norm.weight")
            < at("a.blk.1.layer_pre_norm.weight", "a.blk.1.ln2.weight")
    );
    assert!(
        at("a.pre_encode.out.weight", "a.input_projection.weight") < at("mm.a.fc.weight", "a.pre_encode.out.weight")
    );
    at("a.blk.0.ln1.weight", "a.blk.0.attn_pre_norm.weight");
    at("a.blk.0.linear_pos.weight", "a.blk.0.attn_k_rel.weight");
    at("mm.a.fc.bias", "a.pre_encode.out.bias");
    // Two blocks of four, and the three around the stem and output.
    assert_eq!(t.renames.len(), 2 * 4 + 3, "{:?}", t.renames);
    let g = corral_gguf::read_bytes(&published()).unwrap();
    let out = t.apply(&g);
    for (key, want) in [("num_mel_bins", 128), ("projection_dim", 64), ("block_count", 2), ("embedding_length", 32)] {
        assert_eq!(out.get(&format!("clip.audio.{key}")), Some(&MetaValue::U32(want)), "{key}");
    }
}

#[test]
fn an_audio_tower_clip_cpp_would_compute_otherwise_leaves_the_pictures_alone() {
    assert!(serves_audio(&with(&|g| set(g, "gemma4.audio.conv_kernel_size", MetaValue::U32(5)))));
    // Another depthwise kernel than clip.cpp's, keys that disagree with the tensors, a missing
    // part, a convolution stored in half precision (clip.cpp convolves in F32 only).
    let edits: [(&str, &Edit); 6] = [
        ("kernel 3", &|g| set(g, "gemma4.audio.conv_kernel_size", MetaValue::U32(3))),
        ("3 blocks", &|g| set(g, "gemma4.audio.block_count", MetaValue::U32(3))),
        ("3 heads", &|g| set(g, "gemma4.audio.attention.head_count", MetaValue::U32(3))),
        ("no ffn width", &|g| g.metadata.retain(|(k, _)| k != "gemma4.audio.feed_forward_length")),
        ("no linear_pos", &|g| g.tensors.retain(|t| t.name != "a.blk.1.linear_pos.weight")),
        ("F16 conv_dw", &|g| {
            let t = g.tensors.iter_mut().find(|t| t.name == "a.blk.0.conv_dw.weight").unwrap();
            t.kind = GgmlType::F16;
        }),
    ];
    for (what, edit) in edits {
        let t = with(edit);
        assert!(!serves_audio(&t), "{what}: the audio tower was translated");
        assert!(t.renames.is_empty(), "{what}: {:?}", t.renames);
        let g = corral_gguf::read_bytes(&published()).unwrap();
        assert_eq!(t.apply(&g).get_str("clip.projector_type"), Some("gemma4v"), "{what}");
    }
}
