//! The interactive chat, driven through a real pseudo-terminal (tmux), against a real server.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{create_from, runnable_bytes, Server};
use serde_json::json;

/// A tmux session running `corral run MODEL`. Killed on drop.
struct Term {
    name: String,
}

impl Term {
    fn start(server: &Server, model: &str, home: &std::path::Path) -> Term {
        let name = format!("corral-test-{}", std::process::id());
        let cmd = format!(
            "HOME={} OLLAMA_HOST={} NO_COLOR=1 {} run {model}; sleep 30",
            home.display(),
            server.addr,
            common::BIN
        );
        let ok = Command::new("tmux").args(["new-session", "-d", "-s", &name, "-x", "200", "-y", "50", &cmd]).status();
        assert!(ok.is_ok_and(|s| s.success()), "tmux is needed for this test (apt-get install tmux)");
        let t = Term { name };
        t.wait_for(">>>", Duration::from_secs(30));
        t
    }

    fn screen(&self) -> String {
        // The whole scrollback (`-S -`): a long answer must not push earlier prompts out of the count.
        let out = Command::new("tmux").args(["capture-pane", "-p", "-S", "-", "-t", &self.name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types a line (and Enter), then waits until `expect` shows.
    fn send(&self, line: &str, expect: &str) {
        Command::new("tmux").args(["send-keys", "-t", &self.name, "-l", line]).status().unwrap();
        Command::new("tmux").args(["send-keys", "-t", &self.name, "Enter"]).status().unwrap();
        self.wait_for(expect, Duration::from_secs(30));
    }

    fn key(&self, key: &str) {
        Command::new("tmux").args(["send-keys", "-t", &self.name, key]).status().unwrap();
    }

    fn wait_for(&self, text: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {text:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Number of `>>>` prompts on screen (each answer ends with a fresh one).
    fn prompts(&self) -> usize {
        self.screen().lines().filter(|l| l.starts_with(">>>")).count()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).status();
    }
}

#[test]
fn two_turns_parameters_save_and_ctrl_c() {
    let server = Server::start();
    // A long context so an unbounded answer runs long enough to interrupt.
    create_from(&server, "tiny", &runnable_bytes(42, 16384), json!({"parameters": {"num_ctx": 16384}}));
    let home = tempfile::tempdir().unwrap();
    let term = Term::start(&server, "tiny", home.path());

    term.send("/set parameter num_predict 5", "Set parameter 'num_predict' to '5'");
    term.send("/set parameter temperature 0", "Set parameter 'temperature' to '0'");
    // A template over two lines between """ markers (issue 14): the turns below render with it,
    // and `/save` keeps it.
    term.send("/set template \"\"\"{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}", "{{ .Content }}");
    term.send("{{ end }}<|assistant|>\"\"\"", "Set prompt template.");
    let before = term.prompts();
    term.send("Hello there", "Hello there");
    term.wait_for_more_prompts(before);
    let before = term.prompts();
    term.send("And again", "And again");
    term.wait_for_more_prompts(before);

    term.send("/save tiny-saved", "Created new model 'tiny-saved'");
    // The saved model carries the session: its parameters and both turns.
    let params = server.ok(&["show", "tiny-saved", "--parameters"]);
    assert!(params.contains("num_predict") && params.contains("temperature"), "{params}");
    let modelfile = server.ok(&["show", "tiny-saved", "--modelfile"]);
    assert!(
        modelfile.contains("MESSAGE user Hello there") && modelfile.contains("MESSAGE user And again"),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("TEMPLATE \"{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}\n{{ end }}<|assistant|>\""),
        "{modelfile}"
    );
    let out = server.corral(&["run", "tiny-saved", "one more"]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Ctrl+C during an answer stops it and returns to the prompt; the session goes on.
    term.send("/set parameter num_predict -1", "Set parameter 'num_predict' to '-1'");
    let before = term.prompts();
    Command::new("tmux").args(["send-keys", "-t", &term.name, "-l", "Tell me a very long story"]).status().unwrap();
    term.key("Enter");
    std::thread::sleep(Duration::from_millis(1500));
    term.key("C-c");
    term.wait_for_more_prompts(before);
    term.send("/bye", "/bye");
    let start = Instant::now();
    while !home.path().join(".ollama/history").is_file() {
        assert!(start.elapsed() < Duration::from_secs(10), "history was not saved");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Term {
    /// Waits until there are more `>>>` prompts than `before` (an answer finished).
    fn wait_for_more_prompts(&self, before: usize) {
        let start = Instant::now();
        while self.prompts() <= before {
            assert!(start.elapsed() < Duration::from_secs(30), "no new prompt; screen:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
