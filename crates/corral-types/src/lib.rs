//! Vocabulary shared by every Corral crate: model names, content digests, the on-disk manifest and
//! config formats, the Modelfile `PARAMETER` table, and the JSON types of Ollama's native API.
//!
//! Architecture invariant: this crate does no I/O and depends on no other Corral crate. Everything
//! here is plain data plus validation, so that the store, the server, the client and the CLI all
//! agree on what a valid name or digest is.

pub mod api;
pub mod digest;
pub mod duration;
pub mod format;
pub mod manifest;
pub mod name;
pub mod overlay;
pub mod params;
pub mod remote;
pub mod runner;

pub use digest::{Digest, DigestError};
pub use manifest::{Layer, Manifest, ModelConfig};
pub use name::{ModelName, NameError};
pub use overlay::Overlay;
