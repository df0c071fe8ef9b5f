//! Generation end to end: a real server, real runner processes, SmolLM2 and the tiny random model.

mod common;

use std::time::{Duration, Instant};

use common::{body, create_from, error, http, lines, long_stream, post, runnable_bytes, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server with the tiny model as `tiny` (2048-token context).
fn with_tiny() -> Server {
    let server = Server::start();
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({})).0, 200);
    server
}

fn generate(server: &Server, req: Value) -> (StatusCode, Value) {
    post(server, "/api/generate", req)
}

fn greedy(prompt: &str, n: u32) -> Value {
    json!({"model": "tiny", "prompt": prompt, "stream": false, "options": {"temperature": 0, "num_predict": n}})
}

fn ps(server: &Server) -> Vec<Value> {
    body(http().get(server.url("/api/ps")).send().unwrap()).1["models"].as_array().unwrap().clone()
}

#[test]
fn smollm2_answers_through_the_api_and_the_cli() {
    let server = Server::start();
    let smol = std::fs::read(corral_testkit::smollm2()).unwrap();
    assert_eq!(create_from(&server, "smollm2", &smol, json!({})).0, 200);
    let q = "What is the capital of France? Answer in one sentence.";
    let (status, v) =
        generate(&server, json!({"model": "smollm2", "prompt": q, "stream": false, "options": {"temperature": 0}}));
    assert_eq!(status, 200, "{v}");
    assert!(v["response"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["done_reason"], "stop");

    let (_, v) = post(
        &server,
        "/api/chat",
        json!({"model": "smollm2", "stream": false, "options": {"temperature": 0},
        "messages": [{"role": "user", "content": q}]}),
    );
    assert_eq!(v["message"]["role"], "assistant");
    assert!(v["message"]["content"].as_str().unwrap().contains("Paris"), "{v}");

    // The CLI has no sampling flags: a model whose PARAMETER sets temperature 0 answers greedily.
    let (status, _) = post(
        &server,
        "/api/create",
        json!({"model": "smollm2-greedy", "from": "smollm2",
        "parameters": {"temperature": 0}, "stream": false}),
    );
    assert_eq!(status, 200);
    let out = server.corral(&["run", "smollm2-greedy", q]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stdout(&out).contains("Paris"), "{}", common::stdout(&out));
}

#[test]
fn streaming_chunks_and_final_metrics() {
    let server = with_tiny();
    let resp = http()
        .post(server.url("/api/generate"))
        .json(&json!({"model": "tiny", "prompt": "Once upon a time",
        "options": {"temperature": 0, "num_predict": 8}}))
        .send()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let chunks = lines(resp);
    let (last, tokens) = chunks.split_last().unwrap();
    assert!(!tokens.is_empty());
    for c in tokens {
        assert_eq!(c["done"], false);
        assert_eq!(c["model"], "tiny");
        assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(c.get("context").is_none() && c.get("eval_count").is_none());
    }
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 8);
    for k in ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"] {
        assert!(last[k].as_u64().unwrap() > 0, "{k}: {last}");
    }
    let text: String = tokens.iter().map(|c| c["response"].as_str().unwrap()).collect();
    let (_, whole) = generate(&server, greedy("Once upon a time", 8));
    assert_eq!(whole["response"], text, "streamed and non-streamed answers agree");

    // `context` carries the conversation on.
    let context = whole["context"].as_array().unwrap().clone();
    assert!(context.len() > 8);
    let (status, next) = generate(
        &server,
        json!({"model": "tiny", "prompt": "and then", "context": context, "stream": false,
        "options": {"temperature": 0, "num_predict": 4}}),
    );
    assert_eq!(status, 200, "{next}");
    // The previous prompt and answer are still in a slot's cache: only the new words are processed.
    let processed = next["prompt_eval_count"].as_u64().unwrap();
    assert!(processed > 0 && processed < context.len() as u64, "{next}");
}

