//! The registry client: pulling models from, and pushing them to, registry.ollama.ai or any
//! registry speaking the OCI distribution protocol (Docker Registry HTTP API v2).
//!
//! Everything a registry sends is untrusted: manifests are size-bounded and parsed into validated
//! [`Digest`]s before any path is built; a blob is streamed into the store's partial file, and its
//! size and digest are checked before it becomes visible; the manifest is written last, byte for
//! byte, only once every blob it lists is present.
//!
//! Architecture invariant: this crate is the only one that talks to registries, and the store
//! remains the only one that writes the models directory.

pub mod answers;
mod auth;
mod identity;
mod pull;
mod push;
mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_store::StoreError;
use corral_types::api::ProgressResponse;
use corral_types::{Digest, ModelName};
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use auth::{parse_challenge, url_host};
pub use auth::{Credentials, Login};
pub use identity::{Identity, IdentityError};

/// Media type of the manifests we ask for and send.
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Largest manifest accepted from a registry.
const MAX_MANIFEST: u64 = 8 << 20;
/// Largest error body read from a registry (for the message).
const MAX_ERROR_BODY: u64 = 4 << 10;

/// Why a pull or push failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what}: {}", causes(source))]
    Http { what: String, source: reqwest::Error },
    #[error("{what}: the registry answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { what: String, status: u16, body: String },
    #[error("{0}")]
    NotFound(String),
    #[error("invalid manifest from the registry: {0}")]
    BadManifest(String),
    #[error("{0}")]
    Insecure(String),
    #[error("{what}: the connection ended after {got} of {expected} bytes")]
    Incomplete { what: String, got: u64, expected: u64 },
    #[error("{what}: authentication failed for {host}: {reason}")]
    Auth { what: String, host: String, reason: String },
    #[error("{what}: no data for {seconds} seconds")]
    Stalled { what: String, seconds: u64 },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An error and its causes, `outer: inner: innermost`: reqwest's own message ("error sending
/// request") says nothing of a refused certificate or an unknown host.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Receives progress updates (`status`, and `digest`/`total`/`completed` for transfers).
pub type Progress<'a> = &'a (dyn Fn(ProgressResponse) + Send + Sync);

/// Where a model lives in a registry.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    /// `scheme://host[:port]`.
    pub base: String,
    /// `namespace/model`.
    pub path: String,
    pub reference: String,
}

impl Repo {
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.path)
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The registry address of `name`. Plain HTTP only with `insecure` or on loopback.
pub(crate) fn repo(name: &ModelName, insecure: bool, digest: Option<&str>) -> Result<Repo, RegistryError> {
    let loopback = is_loopback(name.host());
    let scheme = match name.scheme() {
        Some("http") if !(insecure || loopback) => {
            return Err(RegistryError::Insecure(
                "insecure protocol http: use --insecure (or \"insecure\": true)".into(),
            ))
        }
        Some(s) => s,
        None if insecure || loopback => "http",
        None => "https",
    };
    Ok(Repo {
        base: format!("{scheme}://{}", name.host()),
        path: format!("{}/{}", name.namespace(), name.model()),
        reference: digest.map_or_else(|| name.tag().to_string(), String::from),
    })
}

/// How the registry client behaves, resolved once at the edge.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub credentials: Credentials,
    /// Ollama's identity key, which signs token requests when there is no login for a registry.
    pub identity: Option<Identity>,
    /// PEM files of CA certificates trusted besides the system's and Mozilla's.
    pub ca_certificates: Vec<PathBuf>,
    /// Connections one blob download may use at once.
    pub connections: usize,
    /// Bytes per ranged request of a blob download.
    pub part_size: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            credentials: Credentials::default(),
            identity: None,
            ca_certificates: Vec::new(),
            connections: 4,
            part_size: 32 << 20,
        }
    }
}

/// A registry client. Cheap to clone; clones share connections and in-flight downloads.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    options: Arc<RegistryOptions>,
    /// One lock per blob being downloaded, so concurrent pulls of it share one download.
    downloads: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
    /// A transfer with no data for this long is retried.
    stall: Duration,
    /// The `Authorization` value that last worked, by registry host.
    authorizations: Arc<Mutex<HashMap<String, String>>>,
}

impl Registry {
    /// A client; fails if a CA file cannot be read or holds no certificate.
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30));
        for path in &options.ca_certificates {
            let bad = |reason: String| RegistryError::Config(format!("CA certificates {}: {reason}", path.display()));
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http =
            builder.build().map_err(|e| RegistryError::Http { what: "creating the HTTP client".into(), source: e })?;
        Ok(Registry {
            http,
            options: Arc::new(options),
            downloads: Arc::default(),
            stall: Duration::from_secs(30),
            authorizations: Arc::default(),
        })
    }

    fn download_lock(&self, d: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        self.downloads.lock().unwrap_or_else(|p| p.into_inner()).entry(*d).or_default().clone()
    }

    /// Sends a request built by `make` to the registry at `repo`, answering one authentication
    /// challenge if the registry asks, and maps transport errors and non-success answers.
    pub(crate) async fn send(
        &self,
        what: &str,
        repo: &Repo,
        make: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, RegistryError> {
        let host = url_host(&repo.base).unwrap_or_default();
        let cached = self.authorizations.lock().unwrap_or_else(|p| p.into_inner()).get(&host).cloned();
        let with = |auth: Option<&str>| match auth {
            Some(a) => make().header(AUTHORIZATION, a),
            None => make(),
        };
        let transport = |e: reqwest::Error| RegistryError::Http { what: what.to_string(), source: e.without_url() };
        let mut resp = with(cached.as_deref()).send().await.map_err(transport)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            let auth = self.authorize(what, &host, challenge).await?;
            resp = with(Some(&auth)).send().await.map_err(transport)?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(RegistryError::Auth {
                    what: what.into(),
                    host,
                    reason: "the registry refused the credentials".into(),
                });
            }
            self.authorizations.lock().unwrap_or_else(|p| p.into_inner()).insert(host, auth);
        }
        if resp.status().is_success() || resp.status().is_redirection() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_bounded(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body).trim().chars().take(300).collect();
        Err(RegistryError::Status { what: what.to_string(), status, body })
    }
}

/// Reads at most `limit` bytes of a body; more is an error.
pub(crate) async fn read_bounded(resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::BadManifest(format!("response is larger than {limit} bytes")));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| RegistryError::Http { what: "reading a response".into(), source: e.without_url() })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::BadManifest(format!("response is larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `pulling 1a2b3c4d5e6f` and friends: the first 12 hex digits of a digest.
pub(crate) fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        let r = |s: &str, insecure| repo(&ModelName::parse(s).unwrap(), insecure, None).map(|r| r.url("manifests/x"));
        assert_eq!(r("llama3.2", false).unwrap(), "https://registry.ollama.ai/v2/library/llama3.2/manifests/x");
        assert_eq!(r("localhost:5000/team/m", false).unwrap(), "http://localhost:5000/v2/team/m/manifests/x");
        assert_eq!(r("127.0.0.1:5000/team/m", false).unwrap(), "http://127.0.0.1:5000/v2/team/m/manifests/x");
        assert_eq!(r("example.com/team/m", true).unwrap(), "http://example.com/v2/team/m/manifests/x");
        assert!(matches!(r("http://example.com/team/m", false), Err(RegistryError::Insecure(_))));
        assert_eq!(r("https://localhost:5000/team/m", false).unwrap(), "https://localhost:5000/v2/team/m/manifests/x");
    }
}
