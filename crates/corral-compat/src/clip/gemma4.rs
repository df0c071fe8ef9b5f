//! Gemma 4's vision side as Ollama's converter wrote it (the SigLIP-style tower, its pooler and
//! projector, as `gemma4.vision.*` keys and `v.*`/`mm.*` tensors in the model file), for
//! `clip.cpp`'s `gemma4v` projector.
//!
//! Ollama's converter already names every tensor as `clip.cpp` does (`ln1`/`ln2`, `attn_out`,
//! `attn_post_norm`, `ffn_post_norm`, `out_scale`, `v.std_bias`/`v.std_scale`,
//! `mm.input_projection`, and each clippable layer's `<stem>.input_min`… bounds as one-number
//! F32 tensors), so only the header changes:
//!
//! - the tower's settings move to `clip.vision.*`, with the types `clip.cpp` asserts; the pooling
//!   factor is `projector.scale_factor` in both; the picture size, which `clip.cpp` does not use
//!   for this projector's dynamic sizes, is Ollama's loader's 224;
//! - the pictures are not normalised (mean 0, std 1): the tower standardises its own output;
//! - the MLP's activation is GELU, Gemma's tanh approximation (without the key `clip.cpp` would
//!   use its "quick" GELU);
//! - `v.clamp_data`, Ollama's packed copy of the bounds for its own engine, is hidden.
//!
//! The audio tower (`a.*`, `mm.a.*`) becomes a second projector of the same file, `gemma4a`
//! ([`super::gemma4a`]); each tower's projector type is then its own key. A file whose audio
//! tower has no translation is served for pictures alone, its audio tensors hidden.
//!
//! `clip.cpp` hard-codes a RoPE base of 100: a file that says otherwise is not translated, nor
//! one whose sizes do not agree.

use corral_gguf::MetaValue;

use super::{copy_vision_u32, differs_from, finish_towers, head_width, set_epsilon, u64_keys};
use crate::work::Work;

/// What the tower needs besides its blocks.
const TENSORS: [&str; 5] =
    ["v.patch_embd.weight", "v.position_embd.weight", "v.std_bias", "v.std_scale", "mm.input_projection.weight"];

/// What `clip.cpp` assumes, as (`gemma4.vision.` key, value); an absent key is fine.
const FIXED: [(&str, f32); 2] = [("rope.freq_base", 100.0), ("num_channels", 3.0)];

/// The picture size Ollama's loader states for every Gemma 4 tower.
const IMAGE_SIZE: u32 = 224;

pub(super) fn gemma4(w: &mut Work) -> bool {
    if TENSORS.iter().any(|name| w.tensor(name).is_none()) {
        return false;
    }
    let Some([text, embd, heads, ffn, patch, blocks]) = u64_keys(
        w,
        "gemma4",
        [
            "embedding_length",
            "vision.embedding_length",
            "vision.attention.head_count",
            "vision.feed_forward_length",
            "vision.patch_size",
            "vision.block_count",
        ],
    ) else {
        return false;
    };
    let Some(head_dim) = head_width(embd, heads) else { return false };
    let merge = w.u32_of("gemma4.vision.projector.scale_factor").map(u64::from);
    let sizes = Sizes { text, embd, ffn, patch, blocks, head_dim };
    if merge == Some(0) || !sizes.fit(w) || differs_from(w, "gemma4", &FIXED) {
        return false;
    }
    let settings = ["block_count", "embedding_length", "feed_forward_length", "attention.head_count", "patch_size"];
    if !copy_vision_u32(w, "gemma4", &settings) {
        return false;
    }
    w.handler("gemma4");
    set_epsilon(w, "gemma4", "vision");
    w.set_u32("clip.vision.image_size", IMAGE_SIZE);
    w.set_u32("clip.vision.projection_dim", text as u32);
    // Without the key, clip.cpp pools 3×3, as Ollama's engine and converter do.
    if let Some(merge) = merge {
        w.set_u32("clip.vision.projector.scale_factor", merge as u32);
    }
    w.set("clip.use_gelu", MetaValue::Bool(true));
    w.hide_where(|name| name == "v.clamp_data");
    if super::gemma4a::gemma4a(w, text) {
        finish_towers(w, "gemma4v", Some("gemma4a"), [0.0; 3], [1.0; 3]);
    } else {
        w.hide_where(|name| name.starts_with("mm.a."));
        finish_towers(w, "gemma4v", None, [0.0; 3], [1.0; 3]);
    }
    true
}

/// The sizes the keys give, which every tensor of the tower must agree with.
struct Sizes {
    text: u64,
    embd: u64,
    ffn: u64,
    patch: u64,
    blocks: u64,
    head_dim: u64,
}

impl Sizes {
    fn fit(&self, w: &Work) -> bool {
        let Sizes { text, embd: e, ffn: f, patch: p, blocks, head_dim } = *self;
        let is = |name: &str, dims: &[u64]| w.tensor(name).is_some_and(|t| t.dims == dims);
        // One table per picture axis, as long as the file makes them.
        let positions =
            w.tensor("v.position_embd.weight").is_some_and(|t| t.dims.len() == 3 && t.dims[0] == e && t.dims[2] == 2);
        let tower = is("v.patch_embd.weight", &[p, p, 3, e])
            && positions
            && is("v.std_bias", &[e])
            && is("v.std_scale", &[e])
            && is("mm.input_projection.weight", &[e, text]);
        tower
            && (0..blocks).all(|i| {
                let b = |part: &str| format!("v.blk.{i}.{part}.weight");
                let square = ["attn_q", "attn_k", "attn_v", "attn_out"].iter().all(|m| is(&b(m), &[e, e]));
                let mlp = is(&b("ffn_gate"), &[e, f]) && is(&b("ffn_up"), &[e, f]) && is(&b("ffn_down"), &[f, e]);
                let norms = is(&b("ln1"), &[e]) && is(&b("ln2"), &[e]);
                let heads = is(&b("attn_q_norm"), &[head_dim]) && is(&b("attn_k_norm"), &[head_dim]);
                square && mlp && norms && heads
            })
    }
}

#[cfg(test)]
mod tests;
