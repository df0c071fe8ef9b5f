//! The integration-test harness: a real `corral serve` on a free port with a temp models
//! directory, driven through the real CLI binary and raw HTTP.

#![allow(dead_code)]

pub mod tls;
pub mod vulkan;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use corral_types::Digest;
use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// A running server. Killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a server started with
    /// `CORRAL_TLS_CERT`.
    pub base: String,
    pub models: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
    /// The first of `CORRAL_API_KEYS` when the server was started with keys: the CLI sends it.
    pub api_key: Option<String>,
    /// The `CORRAL_CA_BUNDLE` the server was started with: the CLI trusts it too.
    ca_bundle: Option<String>,
}

impl Server {
    /// A server on a fresh, empty models directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        let mut s = Server::start_in(&models, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A server on a fresh, empty models directory, with extra environment variables.
    pub fn start_env(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(&tmp.path().join("models"), env);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `models` with extra environment variables.
    pub fn start_in(models: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env("OLLAMA_HOST", "127.0.0.1:0")
            .env("OLLAMA_MODELS", models)
            // The registry identity key (`~/.ollama/id_ed25519`) is created at start: not in the
            // real home.
            .env("HOME", models.parent().unwrap_or(models))
            .env("NO_COLOR", "1")
            // One thread per runner: two OpenMP threads on a shared two-core machine collapse.
            .env("CORRAL_NUM_THREAD", "1")
            .env_remove("OLLAMA_NOPRUNE")
            .env_remove("OLLAMA_ORIGINS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("corral serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Into the log first: a test that starts asserting on the log once the address
                // is known must find every line up to this one.
                {
                    let mut l = log2.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(rest) = line.split("Listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        let given = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        let api_key = given("CORRAL_API_KEYS").and_then(|v| v.split(',').next().map(String::from));
        let base = match given("CORRAL_TLS_CERT") {
            Some(_) => format!("https://localhost:{}", addr.rsplit_once(':').unwrap().1),
            None => format!("http://{addr}"),
        };
        let ca_bundle = given("CORRAL_CA_BUNDLE");
        Server { child, base, addr, models: models.to_path_buf(), _tmp: None, log, api_key, ca_bundle }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Runs the CLI against this server.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.corral_in(None, args)
    }

    /// Runs the CLI in `dir`.
    pub fn corral_in(&self, dir: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        let host = if self.base.starts_with("https") { &self.base } else { &self.addr };
        cmd.args(args).env("OLLAMA_HOST", host).env("NO_COLOR", "1").env_remove("OLLAMA_API_KEY");
        if let Some(key) = &self.api_key {
            cmd.env("OLLAMA_API_KEY", key);
        }
        match &self.ca_bundle {
            Some(ca) => cmd.env("CORRAL_CA_BUNDLE", ca),
            None => cmd.env_remove("CORRAL_CA_BUNDLE"),
        };
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        cmd.output().expect("corral runs")
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.corral(args);
        assert!(out.status.success(), "corral {args:?} failed:\n{}\n{}", stderr(&out), self.log());
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Process ids of this server's runner children.
    pub fn runners(&self) -> Vec<u32> {
        self.children("runner")
    }

    /// Process ids of this server's template workers.
    pub fn template_workers(&self) -> Vec<u32> {
        self.children("template-worker")
    }

    /// Process ids of this server's children started as `corral <subcommand>`.
    fn children(&self, subcommand: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // Fields after the parenthesised command: state, then the parent pid.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
            let ppid: u32 = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if ppid == self.child.id() && cmdline.split('\0').nth(1) == Some(subcommand) {
                out.push(pid);
            }
        }
        out
    }

    /// The most memory the server process itself has held (`VmHWM`), in bytes.
    pub fn peak_memory(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
        line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("a size in kB") * 1024
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `within` for the server to exit, and returns how it did.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "the server did not exit within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interpreter with the pinned client libraries and Selenium (`CORRAL_TEST_PYTHON`, which
/// `scripts/test.sh` sets from `scripts/client-env.sh`).
pub fn python() -> String {
    std::env::var("CORRAL_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("CORRAL_TEST_PYTHON is not set: run scripts/test.sh, or point it at the python of scripts/client-env.sh")
    })
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Writes the tiny random model (no real tokenizer: fast) to `dir/tiny.gguf`.
pub fn tiny_gguf(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), None)).unwrap();
    p
}

pub fn body(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn post(server: &Server, path: &str, payload: Value) -> (StatusCode, Value) {
    body(http().post(server.url(path)).json(&payload).send().unwrap())
}

pub fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({ "error": message }))
}

/// Uploads `bytes` as a blob and returns its digest.
pub fn upload(server: &Server, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let resp = http().post(server.url(&format!("/api/blobs/{d}"))).body(bytes.to_vec()).send().unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    d
}

pub fn tiny_bytes() -> Vec<u8> {
    corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), None)
}

