//! Pull and push against a real registry (Debian's docker-registry on loopback), directly and
//! through a small front in this file that can throttle, count, redirect, or lie.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{create_from, http, post, runnable_bytes, stderr, tree, DockerRegistry, Server};
use corral_types::Digest;
use serde_json::json;

/// What the front does besides forwarding.
#[derive(Default)]
struct FrontState {
    upstream: String,
    /// Answer blob GETs with a 307 to the registry.
    redirect: bool,
    /// Bytes per second for blob bodies (0: unthrottled).
    throttle: AtomicU64,
    /// Blob body bytes sent.
    served: AtomicU64,
    /// `Range` headers of blob GETs.
    ranges: Mutex<Vec<String>>,
    /// A manifest to serve instead of the registry's.
    manifest: Mutex<Option<Vec<u8>>>,
    /// Stop serving (simulates a dead link).
    closed: AtomicBool,
    /// Act as a token-protected registry: the host named in the challenge's realm.
    bearer_realm_host: Mutex<Option<String>>,
    /// Requests to the token endpoint.
    token_requests: AtomicU64,
}

/// The token this front issues, and the login it wants for it (`alice:s3cret`).
const TOKEN: &str = "token-for-alice";
const ALICE_BASIC: &str = "Basic YWxpY2U6czNjcmV0";

struct Front {
    addr: String,
    state: Arc<FrontState>,
    _runtime: tokio::runtime::Runtime,
}

async fn forward(State(s): State<Arc<FrontState>>, req: Request) -> Response {
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let realm_host = s.bearer_realm_host.lock().unwrap().clone();
    if let Some(realm_host) = realm_host {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if path.starts_with("/token") {
            s.token_requests.fetch_add(1, Ordering::SeqCst);
            assert!(path.contains("service=front") && path.contains("scope=repository"), "{path}");
            return if auth == ALICE_BASIC {
                axum::Json(json!({"token": TOKEN})).into_response()
            } else {
                StatusCode::UNAUTHORIZED.into_response()
            };
        }
        if auth != format!("Bearer {TOKEN}") {
            let challenge = format!(
                "Bearer realm=\"http://{realm_host}/token\",service=\"front\",scope=\"repository:team/tiny:pull\""
            );
            return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
        }
    }
    let is_blob_get = req.method() == "GET" && path.contains("/blobs/sha256:");
    if path.contains("/manifests/") {
        if let Some(m) = s.manifest.lock().unwrap().clone() {
            return ([("content-type", "application/vnd.docker.distribution.manifest.v2+json")], m).into_response();
        }
    }
    if is_blob_get && s.redirect {
        return (StatusCode::TEMPORARY_REDIRECT, [("location", format!("http://{}{path}", s.upstream))])
            .into_response();
    }
    if is_blob_get {
        if let Some(r) = req.headers().get("range") {
            s.ranges.lock().unwrap().push(r.to_str().unwrap().to_string());
        }
    }
    let client = reqwest::Client::new();
    let mut rb = client.request(req.method().clone(), format!("http://{}{path}", s.upstream));
    for (k, v) in req.headers() {
        if k != "host" {
            rb = rb.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let resp = rb.body(body).send().await.unwrap();
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        headers.insert(k, v.clone());
    }
    if !is_blob_get {
        return (status, headers, resp.bytes().await.unwrap()).into_response();
    }
    let state = s.clone();
    let stream = futures_util::stream::unfold(resp, move |mut resp| {
        let state = state.clone();
        async move {
            if state.closed.load(Ordering::SeqCst) {
                return None;
            }
            let chunk = resp.chunk().await.ok()??;
            let rate = state.throttle.load(Ordering::SeqCst);
            if rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
            }
            state.served.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(chunk), resp))
        }
    });
    (status, headers, Body::from_stream(stream)).into_response()
}

impl Front {
    fn start(upstream: &str, redirect: bool) -> Front {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state = Arc::new(FrontState { upstream: upstream.to_string(), redirect, ..Default::default() });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Front { addr, state, _runtime: runtime }
    }
}

/// A server with the tiny runnable model pushed to `registry` as `team/tiny:v1`; returns the
/// server and the pushed name.
fn pushed(registry: &DockerRegistry) -> (Server, String) {
    let server = Server::start();
    assert_eq!(create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({"system": "Be brief."})).0, 200);
    let remote = format!("{}/team/tiny:v1", registry.addr);
    server.ok(&["cp", "tiny", &remote]);
    let out = server.corral(&["push", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("pushing manifest") && err.trim_end().ends_with("success"), "{err}");
    (server, remote)
}

fn manifest_bytes(server: &Server, name: &str) -> Vec<u8> {
    let (host, rest) = name.split_once('/').unwrap();
    let (path, tag) = rest.rsplit_once(':').unwrap();
    std::fs::read(server.models.join("manifests").join(host).join(path).join(tag)).unwrap()
}

