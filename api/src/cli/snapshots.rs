//! ERP snapshots and reconciliation: `snapshot import`, `reconcile`, `reconciliation show` and
//! `list`, and `drift resolve`.
//!
//! `snapshot import` streams the file: a reading thread parses it a chunk at a time and hands
//! each chunk to the PushSnapshot stream through a channel of a few chunks, computing the row
//! count and checksum as it goes, so a file of millions of rows never sits in memory. A file
//! that fails to parse midway ends the stream without its summary, so the server stages
//! nothing. The snapshot id defaults to one derived from the file and `--as-of`, so importing
//! the same file again is a retry (answered with the original), not a second snapshot.

use super::files::FileFormat;
use super::output::{Unit, format_utc_ms, print_json, print_table, progress_bar};
use super::reports::{
    print_reconciliation, print_reconciliations, print_summary_table, reconciliation_json,
};
use super::{ClientOpts, Exit, Failed, Outcome, connect};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use inv_engine::reconcile::{RowDigest, SnapshotRow};
use inv_engine::{Location, Sku};
use inv_proto::v1 as pb;
use pb::push_snapshot_request::Message as M;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Rows per chunk by default: well under the server's limits (10,000 rows, 4 MiB).
const CHUNK_ROWS_DEFAULT: usize = 5_000;
/// Chunks parsed ahead of the stream.
const CHUNKS_QUEUED: usize = 4;

pub(super) const IMPORT_HELP: &str = "\
File formats (by extension: `.csv` is CSV, anything else JSON Lines; or --format):
  CSV with a header row; safety_stock is optional (a column, or an empty cell):
    sku,location,on_hand,safety_stock
    sneaker-42,store-7,12,2
  JSON Lines, one row per line:
    {\"sku\": \"sneaker-42\", \"location\": \"store-7\", \"on_hand\": 12, \"safety_stock\": 2}

--as-of is the ERP's event-time watermark: the counts include every movement up to it and
none after. Milliseconds since the epoch, or UTC as 2026-12-03T12:00:00Z.

The snapshot is staged and reconciled at the server's next scheduled run (--reconcile-every);
--reconcile runs it now and prints the report (--dry-run: what it would do, changing nothing).

Exit codes: see `inventory --help`; 0 when staged (and reconciled), 2 for a bad file or a row
the server refused, 1 when the id was imported before with other content.";

/// `snapshot ...`.
#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Stream an ERP snapshot from a CSV or JSON Lines file and stage it.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
}

/// FULL or DELTA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every position in scope: a position the engine has that the file omits counts as 0.
    Full,
    /// Only the rows in the file.
    Delta,
}

/// `snapshot import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The snapshot's rows (`-`: stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The ERP's event-time watermark: ms since the epoch, or UTC (2026-12-03T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub as_of: u64,
    /// FULL: positions in scope that the file omits count as 0; DELTA: only the rows listed.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// The locations the snapshot covers, comma-separated [default: every location].
    #[arg(long, value_name = "LOC,...", value_delimiter = ',')]
    pub scope: Vec<String>,
    /// Which system the snapshot comes from (for reports).
    #[arg(long, value_name = "NAME", default_value = "erp")]
    pub source: String,
    /// The snapshot's id, its idempotency key [default: SOURCE-FILESTEM-ASOF].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The file's format [default: by extension].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Rows per streamed chunk.
    #[arg(long, value_name = "N", default_value_t = CHUNK_ROWS_DEFAULT)]
    pub chunk_rows: usize,
    /// Reconcile the snapshot right after staging it, and print the report.
    #[arg(long)]
    pub reconcile: bool,
    /// With --reconcile: report what a reconciliation would do, changing nothing.
    #[arg(long, requires = "reconcile")]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `reconcile`.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The snapshot to reconcile [default: every staged snapshot, oldest as-of first].
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Report what would be corrected or held, changing nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `reconciliation ...`.
#[derive(Subcommand, Debug)]
pub enum ReconciliationCmd {
    /// One snapshot: its status and, once reconciled, its report.
    Show(ShowArgs),
    /// Snapshots and their reports, newest first.
    List(ListArgs),
}

