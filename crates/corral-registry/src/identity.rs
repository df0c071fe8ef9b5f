//! Ollama's registry identity: an ed25519 key in `~/.ollama/id_ed25519` (OpenSSH format, no
//! passphrase), created at the first `corral serve`, whose public half users register with
//! ollama.com. A registry's token challenge is answered by signing the token request with it.
//!
//! The signed message is `GET,<token URL with query>,<base64 of the hex SHA-256 of an empty body>`;
//! the `Authorization` value is `<base64 public key blob>:<base64 signature>`. An existing key made
//! by Ollama works unchanged, and a key made here works with Ollama.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};

use crate::auth::{b64decode, b64encode};

const KEY_TYPE: &[u8] = b"ssh-ed25519";
const MAGIC: &[u8] = b"openssh-key-v1\0";
const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// Why the identity key could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The key that signs token requests.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

impl Identity {
    /// Reads the key at `path`, creating it (and `path.pub`) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
        let io = |source| IdentityError::Io { path: path.to_path_buf(), source };
        match fs::read_to_string(path) {
            Ok(text) => Identity::from_openssh(&text)
                .map_err(|reason| IdentityError::Invalid { path: path.to_path_buf(), reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed).map_err(|e| io(std::io::Error::other(e.to_string())))?;
                let identity = Identity { key: SigningKey::from_bytes(&seed) };
                identity.write(path)?;
                tracing::info!(
                    "created a new registry key {}; its public key is {}",
                    path.display(),
                    identity.public_key()
                );
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key as one `authorized_keys` line: `ssh-ed25519 AAAA…`.
    pub fn public_key(&self) -> String {
        format!("ssh-ed25519 {}", b64encode(&self.public_blob()))
    }

    /// The SSH wire encoding of the public key.
    fn public_blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, KEY_TYPE);
        put_string(&mut out, self.key.verifying_key().as_bytes());
        out
    }

    /// The `Authorization` value for a token request to `url`.
    pub fn sign_token_request(&self, url: &str) -> String {
        // base64(hex(sha256(""))): the body hash Ollama signs for a GET.
        const EMPTY_BODY: &str =
            "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ==";
        let message = format!("GET,{url},{EMPTY_BODY}");
        let signature = self.key.sign(message.as_bytes());
        format!("{}:{}", b64encode(&self.public_blob()), b64encode(&signature.to_bytes()))
    }

