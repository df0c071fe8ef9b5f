//! Qwen2.5-VL's vision tower at a test's scale, in the two layouts Corral meets it in: inside the
//! model file as Ollama published it ([`crate::tiny_qwen25vl`] with `Layout::Published`), and as
//! the separate projector llama.cpp's converter writes for the same checkpoint
//! ([`qwen25vl_reference_projector`]). The values are the same in both (one seeded generator, the
//! matrices in F16 in both files); a published file serving as its own projector must compute
//! what the reference pair computes.
//!
//! The tower is Qwen2.5-VL's: a patch embedding split into one kernel per frame of the
//! two-frame convolution, blocks with RMS norms, separate biased Q/K/V, a SiLU-gated feed-forward
//! with biases, window attention in every block but those of `fullatt_block_indexes`, and the
//! merger (an RMS norm, then an MLP over four neighbouring patches side by side).
//!
//! Where the layouts differ (Ollama's file → llama.cpp's projector):
//!
//! - `v.patch_embd_0.weight`, `v.patch_embd_1.weight` → `v.patch_embd.weight`,
//!   `v.patch_embd.weight.1`;
//! - `v.merger.ln_q.weight` → `v.post_ln.weight`; `v.merger.mlp.{0,2}.*` → `mm.{0,2}.*`;
//! - `qwen25vl.vision.*` keys → `clip.vision.*`, with `fullatt_block_indexes` (a list of i32)
//!   becoming `n_wa_pattern` (its period);
//! - what Ollama's engine did without, llama.cpp's converter writes: the feed-forward width, an
//!   image size of 560, CLIP's mean and standard deviation, `clip.use_silu`.
//!
//! The blocks' own tensors (`v.blk.N.{ln1,ln2,attn_q,attn_k,attn_v,attn_out,ffn_gate,ffn_up,
//! ffn_down}`) have the same names in both.

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};

use crate::published::{clip_header, matrices_in_half, ClipHeader, Tower};

/// The sizes of the fixture's Qwen2.5-VL vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Qwen25VlTower {
    /// Side of a patch (the released models' 14).
    pub patch_size: u32,
    pub embd: u32,
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// The blocks that attend to the whole picture; the others attend within windows.
    pub full_attention: &'static [i32],
    /// Side of an attention window in pixels. llama.cpp's graph always uses 112 (it reads no
    /// window size for this projector), so the fixture has the released models' value.
    pub window_size: u32,
    /// Patches merged into one image token along each side.
    pub spatial_merge: u32,
}

/// The fixture's tower: 32 wide, two heads of 16 (M-RoPE's four sections of 4), three blocks of
/// which the middle one attends fully (a window-attention period of 2), 14-pixel patches. A
/// picture of 224×112 pixels is 16×8 patches, 8×4 = 32 image tokens, and two 112-pixel windows, so
/// both kinds of attention matter to the answer; one of 112×112 or smaller fits one window.
pub const QWEN25VL_TOWER: Qwen25VlTower = Qwen25VlTower {
    patch_size: 14,
    embd: 32,
    ffn: 64,
    blocks: 3,
    heads: 2,
    full_attention: &[1],
    window_size: 112,
    spatial_merge: 2,
};

/// The tower's tensors for a language model `text_embd` wide, drawn from a fixed seed.
fn qwen25vl_tower(text_embd: u64) -> Tower {
    let t = QWEN25VL_TOWER;
    let (e, f, p) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size));
    let merged = 4 * e;
    let mut tower = Tower::new(25);
    // The two frames' kernels are summed over a still picture: each gets half the variance.
    let bound = (3.0 / (3 * p * p) as f32).sqrt() * std::f32::consts::FRAC_1_SQRT_2;
    tower.add("v.patch_embd_0.weight", "v.patch_embd.weight", &[p, p, 3, e], bound, 0.0);
    tower.add("v.patch_embd_1.weight", "v.patch_embd.weight.1", &[p, p, 3, e], bound, 0.0);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}");
        tower.norm(&b("ln1.weight"), &b("ln1.weight"), e);
        for name in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            tower.linear(&b(name), &b(name), &[e, e]);
        }
        tower.norm(&b("ln2.weight"), &b("ln2.weight"), e);
        for (name, dims) in [("ffn_gate", [e, f]), ("ffn_up", [e, f]), ("ffn_down", [f, e])] {
            tower.linear(&b(name), &b(name), &dims);
        }
    }
    tower.norm("v.merger.ln_q.weight", "v.post_ln.weight", e);
    tower.linear("v.merger.mlp.0", "mm.0", &[merged, merged]);
    tower.linear("v.merger.mlp.2", "mm.2", &[merged, text_embd]);
    tower
}

