//! One reconciliation of a staged snapshot, step by step, so its driver (the server's
//! scheduler on the bulk lane, a test, the simulator) decides how much to do at a time and
//! yields between steps: no step holds a ledger lock beyond one position's, and each does a
//! bounded amount of work.
//!
//! The steps: start the ledger's tap and wait until the log holds every event before it; read
//! the log from the first event that can be after the snapshot's time up to the tap, summing
//! per position what happened after that time; then each row of the snapshot (by position),
//! and for a FULL snapshot each engine position in scope that the snapshot omits, becomes one
//! `Reconcile` (or, in a dry run, a preview). A restart in the middle resumes from the start:
//! positions already reconciled answer with their first outcome (their key), and count as
//! before.
//!
//! A run is refused before it touches anything when:
//! - its `as_of` is older than the history window at the time it runs (`TooOld`; it may
//!   have aged out while staged), the snapshot then marked failed;
//! - a snapshot counted later over an overlapping scope was reconciled already
//!   (`Superseded`; marked failed): that count's corrections are dated at its later time,
//!   so this older count would find, and apply, the same drift again. Snapshots are
//!   reconciled in `as_of` order;
//! - another run is in progress (`AlreadyRunning`): each needs the ledger's tap to itself.

use super::TolerancePolicy;
use super::report::{DriftLine, Report, SnapshotStatus, StoredSnapshot};
use super::snapshot::{SnapshotMode, SnapshotRow, SnapshotScope};
use super::store::{PositionKey, SnapshotStore, StoreError};
use crate::command::{Command, Reconcile, SetSafetyStock};
use crate::engine::Engine;
use crate::error::{LogError, SubmitError};
use crate::outcome::{Outcome, Refusal};
use crate::types::{Location, Lsn, RequestId, Sku, SnapshotId};
use foldhash::fast::FixedState;
use std::collections::HashMap;

/// Events read from the log per step.
pub const SCAN_EVENTS_PER_STEP: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// The snapshot cannot be reconciled (again): it was reconciled, or it failed.
    #[error("snapshot {snapshot_id} is {status}")]
    NotStaged { snapshot_id: String, status: String },
    /// Its time is older than the history the engine still keeps; it is marked failed.
    #[error("snapshot {snapshot_id} is older than the history kept (from {history_start_ms} ms)")]
    TooOld {
        snapshot_id: String,
        history_start_ms: u64,
    },
    /// A snapshot counted later than this one (`by`, at `by_as_of_ms`) has already been
    /// reconciled over an overlapping scope. Its counts already corrected these positions up
    /// to its later time; applying this older drift on top would count the same missing (or
    /// surplus) units twice. The snapshot is marked failed. Reconcile in `as_of` order.
    #[error(
        "snapshot {snapshot_id} is superseded: snapshot {by}, counted later (as of \
         {by_as_of_ms} ms), was reconciled already over an overlapping scope"
    )]
    Superseded {
        snapshot_id: String,
        by: String,
        by_as_of_ms: u64,
    },
    /// Another reconciliation (or dry run) is in progress: one at a time, since each needs
    /// the ledger's tap to itself.
    #[error("another reconciliation is in progress")]
    AlreadyRunning,
    /// The log's queue is full; the step wrote nothing more. Step again later.
    #[error("the event log is busy; the reconciliation continues later")]
    Busy,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An answer the run cannot have: a bug.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Where the run is.
enum Phase {
    /// Reading the log from `next` up to the tap.
    Scan {
        next: Lsn,
    },
    /// The snapshot's rows, after this position.
    Rows {
        after: Option<PositionKey>,
    },
    /// FULL: the engine's positions of shard `shard` on.
    Omitted {
        shard: usize,
    },
    Done,
}

/// What happened after the snapshot's time at one position, from the log: net on_hand change
/// and how many events.
type Since = HashMap<(Sku, Location), (i64, u32), FixedState>;

