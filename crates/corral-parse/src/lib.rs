//! From generated text to what an answer is made of: thinking, content and tool calls.
//!
//! The parser is fed the text of each token as it comes and returns what is settled so far,
//! holding back only what could still turn out to be a tag (`<thi…`) or a tool call. Thinking is
//! `<think>…</think>` at the start of the answer (or from the start when the prompt already opened
//! it); tool calls are `<tool_call>{json}</tool_call>` blocks (Qwen 2.5, Hermes), `[TOOL_CALLS]`
//! followed by JSON (Mistral), or an answer that is nothing but a JSON call, which small models
//! emit without the tags their template asks for. A call must name one of the request's tools;
//! anything that does not parse as a call is passed on as content, never dropped.
//!
//! Model families write calls their own ways; [`Family::of_template`] picks one from the chat
//! template, and [`OutputParser::with_family`] adds its tags: Llama 3.x's `<|python_tag|>` before a
//! JSON call (whose arguments are `parameters`), Mistral's newer `[TOOL_CALLS]name[ARGS]{…}`,
//! Qwen3-Coder's `<function=name><parameter=key>value</parameter></function>` inside
//! `<tool_call>`, DeepSeek V3/R1's `<｜tool▁calls▁begin｜>` blocks, Command R's
//! `<|START_ACTION|>[{"tool_name", "parameters"}]<|END_ACTION|>` (with its own thinking tags, and
//! response tags dropped), and Granite's `<|tool_call|>[…]`. gpt-oss writes harmony messages
//! (`<|channel|>analysis<|message|>…<|end|>`): its own reader ([`harmony`]) sends the analysis
//! channel to thinking, the final channel to content, and a commentary message addressed
//! `to=functions.name` as a call.
//!
//! Its own crate (the server's answer streaming uses it) so that it can be fuzzed alone: how the
//! text is cut into tokens never changes what comes out (`fuzz/fuzz_targets/output_parser.rs`).

pub mod harmony;

mod calls;
mod family;
mod scan;
#[cfg(test)]
mod tests;

use serde_json::Value;

use calls::call_expression_end;
use family::{CallTag, CALL_TAGS};
pub use family::{Family, THINK_CLOSE, THINK_OPEN};
use scan::{could_be_json, json_end, partial_suffix};

/// One tool call, complete: the type every protocol's encoder takes it in (inside a
/// `corral_types::api::ToolCall`, once the answer gives it an id and an index).
pub use corral_types::api::FunctionCall;

/// What a piece of output turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    Thinking(String),
    Call(FunctionCall),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Looking for `<think>` at the start (whitespace eaten).
    ThinkStart,
    Thinking,
    /// After `</think>`: eating whitespace.
    AfterThinking,
    Content,
    /// Inside a tool-call tag: buffering until its end.
    Call {
        tag: usize,
    },
    /// The answer so far is a JSON value that may be a call.
    Json,
    /// The answer was a bare JSON call: it is complete, and whatever follows is dropped.
    Done,
}

pub struct OutputParser {
    state: State,
    /// Set for gpt-oss: its messages are read by [`harmony::Reader`] instead.
    harmony: Option<harmony::Reader>,
    /// Thinking is wanted (gpt-oss always thinks; unwanted, its analysis is dropped).
    wants_thinking: bool,
    buf: String,
    /// Tags that start a call.
    tags: Vec<CallTag>,
    /// Tags around thinking.
    think: (&'static str, &'static str),
    /// Markers dropped from content.
    dropped: &'static [&'static str],
    /// Tool names of the request; no tools means no tool-call parsing.
    tools: Vec<String>,
    /// Nothing but whitespace has been given out as content yet.
    at_start: bool,
    /// Some thinking has been given out (later whitespace in it is kept).
    thought: bool,
    /// The answer's start was tried as a bare JSON call and is not one.
    not_json: bool,
}

impl OutputParser {
    /// `think`: parse thinking; `in_thinking`: the prompt ended with the opening tag, so the
    /// answer starts inside it. `tools`: the names of the request's tools.
    pub fn new(think: bool, in_thinking: bool, tools: Vec<String>) -> Self {
        let state = match (think, in_thinking) {
            (true, true) => State::Thinking,
            (true, false) => State::ThinkStart,
            _ => State::Content,
        };
        OutputParser {
            state,
            harmony: None,
            wants_thinking: think,
            buf: String::new(),
            tags: CALL_TAGS.to_vec(),
            think: (THINK_OPEN, THINK_CLOSE),
            dropped: &[],
            tools,
            at_start: true,
            thought: false,
            not_json: false,
        }
    }

