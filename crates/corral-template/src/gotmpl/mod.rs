//! Ollama's Go-template `TEMPLATE`s.
//!
//! Go's `text/template`, the subset that real Ollama templates use: fields and variables,
//! `if`/`else if`/`else`, `range`, `with`, `and`/`or`/`not`, comparisons, `len`, `index`, `slice`,
//! `print(f)`, `json`, `currentDate`, and `{{-`/`-}}` trimming. Unsupported constructs
//! (`define`, `template`, `block`) are parse errors, reported when the model is created.
//!
//! Rendering a conversation follows Ollama's two modes: a template that mentions `.Messages`
//! gets the whole (collated) conversation at once; an older template is executed once per turn
//! with `.System`, `.Prompt` and `.Response`, and the last turn is cut right after its
//! `{{ .Response }}` so the model writes the answer there.

mod exec;
mod parse;

use corral_types::api::Message;
use parse::{Arg, Node, Pipe};
use serde_json::Value;

use crate::TemplateError;

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct GoTemplate {
    nodes: Vec<Node>,
    uses_messages: bool,
}

fn pipe_mentions(p: &Pipe, field: &str) -> bool {
    p.cmds.iter().flatten().any(|a| arg_mentions(a, field))
}

fn arg_mentions(a: &Arg, field: &str) -> bool {
    match a {
        Arg::Field(f) | Arg::Var(_, f) => f.iter().any(|x| x == field),
        Arg::Sub(p, f) => pipe_mentions(p, field) || f.iter().any(|x| x == field),
        _ => false,
    }
}

fn mentions(nodes: &[Node], field: &str) -> bool {
    nodes.iter().any(|n| match n {
        Node::Text(_) => false,
        Node::Action(p) => pipe_mentions(p, field),
        Node::If { branches, otherwise } => {
            branches.iter().any(|(c, b)| pipe_mentions(c, field) || mentions(b, field))
                || otherwise.as_ref().is_some_and(|o| mentions(o, field))
        }
        Node::Range { pipe, body, otherwise } | Node::With { pipe, body, otherwise } => {
            pipe_mentions(pipe, field)
                || mentions(body, field)
                || otherwise.as_ref().is_some_and(|o| mentions(o, field))
        }
    })
}

/// Ollama's cut: keep everything up to and including the first action that prints `.Response`,
/// drop every node after it (walking lists in order, as Go's `deleteNode` does; conditions are
/// not looked at).
fn cut_after_response(nodes: &[Node], cut: &mut bool) -> Vec<Node> {
    let mut out = Vec::new();
    for n in nodes {
        if *cut {
            break;
        }
        match n {
            Node::Action(p) => {
                if pipe_mentions(p, "Response") {
                    *cut = true;
                }
                out.push(n.clone());
            }
            Node::Text(_) => out.push(n.clone()),
            Node::If { branches, otherwise } => {
                let branches = branches.iter().map(|(c, b)| (c.clone(), cut_after_response(b, cut))).collect();
                let otherwise = otherwise.as_ref().map(|o| cut_after_response(o, cut));
                out.push(Node::If { branches, otherwise });
            }
            Node::Range { pipe, body, otherwise } => {
                let body = cut_after_response(body, cut);
                let otherwise = otherwise.as_ref().map(|o| cut_after_response(o, cut));
                out.push(Node::Range { pipe: pipe.clone(), body, otherwise });
            }
            Node::With { pipe, body, otherwise } => {
                let body = cut_after_response(body, cut);
                let otherwise = otherwise.as_ref().map(|o| cut_after_response(o, cut));
                out.push(Node::With { pipe: pipe.clone(), body, otherwise });
            }
        }
    }
    out
}

/// Consecutive messages of the same role merged (tool results excepted), as Ollama does; also
/// returns all system messages joined.
fn collate(messages: &[Message]) -> (String, Vec<Message>) {
    let system: Vec<&str> = messages.iter().filter(|m| m.role == "system").map(|m| m.content.as_str()).collect();
    let mut out: Vec<Message> = Vec::new();
    for m in messages {
        match out.last_mut() {
            Some(last) if last.role == m.role && m.role != "tool" => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => out.push(m.clone()),
        }
    }
    (system.join("\n\n"), out)
}

