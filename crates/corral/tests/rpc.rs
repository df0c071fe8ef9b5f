//! Issue 31: one model over several hosts. Two `corral rpc` servers on their own loopback
//! addresses (127.0.0.2 and 127.0.0.3) stand for two machines; a Corral server told of them
//! (`CORRAL_RPC_SERVERS`) splits a model over their devices, and answers as it does alone. A peer
//! killed mid-answer ends that answer with a clear error and the next request loads without it;
//! a peer speaking another protocol version is left out with both versions named; `corral rpc`
//! will not listen beyond loopback without being told to.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{counting, http, post, Server, BIN};
use corral_types::runner::Backends;
use serde_json::{json, Value};

/// A `corral rpc` process on `ip`, one thread, killed on drop.
struct Peer {
    child: Child,
    endpoint: String,
}

impl Peer {
    fn start(ip: &str) -> Peer {
        Peer::start_with(ip, &[])
    }

    fn start_with(ip: &str, args: &[&str]) -> Peer {
        // A port free on that address now (ggml's server takes it a moment later).
        let port = TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
        let endpoint = format!("{ip}:{port}");
        let mut child = Command::new(BIN)
            .args(["rpc", "--listen", &endpoint, "--threads", "1"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let serving = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("corral rpc: serving"));
        assert!(serving.is_some_and(|l| l.contains(&endpoint)), "corral rpc did not start on {endpoint}");
        std::thread::spawn(move || lines.for_each(drop));
        // Listening once a connection is accepted (and closed again at once, as a client that
        // says nothing).
        let start = Instant::now();
        while TcpStream::connect(&endpoint).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "{endpoint} does not accept");
            std::thread::sleep(Duration::from_millis(20));
        }
        Peer { child, endpoint }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server using `peers`, with SmolLM2 and Qwen2.5-Coder created.
fn server_with(peers: &[&Peer]) -> Server {
    let list: Vec<&str> = peers.iter().map(|p| p.endpoint.as_str()).collect();
    let server = Server::start_env(&[("CORRAL_RPC_SERVERS", &list.join(","))]);
    for (name, path) in [("smollm2", corral_testkit::smollm2()), ("qwen", corral_testkit::qwen_coder())] {
        let modelfile = server.models.parent().unwrap().join(format!("{name}.Modelfile"));
        std::fs::write(&modelfile, format!("FROM {}\n", path.display())).unwrap();
        server.ok(&["create", name, "-f", modelfile.to_str().unwrap()]);
    }
    server
}

fn greedy(server: &Server, model: &str, prompt: &str, num_gpu: i32) -> Value {
    let (status, v) = post(
        server,
        "/api/generate",
        json!({"model": model, "prompt": prompt, "raw": true, "stream": false,
               "options": {"num_predict": 32, "temperature": 0, "num_gpu": num_gpu}}),
    );
    assert_eq!(status, 200, "{v}");
    v
}

/// Device memory the loaded models hold on each device, from `/metrics`.
fn used(server: &Server) -> Vec<(String, u64)> {
    let metrics = http().get(server.url("/metrics")).send().unwrap().text().unwrap();
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("corral_device_memory_used_bytes{device=\""))
        .map(|l| {
            let (device, rest) = l.split_once('"').unwrap();
            (device.to_string(), rest.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        })
        .collect()
}

#[test]
fn issue_31_a_model_split_over_two_hosts_answers_as_it_does_alone() {
    let (a, b) = (Peer::start("127.0.0.2"), Peer::start("127.0.0.3"));
    let server = server_with(&[&a, &b]);
    let log = server.log();
    for (device, peer) in [("RPC0", &a), ("RPC1", &b)] {
        assert!(log.contains(&format!("{} device={device} kind=\"gpu\"", peer.endpoint)), "{log}");
    }
    for (model, prompt) in [("smollm2", "Once upon a time"), ("qwen", "def fibonacci(n):")] {
        let split = greedy(&server, model, prompt, -1);
        let on_both = used(&server);
        server.ok(&["stop", model]);
        let alone = greedy(&server, model, prompt, 0);
        server.ok(&["stop", model]);
        assert_eq!(split["response"], alone["response"], "{model}");
        assert_eq!(split["eval_count"], 32);
        // Every layer on the two hosts, some on each.
        let on = |d: &str| on_both.iter().find(|(id, _)| id == d).map_or(0, |(_, b)| *b);
        assert!(on("RPC0") > 0 && on("RPC1") > 0 && on("CPU") == 0, "{model}: {on_both:?}");
        let rate = |v: &Value| v["eval_count"].as_f64().unwrap() / v["eval_duration"].as_f64().unwrap() * 1e9;
        eprintln!("{model}: {:.1} tok/s over two hosts, {:.1} alone", rate(&split), rate(&alone));
    }
    // `ps` names the hosts and their shares.
    greedy(&server, "smollm2", "Hello", -1);
    let ps = server.ok(&["ps"]);
    let row = ps.lines().find(|l| l.starts_with("smollm2")).unwrap_or_else(|| panic!("{ps}"));
    let split = format!("% {}/{} ", a.endpoint, b.endpoint);
    assert!(row.contains(&split) && !row.contains("CPU"), "{ps}");
}

#[test]
fn issue_31_a_host_that_dies_mid_answer_ends_it_clearly_and_the_next_loads_without_it() {
    let (mut a, b) = (Peer::start("127.0.0.2"), Peer::start("127.0.0.3"));
    let server = server_with(&[&a, &b]);
    let stream = counting(&server, "smollm2");
    a.child.kill().unwrap();
    let rest: Vec<String> = stream.lines().map_while(Result::ok).collect();
    let last: Value = serde_json::from_str(rest.last().unwrap()).unwrap();
    let error = last["error"].as_str().unwrap_or_else(|| panic!("{rest:?}"));
    assert!(
        error.starts_with("model runner has unexpectedly stopped: an RPC server it used stopped answering")
            && error.contains(&a.endpoint)
            && error.ends_with("Remote RPC server crashed or returned malformed response"),
        "{error}"
    );
    // The next answer: a new runner, on the host that is left. That runner calls b's device RPC0
    // (a was not there to be first); the server still counts it as RPC1, b's name at its start.
    let v = greedy(&server, "smollm2", "Once upon a time", -1);
    assert_eq!(v["eval_count"], 32);
    let on_one = used(&server);
    let on = |d: &str| on_one.iter().find(|(id, _)| id == d).map_or(0, |(_, b)| *b);
    assert!(on("RPC1") > 0 && on("RPC0") == 0, "{on_one:?}");
    let ps = server.ok(&["ps"]);
    assert!(ps.contains(&format!("100% {} ", b.endpoint)), "{ps}");
    let log = server.log();
    assert!(log.contains(&format!("RPC server {}: the connection failed", a.endpoint)), "{log}");
}

/// What `corral runner --probe` finds with `peers`.
fn probe(peers: &[&str]) -> Backends {
    let mut cmd = Command::new(BIN);
    cmd.args(["runner", "--probe"]);
    for p in peers {
        cmd.args(["--rpc", p]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A server that answers the handshake as ggml's would, with protocol version `version`.
fn other_version(version: [u8; 3]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut hello = [0u8; 1 + 8 + 24];
        conn.read_exact(&mut hello).unwrap();
        assert_eq!(hello[0], 14, "HELLO is command 14");
        let mut answer = 28u64.to_le_bytes().to_vec();
        answer.extend_from_slice(&[version[0], version[1], version[2], 0]);
        answer.extend_from_slice(&[0u8; 24]);
        conn.write_all(&answer).unwrap();
        let _ = conn.read(&mut [0u8; 1]);
    });
    endpoint
}

#[test]
fn issue_31_hosts_that_speak_another_version_or_do_not_answer_are_left_out() {
    let old = other_version([6, 1, 0]);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_at = silent.local_addr().unwrap().to_string();
    let a = Peer::start("127.0.0.2");
    let found = probe(&[&old, &a.endpoint, &silent_at]);
    let ours = found.peers_left_out.iter().find(|w| w.contains(&old)).unwrap_or_else(|| panic!("{found:?}"));
    assert!(ours.contains("speaks ggml RPC protocol 6.1.0, this Corral speaks 7.0.0"), "{ours}");
    let quiet = found.peers_left_out.iter().find(|w| w.contains(&silent_at)).unwrap();
    assert!(quiet.contains("did not answer the handshake within"), "{quiet}");
    // The one that answered is the only remote device.
    let remote: Vec<_> = found.devices.iter().filter(|d| d.id.starts_with("RPC")).collect();
    assert!(remote.len() == 1 && remote[0].description == a.endpoint, "{:?}", found.devices);
}

#[test]
fn issue_31_a_host_offers_no_more_memory_than_its_cap() {
    let capped = Peer::start_with("127.0.0.2", &["--max-memory", "1.5G"]);
    let found = probe(&[&capped.endpoint]);
    let device = found.devices.iter().find(|d| d.id == "RPC0").unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(device.total_bytes, 3 << 29);
    assert!(0 < device.free_bytes && device.free_bytes <= device.total_bytes, "{device:?}");
    // A server places layers within it: SmolLM2 (about 530 MB here) fits what is left after
    // llama.cpp's fit keeps 1 GiB free.
    let server = Server::start_env(&[("CORRAL_RPC_SERVERS", &capped.endpoint), ("OLLAMA_CONTEXT_LENGTH", "4096")]);
    let modelfile = server.models.parent().unwrap().join("Modelfile");
    std::fs::write(&modelfile, format!("FROM {}\n", corral_testkit::smollm2().display())).unwrap();
    server.ok(&["create", "smollm2", "-f", modelfile.to_str().unwrap()]);
    greedy(&server, "smollm2", "Hello", -1);
    let on = used(&server).into_iter().find(|(d, _)| d == "RPC0").unwrap().1;
    assert!(0 < on && on <= (3 << 29) - (1 << 30), "{on}");
}

#[test]
fn issue_31_corral_rpc_listens_beyond_loopback_only_when_told() {
    for address in ["0.0.0.0:50052", "10.1.2.3:50052"] {
        let out = Command::new(BIN).args(["rpc", "--listen", address]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no authentication or encryption") && err.contains("--allow-remote"), "{err}");
    }
    let out = Command::new(BIN).args(["rpc", "--listen", "localhost:50052"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected an IPv4 address and port"));
}
