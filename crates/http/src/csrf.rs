//! CSRF defence for cookie sessions: Fetch Metadata, then `Origin`, then a masked synchronizer
//! token compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, Method, header};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{CSRF_HEADER, Origin, SessionConfig, Transport};

/// Why a request failed the CSRF check (answered 403 with this as the short reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfFailure {
    /// `Sec-Fetch-Site: cross-site`.
    #[error("cross-site request")]
    CrossSite,
    /// `Sec-Fetch-Site: same-site` without [`SessionConfig::allow_same_site`].
    #[error("same-site request from another origin")]
    SameSite,
    /// `Origin: null` (sandboxed frames, some redirects, `file:` pages).
    #[error("opaque origin")]
    NullOrigin,
    /// An `Origin` that is not one of the allowed origins.
    #[error("origin not allowed")]
    OriginMismatch,
    /// No Fetch Metadata, no `Origin` and no token.
    #[error("missing CSRF token")]
    MissingToken,
    /// A token that does not belong to this session (another session's, a pre-login one, or
    /// garbage).
    #[error("invalid CSRF token")]
    BadToken,
}

/// What the layer learned about a request before the handler ran. Enforced when the handler
/// first uses the session: a request that never touches the session cannot ride on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Safe method, bearer transport, or a request without a session cookie and without any
    /// browser signal: nothing to check.
    NotChecked,
    /// Fetch Metadata or `Origin` vouched for the request.
    Passed,
    /// Fetch Metadata or `Origin` condemned it.
    Failed(CsrfFailure),
    /// Only a synchronizer token can decide; it needs the session's secret, so it is checked
    /// after the session is loaded. `None`: no token was sent.
    NeedsToken(Option<Box<str>>),
}

/// True for the methods a browser may send cross-site without a preflight, and that change
/// state: everything but GET, HEAD, OPTIONS and TRACE.
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The checks that need no session: Fetch Metadata first, `Origin` next, then a token header.
/// `cookie_present`: the request carries a session cookie (ambient credentials).
pub(crate) fn evaluate(parts: &Parts, config: &SessionConfig, cookie_present: bool) -> Verdict {
    if !is_unsafe(&parts.method) || !matches!(config.transport, Transport::Cookie) {
        return Verdict::NotChecked;
    }
    let headers = &parts.headers;
    if let Some(site) = single(headers, "sec-fetch-site") {
        match site {
            b"same-origin" | b"none" => return Verdict::Passed,
            b"cross-site" => return Verdict::Failed(CsrfFailure::CrossSite),
            b"same-site" if config.allow_same_site => return Verdict::Passed,
            b"same-site" => return Verdict::Failed(CsrfFailure::SameSite),
            // An unknown value (a future spec, a broken proxy): fall back to the next check.
            _ => {}
        }
    }
    if let Some(origin) = single(headers, header::ORIGIN.as_str()) {
        if origin == b"null" {
            return Verdict::Failed(CsrfFailure::NullOrigin);
        }
        let origin = std::str::from_utf8(origin).ok().and_then(Origin::parse);
        return match origin {
            Some(origin) if origin_allowed(&origin, parts, config) => Verdict::Passed,
            _ => Verdict::Failed(CsrfFailure::OriginMismatch),
        };
    }
    let token = single(headers, CSRF_HEADER)
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(Box::from);
    if token.is_none() && !cookie_present {
        // No ambient credential and no browser signal at all: not a browser-forged request
        // riding on a session (every current browser sends `Origin` on unsafe requests).
        return Verdict::NotChecked;
    }
    Verdict::NeedsToken(token)
}

fn origin_allowed(origin: &Origin, parts: &Parts, config: &SessionConfig) -> bool {
    if !config.allowed_origins.is_empty() {
        return config.allowed_origins.contains(origin);
    }
    let scheme = if config.insecure_dev_mode {
        "http"
    } else {
        "https"
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    host.and_then(|h| Origin::from_host(scheme, h))
        .is_some_and(|own| own == *origin)
}

/// The value of a header that must appear at most once; a repeated header counts as absent
/// only if all copies are equal, otherwise as a value no check accepts.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.any(|v| v != first) {
        return Some(b"\0conflicting");
    }
    Some(first.as_bytes())
}

const TOKEN_CONTEXT: &[u8] = b"tessera csrf token v1";
const RAW_LEN: usize = 32;

/// The unmasked token of a session: HMAC-SHA256 of a fixed context under the session's CSRF
/// secret. Deriving it (rather than sending the secret) keeps the secret itself out of pages.
fn raw_token(secret: &[u8; 32]) -> [u8; RAW_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(TOKEN_CONTEXT);
    mac.finalize().into_bytes().into()
}

