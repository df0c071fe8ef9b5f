//! Compressed request bodies, end to end through the router: Codex sends its requests with
//! zstd (`Content-Encoding: zstd`), other clients gzip. Unknown encodings get a 415 in the
//! route's own error shape.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::Harness;
use http_body_util::BodyExt;
use serde_json::{json, Value};

async fn send(h: &Harness, uri: &str, encoding: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let headers = [("content-encoding", encoding), ("content-type", "application/json")];
    let resp = h.send_with("POST", uri, &headers, Body::from(body)).await;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn compressed_requests_are_answered_and_unknown_encodings_refused() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let chat = json!({"model": "a", "messages": [{"role": "user", "content": "hi"}], "stream": false}).to_string();

    let zstd = ruzstd::encoding::compress_to_vec(chat.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest);
    let (status, v) = send(&h, "/api/chat", "zstd", zstd).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["message"]["content"], "Hello, world.");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, chat.as_bytes()).unwrap();
    let (status, v) = send(&h, "/v1/chat/completions", "gzip", gz.finish().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello, world.");

    let (status, v) = send(&h, "/v1/chat/completions", "br", chat.into_bytes()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("unsupported Content-Encoding \"br\""), "{v}");
}
