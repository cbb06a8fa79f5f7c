//! What a reconciliation found: counts, the total drift and the largest drifts, kept with the
//! snapshot in the snapshot store so reports survive restarts.

use super::snapshot::{SnapshotHeader, SnapshotSummary};
use crate::types::{Location, Lsn, Sku};
use serde::{Deserialize, Serialize};

/// Drifts listed in a report, largest first.
pub const REPORT_DRIFTS_LISTED: usize = 20;

/// Where a staged snapshot stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotStatus {
    /// Complete and durable; waiting for the next reconciliation.
    Staged,
    /// A reconciliation of it started and has not finished (one interrupted by a restart
    /// resumes: positions already reconciled answer with their first outcome).
    Reconciling,
    /// Reconciled; the report is final.
    Reconciled,
    /// Could not be reconciled (for example, it aged out of the history window while staged).
    Failed(String),
}

/// One drifted position, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftLine {
    pub sku: Sku,
    pub location: Location,
    pub erp_on_hand: i64,
    /// The engine's on_hand at the snapshot's time.
    pub engine_on_hand_at: i64,
    pub drift: i64,
    /// Events after the snapshot's time that moved this position's on_hand (not counted
    /// twice: they are why the engine's count today differs from its count then).
    pub events_since: u32,
    pub held: bool,
    /// Beside on_hand, for whoever reviews the drift: units in quarantine and safety stock
    /// at the time of the report.
    pub quarantined: i64,
    pub safety_stock: i64,
}

/// The counts of one reconciliation. Every compared position is exactly one of matched,
/// applied or held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationCounts {
    /// Positions compared: the snapshot's rows, plus (FULL) the engine's positions in scope
    /// that the snapshot omits.
    pub compared: u64,
    pub matched: u64,
    /// Drifted positions: applied + held.
    pub drifted: u64,
    pub applied: u64,
    pub held: u64,
    /// Drifts held from earlier snapshots that this one superseded.
    pub superseded: u64,
    /// FULL: engine positions in scope the snapshot omits (counted as 0 at the ERP).
    pub omitted: u64,
    /// Sum of |drift| over the drifted positions.
    pub drift_abs_total: u64,
    /// Rows whose safety stock was set (it differed).
    pub safety_stock_set: u64,
}

/// A snapshot with its state and, once a reconciliation ran, its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub header: SnapshotHeader,
    pub summary: SnapshotSummary,
    pub staged_at_ms: u64,
    pub status: SnapshotStatus,
    pub report: Option<Report>,
}

/// What a reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// A dry run decided nothing: what would have been applied or held.
    pub dry_run: bool,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub counts: ReconciliationCounts,
    /// The largest drifts, by |drift| (then sku, location), at most [`REPORT_DRIFTS_LISTED`].
    pub largest: Vec<DriftLine>,
    /// Where the log's part of the history ended and the ledger's tap began.
    pub tap_from_lsn: Lsn,
    /// Events read from the log to count what happened after the snapshot's time.
    pub log_events_read: u64,
}

impl StoredSnapshot {
    /// Reconciled or failed: nothing will read its rows again.
    pub fn finished(&self) -> bool {
        matches!(
            self.status,
            SnapshotStatus::Reconciled | SnapshotStatus::Failed(_)
        )
    }
}

impl Report {
    /// Counts a compared position and keeps it if it is among the largest drifts.
    pub fn add(&mut self, line: Option<DriftLine>) {
        self.counts.compared += 1;
        let Some(line) = line else {
            self.counts.matched += 1;
            return;
        };
        self.counts.drifted += 1;
        self.counts.drift_abs_total += line.drift.unsigned_abs();
        if line.held {
            self.counts.held += 1;
        } else {
            self.counts.applied += 1;
        }
        let key = |l: &DriftLine| {
            (
                std::cmp::Reverse(l.drift.unsigned_abs()),
                l.sku.clone(),
                l.location.clone(),
            )
        };
        let at = self.largest.partition_point(|l| key(l) < key(&line));
        if at < REPORT_DRIFTS_LISTED {
            self.largest.insert(at, line);
            self.largest.truncate(REPORT_DRIFTS_LISTED);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn line(sku: &str, drift: i64) -> DriftLine {
        DriftLine {
            sku: Sku::from(sku),
            location: Location::from("dc"),
            erp_on_hand: 0,
            engine_on_hand_at: -drift,
            drift,
            events_since: 0,
            held: drift.abs() > 5,
            quarantined: 0,
            safety_stock: 0,
        }
    }

    #[test]
    fn a_report_keeps_the_largest_drifts_and_exact_counts() {
        let mut report = Report::default();
        report.add(None);
        for i in 0..50 {
            report.add(Some(line(
                &format!("s{i:02}"),
                if i % 2 == 0 { i } else { -i },
            )));
        }
        let c = &report.counts;
        assert_eq!((c.compared, c.matched, c.drifted), (51, 1, 50));
        assert_eq!(c.applied + c.held, c.drifted);
        assert_eq!(c.drift_abs_total, (0..50).sum::<i64>() as u64);
        assert_eq!(report.largest.len(), REPORT_DRIFTS_LISTED);
        let sizes: Vec<u64> = report
            .largest
            .iter()
            .map(|l| l.drift.unsigned_abs())
            .collect();
        assert_eq!(sizes, (30..50).rev().collect::<Vec<u64>>());
    }
}
