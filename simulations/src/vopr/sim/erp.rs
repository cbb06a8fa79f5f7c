//! ERP snapshots and reconciliation in the simulator: pushes checked against the simulator's
//! account of the snapshot store (the `book`), runs stepped with other ops between the steps,
//! and every correction a run logs checked against the model's verdict at the moment it was
//! decided.
//!
//! # What is checked
//! - A push answers as predicted: staged, the original answer for the same content again,
//!   a conflict naming the field for other content, a refusal naming the history window for
//!   a snapshot too old (or the skew for one ahead of the clock); a push that breaks off
//!   stages nothing. The store's record of each snapshot equals the book after every
//!   reconciliation op.
//! - A run starts, or is refused (not found, not staged, too old, superseded, another run in
//!   progress), as predicted.
//! - Each `PositionReconciled` a run logs is the model's verdict at that moment (engine count
//!   at `as_of`, drift, held by the tolerance, the held drift it supersedes, the log's and
//!   the tap's share of the changes since `as_of`); a position it must not log (a match) or
//!   has logged before (a resumed run's retry) is a violation. Right after an applied
//!   correction the engine's on_hand equals the ERP's count plus the net changes dated after
//!   `as_of`: the changes since are counted once.
//! - When a run finishes, every position it compared counts as the ERP said at `as_of`
//!   (held ones: once their drift is applied), unless a change dated at or before `as_of`
//!   arrived after the run began (a late sale), and the report's counts are the facts':
//!   exact for a run with nothing in between its steps, within bounds otherwise (a position
//!   created mid-run may or may not have been walked as omitted; a safety stock change by a
//!   client mid-run may or may not be seen).
//! - A dry run logs nothing, leaves the digest and the store as they were, and reports
//!   exactly what the model predicts.
//!
//! The simulator's floor: a run's `Reconcile` that matches, or a resumed run's retry, is a
//! decision that logs nothing but raises the engine's time floor, which the model cannot see.
//! After each step the simulator sends a request that is always refused (a release of a hold
//! that never exists), which raises the floor to the same value on both sides.

use super::{Check, Sim, fail};
use crate::vopr::model::Position;
use crate::vopr::workload::{AsOf, ErpCount, Op, PlannedSnapshot, Repush};
use inv_engine::reconcile::snapshot::SNAPSHOT_AS_OF_SKEW_MS;
use inv_engine::reconcile::{
    PushError, Pushed, ReconcileError, Reconciliation, ReconciliationCounts, Report, RowDigest,
    SnapshotHeader, SnapshotMode, SnapshotRow, SnapshotScope, SnapshotStatus, SnapshotStore,
    SnapshotSummary, StoredSnapshot, TolerancePolicy,
};
use inv_engine::{Clock, Command, Engine, Fact, Location, Lsn, Release, ReservationId, SnapshotId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A hold id no generated request uses: releasing it is always refused.
const FENCE_ID: &str = "vopr-fence";

/// What the snapshot store must hold for one snapshot.
#[derive(Debug, Clone)]
pub(super) struct Booked {
    stored: StoredSnapshot,
    rows: Vec<SnapshotRow>,
    /// Where the first run of it began: changes from here on are the run's concern.
    first_tap_from: Option<u64>,
}

/// Why a run must not start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    NotFound,
    NotStaged,
    TooOld,
    Superseded(String),
    AlreadyRunning,
}

fn refusal_of(error: &ReconcileError) -> Option<Refusal> {
    Some(match error {
        ReconcileError::NotFound(_) => Refusal::NotFound,
        ReconcileError::NotStaged { .. } => Refusal::NotStaged,
        ReconcileError::TooOld { .. } => Refusal::TooOld,
        ReconcileError::Superseded { by, .. } => Refusal::Superseded(by.clone()),
        ReconcileError::AlreadyRunning => Refusal::AlreadyRunning,
        _ => return None,
    })
}

/// A drift as a report lists it: position, ERP count, engine count at `as_of`, drift, held.
type DriftListed = (Position, i64, i64, i64, bool);

/// A report's counts and drifts as the model predicts them.
type Predicted = (ReconciliationCounts, Vec<DriftListed>);

