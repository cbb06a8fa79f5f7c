//! Taking a checkpoint (the data types are in `crate::checkpoint`) and loading one back.
//!
//! A checkpoint is taken with every lock held (in protocol order), so it is an exact cut: the
//! state after event `next_lsn - 1` and before any later one. Under the locks only the tables
//! are cloned ([`Ledger::cut`]); resolving names, deriving records ([`Cut::into_checkpoint`]),
//! encoding and writing happen after the locks are released. Loading puts the records the
//! ledger keeps with their holds back with their holds.

use super::history::TimeIndex;
use super::hold_entry::HoldEntry;
use super::interner::Kind;
use super::positions::{LadderKey, SkuEntry};
use super::records::{KeyRecord, kept_with_hold};
use super::returns::ReturnRecord;
use super::reviews::HeldDrift;
use super::table::{Snapshot, hash_key};
use super::{Ledger, LedgerConfig, sku_slot};
use crate::checkpoint::*;
use crate::command::{IdempotencyKey, Line};
use crate::error::ReplayError;
use crate::hold::PrincipalRef;
use crate::hold::{Hold, HoldLine, HoldLines, HoldState, SkuSlot};
use crate::log::EventLog;
use crate::outcome::Outcome;
use crate::stores::StoreSequence;
use crate::sync::lock;
use crate::types::*;
use smallvec::SmallVec;
use std::sync::Arc;

/// The ledger's tables as taken with every lock held: the sku and hold tables as snapshots
/// that share their chunks with the ledger (copy-on-write, see `table.rs`), the idempotency
/// records and the rest as plain clones. [`Cut::into_checkpoint`] turns it into a
/// [`Checkpoint`] after the locks are released, so writers wait only for the snapshots and
/// clones (see [`Ledger::cut`]).
pub struct Cut {
    /// How long every lock was held (writes waited) to take it.
    locked_for: std::time::Duration,
    next_lsn: Lsn,
    last_at_ms: u64,
    /// Per position shard, its skus by slot.
    positions: Vec<Snapshot<SkuEntry>>,
    /// Per hold shard, its entries.
    holds: Vec<Snapshot<HoldEntry>>,
    keys: Vec<Vec<(IdempotencyKey, KeyRecord)>>,
    returns: Vec<(ReturnId, ReturnRecord)>,
    stores: Vec<(StoreId, StoreSequence)>,
    held_drifts: Vec<CheckpointHeldDrift>,
    history: Vec<(Lsn, u64)>,
}

impl Cut {
    /// How long writes waited for this cut: the time every lock was held.
    pub fn locked_for(&self) -> std::time::Duration {
        self.locked_for
    }

    /// The LSN the cut was taken at: the state after event `next_lsn - 1`.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Builds the owned checkpoint: names resolved, derived records listed. Needs no ledger
    /// lock; names are only ever appended to the interner, so every id in the cut resolves.
    pub fn into_checkpoint(self, ledger: &Ledger) -> Checkpoint {
        let names = Names {
            locations: ledger.names.names(Kind::Location),
            channels: ledger.names.names(Kind::Channel),
            principals: ledger.names.names(Kind::Principal),
        };
        let mut checkpoint = Checkpoint {
            next_lsn: self.next_lsn,
            last_at_ms: self.last_at_ms,
            positions: self.listed_positions(&names),
            holds: Vec::new(),
            keys: Vec::new(),
            returns: Vec::with_capacity(self.returns.len()),
            stores: self.stores.clone(),
            held_drifts: self.held_drifts.clone(),
            history: self.history.clone(),
        };
        for shard in &self.holds {
            for (_, entry) in shard.iter() {
                let records = entry.records(&ledger.names).into_iter();
                checkpoint.keys.extend(records.map(|r| {
                    let key = entry.key_of(r.fingerprint.kind);
                    listed_key(key, r)
                }));
                if let Some(hold) = &entry.hold {
                    checkpoint.holds.push(self.listed_hold(entry, hold, &names));
                }
            }
        }
        for shard in self.keys {
            let records = shard.into_iter();
            checkpoint
                .keys
                .extend(records.map(|(key, r)| listed_key(key, r)));
        }
        checkpoint
            .returns
            .extend(self.returns.into_iter().map(|(id, r)| {
                CheckpointReturn {
                    return_id: id,
                    at_ms: r.at_ms,
                    quarantined: r
                        .quarantined
                        .into_iter()
                        .map(|(sku, loc, q)| (sku, names.location(loc), q))
                        .collect(),
                }
            }));
        checkpoint
    }

