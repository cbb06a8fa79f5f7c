//! Metrics in the Prometheus text format (version 0.0.4), served over HTTP at `/metrics`.
//!
//! Two kinds of series, kept apart on purpose:
//! - **Counted as things happen** ([`Metrics`]): gRPC calls and their latency per method and
//!   status code (the [`Instrumented`] layer around the `Inventory` service, so no handler
//!   counts its own calls), Reserve calls per channel, grants, rejections (oversells
//!   prevented) and expiries. These are atomics in a `prometheus_client` registry; counting
//!   costs a map lookup and an atomic add.
//! - **Read at scrape** ([`Snapshot`]): what the engine already knows and would only be
//!   duplicated (and drift) if mirrored into gauges: open holds, LSNs, per-store sale lag and
//!   gaps, fail-stop, the concurrency budgets in use, and the event log's writer statistics
//!   (`Engine::log_stats`, when the log keeps them). A scrape takes a few short engine locks,
//!   the same ones a `StoreStatus` call takes.
//!
//! Every label has a bounded set of values: `grpc_method` is one of the service's methods (read
//! from the file descriptor set, so a new RPC is covered without an edit here; anything else
//! is `unknown`), `grpc_code` one of the 17 canonical codes, `channel` at most
//! [`CHANNELS_MAX`] distinct values (then `other`), `store_id` at most [`STORES_LISTED_MAX`]
//! stores. A client cannot grow the scrape without bound by sending new names.
//!
//! Names follow the Prometheus conventions: the `inventory_` prefix, base units in the name
//! (`_seconds`, `_events`), `_total` on counters. `promtool check metrics` passes on the output
//! (see `tests/tests/metrics.rs`).