/// A run in progress, as the simulator follows it.
struct Running {
    id: String,
    dry_run: bool,
    policy: TolerancePolicy,
    as_of_ms: u64,
    scope: SnapshotScope,
    full: bool,
    /// The ERP's count and safety stock per row.
    rows: BTreeMap<Position, (i64, Option<u64>)>,
    tap_from: u64,
    /// FULL: positions in scope that the snapshot omits, when the run started.
    omitted_at_start: BTreeSet<Position>,
    /// The report the model predicts from the state when the run started: exact if nothing
    /// happens between its steps and it is not a resumed run.
    predicted: Predicted,
    /// Ops other than the run's ran between its steps.
    interleaved: bool,
    /// It resumes a run a crash cut short.
    resumed: bool,
    digest_before: u64,
    head_before: u64,
    /// Corrections logged by this attempt, and safety stocks set.
    facts: Vec<Fact>,
    safety_set: u64,
}

impl Running {
    fn erp_of(&self, p: &Position) -> Option<i64> {
        match self.rows.get(p) {
            Some((erp, _)) => Some(*erp),
            None if self.full && self.scope.contains(&Location::from(p.1.as_str())) => Some(0),
            None => None,
        }
    }
}

fn scope_of(scope: &Option<Vec<String>>) -> SnapshotScope {
    match scope {
        None => SnapshotScope::All,
        Some(locations) => SnapshotScope::Locations(
            locations
                .iter()
                .map(|l| Location::from(l.as_str()))
                .collect(),
        ),
    }
}

fn scopes_overlap(a: &SnapshotScope, b: &SnapshotScope) -> bool {
    match (a, b) {
        (SnapshotScope::Locations(a), SnapshotScope::Locations(b)) => !a.is_disjoint(b),
        _ => true,
    }
}

fn summary_of(rows: &[SnapshotRow]) -> SnapshotSummary {
    let mut digest = RowDigest::default();
    rows.iter().for_each(|row| digest.add(row));
    digest.finish()
}

/// Pushes as a client streams: header, chunks of three rows, summary.
fn push(
    engine: &Engine,
    store: &dyn SnapshotStore,
    header: SnapshotHeader,
    rows: &[SnapshotRow],
    summary: &SnapshotSummary,
    now_ms: u64,
) -> Result<Pushed, PushError> {
    let history_start_ms = engine.history_start_ms(now_ms);
    let mut push = inv_engine::reconcile::Push::begin(store, header, now_ms, history_start_ms)?;
    for chunk in rows.chunks(3) {
        push.rows(chunk)?;
    }
    push.finish(summary, now_ms)
}

impl Sim {
    fn count(&mut self, answer: &'static str) {
        *self.answers.entry(answer).or_default() += 1;
    }

