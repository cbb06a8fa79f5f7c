//! The locking protocol: which locks a command takes, in which order, and what it may then
//! touch. This is exactly what the loom models (`loom_tests.rs`) check.
//!
//! Each command family has a scope type holding the guards it needs, so that "a sale holds
//! the stores table" is a type, not a runtime expectation:
//!
//! | scope | commands | locks, in protocol order |
//! |---|---|---|
//! | [`ReserveScope`] | Reserve | hold shard, position shards of its skus |
//! | [`HoldScope`] | Commit, Release, Extend, Expire | (Extend: key shard), hold shard, position shards of the hold's skus |
//! | [`SaleScope`] | RecordSale, AcknowledgeStoreAnomaly | key shard, stores, position shards (none for an acknowledgement) |
//! | [`ReturnScope`] | RecordReturn, Dispose | key shard, returns, position shards |
//! | [`StockScope`] | Adjust, SetSafetyStock | key shard, position shard |
//! | `ReviewScope` | Reconcile, ResolveDrift | key shard, reviews, position shard |
//!
//! Position shards are always taken last and in ascending index, which is the deadlock-freedom
//! argument: every thread that needs two shards takes the lower one first. The sequencer
//! (`Ledger::sequence`) comes after all of them.

use super::hold_entry::{HoldEntry, HoldShard};
use super::interner::Interner;
use super::positions::{Availability, PositionShard, SkuEntry};
use super::records::{KeyRecord, KeyShard, kept_with_hold};
use super::returns::Returns;
use super::reviews::Reviews;
use super::table::hash_key;
use super::{Ledger, Stores};
use crate::command::*;
use crate::error::LogError;
use crate::event::Event;
use crate::hold::{Hold, SkuSlot};
use crate::outcome::Outcome;
use crate::sync::{MutexGuard, lock};
use crate::types::*;
use smallvec::SmallVec;

/// What the steps every write shares (`Ledger::write`, `Ledger::replay_in`) need of a scope:
/// its command's idempotency record, and applying an event of its family.
pub(super) trait Scope {
    /// The record kept under `key`, live or not.
    fn record(&self, key: &IdempotencyKey, names: &Interner) -> Option<KeyRecord>;
    /// Remembers an outcome under its key, so a retry gets it back.
    fn set_record(
        &mut self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        lsn: Lsn,
        at_ms: u64,
        outcome: &Outcome,
    );
    /// Applies an event of this scope's family (`apply.rs`); `Err` if it does not fit.
    fn apply(&mut self, ledger: &Ledger, event: &Event) -> Result<(), String>;
    /// Records an applied event in the reconciliation taps of the shards the scope holds.
    fn record_tap(&mut self, ledger: &Ledger, event: &Event);
}

/// The position shards a command locked, in ascending index.
pub(super) struct PositionLocks<'a> {
    shards: SmallVec<[(usize, MutexGuard<'a, PositionShard>); 2]>,
}

impl PositionLocks<'_> {
    /// Whether any locked shard has a reconciliation tap (see `reconcile.rs`).
    pub fn any_tap(&self) -> bool {
        self.shards.iter().any(|(_, shard)| shard.tap.is_some())
    }

    /// Position shard `index`, which the command's scope locked.
    pub fn shard(&mut self, index: usize) -> &mut PositionShard {
        let (_, guard) = self
            .shards
            .iter_mut()
            .find(|(i, _)| *i == index)
            .expect("the scope locked every shard its command touches");
        guard
    }

    /// Position shard `index`, if the scope locked it.
    pub fn shard_ref(&self, index: usize) -> Option<&PositionShard> {
        self.shards
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, guard)| &**guard)
    }

    /// The entry of a hold line's sku (whose shard the scope locked).
    pub fn sku_entry(&mut self, sku: SkuSlot) -> &mut SkuEntry {
        self.shard(sku.shard()).at_mut(sku.slot)
    }
}

/// Where a hold command's record is kept.
pub(super) enum RecordPlace<'a> {
    /// In the hold entry (Reserve, Commit, Release), whose shard the scope holds anyway.
    WithHold,
    /// In a key shard: Extend, whose key also has a request id, so a hold has many.
    KeyShard(MutexGuard<'a, KeyShard>),
    /// Nowhere: the engine's own Expire has no key.
    Unkeyed,
}

