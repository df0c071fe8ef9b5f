//! The other published layouts: gpt-oss, LFM2, OLMo 3, Mistral Small 3.x, GLM-4.7 Flash,
//! DeepSeek-OCR, Nemotron-H, Laguna, Llama 3 tokenizer metadata, Llama 4 and Snowflake Arctic
//! Embed 2.

use corral_gguf::{ArrayValue, MetaValue};

use crate::work::Work;
use crate::Unsupported;

/// gpt-oss published as `gptoss`: llama.cpp's name is `gpt-oss`; the expert FFN width comes from
/// the expert tensors' shape, RoPE is YaRN, the pre-tokenizer is GPT-4o's (without it prompts
/// tokenize differently and Harmony headers come out malformed), and three tensor names differ.
pub(crate) fn gptoss(w: &mut Work) -> bool {
    w.handler("gptoss");
    w.set_arch("gpt-oss");
    if !w.has("gpt-oss.expert_feed_forward_length") {
        if let Some(n) = w.dim("blk.0.ffn_gate_exps.weight", 1) {
            w.set_u32("gpt-oss.expert_feed_forward_length", n as u32);
        }
    }
    w.set_if_missing("gpt-oss.rope.scaling.type", MetaValue::String("yarn".into()));
    w.set_str("tokenizer.ggml.pre", "gpt-4o");
    w.rename_tensors_containing(".attn_out", ".attn_output");
    w.rename_tensors_containing(".attn_sinks", ".attn_sinks.weight");
    w.rename_tensors_containing(".ffn_norm", ".post_attention_norm");
    true
}

/// LFM2 (and LFM2-MoE, written the same way) with its last norm as `output_norm` (llama.cpp:
/// `token_embd_norm`), the default pre-tokenizer, and in some files a feed-forward width that
/// disagrees with the tensors.
pub(crate) fn lfm2(w: &mut Work) -> bool {
    if w.tensor("output_norm.weight").is_none() || w.tensor("token_embd_norm.weight").is_some() {
        return false;
    }
    let arch = w.arch();
    w.handler(if arch == "lfm2moe" { "lfm2moe" } else { "lfm2" });
    w.rename_tensor("output_norm.weight", "token_embd_norm.weight");
    w.set_str("tokenizer.ggml.pre", "lfm2");
    let key = format!("{arch}.feed_forward_length");
    if let Some(n_ff) = w.dim("blk.0.ffn_gate.weight", 1) {
        if w.u32_of(&key) != Some(n_ff as u32) {
            w.set_u32(&key, n_ff as u32);
        }
    }
    true
}

/// OLMo 3: llama.cpp's `olmo2` covers its layout, sliding-window RoPE included.
pub(crate) fn olmo3(w: &mut Work) -> bool {
    w.handler("olmo3");
    w.set_arch("olmo2");
    true
}

/// Mistral Small 3.x with its vision tower in the file and YaRN keys under other names.
pub(crate) fn mistral3(w: &mut Work) -> bool {
    let marked = w.any_tensor_with_prefix("v.")
        || w.any_tensor_with_prefix("mm.")
        || w.has("mistral3.rope.scaling.beta_fast")
        || w.has("mistral3.rope.scaling.mscale_all_dim")
        || w.has("mistral3.rope.scaling_beta");
    if !marked {
        return false;
    }
    w.handler("mistral3");
    w.copy("mistral3.rope.scaling.beta_fast", "mistral3.rope.scaling.yarn_beta_fast");
    w.copy("mistral3.rope.scaling.beta_slow", "mistral3.rope.scaling.yarn_beta_slow");
    w.copy("mistral3.rope.scaling.mscale_all_dim", "mistral3.rope.scaling.yarn_log_multiplier");
    w.copy("mistral3.rope.scaling_beta", "mistral3.attention.temperature_scale");
    if w.str_missing_or_default("tokenizer.ggml.pre") {
        w.set_str("tokenizer.ggml.pre", "tekken");
    }
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    true
}

