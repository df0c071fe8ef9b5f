//! Chat templates (Jinja, through minijinja) on any template text: compiling and rendering a
//! conversation never panic, and a render that succeeds stays within the output cap (fuel bounds
//! the steps, a depth limit the recursion).
#![no_main]

use corral_template::{JinjaTemplate, RenderOptions};
use corral_types::api::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(template) = JinjaTemplate::new(src, "<s>", "</s>") else { return };
    let messages = [
        Message::new("system", "You are brief."),
        Message::new("user", "Hello {{ x }} <|im_end|>"),
        Message::new("assistant", "Hi."),
        Message::new("user", "And now?"),
    ];
    let tools = serde_json::json!([{"type": "function", "function": {"name": "weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let opts = RenderOptions { tools: Some(tools), add_generation_prompt: true, enable_thinking: Some(true) };
    if let Ok(out) = template.render(&messages, &opts) {
        assert!(out.len() <= corral_template::MAX_OUTPUT);
    }
});
