//! Qwen2.5-VL's vision tower as Ollama's converter wrote it (`qwen25vl.vision.*` keys, `v.*`
//! tensors in the model file), for `clip.cpp`'s `qwen2.5vl_merger` projector.
//!
//! The blocks already have `clip.cpp`'s names (`v.blk.N.ln1`, `attn_q`, `attn_out`, `ffn_gate`…:
//! Ollama's converter split the fused QKV and renamed them as llama.cpp's does). What differs:
//!
//! - the two frames' patch kernels, `v.patch_embd_0` and `v.patch_embd_1`, are llama.cpp's
//!   `v.patch_embd.weight` and `v.patch_embd.weight.1`;
//! - the merger, `v.merger.ln_q` and `v.merger.mlp.{0,2}`, is `v.post_ln` and `mm.{0,2}`;
//! - Ollama lists the full-attention blocks (`fullatt_block_indexes`), llama.cpp keeps their
//!   period (`clip.vision.n_wa_pattern`: every n-th block attends fully);
//! - the keys Ollama's engine did without are set as llama.cpp's converter writes them: the
//!   feed-forward width (from the tensors), `image_size` 560, CLIP's mean and std, SiLU.
//!
//! The tensor types stay: llama.cpp's converter writes the matrices and both patch kernels in F16
//! too, and `clip.cpp` convolves with F16 kernels.
//!
//! `clip.cpp` hard-codes what Ollama's file spells out: two patches merged per side, 112-pixel
//! attention windows, a RoPE base of 10 000. A file that says otherwise would be computed
//! differently, so it is not translated (it still runs as a text model).

use corral_gguf::{ArrayValue, MetaValue};

use super::{copy_vision_u32, differs_from, finish_projector, set_epsilon};
use crate::work::Work;

/// What every published Qwen2.5-VL tower has, and `clip.cpp` requires.
const TENSORS: [&str; 8] = [
    "v.patch_embd_0.weight",
    "v.patch_embd_1.weight",
    "v.blk.0.ffn_up.weight",
    "v.merger.ln_q.weight",
    "v.merger.mlp.0.weight",
    "v.merger.mlp.0.bias",
    "v.merger.mlp.2.weight",
    "v.merger.mlp.2.bias",
];

/// OpenAI CLIP's mean and standard deviation, Qwen2.5-VL's image normalisation: what llama.cpp's
/// converter copies from the model's preprocessor configuration, and what Ollama's engine assumed
/// without writing it.
pub(super) const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub(super) const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The image size llama.cpp's converter writes when, as for Qwen2.5-VL, the configuration has
/// none (`clip.cpp` requires the key; pictures keep their own size).
const IMAGE_SIZE: u32 = 560;

/// What `clip.cpp`'s graph assumes, as (`qwen25vl.vision.` key, value): a file with another value
/// is not translated. An absent key is fine: Ollama's engine then assumed the same value.
const FIXED: [(&str, f32); 4] =
    [("spatial_merge_size", 2.0), ("window_size", 112.0), ("temporal_patch_size", 2.0), ("rope.freq_base", 10_000.0)];

pub(super) fn qwen25vl(w: &mut Work) -> bool {
    if TENSORS.iter().any(|name| w.tensor(name).is_none()) {
        return false;
    }
    let Some(text_embd) = w.u32_of("qwen25vl.embedding_length") else { return false };
    let Some(blocks) = w.u32_of("qwen25vl.vision.block_count") else { return false };
    // The merger's output is the language model's input.
    if w.dim("v.merger.mlp.2.weight", 1) != Some(u64::from(text_embd)) {
        return false;
    }
    let Some(ffn) = w.dim("v.blk.0.ffn_up.weight", 1).and_then(|f| u32::try_from(f).ok()) else { return false };
    let Some(period) = window_period(w.get("qwen25vl.vision.fullatt_block_indexes"), blocks) else { return false };
    if differs_from(w, "qwen25vl", &FIXED) {
        return false;
    }
    if !copy_vision_u32(w, "qwen25vl", &["block_count", "embedding_length", "attention.head_count", "patch_size"]) {
        return false;
    }
    w.handler("qwen25vl");
    set_epsilon(w, "qwen25vl", "vision");
    w.set_u32("clip.vision.feed_forward_length", ffn);
    w.set_u32("clip.vision.projection_dim", text_embd);
    w.set_u32("clip.vision.image_size", IMAGE_SIZE);
    w.set_u32("clip.vision.n_wa_pattern", period);
    w.set("clip.use_silu", MetaValue::Bool(true));
    w.rename_tensor("v.patch_embd_0.weight", "v.patch_embd.weight");
    w.rename_tensor("v.patch_embd_1.weight", "v.patch_embd.weight.1");
    for (from, to) in [("v.merger.ln_q.", "v.post_ln."), ("v.merger.mlp.0.", "mm.0."), ("v.merger.mlp.2.", "mm.2.")] {
        w.rename_tensors_containing(from, to);
    }
    finish_projector(w, "qwen2.5vl_merger", CLIP_MEAN, CLIP_STD);
    true
}

