//! `events`: what happened to a position or a hold, from the event log (ListEvents), oldest
//! first: for support staff answering "what happened to this order's stock".

use super::output::{format_utc_ms, print_json, print_table};
use super::parse::parse_duration;
use super::snapshots::parse_time_ms;
use super::{ClientOpts, Exit, Failed, Outcome, connect};
use clap::Args;
use inv_proto::v1 as pb;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most events the server sends in one page.
const PAGE_SIZE_MAX: u64 = 1_000;

/// What `events --help` adds.
pub const EVENTS_HELP: &str = "\
Lists the events of a position (--sku and --location) or of a hold (--hold), oldest first,
from the oldest event the log still holds (it keeps at least --reconcile-history-ms, 24 h
by default), from --since, or after --after-lsn. Stops after --limit events or at the end of
the log; when more may follow, the last line says which --after-lsn goes on.

Examples:
  inventory events --hold order-1
  inventory events --sku sneaker-42 --location web-dc --since 2h
  inventory events --sku sneaker-42 --location web-dc --after-lsn 1200 --limit 500 --json

Exit codes: see `inventory --help` (an --after-lsn beyond the end of the log exits 2).";

/// `events`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("filter").required(true).args(["sku", "hold"]))]
pub struct EventsArgs {
    /// The position's SKU (with --location).
    #[arg(long, value_name = "SKU", requires = "location")]
    pub sku: Option<String>,
    /// The position's location (with --sku).
    #[arg(long, value_name = "LOCATION", requires = "sku")]
    pub location: Option<String>,
    /// The hold: its reservation id.
    #[arg(long, value_name = "ID", conflicts_with_all = ["sku", "location"])]
    pub hold: Option<String>,
    /// Start at the events decided this long ago (30m, 2h, 1d) or since a time (ms since the
    /// epoch, or UTC such as 2026-12-03T12:00:00Z).
    #[arg(long, value_name = "WHEN", value_parser = parse_since, conflicts_with = "after_lsn")]
    pub since: Option<Since>,
    /// List the events after this LSN (0: from the oldest the log still holds).
    #[arg(long, value_name = "N")]
    pub after_lsn: Option<u64>,
    /// Stop after this many events.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u64,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Where `--since` starts.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    /// This long before now (this machine's clock).
    Ago(Duration),
    /// At this time, ms since the epoch.
    At(u64),
}

fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(ago) = parse_duration(text) {
        return Ok(Since::Ago(ago));
    }
    parse_time_ms(text).map(Since::At).map_err(|_| {
        format!(
            "{text:?}: expected a duration such as 2h or 30m, or a time such as \
             2026-12-03T12:00:00Z"
        )
    })
}

/// The pages read, put together.
struct Listed {
    events: Vec<pb::LoggedEvent>,
    /// Where a next run goes on (`--after-lsn`).
    next_after_lsn: u64,
    /// Whether the log was read to its end.
    at_end: bool,
    first_retained_lsn: u64,
    /// The LSN the listing asked to start after, and whether it started at a time instead.
    after_lsn: u64,
    since: bool,
}

pub(super) async fn events(args: EventsArgs) -> Outcome {
    if args.limit == 0 {
        return Err(Failed::usage("--limit must be at least 1"));
    }
    let since_ms = args.since.map(|since| match since {
        Since::Ago(ago) => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            now_ms.saturating_sub(ago.as_millis() as u64)
        }
        Since::At(ms) => ms,
    });
    let mut client = connect(&args.client, true).await?;
    let (sku, location) = (
        args.sku.unwrap_or_default(),
        args.location.unwrap_or_default(),
    );
    let reservation_id = args.hold.unwrap_or_default();
    let after_lsn = args.after_lsn.unwrap_or(0);
    let mut listed = Listed {
        events: Vec::new(),
        next_after_lsn: after_lsn,
        at_end: false,
        first_retained_lsn: 0,
        after_lsn,
        since: since_ms.is_some(),
    };
    // Only the first page starts at --since; the next ones go on from where it ended.
    let mut since_ms = since_ms;
    while (listed.events.len() as u64) < args.limit {
        let wanted = (args.limit - listed.events.len() as u64).min(PAGE_SIZE_MAX);
        let page = client
            .list_events(pb::ListEventsRequest {
                sku: sku.clone(),
                location: location.clone(),
                reservation_id: reservation_id.clone(),
                after_lsn: listed.next_after_lsn,
                since_ms: since_ms.take(),
                page_size: Some(wanted as u32),
            })
            .await?
            .into_inner();
        if listed.first_retained_lsn == 0 {
            listed.first_retained_lsn = page.first_retained_lsn;
        }
        let advanced = page.next_after_lsn > listed.next_after_lsn || !page.events.is_empty();
        listed.events.extend(page.events);
        listed.next_after_lsn = page.next_after_lsn;
        listed.at_end = page.next_after_lsn >= page.end_lsn;
        if listed.at_end || !advanced {
            break;
        }
    }
    if args.client.json {
        print_json(&listing_json(&listed));
    } else {
        print_listing(&listed);
    }
    Ok(Exit::Success)
}

