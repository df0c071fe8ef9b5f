//! Each agent `corral launch` knows: its program, how to install it, and how it is told the
//! server, key, model and context — for a launch (environment and arguments) and for `--config`
//! (its own configuration file).
//!
//! - Claude Code speaks Anthropic's Messages API. It reads `ANTHROPIC_BASE_URL` and
//!   `ANTHROPIC_AUTH_TOKEN`; each of its model roles (the main model, the small fast one for titles,
//!   subagents) is set to the one model; `ANTHROPIC_CUSTOM_HEADERS` carries the context header.
//!   Its attribution header is turned off: it puts a line in the system prompt that changes with
//!   every request, which would defeat the server's prompt cache. `--config` writes the same
//!   variables into the `env` of `~/.claude/settings.json`.
//! - Codex speaks OpenAI's Responses API, to a provider defined with `-c` overrides (base URL,
//!   `wire_api = "responses"`, the key's variable, the header) and the model's context window.
//!   `--config` writes that provider and a `corral` profile into `~/.codex/config.toml`.
//! - OpenCode reads its configuration as JSON from `OPENCODE_CONFIG_CONTENT`: a provider through
//!   the OpenAI-compatible AI SDK package at `/v1`, the model with tool calling and its limits.
//!   `--config` merges that into `~/.config/opencode/opencode.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use corral_types::api::CONTEXT_HEADER;

use super::Target;

/// The provider's name in the agents' configurations.
const PROVIDER: &str = "corral";
/// Most tokens of one answer OpenCode plans for.
const OPENCODE_OUTPUT: u32 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    Claude,
    Codex,
    OpenCode,
}

impl Agent {
    pub const ALL: [Agent; 3] = [Agent::Claude, Agent::Codex, Agent::OpenCode];

    pub fn parse(name: &str) -> Option<Agent> {
        match name.to_ascii_lowercase().as_str() {
            "claude" | "claude-code" => Some(Agent::Claude),
            "codex" => Some(Agent::Codex),
            "opencode" => Some(Agent::OpenCode),
            _ => None,
        }
    }

    pub fn names() -> String {
        Agent::ALL.map(|a| a.name()).join(", ")
    }

    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::OpenCode => "opencode",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Agent::Claude => "Claude Code",
            Agent::Codex => "Codex",
            Agent::OpenCode => "OpenCode",
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::OpenCode => "opencode",
        }
    }

    pub fn install(self) -> &'static str {
        match self {
            Agent::Claude => "npm install -g @anthropic-ai/claude-code",
            Agent::Codex => "npm install -g @openai/codex",
            Agent::OpenCode => "npm install -g opencode-ai",
        }
    }

    /// Arguments before the user's own.
    pub fn args(self, t: &Target) -> Vec<String> {
        match self {
            Agent::Claude => vec!["--model".into(), t.model.clone()],
            Agent::Codex => {
                let mut args = Vec::new();
                for (key, value) in codex_settings(t) {
                    args.push("-c".to_string());
                    args.push(format!("{key}={value}"));
                }
                args.extend(["-m".to_string(), t.model.clone()]);
                args
            }
            // The model is in the configuration: arguments before a subcommand would stop
            // `opencode run …` from parsing.
            Agent::OpenCode => Vec::new(),
        }
    }

    /// Environment variables set for the agent.
    pub fn env(self, t: &Target) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self {
            Agent::Claude => claude_env(t),
            Agent::Codex => vec![("CORRAL_API_KEY", t.key.clone())],
            Agent::OpenCode => vec![
                ("OPENCODE_CONFIG_CONTENT", opencode_config(t).to_string()),
                // Nothing to fetch from the internet: the model list is the one given here.
                ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Variables removed from the agent's environment: credentials for the real service that
    /// would win over the ones given.
    pub fn env_removed(self) -> &'static [&'static str] {
        match self {
            Agent::Claude => &["ANTHROPIC_API_KEY"],
            Agent::Codex | Agent::OpenCode => &[],
        }
    }

    /// The configuration file `--config` writes.
    pub fn config_file(self, home: &Path) -> PathBuf {
        match self {
            Agent::Claude => home.join(".claude/settings.json"),
            Agent::Codex => home.join(".codex/config.toml"),
            Agent::OpenCode => home.join(".config/opencode/opencode.json"),
        }
    }

    /// Writes the settings into `file`, keeping what else it holds.
    pub fn write_config(self, file: &Path, t: &Target) -> anyhow::Result<()> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", file.display())),
        };
        let new = match self {
            Agent::Claude => {
                let mut settings = json_object(file, &text)?;
                let env = settings.as_object_mut().expect("an object").entry("env").or_insert_with(|| json!({}));
                let Some(env) = env.as_object_mut() else {
                    anyhow::bail!("{}: \"env\" is not an object", file.display())
                };
                for (k, v) in claude_env(t) {
                    env.insert(k.to_string(), Value::String(v));
                }
                serde_json::to_string_pretty(&settings)? + "\n"
            }
            Agent::Codex => codex_config(&text, t),
            Agent::OpenCode => {
                let mut config = json_object(file, &text)?;
                merge(&mut config, opencode_config(t));
                serde_json::to_string_pretty(&config)? + "\n"
            }
        };
        let tmp = file.with_extension("corral-tmp");
        std::fs::write(&tmp, new).with_context(|| format!("could not write {}", tmp.display()))?;
        std::fs::rename(&tmp, file).with_context(|| format!("could not write {}", file.display()))
    }

    /// What to run after `--config`.
    pub fn after_config(self) -> String {
        match self {
            Agent::Claude => "start it with: claude".into(),
            Agent::Codex => {
                format!("start it with: CORRAL_API_KEY=<key, if the server asks for one> codex --profile {PROVIDER}")
            }
            Agent::OpenCode => "start it with: opencode".into(),
        }
    }
}

