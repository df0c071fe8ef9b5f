//! A backend with no model and no process: each "runner" is a task that answers the runner
//! protocol from a [`Script`], for tests of everything above the runner (scheduling, streaming,
//! cancellation, errors) that run in milliseconds.
//!
//! Tokens are bytes: `tokenize` answers one token per byte of the text, `detokenize` the reverse,
//! so a prompt's length in tokens is its length in bytes. A completion answers the script's
//! `reply` pieces one token each, then `Done` (`length` when `num_predict` ran out first).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_types::runner::{
    CompletionRequest, DeviceUse, DoneReason, Embedded, ErrorKind, FromRunner, KvCells, LoadOptions, RunnerInfo,
    ToRunner, Usage,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Notify};

use super::{Backend, BoxFuture, Link};
use crate::runner::RunnerError;

/// What the scripted runners do. Changed with [`Scripted::set_script`]; a runner uses the script
/// in force when each request arrives.
#[derive(Debug, Clone)]
pub struct Script {
    /// The answer to every completion, one token per piece.
    pub reply: Vec<String>,
    /// Time between tokens.
    pub token_delay: Duration,
    /// The runner dies (its connection drops) after sending this many tokens of a completion.
    pub die_after: Option<usize>,
    /// The runner freezes after sending this many tokens of a completion, as a process stopped
    /// with SIGSTOP: it answers nothing more (heartbeats included) and sends nothing more.
    pub freeze_after: Option<usize>,
    /// Time a load takes.
    pub load_delay: Duration,
    /// A load fails with this message.
    pub fail_load: Option<String>,
    /// The `size` a loaded runner reports.
    pub memory_bytes: u64,
    /// Every completion fails at once with this kind and message.
    pub fail_completion: Option<(ErrorKind, String)>,
    /// GPU memory a loaded runner reports holding, by device id (`size_vram`, placement).
    pub gpu: Vec<(String, u64)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            reply: vec!["Hello".into(), ",".into(), " world".into(), ".".into()],
            token_delay: Duration::ZERO,
            die_after: None,
            freeze_after: None,
            load_delay: Duration::ZERO,
            fail_load: None,
            memory_bytes: 1 << 20,
            fail_completion: None,
            gpu: Vec::new(),
        }
    }
}

/// A load the backend was asked for.
#[derive(Debug, Clone)]
pub struct ScriptedLoad {
    pub options: LoadOptions,
    /// Its runner is still running.
    pub alive: bool,
}

/// One scripted runner's shared state.
struct Fake {
    options: LoadOptions,
    /// How it ends if it ends badly.
    fate: Fate,
    alive: Arc<AtomicBool>,
}

