//! The Modelfile parser never panics, and whatever it accepts prints to text that parses back to
//! the same commands.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mf) = corral_modelfile::Modelfile::parse(text) {
        let printed = mf.to_string();
        if let Ok(again) = corral_modelfile::Modelfile::parse(&printed) {
            assert_eq!(again.commands, mf.commands, "{printed:?}");
        }
    }
});
