//! The in-process harness of the server's tests: `app(state)` over a temporary models
//! directory, with the scripted backend instead of runner processes.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use corral_server::{app, AppState, Script, Scripted, ServerConfig};
use corral_testkit::TinySpec;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

pub struct Harness {
    pub app: Router,
    /// The state behind `app`, for tests that serve it on a real listener (`corral_server::run`).
    pub state: AppState,
    pub backend: Arc<Scripted>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("models"));
        configure(&mut config);
        let backend = Scripted::new(Script::default());
        let addr = "127.0.0.1:11434".parse().unwrap();
        let state = AppState::with_backend(config, addr, Arc::new(backend.clone()), Duration::from_millis(5)).unwrap();
        Harness { app: app(state.clone()), state, backend, _dir: dir }
    }

    pub async fn send(&self, method: &str, uri: &str, body: Body) -> axum::response::Response {
        self.send_with(method, uri, &[], body).await
    }

    /// A request with extra headers.
    pub async fn send_with(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> axum::response::Response {
        let mut req = Request::builder().method(method).uri(uri).header("host", "127.0.0.1:11434");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap()
    }

    /// A request and its whole answer as JSON (or a string for a body that is not).
    pub async fn call(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        let resp = self.send(method, uri, body).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, v)
    }

    /// Creates `name` from a tiny GGUF (its `seed` makes distinct weights), with `parameters`.
    pub async fn create(&self, name: &str, seed: u64, parameters: Value) {
        let gguf = corral_testkit::tiny_llama(&TinySpec { seed, ..Default::default() }, None);
        let digest = format!("sha256:{:x}", Sha256::digest(&gguf));
        let resp = self.send("POST", &format!("/api/blobs/{digest}"), Body::from(gguf)).await;
        assert!(resp.status().is_success(), "{}", resp.status());
        let (status, v) = self
            .call(
                "POST",
                "/api/create",
                json!({"model": name, "files": {"m.gguf": digest}, "parameters": parameters, "stream": false}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// Creates `name` from a tiny GGUF whose chat template is `template` (a 32-token placeholder
    /// vocabulary: the scripted runner does not read it).
    pub async fn create_with_template(&self, name: &str, template: &str) {
        use corral_gguf::{ArrayValue, Gguf, MetaValue};
        let tokens = (0..32).map(|i| format!("<t{i}>")).collect();
        let tokenizer = Gguf {
            version: 3,
            metadata: vec![
                ("tokenizer.ggml.model".into(), MetaValue::String("gpt2".into())),
                ("tokenizer.ggml.tokens".into(), MetaValue::Array(ArrayValue::String(tokens))),
                ("tokenizer.chat_template".into(), MetaValue::String(template.into())),
            ],
            tensors: vec![],
            alignment: 32,
            data_offset: 0,
        };
        // Real templates write long system prompts: room for them.
        let gguf = corral_testkit::tiny_llama(&TinySpec { context: 32768, ..Default::default() }, Some(&tokenizer));
        let digest = format!("sha256:{:x}", Sha256::digest(&gguf));
        let resp = self.send("POST", &format!("/api/blobs/{digest}"), Body::from(gguf)).await;
        assert!(resp.status().is_success(), "{}", resp.status());
        let req = json!({"model": name, "files": {"m.gguf": digest}, "stream": false});
        let (status, v) = self.call("POST", "/api/create", req).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    pub async fn generate(&self, body: Value) -> (StatusCode, Value) {
        let mut body = body;
        body["stream"] = json!(false);
        self.call("POST", "/api/generate", body).await
    }

    /// Names in `/api/ps`, sorted.
    pub async fn loaded(&self) -> Vec<String> {
        let (_, v) = self.call("GET", "/api/ps", Value::Null).await;
        let mut names: Vec<String> =
            v["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    }
}

/// Waits up to a second for `cond`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