use crate::convert;
use crate::shared::Shared;
use inv_engine::log::{BATCH_SIZE_BUCKETS, LogStats};
use inv_engine::{Outcome, Receipt, StoreStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::http;
use tracing::{info, warn};

/// Distinct `channel` label values kept for Reserve calls; later channels count as `other`.
/// Channels are a handful of sales channels in practice; the bound only stops a client that
/// invents a new channel per request from growing every scrape.
pub const CHANNELS_MAX: usize = 64;
/// Stores listed with a `store_id` label; past this (sorted by id) the rest are only counted
/// in `inventory_stores`. Ten thousand stores is a large retailer.
pub const STORES_LISTED_MAX: usize = 10_000;
/// Longest a scrape connection may take to finish once the server has stopped.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Buckets of `inventory_grpc_request_duration_seconds`: a check answers in tens of
/// microseconds, a write waits for an fsync (a millisecond to tens of ms), a change feed lives
/// for minutes (those land in `+Inf`).
const DURATION_BUCKETS_SECONDS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The method label of a path that names none of the service's methods.
const METHOD_UNKNOWN: &str = "unknown";
/// The channel label past [`CHANNELS_MAX`], and for a channel that is not a valid id.
const CHANNEL_OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    grpc_method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

type DurationFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// The call counter and the duration histogram of one (method, code) label set.
type CallSeries = (Counter, Histogram);

/// gRPC status codes: 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// The series counted as things happen, and the registry they are encoded from.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// The `Inventory` service's method names: the only values `grpc_method` takes (besides
    /// `unknown`), each with its index in `method_names`.
    methods: HashMap<String, usize>,
    /// By index; the last is `unknown`.
    method_names: Vec<String>,
    /// The call series of each (method, code), by method index and code: filled on first use
    /// and then shared with the families, so counting a call allocates nothing and takes no
    /// lock on a family's map (this runs on every call, Checks included).
    call_series: Vec<[OnceLock<CallSeries>; CODES]>,
    grpc_requests: Family<RpcLabels, Counter>,
    grpc_duration: DurationFamily,
    reserve_requests: Family<ChannelLabels, Counter>,
    /// Channel label values in use (`other` included), at most [`CHANNELS_MAX`].
    channels_labelled: AtomicUsize,
    reserve_grants: Counter,
    reserve_rejections: Counter,
    hold_expiries: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let grpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "inventory_grpc_requests",
            "gRPC calls of the Inventory service that ended, by method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS_SECONDS));
        registry.register(
            "inventory_grpc_request_duration_seconds",
            "Time from a call's arrival to its last byte (a stream's whole life), by method and status code",
            grpc_duration.clone(),
        );
        let reserve_requests = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "inventory_reserve_requests",
            "Reserve calls (unary and on Session streams) by sales channel, valid or not",
            reserve_requests.clone(),
        );
        let reserve_grants = Counter::default();
        registry.register(
            "inventory_reserve_grants",
            "Reserves granted: holds placed (retries answered from the idempotency index are not counted)",
            reserve_grants.clone(),
        );
        let reserve_rejections = Counter::default();
        registry.register(
            "inventory_reserve_rejections",
            "Reserves refused for lack of available stock, i.e. oversells prevented (retries not counted)",
            reserve_rejections.clone(),
        );
        let hold_expiries = Counter::default();
        registry.register(
            "inventory_hold_expiries",
            "Holds whose TTL passed and whose expiry the expiry sweep recorded",
            hold_expiries.clone(),
        );
        registry.register(
            "inventory_build",
            "The server's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut method_names: Vec<String> = service_methods().into_iter().collect();
        method_names.sort_unstable();
        let methods = method_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        method_names.push(METHOD_UNKNOWN.to_owned());
        let call_series = method_names
            .iter()
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        Self {
            registry,
            methods,
            method_names,
            call_series,
            grpc_requests,
            grpc_duration,
            reserve_requests,
            channels_labelled: AtomicUsize::new(0),
            reserve_grants,
            reserve_rejections,
            hold_expiries,
        }
    }

    /// The `grpc_method` label of a request path (`/inventory.v1.Inventory/Reserve`), as an
    /// index of `method_names`.
    fn method_of(&self, path: &str) -> usize {
        let name = path.rsplit('/').next().unwrap_or_default();
        self.methods
            .get(name)
            .copied()
            .unwrap_or(self.method_names.len() - 1)
    }

    fn observe_call(&self, method: usize, code: Code, elapsed: Duration) {
        // Every code is in 0..CODES; anything else would be counted as Unknown.
        let code_index = (code as usize).min(CODES - 1);
        let (calls, duration) = self.call_series[method][code_index].get_or_init(|| {
            let labels = RpcLabels {
                grpc_method: self.method_names[method].clone(),
                grpc_code: code_name(code).to_owned(),
            };
            (
                self.grpc_requests.get_or_create(&labels).clone(),
                self.grpc_duration.get_or_create(&labels).clone(),
            )
        });
        calls.inc();
        duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a Reserve call under its channel.
    pub fn observe_reserve_channel(&self, channel: &str) {
        let valid = convert::id_problem(channel).is_none() && channel != CHANNEL_OTHER;
        let labels = ChannelLabels {
            channel: if valid { channel } else { CHANNEL_OTHER }.to_owned(),
        };
        if let Some(counter) = self.reserve_requests.get(&labels) {
            counter.inc();
            return;
        }
        // A new channel takes one of CHANNELS_MAX places. Two first calls of the same channel
        // racing here may both take one: the bound holds, it is only reached a little sooner.
        let placed = self
            .channels_labelled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < CHANNELS_MAX).then_some(n + 1)
            })
            .is_ok();
        let labels = if placed {
            labels
        } else {
            ChannelLabels {
                channel: CHANNEL_OTHER.to_owned(),
            }
        };
        self.reserve_requests.get_or_create(&labels).inc();
    }

    /// Counts a Reserve's decision, once: a retry answered from the idempotency index is the
    /// same decision again.
    pub fn observe_reserve_outcome(&self, receipt: &Receipt) {
        if receipt.duplicate {
            return;
        }
        match receipt.outcome {
            Outcome::Granted { .. } => {
                self.reserve_grants.inc();
            }
            Outcome::Insufficient { .. } => {
                self.reserve_rejections.inc();
            }
            _ => {}
        }
    }

    pub fn observe_expiries(&self, expired: usize) {
        self.hold_expiries.inc_by(expired as u64);
    }

    /// The whole exposition: the counted series, then a snapshot of the engine.
    pub fn render(&self, shared: &Shared) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(Snapshot::read(shared)));
        scraped.register_collector(Box::new(crate::reconcile::metrics::scrape(shared)));
        prometheus_client::encoding::prometheus_text::encode(&mut text, &scraped)?;
        Ok(text)
    }
}

