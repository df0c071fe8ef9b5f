//! Content digests: `sha256:<64 hex>`, the only form accepted anywhere a digest names a file.
//!
//! A digest is parsed once, at the edge, into [`Digest`], whose only representation is 64 lowercase
//! hex characters. Paths are built from that, never from the raw string, which is what stops a
//! `../` in a digest from reaching the file system (CVE-2024-37032 in Ollama).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest format")]
pub struct DigestError {
    /// The string that was refused.
    pub value: String,
}

/// A SHA-256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:<hex>` or `sha256-<hex>` (the file-name form), 64 hex digits of either case.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let err = || DigestError { value: s.to_string() };
        let hex_part = s.strip_prefix("sha256:").or_else(|| s.strip_prefix("sha256-")).ok_or_else(err)?;
        if hex_part.len() != 64 {
            return Err(err());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| err())?;
        Ok(Digest(bytes))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// Wraps a finished hasher's output.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest(hasher.finalize().into())
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256-<hex>`: the blob's file name in the store.
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(|e| serde::de::Error::custom(format!("{e}: {:?}", e.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_both_separators_and_any_case() {
        let a = Digest::parse(&format!("sha256:{HELLO}")).unwrap();
        let b = Digest::parse(&format!("sha256-{}", HELLO.to_uppercase())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Digest::of(b"hello"));
        assert_eq!(a.to_string(), format!("sha256:{HELLO}"));
        assert_eq!(a.file_name(), format!("sha256-{HELLO}"));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "sha256:",
            HELLO,
            &format!("sha512:{HELLO}"),
            &format!("sha256:{}", &HELLO[1..]),
            &format!("sha256:{HELLO}0"),
            &format!("sha256:../../{}", &HELLO[6..]),
            &format!("sha256:{}zz", &HELLO[2..]),
            &format!(" sha256:{HELLO}"),
            &format!("sha256:{}\0", &HELLO[1..]),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:../x\"").is_err());
    }
}