/// Adds the tower to a Qwen2.5-VL file being written in Ollama's layout: its `qwen25vl.vision.*`
/// keys, with the types Ollama's converter writes, and its tensors under Ollama's names (matrices
/// in F16, vectors in F32). `text_embd`: the language model's width.
pub(crate) fn add_published_qwen25vl_tower(w: &mut GgufWriter, text_embd: u64) {
    let t = QWEN25VL_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("attention.head_count", t.heads),
        ("num_channels", 3),
        ("patch_size", t.patch_size),
        ("spatial_merge_size", t.spatial_merge),
        ("spatial_patch_size", t.patch_size),
        ("window_size", t.window_size),
        ("temporal_patch_size", 2),
    ] {
        w.set(&format!("qwen25vl.vision.{key}"), MetaValue::U32(value));
    }
    w.set("qwen25vl.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6));
    w.set("qwen25vl.vision.rope.freq_base", MetaValue::F32(10_000.0));
    w.set("qwen25vl.vision.fullatt_block_indexes", MetaValue::Array(ArrayValue::I32(t.full_attention.to_vec())));
    qwen25vl_tower(text_embd).write(w, false, matrices_in_half);
}

/// The mean and standard deviation of OpenAI's CLIP, which Qwen2.5-VL's image processor (and
/// Ollama's, which writes neither) normalises pictures with.
pub(crate) const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub(crate) const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The vision tower of [`crate::tiny_qwen25vl`]'s published layout as the separate projector
/// llama.cpp's converter writes for it with `--outtype f16` (`clip` architecture,
/// `qwen2.5vl_merger` projector, its tensor names, matrices and patch kernels in F16): the
/// reference a published file serving as its own projector must compute the same as.
/// `text_embd`: the language model's width (128 for `tiny_qwen25vl`).
pub fn qwen25vl_reference_projector(text_embd: u64) -> Vec<u8> {
    let t = QWEN25VL_TOWER;
    let period = t.full_attention[0] as u32 + 1;
    let mut w = clip_header(
        &ClipHeader {
            projector: "qwen2.5vl_merger",
            activation: "silu",
            // The converter's default: Qwen2.5-VL's configuration has no image size.
            image_size: 560,
            patch_size: t.patch_size,
            embd: t.embd,
            ffn: t.ffn,
            blocks: t.blocks,
            heads: t.heads,
            eps: 1e-6,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        },
        text_embd,
    );
    w.set("clip.vision.n_wa_pattern", MetaValue::U32(period));
    qwen25vl_tower(text_embd).write(&mut w, true, matrices_in_half);
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_projector_has_llama_cpps_names() {
        let g = corral_gguf::read_bytes(&qwen25vl_reference_projector(128)).unwrap();
        assert_eq!(g.get_str("clip.projector_type"), Some("qwen2.5vl_merger"));
        let dims = |name: &str| g.tensors.iter().find(|t| t.name == name).map(|t| (t.dims.clone(), t.kind.name()));
        assert_eq!(dims("v.patch_embd.weight.1"), Some((vec![14, 14, 3, 32], "F16")));
        assert_eq!(dims("v.blk.2.ffn_gate.weight"), Some((vec![32, 64], "F16")));
        assert_eq!(dims("v.blk.2.ffn_down.bias"), Some((vec![32], "F32")));
        assert_eq!(dims("mm.2.weight"), Some((vec![128, 128], "F16")));
        assert_eq!(dims("v.post_ln.weight"), Some((vec![32], "F32")));
        // Two kernels; three blocks of two norms and seven weights with their biases; the merger.
        assert_eq!(g.tensors.len(), 2 + 3 * (2 + 2 * 4 + 2 * 3) + 5);
        assert!(g.tensors.iter().all(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")));
    }

    #[test]
    fn the_published_tower_holds_the_references_bytes_under_ollamas_names() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let published = crate::tiny_qwen25vl(crate::Layout::Published, &tok, 1);
        let reference = qwen25vl_reference_projector(128);
        let (p, r) = (corral_gguf::read_bytes(&published).unwrap(), corral_gguf::read_bytes(&reference).unwrap());
        let data = |g: &corral_gguf::Gguf, bytes: &[u8], t: &corral_gguf::TensorInfo| {
            let start = (g.data_offset + t.offset) as usize;
            bytes[start..start + t.size as usize].to_vec()
        };
        let tower = qwen25vl_tower(128);
        for t in &tower.tensors {
            let find = |g: &corral_gguf::Gguf, name: &str| g.tensors.iter().find(|x| x.name == name).cloned().unwrap();
            let (a, b) = (find(&p, &t.ollama), find(&r, &t.clip));
            assert_eq!((&a.dims, a.kind), (&b.dims, b.kind), "{}", t.ollama);
            assert_eq!(data(&p, &published, &a), data(&r, &reference, &b), "{}", t.ollama);
        }
        let vision = p.tensors.iter().filter(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")).count();
        assert_eq!(vision, tower.tensors.len());
        for name in ["v.patch_embd_0.weight", "v.patch_embd_1.weight", "v.merger.ln_q.weight", "v.merger.mlp.0.bias"] {
            assert!(p.tensors.iter().any(|t| t.name == name), "{name}");
        }
        assert_eq!(p.get("qwen25vl.vision.fullatt_block_indexes"), Some(&MetaValue::Array(ArrayValue::I32(vec![1]))));
        assert_eq!(p.get("qwen25vl.vision.window_size"), Some(&MetaValue::U32(112)));
        assert_eq!(p.get("qwen25vl.vision.feed_forward_length"), None);
    }
}
