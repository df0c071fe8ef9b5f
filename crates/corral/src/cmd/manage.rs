//! `list`, `cp`, `rm` and `--version`.

use chrono::Utc;
use corral_client::{Client, ClientError};
use corral_types::format::{human_bytes, human_time};

use crate::table;

pub async fn version(client: &Client) -> anyhow::Result<()> {
    let ours = env!("CARGO_PKG_VERSION");
    match client.version().await {
        Ok(v) => {
            println!("corral version is {v}");
            if v != ours {
                eprintln!("Warning: client version is {ours}");
            }
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

pub async fn copy(client: &Client, source: &str, destination: &str) -> anyhow::Result<()> {
    client.copy(source, destination).await?;
    println!("copied '{source}' to '{destination}'");
    Ok(())
}

pub async fn remove(client: &Client, models: &[String]) -> anyhow::Result<()> {
    for m in models {
        match client.delete(m).await {
            Ok(()) => println!("deleted '{m}'"),
            Err(e @ ClientError::Api { .. }) => return Err(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