#[test]
fn num_predict_stop_seed_and_logprobs() {
    let server = with_tiny();
    let (_, a) = generate(&server, greedy("The weather", 16));
    assert_eq!((a["done_reason"].as_str(), a["eval_count"].as_u64()), (Some("length"), Some(16)));
    let text = a["response"].as_str().unwrap();
    let mid: String = text.chars().skip(text.chars().count() / 2).take(3).collect();
    let (_, stopped) = generate(
        &server,
        json!({"model": "tiny", "prompt": "The weather", "stream": false,
        "options": {"temperature": 0, "num_predict": 16, "stop": [mid]}}),
    );
    assert_eq!(stopped["done_reason"], "stop");
    assert_eq!(stopped["response"].as_str().unwrap(), &text[..text.find(mid.as_str()).unwrap()]);

    let seeded = |seed: u64| {
        generate(
            &server,
            json!({"model": "tiny", "prompt": "Hi", "stream": false,
            "options": {"temperature": 1.0, "seed": seed, "num_predict": 12}}),
        )
        .1["response"]
            .clone()
    };
    assert_eq!(seeded(7), seeded(7), "same seed and prompt, same output");
    assert!((8..12).any(|s| seeded(s) != seeded(7)));

    let (_, lp) = generate(
        &server,
        json!({"model": "tiny", "prompt": "Hi", "stream": false, "logprobs": true, "top_logprobs": 3,
        "options": {"temperature": 0, "num_predict": 4}}),
    );
    let lps = lp["logprobs"].as_array().unwrap();
    assert_eq!(lps.len(), 4);
    assert_eq!(lps[0]["top_logprobs"].as_array().unwrap().len(), 3);
    assert!(lps[0]["logprob"].as_f64().unwrap() <= 0.0);
}

#[test]
fn json_schema_output_validates() {
    let server = with_tiny();
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
        "population": {"type": "integer", "minimum": 0, "maximum": 100000}}, "required": ["city", "population"]});
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "stream": false, "format": schema,
        "options": {"temperature": 0, "num_predict": 100},
        "messages": [{"role": "user", "content": "Describe a city as JSON."}]}),
    );
    assert_eq!(status, 200, "{v}");
    let out: Value =
        serde_json::from_str(v["message"]["content"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(out["city"].is_string() && out["population"].is_u64(), "{out}");
    let (_, v) = generate(
        &server,
        json!({"model": "tiny", "prompt": "JSON please", "format": "json", "stream": false,
        "options": {"temperature": 0, "num_predict": 200}}),
    );
    if v["done_reason"] == "stop" {
        serde_json::from_str::<Value>(v["response"].as_str().unwrap()).unwrap();
    }
}

#[test]
fn load_keep_alive_and_unload() {
    let server = with_tiny();
    let (_, v) = generate(&server, json!({"model": "tiny", "prompt": ""}));
    assert_eq!((v["done"].as_bool(), v["done_reason"].as_str()), (Some(true), Some("load")));
    for k in ["total_duration", "eval_count", "context"] {
        assert!(v.get(k).is_none(), "a load answer has no {k}: {v}");
    }
    let loaded = ps(&server);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0]["name"], "tiny:latest");
    assert_eq!(loaded[0]["context_length"], 2048);
    assert!(loaded[0]["size"].as_u64().unwrap() > 0);
    assert!(server.ok(&["ps"]).contains("tiny:latest"));

    let (_, v) = generate(&server, json!({"model": "tiny", "prompt": "", "keep_alive": 0}));
    assert_eq!(v["done_reason"], "unload");
    assert!(ps(&server).is_empty());

    generate(
        &server,
        json!({"model": "tiny", "prompt": "hi", "keep_alive": "1s", "stream": false, "options": {"num_predict": 1}}),
    );
    assert_eq!(ps(&server).len(), 1);
    std::thread::sleep(Duration::from_millis(2000));
    assert!(ps(&server).is_empty(), "expired after its keep-alive");
    assert!(server.runners().is_empty(), "the runner process is gone");

    // `corral stop` does the same.
    generate(&server, json!({"model": "tiny", "prompt": ""}));
    server.ok(&["stop", "tiny"]);
    assert!(ps(&server).is_empty());
}

