//! Qwen3-VL's vision tower at a test's scale, in the two layouts Corral meets it in: inside the
//! model file as Ollama published it ([`crate::tiny_qwen3vl`] and [`crate::tiny_qwen3vlmoe`] with
//! `Layout::Published`), and as the separate projector llama.cpp's converter writes for the same
//! checkpoint ([`qwen3vl_reference_projector`]). The values are the same in both (one seeded
//! generator, matrices rounded to F16); a published file serving as its own projector must
//! compute what the reference pair computes.
//!
//! The tower is Qwen3-VL's: a two-frame patch convolution with a bias, a learned position
//! embedding (a square grid, resized to the picture's), blocks with layer norms, a fused biased
//! QKV projection and a GELU feed-forward with biases, the merger (a layer norm, then an MLP over
//! four neighbouring patches side by side), and the deepstack mergers (the same over the output
//! of earlier blocks, normalised after the four patches are put side by side), whose outputs the
//! language model adds in its first layers.
//!
//! Where the layouts differ (Ollama's file → llama.cpp's projector):
//!
//! - the patch kernel `v.patch_embed.weight` `[p, p, 2, 3·width]` (both frames interleaved) →
//!   `v.patch_embd.weight` and `v.patch_embd.weight.1`, `[p, p, 3, width]` each; its bias
//!   `v.patch_embed.bias` → `v.patch_embd.bias`;
//! - `v.pos_embed.weight` (F16) → `v.position_embd.weight` (F32);
//! - per block `norm1`, `norm2`, `mlp.linear_fc1`, `mlp.linear_fc2` → `ln1`, `ln2`, `ffn_up`,
//!   `ffn_down`, and `attn_q`, `attn_k`, `attn_v` → the one `attn_qkv` (weights and biases);
//! - `v.merger.{norm,linear_fc1,linear_fc2}` → `v.post_ln`, `mm.0`, `mm.2`;
//! - `v.deepstack_merger.K.{norm,linear_fc1,linear_fc2}` (K: the rank in the list) →
//!   `v.deepstack.B.{norm,fc1,fc2}` (B: the block it reads);
//! - `<arch>.vision.*` keys → `clip.vision.*`, with `deepstack_visual_indexes` becoming one
//!   `is_deepstack_layers` flag per block; what Ollama's converter did not write, llama.cpp's
//!   does: the feed-forward width, the image size (the grid's side in pixels), `clip.use_gelu`.

use corral_gguf::{ArrayValue, GgufWriter, MetaValue};

use crate::published::{clip_header, matrices_in_half, put, ClipHeader, Tower, TowerTensor, HALF};

/// The sizes of the fixture's Qwen3-VL vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Qwen3VlTower {
    /// Side of a patch (the released models' 16).
    pub patch_size: u32,
    pub embd: u32,
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// Side of the square grid of learned positions (the released models' 48).
    pub grid: u32,
    /// The blocks whose output feeds a deepstack merger, one per deepstack layer of the language
    /// model.
    pub deepstack: &'static [i32],
}

/// The fixture's tower: 32 wide, two heads of 16 (four rotary sections of 4), four blocks of
/// which the third feeds the one deepstack merger (the language model's
/// `n_deepstack_layers` is 1), 8-pixel patches, a 6×6 position grid. A picture of 64×32 pixels
/// is 8×4 patches, 4×2 = 8 image tokens (the fewest llama.cpp makes for Qwen-VL), and its
/// positions are resized from the grid; one of 48×48 uses the grid as it is.
pub const QWEN3VL_TOWER: Qwen3VlTower = Qwen3VlTower {
    patch_size: 8,
    embd: 32,
    ffn: 64,
    blocks: 4,
    heads: 2,
    grid: 6,
    deepstack: &crate::random_arch2::QVL_DEEPSTACK,
};

/// The name of the fused QKV projection of `block` in both layouts (Ollama's file splits it).
fn qkv(block: u32) -> String {
    format!("v.blk.{block}.attn_qkv")
}

