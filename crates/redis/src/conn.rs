//! The store's own connection to a standalone Redis server: one socket, pipelined and shared by
//! every request (like the driver's multiplexed connection, without its generic machinery).
//!
//! A request is encoded once ([`Command`]), handed to the connection's task over a channel,
//! and answered over a one-shot channel. The task writes every command that is waiting in one
//! `write`, reads whatever replies have arrived in one `read`, and hands them out in order
//! (Redis answers in the order it was asked). A request whose caller gave up (a timeout) keeps
//! its place in that order: its reply is read and dropped, so replies never shift.
//!
//! When the socket fails, every request on it fails with [`ConnError::Lost`] and the next
//! request opens a new socket (one at a time: concurrent callers wait for that one). A caller
//! whose request timed out resets the connection it used, so a server that stops answering
//! without closing the socket is not waited on forever.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::resp::{self, Command, ProtocolError, Reply};

/// Where and how to connect: the parts of a `redis://`, `rediss://` or `redis+unix://` URL.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) addr: Addr,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) connect_timeout: Duration,
}

#[derive(Clone)]
pub(crate) enum Addr {
    Tcp(String, u16),
    Tls {
        host: String,
        port: u16,
        config: Arc<rustls::ClientConfig>,
    },
    Unix(PathBuf),
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Could not connect (refused, unreachable, timed out, TLS failed).
    #[error("cannot connect to Redis")]
    Connect(#[source] std::io::Error),
    /// The connection's hand-shake (`AUTH`, `SELECT`) was refused.
    #[error("Redis refused the connection set-up: {0}")]
    Handshake(String),
    /// The connection broke before the reply arrived; whether the command ran is unknown.
    #[error("connection to Redis lost")]
    Lost(#[source] Option<std::io::Error>),
    /// The server sent something that is not RESP2.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ConnError {
    /// A TLS certificate the client refused: configuration, not an outage.
    pub(crate) fn is_certificate(&self) -> bool {
        matches!(self, Self::Connect(io) if io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()))
    }
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<Reply, ConnError>>,
}

/// The task serving the current socket.
struct Live {
    requests: mpsc::UnboundedSender<Request>,
    task: AbortHandle,
    id: u64,
}

/// One pipelined connection that reopens itself.
pub(crate) struct Connection {
    endpoint: Arc<Endpoint>,
    live: Mutex<Option<Live>>,
    /// Held while a socket is being opened, so only one caller opens it.
    opening: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

impl Connection {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        Self {
            endpoint,
            live: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends `command` and waits for its reply, opening a socket first if there is none.
    /// Never longer than `timeout` (after which the socket used is reset).
    pub(crate) async fn call(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Result<Reply, ConnError>, Elapsed> {
        let mut used = 0;
        let outcome = tokio::time::timeout(timeout, self.call_inner(command, &mut used)).await;
        if outcome.is_err() && used != 0 {
            self.reset(used);
        }
        outcome.map_err(|_| Elapsed)
    }

    async fn call_inner(&self, command: Command, used: &mut u64) -> Result<Reply, ConnError> {
        let (reply, answer) = oneshot::channel();
        let mut request = Request { command, reply };
        for _ in 0..2 {
            match self.send(request) {
                Ok(id) => {
                    *used = id;
                    return answer.await.unwrap_or(Err(ConnError::Lost(None)));
                }
                Err(back) => request = back,
            }
            self.open().await?;
        }
        Err(ConnError::Lost(None))
    }

    /// Queues the request on the current socket; gives it back if there is none.
    fn send(&self, request: Request) -> Result<u64, Request> {
        let live = self.live.lock();
        match live.as_ref() {
            Some(live) => live
                .requests
                .send(request)
                .map(|()| live.id)
                .map_err(|error| error.0),
            None => Err(request),
        }
    }

    /// Opens a socket unless another caller just did.
    async fn open(&self) -> Result<(), ConnError> {
        let _opening = self.opening.lock().await;
        if self
            .live
            .lock()
            .as_ref()
            .is_some_and(|live| !live.requests.is_closed())
        {
            return Ok(());
        }
        let stream = connect(&self.endpoint).await?;
        let (requests, queue) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(stream, queue)).abort_handle();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.live.lock().replace(Live { requests, task, id }) {
            old.task.abort();
        }
        Ok(())
    }

