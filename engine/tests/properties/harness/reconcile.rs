//! A reconciliation step: push a snapshot made from the model's counts, run it, and check every
//! logged fact and the report against the model's verdicts.

use super::{Harness, check};
use crate::model::ModelVerdict;
use crate::steps::{LOCS, POSITIONS, Step, T0, pos_names, pos_of};
use inv_engine::reconcile::{
    Push, ReconcileError, Reconciliation, ReconciliationCounts, RowDigest, SnapshotHeader,
    SnapshotMode, SnapshotRow, SnapshotScope, SnapshotStatus, SnapshotStore, TolerancePolicy,
};
use inv_engine::{Fact, Location, Sku, SnapshotId, Tolerance};
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Harness {
    /// Pushes a snapshot whose counts are the model's own count at `as_of` plus each row's
    /// drift, reconciles it (deciding `during` after the run started), and checks every
    /// logged fact and the report against the model's verdicts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reconcile(
        &mut self,
        picks: &[(usize, i64, Option<u64>)],
        full: bool,
        scope: Option<usize>,
        back_ms: u64,
        tolerance: Tolerance,
        dry_run: bool,
        during: Option<&Step>,
    ) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let as_of = now.saturating_sub(back_ms).max(T0);
        let in_scope = |p: usize| scope.is_none_or(|l| p % 2 == l);
        let id = format!("snap{}", self.snapshots_pushed);
        self.snapshots_pushed += 1;
        let mut listed = BTreeSet::new();
        let rows: Vec<(usize, SnapshotRow)> = picks
            .iter()
            .filter(|(p, ..)| in_scope(*p) && listed.insert(*p))
            .map(|&(p, drift, safety_stock)| {
                let (sku, location) = pos_names(p);
                let row = SnapshotRow {
                    sku: Sku::from(sku),
                    location: Location::from(location),
                    on_hand: (self.model.on_hand_at(p, as_of).0 + drift).max(0),
                    safety_stock,
                };
                (p, row)
            })
            .collect();
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from(id.as_str()),
            as_of_ms: as_of,
            scope: match scope {
                None => SnapshotScope::All,
                Some(l) => SnapshotScope::Locations([Location::from(LOCS[l])].into()),
            },
            mode: if full {
                SnapshotMode::Full
            } else {
                SnapshotMode::Delta
            },
            source: "model".into(),
        };
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.snapshots));
        let history_start_ms = engine.ledger().history_start_ms_at(now);
        let mut digest = RowDigest::default();
        let mut push = Push::begin(store.as_ref(), header, now, history_start_ms)
            .map_err(|e| TestCaseError::fail(format!("push begins: {e}")))?;
        for (_, row) in &rows {
            digest.add(row);
            push.rows(std::slice::from_ref(row))
                .map_err(|e| TestCaseError::fail(format!("push rows: {e}")))?;
        }
        push.finish(&digest.finish(), now)
            .map_err(|e| TestCaseError::fail(format!("push finishes: {e}")))?;

        self.clock.set_ms(now);
        let policy = TolerancePolicy {
            default: tolerance,
            by_location: Default::default(),
        };
        let log_before = self.log.len();
        let digest_before = self.ledger().digest();
        let superseded_by_newer = self
            .model
            .reconciled
            .iter()
            .any(|&(a, s)| a > as_of && (s.is_none() || scope.is_none() || s == scope));
        let started = Reconciliation::start(&engine, store.as_ref(), &id, policy, dry_run);
        if superseded_by_newer {
            check!(
                matches!(started, Err(ReconcileError::Superseded { .. })),
                "a snapshot older than one reconciled must be refused: {:?}",
                started.map(|_| ())
            );
            check!(self.log.len() == log_before, "a refused run logged");
            check!(
                self.ledger().digest() == digest_before,
                "a refused run changed the ledger"
            );
            return Ok(());
        }
        let run = started.map_err(|e| TestCaseError::fail(format!("run starts: {e}")))?;
        if let Some(during) = during {
            self.step(during)?;
        }

        // The verdicts, decided from the state once `during` is applied: nothing else moves
        // these positions until the run has decided them.
        let mut expected: BTreeMap<usize, ModelVerdict> = BTreeMap::new();
        for (p, row) in &rows {
            expected.insert(*p, self.model.verdict(*p, row.on_hand, as_of, &tolerance));
        }
        let mut omitted = 0;
        if full {
            for p in 0..POSITIONS {
                if in_scope(p) && self.model.positions[p].exists && !listed.contains(&p) {
                    expected.insert(p, self.model.verdict(p, 0, as_of, &tolerance));
                    omitted += 1;
                }
            }
        }
        let safety_set: Vec<(usize, u64)> = rows
            .iter()
            .filter_map(|(p, row)| {
                let qty = row.safety_stock?;
                (self.model.positions[*p].safety_stock != qty as i64).then_some((*p, qty))
            })
            .collect();
        let mut counts = ReconciliationCounts {
            compared: expected.len() as u64,
            omitted,
            safety_stock_set: safety_set.len() as u64,
            ..ReconciliationCounts::default()
        };
        for v in expected.values() {
            if v.drift == 0 {
                counts.matched += 1;
            } else {
                counts.drifted += 1;
                counts.drift_abs_total += v.drift.unsigned_abs();
                if v.held {
                    counts.held += 1;
                } else {
                    counts.applied += 1;
                }
            }
            if v.superseded.is_some() {
                counts.superseded += 1;
            }
        }

        let log_mid = self.log.len();
        let report = run
            .finish()
            .map_err(|e| TestCaseError::fail(format!("run finishes: {e}")))?;
        check!(
            report.counts == counts,
            "report counts {:?}\n      model {counts:?}",
            report.counts
        );
        check!(report.dry_run == dry_run, "dry_run not reported");
        let events = self.log.events();
        if dry_run {
            check!(self.log.len() == log_mid, "a dry run logged");
            return Ok(());
        }
        let mut logged = BTreeSet::new();
        for event in &events[log_mid..] {
            match &event.fact {
                Fact::PositionReconciled {
                    reconcile: r,
                    engine_on_hand_at,
                    drift,
                    held,
                    superseded,
                    events_since,
                } => {
                    let p = pos_of(r.sku.as_str(), r.location.as_str());
                    let Some(v) = expected.get(&p) else {
                        return Err(TestCaseError::fail(format!(
                            "reconciled a position not compared: {event:?}"
                        )));
                    };
                    let actual = ModelVerdict {
                        erp_on_hand: r.erp_on_hand,
                        engine_on_hand_at: *engine_on_hand_at,
                        drift: *drift,
                        held: *held,
                        superseded: superseded.as_ref().map(|s| s.to_string()),
                        events_since: *events_since,
                    };
                    check!(
                        actual == *v && v.logged(),
                        "position {p} as of {as_of}: logged {actual:?}, model {v:?}"
                    );
                    check!(
                        r.snapshot_id.as_str() == id && r.as_of_ms == as_of,
                        "{event:?} names another snapshot"
                    );
                    check!(logged.insert(p), "position {p} reconciled twice");
                    if *held {
                        self.stats.drifts_held += 1;
                    } else if *drift != 0 {
                        self.stats.drifts_applied += 1;
                    }
                }
                Fact::SafetyStockSet(c) => {
                    let p = pos_of(c.sku.as_str(), c.location.as_str());
                    check!(
                        safety_set.contains(&(p, c.qty)),
                        "unexpected safety stock {event:?}"
                    );
                }
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "a reconciliation logged {event:?}"
                    )));
                }
            }
            self.model.apply(&event.fact, event.lsn.0, event.at_ms);
        }
        let expected_logged: BTreeSet<usize> = expected
            .iter()
            .filter(|(_, v)| v.logged())
            .map(|(p, _)| *p)
            .collect();
        check!(
            logged == expected_logged,
            "logged facts for {logged:?}, model expected {expected_logged:?}"
        );
        self.model.reconciled.push((as_of, scope));
        self.stats.reconciled += 1;
        let stored = store.get(&id).expect("reads").expect("stored");
        check!(
            stored.status == SnapshotStatus::Reconciled && stored.report.as_ref() == Some(&report),
            "stored {stored:?}"
        );
        Ok(())
    }
}