/// The scripted backend. Share it (`Arc`) between the server state and the test.
#[derive(Default)]
pub struct Scripted {
    script: Mutex<Script>,
    memory: Mutex<Option<u64>>,
    runners: Mutex<Vec<Fake>>,
    /// Completions cancelled by the server (the client went away).
    cancelled: AtomicUsize,
    /// Completions started.
    completions: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scripted {
    pub fn new(script: Script) -> Arc<Self> {
        Arc::new(Scripted { script: Mutex::new(script), ..Default::default() })
    }

    pub fn set_script(&self, script: Script) {
        *lock(&self.script) = script;
    }

    /// What [`Backend::available_memory`] answers (`None`: unknown, no limit).
    pub fn set_available_memory(&self, bytes: Option<u64>) {
        *lock(&self.memory) = bytes;
    }

    /// Every load so far, oldest first.
    pub fn loads(&self) -> Vec<ScriptedLoad> {
        lock(&self.runners)
            .iter()
            .map(|f| ScriptedLoad { options: f.options.clone(), alive: f.alive.load(Ordering::SeqCst) })
            .collect()
    }

    /// Runners still running.
    pub fn running(&self) -> usize {
        self.loads().iter().filter(|l| l.alive).count()
    }

    /// Ends every running runner of `model_path` as if it crashed.
    pub fn crash(&self, model_path: &str) {
        for f in lock(&self.runners).iter().filter(|f| f.options.model_path == model_path) {
            f.fate.crash.notify_one();
        }
    }

    /// Completions the server cancelled.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Completions started.
    pub fn completions(&self) -> usize {
        self.completions.load(Ordering::SeqCst)
    }

    fn script(&self) -> Script {
        lock(&self.script).clone()
    }
}

impl Backend for Arc<Scripted> {
    fn load(&self, options: LoadOptions, _timeout: Duration) -> BoxFuture<'_, Result<Link, RunnerError>> {
        let this = self.clone();
        Box::pin(async move {
            let script = this.script();
            tokio::time::sleep(script.load_delay).await;
            if let Some(error) = script.fail_load {
                return Err(RunnerError::Load(error));
            }
            let info = RunnerInfo {
                num_ctx: options.num_ctx,
                n_ctx_train: options.num_ctx,
                parallel: options.parallel.max(1),
                memory_bytes: script.memory_bytes,
                add_bos: false,
                layers: 1,
                gpu_layers: u32::from(!script.gpu.is_empty()),
                devices: script
                    .gpu
                    .iter()
                    .map(|(id, bytes)| DeviceUse { id: id.clone(), bytes: *bytes, host: None, host_device: 0 })
                    .collect(),
                cpu_variant: Some("scripted".into()),
                kv_cache_type: options.kv_cache_type,
            };
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let (read, write) = tokio::io::split(ours);
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let fake = Fake {
                options: options.clone(),
                fate: Fate { crash: Arc::default(), frozen: Arc::default() },
                alive: Arc::new(AtomicBool::new(true)),
            };
            let (fate, alive) = (fake.fate.clone(), fake.alive.clone());
            lock(&this.runners).push(fake);
            let runner_info = info.clone();
            tokio::spawn(async move {
                serve(this, runner_info, theirs, stopped, fate).await;
                alive.store(false, Ordering::SeqCst);
            });
            Ok(Link { info, reader: Box::new(BufReader::new(read)), writer: Box::new(write), pid: None, stop })
        })
    }

    fn available_memory(&self) -> Option<u64> {
        *lock(&self.memory)
    }
}

/// How a scripted runner ends badly: crashed (`crash` fired: its connection drops) or frozen
/// (`frozen` set: it goes silent).
#[derive(Clone)]
struct Fate {
    crash: Arc<Notify>,
    frozen: Arc<AtomicBool>,
}

impl Fate {
    fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }
}

/// Completions running in one scripted runner: the task, and its `stop` signal.
type Running = std::collections::HashMap<u64, (tokio::task::AbortHandle, Arc<Notify>)>;

/// One scripted runner: answers requests until the server stops it, drops it, or it "crashes".
async fn serve(
    backend: Arc<Scripted>,
    info: RunnerInfo,
    stream: tokio::io::DuplexStream,
    stopped: tokio::sync::oneshot::Receiver<()>,
    fate: Fate,
) {
    let (read, mut write) = tokio::io::split(stream);
    let (out, mut outgoing) = mpsc::unbounded_channel::<FromRunner>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = outgoing.recv().await {
            let mut line = serde_json::to_vec(&msg).expect("messages serialise");
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
        write
    });
    let mut lines = BufReader::new(read).lines();
    let mut running = Running::default();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(stopped);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) => l,
                _ => break,
            },
            _ = &mut stopped => break,
            _ = fate.crash.notified() => break,
        };
        running.retain(|_, (task, _)| !task.is_finished());
        let Ok(msg) = serde_json::from_str::<ToRunner>(&line) else { continue };
        if fate.frozen() {
            continue;
        }
        match msg {
            ToRunner::Cancel { id } => {
                if let Some((task, _)) = running.remove(&id) {
                    task.abort();
                    backend.cancelled.fetch_add(1, Ordering::SeqCst);
                }
            }
            ToRunner::Stop { id } => {
                if let Some((_, stop)) = running.get(&id) {
                    stop.notify_one();
                }
            }
            ToRunner::Complete { id, request } => {
                backend.completions.fetch_add(1, Ordering::SeqCst);
                let stop = Arc::new(Notify::new());
                let generate = complete(id, *request, backend.script(), out.clone(), stop.clone(), fate.clone());
                running.insert(id, (tasks.spawn(generate), stop));
            }
            other => {
                let _ = out.send(reply(other, &info, running.len()));
            }
        }
    }
    // Gone: every completion with it, and the connection closes (both halves dropped).
    tasks.abort_all();
    drop(out);
    writer.abort();
    let _ = writer.await;
}

