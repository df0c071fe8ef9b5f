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

use serde_json::{Map, Value};

/// One tool call, complete.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// What a piece of output turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    Thinking(String),
    Call(ToolCall),
}

/// Tags around thinking.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";
/// A tag that starts a tool call, and how the call ends (`None`: the call expression that
/// follows ends it: JSON, or `name[ARGS]{…}`).
type CallTag = (&'static str, Option<&'static str>);
/// Tags every parser knows: Qwen 2.5 / Hermes, and Mistral.
const CALL_TAGS: [CallTag; 2] = [("<tool_call>", Some("</tool_call>")), ("[TOOL_CALLS]", None)];

/// DeepSeek's markers (fullwidth bars, and `▁` for spaces).
const DEEPSEEK_CALLS_BEGIN: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
const DEEPSEEK_CALLS_END: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
const DEEPSEEK_CALL_BEGIN: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
const DEEPSEEK_CALL_END: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
const DEEPSEEK_SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";

/// How a model family writes tool calls and thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `<tool_call>{…}</tool_call>`, `[TOOL_CALLS]{…}`, bare JSON; `<think>`.
    Generic,
    Llama3,
    Mistral,
    Qwen3Coder,
    DeepSeek,
    CommandR,
    Granite,
    /// gpt-oss: harmony channels.
    Harmony,
}

impl Family {
    /// The family whose markers the chat template writes (Generic when none).
    pub fn of_template(template: &str) -> Family {
        match () {
            _ if template.contains("<|channel|>") && template.contains("<|message|>") => Family::Harmony,
            _ if template.contains("<|START_ACTION|>") => Family::CommandR,
            _ if template.contains(DEEPSEEK_CALLS_BEGIN) => Family::DeepSeek,
            _ if template.contains("<function=") && template.contains("<parameter=") => Family::Qwen3Coder,
            _ if template.contains("[TOOL_CALLS]") && template.contains("[ARGS]") => Family::Mistral,
            _ if template.contains("<|tool_call|>") => Family::Granite,
            _ if template.contains("<|python_tag|>") => Family::Llama3,
            _ => Family::Generic,
        }
    }

