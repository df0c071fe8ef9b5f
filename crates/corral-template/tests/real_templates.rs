//! Every real chat template in `shared/models/chat-templates` renders a plain conversation.

use std::path::PathBuf;

use corral_template::{JinjaTemplate, RenderOptions};
use corral_types::api::Message;

fn templates_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chat-templates");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

#[test]
fn all_real_templates_render_a_plain_conversation() {
    let opts = RenderOptions { add_generation_prompt: true, ..Default::default() };
    let with_system = [
        Message::new("system", "You are terse."),
        Message::new("user", "What is 2+2?"),
        Message::new("assistant", "4."),
        Message::new("user", "And 3+3?"),
    ];
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(templates_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jinja") {
            continue;
        }
        count += 1;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = std::fs::read_to_string(&path).unwrap();
        let t = match JinjaTemplate::new(&source, "<s>", "</s>") {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: compile: {e}"));
                continue;
            }
        };
        // Some templates refuse a system role (Gemma 2); those get the conversation without it.
        let rendered = t.render(&with_system, &opts).or_else(|_| t.render(&with_system[1..], &opts));
        match rendered {
            Ok(text) => {
                for needle in ["What is 2+2?", "And 3+3?"] {
                    if !text.contains(needle) {
                        failures.push(format!("{name}: output lacks {needle:?}:\n{text}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: render: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
    // The shared set holds 70 templates (its README says 71; there are 70 `.jinja` files).
    assert!(count >= 70, "only {count} templates found");
}