    /// Drops the socket `id` if it is still the current one (its server stopped answering).
    fn reset(&self, id: u64) {
        let mut live = self.live.lock();
        if live.as_ref().is_some_and(|live| live.id == id) {
            if let Some(old) = live.take() {
                old.task.abort();
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(live) = self.live.get_mut().take() {
            live.task.abort();
        }
    }
}

/// The operation timed out.
#[derive(Debug)]
pub(crate) struct Elapsed;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens a socket and runs the hand-shake, within the connect timeout.
async fn connect(endpoint: &Endpoint) -> Result<Box<dyn Stream>, ConnError> {
    let timed_out = || {
        ConnError::Connect(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))
    };
    let mut stream = tokio::time::timeout(endpoint.connect_timeout, open_socket(&endpoint.addr))
        .await
        .map_err(|_| timed_out())?
        .map_err(ConnError::Connect)?;
    tokio::time::timeout(endpoint.connect_timeout, handshake(&mut stream, endpoint))
        .await
        .map_err(|_| timed_out())??;
    Ok(stream)
}

async fn open_socket(addr: &Addr) -> std::io::Result<Box<dyn Stream>> {
    Ok(match addr {
        Addr::Tcp(host, port) => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            Box::new(tcp)
        }
        Addr::Tls { host, port, config } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await?;
            Box::new(tls)
        }
        #[cfg(unix)]
        Addr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        #[cfg(not(unix))]
        Addr::Unix(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "Unix sockets need a Unix system",
            ));
        }
    })
}

/// `AUTH` and `SELECT`, pipelined, each reply checked.
async fn handshake(stream: &mut Box<dyn Stream>, endpoint: &Endpoint) -> Result<(), ConnError> {
    let mut out = Vec::new();
    let mut expected = 0;
    if let Some(password) = &endpoint.password {
        let mut auth = Command::new("AUTH");
        if let Some(user) = &endpoint.username {
            auth.arg(user.as_bytes());
        }
        auth.arg(password.as_bytes());
        out.extend_from_slice(auth.finish());
        expected += 1;
    }
    if endpoint.db != 0 {
        let mut select = Command::new("SELECT");
        select.arg(endpoint.db.to_string().as_bytes());
        out.extend_from_slice(select.finish());
        expected += 1;
    }
    if expected == 0 {
        return Ok(());
    }
    let lost = |e| ConnError::Lost(Some(e));
    stream.write_all(&out).await.map_err(lost)?;
    stream.flush().await.map_err(lost)?;
    let mut input = BytesMut::with_capacity(256);
    while expected > 0 {
        match resp::parse(&input)? {
            Some((reply, used)) => {
                input.advance(used);
                expected -= 1;
                match reply {
                    Reply::Status(_) => {}
                    // The server's words (e.g. "WRONGPASS invalid username-password pair"),
                    // never the password.
                    Reply::Error(message) => return Err(ConnError::Handshake(message)),
                    _ => return Err(ConnError::Handshake("unexpected reply".into())),
                }
            }
            None => {
                if stream.read_buf(&mut input).await.map_err(lost)? == 0 {
                    return Err(ConnError::Lost(None));
                }
            }
        }
    }
    Ok(())
}

