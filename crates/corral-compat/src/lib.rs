//! GGUF files published for Ollama's own engine, seen in llama.cpp's layout.
//!
//! Ollama's registry serves many models whose GGUF was written for its Go engine: other
//! architecture names (`gptoss`, `olmo3`, `qwen25vl`…), other key and tensor names, vision, audio
//! and MTP tensors embedded in the one file, tokenizer metadata llama.cpp reads differently. The
//! blob must stay what the registry served (its digest is its name), so the translation happens at
//! load time: [`translate`] looks at a header and returns a [`Translation`], a list of edits
//! (keys set or removed, tensors renamed, reshaped or hidden from the text loader) that the
//! runner hands to llama.cpp's model loader (`corral-engine/compat/`). Nothing is written to disk:
//! the tensor data stays where the file has it, and the file is still memory-mapped (but see
//! the assembled tensors below).
//!
//! Each architecture's handler is a pure function of the header. Detection follows the markers
//! Ollama's own compatibility layer uses (`llama/compat/` in its source): a file that matches none
//! is left alone, so a file already in llama.cpp's layout never changes. [`Translation::apply`]
//! gives the header llama.cpp will see, which the server uses for what it places in memory and the
//! tests compare with the same weights written in llama.cpp's layout.
//!
//! Where llama.cpp fuses tensors that Ollama's layout keeps apart (GLM-OCR's FFN gate and up),
//! the fused tensor is assembled at load from the parts' byte ranges ([`Translation::assembled`]);
//! such a file is read rather than mapped. Translations that would need tensor data converted
//! (Qwen 3.5's MTP head: norms shifted to F32) are not made: those tensors are hidden instead.

mod clip;
mod gemma;
mod other;
mod qwen;
mod work;

use std::collections::BTreeSet;

use corral_gguf::{Gguf, MetaValue};

pub use clip::translate_clip;
use work::Work;

/// The environment variable that turns the translation off, as in Ollama (`0` = off).
pub const ENV_SWITCH: &str = "OLLAMA_LLAMA_CPP_COMPAT";

/// Whether translation is on, from the value of [`ENV_SWITCH`]: everything but `0` leaves it on.
pub fn enabled(switch: Option<&str>) -> bool {
    switch.map(str::trim) != Some("0")
}

/// One metadata edit, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Set(String, MetaValue),
    Remove(String),
    /// An array cut to its first entries (a 262k-token list need not cross to llama.cpp again).
    Truncate(String, usize),
}

/// What turns a published header into the one llama.cpp expects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// The handler that matched (`gemma3`, `gptoss`…), for logs and errors.
    pub handler: &'static str,
    /// The architecture llama.cpp loads it as, when that differs from the file's.
    pub architecture: Option<String>,
    pub edits: Vec<Edit>,
    /// Tensor renames (from, to); applied after the edits.
    pub renames: Vec<(String, String)>,
    /// New, never larger, shapes of tensors (by their name after renames): the loader reads only
    /// the first bytes of such a tensor.
    pub reshapes: Vec<(String, Vec<u64>)>,
    /// Tensors the text loader must not index (embedded vision, audio, projector, MTP).
    pub hidden: BTreeSet<String>,
    /// Tensors (by their name after renames) whose bytes are the concatenation of these ranges
    /// of the file, `(absolute offset, size)`: llama.cpp's layout fuses what Ollama's kept apart,
    /// splits what it fused, or orders rows otherwise. Such a file is read into memory, not mapped.
    pub assembled: Vec<(String, Vec<(u64, u64)>)>,
    /// Tensors (by their name after renames) stored as F16 that must be loaded as F32 (llama.cpp's
    /// CPU kernels cannot add an F16 tensor to an F32 one, which a projector's position
    /// embeddings are).
    pub promoted: Vec<String>,
    /// Tensors (by their name after renames), F32 vectors, whose values are one row of another
    /// tensor of the file, converted to F32 from whatever type it has: `(name, source, row)`.
    /// Pixtral's projector wants the `[IMG_BREAK]` token's embedding, a row of the text model's
    /// `token_embd.weight`, as a tensor of its own (`v.token_embd.img_break`). Projector plans only.
    pub rows_as_f32: Vec<(String, String, u64)>,
}

