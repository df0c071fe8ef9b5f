//! What a multimodal projector GGUF feeds its language model: the width of its output
//! embeddings, read from the tensor that makes them, so that `create` can refuse a projector made
//! for another model (llama.cpp would refuse it only when the model is loaded, at the first
//! request).
//!
//! The tensor depends on the projector type (`clip.projector_type`, as llama.cpp's `clip.cpp`
//! reads it); types not listed here are not checked at create. Some types also frame each image
//! with special tokens that `mtmd` looks up in the model's vocabulary, and llama.cpp aborts the
//! process when one is missing: those are checked too.

use corral_gguf::Gguf;

/// The width of the embeddings the projector `g` produces, where its type is known.
pub fn output_width(g: &Gguf) -> Option<u64> {
    let dim =
        |name: &str, axis: usize| g.tensors.iter().find(|t| t.name == name).and_then(|t| t.dims.get(axis).copied());
    let kind = g.get_str("clip.projector_type").or_else(|| g.get_str("clip.vision.projector_type"))?;
    match kind {
        // LLaVA's MLP and the projectors built like it: the second linear layer's outputs.
        "mlp" | "pixtral" | "phi4" | "lightonocr" => dim("mm.2.weight", 1),
        "mlp_norm" => dim("mm.3.bias", 0),
        "qwen2vl_merger" | "qwen2.5vl_merger" => dim("mm.1.bias", 0),
        "gemma3" => dim("mm.input_projection.weight", 0),
        "idefics3" => dim("mm.model.fc.weight", 1),
        "ultravox" | "voxtral" => dim("mm.a.mlp.2.weight", 1),
        "qwen2a" => dim("mm.a.fc.weight", 1),
        _ => None,
    }
}

/// The special tokens a projector type frames images with, which the model must have.
fn framing_tokens(kind: &str) -> &'static [&'static str] {
    match kind {
        "idefics3" => &["<fake_token_around_image>", "<global-img>"],
        "minicpmv" => &["<image>", "</image>", "<slice>", "</slice>"],
        "step3vl" => &["<im_start>", "<im_end>", "<patch_start>", "<patch_end>", "<patch_newline>"],
        _ => &[],
    }
}

/// Why a projector does not fit the language model `model`, if it does not.
pub fn mismatch(projector: &Gguf, model: &Gguf) -> Option<String> {
    let kind = projector.get_str("clip.projector_type").unwrap_or_default();
    let vocab = match model.get("tokenizer.ggml.tokens") {
        Some(corral_gguf::MetaValue::Array(corral_gguf::ArrayValue::String(t))) => t.as_slice(),
        _ => &[],
    };
    if let Some(token) = framing_tokens(kind).iter().find(|t| !vocab.iter().any(|v| v == *t)) {
        return Some(format!(
            "its images are framed with the token {token}, which the model's vocabulary does not have"
        ));
    }
    let n_embd = model.arch_u64("embedding_length").filter(|n| *n > 0)?;
    let width = output_width(projector)?;
    (width != n_embd)
        .then(|| format!("its embeddings are {width} wide and the model's are {n_embd}: it was made for another model"))
}
