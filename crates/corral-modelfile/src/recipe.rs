//! From parsed commands to the typed parts of a create request.

use std::path::{Path, PathBuf};

use corral_types::api::Message;
use corral_types::{params, Overlay};

use crate::lexer::{check_parameter, Instruction, Modelfile, ParseError};

/// A value and the Modelfile line it came from, so later errors (a missing file) can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub line: usize,
}

/// What a Modelfile asks for, with every PARAMETER typed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recipe {
    /// Every FROM, in order. Each is a path or a model name; the caller decides which.
    pub from: Vec<Sourced>,
    /// ADAPTER paths (Ollama uses the last one).
    pub adapters: Vec<Sourced>,
    pub drafts: Vec<Sourced>,
    /// TEMPLATE, SYSTEM, LICENSE, PARAMETER, MESSAGE, REQUIRES, RENDERER and PARSER.
    pub overlay: Overlay,
    /// Lines that were accepted but ignored (deprecated parameters), as `warning: …` text.
    pub warnings: Vec<String>,
}

impl Modelfile {
    /// Checks the commands' meaning and collects them into a [`Recipe`].
    pub fn recipe(&self) -> Result<Recipe, ParseError> {
        let mut r = Recipe::default();
        let o = &mut r.overlay;
        for (cmd, &line) in self.commands.iter().zip(&self.lines) {
            let sourced = || Sourced { value: cmd.args.clone(), line };
            match &cmd.instruction {
                Instruction::From => r.from.push(sourced()),
                Instruction::Adapter => r.adapters.push(sourced()),
                Instruction::Draft => r.drafts.push(sourced()),
                Instruction::Template => o.template = Some(cmd.args.clone()),
                Instruction::System => o.system = Some(cmd.args.clone()),
                Instruction::License => o.license.push(cmd.args.clone()),
                Instruction::Renderer => o.renderer = Some(cmd.args.clone()),
                Instruction::Parser => o.parser = Some(cmd.args.clone()),
                Instruction::Message(role) => o.messages.push(Message::new(role, &cmd.args)),
                Instruction::Requires => {
                    let v = cmd.args.strip_prefix('v').unwrap_or(&cmd.args);
                    if !is_semver(v) {
                        return Err(ParseError::at(
                            line,
                            format!("requires must be a valid semver (e.g. 0.14.0), got {:?}", cmd.args),
                        ));
                    }
                    o.requires = Some(v.to_string());
                }
                Instruction::Parameter(name) => {
                    check_parameter(name, &cmd.args, line)?;
                    if params::is_deprecated(name) {
                        r.warnings.push(format!("warning: parameter {name} is deprecated"));
                    } else {
                        params::insert_text_param(&mut o.parameters, name, &cmd.args)
                            .map_err(|e| ParseError::at(line, e.to_string()))?;
                    }
                }
            }
        }
        if r.from.is_empty() {
            return Err(ParseError { line: None, message: "no FROM line".into() });
        }
        Ok(r)
    }
}

/// `MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`, the forms Go's `x/mod/semver` accepts.
///
/// Hand-written to accept what Ollama accepts for `REQUIRES`: the `semver` crate wants all three
/// numbers and would refuse `1` and `1.2`.
fn is_semver(v: &str) -> bool {
    let (core, _build) = v.split_once('+').unwrap_or((v, ""));
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() <= 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
}

/// Resolves a FROM/ADAPTER argument the way Ollama does: `~` and `~/…` against `home`, absolute
/// paths as they are, anything else relative to the Modelfile's directory.
pub fn expand_path(arg: &str, modelfile_dir: &Path, home: Option<&Path>) -> PathBuf {
    if let Some(home) = home {
        if arg == "~" {
            return home.to_path_buf();
        }
        if let Some(rest) = arg.strip_prefix("~/") {
            return home.join(rest);
        }
    }
    let p = Path::new(arg);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        modelfile_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn recipe(text: &str) -> Result<Recipe, String> {
        Modelfile::parse(text).unwrap().recipe().map_err(|e| e.to_string())
    }

    #[test]
    fn collects_everything() {
        let r = recipe(
            "FROM base\nSYSTEM one\nSYSTEM two\nLICENSE a\nLICENSE b\nPARAMETER stop x\nPARAMETER stop y\n\
             PARAMETER num_ctx 2048\nPARAMETER mirostat 2\nMESSAGE user hi\nREQUIRES v0.14.0\nADAPTER ./l.gguf",
        )
        .unwrap();
        assert_eq!(r.from, vec![Sourced { value: "base".into(), line: 1 }]);
        assert_eq!(r.overlay.system.as_deref(), Some("two"));
        assert_eq!(r.overlay.license, vec!["a", "b"]);
        assert_eq!(Value::Object(r.overlay.parameters), json!({"stop": ["x", "y"], "num_ctx": 2048}));
        assert_eq!(r.overlay.messages, vec![Message::new("user", "hi")]);
        assert_eq!(r.overlay.requires.as_deref(), Some("0.14.0"));
        assert_eq!(r.adapters[0].line, 12);
        assert_eq!(r.warnings, vec!["warning: parameter mirostat is deprecated"]);
    }

    #[test]
    fn meaning_errors() {
        assert_eq!(recipe("SYSTEM s").unwrap_err(), "no FROM line");
        assert_eq!(recipe("# only a comment\n").unwrap_err(), "no FROM line");
        assert_eq!(recipe("FROM m\nPARAMETER numa true").unwrap_err(), "(line 2): unknown parameter 'numa'");
        assert_eq!(recipe("FROM m\n\nPARAMETER num_ctx big").unwrap_err(), "(line 3): invalid int value [big]");
        assert_eq!(recipe("FROM m\nPARAMETER top_p x").unwrap_err(), "(line 2): invalid float value [x]");
        assert_eq!(recipe("FROM m\nPARAMETER use_mmap maybe").unwrap_err(), "(line 2): invalid bool value [maybe]");
        assert_eq!(
            recipe("FROM m\nREQUIRES latest").unwrap_err(),
            "(line 2): requires must be a valid semver (e.g. 0.14.0), got \"latest\""
        );
    }

    #[test]
    fn semver_forms() {
        for ok in ["0.14.0", "1", "1.2", "1.2.3-rc.1", "1.2.3+build.5", "10.0.0-alpha-1"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["", "a.b.c", "1.2.3.4", "01.2.3", "1.2.3-", "1..2", "1.2.3-rc..1"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let dir = Path::new("/work/models");
        let home = Path::new("/home/u");
        assert_eq!(expand_path("./m.gguf", dir, Some(home)), Path::new("/work/models/./m.gguf"));
        assert_eq!(expand_path("m.gguf", dir, Some(home)), Path::new("/work/models/m.gguf"));
        assert_eq!(expand_path("/abs/m.gguf", dir, Some(home)), Path::new("/abs/m.gguf"));
        assert_eq!(expand_path("~/m.gguf", dir, Some(home)), Path::new("/home/u/m.gguf"));
        assert_eq!(expand_path("~", dir, Some(home)), Path::new("/home/u"));
    }
}
