//! Request guards: the DNS-rebinding `Host` check, CORS, and the access log.
//!
//! A web page can make a browser send requests to `127.0.0.1:11434`. Two checks stop it from
//! using the API. The `Host` check (on loopback listeners, as in Ollama's fix for CVE-2024-28224)
//! refuses requests whose `Host` names an outside domain, which defeats DNS rebinding. The CORS
//! check refuses any request that carries an `Origin` not on the allow-list with 403, rather than
//! only withholding the CORS headers: a "simple" cross-site POST would otherwise still run.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Headers browsers may send: Ollama's list (which covers the OpenAI SDKs' `x-stainless-*`) and
/// Corral's context header.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, \
x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, x-stainless-helper-method, x-stainless-lang, \
x-stainless-os, x-stainless-package-version, x-stainless-poll-helper, x-stainless-retry-count, x-stainless-runtime, \
x-stainless-runtime-version, x-stainless-timeout, X-Corral-Num-Ctx";
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

/// Configured origins first, then Ollama's defaults.
pub(crate) fn allowed_origins(configured: &[String]) -> Vec<String> {
    let mut out: Vec<String> = configured.iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
    for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
        for scheme in ["http", "https"] {
            out.push(format!("{scheme}://{host}"));
            out.push(format!("{scheme}://{host}:*"));
        }
    }
    out.extend(["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"].map(String::from));
    out
}

/// gin-contrib/cors matching: exact, `*` alone, or one `*` standing for any run of characters.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some(("", "")) => true,
        Some((prefix, suffix)) => {
            if origin.len() < prefix.len() + suffix.len() || !origin.starts_with(prefix) || !origin.ends_with(suffix) {
                return false;
            }
            // What the `*` stands for: never a path, and only digits where it is a port, so
            // `http://localhost:*` does not admit `http://localhost:1.evil.com`.
            let wild = &origin[prefix.len()..origin.len() - suffix.len()];
            !wild.contains('/') && (!prefix.ends_with(':') || wild.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

fn origin_allowed(patterns: &[String], origin: &str) -> bool {
    const EXTENSIONS: [&str; 3] = ["chrome-extension://", "moz-extension://", "safari-web-extension://"];
    EXTENSIONS.iter().any(|p| origin.starts_with(p)) || patterns.iter().any(|p| origin_matches(p, origin))
}

/// The CORS middleware (see the module docs).
pub(crate) async fn cors(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string) else {
        return next.run(req).await;
    };
    let host = request_host(&req);
    if origin == format!("http://{host}") || origin == format!("https://{host}") {
        // Same origin: not a cross-site request.
        return next.run(req).await;
    }
    if !origin_allowed(&state.origins, &origin) {
        tracing::warn!(%origin, "refused request from an origin that is not allowed (set OLLAMA_ORIGINS to allow it)");
        return StatusCode::FORBIDDEN.into_response();
    }
    let allow_origin = HeaderValue::from_str(&origin).unwrap_or(HeaderValue::from_static("null"));
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOWED_METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("43200"));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    resp.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

/// Splits `host[:port]` / `[v6]:port`, returning the host part.
fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        // fc00::/7 (unique local) and fe80::/10 (link local).
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether a `Host` header may reach a loopback listener.
pub(crate) fn host_allowed(host: &str, hostname: Option<&str>) -> bool {
    let h = host_part(host).trim_end_matches('.');
    if h.is_empty() || h.eq_ignore_ascii_case("localhost") || hostname.is_some_and(|n| h.eq_ignore_ascii_case(n)) {
        return true;
    }
    let lower = h.to_ascii_lowercase();
    if [".localhost", ".local", ".internal"].iter().any(|s| lower.ends_with(s)) {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified() || is_private(ip),
        Err(_) => false,
    }
}

/// The host a request was sent to: its `Host` header, or over HTTP/2 (which has none) its URI's
/// authority.
fn request_host(req: &Request<Body>) -> &str {
    match req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host,
        None => req.uri().authority().map_or("", |a| a.as_str()),
    }
}

/// The DNS-rebinding guard (see the module docs).
pub(crate) async fn allowed_hosts(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    if !state.loopback {
        return next.run(req).await;
    }
    let host = request_host(&req);
    if !host_allowed(host, state.config.hostname.as_deref()) {
        tracing::warn!(host, "refused request with a Host header that is not local");
        return StatusCode::FORBIDDEN.into_response();
    }
    next.run(req).await
}

/// One log line per request, like Ollama's access log.
pub(crate) async fn log_requests(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let resp = next.run(req).await;
    tracing::info!(status = resp.status().as_u16(), elapsed = ?start.elapsed(), peer, "{method} {path}");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "",
            "localhost",
            "localhost:11434",
            "LOCALHOST",
            "127.0.0.1:11434",
            "[::1]:11434",
            "0.0.0.0",
            "192.168.1.5:11434",
            "10.0.0.1",
            "my-box",
            "app.localhost",
            "printer.local",
            "svc.internal",
            "[fd00::1]:80",
        ] {
            assert!(host_allowed(ok, Some("my-box")), "{ok}");
        }
        for bad in
            ["evil.com", "evil.com:11434", "8.8.8.8", "localhost.evil.com", "[2001:db8::1]:11434", "127.0.0.1.nip.io"]
        {
            assert!(!host_allowed(bad, Some("my-box")), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let allowed = allowed_origins(&["https://webui.example".into(), "http://*.corp.example".into()]);
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8080",
            "app://whatever",
            "chrome-extension://abc",
            "https://webui.example",
            "http://x.corp.example",
            "vscode-webview://1",
        ] {
            assert!(origin_allowed(&allowed, ok), "{ok}");
        }
        for bad in [
            "https://evil.com",
            "http://localhost.evil.com",
            "http://localhost:3000.evil.com",
            "http://127.0.0.1.evil.com:80",
            "null",
        ] {
            assert!(!origin_allowed(&allowed, bad), "{bad}");
        }
        assert!(origin_allowed(&allowed_origins(&["*".into()]), "https://anything"));
    }
}
