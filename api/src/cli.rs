//! The client subcommands of `inventory`: one per thing a person or a script asks a running
//! server (`check`, `check-sku`, `reserve`, `commit`, `release`, `reservation`, `sales`,
//! `returns`, `store-status`, `watch`).
//!
//! Each subcommand connects to `--server` (env `INVENTORY_SERVER`), makes its calls through the
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

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use inv_proto::code_name;
use inv_proto::v1 as pb;
use pb::inventory_client::InventoryClient;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (client subcommands):
  0  success
  1  refused by a business rule: reserve rejected for lack of stock, commit or release of a
     hold that has ended or expired, an idempotency key reused with another payload
  2  usage error or invalid argument (bad flags, a malformed LINE, a bad file, a request the
     server found invalid)
  3  not found: unknown reservation, return or store
  4  server unavailable: cannot connect, timed out, overloaded, fail-stopped or shutting down
  5  any other error
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
    /// Place a hold on every LINE, or on none (out of stock exits 1).
    #[command(after_help = EXIT_CODES_HELP)]
    Reserve(ReserveArgs),
    /// Commit a hold: its units leave on_hand; lines not listed (or not in full) are released.
    #[command(after_help = EXIT_CODES_HELP)]
    Commit(CommitArgs),
    /// Release a hold: its units are available again.
    #[command(after_help = EXIT_CODES_HELP)]
    Release(ReleaseArgs),
    /// Show one hold, open or ended.
    #[command(after_help = EXIT_CODES_HELP)]
    Reservation(ReservationArgs),
    /// Post a store's point-of-sale transactions from a JSON Lines or CSV file.
    #[command(after_help = SALES_HELP)]
    Sales(SalesArgs),
    /// Post customer returns from a JSON Lines or CSV file.
    #[command(after_help = RETURNS_HELP)]
    Returns(ReturnsArgs),
    /// How far behind each store's sales feed is: contiguous sequence, gaps, lag.
    #[command(after_help = EXIT_CODES_HELP)]
    StoreStatus(StoreStatusArgs),
    /// Follow availability changes (until Ctrl-C, or --max-changes).
    #[command(after_help = EXIT_CODES_HELP)]
    Watch(WatchArgs),
}