    /// Call tags beyond [`CALL_TAGS`].
    fn call_tags(self) -> &'static [CallTag] {
        match self {
            Family::Llama3 => &[("<|python_tag|>", None)],
            Family::DeepSeek => &[(DEEPSEEK_CALLS_BEGIN, Some(DEEPSEEK_CALLS_END))],
            Family::CommandR => &[("<|START_ACTION|>", Some("<|END_ACTION|>"))],
            Family::Granite => &[("<|tool_call|>", None)],
            Family::Generic | Family::Mistral | Family::Qwen3Coder | Family::Harmony => &[],
        }
    }

    /// The tags around its thinking.
    pub fn think_tags(self) -> (&'static str, &'static str) {
        match self {
            Family::CommandR => ("<|START_THINKING|>", "<|END_THINKING|>"),
            _ => (THINK_OPEN, THINK_CLOSE),
        }
    }

    /// What opens thinking in the output, and what ends it when a budget cuts it short: the
    /// thinking tags, or for gpt-oss the end of its analysis message and the start of its answer.
    pub fn budget_tags(self) -> (&'static str, &'static str) {
        match self {
            Family::Harmony => {
                ("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>")
            }
            other => other.think_tags(),
        }
    }

    /// Markers around content that are not part of it.
    fn dropped(self) -> &'static [&'static str] {
        match self {
            Family::CommandR => &["<|START_RESPONSE|>", "<|END_RESPONSE|>"],
            _ => &[],
        }
    }
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
                        match self.calls(&body) {
                            Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                            None => self.content(out, format!("{open}{body}{}", close.unwrap_or_default())),
                        }
                        self.state = State::Content;
                        true
                    }
                    None if end => {
                        let body = std::mem::take(&mut self.buf);
                        match self.calls(&body) {
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
                        match self.calls(&body) {
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

    /// The calls in `text`: one call object, an array of them, or a sequence of objects. None if
    /// it is anything else or names a tool the request does not have.
    fn calls(&self, text: &str) -> Option<Vec<ToolCall>> {
        let trimmed = text.trim();
        if trimmed.starts_with("<function=") {
            return self.xml_calls(trimmed);
        }
        if trimmed.contains(DEEPSEEK_CALL_BEGIN) {
            return self.deepseek_calls(trimmed);
        }
        if let Some((name, args)) = trimmed.split_once("[ARGS]") {
            return Some(vec![self.call(
                serde_json::json!({"name": name.trim(), "arguments": serde_json::from_str::<Value>(args).ok()?}),
            )?]);
        }
        let mut values = Vec::new();
        for v in serde_json::Deserializer::from_str(text.trim()).into_iter::<Value>() {
            match v.ok()? {
                Value::Array(items) => values.extend(items),
                other => values.push(other),
            }
        }
        if values.is_empty() {
            return None;
        }
        values.into_iter().map(|v| self.call(v)).collect()
    }

    fn call(&self, v: Value) -> Option<ToolCall> {
        let mut obj = match v {
            Value::Object(o) => o,
            _ => return None,
        };
        if let Some(Value::Object(f)) = obj.remove("function") {
            obj = f;
        }
        // Command R names it `tool_name`.
        let name = obj.get("name").or_else(|| obj.get("tool_name"))?.as_str()?.to_string();
        if !self.tools.contains(&name) {
            return None;
        }
        let arguments = match obj.remove("arguments").or_else(|| obj.remove("parameters")) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(a)) => a,
            Some(Value::String(s)) => match serde_json::from_str(&s).ok()? {
                Value::Object(a) => a,
                _ => return None,
            },
            Some(_) => return None,
        };
        Some(ToolCall { name, arguments })
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
                    match self.call(serde_json::json!({"name": name, "arguments": args})) {
                        Some(call) => out.push(Piece::Call(call)),
                        // Not a call this request can take: the model's words, as they are.
                        None => self.content(out, text),
                    }
                }
            }
        }
        self.harmony = Some(reader);
    }

    /// Qwen3-Coder's calls: `<function=name>` then `<parameter=key>value</parameter>`s, then
    /// `</function>`. A value that reads as JSON other than a string (a number, `true`, an
    /// object) is that value; anything else is the text, less the newline around it.
    fn xml_calls(&self, text: &str) -> Option<Vec<ToolCall>> {
        let mut calls = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("<function=") {
            let after = &rest[start + "<function=".len()..];
            let (name, body) = after.split_once('>')?;
            let (body, next) = body.split_once("</function>")?;
            let mut arguments = Map::new();
            let mut params = body;
            while let Some(p) = params.find("<parameter=") {
                let after = &params[p + "<parameter=".len()..];
                let (key, value) = after.split_once('>')?;
                let (value, next) = value.split_once("</parameter>")?;
                let value = value.strip_prefix('\n').unwrap_or(value);
                let value = value.strip_suffix('\n').unwrap_or(value);
                let parsed = match serde_json::from_str::<Value>(value) {
                    Ok(v) if !v.is_string() => v,
                    _ => Value::String(value.to_string()),
                };
                arguments.insert(key.trim().to_string(), parsed);
                params = next;
            }
            calls.push(self.call(serde_json::json!({"name": name.trim(), "arguments": arguments}))?);
            rest = next;
        }
        (!calls.is_empty()).then_some(calls)
    }

    /// DeepSeek's calls: `<｜tool▁call▁begin｜>` [`function`] `<｜tool▁sep｜>` name, then the
    /// arguments as JSON (in a ```json fence in V3 and R1, bare in V3.1), `<｜tool▁call▁end｜>`.
    /// V3.1 puts the name first: `name<｜tool▁sep｜>{…}`.
    fn deepseek_calls(&self, text: &str) -> Option<Vec<ToolCall>> {
        let mut calls = Vec::new();
        for block in text.split(DEEPSEEK_CALL_BEGIN).skip(1) {
            let block = block.split(DEEPSEEK_CALL_END).next()?;
            let (head, tail) = block.split_once(DEEPSEEK_SEP)?;
            let (name, json) = match head.trim() {
                // V3 / R1: `function<｜tool▁sep｜>name\n```json\n{…}\n````.
                "function" | "" => {
                    let (name, json) = tail.split_once('\n').unwrap_or((tail, ""));
                    (name.trim(), json)
                }
                // V3.1: `name<｜tool▁sep｜>{…}`.
                name => (name, tail),
            };
            let json =
                json.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
            let arguments: Value =
                if json.is_empty() { Value::Object(Map::new()) } else { serde_json::from_str(json).ok()? };
            calls.push(self.call(serde_json::json!({"name": name, "arguments": arguments}))?);
        }
        (!calls.is_empty()).then_some(calls)
    }
}

