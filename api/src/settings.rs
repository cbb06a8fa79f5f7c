//! The settings of `inventory serve`: each declared once, and layered from flags, environment,
//! the config file and the defaults.
//!
//! # One declaration
//! Every setting is a field of one of four clap `Args` structs, one per table of the config
//! file: [`ProcessSettings`] (the top level), `inv_api::ServerConfig` (`[server]`),
//! [`EventLogSettings`] (`[event_log]`) and [`ReconcileSettings`] (`[reconcile]`). The field
//! is the whole declaration: its doc comment is the help, `default_value_t` (or
//! `default_value`) the default `--help` shows, and its name every spelling of the setting,
//! derived here so none can be misspelt or forgotten:
//!
//! | source | spelling | made by |
//! |---|---|---|
//! | flag | `--writes-in-flight-max` | clap's `long` |
//! | environment | `INVENTORY_WRITES_IN_FLIGHT_MAX` | [`declare`]: [`ENV_PREFIX`] + the name in capitals |
//! | file | `writes_in_flight_max` (in its struct's table) | [`parse_file`]: the name itself |
//!
//! # Precedence: flags > environment > file > defaults
//! Clap itself resolves flags over environment over defaults. The file goes in between by
//! becoming the defaults: [`parse`] parses the command line once to find `--config` (a flag
//! or `INVENTORY_CONFIG`), then puts each value of the file in place of its setting's declared
//! default and parses the command line again. A key the file does not know is an error naming
//! it, and each value is checked by its setting's own value parser when the file is read, so a
//! bad value is reported even where a flag overrides it.
//!
//! # Why clap alone (not serde, figment or config)
//! Deriving serde's `Deserialize` on the same structs would give every setting two parsers,
//! clap's for flags and environment and serde's for the file, free to drift apart (an enum's
//! spelling, `off` for the metrics address, what a bool accepts), and a merge that must ask
//! clap which values were defaults. A layering crate would add a dependency and a third naming
//! scheme to keep in line with clap's. Feeding the file to clap as defaults keeps one parser per
//! setting and clap's own precedence, at the cost of parsing the command line twice. So a file
//! value is what a flag would take, as a TOML string, integer or boolean (`shards = 64`,
//! `metrics_listen = "off"`, `check_integrity_on_open = false`).

use anyhow::{Context, Result, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, ValueEnum};
use inv_api::tls::TlsFiles;
use inv_api::{ReconcileConfig, ServerConfig};
use inv_engine::log::redb::Durability;
use inv_engine::reconcile::TolerancePolicy;
use inv_engine::{BeyondTolerance, LedgerConfig, MemoryPolicy, RedbLogOptions, Tolerance};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod values;
pub use values::{Every, FileOrNone, LocationTolerances, MetricsListen, Percent};

/// What every setting's environment variable starts with.
pub const ENV_PREFIX: &str = "INVENTORY_";

pub const LISTEN_DEFAULT: &str = "127.0.0.1:50051";
pub const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:9090";
pub const DATA_DIR_DEFAULT: &str = "./data";
pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 100;

/// The flags of `serve` (and of `inventory` with no subcommand).
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings: each under its flag's name with `_` for `-`, at the
    /// top level or in the `[server]`, `[event_log]` or `[reconcile]` table its heading names. Flags and
    /// environment win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub process: ProcessSettings,
    #[command(
        flatten,
        next_help_heading = "Server limits ([server] in the config file)"
    )]
    pub server: ServerConfig,
    #[command(
        flatten,
        next_help_heading = "Event log ([event_log] in the config file)"
    )]
    pub event_log: EventLogSettings,
    #[command(
        flatten,
        next_help_heading = "Reconciliation ([reconcile] in the config file)"
    )]
    pub reconcile: ReconcileSettings,
}

