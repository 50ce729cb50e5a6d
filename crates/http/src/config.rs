//! How the layer transports the session and guards it: [`SessionConfig`] and its validation.

use std::sync::Arc;

use http::HeaderName;

pub use cookie::SameSite;

/// The default cookie name: the `__Host-` prefix makes browsers refuse the cookie unless it is
/// `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-session";
/// The cookie name in [`SessionConfig::insecure_dev_mode`] (a `__Host-` cookie needs HTTPS).
pub const DEV_COOKIE_NAME: &str = "session";
/// The form field the synchronizer CSRF token is read from.
pub const CSRF_FORM_FIELD: &str = "csrf_token";
/// The request header the synchronizer CSRF token is read from.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The response header that carries a newly issued token in bearer mode.
pub const DEFAULT_BEARER_RESPONSE_HEADER: &str = "x-session-token";

/// How the session token travels between client and server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A cookie (browsers). CSRF checks apply to unsafe methods.
    Cookie,
    /// `<header>: Bearer <token>` (APIs and mobile apps). No cookie is ever set, no CSRF check
    /// is needed (a browser never attaches the header on its own); a newly issued token is sent
    /// back in `response_header`.
    Bearer {
        /// The request header the token is read from (`authorization` by default).
        header: HeaderName,
        /// The response header a newly issued token is sent in (`x-session-token`).
        response_header: HeaderName,
    },
}

/// Everything the [`SessionLayer`](crate::SessionLayer) can be told: cookie attributes,
/// transport, CSRF origins, limits.
///
/// [`SessionConfig::default`] is the safe production setting: cookie `__Host-session`, `Secure`,
/// `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`, persistent with a `Max-Age` that never
/// reaches past the session's absolute deadline. The configuration is checked when the layer is
/// built ([`SessionLayer::new`](crate::SessionLayer::new)); a cookie that a browser would drop
/// silently is refused there with a [`ConfigError`].
///
/// # Example
///
/// ```
/// use tessera_http::{SameSite, SessionConfig};
///
/// let config = SessionConfig::default()
///     .same_site(SameSite::Strict)
///     .allowed_origins(["https://shop.example"]);
/// assert_eq!(config.get_cookie_name(), "__Host-session");
/// assert!(config.validate().is_ok());
///
/// // A `__Host-` cookie with a Domain is dropped by browsers: refused up front.
/// assert!(SessionConfig::default().domain("example.com").validate().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub(crate) cookie_name: Arc<str>,
    pub(crate) same_site: SameSite,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) path: Arc<str>,
    pub(crate) domain: Option<Arc<str>>,
    pub(crate) persistent: bool,
    pub(crate) insecure_dev_mode: bool,
    pub(crate) transport: Transport,
    pub(crate) allowed_origins: Arc<[Origin]>,
    pub(crate) allow_same_site: bool,
    pub(crate) max_cookie_header_bytes: usize,
    pub(crate) max_form_bytes: usize,
    pub(crate) read_only_commit_failure_is_logged: bool,
    pub(crate) origin_errors: Vec<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            same_site: SameSite::Lax,
            secure: true,
            http_only: true,
            path: "/".into(),
            domain: None,
            persistent: true,
            insecure_dev_mode: false,
            transport: Transport::Cookie,
            allowed_origins: Arc::new([]),
            allow_same_site: false,
            max_cookie_header_bytes: 8 * 1024,
            max_form_bytes: 64 * 1024,
            read_only_commit_failure_is_logged: false,
            origin_errors: Vec::new(),
        }
    }
}

