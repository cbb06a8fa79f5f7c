//! Proto <-> engine for snapshots, reports and ResolveDrift. As in `crate::convert`, decoding
//! only translates: the engine checks a snapshot's ids, scope, time and quantities itself and
//! names every offending field. What only the wire can get wrong (an UNSPECIFIED enum, a bad
//! page token) is checked here, and listed together with the engine's violations of the rest
//! of the message, so one round trip fixes everything.

use crate::convert::{self as base, FieldErrors};
use crate::status::{self, Failure};
use inv_engine::Violations;
use inv_engine::reconcile::{
    DriftLine, Report, SnapshotHeader, SnapshotMode, SnapshotRow, SnapshotScope, SnapshotStatus,
    StoredSnapshot,
};
use inv_engine::{Command, DriftAction, HeldDriftView, Location, ResolveDrift, Sku, SnapshotId};
use inv_proto::v1 as pb;

/// A push's header. `validate` is the engine's check of the rest of the header, run only when
/// the mode is wrong too (otherwise the push runs it), so every violation is listed at once.
pub fn header(
    header: pb::SnapshotHeader,
    validate: impl FnOnce(&SnapshotHeader) -> Result<(), Violations>,
) -> Result<SnapshotHeader, Failure> {
    let mut mode_wrong = false;
    let mode = match pb::SnapshotMode::try_from(header.mode) {
        Ok(pb::SnapshotMode::Full) => SnapshotMode::Full,
        Ok(pb::SnapshotMode::Delta) => SnapshotMode::Delta,
        Ok(pb::SnapshotMode::Unspecified) | Err(_) => {
            mode_wrong = true;
            SnapshotMode::Delta
        }
    };
    let scope = if header.scope.is_empty() {
        SnapshotScope::All
    } else {
        SnapshotScope::Locations(header.scope.into_iter().map(Location::new).collect())
    };
    let header = SnapshotHeader {
        snapshot_id: SnapshotId::new(header.snapshot_id),
        as_of_ms: header.as_of_ms,
        scope,
        mode,
        source: header.source,
    };
    if !mode_wrong {
        return Ok(header);
    }
    let mut violations = validate(&header).err().unwrap_or_default();
    violations.push("mode", "must be FULL or DELTA");
    Err(Failure::invalid(status::snapshot_fields(violations)))
}

/// A chunk's rows. The engine checks them (a negative count among the rest), naming each by
/// its index in the whole snapshot (`rows[10000].on_hand`).
pub fn rows(rows: Vec<pb::SnapshotRow>) -> Vec<SnapshotRow> {
    rows.into_iter()
        .map(|row| SnapshotRow {
            sku: Sku::new(row.sku),
            location: Location::new(row.location),
            on_hand: row.on_hand,
            safety_stock: row.safety_stock,
        })
        .collect()
}

pub fn resolve_drift(request: pb::ResolveDriftRequest) -> Result<Command, Failure> {
    let mut errors = FieldErrors::default();
    let action = match pb::DriftAction::try_from(request.action) {
        Ok(pb::DriftAction::Apply) => DriftAction::Apply,
        Ok(pb::DriftAction::Dismiss) => DriftAction::Dismiss,
        Ok(pb::DriftAction::Unspecified) | Err(_) => {
            errors.push("action", "must be APPLY or DISMISS");
            DriftAction::Dismiss
        }
    };
    let command = Command::ResolveDrift(ResolveDrift {
        snapshot_id: SnapshotId::new(request.snapshot_id),
        sku: Sku::new(request.sku),
        location: Location::new(request.location),
        action,
    });
    base::finish_command(errors, command)
}

/// A stored snapshot as the API shows it; `report` in place of the stored one (a dry run's).
pub fn reconciliation(snapshot: &StoredSnapshot, report: Option<&Report>) -> pb::Reconciliation {
    let header = &snapshot.header;
    let (status, failure) = match &snapshot.status {
        SnapshotStatus::Staged => (pb::SnapshotStatus::Staged, String::new()),
        SnapshotStatus::Reconciling => (pb::SnapshotStatus::Reconciling, String::new()),
        SnapshotStatus::Reconciled => (pb::SnapshotStatus::Reconciled, String::new()),
        SnapshotStatus::Failed(why) => (pb::SnapshotStatus::Failed, why.clone()),
    };
    pb::Reconciliation {
        snapshot_id: header.snapshot_id.to_string(),
        as_of_ms: header.as_of_ms,
        scope: match &header.scope {
            SnapshotScope::All => Vec::new(),
            SnapshotScope::Locations(locations) => {
                locations.iter().map(ToString::to_string).collect()
            }
        },
        mode: match header.mode {
            SnapshotMode::Full => pb::SnapshotMode::Full,
            SnapshotMode::Delta => pb::SnapshotMode::Delta,
        } as i32,
        source: header.source.clone(),
        row_count: snapshot.summary.rows,
        checksum: snapshot.summary.checksum.clone(),
        staged_at_ms: snapshot.staged_at_ms,
        status: status as i32,
        failure,
        report: report.or(snapshot.report.as_ref()).map(self::report),
    }
}

