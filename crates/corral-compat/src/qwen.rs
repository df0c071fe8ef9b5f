//! Qwen: `qwen35` / `qwen35moe` (hybrid SSM, M-RoPE, vision and MTP in the file), `qwen3next`,
//! `qwen25vl` and `qwen3vl` / `qwen3vlmoe`.

use corral_gguf::{ArrayValue, MetaValue};

use crate::work::Work;

/// `blk.N.ssm_dt` is llama.cpp's `blk.N.ssm_dt.bias` (same shape).
fn rename_ssm_dt(w: &mut Work) {
    w.rename_suffix(".ssm_dt", ".ssm_dt.bias");
}

/// Qwen 3.5 (dense and MoE) as published: KV heads per layer (0 for SSM layers) where llama.cpp
/// reads one number, three M-RoPE sections where it reads four, `ssm_dt` without `.bias`, and
/// the vision tower, projector and MTP head in the file. The MTP head is hidden rather than
/// translated (its translation needs tensor data converted), so speculative decoding with it is
/// not available; the text model is complete.
pub(crate) fn qwen35(w: &mut Work) -> bool {
    let arch = w.arch();
    let key = |s: &str| format!("{arch}.{s}");
    let marked = w.has(&key("vision.block_count"))
        || w.has(&key("image_token_id"))
        || w.has(&key("ssm.v_head_reordered"))
        || (arch == "qwen35moe" && w.has(&key("feed_forward_length")))
        || w.has(&key("rope.mrope_interleaved"))
        || w.any_tensor_with_prefix("mtp.")
        || w.any_tensor_with_prefix("v.");
    if !marked {
        return false;
    }
    w.handler(if arch == "qwen35moe" { "qwen35moe" } else { "qwen35" });
    w.collapse_to_max(&key("attention.head_count_kv"), 2);
    w.pad_sections(&key("rope.dimension_sections"), &key("rope.dimension_sections"));
    rename_ssm_dt(w);
    // With its MTP head hidden, no block is a prediction block: a count of them would make
    // llama.cpp take the last text blocks for MTP.
    if w.any_tensor_with_prefix("mtp.") && !w.g.tensors.iter().any(|t| t.name.contains(".nextn.")) {
        w.remove(&key("nextn_predict_layers"));
    }
    for prefix in ["v.", "mm.", "mtp."] {
        w.hide_prefix(prefix);
    }
    true
}

/// Qwen3-Next with KV heads per layer and `ssm_dt` without `.bias`.
pub(crate) fn qwen3next(w: &mut Work) -> bool {
    if !w.g.tensors.iter().any(|t| t.name.ends_with(".ssm_dt")) {
        return false;
    }
    w.handler("qwen3next");
    w.collapse_to_max("qwen3next.attention.head_count_kv", 0);
    rename_ssm_dt(w);
    true
}

/// Qwen2.5-VL published as `qwen25vl`: llama.cpp loads Qwen2-VL and 2.5-VL as `qwen2vl`, with
/// four M-RoPE sections under `rope.dimension_sections`.
pub(crate) fn qwen25vl(w: &mut Work) -> bool {
    w.handler("qwen25vl");
    w.set_arch("qwen2vl");
    w.pad_sections("qwen2vl.rope.mrope_section", "qwen2vl.rope.dimension_sections");
    w.remove("qwen2vl.rope.mrope_section");
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    true
}

/// Qwen3-VL without the M-RoPE sections and deepstack count llama.cpp requires. The sections
/// are those of the whole published family ([24, 20, 20, 0] for a 128-wide head), as in Ollama.
pub(crate) fn qwen3vl(w: &mut Work) -> bool {
    let arch = w.arch();
    let sections = format!("{arch}.rope.dimension_sections");
    if w.has(&sections) {
        return false;
    }
    w.handler(if arch == "qwen3vlmoe" { "qwen3vlmoe" } else { "qwen3vl" });
    w.set(&sections, MetaValue::Array(ArrayValue::I32(vec![24, 20, 20, 0])));
    let deepstack = w.array_len(&format!("{arch}.vision.deepstack_visual_indexes")).unwrap_or(0);
    w.set_if_missing(&format!("{arch}.n_deepstack_layers"), MetaValue::U32(deepstack as u32));
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    true
}
