//! Llama 4's vision side as Ollama's converter wrote it (Scout and Maverick: the tower, the pixel
//! shuffle's MLP and the projector, as `llama4.vision.*` keys and `v.*`/`mm.*` tensors in the
//! model file), for `clip.cpp`'s `llama4` projector.
//!
//! Both converters copy the checkpoint's tensors as they are, so only names and keys differ:
//!
//! - the patch embedding is the checkpoint's linear layer over unfolded patches, `[3·p·p, e]`,
//!   in both files (`clip.cpp` views it as a convolution kernel for `im2col` itself, and the
//!   unfolding orders channel, row, column as `im2col` does);
//! - Q and K keep their rows: the checkpoint's RoPE already turns adjacent pairs, the first half
//!   of each head by the patch's column and the second by its row, which is what `clip.cpp`'s
//!   2-D RoPE does (unlike Pixtral's rotate-half checkpoint, see [`super::mistral3`]);
//! - the class and position embeddings are parameters without a `.weight` in Ollama's names;
//! - the pixel shuffle's MLP (`v.vision_adapter.mlp`) and the projector (`mm.linear_1`) are
//!   `mm.model.mlp.{1,2}` and `mm.model.fc`;
//! - Ollama writes the epsilon as `llama4.vision.layer_norm_epsilon` and the pixel shuffle as a
//!   ratio (0.5), where `clip.cpp` reads `attention.layer_norm_epsilon` and an integer scale
//!   factor (2); the image normalisation (0.5, 0.5) and the GELU, which Ollama's engine assumed,
//!   are set as llama.cpp's converter writes them.
//!
//! Ollama's converter stores the class and position embeddings in F32 already; an F16 copy would
//! be widened (`clip.cpp` concatenates and adds them to F32 activations). `clip.cpp` hard-codes a
//! RoPE base of 10 000: a file that says otherwise is not translated, nor one whose sizes do not
//! agree or whose pixel shuffle does not tile its patches evenly.

use corral_gguf::MetaValue;

use super::{copy_vision_u32, differs_from, finish_projector, head_width, number, rename_tower, u64_keys};
use crate::work::Work;

/// What the tower needs besides its blocks.
const TENSORS: [&str; 10] = [
    "v.patch_embedding.weight",
    "v.class_embedding",
    "v.positional_embedding_vlm",
    "v.layernorm_pre.weight",
    "v.layernorm_pre.bias",
    "v.layernorm_post.weight",
    "v.layernorm_post.bias",
    "v.vision_adapter.mlp.fc1.weight",
    "v.vision_adapter.mlp.fc2.weight",
    "mm.linear_1.weight",
];

/// Ollama's names → `clip.cpp`'s, as substrings of the tower's and projector's names, the
/// adapter's before the blocks' generic `.mlp.fc1.` could claim them.
const RENAMES: [(&str, &str); 11] = [
    ("v.vision_adapter.mlp.fc1.", "mm.model.mlp.1."),
    ("v.vision_adapter.mlp.fc2.", "mm.model.mlp.2."),
    ("mm.linear_1.", "mm.model.fc."),
    ("v.patch_embedding.", "v.patch_embd."),
    ("v.layernorm_pre.", "v.pre_ln."),
    ("v.layernorm_post.", "v.post_ln."),
    (".attn_output.", ".attn_out."),
    (".attn_norm.", ".ln1."),
    (".ffn_norm.", ".ln2."),
    (".mlp.fc1.", ".ffn_up."),
    (".mlp.fc2.", ".ffn_down."),
];

/// What `clip.cpp` assumes, as (`llama4.vision.` key, value); an absent key is fine.
const FIXED: [(&str, f32); 1] = [("rope.freq_base", 10_000.0)];

/// The checkpoints' norm epsilon, for a file without the key.
const EPSILON: f32 = 1e-5;

/// The normalisation of Llama 4's image processor.
const HALF: [f32; 3] = [0.5; 3];

