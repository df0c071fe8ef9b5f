//! Lexing and parsing Go `text/template` source into a small tree.

use crate::TemplateError;

/// An argument of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.A.B` (empty: the dot itself).
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the root).
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    /// A function name.
    Ident(String),
    /// `( pipeline )`, optionally followed by `.Field`s.
    Sub(Box<Pipe>, Vec<String>),
}

/// A pipeline: optional variable declaration, then commands joined by `|`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    /// Variables declared (`:=`) or assigned (`=`).
    pub vars: Vec<String>,
    pub declare: bool,
    pub cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If { branches: Vec<(Pipe, Vec<Node>)>, otherwise: Option<Vec<Node>> },
    Range { pipe: Pipe, body: Vec<Node>, otherwise: Option<Vec<Node>> },
    With { pipe: Pipe, body: Vec<Node>, otherwise: Option<Vec<Node>> },
}

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError(msg.into())
}

/// Text and action segments, with `{{-`/`-}}` whitespace trimming applied and comments dropped.
fn segments(src: &str) -> Result<Vec<(bool, String)>, TemplateError> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut action = &rest[start + 2..];
        let trim_left = action.starts_with('-') && action[1..].starts_with(|c: char| c.is_ascii_whitespace());
        if trim_left {
            action = &action[1..];
            text = text.trim_end();
        }
        out.push((false, text.to_string()));
        // Find the closing delimiter outside string literals.
        let bytes = action.as_bytes();
        let (mut i, mut quote) = (0, None::<u8>);
        let end = loop {
            if i + 1 >= bytes.len() {
                return Err(err("unclosed action: missing }}"));
            }
            match (quote, bytes[i]) {
                (Some(b'"'), b'\\') => i += 1,
                (Some(q), c) if c == q => quote = None,
                (None, c @ (b'"' | b'`' | b'\'')) => quote = Some(c),
                (None, b'}') if bytes[i + 1] == b'}' => break i,
                _ => {}
            }
            i += 1;
        };
        let mut inner = &action[..end];
        trim_next = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(|c: char| c.is_ascii_whitespace());
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push((true, inner.to_string()));
        }
        rest = &action[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    out.push((false, text.to_string()));
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Open,
    Close,
    Pipe,
    Declare,
    Assign,
    Comma,
}

fn unescape(s: &str) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            other => return Err(err(format!("unsupported escape \\{}", other.unwrap_or(' ')))),
        }
    }
    Ok(out)
}

fn tokens(action: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = action.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => (out.push(Tok::Open), i += 1).1,
            ')' => (out.push(Tok::Close), i += 1).1,
            '|' => (out.push(Tok::Pipe), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            ':' if chars.get(i + 1) == Some(&'=') => (out.push(Tok::Declare), i += 2).1,
            '=' => (out.push(Tok::Assign), i += 1).1,
            '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' {
                    j += if chars[j] == '\\' { 2 } else { 1 };
                }
                if j >= chars.len() {
                    return Err(err("unterminated string"));
                }
                out.push(Tok::Str(unescape(&chars[i + 1..j].iter().collect::<String>())?));
                i = j + 1;
            }
            '`' => {
                let j = chars[i + 1..].iter().position(|c| *c == '`').ok_or_else(|| err("unterminated raw string"))?;
                out.push(Tok::Str(chars[i + 1..i + 1 + j].iter().collect()));
                i += j + 2;
            }
            c if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let j = (i + 1..chars.len())
                    .find(|&j| !(chars[j].is_ascii_digit() || chars[j] == '.'))
                    .unwrap_or(chars.len());
                let s: String = chars[i..j].iter().collect();
                out.push(Tok::Num(s.parse().map_err(|_| err(format!("bad number {s}")))?));
                i = j;
            }
            _ => {
                let j = (i..chars.len())
                    .find(|&j| {
                        chars[j].is_whitespace()
                            || "()|,=".contains(chars[j])
                            || (chars[j] == ':' && chars.get(j + 1) == Some(&'='))
                    })
                    .unwrap_or(chars.len());
                if j == i {
                    return Err(err(format!("unexpected {c:?} in action")));
                }
                out.push(Tok::Word(chars[i..j].iter().collect()));
                i = j;
            }
        }
    }
    Ok(out)
}

/// `.A.B` → ["A", "B"]; `.` → [].
fn fields(word: &str) -> Vec<String> {
    word.split('.').filter(|s| !s.is_empty()).map(String::from).collect()
}

