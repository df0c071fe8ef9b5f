//! Reading tool calls out of text that is known to be whole: what stood between a call tag and
//! its end, or an answer that is only JSON. Each family has its own syntax (JSON objects, Mistral's
//! `name[ARGS]{…}`, Qwen3-Coder's XML functions, DeepSeek's blocks), and every call must name one
//! of the request's tools. A text that is not wholly calls gives `None`, and the parser passes it
//! on as content: a half-read call would lose the model's words. Also here: where a call
//! expression that has no closing tag ends, for the parser to know when the text is whole.

use serde_json::{Map, Value};

use crate::family::{DEEPSEEK_CALL_BEGIN, DEEPSEEK_CALL_END, DEEPSEEK_SEP};
use crate::scan::json_end;
use crate::FunctionCall;

/// The calls in `text`: one call object, an array of them, or a sequence of objects. None if
/// it is anything else or names a tool the request does not have.
pub(crate) fn parse(text: &str, tools: &[String]) -> Option<Vec<FunctionCall>> {
    let trimmed = text.trim();
    if trimmed.starts_with("<function=") {
        return xml_calls(trimmed, tools);
    }
    if trimmed.contains(DEEPSEEK_CALL_BEGIN) {
        return deepseek_calls(trimmed, tools);
    }
    if let Some((name, args)) = trimmed.split_once("[ARGS]") {
        return Some(vec![from_value(
            serde_json::json!({"name": name.trim(), "arguments": serde_json::from_str::<Value>(args).ok()?}),
            tools,
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
    values.into_iter().map(|v| from_value(v, tools)).collect()
}

/// One call object: `name` (or `tool_name`) and `arguments` (or `parameters`), maybe wrapped in
/// `function`. None unless it names one of `tools` and its arguments are an object.
pub(crate) fn from_value(v: Value, tools: &[String]) -> Option<FunctionCall> {
    let mut obj = match v {
        Value::Object(o) => o,
        _ => return None,
    };
    if let Some(Value::Object(f)) = obj.remove("function") {
        obj = f;
    }
    // Command R names it `tool_name`.
    let name = obj.get("name").or_else(|| obj.get("tool_name"))?.as_str()?.to_string();
    if !tools.contains(&name) {
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
    Some(FunctionCall { name, arguments })
}

/// Qwen3-Coder's calls: `<function=name>` then `<parameter=key>value</parameter>`s, then
/// `</function>`. A value that reads as JSON other than a string (a number, `true`, an
/// object) is that value; anything else is the text, less the newline around it.
fn xml_calls(text: &str, tools: &[String]) -> Option<Vec<FunctionCall>> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<function=") {
        let (name, body, next) = element(&rest[start + "<function=".len()..], "</function>")?;
        let mut arguments = Map::new();
        let mut params = body;
        while let Some(p) = params.find("<parameter=") {
            let (key, value, next) = element(&params[p + "<parameter=".len()..], "</parameter>")?;
            let value = value.strip_prefix('\n').unwrap_or(value);
            let value = value.strip_suffix('\n').unwrap_or(value);
            let parsed = match serde_json::from_str::<Value>(value) {
                Ok(v) if !v.is_string() => v,
                _ => Value::String(value.to_string()),
            };
            arguments.insert(key.trim().to_string(), parsed);
            params = next;
        }
        calls.push(from_value(serde_json::json!({"name": name.trim(), "arguments": arguments}), tools)?);
        rest = next;
    }
    (!calls.is_empty()).then_some(calls)
}

/// The rest of an XML element after its `<function=` or `<parameter=`: `key>body` then `close`.
/// Gives the key, the body and what follows `close`; None if either end is missing.
fn element<'a>(text: &'a str, close: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let (key, body) = text.split_once('>')?;
    let (body, next) = body.split_once(close)?;
    Some((key, body, next))
}

/// DeepSeek's calls: `<｜tool▁call▁begin｜>` [`function`] `<｜tool▁sep｜>` name, then the
/// arguments as JSON (in a ```json fence in V3 and R1, bare in V3.1), `<｜tool▁call▁end｜>`.
/// V3.1 puts the name first: `name<｜tool▁sep｜>{…}`.
fn deepseek_calls(text: &str, tools: &[String]) -> Option<Vec<FunctionCall>> {
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
        let json = json.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
        let arguments: Value =
            if json.is_empty() { Value::Object(Map::new()) } else { serde_json::from_str(json).ok()? };
        calls.push(from_value(serde_json::json!({"name": name, "arguments": arguments}), tools)?);
    }
    (!calls.is_empty()).then_some(calls)
}

/// Where a call expression after an unclosed tag ends: a JSON value, or Mistral's
/// `name[ARGS]{…}`. `None` while it may still be coming.
pub(crate) fn call_expression_end(text: &str) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{DEEPSEEK_CALLS_BEGIN, DEEPSEEK_CALLS_END};
    use serde_json::json;

    fn tools() -> Vec<String> {
        vec!["get_weather".into(), "search".into()]
    }

    fn call(name: &str, args: Value) -> FunctionCall {
        FunctionCall { name: name.into(), arguments: args.as_object().unwrap().clone() }
    }

    fn paris() -> FunctionCall {
        call("get_weather", json!({"city": "Paris"}))
    }

    #[test]
    fn json_calls_in_every_shape_models_write() {
        let cases: [(&str, Vec<FunctionCall>); 8] = [
            (r#" {"name": "get_weather", "arguments": {"city": "Paris"}} "#, vec![paris()]),
            // An array (Mistral's `[TOOL_CALLS]`, Granite), or objects one after another.
            (
                r#"[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "search", "arguments": {"q": "x"}}]"#,
                vec![paris(), call("search", json!({"q": "x"}))],
            ),
            (
                r#"{"name": "search", "arguments": {"q": "a"}}
                   {"name": "search", "arguments": {"q": "b"}}"#,
                vec![call("search", json!({"q": "a"})), call("search", json!({"q": "b"}))],
            ),
            // OpenAI's shape, its arguments a JSON string.
            (
                r#"{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}"#,
                vec![paris()],
            ),
            // Llama 3.x: `parameters`.
            (r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#, vec![paris()]),
            // Command R's action list.
            (r#"[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}]"#, vec![paris()]),
            // No arguments, or null: none.
            (r#"{"name": "search"}"#, vec![call("search", json!({}))]),
            (r#"{"name": "search", "arguments": null}"#, vec![call("search", json!({}))]),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &tools()), Some(want), "{text}");
        }
    }

    #[test]
    fn json_that_is_not_wholly_calls_of_the_requests_tools_is_refused() {
        for text in [
            "",
            "   ",
            "hello",
            r#"{"answer": 42}"#,
            r#"{"name": "delete_everything", "arguments": {}}"#,
            r#"{"name": 3, "arguments": {}}"#,
            r#"[1, 2, 3]"#,
            r#"{"name": "get_weather", "arguments": {"city": "Paris""#,
            // One bad call spoils them all: a half-read answer would lose words.
            r#"{"name": "search", "arguments": {}} {"name": "other", "arguments": {}}"#,
            r#"{"name": "search", "arguments": {}} and some words"#,
            // Arguments must be an object, or a string holding one.
            r#"{"name": "search", "arguments": [1]}"#,
            r#"{"name": "search", "arguments": "x"}"#,
            r#"{"name": "search", "arguments": "[1]"}"#,
        ] {
            assert_eq!(parse(text, &tools()), None, "{text}");
        }
        // Without tools, no call is one of them.
        assert_eq!(parse(r#"{"name": "search", "arguments": {}}"#, &[]), None);
    }

    #[test]
    fn mistral_name_args_calls() {
        assert_eq!(parse(r#"get_weather[ARGS]{"city": "Paris"}"#, &tools()), Some(vec![paris()]));
        assert_eq!(parse(r#" get_weather [ARGS] {"city": "Paris"} "#, &tools()), Some(vec![paris()]));
        for text in [
            r#"get_weather[ARGS]{"city": "#,
            r#"get_weather[ARGS]"Paris""#,
            r#"other_tool[ARGS]{}"#,
            // One call a text: the parser hands them over one at a time.
            r#"search[ARGS]{}search[ARGS]{}"#,
        ] {
            assert_eq!(parse(text, &tools()), None, "{text}");
        }
    }

    #[test]
    fn qwen3_coder_xml_calls() {
        let text = "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n<function=search>\n</function>";
        assert_eq!(
            parse(text, &tools()),
            Some(vec![call("get_weather", json!({"city": "Paris", "days": 3})), call("search", json!({}))])
        );
        // A value is JSON unless it reads as a string: then it is the text as written, quotes
        // and all, less one newline on each side.
        let text = "<function=search><parameter=a>true</parameter><parameter=b>{\"k\": [1]}</parameter><parameter=c>\"quoted\"</parameter><parameter=d>\n\ntwo\n\n</parameter><parameter=e>null</parameter></function>";
        assert_eq!(
            parse(text, &tools()),
            Some(vec![call(
                "search",
                json!({"a": true, "b": {"k": [1]}, "c": "\"quoted\"", "d": "\ntwo\n", "e": null})
            )])
        );
        // Text after the last function is not kept.
        assert_eq!(parse("<function=search></function> done", &tools()), Some(vec![call("search", json!({}))]));
    }

    #[test]
    fn qwen3_coder_xml_that_is_unfinished_or_unknown_is_refused() {
        for text in [
            "<function=get_weather><parameter=city>Paris</parameter>",
            "<function=get_weather><parameter=city>Paris</function>",
            "<function=get_weather",
            "<function=other><parameter=city>Paris</parameter></function>",
            // Calls must open the text.
            "Sure. <function=search></function>",
        ] {
            assert_eq!(parse(text, &tools()), None, "{text}");
        }
    }

    /// A DeepSeek call block around `inner`, as it stands between the calls markers.
    fn deepseek(inner: &str) -> String {
        format!("{DEEPSEEK_CALL_BEGIN}{inner}{DEEPSEEK_CALL_END}")
    }

    #[test]
    fn deepseek_blocks() {
        let v3 = deepseek(&format!("function{DEEPSEEK_SEP}get_weather\n```json\n{{\"city\": \"Paris\"}}\n```"));
        let v31 = deepseek(&format!("get_weather{DEEPSEEK_SEP}{{\"city\": \"Paris\"}}"));
        let bare = deepseek(&format!("function{DEEPSEEK_SEP}search"));
        assert_eq!(parse(&v3, &tools()), Some(vec![paris()]));
        assert_eq!(parse(&v31, &tools()), Some(vec![paris()]));
        assert_eq!(parse(&bare, &tools()), Some(vec![call("search", json!({}))]));
        assert_eq!(parse(&format!("{v3}\n{v31}"), &tools()), Some(vec![paris(), paris()]));
        // Whatever stands before the first block is not looked at.
        assert_eq!(parse(&format!("{DEEPSEEK_CALLS_BEGIN}{v31}{DEEPSEEK_CALLS_END}"), &tools()), Some(vec![paris()]));
        // A block whose end never came is read to the end of the text.
        let unended = format!("{DEEPSEEK_CALL_BEGIN}get_weather{DEEPSEEK_SEP}{{\"city\": \"Paris\"}}");
        assert_eq!(parse(&unended, &tools()), Some(vec![paris()]));
    }

    #[test]
    fn deepseek_blocks_that_do_not_read_are_refused() {
        for inner in [
            "get_weather {\"city\": \"Paris\"}".to_string(),
            format!("get_weather{DEEPSEEK_SEP}{{\"city\": "),
            format!("get_weather{DEEPSEEK_SEP}[1]"),
            format!("other{DEEPSEEK_SEP}{{}}"),
        ] {
            assert_eq!(parse(&deepseek(&inner), &tools()), None, "{inner}");
        }
        // One bad block spoils them all.
        let good = deepseek(&format!("search{DEEPSEEK_SEP}{{}}"));
        let bad = deepseek(&format!("other{DEEPSEEK_SEP}{{}}"));
        assert_eq!(parse(&format!("{good}{bad}"), &tools()), None);
    }

    #[test]
    fn where_an_unclosed_call_expression_ends() {
        fn ends(text: &str) -> Option<&str> {
            call_expression_end(text).map(|i| &text[..i])
        }
        assert_eq!(ends(r#" {"name": "x"} after"#), Some(r#" {"name": "x"}"#));
        assert_eq!(ends("[1, 2]<|tool_call|>"), Some("[1, 2]"));
        assert_eq!(
            ends(r#"get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]"#),
            Some(r#"get_weather[ARGS]{"city": "Paris"}"#)
        );
        assert_eq!(ends(" ns.get-weather_2[ARGS] {}"), Some(" ns.get-weather_2[ARGS] {}"));
        // Still coming.
        for text in ["", "  ", r#"{"name": "#, "get_weather", "get_weather[AR", r#"get_weather[ARGS]{"city""#, "[1, 2"]
        {
            assert_eq!(ends(text), None, "{text}");
        }
        // Not a call expression: a name is a word (its end is then never found).
        for text in ["get weather[ARGS]{}", "<b>x[ARGS]{}", "[ARGS]{}"] {
            assert_eq!(ends(text), None, "{text}");
        }
    }
}
