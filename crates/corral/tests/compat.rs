//! The OpenAI and Anthropic APIs next to the native one: the JSON each returns (snapshots, with
//! ids, times and generated text masked), their error shapes, and tool calls and thinking going
//! through all three. The tiny random model answers; where an answer must be a tool call, a JSON
//! schema forces its shape, so the parsing path is the real one.

mod common;

use common::{create_from, http, post, runnable_bytes, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A template that takes tools, so the model has the `tools` capability.
const TOOLS_TEMPLATE: &str =
    "{{ if .Tools }}[tools]{{ end }}{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}\n{{ end }}<|assistant|>";
/// A template whose prompt ends inside a thinking block (and names the closing tag), so the model
/// has the `thinking` capability and everything it generates is thinking.
const THINKING_TEMPLATE: &str =
    "{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}\n{{ end }}<|assistant|>{{ if false }}</think>{{ end }}<think>";

fn server() -> Server {
    let server = Server::start();
    let weights = runnable_bytes(42, 2048);
    assert_eq!(create_from(&server, "tiny", &weights, json!({"template": TOOLS_TEMPLATE})).0, 200);
    assert_eq!(create_from(&server, "thinker", &weights, json!({"template": THINKING_TEMPLATE})).0, 200);
    assert_eq!(create_from(&server, "plain", &weights, json!({})).0, 200);
    server
}

/// Masks what changes between runs: ids, times, durations, and generated text.
fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match (k.as_str(), &*val) {
                    ("id" | "request_id" | "item_id" | "call_id", Value::String(_)) => *val = json!("[id]"),
                    ("created" | "created_at", _) => *val = json!("[time]"),
                    (k, Value::Number(_)) if k.ends_with("_duration") => *val = json!("[ns]"),
                    ("content" | "text" | "response" | "thinking" | "reasoning" | "delta", Value::String(s))
                        if !s.is_empty() =>
                    {
                        *val = json!("[text]")
                    }
                    _ => mask(val),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn masked(mut v: Value) -> String {
    mask(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}

/// A streamed answer's events, masked: SSE `event:` names kept, each `data:` masked.
fn masked_stream(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(data) = line.strip_prefix("data: ") {
            match serde_json::from_str::<Value>(data) {
                Ok(mut v) => {
                    mask(&mut v);
                    out.push(format!("data: {v}"));
                }
                Err(_) => out.push(line.to_string()),
            }
        } else if line.starts_with('{') {
            let mut v: Value = serde_json::from_str(line).unwrap();
            mask(&mut v);
            out.push(v.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

fn stream(server: &Server, path: &str, body: Value) -> (StatusCode, String, String) {
    let resp = http().post(server.url(path)).json(&body).send().unwrap();
    let status = resp.status();
    let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, kind, resp.text().unwrap())
}

/// Forces `{"name": "get_weather", "arguments": {"city": "Paris"}}`.
fn call_schema() -> Value {
    json!({"type": "object", "properties": {
        "name": {"const": "get_weather"},
        "arguments": {"type": "object", "properties": {"city": {"const": "Paris"}}, "required": ["city"]}
    }, "required": ["name", "arguments"]})
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[test]
fn openai_chat_answers_and_streams() {
    let server = server();
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4, "temperature": 0, "seed": 1});
    let (status, v) = post(&server, "/v1/chat/completions", body.clone());
    assert_eq!(status, 200, "{v}");
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    insta::assert_snapshot!("openai_chat", masked(v));

    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let (status, kind, text) = stream(&server, "/v1/chat/completions", streaming);
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/event-stream"));
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    insta::assert_snapshot!("openai_chat_stream", masked_stream(&text));
}

#[test]
fn openai_completions_and_models() {
    let server = server();
    let (status, v) = post(
        &server,
        "/v1/completions",
        json!({"model": "plain", "prompt": "Once upon", "max_tokens": 3, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    insta::assert_snapshot!("openai_completion", masked(v));
    let (status, _, text) = stream(
        &server,
        "/v1/completions",
        json!({"model": "plain", "prompt": "Once upon", "max_tokens": 3, "temperature": 0, "stream": true}),
    );
    assert_eq!(status, 200);
    insta::assert_snapshot!("openai_completion_stream", masked_stream(&text));

    let v: Value = http().get(server.url("/v1/models")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(v["object"], "list");
    assert_eq!(ids.len(), 3, "{v}");
    for id in ["tiny:latest", "thinker:latest", "plain:latest"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    // The id is the name as asked, as Ollama answers (issue 14).
    for asked in ["tiny", "tiny:latest"] {
        let one: Value = http().get(server.url(&format!("/v1/models/{asked}"))).send().unwrap().json().unwrap();
        assert_eq!(
            (one["id"].as_str(), one["owned_by"].as_str(), one["object"].as_str()),
            (Some(asked), Some("library"), Some("model"))
        );
    }
    let missing = http().get(server.url("/v1/models/nothing")).send().unwrap();
    assert_eq!(missing.status(), 404);
    let v: Value = missing.json().unwrap();
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
}

#[test]
fn openai_errors_have_openai_shape() {
    let server = server();
    let cases = [
        (json!({"model": "tiny", "messages": []}), 400, "[] is too short - 'messages'"),
        (json!({"model": "nothing", "messages": [{"role": "user", "content": "x"}]}), 404, "not found"),
        (
            json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": [1]}),
            400,
            "invalid type for 'stop' field",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "huge"}),
            400,
            "invalid reasoning value",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            400,
            "image URLs are not currently supported",
        ),
        (
            json!({"model": "plain", "messages": [{"role": "user", "content": "x"}], "tools": [weather_tool()]}),
            400,
            "does not support tools",
        ),
    ];
    for (body, status, message) in cases {
        let (got, v) = post(&server, "/v1/chat/completions", body.clone());
        assert_eq!(got.as_u16(), status, "{body}: {v}");
        let kind = if status == 404 { "not_found_error" } else { "invalid_request_error" };
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(message), "{message}: {v}");
        assert_eq!(v["error"]["param"], Value::Null);
    }
    let resp = http().post(server.url("/v1/chat/completions")).body("{not json").send().unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[test]
fn anthropic_messages_answer_and_stream() {
    let server = server();
    let body = json!({"model": "tiny", "max_tokens": 4, "temperature": 0, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]});
    let (status, v) = post(&server, "/v1/messages", body.clone());
    assert_eq!(status, 200, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["stop_reason"], "max_tokens");
    insta::assert_snapshot!("anthropic_message", masked(v));

    let mut streaming = body;
    streaming["stream"] = json!(true);
    let (status, kind, text) = stream(&server, "/v1/messages", streaming);
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/event-stream"));
    insta::assert_snapshot!("anthropic_stream", masked_stream(&text));

    let cases = [
        (json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}]}), 400, "max_tokens is required"),
        (json!({"model": "tiny", "max_tokens": 5, "messages": []}), 400, "messages is required"),
        (
            json!({"model": "nothing", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not found",
        ),
        (
            json!({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}),
            400,
            "Only base64 images are supported",
        ),
    ];
    for (body, status, message) in cases {
        let (got, v) = post(&server, "/v1/messages", body.clone());
        assert_eq!(got.as_u16(), status, "{body}: {v}");
        assert_eq!(v["type"], "error", "{v}");
        let kind = if status == 404 { "not_found_error" } else { "invalid_request_error" };
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(message), "{message}: {v}");
        assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    }
}

/// The same tool call through the native API and OpenAI's, streamed and not.
#[test]
fn tool_calls_are_parsed_in_every_protocol() {
    let server = server();
    let messages = json!([{"role": "user", "content": "Weather in Paris?"}]);
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "messages": messages, "tools": [weather_tool()], "format": call_schema(),
            "stream": false, "options": {"temperature": 0, "num_predict": 64}}),
    );
    assert_eq!(status, 200, "{v}");
    let call = &v["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{v}");
    assert_eq!(call["function"]["arguments"], json!({"city": "Paris"}));
    assert_eq!(call["function"]["index"], 0);
    assert_eq!(v["message"]["content"], "", "the call is not also content: {v}");

    let openai = json!({"model": "tiny", "messages": messages, "tools": [weather_tool()], "max_tokens": 64,
        "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "call", "schema": call_schema()}}});
    let (status, v) = post(&server, "/v1/chat/completions", openai.clone());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["type"].as_str(), call["function"]["name"].as_str()), (Some("function"), Some("get_weather")));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    insta::assert_snapshot!("openai_tool_call", masked(v));

    let mut streaming = openai;
    streaming["stream"] = json!(true);
    let (_, _, text) = stream(&server, "/v1/chat/completions", streaming);
    insta::assert_snapshot!("openai_tool_call_stream", masked_stream(&text));

    // The call's result goes back as a tool message, tied to the call by id.
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "stream": false, "options": {"num_predict": 1}, "_debug_render_only": true,
            "messages": [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "Sunny, 21 C", "tool_name": "get_weather"}]}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["_debug_info"]["rendered_template"].as_str().unwrap().contains("<|tool|>Sunny, 21 C"), "{v}");
}

