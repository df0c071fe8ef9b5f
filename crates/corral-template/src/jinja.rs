//! GGUF chat templates in Jinja.

use std::sync::Arc;

use corral_types::api::Message;
use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;

use crate::{TemplateError, FUEL, MAX_DEPTH, MAX_OUTPUT};

/// What a render needs besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Tool definitions (the request's `tools`), passed as `tools` when present.
    pub tools: Option<Json>,
    /// Append the assistant turn's opening so the model answers.
    pub add_generation_prompt: bool,
    /// `enable_thinking` for templates that read it (Qwen 3 and others); unset leaves it undefined.
    pub enable_thinking: Option<bool>,
    /// `reasoning_effort` (`low`, `medium`, `high`) for templates that read it (gpt-oss); unset
    /// leaves it undefined (the template's own default).
    pub reasoning_effort: Option<String>,
}

/// A compiled chat template.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Arc<Environment<'static>>,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate").finish_non_exhaustive()
    }
}

/// Collects a render's output, refusing to grow past [`MAX_OUTPUT`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

fn to_error(e: Error) -> TemplateError {
    // minijinja's Display includes the template line; keep the chain short and readable.
    let mut msg = e.to_string();
    if let Some(detail) = e.detail() {
        if !msg.contains(detail) {
            msg = format!("{msg}: {detail}");
        }
    }
    TemplateError(msg)
}

impl JinjaTemplate {
    /// Compiles `source`. `bos` and `eos` are the model's special tokens as text.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(MAX_DEPTH);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        // Python's `None is iterable` is false; minijinja's built-in test says true, and templates
        // then take `tools | length` of nothing.
        env.add_test("iterable", |v: Value| {
            matches!(v.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::String)
        });
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", strip_generation_tags(source)).map_err(to_error)?;
        Ok(JinjaTemplate { env: Arc::new(env), bos: bos.to_string(), eos: eos.to_string() })
    }

    /// Renders a conversation.
    pub fn render(&self, messages: &[Message], opts: &RenderOptions) -> Result<String, TemplateError> {
        let tmpl = self.env.get_template("chat").map_err(to_error)?;
        let messages: Vec<Json> = messages.iter().map(message_json).collect();
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), Json::Array(messages));
        ctx.insert("add_generation_prompt".into(), opts.add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos.clone().into());
        ctx.insert("eos_token".into(), self.eos.clone().into());
        // Hugging Face passes `tools=None` when there are none, so templates may test
        // `tools is not none` without first checking `tools is defined`.
        let tools = opts.tools.clone().unwrap_or(Json::Null);
        // Firefunction v2 reads the tool list as a JSON string named `functions`.
        let functions =
            if tools.is_null() { String::new() } else { serde_json::to_string_pretty(&tools).unwrap_or_default() };
        ctx.insert("tools".into(), tools);
        ctx.insert("functions".into(), functions.into());
        // Dates some templates print (Llama 3.x reads `date_string`, Firefunction `datetime`).
        let now = chrono::Utc::now();
        ctx.insert("date_string".into(), now.format("%d %b %Y").to_string().into());
        ctx.insert("datetime".into(), now.format("%b %d %Y %H:%M:%S GMT").to_string().into());
        if let Some(t) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), t.into());
        }
        if let Some(effort) = &opts.reasoning_effort {
            ctx.insert("reasoning_effort".into(), effort.clone().into());
        }
        let mut out = Bounded(Vec::new());
        match tmpl.render_captured_to(Value::from_serialize(&ctx), &mut out) {
            Ok(_) => {
                String::from_utf8(out.0).map_err(|_| TemplateError("the chat template wrote invalid UTF-8".into()))
            }
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(crate::out_of_fuel()),
            Err(e) if e.kind() == ErrorKind::WriteFailure => Err(crate::too_long()),
            Err(e) => Err(to_error(e)),
        }
    }
}

/// Removes `{% generation %}` / `{% endgeneration %}`: Hugging Face's markers for the assistant
/// tokens to train on. They do not change the rendered text, and minijinja has no such tag.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}").map(|e| e + 2) else { break };
        let tag = &rest[start..start + len];
        let word = tag
            .trim_start_matches("{%")
            .trim_end_matches("%}")
            .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start]);
        if word != "generation" && word != "endgeneration" {
            out.push_str(tag);
        } else if tag.starts_with("{%-") {
            // Keep the whitespace control the tag asked for.
            while out.ends_with(char::is_whitespace) {
                out.pop();
            }
        }
        rest = &rest[start + len..];
        if tag.ends_with("-%}") && (word == "generation" || word == "endgeneration") {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    out
}

/// A message as templates expect it: `tool_calls[].function.arguments` as an object, no absent
/// keys (templates test `message.tool_calls is defined`).
fn message_json(m: &Message) -> Json {
    let mut obj = serde_json::Map::new();
    obj.insert("role".into(), m.role.clone().into());
    obj.insert("content".into(), m.content.clone().into());
    if let Some(t) = &m.thinking {
        obj.insert("reasoning_content".into(), t.clone().into());
    }
    if let Some(calls) = &m.tool_calls {
        obj.insert("tool_calls".into(), serde_json::to_value(calls).unwrap_or_default());
    }
    if let Some(n) = &m.tool_name {
        obj.insert("name".into(), n.clone().into());
    }
    if let Some(id) = &m.tool_call_id {
        obj.insert("tool_call_id".into(), id.clone().into());
    }
    Json::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_chatml() {
        let t = JinjaTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let opts = RenderOptions { add_generation_prompt: true, ..Default::default() };
        assert_eq!(
            t.render(&[Message::new("user", "Hi")], &opts).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[Message::new("system", "Be brief."), Message::new("user", "Hi")], &opts).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn generation_tags_are_dropped() {
        assert_eq!(strip_generation_tags("a {%- generation -%}  b {% endgeneration %}c {% if x %}"), "ab c {% if x %}");
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        assert!(JinjaTemplate::new("{% for %}", "", "").is_err());
        let t = JinjaTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], &RenderOptions::default()).unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }

    fn hostile(source: &str) -> String {
        let t = JinjaTemplate::new(source, "", "").unwrap();
        let started = std::time::Instant::now();
        let e = t.render(&[Message::new("user", "Hi")], &RenderOptions::default()).unwrap_err().to_string();
        eprintln!("{source}: {e} after {:?}", started.elapsed());
        e
    }

    // Issue 13: a GGUF whose chat template nests two 10,000-step loops around the user's message
    // held the request for minutes and grew the server to gigabytes.
    #[test]
    fn issue_13_a_template_that_loops_for_ever_is_stopped_with_a_clear_error() {
        let e = hostile(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% if i < 0 %}x{% endif %}{% endfor %}{% endfor %}",
        );
        assert!(e.contains("did not finish within 50000000 steps"), "{e}");
    }

    #[test]
    fn issue_13_a_template_whose_output_grows_without_bound_is_stopped() {
        let e = hostile("{% for i in range(10000) %}{% for j in range(10000) %}{{ messages[0].content * 100 }}{% endfor %}{% endfor %}");
        assert!(e.contains("output grew past 32 MiB"), "{e}");
    }

    #[test]
    fn issue_13_recursion_is_bounded() {
        let e = hostile("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        assert!(e.to_lowercase().contains("recursion"), "{e}");
    }
}