/// The tower's tensors for a language model `text_embd` wide, drawn from a fixed seed. The patch
/// kernel is kept in Ollama's (and the checkpoint's) layout, both frames interleaved, under its
/// published name; the QKV projections whole, under llama.cpp's.
fn qwen3vl_tower(text_embd: u64) -> Tower {
    let t = QWEN3VL_TOWER;
    let (e, f, p) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size));
    let merged = 4 * e;
    let mut tower = Tower::new(30);
    let layer_norm = |tower: &mut Tower, ollama: &str, clip: &str, n: u64| {
        tower.norm(&format!("{ollama}.weight"), &format!("{clip}.weight"), n);
        tower.add(&format!("{ollama}.bias"), &format!("{clip}.bias"), &[n], 0.02, 0.0);
    };
    // The two frames are summed over a still picture: each gets half the variance.
    let bound = (3.0 / (3 * p * p) as f32).sqrt() * std::f32::consts::FRAC_1_SQRT_2;
    tower.add("v.patch_embed.weight", "", &[p, p, 2, 3 * e], bound, 0.0);
    tower.add("v.patch_embed.bias", "v.patch_embd.bias", &[e], 0.02, 0.0);
    let positions = u64::from(t.grid * t.grid);
    tower.add("v.pos_embed.weight", "v.position_embd.weight", &[e, positions], 0.5, 0.0);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}");
        layer_norm(&mut tower, &b("norm1"), &b("ln1"), e);
        tower.linear(&qkv(i), &qkv(i), &[e, 3 * e]);
        tower.linear(&b("attn_out"), &b("attn_out"), &[e, e]);
        layer_norm(&mut tower, &b("norm2"), &b("ln2"), e);
        tower.linear(&b("mlp.linear_fc1"), &b("ffn_up"), &[e, f]);
        tower.linear(&b("mlp.linear_fc2"), &b("ffn_down"), &[f, e]);
    }
    layer_norm(&mut tower, "v.merger.norm", "v.post_ln", e);
    tower.linear("v.merger.linear_fc1", "mm.0", &[merged, merged]);
    tower.linear("v.merger.linear_fc2", "mm.2", &[merged, text_embd]);
    for (k, block) in t.deepstack.iter().enumerate() {
        let (ollama, clip) = (format!("v.deepstack_merger.{k}"), format!("v.deepstack.{block}"));
        layer_norm(&mut tower, &format!("{ollama}.norm"), &format!("{clip}.norm"), merged);
        tower.linear(&format!("{ollama}.linear_fc1"), &format!("{clip}.fc1"), &[merged, merged]);
        tower.linear(&format!("{ollama}.linear_fc2"), &format!("{clip}.fc2"), &[merged, text_embd]);
    }
    tower
}

/// Whether `t` is one of the fused QKV projections.
fn is_qkv(t: &TowerTensor) -> bool {
    t.ollama.contains(".attn_qkv.")
}

