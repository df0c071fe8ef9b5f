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

/// Issue 14: thinking levels reach the templates that read them, through a render job as the
/// server sends it (`Compiled::render`).
#[test]
fn issue_14_thinking_levels_reach_real_templates() {
    use corral_template::{Compiled, Source, Thinking};
    let jinja = |name: &str| {
        let source = std::fs::read_to_string(templates_dir().join(name)).unwrap();
        Compiled::new(&Source::Jinja { source, bos: "<s>".into(), eos: "</s>".into() }).unwrap()
    };
    let hi = [Message::new("user", "Hi")];
    let think = |on: bool, level: Option<&str>| Thinking { on: Some(on), level: level.map(String::from), set: true };

    // gpt-oss writes its reasoning effort into the system message; `max` is its `high`.
    let oss = jinja("openai-gpt-oss-120b.jinja");
    let render = |t: &Thinking| oss.render(&hi, None, t, None).unwrap();
    assert!(render(&Thinking::default()).contains("Reasoning: medium"), "its own default");
    assert!(render(&think(true, Some("low"))).contains("Reasoning: low"));
    assert!(render(&think(true, Some("max"))).contains("Reasoning: high"));

    // Qwen 3 closes an empty thinking block when told not to think.
    let qwen3 = jinja("Qwen-Qwen3-0.6B.jinja");
    let off = qwen3.render(&hi, None, &think(false, None), None).unwrap();
    assert!(off.ends_with("<think>\n\n</think>\n\n"), "{off:?}");
    let on = qwen3.render(&hi, None, &think(true, Some("high")), None).unwrap();
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");

    // Go templates get `.Think`, `.ThinkLevel` (`medium` for a plain true) and `.IsThinkSet`.
    let go = Compiled::new(&Source::Go(
        "{{ range .Messages }}{{ .Content }}{{ end }}|{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}".into(),
    ))
    .unwrap();
    let go_render = |t: &Thinking| go.render(&hi, None, t, None).unwrap();
    assert_eq!(go_render(&think(true, Some("high"))), "Hi|true|high|true");
    assert_eq!(go_render(&think(true, None)), "Hi|true|medium|true");
    assert_eq!(go_render(&Thinking { on: Some(true), level: None, set: false }), "Hi|true|medium|false");
    assert_eq!(go_render(&think(false, None)), "Hi|false||true");
    assert_eq!(go_render(&Thinking::default()), "Hi|false||false");
}
