//! `load`: drives the real server over loopback and reports throughput and latency per
//! scenario (see the `inv_sim` crate docs).
//!
//! ```text
//! cargo run --release -p inv-sim --bin load -- --callers 64 --seconds 5
//! cargo run --release -p inv-sim --bin load -- --scenario check --scenario session-check --json
//! cargo run --release -p inv-sim --bin load -- --server http://127.0.0.1:50051
//! cargo run --release -p inv-sim --bin load -- --server https://127.0.0.1:50051 --ca ca.pem
//! INVENTORY_TOKEN=inv_... cargo run --release -p inv-sim --bin load -- --server http://127.0.0.1:50051
//! ```
//!
//! Against the floor (a constant-answer server of the same service, `inv_sim::floor`), in the
//! same run, with the client a connector team would write; every row then has the server's
//! and the client's CPU per call (`--server-pid` for a `--server` in another process):
//!
//! ```text
//! cargo run --release -p inv-sim --bin load -- --client ordinary --floor --scenario check \
//!     --scenario session-check --scenario reserve-only --scenario session-reserve --seconds 5
//! cargo run --release -p inv-sim --bin load -- --server http://127.0.0.1:50051 --server-pid 4242 --floor
//! ```
//!
//! The surge scenarios (`flash-sale`, `store-reconnect`, `return-wave`, `holiday-surge`,
//! `reconcile-under-load`; see
//! `inv_sim::surge` and docs/surge.md) verify the server's state afterwards and exit 1 if it is
//! wrong:
//!
//! ```text
//! cargo run --release -p inv-sim --bin load -- --scenario flash-sale --report fs.json --chart fs.svg
//! cargo run -p inv-sim --bin load -- --ci --scenario store-reconnect
//! ```
//!
//! `quota-flood` (`inv_sim::quota_flood`, docs/security.md "Quotas") runs alone and in process
//! only, and exits 1 if the flooding principal got more than its quota or another call failed:
//!
//! ```text
//! cargo run --release -p inv-sim --bin load -- --scenario quota-flood --seconds 5
//! ```

// As in the `inventory` binary (see the workspace Cargo.toml for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::Parser;
use inv_sim::quota_flood::QuotaFloodOptions;
use inv_sim::surge::{Report, SurgeOptions, SurgeScenario};
use inv_sim::{ClientMode, EngineCpu, FloorServer, LocalServer, Options, Scenario};
use std::path::PathBuf;
use std::time::Duration;

/// A scenario named on the command line: one that measures, or a surge that also verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Measure(Scenario),
    Surge(SurgeScenario),
    QuotaFlood,
}

