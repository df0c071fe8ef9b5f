//! How answers reach the terminal, for `corral run` and its chat: the word-wrapping printer, the
//! `--verbose` block, Ctrl+C while an answer streams, and the check that the model exists (with
//! Ollama's hint when it does not).

use std::io::{IsTerminal, Write};

use anyhow::bail;
use corral_client::{Client, ClientError};
use corral_types::api::{Metrics, ShowRequest};
use corral_types::format::go_duration;

/// The `--verbose` block, on stderr.
pub fn print_stats(m: &Metrics) {
    let d = |n: Option<u64>| go_duration(n.unwrap_or(0));
    let rate = |count: Option<u32>, ns: Option<u64>| match (count, ns) {
        (Some(c), Some(ns)) if ns > 0 => format!("{:.2} tokens/s", f64::from(c) / (ns as f64 / 1e9)),
        _ => "0.00 tokens/s".into(),
    };
    eprintln!("total duration:       {}", d(m.total_duration));
    eprintln!("load duration:        {}", d(m.load_duration));
    eprintln!("prompt eval count:    {} token(s)", m.prompt_eval_count.unwrap_or(0));
    eprintln!("prompt eval duration: {}", d(m.prompt_eval_duration));
    eprintln!("prompt eval rate:     {}", rate(m.prompt_eval_count, m.prompt_eval_duration));
    eprintln!("eval count:           {} token(s)", m.eval_count.unwrap_or(0));
    eprintln!("eval duration:        {}", d(m.eval_duration));
    eprintln!("eval rate:            {}", rate(m.eval_count, m.eval_duration));
}

/// Ctrl+C presses while one answer streams.
///
/// Made once, before the request goes out, and polled in every turn of the streaming loop: a
/// listener made afresh in each turn (`tokio::signal::ctrl_c()` inside `select!`) only hears presses
/// made while that turn waits, so a press that lands while a chunk is being printed was lost and the
/// answer ran on (seen in CI: the chat test's Ctrl+C ignored on a fast stream).
pub struct Interrupt(tokio::signal::unix::Signal);

impl Interrupt {
    pub fn listen() -> anyhow::Result<Interrupt> {
        Ok(Interrupt(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?))
    }

    /// Resolves at the first press since `listen` (or since the last press seen).
    pub async fn pressed(&mut self) {
        self.0.recv().await;
    }
}

/// Streams text to stdout, wrapping at word boundaries when `width` is set.
pub struct Printer {
    width: Option<usize>,
    col: usize,
    word: String,
}

impl Printer {
    pub fn new(wrap: bool) -> Self {
        let width = if wrap && std::io::stdout().is_terminal() {
            terminal_width().map(|w| w.saturating_sub(5).max(10))
        } else {
            None
        };
        Printer { width, col: 0, word: String::new() }
    }

    fn flush_word(&mut self, out: &mut impl Write) {
        if self.word.is_empty() {
            return;
        }
        let len = self.word.chars().count();
        if let Some(w) = self.width {
            if self.col > 0 && self.col + len > w {
                let _ = writeln!(out);
                self.col = 0;
            }
        }
        let _ = write!(out, "{}", self.word);
        self.col += len;
        self.word.clear();
    }

    pub fn push(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.width.is_none() {
            let _ = write!(out, "{text}");
            let _ = out.flush();
            return;
        }
        for c in text.chars() {
            match c {
                '\n' => {
                    self.flush_word(&mut out);
                    let _ = writeln!(out);
                    self.col = 0;
                }
                ' ' => {
                    self.flush_word(&mut out);
                    if self.col > 0 {
                        let _ = write!(out, " ");
                        self.col += 1;
                    }
                }
                c => self.word.push(c),
            }
        }
        let _ = out.flush();
    }

    /// Ends the answer (with a newline unless it already ended with one).
    pub fn finish(&mut self) {
        let mut out = std::io::stdout().lock();
        self.flush_word(&mut out);
        let _ = writeln!(out);
        let _ = out.flush();
        self.col = 0;
    }
}

/// Columns of the terminal on stdout; `None` when stdout is not a terminal.
fn terminal_width() -> Option<usize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live,
    // writable `winsize` for the whole call; on a descriptor that is not a terminal it fails
    // (ENOTTY) and writes nothing.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) } == 0;
    (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// 404 from the server becomes Ollama's hint.
pub async fn check_model(client: &Client, model: &str) -> anyhow::Result<corral_types::api::ShowResponse> {
    match client.show(&ShowRequest { model: model.into(), ..Default::default() }).await {
        Ok(r) => Ok(r),
        Err(ClientError::Api { status, .. }) if status == 404 => {
            bail!("model \"{model}\" not found, try pulling it first")
        }
        Err(e) => Err(e.into()),
    }
}
