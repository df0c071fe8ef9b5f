//! Registry authentication: HTTP basic, and the Docker token flow
//! (`WWW-Authenticate: Bearer realm=…,service=…,scope=…` → `GET realm` → bearer token).
//!
//! Credentials come from [`Credentials`], built at the edge from Docker's `config.json` and
//! `CORRAL_REGISTRY_AUTH`. A token realm on another host than the registry is refused unless that
//! host is explicitly trusted: sending credentials (or a signed challenge) to a host the registry
//! names is how tokens were stolen from Ollama (CVE-2025-51471).
//!
//! Architecture invariant: credentials and tokens never appear in logs or error messages.

use std::collections::HashMap;
use std::fmt;

/// A user name and password for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({}, <redacted>)", self.username)
    }
}

/// Logins by registry host (`host[:port]`), and the hosts trusted as token realms for others.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    logins: HashMap<String, Login>,
    /// `registry host → realm hosts` allowed besides the registry itself.
    trusted_realms: HashMap<String, Vec<String>>,
}

/// Decodes the base64 of Docker's `config.json` `auth` field: the standard alphabet (or the URL-safe
/// one), padded or not, surrounding white space ignored.
fn decode_auth(s: &str) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let s = s.trim();
    [GeneralPurpose::new(&STANDARD, LENIENT), GeneralPurpose::new(&URL_SAFE, LENIENT)]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

impl Credentials {
    /// Adds a login for `host`.
    pub fn insert(&mut self, host: &str, login: Login) {
        self.logins.insert(host.to_ascii_lowercase(), login);
    }

    /// Trusts `realm_host` to issue tokens for `registry_host`.
    pub fn trust_realm(&mut self, registry_host: &str, realm_host: &str) {
        self.trusted_realms
            .entry(registry_host.to_ascii_lowercase())
            .or_default()
            .push(realm_host.to_ascii_lowercase());
    }

    /// Reads Docker's `config.json` (`{"auths": {"host": {"auth": base64("user:pass")}}}`, or
    /// `username`/`password`). Unknown or malformed entries are skipped.
    pub fn add_docker_config(&mut self, json: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return };
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else { return };
        for (host, entry) in auths {
            let host = host.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
            let host = host.split('/').next().unwrap_or(host);
            let from_auth = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .and_then(decode_auth)
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| Login { username: u.into(), password: p.into() }));
            let from_fields = match (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                (Some(u), Some(p)) => Some(Login { username: u.into(), password: p.into() }),
                _ => None,
            };
            if let Some(login) = from_auth.or(from_fields) {
                self.insert(host, login);
            }
        }
    }

    /// Reads `CORRAL_REGISTRY_AUTH`: `host=user:password`, several separated by `;`.
    pub fn add_env(&mut self, value: &str) -> Result<(), String> {
        for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, login) = entry.split_once('=').ok_or_else(|| "expected host=user:password".to_string())?;
            let (user, pass) = login.split_once(':').ok_or_else(|| format!("no password for {host}"))?;
            self.insert(host.trim(), Login { username: user.into(), password: pass.into() });
        }
        Ok(())
    }

    pub(crate) fn login(&self, host: &str) -> Option<&Login> {
        self.logins.get(&host.to_ascii_lowercase())
    }

    pub(crate) fn realm_allowed(&self, registry_host: &str, realm_host: &str) -> bool {
        realm_host.eq_ignore_ascii_case(registry_host)
            || self
                .trusted_realms
                .get(&registry_host.to_ascii_lowercase())
                .is_some_and(|hs| hs.iter().any(|h| h.eq_ignore_ascii_case(realm_host)))
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
///
/// Hand-written and small: it reads the parameters as the Docker and Ollama Go clients do (quoted
/// or bare values, `,` between them), and the fuzz target `registry_answers` drives it with
/// whatever a registry could send.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut map = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start().trim_start_matches(','))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], after[end..].trim_start_matches(','))
        };
        map.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = next.trim();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: map.remove("realm")?,
            service: map.remove("service"),
            scope: map.remove("scope"),
        }),
        _ => None,
    }
}

/// `host[:port]` of a URL.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?']).next()?.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"Registry Realm\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry".into()),
                scope: Some("repository:a/b:pull,push".into())
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(url_host("https://Auth.Example:8443/token?x=1").as_deref(), Some("auth.example:8443"));
    }

    #[test]
    fn credentials_sources() {
        let mut c = Credentials::default();
        c.add_docker_config(&format!(
            r#"{{"auths": {{"https://reg.example:5000/v2/": {{"auth": "{}"}}, "other": {{"username": "u", "password": "p"}}}}}}"#,
            BASE64.encode(b"alice:s3cr:et")
        ));
        assert_eq!(c.login("REG.example:5000"), Some(&Login { username: "alice".into(), password: "s3cr:et".into() }));
        assert_eq!(c.login("other").unwrap().username, "u");
        c.add_env("localhost:5000=bob:pw; h2=x:y").unwrap();
        assert_eq!(c.login("localhost:5000").unwrap().password, "pw");
        assert!(c.add_env("nohost").is_err());
        assert!(!format!("{:?}", c).contains("pw"), "passwords are redacted");
        assert!(c.realm_allowed("r.example", "R.EXAMPLE"));
        assert!(!c.realm_allowed("r.example", "evil.example"));
        c.trust_realm("r.example", "auth.example");
        assert!(c.realm_allowed("r.example", "auth.example"));
        for s in ["", "a", "ab", "abc", "abcd", "\u{0}\u{ff}xyz"] {
            assert_eq!(decode_auth(&BASE64.encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        // Unpadded, URL-safe, and with white space around: still read.
        assert_eq!(decode_auth(" YWxpY2U6cD8-\n").unwrap(), b"alice:p?>");
        assert_eq!(decode_auth("YWxpY2U6cA").unwrap(), b"alice:p");
        assert_eq!(decode_auth("YWxpY2U6cA==").unwrap(), b"alice:p");
        assert_eq!(decode_auth("not base64!"), None);
    }
}
