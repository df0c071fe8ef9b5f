//! The Responses API's streamed answer: `response.created` and `response.in_progress`, then
//! output items (a message whose text arrives in deltas, function calls with their arguments)
//! each added, filled and done, then `response.completed` (or `response.incomplete`) with the
//! whole response; a failure after the stream started is `response.failed`. Every event carries
//! its sequence number.

use super::wire::{self, Body, ErrorObject, Item, Part};
use super::{hex_id, status, Shell};
use crate::infer::answer::{AnswerEvent, Delta};
use crate::stream::{sse, Encode};
use corral_types::runner::DoneReason;

/// The open message item while streaming text.
struct OpenText {
    index: usize,
    id: String,
    text: String,
}

/// `/v1/responses` with `"stream": true`.
pub(super) struct ResponseEvents {
    shell: Shell,
    seq: u64,
    started: bool,
    /// The output items so far (the reasoning item is put first at the end).
    output: Vec<Item>,
    text: Option<OpenText>,
    thinking: String,
    out: Vec<String>,
}

impl ResponseEvents {
    pub(super) fn new(shell: Shell) -> Self {
        ResponseEvents {
            shell,
            seq: 0,
            started: false,
            output: Vec::new(),
            text: None,
            thinking: String::new(),
            out: Vec::new(),
        }
    }

    fn emit(&mut self, kind: &str, body: Body) {
        self.out.push(sse(Some(kind), &wire::ResponseEvent { body, kind, sequence_number: self.seq }));
        self.seq += 1;
    }

    fn close_text(&mut self) {
        let Some(t) = self.text.take() else { return };
        let (i, id) = (t.index, t.id.clone());
        let done = Body::TextDone { item_id: id.clone(), output_index: i, content_index: 0, text: t.text.clone() };
        self.emit("response.output_text.done", done);
        let part = Part::text(&t.text);
        self.emit(
            "response.content_part.done",
            Body::Part { item_id: id.clone(), output_index: i, content_index: 0, part },
        );
        let item = Item::message(id, Some(&t.text), "completed");
        self.emit("response.output_item.done", Body::Item { output_index: i, item: item.clone() });
        self.output[i] = item;
    }

    fn content(&mut self, content: String) {
        if self.text.is_none() {
            let (index, id) = (self.output.len(), hex_id("msg"));
            let empty = Item::message(id.clone(), None, "in_progress");
            self.emit("response.output_item.added", Body::Item { output_index: index, item: empty });
            let part = Part::text("");
            self.emit(
                "response.content_part.added",
                Body::Part { item_id: id.clone(), output_index: index, content_index: 0, part },
            );
            self.output.push(Item::message(id.clone(), Some(""), "in_progress"));
            self.text = Some(OpenText { index, id, text: String::new() });
        }
        let t = self.text.as_mut().expect("opened above");
        t.text.push_str(&content);
        let delta = Body::TextDelta { item_id: t.id.clone(), output_index: t.index, content_index: 0, delta: content };
        self.emit("response.output_text.delta", delta);
    }
}

impl Encode for ResponseEvents {
    fn encode(&mut self, event: Option<AnswerEvent>) -> Vec<String> {
        if !self.started {
            self.started = true;
            let r = self.shell.response("in_progress", Vec::new(), None);
            self.emit("response.created", Body::Response { response: Box::new(r.clone()) });
            self.emit("response.in_progress", Body::Response { response: Box::new(r) });
        }
        match event {
            Some(AnswerEvent::Delta(Delta { content, thinking, calls, .. })) => {
                self.thinking.push_str(&thinking);
                if !content.is_empty() {
                    self.content(content);
                }
                for c in &calls {
                    self.close_text();
                    let index = self.output.len();
                    let item = Item::call(c, String::new(), "in_progress");
                    let Item::FunctionCall { id, .. } = &item else { unreachable!("a call item") };
                    let id = id.clone();
                    self.emit("response.output_item.added", Body::Item { output_index: index, item });
                    let args = c.arguments_json();
                    let delta = Body::ArgumentsDelta { item_id: id.clone(), output_index: index, delta: args.clone() };
                    self.emit("response.function_call_arguments.delta", delta);
                    let done = Body::ArgumentsDone { item_id: id, output_index: index, arguments: args.clone() };
                    self.emit("response.function_call_arguments.done", done);
                    let item = Item::call(c, args, "completed");
                    self.emit("response.output_item.done", Body::Item { output_index: index, item: item.clone() });
                    self.output.push(item);
                }
            }
            Some(AnswerEvent::Done(f)) => {
                self.close_text();
                if !self.thinking.is_empty() {
                    self.output.insert(0, Item::reasoning(hex_id("rs"), &self.thinking));
                }
                let kind = if f.reason == DoneReason::Length { "response.incomplete" } else { "response.completed" };
                let response = Box::new(self.shell.response(status(Some(&f)), self.output.clone(), Some(&f)));
                self.emit(kind, Body::Response { response });
            }
            Some(AnswerEvent::Error(e)) => {
                let mut response = Box::new(self.shell.response("failed", self.output.clone(), None));
                response.error = Some(ErrorObject { code: "server_error", message: e.message });
                self.emit("response.failed", Body::Response { response });
            }
            None => {}
        }
        std::mem::take(&mut self.out)
    }
}
