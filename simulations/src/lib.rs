//! Load and surge simulations: drive the real server over loopback and report throughput and
//! latency.
//!
//! The `load` binary starts the real server in process (`inv_api::serve` over a `RedbLog` with
//! `Sync` durability in a temporary data folder, on `127.0.0.1:0`; see [`LocalServer`]) or
//! targets one at `--server URL` (loopback only), stocks `--skus` skus through Adjust, then runs
//! each scenario for `--seconds` with `--callers` concurrent callers and reports, per
//! operation, throughput, latency percentiles (p50, p99, p99.9, max), errors by gRPC code, and
//! the server's and the client's CPU time per call (see [`cpu`]; for a `--server` in another
//! process, from `/proc/PID/stat` of `--server-pid`). Every run stops by itself: the default run (eight scenarios, 5 s each, the backfill scenario
//! twice that) takes about 50 s.
//!
//! # Scenarios
//! - `check`: unary Check of one position, back to back.
//! - `check-sellable`: unary CheckSellable of `--check-positions` skus at one location, the
//!   compact read for a catalogue sync.
//! - `reserve`: unary durable Reserve of one unit, then the Release of that hold (so the stock
//!   stays); both are reported.
//! - `reserve-only`: unary durable Reserves alone, the figure to compare with a reserve-only
//!   store (stock is ample; the holds are left to expire after `ttl_ms`).
//! - `mix`: 80% Check, 15% Reserve, 5% Commit or Release of a hold the caller placed.
//! - `session-check`, `session-reserve`: the check and reserve workloads over the `Session`
//!   stream, each caller keeping `--pipeline` requests in flight on its own stream.
//! - `backfill`: the bulk-vs-hot-path demonstration. Half the callers Check, half Reserve and
//!   Release, first alone, then while `--backfill-callers` tasks post RecordSales batches of
//!   `--backfill-sales` sales back to back. Shows the hot path's latency with and without the
//!   backfill, and how many bulk calls the server refused (RESOURCE_EXHAUSTED) because its bulk
//!   budget was in use.
//! - `quota-flood` (run on its own, in process only; see [`quota_flood`]): well-behaved
//!   callers alone, then beside one principal flooding at 10x its quota; verifies the flood
//!   got no more than its quota and no other call failed.
//!
//! # Client and floor
//! `--client tuned` (the default) calls with the tool's own settings: a runtime of half the
//! cores, `--connections` channels, `--pipeline` requests in flight per Session caller.
//! `--client ordinary` calls as a connector team would: a worker per core, one `Channel` with
//! tonic's defaults, one call in flight per caller. `--floor` runs every scenario against
//! [`floor`] as well, a constant-answer server of the same service in the same process, right
//! after the engine; [`summary`] then gives the engine's server CPU per call against the floor's
//! and whether issue #14's goals are met, from that run alone (no figure from another day or
//! another system).
//!
//! # Layout
//! - `stats`: per-operation histograms and error counts; the report's rows and table.
//! - `cpu`: CPU time by side (client, in-process engine, floor, or another process).
//! - `floor`: [`FloorServer`], the constant-answer server.
//! - `server`: [`LocalServer`], the real server on a runtime and thread of its own.
//! - `scenarios`: the callers of each workload.
//! - `surge`: the surge scenarios (`flash-sale`, `store-reconnect`, `return-wave`,
//!   `holiday-surge`), which also verify the server's state afterwards; see docs/surge.md.
//!
//! The unary scenarios run closed-loop by default (each caller sends its next call when the
//! last is answered), which finds the most throughput; `--rate` paces them to a total rate
//! instead, to read latency at a set load.
//!
//! Latencies are measured by the client, from just before a request is handed to tonic until
//! its answer is decoded, so they include both sides' scheduling on the shared cores.

pub mod cpu;
pub mod floor;
pub mod quota_flood;
pub mod scenarios;
pub mod server;
pub mod stats;
mod summary;
pub mod surge;

