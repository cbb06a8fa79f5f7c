//! ERP snapshots and reconciliation over gRPC: `PushSnapshot`, `Reconcile`,
//! `GetReconciliationReport`, `ListReconciliations` and `ResolveDrift`, and the scheduler that
//! reconciles staged snapshots every `ReconcileConfig::every_ms`.
//!
//! The engine owns the semantics (`inv_engine::reconcile`: what a drift is, when a snapshot is
//! complete, how a run counts what happened after the snapshot's time); this module only
//! moves data to and from it, and decides *where* the work runs so the hot path (Reserve,
//! Check) keeps its latency:
//! - A push is received on a thread of its own at the bulk lane's lower OS priority (see
//!   `push`): a message at a time, each chunk bounded by `ServerConfig::snapshot_chunk_rows_max`
//!   and `snapshot_chunk_bytes_max`, decoded, checked and written to the snapshot store before
//!   the next is read. Memory is bounded per chunk, and no per-row work runs on a worker. At
//!   most [`PUSHES_IN_FLIGHT_MAX`] pushes are received at once.
//! - A reconciliation runs on the bulk lane (a thread at a lower OS priority, see `bulk`), a
//!   step of [`STEP_POSITIONS`] positions at a time, yielding between steps. At most one runs
//!   at a time ([`Reconciler::try_begin`]); another asked for meanwhile is ABORTED.
//!
//! # Layout
//! - `push`: the PushSnapshot stream.
//! - `run`: running reconciliations (on demand and scheduled), ResolveDrift, the reads.
//! - `convert`: proto <-> engine for snapshots and reports.
//! - `metrics`: the reconciliation series of `/metrics`.

mod convert;
pub(crate) mod metrics;
mod push;
mod run;

pub(crate) use push::push;
pub(crate) use run::{get_report, list, list_held, reconcile, resolve_drift, schedule};

use inv_engine::reconcile::{MemSnapshotStore, SnapshotStore, TolerancePolicy};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

/// Snapshot pushes staged at once (each holds a thread of its own while it streams). Past this,
/// RESOURCE_EXHAUSTED: an ERP pushes a handful of snapshots a day.
pub const PUSHES_IN_FLIGHT_MAX: usize = 4;
/// Positions a reconciliation decides before yielding the bulk lane.
pub const STEP_POSITIONS: usize = 512;
/// The default of `--reconcile-every`.
pub const RECONCILE_EVERY_MS_DEFAULT: u64 = 15 * 60_000;

/// How the server reconciles: when on its own, and with which tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// Every staged snapshot is reconciled this often (ms); 0 turns the schedule off (only
    /// `Reconcile` calls then run one).
    pub every_ms: u64,
    /// What drift is applied without review, globally and per location.
    pub policy: TolerancePolicy,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            every_ms: RECONCILE_EVERY_MS_DEFAULT,
            policy: TolerancePolicy::default(),
        }
    }
}

/// The reconciliation state the server shares between handlers and the scheduler.
pub(crate) struct Reconciler {
    pub store: Arc<dyn SnapshotStore>,
    pub config: ReconcileConfig,
    /// Held by the one reconciliation running (on demand or scheduled).
    running: Arc<Mutex<()>>,
    /// Budget of pushes being staged.
    pub pushes: Arc<Semaphore>,
    pub metrics: metrics::ReconcileMetrics,
}

impl Reconciler {
    /// `store`: where snapshots are kept (`None`: in memory, for servers that never reconcile
    /// across restarts, such as tests of other features).
    pub fn new(store: Option<Arc<dyn SnapshotStore>>, config: ReconcileConfig) -> Self {
        Self {
            store: store.unwrap_or_else(|| Arc::new(MemSnapshotStore::new())),
            config,
            running: Arc::new(Mutex::new(())),
            pushes: Arc::new(Semaphore::new(PUSHES_IN_FLIGHT_MAX)),
            metrics: metrics::ReconcileMetrics::default(),
        }
    }

    /// The right to run a reconciliation, or `None` while another runs.
    pub fn try_begin(&self) -> Option<OwnedMutexGuard<()>> {
        Arc::clone(&self.running).try_lock_owned().ok()
    }
}
