//! Ollama's Go-template engine on any template text: parsing and rendering a conversation never
//! panic, and a render that succeeds stays within the output cap (loops and growth end in an
//! error in bounded time: the engine counts steps).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "conversation.rs"]
mod conversation;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(template) = corral_template::GoTemplate::parse(src) else { return };
    if let Ok(out) = template.render_chat(&conversation::messages(), Some(&conversation::tools())) {
        assert!(out.len() <= corral_template::MAX_OUTPUT);
    }
});
