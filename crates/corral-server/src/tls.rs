//! HTTPS for the listener: `CORRAL_TLS_CERT` and `CORRAL_TLS_KEY` (PEM files) make `corral serve`
//! speak TLS, with HTTP/2 for clients that offer it (ALPN) and HTTP/1.1 for the rest. Ollama has
//! no TLS of its own; behind a reverse proxy is its only way.
//!
//! - **Renewal without a restart.** The certificate and key are read again on SIGHUP and whenever
//!   either file's size or modification time changes (looked at every [`POLL`]). A new pair that
//!   does not parse, or whose key does not match its certificate, is logged and the pair in use is
//!   kept: a half-written renewal never takes the server down. Connections already open keep the
//!   certificate they were made with.
//! - **Plain HTTP on the TLS port** is answered, not left hanging in a handshake that will never
//!   come: the first byte of a TLS connection is a handshake record (22), anything else gets a
//!   plain-text 400 naming the `https://` URL to use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How often the files are looked at for a renewal.
pub const POLL: Duration = Duration::from_secs(2);

/// The first byte of a TLS record carrying a handshake.
const HANDSHAKE: u8 = 22;

/// The certificate chain and private key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {why}", path.display())]
    NoKey { path: PathBuf, why: String },
    #[error("the key in {} cannot sign: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// What identifies a version of the two files: their sizes and modification times.
type Stamp = [(u64, Option<SystemTime>); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((0, None), |m| (m.len(), m.modified().ok()));
    [one(&files.cert), one(&files.key)]
}

/// Reads and checks the pair.
fn read(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let bytes = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.to_path_buf(), source });
    let cert_pem = bytes(&files.cert)?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes(&files.key)?)
        .map_err(|e| TlsError::NoKey { path: files.key.clone(), why: e.to_string() })?;
    let signer = provider::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key { path: files.key.clone(), why: e.to_string() })?;
    let certified = CertifiedKey::new(certs, signer);
    match certified.keys_match() {
        // `Unknown` is a key type rustls cannot compare: the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(_) => Err(TlsError::Mismatch { cert: files.cert.clone(), key: files.key.clone() }),
    }
}

/// The pair in use, replaced by [`Tls::reload`].
#[derive(Debug)]
struct Current {
    files: TlsFiles,
    pair: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.read().unwrap_or_else(|p| p.into_inner()).0.clone())
    }
}

/// The listener's TLS: the acceptor and the pair it serves.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.current.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the pair; an error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let stamped = stamp(&files);
        let pair = read(&files)?;
        let current = Arc::new(Current { files, pair: RwLock::new((Arc::new(pair), stamped)) });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Tls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), current }))
    }

    /// Reads the pair again if the files changed (or always, with `force`). Returns whether a new
    /// pair is now served; on an error the old one stays.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = stamp(&self.current.files);
        if !force && now == self.current.pair.read().unwrap_or_else(|p| p.into_inner()).1 {
            return Ok(false);
        }
        let result = read(&self.current.files);
        let mut pair = self.current.pair.write().unwrap_or_else(|p| p.into_inner());
        // Stamped even when it failed: the same broken files are not read again every poll.
        pair.1 = now;
        pair.0 = Arc::new(result?);
        Ok(true)
    }

    /// Reloads on SIGHUP and on a change of the files, for as long as the server runs.
    pub fn watch(self: &Arc<Self>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let forced = tokio::select! {
                    _ = async { hangup.as_mut().expect("checked").recv().await }, if hangup.is_some() => true,
                    () = tokio::time::sleep(POLL) => false,
                };
                match tls.reload(forced) {
                    Ok(true) => tracing::info!(cert = %tls.current.files.cert.display(), "TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!("TLS certificate not reloaded, the previous one is still served: {e}"),
                }
            }
        });
    }

    /// The TLS side of an accepted connection: `Ok(Some(stream, h2))` after a handshake (`h2` when
    /// the client chose HTTP/2), `Ok(None)` when the client spoke something else and was told.
    pub async fn accept(
        &self,
        stream: TcpStream,
        deadline: Duration,
        url: &str,
    ) -> std::io::Result<Option<(TlsStream<TcpStream>, bool)>> {
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(deadline, stream.peek(&mut first)).await;
        match peeked {
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(Ok(_)) if first[0] != HANDSHAKE => {
                refuse_plain(stream, url).await;
                return Ok(None);
            }
            Ok(Ok(_)) => {}
        }
        let tls = tokio::time::timeout(deadline, self.acceptor.accept(stream))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Some((tls, h2)))
    }
}

/// Answers a plain-HTTP request on the TLS port with a 400 that says what to use, and closes.
async fn refuse_plain(mut stream: TcpStream, url: &str) {
    let body = serde_json::json!({"error": format!("this server speaks HTTPS: use {url}")}).to_string();
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The request is not read: closing with it unread could reset the connection before the
    // client sees the answer, so what arrived is drained briefly after writing.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.pem())
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = pair(dir.path(), "one");
        let (_, other_key, _) = pair(dir.path(), "two");
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file").unwrap();
        let err = |cert: &Path, key: &Path| {
            Tls::load(TlsFiles { cert: cert.into(), key: key.into() }).expect_err("refused").to_string()
        };
        assert!(err(&missing, &key).contains("missing.pem"));
        assert!(err(&garbage, &key).contains("garbage.pem holds no PEM certificate"));
        assert!(err(&cert, &garbage).contains("garbage.pem holds no PEM private key"));
        let mismatch = err(&cert, &other_key);
        assert!(mismatch.contains("two.key does not belong to the certificate in") && mismatch.contains("one.crt"));
        assert!(Tls::load(TlsFiles { cert, key }).is_ok());
    }

    #[test]
    fn a_broken_renewal_keeps_the_pair_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = pair(dir.path(), "one");
        let tls = Tls::load(TlsFiles { cert: cert.clone(), key: key.clone() }).unwrap();
        let served = || tls.current.pair.read().unwrap().0.end_entity_cert().unwrap().to_vec();
        let before = served();
        assert!(!tls.reload(false).unwrap(), "unchanged files are not read again");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
        assert!(tls.reload(false).is_err());
        assert_eq!(served(), before);
        // Not read again until they change once more.
        assert!(!tls.reload(false).unwrap());
        let (new_cert, new_key, _) = pair(dir.path(), "renewed");
        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        assert!(tls.reload(false).unwrap());
        assert_ne!(served(), before);
    }
}
