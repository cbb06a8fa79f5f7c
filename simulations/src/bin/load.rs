//! `load`: drives the real server over loopback and reports throughput and latency per
//! scenario (see the `inv_sim` crate docs).
//!
//! ```text
//! cargo run --release -p inv-sim --bin load -- --callers 64 --seconds 5
//! cargo run --release -p inv-sim --bin load -- --scenario check --scenario session-check --json
//! cargo run --release -p inv-sim --bin load -- --server http://127.0.0.1:50051
//! ```

// As in the `inventory` binary (see the workspace Cargo.toml for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::Parser;
use inv_sim::{LocalServer, Options, Scenario};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "load",
    about = "Load and surge simulations against the inventory server over loopback"
)]
struct Args {
    /// Target a server already running at this URL (loopback only) instead of starting one
    /// in process over a temporary data folder.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Concurrent callers per scenario.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// Seconds per scenario (the backfill scenario runs twice this).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Skus stocked and picked uniformly.
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Requests each Session caller keeps in flight.
    #[arg(long, default_value_t = 32)]
    pipeline: usize,
    /// HTTP/2 connections shared round-robin by the callers; 0 gives each caller its own
    /// (measured costlier per call than a few shared ones). One is what a gRPC client process
    /// uses by default (one channel), and measured best for unary latency.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Concurrent RecordSales callers in the backfill scenario.
    #[arg(long, default_value_t = 12)]
    backfill_callers: usize,
    /// Sales per RecordSales batch in the backfill scenario.
    #[arg(long, default_value_t = 1_000)]
    backfill_sales: usize,
    /// Pace the unary scenarios to this many calls a second in total (for latency at a set
    /// load); without it they run closed-loop, as fast as answers come.
    #[arg(long, value_name = "OPS")]
    rate: Option<f64>,
    /// A scenario to run (repeatable); all of them by default.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// The in-process server's budget of bulk calls accepted at once (its default is 2).
    #[arg(long, value_name = "N")]
    server_bulk_max: Option<usize>,
    /// Niceness of the in-process server's bulk lane (its default is 10; 0 turns it off).
    #[arg(long, value_name = "N")]
    server_bulk_nice: Option<i32>,
    /// Runtime worker threads of the in-process server [default: half the cores, at least 1].
    #[arg(long, value_name = "N")]
    server_threads: Option<usize>,
    /// Runtime worker threads of the load generator [default: half the cores, at least 1].
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

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.transparent_huge_pages {
        inv_api::host::disable_transparent_huge_pages().context(
            "turning transparent huge pages off (--transparent-huge-pages leaves them on)",
        )?;
    }
    let server_threads = args.server_threads.unwrap_or_else(half_the_cores).max(1);
    let client_threads = args.client_threads.unwrap_or_else(half_the_cores).max(1);
    let options = Options {
        callers: args.callers,
        seconds: args.seconds,
        skus: args.skus,
        pipeline: args.pipeline,
        connections: args.connections,
        backfill_callers: args.backfill_callers,
        backfill_sales: args.backfill_sales,
        rate: args.rate,
        scenarios: if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios.clone()
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
            Some(LocalServer::start_with(server_threads, config)?)
        }
    };
    let url = match (&args.server, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server is started when none is named"),
    };
    eprintln!(
        "load: {} ({}), {} callers, {} s per scenario, {} client workers",
        url,
        if server.is_some() {
            format!("in process, RedbLog, Sync durability, {server_threads} server workers")
        } else {
            "external".to_owned()
        },
        options.callers,
        options.seconds,
        client_threads
    );
    let runtime = inv_api::host::runtime_builder(client_threads)
        .thread_name("load")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    // Each scenario stops at its deadline; this only guards against a server that stops
    // answering, so the tool always ends by itself.
    let budget = Duration::from_secs_f64(
        options.seconds * (options.scenarios.len() + 1) as f64 * 2.0 + 60.0,
    );
    let rows = runtime.block_on(async {
        match tokio::time::timeout(budget, inv_sim::run(&url, options.clone())).await {
            Ok(rows) => rows,
            Err(_) => Err(anyhow::anyhow!("the run did not finish within {budget:?}")),
        }
    });
    drop(runtime);
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
