//! The streaming parser's tests, each fed through [`OutputParser`] as the server feeds it: text
//! in chunks, and what comes out merged as a reader sees it. Most also check that a text gives
//! the same pieces however it is cut into tokens: the fuzzer's invariant, which most bugs broke.

use super::*;
use serde_json::json;

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
    Piece::Call(FunctionCall { name: name.into(), arguments: args.as_object().unwrap().clone() })
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
    let text = "Checking.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
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
        run(OutputParser::new(false, false, weather()), &["[TOOL_CALLS][{\"name\":\"get_weather\",\"arguments\":{}}]"]),
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
    let early = r#"<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}"#;
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
