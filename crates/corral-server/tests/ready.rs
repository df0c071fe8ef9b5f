//! Issue 31: the probes an orchestrator asks (`/health`, `/ready`) and the series the inference
//! gateway's endpoint picker reads, through `app(state)` with the scripted backend (its loads
//! made slow on purpose, so that the server is seen unready while they run).

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use common::Harness;
use corral_server::Script;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

async fn probe(h: &Harness, path: &str) -> (StatusCode, Value) {
    h.call("GET", path, Value::Null).await
}

/// Polls `/ready` until it answers `status`, for up to five seconds; returns the last body.
async fn ready_becomes(h: &Harness, status: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (now, v) = probe(h, "/ready").await;
        if now == status {
            return v;
        }
        assert!(Instant::now() < deadline, "/ready still {now}: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn issue_31_ready_answers_503_until_the_preloaded_models_are_loaded() {
    let h = Harness::new(|c| {
        c.preload = vec!["a".into(), "b:latest".into()];
        c.api_keys = corral_server::ApiKeys::new(["secret".to_string()]);
    });
    let authorized = [("authorization", "Bearer secret")];
    for (name, seed) in [("a", 1), ("b", 2)] {
        let gguf = corral_testkit::tiny_llama(&corral_testkit::TinySpec { seed, ..Default::default() }, None);
        let digest = format!("sha256:{:x}", Sha256::digest(&gguf));
        h.send_with("POST", &format!("/api/blobs/{digest}"), &authorized, Body::from(gguf)).await;
        let create = json!({"model": name, "files": {"m.gguf": digest}, "stream": false}).to_string();
        let resp = h.send_with("POST", "/api/create", &authorized, Body::from(create)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    h.backend.set_script(Script { load_delay: Duration::from_millis(300), ..Script::default() });
    // Nothing loaded yet: unready, and the probes need no key.
    let (status, v) = probe(&h, "/ready").await;
    assert_eq!((status, &v["status"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("loading")), "{v}");
    corral_server::start_preload(&h.state);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, v) = probe(&h, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v, json!({"status": "loading", "loading": ["a", "b:latest"]}));
    // Liveness never waits for a model.
    let started = Instant::now();
    assert_eq!(probe(&h, "/health").await, (StatusCode::OK, json!({"status": "ok"})));
    assert!(started.elapsed() < Duration::from_millis(100));

    let v = ready_becomes(&h, StatusCode::OK).await;
    assert_eq!(v, json!({"status": "ready"}));
    assert_eq!(h.backend.loads().len(), 2);
    // Kept loaded: `/api/ps` says they never expire (a time two centuries away, as for any
    // `keep_alive` of forever).
    let resp = h.send_with("GET", "/api/ps", &authorized, Body::empty()).await;
    let ps: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let models = ps["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{ps}");
    let year = |m: &Value| m["expires_at"].as_str().unwrap()[..4].parse::<u32>().unwrap();
    assert!(models.iter().all(|m| year(m) > 2200), "{ps}");

    // Shutting down: unready again, so that the balancer sends no more.
    h.state.scheduler.close();
    let (status, v) = probe(&h, "/ready").await;
    assert_eq!((status, v), (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "shutting down"})));
}

#[tokio::test]
async fn issue_31_a_preload_that_fails_keeps_the_server_unready_and_says_why() {
    let h = Harness::new(|c| c.preload = vec!["missing".into()]);
    corral_server::start_preload(&h.state);
    let v = ready_becomes(&h, StatusCode::SERVICE_UNAVAILABLE).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut v = v;
    while v["status"] != "failed" {
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
        v = probe(&h, "/ready").await.1;
    }
    assert_eq!(v["model"], "missing");
    assert_eq!(v["error"], "model 'missing' not found");
    assert_eq!(probe(&h, "/health").await.0, StatusCode::OK);
}

/// The `/metrics` lines of `name` (its HELP and TYPE lines included).
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(name)).collect()
}

#[tokio::test]
async fn issue_31_the_gateway_reads_loaded_adapters_and_the_cache_shape() {
    let h = Harness::new(|c| c.max_loaded_models = 4);
    h.create("base", 1, json!({})).await;
    let adapter = corral_testkit::lora_adapter(64, 2, 4, 1.0, 3);
    let digest = format!("sha256:{:x}", Sha256::digest(&adapter));
    h.send("POST", &format!("/api/blobs/{digest}"), Body::from(adapter)).await;
    let (status, v) = h
        .call(
            "POST",
            "/api/create",
            json!({"model": "tuned", "from": "base", "adapters": {"a.gguf": digest}, "stream": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let scrape = || async {
        let resp = h.send("GET", "/metrics", Body::empty()).await;
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };
    let before = scrape().await;
    let lora = series(&before, "vllm:lora_requests_info");
    assert_eq!(lora[1], "# TYPE vllm:lora_requests_info gauge");
    assert!(lora[2]
        .starts_with("vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} "));
    for name in ["base", "tuned"] {
        assert_eq!(h.generate(json!({"model": name, "prompt": "hi"})).await.0, StatusCode::OK);
    }
    let after = scrape().await;
    let lora = series(&after, "vllm:lora_requests_info");
    assert!(lora[2].contains("running_lora_adapters=\"tuned\""), "{lora:?}");
    // The value is the time of the scrape, as vLLM sets it.
    let at: f64 = lora[2].rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - at).abs() < 60.0, "{at} vs {now}");
    let cache = series(&after, "vllm:cache_config_info");
    assert_eq!(cache[1], "# TYPE vllm:cache_config_info gauge");
    let cells: u64 = series(&after, "corral_kv_cache_cells")[2].rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        cache[2],
        format!("vllm:cache_config_info{{block_size=\"16\",num_gpu_blocks=\"{}\"}} 1", cells / 16),
        "{cache:?}"
    );
}