pub use cpu::EngineCpu;
pub use floor::FloorServer;
pub use inv_proto::v1 as pb;
pub use server::LocalServer;
pub use stats::{OpStats, Row, Tally};
pub use summary::summary;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use scenarios::Ctx;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Most positions one Check takes (the server's batch limit).
pub const CHECK_POSITIONS_MAX: usize = 1_000;

/// Default niceness of the backfill callers' thread (see [`Options::backfill_nice`]).
pub const BACKFILL_NICE: i32 = 10;

/// Longest a scenario (or backfill phase) may be asked to run.
pub const SECONDS_MAX: f64 = 60.0;
/// Most callers, skus and pipeline depth a run accepts.
pub const CALLERS_MAX: usize = 4_096;
pub const SKUS_MAX: usize = 1_000_000;
/// The server reads at most this many requests of a Session ahead of its answers.
pub const PIPELINE_MAX: usize = 1_024;

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Check,
    CheckSellable,
    Reserve,
    ReserveOnly,
    Mix,
    SessionCheck,
    SessionReserve,
    Backfill,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Check,
        Scenario::CheckSellable,
        Scenario::Reserve,
        Scenario::ReserveOnly,
        Scenario::Mix,
        Scenario::SessionCheck,
        Scenario::SessionReserve,
        Scenario::Backfill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Check => "check",
            Scenario::CheckSellable => "check-sellable",
            Scenario::Reserve => "reserve",
            Scenario::ReserveOnly => "reserve-only",
            Scenario::Mix => "mix",
            Scenario::SessionCheck => "session-check",
            Scenario::SessionReserve => "session-reserve",
            Scenario::Backfill => "backfill",
        }
    }
}

/// How the load generator calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ClientMode {
    /// This tool's own settings: a runtime of half the cores (`--client-threads`),
    /// `--connections` channels, `--pipeline` requests in flight per Session caller.
    #[default]
    Tuned,
    /// What a connector team writes: a multi-thread runtime with a worker per core, one shared
    /// `Channel` from an `Endpoint` with tonic's defaults, one call in flight per caller
    /// (Session callers too, unless `--pipeline` is given: pipelining a stream is the
    /// application's choice, not the channel's).
    Ordinary,
}

impl ClientMode {
    pub fn name(self) -> &'static str {
        match self {
            ClientMode::Tuned => "tuned",
            ClientMode::Ordinary => "ordinary",
        }
    }
}