impl SessionConfig {
    /// The default configuration (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cookie name. Names are matched byte for byte: `__HOST-session` is not
    /// `__Host-session`.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into().into();
        self
    }

    /// Sets the cookie's `SameSite` attribute (`Lax` by default).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets the cookie's `Path` (`/` by default; a `__Host-` cookie must keep `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into().into();
        self
    }

    /// Sets the cookie's `Domain` (none by default; a `__Host-` cookie must have none).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into().into());
        self
    }

    /// Sets the `Secure` attribute (on by default; a `__Host-` cookie must keep it). For plain
    /// HTTP during development use [`SessionConfig::insecure_dev_mode`] instead.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Makes the cookie a browser-session cookie (no `Max-Age`: the browser forgets it when it
    /// closes). The server-side deadlines apply either way.
    pub fn browser_session_cookie(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Makes the cookie persistent with a `Max-Age` up to the session's absolute deadline (the
    /// default).
    pub fn persistent_cookie(mut self) -> Self {
        self.persistent = true;
        self
    }

    /// Plain-HTTP development mode: drops the `__Host-` prefix (cookie name `session` unless
    /// another name is set afterwards) and the `Secure` attribute, and logs a warning once
    /// when the layer is built. Never use it in production: the cookie travels in clear text.
    pub fn insecure_dev_mode(mut self) -> Self {
        self.insecure_dev_mode = true;
        self.secure = false;
        if &*self.cookie_name == DEFAULT_COOKIE_NAME {
            self.cookie_name = DEV_COOKIE_NAME.into();
        }
        self
    }

    /// Bearer transport: the token is read from `Authorization: Bearer <token>`, no cookie is
    /// set, and a newly issued token is sent back in the `x-session-token` response header.
    pub fn bearer(self) -> Self {
        self.bearer_header(http::header::AUTHORIZATION)
    }

    /// Bearer transport reading `<header>: Bearer <token>` instead of `Authorization`.
    pub fn bearer_header(mut self, header: HeaderName) -> Self {
        let response_header = match &self.transport {
            Transport::Bearer {
                response_header, ..
            } => response_header.clone(),
            Transport::Cookie => HeaderName::from_static(DEFAULT_BEARER_RESPONSE_HEADER),
        };
        self.transport = Transport::Bearer {
            header,
            response_header,
        };
        self
    }

    /// In bearer mode, the response header that carries a newly issued token.
    pub fn bearer_response_header(mut self, name: HeaderName) -> Self {
        if let Transport::Bearer {
            response_header, ..
        } = &mut self.transport
        {
            *response_header = name;
        }
        self
    }

    /// The origins (`scheme://host[:port]`) whose unsafe requests pass the `Origin` check of
    /// the CSRF defence. Each must be an exact origin; a malformed one is reported by
    /// [`SessionConfig::validate`]. When none are set, the request's own origin (from its
    /// `Host` header, `https` or in dev mode `http`) is the only one allowed.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for origin in origins {
            match Origin::parse(origin.as_ref()) {
                Some(o) => parsed.push(o),
                None => self.origin_errors.push(origin.as_ref().to_owned()),
            }
        }
        self.allowed_origins = parsed.into();
        self
    }

    /// Whether `Sec-Fetch-Site: same-site` (a sibling subdomain) passes the CSRF check. Off by
    /// default: a sibling subdomain is not necessarily trusted.
    pub fn allow_same_site(mut self, allow: bool) -> Self {
        self.allow_same_site = allow;
        self
    }

    /// The most bytes all `Cookie` headers of one request may hold together (8 KiB by
    /// default); a larger request is answered 431 before anything is parsed.
    pub fn max_cookie_header_bytes(mut self, bytes: usize) -> Self {
        self.max_cookie_header_bytes = bytes;
        self
    }

    /// The largest form body the layer buffers to find a `csrf_token` field (64 KiB by
    /// default). Larger forms must send the token in the `X-CSRF-Token` header.
    pub fn max_form_bytes(mut self, bytes: usize) -> Self {
        self.max_form_bytes = bytes;
        self
    }

    /// When the commit of a session that the request only read (nothing to write but the
    /// activity time) fails: `true` logs the error and lets the response through, `false` (the
    /// default) answers 503. A commit with real changes always answers 503 on failure.
    pub fn read_only_commit_failure_is_logged(mut self, logged: bool) -> Self {
        self.read_only_commit_failure_is_logged = logged;
        self
    }

    /// The cookie name in effect.
    pub fn get_cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The transport in effect.
    pub fn get_transport(&self) -> &Transport {
        &self.transport
    }

    /// True in plain-HTTP development mode.
    pub fn is_insecure_dev_mode(&self) -> bool {
        self.insecure_dev_mode
    }

    /// Checks that a browser would accept the cookie this configuration produces.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(origin) = self.origin_errors.first() {
            return Err(ConfigError::InvalidOrigin(origin.clone()));
        }
        if !is_cookie_name(&self.cookie_name) {
            return Err(ConfigError::InvalidCookieName(self.cookie_name.to_string()));
        }
        if !self.path.starts_with('/') || self.path.bytes().any(|b| b == b';' || b < 0x20) {
            return Err(ConfigError::InvalidPath(self.path.to_string()));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNoneWithoutSecure);
        }
        // Browsers compare the prefixes case-sensitively in RFC 6265bis; be strict about any
        // spelling so that a misconfiguration is caught here rather than ignored in production.
        let lower = self.cookie_name.to_ascii_lowercase();
        let host = lower.starts_with("__host-");
        if (host || lower.starts_with("__secure-")) && !self.secure {
            return Err(ConfigError::PrefixWithoutSecure(
                self.cookie_name.to_string(),
            ));
        }
        if host {
            if self.domain.is_some() {
                return Err(ConfigError::HostPrefixWithDomain);
            }
            if &*self.path != "/" {
                return Err(ConfigError::HostPrefixWithPath(self.path.to_string()));
            }
        }
        Ok(())
    }
}