/// The top level of the config file: addresses, the data folder, the ledger, durability, the
/// runtime and logging.
#[derive(Args, Debug, Clone)]
pub struct ProcessSettings {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = LISTEN_DEFAULT)]
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics endpoint (GET /metrics), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = METRICS_LISTEN_DEFAULT)]
    pub metrics_listen: MetricsListen,
    /// The server's TLS certificate chain (PEM), or `none`. With --tls-key, the gRPC and
    /// metrics ports serve TLS only; SIGHUP reads both files again (docs/security.md).
    #[arg(long, value_name = "FILE|none", default_value = "none")]
    pub tls_cert: FileOrNone,
    /// The private key of --tls-cert (PEM), or `none`.
    #[arg(long, value_name = "FILE|none", default_value = "none")]
    pub tls_key: FileOrNone,
    /// CA certificates (PEM) that sign client certificates, or `none`. Given, every client
    /// must present a certificate signed by one of them (mutual TLS).
    #[arg(long, value_name = "FILE|none", default_value = "none")]
    pub tls_client_ca: FileOrNone,
    /// Serve plaintext on an address that is not loopback (--listen or --metrics-listen).
    /// Without TLS such an address is refused unless this is set, and a warning is logged at
    /// every start when it is.
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false
    )]
    pub insecure_plaintext: bool,
    /// Authentication of callers (docs/security.md): `required`, `off`, or `auto` (required
    /// when --listen or --metrics-listen is not a loopback address, off otherwise).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = AuthMode::Auto)]
    pub auth: AuthMode,
    /// The principals file (TOML: `[[principal]]` with name, roles, token_sha256, cert_subject;
    /// `metrics_token_sha256`), or `none`. Required when authentication is on; SIGHUP reads it
    /// again.
    #[arg(long, value_name = "FILE|none", default_value = "none")]
    pub auth_file: FileOrNone,
    /// Folder of the event log (created if missing).
    #[arg(long, value_name = "DIR", default_value = DATA_DIR_DEFAULT)]
    pub data_dir: PathBuf,
    /// Lock shards of the ledger, a power of two.
    #[arg(long, value_name = "N", default_value_t = LedgerConfig::default().shards)]
    pub shards: usize,
    /// How long idempotency keys and ended holds are remembered, in ms.
    #[arg(long, value_name = "MS", default_value_t = LedgerConfig::default().key_retention_ms)]
    pub key_retention_ms: u64,
    /// How long a rejection (a reserve refused as insufficient) is remembered, in ms, if
    /// shorter than --key-retention-ms: it changed nothing, so a retry after this is decided
    /// afresh.
    #[arg(long, value_name = "MS", default_value_t = LedgerConfig::default().rejection_retention_ms)]
    pub rejection_retention_ms: u64,
    /// How long idempotency records and ended holds stay in memory, in ms; after it, once a
    /// checkpoint covers them, they move to the key archive (`keys.redb` in the data folder),
    /// which answers retries for the rest of --key-retention-ms.
    #[arg(long, value_name = "MS", default_value_t = MemoryPolicy::default().key_memory_ms)]
    pub key_memory_ms: u64,
    /// The ledger's memory budget in bytes (positions, holds, keys, store gaps, the archive's
    /// index). Past --memory-high-water-percent of it keys move to disk as soon as a
    /// checkpoint covers them; past it, writes that add state are refused (RESOURCE_EXHAUSTED,
    /// MEMORY_EXHAUSTED) while reads, commits and releases go on. 0: half of the machine's (or
    /// the container's) memory.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub memory_limit_bytes: u64,
    /// Percent of --memory-limit-bytes past which keys move to disk sooner.
    #[arg(long, value_name = "PERCENT", default_value_t = MemoryPolicy::default().high_water_percent)]
    pub memory_high_water_percent: u64,
    /// How far back reconciliation can look, in ms: the oldest ERP snapshot `as_of` accepted.
    /// The log keeps this much history through checkpoints and restarts.
    #[arg(long, value_name = "MS", default_value_t = LedgerConfig::default().history_ms)]
    pub reconcile_history_ms: u64,
    /// How far a sale's store_seq may run ahead of its store's newest sequence number (at
    /// least 1). A sale beyond it is still recorded, but its number is kept out of the
    /// store's sequence as an anomaly (StoreStatus) until `inventory store-ack` accepts or
    /// dismisses it. Changing it affects only sales recorded from then on.
    #[arg(long, value_name = "N", default_value_t = LedgerConfig::default().store_seq_jump_max)]
    pub store_seq_jump_max: u64,
    /// When a write is acknowledged.
    #[arg(long, value_enum, default_value_t = DurabilityMode::Sync)]
    pub durability: DurabilityMode,
    /// With --durability async: the most time from a batch's commit to the fsync that makes
    /// it durable, in ms; a crash can lose this much of acknowledged writes (see --durability).
    #[arg(long, value_name = "MS", default_value_t = FLUSH_INTERVAL_MS_DEFAULT)]
    pub flush_interval_ms: u64,
    /// Async runtime worker threads; the default is half the cores, at least 1. The other half
    /// is for the kernel's TCP work (about half of a call's CPU), the log writer and the bulk
    /// lane. One worker runs a current-thread runtime, which writes answers in batches.
    #[arg(long, value_name = "N", default_value_t = default_worker_threads())]
    pub worker_threads: usize,
    /// Let the kernel back the heap with transparent huge pages. Off, the server asks for
    /// small pages: zeroing a fresh huge page stalled a thread for ~5 ms in a VM, which was the
    /// whole p99 tail of durable writes.
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, default_value_t = false)]
    pub transparent_huge_pages: bool,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The `[event_log]` table: how the event log batches, queues, caches and opens.
