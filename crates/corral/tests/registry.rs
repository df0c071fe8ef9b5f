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
    /// Ollama's scheme: the token endpoint wants a request signed by this key (`ssh-ed25519 …`)
    /// instead of a login.
    ollama_key: Mutex<Option<String>>,
    /// Drop `Range` headers, as a registry that does not support ranges would.
    ignore_ranges: AtomicBool,
    /// Body bytes of blob uploads (`PATCH`, and `PUT` with a body).
    uploaded: AtomicU64,
    /// Cross-repository mounts the registry accepted.
    mounts: AtomicU64,
    /// Blob GETs in flight now, and the most at once.
    active: AtomicU64,
    max_active: AtomicU64,
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
            if let Some(key) = s.ollama_key.lock().unwrap().clone() {
                let url = format!("http://{realm_host}{path}");
                return if ollama_signature_valid(&key, &url, &auth) {
                    axum::Json(json!({"token": TOKEN})).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                };
            }
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
    let ignore_ranges = s.ignore_ranges.load(Ordering::SeqCst);
    let client = reqwest::Client::new();
    let mut rb = client.request(req.method().clone(), format!("http://{}{path}", s.upstream));
    // The registry builds upload locations from this, so uploads keep coming through the front.
    if let Some(host) = req.headers().get("host") {
        rb = rb.header("x-forwarded-host", host);
    }
    let method = req.method().clone();
    for (k, v) in req.headers() {
        if k != "host" && !(ignore_ranges && k == "range") {
            rb = rb.header(k, v);
        }
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
    if method == "PATCH" || method == "PUT" && path.contains("/blobs/uploads/") {
        s.uploaded.fetch_add(body.len() as u64, Ordering::SeqCst);
    }
    let resp = rb.body(body).send().await.unwrap();
    let status = resp.status();
    if method == "POST" && path.contains("mount=") && status == StatusCode::CREATED {
        s.mounts.fetch_add(1, Ordering::SeqCst);
    }
    let mut headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        headers.insert(k, v.clone());
    }
    if !is_blob_get {
        return (status, headers, resp.bytes().await.unwrap()).into_response();
    }
    let state = s.clone();
    let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_active.fetch_max(now, Ordering::SeqCst);
    let active = Active(s.clone());
    let stream = futures_util::stream::unfold((resp, active), move |(mut resp, active)| {
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
            Some((Ok::<_, std::io::Error>(chunk), (resp, active)))
        }
    });
    (status, headers, Body::from_stream(stream)).into_response()
}

/// Counts a blob GET as active until its body is dropped.
struct Active(Arc<FrontState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks an Ollama-style token request: `Authorization: <public key blob>:<signature>` over
/// `GET,<url>,<base64 of the hex SHA-256 of nothing>`, by the key `ssh-ed25519 <blob>`.
fn ollama_signature_valid(key: &str, url: &str, authorization: &str) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((public, signature)) = authorization.split_once(':') else { return false };
    if key.split_whitespace().nth(1) != Some(public) || !url.contains("&ts=") || !url.contains("nonce=") {
        return false;
    }
    let (Ok(blob), Ok(signature)) = (b64.decode(public), b64.decode(signature)) else { return false };
    let Ok(point): Result<[u8; 32], _> = blob[blob.len().saturating_sub(32)..].try_into() else { return false };
    let Ok(signature): Result<[u8; 64], _> = signature.try_into() else { return false };
    let empty_body = b64.encode(Digest::of(b"").hex());
    let message = format!("GET,{url},{empty_body}");
    ed25519_dalek::VerifyingKey::from_bytes(&point)
        .and_then(|k| k.verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature)))
        .is_ok()
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