    fn listed_positions(&self, names: &Names) -> Vec<CheckpointPosition> {
        let entries = || self.positions.iter().flat_map(Snapshot::iter);
        let mut positions =
            Vec::with_capacity(entries().map(|(_, entry)| entry.positions.len()).sum());
        for (_, entry) in entries() {
            positions.extend(entry.positions.iter().map(|p| CheckpointPosition {
                sku: entry.sku.clone(),
                location: names.location(p.location),
                on_hand: p.on_hand,
                reserved: p.reserved,
                safety_stock: i64::from(p.safety_stock),
                quarantined: p.quarantined,
            }));
        }
        positions
    }

    fn listed_hold(&self, entry: &HoldEntry, hold: &Hold, names: &Names) -> CheckpointHold {
        let sku_at = |slot: SkuSlot| {
            self.positions[usize::from(slot.shard)]
                .get(slot.slot)
                .map(|entry| entry.sku.clone())
                .expect("a hold line names an occupied sku slot")
        };
        CheckpointHold {
            reservation_id: entry.id.clone(),
            channel: Channel(names.channels[hold.channel.0 as usize].clone()),
            lines: hold
                .lines
                .iter()
                .map(|l| Line {
                    sku: sku_at(l.sku),
                    location: names.location(l.location),
                    qty: u64::from(l.qty),
                })
                .collect(),
            state: hold.state,
            expires_at_ms: hold.expires_at_ms,
            placed_lsn: hold.placed_lsn,
            placed_at_ms: hold.placed_at_ms,
            ended_at_ms: hold.ended_at_ms,
            placed_by: names.principal(hold.placed_by),
            ended_by: names.principal(entry.ended_by),
        }
    }
}

/// The interner's names, copied once for a whole checkpoint.
struct Names {
    locations: Vec<compact_str::CompactString>,
    channels: Vec<compact_str::CompactString>,
    principals: Vec<compact_str::CompactString>,
}

impl Names {
    fn location(&self, id: LocationId) -> Location {
        Location(self.locations[id.0 as usize].clone())
    }

    /// As `Interner::principal_name`.
    fn principal(&self, by: PrincipalRef) -> Option<PrincipalName> {
        Some(PrincipalName(self.principals[by.id()? as usize].clone()))
    }
}

pub(super) fn listed_key(key: IdempotencyKey, r: KeyRecord) -> CheckpointKey {
    CheckpointKey {
        key,
        fingerprint: r.fingerprint,
        lsn: r.lsn,
        at_ms: r.at_ms,
        outcome: r.outcome,
    }
}

impl Ledger {
    /// Copies the whole ledger at one LSN: [`Ledger::cut`], then [`Cut::into_checkpoint`].
    pub fn checkpoint(&self) -> Checkpoint {
        self.cut().into_checkpoint(self)
    }

    /// Clones the ledger's tables with every lock held (in protocol order), so the copy is an
    /// exact cut at one LSN. Writers wait while it copies (readers of other shards do not);
    /// only clones happen here, everything else in [`Cut::into_checkpoint`].
    pub fn cut(&self) -> Cut {
        // The records' buffers are sized and their pages touched before any lock is taken, one
        // shard lock at a time: filling fresh pages under every lock is what made the first
        // checkpoint of a process block writes for most of a second.
        let mut keys: Vec<Vec<(IdempotencyKey, KeyRecord)>> = self
            .keys
            .iter()
            .map(|shard| prefaulted(lock(shard).records.len()))
            .collect();

        let locked_at = std::time::Instant::now();
        let key_shards: Vec<_> = self.keys.iter().map(lock).collect();
        let hold_shards: Vec<_> = self.holds.iter().map(lock).collect();
        let returns = lock(&self.returns);
        let stores = lock(&self.stores);
        let reviews = lock(&self.reviews);
        let position_shards: Vec<_> = self.positions.iter().map(lock).collect();
        let sequencer = lock(&self.sequencer);
        // Counter bumps, not copies: writers copy the chunks they touch until the cut is
        // dropped.
        let positions = position_shards.iter().map(|s| s.snapshot()).collect();
        let holds = hold_shards.iter().map(|s| s.entries.snapshot()).collect();
        // Collected, not cloned: a map's clone keeps the capacity of its largest size, which
        // after a purge can be many times what is live.
        for (records, shard) in keys.iter_mut().zip(&key_shards) {
            records.extend(shard.records.iter().map(|(k, r)| (k.clone(), r.clone())));
        }
        Cut {
            locked_for: locked_at.elapsed(),
            next_lsn: sequencer.next_lsn,
            last_at_ms: sequencer.last_at_ms,
            positions,
            holds,
            keys,
            returns: returns
                .by_id
                .iter()
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect(),
            stores: stores
                .by_id
                .iter()
                // Without the process-local retry count (see `StoreSequence::checkpointed`).
                .map(|(id, s)| (id.clone(), s.checkpointed()))
                .collect(),
            held_drifts: reviews
                .by_position
                .iter()
                .map(|((sku, location), held)| CheckpointHeldDrift {
                    sku: sku.clone(),
                    location: location.clone(),
                    snapshot_id: held.snapshot_id.clone(),
                    as_of_ms: held.as_of_ms,
                    erp_on_hand: held.erp_on_hand,
                    engine_on_hand_at: held.engine_on_hand_at,
                    drift: held.drift,
                    lsn: held.lsn,
                })
                .collect(),
            history: sequencer.history.entries(),
        }
    }

