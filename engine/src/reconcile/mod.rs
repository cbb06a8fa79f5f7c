//! Reconciliation with the ERP: staged snapshots compared with the ledger as of their time,
//! drift found, reported, and corrected without double-counting what happened since.
//!
//! The ERP is the system of record for on_hand; the engine is the real-time truth between its
//! counts. A snapshot says what the ERP counted at `as_of` (its event-time watermark). The
//! engine's count at that time is today's on_hand less the effect of every event after `as_of`
//! (a sale at its till time, capped at when it was recorded; anything else at its decision
//! time; a correction at its snapshot's time). `drift = erp_on_hand - engine_on_hand_at(as_of)`,
//! and a correction adds `drift` to on_hand: the events after `as_of` stay counted once, open
//! holds are untouched, and the correction is an event like any other, so replay reproduces it.
//! `docs/reconciliation.md` has the full semantics and a worked example.
//!
//! # Layout
//! - [`snapshot`]: snapshots as data, their checks and checksum.
//! - [`push`]: staging a pushed snapshot, chunk by chunk, only when complete.
//! - [`store`]: the [`SnapshotStore`] interface and the in-memory store; `redb_store` (feature
//!   `redb`): the durable store, `snapshots.redb` beside the log.
//! - [`run`]: one reconciliation, step by step.
//! - [`report`]: what a reconciliation found, kept with its snapshot.
//! - The ledger's part (the tap that counts what happens while a run is in progress, the
//!   decision per position, the drifts held for review) is `ledger/reconcile.rs`; the log's
//!   history for it is `ledger/history.rs`.

pub mod push;
#[cfg(feature = "redb")]
pub mod redb_store;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod store;

pub use push::{Push, PushError, Pushed};
#[cfg(feature = "redb")]
pub use redb_store::RedbSnapshotStore;
pub use report::{DriftLine, ReconciliationCounts, Report, SnapshotStatus, StoredSnapshot};
pub use run::{ReconcileError, Reconciliation};
pub use snapshot::{
    RowDigest, SnapshotHeader, SnapshotMode, SnapshotRow, SnapshotScope, SnapshotSummary,
};
pub use store::{MemSnapshotStore, SnapshotStore, StoreError};

use crate::command::Tolerance;
use crate::types::Location;
use std::collections::BTreeMap;

/// Which tolerance applies where: per location, else the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TolerancePolicy {
    pub default: Tolerance,
    pub by_location: BTreeMap<Location, Tolerance>,
}

impl TolerancePolicy {
    pub fn for_location(&self, location: &Location) -> Tolerance {
        self.by_location
            .get(location)
            .copied()
            .unwrap_or(self.default)
    }
}
