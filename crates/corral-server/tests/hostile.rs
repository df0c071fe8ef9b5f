//! Hostile models through `app(state)`: a chat template is code from whoever published the model.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Harness;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

// Issue 13: a template that nested two 10,000-step loops around the user's message kept the
// request running for minutes, and `/api/tags` stopped answering (rendering ran on the async
// threads).
#[tokio::test]
async fn issue_13_a_looping_template_fails_with_a_clear_error_and_the_server_keeps_answering() {
    let h = Harness::new(|_| {});
    h.create("a", 1, json!({})).await;
    let template = "{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}{{ .Prompt }}";
    let (status, v) = h
        .call("POST", "/api/create", json!({"model": "evil", "from": "a", "template": template, "stream": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let hostile = tokio::spawn({
        let app = h.app.clone();
        async move {
            let body = json!({"model": "evil", "prompt": "hi", "stream": false}).to_string();
            let req = Request::post("/api/generate").header("host", "localhost").body(Body::from(body)).unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    });
    // The runtime has one thread here: had the render run on it, nothing else would be answered
    // until the render ended.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, tags) = h.call("GET", "/api/tags", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{tags}");
    assert!(!hostile.is_finished(), "the render should still be running while /api/tags answers");
    let (status, v) = hostile.await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("did not finish within 50000000 steps"), "{v}");
    assert_eq!(h.backend.completions(), 0, "nothing reached the runner");
}