/// Creates `name` from the tiny model with `extra` request fields, not streaming.
pub fn create(server: &Server, name: &str, extra: Value) -> (StatusCode, Value) {
    create_from(server, name, &tiny_bytes(), extra)
}

#[allow(unused_imports)]
pub use corral_testkit::tree;

/// A runnable tiny model (SmolLM2's tokenizer, random weights) with a given seed and context.
/// Starts an answer that runs for minutes (a 16k context, no `num_predict`) and returns it after
/// its first line.
pub fn long_stream(server: &Server, model: &str) -> BufReader<reqwest::blocking::Response> {
    stream_from(
        server,
        json!({"model": model, "prompt": "Tell me everything.", "options": {"temperature": 0, "num_ctx": 16384}}),
    )
}

/// Starts `model` (SmolLM2 or a model with its vocabulary) counting, greedy, which it does not
/// stop by itself, and returns the stream after its first line.
pub fn counting(server: &Server, model: &str) -> BufReader<reqwest::blocking::Response> {
    stream_from(
        server,
        json!({"model": model, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": true,
            "options": {"temperature": 0, "num_predict": 4000}}),
    )
}

/// A streamed `/api/generate` of `request`, after its first line.
fn stream_from(server: &Server, request: Value) -> BufReader<reqwest::blocking::Response> {
    let resp = http().post(server.url("/api/generate")).json(&request).send().unwrap();
    let mut reader = BufReader::new(resp);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"done\":false"), "{first}");
    reader
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
pub fn process_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Sends `signal` (`TERM`, `STOP`, `9`…) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success(), "kill -{signal} {pid}");
}

pub fn runnable_bytes(seed: u64, context: u32) -> Vec<u8> {
    corral_testkit::tiny_llama_with_smollm2_tokenizer(&corral_testkit::TinySpec { seed, context, ..Default::default() })
}

/// Uploads `bytes` and creates `name` from them with `extra` request fields.
pub fn create_from(server: &Server, name: &str, bytes: &[u8], extra: Value) -> (StatusCode, Value) {
    let d = upload(server, bytes);
    let mut req = json!({"model": name, "files": {"model.gguf": d.to_string()}, "stream": false});
    req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    post(server, "/api/create", req)
}

/// The NDJSON lines of a streamed response.
pub fn lines(resp: Response) -> Vec<Value> {
    resp.text().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Debian's `docker-registry` (distribution 2.8) on a free loopback port, storing into a temp dir.
pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl DockerRegistry {
    pub fn start() -> DockerRegistry {
        Self::start_with(None, None)
    }

    /// With htpasswd basic auth for `user`/`password` (hashed with apache2-utils' `htpasswd`).
    pub fn start_with_login(user: &str, password: &str) -> DockerRegistry {
        Self::start_with(Some((user, password)), None)
    }

    /// Serving HTTPS with a PEM certificate chain and key.
    pub fn start_tls(certificate: &Path, key: &Path) -> DockerRegistry {
        Self::start_with(None, Some((certificate, key)))
    }

    fn start_with(login: Option<(&str, &str)>, tls: Option<(&Path, &Path)>) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((user, password)) = login {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd runs (apt-get install apache2-utils)");
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let mut tls_yaml = String::new();
        if let Some((certificate, key)) = tls {
            tls_yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        let r = DockerRegistry { child, addr, dir };
        for _ in 0..100 {
            let up = if tls.is_some() {
                std::net::TcpStream::connect(&r.addr).is_ok()
            } else {
                http()
                    .get(format!("http://{}/v2/", r.addr))
                    .send()
                    .is_ok_and(|resp| resp.status() == 200 || resp.status() == 401)
            };
            if up {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry did not start on {}", r.addr);
    }

    /// The registry's own file holding a blob.
    pub fn blob_file(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