/// With the prompt ending in `<think>`, what the model writes is thinking: the native `thinking`
/// field, OpenAI's `reasoning`, Anthropic's thinking block.
#[test]
fn thinking_goes_to_each_protocols_field() {
    let server = server();
    let messages = json!([{"role": "user", "content": "Think."}]);
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "thinker", "messages": messages, "think": true, "stream": false,
            "options": {"temperature": 0, "num_predict": 6}}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(!v["message"]["thinking"].as_str().unwrap_or_default().is_empty(), "{v}");
    assert_eq!(v["message"]["content"], "");

    let (status, v) = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "thinker", "messages": messages, "max_tokens": 6, "temperature": 0, "reasoning_effort": "high"}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(!v["choices"][0]["message"]["reasoning"].as_str().unwrap_or_default().is_empty(), "{v}");

    let body = json!({"model": "thinker", "max_tokens": 6, "temperature": 0, "messages": messages,
        "thinking": {"type": "enabled", "budget_tokens": 1024}});
    let (status, v) = post(&server, "/v1/messages", body.clone());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    let mut streaming = body;
    streaming["stream"] = json!(true);
    let (_, _, text) = stream(&server, "/v1/messages", streaming);
    insta::assert_snapshot!("anthropic_thinking_stream", masked_stream(&text));

    // A model that cannot think: 400 natively, silently ignored by the Anthropic API (as Ollama).
    let (status, v) =
        post(&server, "/api/chat", json!({"model": "plain", "messages": messages, "think": true, "stream": false}));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("does not support thinking"), "{v}");
    let (status, v) = post(
        &server,
        "/v1/messages",
        json!({"model": "plain", "max_tokens": 2, "messages": messages, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
    );
    assert_eq!(status, 200, "{v}");
}

/// OpenAI's Responses API: the answer object and the streamed event sequence.
#[test]
fn openai_responses_answer_and_stream() {
    let server = server();
    let body =
        json!({"model": "tiny", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 4, "temperature": 0});
    let (status, v) = post(&server, "/v1/responses", body.clone());
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["object"].as_str(), v["status"].as_str()), (Some("response"), Some("incomplete")));
    insta::assert_snapshot!("openai_response", masked(v));
    let mut streaming = body;
    streaming["stream"] = json!(true);
    let (_, kind, text) = stream(&server, "/v1/responses", streaming);
    assert_eq!(kind, "text/event-stream");
    insta::assert_snapshot!("openai_response_stream", masked_stream(&text));

    let (status, v) =
        post(&server, "/v1/responses", json!({"model": "tiny", "input": "Hi", "previous_response_id": "resp_1"}));
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("stateless"), "{v}");
    // Reasoning effort maps as on the chat endpoint, bad values included.
    let (status, v) =
        post(&server, "/v1/responses", json!({"model": "tiny", "input": "Hi", "reasoning": {"effort": "huge"}}));
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid reasoning value: 'huge'"), "{v}");
    // A tool call, forced by a schema, comes out as a function_call item.
    let (status, v) = post(
        &server,
        "/v1/responses",
        json!({"model": "tiny", "input": "Weather?", "temperature": 0, "max_output_tokens": 64,
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "call", "schema": call_schema()}}}),
    );
    assert_eq!(status, 200, "{v}");
    let call = v["output"].as_array().unwrap().iter().find(|o| o["type"] == "function_call").unwrap();
    assert_eq!(
        (call["name"].as_str(), call["arguments"].as_str()),
        (Some("get_weather"), Some("{\"city\":\"Paris\"}"))
    );
}

