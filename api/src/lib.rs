//! The inventory service: the gRPC adapter over the engine.
//!
//! This crate decodes requests, hands them to the [`Engine`], and encodes what it answers. It
//! holds no domain logic: every decision (availability, idempotency, hold states, validation of
//! a command's shape) is the engine's, and an answer here is only a translation of it.
//!
//! # Layout
//! - [`serve`] (this file): wires the `Inventory` service, health, reflection, the expirer and
//!   graceful shutdown around any stream of connections, so tests (and a simulator) can host it
//!   on `127.0.0.1:0` or on a simulated network.
//! - `service`: the tonic trait impl. Each handler is decode, call the engine, encode.
//! - `bulk`: the bulk lane: RecordSales and RecordReturns are refused before their body is
//!   read when their budget is used up, else decoded, decided and answered on a thread of
//!   their own at a lower OS priority, so a backfill only gets the CPU the hot path leaves.
//! - `durability`: writes await their durability through the log's listener, so no thread is
//!   parked per in-flight write.
//! - `convert`: proto <-> domain, collecting every field violation of a request at once.
//! - `status`: the one mapping from engine errors and refusing outcomes to `tonic::Status`
//!   (and to per-item errors of batch calls).
//! - `watch`: the `WatchAvailability` change feed, read from the event log.
//! - `session`: the `Session` stream: checks and writes over one bidirectional stream, through
//!   the same handlers as the unary calls, at most `SESSION_IN_FLIGHT_MAX` in flight each.
//! - `expirer`: the background task that records expiry events for lapsed holds.
//! - `checkpointer`: the background task that writes a checkpoint when one is due, so a
//!   restart replays a short tail instead of the whole log.
//! - `metrics`: Prometheus metrics: a layer counting every call of the service by method and
//!   status code, a few domain counters, the engine's state read at scrape, and the `/metrics`
//!   HTTP endpoint ([`ServeOptions::metrics_listener`]).
//! - [`host`]: the runtime and memory set-up shared by the processes that host the server.
//! - `main.rs` (the `inventory` binary): CLI, config, tracing, the data folder, signals.
//!
//! # Limits and back-pressure
//! Every queue has a bound (see [`ServerConfig`]). Interactive writes (Reserve, Commit, Release,
//! Extend, Disposition, Adjust, SetSafetyStock), bulk writes (RecordSales, RecordReturns) and
//! change-feed streams each have their own concurrency budget, so a flood of store batches can
//! never make a checkout's Reserve queue behind it. A budget that is used up answers
//! RESOURCE_EXHAUSTED at once (nothing applied, retry later) instead of queueing unboundedly.
//! Bulk calls also run on their own lower-priority thread (`bulk`), so under a surge they are
//! the ones that slow down: their budget then refuses the surplus before reading it.
//! A `Session` stream has no budget of its own: each write on it takes a permit of the
//! interactive writes budget, and each stream reads at most `SESSION_IN_FLIGHT_MAX` requests
//! ahead of its answers (then HTTP/2 flow control holds the client back).
//!
//! # Shutdown
//! When the `shutdown` future completes: health turns NOT_SERVING, the expirer stops, change
//! feeds end with UNAVAILABLE (naming the LSN to resume from), session streams stop reading,
//! answer what they have read and end with UNAVAILABLE, the listener stops accepting,
//! and in-flight calls finish (bounded by [`ServerConfig::drain_timeout_ms`]). The log is
//! flushed when the last reference to the engine (and so to the log) is dropped, which the
//! caller does after `serve` returns.

mod bulk;
mod checkpointer;
mod convert;
mod durability;
mod expirer;
pub mod host;
mod metrics;
mod service;
mod session;
mod status;
mod watch;

use durability::DurabilityWaiter;
use inv_engine::{CheckpointPolicy, Engine, SubmitError};
use inv_proto::v1::inventory_server::InventoryServer;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

pub use metrics::{CHANNELS_MAX, LogStatsSource, STORES_LISTED_MAX};
pub use service::InventoryService;

/// Most items in one batch call (Check positions, RecordSales sales, RecordReturns returns,
/// CheckSku and WatchAvailability filters): large enough for a store's end-of-day batch,
/// small enough that one call cannot hold a blocking thread for long.
pub const BATCH_ITEMS_MAX: usize = 1_000;