const SALES_HELP: &str = "\
File formats:
  JSON Lines, one sale per line:
    {\"txn_id\": \"t-1\", \"store_seq\": 1, \"occurred_at_ms\": 1700000000000,
     \"lines\": [\"sneaker@store-7=1\", {\"sku\": \"sock\", \"location\": \"store-7\", \"qty\": 2}]}
  CSV with a header row; LINEs separated by `;`:
    txn_id,store_seq,occurred_at_ms,lines
    t-1,1,1700000000000,sneaker@store-7=1;sock@store-7=2

Exit codes: see `inventory --help`; 0 when every sale was recorded, else the code of the first
sale that was not.";

const RETURNS_HELP: &str = "\
File formats:
  JSON Lines, one return per line (disposition per line optional, else --disposition):
    {\"return_id\": \"r-1\", \"lines\": [\"sneaker@dc=1\",
     {\"sku\": \"sock\", \"location\": \"dc\", \"qty\": 2, \"disposition\": \"restock\"}]}
  CSV with a header row; LINEs separated by `;`; the disposition column is optional:
    return_id,lines,disposition
    r-1,sneaker@dc=1;sock@dc=2,inspect

Exit codes: see `inventory --help`; 0 when every return was recorded, else the code of the
first return that was not.";

/// `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The SKU (with LOCATION...).
    #[arg(
        value_name = "SKU",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub sku: Option<String>,
    /// Locations of the SKU to check.
    #[arg(value_name = "LOCATION", requires = "sku")]
    pub locations: Vec<String>,
    /// Read positions from a file (`-`: stdin), one `SKU@LOCATION` per line; blank lines and
    /// lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `check-sku`.
#[derive(Args, Debug)]
pub struct CheckSkuArgs {
    /// The SKU.
    pub sku: String,
    /// Only these locations (repeatable); every location the SKU has by default.
    #[arg(long = "location", value_name = "LOCATION")]
    pub locations: Vec<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `reserve`.
#[derive(Args, Debug)]
pub struct ReserveArgs {
    /// Your id for the hold; also its idempotency key (resending the same reserve is safe).
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// The sales channel placing the hold (for reporting).
    #[arg(long, default_value = "cli")]
    pub channel: String,
    /// How long the hold lasts: 1s to 7d (e.g. 90s, 15m, 2h).
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// What to hold, as SKU@LOCATION=QTY (split at the last `=` and the last `@` before it).
    #[arg(value_name = "LINE", required = true, value_parser = parse_line)]
    pub lines: Vec<pb::Line>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// The hold to commit.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Lines to commit, as SKU@LOCATION=QTY, each at most the held quantity; none commits the
    /// whole hold.
    #[arg(value_name = "LINE", value_parser = parse_line)]
    pub lines: Vec<pb::Line>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The hold to release.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `reservation`.
#[derive(Args, Debug)]
pub struct ReservationArgs {
    /// The hold to show.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// How a `--file` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// `sales`.
#[derive(Args, Debug)]
pub struct SalesArgs {
    /// The store (or till) posting the sales.
    #[arg(long, value_name = "STORE")]
    pub store: String,
    /// The sales (`-`: stdin); see the formats below.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format [default: by extension: `.csv` is CSV, anything else JSON Lines].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// What happens to returned units on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Straight back into sellable stock.
    Restock,
    /// Into quarantine until inspected.
    Inspect,
}

impl Disposition {
    fn proto(self) -> pb::ReturnDisposition {
        match self {
            Disposition::Restock => pb::ReturnDisposition::Restock,
            Disposition::Inspect => pb::ReturnDisposition::Inspect,
        }
    }
}

/// `returns`.
#[derive(Args, Debug)]
pub struct ReturnsArgs {
    /// The returns (`-`: stdin); see the formats below.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format [default: by extension: `.csv` is CSV, anything else JSON Lines].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Disposition of lines that do not name one (inspect: nothing becomes sellable unseen).
    #[arg(long, value_enum, default_value = "inspect")]
    pub disposition: Disposition,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `store-status`.
#[derive(Args, Debug)]
pub struct StoreStatusArgs {
    /// One store (its gaps are listed too); every store by default.
    #[arg(value_name = "STORE")]
    pub store: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Only this SKU (repeatable); every SKU by default.
    #[arg(long = "sku", value_name = "SKU")]
    pub skus: Vec<String>,
    /// Only this location (repeatable); every location by default.
    #[arg(long = "location", value_name = "LOCATION")]
    pub locations: Vec<String>,
    /// First replay every matching change after this LSN (0: the whole log), then follow live.
    #[arg(long, value_name = "N")]
    pub after_lsn: Option<u64>,
    /// Stop after printing this many changes.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<u64>,
    #[command(flatten)]
    pub client: ClientOpts,
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
}

impl Exit {
    /// The exit code of a call that failed with `code`.
    fn of(code: Code) -> Exit {
        match code {
            Code::Ok => Exit::Success,
            Code::FailedPrecondition | Code::AlreadyExists => Exit::Refused,
            Code::InvalidArgument | Code::OutOfRange => Exit::Usage,
            Code::NotFound => Exit::NotFound,
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => {
                Exit::Unavailable
            }
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
            ClientCmd::CheckSku(a) => &a.client,
            ClientCmd::Reserve(a) => &a.client,
            ClientCmd::Commit(a) => &a.client,
            ClientCmd::Release(a) => &a.client,
            ClientCmd::Reservation(a) => &a.client,
            ClientCmd::Sales(a) => &a.client,
            ClientCmd::Returns(a) => &a.client,
            ClientCmd::StoreStatus(a) => &a.client,
            ClientCmd::Watch(a) => &a.client,
        }
    }

    async fn execute(self) -> Outcome {
        match self {
            ClientCmd::Check(a) => check(a).await,
            ClientCmd::CheckSku(a) => check_sku(a).await,
            ClientCmd::Reserve(a) => reserve(a).await,
            ClientCmd::Commit(a) => commit(a).await,
            ClientCmd::Release(a) => release(a).await,
            ClientCmd::Reservation(a) => reservation(a).await,
            ClientCmd::Sales(a) => sales(a).await,
            ClientCmd::Returns(a) => returns(a).await,
            ClientCmd::StoreStatus(a) => store_status(a).await,
            ClientCmd::Watch(a) => watch(a).await,
        }
    }
}

/// Connects (bounded by `--timeout`); a server that cannot be reached exits 4.
async fn connect(
    opts: &ClientOpts,
    per_call_timeout: bool,
) -> Result<InventoryClient<Channel>, Failed> {
    let endpoint = Endpoint::from_shared(opts.server.clone())
        .map_err(|e| Failed::usage(format!("invalid --server {:?}: {e}", opts.server)))?
        .connect_timeout(opts.timeout);
    let endpoint = if per_call_timeout {
        endpoint.timeout(opts.timeout)
    } else {
        endpoint
    };
    match endpoint.connect().await {
        Ok(channel) => Ok(InventoryClient::new(channel)),
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

// ---------------------------------------------------------------------------------------------
// Commands

async fn check(args: CheckArgs) -> Outcome {
    let positions: Vec<pb::Position> = match (&args.file, &args.sku) {
        (Some(file), _) => read_positions(file)?,
        (None, Some(sku)) => {
            if args.locations.is_empty() {
                return Err(Failed::usage(
                    "check needs at least one LOCATION after the SKU (or use check-sku)",
                ));
            }
            args.locations
                .iter()
                .map(|location| pb::Position {
                    sku: sku.clone(),
                    location: location.clone(),
                })
                .collect()
        }
        (None, None) => return Err(Failed::usage("check needs SKU LOCATION... or --file")),
    };
    let mut client = connect(&args.client, true).await?;
    let mut results = Vec::with_capacity(positions.len());
    for chunk in positions.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .check(pb::CheckRequest {
                positions: chunk.to_vec(),
            })
            .await?
            .into_inner();
        results.extend(response.results);
    }
    let mut exit = Exit::Success;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (position, result) in positions.iter().zip(results) {
        match result.result {
            Some(pb::check_result::Result::Availability(a)) => {
                rows.push(availability_row(&a));
                json_rows.push(availability_json(&a));
            }
            Some(pb::check_result::Result::Error(e)) => {
                if exit == Exit::Success {
                    exit = item_exit(&e);
                }
                let mut row = vec![position.sku.clone(), position.location.clone()];
                row.push(format!("error: {}", e.message));
                rows.push(row);
                json_rows.push(json!({
                    "sku": position.sku, "location": position.location, "error": item_error_json(&e),
                }));
            }
            None => {
                return Err(Failed::new(
                    Exit::Other,
                    "the server sent an empty check result",
                ));
            }
        }
    }
    if args.client.json {
        print_json(&json!({ "positions": json_rows }));
    } else {
        print_table(&AVAILABILITY_HEADERS, &rows);
    }
    Ok(exit)
}

async fn check_sku(args: CheckSkuArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let response = client
        .check_sku(pb::CheckSkuRequest {
            sku: args.sku,
            locations: args.locations,
        })
        .await?
        .into_inner();
    let total = response.total.unwrap_or_default();
    if args.client.json {
        print_json(&json!({
            "sku": response.sku,
            "rows": response.rows.iter().map(availability_json).collect::<Vec<_>>(),
            "total": {
                "on_hand": total.on_hand, "reserved": total.reserved,
                "safety_stock": total.safety_stock, "quarantined": total.quarantined,
                "available": total.available, "sellable": total.sellable,
            },
        }));
    } else {
        let mut rows: Vec<Vec<String>> = response.rows.iter().map(availability_row).collect();
        rows.push(vec![
            response.sku.clone(),
            "(total)".into(),
            String::new(),
            total.on_hand.to_string(),
            total.reserved.to_string(),
            total.safety_stock.to_string(),
            total.quarantined.to_string(),
            total.available.to_string(),
            total.sellable.to_string(),
        ]);
        print_table(&AVAILABILITY_HEADERS, &rows);
    }
    Ok(Exit::Success)
}

async fn reserve(args: ReserveArgs) -> Outcome {
    let ttl_ms = u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX);
    let mut client = connect(&args.client, true).await?;
    let request = pb::ReserveRequest {
        reservation_id: args.id.clone(),
        channel: args.channel,
        lines: args.lines.clone(),
        ttl_ms,
    };
    let response = client.reserve(request).await?.into_inner();
    match response.result {
        Some(pb::reserve_response::Result::Granted(granted)) => {
            if args.client.json {
                print_json(&json!({
                    "reservation_id": args.id, "result": "granted", "lsn": response.lsn,
                    "duplicate": response.duplicate, "expires_at_ms": granted.expires_at_ms,
                }));
            } else {
                println!(
                    "granted {}: {} line(s) held until {} (lsn {}{})",
                    args.id,
                    args.lines.len(),
                    format_utc_ms(granted.expires_at_ms),
                    response.lsn,
                    duplicate_note(response.duplicate),
                );
            }
            Ok(Exit::Success)
        }
        Some(pb::reserve_response::Result::Rejected(rejected)) => {
            if args.client.json {
                let short: Vec<Value> = rejected
                    .short_lines
                    .iter()
                    .map(|s| {
                        json!({
                            "line_index": s.line_index, "sku": s.sku, "location": s.location,
                            "requested": s.requested, "available": s.available,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "reservation_id": args.id, "result": "rejected", "lsn": response.lsn,
                    "duplicate": response.duplicate, "short_lines": short,
                }));
            } else {
                println!(
                    "rejected {}: not enough stock, nothing held (lsn {}{})",
                    args.id,
                    response.lsn,
                    duplicate_note(response.duplicate),
                );
                let rows: Vec<Vec<String>> = rejected
                    .short_lines
                    .iter()
                    .map(|s| {
                        vec![
                            s.sku.clone(),
                            s.location.clone(),
                            s.requested.to_string(),
                            s.available.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["SKU", "LOCATION", "REQUESTED", "AVAILABLE"], &rows);
            }
            Ok(Exit::Refused)
        }
        None => Err(Failed::new(
            Exit::Other,
            "the server sent an empty reserve answer",
        )),
    }
}

async fn commit(args: CommitArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let response = client
        .commit(pb::CommitRequest {
            reservation_id: args.id.clone(),
            lines: args.lines,
        })
        .await?
        .into_inner();
    if args.client.json {
        let lines: Vec<Value> = response
            .lines
            .iter()
            .map(|l| {
                json!({ "sku": l.sku, "location": l.location, "held": l.held, "committed": l.committed })
            })
            .collect();
        print_json(&json!({
            "reservation_id": args.id, "result": "committed", "lsn": response.lsn,
            "duplicate": response.duplicate, "lines": lines,
        }));
    } else {
        println!(
            "committed {} (lsn {}{})",
            args.id,
            response.lsn,
            duplicate_note(response.duplicate)
        );
        let rows: Vec<Vec<String>> = response
            .lines
            .iter()
            .map(|l| {
                vec![
                    l.sku.clone(),
                    l.location.clone(),
                    l.held.to_string(),
                    l.committed.to_string(),
                    (l.held - l.committed.min(l.held)).to_string(),
                ]
            })
            .collect();
        print_table(&["SKU", "LOCATION", "HELD", "COMMITTED", "RELEASED"], &rows);
    }
    Ok(Exit::Success)
}

async fn release(args: ReleaseArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let response = client
        .release(pb::ReleaseRequest {
            reservation_id: args.id.clone(),
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "reservation_id": args.id, "result": "released", "lsn": response.lsn,
            "duplicate": response.duplicate,
        }));
    } else {
        println!(
            "released {} (lsn {}{})",
            args.id,
            response.lsn,
            duplicate_note(response.duplicate)
        );
    }
    Ok(Exit::Success)
}

async fn reservation(args: ReservationArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let hold = client
        .get_reservation(pb::GetReservationRequest {
            reservation_id: args.id,
        })
        .await?
        .into_inner()
        .reservation
        .ok_or_else(|| Failed::new(Exit::Other, "the server sent an empty reservation"))?;
    let state = pb::HoldState::try_from(hold.state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("HOLD_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown ({})", hold.state));
    if args.client.json {
        let lines: Vec<Value> = hold.lines.iter().map(line_json).collect();
        print_json(&json!({
            "reservation_id": hold.reservation_id, "channel": hold.channel, "state": state,
            "lines": lines, "expires_at_ms": hold.expires_at_ms, "placed_lsn": hold.placed_lsn,
            "placed_at_ms": hold.placed_at_ms, "ended_at_ms": hold.ended_at_ms,
        }));
    } else {
        println!(
            "{} ({}, channel {}): placed {} at lsn {}, expires {}{}",
            hold.reservation_id,
            state,
            hold.channel,
            format_utc_ms(hold.placed_at_ms),
            hold.placed_lsn,
            format_utc_ms(hold.expires_at_ms),
            if hold.ended_at_ms > 0 {
                format!(", ended {}", format_utc_ms(hold.ended_at_ms))
            } else {
                String::new()
            },
        );
        let rows: Vec<Vec<String>> = hold
            .lines
            .iter()
            .map(|l| vec![l.sku.clone(), l.location.clone(), l.qty.to_string()])
            .collect();
        print_table(&["SKU", "LOCATION", "QTY"], &rows);
    }
    Ok(Exit::Success)
}

async fn sales(args: SalesArgs) -> Outcome {
    let sales = read_sales(&args.file, args.format)?;
    if sales.is_empty() {
        return Err(Failed::usage(format!(
            "{} holds no sales",
            args.file.display()
        )));
    }
    let ids: Vec<String> = sales.iter().map(|s| s.txn_id.clone()).collect();
    let mut client = connect(&args.client, true).await?;
    let mut results = Vec::with_capacity(sales.len());
    for chunk in sales.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .record_sales(pb::RecordSalesRequest {
                store_id: args.store.clone(),
                sales: chunk.to_vec(),
            })
            .await?
            .into_inner();
        results.extend(response.results);
    }
    report_batch("sales", "txn_id", &ids, results, args.client.json)
}

async fn returns(args: ReturnsArgs) -> Outcome {
    let returns = read_returns(&args.file, args.format, args.disposition)?;
    if returns.is_empty() {
        return Err(Failed::usage(format!(
            "{} holds no returns",
            args.file.display()
        )));
    }
    let ids: Vec<String> = returns.iter().map(|r| r.return_id.clone()).collect();
    let mut client = connect(&args.client, true).await?;
    let mut results = Vec::with_capacity(returns.len());
    for chunk in returns.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .record_returns(pb::RecordReturnsRequest {
                returns: chunk.to_vec(),
            })
            .await?
            .into_inner();
        results.extend(response.results);
    }
    report_batch("returns", "return_id", &ids, results, args.client.json)
}

/// Prints a batch's per-item answers (indexes renumbered across chunks) and picks the exit code.
fn report_batch(
    what: &str,
    id_field: &str,
    ids: &[String],
    results: Vec<pb::BatchItemResult>,
    json_output: bool,
) -> Outcome {
    if results.len() != ids.len() {
        return Err(Failed::new(
            Exit::Other,
            format!("sent {} {what}, got {} answers", ids.len(), results.len()),
        ));
    }
    let mut exit = Exit::Success;
    let (mut recorded, mut duplicates, mut failed) = (0usize, 0usize, 0usize);
    let mut rows = Vec::with_capacity(ids.len());
    let mut items = Vec::with_capacity(ids.len());
    for (index, (id, result)) in ids.iter().zip(results).enumerate() {
        match result.result {
            Some(pb::batch_item_result::Result::Recorded(r)) => {
                recorded += 1;
                duplicates += usize::from(r.duplicate);
                rows.push(vec![
                    index.to_string(),
                    id.clone(),
                    if r.duplicate { "duplicate" } else { "recorded" }.into(),
                    r.lsn.to_string(),
                    String::new(),
                ]);
                items.push(json!({
                    "index": index, id_field: id, "result": "recorded", "lsn": r.lsn,
                    "duplicate": r.duplicate,
                }));
            }
            Some(pb::batch_item_result::Result::Error(e)) => {
                failed += 1;
                if exit == Exit::Success {
                    exit = item_exit(&e);
                }
                let field = if e.field.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", e.field)
                };
                rows.push(vec![
                    index.to_string(),
                    id.clone(),
                    "failed".into(),
                    String::new(),
                    format!("{field}{}", e.message),
                ]);
                items.push(json!({
                    "index": index, id_field: id, "result": "failed", "error": item_error_json(&e),
                }));
            }
            None => {
                return Err(Failed::new(
                    Exit::Other,
                    "the server sent an empty item answer",
                ));
            }
        }
    }
    if json_output {
        print_json(&json!({
            "recorded": recorded, "duplicates": duplicates, "failed": failed, "items": items,
        }));
    } else {
        let header_id = id_field.to_ascii_uppercase();
        print_table(&["INDEX", &header_id, "RESULT", "LSN", "ERROR"], &rows);
        println!(
            "{recorded} of {} {what} recorded ({duplicates} already were), {failed} failed",
            ids.len()
        );
    }
    Ok(exit)
}

async fn store_status(args: StoreStatusArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let one = args.store.is_some();
    let response = client
        .store_status(pb::StoreStatusRequest {
            store_id: args.store.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if args.client.json {
        let stores: Vec<Value> = response
            .stores
            .iter()
            .map(|s| {
                json!({
                    "store_id": s.store_id, "contiguous_seq": s.contiguous_seq,
                    "newest_seq": s.newest_seq, "missing_count": s.missing_count,
                    "gaps": s.gaps.iter().map(|g| json!([g.first, g.last])).collect::<Vec<_>>(),
                    "gaps_truncated": s.gaps_truncated, "sales_recorded": s.sales_recorded,
                    "seq_reused": s.seq_reused, "gaps_abandoned": s.gaps_abandoned,
                    "duplicates_absorbed": s.duplicates_absorbed,
                    "newest_lag_ms": s.newest_lag_ms,
                    "newest_occurred_at_ms": s.newest_occurred_at_ms,
                })
            })
            .collect();
        print_json(&json!({ "stores": stores }));
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = response
        .stores
        .iter()
        .map(|s| {
            vec![
                s.store_id.clone(),
                s.contiguous_seq.to_string(),
                s.newest_seq.to_string(),
                s.missing_count.to_string(),
                s.gaps.len().to_string(),
                s.sales_recorded.to_string(),
                format_lag_ms(s.newest_lag_ms),
            ]
        })
        .collect();
    print_table(
        &[
            "STORE",
            "CONTIGUOUS",
            "NEWEST",
            "MISSING",
            "GAPS",
            "SALES",
            "LAG",
        ],
        &rows,
    );
    if one {
        for s in &response.stores {
            for gap in &s.gaps {
                if gap.first == gap.last {
                    println!("missing: {}", gap.first);
                } else {
                    println!("missing: {}-{}", gap.first, gap.last);
                }
            }
            if s.gaps_truncated {
                println!("(more gaps not listed)");
            }
        }
    }
    Ok(Exit::Success)
}

async fn watch(args: WatchArgs) -> Outcome {
    // A change feed lives as long as it is followed: no per-call timeout.
    let mut client = connect(&args.client, false).await?;
    let mut feed = client
        .watch_availability(pb::WatchAvailabilityRequest {
            skus: args.skus,
            locations: args.locations,
            after_lsn: args.after_lsn,
        })
        .await?
        .into_inner();
    let mut through = args.after_lsn;
    let mut printed = 0u64;
    let max = args.max_changes.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    loop {
        if printed >= max {
            return Ok(Exit::Success);
        }
        let message = tokio::select! {
            message = feed.next() => message,
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Success),
        };
        let message = match message {
            None => return Ok(Exit::Success),
            Some(Ok(message)) => message,
            Some(Err(status)) => {
                let mut failed = Failed::from(status);
                failed.resume_after_lsn = through;
                if let Some(lsn) = through {
                    failed
                        .message
                        .push_str(&format!("; resume with --after-lsn {lsn}"));
                }
                return Err(failed);
            }
        };
        through = Some(message.through_lsn);
        let mut out = stdout.lock();
        for change in message.changes {
            if printed >= max {
                break;
            }
            printed += 1;
            let cause = pb::ChangeCause::try_from(change.cause)
                .map(|c| {
                    c.as_str_name()
                        .trim_start_matches("CHANGE_CAUSE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| change.cause.to_string());
            let p = change.position.unwrap_or_default();
            let written = if args.client.json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "lsn": change.lsn, "cause": cause, "position": availability_json(&p),
                    })
                )
            } else {
                writeln!(
                    out,
                    "lsn {:<8} {:<16} {}@{}  on_hand {}  reserved {}  available {}  sellable {}",
                    change.lsn,
                    cause,
                    p.sku,
                    p.location,
                    p.on_hand,
                    p.reserved,
                    p.available,
                    p.sellable
                )
            };
            // A closed pipe (`watch | head`) ends the watch quietly.
            if written.and_then(|()| out.flush()).is_err() {
                return Ok(Exit::Success);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing arguments

/// `SKU@LOCATION=QTY`, split at the last `=` and the last `@` before it.
pub fn parse_line(text: &str) -> Result<pb::Line, String> {
    const SYNTAX: &str = "expected SKU@LOCATION=QTY, e.g. sneaker-42@store-7=2";
    let (position, qty) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?}: no `=QTY`; {SYNTAX}"))?;
    let (sku, location) = position
        .rsplit_once('@')
        .ok_or_else(|| format!("{text:?}: no `@LOCATION`; {SYNTAX}"))?;
    if sku.is_empty() {
        return Err(format!("{text:?}: empty SKU; {SYNTAX}"));
    }
    if location.is_empty() {
        return Err(format!("{text:?}: empty LOCATION; {SYNTAX}"));
    }
    let qty: u64 = qty
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: QTY {qty:?} is not a whole number; {SYNTAX}"))?;
    if qty == 0 {
        return Err(format!("{text:?}: QTY must be at least 1"));
    }
    Ok(pb::Line {
        sku: sku.to_owned(),
        location: location.to_owned(),
        qty,
    })
}

/// `SKU@LOCATION`, split at the last `@`.
fn parse_position(text: &str) -> Result<pb::Position, String> {
    let (sku, location) = text
        .rsplit_once('@')
        .ok_or_else(|| format!("{text:?}: expected SKU@LOCATION"))?;
    if sku.is_empty() || location.is_empty() {
        return Err(format!("{text:?}: expected SKU@LOCATION, both non-empty"));
    }
    Ok(pb::Position {
        sku: sku.to_owned(),
        location: location.to_owned(),
    })
}

/// A duration as one or more NUMBER+UNIT parts, units `ms`, `s`, `m`, `h`, `d`: `500ms`,
/// `15m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let syntax = || format!("{text:?}: expected a duration like 500ms, 90s, 15m, 2h or 1d");
    let mut total_ms: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(syntax());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(syntax());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| syntax())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(syntax()),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?}: too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

// ---------------------------------------------------------------------------------------------
// Files

/// A file's text, or stdin's for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn format_of(path: &Path, format: Option<FileFormat>) -> FileFormat {
    format.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => FileFormat::Csv,
        _ => FileFormat::Jsonl,
    })
}

fn read_positions(path: &Path) -> anyhow::Result<Vec<pb::Position>> {
    let text = read_input(path)?;
    let mut positions = Vec::new();
    for (number, line) in std::io::Cursor::new(text).lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        positions.push(
            parse_position(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), number + 1))?,
        );
    }
    anyhow::ensure!(
        !positions.is_empty(),
        "{} lists no positions",
        path.display()
    );
    Ok(positions)
}

/// A line in a file: a `SKU@LOCATION=QTY` string or an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileLine {
    Text(String),
    Object {
        sku: String,
        location: String,
        qty: u64,
        #[serde(default)]
        disposition: Option<Disposition>,
    },
}

