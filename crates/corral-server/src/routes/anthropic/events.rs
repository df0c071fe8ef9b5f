//! Anthropic's streamed message: `message_start` and `ping`, then content blocks (thinking, text,
//! tool use) each opened, filled by deltas and closed, then `message_delta` with the stop reason
//! and usage and `message_stop`; a failure after the stream started is an `error` event.

use serde_json::Map;

use super::stop_reason;
use super::wire::{self, Block, BlockDelta, ErrorBody, MessageDelta, StreamEvent, Usage};
use crate::infer::answer::{AnswerEvent, Delta};
use crate::stream::{sse, Encode};

/// Which content block is open while streaming.
#[derive(PartialEq, Clone, Copy)]
enum Open {
    Thinking,
    Text,
}

fn event(e: StreamEvent) -> String {
    sse(Some(e.name()), &e)
}

/// `/v1/messages` with `"stream": true`.
pub(super) struct MessageEvents {
    id: String,
    model: String,
    /// The input tokens `message_start` announces, before the prompt is tokenized.
    estimate: usize,
    started: bool,
    open: Option<Open>,
    /// The index of the block being written (or the next one).
    index: usize,
    any_calls: bool,
    out: Vec<String>,
}

impl MessageEvents {
    pub(super) fn new(id: String, model: &str, estimate: usize) -> Self {
        MessageEvents {
            id,
            model: model.to_string(),
            estimate,
            started: false,
            open: None,
            index: 0,
            any_calls: false,
            out: Vec::new(),
        }
    }

    fn close(&mut self) {
        if self.open.take().is_some() {
            self.out.push(event(StreamEvent::ContentBlockStop { index: self.index }));
            self.index += 1;
        }
    }

    /// Text of `kind`, in the open block of that kind or a new one.
    fn text(&mut self, kind: Open, text: String) {
        if self.open != Some(kind) {
            self.close();
            let content_block = match kind {
                Open::Thinking => Block::Thinking { thinking: String::new(), signature: String::new() },
                Open::Text => Block::Text { text: String::new() },
            };
            self.out.push(event(StreamEvent::ContentBlockStart { index: self.index, content_block }));
            self.open = Some(kind);
        }
        let delta = match kind {
            Open::Thinking => BlockDelta::Thinking { thinking: text },
            Open::Text => BlockDelta::Text { text },
        };
        self.out.push(event(StreamEvent::ContentBlockDelta { index: self.index, delta }));
    }
}

impl Encode for MessageEvents {
    fn encode(&mut self, next: Option<AnswerEvent>) -> Vec<String> {
        if !self.started {
            self.started = true;
            let message = wire::Message {
                id: self.id.clone(),
                kind: "message",
                role: "assistant",
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage { input_tokens: self.estimate as u64, output_tokens: 0, cache_read_input_tokens: None },
            };
            self.out.push(event(StreamEvent::MessageStart { message }));
            self.out.push(event(StreamEvent::Ping));
        }
        match next {
            Some(AnswerEvent::Delta(Delta { content, thinking, calls, .. })) => {
                if !thinking.is_empty() {
                    self.text(Open::Thinking, thinking);
                }
                if !content.is_empty() {
                    self.text(Open::Text, content);
                }
                for c in &calls {
                    self.any_calls = true;
                    self.close();
                    let index = self.index;
                    // The input arrives as JSON deltas; the block starts empty.
                    let content_block = Block::tool_use(c, Map::new());
                    self.out.push(event(StreamEvent::ContentBlockStart { index, content_block }));
                    let delta = BlockDelta::InputJson { partial_json: c.arguments_json() };
                    self.out.push(event(StreamEvent::ContentBlockDelta { index, delta }));
                    self.out.push(event(StreamEvent::ContentBlockStop { index }));
                    self.index += 1;
                }
            }
            Some(AnswerEvent::Done(f)) => {
                self.close();
                let delta = MessageDelta { stop_reason: stop_reason(&f, self.any_calls), stop_sequence: None };
                let usage = Usage {
                    input_tokens: f.usage.prompt_tokens.into(),
                    output_tokens: f.usage.generated_tokens.into(),
                    cache_read_input_tokens: Some(f.usage.cached_tokens.into()),
                };
                self.out.push(event(StreamEvent::MessageDelta { delta, usage }));
                self.out.push(event(StreamEvent::MessageStop));
            }
            Some(AnswerEvent::Error(e)) => {
                let error = ErrorBody { kind: e.anthropic_type(), message: e.message };
                self.out.push(event(StreamEvent::Error { error }));
            }
            None => {}
        }
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::{call, done, encode_all, text, thinking};
    use crate::ApiError;
    use corral_types::runner::DoneReason;
    use serde_json::json;

    fn events() -> MessageEvents {
        MessageEvents::new("msg_1".into(), "tiny", 12)
    }

    /// Issue 27: a change of Anthropic's event sequence shows up as a snapshot diff.
    #[test]
    fn message_events() {
        let answer = vec![
            thinking("Hmm."),
            thinking(" Yes."),
            text("Hello"),
            call(0, "get_weather", json!({"city": "Paris"})),
            call(1, "get_time", json!({})),
            done(DoneReason::Stop),
        ];
        insta::assert_snapshot!(encode_all(events(), answer));
    }

    #[test]
    fn message_events_ending_early() {
        insta::assert_snapshot!(encode_all(events(), vec![text("Hi"), done(DoneReason::Length)]));
        let failed = vec![text("Hi"), AnswerEvent::Error(ApiError::server("model runner has unexpectedly stopped"))];
        insta::assert_snapshot!("message_error", encode_all(events(), failed));
    }
}
