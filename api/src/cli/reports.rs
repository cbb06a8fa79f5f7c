//! How the reconciliation commands print what the server reports: a table per report (with
//! its largest drifts) or a summary table of many, and the same as JSON for scripts.

use super::output::{format_utc_ms, print_json, print_table};
use inv_proto::v1 as pb;
use serde_json::{Value, json};

fn status_name(status: i32) -> &'static str {
    match pb::SnapshotStatus::try_from(status) {
        Ok(pb::SnapshotStatus::Staged) => "staged",
        Ok(pb::SnapshotStatus::Reconciling) => "reconciling",
        Ok(pb::SnapshotStatus::Reconciled) => "reconciled",
        Ok(pb::SnapshotStatus::Failed) => "failed",
        _ => "unknown",
    }
}

fn mode_name(mode: i32) -> &'static str {
    match pb::SnapshotMode::try_from(mode) {
        Ok(pb::SnapshotMode::Full) => "full",
        Ok(pb::SnapshotMode::Delta) => "delta",
        _ => "unknown",
    }
}

pub(super) fn print_reconciliations(done: &[pb::Reconciliation], json: bool) {
    if json {
        print_json(&Value::Array(
            done.iter().map(reconciliation_json).collect(),
        ));
        return;
    }
    for (i, reconciliation) in done.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print_reconciliation(reconciliation);
    }
}

/// One snapshot, its counts and its largest drifts, as a person reads them.
pub(super) fn print_reconciliation(r: &pb::Reconciliation) {
    let scope = if r.scope.is_empty() {
        "every location".to_owned()
    } else {
        r.scope.join(",")
    };
    println!(
        "snapshot {} ({} from {}, {scope}) as of {}: {}",
        r.snapshot_id,
        mode_name(r.mode),
        if r.source.is_empty() { "-" } else { &r.source },
        format_utc_ms(r.as_of_ms),
        status_name(r.status),
    );
    println!(
        "{} rows, checksum {}, staged {}",
        r.row_count,
        r.checksum,
        format_utc_ms(r.staged_at_ms)
    );
    if !r.failure.is_empty() {
        println!("failed: {}", r.failure);
    }
    let Some(report) = &r.report else {
        println!("not reconciled yet");
        return;
    };
    let c = report.counts.unwrap_or_default();
    println!(
        "{}compared {}: matched {}, drifted {} (applied {}, held {}), |drift| {} units; \
         omitted {}, superseded {}, safety stock set {}",
        if report.dry_run {
            "DRY RUN (nothing changed): "
        } else {
            ""
        },
        c.compared,
        c.matched,
        c.drifted,
        c.applied,
        c.held,
        c.drift_abs_total,
        c.omitted,
        c.superseded,
        c.safety_stock_set,
    );
    if report.largest_drifts.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = report
        .largest_drifts
        .iter()
        .map(|l| {
            vec![
                l.sku.clone(),
                l.location.clone(),
                l.erp_on_hand.to_string(),
                l.engine_on_hand_at.to_string(),
                format!("{:+}", l.drift),
                l.events_since.to_string(),
                if l.held { "held" } else { "applied" }.into(),
                l.quarantined.to_string(),
                l.safety_stock.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "SKU",
            "LOCATION",
            "ERP",
            "ENGINE_AT_AS_OF",
            "DRIFT",
            "EVENTS_SINCE",
            "ACTION",
            "QUARANTINED",
            "SAFETY",
        ],
        &rows,
    );
}

pub(super) fn print_summary_table(listed: &[pb::Reconciliation]) {
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|r| {
            let c = r
                .report
                .as_ref()
                .and_then(|report| report.counts)
                .unwrap_or_default();
            vec![
                r.snapshot_id.clone(),
                status_name(r.status).into(),
                mode_name(r.mode).into(),
                format_utc_ms(r.as_of_ms),
                r.row_count.to_string(),
                c.compared.to_string(),
                c.drifted.to_string(),
                c.applied.to_string(),
                c.held.to_string(),
                c.drift_abs_total.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "SNAPSHOT",
            "STATUS",
            "MODE",
            "AS_OF",
            "ROWS",
            "COMPARED",
            "DRIFTED",
            "APPLIED",
            "HELD",
            "DRIFT_ABS",
        ],
        &rows,
    );
}

pub(super) fn reconciliation_json(r: &pb::Reconciliation) -> Value {
    let report = r.report.as_ref().map(|report| {
        let c = report.counts.unwrap_or_default();
        json!({
            "dry_run": report.dry_run,
            "started_at_ms": report.started_at_ms,
            "finished_at_ms": report.finished_at_ms,
            "counts": {
                "compared": c.compared, "matched": c.matched, "drifted": c.drifted,
                "applied": c.applied, "held": c.held, "superseded": c.superseded,
                "omitted": c.omitted, "drift_abs_total": c.drift_abs_total,
                "safety_stock_set": c.safety_stock_set,
            },
            "largest_drifts": report.largest_drifts.iter().map(|l| json!({
                "sku": l.sku, "location": l.location, "erp_on_hand": l.erp_on_hand,
                "engine_on_hand_at": l.engine_on_hand_at, "drift": l.drift,
                "events_since": l.events_since, "held": l.held,
                "quarantined": l.quarantined, "safety_stock": l.safety_stock,
            })).collect::<Vec<_>>(),
            "tap_from_lsn": report.tap_from_lsn,
            "log_events_read": report.log_events_read,
        })
    });
    json!({
        "snapshot_id": r.snapshot_id,
        "as_of_ms": r.as_of_ms,
        "scope": r.scope,
        "mode": mode_name(r.mode),
        "source": r.source,
        "row_count": r.row_count,
        "checksum": r.checksum,
        "staged_at_ms": r.staged_at_ms,
        "status": status_name(r.status),
        "failure": r.failure,
        "report": report,
    })
}