/// Issue 14: Ollama behaviours clients rely on, and Anthropic's token count.
#[test]
fn issue_14_ollama_behaviours_and_anthropic_token_counts() {
    let server = server();

    // `count_tokens` is exactly the prompt the answer reads: the template with the system
    // message and the tools, tokenized by the model.
    let body = json!({"model": "tiny", "system": "Be brief.", "tools": [{"name": "get_weather",
        "description": "Weather of a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]}]});
    let (status, counted) = post(&server, "/v1/messages/count_tokens", body.clone());
    assert_eq!(status, 200, "{counted}");
    let n = counted["input_tokens"].as_u64().unwrap();
    let mut answered = body.clone();
    answered["max_tokens"] = json!(2);
    let (status, v) = post(&server, "/v1/messages", answered);
    assert_eq!(status, 200, "{v}");
    // Tokens read from the prompt cache are counted apart (none here: nothing was asked before).
    let usage = &v["usage"];
    assert_eq!(usage["input_tokens"].as_u64().unwrap() + usage["cache_read_input_tokens"].as_u64().unwrap(), n, "{v}");
    // Without the tools (which the template prints as `[tools]`), fewer tokens.
    let mut plain = body.clone();
    plain.as_object_mut().unwrap().remove("tools");
    let (_, fewer) = post(&server, "/v1/messages/count_tokens", plain);
    assert!(fewer["input_tokens"].as_u64().unwrap() < n, "{fewer} vs {n}");
    let mut missing = body;
    missing["model"] = json!("nothing");
    let (status, v) = post(&server, "/v1/messages/count_tokens", missing);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");

    // Options this version does not know (retired, or from a newer Ollama) are ignored with a
    // warning, as Ollama does; a known option of the wrong type is still a 400.
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "tiny", "prompt": "Hi", "stream": false,
               "options": {"mirostat": 2, "tfs_z": 1.0, "future_knob": true, "num_predict": 2}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 2, "{v}");
    assert!(server.log().contains("invalid option provided"), "{}", server.log());
    assert!(server.log().contains("future_knob"), "{}", server.log());
    let (status, v) =
        post(&server, "/api/generate", json!({"model": "tiny", "prompt": "Hi", "options": {"num_predict": "two"}}));
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("option \"num_predict\" must be of type integer"))
    );

    let status: Value = http().get(server.url("/api/status")).send().unwrap().json().unwrap();
    assert_eq!(status, json!({"cloud": {"disabled": true, "source": "none"}}));

    // A chat request may carry a template for itself (the REPL's `/set template`).
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "_debug_render_only": true,
               "template": "{{ range .Messages }}[{{ .Role }}: {{ .Content }}]{{ end }}"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["_debug_info"]["rendered_template"], "[user: Hi]", "{v}");

    // Thinking levels reach the template (`.ThinkLevel`; the model's own template gives it the
    // thinking capability); other `think` values are Ollama's 400.
    let leveled = "{{ range .Messages }}{{ .Content }}{{ end }}<think>{{ .ThinkLevel }}</think>";
    let render = |think: Value| {
        post(
            &server,
            "/api/chat",
            json!({"model": "thinker", "messages": [{"role": "user", "content": "Hi"}], "_debug_render_only": true,
                   "template": leveled, "think": think}),
        )
    };
    for (think, level) in [(json!("high"), "high"), (json!("low"), "low"), (json!(true), "medium"), (json!(false), "")]
    {
        let (status, v) = render(think.clone());
        assert_eq!(status, 200, "{think}: {v}");
        assert_eq!(v["_debug_info"]["rendered_template"], format!("Hi<think>{level}</think>"), "{think}");
    }
    let (status, v) = render(json!("banana"));
    assert_eq!(
        (status, v["error"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some(r#"invalid think value: "banana" (must be "high", "medium", "low", "max", true, or false)"#)
        )
    );
    let (status, _) = render(json!(3));
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// Issue 14: Anthropic's `budget_tokens` is kept: the tiny model never closes its thinking by
// itself, so without a bound its whole answer is thinking; with one, the answer follows it.
#[test]
fn issue_14_anthropic_budget_tokens_ends_the_thinking() {
    let server = server();
    let ask = |thinking: Value| {
        let body = json!({"model": "thinker", "max_tokens": 30, "temperature": 0, "thinking": thinking,
            "messages": [{"role": "user", "content": "Hi"}]});
        let (status, v) = post(&server, "/v1/messages", body);
        assert_eq!(status, 200, "{v}");
        let block = |kind: &str| {
            v["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == kind)
                .and_then(|b| b[kind].as_str().map(String::from))
        };
        (block("thinking").unwrap_or_default(), block("text").unwrap_or_default())
    };
    let (thought, answer) = ask(json!({"type": "enabled", "budget_tokens": 10000}));
    assert!(!thought.is_empty() && answer.is_empty(), "{thought:?} / {answer:?}");
    let (short, answer) = ask(json!({"type": "enabled", "budget_tokens": 5}));
    assert!(!short.is_empty() && short.len() < thought.len(), "{short:?} vs {thought:?}");
    assert!(!answer.trim().is_empty(), "the answer follows the thinking: {answer:?}");
    assert!(thought.starts_with(short.trim_end()), "the same thinking, cut: {short:?} / {thought:?}");
}
