//! Harness for the end-to-end tests: a real server over a real socket.
//!
//! [`TestServer::start`] opens a `RedbLog` in a data folder the test owns (a `tempfile`
//! folder), recovers an [`Engine`] from it with a [`ManualClock`], serves it with
//! `inv_api::serve` on `127.0.0.1:0`, and connects a generated client. The test controls time
//! through the clock (no real TTL is ever slept through) and shutdown through
//! [`TestServer::begin_shutdown`] / [`TestServer::join`], the injected-shutdown pattern of
//! mini-redis' `start_server` and tonic's own integration tests. `join` also drops the
//! server's engine, which closes the log, so a second server can open the same folder.
//!
//! [`ControlledLog`] wraps a `MemLog` with switches for the cases a real disk will not produce
//! on demand: durability held back (calls in flight at shutdown), a full write queue, and a
//! failed write.
//!
//! Every test runs under [`bounded`], so a hang fails in seconds instead of stalling CI.
//!
//! With authentication: [`TestServer::start_authenticated`] serves with a principals file the
//! test writes, and [`authed_client`] sends a bearer token on every call.

use anyhow::{Context, Result, bail};
use inv_api::{ReconcileConfig, ServeError, ServeOptions, ServerConfig};
use inv_engine::reconcile::RedbSnapshotStore;
use inv_engine::{
    DurableListener, Engine, Event, EventLog, LedgerConfig, LogError, Lsn, ManualClock, MemLog,
    RedbLog, RedbLogOptions,
};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

pub use inv_proto::v1 as pb;

/// The generated client, over one HTTP/2 connection.
pub type Client = pb::inventory_client::InventoryClient<Channel>;

/// The manual clock's starting time: an arbitrary, realistic epoch time.
pub const T0_MS: u64 = 1_700_000_000_000;

/// Longest any one test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a test body under [`TEST_TIMEOUT`].
pub async fn bounded<T>(body: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(result) => result,
        Err(_) => bail!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// The server settings tests use: the defaults, with a quick expirer and a short drain.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        expire_interval_ms: 10,
        drain_timeout_ms: 5_000,
        ..ServerConfig::default()
    }
}

/// A running server and a client connected to it.
pub struct TestServer {
    pub client: Client,
    /// The client's channel, for the health and reflection clients.
    pub channel: Channel,
    pub addr: SocketAddr,
    /// The served engine. Tests may read it (or call `expire_due`); a clone kept past
    /// [`TestServer::join`] keeps the log open.
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    /// Where `GET /metrics` answers, when the server was started with a metrics listener
    /// ([`TestServer::start_with_metrics`]).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    /// Serves a `RedbLog` in `data_dir` (created if missing), recovered with a clock at
    /// [`T0_MS`].
    /// The snapshot store (`snapshots.redb`) is opened in the same folder, as `main.rs` does.
    pub async fn start(data_dir: &Path) -> Result<TestServer> {
        Self::start_reconciling(data_dir, ReconcileConfig::default()).await
    }

    /// As [`TestServer::start`], with the given reconciliation schedule and tolerance.
    pub async fn start_reconciling(
        data_dir: &Path,
        reconcile: ReconcileConfig,
    ) -> Result<TestServer> {
        let log = RedbLog::open(data_dir, RedbLogOptions::default())
            .with_context(|| format!("opening the log in {}", data_dir.display()))?;
        let snapshots = RedbSnapshotStore::open(data_dir)
            .with_context(|| format!("opening the snapshot store in {}", data_dir.display()))?;
        let options = ServeOptions {
            snapshots: Some(Arc::new(snapshots)),
            reconcile,
            ..ServeOptions::default()
        };
        Self::start_with_options(
            Arc::new(log),
            Arc::new(ManualClock::new(T0_MS)),
            test_config(),
            options,
        )
        .await
    }

    /// As [`TestServer::start`], with the metrics endpoint on an ephemeral port of 127.0.0.1
    /// (see [`TestServer::scrape`]), the `RedbLog`'s statistics in it, as `main.rs` does.
    pub async fn start_with_metrics(data_dir: &Path) -> Result<TestServer> {
        let log = Arc::new(
            RedbLog::open(data_dir, RedbLogOptions::default())
                .with_context(|| format!("opening the log in {}", data_dir.display()))?,
        );
        let snapshots = RedbSnapshotStore::open(data_dir)
            .with_context(|| format!("opening the snapshot store in {}", data_dir.display()))?;
        let options = ServeOptions {
            metrics_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
            snapshots: Some(Arc::new(snapshots)),
            ..ServeOptions::default()
        };
        Self::start_with_options(
            log,
            Arc::new(ManualClock::new(T0_MS)),
            test_config(),
            options,
        )
        .await
    }