/// A command on one reservation's hold.
pub(super) struct HoldScope<'a> {
    pub records: RecordPlace<'a>,
    pub holds: MutexGuard<'a, HoldShard>,
    /// The slot of the reservation's entry in `holds`, looked up once when the shard is
    /// locked (and set when the command creates the entry). Stable while the lock is held.
    pub slot: Option<u32>,
    /// The shards of the hold's skus (none if there is no hold).
    pub positions: PositionLocks<'a>,
}

impl HoldScope<'_> {
    /// The reservation's entry, if it has one.
    pub fn entry(&self) -> Option<&HoldEntry> {
        Some(self.holds.entries.at(self.slot?))
    }

    pub fn hold(&self) -> Option<&Hold> {
        self.entry()?.hold.as_ref()
    }

    pub fn hold_mut(&mut self) -> Option<&mut Hold> {
        self.entry_mut()?.hold.as_mut()
    }

    pub fn entry_mut(&mut self) -> Option<&mut HoldEntry> {
        let slot = self.slot?;
        Some(self.holds.entries.at_mut(slot))
    }

    /// The slot of the reservation's entry (whose id is `id`), created if needed.
    pub fn slot_or_insert(&mut self, id: &str) -> u32 {
        match self.slot {
            Some(slot) => slot,
            None => {
                let slot = self.holds.slot_or_insert(id);
                self.slot = Some(slot);
                slot
            }
        }
    }
}

/// Where a reserve line's position is, as far as it exists.
#[derive(Clone, Copy)]
pub(super) struct ResolvedLine {
    /// The position shard of the line's sku.
    pub shard: usize,
    /// The sku's slot in that shard (`None`: the sku has no position anywhere).
    pub sku: Option<u32>,
    /// `None`: a location name never seen, so no position there.
    pub location: Option<LocationId>,
}

/// A reserve: its hold's scope, and its lines resolved once for deciding and applying.
pub(super) struct ReserveScope<'a> {
    pub hold: HoldScope<'a>,
    /// Per reserve line, in order.
    pub lines: SmallVec<[ResolvedLine; 4]>,
    /// The reserve's channel, if its name is known yet.
    pub channel: Option<ChannelId>,
}

impl ReserveScope<'_> {
    /// Availability of reserve line `i`'s position; `None` if it does not exist.
    pub fn availability(&mut self, i: usize, now_ms: u64) -> Option<Availability> {
        let line = self.lines[i];
        let entry = self.hold.positions.shard(line.shard).at(line.sku?);
        entry.availability(line.location?, now_ms)
    }
}

/// A command whose record is in a key shard, with the table it needs (`T`).
pub(super) struct KeyedScope<'a, T> {
    pub keys: MutexGuard<'a, KeyShard>,
    pub table: T,
    pub positions: PositionLocks<'a>,
}

pub(super) type SaleScope<'a> = KeyedScope<'a, MutexGuard<'a, Stores>>;
pub(super) type ReturnScope<'a> = KeyedScope<'a, MutexGuard<'a, Returns>>;
pub(super) type StockScope<'a> = KeyedScope<'a, ()>;

