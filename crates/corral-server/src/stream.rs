//! Streaming progress as NDJSON, or, with `"stream": false`, only the last line.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::{ErrorResponse, ProgressResponse};
use futures_util::stream;
use tokio::sync::mpsc;

use crate::ApiError;

/// A unit of blocking work that reports progress through the callback.
pub(crate) type Work = Box<dyn FnOnce(&mut dyn FnMut(ProgressResponse)) -> Result<(), ApiError> + Send>;

/// Runs `work` on the blocking pool. Streaming: each progress update is a line, and a failure a
/// final `{"error": …}` line (the status is already 200 by then, as in Ollama). Not streaming: the
/// last update, or the error with its own status.
pub(crate) async fn progress(streaming: bool, work: Work) -> Response {
    if !streaming {
        let mut last = None;
        let result = tokio::task::spawn_blocking(move || {
            let r = work(&mut |p| last = Some(p));
            r.map(|()| last)
        })
        .await;
        return match result {
            Ok(Ok(last)) => Json(last.unwrap_or_else(|| ProgressResponse::status("success"))).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(join) => ApiError::from(join).into_response(),
        };
    }

    let (tx, rx) = mpsc::channel::<String>(64);
    tokio::task::spawn_blocking(move || {
        let send = |line: String| {
            // A closed channel means the client went away; the work still finishes so the store
            // is left consistent.
            let _ = tx.blocking_send(line);
        };
        let result = work(&mut |p| send(to_line(&p)));
        if let Err(e) = result {
            tracing::warn!(status = %e.status, "request failed mid-stream: {}", e.message);
            send(to_line(&ErrorResponse { error: e.message }));
        }
    });
    ndjson(rx)
}

/// Reports progress from async work.
pub(crate) type Report = std::sync::Arc<dyn Fn(ProgressResponse) + Send + Sync>;

/// Like [`progress`], for async work (pulls and pushes). The work runs in its own task, so a
/// client that disconnects does not abort a transfer half way (a pull resumes later anyway).
pub(crate) async fn progress_async<Fut>(streaming: bool, work: impl FnOnce(Report) -> Fut) -> Response
where
    Fut: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<ProgressResponse>();
    let report: Report = std::sync::Arc::new(move |p| {
        let _ = tx.send(p);
    });
    let task = tokio::spawn(work(report));
    if !streaming {
        let result = task.await;
        let mut last = None;
        while let Ok(p) = rx.try_recv() {
            last = Some(p);
        }
        return match result {
            Ok(Ok(())) => Json(last.unwrap_or_else(|| ProgressResponse::status("success"))).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(join) => ApiError::from(join).into_response(),
        };
    }
    let (lines_tx, lines_rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let forward = async {
            while let Some(p) = rx.recv().await {
                if lines_tx.send(to_line(&p)).await.is_err() {
                    break;
                }
            }
        };
        let (result, ()) = tokio::join!(task, forward);
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.message,
            Err(join) => join.to_string(),
        };
        tracing::warn!("transfer failed: {error}");
        let _ = lines_tx.send(to_line(&ErrorResponse { error })).await;
    });
    ndjson(lines_rx)
}

/// Serialises one NDJSON line.
pub(crate) fn to_line<T: serde::Serialize>(value: &T) -> String {
    let mut line = serde_json::to_string(value).expect("API types serialise");
    line.push('\n');
    line
}

/// A 200 response whose body is the lines from `rx`, flushed as they come.
pub(crate) fn ndjson(rx: mpsc::Receiver<String>) -> Response {
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(body)).into_response()
}
