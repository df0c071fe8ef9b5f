//! `corral pull` and `corral push`: progress bars per layer, like Ollama's.

use std::time::Instant;

use corral_client::Client;
use corral_types::api::{ProgressResponse, TransferRequest};
use corral_types::format::human_bytes;
use futures_util::StreamExt;

use crate::progress::Progress;

/// `pulling 1a2b3c4d5e6f:  42% ▕██████          ▏  41 MB/98 MB  50 MB/s  1s`
fn bar(status: &str, completed: u64, total: u64, started: Instant) -> String {
    const WIDTH: usize = 25;
    let pct = completed.saturating_mul(100).checked_div(total).unwrap_or(100);
    let filled = (pct as usize * WIDTH / 100).min(WIDTH);
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { completed as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 && completed < total {
        let left = ((total - completed) as f64 / rate) as u64;
        match left {
            s if s >= 100 * 3600 => "99h+".to_string(),
            s if s >= 3600 => format!("{}h{}m", s / 3600, s / 60 % 60),
            s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
            s => format!("{s}s"),
        }
    } else {
        String::new()
    };
    format!(
        "{status}: {pct:3}% ▕{}{}▏ {}/{}  {}/s  {eta}",
        "█".repeat(filled),
        " ".repeat(WIDTH - filled),
        human_bytes(completed),
        human_bytes(total),
        human_bytes(rate as u64)
    )
}

/// Streams `path` (`/api/pull` or `/api/push`) and draws its progress.
pub async fn run(client: &Client, path: &str, model: &str, insecure: bool) -> anyhow::Result<()> {
    let req = TransferRequest { model: model.to_string(), insecure, stream: Some(true), ..Default::default() };
    let progress = Progress::new();
    let mut current = String::new();
    let mut started = Instant::now();
    let mut stream = Box::pin(client.stream::<_, ProgressResponse>(path, &req).await?);
    while let Some(p) = stream.next().await {
        let p = p?;
        match (p.total, p.digest.as_deref()) {
            (Some(total), Some(_)) => {
                let completed = p.completed.unwrap_or(0);
                if p.status != current {
                    current = p.status.clone();
                    started = Instant::now();
                    progress.status(bar(&p.status, completed, total, started));
                } else {
                    progress.update(bar(&p.status, completed, total, started));
                }
            }
            _ => {
                current = p.status.clone();
                progress.status(p.status);
            }
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bar_line() {
        let line = super::bar("pulling 1a2b3c4d5e6f", 50_000_000, 100_000_000, std::time::Instant::now());
        assert!(line.starts_with("pulling 1a2b3c4d5e6f:  50% ▕████████████             ▏ 50 MB/100 MB"), "{line}");
    }
}