    /// Serves a `MemLog` (durable on append) with a clock at [`T0_MS`] and the given settings.
    pub async fn in_memory(config: ServerConfig) -> Result<TestServer> {
        Self::start_with(
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(T0_MS)),
            config,
        )
        .await
    }

    /// Serves a [`ControlledLog`] (returned, to throw its switches) with a clock at [`T0_MS`]
    /// and the given settings.
    pub async fn over_controlled_log(
        config: ServerConfig,
    ) -> Result<(Arc<ControlledLog>, TestServer)> {
        let log = Arc::new(ControlledLog::new());
        let server =
            Self::start_with(log.clone(), Arc::new(ManualClock::new(T0_MS)), config).await?;
        Ok((log, server))
    }

    /// Serves any log, with the given clock and settings.
    pub async fn start_with(
        log: Arc<dyn EventLog>,
        clock: Arc<ManualClock>,
        config: ServerConfig,
    ) -> Result<TestServer> {
        Self::start_with_options(log, clock, config, ServeOptions::default()).await
    }

    /// An in-memory server with authentication on, its principals read from
    /// `dir/principals.toml` (written with `principals`), and a metrics endpoint. The
    /// [`inv_api::auth::Auth`] is returned for tests that reload it.
    pub async fn start_authenticated(
        dir: &Path,
        principals: &str,
    ) -> Result<(TestServer, Arc<inv_api::auth::Auth>)> {
        let path = dir.join("principals.toml");
        std::fs::write(&path, principals)?;
        let auth = inv_api::auth::Auth::load(&path)?;
        let options = ServeOptions {
            metrics_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
            auth: Some(Arc::clone(&auth)),
            ..ServeOptions::default()
        };
        let server = TestServer::start_with_options(
            Arc::new(MemLog::new()),
            Arc::new(ManualClock::new(T0_MS)),
            test_config(),
            options,
        )
        .await?;
        Ok((server, auth))
    }

    /// Serves any log, with the given clock, settings and options (`inv_api::serve_with`).
    pub async fn start_with_options(
        log: Arc<dyn EventLog>,
        clock: Arc<ManualClock>,
        config: ServerConfig,
        options: ServeOptions,
    ) -> Result<TestServer> {
        let metrics_addr = match &options.metrics_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let engine = Arc::new(Engine::recover(
            LedgerConfig {
                shards: 16,
                ..LedgerConfig::default()
            },
            log,
            clock.clone(),
        )?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(inv_api::serve_with(
            Arc::clone(&engine),
            config,
            // As in main.rs: without TCP_NODELAY, small stream messages wait ~40 ms for
            // Nagle's algorithm and the peer's delayed ACK.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                // A dropped sender also shuts down, so a panicking test never leaks a server.
                let _ = signal.await;
            },
            options,
        ));
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .context("connecting to the test server")?;
        Ok(TestServer {
            client: pb::inventory_client::InventoryClient::new(channel.clone()),
            channel,
            addr,
            engine,
            clock,
            metrics_addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// `GET /metrics` over a plain HTTP/1.1 connection; the body, once the status is 200.
    pub async fn scrape(&self) -> Result<String> {
        let Some(addr) = self.metrics_addr else {
            bail!("the server has no metrics endpoint (start it with start_with_metrics)");
        };
        scrape(addr).await
    }

    /// A fresh connection to the server (a second client, or one after a shutdown began).
    pub async fn connect(&self) -> Result<Client> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        Ok(pb::inventory_client::InventoryClient::new(channel))
    }

    /// Fires the shutdown future `serve` was given.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// True once `serve` has returned.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Shuts down (if not begun yet), waits for `serve` to return, then drops the engine and
    /// with it the log, once no call still running on the blocking pool holds it.
    pub async fn join(mut self) -> Result<()> {
        self.begin_shutdown();
        let TestServer {
            client,
            channel,
            engine,
            task,
            ..
        } = self;
        drop(client);
        drop(channel);
        task.await.context("serve panicked")??;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&engine) > 1 {
            if Instant::now() > deadline {
                bail!("the engine is still referenced 5 s after the server stopped");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Closing a RedbLog joins its writer thread: keep that off the async workers.
        tokio::task::spawn_blocking(move || drop(engine)).await?;
        Ok(())
    }

    /// Waits until `condition` holds for the engine, polling (for effects of background tasks
    /// such as the expirer).
    pub async fn eventually(&self, what: &str, condition: impl Fn(&Engine) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition(&self.engine) {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// A `MemLog` that behaves like a durable log with switches: durability can be held back (the
/// durable LSN stops while events keep being appended, as when an fsync is slow), admission
/// can be refused as if the queue were full, and appends can fail as if the disk had. Like
/// `RedbLog`, it reports a durable LSN, calls its durable listener on every advance or failure,
/// and stays failed once failed.
#[derive(Default)]
pub struct ControlledLog {
    inner: MemLog,
    held: Mutex<bool>,
    released: Condvar,
    durable_lsn: AtomicU64,
    listener: Mutex<Option<DurableListener>>,
    full: AtomicBool,
    failing: AtomicBool,
    failed: AtomicBool,
}

impl ControlledLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, appended events stay not durable until [`ControlledLog::release`].
    pub fn hold(&self) {
        *self.held.lock().expect("not poisoned") = true;
    }

    /// Makes everything appended durable, and keeps doing so on each append.
    pub fn release(&self) {
        let mut held = self.held.lock().expect("not poisoned");
        *held = false;
        self.advance();
        drop(held);
        self.released.notify_all();
    }

    /// Events appended but not yet durable.
    pub fn pending(&self) -> u64 {
        self.inner.len() as u64 - self.durable_lsn.load(Ordering::SeqCst)
    }

    /// `admit` answers `LogError::Full` while set.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// `append` fails with an I/O error while set (and the log stays failed).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn advance(&self) {
        self.durable_lsn
            .store(self.inner.len() as u64, Ordering::SeqCst);
        self.notify();
    }

    fn notify(&self) {
        let listener = self.listener.lock().expect("not poisoned").clone();
        if let Some(listener) = listener {
            listener();
        }
    }
}

impl EventLog for ControlledLog {
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            self.notify();
            return Err(LogError::Io("injected: disk gone".into()));
        }
        self.inner.append(event)?;
        let held = self.held.lock().expect("not poisoned");
        if !*held {
            self.advance();
        }
        Ok(())
    }

    fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        let mut held = self.held.lock().expect("not poisoned");
        while *held && self.durable_lsn.load(Ordering::SeqCst) < lsn.0 {
            held = self.released.wait(held).expect("not poisoned");
        }
        self.health()
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable_lsn.load(Ordering::SeqCst))
    }

    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        self.inner.read_from(from, max)
    }

    fn admit(&self) -> Result<(), LogError> {
        self.health()?;
        if self.full.load(Ordering::SeqCst) {
            return Err(LogError::Full { capacity: 1 });
        }
        Ok(())
    }

    fn health(&self) -> Result<(), LogError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(LogError::Io("injected: disk gone".into()));
        }
        Ok(())
    }

    fn set_durable_listener(&self, listener: DurableListener) {
        *self.listener.lock().expect("not poisoned") = Some(listener);
    }
}