/// The server's limits and timings. Every field has a default suited to one process on a
/// small machine; `main.rs` fills them from flags, environment and the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request the server decodes, in bytes. A RecordSales batch of 1,000 sales of a
    /// few lines each is well under 1 MiB; 8 MiB leaves room for wide baskets.
    pub request_bytes_max: usize,
    /// Largest response the server encodes, in bytes (a Check of 1,000 positions is ~100 KiB;
    /// StoreStatus of every store is the largest answer).
    pub response_bytes_max: usize,
    /// Interactive writes in progress at once (most of that time is the wait for the log's
    /// group commit, which costs a task, not a thread); past this, RESOURCE_EXHAUSTED. The
    /// log's own queue bound (`LogError::Full`) applies as well.
    pub writes_in_flight_max: usize,
    /// Bulk calls (RecordSales, RecordReturns) accepted at once; their own budget, so they
    /// never delay interactive writes. Past this, RESOURCE_EXHAUSTED before the request is
    /// read. They run one at a time on the bulk lane (interleaved by chunks), so 2 keeps the
    /// lane busy (one deciding while another waits for its group commit) without letting
    /// many batches' memory queue up.
    pub bulk_in_flight_max: usize,
    /// Niceness of the bulk lane's thread (0-19; 0 runs it at the server's priority). Higher
    /// gives the hot path more of a busy machine; the lane takes the same short engine locks
    /// as hot writes, and a thread niced to 19 that is preempted holding one stalls them, so
    /// the default is in between (measured with `load --scenario backfill`). Linux only.
    pub bulk_nice: i32,
    /// Open WatchAvailability streams. Past this, RESOURCE_EXHAUSTED.
    pub watch_streams_max: usize,
    /// How often the expirer looks for lapsed holds, in ms. Lapsed holds stop counting against
    /// availability at once; this only bounds how late their expiry events are recorded.
    pub expire_interval_ms: u64,
    /// Most holds expired per round (more rounds follow at once while there is a backlog).
    pub expire_batch_max: usize,
    /// How long shutdown waits for in-flight calls before closing connections anyway, in ms.
    pub drain_timeout_ms: u64,
    /// Write a checkpoint once this many events were logged since the last one (0: never by
    /// count). Bounds what a restart replays; see `inv_engine::CheckpointPolicy`.
    pub checkpoint_every_events: u64,
    /// Write a checkpoint once this long has passed since the last one and something was
    /// logged, in ms (0: never by time).
    pub checkpoint_every_ms: u64,
    /// Acknowledge a write once its event is appended instead of once it is durable. Only
    /// for a log that itself acknowledges on append (`RedbLog` with `Durability::Async`, whose
    /// `wait_durable` returns at once and whose durable LSN moves only with each fsync);
    /// `main.rs` sets it from `--durability`. With a log that fsyncs before acknowledging it
    /// must stay false, or acknowledged writes could be lost in a crash.
    #[serde(skip)]
    pub ack_on_append: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_bytes_max: 8 << 20,
            response_bytes_max: 16 << 20,
            writes_in_flight_max: 8_192,
            bulk_in_flight_max: 2,
            bulk_nice: 10,
            watch_streams_max: 1_024,
            expire_interval_ms: 100,
            expire_batch_max: 10_000,
            drain_timeout_ms: 10_000,
            checkpoint_every_events: CheckpointPolicy::default().every_events,
            checkpoint_every_ms: CheckpointPolicy::default().every_ms,
            ack_on_append: false,
        }
    }
}

impl ServerConfig {
    /// Blocking threads the server may use at once: one per change-feed read, plus the expirer
    /// and the checkpointer (bulk calls run on a thread of their own). Size the runtime's
    /// blocking pool to at least this.
    pub fn blocking_threads_max(&self) -> usize {
        self.watch_streams_max + 2
    }

    /// When the checkpointer writes a checkpoint.
    pub fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            every_events: self.checkpoint_every_events,
            every_ms: self.checkpoint_every_ms,
        }
    }

    /// Refuses settings that would make the server unusable.
    pub fn validate(&self) -> Result<(), ServeError> {
        let positive: [(&str, u64); 7] = [
            ("request_bytes_max", self.request_bytes_max as u64),
            ("response_bytes_max", self.response_bytes_max as u64),
            ("writes_in_flight_max", self.writes_in_flight_max as u64),
            ("bulk_in_flight_max", self.bulk_in_flight_max as u64),
            ("watch_streams_max", self.watch_streams_max as u64),
            ("expire_interval_ms", self.expire_interval_ms),
            ("expire_batch_max", self.expire_batch_max as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ServeError::Config(format!("{name} must be at least 1")));
            }
        }
        if !(0..=19).contains(&self.bulk_nice) {
            return Err(ServeError::Config(format!(
                "bulk_nice must be in 0..=19, got {}",
                self.bulk_nice
            )));
        }
        // tokio's semaphores hold at most this many permits.
        for (name, value) in [
            ("writes_in_flight_max", self.writes_in_flight_max),
            ("bulk_in_flight_max", self.bulk_in_flight_max),
            ("watch_streams_max", self.watch_streams_max),
        ] {
            if value > Semaphore::MAX_PERMITS {
                return Err(ServeError::Config(format!(
                    "{name} must be at most {}",
                    Semaphore::MAX_PERMITS
                )));
            }
        }
        Ok(())
    }
}

