//! The ERP's turn in the generator: snapshots pushed (and pushed again), reconciled by runs
//! in steps with traffic between them, and held drifts resolved by a reviewer.

use super::{Generator, Pushed};
use crate::vopr::rng::Rng;
use crate::vopr::workload::{
    AsOf, ErpCount, HOT_SKUS, LOCATIONS, Op, PlannedRow, PlannedSnapshot, Repush, sku_name,
};
use inv_engine::reconcile::TolerancePolicy;
use inv_engine::{
    BeyondTolerance, Command, DriftAction, Location, ResolveDrift, Sku, SnapshotId, Tolerance,
};

impl Generator {
    /// The ERP's turn: resume a run cut short, push a snapshot again, or push a new one and
    /// reconcile it.
    pub(super) fn snapshot(&mut self) {
        if let Some((id, policy)) = self.interrupted.take() {
            return self.reconcile(id, false, policy);
        }
        if !self.snapshots.is_empty() && self.rng.chance(15) {
            let i = self.rng.index(self.snapshots.len());
            let id = self.snapshots[i].id.clone();
            let change = match self.rng.range(0, 9) {
                0..=5 => Repush::Same,
                6 | 7 => Repush::OtherRows,
                _ => Repush::OtherAsOf,
            };
            self.ops.push(Op::Repush { id, change });
            return;
        }
        let id = self.id("snap");
        let as_of = match self.rng.range(0, 99) {
            0..=5 => AsOf::TooOld,
            6..=8 => AsOf::Ahead,
            9..=29 => AsOf::Back(0),
            _ => AsOf::Back(self.rng.range(1, 90_000)),
        };
        let full = self.rng.chance(40);
        let scope = if self.rng.chance(50) {
            None
        } else {
            let mut locations: Vec<String> = LOCATIONS
                .iter()
                .filter(|_| self.rng.chance(50))
                .map(|l| (*l).to_owned())
                .collect();
            if locations.is_empty() {
                locations.push(LOCATIONS[self.rng.index(LOCATIONS.len())].to_owned());
            }
            Some(locations)
        };
        // Mostly exact counts, some drift within and some beyond the default tolerance.
        let exact_percent = [20, 60, 90][self.rng.index(3)];
        let count = self.rng.range(1, 12);
        let mut rows: Vec<PlannedRow> = Vec::new();
        for _ in 0..count {
            let (sku, location) = self.position();
            let in_scope = scope.as_ref().is_none_or(|s| s.contains(&location));
            if !in_scope || rows.iter().any(|r| r.sku == sku && r.location == location) {
                continue;
            }
            let count = if self.rng.chance(exact_percent) {
                ErpCount::Exact
            } else if self.rng.chance(60) {
                ErpCount::Drift(self.rng.range(1, 2) as i64 * [-1, 1][self.rng.index(2)])
            } else {
                ErpCount::Drift(self.rng.range(3, 15) as i64 * [-1, 1][self.rng.index(2)])
            };
            let safety_stock = self.rng.chance(25).then(|| self.rng.range(0, 3));
            rows.push(PlannedRow {
                sku,
                location,
                count,
                safety_stock,
            });
        }
        if rows.is_empty() {
            // A snapshot of one row at least, so a changed re-push has a row to change.
            let location = scope
                .as_ref()
                .map_or(LOCATIONS[0].to_owned(), |s| s[0].clone());
            rows.push(PlannedRow {
                sku: sku_name(self.rng.index(HOT_SKUS)),
                location,
                count: ErpCount::Exact,
                safety_stock: None,
            });
        }
        self.snapshots.push(Pushed {
            id: id.clone(),
            positions: rows
                .iter()
                .map(|r| (r.sku.clone(), r.location.clone()))
                .collect(),
        });
        self.ops.push(Op::PushSnapshot(PlannedSnapshot {
            id: id.clone(),
            as_of,
            full,
            scope,
            rows,
            broken_first: self.rng.chance(10),
        }));
        // Usually reconciled at once; otherwise it waits staged for a later turn (a re-push
        // or a run of an older snapshot after a newer one: refused as superseded).
        if self.rng.chance(85) {
            let dry_run = self.rng.chance(20);
            let policy = self.policy();
            self.reconcile(id, dry_run, policy);
        }
    }

    /// The tolerance a run applies: the default, sometimes strict or lenient, sometimes
    /// applying every drift, sometimes another rule for one location.
    fn policy(&mut self) -> TolerancePolicy {
        let tolerance = |rng: &mut Rng| Tolerance {
            units: [0, 2, 2, 5][rng.index(4)],
            percent_bp: [0, 100, 100, 1_000][rng.index(4)],
            beyond: if rng.chance(75) {
                BeyondTolerance::Hold
            } else {
                BeyondTolerance::Apply
            },
        };
        let mut policy = TolerancePolicy {
            default: tolerance(&mut self.rng),
            ..TolerancePolicy::default()
        };
        if self.rng.chance(30) {
            let location = LOCATIONS[self.rng.index(LOCATIONS.len())];
            policy
                .by_location
                .insert(Location::from(location), tolerance(&mut self.rng));
        }
        policy
    }

    /// A run of snapshot `id`: started, stepped a few positions at a time with ordinary ops
    /// between the steps (none for a dry run), finished. A crash or a failing sync in the
    /// window may cut it short: the next snapshot turn resumes it.
    fn reconcile(&mut self, id: String, dry_run: bool, policy: TolerancePolicy) {
        self.ops.push(Op::ReconcileStart {
            id: id.clone(),
            dry_run,
            policy: policy.clone(),
        });
        self.in_run = true;
        let mut faulted = false;
        for _ in 0..self.rng.range(1, 6) {
            if !dry_run {
                for _ in 0..self.rng.range(0, 4) {
                    let before = self.ops.len();
                    self.step();
                    faulted |= self.ops[before..]
                        .iter()
                        .any(|op| matches!(op, Op::Crash | Op::FailNextSync));
                }
            }
            let positions = self.rng.range(1, 8) as u32;
            self.ops.push(Op::ReconcileStep { positions });
        }
        self.ops.push(Op::ReconcileFinish);
        self.in_run = false;
        if faulted && !dry_run {
            self.interrupted = Some((id, policy));
        }
    }

    /// A second start while a run is in progress: refused, the running one unharmed.
    pub(super) fn concurrent_start(&mut self) {
        let Some(pushed) = self.snapshots.last() else {
            return;
        };
        let id = pushed.id.clone();
        let policy = self.policy();
        self.ops.push(Op::ReconcileStart {
            id,
            dry_run: true,
            policy,
        });
    }

    /// A reviewer applies or dismisses a drift a recent snapshot may have held (the engine
    /// answers DRIFT_NOT_HELD where none is held).
    pub(super) fn resolve_drift(&mut self) {
        if self.snapshots.is_empty() {
            return self.reserve();
        }
        let n = self.snapshots.len();
        let i = n - 1 - self.rng.index(n.min(3));
        let (sku, location) = if self.rng.chance(80) {
            let positions = &self.snapshots[i].positions;
            positions[self.rng.index(positions.len())].clone()
        } else {
            self.position()
        };
        let action = if self.rng.chance(60) {
            DriftAction::Apply
        } else {
            DriftAction::Dismiss
        };
        self.send(Command::ResolveDrift(ResolveDrift {
            snapshot_id: SnapshotId::from(self.snapshots[i].id.as_str()),
            sku: Sku::from(sku.as_str()),
            location: Location::from(location.as_str()),
            action,
        }));
    }
}