impl Ledger {
    /// Locks position shards `indexes` in ascending order.
    pub(super) fn lock_positions(&self, mut indexes: SmallVec<[usize; 4]>) -> PositionLocks<'_> {
        indexes.sort_unstable();
        indexes.dedup();
        PositionLocks {
            shards: indexes
                .into_iter()
                .map(|i| (i, lock(&self.positions[i])))
                .collect(),
        }
    }

    pub(super) fn lock_reserve(&self, reserve: &Reserve) -> Result<ReserveScope<'_>, LogError> {
        let id = reserve.reservation_id.as_str();
        let hash = hash_key(id);
        let mut holds = lock(&self.holds[self.shard_of_hash(hash)]);
        let slot = match holds.entries.find(hash, id) {
            Some(slot) => Some(slot),
            None => self.fault_in_hold(&mut holds, hash, id)?,
        };
        let sku_hashes: SmallVec<[u64; 4]> = reserve
            .lines
            .iter()
            .map(|l| hash_key(l.sku.as_str()))
            .collect();
        let positions =
            self.lock_positions(sku_hashes.iter().map(|&h| self.shard_of_hash(h)).collect());
        let mut scope = ReserveScope {
            hold: HoldScope {
                records: RecordPlace::WithHold,
                holds,
                slot,
                positions,
            },
            lines: SmallVec::new(),
            channel: None,
        };
        // Names are looked up once the position shards are locked: a position is created (and
        // its location named) under its shard's lock, so every position an earlier command
        // created is seen.
        let (channel, locations) = self.names.get_reserve(
            reserve.channel.as_str(),
            reserve.lines.iter().map(|l| l.location.as_str()),
        );
        scope.channel = channel.map(ChannelId);
        for ((line, location), hash) in reserve.lines.iter().zip(locations).zip(sku_hashes) {
            let shard = self.shard_of_hash(hash);
            let sku = scope
                .hold
                .positions
                .shard(shard)
                .find(hash, line.sku.as_str());
            scope.lines.push(ResolvedLine {
                shard,
                sku,
                location: location.map(LocationId),
            });
        }
        Ok(scope)
    }

    /// The scope of a commit, release, extend or expiry of reservation `id`, whose key (none
    /// for the engine's own expiry) says where its record is.
    pub(super) fn lock_hold(
        &self,
        id: &ReservationId,
        key: Option<&IdempotencyKey>,
    ) -> Result<HoldScope<'_>, LogError> {
        let records = match key {
            None => RecordPlace::Unkeyed,
            Some(key) if kept_with_hold(key.kind) => RecordPlace::WithHold,
            Some(key) => {
                let mut keys = lock(&self.keys[self.shard_of(&key.id)]);
                self.fault_in_record(&mut keys, key)?;
                RecordPlace::KeyShard(keys)
            }
        };
        let hash = hash_key(id.as_str());
        let mut holds = lock(&self.holds[self.shard_of_hash(hash)]);
        let slot = match holds.entries.find(hash, id.as_str()) {
            Some(slot) => Some(slot),
            None => self.fault_in_hold(&mut holds, hash, id.as_str())?,
        };
        let hold = slot.and_then(|slot| holds.entries.at(slot).hold.as_ref());
        let shards = hold
            .map(|h| h.lines.iter().map(|l| l.sku.shard()).collect())
            .unwrap_or_default();
        Ok(HoldScope {
            records,
            holds,
            slot,
            positions: self.lock_positions(shards),
        })
    }

    pub(super) fn lock_sale(&self, sale: &RecordSale) -> Result<SaleScope<'_>, LogError> {
        let keys = self.lock_key_shard(sale)?;
        let stores = lock(&self.stores);
        Ok(KeyedScope {
            keys,
            table: stores,
            positions: self.lock_sku_shards(sale.lines.iter().map(|l| &l.sku)),
        })
    }

    /// The scope of a command on a store's sequence alone (AcknowledgeStoreAnomaly): its key
    /// shard and the stores table, no position.
    pub(super) fn lock_stores(
        &self,
        command: &impl KeyedCommand,
    ) -> Result<SaleScope<'_>, LogError> {
        let keys = self.lock_key_shard(command)?;
        let stores = lock(&self.stores);
        Ok(KeyedScope {
            keys,
            table: stores,
            positions: self.lock_positions(SmallVec::new()),
        })
    }

    pub(super) fn lock_returns<'s>(
        &self,
        command: &impl KeyedCommand,
        skus: impl Iterator<Item = &'s Sku>,
    ) -> Result<ReturnScope<'_>, LogError> {
        let keys = self.lock_key_shard(command)?;
        let returns = lock(&self.returns);
        Ok(KeyedScope {
            keys,
            table: returns,
            positions: self.lock_sku_shards(skus),
        })
    }

    pub(super) fn lock_stock(
        &self,
        command: &impl KeyedCommand,
        sku: &Sku,
    ) -> Result<StockScope<'_>, LogError> {
        Ok(KeyedScope {
            keys: self.lock_key_shard(command)?,
            table: (),
            positions: self.lock_sku_shards(std::iter::once(sku)),
        })
    }

    /// The key shard of `command`'s key, with the key's archived record faulted back in.
    pub(super) fn lock_key_shard(
        &self,
        command: &impl KeyedCommand,
    ) -> Result<MutexGuard<'_, KeyShard>, LogError> {
        let mut keys = lock(&self.keys[self.shard_of(command.key_ids().0)]);
        // The key is built only when this shard has archived records to look among.
        if !keys.archived.is_empty() {
            self.fault_in_record(&mut keys, &command.idempotency_key())?;
        }
        Ok(keys)
    }

    fn lock_sku_shards<'s>(&self, skus: impl Iterator<Item = &'s Sku>) -> PositionLocks<'_> {
        self.lock_positions(skus.map(|sku| self.shard_of(sku.as_str())).collect())
    }
}