fn claude_env(t: &Target) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ANTHROPIC_BASE_URL", t.base.clone()),
        ("ANTHROPIC_AUTH_TOKEN", t.key.clone()),
        ("ANTHROPIC_CUSTOM_HEADERS", format!("{CONTEXT_HEADER}: {}", t.context)),
        ("CLAUDE_CODE_ATTRIBUTION_HEADER", "0".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
    ];
    for role in [
        "ANTHROPIC_MODEL",
        "ANTHROPIC_DEFAULT_OPUS_MODEL",
        "ANTHROPIC_DEFAULT_SONNET_MODEL",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL",
        "ANTHROPIC_SMALL_FAST_MODEL",
        "CLAUDE_CODE_SUBAGENT_MODEL",
    ] {
        env.push((role, t.model.clone()));
    }
    env
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Codex's settings for a launch, as `-c key=value` pairs (values in TOML).
fn codex_settings(t: &Target) -> Vec<(String, String)> {
    vec![
        ("model_provider".into(), toml_string(PROVIDER)),
        (format!("model_providers.{PROVIDER}"), codex_provider(t)),
        ("model_context_window".into(), t.context.to_string()),
    ]
}

/// The provider as a TOML inline table.
fn codex_provider(t: &Target) -> String {
    format!(
        "{{ name = \"Corral\", base_url = {}, wire_api = \"responses\", env_key = \"CORRAL_API_KEY\", http_headers = {{ {} = {} }} }}",
        toml_string(&format!("{}/v1", t.base)),
        toml_string(CONTEXT_HEADER),
        toml_string(&t.context.to_string())
    )
}

const CODEX_BEGIN: &str = "# corral launch --config: begin (corral launch codex --restore puts the file back)";
const CODEX_END: &str = "# corral launch --config: end";

/// `text` (a Codex config.toml) with Corral's provider and profile in a marked block at its end,
/// replacing the block an earlier `--config` wrote. Tables at the end leave the user's own
/// top-level keys where they are.
fn codex_config(text: &str, t: &Target) -> String {
    let mut kept = String::new();
    let mut inside = false;
    for line in text.lines() {
        match line.trim() {
            CODEX_BEGIN => inside = true,
            CODEX_END => inside = false,
            _ if !inside => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => {}
        }
    }
    let kept = kept.trim_end();
    let sep = if kept.is_empty() { "" } else { "\n\n" };
    format!(
        "{kept}{sep}{CODEX_BEGIN}\n[model_providers.{PROVIDER}]\nname = \"Corral\"\nbase_url = {}\nwire_api = \"responses\"\n\
         env_key = \"CORRAL_API_KEY\"\nhttp_headers = {{ {} = {} }}\n\n[profiles.{PROVIDER}]\nmodel_provider = {}\nmodel = {}\n\
         model_context_window = {}\n{CODEX_END}\n",
        toml_string(&format!("{}/v1", t.base)),
        toml_string(CONTEXT_HEADER),
        toml_string(&t.context.to_string()),
        toml_string(PROVIDER),
        toml_string(&t.model),
        t.context
    )
}