impl FileLine {
    fn parse(self) -> Result<(pb::Line, Option<Disposition>), String> {
        match self {
            FileLine::Text(text) => parse_line(&text).map(|line| (line, None)),
            FileLine::Object {
                sku,
                location,
                qty,
                disposition,
            } => Ok((pb::Line { sku, location, qty }, disposition)),
        }
    }
}

/// `LINE;LINE;...` in a CSV cell.
fn parse_line_list(cell: &str) -> Result<Vec<pb::Line>, String> {
    cell.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_line)
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleRecord {
    txn_id: String,
    store_seq: u64,
    occurred_at_ms: u64,
    lines: Vec<FileLine>,
}

#[derive(Debug, Deserialize)]
struct SaleCsvRecord {
    txn_id: String,
    store_seq: u64,
    occurred_at_ms: u64,
    lines: String,
}

fn read_sales(path: &Path, format: Option<FileFormat>) -> anyhow::Result<Vec<pb::Sale>> {
    file_records(
        path,
        format,
        |record: SaleRecord| {
            let lines = record
                .lines
                .into_iter()
                .map(|l| l.parse().map(|(line, _)| line))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(pb::Sale {
                txn_id: record.txn_id,
                store_seq: record.store_seq,
                occurred_at_ms: record.occurred_at_ms,
                lines,
            })
        },
        |record: SaleCsvRecord| {
            Ok(pb::Sale {
                lines: parse_line_list(&record.lines)?,
                txn_id: record.txn_id,
                store_seq: record.store_seq,
                occurred_at_ms: record.occurred_at_ms,
            })
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnRecord {
    return_id: String,
    lines: Vec<FileLine>,
    /// For the lines that do not name one.
    #[serde(default)]
    disposition: Option<Disposition>,
}

#[derive(Debug, Deserialize)]
struct ReturnCsvRecord {
    return_id: String,
    lines: String,
    #[serde(default)]
    disposition: Option<Disposition>,
}

fn return_line(line: pb::Line, disposition: Disposition) -> pb::ReturnLine {
    pb::ReturnLine {
        sku: line.sku,
        location: line.location,
        qty: line.qty,
        disposition: disposition.proto() as i32,
    }
}

fn read_returns(
    path: &Path,
    format: Option<FileFormat>,
    default: Disposition,
) -> anyhow::Result<Vec<pb::Return>> {
    file_records(
        path,
        format,
        |record: ReturnRecord| {
            let fallback = record.disposition.unwrap_or(default);
            let lines = record
                .lines
                .into_iter()
                .map(|l| {
                    l.parse()
                        .map(|(line, d)| return_line(line, d.unwrap_or(fallback)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(pb::Return {
                return_id: record.return_id,
                lines,
            })
        },
        |record: ReturnCsvRecord| {
            let disposition = record.disposition.unwrap_or(default);
            let lines = parse_line_list(&record.lines)?
                .into_iter()
                .map(|line| return_line(line, disposition))
                .collect();
            Ok(pb::Return {
                return_id: record.return_id,
                lines,
            })
        },
    )
}

/// Reads `path` as JSON Lines or CSV (see `format_of`) and turns each record into a `T` with
/// `from_json` or `from_csv`; an error names the file and line (CSV row 1 is the header).
fn file_records<T, J, C>(
    path: &Path,
    format: Option<FileFormat>,
    from_json: impl Fn(J) -> Result<T, String>,
    from_csv: impl Fn(C) -> Result<T, String>,
) -> anyhow::Result<Vec<T>>
where
    J: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
{
    let text = read_input(path)?;
    let at = |n: usize| format!("{}:{n}", path.display());
    match format_of(path, format) {
        FileFormat::Jsonl => jsonl::<J>(&text)
            .map(|(n, record)| {
                let record = record.with_context(|| at(n))?;
                from_json(record).map_err(|e| anyhow::anyhow!("{}: {e}", at(n)))
            })
            .collect(),
        FileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            reader
                .deserialize::<C>()
                .enumerate()
                .map(|(i, record)| {
                    let n = i + 2;
                    let record = record.with_context(|| at(n))?;
                    from_csv(record).map_err(|e| anyhow::anyhow!("{}: {e}", at(n)))
                })
                .collect()
        }
    }
}

/// The records of a JSON Lines text with their line numbers; blank lines are skipped.
fn jsonl<'a, T: serde::de::DeserializeOwned + 'a>(
    text: &'a str,
) -> impl Iterator<Item = (usize, anyhow::Result<T>)> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            (
                i + 1,
                serde_json::from_str(line).map_err(anyhow::Error::from),
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Output

const AVAILABILITY_HEADERS: [&str; 9] = [
    "SKU",
    "LOCATION",
    "EXISTS",
    "ON_HAND",
    "RESERVED",
    "SAFETY",
    "QUARANTINED",
    "AVAILABLE",
    "SELLABLE",
];

fn availability_row(a: &pb::PositionAvailability) -> Vec<String> {
    vec![
        a.sku.clone(),
        a.location.clone(),
        if a.exists { "yes" } else { "no" }.into(),
        a.on_hand.to_string(),
        a.reserved.to_string(),
        a.safety_stock.to_string(),
        a.quarantined.to_string(),
        a.available.to_string(),
        a.sellable.to_string(),
    ]
}

fn availability_json(a: &pb::PositionAvailability) -> Value {
    json!({
        "sku": a.sku, "location": a.location, "exists": a.exists, "on_hand": a.on_hand,
        "reserved": a.reserved, "safety_stock": a.safety_stock, "quarantined": a.quarantined,
        "available": a.available, "sellable": a.sellable,
    })
}

fn line_json(l: &pb::Line) -> Value {
    json!({ "sku": l.sku, "location": l.location, "qty": l.qty })
}

fn item_error_json(e: &pb::ItemError) -> Value {
    let code = i32::try_from(e.code)
        .map(Code::from_i32)
        .unwrap_or(Code::Unknown);
    let reason = pb::ErrorReason::try_from(e.reason)
        .map(|r| {
            let name = r.as_str_name();
            name.strip_prefix("ERROR_REASON_")
                .unwrap_or(name)
                .to_owned()
        })
        .unwrap_or_default();
    json!({ "code": code_name(code), "reason": reason, "field": e.field, "message": e.message })
}

fn item_exit(e: &pb::ItemError) -> Exit {
    Exit::of(
        i32::try_from(e.code)
            .map(Code::from_i32)
            .unwrap_or(Code::Unknown),
    )
}

fn duplicate_note(duplicate: bool) -> &'static str {
    if duplicate {
        "; a retry: this is the recorded answer"
    } else {
        ""
    }
}

fn print_json(value: &Value) {
    // Serializing a Value cannot fail; a closed stdout is not worth a panic.
    let _ = writeln!(std::io::stdout(), "{value:#}");
}

/// Left-aligned columns, numbers right-aligned, two spaces apart. Nothing for no rows but the
/// header (a script wanting nothing at all uses --json).
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![true; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
            numeric[i] &= cell.is_empty() || cell.parse::<f64>().is_ok();
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate().take(columns) {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if numeric[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < columns {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut headers.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// Milliseconds since the Unix epoch as UTC, `2023-11-14T22:13:20.000Z`.
pub fn format_utc_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let ms_of_day = ms % 86_400_000;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}

fn format_lag_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else if ms < 7_200_000 {
        format!("{:.1}m", ms as f64 / 60_000.0)
    } else {
        format!("{:.1}h", ms as f64 / 3_600_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_at_the_last_separators() {
        let line = parse_line("sneaker-42@store-7=2").expect("valid");
        assert_eq!(
            (line.sku.as_str(), line.location.as_str(), line.qty),
            ("sneaker-42", "store-7", 2)
        );
        let line = parse_line("a@b@c=3").expect("valid");
        assert_eq!((line.sku.as_str(), line.location.as_str()), ("a@b", "c"));
        for bad in [
            "sneaker",
            "sneaker@dc",
            "sneaker=2",
            "@dc=1",
            "s@=1",
            "s@dc=0",
            "s@dc=x",
        ] {
            assert!(parse_line(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "15", "m", "15 minutes", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(format_utc_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }

    #[test]
    fn status_codes_map_to_exit_codes() {
        assert_eq!(Exit::of(Code::FailedPrecondition), Exit::Refused);
        assert_eq!(Exit::of(Code::AlreadyExists), Exit::Refused);
        assert_eq!(Exit::of(Code::InvalidArgument), Exit::Usage);
        assert_eq!(Exit::of(Code::NotFound), Exit::NotFound);
        assert_eq!(Exit::of(Code::Unavailable), Exit::Unavailable);
        assert_eq!(Exit::of(Code::ResourceExhausted), Exit::Unavailable);
        assert_eq!(Exit::of(Code::Internal), Exit::Other);
    }

    #[test]
    fn sale_files_parse_as_jsonl_and_csv() {
        let dir = std::env::temp_dir().join(format!("inv-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let jsonl = dir.join("sales.jsonl");
        std::fs::write(
            &jsonl,
            "{\"txn_id\":\"t-1\",\"store_seq\":1,\"occurred_at_ms\":5,\"lines\":[\"a@s=1\",{\"sku\":\"b\",\"location\":\"s\",\"qty\":2}]}\n\n",
        )
        .expect("written");
        let csv = dir.join("sales.csv");
        std::fs::write(
            &csv,
            "txn_id,store_seq,occurred_at_ms,lines\nt-1,1,5,a@s=1;b@s=2\n",
        )
        .expect("written");
        let from_jsonl = read_sales(&jsonl, None).expect("parses");
        let from_csv = read_sales(&csv, None).expect("parses");
        assert_eq!(from_jsonl, from_csv);
        assert_eq!(from_csv[0].lines.len(), 2);
        let returns = dir.join("returns.csv");
        std::fs::write(&returns, "return_id,lines\nr-1,a@s=1\n").expect("written");
        let parsed = read_returns(&returns, None, Disposition::Inspect).expect("parses");
        assert_eq!(
            parsed[0].lines[0].disposition,
            pb::ReturnDisposition::Inspect as i32
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