impl Scope for HoldScope<'_> {
    fn record(&self, key: &IdempotencyKey, names: &Interner) -> Option<KeyRecord> {
        match &self.records {
            RecordPlace::KeyShard(keys) => keys.records.get(key).cloned(),
            _ if kept_with_hold(key.kind) => self.entry()?.record(key.kind, names),
            _ => None,
        }
    }

    fn set_record(
        &mut self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        lsn: Lsn,
        at_ms: u64,
        outcome: &Outcome,
    ) {
        match &mut self.records {
            RecordPlace::KeyShard(keys) => {
                let record = KeyRecord {
                    fingerprint,
                    lsn,
                    at_ms,
                    outcome: outcome.clone(),
                };
                keys.records.insert(key, record);
            }
            RecordPlace::WithHold => {
                debug_assert!(kept_with_hold(key.kind), "{key} is not kept with a hold");
                let slot = self.slot_or_insert(&key.id);
                let entry = self.holds.entries.at_mut(slot);
                entry.set_record(fingerprint, lsn, at_ms, outcome);
            }
            RecordPlace::Unkeyed => debug_assert!(false, "a record for an unkeyed command"),
        }
    }

    fn apply(&mut self, ledger: &Ledger, event: &Event) -> Result<(), String> {
        ledger.apply_to_hold(self, event)
    }

    fn record_tap(&mut self, ledger: &Ledger, event: &Event) {
        self.positions.record_tap(ledger, event);
    }
}

impl Scope for ReserveScope<'_> {
    fn record(&self, key: &IdempotencyKey, names: &Interner) -> Option<KeyRecord> {
        self.hold.record(key, names)
    }

    fn set_record(
        &mut self,
        key: IdempotencyKey,
        fingerprint: Fingerprint,
        lsn: Lsn,
        at_ms: u64,
        outcome: &Outcome,
    ) {
        self.hold.set_record(key, fingerprint, lsn, at_ms, outcome);
    }

    fn apply(&mut self, ledger: &Ledger, event: &Event) -> Result<(), String> {
        ledger.apply_reserve(self, event)
    }

    fn record_tap(&mut self, ledger: &Ledger, event: &Event) {
        self.hold.positions.record_tap(ledger, event);
    }
}

/// The record methods of every [`KeyedScope`], whatever its table.
macro_rules! keyed_scope {
    ($table:ty, $apply:ident) => {
        impl<'a> Scope for KeyedScope<'a, $table> {
            fn record(&self, key: &IdempotencyKey, _names: &Interner) -> Option<KeyRecord> {
                self.keys.records.get(key).cloned()
            }

            fn set_record(
                &mut self,
                key: IdempotencyKey,
                fingerprint: Fingerprint,
                lsn: Lsn,
                at_ms: u64,
                outcome: &Outcome,
            ) {
                let record = KeyRecord {
                    fingerprint,
                    lsn,
                    at_ms,
                    outcome: outcome.clone(),
                };
                self.keys.records.insert(key, record);
            }

            fn apply(&mut self, ledger: &Ledger, event: &Event) -> Result<(), String> {
                ledger.$apply(self, event)
            }

            fn record_tap(&mut self, ledger: &Ledger, event: &Event) {
                self.positions.record_tap(ledger, event);
            }
        }
    };
}

keyed_scope!(MutexGuard<'a, Stores>, apply_to_stores);
keyed_scope!(MutexGuard<'a, Returns>, apply_to_returns);
keyed_scope!((), apply_to_stock);
keyed_scope!(MutexGuard<'a, Reviews>, apply_to_reviews);
