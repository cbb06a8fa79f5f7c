//! `inventory`: the engine's command-line entry point.
//!
//! - `inventory` or `inventory serve`: open the data folder's event log, recover the ledger
//!   from it, and serve the gRPC API until SIGINT or SIGTERM, then drain and flush.
//! - `inventory demo`: an in-process flash sale against a real ledger (see `demo.rs`).
//! - `inventory check`, `reserve`, `commit`, ... : a client of a running server, with tables
//!   or `--json` and exit codes scripts can rely on (see `cli.rs`).
//!
//! Settings come from, in order of precedence: flags, `INVENTORY_*` environment variables, the
//! TOML file named by `--config`, and the defaults. Everything here is wiring: the server
//! itself is `inv_api::serve`.

// glibc's malloc is slow when memory allocated on one thread is freed on another, which is
// what every write does (built by a request, dropped by the log writer); see Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod demo;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use inv_api::ServerConfig;
use inv_engine::log::redb::Durability;
use inv_engine::{Engine, LedgerConfig, RedbLog, RedbLogOptions, SystemClock};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "inventory",
    version,
    about = "Inventory availability and reservation engine",
    long_about = "Inventory availability and reservation engine.\n\n\
        With no subcommand (or `serve`), serves the gRPC API over the data folder. The client \
        subcommands (check, reserve, commit, ...) talk to a running server: --server or \
        INVENTORY_SERVER says where.",
    after_help = cli::EXIT_CODES_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// With no subcommand, `inventory` serves (these are `serve`'s flags).
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gRPC API over the data folder (the default).
    Serve(ServeArgs),
    /// Play an in-process flash sale against a real ledger and check its invariants.
    Demo(demo::DemoArgs),
    #[command(flatten)]
    Client(cli::ClientCmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityMode {
    /// Acknowledge a write only after its fsync (group commit shares one fsync across writers).
    Sync,
    /// Acknowledge once queued; fsync every --flush-interval-ms. A power loss can lose that
    /// window of acknowledged writes; a process crash loses nothing the writer committed.
    Async,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug, Default)]
struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "INVENTORY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "INVENTORY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics endpoint (GET /metrics), or `off` [default:
    /// 127.0.0.1:9090].
    #[arg(long, env = "INVENTORY_METRICS_LISTEN", value_name = "ADDR|off")]
    metrics_listen: Option<MetricsListen>,
    /// Folder of the event log (created if missing) [default: ./data].
    #[arg(long, env = "INVENTORY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Lock shards of the ledger, a power of two [default: 64].
    #[arg(long, env = "INVENTORY_SHARDS")]
    shards: Option<usize>,
    /// When a write is acknowledged [default: sync].
    #[arg(long, env = "INVENTORY_DURABILITY", value_enum)]
    durability: Option<DurabilityMode>,
    /// With --durability async: most time between fsyncs, in ms [default: 100].
    #[arg(long, env = "INVENTORY_FLUSH_INTERVAL_MS", value_name = "MS")]
    flush_interval_ms: Option<u64>,
    /// How long idempotency keys and ended holds are remembered, in ms [default: 7 days].
    #[arg(long, env = "INVENTORY_KEY_RETENTION_MS", value_name = "MS")]
    key_retention_ms: Option<u64>,
    /// Interactive writes in progress at once [default: 8192].
    #[arg(long, env = "INVENTORY_WRITES_IN_FLIGHT_MAX", value_name = "N")]
    writes_in_flight_max: Option<usize>,
    /// Bulk calls (RecordSales, RecordReturns) accepted at once [default: 2].
    #[arg(long, env = "INVENTORY_BULK_IN_FLIGHT_MAX", value_name = "N")]
    bulk_in_flight_max: Option<usize>,
    /// Niceness (0-19) of the thread bulk calls run on, so the hot path comes first
    /// [default: 10].
    #[arg(long, env = "INVENTORY_BULK_NICE", value_name = "N")]
    bulk_nice: Option<i32>,
    /// Async runtime worker threads [default: half the cores, at least 1]. The other half is
    /// for the kernel's TCP work (about half of a call's CPU), the log writer and the bulk
    /// lane. One worker runs a current-thread runtime, which writes answers in batches.
    #[arg(long, env = "INVENTORY_WORKER_THREADS", value_name = "N")]
    worker_threads: Option<usize>,
    /// Let the kernel back the heap with transparent huge pages [default: false]. Off, the
    /// server asks for small pages: zeroing a fresh huge page stalled a thread for ~5 ms in
    /// a VM, which was the whole p99 tail of durable writes.
    #[arg(long, env = "INVENTORY_TRANSPARENT_HUGE_PAGES", value_name = "BOOL")]
    transparent_huge_pages: Option<bool>,
    /// Open WatchAvailability streams [default: 1024].
    #[arg(long, env = "INVENTORY_WATCH_STREAMS_MAX", value_name = "N")]
    watch_streams_max: Option<usize>,
    /// How long shutdown waits for in-flight calls, in ms [default: 10000].
    #[arg(long, env = "INVENTORY_DRAIN_TIMEOUT_MS", value_name = "MS")]
    drain_timeout_ms: Option<u64>,
    /// Write a checkpoint every N logged events; 0 turns the count trigger off [default:
    /// 1000000].
    #[arg(long, env = "INVENTORY_CHECKPOINT_EVERY_EVENTS", value_name = "N")]
    checkpoint_every_events: Option<u64>,
    /// Write a checkpoint every MS of time if anything was logged; 0 turns the time trigger off
    /// [default: 600000].
    #[arg(long, env = "INVENTORY_CHECKPOINT_EVERY_MS", value_name = "MS")]
    checkpoint_every_ms: Option<u64>,
    /// Log filter, in tracing's EnvFilter syntax [default: info].
    #[arg(long, env = "INVENTORY_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// Log line format [default: text].
    #[arg(long, env = "INVENTORY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

/// The `--config` file. Every key is optional; unknown keys are refused so a typo is not
/// silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<MetricsListen>,
    data_dir: Option<PathBuf>,
    shards: Option<usize>,
    durability: Option<DurabilityMode>,
    flush_interval_ms: Option<u64>,
    key_retention_ms: Option<u64>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    worker_threads: Option<usize>,
    transparent_huge_pages: Option<bool>,
    /// Limits and timings of the server (`inv_api::ServerConfig`; missing keys take defaults).
    server: ServerConfig,
    /// The event log's batching and caching.
    event_log: EventLogFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EventLogFile {
    batch_events_max: Option<usize>,
    queue_events_max: Option<usize>,
    check_integrity_on_open: Option<bool>,
    cache_size_bytes: Option<usize>,
}

/// Where the metrics endpoint listens: an address, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        text.parse()
            .map(MetricsListen::On)
            .map_err(|e| format!("{text:?} is neither an address (host:port) nor `off`: {e}"))
    }
}

