//! `corral runner` (hidden): one loaded model in its own process, serving the server over a Unix
//! socket with the protocol of `corral_types::runner`.
//!
//! The server starts this process, listens on the socket, and reads `loading` / `ready` (or
//! `load_failed`). If the model crashes llama.cpp, only this process dies; the server sees the
//! socket close and fails the requests it had in flight here.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use corral_engine::{CancelOnDrop, Engine, EngineError, Event, LlamaEngine, Sink};
use corral_types::runner::{DevicePolicy, FromRunner, LoadOptions, ToRunner};

#[derive(clap::Args)]
pub struct Args {
    /// Unix socket the server listens on
    #[arg(long, required_unless_present_any = ["probe", "quantize"])]
    socket: Option<PathBuf>,
    /// Load options, as JSON
    #[arg(long, required_unless_present_any = ["probe", "quantize"])]
    options: Option<String>,
    /// Directory of llama.cpp's backend modules (default: lib/corral beside the executable)
    #[arg(long)]
    libs: Option<PathBuf>,
    /// Load the backends, print what was found (JSON) and exit
    #[arg(long)]
    probe: bool,
    /// A CPU variant not to load (one that died of an illegal instruction here)
    #[arg(long = "skip-variant")]
    skip_variants: Vec<String>,
    /// Leave llama.cpp's Vulkan module unloaded (OLLAMA_VULKAN=false)
    #[arg(long)]
    no_vulkan: bool,
    /// Use integrated GPUs (true) or not (false); unset, Ollama's rule: CUDA's only
    /// (OLLAMA_IGPU_ENABLE)
    #[arg(long)]
    igpu: Option<bool>,
    /// Another host's `corral rpc` server (host:port) whose devices to use (CORRAL_RPC_SERVERS)
    #[arg(long = "rpc")]
    rpc: Vec<String>,
    /// Quantize --input into --output as this llama.cpp file type (15 is Q4_K_M), printing
    /// `{"done":i,"total":n}` after each tensor, and exit
    #[arg(long, requires_all = ["input", "output"])]
    quantize: Option<u32>,
    /// The GGUF to quantize
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where the quantized GGUF goes
    #[arg(long)]
    output: Option<PathBuf>,
    /// Threads for quantizing (0: all cores)
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

type Writer = Arc<Mutex<BufWriter<UnixStream>>>;

/// The answer to request `id` that failed with `e`: its message, and its kind for the server.
fn failed(id: u64, e: &EngineError) -> FromRunner {
    FromRunner::Error { id, error: e.to_string(), kind: e.kind() }
}

fn send(writer: &Writer, msg: &FromRunner) -> std::io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    put(&mut w, msg)?;
    w.flush()
}

/// Writes one message into the buffer, not sending it yet.
fn put(w: &mut BufWriter<UnixStream>, msg: &FromRunner) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, msg)?;
    w.write_all(b"\n")
}

/// Generations by request id; dropping one's handle cancels it in the engine.
type Running = Arc<Mutex<HashMap<u64, CancelOnDrop>>>;

/// Where a completion's events go: straight onto the socket, from the engine thread. Tokens of a
/// step are buffered and go out in one write when the engine flushes after the step, for all the
/// completions in it; a thread per completion forwarding each token would wake up beside the
/// model's threads at every token.
struct SocketSink {
    id: u64,
    writer: Writer,
    running: Running,
}

