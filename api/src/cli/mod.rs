//! The client subcommands of `inventory`: one per thing a person or a script asks a running
//! server (`check`, `check-sku`, `sellable`, `adjust`, `safety-stock`, `reserve`, `commit`,
//! `release`, `extend`, `reservation`, `sales`, `returns`, `dispose`, `store-status`,
//! `store-ack`, `watch`, `events`, `snapshot import`, `reconcile`, `reconciliation show` /
//! `list`, `drift list` / `resolve`),
//! and `completions`, which prints a shell's completion script and asks no server.
//!
//! Each subcommand connects to `--server` (env `INVENTORY_SERVER`; `https://` with `--ca`, and
//! `--cert` and `--key` for mutual TLS: docs/security.md), makes its calls through the
//! generated client and prints the answer on stdout: a table by default, JSON with `--json`
//! (one document; `watch` prints one per line). Errors go to stderr; with `--json` the error is
//! also printed on stdout as `{"error": {...}}`, so a script reading stdout sees why.
//!
//! The exit code says what happened, so scripts need not parse the output ([`EXIT_CODES_HELP`]):
//! a refusal for a business reason (out of stock, a hold that ended) is 1, a malformed request
//! 2, an unknown reservation or store 3, a server that cannot be reached or is overloaded 4.
//! Batch commands (`sales`, `returns`, `check --file`) answer per item and exit with the code
//! of their first failed item. Usage errors found by the argument parser exit 2 as well.
//!
//! Files (`--file`, `-` for stdin) are JSON Lines or CSV, told apart by `--format` or else the
//! extension (`.csv` is CSV, anything else JSON Lines). Batches larger than the server takes
//! in one call are sent in chunks of [`inv_api::BATCH_ITEMS_MAX`], in order.
//!
//! Layout, top-down: this file holds what every subcommand shares (the [`ClientCmd`] enum and
//! its dispatch, connection and client options, outcomes and exit codes); each family of
//! subcommands has its own file (`reads.rs`: check, check-sku, sellable, reservation, watch;
//! `stores.rs`: store-status, store-ack; `holds.rs`: reserve, commit, release, extend;
//! `stock.rs`: adjust, safety-stock, dispose; `events.rs`: the events of a position or a hold;
//! `batches.rs`: sales and returns from files; `snapshots.rs`: ERP snapshot import,
//! reconciliations and held drifts),
//! on top of `parse.rs` (LINE, position and duration syntax), `files.rs` (reading JSON Lines
//! and CSV files) and `output.rs` (tables, JSON, times). Adding a family of subcommands is a
//! new file, a variant of [`ClientCmd`] and its arms in `ClientCmd::client` and
//! `ClientCmd::execute`.

mod batches;
mod events;
mod files;
mod holds;
mod output;
mod parse;
mod reads;
mod reports;
mod snapshots;
mod stock;
mod stores;

use batches::{RETURNS_HELP, ReturnsArgs, SALES_HELP, SalesArgs};
use clap::{Args, Subcommand};
use events::{EVENTS_HELP, EventsArgs};
use holds::{CommitArgs, ExtendArgs, ReleaseArgs, ReserveArgs};
use inv_proto::code_name;
use inv_proto::v1 as pb;
use output::print_json;
pub(crate) use parse::parse_duration;
use pb::inventory_client::InventoryClient;
use reads::{CheckArgs, CheckSkuArgs, ReservationArgs, SellableArgs, WatchArgs};
use serde_json::{Value, json};
use snapshots::{DriftCmd, ReconcileArgs, ReconciliationCmd, SnapshotCmd};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stock::{AdjustArgs, DisposeArgs, SafetyStockArgs};
use stores::{StoreAckArgs, StoreStatusArgs};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (client subcommands):
  0  success
  1  refused by a business rule: reserve rejected for lack of stock, commit or release of a
     hold that has ended or expired, a dispose of units not in quarantine, an idempotency
     key reused with another payload or by another principal
  2  usage error or invalid argument (bad flags, a malformed LINE, a bad file, a request the
     server found invalid)
  3  not found: unknown reservation, return or store, or a store anomaly already answered
  4  server unavailable: cannot connect, timed out, overloaded, busy with another
     reconciliation, fail-stopped or shutting down (retry later)
  5  any other error
  6  not allowed: no credential or an unknown one (UNAUTHENTICATED: see --token), or the
     principal lacks the permission (PERMISSION_DENIED)