/// A fresh masked token for the session with `secret`: 32 random bytes, then the token XOR
/// those bytes, in base64url. Each call gives a different string, so a page that reflects
/// attacker input next to the token leaks nothing through compression (BREACH).
pub(crate) fn mask(secret: &[u8; 32]) -> String {
    let raw = raw_token(secret);
    let mut out = [0u8; 2 * RAW_LEN];
    getrandom::fill(&mut out[..RAW_LEN]).expect("the OS random number generator failed");
    for i in 0..RAW_LEN {
        out[RAW_LEN + i] = raw[i] ^ out[i];
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// Whether `token` is a masked token of the session with `secret` (constant-time compare).
pub(crate) fn verify(secret: &[u8; 32], token: &str) -> bool {
    let mut bytes = [0u8; 2 * RAW_LEN];
    if token.len() != 86 || URL_SAFE_NO_PAD.decode_slice(token, &mut bytes) != Ok(2 * RAW_LEN) {
        return false;
    }
    let mut unmasked = [0u8; RAW_LEN];
    for i in 0..RAW_LEN {
        unmasked[i] = bytes[RAW_LEN + i] ^ bytes[i];
    }
    unmasked.ct_eq(&raw_token(secret)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn masked_tokens_differ_and_verify() {
        let secret = [3u8; 32];
        let a = mask(&secret);
        let b = mask(&secret);
        assert_ne!(a, b);
        assert!(verify(&secret, &a) && verify(&secret, &b));
        assert!(!verify(&[4u8; 32], &a));
        assert!(!verify(&secret, &a[..85]));
        assert!(!verify(&secret, ""));
        assert!(!verify(&secret, &format!("{a}=")));
    }

    #[test]
    fn fetch_metadata_then_origin_then_token() {
        let c = SessionConfig::default();
        let v = |m, h: &[(&str, &str)]| evaluate(&parts(m, h), &c, true);
        assert_eq!(
            v(Method::GET, &[("sec-fetch-site", "cross-site")]),
            Verdict::NotChecked
        );
        assert_eq!(
            v(Method::POST, &[("sec-fetch-site", "same-origin")]),
            Verdict::Passed
        );
        assert_eq!(
            v(Method::DELETE, &[("sec-fetch-site", "none")]),
            Verdict::Passed
        );
        assert_eq!(
            v(
                Method::PUT,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://a.example"),
                    ("host", "a.example")
                ]
            ),
            Verdict::Failed(CsrfFailure::CrossSite)
        );
        assert_eq!(
            v(Method::PATCH, &[("sec-fetch-site", "same-site")]),
            Verdict::Failed(CsrfFailure::SameSite)
        );
        assert_eq!(
            v(
                Method::POST,
                &[("origin", "https://a.example"), ("host", "a.example")]
            ),
            Verdict::Passed
        );
        assert_eq!(
            v(
                Method::POST,
                &[("origin", "http://a.example"), ("host", "a.example")]
            ),
            Verdict::Failed(CsrfFailure::OriginMismatch)
        );
        assert_eq!(
            v(Method::POST, &[("origin", "null")]),
            Verdict::Failed(CsrfFailure::NullOrigin)
        );
        assert_eq!(v(Method::POST, &[]), Verdict::NeedsToken(None));
        assert_eq!(
            v(Method::POST, &[("x-csrf-token", "t")]),
            Verdict::NeedsToken(Some("t".into()))
        );
        assert_eq!(
            evaluate(&parts(Method::POST, &[]), &c, false),
            Verdict::NotChecked
        );
        let bearer = SessionConfig::default().bearer();
        assert_eq!(
            evaluate(
                &parts(Method::POST, &[("sec-fetch-site", "cross-site")]),
                &bearer,
                true
            ),
            Verdict::NotChecked
        );
    }

    #[test]
    fn configured_origins_and_same_site() {
        let c = SessionConfig::default()
            .allowed_origins(["https://shop.example", "https://admin.example:8443"])
            .allow_same_site(true);
        let v = |h: &[(&str, &str)]| evaluate(&parts(Method::POST, h), &c, true);
        assert_eq!(v(&[("sec-fetch-site", "same-site")]), Verdict::Passed);
        assert_eq!(v(&[("origin", "https://shop.example")]), Verdict::Passed);
        assert_eq!(
            v(&[("origin", "https://admin.example:8443")]),
            Verdict::Passed
        );
        assert_eq!(
            v(&[("origin", "https://admin.example")]),
            Verdict::Failed(CsrfFailure::OriginMismatch)
        );
        assert_eq!(
            v(&[
                ("origin", "https://shop.example"),
                ("origin", "https://evil.example")
            ]),
            Verdict::Failed(CsrfFailure::OriginMismatch)
        );
    }
}
