//! The store subcommands: `store-status` (how far behind each store's sales feed is, and the
//! sales whose sequence number jumped) and `store-ack` (an operator's verdict on such a jump).
//!
//! A sale whose `store_seq` runs more than the server's `--store-seq-jump-max` ahead of its
//! store's newest number is still recorded, but its number is kept out of the sequence as an
//! anomaly, so one bad number cannot leave a store "missing" billions of sales. `store-ack
//! STORE TXN --accept` takes the number in (the store renumbered: the sequence goes on from
//! it, and whatever is missing below it is given up on); `--dismiss` leaves it out. The
//! verdict is keyed by store and txn, so running the same command again is answered as a
//! retry, and the other verdict for the same sale is refused (exit 1).

use super::output::{duplicate_note, format_lag_ms, format_utc_ms, print_json, print_table};
use super::{ClientOpts, Exit, Outcome, connect};
use clap::Args;
use inv_proto::v1 as pb;
use serde_json::{Value, json};

/// `store-status`.
#[derive(Args, Debug)]
pub struct StoreStatusArgs {
    /// One store (its gaps and anomalies are listed too); every store by default.
    #[arg(value_name = "STORE")]
    pub store: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn store_status(args: StoreStatusArgs) -> Outcome {
    let mut client = connect(&args.client, true).await?;
    let one = args.store.is_some();
    let response = client
        .store_status(pb::StoreStatusRequest {
            store_id: args.store.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if args.client.json {
        let stores: Vec<Value> = response.stores.iter().map(store_json).collect();
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
                s.anomalies.len().to_string(),
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
            "ANOMALIES",
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
            print_anomalies(s);
        }
    } else if response.stores.iter().any(|s| !s.anomalies.is_empty()) {
        println!("(a store with anomalies lists them with `inventory store-status STORE`)");
    }
    Ok(Exit::Success)
}

fn store_json(s: &pb::StoreSequenceStatus) -> Value {
    json!({
        "store_id": s.store_id, "contiguous_seq": s.contiguous_seq,
        "newest_seq": s.newest_seq, "missing_count": s.missing_count,
        "gaps": s.gaps.iter().map(|g| json!([g.first, g.last])).collect::<Vec<_>>(),
        "gaps_truncated": s.gaps_truncated, "sales_recorded": s.sales_recorded,
        "seq_reused": s.seq_reused, "gaps_abandoned": s.gaps_abandoned,
        "duplicates_absorbed": s.duplicates_absorbed,
        "newest_lag_ms": s.newest_lag_ms,
        "newest_occurred_at_ms": s.newest_occurred_at_ms,
        "anomalies": s.anomalies.iter().map(|a| json!({
            "txn_id": a.txn_id, "store_seq": a.store_seq, "newest_seq": a.newest_seq,
            "occurred_at_ms": a.occurred_at_ms, "recorded_at_ms": a.recorded_at_ms,
            "lsn": a.lsn,
        })).collect::<Vec<_>>(),
        "anomalies_dropped": s.anomalies_dropped,
    })
}

/// One line per anomaly of store `s`, with the command that answers it.
fn print_anomalies(s: &pb::StoreSequenceStatus) {
    for a in &s.anomalies {
        println!(
            "anomaly: txn {} jumped to seq {} (newest was {}), sold {}, lsn {}; \
             inventory store-ack {} {} --accept|--dismiss",
            a.txn_id,
            a.store_seq,
            a.newest_seq,
            format_utc_ms(a.occurred_at_ms),
            a.lsn,
            s.store_id,
            a.txn_id,
        );
    }
    if s.anomalies_dropped > 0 {
        println!(
            "({} older anomalies dropped unacknowledged)",
            s.anomalies_dropped
        );
    }
}

/// `store-ack`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("action").required(true).args(["accept", "dismiss"]))]
pub struct StoreAckArgs {
    /// The store.
    #[arg(value_name = "STORE")]
    pub store: String,
    /// The sale's transaction id, as `store-status STORE` lists it under its anomalies.
    #[arg(value_name = "TXN")]
    pub txn: String,
    /// The store really renumbered: its sequence goes on from this sale's number, and the
    /// numbers still missing below it are given up on.
    #[arg(long)]
    pub accept: bool,
    /// The number was wrong: it stays out of the sequence (the sale stays recorded).
    #[arg(long)]
    pub dismiss: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(super) async fn store_ack(args: StoreAckArgs) -> Outcome {
    let action = if args.accept {
        pb::AnomalyAction::Accept
    } else {
        pb::AnomalyAction::Dismiss
    };
    let mut client = connect(&args.client, true).await?;
    let answer = client
        .acknowledge_store_anomaly(pb::AcknowledgeStoreAnomalyRequest {
            store_id: args.store.clone(),
            txn_id: args.txn.clone(),
            action: action as i32,
        })
        .await?
        .into_inner();
    let result = if answer.accepted {
        "accepted"
    } else {
        "dismissed"
    };
    if args.client.json {
        print_json(&json!({
            "store_id": args.store, "txn_id": args.txn, "result": result,
            "store_seq": answer.store_seq, "gaps_abandoned": answer.gaps_abandoned,
            "lsn": answer.lsn, "duplicate": answer.duplicate,
        }));
    } else if answer.accepted {
        println!(
            "accepted seq {} of store {} (txn {}): the sequence goes on from it, {} missing \
             numbers given up on (lsn {}{})",
            answer.store_seq,
            args.store,
            args.txn,
            answer.gaps_abandoned,
            answer.lsn,
            duplicate_note(answer.duplicate),
        );
    } else {
        println!(
            "dismissed seq {} of store {} (txn {}): it stays out of the sequence (lsn {}{})",
            answer.store_seq,
            args.store,
            args.txn,
            answer.lsn,
            duplicate_note(answer.duplicate),
        );
    }
    Ok(Exit::Success)
}