impl TryFrom<String> for MetricsListen {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// Every setting resolved.
#[derive(Debug)]
struct Settings {
    listen: SocketAddr,
    /// None: no metrics endpoint.
    metrics_listen: Option<SocketAddr>,
    data_dir: PathBuf,
    ledger: LedgerConfig,
    log_options: RedbLogOptions,
    server: ServerConfig,
    worker_threads: usize,
    transparent_huge_pages: bool,
    log: String,
    log_format: LogFormat,
}

const LISTEN_DEFAULT: &str = "127.0.0.1:50051";
const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:9090";
const DATA_DIR_DEFAULT: &str = "./data";
const FLUSH_INTERVAL_MS_DEFAULT: u64 = 100;

impl Settings {
    fn resolve(args: ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Flags and environment (already merged by clap) over the file over the defaults.
    fn merge(args: ServeArgs, file: FileConfig) -> Result<Settings> {
        let ledger_default = LedgerConfig::default();
        let ledger = LedgerConfig {
            shards: args.shards.or(file.shards).unwrap_or(ledger_default.shards),
            key_retention_ms: args
                .key_retention_ms
                .or(file.key_retention_ms)
                .unwrap_or(ledger_default.key_retention_ms),
        };
        if !ledger.shards.is_power_of_two() || ledger.shards > inv_engine::limits::SHARDS_MAX {
            bail!(
                "shards must be a power of two of at most {}, got {}",
                inv_engine::limits::SHARDS_MAX,
                ledger.shards
            );
        }
        let flush_interval_ms = args
            .flush_interval_ms
            .or(file.flush_interval_ms)
            .unwrap_or(FLUSH_INTERVAL_MS_DEFAULT);
        let durability = match args
            .durability
            .or(file.durability)
            .unwrap_or(DurabilityMode::Sync)
        {
            DurabilityMode::Sync => Durability::Sync,
            DurabilityMode::Async => Durability::Async { flush_interval_ms },
        };
        let log_default = RedbLogOptions::default();
        let log_options = RedbLogOptions {
            durability,
            batch_events_max: file
                .event_log
                .batch_events_max
                .unwrap_or(log_default.batch_events_max),
            queue_events_max: file
                .event_log
                .queue_events_max
                .unwrap_or(log_default.queue_events_max),
            check_integrity_on_open: file
                .event_log
                .check_integrity_on_open
                .unwrap_or(log_default.check_integrity_on_open),
            cache_size_bytes: file
                .event_log
                .cache_size_bytes
                .unwrap_or(log_default.cache_size_bytes),
        };
        let mut server = file.server;
        if let Some(n) = args.writes_in_flight_max {
            server.writes_in_flight_max = n;
        }
        if let Some(n) = args.bulk_in_flight_max {
            server.bulk_in_flight_max = n;
        }
        if let Some(n) = args.bulk_nice {
            server.bulk_nice = n;
        }
        if let Some(n) = args.watch_streams_max {
            server.watch_streams_max = n;
        }
        if let Some(ms) = args.drain_timeout_ms {
            server.drain_timeout_ms = ms;
        }
        if let Some(n) = args.checkpoint_every_events {
            server.checkpoint_every_events = n;
        }
        if let Some(ms) = args.checkpoint_every_ms {
            server.checkpoint_every_ms = ms;
        }
        // An async log acknowledges on append (its wait_durable returns at once); so does the
        // server, rather than waiting for the next fsync.
        server.ack_on_append = matches!(durability, Durability::Async { .. });
        server.validate()?;
        let worker_threads = args
            .worker_threads
            .or(file.worker_threads)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
            });
        if worker_threads == 0 {
            bail!("worker_threads must be at least 1");
        }
        Ok(Settings {
            worker_threads,
            transparent_huge_pages: args
                .transparent_huge_pages
                .or(file.transparent_huge_pages)
                .unwrap_or(false),
            listen: match args.listen.or(file.listen) {
                Some(listen) => listen,
                None => LISTEN_DEFAULT.parse().expect("the default address parses"),
            },
            metrics_listen: match args.metrics_listen.or(file.metrics_listen) {
                Some(MetricsListen::On(addr)) => Some(addr),
                Some(MetricsListen::Off) => None,
                None => Some(
                    METRICS_LISTEN_DEFAULT
                        .parse()
                        .expect("the default metrics address parses"),
                ),
            },
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            ledger,
            log_options,
            server,
            log: args.log.or(file.log).unwrap_or_else(|| "info".to_owned()),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
        })
    }
}

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's own code, the same as an invalid argument below).
    let args = Cli::parse();
    let result = match args.command {
        Some(Cmd::Demo(demo)) => demo::run(&demo),
        Some(Cmd::Serve(serve_args)) => serve(serve_args),
        Some(Cmd::Client(command)) => return cli::run(command),
        None => serve(args.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("invalid log filter {:?}", settings.log))?;
    // Colours only on a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

fn serve(args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    init_tracing(&settings)?;
    if !settings.transparent_huge_pages
        && let Err(error) = inv_api::host::disable_transparent_huge_pages()
    {
        warn!(%error, "cannot turn transparent huge pages off; latency may have ~5 ms stalls");
    }
    let runtime = inv_api::host::runtime_builder(settings.worker_threads)
        .enable_all()
        .thread_name("inventory")
        // Change-feed reads, the expirer and the checkpointer; see ServerConfig.
        .max_blocking_threads(settings.server.blocking_threads_max() + 16)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> Result<()> {
    info!(
        data_dir = %settings.data_dir.display(),
        durability = ?settings.log_options.durability,
        shards = settings.ledger.shards,
        "opening the event log"
    );
    let started = Instant::now();
    let (engine, log) = {
        let data_dir = settings.data_dir.clone();
        let (ledger, log_options) = (settings.ledger, settings.log_options);
        tokio::task::spawn_blocking(move || open(&data_dir, ledger, log_options))
            .await
            .context("recovery panicked")??
    };
    let events = engine.ledger().next_lsn().0 - 1;
    info!(
        events,
        holds_open = engine.ledger().holds_open(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered the ledger from the log"
    );

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    info!(addr = %listener.local_addr()?, workers = settings.worker_threads, "serving inventory.v1");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));

    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint {addr}"))?,
        ),
        None => None,
    };
    // A weak reference, so the statistics source never keeps the log open past shutdown.
    let log_stats: inv_api::LogStatsSource = {
        let log = Arc::downgrade(&log);
        Arc::new(move || log.upgrade().map(|log| log.stats()))
    };

    let engine = Arc::new(engine);
    inv_api::serve_with(
        Arc::clone(&engine),
        settings.server,
        incoming,
        shutdown_signal(),
        inv_api::ServeOptions {
            metrics_listener,
            log_stats: Some(log_stats),
        },
    )
    .await?;

    // Calls whose clients left may still be finishing on the blocking pool; each holds the
    // engine until it is done. Wait for them (bounded), then close the log, which commits
    // and fsyncs everything still queued.
    let deadline = Instant::now() + Duration::from_millis(settings.server.drain_timeout_ms);
    while Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lsn = engine.ledger().next_lsn().0 - 1;
    final_checkpoint(&engine, &settings.server).await;
    drop(engine);
    match Arc::try_unwrap(log) {
        Ok(log) => {
            tokio::task::spawn_blocking(move || log.close())
                .await
                .context("closing the log panicked")?
                .context("closing the event log")?;
            info!(lsn, "event log closed");
        }
        Err(_) => warn!("engine calls still running; the log flushes when the last one ends"),
    }
    Ok(())
}