/// `GET /metrics` from `addr` with `Connection: close`, read to the end (bounded by 5 s);
/// the body of a 200 answer.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8(answer)?)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("scraping /metrics timed out")??;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("an HTTP answer without a blank line after its headers")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics answered {status:?}");
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4")
    {
        bail!("GET /metrics answered without the Prometheus text content type:\n{head}");
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("unexpected chunked answer:\n{head}");
    }
    Ok(body.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Request builders

pub fn line(sku: &str, location: &str, qty: u64) -> pb::Line {
    pb::Line {
        sku: sku.into(),
        location: location.into(),
        qty,
    }
}

pub fn reserve(id: &str, lines: Vec<pb::Line>, ttl_ms: u64) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: id.into(),
        channel: "web".into(),
        lines,
        ttl_ms,
    }
}

pub fn adjust(id: &str, sku: &str, location: &str, delta: i64) -> pb::AdjustRequest {
    pb::AdjustRequest {
        adjustment_id: id.into(),
        sku: sku.into(),
        location: location.into(),
        delta,
        reason: "goods receipt".into(),
    }
}

pub fn sale(txn_id: &str, store_seq: u64, lines: Vec<pb::Line>) -> pb::Sale {
    pb::Sale {
        txn_id: txn_id.into(),
        store_seq,
        occurred_at_ms: T0_MS - 1_000,
        lines,
    }
}

/// One position's availability through `Check`.
pub async fn available(
    client: &mut Client,
    sku: &str,
    location: &str,
) -> Result<pb::PositionAvailability> {
    let response = client
        .check(pb::CheckRequest {
            positions: vec![pb::Position {
                sku: sku.into(),
                location: location.into(),
            }],
        })
        .await?
        .into_inner();
    match response.results.into_iter().next().and_then(|r| r.result) {
        Some(pb::check_result::Result::Availability(a)) => Ok(a),
        other => bail!("check answered {other:?}"),
    }
}

/// Sends `authorization: Bearer ...` on every call (nothing for `None`).
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client whose calls carry a bearer token.
pub type Authed = pb::inventory_client::InventoryClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

/// A client on `channel` sending `authorization: Bearer token` (none for `None`).
pub fn authed_client(channel: &Channel, token: Option<&str>) -> Authed {
    let value = token.map(|t| format!("Bearer {t}").parse().expect("ASCII"));
    pb::inventory_client::InventoryClient::with_interceptor(channel.clone(), Bearer(value))
}
