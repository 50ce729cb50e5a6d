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
//! request opens a new socket (one at a time: concurrent callers wait for that one).
//!
//! Timeouts are the task's: every request carries its deadline, and when the oldest request
//! still waiting passes its deadline, every request on the socket fails with
//! [`ConnError::TimedOut`] and the socket is dropped, so a server that stops answering without
//! closing the socket is never waited on past the timeout. Requests are answered in order and
//! share one timeout, so the oldest has the earliest deadline: one timer per socket, re-armed
//! only when it fires, does what a timer per request did (which cost about as much as the rest
//! of the request's trip through this module).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

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
    /// No reply within the timeout; the socket was dropped.
    #[error("Redis did not answer in time")]
    TimedOut,
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
    /// When the caller stops waiting for the reply.
    deadline: Instant,
}

/// The task serving the current socket.
struct Live {
    requests: mpsc::UnboundedSender<Request>,
    task: AbortHandle,
}

/// One pipelined connection that reopens itself.
pub(crate) struct Connection {
    endpoint: Arc<Endpoint>,
    /// How long a request may wait for its reply (the store's operation timeout).
    timeout: Duration,
    live: Mutex<Option<Live>>,
    /// Held while a socket is being opened, so only one caller opens it.
    opening: tokio::sync::Mutex<()>,
}

