//! Load and surge simulations: drive the real server over loopback and report throughput and
//! latency.
//!
//! The `load` binary starts the real server in process (`inv_api::serve` over a `RedbLog` with
//! `Sync` durability in a temporary data folder, on `127.0.0.1:0`; see [`LocalServer`]) or
//! targets one at `--server URL` (loopback only), stocks `--skus` skus through Adjust, then runs
//! each scenario for `--seconds` with `--callers` concurrent callers and reports, per
//! operation, throughput, latency percentiles (p50, p99, p99.9, max) and errors by gRPC code.
//! Every run stops by itself: the default run (seven scenarios, 5 s each, the backfill scenario
//! twice that) takes about 45 s.
//!
//! # Scenarios
//! - `check`: unary Check of one position, back to back.
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
//! # Layout
//! - `stats`: per-operation histograms and error counts; the report's rows and table.
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

pub mod quota_flood;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod surge;

pub use inv_proto::v1 as pb;
pub use server::LocalServer;
pub use stats::{OpStats, Row, Tally};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use scenarios::Ctx;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    Reserve,
    ReserveOnly,
    Mix,
    SessionCheck,
    SessionReserve,
    Backfill,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Check,
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
            Scenario::Reserve => "reserve",
            Scenario::ReserveOnly => "reserve-only",
            Scenario::Mix => "mix",
            Scenario::SessionCheck => "session-check",
            Scenario::SessionReserve => "session-reserve",
            Scenario::Backfill => "backfill",
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
    /// TTL of every hold placed, in ms.
    pub ttl_ms: u64,
    /// Total calls a second of the unary scenarios (`check`, `reserve` counting reserves,
    /// `mix`, and the backfill's hot path), shared evenly by the callers; `None` runs them
    /// closed-loop, as fast as answers come. With 64 closed-loop callers the mean latency is
    /// 64 / throughput (Little's law), so latency targets are measured at a set rate.
    pub rate: Option<f64>,
    /// The scenarios to run, in order.
    pub scenarios: Vec<Scenario>,
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
            ttl_ms: 300_000,
            rate: None,
            scenarios: Scenario::ALL.to_vec(),
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

/// One HTTP/2 connection to `url`: over TLS for an `https://` url (see [`use_tls`]).
pub async fn connect(url: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    let endpoint = match (url.starts_with("https://"), CLIENT_TLS.get()) {
        (false, _) => endpoint,
        (true, Some(tls)) => endpoint.tls_config(tls.clone())?,
        (true, None) => bail!("{url} is https: give --ca (the CA that signed its certificate)"),
    };
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Connects, stocks the skus, runs every scenario in order and returns the report's rows.
pub async fn run(url: &str, options: Options) -> Result<Vec<Row>> {
    options.validate()?;
    check_loopback(url)?;
    let connections = match options.connections {
        0 => options.callers,
        n => n,
    };
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(url).await?);
    }
    let run = format!(
        "load-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let options_rate = options.rate.filter(|rate| *rate > 0.0);
    let ctx = Arc::new(Ctx {
        skus: (0..options.skus).map(|i| format!("sku-{i:06}")).collect(),
        options,
        channels,
        url: url.to_owned(),
        run,
        pace: match options_rate {
            Some(rate) => Some(scenarios::Pace::start(rate)?),
            None => None,
        },
    });
    scenarios::stock(&ctx).await?;

    let mut rows = Vec::new();
    let (callers, seconds) = (ctx.options.callers, ctx.options.seconds);
    for &scenario in &ctx.options.scenarios {
        let name = scenario.name();
        let cpu = CpuMeter::start();
        match scenario {
            Scenario::Check => {
                let (tally, took) =
                    scenarios::run_callers(&ctx, callers, seconds, scenarios::check_caller).await?;
                rows.extend(tally.rows(name, took, cpu.used()));
            }
            Scenario::Reserve => {
                let (tally, took) =
                    scenarios::run_callers(&ctx, callers, seconds, scenarios::reserve_caller)
                        .await?;
                rows.extend(tally.rows(name, took, cpu.used()));
            }
            Scenario::ReserveOnly => {
                let (tally, took) =
                    scenarios::run_callers(&ctx, callers, seconds, scenarios::reserve_only_caller)
                        .await?;
                rows.extend(tally.rows(name, took, cpu.used()));
            }
            Scenario::Mix => {
                let (tally, took) =
                    scenarios::run_callers(&ctx, callers, seconds, scenarios::mix_caller).await?;
                rows.extend(tally.rows(name, took, cpu.used()));
            }
            Scenario::SessionCheck | Scenario::SessionReserve => {
                let writes = scenario == Scenario::SessionReserve;
                let (tally, took) =
                    scenarios::run_callers(&ctx, callers, seconds, |ctx, i, deadline| {
                        scenarios::session_caller(ctx, i, deadline, writes)
                    })
                    .await?;
                rows.extend(tally.rows(name, took, cpu.used()));
            }
            Scenario::Backfill => rows.extend(backfill(&ctx).await?),
        }
    }
    Ok(rows)
}

/// Process CPU time over a stretch of the run.
struct CpuMeter(Option<f64>);

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter(stats::process_cpu_seconds())
    }

    fn used(&self) -> Option<f64> {
        Some(stats::process_cpu_seconds()? - self.0?)
    }
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

