//! Answering a registry's `401`: basic auth, the Docker token flow, and Ollama's signed token
//! request. Which one is used:
//!
//! - `Basic` challenge: the login for the host, or a clear error naming where logins come from.
//! - `Bearer` challenge whose realm is the registry's host (or a realm the user trusts): with a
//!   login, the token is requested with it (Docker); without one but with an identity key, the
//!   request is signed (Ollama's scheme), and if the token service refuses the signature the
//!   request is repeated anonymously (public repositories on Docker-style registries).

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::header::AUTHORIZATION;

use crate::auth::{url_host, Challenge, Login};
use crate::{read_bounded, Registry, RegistryError};

/// A token service's answer that is not a token.
enum Refused {
    /// 401 or 403: these credentials (or none) are not good enough.
    Denied(u16),
    Other(RegistryError),
}

impl Registry {
    /// The `Authorization` value answering `challenge` for `host`.
    pub(crate) async fn authorize(
        &self,
        what: &str,
        host: &str,
        challenge: Option<Challenge>,
    ) -> Result<String, RegistryError> {
        let fail = |reason: String| RegistryError::Auth { what: what.into(), host: host.into(), reason };
        let login = self.options.credentials.login(host);
        let basic = |l: &Login| format!("Basic {}", BASE64.encode(format!("{}:{}", l.username, l.password)));
        let (realm, service, scope) = match challenge {
            None => return Err(fail("the registry asked for credentials without saying how".into())),
            Some(Challenge::Basic) => {
                return login.map(basic).ok_or_else(|| {
                    fail(format!(
                    "the registry needs a login: add one for {host} to ~/.docker/config.json or CORRAL_REGISTRY_AUTH"
                ))
                })
            }
            Some(Challenge::Bearer { realm, service, scope }) => (realm, service, scope),
        };
        let realm_host = url_host(&realm).ok_or_else(|| fail(format!("invalid token realm {realm:?}")))?;
        if !self.options.credentials.realm_allowed(host, &realm_host) {
            return Err(fail(format!(
                "the registry sends us to {realm_host} for a token; refusing to authenticate with a host other than the registry (trust it with CORRAL_REGISTRY_TRUSTED_REALMS={host}={realm_host})"
            )));
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        query.extend(service.map(|s| ("service", s)));
        query.extend(scope.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()).map(|s| ("scope", s.into())));
        let refused = |r: Refused| match r {
            Refused::Denied(status) => fail(format!("the token service answered {status}")),
            Refused::Other(e) => e,
        };
        if let Some(l) = login {
            return self.fetch_token(&token_url(&realm, &query), Some(basic(l))).await.map_err(refused);
        }
        if let Some(identity) = &self.options.identity {
            let mut signed = query.clone();
            let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            signed.push(("ts", ts.as_secs().to_string()));
            signed.push(("nonce", nonce()));
            let url = token_url(&realm, &signed);
            match self.fetch_token(&url, Some(identity.sign_token_request(&url))).await {
                Err(Refused::Denied(status)) => {
                    tracing::debug!(host, status, "the token service refused the signed request; trying anonymously")
                }
                other => return other.map_err(refused),
            }
        }
        self.fetch_token(&token_url(&realm, &query), None).await.map_err(refused)
    }

    /// `GET url` on a token service; the `Bearer …` value from its answer.
    async fn fetch_token(&self, url: &str, authorization: Option<String>) -> Result<String, Refused> {
        let mut rb = self.http.get(url);
        if let Some(a) = authorization {
            rb = rb.header(AUTHORIZATION, a);
        }
        let resp = rb.send().await.map_err(|e| {
            Refused::Other(RegistryError::Http { what: "requesting a token".into(), source: e.without_url() })
        })?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(Refused::Denied(status));
        }
        let body = read_bounded(resp, 64 << 10).await.map_err(Refused::Other)?;
        crate::answers::token(&body).map(|t| format!("Bearer {t}")).map_err(Refused::Other)
    }
}

/// `realm?query` with the parameters sorted by name and escaped as Go's `url.Values.Encode` does,
/// because Ollama's token service checks a signature over this exact string.
fn token_url(realm: &str, params: &[(&str, String)]) -> String {
    let (base, existing) = realm.split_once('?').unwrap_or((realm, ""));
    let mut pairs: Vec<(String, String)> = existing
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    pairs.extend(params.iter().map(|(k, v)| (escape(k), escape(v))));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.is_empty() {
        return base.to_string();
    }
    let query: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}?{}", query.join("&"))
}

/// Go's `url.QueryEscape`, byte for byte: Ollama's token service checks a signature over the
/// escaped URL, and the form encoders of Rust crates differ from Go's (`~`, `*`).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// 16 random bytes, base64url without padding (Ollama's nonce).
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::getrandom(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_are_encoded_like_go() {
        let url = token_url(
            "https://ollama.com/token",
            &[
                ("service", "ollama.com".into()),
                ("scope", "repository:library/x:pull".into()),
                ("ts", "17".into()),
                ("nonce", "a_b-c".into()),
            ],
        );
        assert_eq!(
            url,
            "https://ollama.com/token?nonce=a_b-c&scope=repository%3Alibrary%2Fx%3Apull&service=ollama.com&ts=17"
        );
        assert_eq!(token_url("http://h/t?z=1", &[("a", "x y".into())]), "http://h/t?a=x+y&z=1");
        assert_eq!(token_url("http://h/t", &[]), "http://h/t");
        let n = nonce();
        assert_eq!(n.len(), 22);
        assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{n}");
    }
}