fn parse_scenario(name: &str) -> Result<Named, String> {
    if name == "quota-flood" {
        return Ok(Named::QuotaFlood);
    }
    if let Some(surge) = SurgeScenario::from_name(name) {
        return Ok(Named::Surge(surge));
    }
    <Scenario as clap::ValueEnum>::from_str(name, false)
        .map(Named::Measure)
        .map_err(|_| {
            let mut names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            names.push("quota-flood");
            names.extend(SurgeScenario::ALL.iter().map(|s| s.name()));
            format!("unknown scenario {name:?}; one of: {}", names.join(", "))
        })
}

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "Load and surge simulations against the inventory server over loopback"
)]
struct Args {
    /// Target a server already running at this URL (loopback only) instead of starting one
    /// in process over a temporary data folder.
    #[arg(long, visible_alias = "target", value_name = "URL")]
    server: Option<String>,
    /// With an https:// --server: connect over TLS, trusting the server's certificate if
    /// this CA (PEM) signed it.
    #[arg(long, value_name = "FILE", requires = "server")]
    ca: Option<std::path::PathBuf>,
    /// With --ca: a client certificate (PEM) for a server that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["ca", "key"])]
    cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Bearer token sent on every call, for a --server with authentication on
    /// (docs/security.md).
    #[arg(
        long,
        env = "INVENTORY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
    /// With --server: the server's process id, to read its CPU time (/proc/PID/stat) for the
    /// server CPU per call; without it that column is unknown.
    #[arg(long, value_name = "PID", requires = "server")]
    server_pid: Option<u32>,
    /// How the load generator calls: `tuned` (this tool's settings: --client-threads,
    /// --connections, --pipeline) or `ordinary` (what a connector team writes: a worker per
    /// core, one Channel with tonic's defaults, one call in flight per caller, Session callers
    /// too unless --pipeline is given).
    #[arg(long, value_enum, default_value_t = ClientMode::Tuned)]
    client: ClientMode,
    /// Also run every measuring scenario against the floor, a constant-answer server of the
    /// same service started in process (same worker count as the in-process server), right
    /// after the engine; the summary then gives the engine's server CPU per call against the
    /// floor's.
    #[arg(long)]
    floor: bool,
    /// Concurrent callers per scenario [default: 64; surge: 64, --ci 8].
    #[arg(long)]
    callers: Option<usize>,
    /// Seconds per scenario (the backfill scenario runs twice this).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Skus stocked and picked uniformly [default: 1000; surge (store-reconnect, return-wave):
    /// 2000, --ci 200].
    #[arg(long)]
    skus: Option<usize>,
    /// Requests each Session caller keeps in flight [default: 32; --client ordinary: 1].
    #[arg(long)]
    pipeline: Option<usize>,
    /// HTTP/2 connections shared round-robin by the callers; 0 gives each caller its own
    /// (measured costlier per call than a few shared ones). One is what a gRPC client process
    /// uses by default (one channel), and measured best for unary latency.
    /// [default: 1; surge: 4, --ci 2; --client ordinary: 1]
    #[arg(long)]
    connections: Option<usize>,
    /// Concurrent RecordSales callers in the backfill scenario.
    #[arg(long, default_value_t = 12)]
    backfill_callers: usize,
    /// Sales per RecordSales batch in the backfill scenario.
    #[arg(long, default_value_t = 1_000)]
    backfill_sales: usize,
    /// Niceness of the backfill callers' thread (0-19): the stores are other machines, so
    /// their client work runs below the hot callers' priority, as the surge scenarios' ERP
    /// does; 0 runs it beside them.
    #[arg(long, default_value_t = inv_sim::BACKFILL_NICE, value_parser = clap::value_parser!(i32).range(0..=19))]
    backfill_nice: i32,
    /// Positions per Check, unary and over the Session (1-1000): 1 is a cart line, more a
    /// listing page checked in one call (docs/clients.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=inv_sim::CHECK_POSITIONS_MAX as u64))]
    check_positions: u64,
    /// Pace the unary scenarios to this many calls a second in total (for latency at a set
    /// load); without it they run closed-loop, as fast as answers come.
    #[arg(long, value_name = "OPS")]
    rate: Option<f64>,
    /// A scenario to run (repeatable); every measuring one by default. Measuring: check,
    /// check-sellable, reserve, reserve-only, mix, session-check, session-reserve, backfill.
    /// Surge (verify the server's state afterwards; exit 1 if it is wrong): flash-sale,
    /// store-reconnect, return-wave, holiday-surge, reconcile-under-load. quota-flood (alone,
    /// in process only: it refuses --server and --token, and makes its own principals and
    /// tokens): --callers [default 63] well-behaved callers alone, then beside one principal
    /// flooding at --flood-rate; exit 1 if the flood got more than its quota or another call
    /// failed.
    #[arg(long = "scenario", value_parser = parse_scenario)]
    scenarios: Vec<Named>,
    #[command(flatten)]
    surge: SurgeArgs,
    /// quota-flood: the flooding principal's calls_per_second, and its burst.
    #[arg(long, default_value_t = 500)]
    flood_quota: u32,
    /// quota-flood: Checks a second the flooding principal sends, open loop [default: 10x
    /// --flood-quota].
    #[arg(long, value_name = "OPS")]
    flood_rate: Option<f64>,
    /// The in-process server's budget of bulk calls accepted at once (its default is 2).
    #[arg(long, value_name = "N")]
    server_bulk_max: Option<usize>,
    /// Niceness of the in-process server's bulk lane (its default is 10; 0 turns it off).
    #[arg(long, value_name = "N")]
    server_bulk_nice: Option<i32>,
    /// Percent of one core the in-process server's bulk lane may use while the hot path is
    /// busy (its default is 25; 100 turns pacing off).
    #[arg(long, value_name = "PERCENT")]
    server_bulk_percent: Option<u32>,
    /// Run the in-process server's bulk lane in the idle scheduling class (its --bulk-idle).
    #[arg(long)]
    server_bulk_idle: bool,
    /// Runtime worker threads of the in-process server [default: half the cores, at least 1].
    #[arg(long, value_name = "N")]
    server_threads: Option<usize>,
    /// Runtime worker threads of the load generator [default: half the cores, at least 1;
    /// --client ordinary: one per core].
    #[arg(long, value_name = "N")]
    client_threads: Option<usize>,
    /// Leave transparent huge pages on for this process, as the server's
    /// --transparent-huge-pages does (off by default in both; see `inv_api::host`).
    #[arg(long)]
    transparent_huge_pages: bool,
    /// Print the rows as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Half the machine's cores: the server and the load generator share them, and two runtimes
/// with a worker per core each keep twice as many threads busy as there are cores, so every
/// call risks waiting out a scheduler time slice (measured on 2 cores: Check p99 ~4.7 ms with
/// 2 + 2 workers, ~1.1 ms with 1 + 1, at higher throughput).
fn half_the_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The surge scenarios' sizes and outputs. Every size defaults to the full size (or, with
/// `--ci`, the CI size); naming one overrides that one only.
#[derive(clap::Args, Debug)]
struct SurgeArgs {
    /// Surge: start from the CI sizes (every scenario in seconds) instead of the full ones.
    #[arg(long)]
    ci: bool,
    /// Surge: write the report(s) as JSON here (`NAME-SCENARIO.json` when several run).
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
    /// Surge: draw throughput and p99 over time as SVG here (`NAME-SCENARIO.svg` when several).
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Surge: seed of every random choice [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// flash-sale: buyers, one unit each [default: 10000, --ci 400].
    #[arg(long)]
    buyers: Option<usize>,
    /// flash-sale: units of the hot sku [default: 1000, --ci 50].
    #[arg(long)]
    stock: Option<u64>,
    /// flash-sale: Session streams [default: 8, --ci 2].
    #[arg(long)]
    sessions: Option<usize>,
    /// flash-sale: percent of buyers on Session streams [default: 50].
    #[arg(long)]
    session_pct: Option<u32>,
    /// flash-sale: percent of requests retried with the same key [default: 10].
    #[arg(long)]
    retry_pct: Option<u32>,
    /// store-reconnect, holiday-surge: stores [default: 300, --ci 12].
    #[arg(long)]
    stores: Option<usize>,
    /// store-reconnect: sales in each store's backlog [default: 200, --ci 40].
    #[arg(long)]
    sales_per_store: Option<usize>,
    /// store-reconnect, holiday-surge: sales per batch [default: 25, --ci 8].
    #[arg(long)]
    batch_sales: Option<usize>,
    /// Percent of batches resent as duplicates [default: 10].
    #[arg(long)]
    dup_pct: Option<u32>,
    /// holiday-surge: skus in the catalogue [default: 100000, --ci 1000].
    #[arg(long)]
    catalog_skus: Option<usize>,
    /// return-wave: orders before the returns [default: 20000, --ci 300].
    #[arg(long)]
    orders: Option<usize>,
    /// return-wave: percent of orders returned [default: 40].
    #[arg(long)]
    return_pct: Option<u32>,
    /// holiday-surge: length of the ramp in seconds [default: 60, --ci 5].
    #[arg(long)]
    duration_secs: Option<f64>,
    /// holiday-surge: marketplace calls a second at the start [default: 500, --ci 60].
    #[arg(long)]
    base_rate: Option<f64>,
    /// holiday-surge: the rate at the end of the ramp, as a multiple of --base-rate
    /// [default: 10].
    #[arg(long)]
    peak_factor: Option<f64>,
    /// holiday-surge: TTL of a cart's hold in ms [default: 5000, --ci 1500].
    #[arg(long)]
    ttl_ms: Option<u64>,
    /// holiday-surge: bulk backfill callers [default: 2, --ci 1].
    #[arg(long)]
    bulk_callers: Option<usize>,
    /// holiday-surge: fail the verification if the hot path's p99 (check, reserve, commit) in
    /// any quarter of the ramp exceeds this many ms [default: reported, not checked].
    #[arg(long, value_name = "MS")]
    hot_p99_ms_max: Option<f64>,
    /// reconcile-under-load: positions stocked and rows of the FULL snapshot pushed
    /// [default: 1000000, --ci 20000].
    #[arg(long)]
    snapshot_rows: Option<usize>,
    /// reconcile-under-load: hot-path calls a second, steady through the run [default: 1000,
    /// --ci 400].
    #[arg(long)]
    hot_rate: Option<f64>,
    /// reconcile-under-load: seconds measured before the push and after the reconciliation
    /// [default: 10, --ci 2].
    #[arg(long)]
    calm_secs: Option<f64>,
}

impl SurgeArgs {
    fn options(&self, args: &Args) -> SurgeOptions {
        let mut o = if self.ci {
            SurgeOptions::ci()
        } else {
            SurgeOptions::default()
        };
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = self.$field { o.$field = v; })*};
        }
        set!(
            seed,
            buyers,
            stock,
            sessions,
            session_pct,
            retry_pct,
            stores,
            sales_per_store,
            batch_sales,
            dup_pct,
            catalog_skus,
            orders,
            return_pct,
            duration_secs,
            base_rate,
            peak_factor,
            ttl_ms,
            bulk_callers,
            snapshot_rows,
            hot_rate,
            calm_secs
        );
        if self.hot_p99_ms_max.is_some() {
            o.hot_p99_ms_max = self.hot_p99_ms_max;
        }
        if let Some(v) = args.callers {
            o.callers = v;
        }
        if let Some(v) = args.skus {
            o.skus = v;
        }
        if let Some(v) = args.connections {
            o.connections = v;
        }
        o
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.transparent_huge_pages {
        inv_api::host::disable_transparent_huge_pages().context(
            "turning transparent huge pages off (--transparent-huge-pages leaves them on)",
        )?;
    }
    if let Some(ca) = &args.ca {
        let identity = args.cert.as_deref().zip(args.key.as_deref());
        inv_sim::use_tls(ca, identity)?;
    }
    if let Some(token) = &args.token {
        inv_sim::use_token(token)?;
    }
    if args.scenarios.contains(&Named::QuotaFlood) {
        if args.scenarios.len() != 1 {
            anyhow::bail!("run quota-flood on its own");
        }
        if args.server.is_some() || args.token.is_some() {
            anyhow::bail!(
                "quota-flood runs in process only (it starts the server with its own principals \
                 and tokens): drop --server and --token"
            );
        }
        return quota_flood_main(&args);
    }
    let surges: Vec<SurgeScenario> = args
        .scenarios
        .iter()
        .filter_map(|n| match n {
            Named::Surge(s) => Some(*s),
            Named::Measure(_) | Named::QuotaFlood => None,
        })
        .collect();
    if !surges.is_empty() {
        if surges.len() != args.scenarios.len() {
            anyhow::bail!("run surge scenarios and measuring scenarios in separate runs");
        }
        let passed = surge_main(&args, &surges)?;
        if !passed {
            std::process::exit(1);
        }
        return Ok(());
    }
    let server_threads = args.server_threads.unwrap_or_else(half_the_cores).max(1);
    let ordinary = args.client == ClientMode::Ordinary;
    if ordinary && args.client_threads.is_some() {
        anyhow::bail!(
            "--client ordinary runs a worker per core: drop --client-threads or use --client tuned"
        );
    }
    let client_threads = if ordinary {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.client_threads.unwrap_or_else(half_the_cores).max(1)
    };
    let defaults = Options::default();
    let options = Options {
        callers: args.callers.unwrap_or(defaults.callers),
        seconds: args.seconds,
        skus: args.skus.unwrap_or(defaults.skus),
        pipeline: args
            .pipeline
            .unwrap_or(if ordinary { 1 } else { defaults.pipeline }),
        connections: args
            .connections
            .unwrap_or(if ordinary { 1 } else { defaults.connections }),
        client: args.client,
        engine_cpu: match (&args.server, args.server_pid) {
            (None, _) => EngineCpu::InProcess,
            (Some(_), Some(pid)) => EngineCpu::Pid(pid),
            (Some(_), None) => EngineCpu::Unknown,
        },
        backfill_callers: args.backfill_callers,
        backfill_sales: args.backfill_sales,
        backfill_nice: args.backfill_nice,
        check_positions: args.check_positions as usize,
        rate: args.rate,
        scenarios: if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios
                .iter()
                .filter_map(|n| match n {
                    Named::Measure(s) => Some(*s),
                    Named::Surge(_) | Named::QuotaFlood => None,
                })
                .collect()
        },
        ..Options::default()
    };
    options.validate()?;
    if let Some(url) = &args.server {
        inv_sim::check_loopback(url)?;
    }
    let server = match &args.server {
        Some(_) => None,
        None => {
            let mut config = inv_api::ServerConfig::default();
            if let Some(n) = args.server_bulk_max {
                config.bulk_in_flight_max = n;
            }
            if let Some(n) = args.server_bulk_nice {
                config.bulk_nice = n;
            }
            if let Some(percent) = args.server_bulk_percent {
                config.bulk_percent_under_load = percent;
            }
            config.bulk_idle |= args.server_bulk_idle;
            Some(LocalServer::start_with(server_threads, config)?)
        }
    };
    let url = match (&args.server, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server is started when none is named"),
    };
    let floor = if args.floor {
        Some(FloorServer::start(server_threads)?)
    } else {
        None
    };
    eprintln!(
        "load: {} ({}), {}{} callers, {} s per scenario, {} client, {} client workers",
        url,
        if server.is_some() {
            format!("in process, RedbLog, Sync durability, {server_threads} server workers")
        } else {
            "external".to_owned()
        },
        match &floor {
            Some(floor) => format!(
                "floor {} ({server_threads} workers, same run), ",
                floor.url()
            ),
            None => String::new(),
        },
        options.callers,
        options.seconds,
        options.client.name(),
        client_threads
    );
    let runtime = client_runtime(args.client, client_threads)?;
    // Each scenario stops at its deadline; this only guards against a server that stops
    // answering, so the tool always ends by itself.
    let targets = if floor.is_some() { 2.0 } else { 1.0 };
    let budget = Duration::from_secs_f64(
        options.seconds * (options.scenarios.len() + 1) as f64 * 2.0 * targets + 60.0,
    );
    let floor_url = floor.as_ref().map(FloorServer::url);
    let rows = runtime.block_on(async {
        let run = inv_sim::run_against(&url, floor_url.as_deref(), options.clone());
        match tokio::time::timeout(budget, run).await {
            Ok(rows) => rows,
            Err(_) => Err(anyhow::anyhow!("the run did not finish within {budget:?}")),
        }
    });
    drop(runtime);
    if let Some(floor) = floor {
        floor.stop()?;
    }
    if let Some(server) = server {
        server.stop()?;
    }
    let rows = rows?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", inv_sim::stats::table(&rows));
        println!();
        print!("{}", inv_sim::summary(&rows, &options));
    }
    Ok(())
}

