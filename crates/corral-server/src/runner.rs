//! Runner processes: starting `corral runner` for a model, talking to it over a Unix socket, and
//! noticing when it dies.
//!
//! Architecture invariant: the server never loads a model into its own process. A runner that
//! crashes (a llama.cpp assertion on a hostile GGUF, out of memory) costs only the requests it had
//! in flight, which get [`RUNNER_STOPPED`]; the scheduler starts a new one for the next request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_types::runner::{
    Backends, CompletionRequest, EmbedRequest, Embedded, FromRunner, KvCells, LoadOptions, RunnerInfo, ToRunner,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// What in-flight requests get when their runner dies.
pub const RUNNER_STOPPED: &str = "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check corral server logs for details";

/// A runner failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunnerError {
    #[error("{0}")]
    Load(String),
    #[error("{RUNNER_STOPPED}")]
    Stopped,
    #[error("{0}")]
    Request(String),
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<FromRunner>>>>;

/// How runner processes are started: the `corral` binary (as `corral runner`), and llama.cpp's
/// library directory when one is configured (`CORRAL_LIBRARY_PATH`), which the runner loads its
/// backends from and finds the llama.cpp libraries in (it goes first in `LD_LIBRARY_PATH`).
#[derive(Debug, Clone)]
pub struct Launcher {
    pub exe: PathBuf,
    pub library_dir: Option<PathBuf>,
    /// `LD_LIBRARY_PATH` for runners when `library_dir` is set: that directory, then the
    /// server's own value.
    pub library_path: Option<std::ffi::OsString>,
    /// CPU variants that killed a runner with an illegal instruction: later runners skip them.
    pub bad_variants: Arc<Mutex<Vec<String>>>,
}

impl Launcher {
    /// A launcher for `exe` with the library directory found beside it.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Launcher { exe: exe.into(), library_dir: None, library_path: None, bad_variants: Arc::default() }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("runner");
        if let Some(dir) = &self.library_dir {
            cmd.arg("--libs").arg(dir);
        }
        if let Some(path) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", path);
        }
        for variant in self.bad_variants.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            cmd.arg("--skip-variant").arg(variant);
        }
        cmd
    }

    /// Starts a runner that only loads llama.cpp's backends and reports what it found: the CPU
    /// variant, the devices with their memory, and the modules it refused.
    pub async fn probe(&self, timeout: Duration) -> Result<Backends, String> {
        let run = self.command().arg("--probe").stdin(Stdio::null()).kill_on_drop(true).output();
        let out = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("the device probe did not finish within {timeout:?}"))?
            .map_err(|e| format!("could not start {} runner: {e}", self.exe.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("the device probe failed ({}): {}", out.status, err.trim()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("the device probe's answer is malformed: {e}"))
    }
}

/// Owns a runner's process until it ends: killed when the returned sender fires or is dropped;
/// an exit nobody asked for is logged with its status (a signal such as SIGILL or SIGABRT) and the
/// last lines the runner wrote, which say why.
///
/// A runner killed by an illegal instruction (SIGILL) names its CPU variant among the launcher's
/// bad ones, so that the next runner loads the next best: a CPU or virtual machine can report an
/// instruction set it does not run.
fn reap(
    mut child: Child,
    pid: u32,
    stderr: Arc<Mutex<String>>,
    variant: Option<String>,
    bad_variants: Arc<Mutex<Vec<String>>>,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => {
                let text = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let last: Vec<&str> = text.lines().rev().take(8).collect();
                let last: Vec<&str> = last.into_iter().rev().collect();
                let illegal = status.as_ref().is_ok_and(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal() == Some(libc_sigill())
                });
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(runner = pid, %status, "model runner exited: {}", last.join(" | "));
                if let (true, Some(v)) = (illegal, variant) {
                    tracing::warn!("the CPU variant {v} executed an instruction this machine does not run; later runners skip it");
                    let mut bad = bad_variants.lock().unwrap_or_else(|p| p.into_inner());
                    if !bad.contains(&v) {
                        bad.push(v);
                    }
                }
            }
            _ = rx => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    });
    tx
}

/// SIGILL's number on Linux (every architecture Corral builds for).
const fn libc_sigill() -> i32 {
    4
}

/// A live runner process.
pub struct Runner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Where answers go, by request id.
    routes: Routes,
    next_id: AtomicU64,
    dead: Arc<AtomicBool>,
    pub info: RunnerInfo,
    pub options: LoadOptions,
    /// Completions started and not yet ended (running or waiting for a sequence slot).
    active: Arc<std::sync::atomic::AtomicUsize>,
    pid: u32,
    /// Tells the task that owns the process to kill it (dropping it does too).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("model", &self.options.model_path).finish_non_exhaustive()
    }
}