impl Connection {
    pub(crate) fn new(endpoint: Arc<Endpoint>, timeout: Duration) -> Self {
        Self {
            endpoint,
            timeout,
            live: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `command` and waits for its reply, opening a socket first if there is none.
    /// Never longer than the connection's timeout (after which the socket is dropped).
    pub(crate) async fn call(&self, command: Command) -> Result<Reply, ConnError> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let mut request = Request {
            command,
            reply,
            deadline,
        };
        for _ in 0..2 {
            match self.send(request) {
                Ok(()) => return answer.await.unwrap_or(Err(ConnError::Lost(None))),
                Err(back) => request = back,
            }
            // Rare (the first request, or the first after a failure): a timer of its own.
            match tokio::time::timeout_at(deadline, self.open()).await {
                Ok(opened) => opened?,
                Err(_) => return Err(ConnError::TimedOut),
            }
        }
        Err(ConnError::Lost(None))
    }

    /// Queues the request on the current socket; gives it back if there is none.
    fn send(&self, request: Request) -> Result<(), Request> {
        let live = self.live.lock();
        match live.as_ref() {
            Some(live) => live.requests.send(request).map_err(|error| error.0),
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
        if let Some(old) = self.live.lock().replace(Live { requests, task }) {
            old.task.abort();
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(live) = self.live.get_mut().take() {
            live.task.abort();
        }
    }
}

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
                    Reply::Ok | Reply::Status(_) => {}
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
/// socket fails or the oldest waiting request passes its deadline (failing every request still
/// waiting), or when the connection is dropped and nothing is waiting.
async fn drive(mut stream: Box<dyn Stream>, mut queue: mpsc::UnboundedReceiver<Request>) {
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut open = true;
    // Whether a request just woke the task: it then lets the other ready tasks run before
    // writing, so their requests go out in the same write. (Without that, the runtime runs a
    // task it has just woken next, and every request got a system call of its own.)
    let mut woken = false;
    // Never later than the oldest waiting request's deadline while armed: set to the deadline
    // of the request that was oldest when it was armed, and re-armed when it fires early.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = false;
    let failure = 'serve: loop {
        if std::mem::take(&mut woken) {
            tokio::task::yield_now().await;
        }
        while let Ok(request) = queue.try_recv() {
            push(&mut out, &mut waiting, request);
        }
        if !armed {
            if let Some(oldest) = waiting.front() {
                timer.as_mut().reset(oldest.deadline);
                armed = true;
            }
        }
        if !out.is_empty() {
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            tokio::pin!(write);
            let written = loop {
                tokio::select! {
                    biased;
                    written = &mut write => break written,
                    () = &mut timer, if armed => {
                        if let Err(error) = check(&waiting, timer.as_mut(), &mut armed) {
                            break 'serve error;
                        }
                    }
                }
            };
            if let Err(error) = written {
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
                                Some(caller) => drop(caller.reply.send(Ok(reply))),
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
                Some(request) => {
                    push(&mut out, &mut waiting, request);
                    woken = true;
                }
                None => open = false,
            },
            () = &mut timer, if armed => {
                if let Err(error) = check(&waiting, timer.as_mut(), &mut armed) {
                    break error;
                }
            }
        }
    };
    tracing::debug!(error = %failure, "Redis connection closed");
    let answer = || match failure {
        ConnError::TimedOut => ConnError::TimedOut,
        _ => ConnError::Lost(None),
    };
    queue.close();
    while let Ok(request) = queue.try_recv() {
        drop(request.reply.send(Err(answer())));
    }
    for caller in waiting {
        drop(caller.reply.send(Err(answer())));
    }
}

/// A request written to the socket, waiting for its reply.
struct Waiting {
    reply: oneshot::Sender<Result<Reply, ConnError>>,
    deadline: Instant,
}

fn push(out: &mut Vec<u8>, waiting: &mut VecDeque<Waiting>, mut request: Request) {
    out.extend_from_slice(request.command.finish());
    waiting.push_back(Waiting {
        reply: request.reply,
        deadline: request.deadline,
    });
}

/// The timer fired: fails if the oldest waiting request is past its deadline; else re-arms the
/// timer for it, or disarms it when nothing waits.
fn check(
    waiting: &VecDeque<Waiting>,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    armed: &mut bool,
) -> Result<(), ConnError> {
    match waiting.front() {
        Some(oldest) if oldest.deadline <= Instant::now() => Err(ConnError::TimedOut),
        Some(oldest) => {
            timer.reset(oldest.deadline);
            Ok(())
        }
        None => {
            *armed = false;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

        fn connection(&self, timeout: Duration) -> Connection {
            local(self.port, timeout)
        }
    }

    /// A connection to `port` on loopback, no password, database 0.
    fn local(port: u16, timeout: Duration) -> Connection {
        Connection::new(
            Arc::new(Endpoint {
                addr: Addr::Tcp("127.0.0.1".into(), port),
                username: None,
                password: None,
                db: 0,
                connect_timeout: Duration::from_secs(2),
            }),
            timeout,
        )
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
        let conn = Arc::new(fake.connection(LONG));
        let calls = (0..500).map(|i| {
            let conn = Arc::clone(&conn);
            tokio::spawn(async move {
                let word = format!("w{i}");
                let reply = conn.call(echo(&word)).await.unwrap();
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
        let conn = fake.connection(Duration::from_millis(200));
        assert!(conn.call(echo("a")).await.is_ok());
        fake.quiet.store(true, Ordering::SeqCst);
        let started = Instant::now();
        // Every request waiting on the silent socket times out, not only the oldest.
        let (b, c) = tokio::join!(conn.call(echo("b")), conn.call(echo("c")));
        assert!(matches!(b, Err(ConnError::TimedOut)), "{b:?}");
        assert!(matches!(c, Err(ConnError::TimedOut)), "{c:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The silent socket was dropped: the next request opens another one and is answered.
        fake.quiet.store(false, Ordering::SeqCst);
        let reply = conn.call(echo("d")).await.unwrap();
        assert_eq!(reply, Reply::Bulk(b"d".to_vec()));
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 2);
    }

    /// The socket's one timer is armed for the oldest request and re-armed when it fires
    /// early: a steady stream of answered requests, each shorter than the timeout but together
    /// far longer, never times out, and a silence after it still does.
    #[tokio::test]
    async fn a_busy_socket_never_times_out_while_it_answers() {
        let fake = Fake::start().await;
        let timeout = Duration::from_millis(400);
        let conn = fake.connection(timeout);
        let started = Instant::now();
        let mut answered = 0;
        while started.elapsed() < 3 * timeout {
            let reply = conn.call(echo("x")).await;
            assert!(reply.is_ok(), "{reply:?} after {answered} answers");
            answered += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fake.quiet.store(true, Ordering::SeqCst);
        assert!(matches!(
            conn.call(echo("y")).await,
            Err(ConnError::TimedOut)
        ));
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 1);
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
        let conn = local(port, LONG);
        let lost = conn.call(Command::new("PING")).await;
        assert!(matches!(lost, Err(ConnError::Lost(_))), "{lost:?}");
        let reply = conn.call(Command::new("PING")).await.unwrap();
        assert_eq!(reply, Reply::Status("PONG".into()));
        drop(server.await.unwrap());
    }

    /// A server that stops reading: the write itself stalls once the socket buffers are full,
    /// and the timeout still ends it.
    #[tokio::test]
    async fn a_write_to_a_server_that_stops_reading_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let conn = local(port, Duration::from_millis(300));
        let mut huge = Command::new("SET");
        huge.arg(b"k").arg(&vec![b'x'; 64 << 20]);
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), conn.call(huge))
            .await
            .expect("the connection's own timeout ends a stalled write");
        assert!(matches!(outcome, Err(ConnError::TimedOut)), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
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
        let conn = Connection::new(
            Arc::new(Endpoint {
                addr: Addr::Tcp("127.0.0.1".into(), port),
                username: None,
                password: Some("secret".into()),
                db: 3,
                connect_timeout: Duration::from_secs(2),
            }),
            LONG,
        );
        let outcome = conn.call(Command::new("PING")).await;
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
        let conn = Connection::new(
            Arc::new(Endpoint {
                addr: Addr::Tcp("127.0.0.1".into(), port),
                username: Some("app".into()),
                password: Some("secret".into()),
                db: 3,
                connect_timeout: Duration::from_secs(2),
            }),
            LONG,
        );
        let outcome = conn.call(Command::new("PING")).await;
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
