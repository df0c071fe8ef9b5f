//! The integration-test harness: a real `corral serve` on a free port with a temp models
//! directory, driven through the real CLI binary and raw HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// A running server. Killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub models: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
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

    /// A server on `models` with extra environment variables.
    pub fn start_in(models: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .env("OLLAMA_HOST", "127.0.0.1:0")
            .env("OLLAMA_MODELS", models)
            .env("NO_COLOR", "1")
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
                if let Some(rest) = line.split("Listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { child, base: format!("http://{addr}"), addr, models: models.to_path_buf(), _tmp: None, log }
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
        cmd.args(args).env("OLLAMA_HOST", &self.addr).env("NO_COLOR", "1");
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

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Writes the tiny random model (no real tokenizer: fast) to `dir/tiny.gguf`.
pub fn tiny_gguf(dir: &Path) -> PathBuf {
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), None)).unwrap();
    p
}

pub use corral_testkit::tree;