/// Everything a run is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent callers per scenario.
    pub callers: usize,
    /// How long each scenario runs (the backfill scenario runs twice this: alone, then with
    /// the backfill).
    pub seconds: f64,
    /// Skus stocked, and picked uniformly by every call.
    pub skus: usize,
    /// Requests each session caller keeps in flight.
    pub pipeline: usize,
    /// Connections (HTTP/2 channels) the callers share, round-robin; 0 gives each caller its
    /// own. Measured with 64 callers on 2 cores: one connection per caller costs ~30-40 µs of
    /// CPU per unary call, 1 or 4 shared connections ~20-25 µs (HTTP/2 then packs several
    /// calls' frames into one write). Unary Check with 64 callers: 1 connection ~98k/s at
    /// p99 0.8-0.97 ms, 2 ~102k/s at ~1.0 ms, 4 ~86k/s at 1.25 ms; Session checks are the same
    /// with 1 or 2.
    pub connections: usize,
    /// Concurrent RecordSales callers in the backfill scenario.
    pub backfill_callers: usize,
    /// Sales per RecordSales batch.
    pub backfill_sales: usize,
    /// Positions per Check (unary and over the Session): 1 is a cart line, up to
    /// [`CHECK_POSITIONS_MAX`] a listing page or a feed sync.
    pub check_positions: usize,
    /// Niceness of the backfill callers' thread: the stores posting sales are other machines,
    /// so on a shared machine their client work must not weigh on the hot path as if it were
    /// the server's (0: the same priority as the hot callers).
    pub backfill_nice: i32,
    /// TTL of every hold placed, in ms.
    pub ttl_ms: u64,
    /// Total calls a second of the unary scenarios (`check`, `reserve` counting reserves,
    /// `mix`, and the backfill's hot path), shared evenly by the callers; `None` runs them
    /// closed-loop, as fast as answers come. With 64 closed-loop callers the mean latency is
    /// 64 / throughput (Little's law), so latency targets are measured at a set rate.
    pub rate: Option<f64>,
    /// The scenarios to run, in order.
    pub scenarios: Vec<Scenario>,
    /// How the callers call; [`ClientMode::Ordinary`] needs `pipeline` and `connections` 1.
    pub client: ClientMode,
    /// Where the engine server's CPU time is read.
    pub engine_cpu: EngineCpu,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            callers: 64,
            seconds: 5.0,
            skus: 1_000,
            pipeline: 32,
            connections: 1,
            backfill_callers: 12,
            backfill_sales: 1_000,
            backfill_nice: BACKFILL_NICE,
            check_positions: 1,
            ttl_ms: 300_000,
            rate: None,
            scenarios: Scenario::ALL.to_vec(),
            client: ClientMode::Tuned,
            engine_cpu: EngineCpu::InProcess,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        if !(self.seconds > 0.0 && self.seconds <= SECONDS_MAX) {
            bail!("--seconds must be in (0, {SECONDS_MAX}]");
        }
        for (name, value, max) in [
            ("--callers", self.callers, CALLERS_MAX),
            ("--skus", self.skus, SKUS_MAX),
            ("--pipeline", self.pipeline, PIPELINE_MAX),
            ("--backfill-callers", self.backfill_callers, CALLERS_MAX),
            (
                "--backfill-sales",
                self.backfill_sales,
                inv_api::BATCH_ITEMS_MAX,
            ),
        ] {
            if value == 0 || value > max {
                bail!("{name} must be in 1..={max}, got {value}");
            }
        }
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate.is_finite())
        {
            bail!("--rate must be a positive number of calls a second");
        }
        if self.connections > CALLERS_MAX {
            bail!("--connections must be at most {CALLERS_MAX}");
        }
        // Pipelining a Session is the application's choice, not the channel's: an ordinary
        // client may keep several requests in flight on its stream (--pipeline).
        if self.client == ClientMode::Ordinary && self.connections != 1 {
            bail!(
                "--client ordinary calls over one channel (got --connections {}): drop \
                 --connections or use --client tuned",
                self.connections
            );
        }
        if self.check_positions == 0 || self.check_positions > CHECK_POSITIONS_MAX {
            bail!(
                "--check-positions must be in 1..={CHECK_POSITIONS_MAX}, got {}",
                self.check_positions
            );
        }
        Ok(())
    }
}

/// Refuses a target that is not on this machine: the tool is for loopback only.
pub fn check_loopback(url: &str) -> Result<()> {
    let uri: tonic::codegen::http::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{url} is not a loopback address; the load tool only targets this machine");
    }
    Ok(())
}

/// The TLS of every connection to an `https://` server ([`use_tls`]). Process-wide because
/// every connection the tool opens goes to its one `--server`, from scenarios and surges alike.
static CLIENT_TLS: std::sync::OnceLock<ClientTlsConfig> = std::sync::OnceLock::new();

/// Connect to `https://` servers over TLS, trusting certificates `ca` (PEM) signed, and with
/// `identity` (certificate and key, PEM) for a server that requires mutual TLS. Once per
/// process.
pub fn use_tls(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<()> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if CLIENT_TLS.set(tls).is_err() {
        bail!("the client TLS is set once per process");
    }
    Ok(())
}

/// The `authorization` metadata every call sends ([`use_token`]); process-wide like
/// [`CLIENT_TLS`], for the same reason.
static CLIENT_TOKEN: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

