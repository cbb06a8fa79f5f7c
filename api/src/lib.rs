//! The inventory service: the gRPC adapter over the engine.
//!
//! This crate decodes requests, hands them to the [`Engine`], and encodes what it answers. It
//! holds no domain logic: every decision (availability, idempotency, hold states, validation of
//! a command's shape) is the engine's, and an answer here is only a translation of it.
//!
//! # Layout
//! Imports run one way, from the top of this list down; nothing imports `service` or `bulk`.
//! - [`serve`] (this file): wires the `Inventory` service, health, reflection, the expirer and
//!   graceful shutdown around any stream of connections, so tests (and a simulator) can host it
//!   on `127.0.0.1:0` or on a simulated network.
//! - `service`: the tonic trait impl. Each handler is decode, call `pipeline`, encode.
//! - `session`: the `Session` stream: checks and writes over one bidirectional stream, through
//!   the same `pipeline` functions as the unary calls, at most `SESSION_IN_FLIGHT_MAX` in
//!   flight each.
//! - `bulk`: RecordSales and RecordReturns are refused before their body is read when their
//!   budget is used up, else decoded, decided and answered on the bulk lane (`lane`: a thread
//!   of their own at a lower OS priority), so a backfill only gets the CPU the hot path leaves.
//! - `watch`: the `WatchAvailability` change feed, read from the event log.
//! - `events`: `ListEvents`, a page of one position's or one hold's events, scanned from the
//!   event log on the bulk lane (a bounded scan; it only gets the CPU the hot path leaves).
//! - `pipeline`: how every write is decided, waited on and answered, and how a check is
//!   answered, whichever path (unary, session, bulk) it came by.
//! - `expirer`, `checkpointer`: the background tasks that record expiry events for lapsed
//!   holds and write a checkpoint when one is due.
//! - `reconcile`: ERP snapshots (the PushSnapshot stream, staged off the async workers) and
//!   reconciliations (on the bulk lane, one at a time, on demand and on a schedule).
//! - `auth`: who is calling (a bearer token or a client certificate's subject) and what its
//!   roles allow; resolved before a call's body is read, checked by each handler.
//! - `metrics`: Prometheus metrics: a layer counting every call of the service by method and
//!   status code, a few domain counters, the engine's state read at scrape, and the `/metrics`
//!   HTTP endpoint ([`ServeOptions::metrics_listener`]).
//! - `shared`: what all of the above share (the engine, budgets, the head LSN, shutdown, the
//!   fail-stop wake-up); `durability`: writes await their durability through the log's
//!   listener, so no thread is parked per in-flight write; `lane`: the bulk lane's thread.
//! - `convert`: proto <-> domain, collecting every field violation of a request at once.
//! - `status`: the one mapping from engine errors, refusals and refusing outcomes to
//!   `tonic::Status` (and to per-item errors of batch calls), with the table in its doc;
//!   `message_size`: tonic's answer to a request over the decode limit, rewritten to that
//!   mapping's (RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE).
//! - `config`: [`ServerConfig`], the server's limits and timings, each declared once (the
//!   binary's flag, environment variable and config-file key all come from it).
//! - [`host`]: the runtime and memory set-up shared by the processes that host the server.
//! - [`tls`]: TLS on the gRPC and metrics ports, with certificates a reload swaps without
//!   dropping connections (the process hands [`tls::TlsIncoming`] to `serve` as its stream).
//! - `main.rs` (the `inventory` binary): CLI, settings, tracing, the data folder, signals.
//!
//! The API reaches the engine only through [`Engine`]'s own methods, never its ledger or log.
//!
//! # Limits and back-pressure
//! Every queue has a bound (see [`ServerConfig`]). Interactive writes (Reserve, Commit, Release,
//! Extend, Disposition, Adjust, SetSafetyStock), bulk writes (RecordSales, RecordReturns),
//! change-feed streams and event listings (ListEvents) each have their own concurrency
//! budget, so a flood of store batches can never make a checkout's Reserve queue behind it. A budget that is used up answers
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

pub mod auth;
mod bulk;
mod checkpointer;
mod config;
mod convert;
mod durability;
mod events;
mod expirer;
pub mod host;
mod lane;
mod message_size;
mod metrics;
mod pipeline;
mod reconcile;
mod service;
mod session;
mod shared;
mod status;
pub mod tls;
mod watch;

use inv_engine::Engine;
use inv_engine::reconcile::SnapshotStore;
use inv_proto::v1::inventory_server::InventoryServer;
use shared::Shared;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

