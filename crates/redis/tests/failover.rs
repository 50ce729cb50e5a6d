//! The Redis store through a Redis Cluster failover: a master and its replica, throwaway
//! `redis-server`s this test starts on free 127.0.0.1 ports (plain TCP, no persistence, a 500 ms
//! node timeout), then the replica takes over every slot, and the same store object must go on
//! working: sessions written before load with their data, an update commits, a new session is
//! created, a delete removes. Retried only on `Unavailable` within a bounded window; a session
//! reading as absent, or any other error, fails. Without `redis-server` the tests skip with a
//! message, or fail under `TESSERA_REQUIRE_STORES=1`.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tessera_core::testing::{error_chain, free_port, fresh_record, stores_required};
use tessera_core::{Commit, Error, Record, Session, Sessions, Store, StoreError, Timestamp};
use tessera_redis::{RedisOptions, RedisStore};

/// How long the store may keep answering `Unavailable` after the failover before the test
/// fails.
const RECOVERY: Duration = Duration::from_secs(10);

/// How long the cluster may take to form, replicate or fail over.
const SETTLE: Duration = Duration::from_secs(20);

/// One cluster-enabled `redis-server` in a temporary directory, killed on drop.
struct Node {
    child: Child,
    port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node on free ports and waits until it answers. A port found free can be taken
    /// by someone else before the server binds it, so a server that exits at start, or a port
    /// answered by another process, means trying again with new ports (at most 5 times, 10 s
    /// each). `None` (with a message) when `redis-server` cannot be run and is not required.
    async fn start() -> Option<Self> {
        for _ in 0..5 {
            match Self::try_start().await {
                Ok(node) => return node,
                Err(reason) => {
                    eprintln!("redis-server did not start, trying other ports: {reason}")
                }
            }
        }
        panic!("redis-server did not start in 5 attempts");
    }

    async fn try_start() -> Result<Option<Self>, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = listen_port();
        // Named explicitly: the default (port + 10000) was never checked to be free.
        let bus_port = listen_port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &dir.path().display().to_string()])
            .args(["--logfile", "redis.log"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if stores_required() => {
                panic!(
                    "redis-server is required for the failover tests (TESSERA_REQUIRE_STORES=1): {error}"
                )
            }
            Err(error) => {
                eprintln!("skipping the Redis failover test: cannot run redis-server ({error})");
                return Ok(None);
            }
        };
        let mut node = Self {
            child,
            port,
            bus_port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                let log = std::fs::read_to_string(node.dir.path().join("redis.log"));
                return Err(format!(
                    "exited at start ({status}): {}",
                    log.unwrap_or_default().trim_end()
                ));
            }
            // Once it answers, make sure it is this server, not another that took the port.
            if let Ok(mut conn) = node.try_raw().await {
                if let Ok(info) =
                    command::<String>(&mut conn, redis::cmd("INFO").arg("server")).await
                {
                    let ours = format!("process_id:{}\r", node.child.id());
                    return if info.contains(&ours) {
                        Ok(Some(node))
                    } else {
                        Err(format!("port {port} is answered by another process"))
                    };
                }
            }
            if Instant::now() > deadline {
                return Err(format!("port {port} did not answer within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A raw connection to this node alone, for setting the cluster up and watching it.
    async fn raw(&self) -> MultiplexedConnection {
        self.try_raw()
            .await
            .unwrap_or_else(|e| panic!("connecting to the node on port {}: {e}", self.port))
    }

    async fn try_raw(&self) -> Result<MultiplexedConnection, String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "connecting took over 5 s".to_owned())?
        .map_err(|e| e.to_string())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port for a server, outside the kernel's range of ephemeral ports where it
/// can. `free_port` hands out an ephemeral port (it binds port 0), and once the master is
/// killed its port is free again: anything on the machine asking for a free port the same way
/// (the other test here, a CI run's tests) can be given it and listen there, while the driver
/// is still reconnecting to the dead master's address; an empty server there answers "no such
/// key". Below the ephemeral range, only a process that names the port can take it.
fn listen_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Some(low) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u64>().ok())
        .filter(|low| *low > 2048)
    else {
        return free_port();
    };
    // Candidates in the upper half below the range, starting somewhere that differs between
    // processes and between calls.
    let span = low / 2;
    let seed = u64::from(std::process::id()).wrapping_mul(7919)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| u64::from(t.subsec_nanos()));
    for _ in 0..span {
        let offset = seed.wrapping_add(NEXT.fetch_add(7, Ordering::Relaxed)) % span;
        let port = u16::try_from(low - span + offset).expect("ports fit in u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// One command on a raw connection, bounded to 5 s.
async fn command<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    tokio::time::timeout(Duration::from_secs(5), cmd.query_async(conn))
        .await
        .expect("a raw command took over 5 s")
}

/// Polls `check` every 50 ms until it is true, failing with `what` (and the last state) after
/// `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what} did not happen within {limit:?}; last seen: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cluster_ok(conn: &mut MultiplexedConnection) -> Result<(), String> {
    let info: String = command(conn, redis::cmd("CLUSTER").arg("INFO"))
        .await
        .map_err(|e| e.to_string())?;
    if info.contains("cluster_state:ok") {
        Ok(())
    } else {
        Err(info)
    }
}

async fn replication(conn: &mut MultiplexedConnection) -> Result<String, String> {
    command(conn, redis::cmd("INFO").arg("replication"))
        .await
        .map_err(|e| e.to_string())
}

/// The number after `field` in an `INFO` reply.
fn offset(info: &str, field: &str) -> Option<i64> {
    info.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|n| n.trim().parse().ok())
}