/// Where a call expression after an unclosed tag ends: a JSON value, or Mistral's
/// `name[ARGS]{…}`. `None` while it may still be coming.
fn call_expression_end(text: &str) -> Option<usize> {
    let lead = text.len() - text.trim_start().len();
    let trimmed = &text[lead..];
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return json_end(text);
    }
    let args = trimmed.find("[ARGS]")?;
    let name = &trimmed[..args];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return None;
    }
    let from = lead + args + "[ARGS]".len();
    json_end(&text[from..]).map(|i| from + i)
}

/// The length of the longest suffix of `text` that is a proper prefix of one of `tags`.
fn partial_suffix(text: &str, tags: &[&str]) -> usize {
    let mut best = 0;
    for tag in tags {
        for n in (1..tag.len()).rev() {
            if n <= text.len() && text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]) {
                best = best.max(n);
                break;
            }
        }
    }
    best
}

/// Where the first JSON value in `text` (after whitespace) ends, if it is complete.
fn json_end(text: &str) -> Option<usize> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    match it.next()? {
        // A number that reaches the end of the text may go on in the next token ("1", then "2"):
        // not complete yet (found by the fuzzer: cut there, a call read differently).
        Ok(_) if it.byte_offset() == text.len() && text.ends_with(|c: char| c.is_ascii_digit()) => None,
        Ok(_) => Some(it.byte_offset()),
        Err(_) => None,
    }
}