/// A model made `FROM` a model on the same registry pushes its inherited layers as mounts, not
/// uploads; only its new layers travel.
#[test]
fn push_mounts_inherited_layers() {
    let registry = DockerRegistry::start();
    let front = Front::start(&registry.addr, false);
    let server = Server::start();
    let weights = runnable_bytes(42, 2048);
    create_from(&server, "tiny", &weights, json!({}));
    let base = format!("{}/team/tiny:v1", front.addr);
    server.ok(&["cp", "tiny", &base]);
    let out = server.corral(&["push", &base]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = front.state.uploaded.load(Ordering::SeqCst);
    assert!(first >= weights.len() as u64, "the first push uploads the weights ({first} bytes)");

    let derived = format!("{}/other/derived:v1", front.addr);
    let (status, v) =
        post(&server, "/api/create", json!({"model": derived, "from": base, "system": "Other.", "stream": false}));
    assert_eq!(status, 200, "{v}");
    let out = server.corral(&["push", &derived]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = front.state.uploaded.load(Ordering::SeqCst) - first;
    assert!(front.state.mounts.load(Ordering::SeqCst) >= 1, "the weights were mounted");
    assert!(second < 10_000, "only the system prompt and config were uploaded ({second} bytes)");

    let fresh = Server::start();
    let (status, v) = post(&fresh, "/api/pull", json!({"model": derived, "stream": false}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(fresh.ok(&["show", &derived, "--system"]), "Other.\n");
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

/// Kill the server in the middle of a pull made of several ranged parts fetched at once;
/// pulling again fetches only what was not written.
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

    let parts = [("CORRAL_PULL_PART_SIZE", "1000000"), ("CORRAL_PULL_CONNECTIONS", "3")];
    let first = Server::start_in(&models, &[parts[0], parts[1], ("OLLAMA_NOPRUNE", "1")]);
    for f in tree(&models.join("blobs")) {
        std::fs::remove_file(models.join("blobs").join(f)).unwrap();
    }
    let pulling = std::thread::spawn({
        let url = first.url("/api/pull");
        let model = via_front.clone();
        move || http().post(url).json(&json!({"model": model, "stream": false})).send()
    });
    let start = Instant::now();
    while front.state.served.load(Ordering::SeqCst) < size / 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "the download never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.stop();
    let _ = pulling.join();
    let first_served = front.state.served.load(Ordering::SeqCst);
    assert_eq!(front.state.max_active.load(Ordering::SeqCst), 3, "three ranges at once, never more");
    assert!(first_served < size, "stopped before the end ({first_served} of {size})");
    front.state.throttle.store(0, Ordering::SeqCst);
    front.state.ranges.lock().unwrap().clear();

    let second = Server::start_in(&models, &parts);
    let (status, v) = post(&second, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
    let ranges = front.state.ranges.lock().unwrap().clone();
    let resumed_mid_part = ranges.iter().any(|r| {
        let first: u64 = r.trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap();
        !first.is_multiple_of(1_000_000)
    });
    assert!(resumed_mid_part, "parts resume where they stopped: {ranges:?}");
    let again = front.state.served.load(Ordering::SeqCst) - first_served;
    // What was written before the kill is not fetched again; only what was in flight (socket
    // buffers of three connections) is served twice.
    assert!(again + first_served < size + 1_500_000, "served {first_served} + {again} bytes for a {size}-byte blob");
    let (status, _) = post(
        &second,
        "/api/generate",
        json!({"model": via_front, "prompt": "x", "stream": false,
        "options": {"num_predict": 1}}),
    );
    assert_eq!(status, 200);
}

/// A registry that answers ranged requests with the whole blob (200) still works: each part
/// takes its own bytes from the full body.
#[test]
fn a_registry_ignoring_ranges_still_works() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    let models = server.models.clone();
    drop(server);
    let front = Front::start(&registry.addr, false);
    front.state.ignore_ranges.store(true, Ordering::SeqCst);
    let via_front = remote.replace(&registry.addr, &front.addr);
    let server = Server::start_in(&models, &[("CORRAL_PULL_PART_SIZE", "700000")]);
    let (status, v) = post(&server, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
    let weights = Digest::of(&runnable_bytes(42, 2048));
    assert_eq!(std::fs::read(server.models.join("blobs").join(weights.file_name())).unwrap(), runnable_bytes(42, 2048));
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

/// Ollama's own scheme: the server creates `~/.ollama/id_ed25519` at start and signs the token
/// request with it; the token service checks the signature against the public key.
#[test]
fn ollama_signed_token_requests() {
    let registry = DockerRegistry::start();
    let (server, remote) = pushed(&registry);
    server.ok(&["rm", "tiny", &remote]);
    let front = Front::start(&registry.addr, false);
    *front.state.bearer_realm_host.lock().unwrap() = Some(front.addr.clone());
    let via_front = remote.replace(&registry.addr, &front.addr);

    let home = tempfile::tempdir().unwrap();
    let client = Server::start_in(&home.path().join("models"), &[]);
    let key = home.path().join(".ollama/id_ed25519");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the key pair is created at start");
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    *front.state.ollama_key.lock().unwrap() = Some(public.trim().to_string());
    let (status, v) = post(&client, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(front.state.token_requests.load(Ordering::SeqCst), 1);

    // Another machine's key is refused (then the anonymous request is refused too).
    let other = Server::start_in(&tempfile::tempdir().unwrap().path().join("models"), &[]);
    let (status, v) = post(&other, "/api/pull", json!({"model": via_front, "stream": false}));
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("the token service answered 401"), "{v}");
    assert_eq!(front.state.token_requests.load(Ordering::SeqCst), 3, "signed, then anonymous");

    // A restart keeps the same key.
    drop(client);
    let again = Server::start_in(&home.path().join("models"), &[]);
    assert_eq!(std::fs::read_to_string(key.with_extension("pub")).unwrap(), public);
    drop(again);
}

/// A CONNECT proxy on loopback that sends every tunnel to `127.0.0.1` on the port asked for (so
/// names like `registry.test` work only through it), recording the targets.
struct ConnectProxy {
    addr: String,
    targets: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if client.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.strip_prefix("CONNECT ").and_then(|r| r.split_whitespace().next());
                    let Some(port) = target.and_then(|t| t.rsplit_once(':')).map(|(_, p)| p.to_string()) else {
                        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                        return;
                    };
                    seen.lock().unwrap().push(target.unwrap().to_string());
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await else {
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { addr, targets, _runtime: runtime }
    }
}

/// An HTTPS registry with a certificate from a private CA, reached through `HTTPS_PROXY`: push
/// and pull work with the CA in `CORRAL_CA_BUNDLE`; without it the certificate is refused; with
/// the host in `NO_PROXY` the proxy is bypassed.
#[test]
fn https_registry_with_a_private_ca_through_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::Ca::new();
    let (cert_pem, key_pem, _) = ca.issue("registry", &["registry.test"], false);
    let ca_pem = ca.pem();

    let registry = DockerRegistry::start_tls(&cert_pem, &key_pem);
    let proxy = ConnectProxy::start();
    let port = registry.addr.rsplit_once(':').unwrap().1;
    let remote = format!("registry.test:{port}/team/tiny:v1");
    let proxy_url = format!("http://{}", proxy.addr);
    let ca_path = ca_pem.to_str().unwrap();

    let server = Server::start_in(
        &dir.path().join("a"),
        &[("HTTPS_PROXY", &proxy_url), ("CORRAL_CA_BUNDLE", ca_path), ("NO_PROXY", "")],
    );
    create_from(&server, "tiny", &runnable_bytes(42, 2048), json!({}));
    server.ok(&["cp", "tiny", &remote]);
    let out = server.corral(&["push", &remote]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.ok(&["rm", &remote, "tiny"]);
    let (status, v) = post(&server, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 200, "{v}");
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(!targets.is_empty() && targets.iter().all(|t| *t == format!("registry.test:{port}")), "{targets:?}");

    let untrusting = Server::start_in(&dir.path().join("b"), &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "")]);
    let (status, v) = post(&untrusting, "/api/pull", json!({"model": remote, "stream": false}));
    assert_eq!(status, 500, "{v}");
    assert!(v["error"].as_str().unwrap().contains("certificate"), "{v}");

    let before = proxy.targets.lock().unwrap().len();
    let bypassing = Server::start_in(
        &dir.path().join("c"),
        &[("HTTPS_PROXY", &proxy_url), ("CORRAL_CA_BUNDLE", ca_path), ("NO_PROXY", "registry.test")],
    );
    let (status, v) = post(&bypassing, "/api/pull", json!({"model": remote, "stream": false}));
    assert_ne!(status, 200, "registry.test does not resolve without the proxy: {v}");
    assert_eq!(proxy.targets.lock().unwrap().len(), before, "NO_PROXY bypasses the proxy");

    // A CA file that is not there stops the server at start, naming the file.
    let out = std::process::Command::new(common::BIN)
        .arg("serve")
        .env("OLLAMA_HOST", "127.0.0.1:0")
        .env("OLLAMA_MODELS", dir.path().join("d"))
        .env("HOME", dir.path())
        .env("CORRAL_CA_BUNDLE", dir.path().join("missing.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.pem"), "{}", stderr(&out));
}
