//! `list`, `cp`, `rm` and `--version`.

use chrono::Utc;
use corral_client::{Client, ClientError, ServerVersion};
use corral_types::format::{human_bytes, human_time, processor_by_host};

use crate::table;

/// `corral --version`: as Ollama's CLI, the server's version and, when it differs, the client's.
/// A Corral server has two: its own, and the Ollama API version it answers clients with.
pub async fn version(client: &Client) -> anyhow::Result<()> {
    let ours = env!("CARGO_PKG_VERSION");
    match client.version().await {
        Ok(ServerVersion { api, corral: Some(server) }) => {
            println!("corral version is {server}");
            println!("Ollama API version is {api}");
            if server != ours {
                eprintln!("Warning: client version is {ours}");
            }
        }
        Ok(ServerVersion { api, corral: None }) => {
            // Another server speaking Ollama's API (Ollama itself).
            println!("ollama version is {api}");
            eprintln!("Warning: client version is {ours}");
        }
        Err(_) => {
            eprintln!("Warning: could not connect to a running corral instance");
            eprintln!("Warning: client version is {ours}");
        }
    }
    Ok(())
}

pub async fn list(client: &Client, prefix: Option<&str>) -> anyhow::Result<()> {
    let models = client.list().await?.models;
    let now = Utc::now();
    let mut rows = vec![vec!["NAME".to_string(), "ID".into(), "SIZE".into(), "MODIFIED".into()]];
    let wanted = prefix.map(str::to_ascii_lowercase);
    for m in models {
        if wanted.as_ref().is_some_and(|p| !m.name.to_ascii_lowercase().starts_with(p)) {
            continue;
        }
        rows.push(vec![
            m.name,
            m.digest.chars().take(12).collect(),
            human_bytes(m.size),
            human_time(m.modified_at.with_timezone(&Utc), now),
        ]);
    }
    print!("{}", table::render(&rows));
    Ok(())
}

pub async fn ps(client: &Client, prefix: Option<&str>) -> anyhow::Result<()> {
    let models = client.ps().await?.models;
    let now = Utc::now();
    let mut rows = vec![["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"].map(String::from).to_vec()];
    for m in models.into_iter().filter(|m| prefix.is_none_or(|p| m.name.starts_with(p))) {
        let processor = processor_by_host(m.size, m.size_vram, &m.devices);
        let expires = m.expires_at.with_timezone(&Utc);
        let until = if expires < now { "Stopping...".to_string() } else { human_time(expires, now) };
        rows.push(vec![
            m.name,
            m.digest.chars().take(12).collect(),
            human_bytes(m.size),
            processor,
            m.context_length.to_string(),
            until,
        ]);
    }
    print!("{}", table::render(&rows));
    Ok(())
}

/// Unloads a model (`keep_alive: 0` with no prompt).
pub async fn stop(client: &Client, model: &str) -> anyhow::Result<()> {
    match client.unload(model).await {
        Err(ClientError::Api { status, .. }) if status == 404 => {
            anyhow::bail!("couldn't find model \"{model}\" to stop")
        }
        other => Ok(other?),
    }
}

pub async fn copy(client: &Client, source: &str, destination: &str) -> anyhow::Result<()> {
    client.copy(source, destination).await?;
    println!("copied '{source}' to '{destination}'");
    Ok(())
}

pub async fn remove(client: &Client, models: &[String]) -> anyhow::Result<()> {
    for m in models {
        // Unload first, so a running model does not keep the deleted weights mapped.
        if let Err(e) = client.unload(m).await {
            if e.status().is_none_or(|s| s != 404) {
                eprintln!("Warning: unable to stop model '{m}'");
            }
        }
        client.delete(m).await?;
        println!("deleted '{m}'");
    }
    Ok(())
}