/// Why [`serve`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("invalid server config: {0}")]
    Config(String),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("starting the bulk lane: {0}")]
    BulkLane(#[from] std::io::Error),
}

/// What every handler, the expirer and the change feeds share.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub config: ServerConfig,
    /// Budget of interactive writes waiting on the log.
    pub writes: Arc<Semaphore>,
    /// Budget of bulk calls; separate so interactive writes never wait behind them.
    pub bulk: Arc<Semaphore>,
    /// Where bulk calls run (see `bulk`).
    pub bulk_lane: bulk::BulkLane,
    /// Budget of open change feeds.
    pub watches: Arc<Semaphore>,
    /// The highest LSN this server knows to be applied. Change feeds wake when it moves, so
    /// they follow the log without polling it hard.
    pub head: tokio::sync::watch::Sender<u64>,
    /// Cancelled when shutdown starts: stops the expirer and ends change feeds.
    pub shutdown: CancellationToken,
    /// Set once a write failed because the log failed: the engine is fail-stopped until a
    /// restart, and health reports NOT_SERVING.
    pub failed: AtomicBool,
    /// Wakes the health task when `failed` is set.
    pub failed_notify: Notify,
    /// Where writes await durability.
    pub durability: DurabilityWaiter,
    /// Counters and histograms, encoded at `/metrics` with a snapshot of the engine.
    pub metrics: metrics::Metrics,
    /// The event log's writer statistics, read at scrape (see [`ServeOptions::log_stats`]).
    pub log_stats: Option<LogStatsSource>,
}

impl Shared {
    fn new(
        engine: Arc<Engine>,
        config: ServerConfig,
        shutdown: CancellationToken,
        log_stats: Option<LogStatsSource>,
    ) -> Result<Self, ServeError> {
        let head = engine.ledger().next_lsn().0.saturating_sub(1);
        let durability =
            DurabilityWaiter::new(Arc::clone(engine.ledger().log()), config.ack_on_append);
        Ok(Self {
            engine,
            config,
            writes: Arc::new(Semaphore::new(config.writes_in_flight_max)),
            bulk: Arc::new(Semaphore::new(config.bulk_in_flight_max)),
            bulk_lane: bulk::BulkLane::start(config.bulk_nice)?,
            watches: Arc::new(Semaphore::new(config.watch_streams_max)),
            head: tokio::sync::watch::Sender::new(head),
            shutdown,
            failed: AtomicBool::new(false),
            failed_notify: Notify::new(),
            durability,
            metrics: metrics::Metrics::new(),
            log_stats,
        })
    }

    /// Tells change feeds that events up to `lsn` are in the log.
    pub fn advance_head(&self, lsn: u64) {
        self.head.send_if_modified(|head| {
            let moved = lsn > *head;
            if moved {
                *head = lsn;
            }
            moved
        });
    }

    /// Notes a write error; a log failure (anything but a full queue) fail-stops the server.
    pub fn observe_error(&self, error: &SubmitError) {
        if status::is_fail_stop(error) && !self.failed.swap(true, Ordering::AcqRel) {
            error!(%error, "the event log failed; refusing writes until restarted");
            self.failed_notify.notify_one();
        }
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire) || self.engine.ledger().failure().is_some()
    }
}

/// What [`serve_with`] adds to [`serve`]. The default is what `serve` does: no metrics
/// endpoint (the counters are kept all the same) and no log statistics.
#[derive(Default)]
pub struct ServeOptions {
    /// Where to serve `GET /metrics` (Prometheus text format). Bound by the caller, so a test
    /// can bind `127.0.0.1:0` and read the port. Served until `serve_with` returns: through the
    /// drain, so the last scrapes see the shutdown.
    pub metrics_listener: Option<tokio::net::TcpListener>,
    /// Reads the event log's writer statistics (commit time, batch sizes) at each scrape;
    /// `main.rs` passes `RedbLog::stats`. Without it those series are left out.
    pub log_stats: Option<LogStatsSource>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("metrics_listener", &self.metrics_listener)
            .field("log_stats", &self.log_stats.is_some())
            .finish()
    }
}