/// A configuration the layer refuses to be built with, because browsers would drop the cookie
/// silently or the setting is not well-formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `__Host-` cookie may not carry a `Domain` attribute.
    #[error("a __Host- cookie must not have a Domain attribute (browsers drop it)")]
    HostPrefixWithDomain,
    /// A `__Host-` cookie must have `Path=/`.
    #[error("a __Host- cookie must have Path=/ (browsers drop it), not {0:?}")]
    HostPrefixWithPath(String),
    /// A `__Host-` or `__Secure-` cookie must be `Secure`.
    #[error(
        "cookie {0:?} has a __Host-/__Secure- prefix but is not Secure (browsers drop it); use insecure_dev_mode() for plain HTTP"
    )]
    PrefixWithoutSecure(String),
    /// `SameSite=None` is only accepted by browsers on `Secure` cookies.
    #[error("SameSite=None requires Secure (browsers drop it)")]
    SameSiteNoneWithoutSecure,
    /// The cookie name is empty or holds a character a cookie name may not hold.
    #[error("{0:?} is not a valid cookie name")]
    InvalidCookieName(String),
    /// The cookie path must start with `/` and hold no `;` or control characters.
    #[error("{0:?} is not a valid cookie path")]
    InvalidPath(String),
    /// An allowed origin is not `scheme://host[:port]`.
    #[error("{0:?} is not an origin (scheme://host[:port])")]
    InvalidOrigin(String),
}

/// RFC 6265 `token`: visible ASCII except separators.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

/// An origin as browsers send it in the `Origin` header: scheme, host and port, compared
/// exactly (the default port of the scheme is made explicit, so `https://a` equals
/// `https://a:443`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: Box<str>,
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`, nothing more (no path, no userinfo, no trailing slash).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        Self::from_parts(scheme, rest, default_port)
    }

    /// The origin a request addressed to `host` (a `Host` header) has under `scheme`.
    pub(crate) fn from_host(scheme: &str, host: &str) -> Option<Self> {
        let default_port = if scheme == "https" { 443 } else { 80 };
        Self::from_parts(scheme, host, default_port)
    }

    fn from_parts(scheme: &str, authority: &str, default_port: u16) -> Option<Self> {
        if authority.is_empty()
            || authority
                .bytes()
                .any(|b| matches!(b, b'/' | b'@' | b'?' | b'#') || !b.is_ascii_graphic())
        {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port: `[::1]`.
            Some((_, tail))
                if authority.ends_with(']') && !tail.is_empty() && tail.contains(']') =>
            {
                (authority, default_port)
            }
            Some((host, port)) => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (host, port.parse().ok()?)
            }
            None => (authority, default_port),
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            scheme: scheme.into(),
            host: host.to_ascii_lowercase().into(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_valid_host_cookie() {
        let config = SessionConfig::default();
        assert_eq!(config.get_cookie_name(), "__Host-session");
        assert!(config.secure && config.http_only && config.persistent);
        assert_eq!(config.same_site, SameSite::Lax);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn host_prefix_rules_are_enforced() {
        assert_eq!(
            SessionConfig::default().domain("example.com").validate(),
            Err(ConfigError::HostPrefixWithDomain)
        );
        assert_eq!(
            SessionConfig::default().path("/app").validate(),
            Err(ConfigError::HostPrefixWithPath("/app".into()))
        );
        assert!(matches!(
            SessionConfig::default().secure(false).validate(),
            Err(ConfigError::PrefixWithoutSecure(_))
        ));
        assert!(matches!(
            SessionConfig::default()
                .cookie_name("__Secure-s")
                .secure(false)
                .validate(),
            Err(ConfigError::PrefixWithoutSecure(_))
        ));
        // Without the prefix, a Domain and a path are fine.
        assert_eq!(
            SessionConfig::default()
                .cookie_name("sid")
                .domain("example.com")
                .path("/app")
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn dev_mode_drops_prefix_and_secure() {
        let config = SessionConfig::default().insecure_dev_mode();
        assert_eq!(config.get_cookie_name(), "session");
        assert!(!config.secure);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_names_and_origins_are_refused() {
        for name in ["", "a b", "a;b", "a=b", "é"] {
            assert!(matches!(
                SessionConfig::default().cookie_name(name).validate(),
                Err(ConfigError::InvalidCookieName(_))
            ));
        }
        for origin in [
            "example.com",
            "ftp://x",
            "https://x/",
            "https://u@x",
            "https://x:",
        ] {
            assert!(
                matches!(
                    SessionConfig::default()
                        .allowed_origins([origin])
                        .validate(),
                    Err(ConfigError::InvalidOrigin(_))
                ),
                "{origin}"
            );
        }
        assert!(matches!(
            SessionConfig::default()
                .cookie_name("sid")
                .same_site(SameSite::None)
                .secure(false)
                .validate(),
            Err(ConfigError::SameSiteNoneWithoutSecure)
        ));
    }

    #[test]
    fn origins_compare_scheme_host_and_port_exactly() {
        let a = Origin::parse("https://shop.example").unwrap();
        assert_eq!(Origin::parse("https://shop.example:443"), Some(a.clone()));
        assert_eq!(Origin::parse("https://SHOP.example"), Some(a.clone()));
        assert_ne!(Origin::parse("http://shop.example"), Some(a.clone()));
        assert_ne!(Origin::parse("https://shop.example:8443"), Some(a.clone()));
        assert_ne!(Origin::parse("https://evil.shop.example"), Some(a));
        assert_eq!(
            Origin::parse("http://[::1]:8080"),
            Origin::from_host("http", "[::1]:8080")
        );
        assert_eq!(
            Origin::parse("http://[::1]"),
            Origin::from_host("http", "[::1]:80")
        );
    }
}