    /// Writes the private key (mode 0600) and `<path>.pub`, each through a temp file and a rename
    /// so a crash never leaves half a key.
    fn write(&self, path: &Path) -> Result<(), IdentityError> {
        fn io(p: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
            move |source| IdentityError::Io { path: p.to_path_buf(), source }
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let public = path.with_extension("pub");
        for (target, text, mode) in [(path, self.to_openssh(), 0o600), (&public, self.public_key() + "\n", 0o644)] {
            let tmp = target.with_extension("tmp");
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.set_permissions(fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
            fs::rename(&tmp, target).map_err(io(target))?;
        }
        Ok(())
    }

    /// The unencrypted `openssh-key-v1` encoding.
    fn to_openssh(&self) -> String {
        let public = self.public_blob();
        let check = u32::from_le_bytes(self.key.to_bytes()[..4].try_into().unwrap());
        let mut private = Vec::new();
        private.extend_from_slice(&check.to_be_bytes());
        private.extend_from_slice(&check.to_be_bytes());
        put_string(&mut private, KEY_TYPE);
        put_string(&mut private, self.key.verifying_key().as_bytes());
        put_string(&mut private, &self.key.to_keypair_bytes());
        put_string(&mut private, b"");
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }
        let mut out = MAGIC.to_vec();
        for s in [&b"none"[..], b"none", b""] {
            put_string(&mut out, s);
        }
        out.extend_from_slice(&1u32.to_be_bytes());
        put_string(&mut out, &public);
        put_string(&mut out, &private);
        let b64 = b64encode(&out);
        let lines: Vec<&str> = b64.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("{BEGIN}\n{}\n{END}\n", lines.join("\n"))
    }

    /// Parses an unencrypted OpenSSH ed25519 private key.
    fn from_openssh(text: &str) -> Result<Identity, String> {
        let body =
            text.trim().strip_prefix(BEGIN).and_then(|t| t.strip_suffix(END)).ok_or("not an OpenSSH private key")?;
        let bytes = b64decode(body).ok_or("invalid base64")?;
        let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or("not an openssh-key-v1 key")?);
        let (cipher, kdf, _) = (r.string()?, r.string()?, r.string()?);
        if cipher != b"none" || kdf != b"none" {
            return Err("the key is protected by a passphrase, which Corral cannot use".into());
        }
        if r.u32()? != 1 {
            return Err("the file must hold exactly one key".into());
        }
        r.string()?;
        let mut p = Reader(r.string()?);
        if p.u32()? != p.u32()? {
            return Err("corrupt key (check values differ)".into());
        }
        let kind = p.string()?;
        if kind != KEY_TYPE {
            return Err(format!("a {} key; only ssh-ed25519 is supported", String::from_utf8_lossy(kind)));
        }
        let public = p.string()?;
        let pair: &[u8; 64] = p.string()?.try_into().map_err(|_| "corrupt ed25519 key (length)")?;
        let key = SigningKey::from_keypair_bytes(pair).map_err(|_| "corrupt ed25519 key (halves do not match)")?;
        if key.verifying_key().as_bytes() != public {
            return Err("corrupt ed25519 key (public key differs)".into());
        }
        Ok(Identity { key })
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Reads SSH wire-format fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        let (head, rest) = self.0.split_at_checked(4).ok_or("truncated key")?;
        self.0 = rest;
        Ok(u32::from_be_bytes(head.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        let (head, rest) = self.0.split_at_checked(n).ok_or("truncated key")?;
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made with `ssh-keygen -t ed25519 -N ''`, and its public line.
    const KEYGEN_KEY: &str = include_str!("../tests/data/id_ed25519");
    const KEYGEN_PUB: &str = include_str!("../tests/data/id_ed25519.pub");

    #[test]
    fn reads_keys_made_by_ssh_keygen() {
        let id = Identity::from_openssh(KEYGEN_KEY).unwrap();
        let line = KEYGEN_PUB.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert_eq!(id.public_key(), line);
    }

    #[test]
    fn created_keys_round_trip_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".ollama/id_ed25519");
        let made = Identity::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Identity::load_or_create(&path).unwrap();
        assert_eq!(made.public_key(), again.public_key());
        assert_eq!(fs::read_to_string(path.with_extension("pub")).unwrap().trim(), made.public_key());
        let listing: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(listing.len(), 2, "{listing:?}");
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let id = Identity::from_openssh(KEYGEN_KEY).unwrap();
        let url = "https://ollama.com/token?nonce=abc&scope=repository%3Alibrary%2Fx%3Apull&service=ollama.com&ts=1";
        let header = id.sign_token_request(url);
        let (public, signature) = header.split_once(':').unwrap();
        assert_eq!(format!("ssh-ed25519 {public}"), id.public_key());
        let signature: [u8; 64] = b64decode(signature).unwrap().try_into().unwrap();
        let message = format!(
            "GET,{url},ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
        );
        id.key
            .verifying_key()
            .verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
            .unwrap();
        assert_eq!(
            b64encode(b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
        );
    }

    #[test]
    fn hostile_key_files_are_errors() {
        for text in
            ["", "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----", &KEYGEN_KEY[..200]]
        {
            assert!(Identity::from_openssh(text).is_err());
        }
        let mut bytes = b64decode(KEYGEN_KEY.trim().strip_prefix(BEGIN).unwrap().strip_suffix(END).unwrap()).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 20);
        let text = format!("{BEGIN}\n{}\n{END}\n", b64encode(&bytes));
        assert!(Identity::from_openssh(&text).is_err());
    }
}
