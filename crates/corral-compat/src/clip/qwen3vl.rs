//! Qwen3-VL's vision tower as Ollama's converter wrote it into the model file (`qwen3vl.vision.*`
//! or `qwen3vlmoe.vision.*` keys, `v.*` tensors; both architectures have the same tower), for
//! `clip.cpp`'s `qwen3vl_merger` projector. Where Ollama's file and the projector llama.cpp's
//! converter writes for the same checkpoint differ:
//!
//! - names: `v.patch_embed` is `v.patch_embd`, `v.pos_embed` is `v.position_embd`; in the blocks
//!   `norm1`, `norm2`, `mlp.linear_fc1`, `mlp.linear_fc2` are `ln1`, `ln2`, `ffn_up`, `ffn_down`;
//!   the merger's `v.merger.{norm,linear_fc1,linear_fc2}` is `v.post_ln`, `mm.0`, `mm.2`; and a
//!   deepstack merger, `v.deepstack_merger.K.{norm,linear_fc1,linear_fc2}` with K its rank in
//!   `deepstack_visual_indexes`, is `v.deepstack.B.{norm,fc1,fc2}` with B the block it reads;
//! - Ollama split each block's QKV projection in three, `clip.cpp`'s graph reads it whole
//!   (`attn_qkv`, weight and bias): it is assembled back at load from the three parts;
//! - the patch kernel is one tensor holding both frames of the two-frame convolution,
//!   `[p, p, 2, 3·width]`: for each output and colour channel, frame 0's p×p weights then frame
//!   1's. `clip.cpp` wants a kernel per frame, so each is assembled from every other p×p piece.
//!   The header has no entry for the second one: the entry of one of the K projections the
//!   whole QKV made unused is renamed and reshaped to hold it (an assembled tensor may grow);
//! - the learned position embedding is F16 in Ollama's file and F32 in llama.cpp's, and
//!   `clip.cpp` adds it (resized) to F32 activations: it is loaded as F32;
//! - the keys Ollama's file lacks are set as llama.cpp's converter writes them: the
//!   feed-forward width (from the tensors), the image size (the position grid's side times the
//!   patch), one deepstack flag per block, GELU.
//!
//! `clip.cpp` hard-codes what Ollama's file spells out: 2×2 merging, two frames of three colour
//! channels, a RoPE base of 10 000. A file that says otherwise would be computed differently, so
//! it is not translated (it still runs as a text model); nor is one whose deepstack blocks are
//! not listed in ascending order (Ollama stacks their features in list order, `clip.cpp` in block
//! order).

use corral_gguf::{ArrayValue, GgmlType, MetaValue};

use super::{copy_vision_u32, differs_from, finish_projector, head_width, set_epsilon};
use crate::work::Work;

/// What `clip.cpp`'s graph assumes, as (`<arch>.vision.` key, value). An absent key is fine:
/// Ollama's engine then assumed the same value.
const FIXED: [(&str, f32); 4] =
    [("spatial_merge_size", 2.0), ("temporal_patch_size", 2.0), ("num_channels", 3.0), ("rope.freq_base", 10_000.0)];

/// A block's tensors in Ollama's file (the QKV parts aside), each with a weight and a bias.
const BLOCK_PARTS: [&str; 5] = ["norm1", "attn_out", "norm2", "mlp.linear_fc1", "mlp.linear_fc2"];

/// The same in `clip.cpp`'s names.
const BLOCK_RENAMES: [(&str, &str); 4] =
    [(".norm1.", ".ln1."), (".norm2.", ".ln2."), (".mlp.linear_fc1.", ".ffn_up."), (".mlp.linear_fc2.", ".ffn_down.")];