/// Writes a checkpoint of what was logged since the last one, so the next start loads it
/// instead of replaying the tail. Skipped when checkpoints are off or the engine failed.
async fn final_checkpoint(engine: &Arc<Engine>, server: &ServerConfig) {
    let policy = server.checkpoint_policy();
    if (policy.every_events == 0 && policy.every_ms == 0) || engine.ledger().failure().is_some() {
        return;
    }
    let started = Instant::now();
    let engine = Arc::clone(engine);
    let any_event = inv_engine::CheckpointPolicy {
        every_events: 1,
        every_ms: 0,
    };
    match tokio::task::spawn_blocking(move || engine.checkpoint_if_due(&any_event)).await {
        Ok(Ok(Some(next_lsn))) => info!(
            next_lsn = next_lsn.0,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint written at shutdown"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => {
            warn!(%error, "no checkpoint at shutdown; the next start replays the log")
        }
        Err(error) => warn!(%error, "checkpoint at shutdown panicked"),
    }
}

/// Opens the data folder's log and rebuilds the ledger from it.
fn open(
    data_dir: &Path,
    ledger: LedgerConfig,
    options: RedbLogOptions,
) -> Result<(Engine, Arc<RedbLog>)> {
    let log = Arc::new(
        RedbLog::open(data_dir, options)
            .with_context(|| format!("opening the event log in {}", data_dir.display()))?,
    );
    let engine = Engine::recover(ledger, log.clone(), Arc::new(SystemClock))
        .with_context(|| format!("replaying the event log in {}", data_dir.display()))?;
    Ok((engine, log))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:7000"
            shards = 32
            durability = "async"
            transparent_huge_pages = true
            worker_threads = 3
            [server]
            bulk_in_flight_max = 2
            expire_interval_ms = 250
            [event_log]
            batch_events_max = 64
            "#,
        )
        .expect("a valid file");
        let args = ServeArgs {
            shards: Some(128),
            bulk_in_flight_max: Some(4),
            ..ServeArgs::default()
        };
        let settings = Settings::merge(args, file).expect("valid settings");
        assert_eq!(settings.listen, "0.0.0.0:7000".parse().expect("an address"));
        assert_eq!(settings.ledger.shards, 128);
        assert_eq!(settings.server.bulk_in_flight_max, 4);
        assert_eq!(settings.server.expire_interval_ms, 250);
        assert_eq!(
            settings.server.writes_in_flight_max,
            ServerConfig::default().writes_in_flight_max
        );
        assert_eq!(settings.log_options.batch_events_max, 64);
        assert_eq!(
            settings.log_options.durability,
            Durability::Async {
                flush_interval_ms: FLUSH_INTERVAL_MS_DEFAULT
            }
        );
        assert_eq!(settings.data_dir, PathBuf::from(DATA_DIR_DEFAULT));
        assert!(settings.transparent_huge_pages);
        assert_eq!(settings.worker_threads, 3);
    }

    #[test]
    fn defaults_listen_on_loopback_with_sync_durability() {
        let settings =
            Settings::merge(ServeArgs::default(), FileConfig::default()).expect("valid defaults");
        assert_eq!(settings.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(settings.log_options.durability, Durability::Sync);
        assert!(
            !settings.transparent_huge_pages,
            "small pages unless asked (see inv_api::host)"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(settings.worker_threads, (cores / 2).max(1));
        assert_eq!(
            settings.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some(METRICS_LISTEN_DEFAULT)
        );
    }

    #[test]
    fn metrics_listen_takes_an_address_or_off() {
        let cli = Cli::try_parse_from(["inventory", "--metrics-listen", "off"]).expect("parses");
        let settings = Settings::merge(cli.serve, FileConfig::default()).expect("valid");
        assert_eq!(settings.metrics_listen, None);
        let file: FileConfig =
            toml::from_str(r#"metrics_listen = "0.0.0.0:9100""#).expect("a valid file");
        let settings = Settings::merge(ServeArgs::default(), file).expect("valid");
        assert_eq!(
            settings.metrics_listen,
            Some("0.0.0.0:9100".parse().expect("an address"))
        );
        assert!(Cli::try_parse_from(["inventory", "--metrics-listen", "nine"]).is_err());
        assert!(toml::from_str::<FileConfig>(r#"metrics_listen = "nine""#).is_err());
    }

    #[test]
    fn client_subcommands_parse_with_their_own_flags() {
        let cli = Cli::try_parse_from([
            "inventory",
            "reserve",
            "--server",
            "http://10.0.0.1:50051",
            "--id",
            "o-1",
            "a@b=2",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Some(Cmd::Client(cli::ClientCmd::Reserve(_)))
        ));
        let error = Cli::try_parse_from(["inventory", "reserve", "--id", "o-1", "a-b-2"])
            .err()
            .expect("a bad LINE is refused");
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn bad_settings_are_refused() {
        let args = ServeArgs {
            shards: Some(3),
            ..ServeArgs::default()
        };
        assert!(Settings::merge(args, FileConfig::default()).is_err());
        assert!(toml::from_str::<FileConfig>("shardz = 4").is_err());
        let args = ServeArgs {
            bulk_in_flight_max: Some(0),
            ..ServeArgs::default()
        };
        assert!(Settings::merge(args, FileConfig::default()).is_err());
    }

    #[test]
    fn no_subcommand_serves() {
        let cli = Cli::try_parse_from(["inventory", "--listen", "127.0.0.1:1"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(
            cli.serve.listen,
            Some("127.0.0.1:1".parse().expect("an address"))
        );
        let cli = Cli::try_parse_from(["inventory", "demo", "--stock", "5"]).expect("parses");
        assert!(matches!(cli.command, Some(Cmd::Demo(_))));
    }
}