#[test]
fn push_delete_pull_round_trip() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    let manifest = manifest_bytes(&server, &remote);
    let blobs = tree(&server.models.join("blobs"));
    for b in &blobs {
        let bytes = std::fs::read(server.models.join("blobs").join(b)).unwrap();
        assert!(registry.blob_file(&Digest::of(&bytes)).is_file(), "{b} is in the registry");
    }
    server.ok(&["rm", "tiny", &remote]);
    assert!(tree(&server.models.join("blobs")).is_empty());

    let out = server.corral(&["pull", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for s in ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"] {
        assert!(err.contains(s), "{s} missing from:\n{err}");
    }
    assert_eq!(manifest_bytes(&server, &remote), manifest, "the manifest comes back byte for byte");
    assert_eq!(tree(&server.models.join("blobs")), blobs, "the same blobs");
    for b in &blobs {
        let bytes = std::fs::read(server.models.join("blobs").join(b)).unwrap();
        assert_eq!(format!("sha256-{}", Digest::of(&bytes).hex()), *b);
    }
    let (status, v) = post(
        &server,
        "/api/generate",
        json!({"model": remote, "prompt": "hi", "stream": false,
        "options": {"num_predict": 2}}),
    );
    assert_eq!((status, v["eval_count"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
    assert_eq!(server.ok(&["show", &remote, "--system"]), "Be brief.\n");

    // By digest: the manifest must hash to it.
    let digest = Digest::of(&manifest);
    let by_digest = format!("{}/team/tiny@{digest}", registry.addr);
    let (status, v) = post(&server, "/api/pull", json!({"model": by_digest, "stream": false}));
    assert_eq!(status, 200, "{v}");
    let wrong = format!("{}/team/tiny@{}", registry.addr, Digest::of(b"other"));
    let (status, _) = post(&server, "/api/pull", json!({"model": wrong, "stream": false}));
    assert_ne!(status, 200);

    let out = server.corral(&["pull", &format!("{}/team/nothing:here", registry.addr)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pull model manifest: file does not exist"), "{}", stderr(&out));
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    let weights = Digest::of(&runnable_bytes(42, 2048));
    server.ok(&["rm", "tiny", &remote]);
    let file = registry.blob_file(&weights);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let (status, v) = post(&server, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap().contains("digest mismatch"), "{v}");
    assert!(tree(&server.models).iter().all(|f| !f.starts_with("manifests/")), "no manifest written");
    assert!(tree(&server.models.join("blobs")).is_empty(), "no blob or partial file left");
}

#[test]
fn pulls_follow_redirects() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    server.ok(&["rm", "tiny", &remote]);
    let front = Front::start(&registry.addr, true);
    let via_front = remote.replace(&registry.addr, &front.addr);
    let (status, v) = post(&server, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!((status, v), (StatusCode::OK, json!({"status": "success"})));
    let (status, _) = post(&server, "/api/show", json!({"model": via_front}));
    assert_eq!(status, 200);
}

/// Kill the server in the middle of a pull; pulling again fetches only the rest.
#[test]
fn an_interrupted_pull_resumes() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    let models = server.models.clone();
    let size = runnable_bytes(42, 2048).len() as u64;
    let front = Front::start(&registry.addr, false);
    front.state.throttle.store(1_000_000, Ordering::SeqCst);
    let via_front = remote.replace(&registry.addr, &front.addr);
    drop(server);

    let first = Server::start_in(&models, &[("OLLAMA_NOPRUNE", "1")]);
    for f in tree(&models.join("blobs")) {
        std::fs::remove_file(models.join("blobs").join(f)).unwrap();
    }
    let pulling = std::thread::spawn({
        let url = first.url("/api/pull");
        let model = via_front.clone();
        move || http().post(url).json(&json!({"model": model, "stream": false})).send()
    });
    let start = Instant::now();
    let partial = || tree(&models.join("blobs")).into_iter().find(|f| f.ends_with("-partial"));
    loop {
        if let Some(p) = partial() {
            if std::fs::metadata(models.join("blobs").join(p)).unwrap().len() > 2_000_000 {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the download never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.stop();
    let _ = pulling.join();
    let kept =
        std::fs::metadata(models.join("blobs").join(partial().expect("the partial file survives"))).unwrap().len();
    front.state.throttle.store(0, Ordering::SeqCst);

    let second = Server::start_in(&models, &[]);
    let (status, v) = post(&second, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
    let ranges = front.state.ranges.lock().unwrap().clone();
    assert!(ranges.iter().any(|r| r.starts_with("bytes=") && r != "bytes=0-"), "resumed with a range: {ranges:?}");
    let served = front.state.served.load(Ordering::SeqCst);
    // Everything kept on disk was not fetched again; only what was in flight when the server died
    // (socket buffers) is served twice.
    assert!(served < size + 1_000_000, "served {served} bytes for a {size}-byte blob (kept {kept})");
    assert!(kept > 2_000_000);
    let (status, _) = post(
        &second,
        "/api/generate",
        json!({"model": via_front, "prompt": "x", "stream": false,
        "options": {"num_predict": 1}}),
    );
    assert_eq!(status, 200);
}

#[test]
fn hostile_registry_answers_are_refused() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    server.ok(&["rm", "tiny", &remote]);
    let front = Front::start(&registry.addr, false);
    let via_front = remote.replace(&registry.addr, &front.addr);
    let snapshot = tree(&server.models);
    let real = String::from_utf8(manifest_bytes_from_registry(&registry, &remote)).unwrap();
    let weights = Digest::of(&runnable_bytes(42, 2048));
    let size = runnable_bytes(42, 2048).len();

    let cases = [
        (real.replace(&weights.to_string(), "sha256:../../../../tmp/evil"), "invalid manifest"),
        (real.replace(&format!("\"size\":{size}"), "\"size\":1000"), "bytes"),
        (format!("{{\"schemaVersion\":2,\"layers\":[{}]}}", "{},".repeat(3_000_000)), "larger than"),
        ("not json".to_string(), "invalid manifest"),
    ];
    for (manifest, expect) in cases {
        *front.state.manifest.lock().unwrap() = Some(manifest.into_bytes());
        let (status, v) = post(&server, "/api/pull", json!({"model": via_front, "stream": false}));
        assert_ne!(status, 200);
        assert!(v["error"].as_str().unwrap().contains(expect), "{expect}: {v}");
        assert_eq!(tree(&server.models), snapshot, "nothing written for {expect}");
    }
}

fn manifest_bytes_from_registry(registry: &DockerRegistry, remote: &str) -> Vec<u8> {
    let rest = remote.split_once('/').unwrap().1;
    let (path, tag) = rest.rsplit_once(':').unwrap();
    http()
        .get(format!("http://{}/v2/{path}/manifests/{tag}", registry.addr))
        .header("accept", "application/vnd.docker.distribution.manifest.v2+json")
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec()
}

#[test]
fn basic_auth_with_right_and_wrong_passwords() {
    let registry = DockerRegistry::start_with_login("alice", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let good_login = format!("{}=alice:s3cret", registry.addr);
    let server = Server::start_in(&tmp.path().join("a"), &[("CORRAL_REGISTRY_AUTH", &good_login)]);
    create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({}));
    let remote = format!("{}/team/tiny:v1", registry.addr);
    server.ok(&["cp", "tiny", &remote]);
    let out = server.corral(&["push", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.ok(&["rm", &remote]);
    let (status, v) = post(&server, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 200, "{v}");

    let wrong_login = format!("{}=alice:wrong-password", registry.addr);
    let wrong = Server::start_in(&tmp.path().join("b"), &[("CORRAL_REGISTRY_AUTH", &wrong_login)]);
    let (status, v) = post(&wrong, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 401, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(&format!("authentication failed for {}", registry.addr)), "{msg}");
    assert!(
        !msg.contains("wrong-password") && !wrong.log().contains("wrong-password"),
        "no password in errors or logs"
    );

    let anonymous = Server::start_in(&tmp.path().join("c"), &[]);
    let (status, v) = post(&anonymous, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 401);
    assert!(v["error"].as_str().unwrap().contains("needs a login"), "{v}");
}

#[test]
fn bearer_tokens_from_the_registry_host_only() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    server.ok(&["rm", "tiny", &remote]);
    let front = Front::start(&registry.addr, false);
    *front.state.bearer_realm_host.lock().unwrap() = Some(front.addr.clone());
    let via_front = remote.replace(&registry.addr, &front.addr);
    let tmp = tempfile::tempdir().unwrap();
    let login = format!("{}=alice:s3cret", front.addr);
    let client = Server::start_in(&tmp.path().join("m"), &[("CORRAL_REGISTRY_AUTH", &login)]);
    let (status, v) = post(&client, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
    assert!(front.state.token_requests.load(Ordering::SeqCst) >= 1);

    // A realm on another host (here `localhost` instead of `127.0.0.1`) gets nothing: no login,
    // no request at all (CVE-2025-51471).
    client.ok(&["rm", &via_front]);
    let before = front.state.token_requests.load(Ordering::SeqCst);
    let port = front.addr.rsplit_once(':').unwrap().1;
    *front.state.bearer_realm_host.lock().unwrap() = Some(format!("localhost:{port}"));
    let fresh = Server::start_in(&tmp.path().join("n"), &[("CORRAL_REGISTRY_AUTH", &login)]);
    let (status, v) = post(&fresh, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("refusing to authenticate with a host other than the registry"),
        "{v}"
    );
    assert_eq!(front.state.token_requests.load(Ordering::SeqCst), before);

    // Unless the user trusts that realm.
    let trusted = format!("{}=localhost:{port}", front.addr);
    let trusting = Server::start_in(
        &tmp.path().join("o"),
        &[("CORRAL_REGISTRY_AUTH", &login), ("CORRAL_REGISTRY_TRUSTED_REALMS", &trusted)],
    );
    let (status, v) = post(&trusting, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
}