pub use config::ServerConfig;
pub use metrics::{CHANNELS_MAX, STORES_LISTED_MAX};
pub use reconcile::{PUSHES_IN_FLIGHT_MAX, RECONCILE_EVERY_MS_DEFAULT, ReconcileConfig};
pub use service::InventoryService;

/// Most items in one batch call (Check positions, RecordSales sales, RecordReturns returns,
/// CheckSku and WatchAvailability filters): large enough for a store's end-of-day batch,
/// small enough that one call cannot hold a blocking thread for long.
pub const BATCH_ITEMS_MAX: usize = 1_000;

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

/// What [`serve_with`] adds to [`serve`]. The default is what `serve` does: no metrics
/// endpoint (the counters are kept all the same), snapshots kept in memory, and the default
/// reconciliation schedule and tolerance.
#[derive(Default)]
pub struct ServeOptions {
    /// Where to serve `GET /metrics` (Prometheus text format). Bound by the caller, so a test
    /// can bind `127.0.0.1:0` and read the port. Served until `serve_with` returns: through the
    /// drain, so the last scrapes see the shutdown.
    pub metrics_listener: Option<tokio::net::TcpListener>,
    /// Serve `metrics_listener` over TLS with these certificates (reloaded with the gRPC
    /// port's, as they are the same [`tls::ServerTls`]). `None`: plaintext HTTP.
    pub metrics_tls: Option<Arc<tls::ServerTls>>,
    /// Where pushed ERP snapshots and their reports are kept: `RedbSnapshotStore` in the data
    /// folder beside the log, so staged snapshots and reports survive restarts. `None` keeps
    /// them in memory.
    pub snapshots: Option<Arc<dyn SnapshotStore>>,
    /// When to reconcile staged snapshots, and with which tolerance.
    pub reconcile: ReconcileConfig,
    /// The principals allowed to call (see `auth` and docs/security.md). `None`: authentication
    /// is off, every call is allowed and the metrics endpoint takes no token.
    pub auth: Option<Arc<auth::Auth>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("metrics_listener", &self.metrics_listener)
            .field("metrics_tls", &self.metrics_tls)
            .field(
                "snapshots",
                &self.snapshots.as_ref().map(|_| "SnapshotStore"),
            )
            .field("reconcile", &self.reconcile)
            .field("auth", &self.auth)
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
    let reconciler = reconcile::Reconciler::new(options.snapshots, options.reconcile);
    let shared = Arc::new(Shared::new(
        engine,
        config,
        token.clone(),
        reconciler,
        options.auth,
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
    // Outside the bulk routing, which needs the caller; health and reflection are not wrapped.
    let inventory = auth::Authenticated::new(inventory, Arc::clone(&shared));
    // Inside the metrics layer, so calls are counted with the code the client gets.
    let inventory = message_size::DecodeLimit::new(inventory, config.request_bytes_max);
    let inventory = metrics::Instrumented::new(inventory, Arc::clone(&shared));

    let relay = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let on_failure = || shared.fail_stop.notify_one();
            shared.durability.relay(on_failure).await
        })
    };
    let expirer = tokio::spawn(expirer::run(Arc::clone(&shared)));
    let checkpointer = tokio::spawn(checkpointer::run(Arc::clone(&shared)));
    let reconcile_schedule = tokio::spawn(reconcile::schedule(Arc::clone(&shared)));
    let health_task = tokio::spawn(report_failures(Arc::clone(&shared), reporter.clone()));
    // The metrics endpoint has its own stop: it keeps answering through the drain and stops
    // once the gRPC server has.
    let metrics_stop = CancellationToken::new();
    let metrics_task = options.metrics_listener.map(|listener| {
        tokio::spawn(metrics::serve_http(
            listener,
            options.metrics_tls.clone(),
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
    for task in [expirer, checkpointer, reconcile_schedule, health_task]
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

/// Turns health NOT_SERVING once the engine fail-stops. Woken by every observed log failure
/// (a write's, the expirer's, the checkpointer's, or the log's own through the durability
/// relay); the engine says whether it has stopped.
async fn report_failures(shared: Arc<Shared>, reporter: HealthReporter) {
    loop {
        if shared.is_failed() {
            set_all_not_serving(&reporter).await;
            // Fail-stop is permanent until a restart: nothing more to report.
            shared.shutdown.cancelled().await;
            return;
        }
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = shared.fail_stop.notified() => {}
        }
    }
}
