//! Runner processes: `corral runner` for a model, a Unix socket to talk to it, and a task that
//! owns the process until it ends.
//!
//! Architecture invariant: the server never loads a model into its own process. A runner that
//! crashes (a llama.cpp assertion on a hostile GGUF, out of memory) costs only the requests it had
//! in flight; the scheduler starts a new one for the next request.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_types::runner::{Backends, DevicePolicy, FromRunner, LoadOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};

use super::{Backend, BoxFuture, Link};
use crate::runner::RunnerError;

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
    /// The devices runners may use (`OLLAMA_VULKAN`, `OLLAMA_IGPU_ENABLE`).
    pub devices: DevicePolicy,
    /// Other hosts' `corral rpc` servers whose devices runners use (`CORRAL_RPC_SERVERS`).
    pub rpc_servers: Vec<String>,
}

impl Launcher {
    /// A launcher for `exe` with the library directory found beside it.
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Launcher {
            exe: exe.into(),
            library_dir: None,
            library_path: None,
            bad_variants: Arc::default(),
            devices: DevicePolicy::default(),
            rpc_servers: Vec::new(),
        }
    }

    /// `exe` with `subcommand`, and the library path it needs to start.
    fn base(&self, subcommand: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg(subcommand);
        // Whose death ends the child (`corral_types::runner::PARENT_PID_ENV`).
        cmd.env(corral_types::runner::PARENT_PID_ENV, std::process::id().to_string());
        if let Some(path) = &self.library_path {
            cmd.env("LD_LIBRARY_PATH", path);
        }
        cmd
    }

    /// `corral template-worker`, which renders chat templates within `memory` bytes
    /// ([`crate::render`]).
    pub(crate) fn template_worker(&self, memory: u64) -> Command {
        let mut cmd = self.base("template-worker");
        cmd.arg("--memory").arg(memory.to_string());
        Command::from(cmd)
    }

    /// `corral runner` with the backends it may load.
    fn runner(&self) -> std::process::Command {
        let mut cmd = self.base("runner");
        // When llama.cpp aborts, no debugger is attached to print a backtrace (seconds, during
        // which the dying runner still takes requests); the runner reports the reason itself.
        cmd.env("GGML_NO_BACKTRACE", "1");
        if let Some(dir) = &self.library_dir {
            cmd.arg("--libs").arg(dir);
        }
        for variant in self.bad_variants.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            cmd.arg("--skip-variant").arg(variant);
        }
        if !self.devices.vulkan {
            cmd.arg("--no-vulkan");
        }
        if let Some(integrated) = self.devices.integrated {
            cmd.arg("--igpu").arg(integrated.to_string());
        }
        for peer in &self.rpc_servers {
            cmd.arg("--rpc").arg(peer);
        }
        cmd
    }

    fn command(&self) -> Command {
        Command::from(self.runner())
    }

    /// `corral runner --quantize`: `input` quantized to llama.cpp file type `ftype` in `output`
    /// (blocking: create's work runs on a blocking thread).
    pub(crate) fn quantizer(
        &self,
        ftype: u32,
        input: &std::path::Path,
        output: &std::path::Path,
        threads: u32,
    ) -> std::process::Command {
        let mut cmd = self.runner();
        cmd.arg("--quantize").arg(ftype.to_string()).arg("--input").arg(input).arg("--output").arg(output);
        cmd.arg("--threads").arg(threads.to_string());
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

/// The backend of `corral serve`: a runner process per model.
pub struct Process(pub Launcher);

impl Backend for Process {
    fn load(&self, options: LoadOptions, timeout: Duration) -> BoxFuture<'_, Result<Link, RunnerError>> {
        Box::pin(start(&self.0, options, timeout))
    }

    fn available_memory(&self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
}

/// The last lines a runner wrote to stderr, kept to say why it died.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<String>>);

impl Tail {
    fn push(&self, line: &str) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() > 4000 {
            t.clear();
        }
        t.push_str(line);
        t.push('\n');
    }

    fn last(&self, n: usize) -> String {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

/// Starts `corral runner` for `options` and waits until the model is loaded.
async fn start(launcher: &Launcher, options: LoadOptions, timeout: Duration) -> Result<Link, RunnerError> {
    let load = RunnerError::Load;
    let dir = tempfile::Builder::new().prefix("corral-runner-").tempdir().map_err(|e| load(e.to_string()))?;
    let socket: PathBuf = dir.path().join("runner.sock");
    let listener = UnixListener::bind(&socket).map_err(|e| load(format!("runner socket: {e}")))?;
    let json = serde_json::to_string(&options).expect("options serialise");
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
        .map_err(|e| load(format!("could not start {} runner: {e}", launcher.exe.display())))?;
    let pid = child.id().unwrap_or_default();
    let tail = Tail::default();
    if let Some(stderr) = child.stderr.take() {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // The runner's own warnings (a setting it could not honour, a peer left out).
                if line.starts_with("runner: warning: ") {
                    tracing::warn!(runner = pid, "{line}");
                } else {
                    tracing::debug!(runner = pid, "{line}");
                }
                tail.push(&line);
            }
        });
    }
    let died = |status: std::io::Result<std::process::ExitStatus>| {
        let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        load(format!("model runner exited while loading ({status}): {}", tail.last(usize::MAX).trim()))
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
            Ok(FromRunner::Loading { .. }) => {}
            Ok(FromRunner::Ready { info }) => break info,
            Ok(FromRunner::LoadFailed { error } | FromRunner::Fatal { error }) => return Err(load(error)),
            Ok(other) => tracing::warn!("unexpected message from a loading runner: {other:?}"),
            Err(e) => return Err(load(format!("malformed message from the runner: {e}"))),
        }
    };
    let stop = reap(child, pid, tail, info.cpu_variant.clone(), launcher.bad_variants.clone());
    Ok(Link { info, reader: Box::new(lines.into_inner()), writer: Box::new(write), pid: Some(pid), stop })
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
    tail: Tail,
    variant: Option<String>,
    bad_variants: Arc<Mutex<Vec<String>>>,
) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => {
                let illegal = status.as_ref().is_ok_and(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal() == Some(SIGILL)
                });
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(runner = pid, %status, "model runner exited: {}", tail.last(8));
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
const SIGILL: i32 = 4;
