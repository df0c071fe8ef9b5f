//! What registries send, checked before anything acts on it: manifests, token answers,
//! `WWW-Authenticate` challenges and `Content-Range` values. Pure functions over bytes and text,
//! so the fuzz targets (`fuzz/fuzz_targets/registry_answers.rs`) reach them without a network.

use corral_types::{Digest, Manifest};

pub use crate::auth::{parse_challenge, Challenge};
use crate::RegistryError;

/// A manifest as the registry sent it: JSON of schema version 2, hashing to `pinned` when the
/// pull named a digest.
pub fn manifest(bytes: &[u8], pinned: Option<&Digest>) -> Result<Manifest, RegistryError> {
    if let Some(want) = pinned {
        let got = Digest::of(bytes);
        if got != *want {
            return Err(RegistryError::BadManifest(format!("manifest digest is {got}, expected {want}")));
        }
    }
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| RegistryError::BadManifest(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(RegistryError::BadManifest(format!("schema version {} (expected 2)", manifest.schema_version)));
    }
    Ok(manifest)
}

/// The token of a token service's answer (`token`, or OAuth's `access_token`). It goes into an
/// `Authorization` header, so it must be visible ASCII: anything else (a line break to smuggle a
/// header) is refused here rather than by the HTTP client later.
pub fn token(body: &[u8]) -> Result<String, RegistryError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| RegistryError::Config("the token service sent no JSON".into()))?;
    let token = v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str());
    let token = token.ok_or_else(|| RegistryError::Config("the token service sent no token".into()))?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RegistryError::Config("the token service sent a token that is not printable ASCII".into()));
    }
    Ok(token.to_string())
}

/// The first byte and the total of a `Content-Range: bytes FIRST-LAST/TOTAL` value (the total may
/// be `*`, unknown).
pub fn content_range(value: &str) -> Option<(Option<u64>, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    Some((range.split_once('-')?.0.trim().parse().ok(), total.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() {
        assert_eq!(token(br#"{"token":"abc.def"}"#).unwrap(), "abc.def");
        assert_eq!(token(br#"{"access_token":"x"}"#).unwrap(), "x");
        for bad in [&br#"{"token":"a\r\nX-Evil: 1"}"#[..], br#"{"token":""}"#, br#"{"token":5}"#, b"<html>", b"{}"] {
            assert!(token(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 10-19/100"), Some((Some(10), Some(100))));
        assert_eq!(content_range("bytes 0-9/*"), Some((Some(0), None)));
        assert_eq!(content_range("items 0-9/10"), None);
    }

    #[test]
    fn manifests_are_checked() {
        let m = Manifest::new(
            corral_types::Layer::new("application/vnd.docker.container.image.v1+json", Digest::of(b"c"), 1),
            vec![],
        );
        let bytes = m.to_bytes();
        assert_eq!(manifest(&bytes, Some(&Digest::of(&bytes))).unwrap(), m);
        assert!(matches!(manifest(&bytes, Some(&Digest::of(b"x"))), Err(RegistryError::BadManifest(_))));
        let v1 = String::from_utf8(bytes).unwrap().replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(matches!(manifest(v1.as_bytes(), None), Err(RegistryError::BadManifest(_))));
    }
}
