//! Streamed bodies: progress as NDJSON (or, with `"stream": false`, only the last line), and
//! answers, whose events each protocol turns into body pieces with its own [`Encode`]r (Ollama's
//! NDJSON chunks, OpenAI's SSE chunks, Anthropic's and the Responses API's named SSE events).
//! The encoders are plain values, so their output is snapshot-tested without a server.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use corral_types::api::{ErrorResponse, ProgressResponse};
use futures_util::stream;
use tokio::sync::mpsc;

use crate::infer::answer::{Answer, AnswerEvent};
use crate::ApiError;

/// A unit of blocking work that reports progress through the callback.
pub(crate) type Work = Box<dyn FnOnce(&mut dyn FnMut(ProgressResponse)) -> Result<(), ApiError> + Send>;

/// Runs `work` on the blocking pool, streaming its progress as [`progress_async`] does.
pub(crate) async fn progress(streaming: bool, work: Work) -> Response {
    progress_async(
        streaming,
        move |report| async move { corral_store::unblock(move || work(&mut |p| report(p))).await },
    )
    .await
}

/// Reports progress from async work.
pub(crate) type Report = std::sync::Arc<dyn Fn(ProgressResponse) + Send + Sync>;

/// Runs `work` in its own task and answers with its progress. Streaming: each update is a line,
/// and a failure a final `{"error": …}` line (the status is already 200 by then, as in Ollama).
/// Not streaming: the last update, or the error with its own status. A client that disconnects
/// does not abort the work half way (a create finishes; a pull resumes later anyway).
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
    let body = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|line| (line, rx)) });
    streamed(body, "application/x-ndjson")
}

/// A 200 response whose body is the pieces of `body`, each sent as it comes.
fn streamed(body: impl futures_util::Stream<Item = String> + Send + 'static, content_type: &'static str) -> Response {
    let body = futures_util::StreamExt::map(body, Ok::<_, std::convert::Infallible>);
    let headers = [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")];
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

/// The body format of a streamed answer.
#[derive(Clone, Copy)]
pub(crate) enum Framing {
    /// One JSON object per line (Ollama).
    Ndjson,
    /// Server-sent events (OpenAI, Anthropic).
    Sse,
}

/// One protocol's way of writing a streamed answer.
pub(crate) trait Encode: Send + 'static {
    /// The body pieces (lines or SSE events) for one event; called once more with `None` after
    /// the last event.
    fn encode(&mut self, event: Option<AnswerEvent>) -> Vec<String>;
}

/// Streams an answer through `encoder`. The body polls the answer itself, with no task and
/// channel between them: each token would cost one more wake-up on its way out. A client that
/// disconnects drops the body and with it the answer, which stops the runner's work on it.
pub(crate) fn answer_stream(answer: Answer, framing: Framing, encode: impl Encode) -> Response {
    struct State<E> {
        answer: Answer,
        encode: E,
        pieces: std::vec::IntoIter<String>,
        ended: bool,
    }
    let state = State { answer, encode, pieces: Vec::new().into_iter(), ended: false };
    let body = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(piece) = s.pieces.next() {
                return Some((piece, s));
            }
            if s.ended {
                return None;
            }
            let event = s.answer.next().await;
            s.ended = event.is_none();
            s.pieces = s.encode.encode(event).into_iter();
        }
    });
    let content_type = match framing {
        Framing::Ndjson => "application/x-ndjson",
        Framing::Sse => "text/event-stream",
    };
    streamed(body, content_type)
}

/// One SSE event: `event: <name>` (if any) and `data: <json>`.
pub(crate) fn sse<T: serde::Serialize>(event: Option<&str>, data: &T) -> String {
    let data = serde_json::to_string(data).expect("API types serialise");
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// Test helpers: the pieces an encoder writes for a sequence of events, as one text.
#[cfg(test)]
pub(crate) mod testing {
    use super::Encode;
    use crate::infer::answer::{AnswerEvent, Delta, Finish};
    use corral_types::api::{FunctionCall, ToolCall};
    use corral_types::runner::{DoneReason, Usage};

    /// Every piece `encoder` writes for `events` and the final `None`.
    pub fn encode_all(mut encoder: impl Encode, events: Vec<AnswerEvent>) -> String {
        let mut out = String::new();
        for e in events.into_iter().map(Some).chain([None]) {
            out.extend(encoder.encode(e));
        }
        out
    }

    pub fn text(content: &str) -> AnswerEvent {
        AnswerEvent::Delta(Delta { content: content.into(), ..Default::default() })
    }

    pub fn thinking(thinking: &str) -> AnswerEvent {
        AnswerEvent::Delta(Delta { thinking: thinking.into(), ..Default::default() })
    }

    /// A delta with one tool call, `index`-th of the answer.
    pub fn call(index: usize, name: &str, arguments: serde_json::Value) -> AnswerEvent {
        let function =
            FunctionCall { name: name.into(), arguments: arguments.as_object().cloned().unwrap_or_default() };
        AnswerEvent::Delta(Delta {
            calls: vec![ToolCall::new(format!("call_{index:08x}"), index, function)],
            ..Default::default()
        })
    }

    /// An answer that thinks, writes, calls a tool and stops.
    pub fn answer_with_a_call() -> Vec<AnswerEvent> {
        vec![
            thinking("Hmm."),
            text("Hello"),
            call(0, "get_weather", serde_json::json!({"city": "Paris"})),
            done(DoneReason::Stop),
        ]
    }

    /// The end: 7 prompt tokens (2 of them cached), 3 generated, fixed timings.
    pub fn done(reason: DoneReason) -> AnswerEvent {
        let usage = Usage {
            prompt_tokens: 5,
            prompt_ns: 1_000_000,
            generated_tokens: 3,
            generation_ns: 3_000_000,
            cached_tokens: 2,
            ..Default::default()
        };
        AnswerEvent::Done(Finish { reason, usage, tokens: vec![1, 2, 3] })
    }
}
