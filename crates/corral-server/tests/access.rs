//! Issue 13: access control (API keys), request limits, and the shutdown sequence, through
//! `app(state)` in-process and through `corral_server::run` on a real loopback listener.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use common::Harness;
use corral_server::{ApiKeys, Script};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn answer(resp: axum::response::Response) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_keys_are_asked_for_everywhere_but_the_liveness_probes() {
    let h = Harness::new(|c| c.api_keys = ApiKeys::new(["k1", "k2"]));
    for (method, path) in [("GET", "/"), ("HEAD", "/"), ("GET", "/api/version")] {
        let resp = h.send(method, path, Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{method} {path}");
    }
    // No key: Ollama's error shape, and a hint of how to send one.
    let (status, headers, v) = answer(h.send("GET", "/api/tags", Body::empty()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(v, json!({"error": "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"}));
    // Each way a client sends a key.
    for header in [("authorization", "Bearer k2"), ("authorization", "bearer  k1 "), ("x-api-key", "k1")] {
        let resp = h.send_with("GET", "/api/tags", &[header], Body::empty()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{header:?}");
    }
    // A wrong key, in each protocol's shape; the key itself is never echoed.
    for wrong in [("authorization", "Bearer k3"), ("x-api-key", "k1 k2"), ("authorization", "Bearer k1k2")] {
        let (status, _, v) = answer(h.send_with("GET", "/api/ps", &[wrong], Body::empty()).await).await;
        assert_eq!((status, &v), (StatusCode::UNAUTHORIZED, &json!({"error": "invalid API key"})), "{wrong:?}");
    }
    // Basic credentials are no key.
    let resp = h.send_with("GET", "/api/ps", &[("authorization", "Basic azE6")], Body::empty()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _, v) =
        answer(h.send_with("GET", "/v1/models", &[("authorization", "Bearer nope")], Body::empty()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["message"], "invalid API key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let body = Body::from(json!({"model": "m", "max_tokens": 5, "messages": []}).to_string());
    let (status, _, v) = answer(h.send_with("POST", "/v1/messages", &[("x-api-key", "nope")], body).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("authentication_error")), "{v}");
    // A browser's preflight carries no key; it is answered (and the real request then needs one).
    let preflight = [("origin", "http://localhost:3000"), ("access-control-request-method", "POST")];
    let resp = h.send_with("OPTIONS", "/api/chat", &preflight, Body::empty()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = h.send_with("POST", "/api/show", &[("origin", "http://localhost:3000")], Body::from("{}")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["access-control-allow-origin"], "http://localhost:3000");
}

#[tokio::test]
async fn oversized_and_overdeep_requests_are_clear_4xx() {
    let h = Harness::new(|c| c.max_body_bytes = 1 << 20);
    h.create("a", 1, json!({})).await;
    // Nesting beyond the JSON decoder's limit of 128.
    let deep =
        format!("{{\"model\":\"a\",\"prompt\":\"hi\",\"options\":{{\"x\":{}{}}}}}", "[".repeat(5000), "]".repeat(5000));
    let resp = h.send("POST", "/api/generate", Body::from(deep)).await;
    let (status, _, v) = answer(resp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("recursion limit exceeded"), "{v}");
    // A body over the limit.
    let big = json!({"model": "a", "prompt": "x".repeat(2 << 20)}).to_string();
    let (status, _, v) = answer(h.send("POST", "/api/generate", Body::from(big)).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], "request body is larger than 1048576 bytes");
    // Too many messages, too many images.
    let messages: Vec<Value> = (0..10_001).map(|_| json!({"role": "user", "content": "a"})).collect();
    let (status, v) = h.call("POST", "/api/chat", json!({"model": "a", "messages": messages, "stream": false})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too many messages: 10001 (at most 10000 in one request)"))
    );
    let images: Vec<&str> = vec!["aGk="; 65];
    let (status, v) = h
        .call(
            "POST",
            "/api/chat",
            json!({"model": "a", "messages": [{"role": "user", "content": "a", "images": images}], "stream": false}),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too many images: 65 (at most 64 in one request)"))
    );
    // A prompt longer than the context is cut (Ollama's default), not a hang; with truncation
    // off it is a 400.
    let long = "y".repeat(10_000);
    let (status, v) = h.call("POST", "/api/chat", json!({"model": "a", "messages": [{"role": "user", "content": long}], "truncate": false, "stream": false, "options": {"num_ctx": 512}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn a_closing_scheduler_answers_503() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    h.state.scheduler.close();
    let (status, v) = h.generate(json!({"model": "a", "prompt": "hi"})).await;
    assert_eq!((status, v["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("the server is shutting down")));
}

/// `corral_server::run` on a loopback port; fire the returned sender to shut it down.
async fn serve(
    h: &Harness,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(corral_server::run(listener, h.state.clone(), async move {
        let _ = rx.await;
    }));
    (addr, tx, server)
}

/// Sends `body` as a streamed `/api/generate` and returns the connection, its answer unread.
async fn generate_raw(addr: std::net::SocketAddr, body: Value) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    s
}

/// Reads until `needle` shows; returns what was read.
async fn read_until(s: &mut TcpStream, needle: &str, within: Duration) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} did not come within {within:?}: {}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

// Issue 13: 3,000 connections that each sent half a request header were all still open 35 s
// later. Now each is closed once the header deadline passes, and the server answers throughout.
#[tokio::test]
async fn half_sent_headers_are_cut_off_at_the_deadline() {
    let h = Harness::new(|c| c.header_timeout = Duration::from_millis(300));
    let (addr, stop, server) = serve(&h).await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/tags HTTP/1.1\r\nHost: local").await.unwrap();
        slow.push(s);
    }
    // A whole request still gets its answer meanwhile.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    fresh.write_all(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let seen = read_until(&mut fresh, "version", Duration::from_secs(5)).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let started = Instant::now();
    for mut s in slow {
        let mut buf = [0u8; 256];
        // The server ends the connection (an error answer, then EOF) once the deadline passes.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a half-sent header was still held after {:?}", started.elapsed());
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_running_answer_finish_and_refuses_new_connections() {
    let h = Harness::new(|c| c.shutdown_grace = Duration::from_secs(10));
    h.create("a", 1, json!({})).await;
    h.backend.set_script(Script { token_delay: Duration::from_millis(100), ..Script::default() });
    let (addr, stop, server) = serve(&h).await;
    let mut s = generate_raw(addr, json!({"model": "a", "prompt": "hi"})).await;
    read_until(&mut s, "Hello", Duration::from_secs(5)).await;
    stop.send(()).unwrap();
    let rest = read_until(&mut s, "\"done\":true", Duration::from_secs(5)).await;
    assert!(!rest.contains("error"), "{rest}");
    let started = Instant::now();
    server.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    assert_eq!(h.backend.running(), 0, "the runners are stopped");
}

#[tokio::test]
async fn shutdown_ends_answers_still_running_at_the_deadline_with_an_error() {
    let h = Harness::new(|c| c.shutdown_grace = Duration::from_millis(300));
    h.create("a", 1, json!({})).await;
    let reply = vec!["tick ".to_string(); 1000];
    h.backend.set_script(Script { reply, token_delay: Duration::from_millis(20), ..Script::default() });
    let (addr, stop, server) = serve(&h).await;
    let mut s = generate_raw(addr, json!({"model": "a", "prompt": "hi"})).await;
    read_until(&mut s, "tick", Duration::from_secs(5)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    let rest = read_until(&mut s, "the server is shutting down", Duration::from_secs(5)).await;
    assert!(!rest.contains("\"done\":true"), "{rest}");
    server.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(h.backend.running(), 0);
}

/// Issue 27: the error shape is the route group's, whoever answers: the API-key middleware, the
/// body extractor (a body that is no JSON) or the handler; unknown paths still need a key.
#[tokio::test]
async fn errors_take_the_shape_of_their_route_group() {
    let h = Harness::new(|c| c.api_keys = ApiKeys::new(["k1"]));
    let (status, headers, _) = answer(h.send("GET", "/no/such/path", Body::empty()).await).await;
    assert_eq!((status, &headers["www-authenticate"]), (StatusCode::UNAUTHORIZED, &"Bearer".parse().unwrap()));
    let key = [("authorization", "Bearer k1")];
    let resp = h.send_with("GET", "/no/such/path", &key, Body::empty()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    for (path, shape) in [("/api/chat", "native"), ("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")] {
        let (status, _, v) = answer(h.send_with("POST", path, &key, Body::from("{not json")).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        match shape {
            "native" => assert!(v["error"].is_string(), "{path}: {v}"),
            "openai" => assert_eq!(v["error"]["type"], "invalid_request_error", "{path}: {v}"),
            _ => assert_eq!(
                (v["type"].as_str(), v["error"]["type"].as_str()),
                (Some("error"), Some("invalid_request_error")),
                "{v}"
            ),
        }
    }
}