/// A loaded runner's socket directory is gone once it has connected, so a killed server leaves
/// nothing in the temporary directory (one stop's test runs had left 798 `corral-runner-*`).
#[test]
fn a_killed_server_leaves_no_runner_sockets_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_env(&[("TMPDIR", tmp.path().to_str().unwrap())]);
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({})).0, 200);
    let (status, v) = generate(&server, greedy("hello", 2));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(server.runners().len(), 1);
    let runner_dirs = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("corral-runner-"))
            .collect::<Vec<_>>()
    };
    assert_eq!(runner_dirs(), Vec::<String>::new(), "while the model is loaded");
    // Dropping the handle kills the server with SIGKILL: no destructor of its runs.
    drop(server);
    assert_eq!(runner_dirs(), Vec::<String>::new(), "after the server was killed");
}

/// A budget beyond `num_ctx` shifts the context and goes on, as in Ollama; `shift: false` ends at
/// the full context instead.
#[test]
fn shift_false_ends_at_the_full_context() {
    let server = with_tiny();
    let req = |shift: Option<bool>| {
        let mut r = json!({"model": "tiny", "prompt": "Once upon a time", "stream": false, "raw": true,
            "options": {"temperature": 0, "num_predict": 150, "num_ctx": 64, "num_keep": -1}});
        if let Some(s) = shift {
            r["shift"] = json!(s);
        }
        r
    };
    let (status, v) = generate(&server, req(None));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["eval_count"].as_u64(), v["done_reason"].as_str()), (Some(150), Some("length")), "{v}");
    let (status, v) = generate(&server, req(Some(false)));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["done_reason"], "length");
    assert!(v["eval_count"].as_u64().unwrap() < 64, "{v}");
}

#[test]
fn several_models_and_eviction() {
    let server = with_tiny();
    create_from(&server, "other", &runnable_bytes(7, 2048), json!({}));
    generate(&server, greedy("a", 1));
    generate(&server, json!({"model": "other", "prompt": "b", "stream": false, "options": {"num_predict": 1}}));
    assert_eq!(ps(&server).len(), 2, "two models loaded together");

    let tmp = tempfile::tempdir().unwrap();
    let one = Server::start_in(&tmp.path().join("m"), &[("OLLAMA_MAX_LOADED_MODELS", "1")]);
    create_from(&one, "tiny", &runnable_bytes(42, 2048), json!({}));
    create_from(&one, "other", &runnable_bytes(7, 2048), json!({}));
    generate(&one, greedy("a", 1));
    generate(&one, json!({"model": "other", "prompt": "b", "stream": false, "options": {"num_predict": 1}}));
    let names: Vec<Value> = ps(&one).iter().map(|m| m["name"].clone()).collect();
    assert_eq!(names, vec![json!("other:latest")], "the idle model was evicted");
    assert_eq!(one.runners().len(), 1);
}

/// Ollama reloads a runner whenever `num_ctx` differs from the loaded one, so two models built on
/// the same weights with different contexts evict each other on every request. Here the longer
/// context serves both.
#[test]
fn same_weights_with_different_num_ctx_share_a_runner() {
    let server = Server::start();
    let bytes = runnable_bytes(42, 2048);
    create_from(&server, "big", &bytes, json!({"parameters": {"num_ctx": 1024}}));
    create_from(&server, "small", &bytes, json!({"parameters": {"num_ctx": 256}}));
    for model in ["big", "small", "big", "small"] {
        let (status, _) =
            generate(&server, json!({"model": model, "prompt": "x", "stream": false, "options": {"num_predict": 1}}));
        assert_eq!(status, 200);
    }
    assert_eq!(server.log().matches("loading model").count(), 1, "{}", server.log());
    assert_eq!(ps(&server)[0]["context_length"], 1024);
}

/// Starts a long streamed generation and returns its open reader after the first line.

