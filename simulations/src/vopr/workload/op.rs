//! The ops a run is made of: client requests with how they are delivered, clock and log
//! faults, and the ERP's snapshots and reconciliation steps. Plain data, shared by the
//! generator, the executor and the shrinker.

use inv_engine::Command;
use inv_engine::reconcile::TolerancePolicy;
use std::fmt;

/// How a client request reaches the engine; a label for fault counts and reproductions (the
/// request itself says everything the engine sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// The first delivery, in order.
    Fresh,
    /// The same request delivered a second time (a network duplicate).
    Duplicate,
    /// Delivered after a request the client sent later.
    Reordered,
    /// A sale held back and delivered in a later batch (the gap it left closes).
    Late,
    /// Sent again after a timeout, same key and payload.
    Retry,
    /// Sent again after a timeout with the same key but another payload.
    RetryChanged,
}

/// A row's count, relative to the model's count of the position at the snapshot's time
/// (resolved by the simulator when the push runs; a count below 0 is sent as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErpCount {
    /// What the engine counted then: no drift.
    Exact,
    /// Off by this many units (shrinkage, a missed message, a miscount).
    Drift(i64),
}

/// A snapshot's time, relative to the clock when it is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// This many ms before now.
    Back(u64),
    /// Older than the history window: refused, naming the window.
    TooOld,
    /// Further ahead of the clock than the allowed skew: refused.
    Ahead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRow {
    pub sku: String,
    pub location: String,
    pub count: ErpCount,
    pub safety_stock: Option<u64>,
}

/// A snapshot the ERP pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSnapshot {
    pub id: String,
    pub as_of: AsOf,
    pub full: bool,
    /// `None`: every location.
    pub scope: Option<Vec<String>>,
    /// Distinct positions, each in scope.
    pub rows: Vec<PlannedRow>,
    /// A first push of it breaks off (its summary miscounts): it must stage nothing.
    pub broken_first: bool,
}

/// How a snapshot is pushed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repush {
    /// The same content: the original answer.
    Same,
    /// Another count in one row: refused, naming `rows`.
    OtherRows,
    /// Another time: refused, naming `header.as_of_ms`.
    OtherAsOf,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A client request. `slow`: the log's write of its event is slow, so the client gets no
    /// answer until a later sync makes it durable (or a crash loses it).
    Submit {
        command: Command,
        slow: bool,
        delivery: Delivery,
    },
    /// The log syncs: every appended event becomes durable, and waiting clients are answered.
    Sync,
    /// Simulated time passes.
    Advance { ms: u64 },
    /// The clock steps (NTP): forward past TTLs, or back a little.
    ClockJump { ms: i64 },
    /// The expiry sweep records up to `batch` lapsed holds.
    ExpireDue { batch: u32 },
    /// A checkpoint at this point (it syncs first, as `Engine::checkpoint` does).
    Checkpoint,
    /// Power cut and restart: recovery from the checkpoint plus the durable log.
    Crash,
    /// The next sync fails; the engine fail-stops and is restarted.
    FailNextSync,
    /// The ERP pushes a snapshot (header, chunks of rows, summary).
    PushSnapshot(PlannedSnapshot),
    /// The ERP pushes snapshot `id` again (a retry, or a client bug).
    Repush { id: String, change: Repush },
    /// A reconciliation of snapshot `id` starts (or resumes, after a crash cut one short).
    /// While one runs, the ops up to [`Op::ReconcileFinish`] interleave with its steps; a
    /// second start meanwhile is refused.
    ReconcileStart {
        id: String,
        dry_run: bool,
        policy: TolerancePolicy,
    },
    /// The running reconciliation does one step of at most `positions` positions.
    ReconcileStep { positions: u32 },
    /// The running reconciliation finishes (every step left) and stores its report.
    ReconcileFinish,
}

impl Op {
    /// Faults this op injects, by name (empty for plain traffic).
    pub fn fault(&self) -> Option<&'static str> {
        match self {
            Op::Submit {
                delivery, slow: s, ..
            } => match delivery {
                Delivery::Fresh if *s => Some("slow_write"),
                Delivery::Fresh => None,
                Delivery::Duplicate => Some("duplicate"),
                Delivery::Reordered => Some("reordered"),
                Delivery::Late => Some("late"),
                Delivery::Retry => Some("retry"),
                Delivery::RetryChanged => Some("retry_changed"),
            },
            Op::ClockJump { .. } => Some("clock_jump"),
            Op::Checkpoint => Some("checkpoint"),
            Op::Crash => Some("crash"),
            Op::FailNextSync => Some("sync_failure"),
            Op::Repush { .. } => Some("snapshot_repush"),
            Op::Sync
            | Op::Advance { .. }
            | Op::ExpireDue { .. }
            | Op::PushSnapshot(_)
            | Op::ReconcileStart { .. }
            | Op::ReconcileStep { .. }
            | Op::ReconcileFinish => None,
        }
    }
}

impl fmt::Display for Op {
    /// One line per op, compact enough for a reproduction of a few dozen ops.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Submit {
                command,
                slow,
                delivery,
            } => {
                write!(
                    f,
                    "submit {delivery:?}{} {command:?}",
                    if *slow { " slow" } else { "" }
                )
            }
            other => write!(f, "{other:?}"),
        }
    }
}