/// Adds the tower to a Qwen3-VL file (architecture `arch`, `qwen3vl` or `qwen3vlmoe`) being
/// written in Ollama's layout: its `<arch>.vision.*` keys, with the types Ollama's converter
/// writes, and its tensors under Ollama's names (matrices in F16, vectors in F32), each QKV
/// projection split into Q, K and V. `text_embd`: the language model's width.
pub(crate) fn add_published_qwen3vl_tower(w: &mut GgufWriter, arch: &str, text_embd: u64) {
    let t = QWEN3VL_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("attention.head_count", t.heads),
        ("num_channels", 3),
        ("patch_size", t.patch_size),
        ("spatial_merge_size", 2),
        ("temporal_patch_size", 2),
        // The released models' preprocessor limits, in pixels.
        ("shortest_edge", 65_536),
        ("longest_edge", 16_777_216),
    ] {
        w.set(&format!("{arch}.vision.{key}"), MetaValue::U32(value));
    }
    w.set(&format!("{arch}.vision.attention.layer_norm_epsilon"), MetaValue::F32(1e-6));
    w.set(&format!("{arch}.vision.rope.freq_base"), MetaValue::F32(10_000.0));
    w.set(&format!("{arch}.vision.deepstack_visual_indexes"), MetaValue::Array(ArrayValue::I32(t.deepstack.to_vec())));
    for key in ["image_mean", "image_std"] {
        w.set(&format!("{arch}.vision.{key}"), MetaValue::Array(ArrayValue::F32(vec![0.5; 3])));
    }
    for t in &qwen3vl_tower(text_embd).tensors {
        if !is_qkv(t) {
            put(w, &t.ollama, &t.dims, &t.values, matrices_in_half(t));
            continue;
        }
        // Q, K and V are the first, second and third thirds of the rows (or of the bias).
        let (last, rest) = t.dims.split_last().unwrap();
        let dims = [rest, &[last / 3]].concat();
        for (part, values) in ["attn_q", "attn_k", "attn_v"].iter().zip(t.values.chunks(t.values.len() / 3)) {
            put(w, &t.ollama.replace("attn_qkv", part), &dims, values, matrices_in_half(t));
        }
    }
}

