//! Any byte string fed to the GGUF reader is either a parsed file or an error: no panic, no
//! allocation beyond the reader's limits, and a parsed file's tensors lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = corral_gguf::read_bytes(data) {
        for t in &g.tensors {
            assert!(g.data_offset + t.offset + t.size <= data.len() as u64);
        }
    }
});
