//! Issue 32: `corral launch` with the real coding agents — Claude Code, Codex and OpenCode, from
//! the npm registry at the versions in `tests/agents/package.json` (`scripts/agents-env.sh`
//! installs them and `scripts/test.sh` sets `CORRAL_TEST_AGENTS` to their programs' directory).
//!
//! Each runs non-interactively through `corral launch` against a keyed server with Qwen2.5-Coder
//! 0.5B (the tool-calling model here): it must start, send its requests, get answers it parses and
//! exit cleanly, with every request of the server's log answered 2xx. A 0.5B model finishes no
//! real task; what is checked is the protocol. Claude Code is given a short system prompt and two
//! tools: its own prompt is about 19,000 tokens, minutes of prefill on one CPU thread (it was run
//! in full by hand: see the issue's note).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{stderr, stdout, Server};

const KEY: &str = "corral-agents-key";

fn agents() -> PathBuf {
    PathBuf::from(std::env::var("CORRAL_TEST_AGENTS").unwrap_or_else(|_| {
        panic!("CORRAL_TEST_AGENTS is not set: run scripts/test.sh, or point it at the directory scripts/agents-env.sh prints")
    }))
}

fn server() -> Server {
    let server = Server::start_env(&[("CORRAL_API_KEYS", KEY)]);
    let modelfile = server.models.parent().unwrap().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::qwen_coder().display())).unwrap();
    server.ok(&["create", "qwen", "-f", modelfile.to_str().unwrap()]);
    let modelfile = server.models.parent().unwrap().join("Modelfile.smol");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::smollm2().display())).unwrap();
    server.ok(&["create", "smol", "-f", modelfile.to_str().unwrap()]);
    server
}

/// `corral launch ARGS` in a fresh home and work directory, with the agents on `PATH` (or not).
fn launch(server: &Server, home: &Path, with_agents: bool, args: &[&str]) -> Output {
    let work = home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    let path = if with_agents { format!("{}:{path}", agents().display()) } else { "/usr/bin:/bin".into() };
    Command::new(common::BIN)
        .arg("launch")
        .args(args)
        .env("OLLAMA_HOST", &server.addr)
        .env("OLLAMA_API_KEY", KEY)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .current_dir(&work)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The server's request lines since `from` (a log offset): method, path, status.
fn requests(server: &Server, from: usize) -> Vec<(String, String, u16)> {
    let log = server.log();
    log[from..]
        .lines()
        .filter(|l| l.contains("corral_server::guard:"))
        .filter_map(|l| {
            let rest = l.split("corral_server::guard: ").nth(1)?;
            let mut words = rest.split_whitespace();
            let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
            let status = rest.split("status=").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((method, path, status))
        })
        .collect()
}

/// Runs `agent` with `args` and requires: it exits 0, prints an answer, and each of its requests
/// (to `route` at least once) was answered 2xx.
fn run_agent(server: &Server, agent: &str, route: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let from = server.log().len();
    let started = std::time::Instant::now();
    let mut all = vec![agent, "--model", "qwen", "--"];
    all.extend_from_slice(args);
    let out = launch(server, home.path(), true, &all);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "{agent}: {:?}\nstdout:\n{text}\nstderr:\n{err}\nserver:\n{}",
        out.status,
        server.log()
    );
    assert!(err.contains(&format!("with qwen (32768 tokens of context) on http://{}", server.addr)), "{err}");
    let seen = requests(server, from);
    assert!(seen.iter().any(|(m, p, _)| m == "POST" && p == route), "{agent} never called {route}: {seen:?}");
    let refused: Vec<_> = seen.iter().filter(|(_, _, s)| !(200..300).contains(s)).collect();
    assert!(refused.is_empty(), "{agent}: {refused:?}\n{}", server.log());
    eprintln!("{agent}: {:.0} s, {} requests: {seen:?}\n{text}", started.elapsed().as_secs_f64(), seen.len());
    text
}

#[test]
fn issue_32_claude_code_through_corral_launch() {
    let server = server();
    let text = run_agent(
        &server,
        "claude",
        "/v1/messages",
        &["-p", "Say hello.", "--tools", "Read,Bash", "--system-prompt", "You are a coding assistant. Answer briefly."],
    );
    assert!(!text.trim().is_empty());
}

#[test]
fn issue_32_codex_through_corral_launch() {
    let server = server();
    let text = run_agent(&server, "codex", "/v1/responses", &["exec", "--skip-git-repo-check", "Say hello."]);
    assert!(!text.trim().is_empty());
}