/// The vision tower of the published layouts of [`crate::tiny_qwen3vl`] and
/// [`crate::tiny_qwen3vlmoe`] as the separate projector llama.cpp's converter writes for it with
/// `--outtype f16` (`clip` architecture, `qwen3vl_merger` projector, its tensor names, matrices
/// and both patch kernels in F16, the position embedding in F32): the reference a published
/// file serving as its own projector must compute the same as. `text_embd`: the language model's
/// width (256 for `tiny_qwen3vl`, 128 for `tiny_qwen3vlmoe`).
pub fn qwen3vl_reference_projector(text_embd: u64) -> Vec<u8> {
    let t = QWEN3VL_TOWER;
    let flags = (0..t.blocks as i32).map(|b| t.deepstack.contains(&b)).collect();
    let mut w = clip_header(
        &ClipHeader {
            projector: "qwen3vl_merger",
            activation: "gelu",
            // The converter's: the position grid's side in pixels.
            image_size: t.grid * t.patch_size,
            patch_size: t.patch_size,
            embd: t.embd,
            ffn: t.ffn,
            blocks: t.blocks,
            heads: t.heads,
            eps: 1e-6,
            mean: HALF,
            std: HALF,
        },
        text_embd,
    );
    w.set("clip.vision.spatial_merge_size", MetaValue::U32(2))
        .set("clip.vision.is_deepstack_layers", MetaValue::Array(ArrayValue::Bool(flags)));
    for tensor in &qwen3vl_tower(text_embd).tensors {
        if tensor.ollama != "v.patch_embed.weight" {
            let half = matrices_in_half(tensor) && tensor.clip != "v.position_embd.weight";
            put(&mut w, &tensor.clip, &tensor.dims, &tensor.values, half);
            continue;
        }
        // One kernel per frame: every other p×p piece of the interleaved one.
        let piece = (t.patch_size * t.patch_size) as usize;
        let dims = [tensor.dims[0], tensor.dims[1], 3, u64::from(t.embd)];
        for (frame, name) in ["v.patch_embd.weight", "v.patch_embd.weight.1"].iter().enumerate() {
            let values: Vec<f32> = tensor.values.chunks(piece).skip(frame).step_by(2).flatten().copied().collect();
            put(&mut w, name, &dims, &values, true);
        }
    }
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> corral_gguf::Gguf {
        corral_gguf::read_bytes(bytes).unwrap()
    }

    #[test]
    fn the_reference_projector_has_llama_cpps_names() {
        let g = read(&qwen3vl_reference_projector(256));
        assert_eq!(g.get_str("clip.projector_type"), Some("qwen3vl_merger"));
        let dims = |name: &str| g.tensors.iter().find(|t| t.name == name).map(|t| (t.dims.clone(), t.kind.name()));
        assert_eq!(dims("v.patch_embd.weight.1"), Some((vec![8, 8, 3, 32], "F16")));
        assert_eq!(dims("v.position_embd.weight"), Some((vec![32, 36], "F32")));
        assert_eq!(dims("v.blk.3.attn_qkv.weight"), Some((vec![32, 96], "F16")));
        assert_eq!(dims("v.blk.3.attn_qkv.bias"), Some((vec![96], "F32")));
        assert_eq!(dims("v.deepstack.2.fc2.weight"), Some((vec![128, 256], "F16")));
        assert_eq!(dims("v.deepstack.2.norm.bias"), Some((vec![128], "F32")));
        assert_eq!(dims("mm.2.bias"), Some((vec![256], "F32")));
        let flags = MetaValue::Array(ArrayValue::Bool(vec![false, false, true, false]));
        assert_eq!(g.get("clip.vision.is_deepstack_layers"), Some(&flags));
        // Two kernels and a bias, the positions; four blocks of four norm tensors and four
        // weights with biases; the merger and the deepstack merger, two norm tensors and two
        // weights with biases each.
        assert_eq!(g.tensors.len(), 4 + 4 * (4 + 2 * 4) + 2 * (2 + 2 * 2));
    }

    /// The published tower holds the reference's values: the same tensors under Ollama's names,
    /// the kernels interleaved and the QKV projections split.
    #[test]
    fn the_published_tower_holds_the_references_values_in_ollamas_layout() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let (published, reference) =
            (crate::tiny_qwen3vl(crate::Layout::Published, &tok, 1), qwen3vl_reference_projector(256));
        let (p, r) = (read(&published), read(&reference));
        let values = |g: &corral_gguf::Gguf, bytes: &[u8], name: &str| {
            let t = g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}"));
            let start = (g.data_offset + t.offset) as usize;
            corral_gguf::dequantize(t.kind, &bytes[start..start + t.size as usize], t.elements() as usize).unwrap()
        };
        let (ours, theirs) = (|n: &str| values(&p, &published, n), |n: &str| values(&r, &reference, n));
        let kernel = ours("v.patch_embed.weight");
        assert_eq!(kernel[..64], theirs("v.patch_embd.weight")[..64]);
        assert_eq!(kernel[64..128], theirs("v.patch_embd.weight.1")[..64]);
        assert_eq!(kernel[128..192], theirs("v.patch_embd.weight")[64..128]);
        let qkv =
            [ours("v.blk.1.attn_q.weight"), ours("v.blk.1.attn_k.weight"), ours("v.blk.1.attn_v.weight")].concat();
        assert_eq!(qkv, theirs("v.blk.1.attn_qkv.weight"));
        assert_eq!(ours("v.pos_embed.weight"), theirs("v.position_embd.weight"));
        assert_eq!(ours("v.deepstack_merger.0.linear_fc2.bias"), theirs("v.deepstack.2.fc2.bias"));
        assert_eq!(ours("v.merger.norm.weight"), theirs("v.post_ln.weight"));
        let kind = |name: &str| p.tensors.iter().find(|t| t.name == name).unwrap().kind.name();
        assert_eq!(
            (kind("v.patch_embed.weight"), kind("v.pos_embed.weight"), kind("v.blk.0.attn_q.bias")),
            ("F16", "F16", "F32")
        );
        let vision = p.tensors.iter().filter(|t| t.name.starts_with("v.")).count();
        // One kernel instead of two; per block Q, K, V instead of QKV.
        assert_eq!(vision, r.tensors.len() - 1 + 4 * 4);
        assert!(p.tensors.iter().all(|t| !t.name.starts_with("mm.")));
        let indexes = MetaValue::Array(ArrayValue::I32(vec![2]));
        assert_eq!(p.get("qwen3vl.vision.deepstack_visual_indexes"), Some(&indexes));
        assert_eq!(p.get("qwen3vl.vision.feed_forward_length"), None);
    }
}
