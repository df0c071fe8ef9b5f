//! Issue 13: a model whose chat template is hostile, as a user who pulled one would meet it. Each
//! template below is in the model's GGUF; the chat goes through a real server, whose renders run
//! in `corral template-worker` processes. Each render ends in bounded time with an error that says
//! why, the server answers other requests meanwhile, never grows itself, and stops on SIGTERM.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{create_from, http, post, process_ended, signal, Server};
use corral_gguf::MetaValue;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The tiny runnable model (SmolLM2's tokenizer, random weights) with `template` as its chat
/// template.
fn model_with_template(template: &str) -> Vec<u8> {
    let mut tokenizer = corral_gguf::read_path(&corral_testkit::smollm2()).unwrap();
    tokenizer.metadata.retain(|(k, _)| k != "tokenizer.chat_template");
    tokenizer.metadata.push(("tokenizer.chat_template".into(), MetaValue::String(template.into())));
    corral_testkit::tiny_llama(&corral_testkit::TinySpec::default(), Some(&tokenizer))
}

/// A string of 16 bytes doubled 34 times: 256 GiB, built in 34 steps without writing a byte.
const DOUBLING: &str = "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(34) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
/// The template of the issue: two nested 10,000-step loops around the user's message.
const LOOPING: &str = "{% for i in range(10000) %}{% for j in range(10000) %}{% for m in messages %}{% if i < 0 %}{{ m.content }}{% endif %}{% endfor %}{% endfor %}{% endfor %}";
/// Few steps, each one slow: a 40 MB string made a million times (hours), within the step bound.
const SLOW_STEPS: &str =
    "{% for i in range(1000) %}{% for j in range(1000) %}{% set x = messages[0].content * 20000000 %}{% endfor %}{% endfor %}{{ messages[0].content }}";

/// Chats with `model` on another thread while this one times `/api/tags` every 100 ms; returns
/// the chat's answer, how long it took, and the slowest `/api/tags`.
fn chat_while_listing(server: &Server, model: &str) -> ((StatusCode, Value), Duration, Duration) {
    let url = server.url("/api/chat");
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": false,
                      "options": {"num_predict": 2}});
    let started = Instant::now();
    let chat = thread::spawn(move || common::body(http().post(url).json(&body).send().unwrap()));
    let mut slowest = Duration::ZERO;
    while !chat.is_finished() {
        let asked = Instant::now();
        let resp = http().get(server.url("/api/tags")).timeout(Duration::from_secs(30)).send().unwrap();
        assert_eq!(resp.status(), 200);
        slowest = slowest.max(asked.elapsed());
        thread::sleep(Duration::from_millis(100));
    }
    let answer = chat.join().unwrap();
    (answer, started.elapsed(), slowest)
}

#[test]
fn issue_13_hostile_templates_end_with_clear_errors_while_the_server_answers_and_stays_small() {
    let server = Server::start();
    for (name, template) in [("doubling", DOUBLING), ("looping", LOOPING), ("slow", SLOW_STEPS)] {
        let (status, v) = create_from(&server, name, &model_with_template(template), json!({}));
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = create_from(&server, "good", &common::runnable_bytes(42, 4096), json!({}));
    assert_eq!(status, 200, "{v}");

    for (model, expected, within) in [
        ("doubling", "the chat template needed more than 1024 MiB of memory and was stopped", 30),
        ("looping", "the chat template did not finish within 50000000 steps", 30),
        // The worker's deadline is 10 s.
        ("slow", "the chat template did not finish rendering within 10s and was stopped", 25),
    ] {
        let ((status, v), took, slowest) = chat_while_listing(&server, model);
        eprintln!("{model}: {status} {v} in {took:?}; slowest /api/tags {slowest:?}");
        assert_eq!(status, 500, "{model}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{model}: {error}");
        assert!(took < Duration::from_secs(within), "{model}: {took:?}");
        // The render runs in another process: the server's own threads stay free (the issue saw
        // `/api/tags` go unanswered for more than 5 s).
        assert!(slowest < Duration::from_secs(2), "{model}: /api/tags took {slowest:?}");
    }
    // The doubling template's worker died of its memory limit, and the looping template's (kept
    // after its error) rendered the slow one and was killed at the deadline: none is left.
    let live = || server.template_workers().into_iter().filter(|p| !process_ended(*p)).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live().is_empty() {
        assert!(Instant::now() < deadline, "template workers still running: {:?}", live());
        thread::sleep(Duration::from_millis(50));
    }

    // The server never held the hostile templates' memory: the doubling one alone reached 1 GiB
    // in its worker, and before workers the looping one grew the server to 3.8 GB.
    let peak = server.peak_memory();
    assert!(peak < 400 << 20, "the server's peak memory was {} MiB", peak >> 20);

    // A fresh worker renders the next model's template.
    let (status, v) = post(
        &server,
        "/api/chat",
        json!({"model": "good", "messages": [{"role": "user", "content": "Hi"}], "stream": false, "options": {"num_predict": 2}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 2, "{v}");
}

/// Creates a model whose template renders slowly and starts a chat with it in a thread; returns
/// the thread (the chat's status, or the error of a closed connection) once a template worker is
/// rendering, with the workers' pids.
fn start_slow_render(server: &Server) -> (thread::JoinHandle<reqwest::Result<StatusCode>>, Vec<u32>) {
    let (status, v) = create_from(server, "slow", &model_with_template(SLOW_STEPS), json!({}));
    assert_eq!(status, 200, "{v}");
    let url = server.url("/api/chat");
    let chat = thread::spawn(move || {
        let body = json!({"model": "slow", "messages": [{"role": "user", "content": "Hi"}], "stream": false});
        http().post(url).json(&body).send().map(|r| r.status())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = server.template_workers();
        if !workers.is_empty() {
            return (chat, workers);
        }
        assert!(Instant::now() < deadline, "no template worker started:\n{}", server.log());
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_13_sigterm_stops_a_server_in_the_middle_of_a_slow_render() {
    let mut server = Server::start_env(&[("CORRAL_SHUTDOWN_TIMEOUT", "1s")]);
    let (chat, workers) = start_slow_render(&server);
    let started = Instant::now();
    signal(server.pid(), "TERM");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    // The client got an answer or a closed connection, not a hang.
    let _ = chat.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !workers.iter().all(|p| process_ended(*p)) {
        assert!(Instant::now() < deadline, "template workers left behind: {workers:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn issue_13_template_workers_do_not_outlive_a_server_killed_with_sigkill() {
    let mut server = Server::start();
    let (_chat, workers) = start_slow_render(&server);
    signal(server.pid(), "9");
    server.wait_exit(Duration::from_secs(5));
    // Mid-render, the worker does not read its stdin: its parent watch ends it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !workers.iter().all(|p| process_ended(*p)) {
        assert!(Instant::now() < deadline, "template workers left behind: {workers:?}");
        thread::sleep(Duration::from_millis(50));
    }
}
