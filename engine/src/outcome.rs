//! Outcomes and refusals: what the engine decided for a command.
//!
//! Two kinds of answer are values, not errors (sled's nested `Result`, TigerBeetle's result
//! codes): an [`Outcome`] is recorded in the command's event and under its idempotency key, so
//! a retry gets the same answer even if stock has changed since (running out of stock,
//! committing an expired hold); a [`Refusal`] depends on the ledger's state but changes nothing
//! and is not recorded (a key reused with another payload, a reservation that does not exist),
//! so the same key may be sent again once the state allows it. Only malformed input and
//! infrastructure failures are [`crate::SubmitError`]s.

use crate::hold::HoldState;
use serde::{Deserialize, Serialize};

/// A reserve line that could not be granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    /// Index into the reserve's `lines`.
    pub line_index: u32,
    pub requested: u64,
    /// Availability when the reserve was decided (may be negative: see `Availability`).
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Reserve: the hold is placed and lasts until `expires_at_ms` (engine clock).
    Granted { expires_at_ms: u64 },
    /// Reserve: at least one line was short; nothing was held.
    Insufficient { short: Vec<ShortLine> },
    /// Commit: per hold line (in the hold's line order) the units committed; the rest of each
    /// line was released.
    Committed { committed: Vec<u64> },
    /// Release: the hold's units are available again.
    Released,
    /// Extend: the hold now expires at `expires_at_ms`.
    Extended { expires_at_ms: u64 },
    /// The hold's TTL had passed when this command was decided; the event expires it (for an
    /// `Expire` command that is its whole purpose).
    Expired,
    /// Commit, release or extend of a hold that had already ended in the given state.
    HoldAlreadyEnded(HoldState),
    /// Sale, return, disposition, adjustment or safety stock: applied.
    Recorded,
    /// Reconcile: the position drifted from the ERP's count; the drift was applied to on_hand,
    /// or (`held`) held for review.
    /// `events_since` counts the events after the snapshot's time that moved its on_hand.
    Reconciled {
        engine_on_hand_at: i64,
        drift: i64,
        held: bool,
        events_since: u32,
    },
    /// Reconcile: the position agreed with the ERP's count. Nothing changed and nothing is
    /// logged: its receipt's LSN is 0 and it is not remembered under the key.
    Matched {
        engine_on_hand_at: i64,
        events_since: u32,
    },
    /// ResolveDrift: the held drift was applied to on_hand, or dismissed.
    DriftResolved { drift: i64, applied: bool },
    /// AcknowledgeStoreAnomaly: the sale's `store_seq` was accepted into its store's sequence
    /// (`gaps_abandoned` missing numbers below it given up on) or dismissed (0 abandoned).
    StoreAnomalyAcknowledged {
        store_seq: u64,
        accepted: bool,
        gaps_abandoned: u64,
    },
}

impl Outcome {
    /// True when the command changed stock (as opposed to being refused for a business reason).
    pub fn is_success(&self) -> bool {
        !matches!(
            self,
            Outcome::Insufficient { .. } | Outcome::Expired | Outcome::HoldAlreadyEnded(_)
        )
    }
}

/// A command the ledger's state does not allow. Nothing changed and nothing was recorded: the
/// same request may succeed later (once the reservation exists, once the units are in
/// quarantine), and a corrected request may be sent under the same key. Variants are listed
/// in the order the ledger checks them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The idempotency key was already used with a different payload; `field` is the path of
    /// the first field that differs (`ttl_ms`, `lines[1].qty`, or `lines` when the line
    /// counts differ or the original is no longer in the log), and `reason` says how.
    #[error("idempotency key {key} was already used: {field} {reason}")]
    KeyConflict {
        key: String,
        field: String,
        reason: String,
    },
    /// A reserve's key is past retention but its hold is still remembered (an extended hold
    /// can outlive its reserve's key): the reservation id is still in use.
    #[error("reservation {reservation_id} still has a hold ({state:?}); use a new reservation id")]
    ReservationIdInUse {
        reservation_id: String,
        state: HoldState,
    },
    /// Commit, release or extend of a reservation the ledger does not know (or has forgotten).
    #[error("reservation {0} not found")]
    ReservationNotFound(String),
    /// A partial commit named a line the hold does not have, or more units than it holds.
    #[error("{field}: {reason}")]
    NotHeld { field: String, reason: String },
    /// The expiry sweep found the hold no longer open past its TTL (committed, released or
    /// extended since it looked). Only the engine's own `Expire` gets this.
    #[error("reservation {0} is not an open hold past its expiry")]
    HoldNotLapsed(String),
    /// A return's key is past retention but its units are still in quarantine: recording the
    /// id again would orphan them.
    #[error("return {0} still has units in quarantine; dispose of them or use a new return id")]
    ReturnIdInUse(String),
    #[error("return {0} not found")]
    ReturnNotFound(String),
    /// ResolveDrift of a position with no drift held for that snapshot (never held, already
    /// resolved, or superseded by a later snapshot's reconciliation of the position).
    #[error("no drift of snapshot {snapshot_id} is held at ({sku}, {location})")]
    DriftNotHeld {
        snapshot_id: String,
        sku: String,
        location: String,
    },
    /// A Reconcile decided outside the run that issued it: the ledger's tap is not counting
    /// for its snapshot time (see `Ledger::start_tap`), so the position's count at that time
    /// cannot be known exactly. Only the engine's own reconciliation issues Reconcile.
    #[error("reconciliation of snapshot {0} is not running")]
    ReconciliationNotRunning(String),
    /// A disposition asked for more units than the return has in quarantine at that position.
    #[error(
        "return {return_id} has {quarantined} units of {sku} in quarantine at {location}, not {requested}"
    )]
    NotQuarantined {
        return_id: String,
        sku: String,
        location: String,
        requested: u64,
        quarantined: u64,
    },
    /// AcknowledgeStoreAnomaly of a store that has posted no sales.
    #[error("store {0} has posted no sales")]
    StoreNotFound(String),
    /// AcknowledgeStoreAnomaly of a sale the store has no anomaly for: its number never
    /// jumped, or the anomaly was acknowledged already (with the key forgotten since) or
    /// dropped because the store's list was full.
    #[error("store {store_id} has no sequence anomaly for txn {txn_id}")]
    StoreAnomalyNotFound { store_id: String, txn_id: String },
}
