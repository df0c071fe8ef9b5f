//! Issue 13: `kill -9` of the server in the middle of create, push, copy and delete (pull: see
//! `registry.rs`, `an_interrupted_pull_resumes`), and a full disk during create and pull. After
//! each, on the same models directory: every model listed before is whole, nothing half-written
//! is visible, crash leftovers are gone, and the interrupted operation works when repeated.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{create_from, post, runnable_bytes, signal, stderr, tree, DockerRegistry, Server};
use corral_types::Digest;
use serde_json::{json, Value};

/// Models listed, by name, with their digests.
fn listed(server: &Server) -> BTreeMap<String, String> {
    let (status, v) = common::body(common::http().get(server.url("/api/tags")).send().unwrap());
    assert_eq!(status, 200, "{v}");
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["digest"].as_str().unwrap().to_string()))
        .collect()
}

/// Every blob's bytes hash to its name, no temp file is left, and every listed model shows.
fn assert_whole(server: &Server) {
    let blobs = server.models.join("blobs");
    for name in tree(&blobs) {
        assert!(!name.contains(".tmp-"), "a leftover temp file: {name}");
        if name.ends_with("-partial") || name.contains("-partial-") {
            continue; // a download to resume
        }
        let bytes = std::fs::read(blobs.join(&name)).unwrap();
        assert_eq!(format!("sha256-{}", Digest::of(&bytes).hex()), name, "a blob whose bytes are not its name");
    }
    for leftover in tree(&server.models.join("manifests")) {
        assert!(!leftover.contains(".tmp-"), "a leftover temp file: {leftover}");
    }
    for name in listed(server).keys() {
        let (status, v) = post(server, "/api/show", json!({"model": name}));
        assert_eq!(status, 200, "{name}: {v}");
    }
}

/// Kills the server with -9 and starts a new one on the same models directory.
fn crash_and_restart(server: Server) -> Server {
    let models = server.models.clone();
    signal(server.pid(), "9");
    drop(server);
    Server::start_in(&models, &[])
}

fn with_two_models() -> (tempfile::TempDir, Server, BTreeMap<String, String>) {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp.path().join("models"), &[]);
    assert_eq!(create_from(&server, "one", &runnable_bytes(1, 2048), json!({})).0, 200);
    assert_eq!(create_from(&server, "two", &runnable_bytes(2, 2048), json!({"system": "Be brief."})).0, 200);
    let before = listed(&server);
    assert_eq!(before.len(), 2);
    (tmp, server, before)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_during_a_create_upload_loses_nothing_and_the_create_works_again() {
    let (_tmp, server, before) = with_two_models();
    // A 64 MiB blob, half sent when the server dies.
    let bytes: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let digest = Digest::of(&bytes);
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    let head =
        format!("POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", bytes.len());
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let blobs = server.models.join("blobs");
    wait_for("the upload's temp file", || tree(&blobs).iter().any(|f| f.starts_with(".tmp-")));
    let server = crash_and_restart(server);
    drop(conn);
    assert_eq!(listed(&server), before);
    assert_whole(&server);
    assert!(!server.models.join("blobs").join(digest.file_name()).exists(), "half a blob is never visible");
    // Again, whole: the blob and a model made of it.
    let resp = common::http().post(server.url(&format!("/api/blobs/{digest}"))).body(bytes).send().unwrap();
    assert_eq!(resp.status(), 201);
    let (status, v) =
        post(&server, "/api/create", json!({"model": "three", "from": "one", "system": "x", "stream": false}));
    assert_eq!(status, 200, "{v}");
    assert_whole(&server);
}

