//! A loaded model as the server talks to it: requests over a [`Link`] by id, answers routed back
//! to whoever asked, and noticing when the other end is gone.
//!
//! Whatever the backend (a runner process, the scripted fake), the other end speaks the runner
//! protocol of `corral_types::runner`; everything here is the same for both. A runner that dies
//! costs only the requests it had in flight, which end with [`RunnerError::Stopped`]. A runner
//! that stops answering (stopped with SIGSTOP, its process wedged) is found by a heartbeat: it is
//! killed, its requests end with an error that says so, and the next request loads a fresh one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use corral_types::runner::{
    CompletionRequest, EmbedRequest, Embedded, ErrorKind, FromRunner, KvCells, LoadOptions, RunnerInfo, ToRunner,
};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::backend::Link;

/// What in-flight requests get when their runner dies.
pub const RUNNER_STOPPED: &str = "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check corral server logs for details";

/// A runner failure, by kind: the server decides on statuses from the variant, never the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunnerError {
    /// The model could not be loaded (the message says why, for the log and the client).
    #[error("{0}")]
    Load(String),
    /// The runner is gone.
    #[error("{RUNNER_STOPPED}")]
    Stopped,
    /// The runner refused or failed the request.
    #[error("{message}")]
    Request { kind: ErrorKind, message: String },
}

impl RunnerError {
    /// The error a runner's `Error` message stands for. A `stopped` error keeps its own message
    /// when it says more than that the runner is gone (why it was killed).
    pub fn from_reply(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::Stopped if message == RUNNER_STOPPED => RunnerError::Stopped,
            kind => RunnerError::Request { kind, message },
        }
    }

    fn unexpected(reply: &FromRunner) -> Self {
        RunnerError::Request {
            kind: ErrorKind::Internal,
            message: format!("unexpected reply from the runner: {reply:?}"),
        }
    }
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<FromRunner>>>>;

/// Ends every request in flight with a `stopped` error saying `why`.
fn fail_all(routes: &Routes, why: &str) {
    for (id, tx) in routes.lock().unwrap_or_else(|p| p.into_inner()).drain() {
        let _ = tx.send(FromRunner::Error { id, error: why.into(), kind: ErrorKind::Stopped });
    }
}

/// A loaded model.
pub struct Runner {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Where answers go, by request id.
    routes: Routes,
    next_id: AtomicU64,
    dead: Arc<AtomicBool>,
    pub info: RunnerInfo,
    pub options: LoadOptions,
    /// Completions started and not yet ended (running or waiting for a sequence slot).
    active: Arc<AtomicUsize>,
    pid: Option<u32>,
    /// Ends the runner when fired (dropping it does too).
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("model", &self.options.model_path).finish_non_exhaustive()
    }
}

impl Runner {
    /// Starts routing the answers of a freshly loaded model, and a heartbeat: a runner that does
    /// not answer one within `heartbeat` is killed (see [`Runner::watch`]).
    pub fn connect(link: Link, options: LoadOptions, heartbeat: Duration) -> Arc<Runner> {
        let Link { info, reader, writer, pid, stop } = link;
        let routes: Routes = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let (routes2, dead2) = (routes.clone(), dead.clone());
        let who = pid.map_or_else(|| "in-process".to_string(), |p| p.to_string());
        let who2 = who.clone();
        tokio::spawn(async move {
            let mut lines = reader.lines();
            let mut fatal = None;
            while let Ok(Some(line)) = lines.next_line().await {
                let msg = match serde_json::from_str::<FromRunner>(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(runner = who2, "malformed message from the runner: {e}");
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
                    | FromRunner::Pong { id }
                    | FromRunner::Error { id, .. } => (*id, true),
                    FromRunner::Fatal { error } => {
                        tracing::warn!(runner = who2, "the model runner is stopping: {error}");
                        fatal = Some(error.clone());
                        continue;
                    }
                    _ => continue,
                };
                let mut r = routes2.lock().unwrap_or_else(|p| p.into_inner());
                let route = if last { r.remove(&id) } else { r.get(&id).cloned() };
                if let Some(tx) = route {
                    let _ = tx.send(msg);
                }
            }
            dead2.store(true, Ordering::SeqCst);
            tracing::info!(runner = who2, "model runner disconnected");
            // Whatever was in flight ends with an error, saying why when the runner could.
            match fatal {
                Some(why) => fail_all(&routes2, &format!("model runner has unexpectedly stopped: {why}")),
                None => fail_all(&routes2, RUNNER_STOPPED),
            }
        });
        tracing::info!(
            runner = who,
            model = %options.model_path,
            num_ctx = info.num_ctx,
            parallel = info.parallel,
            gpu_layers = format!("{}/{}", info.gpu_layers, info.layers),
            size = %corral_types::format::human_bytes(info.memory_bytes),
            gpu = %corral_types::format::human_bytes(info.gpu_bytes()),
            cpu_variant = info.cpu_variant.as_deref().unwrap_or("?"),
            kv_cache = info.kv_cache_type.as_str(),
            "model loaded"
        );
        let runner = Arc::new(Runner {
            writer: tokio::sync::Mutex::new(writer),
            routes,
            next_id: AtomicU64::new(1),
            dead,
            info,
            options,
            active: Arc::default(),
            pid,
            stop: Mutex::new(Some(stop)),
        });
        tokio::spawn(Runner::watch(Arc::downgrade(&runner), heartbeat));
        runner
    }

