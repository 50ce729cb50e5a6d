//! The subset of Memcached's text protocol this store needs: `gets`, `add`, `cas`, `delete`
//! and `version`, over one TCP connection.
//!
//! A connection is used by one request at a time (the pool hands it out). Any error, and any
//! cancellation (a timeout drops the future), drops the connection with it, so a half-read reply
//! can never be mistaken for the next command's.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use crate::error::MemcachedError;

/// The longest reply line this client accepts (a `VALUE` header is well under 400 bytes).
const MAX_LINE: usize = 1024;
/// The largest value it accepts (Memcached's own limit is 1 MiB by default).
const MAX_VALUE: usize = 16 * 1024 * 1024;

/// One value read by `gets`, with its CAS token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) data: Vec<u8>,
    pub(crate) cas: u64,
}

/// What a storage command answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoreReply {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`: `add` found the key present.
    NotStored,
    /// `EXISTS`: `cas` found the item changed since `gets`.
    Exists,
    /// `NOT_FOUND`: `cas` found no item.
    NotFound,
}

/// Which storage command.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Verb {
    /// Store only if absent.
    Add,
    /// Store only if unchanged since the `gets` that returned this token.
    Cas(u64),
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Command<'a> {
    /// `gets KEY`.
    Gets(&'a str),
    /// `add` or `cas`: key, absolute expiry, value.
    Store(Verb, &'a str, i64, &'a [u8]),
    /// `delete KEY`.
    Delete(&'a str),
    /// `version`.
    Version,
}

impl Command<'_> {
    /// Whether sending it twice means the same as sending it once, so it may be retried on a
    /// fresh connection when a pooled one turns out to be dead.
    pub(crate) fn idempotent(&self) -> bool {
        !matches!(self, Self::Store(..))
    }
}

/// What a [`Command`] answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// From `gets`.
    Item(Option<Item>),
    /// From `add` / `cas`.
    Stored(StoreReply),
    /// From `delete` (whether or not there was something to delete).
    Deleted,
    /// From `version`.
    Version,
}

