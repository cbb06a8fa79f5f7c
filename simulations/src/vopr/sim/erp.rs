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
//!
//! # Files
//! - `erp.rs`: what the simulator keeps of the snapshot store and of a run in progress.
//! - `erp/push.rs`: the ERP's pushes and re-pushes, checked as they are answered.
//! - `erp/run.rs`: a run's window: its start (or refusal), steps, finish, and each event it
//!   logs.
//! - `erp/checks.rs`: the store against the book, and a finished run's report and counts
//!   against the model.

mod checks;
mod push;
mod run;

use super::Sim;
use crate::vopr::model::Position;
use inv_engine::reconcile::{
    ReconcileError, ReconciliationCounts, SnapshotRow, SnapshotScope, StoredSnapshot,
    TolerancePolicy,
};
use inv_engine::{Fact, Location};
use std::collections::{BTreeMap, BTreeSet};

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

impl Sim {
    fn count(&mut self, answer: &'static str) {
        *self.answers.entry(answer).or_default() += 1;
    }
}