/// `clip.cpp`'s window-attention period from Ollama's list of full-attention blocks: `p` when
/// the list is exactly every `p`-th block (`p-1`, `2p-1`… below `blocks`), the only pattern
/// `clip.cpp` can run; None for any other list or none. Every block attending fully is period 0
/// (no windows), not 1: `clip.cpp` would still build the window inputs for 1, and fail.
fn window_period(indexes: Option<&MetaValue>, blocks: u32) -> Option<u32> {
    let indexes: Vec<i64> = match indexes? {
        MetaValue::Array(ArrayValue::I32(v)) => v.iter().map(|i| i64::from(*i)).collect(),
        MetaValue::Array(ArrayValue::U32(v)) => v.iter().map(|i| i64::from(*i)).collect(),
        _ => return None,
    };
    let period = indexes.first()? + 1;
    // As many entries as multiples of the period up to `blocks`, checked before the entries.
    if period < 1 || indexes.len() as i64 != i64::from(blocks) / period {
        return None;
    }
    let regular = indexes.iter().zip(1..).all(|(i, k)| *i == k * period - 1);
    regular.then_some(if period == 1 { 0 } else { period as u32 })
}

#[cfg(test)]
mod tests {
    use corral_gguf::{GgmlType, Gguf, TensorInfo};

    use super::*;
    use crate::clip::testing::{i32s, with_keys};
    use crate::clip::translate_clip;

    /// A published header: two blocks (the second attends fully), a 64-wide language model.
    fn published() -> Gguf {
        let mut g = with_keys([
            ("general.architecture", MetaValue::String("qwen25vl".into())),
            ("qwen25vl.embedding_length", MetaValue::U32(64)),
            ("qwen25vl.vision.block_count", MetaValue::U32(2)),
            ("qwen25vl.vision.embedding_length", MetaValue::U32(32)),
            ("qwen25vl.vision.attention.head_count", MetaValue::U32(2)),
            ("qwen25vl.vision.patch_size", MetaValue::U32(14)),
            ("qwen25vl.vision.window_size", MetaValue::U32(112)),
            ("qwen25vl.vision.spatial_merge_size", MetaValue::U32(2)),
            ("qwen25vl.vision.rope.freq_base", MetaValue::F32(10_000.0)),
            ("qwen25vl.vision.fullatt_block_indexes", i32s(&[1])),
        ]);
        let tensor = |name: &str, kind: GgmlType, dims: &[u64]| {
            let size = crate::work::size_of(kind, dims).unwrap();
            TensorInfo { name: name.into(), kind, dims: dims.to_vec(), offset: 0, size }
        };
        g.tensors = vec![
            tensor("token_embd.weight", GgmlType::F16, &[64, 8]),
            tensor("blk.0.ffn_up.weight", GgmlType::F16, &[64, 128]),
            tensor("v.patch_embd_0.weight", GgmlType::F16, &[14, 14, 3, 32]),
            tensor("v.patch_embd_1.weight", GgmlType::F16, &[14, 14, 3, 32]),
            tensor("v.blk.0.ln1.weight", GgmlType::F32, &[32]),
            tensor("v.blk.0.ffn_up.weight", GgmlType::F16, &[32, 48]),
            tensor("v.merger.ln_q.weight", GgmlType::F32, &[32]),
            tensor("v.merger.mlp.0.weight", GgmlType::F16, &[128, 128]),
            tensor("v.merger.mlp.0.bias", GgmlType::F32, &[128]),
            tensor("v.merger.mlp.2.weight", GgmlType::F16, &[128, 64]),
            tensor("v.merger.mlp.2.bias", GgmlType::F32, &[64]),
        ];
        g
    }

