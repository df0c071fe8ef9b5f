//! `corral launch AGENT`: points a coding agent (Claude Code, Codex, OpenCode) at this server
//! and starts it, as `ollama launch` does.
//!
//! The steps: find the agent's program (or say how to install it), choose a model that can call
//! tools (`--model`, or a question when there is a terminal), choose its context length, then
//! hand the agent the server's address, a key and the model the way that agent reads them
//! ([`agents`]), and replace this process with the agent, its own arguments after `--` passed
//! through. Nothing is written for a launch: the settings travel in the agent's environment and
//! command line. `--config` instead writes them into the agent's own configuration file, once,
//! keeping a backup that `--restore` puts back.
//!
//! The context length: an agent's first request alone is long (Claude Code's system prompt and
//! tools are about 19,000 tokens), and the OpenAI and Anthropic APIs it speaks have no `num_ctx`.
//! Each agent is told to send Corral's `X-Corral-Num-Ctx` header, which the server takes as the
//! request's `num_ctx`: the model loads with room for the agent and nothing else changes.

mod agents;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use corral_client::Client;
use corral_types::api::ShowRequest;

pub use agents::Agent;

#[derive(clap::Args)]
pub struct Args {
    /// The agent: claude (Claude Code), codex (Codex CLI) or opencode (OpenCode); none lists them
    agent: Option<String>,
    /// The model the agent uses (asked for when not given and there is a terminal)
    #[arg(long, short = 'm')]
    model: Option<String>,
    /// Write the agent's configuration file (a backup is kept) instead of starting it
    #[arg(long, conflicts_with = "restore")]
    config: bool,
    /// Put back the configuration file `--config` replaced
    #[arg(long)]
    restore: bool,
    /// Context length the model loads with for the agent (default: 65536, or what the model was
    /// trained for if less)
    #[arg(long)]
    context: Option<u32>,
    /// Arguments for the agent itself
    #[arg(last = true)]
    args: Vec<String>,
}

/// Most tokens of context asked for by default: room for an agent's prompt (about 19,000 tokens
/// for Claude Code), the files it reads and the answers, as Ollama's guides advise for agents.
const DEFAULT_CONTEXT: u32 = 65_536;
/// Less than this and Claude Code's first request does not fit.
const AGENT_MINIMUM: u32 = 32_768;

/// What an agent is started with: the server, the key, the model and its context.
pub struct Target {
    /// The server's address, e.g. `http://127.0.0.1:11434` (no trailing slash).
    pub base: String,
    /// The key the agent sends: the CLI's `OLLAMA_API_KEY`, or a placeholder (the agents refuse
    /// to start without one; a server without keys ignores it).
    pub key: String,
    pub model: String,
    pub context: u32,
}

pub async fn run(client: &Client, args: Args, api_key: Option<&str>, home: Option<&Path>) -> anyhow::Result<()> {
    let Some(name) = args.agent.as_deref() else {
        list();
        return Ok(());
    };
    let agent =
        Agent::parse(name).with_context(|| format!("unknown agent {name:?}; the agents: {}", Agent::names()))?;
    let home = home.context("HOME is not set: the agents keep their configuration there")?;
    if args.restore {
        let file = agent.config_file(home);
        return restore(&file);
    }
    let program = if args.config {
        None
    } else {
        Some(find_program(agent.program()).with_context(|| {
            format!(
                "{} is not installed (no `{}` on PATH); install it with: {}",
                agent.title(),
                agent.program(),
                agent.install()
            )
        })?)
    };
    client.heartbeat().await.context("the server does not answer: start it with `corral serve`")?;
    let model = match args.model {
        Some(m) => m,
        None => choose_model(client, agent).await?,
    };
    let show = client
        .show(&ShowRequest { model: model.clone(), ..Default::default() })
        .await
        .with_context(|| format!("model {model:?}"))?;
    if !show.capabilities.iter().any(|c| c == "tools") {
        bail!(
            "{model} cannot call tools (its chat template has no place for them), which {} needs; {}",
            agent.title(),
            tool_models_hint(client).await
        );
    }
    let trained = show
        .model_info
        .iter()
        .find(|(k, _)| k.ends_with(".context_length"))
        .and_then(|(_, v)| v.as_u64())
        .map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32);
    let context = args.context.unwrap_or(DEFAULT_CONTEXT.min(trained));
    if context < AGENT_MINIMUM {
        eprintln!(
            "warning: a context of {context} tokens is short for {}: its first request alone can be 20,000 tokens",
            agent.title()
        );
    }
    let target = Target {
        base: client.base().trim_end_matches('/').to_string(),
        key: api_key.unwrap_or("corral").to_string(),
        model,
        context,
    };
    match program {
        None => {
            let file = agent.config_file(home);
            backup(&file)?;
            agent.write_config(&file, &target)?;
            eprintln!("wrote {} (the one before is kept in {})", file.display(), backup_path(&file).display());
            eprintln!("{}", agent.after_config());
            Ok(())
        }
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(agent.args(&target)).args(&args.args).envs(agent.env(&target));
            for name in agent.env_removed() {
                command.env_remove(name);
            }
            eprintln!(
                "launching {} with {} ({} tokens of context) on {}",
                agent.title(),
                target.model,
                context,
                target.base
            );
            exec(command)
        }
    }
}

