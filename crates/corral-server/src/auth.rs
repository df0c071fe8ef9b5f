//! API keys: with `CORRAL_API_KEYS` set, every request but the liveness probes must carry one.
//!
//! Ollama has no authentication at all, so a server exposed beyond loopback lets everyone pull,
//! delete and run models. Corral accepts a key the way each protocol's clients send one:
//! `Authorization: Bearer <key>` (ollama's and OpenAI's clients) or `x-api-key: <key>`
//! (Anthropic's). A missing or wrong key is a 401 in the error shape of the protocol the path
//! belongs to, so each client library reports it as its own authentication error.
//!
//! Keys are kept as SHA-256 digests and a presented key is compared with every one of them in
//! full, without stopping early: the time taken says nothing about how much of a key was right,
//! nor which key was close.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// The accepted keys. Empty: no key is asked for.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys, not even their digests.
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// Keys from their text; blank ones and surrounding spaces are dropped.
    pub fn new<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        ApiKeys(
            keys.into_iter()
                .map(|k| k.as_ref().trim().to_string())
                .filter(|k| !k.is_empty())
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `presented` is one of the keys, in time that depends only on the number of keys.
    pub fn allows(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for key in &self.0 {
            found |= key[..].ct_eq(&digest[..]);
        }
        found.into()
    }
}

/// Requests that need no key: what health checks and `corral --version` ask.
fn open(method: &Method, path: &str) -> bool {
    (path == "/" && (method == Method::GET || method == Method::HEAD))
        || path == "/api/version"
        || (method == Method::GET && (path == "/health" || path == "/ready"))
}

/// The key a request carries: a bearer token, or Anthropic's `x-api-key`.
fn presented(req: &Request<Body>) -> Option<&str> {
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// The middleware (see the module docs).
pub(crate) async fn require_key(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() || open(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let message = match presented(&req) {
        Some(key) if keys.allows(key) => return next.run(req).await,
        Some(_) => "invalid API key",
        None => "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
    };
    tracing::warn!(path = req.uri().path(), "refused a request: {message}");
    // In Ollama's shape; the route group's layer gives it its protocol's (`error::shape_errors`).
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_whole_and_blank_ones_are_dropped() {
        let keys = ApiKeys::new(["alpha", " beta ", "", "  "]);
        assert_eq!(keys.len(), 2);
        assert!(keys.allows("alpha") && keys.allows("beta"));
        for wrong in ["", "alph", "alphaa", "Alpha", "gamma", " beta"] {
            assert!(!keys.allows(wrong), "{wrong:?}");
        }
        assert!(ApiKeys::new(Vec::<String>::new()).is_empty());
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)");
    }

    #[test]
    fn open_paths() {
        assert!(open(&Method::GET, "/") && open(&Method::HEAD, "/") && open(&Method::GET, "/api/version"));
        assert!(open(&Method::GET, "/health") && open(&Method::GET, "/ready"));
        assert!(!open(&Method::POST, "/") && !open(&Method::GET, "/api/tags"));
    }
}