pub struct Reconciliation<'e> {
    engine: &'e Engine,
    store: &'e dyn SnapshotStore,
    snapshot: StoredSnapshot,
    policy: TolerancePolicy,
    dry_run: bool,
    tap_from: Lsn,
    since: Since,
    phase: Phase,
    report: Report,
    /// The newest LSN this run appended; the report is final only once it is durable.
    appended: Lsn,
    /// Rows of the snapshot reconciled so far; all of them before a FULL snapshot's
    /// omitted positions are counted.
    rows_read: u64,
}

impl<'e> Reconciliation<'e> {
    /// Starts reconciling stored snapshot `snapshot_id`; a dry run decides nothing.
    pub fn start(
        engine: &'e Engine,
        store: &'e dyn SnapshotStore,
        snapshot_id: &str,
        policy: TolerancePolicy,
        dry_run: bool,
    ) -> Result<Self, ReconcileError> {
        let mut snapshot = store
            .get(snapshot_id)?
            .ok_or_else(|| ReconcileError::NotFound(snapshot_id.to_owned()))?;
        if !matches!(
            snapshot.status,
            SnapshotStatus::Staged | SnapshotStatus::Reconciling
        ) {
            return Err(ReconcileError::NotStaged {
                snapshot_id: snapshot_id.to_owned(),
                status: format!("{:?}", snapshot.status).to_lowercase(),
            });
        }
        let ledger = engine.ledger();
        let as_of_ms = snapshot.header.as_of_ms;
        // The window, not only the history the log happens to hold: a snapshot that was
        // within it when pushed may have aged out while staged (see
        // `Ledger::history_start_ms_at`).
        let history_start_ms = ledger.history_start_ms_at(engine.now_ms());
        let scan_from = ledger
            .history_scan_from(as_of_ms)
            .filter(|_| as_of_ms >= history_start_ms);
        let Some(scan_from) = scan_from else {
            let history_start_ms = history_start_ms.max(ledger.history_start_ms());
            if !dry_run {
                snapshot.status = SnapshotStatus::Failed(format!(
                    "its time is older than the history kept (from {history_start_ms} ms)"
                ));
                store.save(&snapshot)?;
                store.drop_rows(&snapshot.header.snapshot_id)?;
            }
            return Err(ReconcileError::TooOld {
                snapshot_id: snapshot_id.to_owned(),
                history_start_ms,
            });
        };
        if let Some(newer) = superseding(store, &snapshot)? {
            let error = ReconcileError::Superseded {
                snapshot_id: snapshot_id.to_owned(),
                by: newer.header.snapshot_id.to_string(),
                by_as_of_ms: newer.header.as_of_ms,
            };
            if !dry_run {
                snapshot.status = SnapshotStatus::Failed(error.to_string());
                store.save(&snapshot)?;
                store.drop_rows(&snapshot.header.snapshot_id)?;
            }
            return Err(error);
        }
        // One run at a time: a second tap would replace the first run's (see
        // `Ledger::try_start_tap`).
        let tap_from = ledger
            .try_start_tap(as_of_ms)
            .ok_or(ReconcileError::AlreadyRunning)?;
        let report = Report {
            dry_run,
            started_at_ms: engine.now_ms(),
            tap_from_lsn: tap_from,
            ..Report::default()
        };
        // From here on the run owns the tap, and dropping it (on any error below) stops it.
        let mut run = Self {
            engine,
            store,
            snapshot,
            policy,
            dry_run,
            tap_from,
            since: Since::default(),
            phase: Phase::Scan { next: scan_from },
            report,
            appended: Lsn::ZERO,
            rows_read: 0,
        };
        if !dry_run {
            run.snapshot.status = SnapshotStatus::Reconciling;
            store.save(&run.snapshot)?;
        }
        // The log must hold every event the scan reads: all those before the tap.
        engine.wait_durable(Lsn(tap_from.0 - 1))?;
        Ok(run)
    }

    pub fn snapshot_id(&self) -> &SnapshotId {
        &self.snapshot.header.snapshot_id
    }

