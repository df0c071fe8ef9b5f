//! The Qwen3-VL projector translation against hand-written headers and the test kit's fixtures.

use corral_gguf::{Gguf, TensorInfo};

use super::*;
use crate::clip::testing::{assert_reads_as_reference, i32s, with_keys};
use crate::clip::translate_clip;

/// A published header: two blocks 32 wide, the first feeding the one deepstack merger,
/// 14-pixel patches, a 4×4 position grid, a 64-wide language model. Tensors lie one after the
/// other from offset 0.
fn published() -> Gguf {
    let mut g = with_keys([
        ("general.architecture", MetaValue::String("qwen3vl".into())),
        ("qwen3vl.embedding_length", MetaValue::U32(64)),
        ("qwen3vl.vision.block_count", MetaValue::U32(2)),
        ("qwen3vl.vision.embedding_length", MetaValue::U32(32)),
        ("qwen3vl.vision.attention.head_count", MetaValue::U32(2)),
        ("qwen3vl.vision.patch_size", MetaValue::U32(14)),
        ("qwen3vl.vision.spatial_merge_size", MetaValue::U32(2)),
        ("qwen3vl.vision.temporal_patch_size", MetaValue::U32(2)),
        ("qwen3vl.vision.rope.freq_base", MetaValue::F32(10_000.0)),
        ("qwen3vl.vision.deepstack_visual_indexes", i32s(&[0])),
    ]);
    let (f16, f32) = (GgmlType::F16, GgmlType::F32);
    let mut tensors: Vec<(String, GgmlType, Vec<u64>)> = vec![
        ("token_embd.weight".into(), f16, vec![64, 8]),
        ("v.patch_embed.weight".into(), f16, vec![14, 14, 2, 96]),
        ("v.patch_embed.bias".into(), f32, vec![32]),
        ("v.pos_embed.weight".into(), f16, vec![32, 16]),
    ];
    let mut linear = |stem: String, dims: [u64; 2]| {
        let (kind, norm) = if stem.ends_with("norm1") || stem.ends_with("norm2") || stem.ends_with("norm") {
            (f32, vec![dims[0]])
        } else {
            (f16, dims.to_vec())
        };
        tensors.push((format!("{stem}.weight"), kind, norm));
        tensors.push((format!("{stem}.bias"), f32, vec![dims[1]]));
    };
    for b in 0..2 {
        for (part, dims) in [
            ("norm1", [32, 32]),
            ("attn_q", [32, 32]),
            ("attn_k", [32, 32]),
            ("attn_v", [32, 32]),
            ("attn_out", [32, 32]),
            ("norm2", [32, 32]),
            ("mlp.linear_fc1", [32, 48]),
            ("mlp.linear_fc2", [48, 32]),
        ] {
            linear(format!("v.blk.{b}.{part}"), dims);
        }
    }
    for stem in ["v.merger", "v.deepstack_merger.0"] {
        let norm = if stem == "v.merger" { 32 } else { 128 };
        linear(format!("{stem}.norm"), [norm, norm]);
        linear(format!("{stem}.linear_fc1"), [128, 128]);
        linear(format!("{stem}.linear_fc2"), [128, 64]);
    }
    let mut offset = 0;
    for (name, kind, dims) in tensors {
        let size = crate::work::size_of(kind, &dims).unwrap();
        g.tensors.push(TensorInfo { name, kind, dims, offset, size });
        offset += size;
    }
    g
}

