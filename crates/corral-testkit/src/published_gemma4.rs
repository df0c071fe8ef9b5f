//! Gemma 4's vision side at a test's scale, in the two layouts Corral meets it in: inside the
//! model file as Ollama published it ([`crate::tiny_gemma4`] with `Layout::Published`), and as the
//! separate projector llama.cpp's `gemma4v` loader reads ([`gemma4_reference_projector`], which
//! also holds the audio tower of `crate::published_gemma4_audio`). The values come from one
//! seeded generator, drawn after the text model's (whose bytes do not change), the matrices in
//! F16 in both files.
//!
//! The tower: patches projected by a bias-free convolution, a learned position table per picture
//! axis (`[e, positions, 2]`), blocks of RMS norms around attention (bias-free Q/K/V/O, per-head
//! Q and K norms, a 2-D NEOX RoPE computed by `clip.cpp`) and a gated GELU MLP, each block's output
//! scaled by one number; then average pooling, a per-channel standardisation (`v.std_bias`,
//! `v.std_scale`) and the projector, one linear layer into the language model's width. Every
//! linear layer has "clippable" bounds: four one-number tensors beside its weight.
//!
//! Ollama's converter already writes `clip.cpp`'s tensor names, so the layouts differ only in
//! keys (`gemma4.vision.*` → `clip.vision.*`, plus the settings llama.cpp's header states) and in
//! `v.clamp_data`, Ollama's own packed copy of the bounds, which `clip.cpp` does not read.

use corral_gguf::{GgufWriter, MetaValue};

use crate::published::{clip_header, matrices_in_half, put, ClipHeader, Tower};

/// The sizes of the fixture's Gemma 4 vision tower.
#[derive(Debug, Clone, Copy)]
pub struct Gemma4Tower {
    pub patch_size: u32,
    pub embd: u32,
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// Patches averaged into one image token along each side (`projector.scale_factor`).
    pub merge: u32,
    /// Rows of each axis's position table: the most patches a picture may have along a side.
    pub positions: u32,
}

/// 32 wide in two heads of 16 (each picture axis turning four pairs), two blocks, 4-pixel patches
/// pooled 2×2; position tables long enough for the largest picture `mtmd` sizes for it.
pub const GEMMA4_TOWER: Gemma4Tower =
    Gemma4Tower { patch_size: 4, embd: 32, ffn: 64, blocks: 2, heads: 2, merge: 2, positions: 256 };

/// The picture size Ollama's loader states (`clip.cpp` sizes pictures itself for this projector).
const IMAGE_SIZE: u32 = 224;

/// The linear layers of a block, in the order `v.clamp_data` lists their bounds.
const LINEARS: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_out", "ffn_gate", "ffn_up", "ffn_down"];

/// A linear layer's bounds, in the order `v.clamp_data` lists them, each with its centre: wide
/// enough to pass most activations, narrow enough to cut some.
const BOUNDS: [(&str, f32); 4] = [("input_min", -6.0), ("input_max", 6.0), ("output_min", -6.0), ("output_max", 6.0)];

/// The projector's stem.
const PROJECTOR: &str = "mm.input_projection";

