//! A typed client of the native API, used by the CLI and the tests.
//!
//! Architecture invariant: this crate knows the wire format only (it shares the types in
//! `corral-types` with the server) and nothing of the server's internals; it works against Ollama
//! as well as Corral.

use std::path::Path;

use corral_types::api::{
    CopyRequest, CreateRequest, DeleteRequest, ErrorResponse, ListResponse, ProgressResponse, ShowRequest,
    ShowResponse, VersionResponse, CORRAL_VERSION_HEADER,
};
use corral_types::Digest;
use futures_util::{Stream, StreamExt, TryStreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a server says of its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The body's `version`: Ollama's release whose API the server speaks.
    pub api: String,
    /// Corral's own version, when the server is Corral.
    pub corral: Option<String>,
}

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address.
    #[error("could not connect to corral server at {base}, run 'corral serve' to start it")]
    Connect { base: String },
    /// The TLS handshake failed: the server's certificate was not trusted, or the server does
    /// not speak TLS.
    #[error("could not connect to corral server at {base}: {reason}")]
    Tls { base: String, reason: String },
    /// The server answered with an error.
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected response from server: {0}")]
    Decode(String),
    #[error("{}: {source}", path.display())]
    File { path: std::path::PathBuf, source: std::io::Error },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a TLS handshake failed, from the innermost error of `e`'s chain (rustls says what was
/// wrong with the certificate: expired, not valid for the name, unknown issuer), or `None` when
/// `e` is no TLS failure. reqwest reports these as connection errors, which would otherwise be
/// told as "no server running".
fn tls_refusal(e: &reqwest::Error) -> Option<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        chain.push(err.to_string());
        next = err.source();
    }
    let tls = chain.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("certificate") || m.contains("tls") || m.contains("handshake")
    });
    tls.then(|| chain.last().cloned().unwrap_or_default())
}

/// A client bound to one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `base` (`http://host:port`, no trailing slash).
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_api_key(base, None)
    }

    /// A client that sends `api_key` as a bearer token with every request (a server started
    /// with `CORRAL_API_KEYS`).
    pub fn with_api_key(base: impl Into<String>, api_key: Option<&str>) -> Self {
        Self::with_trust(base, api_key, &[]).expect("no CA files to read")
    }

    /// A client that also trusts the CAs in the PEM files `ca_files` (`CORRAL_CA_BUNDLE`) besides
    /// the system's, for an `https://` server whose certificate a private CA signed.
    pub fn with_trust(base: impl Into<String>, api_key: Option<&str>, ca_files: &[std::path::PathBuf]) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(mut value) =
            api_key.and_then(|k| reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).ok())
        {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // The server is local; a proxy from the environment would only get in the way.
            .no_proxy();
        for path in ca_files {
            let file = |source| ClientError::File { path: path.clone(), source };
            let pem = std::fs::read(path).map_err(file)?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| file(std::io::Error::other("no PEM certificate in the file")))?;
            builder = roots.into_iter().fold(builder, |b, c| b.add_root_certificate(c));
        }
        let http = builder.build()?;
        Ok(Client { base: base.into().trim_end_matches('/').to_string(), http })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends and turns non-2xx answers into [`ClientError::Api`].
    async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let resp = rb.send().await.map_err(|e| match tls_refusal(&e) {
            Some(reason) => ClientError::Tls { base: self.base.clone(), reason },
            None if e.is_connect() => ClientError::Connect { base: self.base.clone() },
            None => ClientError::Http(e),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorResponse>(&text).map(|e| e.error).unwrap_or_else(|_| {
            if text.trim().is_empty() {
                status.to_string()
            } else {
                text.trim().to_string()
            }
        });
        Err(ClientError::Api { status, message })
    }

    async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        decode(self.send(rb).await?).await
    }

    /// `HEAD /`: is a server there?
    pub async fn heartbeat(&self) -> Result<()> {
        self.send(self.request(Method::HEAD, "/")).await.map(drop)
    }

    /// `GET /api/version`: the Ollama API version the server speaks, and Corral's own version
    /// when the server is Corral.
    pub async fn version(&self) -> Result<ServerVersion> {
        let resp = self.send(self.request(Method::GET, "/api/version")).await?;
        let corral = resp.headers().get(CORRAL_VERSION_HEADER).and_then(|v| v.to_str().ok()).map(String::from);
        let body: VersionResponse = decode(resp).await?;
        Ok(ServerVersion { api: body.version, corral })
    }

    pub async fn list(&self) -> Result<ListResponse> {
        self.json(self.request(Method::GET, "/api/tags")).await
    }

    pub async fn show(&self, req: &ShowRequest) -> Result<ShowResponse> {
        self.json(self.request(Method::POST, "/api/show").json(req)).await
    }

    pub async fn ps(&self) -> Result<corral_types::api::ProcessResponse> {
        self.json(self.request(Method::GET, "/api/ps")).await
    }

    /// Unloads a model: `/api/generate` with no prompt and `keep_alive: 0`.
    pub async fn unload(&self, model: &str) -> Result<()> {
        let req = corral_types::api::GenerateRequest {
            model: model.into(),
            keep_alive: Some(serde_json::json!(0)),
            stream: Some(false),
            ..Default::default()
        };
        self.send(self.request(Method::POST, "/api/generate").json(&req)).await.map(drop)
    }

    pub async fn copy(&self, source: &str, destination: &str) -> Result<()> {
        let req = CopyRequest { source: source.into(), destination: destination.into() };
        self.send(self.request(Method::POST, "/api/copy").json(&req)).await.map(drop)
    }

    pub async fn delete(&self, model: &str) -> Result<()> {
        let req = DeleteRequest { model: model.into(), name: String::new() };
        self.send(self.request(Method::DELETE, "/api/delete").json(&req)).await.map(drop)
    }

    /// Creates a model, calling `progress` for each streamed status.
    pub async fn create(&self, req: &CreateRequest, mut progress: impl FnMut(ProgressResponse)) -> Result<()> {
        let mut lines = Box::pin(self.stream::<_, ProgressResponse>("/api/create", req).await?);
        while let Some(p) = lines.next().await {
            progress(p?);
        }
        Ok(())
    }

    /// Posts `body` and yields each NDJSON line as `T`; an `{"error": …}` line becomes an error.
    pub async fn stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<impl Stream<Item = Result<T>>> {
        let resp = self.send(self.request(Method::POST, path).json(body)).await?;
        let status = resp.status();
        Ok(ndjson_lines(resp.bytes_stream(), MAX_NDJSON_LINE).map(move |line| {
            let line = line?;
            let value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| ClientError::Decode(format!("{e}: {line}")))?;
            if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
                return Err(ClientError::Api { status, message: err.to_string() });
            }
            serde_json::from_value(value).map_err(|e| ClientError::Decode(format!("{e}: {line}")))
        }))
    }

    /// Whether the server has a blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self.send(self.request(Method::HEAD, &format!("/api/blobs/{digest}"))).await {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status: StatusCode::NOT_FOUND, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a file as the blob `digest`, calling `progress(bytes_sent)` as it goes.
    pub async fn upload_blob(
        &self,
        digest: &Digest,
        path: &Path,
        progress: impl FnMut(u64) + Send + Sync + 'static,
    ) -> Result<()> {
        let file_err = |source| ClientError::File { path: path.to_path_buf(), source };
        let file = tokio::fs::File::open(path).await.map_err(file_err)?;
        let len = file.metadata().await.map_err(file_err)?.len();
        let progress = std::sync::Mutex::new(progress);
        let mut sent = 0u64;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).inspect_ok(move |chunk| {
            sent += chunk.len() as u64;
            if let Ok(mut p) = progress.lock() {
                p(sent);
            }
        });
        let rb = self
            .request(Method::POST, &format!("/api/blobs/{digest}"))
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body));
        self.send(rb).await.map(drop)
    }
}