/// The `Inventory` service's method names, from the descriptors the server also registers for
/// reflection.
fn service_methods() -> HashSet<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(inv_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in file descriptor set decodes");
    set.file
        .iter()
        .filter(|file| file.package() == "inventory.v1")
        .flat_map(|file| &file.service)
        .filter(|service| service.name() == "Inventory")
        .flat_map(|service| &service.method)
        .map(|method| method.name().to_owned())
        .collect()
}

/// The canonical name of a status code, as gRPC's own libraries print it (`OK`, `NotFound`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

// ---------------------------------------------------------------------------------------------
// Read at scrape

/// What the engine knows, read once per scrape and encoded as gauges and counters.
#[derive(Debug)]
struct Snapshot {
    holds_open: u64,
    next_lsn: u64,
    durable_lsn: u64,
    fail_stopped: bool,
    writes_in_flight: u64,
    bulk_in_flight: u64,
    watch_streams: u64,
    stores_total: u64,
    /// At most [`STORES_LISTED_MAX`], sorted by id.
    stores: Vec<StoreStatus>,
    log: Option<LogStats>,
}

impl Snapshot {
    fn read(shared: &Shared) -> Self {
        let engine = &shared.engine;
        let mut stores = engine.store_statuses();
        let stores_total = stores.len() as u64;
        stores.sort_unstable_by(|a, b| a.store_id.cmp(&b.store_id));
        stores.truncate(STORES_LISTED_MAX);
        let in_use = |budget: &tokio::sync::Semaphore, max: usize| {
            max.saturating_sub(budget.available_permits()) as u64
        };
        let config = &shared.config;
        Self {
            holds_open: engine.holds_open() as u64,
            next_lsn: engine.head_lsn().0 + 1,
            durable_lsn: engine.durable_lsn().0,
            fail_stopped: shared.is_failed(),
            writes_in_flight: in_use(&shared.writes, config.writes_in_flight_max),
            bulk_in_flight: in_use(&shared.bulk, config.bulk_in_flight_max),
            watch_streams: in_use(&shared.watches, config.watch_streams_max),
            stores_total,
            stores,
            log: engine.log_stats(),
        }
    }
}

/// Help text ends with a full stop, as the registry writes it for the counted series.
fn sentence(help: &str) -> String {
    format!("{help}.")
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &sentence(help), None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// `name` without `_total`: the encoder appends it to counters.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeCounterValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &sentence(help), None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One gauge series per store.
fn store_gauge(
    encoder: &mut DescriptorEncoder,
    stores: &[StoreStatus],
    name: &str,
    help: &str,
    value: impl Fn(&StoreStatus) -> f64,
) -> fmt::Result {
    if stores.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, &sentence(help), None, MetricType::Gauge)?;
    for store in stores {
        metric
            .encode_family(&[("store_id", store.store_id.as_str())])?
            .encode_gauge(&value(store))?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        gauge(
            e,
            "inventory_holds_open",
            "Open holds, including lapsed ones whose expiry is not yet recorded",
            self.holds_open,
        )?;
        gauge(
            e,
            "inventory_ledger_next_lsn",
            "The log sequence number the next accepted event will get",
            self.next_lsn,
        )?;
        gauge(
            e,
            "inventory_log_durable_lsn",
            "Every event up to this log sequence number is durable",
            self.durable_lsn,
        )?;
        gauge(
            e,
            "inventory_fail_stopped",
            "1 once the event log failed: writes are refused and health is NOT_SERVING until a restart",
            u64::from(self.fail_stopped),
        )?;
        gauge(
            e,
            "inventory_writes_in_flight",
            "Interactive writes in progress (of writes_in_flight_max)",
            self.writes_in_flight,
        )?;
        gauge(
            e,
            "inventory_bulk_calls_in_flight",
            "RecordSales and RecordReturns calls in progress (of bulk_in_flight_max)",
            self.bulk_in_flight,
        )?;
        gauge(
            e,
            "inventory_watch_streams_open",
            "Open WatchAvailability streams (of watch_streams_max)",
            self.watch_streams,
        )?;
        gauge(
            e,
            "inventory_stores",
            "Stores that have posted sales",
            self.stores_total,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sale_lag_seconds",
            "Server time minus till time of the store's newest sale when it was recorded",
            |s| s.newest_lag_ms as f64 / 1_000.0,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sale_gaps",
            "Open gaps (missing ranges) in the store's sale sequence",
            |s| s.gaps.len() as f64,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sales_missing",
            "Sequence numbers missing between the store's contiguous and newest sale",
            |s| s.missing_count as f64,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_contiguous_seq",
            "Every sale sequence number of the store up to this one has been received",
            |s| s.contiguous_seq as f64,
        )?;
        if let Some(log) = &self.log {
            encode_log_stats(e, log)?;
        }
        // Reconciliation has its own series (`reconcile::metrics`), registered beside these.
        Ok(())
    }
}

