//! Gemma 4's audio side at a test's scale, in the two layouts Corral meets it in: inside the
//! model file as Ollama published it ([`crate::tiny_gemma4`] with `Layout::Published`), and in
//! the separate projector llama.cpp's converter writes, beside the vision tower
//! ([`crate::gemma4_reference_projector`]), which `clip.cpp` reads as a `gemma4a` projector. The
//! values come from their own seeded generator, drawn after the text model and the vision tower
//! (whose bytes do not change); both files store them with the same types.
//!
//! The tower is a Conformer over a 128-bin log-mel spectrogram. A stem of two 3×3 convolutions of
//! stride 2 (each followed by a LayerNorm over its channels and a ReLU) quarters time and
//! frequency, and its flattened output is projected to the tower's width. Each block then runs a
//! half-step feed-forward layer, chunked self-attention with relative positions (a per-dimension
//! scale on the queries, a projection of `clip.cpp`'s sinusoidal table), a light convolution
//! module (GLU, a depthwise convolution of kernel 5, SiLU), a second half-step feed-forward layer
//! and a closing norm, all with RMS norms. A linear layer with a bias leaves the tower, and the
//! projector (a weightless RMS norm, then one matrix) reaches the language model's width. The
//! blocks' linear layers are "clippable": four one-number bounds beside each weight.
//!
//! Unlike the vision tower's, some tensors change names between the layouts (three of the
//! tower's, four of each block's), two of them taking names that others give up: see
//! [`gemma4_audio_tower`]. Ollama's converter keeps the stem's convolution kernels and the
//! depthwise kernels in F32, every other matrix in F16 and every vector in F32; the reference
//! keeps the same types (`ggml_ssm_conv`, which runs the depthwise kernels, reads F32 only).

use corral_gguf::{GgufWriter, MetaValue};

use crate::published::{matrices_in_half, Tower, TowerTensor};
use crate::published_gemma4::bounds;

/// The sizes of the fixture's Gemma 4 audio tower.
#[derive(Debug, Clone, Copy)]
pub struct Gemma4AudioTower {
    /// Output channels of the stem's two convolutions.
    pub channels: [u32; 2],
    /// The Conformer's width.
    pub embd: u32,
    /// The feed-forward layers' inner width (four times `embd`, as Ollama's converter states it).
    pub ffn: u32,
    pub blocks: u32,
    pub heads: u32,
    /// The width of the tower's output projection, the projector's input.
    pub output: u32,
}

/// 32 wide in two heads of 16 (`clip.cpp` builds its sinusoidal position table `embd` wide, half
/// sines and half cosines, and splits its projection into the heads: `embd` is even and the heads
/// tile it), two blocks; stems of 8 and then 4 channels (unequal, so that a kernel stored with its
/// channel axes swapped does not load), whose 4 × 128 / 4 = 128 flattened features feed the input
/// projection; an output 48 wide, neither the tower's width nor the language model's.
pub const GEMMA4_AUDIO_TOWER: Gemma4AudioTower =
    Gemma4AudioTower { channels: [8, 4], embd: 32, ffn: 128, blocks: 2, heads: 2, output: 48 };

/// The spectrogram's bins: what `mtmd` computes for Gemma 4 and Ollama's engine assumes.
const MEL_BINS: u32 = 128;

/// The depthwise convolution's kernel, which `clip.cpp`'s graph hard-codes.
const CONV_KERNEL: u32 = 5;

/// The generator's seed (the vision tower's is 45).
const SEED: u64 = 46;

/// The projector's matrix, under the same name in both layouts.
const PROJECTOR: &str = "mm.a.input_projection.weight";