/// The load generator's runtime, its threads named so their CPU time is the client's
/// (`inv_sim::cpu`): for the ordinary client a multi-thread runtime with `workers` (a worker
/// per core), as `#[tokio::main]` makes; for the tuned one `inv_api::host::runtime_builder`
/// (one worker is a current-thread runtime on the main thread).
fn client_runtime(client: ClientMode, workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut builder = match client {
        ClientMode::Ordinary => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        ClientMode::Tuned => inv_api::host::runtime_builder(workers),
    };
    builder
        .thread_name(inv_sim::cpu::CLIENT_THREADS)
        .enable_all()
        .build()
        .context("starting the load generator's runtime")
}

/// Runs quota-flood, prints its rows and summary; exits 1 if its verification failed.
fn quota_flood_main(args: &Args) -> Result<()> {
    let defaults = QuotaFloodOptions::default();
    let options = QuotaFloodOptions {
        callers: args.callers.unwrap_or(defaults.callers),
        seconds: args.seconds,
        skus: args.skus.unwrap_or(defaults.skus),
        connections: args.connections.unwrap_or(defaults.connections),
        flood_quota: args.flood_quota,
        flood_rate: args.flood_rate,
        server_threads: args.server_threads.unwrap_or_else(half_the_cores).max(1),
        client_threads: args.client_threads.unwrap_or_else(half_the_cores).max(1),
    };
    options.validate()?;
    eprintln!(
        "load: quota-flood in process (RedbLog, Sync durability, authentication on, {} server \
         workers), {} normal callers, then 1 flood caller at {:.0}/s (quota {}/s), {} s per \
         phase, {} client workers",
        options.server_threads,
        options.callers,
        options.flood_rate(),
        options.flood_quota,
        options.seconds,
        options.client_threads
    );
    let outcome = inv_sim::quota_flood::run(&options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.rows)?);
        eprint!("{}", outcome.summary());
    } else {
        print!("{}", inv_sim::stats::table(&outcome.rows));
        println!();
        print!("{}", outcome.summary());
    }
    if !outcome.passed() {
        std::process::exit(1);
    }
    Ok(())
}

