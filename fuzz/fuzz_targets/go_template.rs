//! Ollama's Go-template engine on any template text: parsing and rendering a conversation never
//! panic, and a render that succeeds stays within the output cap (loops and growth end in an
//! error in bounded time: the engine counts steps).
#![no_main]

use corral_types::api::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(template) = corral_template::GoTemplate::parse(src) else { return };
    let messages = [
        Message::new("system", "You are brief."),
        Message::new("user", "Hello {{ .Prompt }} <|im_end|>"),
        Message::new("assistant", "Hi."),
        Message::new("tool", "{\"temp\": 21}"),
        Message::new("user", "And now?"),
    ];
    let tools = serde_json::json!([{"type": "function", "function": {"name": "weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    if let Ok(out) = template.render_chat(&messages, Some(&tools)) {
        assert!(out.len() <= corral_template::MAX_OUTPUT);
    }
});