/// Send `authorization: Bearer token` on every call, for a server with authentication on
/// (docs/security.md). Once per process.
pub fn use_token(token: &str) -> Result<()> {
    let value = format!("Bearer {token}")
        .parse()
        .context("--token must be printable ASCII (as `inventory token new` makes)")?;
    if CLIENT_TOKEN.set(value).is_err() {
        bail!("the client token is set once per process");
    }
    Ok(())
}

/// Adds the token of [`use_token`], if any, to each call.
#[derive(Clone, Copy, Debug)]
pub struct Bearer;

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = CLIENT_TOKEN.get() {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The client every scenario calls through.
pub type Client = inv_proto::v1::inventory_client::InventoryClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

/// A client over `channel`, sending the token of [`use_token`].
pub fn client(channel: Channel) -> Client {
    inv_proto::v1::inventory_client::InventoryClient::with_interceptor(channel, Bearer)
}

/// An `Endpoint` for `url` with tonic's defaults: over TLS for an `https://` url (see
/// [`use_tls`]).
fn endpoint(url: &str) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    Ok(match (url.starts_with("https://"), CLIENT_TLS.get()) {
        (false, _) => endpoint,
        (true, Some(tls)) => endpoint.tls_config(tls.clone())?,
        (true, None) => bail!("{url} is https: give --ca (the CA that signed its certificate)"),
    })
}

/// One HTTP/2 connection to `url`, as this tool tunes it.
pub async fn connect(url: &str) -> Result<Channel> {
    endpoint(url)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// One HTTP/2 connection to `url` as an ordinary client makes it: tonic's defaults.
pub async fn connect_ordinary(url: &str) -> Result<Channel> {
    endpoint(url)?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// The server a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The inventory server (in process or `--server`).
    Engine,
    /// The constant-answer floor ([`floor`]).
    Floor,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Engine => stats::ENGINE,
            Target::Floor => stats::FLOOR,
        }
    }

    /// The CPU of a window as the rows report it: the called server's and the client's.
    fn cpu(self, used: cpu::CpuUse) -> stats::Cpu {
        stats::Cpu {
            process_s: used.process_s,
            server_s: match self {
                Target::Engine => used.engine_s,
                Target::Floor => Some(used.floor_s),
            },
            client_s: used.client_s,
        }
    }
}

/// Connects to `url` as `options.client` says and shares out the callers' context.
async fn context(
    url: &str,
    options: &Options,
    run: &str,
    pace: Option<Arc<scenarios::Pace>>,
) -> Result<Arc<Ctx>> {
    let channels = match options.client {
        ClientMode::Ordinary => vec![connect_ordinary(url).await?],
        ClientMode::Tuned => {
            let connections = match options.connections {
                0 => options.callers,
                n => n,
            };
            let mut channels = Vec::with_capacity(connections);
            for _ in 0..connections {
                channels.push(connect(url).await?);
            }
            channels
        }
    };
    Ok(Arc::new(Ctx {
        skus: (0..options.skus).map(|i| format!("sku-{i:06}")).collect(),
        options: options.clone(),
        channels,
        url: url.to_owned(),
        run: run.to_owned(),
        pace,
    }))
}

/// Connects, stocks the skus, runs every scenario in order and returns the report's rows.
pub async fn run(url: &str, options: Options) -> Result<Vec<Row>> {
    run_against(url, None, options).await
}

