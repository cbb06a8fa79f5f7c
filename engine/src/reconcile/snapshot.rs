//! ERP snapshots as data: the header that names one, its rows, the checksum that identifies
//! its content, and the checks a snapshot must pass before it is staged.

use crate::command::id_problem;
use crate::error::Violations;
use crate::limits::{ID_BYTES_MAX, QTY_MAX};
use crate::types::{Location, Sku, SnapshotId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Rows in one streamed chunk: bounds the memory a push holds at once.
pub const SNAPSHOT_CHUNK_ROWS_MAX: usize = 10_000;
/// Rows in one snapshot: a large retailer's every position, with room.
pub const SNAPSHOT_ROWS_MAX: u64 = 100_000_000;
/// Locations a scope may list.
pub const SNAPSHOT_SCOPE_LOCATIONS_MAX: usize = 10_000;
/// How far a snapshot's `as_of` may lie ahead of the engine's clock: clocks of two systems
/// differ a little; a count from the future is a mistake.
pub const SNAPSHOT_AS_OF_SKEW_MS: u64 = 60_000;

/// Which positions a snapshot speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnapshotMode {
    /// Every position in scope: one the snapshot omits counts as 0 at the ERP.
    Full,
    /// Only the rows listed.
    Delta,
}

/// The locations a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotScope {
    All,
    Locations(BTreeSet<Location>),
}

impl SnapshotScope {
    pub fn contains(&self, location: &Location) -> bool {
        match self {
            SnapshotScope::All => true,
            SnapshotScope::Locations(locations) => locations.contains(location),
        }
    }
}

/// What the first message of a push says about the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub snapshot_id: SnapshotId,
    /// The ERP's event-time watermark, ms since the epoch: the counts include every movement
    /// up to this time and none after.
    pub as_of_ms: u64,
    pub scope: SnapshotScope,
    pub mode: SnapshotMode,
    /// Which system sent it (for reports).
    pub source: String,
}

/// One position's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub sku: Sku,
    pub location: Location,
    pub on_hand: i64,
    /// When present, set as the position's safety stock (as `SetSafetyStock` would).
    pub safety_stock: Option<u64>,
}

/// What the last message of a push says, and what identifies a snapshot's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub rows: u64,
    /// [`RowDigest`] of the rows in the order they were sent, lower-case hex.
    pub checksum: String,
}

/// The checksum of a snapshot's rows: SHA-256 over one line per row, in the order sent,
/// `sku \t location \t on_hand \t safety_stock \n` (decimal numbers; an absent safety stock is
/// an empty field). A client in any language computes the same.
#[derive(Default)]
pub struct RowDigest {
    hasher: Sha256,
    rows: u64,
}

