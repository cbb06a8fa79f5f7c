//! The subcommands that only read: `check`, `check-sku`, `sellable`, `reservation` and `watch`
//! (`store-status` is with the other store subcommands, in `stores.rs`).

use super::files::{read_positions, read_skus};
use super::output::{
    AVAILABILITY_HEADERS, availability_json, availability_row, format_utc_ms, item_error_json,
    item_exit, line_json, print_json, print_table,
};
use super::{ClientOpts, Exit, Failed, Outcome, connect};
use clap::Args;
use inv_proto::v1 as pb;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use tokio_stream::StreamExt;

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

pub(super) async fn check(args: CheckArgs) -> Outcome {
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

/// `sellable`.
#[derive(Args, Debug)]
pub struct SellableArgs {
    /// The location every SKU is read at.
    pub location: String,
    /// The SKUs.
    #[arg(
        value_name = "SKU",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub skus: Vec<String>,
    /// Read SKUs from a file (`-`: stdin), one per line; blank lines and lines starting with
    /// `#` are skipped.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn sellable(args: SellableArgs) -> Outcome {
    let skus = match &args.file {
        Some(file) => read_skus(file)?,
        None => args.skus,
    };
    let mut client = connect(&args.client, true).await?;
    let mut sellable = Vec::with_capacity(skus.len());
    for chunk in skus.chunks(inv_api::BATCH_ITEMS_MAX) {
        let response = client
            .check_sellable(pb::CheckSellableRequest::new(args.location.as_str(), chunk))
            .await?
            .into_inner();
        if response.sellable.len() != chunk.len() {
            return Err(Failed::new(
                Exit::Other,
                "the server answered a different number of skus than were asked",
            ));
        }
        sellable.extend(response.sellable);
    }
    if args.client.json {
        let rows: Vec<Value> = skus
            .iter()
            .zip(&sellable)
            .map(|(sku, n)| json!({ "sku": sku, "sellable": n }))
            .collect();
        print_json(&json!({ "location": args.location, "skus": rows }));
    } else {
        let rows: Vec<Vec<String>> = skus
            .iter()
            .zip(&sellable)
            .map(|(sku, n)| vec![sku.clone(), n.to_string()])
            .collect();
        print_table(&["SKU", "SELLABLE"], &rows);
    }
    Ok(Exit::Success)
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

pub(super) async fn check_sku(args: CheckSkuArgs) -> Outcome {
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

/// `reservation`.
#[derive(Args, Debug)]
pub struct ReservationArgs {
    /// The hold to show.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn reservation(args: ReservationArgs) -> Outcome {
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
            "placed_by": hold.placed_by, "ended_by": hold.ended_by,
        }));
    } else {
        // "by X" only where a principal is recorded (authentication on).
        let by = |name: &str| {
            if name.is_empty() {
                String::new()
            } else {
                format!(" by {name}")
            }
        };
        println!(
            "{} ({}, channel {}): placed {}{} at lsn {}, expires {}{}",
            hold.reservation_id,
            state,
            hold.channel,
            format_utc_ms(hold.placed_at_ms),
            by(&hold.placed_by),
            hold.placed_lsn,
            format_utc_ms(hold.expires_at_ms),
            if hold.ended_at_ms > 0 {
                format!(
                    ", ended {}{}",
                    format_utc_ms(hold.ended_at_ms),
                    by(&hold.ended_by)
                )
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

pub(super) async fn watch(args: WatchArgs) -> Outcome {
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
