//! Issue 14: each model family's tool calls and thinking, from its real chat template (in
//! `crates/corral-template/tests/chat-templates`), with the runner's output scripted as that
//! family writes it and everything else real: the template picks the parser, and the call comes
//! out of all three protocols as each one shapes it.

mod common;

use common::Harness;
use corral_server::Script;
use serde_json::{json, Value};

fn template(file: &str) -> String {
    let path = format!("{}/../corral-template/tests/chat-templates/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A server whose default context holds the longest real system prompts (Devstral's).
fn harness() -> Harness {
    Harness::new(|c| c.defaults.num_ctx = 16384)
}

/// `text` as a runner would send it: a few characters per token, so markers arrive cut.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

/// The call through the native API (whole and streamed), OpenAI's and Anthropic's.
async fn check_call(h: &Harness, model: &str) {
    let ask = json!([{"role": "user", "content": "Weather in Paris?"}]);
    let (status, v) = h
        .call("POST", "/api/chat", json!({"model": model, "messages": ask, "tools": [weather_tool()], "stream": false}))
        .await;
    assert_eq!(status, 200, "{model}: {v}");
    let call = &v["message"]["tool_calls"][0]["function"];
    assert_eq!(
        (call["name"].as_str(), &call["arguments"]),
        (Some("get_weather"), &json!({"city": "Paris"})),
        "{model}: {v}"
    );
    assert_eq!(v["message"]["content"], "", "{model}: no marker leaks into the content: {v}");

    let (status, text) = h
        .call("POST", "/api/chat", json!({"model": model, "messages": ask, "tools": [weather_tool()], "stream": true}))
        .await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = text.as_str().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let calls: Vec<&Value> = lines.iter().filter_map(|l| l["message"]["tool_calls"].as_array()).flatten().collect();
    assert_eq!(calls.len(), 1, "{model}: {lines:?}");
    let content: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert_eq!(content, "", "{model}: {lines:?}");

    let (status, v) = h
        .call("POST", "/v1/chat/completions", json!({"model": model, "messages": ask, "tools": [weather_tool()]}))
        .await;
    assert_eq!(status, 200, "{model}: {v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{model}: {v}");
    let f = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(f["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(f["arguments"].as_str().unwrap()).unwrap(), json!({"city": "Paris"}));

    let anthropic_tool = json!({"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}});
    let (status, v) = h
        .call(
            "POST",
            "/v1/messages",
            json!({"model": model, "max_tokens": 64, "messages": ask, "tools": [anthropic_tool]}),
        )
        .await;
    assert_eq!(status, 200, "{model}: {v}");
    assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
    let block = v["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!((block["name"].as_str(), &block["input"]), (Some("get_weather"), &json!({"city": "Paris"})));
}

#[tokio::test]
async fn issue_14_each_familys_calls_come_out_of_every_protocol() {
    let deepseek_v3 = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}><\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>function<\u{ff5c}tool\u{2581}sep\u{ff5c}>get_weather\n```json\n{\"city\": \"Paris\"}\n```<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}><\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
    let deepseek_v31 = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}><\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>get_weather<\u{ff5c}tool\u{2581}sep\u{ff5c}>{\"city\": \"Paris\"}<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}><\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
    let cases = [
        (
            "llama3",
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
            r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
        ),
        (
            "llama3-plain",
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
            r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
        ),
        ("mistral", "Mistral-Small-3.2-24B-Instruct-2506.jinja", r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}"#),
        ("devstral", "unsloth-mistral-Devstral-Small-2507.jinja", r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}"#),
        (
            "qwen3-coder",
            "Qwen3-Coder.jinja",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        ),
        // R1's prompt opens the thinking; the calls follow it.
        (
            "deepseek-r1",
            "llama-cpp-deepseek-r1.jinja",
            &*format!("The user wants the weather.\n</think>\n\n{deepseek_v3}"),
        ),
        // V3.1 thinks when asked (`enable_thinking`, on by default for a model that can).
        ("deepseek-v3.1", "deepseek-ai-DeepSeek-V3.1.jinja", &*format!("Weather lookup.</think>{deepseek_v31}")),
        (
            "command-r7b",
            "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
            r#"<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}]<|END_ACTION|>"#,
        ),
        (
            "granite",
            "ibm-granite-granite-3.3-2B-Instruct.jinja",
            r#"<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#,
        ),
        (
            "gpt-oss",
            "openai-gpt-oss-120b.jinja",
            r#"<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>"#,
        ),
    ];
    for (model, file, output) in cases {
        let h = harness();
        h.create_with_template(model, &template(file)).await;
        h.backend.set_script(Script { reply: tokens(output), ..Default::default() });
        check_call(&h, model).await;
    }
}

#[tokio::test]
async fn issue_14_command_r_thinking_goes_to_each_protocols_field() {
    let h = harness();
    h.create_with_template("command-r7b", &template("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja")).await;
    let (_, shown) = h.call("POST", "/api/show", json!({"model": "command-r7b"})).await;
    assert!(shown["capabilities"].as_array().unwrap().contains(&json!("thinking")), "{shown}");
    let output = "<|START_THINKING|>They greet me.<|END_THINKING|><|START_RESPONSE|>Hello!<|END_RESPONSE|>";
    h.backend.set_script(Script { reply: tokens(output), ..Default::default() });
    let ask = json!([{"role": "user", "content": "Hi"}]);
    let (status, v) =
        h.call("POST", "/api/chat", json!({"model": "command-r7b", "messages": ask, "stream": false})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["message"]["thinking"].as_str(), v["message"]["content"].as_str()),
        (Some("They greet me."), Some("Hello!"))
    );
    let (_, v) = h
        .call(
            "POST",
            "/v1/chat/completions",
            json!({"model": "command-r7b", "messages": ask, "reasoning_effort": "low"}),
        )
        .await;
    assert_eq!(v["choices"][0]["message"]["reasoning"], "They greet me.", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!", "{v}");
    let (_, v) = h
        .call(
            "POST",
            "/v1/messages",
            json!({"model": "command-r7b", "max_tokens": 64, "messages": ask, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        )
        .await;
    assert_eq!(v["content"][0], json!({"type": "thinking", "thinking": "They greet me.", "signature": ""}), "{v}");
    assert_eq!(v["content"][1]["text"], "Hello!", "{v}");
}

#[tokio::test]
async fn issue_14_gpt_oss_thinks_at_the_level_asked() {
    let h = harness();
    h.create_with_template("gpt-oss", &template("openai-gpt-oss-120b.jinja")).await;
    let ask = json!([{"role": "user", "content": "Hi"}]);
    for (think, effort) in [(json!("low"), "low"), (json!("max"), "high"), (json!(true), "medium")] {
        let body = json!({"model": "gpt-oss", "messages": ask, "think": think, "_debug_render_only": true});
        let (status, v) = h.call("POST", "/api/chat", body).await;
        assert_eq!(status, 200, "{v}");
        let prompt = v["_debug_info"]["rendered_template"].as_str().unwrap();
        assert!(prompt.contains(&format!("Reasoning: {effort}")), "{think}: {prompt}");
    }
    // Through OpenAI's `reasoning_effort`, the answer's analysis is its reasoning.
    let output =
        "<|channel|>analysis<|message|>A greeting.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>";
    h.backend.set_script(Script { reply: tokens(output), ..Default::default() });
    let (status, v) = h
        .call("POST", "/v1/chat/completions", json!({"model": "gpt-oss", "messages": ask, "reasoning_effort": "high"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["reasoning"], "A greeting.", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!", "{v}");
}
