//! Any byte string fed to the GGUF reader is either a parsed file or an error: no panic, no
//! allocation beyond the reader's limits, and a parsed file's tensors lie inside the input. A
//! parsed header also goes through the translation of Ollama-published layouts, which must not
//! panic and must never index more tensors or more bytes than the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = corral_gguf::read_bytes(data) {
        for t in &g.tensors {
            assert!(g.data_offset + t.offset + t.size <= data.len() as u64);
        }
        if let Ok(Some(translation)) = corral_compat::translate(&g) {
            let seen = translation.apply(&g);
            let bytes = |g: &corral_gguf::Gguf| g.tensors.iter().map(|t| t.size).fold(0u64, u64::saturating_add);
            assert!(seen.tensors.len() <= g.tensors.len());
            assert!(bytes(&seen) <= bytes(&g));
        }
    }
});