pub(super) fn qwen3vl(w: &mut Work) -> bool {
    let arch = w.arch();
    let vision = |key: &str| format!("{arch}.vision.{key}");
    let (Some(text), Some(blocks), Some(embd), Some(heads), Some(patch)) = (
        w.u32_of(&format!("{arch}.embedding_length")),
        w.u32_of(&vision("block_count")),
        w.u32_of(&vision("embedding_length")),
        w.u32_of(&vision("attention.head_count")),
        w.u32_of(&vision("patch_size")),
    ) else {
        return false;
    };
    let Some(deepstack) = deepstack_blocks(w.get(&vision("deepstack_visual_indexes")), blocks) else { return false };
    if head_width(u64::from(embd), u64::from(heads)).is_none()
        || differs_from(w, &arch, &FIXED)
        || !widths_fit(w, embd, text, deepstack.len())
    {
        return false;
    }
    // The language model reads as many deepstack inputs as the tower gives.
    if w.u32_of(&format!("{arch}.n_deepstack_layers")).is_some_and(|n| n as usize != deepstack.len()) {
        return false;
    }
    let (Some(ffn), Some(image_size)) = (
        w.dim("v.blk.0.mlp.linear_fc1.weight", 1).and_then(|f| u32::try_from(f).ok()),
        image_size(w, &arch, embd, patch),
    ) else {
        return false;
    };
    let mut unused = Vec::new();
    for block in 0..blocks {
        let parts = BLOCK_PARTS.iter().flat_map(|p| ["weight", "bias"].map(|s| format!("v.blk.{block}.{p}.{s}")));
        if parts.into_iter().any(|name| w.tensor(&name).is_none()) {
            return false;
        }
        match fuse_qkv(w, block) {
            Some(parts) => unused.extend(parts),
            None => return false,
        }
    }
    if !split_patch_kernel(w, u64::from(patch), u64::from(embd), &unused) {
        return false;
    }
    w.hide_where(|name| unused.iter().any(|u| u == name));
    let flags = (0..blocks).map(|b| deepstack.contains(&b)).collect();
    let stat = |key: &str| match w.get(&vision(key)) {
        Some(MetaValue::Array(ArrayValue::F32(v))) if v.len() == 3 => [v[0], v[1], v[2]],
        // Ollama's engine's default, and Qwen3-VL's own.
        _ => [0.5; 3],
    };
    let (mean, std) = (stat("image_mean"), stat("image_std"));

    copy_vision_u32(w, &arch, &["block_count", "embedding_length", "attention.head_count", "patch_size"]);
    w.handler(if arch == "qwen3vlmoe" { "qwen3vlmoe" } else { "qwen3vl" });
    set_epsilon(w, &arch, "vision");
    w.set_u32("clip.vision.feed_forward_length", ffn);
    w.set_u32("clip.vision.projection_dim", text);
    w.set_u32("clip.vision.image_size", image_size);
    w.set_u32("clip.vision.spatial_merge_size", 2);
    w.set("clip.vision.is_deepstack_layers", MetaValue::Array(ArrayValue::Bool(flags)));
    w.set("clip.use_gelu", MetaValue::Bool(true));
    rename(w, &deepstack);
    w.promote_to_f32("v.position_embd.weight");
    finish_projector(w, "qwen3vl_merger", mean, std);
    true
}

/// The blocks feeding the deepstack mergers, from `deepstack_visual_indexes` (none when the key
/// is absent, as for Ollama's engine): None unless they are distinct blocks in ascending order.
fn deepstack_blocks(indexes: Option<&MetaValue>, blocks: u32) -> Option<Vec<u32>> {
    let list: Vec<i64> = match indexes {
        None => Vec::new(),
        Some(MetaValue::Array(ArrayValue::I32(v))) => v.iter().map(|i| i64::from(*i)).collect(),
        Some(MetaValue::Array(ArrayValue::U32(v))) => v.iter().map(|i| i64::from(*i)).collect(),
        Some(_) => return None,
    };
    let ascending = list.windows(2).all(|p| p[0] < p[1]);
    let in_range = list.iter().all(|i| (0..i64::from(blocks)).contains(i));
    (ascending && in_range).then(|| list.iter().map(|i| *i as u32).collect())
}

/// Whether the mergers have the widths `clip.cpp` computes with: four patches side by side in,
/// the language model's width out, for the merger and each of the `deepstack` others.
fn widths_fit(w: &Work, embd: u32, text: u32, deepstack: usize) -> bool {
    let merged = 4 * u64::from(embd);
    let stems =
        std::iter::once("v.merger".to_string()).chain((0..deepstack).map(|k| format!("v.deepstack_merger.{k}")));
    stems.into_iter().all(|stem| {
        let has = |part: &str| ["weight", "bias"].iter().all(|s| w.tensor(&format!("{stem}.{part}.{s}")).is_some());
        let dim = |part: &str, i| w.dim(&format!("{stem}.{part}.weight"), i);
        ["norm", "linear_fc1", "linear_fc2"].iter().all(|p| has(p))
            && dim("linear_fc1", 0) == Some(merged)
            && dim("linear_fc2", 0) == Some(merged)
            && dim("linear_fc2", 1) == Some(u64::from(text))
    })
}

