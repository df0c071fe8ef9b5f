//! Gemma 4's audio side as Ollama's converter wrote it (a Conformer over a log-mel spectrogram,
//! `gemma4.audio.*` keys and `a.*`/`mm.a.*` tensors in the model file), for `clip.cpp`'s `gemma4a`
//! projector, which the same file then also is.
//!
//! The two layouts hold the same tensors; six of them have other names, and the keys move:
//!
//! - in each block, Ollama's `ln1`/`ln2` (the norms before and after attention) are `clip.cpp`'s
//!   `attn_pre_norm`/`attn_post_norm`, its `layer_pre_norm` (the block's closing norm) is
//!   `clip.cpp`'s `ln2`, and the relative-position projection `linear_pos` is `attn_k_rel`: `ln2`
//!   is renamed away before `layer_pre_norm` takes its name;
//! - after the convolution stem, Ollama's `a.pre_encode.out` is `clip.cpp`'s
//!   `a.input_projection`, and its `mm.a.fc` (the tower's output projection) is `clip.cpp`'s
//!   `a.pre_encode.out`: again the first is renamed away before the second takes its name;
//! - the tower's settings move to `clip.audio.*` (the types `clip.cpp` asserts), with the
//!   spectrogram's 128 mel bins (the number Ollama's engine computed too) and the language model's
//!   width as the projection's.
//!
//! `clip.cpp` hard-codes the depthwise convolution's kernel (5), so a file stating another one is
//! not translated, nor one whose tensors do not agree with its keys; the vision tower is then
//! served alone. `mtmd` computes the spectrogram its own way (as llama.cpp's converter's files
//! expect), and its attention window is one key shorter than the one Ollama's engine used (as in
//! the reference implementation): answers about a sound follow llama.cpp, not Ollama's engine.

use corral_gguf::GgmlType;

use super::{set_epsilon, u64_keys};
use crate::work::Work;

/// The mel bins of the spectrogram both engines compute.
const MEL_BINS: u32 = 128;

/// The depthwise convolution's kernel `clip.cpp` assumes.
const CONV_KERNEL: u64 = 5;

/// Block tensors renamed, Ollama's part name → `clip.cpp`'s, in the order they must be applied.
const BLOCK_RENAMES: [(&str, &str); 4] =
    [("ln1", "attn_pre_norm"), ("ln2", "attn_post_norm"), ("layer_pre_norm", "ln2"), ("linear_pos", "attn_k_rel")];

/// Translates the audio tower for `clip.cpp`, beside the vision tower; `text`: the language
/// model's width. False, and nothing changed, when the file has no audio tower `clip.cpp` would
/// compute as Ollama's converter meant it.
pub(super) fn gemma4a(w: &mut Work, text: u64) -> bool {
    let Some([blocks, embd, ffn, heads]) = u64_keys(
        w,
        "gemma4",
        ["audio.block_count", "audio.embedding_length", "audio.feed_forward_length", "audio.attention.head_count"],
    ) else {
        return false;
    };
    let kernel = w.u32_of("gemma4.audio.conv_kernel_size").map_or(CONV_KERNEL, u64::from);
    let head_dim = embd.checked_div(heads).filter(|d| d * heads == embd);
    let Some(head_dim) = head_dim else { return false };
    if kernel != CONV_KERNEL || blocks == 0 || !fits(w, Sizes { blocks, embd, ffn, head_dim, text }) {
        return false;
    }
    for (key, value) in [
        ("block_count", blocks),
        ("embedding_length", embd),
        ("feed_forward_length", ffn),
        ("attention.head_count", heads),
        ("projection_dim", text),
    ] {
        w.set_u32(&format!("clip.audio.{key}"), value as u32);
    }
    w.set_u32("clip.audio.num_mel_bins", MEL_BINS);
    set_epsilon(w, "gemma4", "audio");
    for i in 0..blocks {
        for (from, to) in BLOCK_RENAMES {
            w.rename_tensor(&format!("a.blk.{i}.{from}.weight"), &format!("a.blk.{i}.{to}.weight"));
        }
    }
    w.rename_tensor("a.pre_encode.out.weight", "a.input_projection.weight");
    w.rename_tensor("mm.a.fc.weight", "a.pre_encode.out.weight");
    w.rename_tensor("mm.a.fc.bias", "a.pre_encode.out.bias");
    true
}

#[derive(Clone, Copy)]
struct Sizes {
    blocks: u64,
    embd: u64,
    ffn: u64,
    head_dim: u64,
    text: u64,
}

/// Whether the tower's tensors are there with the shapes the keys give, and the ones `clip.cpp`
/// computes in F32 only (the convolutions) are F32.
fn fits(w: &Work, s: Sizes) -> bool {
    let Sizes { blocks, embd: h, ffn: f, head_dim, text } = s;
    let is = |name: &str, dims: &[u64]| w.tensor(name).is_some_and(|t| t.dims == dims);
    let f32_is = |name: &str, dims: &[u64]| w.tensor(name).is_some_and(|t| t.dims == dims && t.kind == GgmlType::F32);
    // The stem's two convolutions (kernels 3×3), then its flattened output projected to `h`.
    let stem = (0..2).all(|i| {
        w.tensor(&format!("a.conv1d.{i}.weight")).is_some_and(|t| t.dims.len() == 4 && t.kind == GgmlType::F32)
    }) && w.dim("a.pre_encode.out.weight", 1) == Some(h);
    // The tower's output projection, then the projector into the language model.
    let out = w.dim("mm.a.fc.weight", 0) == Some(h)
        && w.dim("mm.a.fc.weight", 1)
            .is_some_and(|o| is("mm.a.fc.bias", &[o]) && is("mm.a.input_projection.weight", &[o, text]));
    stem && out
        && (0..blocks).all(|i| {
            let b = |part: &str| format!("a.blk.{i}.{part}.weight");
            let square =
                ["attn_q", "attn_k", "attn_v", "attn_out", "linear_pos", "conv_pw2"].iter().all(|m| is(&b(m), &[h, h]));
            let ffn = ["", "_1"]
                .iter()
                .all(|k| is(&b(&format!("ffn_up{k}")), &[h, f]) && is(&b(&format!("ffn_down{k}")), &[f, h]));
            let norms = [
                "ffn_norm",
                "ffn_norm_1",
                "ffn_post_norm",
                "ffn_post_norm_1",
                "ln1",
                "ln2",
                "layer_pre_norm",
                "conv_norm",
                "norm_conv",
            ]
            .iter()
            .all(|n| is(&b(n), &[h]));
            let conv = is(&b("conv_pw1"), &[h, 2 * h]) && f32_is(&b("conv_dw"), &[CONV_KERNEL, h]);
            square && ffn && norms && conv && is(&b("per_dim_scale"), &[head_dim])
        })
}

#[cfg(test)]
mod tests;