/// `reconciliation show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The snapshot's id.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `reconciliation list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Most snapshots listed (newest first; pages are fetched as needed).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `drift ...`.
#[derive(Subcommand, Debug)]
pub enum DriftCmd {
    /// The drifts held for review now, by position.
    List(HeldArgs),
    /// Apply or dismiss a drift a reconciliation held for review.
    Resolve(ResolveArgs),
}

/// `drift list`.
#[derive(Args, Debug)]
pub struct HeldArgs {
    /// Only this snapshot's [default: every snapshot's].
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Most drifts listed (pages are fetched as needed).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `drift resolve`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("action").required(true).args(["apply", "dismiss"]))]
pub struct ResolveArgs {
    /// The SKU.
    #[arg(long)]
    pub sku: String,
    /// The location.
    #[arg(long)]
    pub location: String,
    /// The snapshot whose reconciliation held the drift.
    #[arg(long, value_name = "ID")]
    pub snapshot: String,
    /// Correct on_hand by the held drift.
    #[arg(long)]
    pub apply: bool,
    /// Leave on_hand as it is and drop the drift.
    #[arg(long)]
    pub dismiss: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

impl SnapshotCmd {
    pub(super) fn client(&self) -> &ClientOpts {
        match self {
            SnapshotCmd::Import(a) => &a.client,
        }
    }
}

impl ReconciliationCmd {
    pub(super) fn client(&self) -> &ClientOpts {
        match self {
            ReconciliationCmd::Show(a) => &a.client,
            ReconciliationCmd::List(a) => &a.client,
        }
    }
}

impl DriftCmd {
    pub(super) fn client(&self) -> &ClientOpts {
        match self {
            DriftCmd::List(a) => &a.client,
            DriftCmd::Resolve(a) => &a.client,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Times

/// Milliseconds since the epoch, or UTC `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
pub fn parse_time_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad =
        || format!("{text:?}: expected ms since the epoch or UTC such as 2026-12-03T12:00:00Z");
    let rest = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = rest.split_once('T').ok_or_else(bad)?;
    let date: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let hms: Vec<u64> = hms
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let ([year, month, day], [hour, minute, second]) = (date.as_slice(), hms.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(month) || !(1..=31).contains(day) || *hour > 23 || *minute > 59 {
        return Err(bad());
    }
    if *second > 60 || millis.len() > 3 {
        return Err(bad());
    }
    let millis: u64 = format!("{millis:0<3}").parse().map_err(|_| bad())?;
    // Howard Hinnant's days_from_civil.
    let y = if *month <= 2 { year - 1 } else { *year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).map_err(|_| bad())?;
    Ok(days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1_000 + millis)
}

// ---------------------------------------------------------------------------------------------
// snapshot import

/// One row as a file has it.
#[derive(Debug, Deserialize)]
struct FileRow {
    sku: String,
    location: String,
    on_hand: i64,
    #[serde(default)]
    safety_stock: Option<u64>,
}

impl FileRow {
    fn proto(self) -> pb::SnapshotRow {
        pb::SnapshotRow {
            sku: self.sku,
            location: self.location,
            on_hand: self.on_hand,
            safety_stock: self.safety_stock,
        }
    }
}

/// What the reading thread sent.
struct Sent {
    rows: u64,
}

pub(super) async fn import(args: ImportArgs) -> Outcome {
    if args.chunk_rows == 0 {
        return Err(Failed::usage("--chunk-rows must be at least 1"));
    }
    let format = super::files::format_of(&args.file, args.format);
    let (input, length) = open(&args.file)?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| default_id(&args.source, &args.file, args.as_of));
    let header = pb::SnapshotHeader {
        snapshot_id: id.clone(),
        as_of_ms: args.as_of,
        scope: args.scope.clone(),
        mode: match args.mode {
            Mode::Full => pb::SnapshotMode::Full,
            Mode::Delta => pb::SnapshotMode::Delta,
        } as i32,
        source: args.source.clone(),
    };
    // No per-call timeout: a large file streams for as long as it takes.
    let mut client = connect(&args.client, false).await?;
    let progress = progress_bar(length, Unit::Bytes, args.client.json);
    let (sender, receiver) = mpsc::channel(CHUNKS_QUEUED);
    sender
        .send(message(M::Header(header)))
        .await
        .map_err(|_| Failed::new(Exit::Other, "the stream closed before its header"))?;
    let reader = {
        let (file, progress, chunk_rows) = (args.file.clone(), progress.clone(), args.chunk_rows);
        tokio::task::spawn_blocking(move || {
            read_and_send(&file, input, format, chunk_rows, &sender, &progress)
        })
    };
    let answer = client
        .push_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    let read = reader
        .await
        .map_err(|e| Failed::new(Exit::Other, format!("the file reader panicked: {e}")))?;
    progress.finish_and_clear();
    // A local problem explains a refusal better than the server's "incomplete push".
    let sent = read?;
    let pushed = answer?.into_inner();
    let snapshot = pushed.snapshot.unwrap_or_default();
    if !args.reconcile {
        if args.client.json {
            print_json(&json!({
                "duplicate": pushed.duplicate,
                "rows_sent": sent.rows,
                "snapshot": reconciliation_json(&snapshot),
            }));
        } else {
            let note = if pushed.duplicate {
                " (imported before: this is the original; nothing was sent twice)"
            } else {
                ""
            };
            println!(
                "staged snapshot {id}: {} rows, checksum {}{note}",
                snapshot.row_count, snapshot.checksum
            );
            println!(
                "reconciled at the server's next scheduled run, or now with: \
                 inventory reconcile --snapshot {id}"
            );
        }
        return Ok(Exit::Success);
    }
    let mut client = connect(&args.client, false).await?;
    let done = run_reconcile(&mut client, Some(id), args.dry_run).await?;
    print_reconciliations(&done, args.client.json);
    Ok(Exit::Success)
}

/// The input, and its length in bytes when known (a file, not stdin).
fn open(path: &Path) -> Result<(Box<dyn Read + Send>, Option<u64>), Failed> {
    if path == Path::new("-") {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))
        .map_err(Failed::from)?;
    let length = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), length))
}

