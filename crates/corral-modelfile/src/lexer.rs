//! The Modelfile lexer and printer.

use std::fmt;

use corral_types::params;

/// Message roles a MESSAGE instruction accepts (lower case only, as in Ollama).
pub const MESSAGE_ROLES: [&str; 3] = ["system", "user", "assistant"];

const INSTRUCTIONS: &str = r#""from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message", or "requires""#;

/// One instruction keyword, with the sub-argument some of them take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From,
    /// `PARAMETER <name> <value>`.
    Parameter(String),
    Template,
    System,
    Adapter,
    License,
    /// `MESSAGE <role> <content>`.
    Message(String),
    Requires,
    Draft,
    Renderer,
    Parser,
}

impl Instruction {
    fn from_keyword(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "from" => Instruction::From,
            "parameter" => Instruction::Parameter(String::new()),
            "template" => Instruction::Template,
            "system" => Instruction::System,
            "adapter" => Instruction::Adapter,
            "license" => Instruction::License,
            "message" => Instruction::Message(String::new()),
            "requires" => Instruction::Requires,
            "draft" => Instruction::Draft,
            "renderer" => Instruction::Renderer,
            "parser" => Instruction::Parser,
            _ => return None,
        })
    }

    fn keyword(&self) -> &'static str {
        match self {
            Instruction::From => "FROM",
            Instruction::Parameter(_) => "PARAMETER",
            Instruction::Template => "TEMPLATE",
            Instruction::System => "SYSTEM",
            Instruction::Adapter => "ADAPTER",
            Instruction::License => "LICENSE",
            Instruction::Message(_) => "MESSAGE",
            Instruction::Requires => "REQUIRES",
            Instruction::Draft => "DRAFT",
            Instruction::Renderer => "RENDERER",
            Instruction::Parser => "PARSER",
        }
    }
}

/// One instruction and its (unquoted) argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub args: String,
}

impl Command {
    pub fn new(instruction: Instruction, args: impl Into<String>) -> Self {
        Command { instruction, args: args.into() }
    }
}

/// A parsed Modelfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modelfile {
    pub commands: Vec<Command>,
    /// The 1-based line each command starts on (same length as `commands`; 0 for commands that
    /// were not parsed from text).
    pub lines: Vec<usize>,
}

/// A Modelfile that could not be parsed: which line, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("(line {l}): ")).unwrap_or_default())]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError { line: Some(line), message: message.into() }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Between instructions.
    Nil,
    /// Reading the instruction keyword.
    Name,
    /// Reading a PARAMETER's name.
    ParamName,
    /// Reading a MESSAGE's role.
    Role,
    /// Reading the argument, up to an unquoted end of line.
    Value,
    Comment,
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Go's `strconv.IsPrint` for the characters that matter here: everything but control characters.
fn is_print(c: char) -> bool {
    !c.is_control()
}