    /// Reads `family`'s markers too.
    pub fn with_family(mut self, family: Family) -> Self {
        if family == Family::Harmony {
            self.harmony = Some(harmony::Reader::default());
        }
        self.tags.extend_from_slice(family.call_tags());
        self.think = family.think_tags();
        self.dropped = family.dropped();
        self
    }

    /// Whether the answer is complete (a bare JSON call): the generation may be stopped.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds generated text; returns what is settled.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        if self.harmony.is_some() {
            self.harmony_step(&mut out, false);
            return merge(out);
        }
        while self.step(&mut out, false) {}
        merge(out)
    }

    /// The generation ended: everything left is settled.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.harmony.is_some() {
            self.harmony_step(&mut out, true);
            return merge(out);
        }
        while self.step(&mut out, true) {}
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            match self.state {
                State::Thinking => out.push(Piece::Thinking(rest)),
                _ => out.push(Piece::Content(rest)),
            }
        }
        merge(out)
    }

    fn content(&mut self, out: &mut Vec<Piece>, mut text: String) {
        // Markers that are not content leave as it goes out: content is never cut inside one
        // (what may be the start of one is held back), so the same markers go however the
        // tokens were cut (found by the fuzzer when they were dropped as they came in).
        for marker in self.dropped {
            text = text.replace(marker, "");
        }
        if text.is_empty() {
            return;
        }
        if !text.trim().is_empty() {
            self.at_start = false;
        }
        out.push(Piece::Content(text));
    }

    /// One transition; false when it needs more text (or, at the end, has nothing left to do).
    fn step(&mut self, out: &mut Vec<Piece>, end: bool) -> bool {
        match self.state {
            State::ThinkStart => {
                let trimmed = self.buf.trim_start();
                if trimmed.is_empty() {
                    // Kept until the tag is known to be absent (then it is the content's), so a
                    // space sent as a token of its own is not lost (found by the fuzzer).
                    if end {
                        self.buf.clear();
                        self.state = State::Content;
                    }
                    return false;
                }
                if let Some(rest) = trimmed.strip_prefix(self.think.0) {
                    self.buf = rest.to_string();
                    self.state = State::Thinking;
                } else if self.think.0.starts_with(trimmed) && !end {
                    return false;
                } else {
                    self.state = State::Content;
                }
                true
            }
            State::Thinking => {
                let close = self.think.1;
                if let Some(i) = self.buf.find(close) {
                    let thinking = self.buf[..i].trim_end().to_string();
                    self.buf.drain(..i + close.len());
                    let thinking = if self.thought { thinking } else { thinking.trim_start().to_string() };
                    if !thinking.is_empty() {
                        out.push(Piece::Thinking(thinking));
                    }
                    self.state = State::AfterThinking;
                    return true;
                }
                let mut keep = if end { 0 } else { partial_suffix(&self.buf, &[close]) };
                if !end {
                    // Whitespace just before the closing tag is dropped, so hold it back.
                    let before = &self.buf[..self.buf.len() - keep];
                    keep += before.len() - before.trim_end().len();
                }
                let ready = self.buf.len() - keep;
                // Leading whitespace of the thinking is dropped, as Ollama does.
                let text: String = self.buf.drain(..ready).collect();
                let text = if self.thought { text } else { text.trim_start().to_string() };
                if !text.is_empty() {
                    self.thought = true;
                    out.push(Piece::Thinking(text));
                }
                false
            }
            State::AfterThinking => {
                let trimmed = self.buf.trim_start().len();
                self.buf.drain(..self.buf.len() - trimmed);
                if self.buf.is_empty() && !end {
                    return false;
                }
                self.state = State::Content;
                true
            }
            State::Content => self.step_content(out, end),
            State::Done => {
                self.buf.clear();
                false
            }
            State::Call { tag } => {
                let (open, close) = self.tags[tag];
                let body_end = match close {
                    Some(close) => self.buf.find(close).map(|i| (i, i + close.len())),
                    None => call_expression_end(&self.buf).map(|i| (i, i)),
                };
                match body_end {
                    Some((i, j)) => {
                        let body = self.buf[..i].to_string();
                        self.buf.drain(..j);
                        match calls::parse(&body, &self.tools) {
                            Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                            None => self.content(out, format!("{open}{body}{}", close.unwrap_or_default())),
                        }
                        self.state = State::Content;
                        true
                    }
                    None if end => {
                        let body = std::mem::take(&mut self.buf);
                        match calls::parse(&body, &self.tools) {
                            Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                            None => self.content(out, format!("{open}{body}")),
                        }
                        self.state = State::Content;
                        false
                    }
                    None => false,
                }
            }
            State::Json => {
                let lead = self.buf.len() - self.buf.trim_start().len();
                match json_end(&self.buf[lead..]).map(|i| i + lead) {
                    Some(i) => {
                        let body = self.buf[..i].to_string();
                        match calls::parse(&body, &self.tools) {
                            Some(calls) => {
                                self.buf.clear();
                                out.extend(calls.into_iter().map(Piece::Call));
                                self.state = State::Done;
                                false
                            }
                            None => self.not_json(),
                        }
                    }
                    None if end || !could_be_json(&self.buf[lead..]) => self.not_json(),
                    None => false,
                }
            }
        }
    }

    fn step_content(&mut self, out: &mut Vec<Piece>, end: bool) -> bool {
        if self.tools.is_empty() {
            let keep = if end { 0 } else { partial_suffix(&self.buf, self.dropped) };
            let ready: String = self.buf.drain(..self.buf.len() - keep).collect();
            self.content(out, ready);
            return false;
        }
        let found =
            self.tags.iter().enumerate().filter_map(|(i, (open, _))| self.buf.find(open).map(|at| (at, i))).min();
        let trimmed = self.buf.trim_start();
        let lead = self.buf.len() - trimmed.len();
        // An answer that starts as JSON is tried as a bare call before any tag further on is
        // looked for, as it is when the tag has not arrived yet (found by the fuzzer).
        if found.is_none_or(|(at, _)| at > lead) && self.at_start {
            if !end && self.tags.iter().any(|(open, _)| !trimmed.is_empty() && open.starts_with(trimmed)) {
                // `[TOOL` may be a tag or JSON: wait.
                return false;
            }
            if !self.not_json && (trimmed.starts_with('{') || trimmed.starts_with('[')) {
                self.state = State::Json;
                return true;
            }
        }
        if let Some((at, tag)) = found {
            let before: String = self.buf.drain(..at).collect();
            self.content(out, before);
            self.buf.drain(..self.tags[tag].0.len());
            self.state = State::Call { tag };
            return true;
        }
        let trimmed = self.buf.trim_start();
        let opens: Vec<&str> = self.tags.iter().map(|(o, _)| *o).chain(self.dropped.iter().copied()).collect();
        let keep = if end { 0 } else { partial_suffix(&self.buf, &opens) };
        // At the start, whitespace is held too: a JSON call may follow it.
        let keep = if self.at_start && trimmed.is_empty() && !end { self.buf.len() } else { keep };
        let ready: String = self.buf.drain(..self.buf.len() - keep).collect();
        self.content(out, ready);
        false
    }

    /// The answer's start is no bare JSON call: it is content, read as such from its first byte,
    /// so a tag inside it is still found wherever the tokens were cut (found by the fuzzer: the
    /// whole buffer used to go out as content, taking the start of a tag with it).
    fn not_json(&mut self) -> bool {
        self.not_json = true;
        self.state = State::Content;
        true
    }
}

impl OutputParser {
    /// Reads harmony messages out of the buffer: pieces for the settled ones and the settled part
    /// of the current one.
    fn harmony_step(&mut self, out: &mut Vec<Piece>, end: bool) {
        let mut reader = self.harmony.take().expect("harmony mode");
        for (channel, text) in reader.read(&mut self.buf, end) {
            match channel {
                harmony::Channel::Analysis if self.wants_thinking => out.push(Piece::Thinking(text)),
                harmony::Channel::Analysis => {}
                harmony::Channel::Final => self.content(out, text),
                harmony::Channel::Call(name) => {
                    let args = serde_json::from_str::<Value>(text.trim()).unwrap_or(Value::Null);
                    match calls::from_value(serde_json::json!({"name": name, "arguments": args}), &self.tools) {
                        Some(call) => out.push(Piece::Call(call)),
                        // Not a call this request can take: the model's words, as they are.
                        None => self.content(out, text),
                    }
                }
            }
        }
        self.harmony = Some(reader);
    }
}

/// Joins neighbouring pieces of the same kind (as a reader of the answer sees them).
pub fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Content(a)), Piece::Content(b)) => a.push_str(&b),
            (Some(Piece::Thinking(a)), Piece::Thinking(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}