fn report(report: &Report) -> pb::ReconciliationReport {
    let c = &report.counts;
    pb::ReconciliationReport {
        dry_run: report.dry_run,
        started_at_ms: report.started_at_ms,
        finished_at_ms: report.finished_at_ms,
        counts: Some(pb::ReconciliationCounts {
            compared: c.compared,
            matched: c.matched,
            drifted: c.drifted,
            applied: c.applied,
            held: c.held,
            superseded: c.superseded,
            omitted: c.omitted,
            drift_abs_total: c.drift_abs_total,
            safety_stock_set: c.safety_stock_set,
        }),
        largest_drifts: report.largest.iter().map(drift_line).collect(),
        tap_from_lsn: report.tap_from_lsn.0,
        log_events_read: report.log_events_read,
    }
}

fn drift_line(line: &DriftLine) -> pb::DriftLine {
    pb::DriftLine {
        sku: line.sku.to_string(),
        location: line.location.to_string(),
        erp_on_hand: line.erp_on_hand,
        engine_on_hand_at: line.engine_on_hand_at,
        drift: line.drift,
        events_since: line.events_since,
        held: line.held,
        quarantined: line.quarantined,
        safety_stock: line.safety_stock,
    }
}

/// The page token after `snapshot`: where the next page of a newest-first listing starts.
pub fn page_token(snapshot: &StoredSnapshot) -> String {
    format!("{}:{}", snapshot.staged_at_ms, snapshot.header.snapshot_id)
}

/// A page token's position (staged time, snapshot id).
pub fn parse_page_token(token: &str) -> Result<(u64, SnapshotId), Failure> {
    token
        .split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, SnapshotId::from(id))))
        .ok_or_else(|| {
            Failure::invalid_field(
                "page_token",
                "not a token this server gave (send it as given)",
            )
        })
}

/// The page token after a position of a by-position listing: `LEN:SKU LOCATION`, the sku's
/// length in bytes first, so neither id needs escaping.
pub fn position_token(sku: &str, location: &str) -> String {
    format!("{}:{sku}{location}", sku.len())
}

/// A position token's (sku, location).
pub fn parse_position_token(token: &str) -> Result<(String, String), Failure> {
    token
        .split_once(':')
        .and_then(|(len, rest)| {
            let len: usize = len.parse().ok()?;
            let sku = rest.get(..len)?;
            let location = rest.get(len..)?;
            Some((sku.to_owned(), location.to_owned()))
        })
        .ok_or_else(|| {
            Failure::invalid_field(
                "page_token",
                "not a token this server gave (send it as given)",
            )
        })
}

pub fn held_drift(held: &HeldDriftView) -> pb::HeldDrift {
    pb::HeldDrift {
        snapshot_id: held.snapshot_id.to_string(),
        sku: held.sku.to_string(),
        location: held.location.to_string(),
        as_of_ms: held.as_of_ms,
        erp_on_hand: held.erp_on_hand,
        engine_on_hand_at: held.engine_on_hand_at,
        drift: held.drift,
        lsn: held.lsn.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_ids_with_colons() {
        let snapshot = StoredSnapshot {
            header: SnapshotHeader {
                snapshot_id: SnapshotId::from("erp:2026-12-03"),
                as_of_ms: 1,
                scope: SnapshotScope::All,
                mode: SnapshotMode::Full,
                source: String::new(),
            },
            summary: inv_engine::reconcile::SnapshotSummary {
                rows: 0,
                checksum: String::new(),
            },
            staged_at_ms: 42,
            status: SnapshotStatus::Staged,
            report: None,
        };
        let (at, id) = parse_page_token(&page_token(&snapshot)).expect("parses");
        assert_eq!((at, id.as_str()), (42, "erp:2026-12-03"));
        assert!(parse_page_token("nonsense").is_err());
        let token = position_token("sku:1", "dc:2");
        let (sku, location) = parse_position_token(&token).expect("parses");
        assert_eq!((sku.as_str(), location.as_str()), ("sku:1", "dc:2"));
        assert!(parse_position_token("99:ab").is_err());
    }

    #[test]
    fn a_wrong_enum_is_listed_with_the_engines_violations_of_the_rest() {
        // Goal: the mode (or action) is checked while decoding, the rest by the engine; a
        // message wrong in both names every field at once.
        let wrong = pb::SnapshotHeader {
            snapshot_id: String::new(),
            as_of_ms: 0,
            scope: vec![],
            mode: 0,
            source: String::new(),
        };
        let failure = header(wrong, |h| h.validate(1_000_000, 0)).expect_err("invalid");
        let fields: Vec<&str> = failure
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["header.snapshot_id", "header.as_of_ms", "header.mode"]
        );
        let failure = resolve_drift(pb::ResolveDriftRequest {
            snapshot_id: String::new(),
            sku: "s".into(),
            location: "l".into(),
            action: 0,
        })
        .expect_err("invalid");
        let fields: Vec<&str> = failure
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["snapshot_id", "action"]);
    }
}
