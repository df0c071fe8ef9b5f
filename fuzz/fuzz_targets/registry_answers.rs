//! What a hostile registry can send, checked: manifests (a manifest that is accepted serialises
//! and reads back the same), token answers (an accepted token is printable ASCII, safe in a
//! header), `WWW-Authenticate` challenges and `Content-Range` values. None may panic.
#![no_main]

use corral_registry::answers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = answers::manifest(data, None) {
        let again = answers::manifest(&m.to_bytes(), None).expect("a manifest we wrote reads back");
        assert_eq!(again, m);
    }
    if let Ok(token) = answers::token(data) {
        assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = answers::parse_challenge(text);
        let _ = answers::content_range(text);
    }
});
