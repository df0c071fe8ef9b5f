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
//! Its own crate (the server's answer streaming uses it) so that it can be fuzzed alone: how the
//! text is cut into tokens never changes what comes out (`fuzz/fuzz_targets/output_parser.rs`).

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
/// Tags that start a tool call, and how each ends (`None`: the JSON that follows ends it).
const CALL_TAGS: [(&str, Option<&str>); 2] = [("<tool_call>", Some("</tool_call>")), ("[TOOL_CALLS]", None)];

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
    buf: String,
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
        OutputParser { state, buf: String::new(), tools, at_start: true, thought: false, not_json: false }
    }

    /// Whether the answer is complete (a bare JSON call): the generation may be stopped.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds generated text; returns what is settled.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while self.step(&mut out, false) {}
        merge(out)
    }

    /// The generation ended: everything left is settled.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
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

    fn content(&mut self, out: &mut Vec<Piece>, text: String) {
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
                if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                    self.buf = rest.to_string();
                    self.state = State::Thinking;
                } else if THINK_OPEN.starts_with(trimmed) && !end {
                    return false;
                } else {
                    self.state = State::Content;
                }
                true
            }
            State::Thinking => {
                if let Some(i) = self.buf.find(THINK_CLOSE) {
                    let thinking = self.buf[..i].trim_end().to_string();
                    self.buf.drain(..i + THINK_CLOSE.len());
                    let thinking = if self.thought { thinking } else { thinking.trim_start().to_string() };
                    if !thinking.is_empty() {
                        out.push(Piece::Thinking(thinking));
                    }
                    self.state = State::AfterThinking;
                    return true;
                }
                let mut keep = if end { 0 } else { partial_suffix(&self.buf, &[THINK_CLOSE]) };
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
                let (open, close) = CALL_TAGS[tag];
                let body_end = match close {
                    Some(close) => self.buf.find(close).map(|i| (i, i + close.len())),
                    None => json_end(&self.buf).map(|i| (i, i)),
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
            let all = std::mem::take(&mut self.buf);
            self.content(out, all);
            return false;
        }
        let found =
            CALL_TAGS.iter().enumerate().filter_map(|(i, (open, _))| self.buf.find(open).map(|at| (at, i))).min();
        let trimmed = self.buf.trim_start();
        let lead = self.buf.len() - trimmed.len();
        // An answer that starts as JSON is tried as a bare call before any tag further on is
        // looked for, as it is when the tag has not arrived yet (found by the fuzzer).
        if found.is_none_or(|(at, _)| at > lead) && self.at_start {
            if !end && CALL_TAGS.iter().any(|(open, _)| !trimmed.is_empty() && open.starts_with(trimmed)) {
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
            self.buf.drain(..CALL_TAGS[tag].0.len());
            self.state = State::Call { tag };
            return true;
        }
        let trimmed = self.buf.trim_start();
        let opens: Vec<&str> = CALL_TAGS.iter().map(|(o, _)| *o).collect();
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
        let name = obj.get("name")?.as_str()?.to_string();
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
}