/// A published file Corral recognises but cannot translate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this {architecture} model was published for Ollama's own engine and cannot be loaded by Corral yet: {why}")]
pub struct Unsupported {
    pub architecture: String,
    pub why: String,
}

/// The translation a header needs, if any. `Ok(None)`: the file is in llama.cpp's layout (or is
/// nothing Corral knows), and loads as it is.
pub fn translate(g: &Gguf) -> Result<Option<Translation>, Unsupported> {
    let Some(arch) = g.architecture() else { return Ok(None) };
    let mut w = Work::new(g);
    let handled = match arch {
        // embeddinggemma is a gemma3 file with dense layers: it must be told apart first.
        "gemma3" => gemma::embeddinggemma(&mut w) || gemma::gemma3(&mut w),
        "gemma3n" => gemma::gemma3n(&mut w),
        "gemma4" => gemma::gemma4(&mut w),
        "bert" => other::snowflake_arctic_embed2(&mut w),
        "qwen35" | "qwen35moe" => qwen::qwen35(&mut w),
        "qwen3next" => qwen::qwen3next(&mut w),
        "qwen25vl" => qwen::qwen25vl(&mut w),
        "qwen3vl" | "qwen3vlmoe" => qwen::qwen3vl(&mut w),
        "laguna" => other::laguna(&mut w),
        "gptoss" => other::gptoss(&mut w),
        "lfm2" | "lfm2moe" => other::lfm2(&mut w),
        "olmo3" => other::olmo3(&mut w),
        "mistral3" => other::mistral3(&mut w),
        "glm4moelite" => other::glm4moelite(&mut w),
        "deepseekocr" => other::deepseekocr(&mut w),
        "nemotron_h_omni" => other::nemotron_h_omni(&mut w),
        "nemotron_h_moe" => other::nemotron_h_moe(&mut w),
        "llama" => other::llama3(&mut w),
        "llama4" => other::llama4(&mut w),
        "glmocr" => other::glmocr(&mut w)?,
        _ => false,
    };
    Ok(handled.then(|| w.finish()))
}

impl Translation {
    /// The header llama.cpp sees once the translation is applied: keys edited, tensors renamed
    /// and reshaped, hidden tensors gone from the index. Data offsets are unchanged.
    pub fn apply(&self, g: &Gguf) -> Gguf {
        let mut out = g.clone();
        for edit in &self.edits {
            match edit {
                Edit::Set(key, value) => work::put(&mut out.metadata, key, value.clone()),
                Edit::Remove(key) => out.metadata.retain(|(k, _)| k != key),
                Edit::Truncate(key, n) => {
                    if let Some((_, MetaValue::Array(a))) = out.metadata.iter_mut().find(|(k, _)| k == key) {
                        work::truncate(a, *n);
                    }
                }
            }
        }
        if let Some(arch) = &self.architecture {
            work::put(&mut out.metadata, "general.architecture", MetaValue::String(arch.clone()));
        }
        out.tensors.retain(|t| !self.hidden.contains(&t.name));
        for (from, to) in &self.renames {
            if let Some(t) = out.tensors.iter_mut().find(|t| &t.name == from) {
                t.name = to.clone();
            }
        }
        for (name, dims) in &self.reshapes {
            if let Some(t) = out.tensors.iter_mut().find(|t| &t.name == name) {
                t.size = work::size_of(t.kind, dims).unwrap_or(t.size);
                t.dims = dims.clone();
            }
        }
        for name in &self.promoted {
            if let Some(t) = out.tensors.iter_mut().find(|t| &t.name == name) {
                t.kind = corral_gguf::GgmlType::F32;
                t.size *= 2;
            }
        }
        out
    }

    /// Bytes of tensor data the text loader does not read (hidden tensors, reshaped tails).
    pub fn unread_bytes(&self, g: &Gguf) -> u64 {
        let applied = self.apply(g);
        let total = |g: &Gguf| g.tensors.iter().map(|t| t.size).fold(0u64, u64::saturating_add);
        total(g).saturating_sub(total(&applied))
    }
}

#[cfg(test)]
mod tests;