/// One open connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: BufStream<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(addr: &str) -> Result<Self, MemcachedError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufStream::new(stream),
            line: Vec::with_capacity(128),
        })
    }

    /// Sends one command and reads its whole reply.
    pub(crate) async fn exec(&mut self, command: Command<'_>) -> Result<Reply, MemcachedError> {
        Ok(match command {
            Command::Gets(key) => Reply::Item(self.gets(key).await?),
            Command::Store(verb, key, exptime, data) => {
                Reply::Stored(self.store(verb, key, exptime, data).await?)
            }
            Command::Delete(key) => {
                self.delete(key).await?;
                Reply::Deleted
            }
            Command::Version => {
                self.version().await?;
                Reply::Version
            }
        })
    }

    /// `gets KEY`: the value and its CAS token, or `None` on a miss.
    async fn gets(&mut self, key: &str) -> Result<Option<Item>, MemcachedError> {
        self.send(&[b"gets ", key.as_bytes(), b"\r\n"]).await?;
        self.read_line().await?;
        if self.line == b"END" {
            return Ok(None);
        }
        let (len, cas) = parse_value_header(&self.line, key)?;
        let mut data = vec![0u8; len + 2];
        self.stream.read_exact(&mut data).await?;
        if !data.ends_with(b"\r\n") {
            return Err(MemcachedError::Protocol("value not followed by CRLF"));
        }
        data.truncate(len);
        self.read_line().await?;
        if self.line != b"END" {
            return Err(MemcachedError::Protocol("expected END after one value"));
        }
        Ok(Some(Item { data, cas }))
    }

    /// `add` or `cas` with the given expiry (absolute Unix seconds, or negative for "already
    /// expired").
    async fn store(
        &mut self,
        verb: Verb,
        key: &str,
        exptime: i64,
        data: &[u8],
    ) -> Result<StoreReply, MemcachedError> {
        let header = match verb {
            Verb::Add => format!("add {key} 0 {exptime} {}\r\n", data.len()),
            Verb::Cas(token) => format!("cas {key} 0 {exptime} {} {token}\r\n", data.len()),
        };
        self.send(&[header.as_bytes(), data, b"\r\n"]).await?;
        self.read_line().await?;
        match self.line.as_slice() {
            b"STORED" => Ok(StoreReply::Stored),
            b"NOT_STORED" => Ok(StoreReply::NotStored),
            b"EXISTS" => Ok(StoreReply::Exists),
            b"NOT_FOUND" => Ok(StoreReply::NotFound),
            _ => Err(self.unexpected()),
        }
    }

    /// `delete KEY`: true if something was deleted.
    async fn delete(&mut self, key: &str) -> Result<bool, MemcachedError> {
        self.send(&[b"delete ", key.as_bytes(), b"\r\n"]).await?;
        self.read_line().await?;
        match self.line.as_slice() {
            b"DELETED" => Ok(true),
            b"NOT_FOUND" => Ok(false),
            _ => Err(self.unexpected()),
        }
    }

    /// `version`: the server's version string.
    async fn version(&mut self) -> Result<String, MemcachedError> {
        self.send(&[b"version\r\n"]).await?;
        self.read_line().await?;
        match self.line.strip_prefix(b"VERSION ") {
            Some(v) => Ok(String::from_utf8_lossy(v).into_owned()),
            None => Err(self.unexpected()),
        }
    }

    async fn send(&mut self, parts: &[&[u8]]) -> Result<(), MemcachedError> {
        for part in parts {
            self.stream.write_all(part).await?;
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one reply line into `self.line`, without its CRLF.
    async fn read_line(&mut self) -> Result<(), MemcachedError> {
        self.line.clear();
        let n = (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut self.line)
            .await?;
        if n == 0 {
            return Err(MemcachedError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(MemcachedError::Protocol(
                "reply line too long or not CRLF-terminated",
            ));
        }
        self.line.truncate(self.line.len() - 2);
        Ok(())
    }

    fn unexpected(&self) -> MemcachedError {
        let line = String::from_utf8_lossy(&self.line);
        if line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR") {
            MemcachedError::Server(line.chars().take(200).collect())
        } else {
            MemcachedError::Protocol("unexpected reply")
        }
    }
}

/// Parses `VALUE <key> <flags> <bytes> <cas>`; the key must be the one asked for.
fn parse_value_header(line: &[u8], key: &str) -> Result<(usize, u64), MemcachedError> {
    let text =
        std::str::from_utf8(line).map_err(|_| MemcachedError::Protocol("non-UTF-8 reply"))?;
    if text.starts_with("SERVER_ERROR") || text.starts_with("CLIENT_ERROR") || text == "ERROR" {
        return Err(MemcachedError::Server(text.chars().take(200).collect()));
    }
    let mut parts = text.split(' ');
    let malformed = MemcachedError::Protocol("malformed VALUE line");
    if parts.next() != Some("VALUE") || parts.next() != Some(key) {
        return Err(malformed);
    }
    let _flags: u32 = parts
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or(MemcachedError::Protocol("malformed VALUE line"))?;
    let len: usize = parts
        .next()
        .and_then(|b| b.parse().ok())
        .ok_or(MemcachedError::Protocol("malformed VALUE line"))?;
    let cas: u64 = parts.next().and_then(|c| c.parse().ok()).ok_or(malformed)?;
    if parts.next().is_some() {
        return Err(MemcachedError::Protocol("malformed VALUE line"));
    }
    if len > MAX_VALUE {
        return Err(MemcachedError::Protocol("value larger than 16 MiB"));
    }
    Ok((len, cas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_headers_parse_strictly() {
        assert_eq!(parse_value_header(b"VALUE k 0 5 42", "k").unwrap(), (5, 42));
        for bad in [
            &b"VALUE other 0 5 42"[..],
            b"VALUE k 0 5",
            b"VALUE k 0 x 42",
            b"VALUE k 0 5 42 extra",
            b"VALUES k 0 5 42",
            b"VALUE k 0 99999999999 1",
        ] {
            assert!(parse_value_header(bad, "k").is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_value_header(b"SERVER_ERROR out of memory", "k"),
            Err(MemcachedError::Server(_))
        ));
    }
}