impl GoTemplate {
    /// Parses a template. One that uses neither `.Messages` nor `.Response` gets `{{ .Response }}`
    /// appended, as in Ollama.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let mut nodes = parse::parse(src)?;
        let uses_messages = mentions(&nodes, "Messages");
        if !uses_messages && !mentions(&nodes, "Response") {
            nodes.push(Node::Action(Pipe {
                vars: vec![],
                declare: false,
                cmds: vec![vec![Arg::Field(vec!["Response".into()])]],
            }));
        }
        Ok(GoTemplate { nodes, uses_messages })
    }

    /// Whether the template reads a top-level field (e.g. `Tools` for the tools capability).
    pub fn uses(&self, field: &str) -> bool {
        mentions(&self.nodes, field)
    }

    /// Executes the template over `data` as it is.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        let mut e = exec::Exec::new(data);
        e.nodes(&self.nodes, data)?;
        if e.out.len() > crate::MAX_OUTPUT {
            return Err(crate::too_long());
        }
        Ok(e.out)
    }

    /// Renders a fill-in-the-middle prompt: the template over `{System, Prompt, Suffix}` with an
    /// empty `Response`, whole, as Ollama executes it for a generate request with a `suffix`.
    /// `Prompt` is the last message, `System` the system messages.
    pub fn render_insert(&self, messages: &[Message], suffix: &str) -> Result<String, TemplateError> {
        let (system, _) = collate(messages);
        let prompt = messages.iter().rfind(|m| m.role != "system").map(|m| m.content.clone()).unwrap_or_default();
        self.execute(&exec::data(vec![
            ("System", Value::String(system)),
            ("Prompt", Value::String(prompt)),
            ("Suffix", Value::String(suffix.to_string())),
            ("Response", Value::String(String::new())),
        ]))
    }

    /// Renders a conversation for the model to answer (Ollama's `Template.Execute`), saying
    /// nothing about thinking.
    pub fn render_chat(&self, messages: &[Message], tools: Option<&Value>) -> Result<String, TemplateError> {
        self.render_chat_thinking(messages, tools, &crate::Thinking::default())
    }

    /// [`GoTemplate::render_chat`] with `.Think`, `.ThinkLevel` and `.IsThinkSet` from `thinking`.
    pub fn render_chat_thinking(
        &self,
        messages: &[Message],
        tools: Option<&Value>,
        thinking: &crate::Thinking,
    ) -> Result<String, TemplateError> {
        let tools = tools.cloned().unwrap_or(Value::Null);
        if self.uses_messages {
            let (system, collated) = collate(messages);
            let data = exec::data(vec![
                ("System", Value::String(system)),
                ("Messages", serde_json::to_value(&collated).unwrap_or_default()),
                ("Tools", tools),
                ("Response", Value::String(String::new())),
                ("Prompt", Value::String(String::new())),
                ("Think", Value::Bool(thinking.on == Some(true))),
                ("ThinkLevel", Value::String(thinking.go_level())),
                ("IsThinkSet", Value::Bool(thinking.set)),
            ]);
            return self.execute(&data);
        }
        let mut out = String::new();
        let (mut system, mut prompt, mut response) = (String::new(), String::new(), String::new());
        let turn = |system: &str, prompt: &str, response: &str| {
            exec::data(vec![
                ("System", Value::String(system.into())),
                ("Prompt", Value::String(prompt.into())),
                ("Response", Value::String(response.into())),
            ])
        };
        for m in messages {
            let flush = match m.role.as_str() {
                "system" => !prompt.is_empty() || !response.is_empty(),
                "user" => !response.is_empty(),
                _ => false,
            };
            if flush {
                out.push_str(&self.execute(&turn(&system, &prompt, &response))?);
                system.clear();
                prompt.clear();
                response.clear();
            }
            match m.role.as_str() {
                "system" => system = m.content.clone(),
                "user" => prompt = m.content.clone(),
                "assistant" => response = m.content.clone(),
                _ => {}
            }
        }
        let cut = GoTemplate { nodes: cut_after_response(&self.nodes, &mut false), uses_messages: false };
        out.push_str(&cut.execute(&turn(&system, &prompt, &response))?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
