//! Chat template renders in worker processes (`corral template-worker`).
//!
//! A model's chat template is code from whoever published the model. The engines stop a render
//! that takes too many steps, writes too much or nests too deep, but a template can still build up
//! memory without writing anything (a string doubled in a loop of thirty steps is 16 GiB), and a
//! step can be slow (repeating a string fifty million times). In the server's own process either
//! would take the server down with it. So `corral serve` renders in workers: each limited to
//! [`corral_template::MAX_MEMORY`] by the kernel, each given [`RenderConfig::deadline`] per render
//! and killed past it. A worker that dies or is killed costs that one render, which ends with an
//! error that says why; the next render starts a fresh worker.
//!
//! Workers are kept between renders (a render is a millisecond, starting a process several), at
//! most [`RenderConfig::workers`] of them, which also bounds how many render at once. A worker ends
//! when its stdin closes, so workers never outlive the server, even one killed with -9.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use corral_template::{RenderJob, RenderReply, TemplateError, MAX_MEMORY};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use crate::backend::Launcher;

/// How templates are rendered.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// Render in worker processes (what `corral serve` does). Off, renders run on this process's
    /// blocking threads, bounded in steps and output but not in memory or time (tests, and
    /// embedders that have no `corral` binary to start).
    pub in_workers: bool,
    /// The longest one render may take in a worker before the worker is killed.
    pub deadline: Duration,
    /// Most workers at once (and so most renders at once).
    pub workers: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        // Real templates render in milliseconds and the engines' step bound ends a looping one
        // within a second or two; the deadline is for a render whose single steps are slow.
        RenderConfig { in_workers: false, deadline: Duration::from_secs(10), workers: 4 }
    }
}

/// The worker pool.
pub struct Workers {
    launcher: Launcher,
    deadline: Duration,
    idle: Mutex<Vec<Worker>>,
    /// One permit per worker that may exist.
    permits: Semaphore,
}

/// A running `corral template-worker`.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why a worker gave no reply.
enum Lost {
    /// Writing the job failed: the worker was already gone.
    Write,
    /// It ended (or wrote something that is not a reply) while rendering.
    Died(String),
}

impl Workers {
    /// A pool that starts workers with `launcher` (the `corral` binary).
    pub fn new(launcher: Launcher, config: &RenderConfig) -> Self {
        Workers {
            launcher,
            deadline: config.deadline,
            idle: Mutex::default(),
            permits: Semaphore::new(config.workers.max(1)),
        }
    }

    /// Renders `job` in a worker.
    pub async fn render(&self, job: &RenderJob) -> RenderReply {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let mut line = serde_json::to_vec(job).map_err(|e| TemplateError(format!("cannot send the render: {e}")))?;
        line.push(b'\n');
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reused = kept.is_some();
        let mut worker = match kept {
            Some(w) => w,
            None => self.start()?,
        };
        let mut outcome = tokio::time::timeout(self.deadline, worker.ask(&line)).await;
        if reused && matches!(outcome, Ok(Err(Lost::Write))) {
            // A kept worker that was killed from outside while idle: one try with a fresh one.
            worker = self.start()?;
            outcome = tokio::time::timeout(self.deadline, worker.ask(&line)).await;
        }
        match outcome {
            Ok(Ok(reply)) => {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
                reply
            }
            Ok(Err(Lost::Write)) => Err(worker.why_ended("could not be sent the render").await),
            Ok(Err(Lost::Died(what))) => Err(worker.why_ended(&what).await),
            // Dropping the worker kills it (`kill_on_drop`).
            Err(_) => Err(TemplateError(format!(
                "the chat template did not finish rendering within {}s and was stopped",
                self.deadline.as_secs_f32()
            ))),
        }
    }

    fn start(&self) -> Result<Worker, TemplateError> {
        let mut child = self
            .launcher
            .template_worker(MAX_MEMORY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TemplateError(format!("could not start the template worker {}: {e}", self.launcher.exe.display()))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both are piped");
        };
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout) })
    }
}

impl Worker {
    async fn ask(&mut self, line: &[u8]) -> Result<RenderReply, Lost> {
        self.stdin.write_all(line).await.map_err(|_| Lost::Write)?;
        self.stdin.flush().await.map_err(|_| Lost::Write)?;
        let mut reply = String::new();
        match self.stdout.read_line(&mut reply).await {
            Ok(0) | Err(_) => Err(Lost::Died("ended while rendering".into())),
            Ok(_) => serde_json::from_str(&reply).map_err(|e| Lost::Died(format!("answered something else ({e})"))),
        }
    }

    /// The error for a worker that gave no reply: out of memory when it said so on its way out
    /// (Rust's allocator reports a failed allocation on stderr, then aborts).
    async fn why_ended(mut self, what: &str) -> TemplateError {
        let _ = self.child.start_kill();
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let mut said = Vec::new();
        if let Some(stderr) = self.child.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), stderr.take(16 << 10).read_to_end(&mut said)).await;
        }
        let said = String::from_utf8_lossy(&said);
        if said.contains("memory allocation of") {
            return TemplateError(format!(
                "the chat template needed more than {} MiB of memory and was stopped",
                MAX_MEMORY >> 20
            ));
        }
        let status = match status {
            Ok(Ok(s)) => s.to_string(),
            _ => "still running".into(),
        };
        let last = said.lines().last().unwrap_or_default().trim();
        TemplateError(format!(
            "the template worker {what} ({status}){}",
            if last.is_empty() { String::new() } else { format!(": {last}") }
        ))
    }
}