/// The tower's tensors for a language model `text_embd` wide, drawn from a fixed seed; Ollama's
/// names are llama.cpp's.
fn gemma4_tower(text_embd: u64) -> Tower {
    let t = GEMMA4_TOWER;
    let (e, f, p) = (u64::from(t.embd), u64::from(t.ffn), u64::from(t.patch_size));
    let head_dim = e / u64::from(t.heads);
    let mut tower = Tower::new(45);
    let mut add = |name: &str, dims: &[u64], scale: f32, offset: f32| tower.add(name, name, dims, scale, offset);
    add("v.patch_embd.weight", &[p, p, 3, e], (3.0 / (3 * p * p) as f32).sqrt(), 0.0);
    add("v.position_embd.weight", &[e, u64::from(t.positions), 2], 0.5, 0.0);
    for i in 0..t.blocks {
        let b = |part: &str| format!("v.blk.{i}.{part}");
        let matrix = |name: &str| match name {
            "ffn_gate" | "ffn_up" => [e, f],
            "ffn_down" => [f, e],
            _ => [e, e],
        };
        for part in ["ln1", "attn_q_norm", "attn_k_norm", "attn_post_norm", "ln2", "ffn_post_norm"] {
            let n = if part.starts_with("attn_q") || part.starts_with("attn_k") { head_dim } else { e };
            add(&b(&format!("{part}.weight")), &[n], 0.2, 1.0);
        }
        for linear in LINEARS {
            let dims = matrix(linear);
            add(&b(&format!("{linear}.weight")), &dims, (3.0 / dims[0] as f32).sqrt(), 0.0);
            bounds(&mut add, &b(linear));
        }
        add(&b("out_scale.weight"), &[1], 0.2, 1.0);
    }
    add("v.std_bias", &[e], 0.1, 0.0);
    add("v.std_scale", &[e], 0.2, 1.0);
    add(&format!("{PROJECTOR}.weight"), &[e, text_embd], (3.0 / e as f32).sqrt(), 0.0);
    bounds(&mut add, PROJECTOR);
    tower
}

/// The four bounds of the linear layer `stem` (the audio tower's layers have the same).
pub(crate) fn bounds(add: &mut impl FnMut(&str, &[u64], f32, f32), stem: &str) {
    for (suffix, centre) in BOUNDS {
        add(&format!("{stem}.{suffix}"), &[1], 1.0, centre);
    }
}

/// Ollama's `v.clamp_data`: every block's bounds, layer by layer in [`LINEARS`] order, then the
/// projector's.
fn clamp_data(tower: &Tower) -> Vec<f32> {
    let stems = (0..GEMMA4_TOWER.blocks)
        .flat_map(|i| LINEARS.iter().map(move |l| format!("v.blk.{i}.{l}")))
        .chain([PROJECTOR.to_string()]);
    let value = |name: String| tower.tensors.iter().find(|t| t.ollama == name).map(|t| t.values[0]);
    stems.flat_map(|stem| BOUNDS.map(|(suffix, _)| value(format!("{stem}.{suffix}")).unwrap_or(0.0))).collect()
}

/// Adds the tower to a Gemma 4 file being written in Ollama's layout: its keys, with the types
/// Ollama's converter writes, and its tensors. `text_embd`: the language model's width.
pub(crate) fn add_published_gemma4_tower(w: &mut GgufWriter, text_embd: u64) {
    let t = GEMMA4_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("attention.head_count", t.heads),
        ("feed_forward_length", t.ffn),
        ("patch_size", t.patch_size),
        ("num_channels", 3),
        ("projector.scale_factor", t.merge),
    ] {
        w.set(&format!("gemma4.vision.{key}"), MetaValue::U32(value));
    }
    w.set("gemma4.vision.attention.layer_norm_epsilon", MetaValue::F32(1e-6));
    let tower = gemma4_tower(text_embd);
    tower.write(w, false, matrices_in_half);
    let packed = clamp_data(&tower);
    put(w, "v.clamp_data", &[packed.len() as u64], &packed, false);
}

