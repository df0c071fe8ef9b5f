//! A render as data: which template, which conversation. The server sends a [`RenderJob`] to a
//! worker process (`corral template-worker`), which compiles the template (keeping a few
//! compiled ones) and sends back a [`RenderReply`], one JSON line each way.
//!
//! Why a worker: the engines bound a render's steps, output and nesting, but not the memory it
//! builds up. A Jinja template can double a string in a loop of thirty steps and ask for 16 GiB;
//! nothing short of a process with its own memory limit stops that without stopping the server.

use corral_types::api::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{GoTemplate, JinjaTemplate, RenderOptions, TemplateError};

/// A template's source, as the model (or the request) gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// A Modelfile `TEMPLATE` (Go template syntax).
    Go(String),
    /// A GGUF `tokenizer.chat_template`, with the model's BOS and EOS tokens as text.
    Jinja { source: String, bos: String, eos: String },
}

/// What a template is told about thinking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    /// Whether the model should think; `None` for a model that cannot (nothing is said).
    pub on: Option<bool>,
    /// The effort asked (`low`, `medium`, `high`, `max`), when thinking.
    pub level: Option<String>,
    /// Whether the request said anything (`think` present): Go's `.IsThinkSet`.
    pub set: bool,
}

impl Thinking {
    /// Go's `.ThinkLevel`: the level, `medium` for a plain `true` (as Ollama stringifies it),
    /// empty when not thinking.
    pub fn go_level(&self) -> String {
        match (self.on, &self.level) {
            (Some(true), Some(level)) => level.clone(),
            (Some(true), None) => "medium".into(),
            _ => String::new(),
        }
    }

    /// A Jinja template's `reasoning_effort` (gpt-oss reads it; it knows no `max`).
    pub fn reasoning_effort(&self) -> Option<String> {
        match (self.on, self.level.as_deref()) {
            (Some(true), Some("max")) => Some("high".into()),
            (Some(true), Some(level)) => Some(level.to_string()),
            _ => None,
        }
    }
}

/// A compiled [`Source`].
#[derive(Debug, Clone)]
pub enum Compiled {
    Go(GoTemplate),
    Jinja(JinjaTemplate),
}

impl Compiled {
    /// Compiles `source`.
    pub fn new(source: &Source) -> Result<Self, TemplateError> {
        Ok(match source {
            Source::Go(src) => Compiled::Go(GoTemplate::parse(src)?),
            Source::Jinja { source, bos, eos } => Compiled::Jinja(JinjaTemplate::new(source, bos, eos)?),
        })
    }

    /// Renders `messages` (and `tools`) ready for the assistant's answer; with a `suffix`, a
    /// fill-in-the-middle prompt, which only Go templates that read `.Suffix` write.
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&Value>,
        thinking: &Thinking,
        suffix: Option<&str>,
    ) -> Result<String, TemplateError> {
        match self {
            Compiled::Go(t) if suffix.is_some() => t.render_insert(messages, suffix.unwrap_or_default()),
            Compiled::Jinja(_) if suffix.is_some() => {
                Err(TemplateError("a chat template cannot fill in the middle (no .Suffix)".into()))
            }
            Compiled::Go(t) => t.render_chat_thinking(messages, tools, thinking),
            Compiled::Jinja(t) => {
                let opts = RenderOptions {
                    tools: tools.cloned(),
                    add_generation_prompt: true,
                    enable_thinking: thinking.on,
                    reasoning_effort: thinking.reasoning_effort(),
                };
                t.render(messages, &opts)
            }
        }
    }
}

/// One render for a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderJob {
    pub template: Source,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Option<Value>,
    /// Whether (and how hard) the model should think.
    #[serde(default)]
    pub thinking: Thinking,
    /// Text after the insertion point: a fill-in-the-middle render (Go templates with `.Suffix`).
    #[serde(default)]
    pub suffix: Option<String>,
}

/// A worker's answer to a [`RenderJob`]: the prompt, or why there is none.
pub type RenderReply = Result<String, TemplateError>;

/// The compiled templates a worker keeps: a conversation renders its template again at every
/// turn (and again for each message dropped to fit the context), and compiling a long Jinja
/// template costs more than rendering it.
#[derive(Default)]
pub struct Cache {
    compiled: Vec<(Source, Compiled)>,
}

impl Cache {
    /// How many compiled templates are kept (the oldest goes first).
    const SIZE: usize = 8;

    /// Runs `job`, compiling its template unless it is kept.
    pub fn run(&mut self, job: &RenderJob) -> RenderReply {
        let compiled = match self.compiled.iter().position(|(s, _)| *s == job.template) {
            Some(i) => self.compiled[i].1.clone(),
            None => {
                let c = Compiled::new(&job.template)?;
                if self.compiled.len() == Self::SIZE {
                    self.compiled.remove(0);
                }
                self.compiled.push((job.template.clone(), c.clone()));
                c
            }
        };
        compiled.render(&job.messages, job.tools.as_ref(), &job.thinking, job.suffix.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_the_trip_as_json_and_renders_as_in_process() {
        let template = Source::Jinja {
            source: "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}|{% if m.tool_calls is defined %}{{ m.tool_calls[0].function.name }}{% endif %}{% endfor %}".into(),
            bos: "<s>".into(),
            eos: "</s>".into(),
        };
        let mut call = Message::new("assistant", "");
        call.tool_calls =
            Some(vec![
                serde_json::from_value(serde_json::json!({"function": {"name": "weather", "arguments": {}}})).unwrap()
            ]);
        let job = RenderJob {
            template,
            messages: vec![Message::new("user", "Hi"), call],
            tools: None,
            thinking: Thinking::default(),
            suffix: None,
        };
        let line = serde_json::to_string(&job).unwrap();
        assert!(!line.contains('\n'), "one job is one line");
        let back: RenderJob = serde_json::from_str(&line).unwrap();
        let mut cache = Cache::default();
        assert_eq!(cache.run(&back).unwrap(), "<s>user:Hi|assistant:|weather");
        // Kept, not compiled again: the same answer from the cache.
        assert_eq!(cache.run(&back).unwrap(), "<s>user:Hi|assistant:|weather");
        assert_eq!(cache.compiled.len(), 1);

        let reply: RenderReply = Err(TemplateError("boom".into()));
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<RenderReply>(&line).unwrap(), reply);
    }

    #[test]
    fn the_cache_keeps_the_newest_templates() {
        let mut cache = Cache::default();
        for i in 0..20 {
            let job = RenderJob {
                template: Source::Go(format!("{i}{{{{ .Prompt }}}}")),
                messages: vec![Message::new("user", "x")],
                tools: None,
                thinking: Thinking::default(),
                suffix: None,
            };
            assert_eq!(cache.run(&job).unwrap(), format!("{i}x"));
        }
        assert_eq!(cache.compiled.len(), Cache::SIZE);
        assert_eq!(cache.compiled[0].0, Source::Go("12{{ .Prompt }}".into()));
    }
}
