use super::*;
use serde_json::json;

fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
    pairs.iter().map(|(r, c)| Message::new(r, c)).collect()
}

const CHATML_LEGACY: &str = "{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ .Response }}<|im_end|>
";

const CHATML: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
";

const LLAMA3: &str = r#"{{- if .Messages }}
{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>
{{- if and $.Tools $last }}

Functions:
{{ range $.Tools }}
{{- . }}
{{ end }}
{{ .Content }}<|eot_id|>
{{- else }}

{{ .Content }}<|eot_id|>
{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if .ToolCalls }}
{{ range .ToolCalls }}
{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}
{{- else }}

{{ .Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}
{{- else }}
{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>

{{ .Prompt }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

{{ .Response }}{{ if .Response }}<|eot_id|>{{ end }}
{{- end }}"#;

#[test]
fn legacy_template_runs_per_turn_and_cuts_at_the_response() {
    let t = GoTemplate::parse(CHATML_LEGACY).unwrap();
    let out = t.render_chat(&msgs(&[("system", "S"), ("user", "A"), ("assistant", "B"), ("user", "C")]), None).unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nA<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n\
         <|im_start|>user\nC<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn messages_template_sees_the_whole_conversation() {
    let t = GoTemplate::parse(CHATML).unwrap();
    let out = t.render_chat(&msgs(&[("system", "S"), ("user", "A"), ("user", "B")]), None).unwrap();
    assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nA\n\nB<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn llama3_with_tools_and_tool_calls() {
    let t = GoTemplate::parse(LLAMA3).unwrap();
    assert!(t.uses("Tools"));
    let out = t.render_chat(&msgs(&[("system", "S"), ("user", "U")]), None).unwrap();
    assert_eq!(
        out,
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let mut call = Message::new("assistant", "");
    call.tool_calls = Some(vec![serde_json::from_value(
        json!({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}),
    )
    .unwrap()]);
    let conversation = vec![Message::new("user", "Weather?"), call, Message::new("tool", "sunny")];
    let out = t.render_chat(&conversation, Some(&tools)).unwrap();
    assert!(out.contains("You are a helpful assistant with tool calling capabilities."), "{out}");
    assert!(out.contains(r#"{"name": "get_weather", "parameters": {"city":"Paris"}}"#), "{out}");
    assert!(out.ends_with("<|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{out}");
    // Tools are listed for the last user message.
    let out = t.render_chat(&msgs(&[("user", "Weather?")]), Some(&tools)).unwrap();
    // Printed as the client sent it, keys in order (Go prints Ollama's Tool struct in field order).
    assert!(
        out.contains(r#"{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}"#),
        "{out}"
    );
}

#[test]
fn prompt_only_template_gets_a_response() {
    let t = GoTemplate::parse("{{ .Prompt }}").unwrap();
    assert_eq!(t.render_chat(&msgs(&[("user", "hi")]), None).unwrap(), "hi");
}

#[test]
fn expressions() {
    let run = |src: &str, data: Value| GoTemplate::parse(src).unwrap().execute(&data).unwrap();
    let d = json!({"A": "x", "N": 3, "L": [1, 2, 3], "M": {"b": 2, "a": 1}, "E": ""});
    assert_eq!(run("{{ if and .A (gt .N 2) }}yes{{ else }}no{{ end }}", d.clone()), "yes");
    assert_eq!(run("{{ if .E }}a{{ else if eq .N 1 2 3 }}b{{ end }}", d.clone()), "b");
    assert_eq!(run("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", d.clone()), "0=1 1=2 2=3 ");
    assert_eq!(run("{{ range $k, $v := .M }}{{ $k }}{{ $v }}{{ end }}", d.clone()), "a1b2");
    assert_eq!(
        run("{{ len .L }} {{ index .L 1 }} {{ slice .L 1 }} {{ json .M }}", d.clone()),
        "3 2 [2,3] {\"b\":2,\"a\":1}"
    );
    assert_eq!(run("{{ with .A }}[{{ . }}]{{ end }}{{ with .E }}no{{ else }}empty{{ end }}", d.clone()), "[x]empty");
    assert_eq!(run("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", d.clone()), "2");
    assert_eq!(run("a  {{- .A -}}  b {{/* comment */}}", d.clone()), "axb ");
    assert_eq!(run("{{ printf \"%s-%d\" .A .N }} {{ .A | printf \"<%s>\" }}", d.clone()), "x-3 <x>");
    assert_eq!(run("{{ not .E }} {{ or .E .A }} {{ .Missing }}|", d), "true x |");
}

#[test]
fn errors() {
    for bad in ["{{ if .A }}", "{{ end }}", "{{ .A", "{{ define \"x\" }}{{ end }}", "{{ else }}", "{{ \"open }}"] {
        assert!(GoTemplate::parse(bad).is_err(), "{bad}");
    }
    let t = GoTemplate::parse("{{ nosuch .A }}").unwrap();
    assert!(t.execute(&json!({})).unwrap_err().to_string().contains("nosuch"));
    assert!(GoTemplate::parse("{{ $y }}").unwrap().execute(&json!({})).is_err());
}

// Issue 13: a hostile TEMPLATE must not hold the server: loops and output are bounded.
#[test]
fn issue_13_go_template_loops_and_output_are_bounded() {
    let t = GoTemplate::parse("{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}{{ .Prompt }}").unwrap();
    let e = t.render_chat(&msgs(&[("user", "Hi")]), None).unwrap_err().to_string();
    assert!(e.contains("did not finish within 50000000 steps"), "{e}");
    // A range over a huge number is walked, not collected first (it would need terabytes).
    let long = "y".repeat(10_000);
    let t = GoTemplate::parse("{{ range 1000000000000000 }}{{ $.Prompt }}{{ end }}").unwrap();
    let e = t.render_chat(&msgs(&[("user", &long)]), None).unwrap_err().to_string();
    assert!(e.contains("output grew past 32 MiB"), "{e}");
}

// Issue 14: a generate request with a `suffix` executes the whole template over
// `{System, Prompt, Suffix}`, as Ollama does for fill-in-the-middle.
#[test]
fn issue_14_a_suffix_fills_in_the_middle() {
    let src =
        "{{ if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{ else }}[{{ .System }}]{{ .Prompt }}{{ end }}";
    let t = GoTemplate::parse(src).unwrap();
    let conversation = msgs(&[("system", "be terse"), ("user", "def f():")]);
    assert_eq!(t.render_insert(&conversation, "\nprint(f())").unwrap(), "<PRE> def f(): <SUF>\nprint(f()) <MID>");
    // Without one, the same template renders the conversation.
    assert_eq!(t.render_chat(&conversation, None).unwrap(), "[be terse]def f():");
}
