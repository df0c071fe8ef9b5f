//! `corral serve`.

use anyhow::Context;
use corral_server::{AppState, Backends, Launcher, ServerConfig};
use tokio::net::TcpListener;

use crate::settings::Settings;

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let level = if settings.debug { "debug" } else { "info" };
    // A `CORRAL_LOG` that does not parse falls back to the level, as an unset one does.
    let filter = settings
        .log_filter
        .as_deref()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| level.into());
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(!settings.no_color && std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();

    let bind = settings.host.bind_addr();
    let listener = TcpListener::bind(&bind).await.with_context(|| format!("could not listen on {bind}"))?;
    let addr = listener.local_addr()?;
    let launcher = Launcher {
        exe: std::env::current_exe().context("cannot find the corral binary to start runners")?,
        library_dir: settings.library_dir.clone(),
        library_path: settings.runner_library_path.clone().map(Into::into),
        bad_variants: Default::default(),
        devices: settings.devices,
        rpc_servers: settings.rpc_servers.clone(),
    };
    let tls = match &settings.tls {
        Some(files) => Some(corral_server::tls::Tls::load(files.clone()).context("could not set up HTTPS")?),
        None => None,
    };
    let backends = probe(&launcher).await;
    let config = ServerConfig {
        origins: settings.origins.clone(),
        noprune: settings.noprune,
        hostname: settings.hostname.clone(),
        launcher,
        keep_alive: settings.keep_alive,
        defaults: corral_server::Defaults {
            num_ctx: settings
                .context_length
                .unwrap_or_else(|| corral_server::default_context_length(&backends.devices, settings.gpu.overhead)),
            parallel: settings.num_parallel,
            num_thread: settings.num_thread,
            no_compat: !settings.compat,
            draft_always: settings.draft_always,
        },
        max_loaded_models: settings.max_loaded_models,
        max_queue: settings.max_queue,
        load_timeout: settings.load_timeout,
        registry: registry_options(&settings),
        backends,
        gpu: settings.gpu.clone(),
        api_keys: settings.api_keys.clone(),
        shutdown_grace: settings.shutdown_grace,
        render: corral_server::RenderConfig { in_workers: true, ..Default::default() },
        tls,
        preload: settings.preload.clone(),
        ui: settings.ui,
        ..ServerConfig::new(&settings.models_dir)
    };
    if settings.api_keys.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            "listening on {addr}, beyond this machine, without API keys: anyone who can reach it can run, pull and \
             delete models; set CORRAL_API_KEYS (or CORRAL_API_KEYS_FILE) to require a key"
        );
    } else if !settings.api_keys.is_empty() {
        tracing::info!(keys = settings.api_keys.len(), "API keys required");
    }
    let state = AppState::new(config, addr)
        .with_context(|| format!("could not open models directory {}", settings.models_dir.display()))?;
    tracing::info!(models = %settings.models_dir.display(), "models directory");
    let prune_state = state.clone();
    tokio::task::spawn_blocking(move || corral_server::startup(&prune_state)).await?;
    // Tests and scripts wait for this line to learn the bound port.
    tracing::info!(
        "Listening on {addr} ({}version {}, Ollama API {})",
        if settings.tls.is_some() { "HTTPS, " } else { "" },
        corral_server::VERSION,
        corral_server::OLLAMA_API_VERSION
    );
    if settings.ui {
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        let (plain, gzip) = corral_server::ui::page_size();
        tracing::info!(
            bytes = plain,
            gzip_bytes = gzip,
            "chat page at {scheme}://{addr}/ui/ (CORRAL_UI=0 turns it off)"
        );
    }
    corral_server::run(listener, state, shutdown_signal()).await?;
    tracing::info!("server stopped");
    Ok(())
}

/// What llama.cpp finds on this machine, from a runner started only to load the backends (the
/// server itself never initialises llama.cpp). Logged; without it the server runs CPU-only as far
/// as placement goes, and each load reports its own failure.
async fn probe(launcher: &Launcher) -> Backends {
    match launcher.probe(std::time::Duration::from_secs(60)).await {
        Ok(b) => {
            for why in &b.refused {
                tracing::warn!("backend refused, running without it: {why}");
            }
            for why in &b.skipped {
                tracing::info!("CPU variant skipped: {why}");
            }
            for why in &b.peers_left_out {
                tracing::warn!("RPC server left out: {why}");
            }
            tracing::info!(
                dir = %b.library_dir,
                variant = b.cpu_variant.as_deref().unwrap_or("none"),
                gpu_backends = %b.gpu_backends.join(","),
                "llama.cpp CPU backend"
            );
            for d in &b.devices {
                tracing::info!(
                    device = %d.id,
                    kind = d.kind.as_str(),
                    total = %corral_types::format::human_bytes(d.total_bytes),
                    free = %corral_types::format::human_bytes(d.free_bytes),
                    "{}",
                    d.description
                );
            }
            b
        }
        Err(e) => {
            tracing::error!("could not load llama.cpp's backends: {e}");
            Backends::default()
        }
    }
}

/// The registry options, with Ollama's identity key (`~/.ollama/id_ed25519`), created on the first
/// start as Ollama does. Without a usable key, token requests are simply not signed.
fn registry_options(settings: &Settings) -> corral_registry::RegistryOptions {
    let mut options = settings.registry.clone();
    if let Some(home) = &settings.home {
        match corral_registry::Identity::load_or_create(&home.join(".ollama").join("id_ed25519")) {
            Ok(identity) => options.identity = Some(identity),
            Err(e) => tracing::warn!("no registry identity key: {e}"),
        }
    }
    options
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
