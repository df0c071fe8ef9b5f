//! `corral run MODEL [PROMPT]`: one answer to a prompt (or to stdin), or the interactive chat.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::bail;
use corral_client::Client;
use corral_types::api::GenerateRequest;
use futures_util::StreamExt;
use serde_json::Value;

use super::output::{check_model, print_stats, Interrupt, Printer};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Name of the model
    pub model: String,
    /// Prompt (the chat starts when there is none and the terminal is interactive)
    pub prompt: Vec<String>,
    /// Duration to keep the model loaded (e.g. 5m)
    #[arg(long)]
    pub keepalive: Option<String>,
    /// Show timings for the response
    #[arg(long)]
    pub verbose: bool,
    /// Don't wrap words to the next line automatically
    #[arg(long)]
    pub nowordwrap: bool,
    /// Response format (json, or a JSON schema)
    #[arg(long)]
    pub format: Option<String>,
    /// Enable thinking mode (true/false, or high/medium/low)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub think: Option<String>,
    /// Hide thinking output (if provided)
    #[arg(long)]
    pub hidethinking: bool,
    /// Use an insecure registry (accepted for compatibility; pulling is not implemented yet)
    #[arg(long)]
    pub insecure: bool,
}

/// `--format`: `json` as such, anything else as a JSON value (a schema).
pub fn format_value(format: Option<&str>) -> anyhow::Result<Option<Value>> {
    match format {
        None | Some("") => Ok(None),
        Some("json") => Ok(Some(Value::String("json".into()))),
        Some(other) => match serde_json::from_str(other) {
            Ok(v) => Ok(Some(v)),
            Err(_) => bail!("invalid format {other:?}: use json or a JSON schema"),
        },
    }
}

/// `--think`: booleans or a level.
pub fn think_value(think: Option<&str>) -> anyhow::Result<Option<Value>> {
    Ok(match think {
        None => None,
        Some(t @ ("true" | "false")) => Some(Value::Bool(t == "true")),
        Some(level @ ("high" | "medium" | "low" | "max")) => Some(Value::String(level.into())),
        Some(other) => {
            bail!("invalid value for --think: {other:?} (must be true, false, high, medium, low, or max)")
        }
    })
}

/// `--keepalive`: a duration string.
pub fn keepalive_value(k: Option<&str>) -> anyhow::Result<Option<Value>> {
    match k {
        None => Ok(None),
        Some(s) => {
            corral_types::duration::parse_go_duration(s).map_err(anyhow::Error::msg)?;
            Ok(Some(Value::String(s.into())))
        }
    }
}

/// Whether the model takes images or sounds.
pub fn reads_media(show: &corral_types::api::ShowResponse) -> bool {
    show.capabilities.iter().any(|c| c == "vision" || c == "audio")
}

pub async fn run(client: &Client, args: Args, history: Option<PathBuf>) -> anyhow::Result<()> {
    let format = format_value(args.format.as_deref())?;
    let think = think_value(args.think.as_deref())?;
    let keep_alive = keepalive_value(args.keepalive.as_deref())?;
    let show = check_model(client, &args.model).await?;
    let mut prompt = args.prompt.join(" ");
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut piped = String::new();
        stdin.lock().read_to_string(&mut piped)?;
        prompt = if prompt.is_empty() { piped } else { format!("{piped}\n{prompt}") };
    }
    if prompt.is_empty() && std::io::stdout().is_terminal() && stdin.is_terminal() {
        let session = super::repl::Session {
            model: args.model,
            show,
            format,
            think,
            keep_alive,
            verbose: args.verbose,
            wordwrap: !args.nowordwrap,
            history,
        };
        return super::repl::run(client, session).await;
    }
    // A model that reads images takes the files the prompt names (Ollama's CLI does the same).
    let mut images = None;
    if reads_media(&show) {
        let (text, files) = super::attach::extract(&prompt)?;
        super::attach::announce(&files);
        prompt = text;
        images = (!files.is_empty()).then(|| files.into_iter().map(|f| f.base64).collect());
    }
    let req = GenerateRequest {
        model: args.model.clone(),
        prompt,
        images,
        format,
        think,
        keep_alive,
        stream: Some(true),
        ..Default::default()
    };
    let mut spinner = std::io::stderr().is_terminal().then(Progress::spinner);
    let mut printer = Printer::new(!args.nowordwrap);
    let mut interrupt = Interrupt::listen()?;
    let mut stream = Box::pin(client.stream::<_, corral_types::api::GenerateResponse>("/api/generate", &req).await?);
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            () = interrupt.pressed() => break,
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk?;
        if let Some(s) = spinner.take() {
            s.clear();
        }
        printer.push(&chunk.response);
        if chunk.done {
            printer.finish();
            if args.verbose {
                print_stats(&chunk.metrics);
            }
            break;
        }
    }
    if let Some(s) = spinner.take() {
        s.clear();
    }
    Ok(())
}
