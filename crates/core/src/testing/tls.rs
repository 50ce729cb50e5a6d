//! TLS fixtures for tests against a throwaway server the test starts itself: a private CA and
//! a server certificate it signed, written where the server can read them, and the check that
//! a refused connection says why.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use super::error_chain;
use crate::error::StoreError;

/// A fresh private CA and a server certificate it signed, all PEM. Nothing outside the test
/// trusts the CA, so a client that verifies against the default (public) roots refuses the
/// server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pki {
    /// The CA's certificate, for the client to trust.
    pub ca: String,
    /// The server's certificate.
    pub cert: String,
    /// The server's private key.
    pub key: String,
}

impl Pki {
    /// A new CA, and a certificate for `names` (host names or IP addresses, as subject
    /// alternative names) signed by it. The certificate's common name matches no host, so only
    /// `names` can make it valid for one.
    ///
    /// # Panics
    ///
    /// If a name is not a valid DNS name or IP address, or signing fails.
    pub fn new(names: &[&str]) -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Tessera throwaway test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut leaf = CertificateParams::new(names).expect("server certificate names");
        leaf.distinguished_name
            .push(DnType::CommonName, "tessera-test");
        let key = KeyPair::generate().expect("server key");
        let cert = leaf.signed_by(&key, &*ca).expect("server certificate");
        Self {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate, the server certificate and the server key into `dir` as
    /// `ca.pem`, `server.crt` and `server.key`, readable by their owner only (PostgreSQL
    /// refuses a key that others can read).
    ///
    /// # Panics
    ///
    /// If a file cannot be written.
    pub fn write_to(&self, dir: &Path) {
        for (name, pem) in [
            ("ca.pem", &self.ca),
            ("server.crt", &self.cert),
            ("server.key", &self.key),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, pem)
                .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
            }
        }
    }
}

/// `connecting` (to `url`) fails within 10 s, never hanging, with an error whose chain (see
/// [`error_chain`]) contains `expected`; returns the error for further checks.
///
/// # Panics
///
/// If connecting succeeds, hangs, or fails with an error that does not say `expected`.
pub async fn assert_refused<T: Debug>(
    url: &str,
    connecting: impl Future<Output = Result<T, StoreError>>,
    expected: &str,
) -> StoreError {
    let result = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} hung"));
    let error = result.expect_err(url);
    let text = error_chain(&error);
    assert!(text.contains(expected), "{url}: {text}");
    error
}
