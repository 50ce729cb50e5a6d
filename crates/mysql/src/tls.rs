//! TLS to the server: MySQL's `ssl-mode` and `ssl-ca` read from the URL and turned into the
//! driver's [`SslOpts`] (rustls with ring).

use std::io;
use std::path::PathBuf;

use mysql_async::SslOpts;

use crate::error::ConfigError;

/// What the URL asks for (`ssl-mode`), with MySQL's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disabled,
    /// TLS, verified, when the server offers it; plain TCP when it does not.
    Preferred,
    /// TLS or no connection; certificate chain and host name verified.
    Required,
    /// TLS or no connection; certificate chain and host name verified.
    VerifyIdentity,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        Ok(match value.to_ascii_uppercase().as_str() {
            "DISABLED" => Self::Disabled,
            "PREFERRED" => Self::Preferred,
            "REQUIRED" => Self::Required,
            // The driver's way of skipping only the name check (`skip_domain_validation`)
            // looks for an error text that rustls 0.23 no longer produces, so it would verify
            // the name anyway: refused rather than named for something it does not do.
            "VERIFY_CA" => return Err(ConfigError::VerifyCaUnsupported),
            "VERIFY_IDENTITY" => Self::VerifyIdentity,
            _ => return Err(ConfigError::InvalidSslMode(value.to_owned())),
        })
    }
}

/// The TLS settings taken out of a URL, and the rest of it for the driver.
#[derive(Debug)]
pub(crate) struct TlsSettings {
    /// `None` when the URL has no `ssl-mode` (the driver's own parameters then apply).
    pub(crate) mode: Option<SslMode>,
    /// `ssl-ca`: a PEM file of CA certificates that replaces the default roots.
    pub(crate) ca: Option<PathBuf>,
    /// The URL without `ssl-mode` and `ssl-ca`.
    pub(crate) rest: String,
}

/// Takes `ssl-mode` and `ssl-ca` (also spelled `ssl_mode`, `ssl_ca`) out of the URL's query
/// string: the driver knows neither.
pub(crate) fn split(url: &str) -> Result<TlsSettings, ConfigError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(TlsSettings {
            mode: None,
            ca: None,
            rest: url.to_owned(),
        });
    };
    let mut mode = None;
    let mut ca = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ssl-mode" | "ssl_mode" => mode = Some(SslMode::parse(&percent_decode(value))?),
            "ssl-ca" | "ssl_ca" => ca = Some(PathBuf::from(percent_decode(value))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(TlsSettings { mode, ca, rest })
}

/// A URL query value with its `%XX` escapes decoded (invalid UTF-8 replaced, never an error:
/// the value is then refused by whatever reads it).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl TlsSettings {
    /// The driver's TLS options for `ssl-mode` (`None` for `DISABLED`), with the CA bundle
    /// read and checked now, so a bad file is a configuration error at connect rather than
    /// a failure on every new connection.
    pub(crate) fn ssl_opts(&self, mode: SslMode) -> Result<Option<SslOpts>, ConfigError> {
        if mode == SslMode::Disabled {
            return Ok(None);
        }
        let mut opts = SslOpts::default();
        if let Some(path) = &self.ca {
            let pem = read_ca(path)?;
            opts = opts
                .with_root_certs(vec![pem.into()])
                .with_disable_built_in_roots(true);
        }
        Ok(Some(opts))
    }
}

/// Reads a PEM bundle and checks that it holds at least one certificate.
fn read_ca(path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |source: io::Error| ConfigError::CaFile {
        path: path.clone(),
        source,
    };
    let pem = std::fs::read(path).map_err(fail)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        found += 1;
    }
    if found == 0 {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate in the file",
        )));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_taken_out() {
        let s = split("mysql://u@h/db?ssl-mode=verify_identity&pool_min=1&ssl-ca=%2Fetc%2Fca.pem")
            .unwrap();
        assert_eq!(s.mode, Some(SslMode::VerifyIdentity));
        assert_eq!(s.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.rest, "mysql://u@h/db?pool_min=1");

        let s = split("mysql://u@h/db?ssl_mode=REQUIRED").unwrap();
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (Some(SslMode::Required), "mysql://u@h/db")
        );

        let s = split("mysql://u@h/db").unwrap();
        assert_eq!(
            (s.mode, s.ca, s.rest.as_str()),
            (None, None, "mysql://u@h/db")
        );
    }

    #[test]
    fn unknown_modes_are_refused() {
        for bad in ["ON", "verify-full", "", "true"] {
            let url = format!("mysql://h/db?ssl-mode={bad}");
            assert!(
                matches!(split(&url), Err(ConfigError::InvalidSslMode(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_mode_verifies_chain_and_name() {
        assert!(matches!(
            split("mysql://h/db?ssl-mode=VERIFY_CA"),
            Err(ConfigError::VerifyCaUnsupported)
        ));
        let s = split("mysql://h/db?ssl-mode=REQUIRED").unwrap();
        for mode in [
            SslMode::Preferred,
            SslMode::Required,
            SslMode::VerifyIdentity,
        ] {
            let opts = s.ssl_opts(mode).unwrap().unwrap();
            assert!(!opts.skip_domain_validation() && !opts.accept_invalid_certs());
        }
        assert!(s.ssl_opts(SslMode::Disabled).unwrap().is_none());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error() {
        let s = split("mysql://h/db?ssl-mode=REQUIRED&ssl-ca=/nonexistent/ca.pem").unwrap();
        assert!(matches!(
            s.ssl_opts(SslMode::Required),
            Err(ConfigError::CaFile { .. })
        ));
        let empty = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "mysql://h/db?ssl-mode=REQUIRED&ssl-ca={}",
            empty.path().display()
        );
        assert!(matches!(
            split(&url).unwrap().ssl_opts(SslMode::Required),
            Err(ConfigError::CaFile { .. })
        ));
    }
}