/// A master with every slot and its replica, replicating.
struct Cluster {
    master: Node,
    replica: Node,
}

impl Cluster {
    async fn start() -> Option<Self> {
        let master = Node::start().await?;
        let replica = Node::start().await?;
        let mut a = master.raw().await;
        let mut b = replica.raw().await;
        let _: () = command(
            &mut a,
            redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383),
        )
        .await
        .unwrap();
        let a_id: String = command(&mut a, redis::cmd("CLUSTER").arg("MYID"))
            .await
            .unwrap();
        let _: () = command(
            &mut b,
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(master.port)
                .arg(master.bus_port),
        )
        .await
        .unwrap();
        // REPLICATE refuses a node B has not heard of yet: retry until the handshake is done.
        wait_until("the replica learning the master's ID", SETTLE, || {
            let mut b = b.clone();
            let a_id = a_id.clone();
            async move {
                command::<()>(&mut b, redis::cmd("CLUSTER").arg("REPLICATE").arg(&a_id))
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        wait_until("the cluster forming and replicating", SETTLE, || {
            let (mut a, mut b) = (a.clone(), b.clone());
            async move {
                cluster_ok(&mut a).await?;
                cluster_ok(&mut b).await?;
                let on_b = replication(&mut b).await?;
                if !on_b.contains("master_link_status:up") {
                    return Err(on_b);
                }
                let on_a = replication(&mut a).await?;
                if !on_a.contains("connected_slaves:1") {
                    return Err(on_a);
                }
                Ok(())
            }
        })
        .await;
        Some(Self { master, replica })
    }

    fn url(&self) -> String {
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{}",
            self.master.port, self.replica.port
        )
    }

    /// Blocks until the replica has applied every write made on the master so far: its
    /// replication offset reaches the master's. (`WAIT` would not do: it counts only the
    /// writes of the connection that sends it, and the store's writes came over others.)
    async fn replicated(&self) {
        let mut a = self.master.raw().await;
        let target = offset(&replication(&mut a).await.unwrap(), "master_repl_offset:")
            .expect("the master's replication offset");
        let b = self.replica.raw().await;
        wait_until("the replica applying the writes", SETTLE, || {
            let mut b = b.clone();
            async move {
                let info = replication(&mut b).await?;
                match offset(&info, "slave_repl_offset:") {
                    Some(applied) if applied >= target => Ok(()),
                    _ => Err(format!("master at {target}; replica: {info}")),
                }
            }
        })
        .await;
    }

    /// Waits until the former replica says it is a master and sees the cluster as ok.
    async fn replica_promoted(&self) {
        let b = self.replica.raw().await;
        wait_until("the replica becoming master", SETTLE, || {
            let mut b = b.clone();
            async move {
                let on_b = replication(&mut b).await?;
                if !on_b.contains("role:master") {
                    return Err(on_b);
                }
                cluster_ok(&mut b).await
            }
        })
        .await;
    }
}

/// Runs `operation` until it gives something other than `Unavailable` or `deadline` passes;
/// returns that outcome (an `Unavailable` past the deadline included). Each outage is printed.
async fn past_outages<T, F, Fut>(deadline: Instant, mut operation: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match operation().await {
            Err(error @ StoreError::Unavailable(_)) if Instant::now() < deadline => {
                eprintln!("retrying after an outage: {}", error_chain(&error));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcome => return outcome,
        }
    }
}

/// The same through the engine: retried only on a store outage.
async fn engine_past_outages<T, F, Fut>(deadline: Instant, mut operation: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    loop {
        match operation().await {
            Err(error @ Error::Store(StoreError::Unavailable(_))) if Instant::now() < deadline => {
                eprintln!("retrying after an outage: {}", error_chain(&error));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcome => return outcome,
        }
    }
}

/// `Sessions::commit`, retried only on a store outage (a failed commit leaves the session's
/// pending changes in place).
async fn commit_past_outages(
    sessions: &Sessions,
    session: &mut Session,
    deadline: Instant,
) -> Result<Commit, Error> {
    loop {
        match sessions.commit(session).await {
            Err(error @ Error::Store(StoreError::Unavailable(_))) if Instant::now() < deadline => {
                eprintln!("retrying after an outage: {}", error_chain(&error));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            outcome => return outcome,
        }
    }
}

/// What the test wrote before the failover.
struct Written {
    /// Sessions committed through the engine: token and the cart each holds.
    tokens: Vec<(String, String)>,
    /// Records created through the store directly.
    records: Vec<Record>,
}

async fn write_sessions(sessions: &Sessions, store: &Arc<dyn Store>) -> Written {
    let mut tokens = Vec::new();
    for i in 0..3 {
        let mut session = sessions.start();
        session.login(format!("user-{i}"));
        let cart = format!("cart-{i}");
        session.insert("cart", &cart).unwrap();
        assert_eq!(
            sessions.commit(&mut session).await.unwrap(),
            Commit::Created
        );
        tokens.push((session.issued_token().unwrap().to_owned(), cart));
    }
    let mut records = Vec::new();
    for subject in [Some("alice"), None] {
        let record = fresh_record(subject);
        store.create(&record).await.unwrap();
        records.push(record);
    }
    Written { tokens, records }
}

/// Everything the store must still do after the failover, each retried only on
/// `Unavailable` until `deadline`. Returns when the first load succeeded.
async fn check_after_failover(
    sessions: &Sessions,
    store: &Arc<dyn Store>,
    written: &Written,
    deadline: Instant,
) -> Instant {
    let mut first_success = None;

    // The sessions written before load with their data; none reads as absent.
    for (token, cart) in &written.tokens {
        let loaded = engine_past_outages(deadline, || sessions.load(token))
            .await
            .unwrap_or_else(|e| {
                panic!("loading a session after the failover: {}", error_chain(&e))
            });
        first_success.get_or_insert_with(Instant::now);
        let session = loaded.expect("a session written before the failover read as absent");
        assert_eq!(
            session.get::<String>("cart").unwrap().as_deref(),
            Some(cart.as_str())
        );
    }
    for record in &written.records {
        let loaded = past_outages(deadline, || store.load(&record.key, Timestamp::now()))
            .await
            .unwrap_or_else(|e| panic!("loading a record after the failover: {}", error_chain(&e)));
        assert_eq!(
            loaded.as_ref(),
            Some(record),
            "a record written before the failover read differently"
        );
    }

    // An update commits (through the engine, which reads the new version back).
    let (token, _) = &written.tokens[0];
    let mut session = engine_past_outages(deadline, || sessions.load(token))
        .await
        .unwrap()
        .expect("session present");
    session.insert("cart", "after-failover").unwrap();
    let outcome = commit_past_outages(sessions, &mut session, deadline)
        .await
        .unwrap_or_else(|e| panic!("updating after the failover: {}", error_chain(&e)));
    assert_eq!(outcome, Commit::Updated);
    let reread = engine_past_outages(deadline, || sessions.load(token))
        .await
        .unwrap()
        .expect("the updated session read as absent");
    assert_eq!(
        reread.get::<String>("cart").unwrap().as_deref(),
        Some("after-failover")
    );

    // A store-level compare-and-swap update.
    let mut next = written.records[0].clone();
    assert!(next.data.remove("note"));
    next.version += 1;
    let now = Timestamp::now();
    match past_outages(deadline, || store.update(&next, next.version - 1, now)).await {
        Ok(()) => {}
        // An attempt whose reply was lost may have landed: then the record is already `next`.
        Err(StoreError::Conflict) => {}
        Err(e) => panic!("a store update after the failover: {}", error_chain(&e)),
    }
    let loaded = past_outages(deadline, || store.load(&next.key, Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(loaded.as_ref(), Some(&next));

    // A new session can be created and read back.
    let mut fresh = sessions.start();
    fresh.insert("cart", "new").unwrap();
    let created = commit_past_outages(sessions, &mut fresh, deadline)
        .await
        .unwrap_or_else(|e| panic!("creating a session after the failover: {}", error_chain(&e)));
    assert_eq!(created, Commit::Created);
    let fresh_token = fresh.issued_token().unwrap().to_owned();
    let loaded = engine_past_outages(deadline, || sessions.load(&fresh_token))
        .await
        .unwrap()
        .expect("a session created after the failover read as absent");
    assert_eq!(
        loaded.get::<String>("cart").unwrap().as_deref(),
        Some("new")
    );
    let record = fresh_record(Some("bob"));
    match past_outages(deadline, || store.create(&record)).await {
        Ok(()) => {}
        Err(StoreError::Duplicate) => {}
        Err(e) => panic!("a store create after the failover: {}", error_chain(&e)),
    }
    let loaded = past_outages(deadline, || store.load(&record.key, Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(loaded.as_ref(), Some(&record));

    // A delete removes.
    let gone = &written.records[1];
    past_outages(deadline, || store.delete(&gone.key))
        .await
        .unwrap_or_else(|e| panic!("a delete after the failover: {}", error_chain(&e)));
    let loaded = past_outages(deadline, || store.load(&gone.key, Timestamp::now()))
        .await
        .unwrap();
    assert_eq!(loaded, None, "a deleted record still loads");

    first_success.expect("at least one session was checked")
}

/// Loads one record over and over, from before the failover until `stop`: every answer must be
/// the record or `Unavailable`, never "no session". Returns (loads that succeeded, outages).
fn keep_loading(
    store: Arc<dyn Store>,
    record: &Record,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let key = record.key;
    tokio::spawn(async move {
        let (mut loaded, mut outages) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match store.load(&key, Timestamp::now()).await {
                Ok(Some(record)) => {
                    assert_eq!(record.key, key);
                    loaded += 1;
                }
                Ok(None) => panic!("a live session read as absent during the failover"),
                Err(StoreError::Unavailable(_)) => outages += 1,
                Err(error) => panic!("during the failover: {}", error_chain(&error)),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (loaded, outages)
    })
}

async fn connect(cluster: &Cluster) -> (Sessions, Arc<dyn Store>) {
    let options = RedisOptions::default()
        .key_prefix(tessera_core::testing::unique_namespace("failover"))
        .operation_timeout(Duration::from_secs(1));
    let store = RedisStore::connect_url_with(&cluster.url(), options)
        .await
        .unwrap();
    assert!(store.is_cluster());
    let store: Arc<dyn Store> = Arc::new(store);
    (Sessions::from_arc(store.clone()), store)
}

/// A coordinated failover (`CLUSTER FAILOVER` on the replica, the master still up): the store
/// follows the slots to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_coordinated_failover() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let (sessions, store) = connect(&cluster).await;
    let written = write_sessions(&sessions, &store).await;
    cluster.replicated().await;

    let mut b = cluster.replica.raw().await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = keep_loading(store.clone(), &written.records[0], stop.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let failover_at = Instant::now();
    let _: () = command(&mut b, redis::cmd("CLUSTER").arg("FAILOVER"))
        .await
        .unwrap();
    cluster.replica_promoted().await;
    let promoted = failover_at.elapsed();

    // The old master now follows B, so whatever the store reads from here on comes from B.
    let mut a = cluster.master.raw().await;
    let on_a = replication(&mut a).await.unwrap();
    assert!(on_a.contains("role:slave"), "{on_a}");

    let answered =
        check_after_failover(&sessions, &store, &written, Instant::now() + RECOVERY).await;
    eprintln!(
        "coordinated failover: replica promoted after {promoted:?}, store answering after {:?}",
        answered - failover_at
    );
    stop.store(true, Ordering::Relaxed);
    let (loaded, outages) = reader.await.unwrap();
    eprintln!("concurrent loads: {loaded} answered, {outages} unavailable");
    assert!(loaded > 0);
}

/// The master killed outright, then `CLUSTER FAILOVER TAKEOVER` on the replica: the store
/// stops asking the dead node and follows the slots to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_takeover_after_the_master_dies() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let (sessions, store) = connect(&cluster).await;
    let written = write_sessions(&sessions, &store).await;
    cluster.replicated().await;

    let mut b = cluster.replica.raw().await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = keep_loading(store.clone(), &written.records[0], stop.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let failover_at = Instant::now();
    cluster.master.kill();
    let _: () = command(
        &mut b,
        redis::cmd("CLUSTER").arg("FAILOVER").arg("TAKEOVER"),
    )
    .await
    .unwrap();
    cluster.replica_promoted().await;
    let promoted = failover_at.elapsed();

    let answered =
        check_after_failover(&sessions, &store, &written, Instant::now() + RECOVERY).await;
    eprintln!(
        "takeover: replica promoted after {promoted:?}, store answering after {:?}",
        answered - failover_at
    );
    stop.store(true, Ordering::Relaxed);
    let (loaded, outages) = reader.await.unwrap();
    eprintln!("concurrent loads: {loaded} answered, {outages} unavailable");
    assert!(loaded > 0);
}