    /// Does one bounded step: up to [`SCAN_EVENTS_PER_STEP`] events read, or up to
    /// `positions` positions reconciled. Returns whether there is more to do.
    pub fn step(&mut self, positions: usize) -> Result<bool, ReconcileError> {
        // At least one: a step of 0 positions would read no rows, which `rows` takes as the
        // end of the snapshot, and skip every row.
        let positions = positions.max(1);
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Scan { next } => self.phase = self.scan(next)?,
            Phase::Rows { after } => self.phase = self.rows(after, positions)?,
            Phase::Omitted { shard } => self.phase = self.omitted(shard)?,
            Phase::Done => {}
        }
        Ok(!matches!(self.phase, Phase::Done))
    }

    /// Ends the run: waits until what it applied is durable, stops the tap, and stores the
    /// report (not for a dry run).
    pub fn finish(mut self) -> Result<Report, ReconcileError> {
        // A full log queue is back-pressure, not failure: wait it out here. Returned as an
        // error, it would drop the run (`finish` takes it) with the snapshot left
        // `Reconciling` and the caller holding nothing to step again.
        loop {
            match self.step(usize::MAX) {
                Ok(true) => {}
                Ok(false) => break,
                Err(ReconcileError::Busy) => std::thread::yield_now(),
                Err(error) => return Err(error),
            }
        }
        if self.appended > Lsn::ZERO {
            self.engine.wait_durable(self.appended)?;
        }
        self.engine.ledger().stop_tap_from(self.tap_from);
        self.report.finished_at_ms = self.engine.now_ms();
        let report = std::mem::take(&mut self.report);
        if !self.dry_run {
            self.snapshot.status = SnapshotStatus::Reconciled;
            self.snapshot.report = Some(report.clone());
            self.store.save(&self.snapshot)?;
            self.store.drop_rows(&self.snapshot.header.snapshot_id)?;
        }
        Ok(report)
    }

    fn scan(&mut self, next: Lsn) -> Result<Phase, ReconcileError> {
        if next >= self.tap_from {
            return Ok(Phase::Rows { after: None });
        }
        let max = SCAN_EVENTS_PER_STEP.min((self.tap_from.0 - next.0) as usize);
        let events = self.engine.read_events(next, max)?;
        let Some(last) = events.last() else {
            return Err(ReconcileError::Unexpected(format!(
                "the log ends before lsn {next}, below the tap at {}",
                self.tap_from
            )));
        };
        let next = last.lsn.next();
        let as_of_ms = self.snapshot.header.as_of_ms;
        let scope = &self.snapshot.header.scope;
        for event in events.iter().filter(|e| e.lsn < self.tap_from) {
            self.report.log_events_read += 1;
            for effect in event.fact.on_hand_effects(event.at_ms) {
                if effect.event_time_ms > as_of_ms && scope.contains(effect.location) {
                    let key = (effect.sku.clone(), effect.location.clone());
                    let since = self.since.entry(key).or_default();
                    since.0 += effect.delta;
                    since.1 += 1;
                }
            }
        }
        Ok(Phase::Scan { next })
    }

    fn rows(
        &mut self,
        after: Option<PositionKey>,
        positions: usize,
    ) -> Result<Phase, ReconcileError> {
        let id = self.snapshot.header.snapshot_id.clone();
        let rows = self
            .store
            .rows_after(&id, after.as_ref(), positions.min(4_096))?;
        let Some(last) = rows.last() else {
            // Every row the push counted must have been read: a FULL snapshot whose rows
            // went missing from the store would otherwise count each of its positions as
            // omitted, that is as 0 at the ERP, and empty the whole scope.
            let expected = self.snapshot.summary.rows;
            if self.rows_read != expected {
                return Err(ReconcileError::Unexpected(format!(
                    "the store holds {} of snapshot {id}'s {expected} rows",
                    self.rows_read
                )));
            }
            return Ok(match self.snapshot.header.mode {
                SnapshotMode::Full => Phase::Omitted { shard: 0 },
                SnapshotMode::Delta => Phase::Done,
            });
        };
        let mut done = None;
        for row in &rows {
            // Safety stock first, so the row's drift line reports the value the ERP set. It
            // moves no on_hand, and a resumed row finds it already set and skips it.
            self.set_safety_stock(row)?;
            match self.reconcile(&row.sku, &row.location, row.on_hand) {
                Ok(()) => {}
                // Resume at this row next time.
                Err(ReconcileError::Busy) => break,
                Err(error) => return Err(error),
            }
            self.rows_read += 1;
            done = Some((row.sku.clone(), row.location.clone()));
        }
        match done {
            Some(position) if position == (last.sku.clone(), last.location.clone()) => {
                Ok(Phase::Rows {
                    after: Some(position),
                })
            }
            // Stopped early (the log was busy): report it once the cursor is kept.
            position => {
                self.phase = Phase::Rows {
                    after: position.or(after),
                };
                Err(ReconcileError::Busy)
            }
        }
    }

    /// FULL: every position of one shard that is in scope but not in the snapshot counts as 0
    /// at the ERP.
    fn omitted(&mut self, shard: usize) -> Result<Phase, ReconcileError> {
        let ledger = self.engine.ledger();
        if shard >= ledger.config().shards {
            return Ok(Phase::Done);
        }
        let id = self.snapshot.header.snapshot_id.clone();
        for (sku, location) in ledger.positions_of_shard(shard) {
            if !self.snapshot.header.scope.contains(&location)
                || self.store.contains(&id, &sku, &location)?
            {
                continue;
            }
            self.report.counts.omitted += 1;
            loop {
                match self.reconcile(&sku, &location, 0) {
                    Err(ReconcileError::Busy) => std::thread::yield_now(),
                    result => break result?,
                }
            }
        }
        Ok(Phase::Omitted { shard: shard + 1 })
    }

    /// Reconciles one position against the ERP's `erp_on_hand`, and counts it.
    fn reconcile(
        &mut self,
        sku: &Sku,
        location: &Location,
        erp_on_hand: i64,
    ) -> Result<(), ReconcileError> {
        let (since_as_of, events_since) = self
            .since
            .get(&(sku.clone(), location.clone()))
            .copied()
            .unwrap_or_default();
        let reconcile = Reconcile {
            snapshot_id: self.snapshot.header.snapshot_id.clone(),
            sku: sku.clone(),
            location: location.clone(),
            as_of_ms: self.snapshot.header.as_of_ms,
            erp_on_hand,
            since_as_of,
            events_since,
            tap_from_lsn: self.tap_from,
            tolerance: self.policy.for_location(location),
        };
        // The report counts the held drifts this snapshot supersedes; the outcome does not
        // say, so look before deciding. (A resolution racing with the run may make this one
        // off; the logged facts are exact either way.)
        let supersedes = self
            .engine
            .ledger()
            .held_drift(sku, location)
            .is_some_and(|held| held.snapshot_id != reconcile.snapshot_id);
        let outcome = if self.dry_run {
            self.engine
                .ledger()
                .preview_reconcile(&reconcile)
                .map_err(|refusal| ReconcileError::Unexpected(refusal.to_string()))?
        } else {
            self.submit(Command::Reconcile(reconcile))?
        };
        let line = match outcome {
            Outcome::Matched { .. } => None,
            Outcome::Reconciled {
                engine_on_hand_at,
                drift,
                held,
                events_since,
            } => {
                let position = self.engine.check(sku.as_str(), location.as_str());
                Some(DriftLine {
                    sku: sku.clone(),
                    location: location.clone(),
                    erp_on_hand,
                    engine_on_hand_at,
                    drift,
                    events_since,
                    held,
                    quarantined: position.map_or(0, |p| p.quarantined),
                    safety_stock: position.map_or(0, |p| p.safety_stock),
                })
            }
            other => return Err(ReconcileError::Unexpected(format!("{other:?}"))),
        };
        // A drift of 0 that superseded a held one is logged but is no drift.
        let line = line.filter(|l| l.drift != 0);
        self.report.add(line);
        if supersedes {
            self.report.counts.superseded += 1;
        }
        Ok(())
    }

    /// A row's safety stock, when it has one that differs, set as `SetSafetyStock` would.
    fn set_safety_stock(&mut self, row: &SnapshotRow) -> Result<(), ReconcileError> {
        let Some(qty) = row.safety_stock else {
            return Ok(());
        };
        let current = self
            .engine
            .check(row.sku.as_str(), row.location.as_str())
            .map_or(0, |p| p.safety_stock);
        if current == qty as i64 {
            return Ok(());
        }
        self.report.counts.safety_stock_set += 1;
        if self.dry_run {
            return Ok(());
        }
        // The request id names the snapshot and position (hashed: ids are at most 128 bytes),
        // so a resumed run's retry is a duplicate, not a second change.
        let id = format!(
            "snapshot:{:016x}",
            xxhash_rust::xxh3::xxh3_64(
                format!("{}\0{}\0{}", self.snapshot_id(), row.sku, row.location).as_bytes()
            )
        );
        loop {
            let command = Command::SetSafetyStock(SetSafetyStock {
                request_id: RequestId::from(id.as_str()),
                sku: row.sku.clone(),
                location: row.location.clone(),
                qty,
            });
            match self.submit(command) {
                Err(ReconcileError::Busy) => std::thread::yield_now(),
                result => return result.map(|_| ()),
            }
        }
    }

    fn submit(&mut self, command: Command) -> Result<Outcome, ReconcileError> {
        match self.engine.submit_queued(command) {
            Ok(Ok(receipt)) => {
                self.appended = self.appended.max(receipt.lsn);
                Ok(receipt.outcome)
            }
            Ok(Err(refusal @ Refusal::ReconciliationNotRunning(_))) => {
                Err(ReconcileError::Unexpected(refusal.to_string()))
            }
            Ok(Err(refusal)) => Err(ReconcileError::Unexpected(refusal.to_string())),
            Err(SubmitError::Busy { .. }) => Err(ReconcileError::Busy),
            Err(error) => Err(error.into()),
        }
    }
}

