//! The projector side of a published file (issue 29): Ollama's own engine reads a model's vision
//! tower and projector from the model's GGUF, where llama.cpp's multimodal library (`mtmd`,
//! `clip.cpp`) wants a separate projector GGUF of architecture `clip`. The same file serves as
//! both, as it does for Ollama: [`crate::translate`] hides the vision tensors from the text
//! loader, and [`translate_clip`] gives `clip.cpp` the header it expects: the tower's settings as
//! `clip.vision.*` keys (with the exact types `clip.cpp` asserts), its tensors under `clip.cpp`'s
//! names, the text model's tensors hidden, and, where llama.cpp's converter writes them in F32
//! and `clip.cpp` needs it, F16 tensors loaded as F32 (llama.cpp's CPU kernels cannot add Gemma
//! 3's F16 position embeddings to F32 activations).
//!
//! Gemma 3, Gemma 4's vision and audio towers ([`gemma4`], [`gemma4a`]), Qwen2.5-VL
//! ([`qwen25vl`]), Qwen3-VL ([`qwen3vl`]), Mistral 3 ([`mistral3`]) and Llama 4 ([`llama4`]) so
//! far; the other published towers have no projector translation yet.

mod gemma4;
mod gemma4a;
mod llama4;
mod mistral3;
mod qwen25vl;
mod qwen3vl;
#[cfg(test)]
mod testing;

use corral_gguf::{ArrayValue, Gguf, MetaValue};

use crate::work::Work;
use crate::Translation;

/// The projector translation of a published model file, if Corral has one for it.
pub fn translate_clip(g: &Gguf) -> Option<Translation> {
    let mut w = Work::new(g);
    let handled = match g.architecture()? {
        "gemma3" => gemma3(&mut w),
        "gemma4" => gemma4::gemma4(&mut w),
        "qwen25vl" => qwen25vl::qwen25vl(&mut w),
        "mistral3" => mistral3::mistral3(&mut w),
        "llama4" => llama4::llama4(&mut w),
        "qwen3vl" | "qwen3vlmoe" => qwen3vl::qwen3vl(&mut w),
        _ => false,
    };
    handled.then(|| w.finish())
}

/// Copies each `<arch>.vision.<key>` to `clip.vision.<key>` as a U32 (`clip.cpp` reads them with
/// `gguf_get_val_u32`, which asserts the type). False, and nothing copied, when one is missing.
fn copy_vision_u32(w: &mut Work, arch: &str, keys: &[&str]) -> bool {
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        match w.u32_of(&format!("{arch}.vision.{key}")) {
            Some(v) => values.push((key, v)),
            None => return false,
        }
    }
    for (key, v) in values {
        w.set_u32(&format!("clip.vision.{key}"), v);
    }
    true
}

/// `clip.<tower>.attention.layer_norm_epsilon` (`tower`: `vision` or `audio`) as the F32
/// `clip.cpp` asserts: the tower's own epsilon (F32 or F64 in the file), else 1e-6, the default of
/// every tower translated.
fn set_epsilon(w: &mut Work, arch: &str, tower: &str) {
    let eps = match w.get(&format!("{arch}.{tower}.attention.layer_norm_epsilon")) {
        Some(MetaValue::F32(e)) => *e,
        Some(MetaValue::F64(e)) => *e as f32,
        _ => 1e-6,
    };
    w.set(&format!("clip.{tower}.attention.layer_norm_epsilon"), MetaValue::F32(eps));
}

/// A number key of any integer or float type, as an f32 (for comparing with `clip.cpp`'s fixed
/// values).
fn number(v: Option<&MetaValue>) -> Option<f32> {
    match v? {
        MetaValue::U32(x) => Some(*x as f32),
        MetaValue::I32(x) => Some(*x as f32),
        MetaValue::F32(x) => Some(*x),
        MetaValue::F64(x) => Some(*x as f32),
        _ => None,
    }
}

/// The `<arch>.<key>` U32 values of `keys`, in order; `None` when one is missing.
fn u64_keys<const N: usize>(w: &Work, arch: &str, keys: [&str; N]) -> Option<[u64; N]> {
    let mut out = [0; N];
    for (slot, key) in out.iter_mut().zip(keys) {
        *slot = u64::from(w.u32_of(&format!("{arch}.{key}"))?);
    }
    Some(out)
}