Batch commands (sales, returns, check --file) exit with the code of their first failed item.";

/// Connection and output settings every client subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "INVENTORY_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub server: String,
    /// Print JSON instead of tables (one document; `watch` prints one per line).
    #[arg(long)]
    pub json: bool,
    /// Give up on a call (and on connecting) after this long: 500ms, 10s, 1m.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    // Boxed: three paths would make every client command (and `Cmd`) much larger.
    #[command(flatten)]
    pub tls: Box<ClientTlsOpts>,
    /// Bearer token sent as `authorization: Bearer TOKEN` on every call, for a server with
    /// authentication on (docs/security.md). Prefer the environment variable: a flag shows in
    /// the process list.
    #[arg(
        long,
        env = "INVENTORY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Adds the `authorization` metadata of --token to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The client every subcommand calls through.
pub type Client = InventoryClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// How a client subcommand connects over TLS (docs/security.md).
#[derive(Args, Debug, Clone)]
pub struct ClientTlsOpts {
    /// Connect over TLS, trusting the server's certificate if this CA (PEM) signed it. Needs
    /// an https:// --server.
    #[arg(long, env = "INVENTORY_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// With --ca: present this client certificate (PEM) to a server that requires mutual TLS.
    #[arg(long, env = "INVENTORY_CERT", value_name = "FILE", requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "INVENTORY_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// The client subcommands, flattened into `inventory`'s own.
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Availability of positions: `check SKU LOCATION...` or `check --file FILE`.
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
    /// Availability of one SKU at every location (or at the listed ones), with totals.
    #[command(after_help = EXIT_CODES_HELP)]
    CheckSku(CheckSkuArgs),
    /// What each SKU may sell at one LOCATION (CheckSellable): `sellable LOCATION SKU...` or
    /// `sellable LOCATION --file FILE`; 0 for a SKU never stocked there.
    #[command(after_help = EXIT_CODES_HELP)]
    Sellable(SellableArgs),
    /// Change a position's on_hand by DELTA (goods receipt, count, damage); once per --id.
    #[command(after_help = EXIT_CODES_HELP)]
    Adjust(AdjustArgs),
    /// Set the units of a position that no channel may sell.
    #[command(after_help = EXIT_CODES_HELP)]
    SafetyStock(SafetyStockArgs),
    /// Place a hold on every LINE, or on none (out of stock exits 1).
    #[command(after_help = EXIT_CODES_HELP)]
    Reserve(ReserveArgs),
    /// Commit a hold: its units leave on_hand; lines not listed (or not in full) are released.
    #[command(after_help = EXIT_CODES_HELP)]
    Commit(CommitArgs),
    /// Release a hold: its units are available again.
    #[command(after_help = EXIT_CODES_HELP)]
    Release(ReleaseArgs),
    /// Move an open hold's expiry to --ttl from now.
    #[command(after_help = EXIT_CODES_HELP)]
    Extend(ExtendArgs),
    /// Show one hold, open or ended.
    #[command(after_help = EXIT_CODES_HELP)]
    Reservation(ReservationArgs),
    /// Post a store's point-of-sale transactions from a JSON Lines or CSV file.
    #[command(after_help = SALES_HELP)]
    Sales(SalesArgs),
    /// Post customer returns from a JSON Lines or CSV file.
    #[command(after_help = RETURNS_HELP)]
    Returns(ReturnsArgs),
    /// Restock or scrap units a return put in quarantine.
    #[command(after_help = EXIT_CODES_HELP)]
    Dispose(DisposeArgs),
    /// How far behind each store's sales feed is: contiguous sequence, gaps, lag, anomalies.
    #[command(after_help = EXIT_CODES_HELP)]
    StoreStatus(StoreStatusArgs),
    /// Accept or dismiss a sale whose sequence number jumped (see `store-status STORE`).
    #[command(after_help = EXIT_CODES_HELP)]
    StoreAck(StoreAckArgs),
    /// Follow availability changes (until Ctrl-C, or --max-changes).
    #[command(after_help = EXIT_CODES_HELP)]
    Watch(WatchArgs),
    /// What happened to a position or a hold: its events from the log, oldest first.
    #[command(after_help = EVENTS_HELP)]
    Events(EventsArgs),
    /// ERP snapshots: `snapshot import FILE --as-of TIME --mode full|delta`.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Reconcile staged snapshots now (all of them, or --snapshot ID) and print the reports.
    #[command(after_help = EXIT_CODES_HELP)]
    Reconcile(ReconcileArgs),
    /// Reports of reconciliations: `reconciliation show ID`, `reconciliation list`.
    #[command(subcommand)]
    Reconciliation(ReconciliationCmd),
    /// Drifts held for review: `drift list`, `drift resolve --sku --location --snapshot
    /// --apply|--dismiss`.
    #[command(subcommand)]
    Drift(DriftCmd),
}

