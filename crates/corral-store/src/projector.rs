//! What a multimodal projector GGUF feeds its language model: the width of its output
//! embeddings, read from the tensor that makes them, so that `create` can refuse a projector made
//! for another model (llama.cpp would refuse it only when the model is loaded, at the first
//! request).
//!
//! The tensor depends on the projector type (`clip.projector_type`, as llama.cpp's `clip.cpp`
//! reads it); types not listed here are not checked at create.

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

/// Why a projector does not fit a language model of `n_embd`, if it does not.
pub fn mismatch(projector: &Gguf, n_embd: u64) -> Option<String> {
    let width = output_width(projector)?;
    (width != n_embd)
        .then(|| format!("its embeddings are {width} wide and the model's are {n_embd}: it was made for another model"))
}