#[derive(Args, Debug, Clone)]
pub struct EventLogSettings {
    /// Most events in one commit of the event log, so one commit never holds the next for long.
    #[arg(long, value_name = "N", default_value_t = RedbLogOptions::default().batch_events_max)]
    pub batch_events_max: usize,
    /// Most events appended but not yet committed; past this, writes are refused
    /// (RESOURCE_EXHAUSTED, LOG_FULL) until the disk catches up.
    #[arg(long, value_name = "N", default_value_t = RedbLogOptions::default().queue_events_max)]
    pub queue_events_max: usize,
    /// Verify every page checksum of the event log when it is opened (a read of the whole
    /// file, like the replay that follows).
    #[arg(
        long,
        value_name = "BOOL",
        action = ArgAction::Set,
        default_value_t = RedbLogOptions::default().check_integrity_on_open
    )]
    pub check_integrity_on_open: bool,
    /// The event log's page cache, in bytes. The log only appends and replays once, so a small
    /// cache is enough.
    #[arg(long, value_name = "BYTES", default_value_t = RedbLogOptions::default().cache_size_bytes)]
    pub cache_size_bytes: usize,
}

/// The `[reconcile]` table: when staged ERP snapshots are reconciled, and which drift is
/// corrected without review (see docs/reconciliation.md).
#[derive(Args, Debug, Clone)]
pub struct ReconcileSettings {
    /// How often every staged snapshot is reconciled: a duration (`90s`, `15m`, `1h`,
    /// `500ms`), or `off` (or `0`) to reconcile only when asked (`inventory reconcile`).
    #[arg(long, value_name = "DURATION|off", default_value = "15m")]
    pub reconcile_every: Every,
    /// Drift of at most this many units is corrected without review.
    #[arg(long, value_name = "UNITS", default_value_t = Tolerance::default().units)]
    pub drift_tolerance_units: u64,
    /// Drift of at most this percent of the engine's count at the snapshot's time is corrected
    /// without review (up to two decimals: `0.5`). Whichever of units and percent allows more
    /// applies.
    #[arg(long, value_name = "PERCENT", default_value = "1")]
    pub drift_tolerance_percent: Percent,
    /// What happens to drift beyond the tolerance. Either way it is reported.
    #[arg(long, value_enum, default_value_t = DriftBeyond::Hold)]
    pub drift_beyond: DriftBeyond,
    /// A location's own tolerance, instead of the two above: `LOC=UNITS,PERCENT` or
    /// `LOC=UNITS,PERCENT,apply|hold` (else --drift-beyond). Repeat the flag, or separate
    /// entries with `;` (in the environment and the config file); `none` for no overrides.
    #[arg(
        long,
        value_name = "LOC=UNITS,PERCENT[,apply|hold]",
        default_value = "none",
        action = ArgAction::Append
    )]
    pub drift_tolerance_location: Vec<LocationTolerances>,
}

/// What happens to a drift beyond the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftBeyond {
    /// Reported and held for review: on_hand is not changed until `inventory drift resolve`
    /// (ResolveDrift) applies or dismisses it.
    Hold,
    /// Corrected like any other drift, and reported.
    Apply,
}

impl From<DriftBeyond> for BeyondTolerance {
    fn from(beyond: DriftBeyond) -> Self {
        match beyond {
            DriftBeyond::Hold => BeyondTolerance::Hold,
            DriftBeyond::Apply => BeyondTolerance::Apply,
        }
    }
}