#[test]
fn kill_9_during_copies_and_deletes_leaves_each_model_whole_or_absent() {
    let (_tmp, server, before) = with_two_models();
    // Many copies and deletes in flight when the server dies.
    let url = server.base.clone();
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = common::http();
                let _ = c
                    .post(format!("{url}/api/copy"))
                    .json(&json!({"source": "one", "destination": format!("copy-{i}")}))
                    .send();
                let _ = c.delete(format!("{url}/api/delete")).json(&json!({"model": format!("copy-{}", i / 2)})).send();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let server = crash_and_restart(server);
    for w in workers {
        let _ = w.join();
    }
    let after = listed(&server);
    for (name, digest) in &before {
        assert_eq!(after.get(name), Some(digest), "{name} changed");
    }
    for (name, digest) in &after {
        assert!(before.contains_key(name) || digest == &before["one:latest"], "{name} is no copy of one: {digest}");
    }
    assert_whole(&server);
    // Both work again.
    server.ok(&["cp", "one", "copy-again"]);
    server.ok(&["rm", "copy-again"]);
    assert_eq!(listed(&server).get("two:latest"), before.get("two:latest"));
}

#[test]
fn kill_9_during_a_push_leaves_the_store_whole_and_the_push_works_again() {
    let registry = DockerRegistry::start();
    let (_tmp, server, _) = with_two_models();
    let remote = format!("{}/team/one:v1", registry.addr);
    server.ok(&["cp", "one", &remote]);
    let before = listed(&server);
    let pushing = std::thread::spawn({
        let url = server.url("/api/push");
        let model = remote.clone();
        move || common::http().post(url).json(&json!({"model": model, "insecure": true, "stream": false})).send()
    });
    let uploads = registry.dir.path().join("data/docker/registry/v2/repositories/team/one/_uploads");
    wait_for("the registry receiving an upload", || uploads.is_dir());
    let server = crash_and_restart(server);
    let _ = pushing.join();
    assert_eq!(listed(&server), before);
    assert_whole(&server);
    let out = server.corral(&["push", "--insecure", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    // What was pushed pulls whole into another server and runs.
    let other = Server::start();
    let out = other.corral(&["pull", "--insecure", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, v) = post(
        &other,
        "/api/generate",
        json!({"model": remote, "prompt": "x", "stream": false, "options": {"num_predict": 1}}),
    );
    assert_eq!(status, 200, "{v}");
}

/// A models directory on a tmpfs of `mib` MiB, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "a tmpfs is needed for this test (run as root): {}", stderr(&out));
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn used(&self) -> u64 {
        let out = std::process::Command::new("df").args(["--output=used", "-B1"]).arg(self.path()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_during_create_and_pull_is_a_clear_error_and_gives_the_space_back() {
    let disk = SmallDisk::mount(24);
    let server = Server::start_in(&disk.path().join("models"), &[]);
    assert_eq!(create_from(&server, "small", &runnable_bytes(1, 2048), json!({})).0, 200);
    let before = listed(&server);
    let used = disk.used();
    // Create: an upload larger than what is left.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let resp = common::http().post(server.url(&format!("/api/blobs/{}", Digest::of(&big)))).body(big).send().unwrap();
    let status = resp.status();
    let v: Value = resp.json().unwrap_or(Value::Null);
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("no space left on device"), "{v}\n{}", server.log());
    assert!(disk.used() <= used + (1 << 20), "the failed upload's space is given back: {} then {}", used, disk.used());
    assert_eq!(listed(&server), before);
    assert_whole(&server);

    // Pull: a model larger than what is left, from a registry.
    let registry = DockerRegistry::start();
    let roomy = Server::start();
    let large: Vec<u8> = runnable_bytes(3, 2048).into_iter().chain(std::iter::repeat_n(0u8, 30 << 20)).collect();
    let (status, v) = create_from(&roomy, "large", &large, json!({}));
    assert_eq!(status, 200, "{v}");
    let remote = format!("{}/team/large:v1", registry.addr);
    roomy.ok(&["cp", "large", &remote]);
    let out = roomy.corral(&["push", "--insecure", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, v) = post(&server, "/api/pull", json!({"model": remote, "insecure": true, "stream": false}));
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("no space left on device"), "{v}\n{}", server.log());
    assert!(disk.used() <= used + (1 << 20), "the failed pull's space is given back: {} then {}", used, disk.used());
    assert_eq!(listed(&server), before);
    assert_whole(&server);
    // The server still works on what it has.
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": "small", "prompt": "x", "stream": false, "options": {"num_predict": 1}}),
    );
    assert_eq!(status, 200, "{v}");
}