#[test]
fn disconnecting_cancels_the_generation() {
    let server = Server::start();
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    let reader = long_stream(&server, "long");
    // Left alone, this generation would fill 16k tokens (half a minute or more). Hang up.
    drop(reader);
    let start = Instant::now();
    let (status, v) = generate(
        &server,
        json!({"model": "long", "prompt": "next", "stream": false,
        "options": {"num_predict": 3, "num_ctx": 16384}}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(start.elapsed() < Duration::from_secs(10), "the runner was still busy: {:?}", start.elapsed());
}

#[test]
fn a_full_queue_answers_503() {
    let tmp = tempfile::tempdir().unwrap();
    let server =
        Server::start_in(&tmp.path().join("m"), &[("OLLAMA_MAX_LOADED_MODELS", "1"), ("OLLAMA_MAX_QUEUE", "1")]);
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    create_from(&server, "other", &runnable_bytes(7, 2048), json!({}));
    let busy = long_stream(&server, "long");
    std::thread::scope(|s| {
        // Waits for the only runner slot, filling the queue.
        let waiting = s.spawn(|| {
            generate(&server, json!({"model": "other", "prompt": "x", "stream": false, "options": {"num_predict": 1}}))
        });
        // Give it time to reach the queue (it resolves the model first).
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            generate(&server, json!({"model": "other", "prompt": "y", "stream": false})),
            error(StatusCode::SERVICE_UNAVAILABLE, "server busy, please try again.  maximum pending requests exceeded")
        );
        drop(busy);
        assert_eq!(waiting.join().unwrap().0, 200, "the queued request runs once the runner is free");
    });
}

#[test]
fn a_killed_runner_fails_its_request_and_the_next_one_reloads() {
    let server = Server::start();
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    let mut reader = long_stream(&server, "long");
    let runners = server.runners();
    assert_eq!(runners.len(), 1);
    std::process::Command::new("kill").args(["-9", &runners[0].to_string()]).status().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    let last: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().unwrap().starts_with("model runner has unexpectedly stopped"), "{last}");
    let (status, v) =
        generate(&server, json!({"model": "long", "prompt": "again", "stream": false, "options": {"num_predict": 2}}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 2);
    assert_ne!(server.runners(), runners);
}

#[test]
fn bad_generation_requests() {
    let server = with_tiny();
    let bad = |path: &str, req: Value, status: StatusCode, msg: &str| {
        assert_eq!(post(&server, path, req), error(status, msg))
    };
    bad(
        "/api/generate",
        json!({"model": "tiny", "prompt": "x", "raw": true, "system": "s"}),
        StatusCode::BAD_REQUEST,
        "raw mode does not support template, system, or context",
    );
    bad(
        "/api/generate",
        json!({"model": "tiny", "prompt": "x", "logprobs": true, "top_logprobs": 21}),
        StatusCode::BAD_REQUEST,
        "top_logprobs must be between 0 and 20",
    );
    bad(
        "/api/generate",
        json!({"model": "tiny", "prompt": "x", "format": "yaml"}),
        StatusCode::BAD_REQUEST,
        "invalid format: \"yaml\"; expected \"json\" or a valid JSON Schema object",
    );
    bad("/api/generate", json!({"model": "ghost", "prompt": "x"}), StatusCode::NOT_FOUND, "model 'ghost' not found");
    bad("/api/generate", json!({"model": "", "prompt": "x"}), StatusCode::NOT_FOUND, "model '' not found");
    bad("/api/chat", json!({"model": "", "messages": []}), StatusCode::BAD_REQUEST, "model is required");
    bad(
        "/api/generate",
        json!({"model": "tiny", "prompt": "x", "options": {"num_ctx": "big"}}),
        StatusCode::BAD_REQUEST,
        "option \"num_ctx\" must be of type integer",
    );
    bad(
        "/api/generate",
        json!({"model": "tiny", "prompt": "x", "keep_alive": true}),
        StatusCode::BAD_REQUEST,
        "Unsupported type: 'bool'",
    );
    bad(
        "/api/chat",
        json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "think": true}),
        StatusCode::BAD_REQUEST,
        "\"tiny:latest\" does not support thinking",
    );
    bad(
        "/api/chat",
        json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}]}),
        StatusCode::BAD_REQUEST,
        "registry.ollama.ai/library/tiny:latest does not support tools",
    );
    let (status, v) = generate(
        &server,
        json!({"model": "tiny", "prompt": "word ".repeat(3000), "stream": false,
        "options": {"num_ctx": 512}}),
    );
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().starts_with("the input length exceeds the context length"), "{v}");

    // A long chat is trimmed from the oldest turns and still answered.
    let mut messages = vec![json!({"role": "system", "content": "Be brief."})];
    for i in 0..40 {
        messages.push(json!({"role": "user", "content": format!("Question {i}: {}", "blah ".repeat(20))}));
        messages.push(json!({"role": "assistant", "content": "ok"}));
    }
    messages.push(json!({"role": "user", "content": "Last question?"}));
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "messages": messages, "stream": false,
        "options": {"num_ctx": 512, "num_predict": 2}}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["prompt_eval_count"].as_u64().unwrap() < 512);
    let (status, _) = post(
        &server,
        "/api/chat",
        json!({"model": "tiny", "messages": messages, "stream": false, "truncate": false,
        "options": {"num_ctx": 512, "num_predict": 2}}),
    );
    assert_eq!(status, 400, "truncate: false refuses instead of trimming");
}