impl RowDigest {
    pub fn add(&mut self, row: &SnapshotRow) {
        let safety = row.safety_stock.map(|q| q.to_string()).unwrap_or_default();
        let line = format!(
            "{}\t{}\t{}\t{}\n",
            row.sku, row.location, row.on_hand, safety
        );
        self.hasher.update(line.as_bytes());
        self.rows += 1;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The summary of every row added.
    pub fn finish(self) -> SnapshotSummary {
        let digest = self.hasher.finalize();
        SnapshotSummary {
            rows: self.rows,
            checksum: digest.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// A duration as a person reads it: `24 h`, `90 min`, `1500 ms`.
pub fn human_ms(ms: u64) -> String {
    if ms > 0 && ms.is_multiple_of(3_600_000) {
        format!("{} h", ms / 3_600_000)
    } else if ms > 0 && ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms > 0 && ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

impl SnapshotHeader {
    /// Checks the header's shape, and that `as_of_ms` lies within the history the engine keeps
    /// (`history_start_ms` on, at `now_ms`) and not in the future beyond the allowed skew.
    /// Every violation is listed, named as the header's field (`as_of_ms`).
    pub fn validate(&self, now_ms: u64, history_start_ms: u64) -> Result<(), Violations> {
        let mut v = Violations::new();
        if let Some(problem) = id_problem(self.snapshot_id.as_str()) {
            v.push("snapshot_id", problem);
        }
        if self.source.len() > ID_BYTES_MAX {
            v.push("source", format!("longer than {ID_BYTES_MAX} bytes"));
        }
        if let SnapshotScope::Locations(locations) = &self.scope {
            if locations.is_empty() {
                v.push("scope", "lists no location (omit it for all)");
            } else if locations.len() > SNAPSHOT_SCOPE_LOCATIONS_MAX {
                v.push(
                    "scope",
                    format!("more than {SNAPSHOT_SCOPE_LOCATIONS_MAX} locations"),
                );
            } else if let Some(bad) = locations.iter().find(|l| id_problem(l.as_str()).is_some()) {
                v.push("scope", format!("location {bad:?} is not a valid id"));
            }
        }
        if self.as_of_ms == 0 {
            v.push("as_of_ms", "must be set");
        } else if self.as_of_ms > now_ms.saturating_add(SNAPSHOT_AS_OF_SKEW_MS) {
            v.push(
                "as_of_ms",
                format!(
                    "{} ms ahead of the engine's clock (at most {SNAPSHOT_AS_OF_SKEW_MS} ms of \
                     clock skew is allowed)",
                    self.as_of_ms - now_ms
                ),
            );
        } else if self.as_of_ms < history_start_ms {
            // The reason names the window as a person reads it ("24 h"), not only in ms: the
            // ERP team fixing its export reads this message, not our config.
            v.push(
                "as_of_ms",
                format!(
                    "older than the history window the engine keeps ({} back from now, from \
                     {history_start_ms} ms); push a newer snapshot or raise \
                     --reconcile-history-ms",
                    human_ms(now_ms.saturating_sub(history_start_ms))
                ),
            );
        }
        v.into_result()
    }

    /// Checks row `index` (its position in the whole snapshot), adding what is wrong with it
    /// to `violations` (`rows[12].on_hand`).
    pub fn check_row(&self, index: u64, row: &SnapshotRow, violations: &mut Violations) {
        let field = |name: &str| format!("rows[{index}].{name}");
        if let Some(problem) = id_problem(row.sku.as_str()) {
            violations.push(field("sku"), problem);
        }
        if let Some(problem) = id_problem(row.location.as_str()) {
            violations.push(field("location"), problem);
        } else if !self.scope.contains(&row.location) {
            violations.push(field("location"), "outside the snapshot's scope");
        }
        // An ERP count is of units present: 0 or more (the engine's own on_hand may be
        // negative, because a store sale is a fact; the count is what corrects it).
        if row.on_hand < 0 {
            violations.push(
                field("on_hand"),
                "must not be negative (a count of units present)",
            );
        } else if row.on_hand.unsigned_abs() > QTY_MAX {
            violations.push(field("on_hand"), format!("exceeds {QTY_MAX}"));
        }
        if row.safety_stock.is_some_and(|q| q > QTY_MAX) {
            violations.push(field("safety_stock"), format!("exceeds {QTY_MAX}"));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn row(sku: &str, on_hand: i64, safety: Option<u64>) -> SnapshotRow {
        SnapshotRow {
            sku: Sku::from(sku),
            location: Location::from("dc-1"),
            on_hand,
            safety_stock: safety,
        }
    }

    /// The checksum is SHA-256 of the documented lines, so a client in another language can
    /// compute it: pinned against a value computed outside Rust (`printf ... | sha256sum`).
    #[test]
    fn the_checksum_is_sha256_of_the_documented_lines() {
        let mut digest = RowDigest::default();
        digest.add(&row("sku-1", 10, None));
        digest.add(&row("sku-2", -3, Some(2)));
        let summary = digest.finish();
        assert_eq!(summary.rows, 2);
        // printf 'sku-1\tdc-1\t10\t\nsku-2\tdc-1\t-3\t2\n' | sha256sum
        assert_eq!(
            summary.checksum,
            "c18af6b6380f44074be468e994986d3e96adee4db068d5beeb5a61a359c7a836"
        );
    }

    #[test]
    fn as_of_outside_the_history_or_in_the_future_is_refused_naming_the_window() {
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from("s1"),
            as_of_ms: 1_000_000,
            scope: SnapshotScope::All,
            mode: SnapshotMode::Full,
            source: "erp".into(),
        };
        assert_eq!(header.validate(1_000_000, 0), Ok(()));
        let old = header
            .validate(1_000_000 + 86_400_000, 1_000_001)
            .expect_err("too old");
        let old = old.first().expect("a violation");
        assert_eq!(old.field, "as_of_ms");
        assert!(old.reason.contains("history"), "{}", old.reason);
        let future = header.validate(1_000_000 - 61_000, 0).expect_err("future");
        let future = future.first().expect("a violation");
        assert!(future.reason.contains("skew"), "{}", future.reason);
    }

    #[test]
    fn rows_outside_the_scope_are_refused_naming_the_row() {
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from("s1"),
            as_of_ms: 1,
            scope: SnapshotScope::Locations([Location::from("dc-2")].into()),
            mode: SnapshotMode::Delta,
            source: String::new(),
        };
        let mut violations = Violations::new();
        header.check_row(7, &row("sku-1", 1, None), &mut violations);
        let fields: Vec<_> = violations.listed().iter().map(|v| &v.field).collect();
        assert_eq!(fields, ["rows[7].location"]);
    }

    #[test]
    fn every_violation_of_a_header_or_row_is_listed() {
        // Goal: a header or row wrong in several fields names each of them, so the ERP team
        // fixes its export in one round trip.
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from(""),
            as_of_ms: 0,
            scope: SnapshotScope::Locations(BTreeSet::new()),
            mode: SnapshotMode::Delta,
            source: "x".repeat(ID_BYTES_MAX + 1),
        };
        let violations = header.validate(1_000_000, 0).expect_err("invalid");
        let fields: Vec<_> = violations.listed().iter().map(|v| &v.field).collect();
        assert_eq!(fields, ["snapshot_id", "source", "scope", "as_of_ms"]);
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from("s1"),
            as_of_ms: 1,
            scope: SnapshotScope::All,
            mode: SnapshotMode::Delta,
            source: String::new(),
        };
        let mut violations = Violations::new();
        let bad = SnapshotRow {
            sku: Sku::from(""),
            location: Location::from("dc-1"),
            on_hand: -1,
            safety_stock: Some(QTY_MAX + 1),
        };
        header.check_row(3, &bad, &mut violations);
        header.check_row(4, &row("sku-1", 1, None), &mut violations);
        let fields: Vec<_> = violations.listed().iter().map(|v| &v.field).collect();
        assert_eq!(
            fields,
            ["rows[3].sku", "rows[3].on_hand", "rows[3].safety_stock"]
        );
    }
}
