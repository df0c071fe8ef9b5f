//! Model names: `[scheme://][host/][namespace/]model[:tag][@digest]`.
//!
//! The grammar is Ollama's (`types/model/name.go`): the string is cut from the right, missing parts
//! take the defaults `registry.ollama.ai`, `library` and `latest`, and every part must match a small
//! character set. Those character sets are what keep a name from escaping the models directory: no
//! part can be empty, contain a `/`, or start with a `.`, so `..`, absolute paths and NUL bytes are
//! all refused here, before any path is built from a name.

use std::fmt;

/// Registry host used when a name does not give one.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// Namespace used when a name does not give one.
pub const DEFAULT_NAMESPACE: &str = "library";
/// Tag used when a name does not give one.
pub const DEFAULT_TAG: &str = "latest";

const MAX_HOST_LEN: usize = 350;
const MAX_PART_LEN: usize = 80;

/// Why a string is not a usable model name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty or only whitespace.
    #[error("model is required")]
    Empty,
    /// Some part of the name breaks the grammar. The message is Ollama's, which clients match on.
    #[error("invalid model name")]
    Invalid {
        /// The name as the user gave it.
        name: String,
    },
}

/// A fully qualified model name: every part present and valid.
///
/// Parts keep the case the user typed; comparisons that decide whether two names are the same
/// model are case-insensitive ([`ModelName::eq_fold`]), as Ollama's are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelName {
    scheme: Option<String>,
    host: String,
    namespace: String,
    model: String,
    tag: String,
    digest: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
    Digest,
}

