//! GGUF, the file format of llama.cpp models: metadata key-values, a tensor index, then aligned
//! tensor data.
//!
//! [`read`] parses the header and index of GGUF v2 and v3 files without touching the tensor data.
//! Every length and count in a GGUF file is attacker-controlled (Ollama has shipped about ten CVEs
//! in this parser), so the reader checks each one against [`Limits`] and against the bytes
//! actually left in the file *before* allocating, uses checked arithmetic for every size and
//! offset, and turns any inconsistency into a [`GgufError`]. It never panics on input.
//!
//! [`write`] produces GGUF v3 files (used for the project's tiny test models and LoRA adapters).
//!
//! Architecture invariant: this crate knows nothing about models beyond the file format. It does
//! no network access and depends on no other Corral crate.

mod read;
mod types;
mod value;
mod write;

mod dequant;
pub use dequant::dequantize;
pub use read::{read, read_bytes, read_path, Gguf, GgufError, Limits, TensorInfo};
pub use types::{file_type_name, GgmlType};
pub use value::{ArrayValue, MetaValue};
pub use write::{quantize_q8_0, raw_bytes, GgufWriter};

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Whether `head` (the first bytes of a file) starts like a GGUF file.
pub fn has_magic(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}
