//! The ledger's memory, by part, and the hard limit past which it refuses writes that add
//! state.
//!
//! The parts are estimated from counts the tables keep (no walk over millions of entries), at
//! per-item sizes measured by `benches/src/bin/memory.rs` (live heap bytes from a counting
//! allocator, table slack included): a position 112 B; an open hold with its records 210 B
//! (the upper end of 175-210); an entry without an open hold 300 B (an ended hold with its
//! records measures 134-139 B, a rejected reserve's stored record more: this errs high); a
//! record in the key shards 357 B (the upper end of 210-357); a store's received range 48 B.
//! The fingerprint sets of archived keys are counted exactly. Erring high makes the limit
//! conservative: the process stays under it with room for what the estimate leaves out.

use super::Ledger;
use crate::sync::{Ordering, lock};

pub const POSITION_BYTES: u64 = 112;
pub const OPEN_HOLD_BYTES: u64 = 210;
pub const HOLD_ENTRY_BYTES: u64 = 300;
pub const KEY_RECORD_BYTES: u64 = 357;
pub const STORE_RANGE_BYTES: u64 = 48;

/// Estimated bytes per part of the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    pub positions: u64,
    /// Open holds, ended holds and the records kept with them.
    pub holds: u64,
    /// Records in the key shards (sales, returns, adjustments, extends, ...).
    pub keys: u64,
    /// Stores' received sequence ranges (what remembers their gaps).
    pub store_gaps: u64,
    /// The fingerprint sets of archived keys (exact).
    pub archive_index: u64,
    /// Counts behind the estimate.
    pub position_count: u64,
    pub open_holds: u64,
    pub hold_entries: u64,
    pub key_records: u64,
    pub archived_keys: u64,
}

impl MemoryUse {
    pub fn total(&self) -> u64 {
        self.positions + self.holds + self.keys + self.store_gaps + self.archive_index
    }
}

impl Ledger {
    /// The ledger's memory by part. Takes each shard's lock briefly, one at a time.
    pub fn memory_use(&self) -> MemoryUse {
        let mut use_ = MemoryUse::default();
        for shard in self.positions.iter() {
            use_.position_count += lock(shard).position_count() as u64;
        }
        for shard in self.holds.iter() {
            let shard = lock(shard);
            use_.open_holds += shard.expiry.len() as u64;
            use_.hold_entries += shard.entries.len() as u64;
            use_.archived_keys += shard.archived.len() as u64;
            use_.archive_index += shard.archived.bytes() as u64;
        }
        for shard in self.keys.iter() {
            let shard = lock(shard);
            use_.key_records += shard.records.len() as u64;
            use_.archived_keys += shard.archived.len() as u64;
            use_.archive_index += shard.archived.bytes() as u64;
        }
        let ranges: u64 = lock(&self.stores)
            .by_id
            .values()
            .map(|s| s.received.len() as u64)
            .sum();
        use_.positions = use_.position_count * POSITION_BYTES;
        use_.holds = use_.open_holds * OPEN_HOLD_BYTES
            + use_.hold_entries.saturating_sub(use_.open_holds) * HOLD_ENTRY_BYTES;
        use_.keys = use_.key_records * KEY_RECORD_BYTES;
        use_.store_gaps = ranges * STORE_RANGE_BYTES;
        use_
    }

    /// Refuses (or, with `false`, accepts again) writes that add state: set by the engine
    /// when the ledger's memory crosses its hard limit (`Engine::memory_tick`).
    pub fn set_memory_exhausted(&self, exhausted: bool, used_bytes: u64, limit_bytes: u64) {
        self.memory_limit_bytes
            .store(limit_bytes, Ordering::Relaxed);
        self.memory_used_bytes.store(used_bytes, Ordering::Relaxed);
        self.memory_exhausted.store(exhausted, Ordering::Release);
    }

    /// Whether writes that add state are refused.
    pub fn memory_refusing(&self) -> bool {
        self.memory_exhausted.load(Ordering::Acquire)
    }

    /// The total of the last [`Ledger::set_memory_exhausted`].
    pub fn memory_used_last(&self) -> u64 {
        self.memory_used_bytes.load(Ordering::Relaxed)
    }

    /// `Some((used, limit))` while writes that add state are refused.
    pub(super) fn memory_exhausted(&self) -> Option<(u64, u64)> {
        if !self.memory_exhausted.load(Ordering::Acquire) {
            return None;
        }
        Some((
            self.memory_used_bytes.load(Ordering::Relaxed),
            self.memory_limit_bytes.load(Ordering::Relaxed),
        ))
    }
}