/// Whether `text` is a prefix of some JSON value (so far no syntax error, only an early end).
fn could_be_json(text: &str) -> bool {
    match serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>().next() {
        None => true,
        Some(Ok(_)) => true,
        Some(Err(e)) => e.is_eof(),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 13, found by fuzz/fuzz_targets/output_parser.rs: with thinking on, a leading space
    // that came as its own token was dropped, but kept when it came with the text after it.
    #[test]
    fn issue_13_a_tag_after_a_false_json_start_is_found_however_tokens_are_cut() {
        let run = |chunks: &[&str]| {
            let mut p = OutputParser::new(false, false, vec!["search".into()]);
            let mut out: Vec<Piece> = chunks.iter().flat_map(|c| p.push(c)).collect();
            out.extend(p.finish());
            merge(out)
        };
        let text = r#"[T [TOOL_CALLS][{"name": "search", "arguments": {"q": "x"}}] done"#;
        let whole = run(&[text]);
        assert!(
            matches!(&whole[..], [Piece::Content(a), Piece::Call(c), Piece::Content(b)]
            if a == "[T " && c.name == "search" && b == " done"),
            "{whole:?}"
        );
        let pairs: Vec<&str> = text.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect();
        assert_eq!(run(&pairs), whole);
    }

    #[test]
    fn issue_13_leading_whitespace_does_not_depend_on_how_tokens_are_cut() {
        let run = |chunks: &[&str]| {
            let mut p = OutputParser::new(true, false, vec![]);
            let mut out: Vec<Piece> = chunks.iter().flat_map(|c| p.push(c)).collect();
            out.extend(p.finish());
            merge(out)
        };
        let whole = run(&[" Hi there"]);
        assert_eq!(whole, vec![Piece::Content(" Hi there".into())]);
        assert_eq!(run(&[" ", "Hi", " there"]), whole);
        assert_eq!(run(&[" ", "<think>", "hm</think>", "Hi"]), run(&[" <think>hm</think>Hi"]));
    }
    use serde_json::json;

    /// Feeds `chunks` and returns all pieces, merged.
    fn run(mut p: OutputParser, chunks: &[&str]) -> Vec<Piece> {
        let mut all = Vec::new();
        for c in chunks {
            all.extend(p.push(c));
        }
        all.extend(p.finish());
        merge(all)
    }

    fn chars(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    fn call(name: &str, args: Value) -> Piece {
        Piece::Call(ToolCall { name: name.into(), arguments: args.as_object().unwrap().clone() })
    }

    fn weather() -> Vec<String> {
        vec!["get_weather".to_string()]
    }

    #[test]
    fn thinking_then_content_in_any_chunking() {
        let text = "  <think>\nLet me see.\n</think>\n\nParis.";
        let want = vec![Piece::Thinking("Let me see.".into()), Piece::Content("Paris.".into())];
        assert_eq!(run(OutputParser::new(true, false, vec![]), &[text]), want);
        let one_by_one = chars(text);
        let refs: Vec<&str> = one_by_one.iter().map(String::as_str).collect();
        assert_eq!(run(OutputParser::new(true, false, vec![]), &refs), want);
        // The prompt opened the thinking already.
        assert_eq!(run(OutputParser::new(true, true, vec![]), &["Let me see.</thi", "nk>Paris."]), want);
        // Without the tag there is no thinking; with thinking off, tags are content.
        assert_eq!(
            run(OutputParser::new(true, false, vec![]), &["Paris <think>"]),
            vec![Piece::Content("Paris <think>".into())]
        );
        assert_eq!(run(OutputParser::new(false, false, vec![]), &[text]), vec![Piece::Content(text.into())]);
        // An unfinished thought is still thinking.
        assert_eq!(run(OutputParser::new(true, false, vec![]), &["<think>hmm"]), vec![Piece::Thinking("hmm".into())]);
    }

    #[test]
    fn tagged_tool_calls_stream_around_content() {
        let text =
            "Checking.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let want = vec![Piece::Content("Checking.".into()), call("get_weather", json!({"city": "Paris"}))];
        assert_eq!(run(OutputParser::new(false, false, weather()), &[text]), want);
        let one_by_one = chars(text);
        let refs: Vec<&str> = one_by_one.iter().map(String::as_str).collect();
        assert_eq!(run(OutputParser::new(false, false, weather()), &refs), want);
        // Two calls, arguments as a JSON string, and the Mistral form.
        let two = "<tool_call>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"A\\\"}\"}</tool_call><tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"B\"}}</tool_call>";
        assert_eq!(
            run(OutputParser::new(false, false, weather()), &[two]),
            vec![call("get_weather", json!({"city": "A"})), call("get_weather", json!({"city": "B"}))]
        );
        assert_eq!(
            run(
                OutputParser::new(false, false, weather()),
                &["[TOOL_CALLS][{\"name\":\"get_weather\",\"arguments\":{}}]"]
            ),
            vec![call("get_weather", json!({}))]
        );
    }

    #[test]
    fn bare_json_calls_as_small_models_emit_them() {
        let text = " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
        let want = vec![call("get_weather", json!({"city": "Paris"}))];
        let one_by_one = chars(text);
        let refs: Vec<&str> = one_by_one.iter().map(String::as_str).collect();
        let mut p = OutputParser::new(false, false, weather());
        let mut streamed = Vec::new();
        for c in &refs {
            streamed.extend(p.push(c));
        }
        assert_eq!(streamed, want, "the call is complete before the generation ends");
        assert!(p.is_done(), "nothing after the call matters");
        assert_eq!(p.push(" {\"name\": \"get_weather\", \"arguments\": {}}"), vec![], "small models repeat calls");
        assert_eq!(p.finish(), vec![]);
    }

    #[test]
    fn what_is_not_a_call_stays_content() {
        let tools = weather();
        for text in [
            "{\"answer\": 42}",
            "{\"name\": \"other_tool\", \"arguments\": {}}",
            "[1, 2, 3] are numbers",
            "{ not json at all",
            "<tool_call>oops</tool_call> sorry",
            "Use a < b, and [x] too.",
        ] {
            assert_eq!(
                run(OutputParser::new(false, false, tools.clone()), &[text]),
                vec![Piece::Content(text.into())],
                "{text}"
            );
        }
        // Without tools nothing is parsed.
        let call_text = "{\"name\": \"get_weather\", \"arguments\": {}}";
        assert_eq!(run(OutputParser::new(false, false, vec![]), &[call_text]), vec![Piece::Content(call_text.into())]);
    }

    /// What `text` parses to for `family` with the weather tool, checked to be the same when the
    /// text comes one character at a time.
    fn family_run(family: Family, think: bool, text: &str) -> Vec<Piece> {
        let parser = || OutputParser::new(think, false, weather()).with_family(family);
        let whole = run(parser(), &[text]);
        let by_char: Vec<String> = chars(text);
        let by_char: Vec<&str> = by_char.iter().map(String::as_str).collect();
        assert_eq!(run(parser(), &by_char), whole, "{family:?}: one character at a time");
        whole
    }

    // Issue 14: each family's own call format, from the markers its template writes.
    #[test]
    fn issue_14_families_are_chosen_from_their_templates() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corral-template/tests/chat-templates/");
        for (file, family) in [
            ("meta-llama-Llama-3.1-8B-Instruct.jinja", Family::Llama3),
            ("Mistral-Small-3.2-24B-Instruct-2506.jinja", Family::Mistral),
            ("Qwen3-Coder.jinja", Family::Qwen3Coder),
            ("deepseek-ai-DeepSeek-V3.1.jinja", Family::DeepSeek),
            ("llama-cpp-deepseek-r1.jinja", Family::DeepSeek),
            ("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", Family::CommandR),
            ("ibm-granite-granite-3.3-2B-Instruct.jinja", Family::Granite),
            ("Qwen-Qwen3-0.6B.jinja", Family::Generic),
        ] {
            let template = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
            assert_eq!(Family::of_template(&template), family, "{file}");
        }
    }

    #[test]
    fn issue_14_each_familys_calls_are_parsed_in_any_chunking() {
        let paris = || call("get_weather", json!({"city": "Paris"}));
        let cases: Vec<(Family, &str, Vec<Piece>)> = vec![
            (
                Family::Llama3,
                r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}"#,
                vec![paris()],
            ),
            (
                Family::Mistral,
                r#"Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}"#,
                vec![Piece::Content("Sure.".into()), paris(), call("get_weather", json!({"city": "Oslo"}))],
            ),
            (
                Family::Qwen3Coder,
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
                vec![call("get_weather", json!({"city": "Paris", "days": 3}))],
            ),
            (
                Family::DeepSeek,
                "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}><\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>function<\u{ff5c}tool\u{2581}sep\u{ff5c}>get_weather\n```json\n{\"city\": \"Paris\"}\n```<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}><\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>",
                vec![paris()],
            ),
            (
                Family::DeepSeek,
                "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}><\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>get_weather<\u{ff5c}tool\u{2581}sep\u{ff5c}>{\"city\": \"Paris\"}<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}><\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>",
                vec![paris()],
            ),
            (
                Family::CommandR,
                r#"<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}]<|END_ACTION|>"#,
                vec![paris()],
            ),
            (
                Family::Granite,
                r#"<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#,
                vec![paris()],
            ),
        ];
        for (family, text, expected) in cases {
            assert_eq!(family_run(family, false, text), expected, "{family:?}: {text}");
        }
    }

    #[test]
    fn issue_14_command_r_thinks_in_its_own_tags_and_its_response_markers_are_dropped() {
        let text =
            "<|START_THINKING|>The user wants weather.<|END_THINKING|><|START_RESPONSE|>It is sunny.<|END_RESPONSE|>";
        assert_eq!(
            family_run(Family::CommandR, true, text),
            vec![Piece::Thinking("The user wants weather.".into()), Piece::Content("It is sunny.".into())]
        );
        // Without tools too.
        let mut p = OutputParser::new(false, false, vec![]).with_family(Family::CommandR);
        let mut out = p.push("<|START_RESPONSE|>Hi<|END_RE");
        out.extend(p.push("SPONSE|>"));
        out.extend(p.finish());
        assert_eq!(merge(out), vec![Piece::Content("Hi".into())]);
    }

    #[test]
    fn issue_14_gpt_oss_harmony_channels() {
        let analysis = "<|channel|>analysis<|message|>Need the weather.<|end|>";
        let to_tool = r#"<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>"#;
        let thinking = || Piece::Thinking("Need the weather.".into());
        let paris = || call("get_weather", json!({"city": "Paris"}));
        assert_eq!(family_run(Family::Harmony, true, &format!("{analysis}{to_tool}")), vec![thinking(), paris()]);
        let answer = "<|start|>assistant<|channel|>final<|message|>It is sunny.<|return|>";
        assert_eq!(
            family_run(Family::Harmony, true, &format!("{analysis}{answer}")),
            vec![thinking(), Piece::Content("It is sunny.".into())]
        );
        // The recipient may come before the channel; the end marker may never come (the engine
        // stops on it without sending it).
        let early =
            r#"<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}"#;
        assert_eq!(family_run(Family::Harmony, true, early), vec![paris()]);
        // Thinking not wanted: the analysis is dropped, never shown as content.
        assert_eq!(
            family_run(Family::Harmony, false, &format!("{analysis}{answer}")),
            vec![Piece::Content("It is sunny.".into())]
        );
        // A model that ignores the format still answers.
        assert_eq!(family_run(Family::Harmony, true, "Just text."), vec![Piece::Content("Just text.".into())]);
    }

    // Issue 14, found by the fuzzer: Command R's response markers were dropped as they came in,
    // so one that arrived inside an unfinished call stayed when the text came in small tokens
    // and went when it came whole.
    #[test]
    fn issue_14_dropped_markers_go_the_same_however_tokens_are_cut() {
        let text = "<|START_RESPONSE|>Hi [TOOL_CALLS]x<|END_RESPONSE|>";
        assert_eq!(family_run(Family::CommandR, false, text), vec![Piece::Content("Hi [TOOL_CALLS]x".into())]);
    }

    // Issue 14, found by the fuzzer: text outside harmony messages came out differently when it
    // came in small tokens (whitespace dropped, or text taken into the next header).
    #[test]
    fn issue_14_harmony_text_outside_messages_is_the_same_however_tokens_are_cut() {
        assert_eq!(
            family_run(Family::Harmony, false, "{arc\u{b}\u{b}\u{b}"),
            vec![Piece::Content("{arc\u{b}\u{b}\u{b}".into())]
        );
        assert_eq!(
            family_run(Family::Harmony, true, " \nHi <|channel|>final<|message|>there"),
            vec![Piece::Content(" \nHi there".into())]
        );
        assert_eq!(family_run(Family::Harmony, false, "\t\t<<|START"), vec![Piece::Content("\t\t<<|START".into())]);
    }
}
