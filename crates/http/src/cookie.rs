//! Strict reading of the session cookie, and the `Set-Cookie` values the layer writes.
//!
//! Public so that code outside the tower layer (a forward-auth endpoint, another framework)
//! applies exactly the same rules: every `Cookie` header is read (HTTP/2 may split them), names
//! match byte for byte, two cookies with the session's name are an error (never "first wins"),
//! and an oversized header is refused before it is parsed.
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header::COOKIE};
//! use tessera_http::cookie::{CookieError, find_session_cookie};
//!
//! let mut headers = HeaderMap::new();
//! headers.append(COOKIE, HeaderValue::from_static("theme=dark; __Host-session=abc"));
//! assert_eq!(find_session_cookie(&headers, "__Host-session"), Ok(Some("abc")));
//!
//! headers.append(COOKIE, HeaderValue::from_static("__Host-session=other"));
//! assert_eq!(
//!     find_session_cookie(&headers, "__Host-session"),
//!     Err(CookieError::Duplicate)
//! );
//! ```

use std::ops::Range;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

/// Why the `Cookie` headers of a request were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// The session cookie appears more than once (answer 400): which one the client meant
    /// cannot be known, and picking one is how cookie-tossing attacks work.
    #[error("the session cookie appears more than once")]
    Duplicate,
    /// All `Cookie` headers together are larger than the limit (answer 431).
    #[error("the Cookie header is too large")]
    TooLarge,
}

/// The default limit on all `Cookie` headers of one request together (8 KiB).
pub const DEFAULT_MAX_COOKIE_HEADER_BYTES: usize = 8 * 1024;

/// [`find_session_cookie_limited`] with the default limit of 8 KiB.
///
/// # Errors
///
/// As [`find_session_cookie_limited`].
pub fn find_session_cookie<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, CookieError> {
    find_session_cookie_limited(headers, name, DEFAULT_MAX_COOKIE_HEADER_BYTES)
}

/// Finds the value of the cookie called `name` in every `Cookie` header of `headers`.
///
/// - `Ok(None)`: no such cookie (a look-alike name such as `__HOST-session` does not count).
/// - `Ok(Some(value))`: exactly one, with its raw value (surrounding double quotes are not
///   removed: a session token never has them, so a quoted value simply fails to parse as one).
///   A value that is not valid UTF-8 is returned as `Some("")`, which no engine accepts.
///
/// # Errors
///
/// [`CookieError::TooLarge`] if the headers hold more than `max_bytes` bytes together (checked
/// before any parsing), [`CookieError::Duplicate`] if the name appears twice.
pub fn find_session_cookie_limited<'h>(
    headers: &'h HeaderMap,
    name: &str,
    max_bytes: usize,
) -> Result<Option<&'h str>, CookieError> {
    Ok(locate_session_cookie(headers, name, max_bytes)?
        .map(|(value, range)| std::str::from_utf8(&value.as_bytes()[range]).unwrap_or("")))
}

/// [`find_session_cookie_limited`], answering with the header value that holds the cookie and
/// where in it the cookie's value is, so the layer can keep the token without copying it.
pub(crate) fn locate_session_cookie<'h>(
    headers: &'h HeaderMap,
    name: &str,
    max_bytes: usize,
) -> Result<Option<(&'h HeaderValue, Range<usize>)>, CookieError> {
    let all = headers.get_all(COOKIE);
    let mut values = all.iter();
    if let (Some(value), None) = (values.next(), values.next()) {
        if let Some(range) = sole_cookie(value.as_bytes(), name) {
            if value.len() > max_bytes {
                return Err(CookieError::TooLarge);
            }
            return Ok(Some((value, range)));
        }
    }
    scan_cookies(all, name, max_bytes)
}

/// Where the value is when `bytes` (the one `Cookie` header of a request) holds only the cookie
/// called `name`: what a client that keeps just the session cookie sends on every request. The
/// general scan answers the same for it (checked by a property test); `None` for anything else,
/// which goes through the scan.
fn sole_cookie(bytes: &[u8], name: &str) -> Option<Range<usize>> {
    let name = name.as_bytes();
    let rest = bytes.strip_prefix(name)?.strip_prefix(b"=")?;
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    // A name the scan would split or trim differently (an `=` in it, spaces around it) is
    // left to the scan, as is a second pair.
    if name.first().is_none_or(is_ows)
        || name.last().is_some_and(is_ows)
        || find_byte(name, b'=').is_some()
        || find_byte(rest, b';').is_some()
    {
        return None;
    }
    Some(trim_ows(rest, name.len() + 1))
}