    /// A ledger in exactly the state `checkpoint` captured, appending new events to `log`
    /// (which must continue at `checkpoint.next_lsn`).
    pub fn from_checkpoint(
        config: LedgerConfig,
        log: Arc<dyn EventLog>,
        checkpoint: &Checkpoint,
    ) -> Result<Self, ReplayError> {
        let ledger = Ledger::new(config, log);
        let bad = |reason: String| ReplayError::Inapplicable {
            lsn: checkpoint.next_lsn,
            reason: format!("checkpoint: {reason}"),
        };
        for p in &checkpoint.positions {
            ledger.load_position(p).map_err(bad)?;
        }
        for h in &checkpoint.holds {
            ledger.load_hold(h).map_err(bad)?;
        }
        for k in &checkpoint.keys {
            ledger.load_key(k).map_err(bad)?;
        }
        {
            let mut returns = lock(&ledger.returns);
            for r in &checkpoint.returns {
                let quarantined = r
                    .quarantined
                    .iter()
                    .map(|(sku, loc, q)| {
                        let location = ledger.names.intern(Kind::Location, loc.as_str());
                        (sku.clone(), LocationId(location), *q)
                    })
                    .collect();
                let record = ReturnRecord {
                    at_ms: r.at_ms,
                    quarantined,
                };
                returns.by_id.insert(r.return_id.clone(), record);
            }
        }
        lock(&ledger.stores).by_id = checkpoint
            .stores
            .iter()
            .map(|(id, s)| (id.clone(), s.checkpointed()))
            .collect();
        lock(&ledger.reviews).by_position = checkpoint
            .held_drifts
            .iter()
            .map(|h| {
                let held = HeldDrift {
                    snapshot_id: h.snapshot_id.clone(),
                    as_of_ms: h.as_of_ms,
                    erp_on_hand: h.erp_on_hand,
                    engine_on_hand_at: h.engine_on_hand_at,
                    drift: h.drift,
                    lsn: h.lsn,
                };
                ((h.sku.clone(), h.location.clone()), held)
            })
            .collect();
        {
            let mut sequencer = lock(&ledger.sequencer);
            sequencer.next_lsn = checkpoint.next_lsn;
            sequencer.last_at_ms = checkpoint.last_at_ms;
            sequencer.history = TimeIndex::from_entries(checkpoint.history.clone()).map_err(bad)?;
        }
        ledger.raise_time_floor(checkpoint.last_at_ms);
        ledger.check_invariants().map_err(bad)?;
        Ok(ledger)
    }

    fn load_position(&self, p: &CheckpointPosition) -> Result<(), String> {
        let location = LocationId(self.names.intern(Kind::Location, p.location.as_str()));
        let mut shard = lock(&self.positions[self.shard_of(p.sku.as_str())]);
        let position = shard.position_or_insert(&p.sku, location);
        position.on_hand = p.on_hand;
        position.reserved = p.reserved;
        position.safety_stock = u32::try_from(p.safety_stock)
            .map_err(|_| format!("safety stock of {} out of range", p.sku))?;
        position.quarantined = p.quarantined;
        Ok(())
    }

    fn load_hold(&self, h: &CheckpointHold) -> Result<(), String> {
        let id = &h.reservation_id;
        let hold = self.loaded_hold(h)?;
        if h.state == HoldState::Open {
            for line in hold.lines.iter() {
                let key = LadderKey {
                    expires_at_ms: h.expires_at_ms,
                    placed_lsn: h.placed_lsn,
                    location: line.location,
                };
                lock(&self.positions[line.sku.shard()])
                    .at_mut(line.sku.slot)
                    .ladder_insert(key, line.qty);
            }
        }
        let mut shard = lock(&self.holds[self.shard_of(id.as_str())]);
        let slot = shard.slot_or_insert(id.as_str());
        let entry = shard.entries.at_mut(slot);
        if entry.hold.is_some() {
            return Err(format!("hold {id} listed twice"));
        }
        entry.place(hold, &self.names);
        entry.ended_by = self.names.principal(h.ended_by.as_ref());
        if h.state == HoldState::Open {
            shard.expiry.insert((h.expires_at_ms, h.placed_lsn), slot);
        }
        Ok(())
    }

