//! Idempotency records: the answer a retry of a key gets, and the key shards that keep the
//! records of every command whose record is not kept with a hold (see `hold_entry.rs`).
//!
//! A record holds the fingerprint of the request first sent under the key, so the same key
//! with another payload is refused naming the field that differs, and the LSN, time and
//! outcome of its event, so a retry gets the original answer (rejections included, as
//! TigerBeetle's `id_already_failed`).

use crate::checkpoint::CheckpointKey;
use crate::command::{CommandKind, Fingerprint, IdempotencyKey};
use crate::outcome::Outcome;
use crate::types::Lsn;
use foldhash::fast::FixedState;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct KeyRecord {
    pub fingerprint: Fingerprint,
    pub lsn: Lsn,
    pub at_ms: u64,
    pub outcome: Outcome,
}

impl KeyRecord {
    /// A record as a checkpoint or the key archive lists it (`checkpoint::listed_key` is the
    /// other way), with its key.
    pub(super) fn unlisted(k: CheckpointKey) -> (IdempotencyKey, KeyRecord) {
        let record = KeyRecord {
            fingerprint: k.fingerprint,
            lsn: k.lsn,
            at_ms: k.at_ms,
            outcome: k.outcome,
        };
        (k.key, record)
    }
}

/// Whether a command's outcome is kept in the hold entry of its reservation id instead of the
/// key shards (see "Where outcomes are kept" in the module doc). Such keys are
/// `(kind, reservation id, "")`, and the key's id is the hold shard's id.
pub(super) fn kept_with_hold(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::Reserve | CommandKind::Commit | CommandKind::Release
    )
}

/// The bit of `HoldEntry::derived` for a kind kept with its hold.
pub(super) fn derived_bit(kind: CommandKind) -> u8 {
    match kind {
        CommandKind::Reserve => 1,
        CommandKind::Commit => 2,
        CommandKind::Release => 4,
        _ => 0,
    }
}

/// Whether an outcome is a rejection, remembered for `LedgerConfig::rejection_retention_ms`.
pub(super) fn is_rejection(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Insufficient { .. })
}

/// The hash a fingerprint gives an id field (`Command::fingerprint`'s, which a unit test pins).
pub(super) fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The outcomes of every keyed command not kept with a hold.
#[derive(Default)]
pub(super) struct KeyShard {
    pub records: HashMap<IdempotencyKey, KeyRecord, FixedState>,
    /// The fingerprints of this shard's archived records (see `archived.rs`).
    pub archived: super::archived::FingerprintSet,
}