/// Serves the inventory API over `incoming` until `shutdown` completes, then drains (see the
/// crate docs). `engine` must be recovered already: health reports SERVING from the start.
/// Returns after the last in-flight call has finished (or the drain timeout passed) and the
/// background tasks have stopped; the caller then drops its engine, which flushes the log.
pub async fn serve<I, IO, IE, F>(
    engine: Arc<Engine>,
    config: ServerConfig,
    incoming: I,
    shutdown: F,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    serve_with(engine, config, incoming, shutdown, ServeOptions::default()).await
}

/// [`serve`], with a metrics endpoint and log statistics (see [`ServeOptions`]).
pub async fn serve_with<I, IO, IE, F>(
    engine: Arc<Engine>,
    config: ServerConfig,
    incoming: I,
    shutdown: F,
    options: ServeOptions,
) -> Result<(), ServeError>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Future<Output = ()>,
{
    config.validate()?;
    let token = CancellationToken::new();
    let shared = Arc::new(Shared::new(
        engine,
        config,
        token.clone(),
        options.log_stats,
    )?);

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<InventoryServer<InventoryService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(inv_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Older grpcurl and grpcui builds only speak v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(inv_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let inventory = InventoryServer::new(InventoryService::new(Arc::clone(&shared)))
        .max_decoding_message_size(config.request_bytes_max)
        .max_encoding_message_size(config.response_bytes_max);
    let inventory = bulk::Routed::new(inventory, Arc::clone(&shared));
    let inventory = metrics::Instrumented::new(inventory, Arc::clone(&shared));

    let relay = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move { shared.durability.relay().await })
    };
    let expirer = tokio::spawn(expirer::run(Arc::clone(&shared)));
    let checkpointer = tokio::spawn(checkpointer::run(Arc::clone(&shared)));
    let health_task = tokio::spawn(report_failures(Arc::clone(&shared), reporter.clone()));
    // The metrics endpoint has its own stop: it keeps answering through the drain and stops
    // once the gRPC server has.
    let metrics_stop = CancellationToken::new();
    let metrics_task = options.metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve_http(
            listener,
            Arc::clone(&shared),
            metrics_stop.clone(),
        ))
    });

    let signal = {
        let token = token.clone();
        let reporter = reporter.clone();
        async move {
            shutdown.await;
            info!("shutdown requested: draining");
            set_all_not_serving(&reporter).await;
            token.cancel();
        }
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inventory)
        .serve_with_incoming_shutdown(incoming, signal);

    // The server future completes once every in-flight call has finished after the signal.
    // A stream that never ends (a health Watch, say) would hold it forever, so the drain is
    // bounded: past the timeout the remaining connections are dropped.
    let drain_timeout = Duration::from_millis(config.drain_timeout_ms);
    let result = tokio::select! {
        result = server => result.map_err(ServeError::from),
        () = async {
            token.cancelled().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            warn!(drain_timeout_ms = config.drain_timeout_ms, "drain timed out; closing the remaining connections");
            Ok(())
        }
    };
    token.cancel();
    metrics_stop.cancel();
    // Every call has finished (or the drain timed out): no write waits for durability now.
    // Awaited, so the task (and its hold on the engine) is gone when `serve` returns: on a
    // current-thread runtime nothing else would run the cancellation.
    relay.abort();
    let _ = relay.await;
    for task in [expirer, checkpointer, health_task]
        .into_iter()
        .chain(metrics_task)
    {
        if let Err(error) = task.await {
            error!(%error, "a background task panicked");
        }
    }
    info!("server stopped");
    result
}

async fn set_all_not_serving(reporter: &HealthReporter) {
    reporter
        .set_not_serving::<InventoryServer<InventoryService>>()
        .await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

/// Turns health NOT_SERVING once the engine fail-stops. Checks on every observed failure and
/// once a second (the engine may also fail on the expirer's or another caller's write).
async fn report_failures(shared: Arc<Shared>, reporter: HealthReporter) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = shared.failed_notify.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if shared.is_failed() {
            set_all_not_serving(&reporter).await;
            // Fail-stop is permanent until a restart: nothing more to report.
            shared.shutdown.cancelled().await;
            return;
        }
    }
}
