//! OpenAI's streamed answers: `chat.completion.chunk` and `text_completion` SSE events, a last
//! chunk with the finish reason (and the usage, when asked for), then `data: [DONE]`; a failure
//! after the stream started is an `{"error": …}` event.

use super::wire::{ChunkChoice, ChunkDelta, FinishReason, Logprobs, MessageToolCall, TextChoice, Usage};
use super::Head;
use crate::error::Protocol;
use crate::infer::answer::{AnswerEvent, Delta};
use crate::stream::{sse, Encode};

const DONE: &str = "data: [DONE]\n\n";

/// `/v1/chat/completions` with `"stream": true`.
pub(super) struct ChatChunks {
    head: Head,
    include_usage: bool,
    /// The first delta names the role.
    first: bool,
    /// A call was sent: the finish reason is `tool_calls`.
    any_calls: bool,
}

impl ChatChunks {
    pub(super) fn new(head: Head, include_usage: bool) -> Self {
        ChatChunks { head, include_usage, first: true, any_calls: false }
    }

    fn chunk(&self, delta: ChunkDelta, finish: Option<FinishReason>, logprobs: Option<Logprobs>) -> String {
        let choice = ChunkChoice { index: 0, delta, finish_reason: finish, logprobs };
        sse(None, &self.head.with("chat.completion.chunk", vec![choice], None))
    }
}

impl Encode for ChatChunks {
    fn encode(&mut self, event: Option<AnswerEvent>) -> Vec<String> {
        match event {
            Some(AnswerEvent::Delta(Delta { content, thinking, calls, logprobs })) => {
                let mut out = Vec::new();
                let mut delta = ChunkDelta::default();
                if self.first {
                    delta.role = Some("assistant");
                    self.first = false;
                }
                if !thinking.is_empty() {
                    // Reasoning goes in a chunk of its own, as Ollama does.
                    out.push(self.chunk(ChunkDelta { reasoning: Some(thinking), ..delta }, None, None));
                    delta = ChunkDelta::default();
                }
                if !content.is_empty() || !calls.is_empty() || !logprobs.is_empty() {
                    delta.content = Some(content);
                    if !calls.is_empty() {
                        self.any_calls = true;
                        delta.tool_calls = Some(MessageToolCall::list(&calls));
                    }
                    out.push(self.chunk(delta, None, (!logprobs.is_empty()).then(|| Logprobs::of(&logprobs))));
                }
                out
            }
            Some(AnswerEvent::Done(f)) => {
                let mut out = vec![self.chunk(ChunkDelta::default(), Some(FinishReason::of(&f, self.any_calls)), None)];
                if self.include_usage {
                    let usage =
                        self.head.with::<ChunkChoice>("chat.completion.chunk", vec![], Some(Some(Usage::of(&f))));
                    out.push(sse(None, &usage));
                }
                out.push(DONE.to_string());
                out
            }
            Some(AnswerEvent::Error(e)) => vec![sse(None, &e.body(Protocol::OpenAi))],
            None => Vec::new(),
        }
    }
}

/// `/v1/completions` with `"stream": true`.
pub(super) struct TextChunks {
    pub(super) head: Head,
    pub(super) include_usage: bool,
}

impl TextChunks {
    fn chunk(&self, text: &str, finish: Option<FinishReason>) -> String {
        let choice = TextChoice { text: text.to_string(), index: 0, finish_reason: finish };
        // With usage asked for, every chunk carries zero counts until the last one.
        let usage = self.include_usage.then_some(Some(Usage::default()));
        sse(None, &self.head.with("text_completion", vec![choice], usage))
    }
}

impl Encode for TextChunks {
    fn encode(&mut self, event: Option<AnswerEvent>) -> Vec<String> {
        match event {
            Some(AnswerEvent::Delta(d)) if !d.content.is_empty() => vec![self.chunk(&d.content, None)],
            Some(AnswerEvent::Delta(_)) | None => Vec::new(),
            Some(AnswerEvent::Done(f)) => {
                let mut out = vec![self.chunk("", Some(FinishReason::of(&f, false)))];
                if self.include_usage {
                    let usage = self.head.with::<TextChoice>("text_completion", vec![], Some(Some(Usage::of(&f))));
                    out.push(sse(None, &usage));
                }
                out.push(DONE.to_string());
                out
            }
            Some(AnswerEvent::Error(e)) => vec![sse(None, &e.body(Protocol::OpenAi))],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::{answer_with_a_call, done, encode_all, text, thinking};
    use crate::ApiError;
    use corral_types::runner::DoneReason;

    fn head(prefix: &str) -> Head {
        Head { id: format!("{prefix}-1"), created: 1_700_000_000, model: "tiny".into() }
    }

    /// Issue 27: a change of OpenAI's stream format shows up as a snapshot diff.
    #[test]
    fn chat_chunks() {
        insta::assert_snapshot!(encode_all(ChatChunks::new(head("chatcmpl"), true), answer_with_a_call()));
    }

    #[test]
    fn chat_chunks_without_usage_and_an_error() {
        let events = vec![text("Hi"), done(DoneReason::Length)];
        insta::assert_snapshot!(encode_all(ChatChunks::new(head("chatcmpl"), false), events));
        let failed = vec![text("Hi"), AnswerEvent::Error(ApiError::server("model runner has unexpectedly stopped"))];
        insta::assert_snapshot!("chat_error", encode_all(ChatChunks::new(head("chatcmpl"), false), failed));
    }

    #[test]
    fn text_chunks() {
        let events = vec![text("Once"), thinking("ignored"), text(" upon"), done(DoneReason::Length)];
        insta::assert_snapshot!(encode_all(TextChunks { head: head("cmpl"), include_usage: true }, events));
    }
}