/// [`locate_session_cookie`] for any number of `Cookie` headers with any cookies in them.
fn scan_cookies<'h>(
    all: http::header::GetAll<'h, HeaderValue>,
    name: &str,
    max_bytes: usize,
) -> Result<Option<(&'h HeaderValue, Range<usize>)>, CookieError> {
    // One pass over the headers: each value's size is counted before it is read, so nothing
    // past the limit is parsed, and a size over the limit wins over a duplicate found earlier.
    let mut total = 0usize;
    let mut found = None;
    let mut duplicate = false;
    for value in all {
        total = total.saturating_add(value.len());
        if total > max_bytes {
            return Err(CookieError::TooLarge);
        }
        if duplicate {
            continue;
        }
        let bytes = value.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let end = find_byte(&bytes[start..], b';').map_or(bytes.len(), |i| start + i);
            let pair = trim_ows(&bytes[start..end], start);
            start = end + 1;
            let Some(eq) = bytes[pair.clone()].iter().position(|&b| b == b'=') else {
                continue;
            };
            let name_range = trim_ows(&bytes[pair.start..pair.start + eq], pair.start);
            if &bytes[name_range] != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                duplicate = true;
                break;
            }
            let value_start = pair.start + eq + 1;
            found = Some((value, trim_ows(&bytes[value_start..pair.end], value_start)));
        }
    }
    if duplicate {
        return Err(CookieError::Duplicate);
    }
    Ok(found)
}

/// The position of the first `needle` in `haystack`, eight bytes at a time: the scan for `;`
/// runs over every `Cookie` header of every request that carries one.
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut words = haystack.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        // A zero byte of `x` marks a match. The lowest flagged byte is the first zero byte
        // (a borrow can only flag bytes above a real zero), so the first match is exact.
        let x = word ^ pattern;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(offset + zeros.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = words.remainder();
    rest.iter().position(|&b| b == needle).map(|i| offset + i)
}