/// The width of a head when `heads` split a tower `embd` wide evenly into heads whose width
/// divides by 4: the 2-D RoPE of `clip.cpp` turns each half of a head (one per picture axis) in
/// pairs.
fn head_width(embd: u64, heads: u64) -> Option<u64> {
    embd.checked_div(heads).filter(|d| d * heads == embd && d % 4 == 0)
}

/// Whether one of the `<arch>.vision.` keys of `fixed` has another value than the one `clip.cpp`
/// hard-codes (an absent key does not: Ollama's engine then assumed that value too).
fn differs_from(w: &Work, arch: &str, fixed: &[(&str, f32)]) -> bool {
    fixed.iter().any(|(key, want)| number(w.get(&format!("{arch}.vision.{key}"))).is_some_and(|v| v != *want))
}

/// Renames the tower's (`v.*`) and projector's (`mm.*`) tensors by `renames`, substrings replaced
/// in turn (once each), so that an earlier, longer pattern claims a name before a later, generic
/// one could. The text model's tensors keep their names, even where they share a substring.
fn rename_tower(w: &mut Work, renames: &[(&str, &str)]) {
    let names: Vec<String> =
        w.g.tensors.iter().map(|t| t.name.clone()).filter(|n| n.starts_with("v.") || n.starts_with("mm.")).collect();
    for name in names {
        let to = renames.iter().fold(name.clone(), |n, (from, to)| n.replacen(from, to, 1));
        if to != name {
            w.rename_tensor(&name, &to);
        }
    }
}

/// The keys every vision projector has, the architecture, and the text model's tensors hidden
/// (the tower's are `v.*`, the projector's `mm.*`, once renamed).
fn finish_projector(w: &mut Work, projector_type: &str, mean: [f32; 3], std: [f32; 3]) {
    finish_towers(w, projector_type, None, mean, std);
}

/// [`finish_projector`], with an audio tower (`a.*`) of `audio_type` beside the vision tower where
/// one was translated. Each tower's projector type is then its own key: `clip.projector_type`
/// would name both.
fn finish_towers(w: &mut Work, vision_type: &str, audio_type: Option<&str>, mean: [f32; 3], std: [f32; 3]) {
    w.set("clip.vision.image_mean", MetaValue::Array(ArrayValue::F32(mean.to_vec())));
    w.set("clip.vision.image_std", MetaValue::Array(ArrayValue::F32(std.to_vec())));
    w.set("clip.has_vision_encoder", MetaValue::Bool(true));
    match audio_type {
        None => w.set_str("clip.projector_type", vision_type),
        Some(audio_type) => {
            w.set_str("clip.vision.projector_type", vision_type);
            w.set("clip.has_audio_encoder", MetaValue::Bool(true));
            w.set_str("clip.audio.projector_type", audio_type);
        }
    }
    w.set_arch("clip");
    let audio = audio_type.is_some();
    let tower = |name: &str| name.starts_with("v.") || name.starts_with("mm.") || (audio && name.starts_with("a."));
    w.hide_where(|name| !tower(name));
}

/// Gemma 3's SigLIP tower as Ollama's converter names it, for `clip.cpp`'s `gemma3` projector.
fn gemma3(w: &mut Work) -> bool {
    if !w.any_tensor_with_prefix("v.") || w.tensor("mm.mm_input_projection.weight").is_none() {
        return false;
    }
    let settings =
        ["block_count", "embedding_length", "feed_forward_length", "image_size", "patch_size", "attention.head_count"];
    let Some(text_embd) = w.u32_of("gemma3.embedding_length") else { return false };
    if !copy_vision_u32(w, "gemma3", &settings) {
        return false;
    }
    w.handler("gemma3");
    set_epsilon(w, "gemma3", "vision");
    w.set_u32("clip.vision.projection_dim", text_embd);
    // The tower pools its patches down to `tokens_per_image` (a square): the pooling factor.
    let side = w.u32_of("clip.vision.image_size").unwrap_or(0) / w.u32_of("clip.vision.patch_size").unwrap_or(1).max(1);
    let per_side = w.u32_of("gemma3.mm.tokens_per_image").map_or(0, |n| (n as f64).sqrt().round() as u32);
    if per_side > 0 && side.is_multiple_of(per_side) {
        w.set_u32("clip.vision.projector.scale_factor", side / per_side);
    }
    w.set("clip.use_gelu", MetaValue::Bool(true));
    for (from, to) in [
        ("v.patch_embedding.", "v.patch_embd."),
        ("v.position_embedding.", "v.position_embd."),
        ("v.post_layernorm.", "v.post_ln."),
        (".layer_norm1.", ".ln1."),
        (".layer_norm2.", ".ln2."),
        (".attn_output.", ".attn_out."),
        (".mlp.fc1.", ".ffn_up."),
        (".mlp.fc2.", ".ffn_down."),
        ("mm.mm_soft_emb_norm.", "mm.soft_emb_norm."),
        ("mm.mm_input_projection.", "mm.input_projection."),
    ] {
        w.rename_tensors_containing(from, to);
    }
    w.promote_to_f32("v.patch_embd.weight");
    w.promote_to_f32("v.position_embd.weight");
    finish_projector(w, "gemma3", [0.5; 3], [0.5; 3]);
    true
}