// ---------------------------------------------------------------------------------------------
// Outcomes and exit codes

/// How a client command ended; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Refused = 1,
    Usage = 2,
    NotFound = 3,
    Unavailable = 4,
    Other = 5,
    /// The server did not take the credential, or its principal may not make the call: a
    /// script should stop and have its token fixed, not retry.
    Denied = 6,
}

impl Exit {
    /// The exit code of a call that failed with `code`.
    fn of(code: Code) -> Exit {
        match code {
            Code::Ok => Exit::Success,
            Code::FailedPrecondition | Code::AlreadyExists => Exit::Refused,
            Code::InvalidArgument | Code::OutOfRange => Exit::Usage,
            Code::NotFound => Exit::NotFound,
            Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted => Exit::Unavailable,
            Code::Unauthenticated | Code::PermissionDenied => Exit::Denied,
            _ => Exit::Other,
        }
    }
}

/// A command that failed: what to print and how to exit.
#[derive(Debug)]
pub struct Failed {
    exit: Exit,
    message: String,
    /// The gRPC code and the server's machine-readable reason, when the server answered.
    code: Option<Code>,
    reason: Option<String>,
    /// The lsn to resume a change feed from, when one ended early.
    resume_after_lsn: Option<u64>,
}

impl Failed {
    fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            code: None,
            reason: None,
            resume_after_lsn: None,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    fn json(&self) -> Value {
        json!({ "error": {
            "exit_code": self.exit as u8,
            "code": self.code.map(code_name),
            "reason": self.reason,
            "message": self.message,
            "resume_after_lsn": self.resume_after_lsn,
        }})
    }
}

impl From<Status> for Failed {
    fn from(status: Status) -> Self {
        let reason = status.get_details_error_info().map(|info| info.reason);
        // A status tonic made up for a transport failure has no ErrorInfo; say so plainly.
        let message = if status.code() == Code::Unavailable && reason.is_none() {
            format!("server unavailable: {}", status.message())
        } else {
            status.message().to_owned()
        };
        Self {
            exit: Exit::of(status.code()),
            message,
            code: Some(status.code()),
            reason,
            resume_after_lsn: None,
        }
    }
}

impl From<anyhow::Error> for Failed {
    /// Local problems (a file that cannot be read or parsed) are invalid arguments.
    fn from(error: anyhow::Error) -> Self {
        Self::usage(format!("{error:#}"))
    }
}

type Outcome = Result<Exit, Failed>;

/// Runs one client command to completion and returns the process exit code.
pub fn run(command: ClientCmd) -> ExitCode {
    let client = command.client().clone();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Other as u8);
        }
    };
    let exit = match runtime.block_on(command.execute()) {
        Ok(exit) => exit,
        Err(failed) => {
            if client.json {
                print_json(&failed.json());
            }
            let mut message = format!("error: {}", failed.message);
            if let Some(reason) = &failed.reason {
                message.push_str(&format!(" [{reason}]"));
            }
            eprintln!("{message}");
            failed.exit
        }
    };
    ExitCode::from(exit as u8)
}