/// `SOURCE-FILESTEM-ASOF`: the same file imported again with the same time is the same id.
fn default_id(source: &str, file: &Path, as_of_ms: u64) -> String {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| *s != "-")
        .unwrap_or("stdin");
    let mut id = format!("{source}-{stem}-{as_of_ms}");
    // Ids are at most 128 bytes; keep the distinguishing end.
    while id.len() > inv_engine::limits::ID_BYTES_MAX {
        id.remove(0);
    }
    id
}

fn message(message: M) -> pb::PushSnapshotRequest {
    pb::PushSnapshotRequest {
        message: Some(message),
    }
}

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The reading thread: parses the file a chunk at a time and sends each chunk, then the
/// summary. On a parse error it returns without sending the summary (the server stages
/// nothing); if the stream closed (the server refused the push) it stops early.
fn read_and_send(
    path: &Path,
    input: Box<dyn Read + Send>,
    format: FileFormat,
    chunk_rows: usize,
    sender: &mpsc::Sender<pb::PushSnapshotRequest>,
    progress: &ProgressBar,
) -> Result<Sent, Failed> {
    let mut digest = RowDigest::default();
    let mut chunk: Vec<pb::SnapshotRow> = Vec::with_capacity(chunk_rows);
    let mut rows: u64 = 0;
    let reader = Counting {
        inner: BufReader::new(input),
        bytes: 0,
    };
    let send = |chunk: &mut Vec<pb::SnapshotRow>, bytes: u64| -> bool {
        let rows = std::mem::replace(chunk, Vec::with_capacity(chunk_rows));
        progress.set_position(bytes);
        sender
            .blocking_send(message(M::Chunk(pb::SnapshotChunk { rows })))
            .is_ok()
    };
    let mut add = |row: FileRow, chunk: &mut Vec<pb::SnapshotRow>| {
        let row = row.proto();
        digest.add(&SnapshotRow {
            sku: Sku::from(row.sku.as_str()),
            location: Location::from(row.location.as_str()),
            on_hand: row.on_hand,
            safety_stock: row.safety_stock,
        });
        chunk.push(row);
        rows += 1;
    };
    let at = |line: u64| format!("{}:{line}", path.display());
    match format {
        FileFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(reader);
            let headers = csv
                .headers()
                .with_context(|| at(1))
                .map_err(Failed::from)?
                .clone();
            let known = ["sku", "location", "on_hand", "safety_stock"];
            if let Some(unknown) = headers.iter().find(|h| !known.contains(h)) {
                return Err(Failed::usage(format!(
                    "{}: unknown column {unknown:?} (expected sku,location,on_hand[,safety_stock])",
                    at(1)
                )));
            }
            let mut record = csv::StringRecord::new();
            let mut line = 1;
            loop {
                match csv.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(error) => return Err(Failed::usage(format!("{}: {error}", at(line + 1)))),
                }
                line += 1;
                let row: FileRow = record
                    .deserialize(Some(&headers))
                    .map_err(|e| Failed::usage(format!("{}: {e}", at(line))))?;
                add(row, &mut chunk);
                if chunk.len() == chunk_rows && !send(&mut chunk, csv.get_ref().bytes) {
                    return Ok(Sent { rows });
                }
            }
            if !chunk.is_empty() && !send(&mut chunk, csv.get_ref().bytes) {
                return Ok(Sent { rows });
            }
        }
        FileFormat::Jsonl => {
            // Bytes are counted by line here (the reader is buffered again for `lines`).
            let mut bytes: u64 = 0;
            for (i, text) in BufReader::new(reader).lines().enumerate() {
                let text = text
                    .with_context(|| at(i as u64 + 1))
                    .map_err(Failed::from)?;
                bytes += text.len() as u64 + 1;
                if text.trim().is_empty() {
                    continue;
                }
                let row: FileRow = serde_json::from_str(&text)
                    .map_err(|e| Failed::usage(format!("{}: {e}", at(i as u64 + 1))))?;
                add(row, &mut chunk);
                if chunk.len() == chunk_rows && !send(&mut chunk, bytes) {
                    return Ok(Sent { rows });
                }
            }
            if !chunk.is_empty() && !send(&mut chunk, bytes) {
                return Ok(Sent { rows });
            }
        }
    }
    let summary = digest.finish();
    let _ = sender.blocking_send(message(M::Summary(pb::SnapshotSummary {
        row_count: summary.rows,
        checksum: summary.checksum,
    })));
    Ok(Sent { rows })
}

