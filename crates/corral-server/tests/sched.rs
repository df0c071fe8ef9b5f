//! The scheduler's policy, through `app(state)` with the scripted backend: no model, no runner
//! process, no socket. Each test builds tiny GGUF files (only their headers matter here), creates
//! models from them over the API, and asks for answers as a client would.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{eventually, Harness};
use corral_server::Script;
use corral_types::runner::ErrorKind;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

#[tokio::test]
async fn an_answer_comes_from_the_scripted_runner() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["response"], "Hello, world.");
    assert_eq!(v["done_reason"], "stop");
    assert_eq!(v["eval_count"], 4);
    assert_eq!(h.loaded().await, ["a:latest"]);
    assert_eq!(h.backend.loads().len(), 1);
}

#[tokio::test]
async fn the_least_recently_used_idle_model_is_evicted_at_the_count_limit() {
    let h = Harness::new(|c| c.max_loaded_models = 2);
    for (name, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        h.create(name, seed, json!({})).await;
    }
    for name in ["a", "b", "a", "c"] {
        let (status, v) = h.generate(json!({"model": name, "prompt": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    // b was used less recently than a, so b made room for c.
    assert_eq!(h.loaded().await, ["a:latest", "c:latest"]);
    let loads = h.backend.loads();
    assert_eq!(loads.len(), 3, "a was reused, not loaded again");
    assert_eq!(loads.iter().map(|l| l.alive).collect::<Vec<_>>(), [true, false, true]);
}

#[tokio::test]
async fn an_idle_model_is_unloaded_when_its_keep_alive_ends() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let (status, _) = h.generate(json!({"model": "a", "prompt": "hi", "keep_alive": "50ms"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.loaded().await, ["a:latest"]);
    let backend = h.backend.clone();
    eventually("the runner is stopped", || backend.running() == 0).await;
    assert!(h.loaded().await.is_empty());
}

#[tokio::test]
async fn keep_alive_zero_unloads_when_the_answer_ends() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi", "keep_alive": 0})).await;
    assert_eq!((status, v["response"].as_str()), (StatusCode::OK, Some("Hello, world.")));
    assert!(h.loaded().await.is_empty());
    let backend = h.backend.clone();
    eventually("the runner is stopped", || backend.running() == 0).await;
}

#[tokio::test]
async fn an_empty_prompt_loads_and_keep_alive_zero_unloads() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let (_, v) = h.generate(json!({"model": "a"})).await;
    assert_eq!(v["done_reason"], "load");
    assert_eq!(h.loaded().await, ["a:latest"]);
    let (_, v) = h.generate(json!({"model": "a", "keep_alive": 0})).await;
    assert_eq!(v["done_reason"], "unload");
    assert!(h.loaded().await.is_empty());
    assert_eq!(h.backend.completions(), 0, "neither request generated");
}

#[tokio::test]
async fn requests_beyond_the_queue_bound_get_503() {
    let h = Harness::new(|c| {
        c.max_loaded_models = 1;
        c.max_queue = 1;
    });
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    h.backend.set_script(Script { token_delay: Duration::from_millis(100), ..Script::default() });
    // a is busy for 400 ms; b must wait for it (one model at a time) and fills the queue.
    let busy = tokio::spawn({
        let app = h.app.clone();
        async move {
            let req = Request::post("/api/generate")
                .header("host", "localhost")
                .body(Body::from(json!({"model": "a", "prompt": "x", "stream": false}).to_string()))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    });
    let backend = h.backend.clone();
    eventually("a is generating", || backend.completions() == 1).await;
    let waiting = tokio::spawn({
        let app = h.app.clone();
        async move {
            let req = Request::post("/api/generate")
                .header("host", "localhost")
                .body(Body::from(json!({"model": "b", "prompt": "x", "stream": false}).to_string()))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            (resp.status(), Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (status, v) = h.generate(json!({"model": "b", "prompt": "x"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "server busy, please try again.  maximum pending requests exceeded");
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
    let (status, _) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "the waiting request is served once a is evicted");
    assert_eq!(h.loaded().await, ["b:latest"]);
}

#[tokio::test]
async fn models_on_the_same_weights_share_a_runner_with_the_longer_context() {
    let h = Harness::new(|_| {});
    h.create("long", 1, json!({"num_ctx": 2048})).await;
    // Same blob, a shorter context: served by long's runner instead of evicting it.
    h.create("short", 1, json!({"num_ctx": 1024})).await;
    for name in ["long", "short", "long"] {
        let (status, v) = h.generate(json!({"model": name, "prompt": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let loads = h.backend.loads();
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!(loads[0].options.num_ctx, 2048);
}

#[tokio::test]
async fn an_idle_model_is_evicted_when_the_next_does_not_fit_in_memory() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    // Less than one tiny model needs (83 KB of weights plus a 2048-position f16 KV cache of
    // 512 KiB): the first loads anyway (nothing to evict), the second evicts it.
    h.backend.set_available_memory(Some(300 << 10));
    for name in ["a", "b"] {
        let (status, v) = h.generate(json!({"model": name, "prompt": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    assert_eq!(h.loaded().await, ["b:latest"]);
    // With room for both, both stay.
    h.backend.set_available_memory(Some(64 << 20));
    let (status, _) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.loaded().await, ["a:latest", "b:latest"]);
}

#[tokio::test]
async fn a_runner_dying_mid_answer_fails_it_and_the_next_request_gets_a_fresh_runner() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { die_after: Some(2), ..Script::default() });
    // Streaming: the tokens so far, then an error line.
    let resp = h.send("POST", "/api/generate", Body::from(json!({"model": "a", "prompt": "hi"}).to_string())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["response"], "Hello");
    assert!(lines[2]["error"].as_str().unwrap().starts_with("model runner has unexpectedly stopped"), "{text}");
    // Not streaming: a 500 with the same message.
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(v["error"].as_str().unwrap().starts_with("model runner has unexpectedly stopped"), "{v}");
    // Healthy again: a fresh runner answers.
    h.backend.set_script(Script::default());
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!((status, v["response"].as_str()), (StatusCode::OK, Some("Hello, world.")));
    assert_eq!(h.backend.loads().len(), 3);
    assert_eq!(h.backend.running(), 1);
}

/// Issue 13: a runner that stops answering (SIGSTOP) is found by the heartbeat within seconds;
/// its request ends with an error that says so, it is killed, and the next request gets a fresh one.
#[tokio::test]
async fn a_frozen_runner_is_killed_after_a_missed_heartbeat_and_replaced() {
    let h = Harness::new(|c| c.heartbeat = Duration::from_millis(300));
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { freeze_after: Some(1), ..Script::default() });
    let started = Instant::now();
    let resp = h.send("POST", "/api/generate", Body::from(json!({"model": "a", "prompt": "hi"}).to_string())).await;
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["response"], "Hello");
    let error = lines[1]["error"].as_str().unwrap();
    assert!(error.starts_with("model runner stopped responding (no answer within 0.3s) and was killed"), "{text}");
    // Found by the heartbeat: a ping every 150 ms, answered within 300 ms.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let backend = h.backend.clone();
    eventually("the frozen runner is killed", || backend.running() == 0).await;
    h.backend.set_script(Script::default());
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!((status, v["response"].as_str()), (StatusCode::OK, Some("Hello, world.")), "{v}");
    assert_eq!(h.backend.loads().len(), 2);
}

/// A runner that is busy (a slow answer) still answers heartbeats: it is not killed.
#[tokio::test]
async fn a_slow_answer_is_not_taken_for_a_hung_runner() {
    let h = Harness::new(|c| c.heartbeat = Duration::from_millis(100));
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { token_delay: Duration::from_millis(150), ..Script::default() });
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!((status, v["response"].as_str()), (StatusCode::OK, Some("Hello, world.")), "{v}");
    assert_eq!(h.backend.loads().len(), 1);
    assert_eq!(h.backend.running(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_mid_answer_cancels_the_generation_and_frees_the_runner() {
    let h = Harness::new(|c| c.max_loaded_models = 1);
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    h.backend.set_script(Script { token_delay: Duration::from_millis(50), ..Script::default() });
    let resp = h.send("POST", "/api/generate", Body::from(json!({"model": "a", "prompt": "hi"}).to_string())).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Hello"));
    drop(body);
    let backend = h.backend.clone();
    eventually("the runner is told to cancel", || backend.cancelled() == 1).await;
    // The lease is released: b can evict a at once instead of waiting for it.
    h.backend.set_script(Script::default());
    let started = Instant::now();
    let (status, _) = h.generate(json!({"model": "b", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(150), "{:?}", started.elapsed());
    assert_eq!(h.loaded().await, ["b:latest"]);
}

#[tokio::test]
async fn a_client_that_leaves_during_the_load_leaves_no_loading_model_behind() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { load_delay: Duration::from_millis(200), ..Script::default() });
    let gone = tokio::time::timeout(Duration::from_millis(30), h.generate(json!({"model": "a", "prompt": "hi"}))).await;
    assert!(gone.is_err(), "the request was still loading");
    assert!(h.loaded().await.is_empty());
    h.backend.set_script(Script::default());
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!((status, v["response"].as_str()), (StatusCode::OK, Some("Hello, world.")));
}

#[tokio::test]
async fn a_failed_load_is_a_500_and_loads_nothing() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { fail_load: Some("tensor 'x' has a bad shape".into()), ..Script::default() });
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(v["error"].as_str().unwrap().contains("tensor 'x' has a bad shape"), "{v}");
    assert!(h.loaded().await.is_empty());
}

#[tokio::test]
async fn num_predict_ends_the_answer_with_length() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let (_, v) = h.generate(json!({"model": "a", "prompt": "hi", "options": {"num_predict": 2}})).await;
    assert_eq!(v["response"], "Hello,");
    assert_eq!(v["done_reason"], "length");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_400() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({"num_ctx": 64})).await;
    let (status, v) = h.generate(json!({"model": "a", "prompt": "x".repeat(100)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("the input length exceeds the context length"), "{v}");
}

#[tokio::test]
async fn a_busy_model_is_not_evicted_for_memory_the_next_loads_beside_it() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    h.backend.set_available_memory(Some(300 << 10));
    h.backend.set_script(Script { token_delay: Duration::from_millis(60), ..Script::default() });
    let busy = tokio::spawn({
        let app = h.app.clone();
        async move {
            let body = json!({"model": "a", "prompt": "x", "stream": false}).to_string();
            let req = Request::post("/api/generate").header("host", "localhost").body(Body::from(body)).unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    });
    let backend = h.backend.clone();
    eventually("a is generating", || backend.completions() == 1).await;
    // The estimate is rough: with nothing idle to evict, b is tried anyway rather than waiting.
    let (status, v) = h.generate(json!({"model": "b", "prompt": "x"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
    assert_eq!(h.loaded().await, ["a:latest", "b:latest"]);
}

/// The three error shapes for a runner failure of `kind`.
async fn failures(kind: ErrorKind, cause: &str) -> [(StatusCode, Value); 3] {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { fail_completion: Some((kind, cause.into())), ..Script::default() });
    let messages = json!([{"role": "user", "content": "hi"}]);
    [
        h.call("POST", "/api/chat", json!({"model": "a", "messages": messages, "stream": false})).await,
        h.call("POST", "/v1/chat/completions", json!({"model": "a", "messages": messages})).await,
        h.call("POST", "/v1/messages", json!({"model": "a", "messages": messages, "max_tokens": 8})).await,
    ]
}

#[tokio::test]
async fn a_runner_fault_is_a_500_with_a_request_id_and_never_its_cause() {
    let cause = "ggml_decode failed in /home/someone/.ollama/models/blobs/sha256-abc";
    let [native, openai, anthropic] = failures(ErrorKind::Internal, cause).await;
    for (status, v) in [&native, &openai, &anthropic] {
        assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
        assert!(!v.to_string().contains("/home/someone"), "the cause leaked: {v}");
    }
    let id = |message: &str| message.split("request id ").nth(1).unwrap().split(';').next().unwrap().to_string();
    let native_message = native.1["error"].as_str().unwrap();
    assert!(native_message.starts_with("internal server error (request id req_"), "{native_message}");
    let openai_error = &openai.1["error"];
    assert_eq!(openai_error["type"], "api_error");
    assert!(openai_error["message"].as_str().unwrap().contains("request id req_"));
    // Anthropic's body names the same id that its message gives.
    assert_eq!(anthropic.1["type"], "error");
    assert_eq!(anthropic.1["error"]["type"], "api_error");
    assert_eq!(anthropic.1["request_id"].as_str().unwrap(), id(anthropic.1["error"]["message"].as_str().unwrap()));
}

#[tokio::test]
async fn a_request_the_runner_refuses_is_a_400_with_its_message_in_each_shape() {
    let message = "token 99999 is not in the vocabulary";
    let [native, openai, anthropic] = failures(ErrorKind::Invalid, message).await;
    assert_eq!(native, (StatusCode::BAD_REQUEST, json!({"error": message})));
    assert_eq!(openai.0, StatusCode::BAD_REQUEST);
    assert_eq!(openai.1["error"]["message"], message);
    assert_eq!(openai.1["error"]["type"], "invalid_request_error");
    assert_eq!(anthropic.0, StatusCode::BAD_REQUEST);
    assert_eq!(anthropic.1["error"]["type"], "invalid_request_error");
    assert_eq!(anthropic.1["error"]["message"], message);
}

/// A harness whose server was told of one GPU with `room` bytes beyond llama.cpp's 1 GiB margin,
/// and whose runners report `held` bytes on it once loaded.
fn with_gpu(room: u64, held: u64) -> Harness {
    use corral_types::runner::{DeviceInfo, DeviceKind};
    let h = Harness::new(|c| {
        c.backends.devices = vec![DeviceInfo {
            id: "CUDA0".into(),
            description: "a described GPU".into(),
            kind: DeviceKind::Gpu,
            total_bytes: 2 << 30,
            free_bytes: (1 << 30) + room,
        }];
    });
    h.backend.set_script(Script { gpu: vec![("CUDA0".into(), held)], ..Script::default() });
    h
}

#[tokio::test]
async fn an_idle_model_holding_the_gpu_is_evicted_for_the_next_one() {
    // Room for one tiny model (about 600 KB expected, 900 KiB held once loaded), not two.
    let h = with_gpu(1 << 20, 900 << 10);
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    for name in ["a", "b"] {
        let (status, v) = h.generate(json!({"model": name, "prompt": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    assert_eq!(h.loaded().await, ["b:latest"]);
    let (_, ps) = h.call("GET", "/api/ps", Value::Null).await;
    assert_eq!(ps["models"][0]["size_vram"], 900 << 10, "{ps}");
    // With room for both, both stay.
    let h = with_gpu(4 << 20, 900 << 10);
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    for name in ["a", "b"] {
        assert_eq!(h.generate(json!({"model": name, "prompt": "hi"})).await.0, StatusCode::OK);
    }
    assert_eq!(h.loaded().await, ["a:latest", "b:latest"]);
}

#[tokio::test]
async fn a_model_waits_for_a_busy_one_to_free_the_gpu() {
    let h = with_gpu(1 << 20, 900 << 10);
    h.create("a", 1, json!({})).await;
    h.create("b", 2, json!({})).await;
    h.backend.set_script(Script {
        token_delay: Duration::from_millis(40),
        gpu: vec![("CUDA0".into(), 900 << 10)],
        ..Script::default()
    });
    let busy = tokio::spawn({
        let app = h.app.clone();
        async move {
            let body = json!({"model": "a", "prompt": "x", "stream": false}).to_string();
            let req = Request::post("/api/generate").header("host", "localhost").body(Body::from(body)).unwrap();
            let status = app.oneshot(req).await.unwrap().status();
            (status, Instant::now())
        }
    });
    let backend = h.backend.clone();
    eventually("a is generating", || backend.completions() == 1).await;
    let (status, v) = h.generate(json!({"model": "b", "prompt": "x"})).await;
    let b_done = Instant::now();
    assert_eq!(status, StatusCode::OK, "{v}");
    let (a_status, a_done) = busy.await.unwrap();
    assert_eq!(a_status, StatusCode::OK);
    assert!(a_done <= b_done, "b was answered before a let go of the GPU");
    assert_eq!(h.loaded().await, ["b:latest"]);
}