impl Runner {
    /// Starts `exe runner` for `options` and waits until the model is loaded, calling `progress`
    /// with the fraction loaded. Gives up after `timeout` without progress.
    pub async fn start(
        launcher: &Launcher,
        options: LoadOptions,
        timeout: Duration,
        progress: impl Fn(f32) + Send,
    ) -> Result<Arc<Runner>, RunnerError> {
        let load = |e: String| RunnerError::Load(e);
        let dir = tempfile::Builder::new().prefix("corral-runner-").tempdir().map_err(|e| load(e.to_string()))?;
        let socket: PathBuf = dir.path().join("runner.sock");
        let listener = UnixListener::bind(&socket).map_err(|e| load(format!("runner socket: {e}")))?;
        let json = serde_json::to_string(&options).expect("options serialise");
        let exe = &launcher.exe;
        let mut child = launcher
            .command()
            .arg("--socket")
            .arg(&socket)
            .arg("--options")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| load(format!("could not start {} runner: {e}", exe.display())))?;
        let pid = child.id().unwrap_or_default();
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(runner = pid, "{line}");
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() > 4000 {
                        t.clear();
                    }
                    t.push_str(&line);
                    t.push('\n');
                }
            });
        }
        let died = |status: std::io::Result<std::process::ExitStatus>| {
            let tail = stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).trim().to_string();
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            load(format!("model runner exited while loading ({status}): {tail}"))
        };

        let stream = tokio::select! {
            accepted = tokio::time::timeout(timeout, listener.accept()) => match accepted {
                Ok(Ok((stream, _))) => stream,
                Ok(Err(e)) => return Err(load(format!("runner socket: {e}"))),
                Err(_) => return Err(load("timed out waiting for the model runner to start".into())),
            },
            status = child.wait() => return Err(died(status)),
        };
        // The connection outlives the socket's name: the directory goes now, so a server that is
        // killed later leaves nothing behind in the temporary directory.
        drop(listener);
        if let Err(e) = dir.close() {
            tracing::warn!("could not remove the runner's socket directory: {e}");
        }
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let info = loop {
            let line = tokio::select! {
                line = tokio::time::timeout(timeout, lines.next_line()) => line,
                status = child.wait() => return Err(died(status)),
            };
            let line = match line {
                Err(_) => return Err(load("timed out loading the model (no progress)".into())),
                Ok(Ok(Some(l))) => l,
                Ok(Ok(None)) => return Err(died(child.wait().await)),
                Ok(Err(e)) => return Err(load(format!("runner socket: {e}"))),
            };
            match serde_json::from_str::<FromRunner>(&line) {
                Ok(FromRunner::Loading { progress: p }) => progress(p),
                Ok(FromRunner::Ready { info }) => break info,
                Ok(FromRunner::LoadFailed { error }) => return Err(load(error)),
                Ok(other) => tracing::warn!("unexpected message from a loading runner: {other:?}"),
                Err(e) => return Err(load(format!("malformed message from the runner: {e}"))),
            }
        };

        let routes: Routes = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let (routes2, dead2) = (routes.clone(), dead.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let msg = match serde_json::from_str::<FromRunner>(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("malformed message from runner {pid}: {e}");
                        continue;
                    }
                };
                let (id, last) = match &msg {
                    FromRunner::Token { id, .. } => (*id, false),
                    FromRunner::Tokens { id, .. }
                    | FromRunner::Text { id, .. }
                    | FromRunner::Done { id, .. }
                    | FromRunner::Embedded { id, .. }
                    | FromRunner::Cells { id, .. }
                    | FromRunner::Error { id, .. } => (*id, true),
                    _ => continue,
                };
                let mut r = routes2.lock().unwrap_or_else(|p| p.into_inner());
                let route = if last { r.remove(&id) } else { r.get(&id).cloned() };
                if let Some(tx) = route {
                    let _ = tx.send(msg);
                }
            }
            dead2.store(true, Ordering::SeqCst);
            tracing::info!(runner = pid, "model runner disconnected");
            // Whatever was in flight ends with an error line.
            for (id, tx) in routes2.lock().unwrap_or_else(|p| p.into_inner()).drain() {
                let _ = tx.send(FromRunner::Error { id, error: RUNNER_STOPPED.into() });
            }
        });
        tracing::info!(
            runner = pid,
            model = %options.model_path,
            num_ctx = info.num_ctx,
            parallel = info.parallel,
            gpu_layers = format!("{}/{}", info.gpu_layers, info.layers),
            size = %corral_types::format::human_bytes(info.memory_bytes),
            gpu = %corral_types::format::human_bytes(info.gpu_bytes()),
            cpu_variant = info.cpu_variant.as_deref().unwrap_or("?"),
            "model loaded"
        );
        let stop = reap(child, pid, stderr_tail, info.cpu_variant.clone(), launcher.bad_variants.clone());
        Ok(Arc::new(Runner {
            writer: tokio::sync::Mutex::new(write),
            routes,
            next_id: AtomicU64::new(1),
            dead,
            info,
            options,
            active: Arc::default(),
            pid,
            stop: Mutex::new(Some(stop)),
        }))
    }

    /// Whether the process is still answering.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    /// The runner's process id.
    pub fn pid(&self) -> Option<u32> {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|_| self.pid)
    }

    /// Stops the process.
    pub fn kill(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
    }

    async fn send(&self, msg: &ToRunner) -> Result<(), RunnerError> {
        if !self.alive() {
            return Err(RunnerError::Stopped);
        }
        let mut line = serde_json::to_vec(msg).expect("messages serialise");
        line.push(b'\n');
        let mut w = self.writer.lock().await;
        w.write_all(&line).await.map_err(|_| RunnerError::Stopped)
    }

    /// Registers a route for a new request id.
    fn route(&self) -> (u64, mpsc::UnboundedReceiver<FromRunner>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        (id, rx)
    }

    async fn call(&self, make: impl FnOnce(u64) -> ToRunner) -> Result<FromRunner, RunnerError> {
        let (id, mut rx) = self.route();
        self.send(&make(id)).await?;
        match rx.recv().await {
            Some(FromRunner::Error { error, .. }) if error == RUNNER_STOPPED => Err(RunnerError::Stopped),
            Some(FromRunner::Error { error, .. }) => Err(RunnerError::Request(error)),
            Some(reply) => Ok(reply),
            None => Err(RunnerError::Stopped),
        }
    }

    pub async fn tokenize(&self, text: &str) -> Result<Vec<u32>, RunnerError> {
        match self.call(|id| ToRunner::Tokenize { id, text: text.to_string() }).await? {
            FromRunner::Tokens { tokens, .. } => Ok(tokens),
            other => Err(RunnerError::Request(format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn detokenize(&self, tokens: &[u32]) -> Result<String, RunnerError> {
        match self.call(|id| ToRunner::Detokenize { id, tokens: tokens.to_vec() }).await? {
            FromRunner::Text { text, .. } => Ok(text),
            other => Err(RunnerError::Request(format!("unexpected reply {other:?}"))),
        }
    }

    /// Completions in progress on this runner (running or waiting for a slot).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// How the runner's KV cache is used; `None` if it does not answer within a second (a scrape
    /// should not hang on a stuck runner).
    pub async fn cells(&self) -> Option<KvCells> {
        match tokio::time::timeout(Duration::from_secs(1), self.call(|id| ToRunner::Cells { id })).await {
            Ok(Ok(FromRunner::Cells { cells, .. })) => Some(cells),
            _ => None,
        }
    }

    /// Pooled embeddings of `request.inputs` (an embedding model's runner).
    pub async fn embed(&self, request: EmbedRequest) -> Result<Embedded, RunnerError> {
        match self.call(|id| ToRunner::Embed { id, request: request.clone() }).await? {
            FromRunner::Embedded { result, .. } => Ok(result),
            other => Err(RunnerError::Request(format!("unexpected reply {other:?}"))),
        }
    }

    /// Starts a completion. Dropping the returned stream before it ends cancels it.
    pub async fn complete(self: &Arc<Self>, request: CompletionRequest) -> Result<Completion, RunnerError> {
        let (id, rx) = self.route();
        self.send(&ToRunner::Complete { id, request }).await?;
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Completion { id, rx, runner: self.clone(), finished: false })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Dropping the sender tells the process's task to kill it.
        self.stop.get_mut().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The messages of one completion.
pub struct Completion {
    id: u64,
    rx: mpsc::UnboundedReceiver<FromRunner>,
    runner: Arc<Runner>,
    finished: bool,
}

impl Completion {
    /// Asks the runner to end the completion now; its `Done` (with usage) still comes.
    pub async fn stop(&self) {
        let _ = self.runner.send(&ToRunner::Stop { id: self.id }).await;
    }

    /// The next message: `Token`s, then one `Done` or `Error`.
    pub async fn next(&mut self) -> Option<FromRunner> {
        let msg = self.rx.recv().await;
        if !matches!(msg, Some(FromRunner::Token { .. })) {
            self.finished = true;
        }
        msg
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.runner.active.fetch_sub(1, Ordering::Relaxed);
        if self.finished {
            return;
        }
        // The client went away: tell the runner to stop working on this request.
        self.runner.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        let (runner, id) = (self.runner.clone(), self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = runner.send(&ToRunner::Cancel { id }).await;
            });
        }
    }
}
