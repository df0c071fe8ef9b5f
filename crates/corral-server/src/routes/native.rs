//! Ollama's native answers: `POST /api/generate` and `POST /api/chat`, as NDJSON chunks or one
//! object with `"stream": false`.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use corral_types::api::{ChatRequest, ChatResponse, GenerateRequest, GenerateResponse, Message, Metrics};
use serde_json::Value;

use crate::error::Protocol;
use crate::extract::JsonBody;
use crate::infer::answer::{Answer, AnswerEvent, Collected, Delta, Finish};
use crate::infer::request::{Chat, Generate};
use crate::infer::start::{start_chat, start_generate, Started, Timing};
use crate::stream::{answer_stream, to_line, Encode, Framing};
use crate::{ApiError, AppState};

pub(super) async fn generate(State(state): State<AppState>, JsonBody(req): JsonBody<GenerateRequest>) -> Response {
    let (model, streaming) = (req.model.clone(), req.stream.unwrap_or(true));
    let kind = Kind::Generate { context: !req.raw };
    let started = match Generate::from_native(req) {
        Ok(req) => start_generate(&state, req).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(started) => native(started, kind, &model, streaming).await,
        Err(e) => e.into_response(),
    }
}

pub(super) async fn chat(State(state): State<AppState>, JsonBody(req): JsonBody<ChatRequest>) -> Response {
    let (model, streaming) = (req.model.clone(), req.stream.unwrap_or(true));
    let started = match Chat::from_native(req) {
        Ok(req) => start_chat(&state, req, false).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(started) => native(started, Kind::Chat, &model, streaming).await,
        Err(e) => e.into_response(),
    }
}

/// Ollama's native answer to what a request started.
async fn native(started: Started, kind: Kind, model: &str, streaming: bool) -> Response {
    let reply =
        |timing: Timing| Reply { kind, model: model.to_string(), started: timing.started, load_ns: timing.load_ns };
    match started {
        Started::Immediate(reason, timing) => {
            Json(reply(timing).value(Delta::default(), End::Immediately(reason.as_str()))).into_response()
        }
        Started::Rendered(prompt) => debug_response(model, matches!(kind, Kind::Chat), prompt),
        Started::Answer(answer, timing) => respond(streaming, reply(timing), answer).await,
    }
}

/// Which response shape to produce.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Generate { context: bool },
    Chat,
}

/// Builds response chunks.
struct Reply {
    kind: Kind,
    model: String,
    started: Instant,
    load_ns: u64,
}

impl Reply {
    fn value(&self, delta: Delta, end: End<'_>) -> Value {
        let (done_reason, finished) = match end {
            End::No => (None, None),
            End::Immediately(reason) => (Some(reason.to_string()), None),
            End::After(f) => (Some(f.reason.as_str().to_string()), Some(f)),
        };
        let metrics = match finished {
            Some(f) => Metrics {
                total_duration: Some(self.started.elapsed().as_nanos() as u64),
                load_duration: Some(self.load_ns),
                prompt_eval_count: Some(f.usage.prompt_tokens),
                prompt_eval_duration: Some(f.usage.prompt_ns),
                eval_count: Some(f.usage.generated_tokens),
                eval_duration: Some(f.usage.generation_ns),
            },
            None => Metrics::default(),
        };
        let done = done_reason.is_some();
        let logprobs = (!delta.logprobs.is_empty()).then_some(delta.logprobs);
        let thinking = (!delta.thinking.is_empty()).then_some(delta.thinking);
        let v = match self.kind {
            Kind::Generate { context } => serde_json::to_value(GenerateResponse {
                model: self.model.clone(),
                created_at: Utc::now(),
                response: delta.content,
                thinking,
                done,
                done_reason,
                context: finished.and_then(|f| context.then(|| f.tokens.clone())),
                metrics,
                logprobs,
            }),
            Kind::Chat => serde_json::to_value(ChatResponse {
                model: self.model.clone(),
                created_at: Utc::now(),
                message: Message {
                    role: "assistant".into(),
                    content: delta.content,
                    thinking,
                    tool_calls: (!delta.calls.is_empty()).then(|| delta.calls.clone()),
                    ..Default::default()
                },
                done,
                done_reason,
                metrics,
                logprobs,
            }),
        };
        v.expect("responses serialise")
    }
}