/// Strips `"""…"""` or `"…"` quoting. `None` while a quote is still open.
fn unquote(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix(r#"""""#) {
        return rest.strip_suffix(r#"""""#).filter(|_| s.len() >= 6);
    }
    if let Some(rest) = s.strip_prefix('"') {
        return rest.strip_suffix('"');
    }
    Some(s)
}

struct Lexer {
    state: State,
    buf: String,
    line: usize,
    /// Line the current instruction started on.
    start_line: usize,
    instruction: Option<Instruction>,
    out: Modelfile,
}

impl Lexer {
    fn finish_value(&mut self) -> Result<bool, ParseError> {
        let Some(value) = unquote(self.buf.trim()) else {
            return Ok(false);
        };
        let value = value.to_string();
        let instruction = self.instruction.take().expect("a value always follows an instruction");
        self.out.commands.push(Command { instruction, args: value });
        self.out.lines.push(self.start_line);
        self.buf.clear();
        self.state = State::Nil;
        Ok(true)
    }

    /// Called when the keyword ends; `c` is the character that ended it.
    fn finish_keyword(&mut self, c: Option<char>) -> Result<(), ParseError> {
        let word = std::mem::take(&mut self.buf);
        let ends_word = c.is_none_or(|c| is_space(c) || is_newline(c));
        let Some(instruction) = Instruction::from_keyword(&word).filter(|_| ends_word) else {
            let mut shown = word;
            if let Some(c) = c.filter(|c| !is_newline(*c) && !is_space(*c)) {
                shown.push(c);
            }
            return Err(ParseError::at(
                self.line,
                format!("unknown instruction {shown:?}: command must be one of {INSTRUCTIONS}"),
            ));
        };
        if !c.is_some_and(is_space) {
            return Err(ParseError::at(self.start_line, format!("{} needs an argument", instruction.keyword())));
        }
        self.state = match instruction {
            Instruction::Parameter(_) => State::ParamName,
            Instruction::Message(_) => State::Role,
            _ => State::Value,
        };
        self.instruction = Some(instruction);
        Ok(())
    }

    fn step(&mut self, c: char) -> Result<(), ParseError> {
        match self.state {
            State::Nil => {
                if c == '#' {
                    self.state = State::Comment;
                } else if !is_space(c) && !is_newline(c) {
                    self.state = State::Name;
                    self.start_line = self.line;
                    self.buf.push(c);
                }
            }
            State::Comment => {
                if is_newline(c) {
                    self.state = State::Nil;
                }
            }
            State::Name => {
                if c.is_alphabetic() {
                    self.buf.push(c);
                } else {
                    self.finish_keyword(Some(c))?;
                }
            }
            State::ParamName => {
                if c.is_ascii_alphanumeric() || c == '_' {
                    self.buf.push(c);
                } else if is_space(c) && self.buf.is_empty() {
                    // Extra spaces between PARAMETER and the name.
                } else if is_space(c) {
                    let name = std::mem::take(&mut self.buf);
                    self.instruction = Some(Instruction::Parameter(name));
                    self.state = State::Value;
                } else if is_newline(c) {
                    return Err(ParseError::at(self.start_line, "PARAMETER needs a name and a value"));
                } else {
                    let mut shown = std::mem::take(&mut self.buf);
                    shown.push(c);
                    return Err(ParseError::at(
                        self.line,
                        format!("invalid parameter name {shown:?}: names are letters, digits and '_'"),
                    ));
                }
            }
            State::Role => {
                if c.is_alphabetic() {
                    self.buf.push(c);
                } else if is_space(c) && self.buf.is_empty() {
                } else if is_space(c) && MESSAGE_ROLES.contains(&self.buf.as_str()) {
                    let role = std::mem::take(&mut self.buf);
                    self.instruction = Some(Instruction::Message(role));
                    self.state = State::Value;
                } else {
                    let mut shown = std::mem::take(&mut self.buf);
                    if !is_space(c) && !is_newline(c) {
                        shown.push(c);
                    }
                    return Err(ParseError::at(
                        self.line,
                        format!(r#"message role must be one of "system", "user", or "assistant", got {shown:?}"#),
                    ));
                }
            }
            State::Value => {
                if is_newline(c) {
                    if !self.finish_value()? {
                        // Inside an open quote: the newline is part of the value.
                        self.buf.push(c);
                    }
                } else if is_space(c) || is_print(c) {
                    self.buf.push(c);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Modelfile, ParseError> {
        match self.state {
            State::Nil | State::Comment => {}
            State::Value => {
                if !self.finish_value()? {
                    let quote = if self.buf.trim_start().starts_with(r#"""""#) { r#"""""# } else { "\"" };
                    return Err(ParseError::at(self.start_line, format!("unexpected EOF: unterminated {quote} quote")));
                }
            }
            State::Name => self.finish_keyword(None)?,
            State::ParamName => return Err(ParseError::at(self.start_line, "PARAMETER needs a name and a value")),
            State::Role => return Err(ParseError::at(self.start_line, "MESSAGE needs a role and a message")),
        }
        Ok(self.out)
    }
}

impl Modelfile {
    /// Parses Modelfile text. Checks the syntax only; [`Modelfile::recipe`] checks the meaning.
    pub fn parse(text: &str) -> Result<Modelfile, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lexer = Lexer {
            state: State::Nil,
            buf: String::new(),
            line: 1,
            start_line: 1,
            instruction: None,
            out: Modelfile::default(),
        };
        let mut prev = '\0';
        for c in text.chars() {
            lexer.step(c)?;
            // "\r\n" is one line break, not two.
            if c == '\n' && prev != '\r' || c == '\r' {
                lexer.line += 1;
            }
            prev = c;
        }
        lexer.finish()
    }

    /// Parses a file's bytes: UTF-8 with or without a BOM, or UTF-16 with a BOM.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Modelfile, ParseError> {
        let utf16 = |units: Vec<u16>| {
            String::from_utf16(&units).map_err(|_| ParseError { line: None, message: "invalid UTF-16 text".into() })
        };
        let text = match bytes {
            [0xff, 0xfe, rest @ ..] => utf16(rest.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())?,
            [0xfe, 0xff, rest @ ..] => utf16(rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())?,
            _ => String::from_utf8(bytes.to_vec()).map_err(|e| ParseError {
                line: None,
                message: format!("Modelfile is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
            })?,
        };
        Modelfile::parse(&text)
    }

    /// Appends a command (for Modelfiles built in code, e.g. `show --modelfile`).
    pub fn push(&mut self, instruction: Instruction, args: impl Into<String>) {
        self.commands.push(Command::new(instruction, args));
        self.lines.push(0);
    }
}

/// Quotes a value so that it parses back unchanged: values that would be trimmed, cut at a line
/// break, or unquoted by the lexer get `"…"`, or `"""…"""` when they contain a `"`.
fn quote(s: &str) -> String {
    let needs = s.is_empty()
        || s.contains(['\n', '\r'])
        || s.starts_with(is_space)
        || s.ends_with(is_space)
        || s.starts_with('"');
    if !needs {
        s.to_string()
    } else if s.contains('"') {
        format!(r#""""{s}""""#)
    } else {
        format!("\"{s}\"")
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.instruction {
            Instruction::Parameter(name) => write!(f, "PARAMETER {name} {}", quote(&self.args)),
            Instruction::Message(role) => write!(f, "MESSAGE {role} {}", quote(&self.args)),
            other => write!(f, "{} {}", other.keyword(), quote(&self.args)),
        }
    }
}

impl fmt::Display for Modelfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.commands {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Checks a PARAMETER's value against the parameter table (used by [`Modelfile::recipe`]).
pub(crate) fn check_parameter(name: &str, value: &str, line: usize) -> Result<(), ParseError> {
    if params::is_deprecated(name) {
        return Ok(());
    }
    params::parse_text_value(name, value).map(|_| ()).map_err(|e| ParseError::at(line, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(text: &str) -> Vec<(Instruction, String)> {
        Modelfile::parse(text).unwrap().commands.into_iter().map(|c| (c.instruction, c.args)).collect()
    }

    fn err(text: &str) -> String {
        Modelfile::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn every_instruction() {
        let text = r#"
# a comment
from ./model.gguf
ADAPTER ./lora.gguf
Template """{{ .System }} {{ .Prompt }}"""
SYSTEM You are "helpful".
PARAMETER temperature 0.7
PARAMETER stop <|im_end|>
PARAMETER stop "User:"
LICENSE MIT
MESSAGE user Is Paris in France?
MESSAGE assistant Yes.
REQUIRES 0.14.0
DRAFT ./draft.gguf
RENDERER qwen3-coder
PARSER qwen3-coder
"#;
        assert_eq!(
            cmds(text),
            vec![
                (Instruction::From, "./model.gguf".into()),
                (Instruction::Adapter, "./lora.gguf".into()),
                (Instruction::Template, "{{ .System }} {{ .Prompt }}".into()),
                (Instruction::System, "You are \"helpful\".".into()),
                (Instruction::Parameter("temperature".into()), "0.7".into()),
                (Instruction::Parameter("stop".into()), "<|im_end|>".into()),
                (Instruction::Parameter("stop".into()), "User:".into()),
                (Instruction::License, "MIT".into()),
                (Instruction::Message("user".into()), "Is Paris in France?".into()),
                (Instruction::Message("assistant".into()), "Yes.".into()),
                (Instruction::Requires, "0.14.0".into()),
                (Instruction::Draft, "./draft.gguf".into()),
                (Instruction::Renderer, "qwen3-coder".into()),
                (Instruction::Parser, "qwen3-coder".into()),
            ]
        );
    }

    #[test]
    fn lexical_rules() {
        // Comments only where an instruction could start; '#' inside a value is literal.
        assert_eq!(
            cmds("FROM m\nSYSTEM use # freely\n  # indented comment\n"),
            vec![(Instruction::From, "m".into()), (Instruction::System, "use # freely".into())]
        );
        // Inner spaces and tabs are kept; surrounding ones trimmed.
        assert_eq!(cmds("FROM m\nSYSTEM   a  b\tc   \n")[1].1, "a  b\tc");
        // Quotes may span lines and keep inner whitespace.
        assert_eq!(cmds("FROM m\nSYSTEM \"\"\"\n  line one\n  line two\n\"\"\"")[1].1, "\n  line one\n  line two\n");
        assert_eq!(cmds("FROM m\nSYSTEM \"two\nlines\"")[1].1, "two\nlines");
        // Single quotes are not special.
        assert_eq!(cmds("FROM m\nSYSTEM 'x'")[1].1, "'x'");
        // CRLF line endings, BOM.
        assert_eq!(cmds("\u{feff}FROM m\r\nSYSTEM s\r\n").len(), 2);
        // Extra spaces after PARAMETER.
        assert_eq!(cmds("FROM m\nPARAMETER   top_k 5")[1].0, Instruction::Parameter("top_k".into()));
        // No trailing newline.
        assert_eq!(cmds("FROM m"), vec![(Instruction::From, "m".into())]);
    }

    #[test]
    fn utf16_with_bom() {
        let text = "FROM m\nSYSTEM héllo\n";
        let mut le = vec![0xff, 0xfe];
        le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xfe, 0xff];
        be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        for bytes in [le, be] {
            assert_eq!(Modelfile::parse_bytes(&bytes).unwrap().commands[1].args, "héllo");
        }
        assert_eq!(
            Modelfile::parse_bytes(b"FROM m\nSYSTEM \xc3\x28").unwrap_err().to_string(),
            "Modelfile is not valid UTF-8 (at byte 14)"
        );
    }

    #[test]
    fn errors_name_line_and_problem() {
        assert_eq!(
            err("FROM m\nFORM x"),
            format!("(line 2): unknown instruction \"FORM\": command must be one of {INSTRUCTIONS}")
        );
        assert_eq!(
            err("FROM m\nFROM2 x"),
            format!("(line 2): unknown instruction \"FROM2\": command must be one of {INSTRUCTIONS}")
        );
        assert_eq!(err("FROM m\nSYSTEM\n"), "(line 2): SYSTEM needs an argument");
        assert_eq!(err("FROM"), "(line 1): FROM needs an argument");
        assert_eq!(
            err("FROM m\nMESSAGE robot hi"),
            "(line 2): message role must be one of \"system\", \"user\", or \"assistant\", got \"robot\""
        );
        assert_eq!(
            err("FROM m\nMESSAGE User hi"),
            "(line 2): message role must be one of \"system\", \"user\", or \"assistant\", got \"User\""
        );
        assert_eq!(err("FROM m\nMESSAGE user"), "(line 2): MESSAGE needs a role and a message");
        assert_eq!(
            err("FROM m\nPARAMETER num-ctx 4"),
            "(line 2): invalid parameter name \"num-\": names are letters, digits and '_'"
        );
        assert_eq!(err("FROM m\nPARAMETER top_k\n"), "(line 2): PARAMETER needs a name and a value");
        assert_eq!(
            err("FROM m\n\nSYSTEM \"\"\"open\nstill open"),
            "(line 3): unexpected EOF: unterminated \"\"\" quote"
        );
        assert_eq!(err("FROM m\nSYSTEM \"open"), "(line 2): unexpected EOF: unterminated \" quote");
    }

    #[test]
    fn printing_quotes_only_when_needed() {
        let mut mf = Modelfile::default();
        mf.push(Instruction::From, "/models/blobs/sha256-abc");
        mf.push(Instruction::Template, "{{ .Prompt }}");
        mf.push(Instruction::System, "line\nbreak");
        mf.push(Instruction::License, "says \"hi\"\nthere");
        mf.push(Instruction::Parameter("stop".into()), " ");
        mf.push(Instruction::Message("user".into()), "\"quoted\"");
        mf.push(Instruction::System, "");
        assert_eq!(
            mf.to_string(),
            "FROM /models/blobs/sha256-abc\nTEMPLATE {{ .Prompt }}\nSYSTEM \"line\nbreak\"\nLICENSE \"\"\"says \"hi\"\nthere\"\"\"\nPARAMETER stop \" \"\nMESSAGE user \"\"\"\"quoted\"\"\"\"\nSYSTEM \"\"\n"
        );
    }

    #[test]
    fn printed_text_parses_back() {
        let values = [
            "plain",
            "  padded  ",
            "multi\nline\n",
            "has \"quotes\" inside\nand lines",
            "\"starts with a quote",
            "ends with a quote\"",
            "\"",
            "tabs\tinside",
            "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}",
            "",
            "# not a comment",
            "crlf\r\ninside",
        ];
        for v in values {
            let mut mf = Modelfile::default();
            mf.push(Instruction::From, "m");
            mf.push(Instruction::System, v);
            mf.push(Instruction::Message("user".into()), v);
            mf.push(Instruction::Parameter("stop".into()), v);
            let back = Modelfile::parse(&mf.to_string()).unwrap_or_else(|e| panic!("{v:?}: {e}\n{mf}"));
            assert_eq!(back.commands, mf.commands, "{v:?}");
        }
    }
}