async fn backfill(ctx: &Arc<Ctx>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let cpu = CpuMeter::start();
    let (alone, took) = hot_path(ctx).await?;
    rows.extend(alone.rows("backfill: hot alone", took, cpu.used()));
    let cpu = CpuMeter::start();

    let bulk = start_backfill(Arc::clone(ctx))?;
    let (beside, took) = hot_path(ctx).await?;
    let (bulk, bulk_took) = bulk.await.context("the backfill thread stopped")??;
    // Hot and bulk calls share the CPU: report the cores used, not a cost per call.
    let cores = cpu.used().map_or(0.0, |used| used / took.max(1e-9));
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
/// machine's cores, at the same priority as everything else.
fn start_backfill(ctx: Arc<Ctx>) -> Result<tokio::sync::oneshot::Receiver<Result<(Tally, f64)>>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load-bulk".into())
        .spawn(move || {
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

/// Floors from the issue, and Redis on this machine for reference.
const CHECK_FLOOR_PER_S: f64 = 50_000.0;
const CHECK_P99_FLOOR_US: u64 = 1_000;
const RESERVE_FLOOR_PER_S: f64 = 40_000.0;
const RESERVE_P99_FLOOR_US: u64 = 5_000;
const REDIS_CHECKS_PER_S: f64 = 236_000.0;
const REDIS_RESERVES_PER_S: f64 = 39_000.0;

fn find<'a>(rows: &'a [Row], scenario: &str, op: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.scenario == scenario && r.op == op)
}

/// How the run compares with the floors and with Redis.
pub fn summary(rows: &[Row], options: &Options) -> String {
    let mut out = String::new();
    let verdict = |ok: bool| if ok { "meets" } else { "MISSES" };
    let _ = match options.rate {
        Some(rate) => writeln!(
            out,
            "unary scenarios paced at {rate:.0} calls/s in total over {} callers",
            options.callers
        ),
        None => writeln!(
            out,
            "unary scenarios closed-loop: {} callers each wait for their answer, so mean \
             latency = {} / throughput (Little's law); use --rate for latency at a set load",
            options.callers, options.callers
        ),
    };
    if let Some(r) = find(rows, "check", "check") {
        let ok = r.ops_per_s >= CHECK_FLOOR_PER_S && r.p99_us <= CHECK_P99_FLOOR_US;
        let _ = writeln!(
            out,
            "unary Check: {:.0}/s, p99 {:.3} ms: {} the floor (>= {CHECK_FLOOR_PER_S:.0}/s, \
             p99 <= 1 ms)",
            r.ops_per_s,
            r.p99_us as f64 / 1e3,
            verdict(ok)
        );
    }
    if let Some(r) = find(rows, "reserve-only", "reserve") {
        let ok = r.ops_per_s >= RESERVE_FLOOR_PER_S && r.p99_us <= RESERVE_P99_FLOOR_US;
        let _ = writeln!(
            out,
            "unary durable Reserve (reserve-only): {:.0}/s, p99 {:.3} ms: {} the floor \
             (>= {RESERVE_FLOOR_PER_S:.0}/s, p99 <= 5 ms)",
            r.ops_per_s,
            r.p99_us as f64 / 1e3,
            verdict(ok)
        );
    }
    // Each caller spends half its time releasing, so this is not the floor's measure; it
    // shows Release costs what Reserve does.
    if let (Some(r), Some(w)) = (
        find(rows, "reserve", "reserve"),
        find(rows, "reserve", "release"),
    ) {
        let _ = writeln!(
            out,
            "unary durable Reserve + Release pairs: {:.0} pairs/s = {:.0} durable writes/s, \
             p99 {:.3} / {:.3} ms",
            r.ops_per_s,
            r.ops_per_s + w.ops_per_s,
            r.p99_us as f64 / 1e3,
            w.p99_us as f64 / 1e3,
        );
    }
    if let Some(r) = find(rows, "session-check", "check") {
        let _ = writeln!(
            out,
            "Session checks: {:.0}/s = {:.0}% of Redis' single-key checks ({REDIS_CHECKS_PER_S:.0}/s)",
            r.ops_per_s,
            100.0 * r.ops_per_s / REDIS_CHECKS_PER_S
        );
    }
    if let Some(r) = find(rows, "session-reserve", "reserve") {
        let writes =
            r.ops_per_s + find(rows, "session-reserve", "release").map_or(0.0, |w| w.ops_per_s);
        let _ = writeln!(
            out,
            "Session durable reserves: {:.0}/s ({writes:.0} durable writes/s) = {:.0}% of Redis' \
             Lua reserves without fsync ({REDIS_RESERVES_PER_S:.0}/s)",
            r.ops_per_s,
            100.0 * r.ops_per_s / REDIS_RESERVES_PER_S
        );
    }
    for op in ["check", "reserve"] {
        if let (Some(a), Some(b)) = (
            find(rows, "backfill: hot alone", op),
            find(rows, "backfill: hot + bulk", op),
        ) {
            let _ = writeln!(
                out,
                "hot-path {op} beside the backfill: p99 {:.3} -> {:.3} ms, {:.0} -> {:.0}/s",
                a.p99_us as f64 / 1e3,
                b.p99_us as f64 / 1e3,
                a.ops_per_s,
                b.ops_per_s
            );
        }
    }
    if let Some(r) = find(rows, "backfill: bulk", "record_sales") {
        let refused = r.errors.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "backfill: {} RecordSales batches of {} ({:.0} sales/s) by {} callers; {refused} \
             calls refused RESOURCE_EXHAUSTED (bulk budget in use) and resent",
            r.ops,
            options.backfill_sales,
            r.ops_per_s * options.backfill_sales as f64,
            options.backfill_callers
        );
    }
    out
}
pub mod vopr;