/// As [`run`], and with `floor` (the url of a [`FloorServer`]) each scenario runs against the
/// floor too, right after the engine, with the same callers and settings. The floor is not
/// stocked: it answers constants.
pub async fn run_against(url: &str, floor: Option<&str>, options: Options) -> Result<Vec<Row>> {
    options.validate()?;
    check_loopback(url)?;
    cpu::check(options.engine_cpu)?;
    let run = format!(
        "load-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    // One pacer for both servers: they are measured one after the other.
    let pace = match options.rate.filter(|rate| *rate > 0.0) {
        Some(rate) => Some(Arc::new(scenarios::Pace::start(rate)?)),
        None => None,
    };
    let engine = context(url, &options, &run, pace.clone()).await?;
    scenarios::stock(&engine).await?;
    let mut targets = vec![(Target::Engine, engine)];
    if let Some(floor) = floor {
        check_loopback(floor)?;
        targets.push((Target::Floor, context(floor, &options, &run, pace).await?));
    }

    let mut rows = Vec::new();
    for &scenario in &options.scenarios {
        for (target, ctx) in &targets {
            let first = rows.len();
            rows.extend(run_scenario(ctx, scenario, *target).await?);
            for row in &mut rows[first..] {
                row.server = target.name().to_owned();
            }
        }
    }
    Ok(rows)
}

/// One scenario against one server; its CPU is measured over exactly the callers' run.
async fn run_scenario(ctx: &Arc<Ctx>, scenario: Scenario, target: Target) -> Result<Vec<Row>> {
    let name = scenario.name();
    let (callers, seconds) = (ctx.options.callers, ctx.options.seconds);
    let meter = cpu::CpuMeter::start(ctx.options.engine_cpu);
    let (tally, took) = match scenario {
        Scenario::Check => {
            scenarios::run_callers(ctx, callers, seconds, scenarios::check_caller).await?
        }
        Scenario::CheckSellable => {
            scenarios::run_callers(ctx, callers, seconds, scenarios::check_sellable_caller).await?
        }
        Scenario::Reserve => {
            scenarios::run_callers(ctx, callers, seconds, scenarios::reserve_caller).await?
        }
        Scenario::ReserveOnly => {
            scenarios::run_callers(ctx, callers, seconds, scenarios::reserve_only_caller).await?
        }
        Scenario::Mix => {
            scenarios::run_callers(ctx, callers, seconds, scenarios::mix_caller).await?
        }
        Scenario::SessionCheck | Scenario::SessionReserve => {
            let writes = scenario == Scenario::SessionReserve;
            scenarios::run_callers(ctx, callers, seconds, |ctx, i, deadline| {
                scenarios::session_caller(ctx, i, deadline, writes)
            })
            .await?
        }
        Scenario::Backfill => return backfill(ctx, target).await,
    };
    let cpu = meter.used().map(|used| target.cpu(used));
    Ok(tally.rows(name, took, cpu))
}

/// Half the callers Check, half Reserve and Release: first alone, then beside the backfill.
async fn hot_path(ctx: &Arc<Ctx>) -> Result<(Tally, f64)> {
    let (callers, seconds) = (ctx.options.callers, ctx.options.seconds);
    scenarios::run_callers(ctx, callers, seconds, |ctx, i, deadline| async move {
        if i % 2 == 0 {
            scenarios::check_caller(ctx, i, deadline).await
        } else {
            scenarios::reserve_caller(ctx, i, deadline).await
        }
    })
    .await
}

async fn backfill(ctx: &Arc<Ctx>, target: Target) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let meter = cpu::CpuMeter::start(ctx.options.engine_cpu);
    let (alone, took) = hot_path(ctx).await?;
    let cpu = meter.used().map(|used| target.cpu(used));
    rows.extend(alone.rows("backfill: hot alone", took, cpu));
    let meter = cpu::CpuMeter::start(ctx.options.engine_cpu);

    let bulk = start_backfill(Arc::clone(ctx))?;
    let (beside, took) = hot_path(ctx).await?;
    let (bulk, bulk_took) = bulk.await.context("the backfill thread stopped")??;
    // Hot and bulk calls share the CPU: report the cores used, not a cost per call.
    let cores = meter
        .used()
        .map_or(0.0, |used| used.process_s / took.max(1e-9));
    for mut row in beside
        .rows("backfill: hot + bulk", took, None)
        .into_iter()
        .chain(bulk.rows("backfill: bulk", bulk_took, None))
    {
        row.cores = cores;
        rows.push(row);
    }
    Ok(rows)
}