/// Longest a whole surge run may take; it only guards against a server that stops answering.
const SURGE_BUDGET: Duration = Duration::from_secs(3_600);

/// Runs the surge scenarios in order against one server, prints each summary, writes the
/// reports and charts; returns whether every verification passed.
fn surge_main(args: &Args, scenarios: &[SurgeScenario]) -> Result<bool> {
    let options = args.surge.options(args);
    options.validate()?;
    if let Some(url) = &args.server {
        inv_sim::check_loopback(url)?;
    }
    let server_threads = args.server_threads.unwrap_or_else(half_the_cores).max(1);
    let client_threads = args.client_threads.unwrap_or_else(half_the_cores).max(1);
    let server = match &args.server {
        Some(_) => None,
        None => Some(LocalServer::start(server_threads)?),
    };
    let url = match (&args.server, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server is started when none is named"),
    };
    eprintln!(
        "load: surge {} against {url} ({})",
        scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        if server.is_some() {
            format!("in process, RedbLog, Sync durability, {server_threads} server workers")
        } else {
            "external".to_owned()
        }
    );
    let runtime = client_runtime(ClientMode::Tuned, client_threads)?;
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for &scenario in scenarios {
            let report =
                tokio::time::timeout(SURGE_BUDGET, inv_sim::surge::run(&url, scenario, &options))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{} did not finish within {SURGE_BUDGET:?}",
                            scenario.name()
                        )
                    })??;
            print!("{}", report.summary());
            println!();
            reports.push(report);
        }
        anyhow::Ok(reports)
    });
    drop(runtime);
    if let Some(server) = server {
        server.stop()?;
    }
    let reports = reports?;
    let several = reports.len() > 1;
    if let Some(path) = &args.surge.report {
        if several {
            for report in &reports {
                let path = inv_sim::surge::report::path_for(path, &report.scenario, true);
                Report::write_json(std::slice::from_ref(report), &path)?;
                eprintln!("load: wrote {}", path.display());
            }
        } else {
            Report::write_json(&reports, path)?;
            eprintln!("load: wrote {}", path.display());
        }
    }
    if let Some(path) = &args.surge.chart {
        for report in &reports {
            let path = inv_sim::surge::report::path_for(path, &report.scenario, several);
            report.write_chart(&path)?;
            eprintln!("load: wrote {}", path.display());
        }
    }
    for report in &reports {
        println!("{}", report.headline());
    }
    Ok(reports.iter().all(|r| r.verification.passed))
}