/// The range of `bytes` (which starts at `offset` of its header value) without leading and
/// trailing spaces and tabs, in the header value's positions.
fn trim_ows(bytes: &[u8], offset: usize) -> Range<usize> {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    offset + start..offset + end
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    const NAME: &str = "__Host-session";

    #[test]
    fn finds_the_cookie_among_others() {
        let h = headers(&[b"a=1; __Host-session=tok;b=2"]);
        assert_eq!(find_session_cookie_limited(&h, NAME, 8192), Ok(Some("tok")));
        let h = headers(&[b"a=1", b"b=2", b"__Host-session=tok"]);
        assert_eq!(find_session_cookie_limited(&h, NAME, 8192), Ok(Some("tok")));
        let h = headers(&[b"a=1; b"]);
        assert_eq!(find_session_cookie_limited(&h, NAME, 8192), Ok(None));
    }

    #[test]
    fn duplicates_are_errors_across_headers_too() {
        let h = headers(&[b"__Host-session=a; __Host-session=b"]);
        assert_eq!(
            find_session_cookie_limited(&h, NAME, 8192),
            Err(CookieError::Duplicate)
        );
        let h = headers(&[b"__Host-session=a", b"x=1; __Host-session=a"]);
        assert_eq!(
            find_session_cookie_limited(&h, NAME, 8192),
            Err(CookieError::Duplicate)
        );
    }

    #[test]
    fn names_match_byte_for_byte() {
        for other in [
            &b"__HOST-session=a"[..],
            b"__host-session=a",
            b"__Host-Session=a",
            b"__Host-session2=a",
            b"x__Host-session=a",
        ] {
            let h = headers(&[other, b"__Host-session=real"]);
            assert_eq!(
                find_session_cookie_limited(&h, NAME, 8192),
                Ok(Some("real"))
            );
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_parsing() {
        let big = vec![b'a'; 5000];
        let h = headers(&[&big, &big]);
        assert_eq!(
            find_session_cookie_limited(&h, NAME, 8192),
            Err(CookieError::TooLarge)
        );
        assert_eq!(find_session_cookie_limited(&h, NAME, 10_000), Ok(None));
    }

    /// The rules stated plainly (split on `;`, trim spaces and tabs, split at the first `=`,
    /// trim again, compare names byte for byte), to check the scanner against.
    fn reference(values: &[Vec<u8>], name: &str) -> Result<Option<Vec<u8>>, CookieError> {
        let trim = |b: &[u8]| -> Vec<u8> {
            let ows = |c: &u8| *c == b' ' || *c == b'\t';
            let start = b.iter().position(|c| !ows(c)).unwrap_or(b.len());
            let end = b.iter().rposition(|c| !ows(c)).map_or(start, |i| i + 1);
            b[start..end].to_vec()
        };
        let mut found = None;
        for value in values {
            for pair in value.split(|&b| b == b';') {
                let pair = trim(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if trim(&pair[..eq]) != name.as_bytes() {
                    continue;
                }
                if found.is_some() {
                    return Err(CookieError::Duplicate);
                }
                found = Some(trim(&pair[eq + 1..]));
            }
        }
        Ok(found)
    }

    proptest::proptest! {
        #[test]
        fn the_scanner_follows_the_stated_rules(
            values in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(b"ab=; \t_-xs".to_vec()),
                    0..24,
                ),
                1..4,
            ),
        ) {
            let h = headers(&values.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let located = locate_session_cookie(&h, "s", 8192)
                .map(|found| found.map(|(value, range)| value.as_bytes()[range].to_vec()));
            proptest::prop_assert_eq!(located, reference(&values, "s"));
        }
    }

    proptest::proptest! {
        /// A lone `Cookie` header that starts with the name (the fast path's case, and the
        /// near misses it must leave to the scan) is read as the scan and the rules read it,
        /// for names with and without what the scan trims or splits on.
        #[test]
        fn a_sole_cookie_is_read_as_the_scan_reads_it(
            name in proptest::sample::select(vec!["s", "__Host-session", "a b", " s", "s ", "\ts", "s=x", "=", ""]),
            tail in proptest::collection::vec(
                proptest::sample::select(b"ab=; \t_-xs\xff".to_vec()),
                0..24,
            ),
            max_bytes in proptest::sample::select(vec![8192usize, 4]),
        ) {
            let mut value = format!("{name}=").into_bytes();
            value.extend_from_slice(&tail);
            let h = headers(&[&value]);
            let read = |found: Option<(&HeaderValue, Range<usize>)>| {
                found.map(|(value, range)| value.as_bytes()[range].to_vec())
            };
            let located = locate_session_cookie(&h, name, max_bytes).map(read);
            let scanned = scan_cookies(h.get_all(COOKIE), name, max_bytes).map(read);
            proptest::prop_assert_eq!(&located, &scanned);
            if value.len() <= max_bytes {
                proptest::prop_assert_eq!(located, reference(&[value], name));
            }
        }
    }

    #[test]
    fn the_sole_cookie_path_takes_only_plain_single_pairs() {
        let range = |v: &[u8], name| sole_cookie(v, name).map(|r| v[r].to_vec());
        assert_eq!(range(b"s=tok", "s"), Some(b"tok".to_vec()));
        assert_eq!(range(b"s= tok\t", "s"), Some(b"tok".to_vec()));
        assert_eq!(range(b"s=tok; a=1", "s"), None);
        assert_eq!(range(b"s2=tok", "s"), None);
        assert_eq!(range(b" s=tok", "s"), None);
        assert_eq!(range(b"s =tok", "s "), None);
        assert_eq!(range(b"a=b=c", "a=b"), None);
        // Two headers, each a plain pair, are still a duplicate.
        let h = headers(&[b"s=a", b"s=b"]);
        assert_eq!(
            find_session_cookie_limited(&h, "s", 8192),
            Err(CookieError::Duplicate)
        );
        // The size limit holds on the fast path too.
        let h = headers(&[b"s=0123456789"]);
        assert_eq!(
            find_session_cookie_limited(&h, "s", 8),
            Err(CookieError::TooLarge)
        );
    }

    proptest::proptest! {
        #[test]
        fn find_byte_finds_the_first_occurrence(
            haystack in proptest::collection::vec(
                proptest::sample::select(b";;a=\x00\xff\x3a\x3c\xbb".to_vec()),
                0..40,
            ),
        ) {
            proptest::prop_assert_eq!(
                find_byte(&haystack, b';'),
                haystack.iter().position(|&b| b == b';')
            );
        }
    }

    #[test]
    fn an_oversized_request_is_431_even_with_a_duplicate_before_the_limit() {
        let big = vec![b'a'; 9000];
        let h = headers(&[b"__Host-session=a; __Host-session=b", &big]);
        assert_eq!(
            find_session_cookie_limited(&h, NAME, 8192),
            Err(CookieError::TooLarge)
        );
    }

    #[test]
    fn non_utf8_values_are_empty() {
        let h = headers(&[b"__Host-session=\xff\xfe"]);
        assert_eq!(find_session_cookie_limited(&h, NAME, 8192), Ok(Some("")));
    }
}
