//! The subcommands that post batches read from a file: `sales` and `returns`, with their file
//! records and the per-item report.

use super::files::{FileFormat, file_records};
use super::output::{Unit, item_error_json, item_exit, print_json, print_table, progress_bar};
use super::parse::parse_line;
use super::{ClientOpts, Exit, Failed, Outcome, connect};
use clap::{Args, ValueEnum};
use inv_proto::v1 as pb;
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};

pub(super) const SALES_HELP: &str = "\
File formats:
  JSON Lines, one sale per line:
    {\"txn_id\": \"t-1\", \"store_seq\": 1, \"occurred_at_ms\": 1700000000000,
     \"lines\": [\"sneaker@store-7=1\", {\"sku\": \"sock\", \"location\": \"store-7\", \"qty\": 2}]}
  CSV with a header row; LINEs separated by `;`:
    txn_id,store_seq,occurred_at_ms,lines
    t-1,1,1700000000000,sneaker@store-7=1;sock@store-7=2

Sent in calls of 1,000 sales, in file order; on a terminal a progress bar on stderr counts them.

Exit codes: see `inventory --help`; 0 when every sale was recorded, else the code of the first
sale that was not.";

pub(super) const RETURNS_HELP: &str = "\
File formats:
  JSON Lines, one return per line (disposition per line optional, else --disposition):
    {\"return_id\": \"r-1\", \"lines\": [\"sneaker@dc=1\",
     {\"sku\": \"sock\", \"location\": \"dc\", \"qty\": 2, \"disposition\": \"restock\"}]}
  CSV with a header row; LINEs separated by `;`; the disposition column is optional:
    return_id,lines,disposition
    r-1,sneaker@dc=1;sock@dc=2,inspect

Sent in calls of 1,000 returns, in file order; on a terminal a progress bar on stderr counts
them.

Exit codes: see `inventory --help`; 0 when every return was recorded, else the code of the
first return that was not.";

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

pub(super) async fn sales(args: SalesArgs) -> Outcome {
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
    let progress = progress_bar(
        Some(sales.len() as u64),
        Unit::Items("sales"),
        args.client.json,
    );
    for chunk in sales.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .record_sales(pb::RecordSalesRequest {
                store_id: args.store.clone(),
                sales: chunk.to_vec(),
            })
            .await?
            .into_inner();
        results.extend(response.results);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    report_batch("sales", "txn_id", &ids, results, args.client.json)
}

pub(super) async fn returns(args: ReturnsArgs) -> Outcome {
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
    let progress = progress_bar(
        Some(returns.len() as u64),
        Unit::Items("returns"),
        args.client.json,
    );
    for chunk in returns.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .record_returns(pb::RecordReturnsRequest {
                returns: chunk.to_vec(),
            })
            .await?
            .into_inner();
        results.extend(response.results);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
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

#[cfg(test)]
mod tests {
    use super::*;

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