    /// The ERP pushes a snapshot: its counts are the model's count at `as_of` (plus the
    /// planned drift); the answer is checked against the prediction.
    pub(super) fn push_snapshot(&mut self, plan: &PlannedSnapshot) -> Check {
        let now_ms = self.clock.now_ms();
        let history_ms = self.config.history_ms;
        let as_of_ms = match plan.as_of {
            AsOf::Back(ms) => now_ms.saturating_sub(ms).max(1),
            AsOf::TooOld => now_ms.saturating_sub(history_ms + 600_000).max(1),
            AsOf::Ahead => now_ms + SNAPSHOT_AS_OF_SKEW_MS + 1_000,
        };
        let rows: Vec<SnapshotRow> = plan
            .rows
            .iter()
            .map(|r| {
                let p = (r.sku.clone(), r.location.clone());
                let counted = self.model.on_hand_at(&p, as_of_ms).0;
                let on_hand = match r.count {
                    ErpCount::Exact => counted,
                    ErpCount::Drift(d) => counted + d,
                };
                SnapshotRow {
                    sku: r.sku.as_str().into(),
                    location: r.location.as_str().into(),
                    on_hand: on_hand.max(0),
                    safety_stock: r.safety_stock,
                }
            })
            .collect();
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from(plan.id.as_str()),
            as_of_ms,
            scope: scope_of(&plan.scope),
            mode: if plan.full {
                SnapshotMode::Full
            } else {
                SnapshotMode::Delta
            },
            source: "vopr".into(),
        };
        let summary = summary_of(&rows);
        let refusal = if as_of_ms > now_ms + SNAPSHOT_AS_OF_SKEW_MS {
            Some("clock skew")
        } else if as_of_ms < now_ms.saturating_sub(history_ms) {
            Some("history window the engine keeps (24 h back from now")
        } else {
            None
        };
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.store));
        if plan.broken_first && refusal.is_none() {
            // The stream's summary counts a row that never came: nothing is staged.
            let miscounted = SnapshotSummary {
                rows: summary.rows + 1,
                ..summary.clone()
            };
            let got = push(
                &engine,
                store.as_ref(),
                header.clone(),
                &rows,
                &miscounted,
                now_ms,
            );
            if !matches!(got, Err(PushError::Incomplete(_))) {
                return fail(
                    "reconciliation",
                    format!("a miscounted push of {}: {got:?}", plan.id),
                );
            }
            if let Ok(Some(stored)) = store.get(&plan.id) {
                return fail(
                    "reconciliation",
                    format!("an incomplete push staged {stored:?}"),
                );
            }
            self.count("snapshot_incomplete");
        }
        let got = push(
            &engine,
            store.as_ref(),
            header.clone(),
            &rows,
            &summary,
            now_ms,
        );
        match (refusal, got) {
            (None, Ok(pushed)) => {
                let expected = StoredSnapshot {
                    header,
                    summary,
                    staged_at_ms: now_ms,
                    status: SnapshotStatus::Staged,
                    report: None,
                };
                if pushed.duplicate || pushed.snapshot != expected {
                    return fail(
                        "reconciliation",
                        format!("pushed {pushed:?}\n  expected {expected:?}"),
                    );
                }
                self.book.insert(
                    plan.id.clone(),
                    Booked {
                        stored: expected,
                        rows,
                        first_tap_from: None,
                    },
                );
                self.count("snapshot_staged");
            }
            (Some(reason), Err(PushError::Invalid(invalid)))
                if invalid.first().is_some_and(|first| {
                    first.field == "as_of_ms" && first.reason.contains(reason)
                }) =>
            {
                self.count("snapshot_refused");
            }
            (expected, got) => {
                return fail(
                    "reconciliation",
                    format!(
                        "push of {} as of {as_of_ms} at {now_ms}: expected refusal {expected:?}, \
                         got {got:?}",
                        plan.id
                    ),
                );
            }
        }
        self.check_stored(&plan.id)
    }

    /// The ERP pushes a staged snapshot again: the same content gets the original answer;
    /// other content is refused naming the field.
    pub(super) fn repush(&mut self, id: &str, change: Repush) -> Check {
        let Some(booked) = self.book.get(id).cloned() else {
            // Never staged (refused, or dropped by the shrinker): nothing to push again.
            return Ok(());
        };
        let now_ms = self.clock.now_ms();
        let mut header = booked.stored.header.clone();
        let mut rows = booked.rows.clone();
        match change {
            Repush::Same => {}
            Repush::OtherRows => rows[0].on_hand += 1,
            Repush::OtherAsOf => header.as_of_ms += 1,
        }
        let summary = summary_of(&rows);
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.store));
        let got = push(&engine, store.as_ref(), header, &rows, &summary, now_ms);
        let same = match (change, &got) {
            (Repush::Same, Ok(pushed)) => pushed.duplicate && pushed.snapshot == booked.stored,
            (Repush::OtherRows, Err(PushError::Conflict { field, .. })) => field == "rows",
            (Repush::OtherAsOf, Err(PushError::Conflict { field, .. })) => {
                field == "header.as_of_ms"
            }
            _ => false,
        };
        if !same {
            return fail(
                "idempotency",
                format!(
                    "snapshot {id} pushed again ({change:?}): got {got:?}\n  stored {:?}",
                    booked.stored
                ),
            );
        }
        self.count(match change {
            Repush::Same => "snapshot_duplicate",
            _ => "snapshot_conflict",
        });
        self.check_stored(id)
    }

    /// The store's record of `id` equals the book's.
    fn check_stored(&self, id: &str) -> Check {
        let stored = self
            .store
            .get(id)
            .or_else(|e| fail("reconciliation", e.to_string()))?;
        let expected = self.book.get(id).map(|b| &b.stored);
        if stored.as_ref() != expected {
            return fail(
                "reconciliation",
                format!("snapshot {id}: stored {stored:?}\n  expected {expected:?}"),
            );
        }
        Ok(())
    }

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
    pub(super) fn reconcile_window(
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

    /// The report of `running` as the model predicts it from the state now.
    fn predict_report(&self, running: &Running) -> Predicted {
        let mut counts = ReconciliationCounts::default();
        let mut lines = Vec::new();
        let compared = running
            .rows
            .iter()
            .map(|(p, (erp, safety))| (p, *erp, *safety))
            .chain(running.omitted_at_start.iter().map(|p| (p, 0, None)));
        for (p, erp, safety) in compared {
            let current = self.model.positions.get(p).map_or(0, |m| m.safety_stock);
            if safety.is_some_and(|q| q as i64 != current) {
                counts.safety_stock_set += 1;
            }
            let tolerance = running.policy.for_location(&Location::from(p.1.as_str()));
            let fact = self.model.reconcile_fact(
                &running.id,
                p,
                running.as_of_ms,
                erp,
                running.tap_from,
                tolerance,
            );
            counts.compared += 1;
            let Some(Fact::PositionReconciled {
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            }) = fact
            else {
                counts.matched += 1;
                continue;
            };
            if superseded.is_some_and(|s| s.as_str() != running.id) {
                counts.superseded += 1;
            }
            if drift == 0 {
                counts.matched += 1;
                continue;
            }
            counts.drifted += 1;
            counts.drift_abs_total += drift.unsigned_abs();
            if held {
                counts.held += 1;
            } else {
                counts.applied += 1;
            }
            lines.push((p.clone(), erp, engine_on_hand_at, drift, held));
        }
        counts.omitted = running.omitted_at_start.len() as u64;
        (counts, lines)
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

    /// Raises the engine's time floor where the model puts it (see the module doc).
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

    /// A dry run changed nothing, and reported what the model predicted.
    fn check_dry_run(&self, running: &Running, report: &Report) -> Check {
        // With other ops between its steps (a window the shrinker, or a refused run around
        // it, left open), those ops change the ledger; the run's own steps logging nothing is
        // checked step by step (`accept_run_events`).
        if !running.interleaved
            && (self.engine.head_lsn().0 != running.head_before
                || self.engine.digest() != running.digest_before)
        {
            return fail(
                "reconciliation",
                format!(
                    "dry run of {}: head {} -> {}, digest {:#x} -> {:#x}, interleaved {}",
                    running.id,
                    running.head_before,
                    self.engine.head_lsn().0,
                    running.digest_before,
                    self.engine.digest(),
                    running.interleaved
                ),
            );
        }
        if !report.dry_run {
            return fail("reconciliation", "a dry run's report is not marked dry");
        }
        if !running.interleaved {
            self.check_predicted(running, report)?;
        }
        Ok(())
    }

    fn check_predicted(&self, running: &Running, report: &Report) -> Check {
        let (counts, mut lines) = running.predicted.clone();
        if report.counts != counts {
            return fail(
                "reconciliation",
                format!(
                    "{} report counts {:?}\n  the model predicts {counts:?}",
                    running.id, report.counts
                ),
            );
        }
        let mut listed: Vec<_> = report
            .largest
            .iter()
            .map(|l| {
                (
                    (l.sku.to_string(), l.location.to_string()),
                    l.erp_on_hand,
                    l.engine_on_hand_at,
                    l.drift,
                    l.held,
                )
            })
            .collect();
        listed.sort();
        lines.sort_by_key(|l| (std::cmp::Reverse(l.3.unsigned_abs()), l.0.clone()));
        lines.truncate(inv_engine::reconcile::report::REPORT_DRIFTS_LISTED);
        lines.sort();
        if listed != lines {
            return fail(
                "reconciliation",
                format!("{} lists {listed:?}\n  the model {lines:?}", running.id),
            );
        }
        Ok(())
    }

    /// The report of a run that applied: its counts are those of the corrections logged for
    /// the snapshot (in this attempt and any a crash cut short).
    fn check_report(&self, running: &Running, report: &Report) -> Check {
        if report.dry_run || report.tap_from_lsn != Lsn(running.tap_from) {
            return fail(
                "reconciliation",
                format!("report {report:?}, tap from {}", running.tap_from),
            );
        }
        if !running.interleaved && !running.resumed {
            return self.check_predicted(running, report);
        }
        let mut facts = BTreeMap::new();
        for (_, fact) in &self.model.history {
            if let Fact::PositionReconciled {
                reconcile: r,
                drift,
                held,
                ..
            } = fact
                && r.snapshot_id.as_str() == running.id
            {
                facts.insert((r.sku.to_string(), r.location.to_string()), (*drift, *held));
            }
        }
        let c = &report.counts;
        let drifted: Vec<_> = facts.values().filter(|(d, _)| *d != 0).collect();
        let held = drifted.iter().filter(|(_, h)| *h).count() as u64;
        let superseded = running
            .facts
            .iter()
            .filter(|f| {
                matches!(f, Fact::PositionReconciled { superseded: Some(s), .. }
                    if s.as_str() != running.id)
            })
            .count() as u64;
        let omitted_now = self
            .model
            .positions
            .keys()
            .filter(|p| {
                running.full
                    && !running.rows.contains_key(*p)
                    && running.scope.contains(&Location::from(p.1.as_str()))
            })
            .count() as u64;
        let with_safety = running.rows.values().filter(|(_, s)| s.is_some()).count() as u64;
        let ok = c.compared == running.rows.len() as u64 + c.omitted
            && (running.omitted_at_start.len() as u64..=omitted_now).contains(&c.omitted)
            && c.drifted == drifted.len() as u64
            && c.held == held
            && c.applied == c.drifted - held
            && c.matched == c.compared - c.drifted
            && c.drift_abs_total == drifted.iter().map(|(d, _)| d.unsigned_abs()).sum::<u64>()
            && c.superseded == superseded
            && (running.safety_set..=with_safety).contains(&c.safety_stock_set)
            && report.largest.len()
                == (c.drifted as usize).min(inv_engine::reconcile::report::REPORT_DRIFTS_LISTED);
        if !ok {
            return fail(
                "reconciliation",
                format!(
                    "{} report counts {c:?}; corrections {facts:?}, {} rows, omitted {}..={}, \
                     superseded {superseded}, safety stock set {}..={with_safety}",
                    running.id,
                    running.rows.len(),
                    running.omitted_at_start.len(),
                    omitted_now,
                    running.safety_set
                ),
            );
        }
        Ok(())
    }

    /// After a run: every position it compared counts, as of the snapshot's time, what the
    /// ERP said (a held drift: once applied), unless a change dated at or before that time
    /// arrived after the run began, or a reviewer dismissed the drift.
    fn check_counts_as_erp_said(&self, running: &Running) -> Check {
        let first_tap_from = self
            .book
            .get(&running.id)
            .and_then(|b| b.first_tap_from)
            .unwrap_or(running.tap_from);
        let compared = running
            .rows
            .iter()
            .map(|(p, (erp, _))| (p, *erp))
            .chain(running.omitted_at_start.iter().map(|p| (p, 0)));
        for (p, erp) in compared {
            if self
                .model
                .moved_at_or_before(p, running.as_of_ms, first_tap_from)
            {
                continue;
            }
            let counted = self.model.on_hand_at(p, running.as_of_ms).0;
            let pending = match self.model.held.get(p) {
                Some(held) if held.snapshot_id == running.id => held.drift,
                Some(_) => continue,
                None => 0,
            };
            let dismissed = self.model.history.iter().any(|(_, f)| {
                matches!(f, Fact::DriftResolved { resolve, .. }
                    if resolve.snapshot_id.as_str() == running.id
                        && resolve.sku.as_str() == p.0
                        && resolve.location.as_str() == p.1)
            });
            if counted + pending != erp && !dismissed {
                return fail(
                    "reconciliation",
                    format!(
                        "after reconciling {}: {p:?} counts {counted} as of {} (held {pending}), \
                         the ERP counted {erp}",
                        running.id, running.as_of_ms
                    ),
                );
            }
        }
        Ok(())
    }

    /// The drifts held for review are the model's.
    pub(super) fn check_held_drifts(&self) -> Check {
        let engine: Vec<_> = self
            .engine
            .held_drifts(None)
            .into_iter()
            .map(|h| {
                (
                    (h.sku.to_string(), h.location.to_string()),
                    h.snapshot_id.to_string(),
                    h.as_of_ms,
                    h.erp_on_hand,
                    h.engine_on_hand_at,
                    h.drift,
                    h.lsn.0,
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let model: Vec<_> = self
            .model
            .held
            .iter()
            .map(|(p, h)| {
                (
                    p.clone(),
                    h.snapshot_id.clone(),
                    h.as_of_ms,
                    h.erp_on_hand,
                    h.engine_on_hand_at,
                    h.drift,
                    h.lsn,
                )
            })
            .collect();
        if engine != model {
            return fail(
                "held_drifts",
                format!("engine {engine:?}\n  model {model:?}"),
            );
        }
        Ok(())
    }
}
