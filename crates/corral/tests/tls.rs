//! Issue 31: HTTPS. `corral serve` with `CORRAL_TLS_CERT` and `CORRAL_TLS_KEY` serves the CLI and
//! HTTP clients over TLS, HTTP/2 where they offer it, with API keys and the Host check as over
//! plain HTTP; clients refuse a certificate that expired, names another host or comes from a CA
//! they do not trust; a renewed certificate is served without a restart; plain HTTP on the TLS
//! port is told to use HTTPS. Every certificate comes from a CA each test makes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::Ca;
use common::{body, http, runnable_bytes, signal, stderr, Server, BIN};
use serde_json::json;

/// A server on TLS with the pair, trusting `ca` for its CLI, and `extra` variables.
fn tls_server(cert: &Path, key: &Path, ca: &Path, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("CORRAL_TLS_CERT", cert.to_str().unwrap()),
        ("CORRAL_TLS_KEY", key.to_str().unwrap()),
        ("CORRAL_CA_BUNDLE", ca.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    Server::start_env(&env)
}

/// An HTTPS client that trusts `ca` (and the system's CAs); `h1` keeps it to HTTP/1.1.
fn https(ca: &Path, h1: bool) -> reqwest::blocking::ClientBuilder {
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(root)
        .no_proxy()
        .timeout(Duration::from_secs(60));
    if h1 {
        b.http1_only()
    } else {
        b
    }
}

/// The CLI against `url`, trusting the CA files in `ca` (none: the system's only).
fn cli(url: &str, ca: Option<&Path>, key: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("OLLAMA_HOST", url).env("OLLAMA_API_KEY", key).env("NO_COLOR", "1");
    match ca {
        Some(ca) => cmd.env("CORRAL_CA_BUNDLE", ca),
        None => cmd.env_remove("CORRAL_CA_BUNDLE"),
    };
    cmd.output().unwrap()
}

#[test]
fn issue_31_https_serves_the_cli_and_http2_with_keys_and_the_host_check() {
    let ca = Ca::new();
    let (cert, key, _) = ca.issue("server", &["localhost", "127.0.0.1", "evil.test"], false);
    let server = tls_server(&cert, &key, &ca.pem(), &[("CORRAL_API_KEYS", "k1")]);
    assert!(server.log().contains(&format!("Listening on {} (HTTPS, version", server.addr)), "{}", server.log());

    // The CLI, over HTTPS to https://localhost:PORT: a model created, then an answer streamed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.gguf"), runnable_bytes(7, 2048)).unwrap();
    std::fs::write(dir.path().join("Modelfile"), "FROM ./tiny.gguf\n").unwrap();
    let out = server.corral_in(Some(dir.path()), &["create", "tiny"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.ok(&["run", "tiny", "Hello", "--nowordwrap"]);

    // HTTP/2 (negotiated by ALPN): a streamed answer, line by line.
    let client = https(&ca.pem(), false).build().unwrap();
    let resp = client
        .post(server.url("/api/generate"))
        .bearer_auth("k1")
        .json(&json!({"model": "tiny", "prompt": "Hello", "options": {"num_predict": 8}}))
        .send()
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let lines: Vec<serde_json::Value> =
        resp.text().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 2 && lines.last().unwrap()["done"] == true, "{lines:?}");

    // Keys as over plain HTTP.
    let (status, v) = body(client.get(server.url("/api/tags")).send().unwrap());
    assert!(status == 401 && v["error"].as_str().unwrap().starts_with("missing API key"), "{v}");

    // The Host check: a name that is not this machine's is refused, over HTTP/2 (which carries
    // the name as the request's authority, with no Host header) as over HTTP/1.1.
    let port = server.addr.rsplit_once(':').unwrap().1;
    let loopback: std::net::SocketAddr = server.addr.parse().unwrap();
    for h1 in [false, true] {
        let rebinding = https(&ca.pem(), h1).resolve("evil.test", loopback).build().unwrap();
        let resp = rebinding.get(format!("https://evil.test:{port}/api/tags")).bearer_auth("k1").send().unwrap();
        assert_eq!(resp.status(), 403, "HTTP/1.1 only: {h1}");
    }

    // CORS as over plain HTTP: a page elsewhere is refused, the server's own origin is not.
    let from = |origin: &str| {
        client.get(server.url("/api/version")).header("origin", origin).send().unwrap().status().as_u16()
    };
    assert_eq!(from("https://evil.example"), 403);
    assert_eq!(from(&server.base), 200);

    // Plain HTTP on the TLS port: told what to use, at once.
    let start = Instant::now();
    let (status, v) = body(http().get(format!("http://{}/api/version", server.addr)).send().unwrap());
    assert_eq!(status, 400);
    assert_eq!(v["error"], format!("this server speaks HTTPS: use https://{}", server.addr));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());

    // A client without the CA refuses the certificate, and says so.
    let out = cli(&server.base, None, "k1", &["list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("could not connect to corral server at {}", server.base)), "{err}");
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
}

#[test]
fn issue_31_clients_refuse_an_expired_or_wrong_host_certificate() {
    let ca = Ca::new();
    for (file, names, expired, why) in [
        ("expired", &["localhost", "127.0.0.1"][..], true, "xpired"),
        ("elsewhere", &["elsewhere.test"][..], false, "not valid for name"),
    ] {
        let (cert, key, _) = ca.issue(file, names, expired);
        let server = tls_server(&cert, &key, &ca.pem(), &[]);
        let out = cli(&server.base, Some(&ca.pem()), "", &["list"]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(why), "{file}: {err}");
        eprintln!("{file}: {err}");
        let refused = https(&ca.pem(), false).build().unwrap().get(server.url("/api/version")).send();
        assert!(refused.is_err(), "{file}");
    }
}

/// The certificate a fresh connection to `server` is given.
fn served(server: &Server, ca: &Path) -> Vec<u8> {
    let client = https(ca, true).tls_info(true).build().unwrap();
    let resp = client.get(server.url("/api/version")).send().unwrap();
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS information");
    info.peer_certificate().expect("a certificate").to_vec()
}

#[test]
fn issue_31_a_renewed_certificate_is_served_without_a_restart() {
    let ca = Ca::new();
    let (cert, key, first) = ca.issue("server", &["localhost", "127.0.0.1"], false);
    let server = tls_server(&cert, &key, &ca.pem(), &[]);
    assert_eq!(served(&server, &ca.pem()), first);

    // SIGHUP reads the files again (the same pair here), and the server stays up.
    signal(server.pid(), "HUP");
    let wait_for = |text: &str| {
        let start = Instant::now();
        while !server.log().contains(text) {
            assert!(start.elapsed() < Duration::from_secs(10), "no {text:?} in\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("TLS certificate reloaded");
    assert_eq!(served(&server, &ca.pem()), first);

    // A renewal half written: refused with a log line, the old pair still served.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    wait_for("TLS certificate not reloaded");
    assert_eq!(served(&server, &ca.pem()), first);

    // The renewal complete: the next connections get it, with no signal.
    let (new_cert, new_key, second) = ca.issue("renewed", &["localhost", "127.0.0.1"], false);
    std::fs::copy(new_key, &key).unwrap();
    std::fs::copy(new_cert, &cert).unwrap();
    let start = Instant::now();
    while served(&server, &ca.pem()) != second {
        assert!(start.elapsed() < Duration::from_secs(15), "the renewed certificate is not served\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn issue_31_only_both_tls_files_together_start_a_server() {
    let ca = Ca::new();
    let (cert, _, _) = ca.issue("server", &["localhost"], false);
    let out = Command::new(BIN)
        .arg("serve")
        .env("OLLAMA_HOST", "127.0.0.1:0")
        .env("CORRAL_TLS_CERT", &cert)
        .env_remove("CORRAL_TLS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("CORRAL_TLS_CERT is set but CORRAL_TLS_KEY is not"), "{}", stderr(&out));
    let out = Command::new(BIN)
        .arg("serve")
        .env("OLLAMA_HOST", "127.0.0.1:0")
        .env("OLLAMA_MODELS", ca.dir.path().join("models"))
        .env("HOME", ca.dir.path())
        .env("CORRAL_TLS_CERT", &cert)
        .env("CORRAL_TLS_KEY", ca.dir.path().join("missing.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.key"), "{}", stderr(&out));
}
