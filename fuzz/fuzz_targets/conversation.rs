//! The conversation both template targets render: every role, text that looks like template
//! syntax and special tokens, and one tool with a schema.

use corral_types::api::Message;

pub fn messages() -> Vec<Message> {
    vec![
        Message::new("system", "You are brief."),
        Message::new("user", "Hello {{ .Prompt }} {{ x }} <|im_end|>"),
        Message::new("assistant", "Hi."),
        Message::new("tool", "{\"temp\": 21}"),
        Message::new("user", "And now?"),
    ]
}

pub fn tools() -> serde_json::Value {
    serde_json::json!([{"type": "function", "function": {"name": "weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}