    /// A hold as a checkpoint (or the key archive) lists it, back in the ledger's interned
    /// form: its skus' slots found one position shard lock at a time. Its ended LSN is set by
    /// `load_hold_record`, from the record of the command that ended it.
    pub(super) fn loaded_hold(&self, h: &CheckpointHold) -> Result<Hold, String> {
        let id = &h.reservation_id;
        let channel = ChannelId(self.names.intern(Kind::Channel, h.channel.as_str()));
        let mut lines: SmallVec<[HoldLine; 4]> = SmallVec::new();
        for line in &h.lines {
            let location = self
                .names
                .get(Kind::Location, line.location.as_str())
                .map(LocationId)
                .ok_or_else(|| format!("hold {id} on unknown location {}", line.location))?;
            let qty = u32::try_from(line.qty).map_err(|_| "hold qty exceeds u32")?;
            let hash = hash_key(line.sku.as_str());
            let shard_index = self.shard_of_hash(hash);
            let slot = lock(&self.positions[shard_index])
                .find(hash, line.sku.as_str())
                .ok_or_else(|| format!("hold {id} on unknown sku {}", line.sku))?;
            lines.push(HoldLine {
                sku: sku_slot(shard_index, slot),
                location,
                qty,
            });
        }
        Ok(Hold {
            lines: HoldLines::new(&lines),
            channel,
            state: h.state,
            placed_by: self.names.principal(h.placed_by.as_ref()),
            expires_at_ms: h.expires_at_ms,
            placed_lsn: h.placed_lsn,
            placed_at_ms: h.placed_at_ms,
            ended_lsn: Lsn::ZERO,
            ended_at_ms: h.ended_at_ms,
        })
    }

    fn load_key(&self, k: &CheckpointKey) -> Result<(), String> {
        let (_, record) = KeyRecord::unlisted(k.clone());
        if record.fingerprint.kind != k.key.kind {
            return Err(format!("key {} has a fingerprint of another kind", k.key));
        }
        let shard = self.shard_of(&k.key.id);
        if !kept_with_hold(k.key.kind) {
            lock(&self.keys[shard])
                .records
                .insert(k.key.clone(), record);
            return Ok(());
        }
        if !k.key.sub.is_empty() {
            return Err(format!("key {} has a sub id", k.key));
        }
        let mut shard = lock(&self.holds[shard]);
        let slot = shard.slot_or_insert(&k.key.id);
        load_hold_record(shard.entries.at_mut(slot), record, &self.names);
        Ok(())
    }
}

/// Puts a record kept with its hold back in the hold's entry: derived from the hold if
/// deriving gives it back exactly (the checkpoint was not necessarily written by this code),
/// stored whole otherwise.
pub(super) fn load_hold_record(
    entry: &mut HoldEntry,
    record: KeyRecord,
    names: &super::interner::Interner,
) {
    if let Some(hold) = &mut entry.hold
        && hold.state != HoldState::Open
        && hold.ended_lsn == Lsn::ZERO
        && hold.ended_at_ms == record.at_ms
        && matches!(
            record.outcome,
            Outcome::Committed { .. } | Outcome::Released | Outcome::Expired
        )
    {
        // Only the command that ended the hold has one of these outcomes.
        hold.ended_lsn = record.lsn;
    }
    let kind = record.fingerprint.kind;
    entry.set_record(
        record.fingerprint,
        record.lsn,
        record.at_ms,
        &record.outcome,
    );
    if entry.record(kind, names).as_ref() != Some(&record) {
        entry.store(record);
    }
}

/// An empty vector with room for `len` items and a little growth, its memory already written
/// once so that filling it later takes no page faults.
fn prefaulted<T>(len: usize) -> Vec<T> {
    // Room for what arrives between sizing and locking, so the fill rarely reallocates.
    let capacity = len + len / 16 + 16;
    let mut buffer = Vec::with_capacity(capacity);
    // One write per page is enough to fault it in.
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for place in buffer.spare_capacity_mut().iter_mut().step_by(per_page) {
        *place = std::mem::MaybeUninit::zeroed();
    }
    buffer
}