/// Both towers of [`crate::tiny_gemma4`]'s published layout as the one projector llama.cpp's
/// converter writes for Gemma 4, for a language model `text_embd` wide (64 for `tiny_gemma4`):
/// the reference a published file serving as its own projector must compute the same as.
///
/// `clip` architecture, the matrices in F16; the vision tower as `clip.cpp`'s `gemma4v` reads it
/// (the picture normalisation of none that Gemma 4's tower expects), the audio tower as its
/// `gemma4a` does (`crate::published_gemma4_audio`). With two towers the projector types are
/// stated per modality (`clip.vision.projector_type`, `clip.audio.projector_type`): `clip.cpp`
/// would apply a `clip.projector_type` to both.
pub fn gemma4_reference_projector(text_embd: u64) -> Vec<u8> {
    let t = GEMMA4_TOWER;
    let header = ClipHeader {
        projector: "gemma4v",
        activation: "gelu",
        image_size: IMAGE_SIZE,
        patch_size: t.patch_size,
        embd: t.embd,
        ffn: t.ffn,
        blocks: t.blocks,
        heads: t.heads,
        eps: 1e-6,
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    // The shared header, its projector type moved under the vision tower's keys.
    let shared = corral_gguf::read_bytes(&clip_header(&header, text_embd).to_bytes()).expect("a GGUF");
    let mut w = GgufWriter::new();
    for (key, value) in &shared.metadata {
        w.set(if key == "clip.projector_type" { "clip.vision.projector_type" } else { key }, value.clone());
    }
    w.set("clip.vision.projector.scale_factor", MetaValue::U32(t.merge));
    gemma4_tower(text_embd).write(&mut w, true, matrices_in_half);
    crate::published_gemma4_audio::add_reference_gemma4_audio(&mut w, text_embd);
    w.to_bytes()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::random_arch::testing::{data, find};

    /// A vision tensor: the tower's (`v.*`) or its projector's (`mm.*` but not `mm.a.*`).
    fn vision(name: &str) -> bool {
        name.starts_with("v.") || (name.starts_with("mm.") && !name.starts_with("mm.a."))
    }

    #[test]
    fn the_reference_projector_has_llama_cpps_names_and_types() {
        let g = corral_gguf::read_bytes(&gemma4_reference_projector(64)).unwrap();
        assert_eq!(g.get_str("clip.vision.projector_type"), Some("gemma4v"));
        assert_eq!(g.get("clip.projector_type"), None);
        let dims = |name: &str| (find(&g, name).dims.clone(), find(&g, name).kind.name());
        assert_eq!(dims("v.patch_embd.weight"), (vec![4, 4, 3, 32], "F16"));
        assert_eq!(dims("v.position_embd.weight"), (vec![32, 256, 2], "F16"));
        assert_eq!(dims("v.blk.1.attn_k_norm.weight"), (vec![16], "F32"));
        assert_eq!(dims("v.blk.1.ffn_down.weight"), (vec![64, 32], "F16"));
        assert_eq!(dims("v.blk.1.ffn_down.output_max"), (vec![1], "F32"));
        assert_eq!(dims("mm.input_projection.weight"), (vec![32, 64], "F16"));
        // Two embeddings; two blocks of six norms, seven linear layers with four bounds each and
        // a scale; the standardisation, the projector and its bounds. (The audio tower's follow.)
        assert_eq!(g.tensors.iter().filter(|t| vision(&t.name)).count(), 2 + 2 * (6 + 7 * 5 + 1) + 2 + 5);
    }

    #[test]
    fn the_published_tower_holds_the_references_bytes_after_the_same_text() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let published = crate::tiny_gemma4(crate::Layout::Published, &tok, 1);
        let reference = gemma4_reference_projector(64);
        let (p, r) = (corral_gguf::read_bytes(&published).unwrap(), corral_gguf::read_bytes(&reference).unwrap());
        let tower = gemma4_tower(64);
        for t in &tower.tensors {
            let (a, b) = (find(&p, &t.ollama), find(&r, &t.clip));
            assert_eq!((&a.dims, a.kind), (&b.dims, b.kind), "{}", t.ollama);
            assert_eq!(data(&p, &published, a), data(&r, &reference, b), "{}", t.ollama);
        }
        // The tower's tensors and Ollama's packed bounds, besides the audio tower's.
        assert_eq!(p.tensors.iter().filter(|t| vision(&t.name)).count(), tower.tensors.len() + 1);
        let packed = find(&p, "v.clamp_data");
        assert_eq!(packed.dims, [(2 * 7 + 1) * 4]);
        let first = f32::from_le_bytes(data(&p, &published, packed)[..4].try_into().unwrap());
        assert_eq!(first, tower.tensors.iter().find(|t| t.ollama == "v.blk.0.attn_q.input_min").unwrap().values[0]);
    }
}