impl ReconcileSettings {
    /// The server's reconciliation config. A location named twice is an error.
    pub fn resolve(&self) -> Result<ReconcileConfig> {
        let default = Tolerance {
            units: self.drift_tolerance_units,
            percent_bp: self.drift_tolerance_percent.0,
            beyond: self.drift_beyond.into(),
        };
        let mut by_location = BTreeMap::new();
        for (location, units, percent_bp, beyond) in self
            .drift_tolerance_location
            .iter()
            .flat_map(|entries| entries.0.iter().cloned())
        {
            let tolerance = Tolerance {
                units,
                percent_bp,
                beyond: beyond.unwrap_or(default.beyond),
            };
            if by_location.insert(location.clone(), tolerance).is_some() {
                bail!("drift_tolerance_location names {location} more than once");
            }
        }
        Ok(ReconcileConfig {
            every_ms: self.reconcile_every.0,
            policy: TolerancePolicy {
                default,
                by_location,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityMode {
    /// Acknowledge a write only after the fsync that makes it durable (group commit shares one
    /// fsync across writers). An acknowledged write survives a process crash, a kernel crash
    /// and a power loss.
    Sync,
    /// Acknowledge a write once it is queued. Batches commit without an fsync; an fsync follows
    /// at most --flush-interval-ms after the first unflushed batch, and on a clean shutdown. A
    /// crash of any kind, kill -9 included, or a power loss can lose the last
    /// --flush-interval-ms (plus the batch in flight) of acknowledged writes.
    Async,
}

/// Whether callers must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Required when a listen address is beyond loopback, off on loopback only.
    Auto,
    /// Every call of the Inventory service names a principal of --auth-file.
    Required,
    /// Anyone who can connect may call anything.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The TLS files of the settings: none, or a certificate with its key (and maybe a client CA).
fn tls_files(process: &ProcessSettings) -> Result<Option<TlsFiles>> {
    match (
        &process.tls_cert.0,
        &process.tls_key.0,
        &process.tls_client_ca.0,
    ) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), client_ca) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.clone(),
        })),
        (None, None, Some(_)) => bail!("tls_client_ca needs tls_cert and tls_key"),
        (Some(_), None, _) => bail!("tls_cert needs tls_key"),
        (None, Some(_), _) => bail!("tls_key needs tls_cert"),
    }
}

/// The principals file if authentication is on: `auto` turns it on when a listen address is
/// beyond loopback. On without a file is refused (nobody could call).
fn auth_file(process: &ProcessSettings) -> Result<Option<PathBuf>> {
    let addrs: Vec<SocketAddr> = std::iter::once(process.listen)
        .chain(match process.metrics_listen {
            MetricsListen::On(addr) => Some(addr),
            MetricsListen::Off => None,
        })
        .collect();
    let on = match process.auth {
        AuthMode::Required => true,
        AuthMode::Off => false,
        AuthMode::Auto => !inv_api::tls::beyond_loopback(&addrs).is_empty(),
    };
    match (on, &process.auth_file.0) {
        (false, _) => Ok(None),
        (true, Some(file)) => Ok(Some(file.clone())),
        (true, None) => bail!(
            "authentication is on (auth = {:?}, listening beyond loopback or required) but no \
             auth_file names the principals: give --auth-file, or --auth off to serve without \
             authentication (docs/security.md)",
            process.auth
        ),
    }
}