// ---------------------------------------------------------------------------------------------
// reconcile, reconciliation show / list, drift resolve

async fn run_reconcile(
    client: &mut super::Client,
    snapshot: Option<String>,
    dry_run: bool,
) -> Result<Vec<pb::Reconciliation>, Failed> {
    use pb::reconcile_request::Target;
    let target = match snapshot {
        Some(id) => Target::SnapshotId(id),
        None => Target::AllStaged(true),
    };
    Ok(client
        .reconcile(pb::ReconcileRequest {
            target: Some(target),
            dry_run,
        })
        .await?
        .into_inner()
        .reconciliations)
}

pub(super) async fn reconcile(args: ReconcileArgs) -> Outcome {
    // No per-call timeout: a million positions take a while.
    let mut client = connect(&args.client, false).await?;
    let done = run_reconcile(&mut client, args.snapshot, args.dry_run).await?;
    if done.is_empty() && !args.client.json {
        println!("no snapshot is staged");
        return Ok(Exit::Success);
    }
    print_reconciliations(&done, args.client.json);
    Ok(Exit::Success)
}

pub(super) async fn reconciliation(command: ReconciliationCmd) -> Outcome {
    match command {
        ReconciliationCmd::Show(args) => {
            let mut client = connect(&args.client, true).await?;
            let found = client
                .get_reconciliation_report(pb::GetReconciliationReportRequest {
                    snapshot_id: args.id,
                })
                .await?
                .into_inner()
                .reconciliation
                .unwrap_or_default();
            if args.client.json {
                print_json(&reconciliation_json(&found));
            } else {
                print_reconciliation(&found);
            }
            Ok(Exit::Success)
        }
        ReconciliationCmd::List(args) => {
            let mut client = connect(&args.client, true).await?;
            let mut listed = Vec::new();
            let mut page_token = String::new();
            while listed.len() < args.limit {
                let page = client
                    .list_reconciliations(pb::ListReconciliationsRequest {
                        page_size: (args.limit - listed.len()).min(1_000) as u32,
                        page_token,
                    })
                    .await?
                    .into_inner();
                listed.extend(page.reconciliations);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if args.client.json {
                print_json(&Value::Array(
                    listed.iter().map(reconciliation_json).collect(),
                ));
            } else {
                print_summary_table(&listed);
            }
            Ok(Exit::Success)
        }
    }
}

pub(super) async fn drift(command: DriftCmd) -> Outcome {
    let args = match command {
        DriftCmd::List(args) => return list_held(args).await,
        DriftCmd::Resolve(args) => args,
    };
    let action = if args.apply {
        pb::DriftAction::Apply
    } else {
        pb::DriftAction::Dismiss
    };
    let mut client = connect(&args.client, true).await?;
    let resolved = client
        .resolve_drift(pb::ResolveDriftRequest {
            snapshot_id: args.snapshot.clone(),
            sku: args.sku.clone(),
            location: args.location.clone(),
            action: action as i32,
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "lsn": resolved.lsn, "duplicate": resolved.duplicate,
            "drift": resolved.drift, "applied": resolved.applied,
        }));
    } else {
        let verb = if resolved.applied {
            "applied to on_hand"
        } else {
            "dismissed"
        };
        println!(
            "drift {:+} of {}@{} (snapshot {}) {verb} at lsn {}{}",
            resolved.drift,
            args.sku,
            args.location,
            args.snapshot,
            resolved.lsn,
            super::output::duplicate_note(resolved.duplicate)
        );
    }
    Ok(Exit::Success)
}