fn encode_log_stats(e: &mut DescriptorEncoder, log: &LogStats) -> fmt::Result {
    counter(
        e,
        "inventory_log_batches",
        "Write batches the log writer committed (each one redb write transaction)",
        log.batches,
    )?;
    counter(
        e,
        "inventory_log_fsyncs",
        "Commits with an fsync (sync durability: every batch; async: the periodic flushes)",
        log.fsync_commits,
    )?;
    counter(
        e,
        "inventory_log_commit_seconds",
        "Time the log writer spent in commits, fsync included; divide by inventory_log_batches_total for the mean commit latency",
        log.commit_ns as f64 / 1e9,
    )?;
    counter(
        e,
        "inventory_log_insert_seconds",
        "Time the log writer spent encoding and inserting events",
        log.insert_ns as f64 / 1e9,
    )?;
    counter(
        e,
        "inventory_log_checkpoints",
        "Checkpoints the log wrote",
        log.checkpoints,
    )?;
    // Bucket i counts batches of 2^i to 2^(i+1) - 1 events; `le` is that inclusive upper
    // bound, and the last bucket is open-ended.
    let buckets: Vec<(f64, u64)> = (0..BATCH_SIZE_BUCKETS)
        .map(|i| {
            let (_, high) = LogStats::bucket_bounds(i);
            let le = if high == u64::MAX {
                f64::INFINITY
            } else {
                high as f64
            };
            (le, log.batch_sizes[i])
        })
        .collect();
    let count: u64 = log.batch_sizes.iter().sum();
    e.encode_descriptor(
        "inventory_log_batch_events",
        "Events per committed write batch (group commit size).",
        None,
        MetricType::Histogram,
    )?
    .encode_histogram::<NoLabelSet>(log.events as f64, count, &buckets, None)
}

// ---------------------------------------------------------------------------------------------
// The gRPC layer

/// Wraps the `Inventory` service and counts every call by method and final status code, with
/// its duration. The code of a call is in the response headers when it failed before sending a
/// message (a "trailers-only" response), else in the trailers at the end of the body; so the
/// body is wrapped and the call is counted when its trailers pass, or when the body is dropped
/// unfinished (the client went away: `Canceled`).
#[derive(Clone)]
pub(crate) struct Instrumented<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Instrumented<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Instrumented<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for Instrumented<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let shared = Arc::clone(&self.shared);
        let method = shared.metrics.method_of(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let mut call = Call {
                shared,
                method: Some(method),
                started,
            };
            if let Some(code) = header_code(response.headers()) {
                call.end(code);
                return Ok(response);
            }
            Ok(response.map(|body| tonic::body::Body::new(ObservedBody { body, call })))
        })
    }
}

/// The status code a header map carries, if it carries one.
fn header_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// One call being timed; counted once, by [`Call::end`] or on drop.
struct Call {
    shared: Arc<Shared>,
    /// The method's index; taken when the call is counted.
    method: Option<usize>,
    started: Instant,
}

