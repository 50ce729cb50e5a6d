//! TLS to the server: `sslmode` and `sslrootcert` read from the connection string, and a
//! rustls (ring) connector for tokio-postgres.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::error::ConfigError;

/// What the connection string asks for (`sslmode`), with libpq's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS (also when `sslmode` is absent).
    Disable,
    /// TLS, verified, when the server offers it; plain TCP when it does not.
    Prefer,
    /// TLS or no connection; certificate chain and host name verified.
    Require,
    /// TLS or no connection; certificate chain verified, host name not.
    VerifyCa,
    /// TLS or no connection; certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => return Err(ConfigError::InvalidSslMode(other.to_owned())),
        })
    }
}

/// The TLS settings taken out of a connection string, and the rest of it for tokio-postgres.
#[derive(Debug)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    /// `sslrootcert`: a PEM file of CA certificates that replaces the default roots; `None`
    /// (or `system`) for the webpki roots.
    pub(crate) root_cert: Option<PathBuf>,
    /// The connection string without `sslmode` and `sslrootcert`.
    pub(crate) rest: String,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://...?sslmode=...`) or a
/// key-value string (`host=... sslmode=...`): tokio-postgres knows neither `verify-ca`,
/// `verify-full` nor `sslrootcert`, and the mode decides which connector is used.
pub(crate) fn split(conninfo: &str) -> Result<TlsSettings, ConfigError> {
    let (pairs, rest) =
        if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
            split_url(conninfo)
        } else {
            split_key_values(conninfo)
        };
    let mut mode = SslMode::Disable;
    let mut root_cert = None;
    for (key, value) in pairs {
        if key == "sslmode" {
            mode = SslMode::parse(&value)?;
        } else if value == "system" {
            root_cert = None;
        } else {
            root_cert = Some(PathBuf::from(value));
        }
    }
    Ok(TlsSettings {
        mode,
        root_cert,
        rest,
    })
}

fn is_ours(key: &str) -> bool {
    key == "sslmode" || key == "sslrootcert"
}

/// URL form: the query string's `sslmode` and `sslrootcert` (percent-decoded) and the URL
/// without them.
fn split_url(url: &str) -> (Vec<(String, String)>, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (Vec::new(), url.to_owned());
    };
    let mut ours = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if is_ours(&key) {
            ours.push((key, percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (ours, rest)
}

/// A URL query value with its `%XX` escapes decoded (invalid UTF-8 replaced, never an error:
/// the value is then refused by whatever reads it).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Key-value form (`key=value key='quoted \' value'`), tokenized as libpq does; our keys are
/// taken out and the others are kept verbatim.
fn split_key_values(text: &str) -> (Vec<(String, String)>, String) {
    let mut ours = Vec::new();
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let start = rest;
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        let token = &start[..start.len() - rest.len()];
        if is_ours(key) {
            ours.push((key.to_owned(), value));
        } else {
            kept.push(token);
        }
    }
    (ours, kept.join(" "))
}

impl TlsSettings {
    /// The driver's mode: ours decides whether TLS is tried and whether it may be skipped.
    pub(crate) fn driver_mode(&self) -> DriverSslMode {
        match self.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }

    /// The connector for a mode other than `disable`.
    pub(crate) fn connector(&self) -> Result<RustlsConnect, ConfigError> {
        let roots = match &self.root_cert {
            Some(path) => load_roots(path)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Tls)?;
        let roots = Arc::new(roots);
        let config = if self.mode == SslMode::VerifyCa {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(RustlsConnect(Arc::new(config)))
    }
}

/// Reads a PEM bundle of CA certificates.
fn load_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |source: io::Error| ConfigError::RootCertificates {
        path: path.to_owned(),
        source,
    };
    let pem = std::fs::read(path).map_err(fail)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        roots
            .add(cert)
            .map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    }
    if roots.is_empty() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate in the file",
        )));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted root, the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's [`MakeTlsConnect`] over rustls.
#[derive(Clone)]
pub(crate) struct RustlsConnect(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = RustlsConnectOne;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectOne, io::Error> {
        // An invalid name (tokio-postgres passes "" for a host given only as `hostaddr`) fails
        // at the handshake, which happens only if the server agreed to TLS.
        let name = ServerName::try_from(domain)
            .map(|n| n.to_owned())
            .map_err(|_| format!("{domain:?} is not a host name TLS can verify"));
        Ok(RustlsConnectOne {
            config: self.0.clone(),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub(crate) struct RustlsConnectOne {
    config: Arc<ClientConfig>,
    name: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for RustlsConnectOne
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self
                .name
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            Ok(TlsStream(stream))
        })
    }
}

/// A TLS connection to the server.
pub(crate) struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    /// No `tls-server-end-point` binding: SCRAM authentication runs without channel binding
    /// (`channel_binding=require` is refused by the driver).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_taken_out() {
        let s = split("postgres://u@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem")
            .unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(s.rest, "postgres://u@h:5432/db?application_name=x");

        let s = split("postgresql://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (SslMode::Require, "postgresql://u@h/db")
        );

        let s = split("postgres://u@h/db?sslrootcert=system&sslmode=verify-ca").unwrap();
        assert_eq!((s.mode, s.root_cert), (SslMode::VerifyCa, None));
    }

    #[test]
    fn no_sslmode_means_no_tls() {
        let s = split("postgres://u@h/db").unwrap();
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (SslMode::Disable, "postgres://u@h/db")
        );
        assert_eq!(s.driver_mode(), DriverSslMode::Disable);
    }

    #[test]
    fn key_value_parameters_are_taken_out() {
        let s =
            split("host=db sslmode = 'verify-full' sslrootcert='/a b/c\\'s.pem' user=app").unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/a b/c's.pem")));
        assert_eq!(s.rest, "host=db user=app");
        let parsed: tokio_postgres::Config = s.rest.parse().unwrap();
        assert_eq!(parsed.get_user(), Some("app"));
    }

    #[test]
    fn unknown_modes_are_refused() {
        for bad in ["allow", "REQUIRE", "verify_full", ""] {
            let url = format!("postgres://h/db?sslmode={bad}");
            assert!(
                matches!(split(&url), Err(ConfigError::InvalidSslMode(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_mode_that_requires_tls_maps_to_the_drivers_require() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let s = split(&format!("postgres://h/db?sslmode={mode}")).unwrap();
            assert_eq!(s.driver_mode(), DriverSslMode::Require, "{mode}");
        }
        let s = split("postgres://h/db?sslmode=prefer").unwrap();
        assert_eq!(s.driver_mode(), DriverSslMode::Prefer);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error() {
        let s =
            split("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap();
        assert!(matches!(
            s.connector(),
            Err(ConfigError::RootCertificates { .. })
        ));
        let empty = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "postgres://h/db?sslmode=verify-full&sslrootcert={}",
            empty.path().display()
        );
        assert!(matches!(
            split(&url).unwrap().connector(),
            Err(ConfigError::RootCertificates { .. })
        ));
    }
}