async fn list_held(args: HeldArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let mut held = Vec::new();
    let mut total = 0;
    let mut page_token = String::new();
    while held.len() < args.limit {
        let page = client
            .list_held_drifts(pb::ListHeldDriftsRequest {
                snapshot_id: args.snapshot.clone().unwrap_or_default(),
                page_size: (args.limit - held.len()).min(1_000) as u32,
                page_token,
            })
            .await?
            .into_inner();
        total = page.total;
        held.extend(page.drifts);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if args.client.json {
        print_json(&json!({
            "total": total,
            "drifts": held.iter().map(|h| json!({
                "snapshot_id": h.snapshot_id, "sku": h.sku, "location": h.location,
                "as_of_ms": h.as_of_ms, "erp_on_hand": h.erp_on_hand,
                "engine_on_hand_at": h.engine_on_hand_at, "drift": h.drift, "lsn": h.lsn,
            })).collect::<Vec<_>>(),
        }));
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = held
        .iter()
        .map(|h| {
            vec![
                h.sku.clone(),
                h.location.clone(),
                h.snapshot_id.clone(),
                format_utc_ms(h.as_of_ms),
                h.erp_on_hand.to_string(),
                h.engine_on_hand_at.to_string(),
                format!("{:+}", h.drift),
            ]
        })
        .collect();
    print_table(
        &[
            "SKU",
            "LOCATION",
            "SNAPSHOT",
            "AS_OF",
            "ERP",
            "ENGINE_AT_AS_OF",
            "DRIFT",
        ],
        &rows,
    );
    if (held.len() as u64) < total {
        println!("{} of {total} held drifts listed (--limit)", held.len());
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_ms_or_utc() {
        assert_eq!(parse_time_ms("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time_ms("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time_ms("2000-02-29T00:00:00.123Z"),
            Ok(951_782_400_123)
        );
        assert_eq!(
            format_utc_ms(parse_time_ms("2026-12-03T12:00:00.5Z").expect("parses")),
            "2026-12-03T12:00:00.500Z"
        );
        assert!(parse_time_ms("2026-12-03 12:00").is_err());
        assert!(parse_time_ms("2026-13-03T12:00:00Z").is_err());
    }

    #[test]
    fn the_default_id_names_the_source_file_and_time() {
        assert_eq!(
            default_id("sap", Path::new("/tmp/counts-dc1.csv"), 42),
            "sap-counts-dc1-42"
        );
        assert_eq!(default_id("erp", Path::new("-"), 1), "erp-stdin-1");
    }
}