/// The answer to a request that is answered at once (`running`: completions in progress).
fn reply(msg: ToRunner, info: &RunnerInfo, running: usize) -> FromRunner {
    let num_ctx = info.num_ctx as usize;
    match msg {
        ToRunner::Tokenize { id, text } => FromRunner::Tokens { id, tokens: text.bytes().map(u32::from).collect() },
        ToRunner::Detokenize { id, tokens } => match tokens.iter().map(|t| u8::try_from(*t)).collect::<Result<Vec<u8>, _>>() {
            Ok(bytes) => FromRunner::Text { id, text: String::from_utf8_lossy(&bytes).into_owned() },
            Err(_) => FromRunner::Error { id, error: "token out of range".into(), kind: ErrorKind::Invalid },
        },
        ToRunner::Ping { id } => FromRunner::Pong { id },
        ToRunner::Cells { id } => {
            FromRunner::Cells { id, cells: KvCells { used: running as u64, cached: 0, total: num_ctx as u64, moves: 0 } }
        }
        ToRunner::Embed { id, request } => match request.inputs.iter().find(|i| i.len() > num_ctx && !request.truncate) {
            Some(long) => FromRunner::Error {
                id,
                error: format!(
                    "the input length exceeds the context length: the input is {} tokens and the context is {num_ctx} tokens",
                    long.len()
                ),
                kind: ErrorKind::ContextLength,
            },
            None => FromRunner::Embedded {
                id,
                result: Embedded {
                    vectors: request.inputs.iter().map(|i| vec![i.len() as f32, 1.0, 0.0]).collect(),
                    prompt_tokens: request.inputs.iter().map(|i| i.len().min(num_ctx) as u32).sum(),
                },
            },
        },
        ToRunner::Complete { .. } | ToRunner::Cancel { .. } | ToRunner::Stop { .. } => {
            unreachable!("serve() handles completions and their control messages itself")
        }
    }
}

/// One completion: the script's pieces one token each, then `done` (or the script's failure, or
/// a crash of the whole runner).
async fn complete(
    id: u64,
    request: CompletionRequest,
    script: Script,
    out: mpsc::UnboundedSender<FromRunner>,
    stop: Arc<Notify>,
    fate: Fate,
) {
    if let Some((kind, error)) = script.fail_completion {
        let _ = out.send(FromRunner::Error { id, error, kind });
        return;
    }
    let mut sent = 0usize;
    let mut reason = DoneReason::Stop;
    for piece in &script.reply {
        if request.num_predict.is_some_and(|n| sent >= n as usize) {
            reason = DoneReason::Length;
            break;
        }
        if script.die_after == Some(sent) {
            fate.crash.notify_one();
            return;
        }
        if script.freeze_after == Some(sent) {
            fate.frozen.store(true, Ordering::SeqCst);
        }
        if fate.frozen() {
            return std::future::pending().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(script.token_delay) => {}
            _ = stop.notified() => break,
        }
        let _ = out.send(FromRunner::Token { id, text: piece.clone(), logprob: None });
        sent += 1;
    }
    let usage =
        Usage { prompt_tokens: request.prompt.len() as u32, generated_tokens: sent as u32, ..Default::default() };
    let tokens = request.prompt.bytes().map(u32::from).collect();
    let _ = out.send(FromRunner::Done { id, reason, usage, tokens });
}