#[cfg(test)]
mod tests {
    use super::testing::with_keys;
    use super::*;
    use corral_gguf::{GgmlType, TensorInfo};

    fn tensor(name: &str, kind: GgmlType, dims: &[u64]) -> TensorInfo {
        let size = crate::work::size_of(kind, dims).unwrap();
        TensorInfo { name: name.into(), kind, dims: dims.to_vec(), offset: 0, size }
    }

    fn published() -> Gguf {
        let mut g = with_keys([
            ("general.architecture", MetaValue::String("gemma3".into())),
            ("gemma3.embedding_length", MetaValue::U32(640)),
            ("gemma3.mm.tokens_per_image", MetaValue::U32(4)),
            ("gemma3.vision.block_count", MetaValue::U32(1)),
            ("gemma3.vision.embedding_length", MetaValue::U32(32)),
            ("gemma3.vision.feed_forward_length", MetaValue::U32(64)),
            ("gemma3.vision.image_size", MetaValue::U32(112)),
            ("gemma3.vision.patch_size", MetaValue::U32(14)),
            ("gemma3.vision.attention.head_count", MetaValue::U32(2)),
        ]);
        g.tensors = vec![
            tensor("token_embd.weight", GgmlType::F16, &[640, 8]),
            tensor("v.patch_embedding.weight", GgmlType::F16, &[14, 14, 3, 32]),
            tensor("v.position_embedding.weight", GgmlType::F16, &[32, 64]),
            tensor("v.blk.0.attn_output.weight", GgmlType::F16, &[32, 32]),
            tensor("v.blk.0.mlp.fc1.weight", GgmlType::F16, &[32, 64]),
            tensor("mm.mm_input_projection.weight", GgmlType::F16, &[640, 32]),
        ];
        g
    }

    #[test]
    fn gemma3_tower_becomes_a_clip_projector() {
        let g = published();
        let t = translate_clip(&g).expect("a gemma3 file with a tower");
        let out = t.apply(&g);
        assert_eq!(out.architecture(), Some("clip"));
        assert_eq!(out.get_str("clip.projector_type"), Some("gemma3"));
        assert_eq!(out.get("clip.vision.image_size"), Some(&MetaValue::U32(112)));
        assert_eq!(out.get("clip.vision.projection_dim"), Some(&MetaValue::U32(640)));
        // 8 patches a side pooled to 2: a factor of 4.
        assert_eq!(out.get("clip.vision.projector.scale_factor"), Some(&MetaValue::U32(4)));
        let names: Vec<&str> = out.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "v.patch_embd.weight",
                "v.position_embd.weight",
                "v.blk.0.attn_out.weight",
                "v.blk.0.ffn_up.weight",
                "mm.input_projection.weight"
            ]
        );
        let kind = |n: &str| out.tensors.iter().find(|t| t.name == n).unwrap().kind;
        assert_eq!(kind("v.position_embd.weight"), GgmlType::F32);
        assert_eq!(kind("v.patch_embd.weight"), GgmlType::F32);
        assert_eq!(kind("mm.input_projection.weight"), GgmlType::F16);
        assert_eq!(t.promoted, ["v.patch_embd.weight", "v.position_embd.weight"]);
        assert!(t.hidden.contains("token_embd.weight"));
    }

    #[test]
    fn files_without_a_tower_have_no_projector() {
        let mut g = published();
        g.tensors.retain(|t| !t.name.starts_with("v.") && !t.name.starts_with("mm."));
        assert!(translate_clip(&g).is_none());
        // Nor does a file whose tower lacks the settings clip.cpp needs.
        let mut g = published();
        g.metadata.retain(|(k, _)| k != "gemma3.vision.patch_size");
        assert!(translate_clip(&g).is_none());
    }
}