    /// The heartbeat: a `ping` every half `timeout`, each to be answered within `timeout`. The
    /// runner answers pings from the thread that reads requests, which never waits for the model,
    /// so a busy runner answers at once and only a stopped or wedged process misses one. Ends
    /// when the runner is dropped or gone.
    async fn watch(runner: Weak<Runner>, timeout: Duration) {
        loop {
            tokio::time::sleep(timeout / 2).await;
            let Some(r) = runner.upgrade() else { return };
            if !r.alive() {
                return;
            }
            match tokio::time::timeout(timeout, r.call(|id| ToRunner::Ping { id })).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => return r.hung(timeout),
            }
        }
    }

    /// Ends a runner that missed a heartbeat (SIGKILL ends a stopped process too).
    fn hung(&self, timeout: Duration) {
        let why = format!(
            "model runner stopped responding (no answer within {}s) and was killed; the next request starts it again",
            timeout.as_secs_f32()
        );
        tracing::error!(runner = self.pid.unwrap_or_default(), model = %self.options.model_path, "{why}");
        self.end(&why);
    }

    /// Stops the runner now: the requests it has in flight end with `why` (not with the generic
    /// "stopped" a crash gets, since this was no crash).
    pub fn end(&self, why: &str) {
        self.dead.store(true, Ordering::SeqCst);
        fail_all(&self.routes, why);
        self.kill();
    }

    /// Whether the runner is still answering.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst)
    }

    /// The runner's process id, while it has not been told to stop.
    pub fn pid(&self) -> Option<u32> {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and(self.pid)
    }

    /// Stops the runner.
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
        w.write_all(&line).await.map_err(|_| RunnerError::Stopped)?;
        w.flush().await.map_err(|_| RunnerError::Stopped)
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
            Some(FromRunner::Error { error, kind, .. }) => Err(RunnerError::from_reply(kind, error)),
            Some(reply) => Ok(reply),
            None => Err(RunnerError::Stopped),
        }
    }

    pub async fn tokenize(&self, text: &str) -> Result<Vec<u32>, RunnerError> {
        match self.call(|id| ToRunner::Tokenize { id, text: text.to_string() }).await? {
            FromRunner::Tokens { tokens, .. } => Ok(tokens),
            other => Err(RunnerError::unexpected(&other)),
        }
    }

    pub async fn detokenize(&self, tokens: &[u32]) -> Result<String, RunnerError> {
        match self.call(|id| ToRunner::Detokenize { id, tokens: tokens.to_vec() }).await? {
            FromRunner::Text { text, .. } => Ok(text),
            other => Err(RunnerError::unexpected(&other)),
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
            other => Err(RunnerError::unexpected(&other)),
        }
    }

    /// Starts a completion. Dropping the returned stream before it ends cancels it.
    pub async fn complete(self: &Arc<Self>, request: CompletionRequest) -> Result<Completion, RunnerError> {
        let (id, rx) = self.route();
        self.send(&ToRunner::Complete { id, request: Box::new(request) }).await?;
        self.active.fetch_add(1, Ordering::Relaxed);
        Ok(Completion { id, rx, runner: self.clone(), finished: false })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Dropping the sender ends the runner.
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