/// Whether, and how, a chunk ends the answer.
enum End<'a> {
    No,
    /// Done without generating (`load`, `unload`): no metrics, no context.
    Immediately(&'a str),
    /// Done after generating: the reason, counts and timings, and the tokens for `context`.
    After(&'a Finish),
}

/// Answers in Ollama's native format: NDJSON chunks, or one object with `"stream": false`. The
/// lease is held until the answer ends, and a client that disconnects cancels the generation,
/// prompt processing included.
async fn respond(streaming: bool, reply: Reply, answer: Answer) -> Response {
    if !streaming {
        return match answer.collect().await {
            Ok(Collected { delta, finish: Some(f) }) => Json(reply.value(delta, End::After(&f))).into_response(),
            Ok(Collected { finish: None, .. }) => ApiError::from(crate::runner::RunnerError::Stopped).into_response(),
            Err(e) => e.into_response(),
        };
    }
    answer_stream(answer, Framing::Ndjson, Lines(reply))
}

/// A streamed answer as Ollama's NDJSON chunks: one per delta, a last one with the metrics, or an
/// error line.
struct Lines(Reply);

impl Encode for Lines {
    fn encode(&mut self, event: Option<AnswerEvent>) -> Vec<String> {
        match event {
            Some(AnswerEvent::Delta(d)) => vec![to_line(&self.0.value(d, End::No))],
            Some(AnswerEvent::Done(f)) => vec![to_line(&self.0.value(Delta::default(), End::After(&f)))],
            Some(AnswerEvent::Error(e)) => vec![to_line(&e.body(Protocol::Native))],
            None => Vec::new(),
        }
    }
}

/// The `_debug_render_only` answer: the rendered prompt, nothing generated.
pub(super) fn debug_response(model: &str, chat: bool, prompt: String) -> Response {
    let mut v = serde_json::json!({"model": model, "created_at": chrono::Utc::now(), "done": true,
        "_debug_info": {"rendered_template": prompt}});
    if chat {
        v["message"] = serde_json::json!({"role": "assistant", "content": ""});
    } else {
        v["response"] = Value::String(String::new());
    }
    axum::Json(v).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::{answer_with_a_call, done, encode_all, text};
    use corral_types::runner::DoneReason;
    use serde_json::json;

    /// The chunks with what changes from run to run (the time, the total duration) masked.
    fn lines(kind: Kind, events: Vec<AnswerEvent>) -> String {
        let reply = Reply { kind, model: "tiny".into(), started: Instant::now(), load_ns: 5 };
        let text = encode_all(Lines(reply), events);
        let masked = text.lines().map(|line| {
            let mut v: Value = serde_json::from_str(line).expect("every line is JSON");
            for key in ["created_at", "total_duration"] {
                if v.get(key).is_some() {
                    v[key] = json!(format!("<{key}>"));
                }
            }
            v.to_string()
        });
        masked.collect::<Vec<_>>().join("\n")
    }

    /// Issue 27: a change of Ollama's stream format shows up as a snapshot diff.
    #[test]
    fn chat_chunks() {
        insta::assert_snapshot!(lines(Kind::Chat, answer_with_a_call()));
    }

    #[test]
    fn generate_chunks_and_an_error() {
        let events = vec![text("Once"), done(DoneReason::Length)];
        insta::assert_snapshot!(lines(Kind::Generate { context: true }, events));
        let failed = vec![text("Once"), AnswerEvent::Error(ApiError::server("model runner has unexpectedly stopped"))];
        insta::assert_snapshot!("generate_error", lines(Kind::Generate { context: true }, failed));
    }
}