/// Runs the backfill callers on a thread and runtime of their own, each over its own
/// connection: bulk traffic comes from other systems (stores) than the hot path (checkouts),
/// so it shares neither the hot callers' runtime nor their connections. It still shares the
/// machine's cores, at `--backfill-nice` (as the surge scenarios' ERP thread is niced).
fn start_backfill(ctx: Arc<Ctx>) -> Result<tokio::sync::oneshot::Receiver<Result<(Tally, f64)>>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        // A load-generator thread: its CPU is the client's.
        .name(format!("{}-bulk", cpu::CLIENT_THREADS))
        .spawn(move || {
            cpu::lower_thread_priority(ctx.options.backfill_nice);
            let run = || -> Result<(Tally, f64)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the backfill's runtime")?;
                runtime.block_on(async {
                    let n = ctx.options.backfill_callers;
                    let mut channels = Vec::with_capacity(n);
                    for _ in 0..n {
                        channels.push(connect(&ctx.url).await?);
                    }
                    let seconds = ctx.options.seconds;
                    scenarios::run_callers(&ctx, n, seconds, |ctx, i, deadline| {
                        scenarios::backfill_caller(ctx, channels[i].clone(), i, deadline)
                    })
                    .await
                })
            };
            let _ = done.send(run());
        })
        .context("starting the backfill thread")?;
    Ok(result)
}

pub mod vopr;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario, with the ordinary client, against the engine and the floor in one run:
    /// each gets its rows with both sides' CPU, and the summary judges the goals. Short (about
    /// 5 s): timing is not asserted.
    #[test]
    fn a_floor_run_measures_both_servers() -> Result<()> {
        let server = LocalServer::start(1)?;
        let floor = FloorServer::start(1)?;
        let options = Options {
            callers: 4,
            seconds: 0.3,
            skus: 20,
            pipeline: 1,
            connections: 1,
            backfill_callers: 2,
            backfill_sales: 50,
            client: ClientMode::Ordinary,
            ..Options::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(cpu::CLIENT_THREADS)
            .enable_all()
            .build()?;
        let rows = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                run_against(&server.url(), Some(&floor.url()), options.clone()),
            )
            .await
        })??;
        drop(runtime);
        floor.stop()?;
        server.stop()?;
        for scenario in Scenario::ALL {
            let name = match scenario {
                Scenario::Backfill => "backfill: hot alone",
                other => other.name(),
            };
            for server in [stats::ENGINE, stats::FLOOR] {
                let row = rows
                    .iter()
                    .find(|r| r.server == server && r.scenario == name)
                    .unwrap_or_else(|| panic!("no {server} row for {name} in {rows:#?}"));
                assert!(row.ops > 0, "{row:?}");
                assert!(
                    row.server_cpu_us_per_op.is_some_and(|us| us > 0.0),
                    "{row:?}"
                );
                assert!(
                    row.client_cpu_us_per_op.is_some_and(|us| us > 0.0),
                    "{row:?}"
                );
            }
        }
        for row in rows.iter().filter(|r| r.server == stats::FLOOR) {
            assert!(row.errors.is_empty(), "{row:?}");
        }
        let summary = summary(&rows, &options);
        assert!(summary.contains("unary Check within 1.25x"), "{summary}");
        assert!(
            summary.contains("durable Reserve over the stream"),
            "{summary}"
        );
        Ok(())
    }

    #[test]
    fn the_ordinary_client_calls_over_one_channel_and_may_pipeline() {
        let several_connections = Options {
            client: ClientMode::Ordinary,
            pipeline: 1,
            connections: 4,
            ..Options::default()
        };
        let error = several_connections.validate().unwrap_err().to_string();
        assert!(error.contains("--client ordinary"), "{error}");
        let pipelined = Options {
            client: ClientMode::Ordinary,
            pipeline: 32,
            connections: 1,
            ..Options::default()
        };
        pipelined
            .validate()
            .expect("a pipelined Session over one channel");
        let too_many = Options {
            check_positions: CHECK_POSITIONS_MAX + 1,
            ..Options::default()
        };
        let error = too_many.validate().unwrap_err().to_string();
        assert!(error.contains("--check-positions"), "{error}");
    }
}