impl ClientCmd {
    fn client(&self) -> &ClientOpts {
        match self {
            ClientCmd::Check(a) => &a.client,
            ClientCmd::Sellable(a) => &a.client,
            ClientCmd::CheckSku(a) => &a.client,
            ClientCmd::Adjust(a) => &a.client,
            ClientCmd::SafetyStock(a) => &a.client,
            ClientCmd::Reserve(a) => &a.client,
            ClientCmd::Commit(a) => &a.client,
            ClientCmd::Release(a) => &a.client,
            ClientCmd::Extend(a) => &a.client,
            ClientCmd::Reservation(a) => &a.client,
            ClientCmd::Sales(a) => &a.client,
            ClientCmd::Returns(a) => &a.client,
            ClientCmd::Dispose(a) => &a.client,
            ClientCmd::StoreStatus(a) => &a.client,
            ClientCmd::StoreAck(a) => &a.client,
            ClientCmd::Watch(a) => &a.client,
            ClientCmd::Events(a) => &a.client,
            ClientCmd::Snapshot(c) => c.client(),
            ClientCmd::Reconcile(a) => &a.client,
            ClientCmd::Reconciliation(c) => c.client(),
            ClientCmd::Drift(c) => c.client(),
        }
    }

    async fn execute(self) -> Outcome {
        match self {
            ClientCmd::Check(a) => reads::check(a).await,
            ClientCmd::Sellable(a) => reads::sellable(a).await,
            ClientCmd::CheckSku(a) => reads::check_sku(a).await,
            ClientCmd::Adjust(a) => stock::adjust(a).await,
            ClientCmd::SafetyStock(a) => stock::safety_stock(a).await,
            ClientCmd::Reserve(a) => holds::reserve(a).await,
            ClientCmd::Commit(a) => holds::commit(a).await,
            ClientCmd::Release(a) => holds::release(a).await,
            ClientCmd::Extend(a) => holds::extend(a).await,
            ClientCmd::Reservation(a) => reads::reservation(a).await,
            ClientCmd::Sales(a) => batches::sales(a).await,
            ClientCmd::Returns(a) => batches::returns(a).await,
            ClientCmd::Dispose(a) => stock::dispose(a).await,
            ClientCmd::StoreStatus(a) => stores::store_status(a).await,
            ClientCmd::StoreAck(a) => stores::store_ack(a).await,
            ClientCmd::Watch(a) => reads::watch(a).await,
            ClientCmd::Events(a) => events::events(a).await,
            ClientCmd::Snapshot(SnapshotCmd::Import(a)) => snapshots::import(a).await,
            ClientCmd::Reconcile(a) => snapshots::reconcile(a).await,
            ClientCmd::Reconciliation(c) => snapshots::reconciliation(c).await,
            ClientCmd::Drift(c) => snapshots::drift(c).await,
        }
    }
}

/// The id given with `--id`, or a new one: `PREFIX-MS-RANDOM` (the wall clock in ms and 32
/// random bits, so two runs in the same millisecond differ). A new id is printed on stderr
/// before the call, because a retry after a timeout or a lost answer must reuse it to be
/// applied at most once; `what` names it in that note.
fn id_or_generated(id: Option<String>, prefix: &str, what: &str) -> String {
    if let Some(id) = id {
        return id;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // A fresh RandomState is keyed from the OS's randomness: no RNG crate for 32 bits.
    let random = RandomState::new().build_hasher().finish() as u32;
    let id = format!("{prefix}-{now_ms}-{random:08x}");
    eprintln!("no --id given: this {what}'s id is {id}; a retry must pass --id {id}");
    id
}

/// How to install what `completions` prints, as its `--help` shows.
pub const COMPLETIONS_HELP: &str = "\
Install (then open a new shell):
  bash:  inventory completions bash > ~/.local/share/bash-completion/completions/inventory
  zsh:   inventory completions zsh > ~/.zfunc/_inventory   (with fpath+=~/.zfunc before compinit)
  fish:  inventory completions fish > ~/.config/fish/completions/inventory.fish";

/// `completions`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to print the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints `shell`'s completion script for `command` (the whole `inventory` tree). Built in
/// memory first: the generator panics on a write error, and a closed stdout (`| head`) is
/// not worth a panic.
pub fn print_completions(args: &CompletionsArgs, mut command: clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "inventory", &mut script);
    let _ = std::io::stdout().write_all(&script);
    ExitCode::SUCCESS
}