/// Serves one socket: writes queued commands, reads replies, answers in order. Ends when the
/// socket fails (failing every request still waiting) or when the connection is dropped and
/// nothing is waiting.
async fn drive(mut stream: Box<dyn Stream>, mut queue: mpsc::UnboundedReceiver<Request>) {
    let mut waiting: VecDeque<oneshot::Sender<Result<Reply, ConnError>>> = VecDeque::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut open = true;
    // Whether a request just woke the task: it then lets the other ready tasks run before
    // writing, so their requests go out in the same write. (Without that, the runtime runs a
    // task it has just woken next, and every request got a system call of its own.)
    let mut woken = false;
    let failure = 'serve: loop {
        if std::mem::take(&mut woken) {
            tokio::task::yield_now().await;
        }
        while let Ok(mut request) = queue.try_recv() {
            out.extend_from_slice(request.command.finish());
            waiting.push_back(request.reply);
        }
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out).await {
                break ConnError::Lost(Some(error));
            }
            if let Err(error) = stream.flush().await {
                break ConnError::Lost(Some(error));
            }
            out.clear();
        }
        if !open && waiting.is_empty() {
            return;
        }
        if input.capacity() - input.len() < 1024 {
            input.reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            read = stream.read_buf(&mut input) => match read {
                Ok(0) => break ConnError::Lost(None),
                Ok(_) => loop {
                    match resp::parse(&input) {
                        Ok(Some((reply, used))) => {
                            input.advance(used);
                            match waiting.pop_front() {
                                // A caller that gave up has dropped its receiver: fine.
                                Some(caller) => drop(caller.send(Ok(reply))),
                                None => break 'serve ProtocolError::unasked().into(),
                            }
                        }
                        Ok(None) => break,
                        Err(error) => break 'serve error.into(),
                    }
                },
                Err(error) => break ConnError::Lost(Some(error)),
            },
            request = queue.recv(), if open => match request {
                Some(mut request) => {
                    out.extend_from_slice(request.command.finish());
                    waiting.push_back(request.reply);
                    woken = true;
                }
                None => open = false,
            },
        }
    };
    tracing::debug!(error = %failure, "Redis connection closed");
    queue.close();
    while let Ok(request) = queue.try_recv() {
        waiting.push_back(request.reply);
    }
    for caller in waiting {
        drop(caller.send(Err(ConnError::Lost(None))));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;

    /// A stand-in Redis on loopback: answers `ECHO x` with `x` (after `delay` for the first
    /// command of a connection) unless told to keep quiet, and counts the connections it got.
    struct Fake {
        port: u16,
        quiet: Arc<AtomicBool>,
        accepted: Arc<AtomicU64>,
    }

    impl Fake {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let quiet = Arc::new(AtomicBool::new(false));
            let accepted = Arc::new(AtomicU64::new(0));
            let (q, a) = (Arc::clone(&quiet), Arc::clone(&accepted));
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    a.fetch_add(1, Ordering::SeqCst);
                    let quiet = Arc::clone(&q);
                    tokio::spawn(async move {
                        let mut input = BytesMut::new();
                        loop {
                            while let Ok(Some((Reply::Array(args), used))) = resp::parse(&input) {
                                input.advance(used);
                                if quiet.load(Ordering::SeqCst) {
                                    continue;
                                }
                                let Some(Reply::Bulk(word)) = args.get(1) else {
                                    continue;
                                };
                                let mut out = format!("${}\r\n", word.len()).into_bytes();
                                out.extend_from_slice(word);
                                out.extend_from_slice(b"\r\n");
                                if socket.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                            match socket.read_buf(&mut input).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                    });
                }
            });
            Self {
                port,
                quiet,
                accepted,
            }
        }

        fn connection(&self) -> Connection {
            Connection::new(Arc::new(Endpoint {
                addr: Addr::Tcp("127.0.0.1".into(), self.port),
                username: None,
                password: None,
                db: 0,
                connect_timeout: Duration::from_secs(2),
            }))
        }
    }

    fn echo(word: &str) -> Command {
        let mut command = Command::new("ECHO");
        command.arg(word.as_bytes());
        command
    }

    const LONG: Duration = Duration::from_secs(5);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_requests_each_get_their_own_reply_over_one_socket() {
        let fake = Fake::start().await;
        let conn = Arc::new(fake.connection());
        let calls = (0..500).map(|i| {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move {
                let word = format!("w{i}");
                let reply = conn.call(echo(&word), LONG).await.unwrap().unwrap();
                assert_eq!(reply, Reply::Bulk(word.into_bytes()));
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_times_out_and_a_new_socket_is_opened() {
        let fake = Fake::start().await;
        let conn = fake.connection();
        assert!(conn.call(echo("a"), LONG).await.unwrap().is_ok());
        fake.quiet.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(
            conn.call(echo("b"), Duration::from_millis(200))
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The silent socket was dropped: the next request opens another one and is answered.
        fake.quiet.store(false, Ordering::SeqCst);
        let reply = conn.call(echo("c"), LONG).await.unwrap().unwrap();
        assert_eq!(reply, Reply::Bulk(b"c".to_vec()));
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_closed_socket_fails_its_requests_and_the_next_one_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // The first connection is closed as soon as a command arrives; later ones answer.
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = first.read(&mut buf).await;
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            let _ = second.read(&mut buf).await;
            second.write_all(b"+PONG\r\n").await.unwrap();
            second
        });
        let conn = Connection::new(Arc::new(Endpoint {
            addr: Addr::Tcp("127.0.0.1".into(), port),
            username: None,
            password: None,
            db: 0,
            connect_timeout: Duration::from_secs(2),
        }));
        let lost = conn.call(Command::new("PING"), LONG).await.unwrap();
        assert!(matches!(lost, Err(ConnError::Lost(_))), "{lost:?}");
        let reply = conn
            .call(Command::new("PING"), LONG)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, Reply::Status("PONG".into()));
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn a_refused_port_is_a_connect_error_at_once() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conn = Connection::new(Arc::new(Endpoint {
            addr: Addr::Tcp("127.0.0.1".into(), port),
            username: None,
            password: Some("secret".into()),
            db: 3,
            connect_timeout: Duration::from_secs(2),
        }));
        let outcome = conn.call(Command::new("PING"), LONG).await.unwrap();
        assert!(matches!(outcome, Err(ConnError::Connect(_))), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_handshake_authenticates_and_selects_and_a_refusal_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut input = BytesMut::new();
            let mut seen = Vec::new();
            while seen.len() < 2 {
                match resp::parse(&input).unwrap() {
                    Some((command, used)) => {
                        input.advance(used);
                        seen.push(command);
                    }
                    None => {
                        socket.read_buf(&mut input).await.unwrap();
                    }
                }
            }
            socket
                .write_all(b"-WRONGPASS invalid username-password pair\r\n+OK\r\n")
                .await
                .unwrap();
            seen
        });
        let conn = Connection::new(Arc::new(Endpoint {
            addr: Addr::Tcp("127.0.0.1".into(), port),
            username: Some("app".into()),
            password: Some("secret".into()),
            db: 3,
            connect_timeout: Duration::from_secs(2),
        }));
        let outcome = conn.call(Command::new("PING"), LONG).await.unwrap();
        let Err(ConnError::Handshake(message)) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(message.starts_with("WRONGPASS"));
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        assert_eq!(
            server.await.unwrap(),
            [
                Reply::Array(vec![bulk("AUTH"), bulk("app"), bulk("secret")]),
                Reply::Array(vec![bulk("SELECT"), bulk("3")]),
            ]
        );
    }
}