fn parse_pipe(toks: &[Tok]) -> Result<Pipe, TemplateError> {
    let mut toks = toks;
    let mut pipe = Pipe { vars: Vec::new(), declare: false, cmds: Vec::new() };
    // `$a, $b :=` or `$a =` at the start.
    if let Some(pos) = toks.iter().position(|t| matches!(t, Tok::Declare | Tok::Assign)) {
        let head = &toks[..pos];
        if !head.is_empty()
            && head.iter().all(|t| matches!(t, Tok::Comma) || matches!(t, Tok::Word(w) if w.starts_with('$')))
        {
            pipe.vars = head.iter().filter_map(|t| if let Tok::Word(w) = t { Some(w.clone()) } else { None }).collect();
            pipe.declare = toks[pos] == Tok::Declare;
            toks = &toks[pos + 1..];
        }
    }
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err(err("empty command in pipeline"));
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
            }
            Tok::Open => {
                let mut depth = 0;
                let close = (i..toks.len())
                    .find(|&j| {
                        match toks[j] {
                            Tok::Open => depth += 1,
                            Tok::Close => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .ok_or_else(|| err("unclosed ("))?;
                let inner = parse_pipe(&toks[i + 1..close])?;
                i = close;
                // `(x).Field`
                let mut trail = Vec::new();
                if let Some(Tok::Word(w)) = toks.get(i + 1) {
                    if w.starts_with('.') {
                        trail = fields(w);
                        i += 1;
                    }
                }
                cmd.push(Arg::Sub(Box::new(inner), trail));
            }
            Tok::Str(s) => cmd.push(Arg::Str(s.clone())),
            Tok::Num(n) => cmd.push(Arg::Num(*n)),
            Tok::Word(w) if w.starts_with('.') => cmd.push(Arg::Field(fields(w))),
            Tok::Word(w) if w.starts_with('$') => {
                let mut parts = w.splitn(2, '.');
                let name = parts.next().unwrap_or("$").to_string();
                cmd.push(Arg::Var(name, parts.next().map(fields).unwrap_or_default()));
            }
            Tok::Word(w) => cmd.push(match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Ident(w.clone()),
            }),
            other => return Err(err(format!("unexpected {other:?} in pipeline"))),
        }
        i += 1;
    }
    if !cmd.is_empty() {
        pipe.cmds.push(cmd);
    }
    if pipe.cmds.is_empty() && pipe.vars.is_empty() {
        return Err(err("missing value for command"));
    }
    Ok(pipe)
}

struct Parser {
    segs: Vec<(bool, String)>,
    pos: usize,
}

/// How a list ended: `{{ end }}`, `{{ else }}`, `{{ else if … }}` or the end of input.
enum Ending {
    End,
    Else,
    ElseIf(Pipe),
    Eof,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Ending), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.segs.len() {
            let (is_action, text) = self.segs[self.pos].clone();
            self.pos += 1;
            if !is_action {
                if !text.is_empty() {
                    nodes.push(Node::Text(text));
                }
                continue;
            }
            let toks = tokens(&text)?;
            let (head, rest) = match toks.first() {
                Some(Tok::Word(w)) => (w.as_str(), &toks[1..]),
                _ => ("", &toks[..]),
            };
            match head {
                "end" => return Ok((nodes, Ending::End)),
                "else" => {
                    return Ok((
                        nodes,
                        match rest.first() {
                            Some(Tok::Word(w)) if w == "if" => Ending::ElseIf(parse_pipe(&rest[1..])?),
                            Some(Tok::Word(w)) if w == "with" => {
                                return Err(err("else with is not supported"));
                            }
                            _ => Ending::Else,
                        },
                    ))
                }
                "if" => {
                    let mut branches = vec![];
                    let mut cond = parse_pipe(rest)?;
                    let otherwise = loop {
                        let (body, ending) = self.list()?;
                        branches.push((cond, body));
                        match ending {
                            Ending::End => break None,
                            Ending::ElseIf(p) => cond = p,
                            Ending::Else => break Some(self.until_end()?),
                            Ending::Eof => return Err(err("unexpected EOF: missing {{end}}")),
                        }
                    };
                    nodes.push(Node::If { branches, otherwise });
                }
                "range" | "with" => {
                    let pipe = parse_pipe(rest)?;
                    let (body, ending) = self.list()?;
                    let otherwise = match ending {
                        Ending::End => None,
                        Ending::Else => Some(self.until_end()?),
                        Ending::ElseIf(_) => return Err(err(format!("else if inside {head}"))),
                        Ending::Eof => return Err(err("unexpected EOF: missing {{end}}")),
                    };
                    nodes.push(if head == "range" {
                        Node::Range { pipe, body, otherwise }
                    } else {
                        Node::With { pipe, body, otherwise }
                    });
                }
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(err(format!("{{{{{head}}}}} is not supported")))
                }
                _ => nodes.push(Node::Action(parse_pipe(&toks)?)),
            }
        }
        Ok((nodes, Ending::Eof))
    }

    fn until_end(&mut self) -> Result<Vec<Node>, TemplateError> {
        match self.list()? {
            (nodes, Ending::End) => Ok(nodes),
            _ => Err(err("expected {{end}}")),
        }
    }
}

/// Parses template source.
pub fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let mut p = Parser { segs: segments(src)?, pos: 0 };
    match p.list()? {
        (nodes, Ending::Eof) => Ok(nodes),
        (_, Ending::End) => Err(err("unexpected {{end}}")),
        _ => Err(err("unexpected {{else}}")),
    }
}
