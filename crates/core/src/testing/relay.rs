//! Network faults for store tests: a relay in front of a real server that the test can cut and
//! restore, a port where nothing listens, a server that accepts and never answers, and the
//! checks of how a store meets them.

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::fresh_record;
use crate::error::StoreError;
use crate::store::Store;
use crate::time::Timestamp;

/// A TCP relay on a loopback port in front of a real server, that the test can cut (the server
/// is "down": the port is closed and every relayed connection dropped) and restore on the same
/// port.
///
/// Dropping the relay cuts it.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    upstream: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Starts relaying connections on a free loopback port to `upstream` (`host:port`).
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start(upstream: impl Into<String>) -> Self {
        let mut relay = Self {
            port: 0,
            upstream: upstream.into(),
            tasks: Arc::default(),
        };
        relay.listen().await;
        relay
    }

    /// The loopback port the relay listens on; it stays the same across [`Relay::cut`] and
    /// [`Relay::listen`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Listens (again, after a [`Relay::cut`]) on the relay's port.
    ///
    /// # Panics
    ///
    /// If the port cannot be bound.
    pub async fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the relay port");
        self.port = listener.local_addr().expect("relay address").port();
        let (upstream, tasks) = (self.upstream.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("relay tasks").push(pipe);
            }
        });
        self.tasks.lock().expect("relay tasks").push(accept);
    }

    /// Closes the port and every relayed connection: the server is "down". Waits until the
    /// sockets are really closed, so that the next request cannot slip through.
    pub async fn cut(&self) {
        let tasks: Vec<_> = self.tasks.lock().expect("relay tasks").drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

/// A port on loopback where nothing listens (it was free a moment ago), for "connection
/// refused".
///
/// # Panics
///
/// If no loopback port can be bound.
pub async fn closed_port() -> u16 {
    free_port()
}

/// A loopback port that was free a moment ago, for a server the test starts itself.
///
/// # Panics
///
/// If no loopback port can be bound.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A loopback server that accepts connections and holds them open without a word, for
/// timeouts. It stops when dropped.
#[derive(Debug)]
pub struct SilentServer {
    port: u16,
    task: JoinHandle<()>,
}

impl SilentServer {
    /// Starts one on a free loopback port.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { port, task }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `operation` fails with [`StoreError::Unavailable`], and within `limit`: a store whose server
/// is gone says so, and soon.
///
/// # Panics
///
/// If it succeeds, fails otherwise, or takes `limit` or longer.
pub async fn assert_unavailable_within<T: Debug>(
    limit: Duration,
    operation: impl Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let result = operation.await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(elapsed < limit, "{elapsed:?}");
}

/// An outage and the recovery from it, for a `store` that reaches its server through `relay`
/// (listening): with the relay cut, loads fail with [`StoreError::Unavailable`] within three
/// seconds each and so does `ping`; once the relay listens again on the same port, the store
/// recovers by itself (within 20 tries, 50 ms apart) and serves what it held before. Leaves the
/// relay cut.
///
/// # Panics
///
/// If the store does not behave so.
pub async fn outage_then_recovery(store: &dyn Store, relay: &mut Relay) {
    let record = fresh_record(Some("olga"));
    store.create(&record).await.unwrap();
    let now = Timestamp::now();

    relay.cut().await;
    for _ in 0..3 {
        assert_unavailable_within(Duration::from_secs(3), store.load(&record.key, now)).await;
    }
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));

    // Back on the same port: the store drops its dead connections and opens new ones.
    relay.listen().await;
    let mut recovered = None;
    for _ in 0..20 {
        match store.load(&record.key, now).await {
            Ok(found) => {
                recovered = Some(found);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(recovered, Some(Some(record)));
    store.ping().await.unwrap();
    relay.cut().await;
}