impl Sink for SocketSink {
    fn event(&mut self, event: Event) -> bool {
        let id = self.id;
        let msg = match event {
            Event::Token { text, logprob } => FromRunner::Token { id, text, logprob },
            Event::Done { reason, usage, tokens } => FromRunner::Done { id, reason, usage, tokens },
            Event::Error(e) => failed(id, &e),
        };
        if !matches!(msg, FromRunner::Token { .. }) {
            // The last message: the request no longer needs its cancel handle.
            self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        put(&mut w, &msg).is_ok()
    }

    fn flush(&mut self) {
        let _ = self.writer.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// Ends this process soon after the server that started it is gone, whatever it is doing. The
/// socket closing tells the request loop too, but not a load in progress (a large model reads for
/// minutes) nor a runner stopped and continued later: a runner must never outlive its server, even
/// one killed with -9. The parent's death shows as a new parent pid (init or a subreaper); the
/// server's pid comes from the server itself (`PARENT_PID_ENV`), so a child that starts after its
/// server died knows it at its first look (issue 13's SIGKILL test caught one such child rendering
/// on).
pub(crate) fn exit_with_parent(who: &'static str) {
    // The server's pid as it gave it; the parent now only when started by hand.
    let parent = std::env::var(corral_types::runner::PARENT_PID_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(std::os::unix::process::parent_id);
    std::thread::spawn(move || loop {
        if std::os::unix::process::parent_id() != parent {
            // Not `eprintln!`: stderr is a pipe to the dead server, and a failed write there
            // panics this thread before it gets to exit.
            let _ = writeln!(std::io::stderr(), "{who}: the server (pid {parent}) is gone; exiting");
            std::process::exit(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    });
}

/// Where [`on_abort`] reports: the server's socket, and the RPC servers in use.
static LAST_WORDS: std::sync::OnceLock<(Writer, Vec<String>)> = std::sync::OnceLock::new();

/// Called by ggml just before it aborts this process: tells the server why, so that the answers
/// in flight end with the reason and not only with "stopped". ggml's RPC client aborts this way
/// when a peer stops answering.
extern "C" fn on_abort(message: *const std::ffi::c_char) {
    let text = if message.is_null() {
        String::from("llama.cpp aborted")
    } else {
        // SAFETY: ggml passes a NUL-terminated message.
        unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().trim().to_string()
    };
    // ggml puts its source location first (`…/ggml-rpc.cpp:566: Remote RPC server crashed…`).
    let text = match text.split_once(": ") {
        Some((location, rest)) if location.rsplit_once(':').is_some_and(|(_, l)| l.parse::<u32>().is_ok()) => {
            rest.to_string()
        }
        _ => text,
    };
    let Some((writer, peers)) = LAST_WORDS.get() else { return };
    let error = if text.contains("RPC") && !peers.is_empty() {
        format!("an RPC server it used stopped answering ({}): {text}", peers.join(", "))
    } else {
        format!("llama.cpp aborted: {text}")
    };
    let _ = writeln!(std::io::stderr(), "runner: fatal: {error}");
    // Another thread may hold the writer mid-message: a few tries, never a wait that could hang.
    for _ in 0..50 {
        if let Ok(mut w) = writer.try_lock() {
            let _ = put(&mut w, &FromRunner::Fatal { error });
            let _ = w.flush();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Answers a request on a thread of its own. The engine does its work between decode steps, and
/// one step of a long prompt can take seconds on a CPU: the thread reading requests must not wait
/// for that, or `cancel`s would lag and heartbeats (`ping`) would go unanswered and get a healthy
/// runner killed.
fn answer_later(
    engine: &Arc<LlamaEngine>,
    writer: &Writer,
    answer: impl FnOnce(&LlamaEngine) -> FromRunner + Send + 'static,
) {
    let (engine, writer) = (engine.clone(), writer.clone());
    std::thread::spawn(move || {
        let _ = send(&writer, &answer(&engine));
    });
}

/// The devices the server lets this runner use.
fn policy(args: &Args) -> DevicePolicy {
    DevicePolicy { vulkan: !args.no_vulkan, integrated: args.igpu }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.probe {
        // What the server logs at start and places models with.
        let backends = corral_engine::backends::load(args.libs.as_deref(), &args.skip_variants, policy(&args))
            .map_err(anyhow::Error::msg)?;
        let mut found = backends.clone();
        found.peers_left_out = corral_engine::rpc::connect(&args.rpc, corral_engine::rpc::PROBE_TIMEOUT);
        found.devices = corral_engine::backends::devices();
        println!("{}", serde_json::to_string(&found)?);
        return Ok(());
    }
    if let (Some(ftype), Some(input), Some(output)) = (args.quantize, &args.input, &args.output) {
        exit_with_parent("quantizer");
        corral_engine::backends::load(args.libs.as_deref(), &args.skip_variants, policy(&args))
            .map_err(anyhow::Error::msg)?;
        let mut out = std::io::stdout().lock();
        // The server's environment, inherited: a published layout is quantized as it loads.
        let compat = corral_compat::enabled(std::env::var(corral_compat::ENV_SWITCH).ok().as_deref());
        corral_engine::quantize::quantize(input, output, ftype, args.threads, compat, |done, total| {
            let _ = writeln!(out, "{}", serde_json::json!({"done": done, "total": total}));
            let _ = out.flush();
        })
        .map_err(anyhow::Error::msg)?;
        return Ok(());
    }
    let devices = policy(&args);
    let (Some(socket), Some(options)) = (args.socket, args.options) else {
        anyhow::bail!("--socket and --options are required");
    };
    exit_with_parent("runner");
    let options: LoadOptions = serde_json::from_str(&options).context("invalid --options")?;
    let stream = UnixStream::connect(&socket).with_context(|| format!("connect {}", socket.display()))?;
    // Before the engine initialises llama.cpp; a failure is reported as a failed load.
    if let Err(e) = corral_engine::backends::load(args.libs.as_deref(), &args.skip_variants, devices) {
        let writer = Arc::new(Mutex::new(BufWriter::new(stream)));
        send(&writer, &FromRunner::LoadFailed { error: e.clone() })?;
        anyhow::bail!(e);
    }
    // Other hosts' devices, from the peers that answer now; the model loads on what there is.
    // A model kept on this CPU needs none of them (and must not wait for a busy one).
    let peers = if options.num_gpu == 0 { Vec::new() } else { args.rpc.clone() };
    for why in corral_engine::rpc::connect(&peers, corral_engine::rpc::PROBE_TIMEOUT) {
        eprintln!("runner: warning: {why}; loading without it");
    }
    let writer: Writer = Arc::new(Mutex::new(BufWriter::new(stream.try_clone()?)));
    let _ = LAST_WORDS.set((writer.clone(), peers));
    corral_engine::on_abort(on_abort);

    let progress_writer = writer.clone();
    let engine = match LlamaEngine::load(options, move |p| {
        let _ = send(&progress_writer, &FromRunner::Loading { progress: p });
    }) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            send(&writer, &FromRunner::LoadFailed { error: e.to_string() })?;
            return Err(e.into());
        }
    };
    send(&writer, &FromRunner::Ready { info: engine.info() })?;

    let running: Running = Arc::default();
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let msg: ToRunner = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("runner: ignoring malformed message: {e}");
                continue;
            }
        };
        match msg {
            ToRunner::Tokenize { id, text } => {
                answer_later(&engine, &writer, move |engine| match engine.tokenize(&text) {
                    Ok(tokens) => FromRunner::Tokens { id, tokens },
                    Err(e) => failed(id, &e),
                })
            }
            ToRunner::Detokenize { id, tokens } => {
                answer_later(&engine, &writer, move |engine| match engine.detokenize(&tokens) {
                    Ok(text) => FromRunner::Text { id, text },
                    Err(e) => failed(id, &e),
                });
            }
            ToRunner::Cells { id } => {
                send(&writer, &FromRunner::Cells { id, cells: engine.cells() })?;
            }
            ToRunner::Ping { id } => send(&writer, &FromRunner::Pong { id })?,
            ToRunner::Cancel { id } => {
                running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            }
            ToRunner::Stop { id } => {
                if let Some(c) = running.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
                    c.stop();
                }
            }
            ToRunner::Complete { id, request } => {
                let sink = SocketSink { id, writer: writer.clone(), running: running.clone() };
                // The map is locked across the start so the handle is in it before the engine can
                // end the request (and take the handle out).
                let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                match engine.complete_into(*request, Box::new(sink)) {
                    Ok(cancel) => {
                        map.insert(id, cancel);
                    }
                    Err(e) => {
                        drop(map);
                        send(&writer, &failed(id, &e))?;
                    }
                }
            }
            ToRunner::Embed { id, request } => {
                answer_later(&engine, &writer, move |engine| match engine.embed(request) {
                    Ok(result) => FromRunner::Embedded { id, result },
                    Err(e) => failed(id, &e),
                })
            }
        }
    }
    // The server closed the socket: it is gone or unloaded us.
    Ok(())
}