    #[test]
    fn the_tower_becomes_a_qwen25vl_merger() {
        let g = published();
        let t = translate_clip(&g).expect("a qwen25vl file with a tower");
        assert_eq!(t.handler, "qwen25vl");
        let out = t.apply(&g);
        assert_eq!(out.architecture(), Some("clip"));
        assert_eq!(out.get_str("clip.projector_type"), Some("qwen2.5vl_merger"));
        for (key, want) in [
            ("clip.vision.n_wa_pattern", 2),
            ("clip.vision.feed_forward_length", 48),
            ("clip.vision.projection_dim", 64),
            ("clip.vision.image_size", 560),
            ("clip.vision.block_count", 2),
        ] {
            assert_eq!(out.get(key), Some(&MetaValue::U32(want)), "{key}");
        }
        assert_eq!(out.get("clip.use_silu"), Some(&MetaValue::Bool(true)));
        assert_eq!(out.get("clip.vision.attention.layer_norm_epsilon"), Some(&MetaValue::F32(1e-6)));
        let names: Vec<&str> = out.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "v.patch_embd.weight",
                "v.patch_embd.weight.1",
                "v.blk.0.ln1.weight",
                "v.blk.0.ffn_up.weight",
                "v.post_ln.weight",
                "mm.0.weight",
                "mm.0.bias",
                "mm.2.weight",
                "mm.2.bias"
            ]
        );
        // llama.cpp's converter writes the kernels in F16 too: nothing to convert.
        assert!(t.promoted.is_empty());
        assert!(out.tensors.iter().all(|x| g.tensors.iter().any(|y| y.kind == x.kind && y.dims == x.dims)));
        assert!(t.hidden.contains("token_embd.weight") && t.hidden.contains("blk.0.ffn_up.weight"));
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
        assert!(with("qwen25vl.vision.window_size", None).is_some(), "Ollama's default is clip.cpp's");
        assert!(with("qwen25vl.vision.window_size", Some(MetaValue::U32(56))).is_none());
        assert!(with("qwen25vl.vision.spatial_merge_size", Some(MetaValue::U32(3))).is_none());
        assert!(with("qwen25vl.vision.rope.freq_base", Some(MetaValue::F32(1e6))).is_none());
        assert!(with("qwen25vl.vision.fullatt_block_indexes", None).is_none());
        assert!(with("qwen25vl.vision.fullatt_block_indexes", Some(i32s(&[0]))).is_none());
        assert!(with("qwen25vl.vision.block_count", None).is_none());
        assert!(with("qwen25vl.vision.patch_size", None).is_none());
        assert!(with("qwen25vl.embedding_length", Some(MetaValue::U32(96))).is_none());
        for name in TENSORS {
            let mut g = published();
            g.tensors.retain(|t| t.name != name);
            assert!(translate_clip(&g).is_none(), "without {name}");
        }
    }

    /// The test kit's published Qwen2.5-VL, translated, is the header of the projector llama.cpp's
    /// converter writes for the same tower, and its tensors' bytes in the published file are the
    /// reference's: the file read through the translation is that projector.
    #[test]
    fn the_published_fixture_reads_as_the_reference_projector() {
        let tok = corral_testkit::letters_tokenizer("abcdefgh");
        let bytes = corral_testkit::tiny_qwen25vl(corral_testkit::Layout::Published, &tok, 3);
        let reference = corral_testkit::qwen25vl_reference_projector(128);
        let t = crate::clip::testing::assert_reads_as_reference("qwen25vl", &bytes, &reference);
        // Offsets are the published file's: a translation moves no data.
        assert!(t.assembled.is_empty() && t.promoted.is_empty());
    }

    #[test]
    fn the_window_period_is_read_only_from_a_regular_list() {
        let period = |v: &[i32], blocks| window_period(Some(&i32s(v)), blocks);
        assert_eq!(period(&[7, 15, 23, 31], 32), Some(8));
        assert_eq!(period(&[1], 3), Some(2));
        assert_eq!(period(&[0, 1], 2), Some(0));
        assert_eq!(period(&[7, 15, 23, 31], 30), None);
        assert_eq!(period(&[7, 15, 23], 32), None);
        assert_eq!(period(&[7, 14], 16), None);
        assert_eq!(period(&[], 4), None);
        assert_eq!(period(&[-1], 4), None);
        // A block count no list can match is refused without building the expected list.
        assert_eq!(period(&[0], u32::MAX), None);
        assert_eq!(window_period(Some(&MetaValue::U32(7)), 8), None);
    }
}