const CHATML_LEGACY: &str = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";

#[test]
fn prompts_render_with_go_templates_jinja_and_modelfile_layers() {
    let server = Server::start();
    let bytes = runnable_bytes(42, 2048);
    create_from(
        &server,
        "go",
        &bytes,
        json!({"template": CHATML_LEGACY, "system": "Be terse.",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}),
    );
    let (_, v) = generate(&server, json!({"model": "go", "prompt": "Capital of France?", "_debug_render_only": true}));
    assert_eq!(
        v["_debug_info"]["rendered_template"],
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n\
         <|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    // A request's system replaces the model's; a request's template replaces the model's.
    let (_, v) = generate(
        &server,
        json!({"model": "go", "prompt": "x", "system": "S2", "template": "[{{ .System }}|{{ .Prompt }}]",
        "_debug_render_only": true}),
    );
    // (Without `.Response` in it, the template gets one appended; the system message belongs to
    // the first turn, as in Ollama's per-turn execution.)
    assert_eq!(v["_debug_info"]["rendered_template"], "[S2|Hi]Hello.[|x]");
    // The GGUF's own (Jinja) template when there is no TEMPLATE.
    create_from(&server, "jinja", &bytes, json!({}));
    let (_, v) = post(
        &server,
        "/api/chat",
        json!({"model": "jinja", "_debug_render_only": true,
        "messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(
        v["_debug_info"]["rendered_template"],
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // And a Go-template model really generates.
    let (status, v) =
        generate(&server, json!({"model": "go", "prompt": "x", "stream": false, "options": {"num_predict": 3}}));
    assert_eq!((status, v["eval_count"].as_u64()), (StatusCode::OK, Some(3)), "{v}");
    // A broken template is refused when the model is created.
    let (status, v) = create_from(&server, "broken", &bytes, json!({"template": "{{ if .System }}unclosed"}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().starts_with("template error: "), "{v}");
}

/// A LoRA adapter (written by the project's GGUF writer, SmolLM2's shapes) changes the answers;
/// the same adapter scaled to zero gives exactly the base model's.
#[test]
fn lora_adapters_apply_at_load() {
    let server = Server::start();
    let smol = std::fs::read(corral_testkit::smollm2()).unwrap();
    let weights = common::upload(&server, &smol);
    let with_adapter = |name: &str, scale: f32| {
        let lora = common::upload(&server, &corral_testkit::lora_adapter(576, 30, 8, scale, 1));
        let req = json!({"model": name, "files": {"model.gguf": weights.to_string()},
            "adapters": {"lora.gguf": lora.to_string()}, "stream": false});
        assert_eq!(post(&server, "/api/create", req).0, 200);
    };
    create_from(&server, "base", &smol, json!({}));
    with_adapter("zero", 0.0);
    with_adapter("tuned", 0.08);
    let answer = |model: &str, prompt: &str| {
        let (status, v) = generate(
            &server,
            json!({"model": model, "prompt": prompt, "stream": false,
            "options": {"temperature": 0, "num_predict": 25}}),
        );
        assert_eq!(status, 200, "{v}");
        v["response"].as_str().unwrap().to_string()
    };
    let prompts = ["List three fruits.", "Write one sentence about the sea.", "What is 2+2?"];
    let mut changed = 0;
    for p in prompts {
        let base = answer("base", p);
        assert_eq!(answer("zero", p), base, "a zero adapter changes nothing");
        let tuned = answer("tuned", p);
        if tuned != base {
            changed += 1;
        }
        assert!(tuned.split_whitespace().count() >= 5 && tuned.is_ascii(), "still fluent English: {tuned:?}");
    }
    assert!(changed >= 1, "the adapter changed no answer");
}