/// The tower's tensors for a language model `text_embd` wide, in the order the graph uses them.
///
/// Ollama's names are llama.cpp's except for the stem's projection (`a.pre_encode.out`, which is
/// `clip.cpp`'s `a.input_projection`), the output projection (`mm.a.fc`, which is `clip.cpp`'s
/// `a.pre_encode.out`) and, in each block, the attention's norms (`ln1`, `ln2`: `attn_pre_norm`,
/// `attn_post_norm`), the closing norm (`layer_pre_norm`: `ln2`) and the relative-position
/// projection (`linear_pos`: `attn_k_rel`).
fn gemma4_audio_tower(text_embd: u64) -> Tower {
    let t = GEMMA4_AUDIO_TOWER;
    let (h, o) = (u64::from(t.embd), u64::from(t.output));
    let mut tower = Tower::new(SEED);
    let mut inputs = 1;
    for (i, channels) in t.channels.map(u64::from).into_iter().enumerate() {
        let kernel = format!("a.conv1d.{i}.weight");
        let fan_in = 9 * inputs;
        tower.add(&kernel, &kernel, &[3, 3, inputs, channels], (3.0 / fan_in as f32).sqrt(), 0.0);
        let norm = format!("a.conv1d.{i}.norm.weight");
        tower.norm(&norm, &norm, channels);
        inputs = channels;
    }
    // Channels times the frequencies left after two halvings.
    let flat = inputs * u64::from(MEL_BINS) / 4;
    tower.add("a.pre_encode.out.weight", "a.input_projection.weight", &[flat, h], (3.0 / flat as f32).sqrt(), 0.0);
    for i in 0..t.blocks {
        add_block(&mut tower, i);
    }
    tower.linear("mm.a.fc", "a.pre_encode.out", &[h, o]);
    tower.add(PROJECTOR, PROJECTOR, &[o, text_embd], (3.0 / o as f32).sqrt(), 0.0);
    tower
}

/// Block `i`'s tensors.
fn add_block(tower: &mut Tower, i: u32) {
    let t = GEMMA4_AUDIO_TOWER;
    let (h, f) = (u64::from(t.embd), u64::from(t.ffn));
    let name = |part: &str| format!("a.blk.{i}.{part}");
    let norm = |tower: &mut Tower, ollama: &str, clip: &str| {
        tower.norm(&name(&format!("{ollama}.weight")), &name(&format!("{clip}.weight")), h);
    };
    // A weight keeping unit variance; with its bounds when `clippable`.
    let matrix = |tower: &mut Tower, ollama: &str, clip: &str, dims: [u64; 2], clippable: bool| {
        let weight = (name(&format!("{ollama}.weight")), name(&format!("{clip}.weight")));
        tower.add(&weight.0, &weight.1, &dims, (3.0 / dims[0] as f32).sqrt(), 0.0);
        if clippable {
            bounds(&mut |n: &str, d: &[u64], scale: f32, centre: f32| tower.add(n, n, d, scale, centre), &name(ollama));
        }
    };
    // A half-step feed-forward layer: the first, or (`suffix` "_1") the second.
    let ffn = |tower: &mut Tower, suffix: &str| {
        let part = |stem: &str| format!("{stem}{suffix}");
        norm(tower, &part("ffn_norm"), &part("ffn_norm"));
        matrix(tower, &part("ffn_up"), &part("ffn_up"), [h, f], true);
        matrix(tower, &part("ffn_down"), &part("ffn_down"), [f, h], true);
        norm(tower, &part("ffn_post_norm"), &part("ffn_post_norm"));
    };
    ffn(tower, "");
    norm(tower, "ln1", "attn_pre_norm");
    for part in ["attn_q", "attn_k", "attn_v"] {
        matrix(tower, part, part, [h, h], true);
    }
    let scale = name("per_dim_scale.weight");
    tower.add(&scale, &scale, &[h / u64::from(t.heads)], 0.2, 1.0);
    matrix(tower, "linear_pos", "attn_k_rel", [h, h], false);
    matrix(tower, "attn_out", "attn_out", [h, h], true);
    norm(tower, "ln2", "attn_post_norm");
    // The light convolution module: `conv_norm` before it, `norm_conv` after the depthwise kernel.
    norm(tower, "conv_norm", "conv_norm");
    matrix(tower, "conv_pw1", "conv_pw1", [h, 2 * h], true);
    let kernel = name("conv_dw.weight");
    let taps = u64::from(CONV_KERNEL);
    tower.add(&kernel, &kernel, &[taps, h], (3.0 / taps as f32).sqrt(), 0.0);
    norm(tower, "norm_conv", "norm_conv");
    matrix(tower, "conv_pw2", "conv_pw2", [h, h], true);
    ffn(tower, "_1");
    norm(tower, "layer_pre_norm", "ln2");
}