/// Half the cores, at least 1 (see `--worker-threads`).
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The config file's tables, each with the settings it holds (`None`: the top level).
fn tables() -> [(Option<&'static str>, Command); 4] {
    [
        (None, ProcessSettings::augment_args(Command::new("file"))),
        (
            Some("server"),
            ServerConfig::augment_args(Command::new("server")),
        ),
        (
            Some("event_log"),
            EventLogSettings::augment_args(Command::new("event_log")),
        ),
        (
            Some("reconcile"),
            ReconcileSettings::augment_args(Command::new("reconcile")),
        ),
    ]
}

/// The environment variable of the setting `id`.
pub fn env_name(id: &str) -> String {
    format!("{ENV_PREFIX}{}", id.to_ascii_uppercase())
}

/// Applies `f` to every argument of [`ServeArgs`] wherever `command` (the `inventory` command)
/// has them: at its top level (`inventory` alone serves) and under `serve`.
fn on_serve_args(command: Command, f: impl Fn(Arg) -> Arg) -> Command {
    let ids: Vec<String> = ServeArgs::augment_args(Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let apply = |command: Command| {
        ids.iter()
            .fold(command, |command, id| command.mut_arg(id, &f))
    };
    apply(command).mut_subcommand("serve", apply)
}

/// Gives every argument of [`ServeArgs`] in `command` its environment variable ([`env_name`]).
pub fn declare(command: Command) -> Command {
    on_serve_args(command, |arg| {
        let name = env_name(arg.get_id().as_str());
        arg.env(name)
    })
}

/// Parses `argv` with `command` (see [`declare`]): flags over environment over defaults, then,
/// when `inventory` serves with `--config`, again with the file's values as the defaults.
/// Errors from clap (usage, `--help`) come back as `clap::Error`.
pub fn parse<T: FromArgMatches>(command: Command, argv: &[OsString]) -> Result<T> {
    let matches = command.clone().try_get_matches_from(argv)?;
    let matches = match config_path(&matches) {
        None => matches,
        Some(path) => with_file(command, &read_file(&path)?).try_get_matches_from(argv)?,
    };
    Ok(T::from_arg_matches(&matches)?)
}

/// The `--config` file, if `matches` serve (a client subcommand never reads it).
fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    let serving = match matches.subcommand() {
        None => matches,
        Some(("serve", serving)) => serving,
        Some(_) => return None,
    };
    serving.get_one::<PathBuf>("config").cloned()
}

/// The settings a config file gives: each value as text for its setting's parser, by id.
#[derive(Debug, Default)]
pub struct FileValues(HashMap<String, String>);

/// `command` with the file's values in place of the declared defaults.
pub fn with_file(command: Command, file: &FileValues) -> Command {
    on_serve_args(command, |arg| match file.0.get(arg.get_id().as_str()) {
        Some(text) => arg.default_value(text.clone()),
        None => arg,
    })
}

pub fn read_file(path: &Path) -> Result<FileValues> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_file(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Reads a config file's text: only known keys, each in its table, each value one its
/// setting's parser takes.
pub fn parse_file(text: &str) -> Result<FileValues> {
    let file: toml::Table = toml::from_str(text)?;
    let tables = tables();
    let mut values = HashMap::new();
    for (key, value) in file {
        match tables
            .iter()
            .find(|(table, _)| *table == Some(key.as_str()))
        {
            Some((_, group)) => {
                let toml::Value::Table(entries) = value else {
                    bail!("`{key}` must be a table ([{key}])");
                };
                for (name, value) in entries {
                    let (id, text) = setting(&tables, &format!("{key}.{name}"), group, value)?;
                    values.insert(id, text);
                }
            }
            None => {
                let (id, text) = setting(&tables, &key, &tables[0].1, value)?;
                values.insert(id, text);
            }
        }
    }
    Ok(FileValues(values))
}

/// The setting at `path` (a key, or `table.key`) of the file, looked up in `group` (the
/// settings of its table), as its id and the text of its value.
fn setting(
    tables: &[(Option<&'static str>, Command)],
    path: &str,
    group: &Command,
    value: toml::Value,
) -> Result<(String, String)> {
    let name = path.rsplit('.').next().unwrap_or(path);
    let Some(arg) = group.get_arguments().find(|arg| arg.get_id() == name) else {
        let home = tables.iter().find_map(|(table, settings)| {
            let here = settings.get_arguments().any(|arg| arg.get_id() == name);
            here.then(|| table.map_or("at the top level".to_owned(), |t| format!("in [{t}]")))
        });
        return Err(match home {
            Some(home) => anyhow!("`{path}`: this key belongs {home}"),
            None => {
                let known: Vec<&str> = group.get_arguments().map(|a| a.get_id().as_str()).collect();
                anyhow!("unknown key `{path}` (known here: {})", known.join(", "))
            }
        });
    };
    let text = match value {
        toml::Value::String(text) => text,
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!(
            "`{path}` must be a string, an integer or a boolean, not {}",
            other.type_str()
        ),
    };
    // The setting's own parser, through a command holding only it.
    let long = arg.get_long().unwrap_or(name);
    Command::new("file")
        .no_binary_name(true)
        .arg(arg.clone())
        .try_get_matches_from([format!("--{long}={text}")])
        .map_err(|error| {
            let why = match std::error::Error::source(&error) {
                Some(source) => source.to_string(),
                None => {
                    let values: Vec<String> = arg
                        .get_possible_values()
                        .iter()
                        .map(|v| v.get_name().to_owned())
                        .collect();
                    format!("expected one of {}", values.join(", "))
                }
            };
            anyhow!("`{path}` = {text:?} is invalid: {why}")
        })?;
    Ok((arg.get_id().to_string(), text))
}

/// Every setting resolved and checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// None: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// None: plaintext on both ports.
    pub tls: Option<TlsFiles>,
    pub insecure_plaintext: bool,
    /// The principals file when authentication is on; `None`: off.
    pub auth_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub ledger: LedgerConfig,
    /// The memory budget, with `--memory-limit-bytes 0` resolved to half the machine's.
    pub memory: MemoryPolicy,
    pub log_options: RedbLogOptions,
    /// When writes are acknowledged is not set here but read from the log once it is open
    /// (`ServerConfig::for_log`).
    pub server: ServerConfig,
    pub reconcile: ReconcileConfig,
    pub worker_threads: usize,
    pub transparent_huge_pages: bool,
    pub log: String,
    pub log_format: LogFormat,
}

impl Settings {
    /// Checks the parsed settings and builds what the engine and the server take.
    pub fn resolve(args: ServeArgs) -> Result<Settings> {
        let ServeArgs {
            config: _,
            process,
            server,
            event_log,
            reconcile,
        } = args;
        let ledger = LedgerConfig {
            shards: process.shards,
            key_retention_ms: process.key_retention_ms,
            history_ms: process.reconcile_history_ms,
            rejection_retention_ms: process.rejection_retention_ms,
            store_seq_jump_max: process.store_seq_jump_max,
        };
        if ledger.store_seq_jump_max == 0 {
            bail!("store_seq_jump_max must be at least 1");
        }
        if !(1..=100).contains(&process.memory_high_water_percent) {
            bail!(
                "memory_high_water_percent must be 1 to 100, got {}",
                process.memory_high_water_percent
            );
        }
        let memory = MemoryPolicy {
            limit_bytes: match process.memory_limit_bytes {
                0 => machine_memory_bytes().map_or(0, |bytes| bytes / 2),
                bytes => bytes,
            },
            high_water_percent: process.memory_high_water_percent,
            key_memory_ms: process.key_memory_ms,
        };
        if !ledger.shards.is_power_of_two() || ledger.shards > inv_engine::limits::SHARDS_MAX {
            bail!(
                "shards must be a power of two of at most {}, got {}",
                inv_engine::limits::SHARDS_MAX,
                ledger.shards
            );
        }
        server.validate()?;
        if process.worker_threads == 0 {
            bail!("worker_threads must be at least 1");
        }
        let durability = match process.durability {
            DurabilityMode::Sync => Durability::Sync,
            DurabilityMode::Async => Durability::Async {
                flush_interval_ms: process.flush_interval_ms,
            },
        };
        Ok(Settings {
            listen: process.listen,
            metrics_listen: match process.metrics_listen {
                MetricsListen::On(addr) => Some(addr),
                MetricsListen::Off => None,
            },
            tls: tls_files(&process)?,
            insecure_plaintext: process.insecure_plaintext,
            auth_file: auth_file(&process)?,
            data_dir: process.data_dir,
            ledger,
            memory,
            log_options: RedbLogOptions {
                durability,
                batch_events_max: event_log.batch_events_max,
                queue_events_max: event_log.queue_events_max,
                check_integrity_on_open: event_log.check_integrity_on_open,
                cache_size_bytes: event_log.cache_size_bytes,
            },
            server,
            reconcile: reconcile.resolve()?,
            worker_threads: process.worker_threads,
            transparent_huge_pages: process.transparent_huge_pages,
            log: process.log,
            log_format: process.log_format,
        })
    }
}

/// The memory this process may use: the container's limit (cgroup v2 `memory.max`) if it has
/// one, else the machine's (`MemTotal`). `None` where neither can be read.
fn machine_memory_bytes() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

#[cfg(test)]
mod tests;
