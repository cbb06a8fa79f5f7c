//! Checkpoints as plain data: the whole ledger at one LSN.
//!
//! A checkpoint lets recovery start from a recent state instead of LSN 1: load the newest
//! checkpoint, then replay the log after it. The ledger builds one from an exact cut
//! (`ledger/checkpoint.rs`) and loads one back; the log stores its encoding
//! (`log::encoding`). This module is a leaf that both import, so neither imports the other
//! for it. Names are stored, not interned ids, because ids are assigned in first-seen order
//! and differ between processes. The outcomes the ledger keeps with their holds (Reserve,
//! Commit, Release) are listed as keys like every other: where the ledger keeps a record is
//! its own business, not the checkpoint's.

use crate::command::{Fingerprint, IdempotencyKey, Line};
use crate::hold::HoldState;
use crate::outcome::Outcome;
use crate::stores::StoreSequence;
use crate::types::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPosition {
    pub sku: Sku,
    pub location: Location,
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub quarantined: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHold {
    pub reservation_id: ReservationId,
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub state: HoldState,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    pub ended_at_ms: u64,
    /// Who placed the hold, and who ended it (`None`: no principal, or still open).
    pub placed_by: Option<PrincipalName>,
    pub ended_by: Option<PrincipalName>,
}

/// One idempotency record: the answer a retry under `key` gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKey {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub lsn: Lsn,
    pub at_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReturn {
    pub return_id: ReturnId,
    pub at_ms: u64,
    pub quarantined: Vec<(Sku, Location, u64)>,
}

/// A drift held for review at a position (see `ResolveDrift`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHeldDrift {
    pub sku: Sku,
    pub location: Location,
    pub snapshot_id: SnapshotId,
    pub as_of_ms: u64,
    pub erp_on_hand: i64,
    pub engine_on_hand_at: i64,
    pub drift: i64,
    pub lsn: Lsn,
}

/// The ledger's state after event `next_lsn - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub next_lsn: Lsn,
    pub last_at_ms: u64,
    pub positions: Vec<CheckpointPosition>,
    pub holds: Vec<CheckpointHold>,
    pub keys: Vec<CheckpointKey>,
    pub returns: Vec<CheckpointReturn>,
    pub stores: Vec<(StoreId, StoreSequence)>,
    pub held_drifts: Vec<CheckpointHeldDrift>,
    /// The time index of the history window (`(lsn, t)`: every event up to `lsn` was decided
    /// by `t`), whose first entry bounds the history the log must keep: see
    /// [`Checkpoint::history_start_lsn`].
    pub history: Vec<(Lsn, u64)>,
}

impl Checkpoint {
    /// The first LSN the log must keep for reconciliation's history: a log may drop the events
    /// below `min(next_lsn, history_start_lsn)`, not all those the checkpoint covers.
    pub fn history_start_lsn(&self) -> Lsn {
        self.history
            .first()
            .map_or(Lsn(1), |(lsn, _)| lsn.next())
            .min(self.next_lsn)
    }
}