impl Drop for Reconciliation<'_> {
    fn drop(&mut self) {
        // A run abandoned (an error, a shutdown) leaves no tap counting behind it; only its
        // own tap, so a run refused as `AlreadyRunning` never stops the one that is.
        self.engine.ledger().stop_tap_from(self.tap_from);
    }
}

/// A snapshot already reconciled (or being reconciled, by a run a restart cut short) whose
/// count is later than `snapshot`'s and whose scope overlaps it: its corrections already
/// cover the positions they share (see [`ReconcileError::Superseded`]).
fn superseding(
    store: &dyn SnapshotStore,
    snapshot: &StoredSnapshot,
) -> Result<Option<StoredSnapshot>, StoreError> {
    const PAGE: usize = 1_000;
    let header = &snapshot.header;
    let mut before: Option<(u64, SnapshotId)> = None;
    loop {
        let page = store.list(before.as_ref().map(|(at, id)| (*at, id)), PAGE)?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        before = Some((last.staged_at_ms, last.header.snapshot_id.clone()));
        if let Some(newer) = page.into_iter().find(|other| {
            other.header.snapshot_id != header.snapshot_id
                && other.header.as_of_ms > header.as_of_ms
                && matches!(
                    other.status,
                    SnapshotStatus::Reconciled | SnapshotStatus::Reconciling
                )
                && other.report.as_ref().is_none_or(|r| !r.dry_run)
                && scopes_overlap(&other.header.scope, &header.scope)
        }) {
            return Ok(Some(newer));
        }
    }
}

fn scopes_overlap(a: &SnapshotScope, b: &SnapshotScope) -> bool {
    match (a, b) {
        (SnapshotScope::Locations(a), SnapshotScope::Locations(b)) => !a.is_disjoint(b),
        _ => true,
    }
}
