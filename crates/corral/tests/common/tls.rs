//! A certificate authority of a test's own, for the HTTPS tests (issue 31).

use std::path::PathBuf;
use std::time::Duration;

/// A CA of the test's own, and certificates it signs.
pub struct Ca {
    pub dir: tempfile::TempDir,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    pub fn new() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Corral test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Ca { dir, key, cert }
    }

    pub fn pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `names` (host names or IP addresses), written as `<file>.crt`
    /// and `<file>.key`; `expired` makes one that ended yesterday. Returns the two paths and the
    /// certificate's DER.
    pub fn issue(&self, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if expired {
            let day = Duration::from_secs(86_400);
            params.not_before = (std::time::SystemTime::now() - 30 * day).into();
            params.not_after = (std::time::SystemTime::now() - day).into();
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (self.dir.path().join(format!("{file}.crt")), self.dir.path().join(format!("{file}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().to_vec())
    }
}
