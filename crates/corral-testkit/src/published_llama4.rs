//! Llama 4's vision side at a test's scale, in the two layouts Corral meets it in: inside the
//! model file as Ollama published it ([`crate::tiny_llama4`] with `Layout::Published`), and as the
//! separate projector llama.cpp's converter writes for the same checkpoint
//! ([`llama4_reference_projector`]). The values come from one seeded generator, drawn after the
//! text model's (whose bytes do not change), the matrices in F16 in both files.
//!
//! The tower: the picture cut into patches and projected by one linear layer (an "unfold
//! convolution", stored 2-D as `[3·p·p, e]` in both layouts), a class embedding appended after
//! the patches, learned position embeddings, a layer norm before and after the blocks, blocks of
//! layer norms, biased Q/K/V/O with 2-D RoPE and a biased GELU MLP; then the pixel shuffle
//! (2×2 neighbouring patches side by side) into a two-layer GELU MLP without biases, and the
//! projector, one linear layer into the language model's width. Where the layouts differ
//! (Ollama's → llama.cpp's):
//!
//! - `v.patch_embedding` → `v.patch_embd`, `v.class_embedding` → `v.class_embd`,
//!   `v.positional_embedding_vlm` → `v.position_embd.weight`, `v.layernorm_{pre,post}` →
//!   `v.{pre,post}_ln`; in the blocks `attn_norm`, `ffn_norm`, `attn_output`, `mlp.fc{1,2}` →
//!   `ln1`, `ln2`, `attn_out`, `ffn_{up,down}`; `v.vision_adapter.mlp.fc{1,2}` →
//!   `mm.model.mlp.{1,2}`, `mm.linear_1` → `mm.model.fc`;
//! - `llama4.vision.*` keys → `clip.vision.*`: the epsilon's key loses its `attention.`, the pixel
//!   shuffle ratio (0.5) becomes a scale factor (2), and llama.cpp's converter adds the image
//!   normalisation (0.5 and 0.5) and GELU.
//!
//! Q and K keep their rows: both converters copy the checkpoint's, whose RoPE already turns
//! adjacent pairs as `clip.cpp` does. The position embeddings are F32 in both (Ollama's converter
//! forces them so).

use corral_gguf::{GgufWriter, MetaValue};

use crate::published::{clip_header, matrices_in_half, ClipHeader, Tower, TowerTensor, HALF};

/// The sizes of the fixture's Llama 4 vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Llama4Tower {
    /// The side of a tile: `mtmd` cuts larger pictures into tiles of this size (up to 3×3, and an
    /// overview of the whole), each its own run of the tower.
    pub image_size: u32,
    pub patch_size: u32,
    pub embd: u32,
    /// The blocks' MLP width, which Llama 4 ties to the pixel shuffle's: `embd × scale²`.
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// Patches shuffled into one image token along each side (1 / `pixel_shuffle_ratio`).
    pub scale: u32,
    /// The width of the adapter MLP's output, the projector's input.
    pub adapter: u32,
}

/// 32 wide in two heads of 16 (each axis of the 2-D RoPE turning four pairs), two blocks,
/// 14-pixel patches on 56-pixel tiles: 4×4 patches, shuffled 2×2 into 4 image tokens a tile.
pub const LLAMA4_TOWER: Llama4Tower =
    Llama4Tower { image_size: 56, patch_size: 14, embd: 32, ffn: 128, blocks: 2, heads: 2, scale: 2, adapter: 48 };

/// Ollama's converter stores this one in F32 whatever its shape; llama.cpp's projector keeps it so.
const POSITIONS: &str = "v.positional_embedding_vlm";

/// The tower's tensors for a language model `text_embd` wide, drawn from a fixed seed.
fn llama4_tower(text_embd: u64) -> Tower {
    let t = LLAMA4_TOWER;
    let (e, f, p, a) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size), u64::from(t.adapter));
    let positions = u64::from(t.image_size / t.patch_size).pow(2) + 1;
    let shuffled = e * u64::from(t.scale).pow(2);
    let unit = |fan_in: u64| (3.0 / fan_in as f32).sqrt();
    let mut tower = Tower::new(44);
    tower.add("v.patch_embedding.weight", "v.patch_embd.weight", &[3 * p * p, e], unit(3 * p * p), 0.0);
    tower.add("v.class_embedding", "v.class_embd", &[e], 0.5, 0.0);
    tower.add(POSITIONS, "v.position_embd.weight", &[e, positions], 0.5, 0.0);
    layer_norm(&mut tower, "v.layernorm_pre", "v.pre_ln", e);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}");
        layer_norm(&mut tower, &b("attn_norm"), &b("ln1"), e);
        for (ollama, clip) in
            [("attn_q", "attn_q"), ("attn_k", "attn_k"), ("attn_v", "attn_v"), ("attn_output", "attn_out")]
        {
            tower.linear(&b(ollama), &b(clip), &[e, e]);
        }
        layer_norm(&mut tower, &b("ffn_norm"), &b("ln2"), e);
        tower.linear(&b("mlp.fc1"), &b("ffn_up"), &[e, f]);
        tower.linear(&b("mlp.fc2"), &b("ffn_down"), &[f, e]);
    }
    layer_norm(&mut tower, "v.layernorm_post", "v.post_ln", e);
    tower.add("v.vision_adapter.mlp.fc1.weight", "mm.model.mlp.1.weight", &[shuffled, a], unit(shuffled), 0.0);
    tower.add("v.vision_adapter.mlp.fc2.weight", "mm.model.mlp.2.weight", &[a, a], unit(a), 0.0);
    tower.add("mm.linear_1.weight", "mm.model.fc.weight", &[a, text_embd], unit(a), 0.0);
    tower
}

