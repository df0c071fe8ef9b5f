//! Issue 13: the server's and its runners' lives, with real processes and a real (tiny) model: a
//! runner stopped with SIGSTOP is found and replaced, runners never outlive their server, and
//! SIGTERM / SIGINT stop the server cleanly within the shutdown deadline.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{create_from, long_stream, post, process_ended, runnable_bytes, signal, Server};
use serde_json::{json, Value};

/// The last line of a stream read to its end.
fn last_line(mut reader: impl Read) -> Value {
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    serde_json::from_str(rest.lines().last().unwrap_or("null")).unwrap()
}

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stopped_runner_is_killed_within_seconds_and_the_next_request_gets_a_fresh_one() {
    let server = Server::start();
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    let reader = long_stream(&server, "long");
    let runners = server.runners();
    assert_eq!(runners.len(), 1);
    let started = Instant::now();
    signal(runners[0], "STOP");
    let last = last_line(reader);
    let error = last["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("model runner stopped responding (no answer within 5s) and was killed"), "{last}");
    // A ping every 2.5 s, answered within 5 s: found within 7.5 s (and some slack for CI).
    assert!(started.elapsed() < Duration::from_secs(12), "{:?}", started.elapsed());
    wait_until("the stopped runner is killed", Duration::from_secs(5), || process_ended(runners[0]));
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "long", "prompt": "again", "stream": false, "options": {"num_predict": 2}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["eval_count"], 2);
}

#[test]
fn runners_do_not_outlive_a_server_killed_with_sigkill() {
    let mut server = Server::start();
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    let _reader = long_stream(&server, "long");
    let runners = server.runners();
    assert_eq!(runners.len(), 1);
    signal(server.pid(), "9");
    server.wait_exit(Duration::from_secs(5));
    wait_until("the runner exits after its server", Duration::from_secs(5), || process_ended(runners[0]));
}

#[test]
fn sigterm_ends_an_endless_answer_at_the_deadline_stops_the_runners_and_exits_0() {
    let mut server = Server::start_env(&[("CORRAL_SHUTDOWN_TIMEOUT", "1s")]);
    create_from(&server, "long", &runnable_bytes(42, 16384), json!({}));
    let reader = long_stream(&server, "long");
    let runners = server.runners();
    let started = Instant::now();
    signal(server.pid(), "TERM");
    let last = last_line(reader);
    assert_eq!(last["error"], "the server is shutting down", "{last}");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert!(runners.iter().all(|p| process_ended(*p)), "runners left behind: {runners:?}");
    assert!(server.log().contains("shutting down: answers in progress have 1s to finish"), "{}", server.log());
}

#[test]
fn sigint_lets_a_short_answer_finish_and_exits_0() {
    let mut server = Server::start();
    create_from(&server, "tiny", &runnable_bytes(42, 4096), json!({}));
    let resp = common::http()
        .post(server.url("/api/generate"))
        // Greedy, so the random model's answer is the same each run (sampled, it can draw its
        // end-of-text token early), and long enough to be running when the signal comes.
        .json(&json!({"model": "tiny", "prompt": "Hi", "options": {"num_predict": 400, "temperature": 0}}))
        .send()
        .unwrap();
    let mut reader = std::io::BufReader::new(resp);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    signal(server.pid(), "INT");
    let last = last_line(reader);
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(last["eval_count"], 400, "{last}");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0), "{}", server.log());
}
