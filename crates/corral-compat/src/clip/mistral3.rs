//! Mistral 3's vision side as Ollama's converter wrote it (Mistral Small 3.1 and 3.2: Pixtral's
//! tower, the patch merger and the projector, as `mistral3.vision.*` keys and `v.*`/`mm.*`
//! tensors in the model file), for `clip.cpp`'s `pixtral` projector.
//!
//! Names and keys aside, the published tower differs from what llama.cpp's converter writes in
//! two ways, both repaired as the projector loader reads the file:
//!
//! - **Q and K rows.** Hugging Face's checkpoint orders each head's query and key rows for a
//!   rotate-half RoPE (dimension `j` turns with `j + head_dim/2`), and Ollama kept that order.
//!   `clip.cpp` rotates adjacent pairs (ggml's normal RoPE mode, once per half of the head, the
//!   halves being the two picture axes), so llama.cpp's converter interleaves the two halves of
//!   every head: its row `2j` is the checkpoint's row `j`, its row `2j + 1` the checkpoint's row
//!   `j + head_dim/2`. Corral reads the rows in that order ([`adjacent_pairs_row`]).
//! - **`[IMG_BREAK]`.** `clip.cpp` ends every row of image tokens but the last with that token's
//!   embedding, which it reads from the projector (`v.token_embd.img_break`, F32), where llama.cpp's
//!   converter copies it from the text model's embeddings. Ollama's file has no such tensor: an F32
//!   text tensor of the same shape that the projector never reads (`output_norm.weight`) lends it
//!   its place in the index, and the loader fills it with the token's row of `token_embd.weight`,
//!   converted to F32 from whatever type the embeddings have.
//!
//! Ollama's file has no vision epsilon (Pixtral's norms use 1e-5, not the 1e-6 default of the other
//! towers), nor the tower's activation (SiLU-gated) or image normalisation (CLIP's), which are set
//! as llama.cpp's converter writes them. `clip.cpp` hard-codes a RoPE base of 10 000 and a GELU
//! projector: a file that says otherwise is not translated, nor one whose Q or K have biases (they
//! would need reordering too) or whose sizes do not agree.

use corral_gguf::{GgmlType, MetaValue, TensorInfo};

use super::qwen25vl::{CLIP_MEAN, CLIP_STD};
use super::{copy_vision_u32, differs_from, finish_projector, head_width, rename_tower, set_epsilon, u64_keys};
use crate::work::Work;

/// What the tower needs besides its blocks: `clip.cpp` requires the first ones, and Mistral Small's
/// patch merger is the rest (its norm and its merging layer).
const TENSORS: [&str; 7] = [
    "token_embd.weight",
    "v.patch_conv.weight",
    "v.encoder_norm.weight",
    "mm.linear_1.weight",
    "mm.linear_2.weight",
    "mm.norm.weight",
    "mm.patch_merger.merging_layer.weight",
];

/// Ollama's names → `clip.cpp`'s, as substrings of the tower's (`v.*`) and projector's (`mm.*`)
/// tensor names only: the text model's own `attn_norm` and `ffn_norm` keep theirs.
const RENAMES: [(&str, &str); 9] = [
    ("v.patch_conv.", "v.patch_embd."),
    ("v.encoder_norm.", "v.pre_ln."),
    (".attn_output.", ".attn_out."),
    (".attn_norm.", ".ln1."),
    (".ffn_norm.", ".ln2."),
    ("mm.norm.", "mm.input_norm."),
    ("mm.patch_merger.merging_layer.", "mm.patch_merger."),
    ("mm.linear_1.", "mm.1."),
    ("mm.linear_2.", "mm.2."),
];

/// What `clip.cpp` assumes, as (`mistral3.vision.` key, value); an absent key is fine.
const FIXED: [(&str, f32); 2] = [("rope.freq_base", 10_000.0), ("num_channels", 3.0)];

/// Pixtral's RMS-norm epsilon, which Ollama's engine assumed without writing it.
const EPSILON: f32 = 1e-5;

/// The tensor `clip.cpp` reads the `[IMG_BREAK]` embedding from.
const IMG_BREAK: &str = "v.token_embd.img_break";

/// The row of Ollama's Q or K (rotate-half order within each head of `head_dim` rows) that row
/// `r` of llama.cpp's (adjacent pairs) holds: pair `j` of a head is its rows `j` and
/// `j + head_dim/2`.
pub(super) fn adjacent_pairs_row(r: u64, head_dim: u64) -> u64 {
    let (head, i) = (r / head_dim, r % head_dim);
    head * head_dim + (i % 2) * (head_dim / 2) + i / 2
}

