//! Ollama's registry identity: an ed25519 key in `~/.ollama/id_ed25519` (OpenSSH format, no
//! passphrase), created at the first `corral serve`, whose public half users register with
//! ollama.com. A registry's token challenge is answered by signing the token request with it.
//!
//! The signed message is `GET,<token URL with query>,<base64 of the hex SHA-256 of an empty body>`;
//! the `Authorization` value is `<base64 public key blob>:<base64 signature>`. An existing key made
//! by Ollama works unchanged, and a key made here works with Ollama.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey, KeypairData};
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{LineEnding, PrivateKey, PublicKey};

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

    /// The public key as one `authorized_keys` line: `ssh-ed25519 AAAA…` (no comment).
    pub fn public_key(&self) -> String {
        self.ssh_public_key().to_openssh().expect("an ed25519 public key always encodes")
    }

    /// The SSH wire encoding of the public key.
    fn public_blob(&self) -> Vec<u8> {
        self.ssh_public_key().to_bytes().expect("an ed25519 public key always encodes")
    }

    fn ssh_public_key(&self) -> PublicKey {
        PublicKey::new(KeyData::Ed25519(Ed25519PublicKey::from(self.key.verifying_key())), "")
    }

    /// The `Authorization` value for a token request to `url`.
    pub fn sign_token_request(&self, url: &str) -> String {
        // base64(hex(sha256(""))): the body hash Ollama signs for a GET.
        const EMPTY_BODY: &str =
            "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ==";
        let message = format!("GET,{url},{EMPTY_BODY}");
        let signature = self.key.sign(message.as_bytes());
        format!("{}:{}", BASE64.encode(self.public_blob()), BASE64.encode(signature.to_bytes()))
    }

    /// Writes the private key (mode 0600) and `<path>.pub` (0644): each into a temp file of its
    /// own beside the target, fsynced, renamed over it, and the directory fsynced, so a crash
    /// never leaves half a key and two writers never share a temp file.
    fn write(&self, path: &Path) -> Result<(), IdentityError> {
        fn io(p: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
            move |source| IdentityError::Io { path: p.to_path_buf(), source }
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let (private, public) = (self.to_openssh(), self.public_key() + "\n");
        for (target, text, mode) in [(path, private.as_str(), 0o600), (&path.with_extension("pub"), &public, 0o644)] {
            // Created 0600 (tempfile's default), so the private key is never readable by others.
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io(dir))?;
            tmp.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(io(tmp.path()))?;
            tmp.write_all(text.as_bytes()).and_then(|()| tmp.as_file().sync_all()).map_err(io(tmp.path()))?;
            tmp.persist(target).map_err(|e| io(target)(e.error))?;
        }
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    /// The unencrypted `openssh-key-v1` encoding, as `ssh-keygen` writes it (70-column lines,
    /// LF, no comment). The text is zeroed when dropped.
    fn to_openssh(&self) -> impl std::ops::Deref<Target = String> {
        let pair = Ed25519Keypair::from(Ed25519PrivateKey::from(&self.key));
        PrivateKey::new(KeypairData::Ed25519(pair), "")
            .and_then(|key| key.to_openssh(LineEnding::LF))
            .expect("an unencrypted ed25519 key always encodes")
    }

    /// Parses an unencrypted OpenSSH ed25519 private key.
    ///
    /// The PEM armor is taken off here, not by `PrivateKey::from_openssh`: ssh-key 0.6 reads only
    /// lines of exactly 70 characters (`ssh-keygen`'s), and Ollama writes its key with Go's
    /// `encoding/pem`, in lines of 64. Like OpenSSH and Go, any line length is accepted.
    fn from_openssh(text: &str) -> Result<Identity, String> {
        let body =
            text.trim().strip_prefix(BEGIN).and_then(|t| t.strip_suffix(END)).ok_or("not an OpenSSH private key")?;
        let bytes = BASE64
            .decode(body.split_ascii_whitespace().collect::<String>())
            .map_err(|_| "not an OpenSSH private key (invalid base64)")?;
        let key = PrivateKey::from_bytes(&bytes).map_err(|e| match e {
            ssh_key::Error::AlgorithmUnknown => "an unsupported kind of key; only ssh-ed25519 is supported".into(),
            e => format!("not a valid OpenSSH private key ({e})"),
        })?;
        if key.is_encrypted() {
            return Err("the key is protected by a passphrase, which Corral cannot use".into());
        }
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| format!("a {} key; only ssh-ed25519 is supported", key.algorithm()))?;
        Ok(Identity { key: SigningKey::from(&pair.private) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made with `ssh-keygen -t ed25519 -N ''`, and its public line.
    const KEYGEN_KEY: &str = include_str!("../tests/data/id_ed25519");
    const KEYGEN_PUB: &str = include_str!("../tests/data/id_ed25519.pub");

    /// The base64 body of a PEM text, decoded.
    fn pem_body(text: &str) -> Vec<u8> {
        let body = text.trim().strip_prefix(BEGIN).unwrap().strip_suffix(END).unwrap();
        BASE64.decode(body.split_whitespace().collect::<String>()).unwrap()
    }

    /// `bytes` as a PEM text with lines of `width` characters.
    fn pem(bytes: &[u8], width: usize) -> String {
        let b64 = BASE64.encode(bytes);
        let lines: Vec<&str> = b64.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("{BEGIN}\n{}\n{END}\n", lines.join("\n"))
    }

    #[test]
    fn reads_keys_made_by_ssh_keygen() {
        let id = Identity::from_openssh(KEYGEN_KEY).unwrap();
        let line = KEYGEN_PUB.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        assert_eq!(id.public_key(), line);
        assert_eq!(line, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnFDCnYlR+RZ8D28Bf4FEx2y8Cqmb1Y9v3BDAgfWuuV");
    }

    /// Ollama writes its key with Go's `ssh.MarshalPrivateKey` and `pem.EncodeToMemory`: 64-column
    /// lines, where `ssh-keygen` writes 70. Keys with CRLF line ends (copied from Windows) load too.
    #[test]
    fn reads_keys_made_by_ollama() {
        let id = Identity::from_openssh(KEYGEN_KEY).unwrap();
        let bytes = pem_body(KEYGEN_KEY);
        for text in [pem(&bytes, 64), pem(&bytes, 64).replace('\n', "\r\n"), pem(&bytes, 76)] {
            assert_eq!(Identity::from_openssh(&text).unwrap().public_key(), id.public_key(), "{text}");
        }
    }

    /// The file Corral writes, byte for byte, for a fixed key: `openssh-key-v1`, no cipher, one
    /// key, an empty comment, padding 1, 2, 3…, 70-column lines, LF, as `ssh-keygen` writes it;
    /// `ssh-keygen -y -f` reads it back. The check integers (random in `ssh-keygen`'s and Go's
    /// files; any value that is the same twice is valid) are ssh-key's, derived from the key.
    #[test]
    fn writes_the_openssh_format() {
        let id = Identity { key: SigningKey::from_bytes(b"corral test key, 32 bytes long!!") };
        let text = id.to_openssh();
        assert_eq!(
            text.as_str(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\n\
             b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
             QyNTUxOQAAACCNDt9PDWEgvxMSEuM70gu9rrtAkcSvvAwUPBo+7aYJ+AAAAIhTGFQBUxhU\n\
             AQAAAAtzc2gtZWQyNTUxOQAAACCNDt9PDWEgvxMSEuM70gu9rrtAkcSvvAwUPBo+7aYJ+A\n\
             AAAEBjb3JyYWwgdGVzdCBrZXksIDMyIGJ5dGVzIGxvbmchIY0O308NYSC/ExIS4zvSC72u\n\
             u0CRxK+8DBQ8Gj7tpgn4AAAAAAECAwQF\n\
             -----END OPENSSH PRIVATE KEY-----\n"
        );
        // What `ssh-keygen -y -f` prints for that file.
        assert_eq!(id.public_key(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII0O308NYSC/ExIS4zvSC72uu0CRxK+8DBQ8Gj7tpgn4");
        let back = Identity::from_openssh(&text).unwrap();
        assert_eq!(back.key.to_bytes(), id.key.to_bytes());
        assert_eq!(back.public_key(), id.public_key());
    }

    #[test]
    fn created_keys_round_trip_with_private_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".ollama/id_ed25519");
        let made = Identity::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pub_mode = fs::metadata(path.with_extension("pub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(pub_mode, 0o644);
        let again = Identity::load_or_create(&path).unwrap();
        assert_eq!(made.key.to_bytes(), again.key.to_bytes());
        assert_eq!(made.public_key(), again.public_key());
        assert_eq!(fs::read_to_string(path.with_extension("pub")).unwrap(), made.public_key() + "\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), made.to_openssh().as_str());
        let listing: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(listing.len(), 2, "no temp file is left: {listing:?}");
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let id = Identity::from_openssh(KEYGEN_KEY).unwrap();
        let url = "https://ollama.com/token?nonce=abc&scope=repository%3Alibrary%2Fx%3Apull&service=ollama.com&ts=1";
        let header = id.sign_token_request(url);
        let (public, signature) = header.split_once(':').unwrap();
        assert_eq!(format!("ssh-ed25519 {public}"), id.public_key());
        let signature: [u8; 64] = BASE64.decode(signature).unwrap().try_into().unwrap();
        let message = format!(
            "GET,{url},ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
        );
        id.key
            .verifying_key()
            .verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
            .unwrap();
        assert_eq!(
            BASE64.encode(b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
        );
    }

    /// `ssh-keygen -t ed25519 -N secret`.
    const ENCRYPTED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBMAUGdXg
mkQKYJJtsrDldNAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIHQ2lnlNAJtE6+nA
nz8EwKRurbDBCAfaU3mAl3uUkAiFAAAAkBbbF6oGIbg6c+S98sPhhGc0Fimnsjpccc5QOQ
8zoxuXuYMt7cDRRO78O+27em1LPZz6EOQ4MpAMVcgr73Caufsw9KIhSJH3jpKyfllI/d/4
fr09t7k+F6y3ZNcl9XE9/+PGUVfdbCqI/kt9lQOkLa/suW0gW2iLpSiVTe5p4TaiG12Iiy
ttfI6nZ+7AQlbm1Q==
-----END OPENSSH PRIVATE KEY-----
";

    /// `ssh-keygen -t ecdsa -b 256 -N ''`.
    const ECDSA_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQSihw0pfP0T+k8IDvf1wbfKXMxU6Wuw
qbQgpdxU/Tn2TjF9/z5dYTy0RCDucTu6MDmTMVEbJRxUyRPpuKqlsbSxAAAAmM+ii4jPoo
uIAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKKHDSl8/RP6TwgO
9/XBt8pczFTpa7CptCCl3FT9OfZOMX3/Pl1hPLREIO5xO7owOZMxURslHFTJE+m4qqWxtL
EAAAAgMJnc1r4DnqI7JGubp94QZRSCffWbCaR3+SpjfZ2I41oAAAAA
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn hostile_key_files_are_errors() {
        for text in
            ["", "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----", &KEYGEN_KEY[..200]]
        {
            assert!(Identity::from_openssh(text).is_err());
        }
        let bytes = pem_body(KEYGEN_KEY);
        let n = bytes.len();
        assert!(Identity::from_openssh(&pem(&bytes[..n - 20], 70)).is_err(), "truncated");
        // The private section of this 242-byte key starts at 98 with the two check integers.
        assert_eq!((n, &bytes[98..102]), (242, &bytes[102..106]));
        let mut checks = bytes.clone();
        checks[102] ^= 1;
        assert!(Identity::from_openssh(&pem(&checks, 70)).is_err(), "check integers differ");
        let mut halves = bytes.clone();
        halves[200] ^= 1; // in the copy of the public key after the seed (193..225)
        assert!(Identity::from_openssh(&pem(&halves, 70)).is_err(), "halves differ");
        let err = Identity::from_openssh(ENCRYPTED_KEY).unwrap_err();
        assert!(err.contains("passphrase"), "{err}");
        let err = Identity::from_openssh(ECDSA_KEY).unwrap_err();
        assert!(err.contains("only ssh-ed25519"), "{err}");
    }
}
