//! The drifts held for review: per position, the drift the latest reconciliation found and
//! held because it was beyond tolerance, until `ResolveDrift` applies or dismisses it or a
//! later reconciliation of the position supersedes it. Ordered by position, so listing and
//! digests are deterministic.

use crate::types::{Location, Lsn, Sku, SnapshotId};
use std::collections::BTreeMap;

/// A drift held for review at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeldDrift {
    pub snapshot_id: SnapshotId,
    pub as_of_ms: u64,
    pub erp_on_hand: i64,
    pub engine_on_hand_at: i64,
    pub drift: i64,
    /// The event that held it.
    pub lsn: Lsn,
}

#[derive(Default)]
pub(super) struct Reviews {
    pub by_position: BTreeMap<(Sku, Location), HeldDrift>,
}