/// The agents, and whether each is installed.
fn list() {
    println!("Agents corral launch starts (corral launch AGENT [--model M] [-- ARGS]):\n");
    for agent in Agent::ALL {
        let status = match find_program(agent.program()) {
            Some(_) => "installed".to_string(),
            None => format!("not installed: {}", agent.install()),
        };
        println!("  {:<10} {:<12} {status}", agent.name(), agent.title());
    }
}

/// Replaces this process with `command` (its exit code becomes ours where exec is not possible).
fn exec(mut command: std::process::Command) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = command.exec();
        Err(anyhow::anyhow!("could not start {:?}: {err}", command.get_program()))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().with_context(|| format!("could not start {:?}", command.get_program()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// `program` on `PATH`, if it is there and executable.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// The installed models that can call tools.
async fn tool_models(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for m in client.list().await?.models {
        let show = client.show(&ShowRequest { model: m.name.clone(), ..Default::default() }).await;
        if show.is_ok_and(|s| s.capabilities.iter().any(|c| c == "tools")) {
            out.push(m.name);
        }
    }
    Ok(out)
}

async fn tool_models_hint(client: &Client) -> String {
    match tool_models(client).await {
        Ok(list) if !list.is_empty() => format!("models here that can: {}", list.join(", ")),
        _ => "no model here can: pull one that calls tools (qwen2.5-coder, qwen3, llama3.1…)".into(),
    }
}

/// Asks which tool-calling model to use (the only one, without asking, if there is one).
async fn choose_model(client: &Client, agent: Agent) -> anyhow::Result<String> {
    let models = tool_models(client).await?;
    match models.len() {
        0 => bail!(
            "{} needs a model that calls tools, and none is installed: pull one (qwen2.5-coder, qwen3, llama3.1…)",
            agent.title()
        ),
        1 => return Ok(models[0].clone()),
        _ => {}
    }
    if !std::io::stdin().is_terminal() {
        bail!("choose the model with --model; models that call tools: {}", models.join(", "));
    }
    eprintln!("Models that call tools:");
    for (i, m) in models.iter().enumerate() {
        eprintln!("  {}. {m}", i + 1);
    }
    loop {
        eprint!("Model for {} [1-{}]: ", agent.title(), models.len());
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no model chosen");
        }
        match line.trim().parse::<usize>() {
            Ok(n) if (1..=models.len()).contains(&n) => return Ok(models[n - 1].clone()),
            _ => match models.iter().find(|m| **m == line.trim()) {
                Some(m) => return Ok(m.clone()),
                None => eprintln!("{:?} is not one of them", line.trim()),
            },
        }
    }
}

fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".corral-backup");
    file.with_file_name(name)
}

/// What the backup holds where `--config` found no file: `--restore` then removes the file.
const NO_FILE: &str = "corral launch --config: there was no file here\n";

/// Keeps `file` as it was before the first `--config` (a later `--config` keeps that first
/// backup: it is the user's own file).
fn backup(file: &Path) -> anyhow::Result<()> {
    let saved = backup_path(file);
    if saved.exists() {
        return Ok(());
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    }
    let result = match file.exists() {
        true => std::fs::copy(file, &saved).map(drop),
        false => std::fs::write(&saved, NO_FILE),
    };
    result.with_context(|| format!("could not back up {} to {}", file.display(), saved.display()))
}

/// Puts back the file `--config` replaced, or removes the one it created.
fn restore(file: &Path) -> anyhow::Result<()> {
    let saved = backup_path(file);
    match std::fs::read(&saved) {
        Err(_) => eprintln!("nothing to restore: no {}", saved.display()),
        Ok(bytes) if bytes == NO_FILE.as_bytes() => {
            if file.exists() {
                std::fs::remove_file(file).with_context(|| format!("could not remove {}", file.display()))?;
            }
            std::fs::remove_file(&saved)?;
            eprintln!("removed {} (corral launch --config created it)", file.display());
        }
        Ok(_) => {
            std::fs::rename(&saved, file).with_context(|| format!("could not restore {}", file.display()))?;
            eprintln!("restored {}", file.display());
        }
    }
    Ok(())
}
