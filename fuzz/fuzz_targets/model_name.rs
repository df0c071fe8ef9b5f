//! A name that parses yields path parts that cannot leave the manifests directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(name) = corral_types::ModelName::parse(text) {
        for part in name.path_parts() {
            assert!(!part.is_empty() && !part.starts_with('.') && !part.contains(['/', '\\', '\0']));
        }
        assert!(corral_types::ModelName::parse(&name.to_string()).is_ok());
    }
});