/// A whole JSON answer.
async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T> {
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// The longest NDJSON line accepted from a server. Lines are mostly one token each, but one line
/// can carry a whole answer (`"stream": false`) or, on `/api/generate`'s last line, the `context`:
/// every token of the context window as a decimal number, about 7 MB for a million tokens. 64 MiB,
/// the largest request body the server accepts, leaves room for both while a server that never
/// sends a newline cannot make the client buffer without end.
const MAX_NDJSON_LINE: usize = 64 << 20;

/// Splits a byte stream into lines (without the `\n`, trimmed), skipping empty ones; a line over
/// `max` bytes is an error that ends the stream.
fn ndjson_lines(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>>,
    max: usize,
) -> impl Stream<Item = Result<String>> {
    use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
    let reader = tokio_util::io::StreamReader::new(bytes.map_err(std::io::Error::other));
    FramedRead::new(reader, LinesCodec::new_with_max_length(max))
        .map(move |line| match line {
            Ok(line) => Ok(line.trim().to_string()),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                Err(ClientError::Decode(format!("a line of the server's answer is longer than {max} bytes")))
            }
            // The connection's own errors come back as they were; what else is left is a line
            // that is not UTF-8.
            Err(LinesCodecError::Io(e)) => Err(match e.downcast::<reqwest::Error>() {
                Ok(e) => ClientError::Http(e),
                Err(e) => ClientError::Decode(e.to_string()),
            }),
        })
        .try_filter(|line| std::future::ready(!line.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> impl Stream<Item = reqwest::Result<bytes::Bytes>> {
        futures_util::stream::iter(
            parts.iter().map(|p| Ok(bytes::Bytes::from_static(p.as_bytes()))).collect::<Vec<_>>(),
        )
    }

    async fn lines(parts: &[&'static str], max: usize) -> Vec<Result<String>> {
        ndjson_lines(chunks(parts), max).collect().await
    }

    #[tokio::test]
    async fn lines_are_split_across_chunks() {
        let got = lines(&["{\"a\":", "1}\n\n  \r\n{\"b\"", ":2}\r\n", "{\"é\":3}"], 64).await;
        let got: Vec<String> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"é\":3}"]);
        assert!(lines(&[], 64).await.is_empty());
    }

    #[tokio::test]
    async fn a_line_over_the_bound_is_an_error_not_memory() {
        let got = lines(&["{\"ok\":1}\n", "0123456789", "0123456789", "0123456789\n", "{\"after\":1}\n"], 16).await;
        assert_eq!(got.len(), 2, "the stream ends at the error: {got:?}");
        assert_eq!(got[0].as_ref().unwrap(), "{\"ok\":1}");
        assert!(matches!(&got[1], Err(ClientError::Decode(m)) if m.contains("longer than 16 bytes")), "{got:?}");
        // A server that never ends its line: an error once the bound is passed, not a hang.
        let endless = futures_util::stream::repeat_with(|| Ok(bytes::Bytes::from_static(&[b'x'; 1024])));
        let first = Box::pin(ndjson_lines(endless, 1 << 20)).next().await;
        assert!(matches!(first, Some(Err(ClientError::Decode(_)))), "{first:?}");
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_an_error() {
        let bad = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"{\"a\":\"\xff\"}\n"))]);
        let got: Vec<_> = ndjson_lines(bad, 64).collect().await;
        assert!(matches!(&got[..], [Err(ClientError::Decode(_))]), "{got:?}");
    }
}