impl Call {
    fn end(&mut self, code: Code) {
        if let Some(method) = self.method.take() {
            self.shared
                .metrics
                .observe_call(method, code, self.started.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A body dropped before its trailers: the client cancelled or the connection went.
        self.end(Code::Cancelled);
    }
}

/// A response body that reports the call's status code when its trailers pass.
struct ObservedBody {
    body: tonic::body::Body,
    call: Call,
}

impl http_body::Body for ObservedBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<tonic::codegen::Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(header_code) {
                    this.call.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.end(status.code()),
            // The end without trailers: nothing said otherwise, so the call ended well.
            Poll::Ready(None) => this.call.end(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Not before the call is counted: `Body::new` drops a body that is already at its
        // end, which would count the call as cancelled.
        self.call.method.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoint

/// Serves `GET /metrics` on `listener` until `stop` is cancelled, then finishes the scrapes in
/// progress (bounded by [`HTTP_DRAIN_TIMEOUT`]).
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving metrics at /metrics");
    }
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let shared = Arc::clone(&shared);
            async move {
                match shared.metrics.render(&shared) {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        text,
                    ),
                    Err(error) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        format!("encoding the metrics failed: {error}\n"),
                    ),
                }
            }
        }),
    );
    let stopped = stop.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .into_future();
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(HTTP_DRAIN_TIMEOUT).await;
        } => Ok(()),
    };
    if let Err(error) = result {
        warn!(%error, "the metrics endpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_service_is_a_method_label() {
        let methods = service_methods();
        for name in [
            "Reserve",
            "Commit",
            "Check",
            "WatchAvailability",
            "StoreStatus",
        ] {
            assert!(methods.contains(name), "{name} missing from {methods:?}");
        }
        let metrics = Metrics::new();
        let name = |path: &str| metrics.method_names[metrics.method_of(path)].as_str();
        assert_eq!(name("/inventory.v1.Inventory/Reserve"), "Reserve");
        assert_eq!(name("/inventory.v1.Inventory/NoSuchThing"), METHOD_UNKNOWN);
        assert_eq!(name("/inventory.v1.Inventory/Unknown"), METHOD_UNKNOWN);
    }

    #[test]
    fn channels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..(CHANNELS_MAX * 2) {
            metrics.observe_reserve_channel(&format!("channel-{i}"));
        }
        metrics.observe_reserve_channel("bad\nchannel");
        assert_eq!(
            metrics.channels_labelled.load(Ordering::Acquire),
            CHANNELS_MAX
        );
        let other = ChannelLabels {
            channel: CHANNEL_OTHER.to_owned(),
        };
        let count = metrics
            .reserve_requests
            .get(&other)
            .map(|c| c.get())
            .unwrap_or(0);
        assert_eq!(count, CHANNELS_MAX as u64 + 1);
    }

    #[test]
    fn log_stats_encode_as_a_histogram_of_batch_sizes() {
        let mut log = LogStats {
            batches: 3,
            events: 1 + 2 + 5,
            ..LogStats::default()
        };
        log.batch_sizes[0] = 1; // 1 event
        log.batch_sizes[1] = 1; // 2 events
        log.batch_sizes[2] = 1; // 5 events
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot {
            holds_open: 0,
            next_lsn: 9,
            durable_lsn: 8,
            fail_stopped: false,
            writes_in_flight: 0,
            bulk_in_flight: 0,
            watch_streams: 0,
            stores_total: 0,
            stores: Vec::new(),
            log: Some(log),
        }));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        for line in [
            "inventory_log_batch_events_bucket{le=\"1\"} 1",
            "inventory_log_batch_events_bucket{le=\"3\"} 2",
            "inventory_log_batch_events_bucket{le=\"7\"} 3",
            "inventory_log_batch_events_bucket{le=\"+Inf\"} 3",
            "inventory_log_batch_events_sum 8.0",
            "inventory_log_batch_events_count 3",
            "inventory_log_batches_total 3",
            "inventory_ledger_next_lsn 9",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        // The 0.0.4 text format has no `# EOF` (that is OpenMetrics).
        assert!(!text.contains("# EOF"));
    }
}