fn listing_json(listed: &Listed) -> Value {
    let events: Vec<Value> = listed.events.iter().map(event_json).collect();
    json!({
        "events": events,
        "next_after_lsn": listed.next_after_lsn,
        "at_end": listed.at_end,
        "first_retained_lsn": listed.first_retained_lsn,
    })
}

fn event_json(e: &pb::LoggedEvent) -> Value {
    let lines: Vec<Value> = e
        .lines
        .iter()
        .map(|l| {
            json!({
                "sku": l.sku, "location": l.location, "qty": l.qty,
                "on_hand_delta": l.on_hand_delta, "reserved_delta": l.reserved_delta,
            })
        })
        .collect();
    let mut event = json!({
        "lsn": e.lsn, "at_ms": e.at_ms, "time": format_utc_ms(e.at_ms), "kind": e.kind,
        "by": e.by, "outcome": e.outcome, "lines": lines,
    });
    for (name, id) in ids(e) {
        event[name] = json!(id);
    }
    if e.expires_at_ms > 0 {
        event["expires_at_ms"] = json!(e.expires_at_ms);
    }
    event
}

/// Who issued an event, for the table: "-" for no principal (authentication off, or the
/// engine's own).
pub(super) fn by_text(by: &str) -> String {
    if by.is_empty() {
        "-".to_owned()
    } else {
        by.to_owned()
    }
}

/// The event's ids that are set, by their field names.
fn ids(e: &pb::LoggedEvent) -> Vec<(&'static str, &str)> {
    [
        ("reservation_id", e.reservation_id.as_str()),
        ("channel", &e.channel),
        ("store_id", &e.store_id),
        ("txn_id", &e.txn_id),
        ("return_id", &e.return_id),
        ("disposition_id", &e.disposition_id),
        ("adjustment_id", &e.adjustment_id),
        ("request_id", &e.request_id),
        ("snapshot_id", &e.snapshot_id),
    ]
    .into_iter()
    .filter(|(_, id)| !id.is_empty())
    .collect()
}

fn print_listing(listed: &Listed) {
    // History before the log's start was asked for, and is no longer kept.
    if !listed.since && listed.first_retained_lsn > listed.after_lsn + 1 {
        println!(
            "note: the log starts at lsn {}; older events are no longer kept",
            listed.first_retained_lsn
        );
    }
    let rows: Vec<Vec<String>> = listed
        .events
        .iter()
        .map(|e| {
            let mut outcome = e.outcome.clone();
            if e.expires_at_ms > 0 {
                outcome.push_str(&format!(" until {}", format_utc_ms(e.expires_at_ms)));
            }
            vec![
                e.lsn.to_string(),
                format_utc_ms(e.at_ms),
                e.kind.clone(),
                by_text(&e.by),
                ids(e)
                    .iter()
                    .map(|(name, id)| format!("{}={id}", short_name(name)))
                    .collect::<Vec<_>>()
                    .join(" "),
                e.lines.iter().map(line_text).collect::<Vec<_>>().join(", "),
                outcome,
            ]
        })
        .collect();
    if rows.is_empty() {
        // An empty table reads like a failure; say what was searched.
        println!(
            "no matching events (looked through lsn {})",
            listed.next_after_lsn
        );
    } else {
        print_table(
            &["LSN", "TIME", "KIND", "BY", "IDS", "LINES", "OUTCOME"],
            &rows,
        );
    }
    if !listed.at_end {
        println!(
            "more events may follow: go on with --after-lsn {}",
            listed.next_after_lsn
        );
    }
}

/// An id's name as the table shows it.
fn short_name(name: &str) -> &str {
    match name {
        "reservation_id" => "hold",
        "store_id" => "store",
        "txn_id" => "txn",
        "return_id" => "return",
        "disposition_id" => "disposition",
        "adjustment_id" => "adjustment",
        "request_id" => "request",
        "snapshot_id" => "snapshot",
        other => other,
    }
}

/// `sneaker-42@web-dc 2 on_hand -2 reserved -2`: the units and the changes that are not zero.
fn line_text(l: &pb::EventLine) -> String {
    let mut text = format!("{}@{} {}", l.sku, l.location, l.qty);
    if l.on_hand_delta != 0 {
        text.push_str(&format!(" on_hand {:+}", l.on_hand_delta));
    }
    match l.reserved_delta {
        Some(0) => {}
        Some(delta) => text.push_str(&format!(" reserved {delta:+}")),
        None => text.push_str(" reserved ?"),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_ago_or_a_time() {
        assert!(matches!(parse_since("2h"), Ok(Since::Ago(d)) if d == Duration::from_secs(7_200)));
        assert!(matches!(
            parse_since("1700000000000"),
            Ok(Since::At(1_700_000_000_000))
        ));
        assert!(matches!(
            parse_since("2023-11-14T22:13:20Z"),
            Ok(Since::At(1_700_000_000_000))
        ));
        for bad in ["", "yesterday", "2h ago", "-1h"] {
            assert!(parse_since(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
