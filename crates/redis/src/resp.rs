//! The Redis wire protocol (RESP2), as much of it as the store speaks: commands out, and the
//! five reply types in.
//!
//! Replies are parsed straight from the connection's read buffer into [`Reply`]; a reply not
//! yet complete in the buffer is "not yet", and is parsed again from its start when more bytes
//! arrive (replies here are small: a record, a number, a short list). Anything that is not
//! RESP2 (a bad type byte, a bad length, nesting deeper than the store ever asks for) is a
//! [`ProtocolError`] and the connection is dropped, never a panic.

use std::fmt;

/// How deeply arrays may nest (`SCAN` answers `[cursor, [names]]`, two levels).
const MAX_DEPTH: usize = 4;
/// The longest bulk string or array accepted (Redis's own default `proto-max-bulk-len`).
const MAX_LEN: usize = 512 * 1024 * 1024;

/// One reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`, the commonest reply, held without an allocation.
    Ok,
    /// Any other status line: `+PONG`.
    Status(String),
    /// `-ERR ...`: the server refused the command (the connection is fine).
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$5\r\nhello`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

/// The bytes from the server are not RESP2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(&'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply from Redis: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl ProtocolError {
    /// A reply arrived with no request waiting for it.
    pub(crate) fn unasked() -> Self {
        Self("a reply nobody asked for")
    }
}

/// A command being written: `*N` then each argument as a bulk string. Arguments are appended
/// with [`Command::arg`] and friends; the argument count is patched in by [`Command::finish`].
#[derive(Clone, Debug)]
pub(crate) struct Command {
    /// The encoded arguments, after a fixed gap where the header goes.
    buf: Vec<u8>,
    args: usize,
}

/// Room for `*N\r\n` with N up to 20 digits.
const HEADER_ROOM: usize = 23;

impl Command {
    /// A command named `name` (`"GET"`, `"EVALSHA"`, ...).
    pub(crate) fn new(name: &str) -> Self {
        Self::with_capacity(name, 256)
    }

    /// A command named `name` whose encoding is expected to take about `capacity` bytes (a
    /// session's value is written into it: growing the buffer twice per write showed up in
    /// profiles).
    pub(crate) fn with_capacity(name: &str, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_ROOM + 16));
        buf.resize(HEADER_ROOM, 0);
        let mut command = Self { buf, args: 0 };
        command.arg(name.as_bytes());
        command
    }

    /// Appends one argument as it is.
    pub(crate) fn arg(&mut self, value: &[u8]) -> &mut Self {
        self.buf.push(b'$');
        push_decimal(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
        self.args += 1;
        self
    }

    /// Appends one argument that `write` appends to the buffer it is given (a key name or a
    /// session's value, encoded in place instead of into a buffer of its own and copied).
    pub(crate) fn arg_from(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        // Room for the longest `$N\r\n`; the argument is moved back over what is not used.
        const ROOM: usize = 1 + 20 + 2;
        let start = self.buf.len();
        self.buf.resize(start + ROOM, 0);
        let body = self.buf.len();
        write(&mut self.buf);
        let len = self.buf.len() - body;
        let mut digits = [0u8; 20];
        let digits = decimal(&mut digits, len as u64);
        let head = body - (1 + digits.len() + 2);
        self.buf[head] = b'$';
        self.buf[head + 1..body - 2].copy_from_slice(digits);
        self.buf[body - 2..body].copy_from_slice(b"\r\n");
        self.buf.copy_within(head.., start);
        self.buf.truncate(self.buf.len() - (head - start));
        self.buf.extend_from_slice(b"\r\n");
        self.args += 1;
        self
    }

    /// Appends a number as its decimal digits.
    pub(crate) fn int(&mut self, value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        self.arg(decimal(&mut digits, value))
    }

    /// The arguments so far, for a driver that takes them one by one (the cluster client).
    pub(crate) fn args(&self) -> Args<'_> {
        Args {
            rest: &self.buf[HEADER_ROOM..],
        }
    }

    /// The whole command on the wire.
    pub(crate) fn finish(&mut self) -> &[u8] {
        let mut header = [0u8; HEADER_ROOM];
        header[0] = b'*';
        let mut digits = [0u8; 20];
        let count = decimal(&mut digits, self.args as u64);
        let len = count.len();
        header[1..=len].copy_from_slice(count);
        header[len + 1..len + 3].copy_from_slice(b"\r\n");
        let used = len + 3;
        let start = HEADER_ROOM - used;
        self.buf[start..HEADER_ROOM].copy_from_slice(&header[..used]);
        &self.buf[start..]
    }
}

/// The arguments of a [`Command`], in order.
pub(crate) struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // Written by `Command` itself, so well formed: `$len\r\nbytes\r\n`.
        let rest = self.rest.strip_prefix(b"$")?;
        let end = rest.iter().position(|&b| b == b'\r')?;
        let len: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        let value = rest.get(end + 2..end + 2 + len)?;
        self.rest = &rest[end + 2 + len + 2..];
        Some(value)
    }
}

/// The decimal digits of `value`, written at the end of `out`, two at a time.
pub(crate) fn decimal(out: &mut [u8; 20], mut value: u64) -> &[u8] {
    let mut i = 20;
    while value >= 100 {
        let pair = 2 * (value % 100) as usize;
        value /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if value >= 10 {
        let pair = 2 * value as usize;
        i -= 2;
        out[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        out[i] = b'0' + value as u8;
    }
    &out[i..]
}

/// "00" "01" ... "99".
const PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut n = 0;
    while n < 100 {
        pairs[2 * n] = b'0' + (n / 10) as u8;
        pairs[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    pairs
};

fn push_decimal(buf: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    buf.extend_from_slice(decimal(&mut digits, value));
}

/// Parses the first reply in `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` if it is not
/// all there yet.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(parse_at(buf, &mut at, 0)?.map(|reply| (reply, at)))
}

fn parse_at(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    let Some(line) = line(buf, *at + 1) else {
        return Ok(None);
    };
    let after_line = *at + 1 + line.len() + 2;
    let reply = match kind {
        b'+' if line == b"OK" => Reply::Ok,
        b'+' => Reply::Status(text(line)?),
        b'-' => Reply::Error(text(line)?),
        b':' => Reply::Int(integer(line)?),
        b'$' => match length(line)? {
            None => Reply::Nil,
            Some(len) => {
                let end = after_line + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtocolError("bulk string not followed by CRLF"));
                }
                *at = end + 2;
                return Ok(Some(Reply::Bulk(buf[after_line..end].to_vec())));
            }
        },
        b'*' => match length(line)? {
            None => Reply::Nil,
            Some(_) if depth >= MAX_DEPTH => return Err(ProtocolError("arrays nested too deep")),
            Some(len) => {
                *at = after_line;
                // Every element is at least 3 bytes: never reserve for more than the buffer
                // could hold.
                let mut items = Vec::with_capacity(len.min((buf.len() - *at) / 3));
                for _ in 0..len {
                    match parse_at(buf, at, depth + 1)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                return Ok(Some(Reply::Array(items)));
            }
        },
        _ => return Err(ProtocolError("unknown reply type")),
    };
    *at = after_line;
    Ok(Some(reply))
}

/// The bytes from `start` up to the next CRLF, if the CRLF has arrived.
fn line(buf: &[u8], start: usize) -> Option<&[u8]> {
    let rest = buf.get(start..)?;
    let cr = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(&rest[..cr])
}

fn text(line: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(line.to_vec()).map_err(|_| ProtocolError("status line is not UTF-8"))
}

fn integer(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad integer"))
}

/// A length line: `-1` is "null", anything else must be a length Redis could send.
fn length(line: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match integer(line)? {
        -1 => Ok(None),
        len => usize::try_from(len)
            .ok()
            .filter(|&len| len <= MAX_LEN)
            .map(Some)
            .ok_or(ProtocolError("bad length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut command = Command::new("SET");
        command.arg(b"k").int(1234).arg(b"");
        assert_eq!(
            command.finish(),
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n1234\r\n$0\r\n\r\n"
        );
        let args: Vec<&[u8]> = command.args().collect();
        assert_eq!(args, [&b"SET"[..], b"k", b"1234", b""]);
        let mut big = Command::new("X");
        big.arg(b"abc");
        for _ in 0..11 {
            big.int(0);
        }
        assert!(big.finish().starts_with(b"*13\r\n$1\r\nX\r\n$3\r\nabc\r\n"));
    }

    #[test]
    fn each_reply_type_parses() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Ok),
            (b"+PONG\r\n", Reply::Status("PONG".into())),
            (b"-NOSCRIPT x\r\n", Reply::Error("NOSCRIPT x".into())),
            (b":-3\r\n", Reply::Int(-3)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(b"a\r\n".to_vec())),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new())),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (b"*0\r\n", Reply::Array(Vec::new())),
            (
                b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$-1\r\n",
                Reply::Array(vec![
                    Reply::Bulk(b"0".to_vec()),
                    Reply::Array(vec![Reply::Bulk(b"a".to_vec()), Reply::Nil]),
                ]),
            ),
        ];
        for (wire, reply) in cases {
            assert_eq!(
                parse(wire),
                Ok(Some((reply.clone(), wire.len()))),
                "{wire:?}"
            );
            // Every strict prefix is "not yet", never an error or a wrong reply.
            for cut in 0..wire.len() {
                assert_eq!(parse(&wire[..cut]), Ok(None), "{:?}", &wire[..cut]);
            }
        }
        // Two replies back to back: the first one and its length.
        assert_eq!(parse(b":1\r\n:2\r\n"), Ok(Some((Reply::Int(1), 4))));
    }

    #[test]
    fn garbage_is_an_error() {
        for wire in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcde\r\n",
            b"*-5\r\n",
            b"$99999999999\r\n",
            b"+\xff\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(wire).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn decimal_digits_at_every_width_boundary() {
        let mut buffer = [0u8; 20];
        for value in (0..1000).chain((1..20).flat_map(|p| {
            let power = 10u64.pow(p);
            [power - 1, power, power + 1]
        })) {
            assert_eq!(decimal(&mut buffer, value), value.to_string().as_bytes());
        }
        assert_eq!(
            decimal(&mut buffer, u64::MAX),
            u64::MAX.to_string().as_bytes()
        );
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            Just(Reply::Ok),
            "[a-zA-Z ]{0,12}"
                .prop_filter("+OK is Reply::Ok", |s| s != "OK")
                .prop_map(Reply::Status),
            "[A-Z]{1,8} [a-z ]{0,12}".prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Int),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Reply::Bulk),
            Just(Reply::Nil),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
        })
    }

    fn encode(reply: &Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    encode(item, out);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn what_is_encoded_parses_back_whole_and_never_early(reply in reply(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut wire = Vec::new();
            encode(&reply, &mut wire);
            let whole = wire.len();
            for cut in 0..whole {
                prop_assert_eq!(parse(&wire[..cut]), Ok(None));
            }
            wire.extend_from_slice(&tail);
            prop_assert_eq!(parse(&wire), Ok(Some((reply, whole))));
        }

        #[test]
        fn an_argument_written_in_place_is_encoded_as_one_given_whole(
            before in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
            value in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut given = Command::new("SET");
            let mut in_place = Command::new("SET");
            for arg in &before {
                given.arg(arg);
                in_place.arg(arg);
            }
            given.arg(&value).int(7);
            in_place.arg_from(|buf| buf.extend_from_slice(&value)).int(7);
            prop_assert_eq!(in_place.finish(), given.finish());
        }

        #[test]
        fn decimal_digits_are_the_number_s(value in any::<u64>()) {
            let mut buffer = [0u8; 20];
            let expected = value.to_string();
            prop_assert_eq!(decimal(&mut buffer, value), expected.as_bytes());
        }

        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
