//! The `corral` command: a thin CLI over the HTTP API, plus `serve`.
//!
//! `main` parses arguments, resolves [`settings::Settings`] once, runs one command, and maps an
//! error to `Error: <message>` on stderr with exit code 1. Nothing else exits the process.

mod cmd;
mod progress;
mod settings;
mod table;

use clap::{Parser, Subcommand};

/// Large language models on your own machine.
#[derive(Parser)]
#[command(name = "corral", version, disable_version_flag = true, about)]
struct Cli {
    /// Show version information
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server
    #[command(alias = "start")]
    Serve,
    /// Create a model from a Modelfile
    Create(cmd::create::Args),
    /// Show information for a model
    Show(cmd::show::Args),
    /// List models
    #[command(alias = "ls")]
    List {
        /// Only list models whose name starts with this (case-insensitive)
        prefix: Option<String>,
    },
    /// Run a model
    Run(cmd::run::Args),
    /// Pull a model from a registry
    Pull {
        model: String,
        /// Use an insecure registry (plain HTTP)
        #[arg(long)]
        insecure: bool,
    },
    /// Push a model to a registry
    Push {
        model: String,
        /// Use an insecure registry (plain HTTP)
        #[arg(long)]
        insecure: bool,
    },
    /// List running models
    Ps {
        /// Only list models whose name starts with this
        prefix: Option<String>,
    },
    /// Stop a running model
    Stop { model: String },
    /// Copy a model
    Cp { source: String, destination: String },
    /// Remove a model
    Rm {
        #[arg(required = true)]
        models: Vec<String>,
    },
    /// Start a coding agent (Claude Code, Codex, OpenCode) on a model of this server
    Launch(cmd::launch::Args),
    /// Serve this host's devices to other hosts' Corral servers (one model split over several
    /// machines: CORRAL_RPC_SERVERS there)
    Rpc(cmd::rpc::Args),
    /// Serve one model for the server (started by `serve`, not by hand)
    #[command(hide = true)]
    Runner(cmd::runner::Args),
    /// Render chat templates for the server (started by `serve`, not by hand)
    #[command(hide = true)]
    TemplateWorker(cmd::template_worker::Args),
}

fn main() {
    let cli = Cli::parse();
    // The runner and the template worker are plain blocking processes: no tokio, no settings
    // from the environment.
    match cli.command {
        Some(Command::Runner(args)) => {
            if let Err(e) = cmd::runner::run(args) {
                fail(e);
            }
            return;
        }
        Some(Command::Rpc(args)) => {
            if let Err(e) = cmd::rpc::run(args) {
                fail(e);
            }
            return;
        }
        Some(Command::TemplateWorker(args)) => {
            if let Err(e) = cmd::template_worker::run(args) {
                fail(e);
            }
            return;
        }
        _ => {}
    }
    let settings = match settings::Settings::from_env() {
        Ok(s) => s,
        Err(e) => fail(anyhow::anyhow!(e)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    let result = runtime.block_on(async {
        let client = corral_client::Client::with_trust(
            settings.host.client_url(),
            settings.api_key.as_deref(),
            &settings.registry.ca_certificates,
        )?;
        match cli.command {
            _ if cli.version => cmd::manage::version(&client).await,
            None => {
                use clap::CommandFactory;
                Cli::command().print_help()?;
                Ok(())
            }
            Some(Command::Serve) => cmd::serve::run(settings).await,
            Some(Command::Create(args)) => cmd::create::run(&client, args, settings.home.as_deref()).await,
            Some(Command::Show(args)) => cmd::show::run(&client, args).await,
            Some(Command::List { prefix }) => cmd::manage::list(&client, prefix.as_deref()).await,
            Some(Command::Run(args)) => {
                let history =
                    (!settings.nohistory).then(|| settings.home.clone()).flatten().map(|h| h.join(".ollama/history"));
                cmd::run::run(&client, args, history).await
            }
            Some(Command::Pull { model, insecure }) => cmd::transfer::run(&client, "/api/pull", &model, insecure).await,
            Some(Command::Push { model, insecure }) => cmd::transfer::run(&client, "/api/push", &model, insecure).await,
            Some(Command::Ps { prefix }) => cmd::manage::ps(&client, prefix.as_deref()).await,
            Some(Command::Stop { model }) => cmd::manage::stop(&client, &model).await,
            Some(Command::Cp { source, destination }) => cmd::manage::copy(&client, &source, &destination).await,
            Some(Command::Rm { models }) => cmd::manage::remove(&client, &models).await,
            Some(Command::Launch(args)) => {
                cmd::launch::run(&client, args, settings.api_key.as_deref(), settings.home.as_deref()).await
            }
            Some(Command::Runner(_) | Command::Rpc(_) | Command::TemplateWorker(_)) => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    // Blocking tasks still running (a template render, a file copy) are not waited for long: the
    // server has stopped answering, and a stop that hangs is what SIGTERM must never do.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = result {
        fail(e);
    }
}

fn fail(e: anyhow::Error) -> ! {
    eprintln!("Error: {e:#}");
    std::process::exit(1);
}