#[test]
fn issue_32_opencode_through_corral_launch() {
    let server = server();
    let text = run_agent(&server, "opencode", "/v1/chat/completions", &["run", "Say hello."]);
    assert!(!text.trim().is_empty());
}

#[test]
fn issue_32_launch_explains_what_is_missing() {
    let server = server();
    let home = tempfile::tempdir().unwrap();
    // Not installed: how to install it.
    let out = launch(&server, home.path(), false, &["claude", "--model", "qwen"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Claude Code is not installed (no `claude` on PATH); install it with: npm install -g @anthropic-ai/claude-code"), "{}", stderr(&out));
    // A model that cannot call tools, and the ones that can.
    let out = launch(&server, home.path(), true, &["codex", "--model", "smol"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("smol cannot call tools") && stderr(&out).contains("models here that can: qwen:latest"),
        "{}",
        stderr(&out)
    );
    // No model named and no terminal to ask on: the only tool model is taken.
    let out = launch(&server, home.path(), true, &["opencode", "--config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An agent it does not know.
    let out = launch(&server, home.path(), true, &["cursor"]);
    assert!(stderr(&out).contains("unknown agent \"cursor\"; the agents: claude, codex, opencode"), "{}", stderr(&out));
    // Without an agent: the list, with what is installed.
    let out = launch(&server, home.path(), true, &[]);
    assert!(out.status.success() && stdout(&out).contains("claude     Claude Code  installed"), "{}", stdout(&out));
}

#[test]
fn issue_32_launch_config_writes_the_agents_files_and_restore_puts_them_back() {
    let server = server();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // The user's own files, which must come back as they were.
    let claude = h.join(".claude/settings.json");
    std::fs::create_dir_all(claude.parent().unwrap()).unwrap();
    std::fs::write(&claude, "{\"theme\": \"dark\", \"env\": {\"FOO\": \"1\"}}").unwrap();
    let codex = h.join(".codex/config.toml");
    std::fs::create_dir_all(codex.parent().unwrap()).unwrap();
    std::fs::write(&codex, "model = \"gpt-5\"\n").unwrap();
    let opencode = h.join(".config/opencode/opencode.json");

    for agent in ["claude", "codex", "opencode"] {
        // Twice: the second replaces the first's settings and keeps the first backup.
        for context in ["16384", "32768"] {
            let out = launch(&server, h, true, &[agent, "--model", "qwen", "--config", "--context", context]);
            assert!(out.status.success(), "{agent}: {}", stderr(&out));
        }
    }
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&claude).unwrap()).unwrap();
    assert_eq!(settings["theme"], "dark");
    assert_eq!(settings["env"]["FOO"], "1");
    assert_eq!(settings["env"]["ANTHROPIC_BASE_URL"], format!("http://{}", server.addr));
    assert_eq!(settings["env"]["ANTHROPIC_AUTH_TOKEN"], KEY);
    assert_eq!(settings["env"]["ANTHROPIC_CUSTOM_HEADERS"], "X-Corral-Num-Ctx: 32768");
    let toml = std::fs::read_to_string(&codex).unwrap();
    assert!(toml.starts_with("model = \"gpt-5\"\n") && toml.matches("[profiles.corral]").count() == 1, "{toml}");
    assert!(toml.contains("model_context_window = 32768") && !toml.contains("16384"), "{toml}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&opencode).unwrap()).unwrap();
    assert_eq!(config["model"], "corral/qwen");
    assert_eq!(config["provider"]["corral"]["options"]["baseURL"], format!("http://{}/v1", server.addr));

    for agent in ["claude", "codex", "opencode"] {
        let out = launch(&server, h, true, &[agent, "--restore"]);
        assert!(out.status.success(), "{agent}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), "{\"theme\": \"dark\", \"env\": {\"FOO\": \"1\"}}");
    assert_eq!(std::fs::read_to_string(&codex).unwrap(), "model = \"gpt-5\"\n");
    assert!(!opencode.exists(), "it was not there before");
}

#[test]
fn issue_32_the_context_header_sets_num_ctx_and_a_bad_one_is_named() {
    let server = server();
    let client = common::http();
    let body = serde_json::json!({"model": "qwen", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client
        .post(server.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("X-Corral-Num-Ctx", "8192")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ps: serde_json::Value = client.get(server.url("/api/ps")).bearer_auth(KEY).send().unwrap().json().unwrap();
    assert_eq!(ps["models"][0]["context_length"], 8192, "{ps}");
    let resp = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("X-Corral-Num-Ctx", "lots")
        .json(&serde_json::json!({"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["error"]["message"], "x-corral-num-ctx must be a number of tokens (4 or more), got \"lots\"", "{v}");
}