impl Part {
    fn max_len(self) -> usize {
        match self {
            Part::Host => MAX_HOST_LEN,
            _ => MAX_PART_LEN,
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn valid_part(kind: Part, s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > kind.max_len() || !is_word_byte(bytes[0]) {
        return false;
    }
    bytes[1..].iter().all(|&b| match b {
        b'-' | b'_' => true,
        b'.' => kind != Part::Namespace && kind != Part::Digest,
        b':' => kind == Part::Host || kind == Part::Digest,
        _ => is_word_byte(b),
    })
}

/// Cuts `s` at the last `sep`. `None` when `sep` does not occur.
fn cut_last(s: &str, sep: char) -> Option<(&str, &str)> {
    s.rfind(sep).map(|i| (&s[..i], &s[i + sep.len_utf8()..]))
}

impl ModelName {
    /// Parses a user-supplied name, fills in defaults and validates every part.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let invalid = || NameError::Invalid { name: raw.to_string() };

        let (s, digest) = match cut_last(s, '@') {
            Some((rest, d)) => (rest, Some(d.to_string())),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a host's port.
        let (s, tag) = match (s.rfind(':'), s.rfind('/')) {
            (Some(c), slash) if slash.is_none_or(|sl| c > sl) => (&s[..c], Some(&s[c + 1..])),
            _ => (s, None),
        };
        let (s, model) = match cut_last(s, '/') {
            Some((rest, m)) => (Some(rest), m),
            None => (None, s),
        };
        let (host_part, namespace) = match s {
            None => (None, None),
            Some(rest) => match cut_last(rest, '/') {
                Some((host, ns)) => (Some(host), Some(ns)),
                None => (None, Some(rest)),
            },
        };
        let (scheme, host) = match host_part {
            Some(h) => match h.split_once("://") {
                Some((scheme, host)) => (Some(scheme.to_string()), host),
                None => (None, h),
            },
            None => (None, DEFAULT_HOST),
        };
        if let Some(scheme) = &scheme {
            if scheme != "http" && scheme != "https" {
                return Err(invalid());
            }
        }

        let name = ModelName {
            scheme,
            host: host.to_string(),
            namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_string(),
            model: model.to_string(),
            tag: tag.unwrap_or(DEFAULT_TAG).to_string(),
            digest,
        };
        if name.is_valid() {
            Ok(name)
        } else {
            Err(invalid())
        }
    }

    /// Builds a name from the four directory levels of a stored manifest path, refusing any
    /// component that would not survive [`ModelName::parse`].
    pub fn from_parts(host: &str, namespace: &str, model: &str, tag: &str) -> Option<Self> {
        let name = ModelName {
            scheme: None,
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
            digest: None,
        };
        name.is_valid().then_some(name)
    }

    fn is_valid(&self) -> bool {
        valid_part(Part::Host, &self.host)
            && valid_part(Part::Namespace, &self.namespace)
            && valid_part(Part::Model, &self.model)
            && valid_part(Part::Tag, &self.tag)
            && self.digest.as_deref().is_none_or(|d| valid_part(Part::Digest, d))
    }

    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn model(&self) -> &str {
        &self.model
    }
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// The `@digest` the user wrote after the name, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The `scheme://` the user wrote before the host, if any.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// The four directory levels of this model's manifest under `manifests/`. Safe to join onto
    /// a directory: each part was validated against the name grammar.
    pub fn path_parts(&self) -> [&str; 4] {
        [&self.host, &self.namespace, &self.model, &self.tag]
    }

    /// Returns this name with the given parts' casing (used to resolve a name to the casing of
    /// an existing manifest).
    pub fn with_parts(&self, parts: [&str; 4]) -> Self {
        ModelName {
            scheme: self.scheme.clone(),
            host: parts[0].to_string(),
            namespace: parts[1].to_string(),
            model: parts[2].to_string(),
            tag: parts[3].to_string(),
            digest: self.digest.clone(),
        }
    }

    /// Case-insensitive equality of host, namespace, model and tag.
    pub fn eq_fold(&self, other: &ModelName) -> bool {
        self.path_parts().iter().zip(other.path_parts()).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// The shortest form that parses back to the same name: `model:tag` on the default registry
    /// and namespace, `namespace/model:tag` on the default registry, the full name otherwise.
    pub fn display_shortest(&self) -> String {
        if self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            if self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
                format!("{}:{}", self.model, self.tag)
            } else {
                format!("{}/{}:{}", self.namespace, self.model, self.tag)
            }
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        ModelName::parse(s).unwrap().to_string()
    }

    #[test]
    fn defaults_are_filled_in() {
        assert_eq!(full("llama3.2"), "registry.ollama.ai/library/llama3.2:latest");
        assert_eq!(full("llama3.2:1b"), "registry.ollama.ai/library/llama3.2:1b");
        assert_eq!(full("jmorgan/foo"), "registry.ollama.ai/jmorgan/foo:latest");
        assert_eq!(full("example.com/ns/m:t"), "example.com/ns/m:t");
        assert_eq!(full("localhost:5000/ns/m"), "localhost:5000/ns/m:latest");
        assert_eq!(full("localhost:5000/ns/m:v1"), "localhost:5000/ns/m:v1");
        assert_eq!(full("  padded:tag  "), "registry.ollama.ai/library/padded:tag");
    }

    #[test]
    fn scheme_and_digest_are_split_off() {
        let n = ModelName::parse("http://localhost:5000/team/m:t").unwrap();
        assert_eq!(n.scheme(), Some("http"));
        assert_eq!(n.host(), "localhost:5000");
        let n = ModelName::parse("m:t@sha256:abc123").unwrap();
        assert_eq!(n.tag(), "t");
        assert!(ModelName::parse("ftp://h/n/m").is_err());
    }

    #[test]
    fn shortest_display() {
        let short = |s: &str| ModelName::parse(s).unwrap().display_shortest();
        assert_eq!(short("llama3.2"), "llama3.2:latest");
        assert_eq!(short("REGISTRY.ollama.ai/library/x:y"), "x:y");
        assert_eq!(short("jmorgan/foo"), "jmorgan/foo:latest");
        assert_eq!(short("example.com/ns/m:t"), "example.com/ns/m:t");
    }

    #[test]
    fn case_is_kept_but_compared_loosely() {
        let a = ModelName::parse("LLaMA3.2:Latest").unwrap();
        let b = ModelName::parse("llama3.2").unwrap();
        assert_eq!(a.model(), "LLaMA3.2");
        assert!(a.eq_fold(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn hostile_names_are_refused() {
        let long = "a".repeat(81);
        let long_host = format!("{}/ns/m", "h".repeat(351));
        let bad = [
            "..",
            "../x",
            "../../etc/passwd",
            "/abs",
            "/model",
            "model:",
            "model:..",
            "ns/../m",
            "./m",
            "a/b/c/d/e",
            "m/",
            ":tag",
            "ns.with.dots/m",
            "m\0x",
            "m:t\0",
            "m/t:a/b",
            "h//m",
            "m:t:u",
            ".hidden",
            "space in/name",
            "emoji🦙",
            "m:-tag",
            "-m",
            long.as_str(),
            long_host.as_str(),
            "m@",
            "m@../x",
        ];
        for name in bad {
            assert_eq!(
                ModelName::parse(name),
                Err(NameError::Invalid { name: name.to_string() }),
                "{name:?} should be invalid"
            );
        }
        assert_eq!(ModelName::parse("   "), Err(NameError::Empty));
        assert_eq!(NameError::Invalid { name: "x".into() }.to_string(), "invalid model name");
    }

    #[test]
    fn boundary_lengths() {
        assert!(ModelName::parse(&"a".repeat(80)).is_ok());
        assert!(ModelName::parse(&format!("m:{}", "t".repeat(80))).is_ok());
        assert!(ModelName::parse(&format!("m:{}", "t".repeat(81))).is_err());
        assert!(ModelName::parse(&format!("{}/n/m", "h".repeat(350))).is_ok());
    }

    #[test]
    fn path_parts_never_escape() {
        let n = ModelName::parse("Host.example:8080/Team_1/model-v2.1:Q4_K_M").unwrap();
        for part in n.path_parts() {
            assert!(!part.is_empty() && !part.starts_with('.') && !part.contains('/'));
        }
        assert!(ModelName::from_parts("h", "n", "..", "t").is_none());
        assert!(ModelName::from_parts("h", "n", "m", ".tmp-123").is_none());
    }
}
