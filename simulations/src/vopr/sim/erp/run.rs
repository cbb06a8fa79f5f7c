//! A reconciliation run as the simulator drives it: the window from its start to its
//! finish with other ops between the steps, the start (or the refusal the book predicts),
//! each step's and the finish's events checked against the model, and the fence after them.

use super::{Refusal, Running, refusal_of};
use crate::vopr::model::Position;
use crate::vopr::sim::{Check, Sim, fail};
use crate::vopr::workload::Op;
use inv_engine::reconcile::{
    ReconcileError, Reconciliation, SnapshotMode, SnapshotScope, SnapshotStatus, SnapshotStore,
    StoredSnapshot, TolerancePolicy,
};
use inv_engine::{Clock, Command, Engine, Fact, Location, Lsn, Release, ReservationId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A hold id no generated request uses: releasing it is always refused.
const FENCE_ID: &str = "vopr-fence";

fn scopes_overlap(a: &SnapshotScope, b: &SnapshotScope) -> bool {
    match (a, b) {
        (SnapshotScope::Locations(a), SnapshotScope::Locations(b)) => !a.is_disjoint(b),
        _ => true,
    }
}

impl Sim {
    /// Why starting a run of `id` now must be refused, if it must.
    fn predict_start(&self, id: &str, now_ms: u64) -> Option<Refusal> {
        let Some(booked) = self.book.get(id) else {
            return Some(Refusal::NotFound);
        };
        let stored = &booked.stored;
        if !matches!(
            stored.status,
            SnapshotStatus::Staged | SnapshotStatus::Reconciling
        ) {
            return Some(Refusal::NotStaged);
        }
        if stored.header.as_of_ms < now_ms.saturating_sub(self.config.history_ms) {
            return Some(Refusal::TooOld);
        }
        // The engine pages the store newest first and names the first it finds.
        let mut newer: Vec<&StoredSnapshot> = self
            .book
            .values()
            .map(|b| &b.stored)
            .filter(|other| {
                other.header.snapshot_id != stored.header.snapshot_id
                    && other.header.as_of_ms > stored.header.as_of_ms
                    && matches!(
                        other.status,
                        SnapshotStatus::Reconciled | SnapshotStatus::Reconciling
                    )
                    && scopes_overlap(&other.header.scope, &stored.header.scope)
            })
            .collect();
        newer.sort_by(|a, b| {
            (b.staged_at_ms, &b.header.snapshot_id).cmp(&(a.staged_at_ms, &a.header.snapshot_id))
        });
        newer
            .first()
            .map(|n| Refusal::Superseded(n.header.snapshot_id.to_string()))
    }

    /// Takes a run's window: its start, then every op up to its finish, the run's steps
    /// interleaved with the others. Returns the index of the op after the window.
    pub(in crate::vopr::sim) fn reconcile_window(
        &mut self,
        ops: &[Op],
        start: usize,
        step: &mut usize,
    ) -> Result<usize, (&'static str, String)> {
        let Op::ReconcileStart {
            id,
            dry_run,
            policy,
        } = &ops[start]
        else {
            unreachable!("a window opens at a ReconcileStart");
        };
        // Local handles: the run borrows these, not `self`, so the window's other ops can
        // still use the simulator. A restart replaces `self.engine`; the run, which belongs
        // to the engine that went down, is then dropped.
        let engine = Arc::clone(&self.engine);
        let store = Arc::clone(&self.store);
        let started = self.start_run(&engine, store.as_ref(), start, id, *dry_run, policy)?;
        let Some((mut run, mut running)) = started else {
            return Ok(start + 1);
        };
        let mut i = start + 1;
        while i < ops.len() {
            *step = i;
            match &ops[i] {
                Op::ReconcileStep { positions } => {
                    if !self.run_step(&mut run, &mut running, *positions as usize, i)? {
                        return Ok(i + 1);
                    }
                }
                Op::ReconcileFinish => {
                    self.finish_run(run, running, i)?;
                    return Ok(i + 1);
                }
                Op::ReconcileStart {
                    id,
                    dry_run,
                    policy,
                } => {
                    // A second run while this one is in progress: refused.
                    if let Some((_second, _)) =
                        self.start_run(&engine, store.as_ref(), i, id, *dry_run, policy)?
                    {
                        return fail("reconciliation", "two runs at once");
                    }
                }
                op => {
                    running.interleaved = true;
                    self.step(i, op)?;
                    if !Arc::ptr_eq(&engine, &self.engine) {
                        self.count("run_interrupted");
                        return Ok(i + 1);
                    }
                }
            }
            i += 1;
        }
        Ok(i)
    }

    /// Starts (or is refused) a run of `id`, as predicted. `Some` with the run when it starts.
    fn start_run<'e>(
        &mut self,
        engine: &'e Engine,
        store: &'e dyn SnapshotStore,
        index: usize,
        id: &str,
        dry_run: bool,
        policy: &TolerancePolicy,
    ) -> Result<Option<(Reconciliation<'e>, Running)>, (&'static str, String)> {
        let now_ms = self.clock.now_ms();
        let mut predicted = self.predict_start(id, now_ms);
        let head_before = engine.head_lsn().0;
        let digest_before = if dry_run { engine.digest() } else { 0 };
        let started = Reconciliation::start(engine, store, id, policy.clone(), dry_run);
        if predicted.is_none() && matches!(started, Err(ReconcileError::AlreadyRunning)) {
            // Decided after every other check: the window knows whether a run is going on.
            predicted = Some(Refusal::AlreadyRunning);
        }
        let run = match started {
            Ok(run) if predicted.is_none() => run,
            Err(ReconcileError::Log(_) | ReconcileError::Submit(_))
                if predicted.is_none() && (self.log.is_dead() || engine.failure().is_some()) =>
            {
                // The sync before the scan failed: the snapshot was marked as being
                // reconciled first; the engine restarts.
                if !dry_run && let Some(booked) = self.book.get_mut(id) {
                    booked.stored.status = SnapshotStatus::Reconciling;
                }
                self.count("run_interrupted");
                self.check_stored(id)?;
                self.settle(index)?;
                return Ok(None);
            }
            Err(error) if refusal_of(&error).is_some() && refusal_of(&error) == predicted => {
                if !dry_run
                    && matches!(predicted, Some(Refusal::TooOld | Refusal::Superseded(_)))
                    && let Some(booked) = self.book.get_mut(id)
                {
                    // Marked failed, with the reason, and its rows freed.
                    booked.stored.status = SnapshotStatus::Failed(match store.get(id) {
                        Ok(Some(StoredSnapshot {
                            status: SnapshotStatus::Failed(reason),
                            ..
                        })) => reason,
                        other => {
                            return fail(
                                "reconciliation",
                                format!("refused {error}, but stored {other:?}"),
                            );
                        }
                    });
                }
                self.count(match predicted {
                    Some(Refusal::AlreadyRunning) => "run_already_running",
                    _ => "run_refused",
                });
                if self.book.contains_key(id) {
                    self.check_stored(id)?;
                }
                self.settle(index)?;
                return Ok(None);
            }
            other => {
                return fail(
                    "reconciliation",
                    format!(
                        "run of {id} (dry run {dry_run}) at {now_ms}: expected refusal \
                         {predicted:?}, got {:?}",
                        other.map(|_| "started")
                    ),
                );
            }
        };
        let booked = self
            .book
            .get_mut(id)
            .expect("predicted: the snapshot is booked");
        let resumed = booked.stored.status == SnapshotStatus::Reconciling;
        let tap_from = head_before + 1;
        if !dry_run {
            booked.stored.status = SnapshotStatus::Reconciling;
            booked.first_tap_from.get_or_insert(tap_from);
        }
        let header = booked.stored.header.clone();
        let rows: BTreeMap<Position, (i64, Option<u64>)> = booked
            .rows
            .iter()
            .map(|r| {
                (
                    (r.sku.to_string(), r.location.to_string()),
                    (r.on_hand, r.safety_stock),
                )
            })
            .collect();
        let full = header.mode == SnapshotMode::Full;
        let omitted_at_start: BTreeSet<Position> = if full {
            self.model
                .positions
                .keys()
                .filter(|p| {
                    !rows.contains_key(*p) && header.scope.contains(&Location::from(p.1.as_str()))
                })
                .cloned()
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut running = Running {
            id: id.to_owned(),
            dry_run,
            policy: policy.clone(),
            as_of_ms: header.as_of_ms,
            scope: header.scope.clone(),
            full,
            rows,
            tap_from,
            omitted_at_start,
            predicted: Default::default(),
            interleaved: false,
            resumed,
            digest_before,
            head_before,
            facts: Vec::new(),
            safety_set: 0,
        };
        running.predicted = self.predict_report(&running);
        self.count(if dry_run {
            "run_dry"
        } else if resumed {
            "run_resumed"
        } else {
            "run_started"
        });
        self.check_stored(id)?;
        self.settle(index)?;
        Ok(Some((run, running)))
    }

    /// One step of the run, its events checked; `false` if the engine went down under it.
    fn run_step(
        &mut self,
        run: &mut Reconciliation<'_>,
        running: &mut Running,
        positions: usize,
        index: usize,
    ) -> Result<bool, (&'static str, String)> {
        let head = self.engine.head_lsn().0;
        let at_ms = self.decision_time();
        let result = run.step(positions);
        self.accept_run_events(running, head, at_ms)?;
        match result {
            Ok(_) => {}
            Err(_) if self.log.is_dead() || self.engine.failure().is_some() => {
                self.count("run_interrupted");
                self.settle(index)?;
                return Ok(false);
            }
            Err(error) => return fail("reconciliation", format!("step: {error}")),
        }
        self.fence(running)?;
        self.settle(index)?;
        Ok(true)
    }

    fn finish_run(&mut self, run: Reconciliation<'_>, running: Running, index: usize) -> Check {
        let head = self.engine.head_lsn().0;
        let at_ms = self.decision_time();
        let mut running = running;
        let result = run.finish();
        self.accept_run_events(&mut running, head, at_ms)?;
        let report = match result {
            Ok(report) => report,
            // The sync that makes the run's corrections durable failed: the engine restarts
            // and the next run resumes this one.
            Err(ReconcileError::Log(_) | ReconcileError::Submit(_))
                if self.log.is_dead() || self.engine.failure().is_some() =>
            {
                self.count("run_interrupted");
                return self.settle(index);
            }
            Err(error) => return fail("reconciliation", format!("finish: {error}")),
        };
        self.fence(&running)?;
        if running.dry_run {
            self.check_dry_run(&running, &report)?;
            self.count("run_dry_finished");
        } else {
            self.check_report(&running, &report)?;
            self.check_counts_as_erp_said(&running)?;
            let booked = self
                .book
                .get_mut(&running.id)
                .expect("a run's snapshot is booked");
            booked.stored.status = SnapshotStatus::Reconciled;
            booked.stored.report = Some(report);
            self.count("run_reconciled");
        }
        self.check_stored(&running.id)?;
        self.settle(index)
    }

    /// Raises the engine's time floor where the model puts it (see the module doc in `erp.rs`).
    fn fence(&mut self, running: &Running) -> Check {
        if running.dry_run {
            return Ok(());
        }
        let now_ms = self.decision_time();
        let command = Command::Release(Release {
            reservation_id: ReservationId::from(FENCE_ID),
        });
        let got = self.engine.submit_queued(command);
        match got {
            Ok(Err(inv_engine::Refusal::ReservationNotFound(_))) => {
                self.model.floor_ms = now_ms;
                Ok(())
            }
            other => fail("submit_error", format!("the fence got {other:?}")),
        }
    }

    /// Checks each event the run appended since `head`, decided at `at_ms`, against the model,
    /// and folds it.
    fn accept_run_events(&mut self, running: &mut Running, head: u64, at_ms: u64) -> Check {
        let end = self.engine.head_lsn().0;
        for lsn in head + 1..=end {
            let Some(event) = self.log.event(Lsn(lsn)) else {
                return fail("log_agreement", format!("no event at lsn {lsn}"));
            };
            if running.dry_run {
                return fail("reconciliation", format!("a dry run logged {event:?}"));
            }
            let mut applied = None;
            match &event.fact {
                Fact::PositionReconciled {
                    reconcile: r,
                    held,
                    drift,
                    ..
                } => {
                    let p = (r.sku.to_string(), r.location.to_string());
                    let Some(erp) = running
                        .erp_of(&p)
                        .filter(|_| r.snapshot_id.as_str() == running.id)
                    else {
                        return fail(
                            "reconciliation",
                            format!("the run of {} logged {event:?}", running.id),
                        );
                    };
                    if self
                        .model
                        .key_retained(&Command::Reconcile(r.clone()), at_ms)
                    {
                        return fail(
                            "idempotency",
                            format!("position {p:?} corrected a second time: {event:?}"),
                        );
                    }
                    let tolerance = running.policy.for_location(&r.location);
                    let expected = self.model.reconcile_fact(
                        &running.id,
                        &p,
                        running.as_of_ms,
                        erp,
                        running.tap_from,
                        tolerance,
                    );
                    if expected.as_ref() != Some(&event.fact) {
                        return fail(
                            "reconciliation",
                            format!("logged {event:?}\n  the model decides {expected:?}"),
                        );
                    }
                    running.facts.push(event.fact.clone());
                    self.count(match (*held, *drift) {
                        (true, _) => "correction_held",
                        (false, 0) => "correction_superseding",
                        (false, _) => "correction_applied",
                    });
                    if !*held && *drift != 0 {
                        applied = Some((p, erp));
                    }
                }
                Fact::SafetyStockSet(c) => {
                    let p = (c.sku.to_string(), c.location.to_string());
                    let current = self.model.positions.get(&p).map_or(0, |m| m.safety_stock);
                    let row = running.rows.get(&p).and_then(|(_, safety)| *safety);
                    if row != Some(c.qty) || current == c.qty as i64 {
                        return fail(
                            "reconciliation",
                            format!("the run set {event:?}; row {row:?}, the model has {current}"),
                        );
                    }
                    running.safety_set += 1;
                }
                _ => {
                    return fail(
                        "reconciliation",
                        format!("the run of {} logged {event:?}", running.id),
                    );
                }
            }
            self.accept_event(Lsn(lsn), at_ms, Ok(event.fact.clone()))?;
            if let Some((p, erp)) = applied {
                // Never double counted: on_hand now is the ERP's count plus exactly the
                // changes dated after `as_of`.
                let since = self.model.since(&p, running.as_of_ms, |_| true).0;
                let on_hand = self.engine.check(&p.0, &p.1).map(|a| a.on_hand);
                if on_hand != Some(erp + since) {
                    return fail(
                        "reconciliation",
                        format!(
                            "{p:?} after its correction: on_hand {on_hand:?}, the ERP counted \
                             {erp} as of {} and {since} changed since",
                            running.as_of_ms
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}