/// The image size llama.cpp's converter writes, the side of the square grid of learned positions
/// in pixels. None unless the grid is square and as wide as the tower, or when Ollama's engine
/// would have assumed another grid.
fn image_size(w: &Work, arch: &str, embd: u32, patch: u32) -> Option<u32> {
    let t = w.tensor("v.pos_embed.weight")?;
    let (width, positions) = (*t.dims.first()?, *t.dims.get(1)?);
    let side = (positions as f64).sqrt().round() as u64;
    let stated = w.u32_of(&format!("{arch}.vision.num_positional_embeddings"));
    let agrees = stated.is_none_or(|n| u64::from(n) == positions);
    let fits = t.dims.len() == 2 && width == u64::from(embd) && side * side == positions && agrees;
    fits.then(|| u32::try_from(side * u64::from(patch)).ok()).flatten()
}

/// Block `block`'s Q, K and V (weights, then biases) made one `attn_qkv` tensor each, Q's entry
/// renamed and assembled from the three; returns the K and V entries, now unused. None unless the
/// three are alike.
fn fuse_qkv(w: &mut Work, block: u32) -> Option<Vec<String>> {
    let mut unused = Vec::new();
    for suffix in ["weight", "bias"] {
        let parts = ["attn_q", "attn_k", "attn_v"].map(|p| format!("v.blk.{block}.{p}.{suffix}"));
        let first = w.tensor(&parts[0])?.clone();
        if !parts.iter().all(|p| w.tensor(p).is_some_and(|t| t.kind == first.kind && t.dims == first.dims)) {
            return None;
        }
        let ranges = parts.iter().map(|p| w.range(p)).collect::<Option<Vec<_>>>()?;
        let (last, rest) = first.dims.split_last()?;
        let fused = format!("v.blk.{block}.attn_qkv.{suffix}");
        w.rename_tensor(&parts[0], &fused);
        if !w.assemble(&fused, [rest, &[3 * last]].concat(), ranges) {
            return None;
        }
        unused.extend(parts.into_iter().skip(1));
    }
    Some(unused)
}

/// Ollama's two-frame patch kernel as `clip.cpp`'s two kernels `[p, p, 3, embd]`: frame 0 in the
/// kernel's own entry, frame 1 in an `unused` weight of the same type.
fn split_patch_kernel(w: &mut Work, patch: u64, embd: u64, unused: &[String]) -> bool {
    let name = "v.patch_embed.weight";
    let (Some(t), Some((start, _))) = (w.tensor(name).cloned(), w.range(name)) else { return false };
    let plain = matches!(t.kind, GgmlType::F16 | GgmlType::F32);
    let bias_fits = w.tensor("v.patch_embed.bias").is_some_and(|b| b.dims == [embd]);
    if !plain || !bias_fits || t.dims != [patch, patch, 2, 3 * embd] {
        return false;
    }
    let spare = unused.iter().find(|n| n.ends_with(".weight") && w.tensor(n).is_some_and(|s| s.kind == t.kind));
    let Some(spare) = spare.cloned() else { return false };
    let piece = patch * patch * t.kind.block_bytes();
    let frame = |f: u64| (0..3 * embd).map(|c| (start + (2 * c + f) * piece, piece)).collect::<Vec<_>>();
    let dims = vec![patch, patch, 3, embd];
    w.rename_tensor(name, "v.patch_embd.weight");
    w.rename_tensor(&spare, "v.patch_embd.weight.1");
    w.assemble("v.patch_embd.weight", dims.clone(), frame(0)) && w.assemble("v.patch_embd.weight.1", dims, frame(1))
}

/// Every other tensor under `clip.cpp`'s name; `deepstack`: the block each deepstack merger reads.
fn rename(w: &mut Work, deepstack: &[u32]) {
    w.rename_tensor("v.patch_embed.bias", "v.patch_embd.bias");
    w.rename_tensor("v.pos_embed.weight", "v.position_embd.weight");
    for (from, to) in BLOCK_RENAMES {
        w.rename_tensors_containing(from, to);
    }
    for (from, to) in
        [("v.merger.norm.", "v.post_ln."), ("v.merger.linear_fc1.", "mm.0."), ("v.merger.linear_fc2.", "mm.2.")]
    {
        w.rename_tensors_containing(from, to);
    }
    for (k, block) in deepstack.iter().enumerate() {
        for (from, to) in [("norm", "norm"), ("linear_fc1", "fc1"), ("linear_fc2", "fc2")] {
            w.rename_tensors_containing(
                &format!("v.deepstack_merger.{k}.{from}."),
                &format!("v.deepstack.{block}.{to}."),
            );
        }
    }
}

#[cfg(test)]
mod tests;