#[test]
fn the_tower_becomes_a_qwen3vl_merger() {
    let g = published();
    let t = translate_clip(&g).expect("a qwen3vl file with a tower");
    assert_eq!(t.handler, "qwen3vl");
    let out = t.apply(&g);
    assert_eq!(out.architecture(), Some("clip"));
    assert_eq!(out.get_str("clip.projector_type"), Some("qwen3vl_merger"));
    for (key, want) in [
        ("clip.vision.feed_forward_length", 48),
        ("clip.vision.projection_dim", 64),
        ("clip.vision.image_size", 4 * 14),
        ("clip.vision.spatial_merge_size", 2),
    ] {
        assert_eq!(out.get(key), Some(&MetaValue::U32(want)), "{key}");
    }
    assert_eq!(
        out.get("clip.vision.is_deepstack_layers"),
        Some(&MetaValue::Array(ArrayValue::Bool(vec![true, false])))
    );
    assert_eq!(out.get("clip.use_gelu"), Some(&MetaValue::Bool(true)));
    let tensor = |name: &str| out.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}"));
    for name in ["v.blk.1.ln2.bias", "v.blk.0.ffn_down.weight", "v.post_ln.weight", "mm.0.bias", "mm.2.weight"] {
        tensor(name);
    }
    for name in ["v.deepstack.0.norm.weight", "v.deepstack.0.fc1.bias", "v.deepstack.0.fc2.weight"] {
        tensor(name);
    }
    assert_eq!(
        (tensor("v.blk.1.attn_qkv.weight").dims.clone(), tensor("v.blk.1.attn_qkv.bias").dims.clone()),
        (vec![32, 96], vec![96])
    );
    assert_eq!(tensor("v.position_embd.weight").kind, GgmlType::F32);
    assert_eq!(t.promoted, ["v.position_embd.weight"]);
    let range = |name: &str| {
        let t = g.tensors.iter().find(|t| t.name == name).unwrap();
        (t.offset, t.size)
    };
    let assembled = |name: &str| &t.assembled.iter().find(|(n, _)| n == name).unwrap().1;
    let parts = ["attn_q", "attn_k", "attn_v"].map(|p| range(&format!("v.blk.1.{p}.bias")));
    assert_eq!(assembled("v.blk.1.attn_qkv.bias"), &parts);
    // Each frame's kernel: every other 14×14 piece of F16 values, one per output and colour.
    let (start, _) = range("v.patch_embed.weight");
    for (name, frame) in [("v.patch_embd.weight", 0), ("v.patch_embd.weight.1", 1)] {
        assert_eq!(tensor(name).dims, [14, 14, 3, 32]);
        let ranges = assembled(name);
        assert_eq!(ranges.len(), 96);
        assert_eq!(ranges[1], (start + (2 + frame) * 392, 392));
    }
    // The second kernel took the entry of an unused K; the other unused parts are hidden.
    assert_eq!(t.renames.iter().find(|(_, to)| to == "v.patch_embd.weight.1").unwrap().0, "v.blk.0.attn_k.weight");
    assert!(t.hidden.contains("v.blk.0.attn_v.weight") && t.hidden.contains("v.blk.1.attn_k.bias"));
    assert!(!t.hidden.contains("v.blk.0.attn_k.weight"));
    assert!(t.hidden.contains("token_embd.weight"));
    assert!(out.tensors.iter().all(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")));
}

#[test]
fn towers_clip_cpp_would_compute_differently_are_not_translated() {
    let with = |key: &str, value: Option<MetaValue>| {
        let mut g = published();
        g.metadata.retain(|(k, _)| k != key);
        if let Some(v) = value {
            g.metadata.push((key.into(), v));
        }
        translate_clip(&g)
    };
    let vision = |key: &str| format!("qwen3vl.vision.{key}");
    assert!(with(&vision("rope.freq_base"), None).is_some(), "Ollama's default is clip.cpp's");
    assert!(with(&vision("spatial_merge_size"), Some(MetaValue::U32(3))).is_none());
    assert!(with(&vision("temporal_patch_size"), Some(MetaValue::U32(1))).is_none());
    assert!(with(&vision("num_channels"), Some(MetaValue::U32(1))).is_none());
    assert!(with(&vision("rope.freq_base"), Some(MetaValue::F32(1e6))).is_none());
    assert!(with(&vision("num_positional_embeddings"), Some(MetaValue::U32(2304))).is_none());
    assert!(with(&vision("attention.head_count"), Some(MetaValue::U32(4))).is_some(), "8-wide heads");
    assert!(with(&vision("attention.head_count"), Some(MetaValue::U32(16))).is_none(), "2-wide heads");
    assert!(with(&vision("attention.head_count"), Some(MetaValue::U32(3))).is_none());
    assert!(with(&vision("deepstack_visual_indexes"), Some(i32s(&[2]))).is_none());
    assert!(with("qwen3vl.n_deepstack_layers", Some(MetaValue::U32(3))).is_none());
    assert!(with("qwen3vl.embedding_length", Some(MetaValue::U32(96))).is_none());
    for name in published().tensors.iter().map(|t| t.name.clone()).filter(|n| n.starts_with("v.")) {
        let mut g = published();
        g.tensors.retain(|t| t.name != name);
        assert!(translate_clip(&g).is_none(), "without {name}");
    }
    let mut g = published();
    g.tensors.iter_mut().find(|t| t.name == "v.pos_embed.weight").unwrap().dims = vec![32, 15];
    assert!(translate_clip(&g).is_none(), "a grid that is not square");
}

#[test]
fn deepstack_blocks_are_distinct_and_ascending() {
    assert_eq!(deepstack_blocks(Some(&i32s(&[5, 11, 17])), 24), Some(vec![5, 11, 17]));
    assert_eq!(deepstack_blocks(None, 24), Some(vec![]));
    assert_eq!(deepstack_blocks(Some(&i32s(&[11, 5])), 24), None);
    assert_eq!(deepstack_blocks(Some(&i32s(&[5, 5])), 24), None);
    assert_eq!(deepstack_blocks(Some(&i32s(&[24])), 24), None);
    assert_eq!(deepstack_blocks(Some(&i32s(&[-1])), 24), None);
    assert_eq!(deepstack_blocks(Some(&MetaValue::U32(5)), 24), None);
}

/// The test kit's published Qwen3-VL and Qwen3-VL MoE, translated, read as the projector
/// llama.cpp's converter writes for their tower.
#[test]
fn the_published_fixtures_read_as_the_reference_projector() {
    let tok = corral_testkit::letters_tokenizer("abcdefgh");
    let published = corral_testkit::tiny_qwen3vl(corral_testkit::Layout::Published, &tok, 3);
    let t = assert_reads_as_reference("qwen3vl", &published, &corral_testkit::qwen3vl_reference_projector(256));
    assert_eq!(t.promoted, ["v.position_embd.weight"]);
    let published = corral_testkit::tiny_qwen3vlmoe(corral_testkit::Layout::Published, &tok, 3);
    assert_reads_as_reference("qwen3vlmoe", &published, &corral_testkit::qwen3vl_reference_projector(128));
}
