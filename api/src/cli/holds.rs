//! The subcommands that place, end and extend holds: `reserve`, `commit`, `release` and
//! `extend`.

use super::output::{duplicate_note, format_utc_ms, print_json, print_table};
use super::parse::{parse_duration, parse_line};
use super::{ClientOpts, Exit, Failed, Outcome, connect, id_or_generated};
use clap::Args;
use inv_proto::v1 as pb;
use serde_json::{Value, json};
use std::time::Duration;

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

pub(super) async fn reserve(args: ReserveArgs) -> Outcome {
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

pub(super) async fn commit(args: CommitArgs) -> Outcome {
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

/// `release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The hold to release.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn release(args: ReleaseArgs) -> Outcome {
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

/// `extend`.
#[derive(Args, Debug)]
pub struct ExtendArgs {
    /// The hold to extend.
    #[arg(value_name = "RESERVATION_ID")]
    pub reservation_id: String,
    /// The hold's new expiry, from now (server clock): 1s to 7d (e.g. 90s, 15m, 2h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// This extension's id: with the hold's id, its idempotency key (a hold may be extended
    /// many times) [default: a new one, printed]; a retry must reuse it.
    #[arg(long, value_name = "REQUEST_ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn extend(args: ExtendArgs) -> Outcome {
    let ttl_ms = u64::try_from(args.ttl.as_millis()).unwrap_or(u64::MAX);
    let id = id_or_generated(args.id, "ext", "extension");
    let mut client = connect(&args.client, true).await?;
    let response = client
        .extend(pb::ExtendRequest {
            reservation_id: args.reservation_id.clone(),
            request_id: id.clone(),
            ttl_ms,
        })
        .await?
        .into_inner();
    if args.client.json {
        print_json(&json!({
            "reservation_id": args.reservation_id, "request_id": id, "result": "extended",
            "lsn": response.lsn, "duplicate": response.duplicate,
            "expires_at_ms": response.expires_at_ms,
        }));
    } else {
        println!(
            "extended {} ({id}): held until {} (lsn {}{})",
            args.reservation_id,
            format_utc_ms(response.expires_at_ms),
            response.lsn,
            duplicate_note(response.duplicate),
        );
    }
    Ok(Exit::Success)
}