pub(super) fn llama4(w: &mut Work) -> bool {
    if TENSORS.iter().any(|name| w.tensor(name).is_none()) {
        return false;
    }
    let Some([text, embd, heads, ffn, image, patch, blocks]) = u64_keys(
        w,
        "llama4",
        [
            "embedding_length",
            "vision.embedding_length",
            "vision.attention.head_count",
            "vision.feed_forward_length",
            "vision.image_size",
            "vision.patch_size",
            "vision.block_count",
        ],
    ) else {
        return false;
    };
    let tower = Tower { text, embd, ffn, image, patch, blocks };
    let Some(scale) = tower.scale(w) else { return false };
    if head_width(embd, heads).is_none() || !tower.fits(w, scale) || differs_from(w, "llama4", &FIXED) {
        return false;
    }
    let settings =
        ["block_count", "embedding_length", "feed_forward_length", "attention.head_count", "image_size", "patch_size"];
    if !copy_vision_u32(w, "llama4", &settings) {
        return false;
    }
    w.handler("llama4");
    let eps = number(w.get("llama4.vision.layer_norm_epsilon")).unwrap_or(EPSILON);
    w.set("clip.vision.attention.layer_norm_epsilon", MetaValue::F32(eps));
    w.set_u32("clip.vision.projection_dim", text as u32);
    w.set_u32("clip.vision.projector.scale_factor", scale as u32);
    w.set("clip.use_gelu", MetaValue::Bool(true));
    w.rename_tensor("v.class_embedding", "v.class_embd");
    w.rename_tensor("v.positional_embedding_vlm", "v.position_embd.weight");
    rename_tower(w, &RENAMES);
    w.promote_to_f32("v.class_embd");
    w.promote_to_f32("v.position_embd.weight");
    finish_projector(w, "llama4", HALF, HALF);
    true
}

/// The sizes the keys give, which every tensor of the tower must agree with.
struct Tower {
    text: u64,
    embd: u64,
    ffn: u64,
    image: u64,
    patch: u64,
    blocks: u64,
}

impl Tower {
    /// The pixel shuffle's factor: the adapter's input is that many patches a side, side by
    /// side; it must tile a picture's patches, and agree with the file's ratio where it has one.
    fn scale(&self, w: &Work) -> Option<u64> {
        let merged = w.dim("v.vision_adapter.mlp.fc1.weight", 0)?;
        let squared = merged.checked_div(self.embd).filter(|s| s * self.embd == merged)?;
        let scale = (1..=squared).find(|s| s * s >= squared).filter(|s| s * s == squared)?;
        let side = self.image.checked_div(self.patch).filter(|n| n * self.patch == self.image && *n > 0)?;
        let ratio = number(w.get("llama4.vision.pixel_shuffle_ratio"));
        let agrees = ratio.is_none_or(|r| (r * scale as f32 - 1.0).abs() < 1e-6);
        (side.is_multiple_of(scale) && agrees).then_some(scale)
    }

    fn fits(&self, w: &Work, scale: u64) -> bool {
        let Tower { text, embd: e, ffn: f, image, patch: p, blocks } = *self;
        let is = |name: &str, dims: &[u64]| w.tensor(name).is_some_and(|t| t.dims == dims);
        // A weight `[n_in, n_out]` with its bias; a layer norm is one with `n_in` 0.
        let biased = |stem: &str, n_in: u64, n_out: u64| {
            let weight = if n_in == 0 { vec![n_out] } else { vec![n_in, n_out] };
            is(&format!("{stem}.weight"), &weight) && is(&format!("{stem}.bias"), &[n_out])
        };
        let adapter = w.dim("mm.linear_1.weight", 0).unwrap_or(0);
        let tower = is("v.patch_embedding.weight", &[3 * p * p, e])
            && is("v.class_embedding", &[e])
            && is("v.positional_embedding_vlm", &[e, (image / p).pow(2) + 1])
            && biased("v.layernorm_pre", 0, e)
            && biased("v.layernorm_post", 0, e)
            && is("v.vision_adapter.mlp.fc1.weight", &[e * scale * scale, adapter])
            && is("v.vision_adapter.mlp.fc2.weight", &[adapter, adapter])
            && is("mm.linear_1.weight", &[adapter, text]);
        tower
            && (0..blocks).all(|i| {
                let b = |part: &str| format!("v.blk.{i}.{part}");
                let attention = ["attn_q", "attn_k", "attn_v", "attn_output"].iter().all(|m| biased(&b(m), e, e));
                let norms = biased(&b("attn_norm"), 0, e) && biased(&b("ffn_norm"), 0, e);
                attention && norms && biased(&b("mlp.fc1"), e, f) && biased(&b("mlp.fc2"), f, e)
            })
    }
}

#[cfg(test)]
mod tests;