/// GLM-4.7 Flash (`glm4moelite`) is DeepSeek-V2 style MLA: llama.cpp loads it as `deepseek2`,
/// whose keys follow the absorbed convention (one KV head; key and value lengths from the
/// latent rank) with the per-head sizes under `*_mla`.
pub(crate) fn glm4moelite(w: &mut Work) -> bool {
    w.handler("glm4moelite");
    // Per-head sizes in the published convention: the key's (no-RoPE part plus RoPE part) and
    // the value's, which llama.cpp reads as `*_mla`.
    let key_dim = w.u32_of("glm4moelite.attention.key_length");
    let value_dim = w.u32_of("glm4moelite.attention.value_length").or(key_dim);
    w.set_arch("deepseek2");
    w.set_u32("deepseek2.attention.head_count_kv", 1);
    if let (Some(rank), Some(rope)) =
        (w.u32_of("deepseek2.attention.kv_lora_rank"), w.u32_of("deepseek2.rope.dimension_count"))
    {
        w.set_u32("deepseek2.attention.key_length", rank + rope);
        w.set_u32("deepseek2.attention.value_length", rank);
    }
    if let Some(key_dim) = key_dim {
        w.set_u32("deepseek2.attention.key_length_mla", key_dim);
    }
    if let Some(value_dim) = value_dim {
        w.set_u32("deepseek2.attention.value_length_mla", value_dim);
    }
    w.set_if_missing("deepseek2.expert_group_count", MetaValue::U32(1));
    w.set_if_missing("deepseek2.expert_group_used_count", MetaValue::U32(1));
    w.set_str("tokenizer.ggml.pre", "glm4");
    // End-of-turn and end-of-message tokens: the second and third of the EOS list.
    let ids: Vec<u32> = match w.get("tokenizer.ggml.eos_token_ids") {
        Some(MetaValue::Array(ArrayValue::I32(v))) => v.iter().filter(|x| **x >= 0).map(|x| *x as u32).collect(),
        Some(MetaValue::Array(ArrayValue::U32(v))) => v.clone(),
        _ => Vec::new(),
    };
    if !w.has("tokenizer.ggml.eot_token_id") && ids.len() >= 2 {
        w.set_u32("tokenizer.ggml.eot_token_id", ids[1]);
    }
    if !w.has("tokenizer.ggml.eom_token_id") && ids.len() >= 3 {
        w.set_u32("tokenizer.ggml.eom_token_id", ids[2]);
    }
    true
}

/// DeepSeek-OCR published as `deepseekocr`: llama.cpp's `deepseek2-ocr`, with the expert sizes
/// it needs taken from the first MoE block's shapes and the SAM, vision and projector tensors
/// hidden.
pub(crate) fn deepseekocr(w: &mut Work) -> bool {
    w.handler("deepseekocr");
    w.set_arch("deepseek2-ocr");
    w.set_if_missing("deepseek2-ocr.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-6));
    // The first MoE block (after the dense ones) has the expert shapes.
    let moe_block = first_block_with(w, ".ffn_down_exps.weight");
    if !w.has("deepseek2-ocr.expert_feed_forward_length") {
        if let Some(n) = moe_block.as_ref().and_then(|b| w.dim(&format!("{b}.ffn_down_exps.weight"), 0)) {
            w.set_u32("deepseek2-ocr.expert_feed_forward_length", n as u32);
        }
    }
    if !w.has("deepseek2-ocr.expert_shared_count") {
        let ff = w.u32_of("deepseek2-ocr.expert_feed_forward_length").filter(|n| *n > 0);
        let shared = moe_block.as_ref().and_then(|b| w.dim(&format!("{b}.ffn_down_shexp.weight"), 0));
        if let (Some(shared), Some(ff)) = (shared, ff) {
            w.set_u32("deepseek2-ocr.expert_shared_count", (shared / u64::from(ff)) as u32);
        }
    }
    for prefix in ["s.", "v.", "mm."] {
        w.hide_prefix(prefix);
    }
    true
}

/// `blk.N` of the first block that has a tensor ending in `suffix`.
fn first_block_with(w: &Work, suffix: &str) -> Option<String> {
    w.g.tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(suffix))
        .filter(|b| b.starts_with("blk.") && b[4..].bytes().all(|c| c.is_ascii_digit()))
        .min_by_key(|b| b[4..].parse::<u64>().unwrap_or(u64::MAX))
        .map(str::to_string)
}

