//! Chat templates (Jinja, through minijinja) on any template text: compiling and rendering a
//! conversation never panic, and a render that succeeds stays within the output cap (fuel bounds
//! the steps, a depth limit the recursion).
#![no_main]

use corral_template::{JinjaTemplate, RenderOptions};
use libfuzzer_sys::fuzz_target;

#[path = "conversation.rs"]
mod conversation;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(template) = JinjaTemplate::new(src, "<s>", "</s>") else { return };
    let opts = RenderOptions {
        tools: Some(conversation::tools()),
        add_generation_prompt: true,
        enable_thinking: Some(true),
        reasoning_effort: Some("high".into()),
    };
    if let Ok(out) = template.render(&conversation::messages(), &opts) {
        assert!(out.len() <= corral_template::MAX_OUTPUT);
    }
});