/// A layer norm's weight (near one) and bias (small).
fn layer_norm(tower: &mut Tower, ollama: &str, clip: &str, n: u64) {
    tower.norm(&format!("{ollama}.weight"), &format!("{clip}.weight"), n);
    tower.add(&format!("{ollama}.bias"), &format!("{clip}.bias"), &[n], 0.02, 0.0);
}

/// What both layouts store in F16: the matrices but the position embeddings.
fn in_half(t: &TowerTensor) -> bool {
    matrices_in_half(t) && t.ollama != POSITIONS
}

/// Adds the tower to a Llama 4 file being written in Ollama's layout: its keys, with the types
/// Ollama's converter writes (integers as U32, the rest as F32), and its tensors under Ollama's
/// names. `text_embd`: the language model's width.
pub(crate) fn add_published_llama4_tower(w: &mut GgufWriter, text_embd: u64) {
    let t = LLAMA4_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("feed_forward_length", t.ffn),
        ("attention.head_count", t.heads),
        ("image_size", t.image_size),
        ("patch_size", t.patch_size),
    ] {
        w.set(&format!("llama4.vision.{key}"), MetaValue::U32(value));
    }
    w.set("llama4.vision.rope.freq_base", MetaValue::F32(10_000.0));
    w.set("llama4.vision.layer_norm_epsilon", MetaValue::F32(1e-5));
    w.set("llama4.vision.pixel_shuffle_ratio", MetaValue::F32(1.0 / t.scale as f32));
    llama4_tower(text_embd).write(w, false, in_half);
}

/// The vision tower of [`crate::tiny_llama4`]'s published layout as the separate projector
/// llama.cpp's converter writes for it with `--outtype f16` (`clip` architecture, `llama4`
/// projector, its tensor names, the matrices in F16 but the position embeddings), for a language
/// model `text_embd` wide (64 for `tiny_llama4`): the reference a published file serving as its
/// own projector must compute the same as.
pub fn llama4_reference_projector(text_embd: u64) -> Vec<u8> {
    let t = LLAMA4_TOWER;
    let mut w = clip_header(
        &ClipHeader {
            projector: "llama4",
            activation: "gelu",
            image_size: t.image_size,
            patch_size: t.patch_size,
            embd: t.embd,
            ffn: t.ffn,
            blocks: t.blocks,
            heads: t.heads,
            eps: 1e-5,
            mean: HALF,
            std: HALF,
        },
        text_embd,
    );
    w.set("clip.vision.projector.scale_factor", MetaValue::U32(t.scale));
    llama4_tower(text_embd).write(&mut w, true, in_half);
    w.to_bytes()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::random_arch::testing::{data, find};

    #[test]
    fn the_reference_projector_has_llama_cpps_names_and_types() {
        let g = corral_gguf::read_bytes(&llama4_reference_projector(64)).unwrap();
        assert_eq!(g.get_str("clip.projector_type"), Some("llama4"));
        let dims = |name: &str| (find(&g, name).dims.clone(), find(&g, name).kind.name());
        assert_eq!(dims("v.patch_embd.weight"), (vec![588, 32], "F16"));
        assert_eq!(dims("v.class_embd"), (vec![32], "F32"));
        assert_eq!(dims("v.position_embd.weight"), (vec![32, 17], "F32"));
        assert_eq!(dims("v.blk.1.ffn_up.weight"), (vec![32, 128], "F16"));
        assert_eq!(dims("v.blk.1.attn_out.bias"), (vec![32], "F32"));
        assert_eq!(dims("mm.model.mlp.1.weight"), (vec![128, 48], "F16"));
        assert_eq!(dims("mm.model.fc.weight"), (vec![48, 64], "F16"));
        // Three embeddings, two norms; two blocks of two norms and six linear layers with biases;
        // the adapter's two layers and the projector.
        assert_eq!(g.tensors.len(), 3 + 4 + 2 * (4 + 2 * 6) + 3);
    }

    #[test]
    fn the_published_tower_holds_the_references_bytes_after_the_same_text() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let published = crate::tiny_llama4(crate::Layout::Published, &tok, 1);
        let reference = llama4_reference_projector(64);
        let (p, r) = (corral_gguf::read_bytes(&published).unwrap(), corral_gguf::read_bytes(&reference).unwrap());
        let tower = llama4_tower(64);
        for t in &tower.tensors {
            let (a, b) = (find(&p, &t.ollama), find(&r, &t.clip));
            assert_eq!((&a.dims, a.kind), (&b.dims, b.kind), "{}", t.ollama);
            assert_eq!(data(&p, &published, a), data(&r, &reference, b), "{}", t.ollama);
        }
        let vision = p.tensors.iter().filter(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")).count();
        assert_eq!(vision, tower.tensors.len());
        assert_eq!(p.get("llama4.vision.pixel_shuffle_ratio"), Some(&MetaValue::F32(0.5)));
        assert_eq!(p.get("llama4.vision.layer_norm_epsilon"), Some(&MetaValue::F32(1e-5)));
    }
}