/// Nemotron-H MoE: the latent-FFN variants name their projections `ffn_latent_in/out`
/// (llama.cpp: `down/up`) and lack `moe_latent_size`; MTP tensors are hidden.
pub(crate) fn nemotron_h_moe(w: &mut Work) -> bool {
    let marked = first_block_with(w, ".ffn_latent_in.weight").is_some() || w.any_tensor_with_prefix("mtp.");
    if !marked {
        return false;
    }
    w.handler("nemotron_h_moe");
    nemotron_latent(w);
    true
}

fn nemotron_latent(w: &mut Work) {
    let arch = w.arch();
    let key = format!("{arch}.moe_latent_size");
    if !w.has(&key) {
        let latent =
            w.g.tensors.iter().find(|t| t.name.starts_with("blk.") && t.name.ends_with(".ffn_latent_in.weight"));
        if let Some(n) = latent.and_then(|t| t.dims.get(1).copied()) {
            w.set_u32(&key, n as u32);
        }
    }
    w.rename_tensors_containing(".ffn_latent_in", ".ffn_latent_down");
    w.rename_tensors_containing(".ffn_latent_out", ".ffn_latent_up");
    w.hide_prefix("mtp.");
}

/// The unified text, vision and audio Nemotron (`nemotron_h_omni`): its text side is
/// `nemotron_h_moe` (or `nemotron_h` without experts); the media encoders are hidden.
pub(crate) fn nemotron_h_omni(w: &mut Work) -> bool {
    if !(w.any_tensor_with_prefix("v.") || w.any_tensor_with_prefix("a.") || w.any_tensor_with_prefix("mm.")) {
        return false;
    }
    w.handler("nemotron_h_omni");
    let experts = w.u32_of("nemotron_h_omni.expert_count").unwrap_or(0) > 0
        || w.u32_of("nemotron_h_omni.expert_used_count").unwrap_or(0) > 0;
    let text = if experts { "nemotron_h_moe" } else { "nemotron_h" };
    // The media encoders' own keys stay behind.
    let media: Vec<String> =
        w.g.metadata
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.starts_with("nemotron_h_omni.vision.") || k.starts_with("nemotron_h_omni.audio."))
            .collect();
    for k in media {
        w.remove(&k);
    }
    w.set_arch(text);
    for prefix in ["a.", "v.", "mm."] {
        w.hide_prefix(prefix);
    }
    if experts {
        nemotron_latent(w);
    }
    true
}

/// Laguna with its older attention-gate tensor and sliding-window RoPE key names.
pub(crate) fn laguna(w: &mut Work) -> bool {
    let marked = w.has("laguna.rope.swa.dimension_count")
        || w.has("laguna.rope.swa.freq_base")
        || w.tensor("blk.0.attn_g.weight").is_some();
    if !marked {
        return false;
    }
    w.handler("laguna");
    w.copy("laguna.rope.swa.dimension_count", "laguna.rope.dimension_count_swa");
    w.copy("laguna.rope.swa.freq_base", "laguna.rope.freq_base_swa");
    w.rename_suffix(".attn_g.weight", ".attn_gate.weight");
    true
}

/// Llama 3.x published early: no pre-tokenizer (so not `llama-bpe`'s splitting) and
/// `<|end_of_text|>` (128001) as EOS, where instruct turns end with `<|eot_id|>` (128009).
pub(crate) fn llama3(w: &mut Work) -> bool {
    if !w.token_is(128_009, "<|eot_id|>") {
        return false;
    }
    let chat = w.token_is(128_006, "<|start_header_id|>")
        || w.str_contains("tokenizer.chat_template", "<|start_header_id|>")
        || w.str_contains("tokenizer.chat_template", "<|eot_id|>");
    let no_pre = w.str_missing_or_default("tokenizer.ggml.pre");
    let eos_end_of_text = w.u32_of("tokenizer.ggml.eos_token_id") == Some(128_001);
    if !(chat && (no_pre || eos_end_of_text)) {
        return false;
    }
    w.handler("llama3");
    if no_pre {
        w.set_str("tokenizer.ggml.pre", "llama-bpe");
    }
    if w.u32_of("tokenizer.ggml.eos_token_id").is_none_or(|id| id == 128_001) {
        w.set_u32("tokenizer.ggml.eos_token_id", 128_009);
    }
    if w.u32_of("tokenizer.ggml.eot_token_id").is_none_or(|id| id == 128_001) {
        w.set_u32("tokenizer.ggml.eot_token_id", 128_009);
    }
    w.set("tokenizer.ggml.eos_token_ids", MetaValue::Array(ArrayValue::I32(vec![128_009])));
    true
}