pub(super) fn mistral3(w: &mut Work) -> bool {
    if TENSORS.iter().any(|name| w.tensor(name).is_none()) {
        return false;
    }
    let Some([text, merge, embd, heads, ffn, patch, blocks]) = u64_keys(
        w,
        "mistral3",
        [
            "embedding_length",
            "spatial_merge_size",
            "vision.embedding_length",
            "vision.attention.head_count",
            "vision.feed_forward_length",
            "vision.patch_size",
            "vision.block_count",
        ],
    ) else {
        return false;
    };
    let tower = Tower { text, merge, embd, ffn, patch, blocks };
    let Some(head_dim) = head_dim(w, embd, heads) else { return false };
    let Some(img_break) = w.token_index("[IMG_BREAK]") else { return false };
    let Some(slot) = spare_slot(w, text) else { return false };
    if !tower.fits(w) || differs_from(w, "mistral3", &FIXED) || !gelu_projector(w) {
        return false;
    }
    let settings =
        ["block_count", "embedding_length", "feed_forward_length", "attention.head_count", "image_size", "patch_size"];
    if !copy_vision_u32(w, "mistral3", &settings) {
        return false;
    }
    w.handler("mistral3");
    if w.has("mistral3.vision.attention.layer_norm_epsilon") {
        set_epsilon(w, "mistral3", "vision");
    } else {
        w.set("clip.vision.attention.layer_norm_epsilon", MetaValue::F32(EPSILON));
    }
    w.set_u32("clip.vision.projection_dim", text as u32);
    w.set_u32("clip.vision.spatial_merge_size", merge as u32);
    w.set("clip.use_silu", MetaValue::Bool(true));
    rename_tower(w, &RENAMES);
    w.rename_tensor(&slot, IMG_BREAK);
    if !w.fill_with_row(IMG_BREAK, "token_embd.weight", img_break) {
        return false;
    }
    for i in 0..blocks {
        for part in ["attn_q", "attn_k"] {
            if !w.permute_rows(&format!("v.blk.{i}.{part}.weight"), |r| adjacent_pairs_row(r, head_dim)) {
                return false;
            }
        }
    }
    finish_projector(w, "pixtral", CLIP_MEAN, CLIP_STD);
    true
}

/// A head's width, when the heads split the tower evenly, agree with the file's key length, and
/// are made of two halves rotated in pairs.
fn head_dim(w: &Work, embd: u64, heads: u64) -> Option<u64> {
    let dim = head_width(embd, heads)?;
    let key = w.u32_of("mistral3.vision.attention.key_length").map(u64::from);
    key.is_none_or(|k| k == dim).then_some(dim)
}

/// The projector's activation: `clip.cpp` always uses GELU (Ollama writes the checkpoint's).
fn gelu_projector(w: &Work) -> bool {
    match w.get("mistral3.mm.projector_hidden_act") {
        None => true,
        Some(MetaValue::String(act)) => act == "gelu",
        Some(_) => false,
    }
}

/// An F32 text tensor `[text]` whose place `v.token_embd.img_break` can take: the projector reads
/// no text tensor.
fn spare_slot(w: &Work, text: u64) -> Option<String> {
    let fits = |t: &&TensorInfo| {
        t.kind == GgmlType::F32 && t.dims == [text] && !t.name.starts_with("v.") && !t.name.starts_with("mm.")
    };
    w.tensor("output_norm.weight").filter(fits).or_else(|| w.g.tensors.iter().find(fits)).map(|t| t.name.clone())
}

/// The sizes the keys give, which every tensor of the tower must agree with.
struct Tower {
    text: u64,
    merge: u64,
    embd: u64,
    ffn: u64,
    patch: u64,
    blocks: u64,
}

impl Tower {
    fn fits(&self, w: &Work) -> bool {
        let Tower { text, merge, embd: e, ffn: f, patch: p, blocks } = *self;
        let is = |name: &str, dims: &[u64]| w.tensor(name).is_some_and(|t| t.dims == dims);
        let tower = merge > 0
            && w.dim("token_embd.weight", 0) == Some(text)
            && is("v.patch_conv.weight", &[p, p, 3, e])
            && is("v.encoder_norm.weight", &[e])
            && is("mm.norm.weight", &[e])
            && is("mm.patch_merger.merging_layer.weight", &[e.saturating_mul(merge).saturating_mul(merge), e])
            && is("mm.linear_1.weight", &[e, text])
            && is("mm.linear_2.weight", &[text, text]);
        tower
            && (0..blocks).all(|i| {
                let b = |part: &str| format!("v.blk.{i}.{part}");
                let square = ["attn_q", "attn_k", "attn_v", "attn_output"]
                    .iter()
                    .all(|m| is(&b(&format!("{m}.weight")), &[e, e]));
                let norms = ["attn_norm", "ffn_norm"].iter().all(|m| is(&b(&format!("{m}.weight")), &[e]));
                let ffn = is(&b("ffn_gate.weight"), &[e, f])
                    && is(&b("ffn_up.weight"), &[e, f])
                    && is(&b("ffn_down.weight"), &[f, e]);
                let biased = w.tensor(&b("attn_q.bias")).is_some() || w.tensor(&b("attn_k.bias")).is_some();
                square && norms && ffn && !biased
            })
    }
}

#[cfg(test)]
mod tests;