/// The TLS of `--ca`, `--cert` and `--key`: `None` for a plaintext `http://` server. TLS
/// goes with an `https://` server and nothing else, so a TLS port is never sent plaintext by
/// mistake (nor a plaintext one TLS).
fn client_tls(opts: &ClientOpts) -> Result<Option<ClientTlsConfig>, Failed> {
    let https = opts.server.starts_with("https://");
    let Some(ca) = &opts.tls.ca else {
        if https {
            return Err(Failed::usage(format!(
                "--server {} is https: give --ca FILE (the CA that signed the server's \
                 certificate)",
                opts.server
            )));
        }
        return Ok(None);
    };
    if !https {
        return Err(Failed::usage(format!(
            "--ca connects over TLS: give an https:// --server, not {}",
            opts.server
        )));
    }
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| Failed::usage(format!("reading --{flag} {}: {e}", path.display())))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca", ca)?));
    if let (Some(cert), Some(key)) = (&opts.tls.cert, &opts.tls.key) {
        tls = tls.identity(Identity::from_pem(read("cert", cert)?, read("key", key)?));
    }
    Ok(Some(tls))
}

/// Connects (bounded by `--timeout`); a server that cannot be reached exits 4.
async fn connect(opts: &ClientOpts, per_call_timeout: bool) -> Result<Client, Failed> {
    let bearer = match &opts.token {
        None => Bearer(None),
        Some(token) => Bearer(Some(format!("Bearer {token}").parse().map_err(|_| {
            Failed::usage("--token must be printable ASCII (as `inventory token new` makes)")
        })?)),
    };
    let endpoint = Endpoint::from_shared(opts.server.clone())
        .map_err(|e| Failed::usage(format!("invalid --server {:?}: {e}", opts.server)))?
        .connect_timeout(opts.timeout);
    let endpoint = match client_tls(opts)? {
        Some(tls) => endpoint
            .tls_config(tls)
            .map_err(|e| Failed::usage(format!("TLS settings: {e}")))?,
        None => endpoint,
    };
    let endpoint = if per_call_timeout {
        endpoint.timeout(opts.timeout)
    } else {
        endpoint
    };
    match endpoint.connect().await {
        Ok(channel) => Ok(InventoryClient::with_interceptor(channel, bearer)),
        Err(error) => {
            let mut message = format!("cannot connect to {}: {error}", opts.server);
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                // Layers often repeat their cause's text; say each thing once.
                let cause_text = cause.to_string();
                if !message.contains(&cause_text) {
                    message.push_str(&format!(": {cause_text}"));
                }
                source = cause.source();
            }
            Err(Failed::new(Exit::Unavailable, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_exit_codes() {
        assert_eq!(Exit::of(Code::FailedPrecondition), Exit::Refused);
        assert_eq!(Exit::of(Code::AlreadyExists), Exit::Refused);
        assert_eq!(Exit::of(Code::InvalidArgument), Exit::Usage);
        assert_eq!(Exit::of(Code::NotFound), Exit::NotFound);
        assert_eq!(Exit::of(Code::Unavailable), Exit::Unavailable);
        assert_eq!(Exit::of(Code::ResourceExhausted), Exit::Unavailable);
        assert_eq!(Exit::of(Code::Aborted), Exit::Unavailable);
        assert_eq!(Exit::of(Code::Internal), Exit::Other);
        assert_eq!(Exit::of(Code::Unauthenticated), Exit::Denied);
        assert_eq!(Exit::of(Code::PermissionDenied), Exit::Denied);
    }
}