/// GLM-OCR published as `glmocr`: llama.cpp's `glm4` (its OCR variant), with four M-RoPE
/// sections, the RoPE width from the key length, the `chatglm-bpe` pre-tokenizer, three tensor
/// names of its own, and each block's FFN gate and up joined into llama.cpp's one `ffn_up`
/// (gate rows first, as its SwiGLU splits them).
pub(crate) fn glmocr(w: &mut Work) -> Result<bool, Unsupported> {
    w.handler("glmocr");
    w.set_arch("glm4");
    w.pad_sections("glm4.rope.mrope_section", "glm4.rope.dimension_sections");
    w.remove("glm4.rope.mrope_section");
    if !w.has("glm4.rope.dimension_count") {
        if let Some(n) = w.u32_of("glm4.attention.key_length") {
            w.set_u32("glm4.rope.dimension_count", n);
        }
    }
    if w.has("tokenizer.ggml.pre") {
        w.set_str("tokenizer.ggml.pre", "chatglm-bpe");
    }
    w.rename_tensors_containing(".attn_out.", ".attn_output.");
    w.rename_tensors_containing(".post_attn_norm.", ".post_attention_norm.");
    w.rename_tensors_containing(".post_ffn_norm.", ".post_ffw_norm.");
    let gates: Vec<String> =
        w.g.tensors
            .iter()
            .filter(|t| t.name.starts_with("blk.") && t.name.ends_with(".ffn_gate.weight"))
            .map(|t| t.name.clone())
            .collect();
    for gate in gates {
        let up = gate.replace(".ffn_gate.weight", ".ffn_up.weight");
        if !w.fuse_rows(&[&gate], &up) {
            return Err(Unsupported {
                architecture: "glmocr".into(),
                why: format!("{gate} and {up} cannot be joined (missing, or of other types or widths)"),
            });
        }
    }
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    Ok(true)
}

/// Llama 4 with its vision tower and projector in the file. Ollama's converter also wrote the
/// expert width as `feed_forward_length` (the dense one as `intermediate_size`) and no
/// `expert_feed_forward_length`, which llama.cpp requires: taken from the expert tensors.
pub(crate) fn llama4(w: &mut Work) -> bool {
    if !(w.any_tensor_with_prefix("v.") || w.any_tensor_with_prefix("mm.")) {
        return false;
    }
    w.handler("llama4");
    if !w.has("llama4.expert_feed_forward_length") {
        let experts = first_block_with(w, ".ffn_gate_exps.weight");
        if let Some(n) = experts.and_then(|b| w.dim(&format!("{b}.ffn_gate_exps.weight"), 1)) {
            w.set_u32("llama4.expert_feed_forward_length", n as u32);
            w.copy("llama4.intermediate_size", "llama4.feed_forward_length");
        }
    }
    w.hide_prefix("v.");
    w.hide_prefix("mm.");
    true
}

/// Snowflake Arctic Embed 2 (`bert` with a T5 tokenizer) whose precompiled character map is
/// stored as one base64 character per array entry; llama.cpp reads the decoded bytes.
pub(crate) fn snowflake_arctic_embed2(w: &mut Work) -> bool {
    if !w.str_is("tokenizer.ggml.model", "t5") {
        return false;
    }
    let Some(MetaValue::Array(ArrayValue::String(chars))) = w.get("tokenizer.ggml.precompiled_charsmap") else {
        return false;
    };
    if chars.iter().any(|c| c.len() != 1) {
        return false;
    }
    let encoded: String = chars.concat();
    let Some(bytes) = decode_base64(&encoded).filter(|b| !b.is_empty()) else { return false };
    w.handler("snowflake-arctic-embed2");
    w.set("tokenizer.ggml.precompiled_charsmap", MetaValue::Array(ArrayValue::U8(bytes)));
    true
}

/// Standard base64 (with or without padding); `None` on any other character.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().take_while(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) fn base64_for_tests(s: &str) -> Option<Vec<u8>> {
    decode_base64(s)
}