/// Matrices in F16, except the convolution kernels; vectors in F32: what Ollama's converter
/// writes for the audio tower.
fn audio_in_half(t: &TowerTensor) -> bool {
    matrices_in_half(t) && !t.ollama.starts_with("a.conv1d.") && !t.ollama.contains(".conv_dw.")
}

/// Adds the tower to a Gemma 4 file being written in Ollama's layout: the keys Ollama's converter
/// writes, with its types, and the tensors under its names. `text_embd`: the language model's
/// width.
pub(crate) fn add_published_gemma4_audio(w: &mut GgufWriter, text_embd: u64) {
    let t = GEMMA4_AUDIO_TOWER;
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("feed_forward_length", t.ffn),
        ("attention.head_count", t.heads),
        ("conv_kernel_size", CONV_KERNEL),
    ] {
        w.set(&format!("gemma4.audio.{key}"), MetaValue::U32(value));
    }
    w.set("gemma4.audio.attention.layer_norm_epsilon", MetaValue::F32(1e-6));
    gemma4_audio_tower(text_embd).write(w, false, audio_in_half);
}

/// Adds the tower to a projector being written in llama.cpp's layout: `clip.cpp`'s audio keys
/// (its own projector type beside the vision tower's, the spectrogram's bins, the language
/// model's width `text_embd` as the projection's) and the tensors under its names.
pub(crate) fn add_reference_gemma4_audio(w: &mut GgufWriter, text_embd: u64) {
    let t = GEMMA4_AUDIO_TOWER;
    w.set("clip.has_audio_encoder", MetaValue::Bool(true));
    w.set("clip.audio.projector_type", MetaValue::String("gemma4a".into()));
    for (key, value) in [
        ("block_count", t.blocks),
        ("embedding_length", t.embd),
        ("feed_forward_length", t.ffn),
        ("attention.head_count", t.heads),
        ("num_mel_bins", MEL_BINS),
        ("projection_dim", text_embd as u32),
    ] {
        w.set(&format!("clip.audio.{key}"), MetaValue::U32(value));
    }
    w.set("clip.audio.attention.layer_norm_epsilon", MetaValue::F32(1e-6));
    gemma4_audio_tower(text_embd).write(w, true, audio_in_half);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_arch::testing::{data, find};

    fn audio(name: &str) -> bool {
        name.starts_with("a.") || name.starts_with("mm.a.")
    }

    #[test]
    fn the_reference_has_llama_cpps_audio_names_and_types() {
        let g = corral_gguf::read_bytes(&crate::gemma4_reference_projector(64)).unwrap();
        assert_eq!(g.get_str("clip.audio.projector_type"), Some("gemma4a"));
        assert_eq!(g.get("clip.has_audio_encoder"), Some(&MetaValue::Bool(true)));
        assert_eq!(g.get("clip.audio.num_mel_bins"), Some(&MetaValue::U32(128)));
        assert_eq!(g.get("clip.audio.projection_dim"), Some(&MetaValue::U32(64)));
        let dims = |name: &str| (find(&g, name).dims.clone(), find(&g, name).kind.name());
        assert_eq!(dims("a.conv1d.0.weight"), (vec![3, 3, 1, 8], "F32"));
        assert_eq!(dims("a.conv1d.1.weight"), (vec![3, 3, 8, 4], "F32"));
        assert_eq!(dims("a.conv1d.1.norm.weight"), (vec![4], "F32"));
        assert_eq!(dims("a.input_projection.weight"), (vec![128, 32], "F16"));
        assert_eq!(dims("a.blk.1.attn_pre_norm.weight"), (vec![32], "F32"));
        assert_eq!(dims("a.blk.1.attn_k_rel.weight"), (vec![32, 32], "F16"));
        assert_eq!(dims("a.blk.1.per_dim_scale.weight"), (vec![16], "F32"));
        assert_eq!(dims("a.blk.1.conv_pw1.weight"), (vec![32, 64], "F16"));
        assert_eq!(dims("a.blk.1.conv_dw.weight"), (vec![5, 32], "F32"));
        assert_eq!(dims("a.blk.1.ffn_down_1.weight"), (vec![128, 32], "F16"));
        assert_eq!(dims("a.blk.1.ffn_down_1.output_max"), (vec![1], "F32"));
        assert_eq!(dims("a.blk.1.ln2.weight"), (vec![32], "F32"));
        assert_eq!(dims("a.pre_encode.out.weight"), (vec![32, 48], "F16"));
        assert_eq!(dims("a.pre_encode.out.bias"), (vec![48], "F32"));
        assert_eq!(dims(PROJECTOR), (vec![48, 64], "F16"));
        for name in
            ["a.blk.0.ln1.weight", "a.blk.0.linear_pos.weight", "a.blk.0.layer_pre_norm.weight", "mm.a.fc.weight"]
        {
            assert!(g.tensors.iter().all(|t| t.name != name), "{name} is Ollama's name");
        }
        // The stem (two kernels and norms, the projection); two blocks of nine norms, ten
        // clippable layers of a weight and four bounds, the relative-position projection, the
        // depthwise kernel and the query scale; the output projection and its bias; the projector.
        let count = g.tensors.iter().filter(|t| audio(&t.name)).count();
        assert_eq!(count, 5 + 2 * (9 + 10 * 5 + 3) + 2 + 1);
    }

    #[test]
    fn the_published_tower_holds_the_references_bytes() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let published = crate::tiny_gemma4(crate::Layout::Published, &tok, 1);
        let reference = crate::gemma4_reference_projector(64);
        let (p, r) = (corral_gguf::read_bytes(&published).unwrap(), corral_gguf::read_bytes(&reference).unwrap());
        let tower = gemma4_audio_tower(64);
        for t in &tower.tensors {
            let (a, b) = (find(&p, &t.ollama), find(&r, &t.clip));
            assert_eq!((&a.dims, a.kind), (&b.dims, b.kind), "{}", t.ollama);
            assert_eq!(data(&p, &published, a), data(&r, &reference, b), "{}", t.ollama);
        }
        let renamed: Vec<_> = tower.tensors.iter().filter(|t| t.ollama != t.clip).map(|t| t.ollama.as_str()).collect();
        assert_eq!(renamed.len(), 3 + 4 * 2);
        assert_eq!(p.tensors.iter().filter(|t| audio(&t.name)).count(), tower.tensors.len());
        assert_eq!(r.tensors.iter().filter(|t| audio(&t.name)).count(), tower.tensors.len());
    }

    #[test]
    fn the_published_file_has_ollamas_audio_keys() {
        let tok = crate::letters_tokenizer("abcdefgh");
        let g = corral_gguf::read_bytes(&crate::tiny_gemma4(crate::Layout::Published, &tok, 1)).unwrap();
        let value_of = |key: &str| g.get(&format!("gemma4.audio.{key}")).cloned();
        for (key, value) in [
            ("block_count", 2),
            ("embedding_length", 32),
            ("feed_forward_length", 128),
            ("attention.head_count", 2),
            ("conv_kernel_size", 5),
        ] {
            assert_eq!(value_of(key), Some(MetaValue::U32(value)), "{key}");
        }
        assert_eq!(value_of("attention.layer_norm_epsilon"), Some(MetaValue::F32(1e-6)));
        assert!(g.metadata.iter().all(|(k, _)| !k.starts_with("clip.")));
        assert!(g.get("gemma4.audio.num_mel_bins").is_none());
    }
}