fn opencode_config(t: &Target) -> Value {
    let mut models = serde_json::Map::new();
    models.insert(
        t.model.clone(),
        json!({"name": t.model, "tool_call": true, "limit": {"context": t.context, "output": OPENCODE_OUTPUT}}),
    );
    json!({
        "$schema": "https://opencode.ai/config.json",
        "model": format!("{PROVIDER}/{}", t.model),
        "provider": {PROVIDER: {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Corral",
            "options": {"baseURL": format!("{}/v1", t.base), "apiKey": t.key, "headers": {CONTEXT_HEADER: t.context.to_string()}},
            "models": models,
        }},
    })
}

/// The JSON object in `text` (empty: a new one); anything else is an error naming the file.
fn json_object(file: &Path, text: &str) -> anyhow::Result<Value> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_str(text).with_context(|| {
        format!("{} is not plain JSON (comments?); edit it by hand, or move it away", file.display())
    })?;
    anyhow::ensure!(v.is_object(), "{} does not hold a JSON object", file.display());
    Ok(v)
}

/// `patch`'s keys into `base`, objects merged key by key, other values replaced.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { base: "http://127.0.0.1:11434".into(), key: "k".into(), model: "qwen\"x".into(), context: 32768 }
    }

    #[test]
    fn codex_block_is_replaced_not_repeated_and_the_rest_kept() {
        let user = "model = \"gpt-5\"\n\n[profiles.work]\nmodel = \"o3\"\n";
        let once = codex_config(user, &target());
        let twice = codex_config(&once, &Target { context: 65536, ..target() });
        assert!(twice.starts_with(user.trim_end()), "{twice}");
        assert_eq!(twice.matches(CODEX_BEGIN).count(), 1, "{twice}");
        assert!(twice.contains("model_context_window = 65536") && !twice.contains("32768"), "{twice}");
        assert!(twice.contains("model = \"qwen\\\"x\""), "the name is escaped: {twice}");
    }

    #[test]
    fn codex_arguments_are_toml_overrides() {
        let args = Agent::Codex.args(&target());
        assert_eq!(args[0], "-c");
        assert_eq!(args[1], "model_provider=\"corral\"");
        assert!(
            args[3].starts_with("model_providers.corral={ name = \"Corral\", base_url = \"http://127.0.0.1:11434/v1\"")
        );
        assert!(args[3].ends_with("http_headers = { \"X-Corral-Num-Ctx\" = \"32768\" } }"), "{}", args[3]);
        assert_eq!(&args[args.len() - 2..], ["-m", "qwen\"x"]);
    }

    #[test]
    fn opencode_config_merges_into_the_users() {
        let mut user = json!({"theme": "dark", "provider": {"other": {"name": "x"}}});
        merge(&mut user, opencode_config(&target()));
        assert_eq!(user["theme"], "dark");
        assert_eq!(user["provider"]["other"]["name"], "x");
        assert_eq!(user["provider"]["corral"]["options"]["baseURL"], "http://127.0.0.1:11434/v1");
        assert_eq!(user["provider"]["corral"]["models"]["qwen\"x"]["limit"]["context"], 32768);
        assert_eq!(user["model"], "corral/qwen\"x");
    }

    #[test]
    fn claude_roles_all_use_the_model() {
        let env = Agent::Claude.env(&target());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ANTHROPIC_DEFAULT_HAIKU_MODEL"), Some("qwen\"x"));
        assert_eq!(get("ANTHROPIC_CUSTOM_HEADERS"), Some("X-Corral-Num-Ctx: 32768"));
        assert_eq!(get("CLAUDE_CODE_ATTRIBUTION_HEADER"), Some("0"));
    }
}
