//! The ledger's side of the key archive (`crate::archive`): which keys are archived (a
//! fingerprint set per shard), faulting an archived entry back in when a command or a read
//! names it, evicting what a checkpoint covers and memory no longer needs to hold, and
//! forgetting what is past retention on disk too.
//!
//! # The fingerprint sets
//! Each hold shard and key shard keeps the 32-bit fingerprints of the archived keys it owns, so
//! a lookup that misses memory reads the disk only when the fingerprint is there: a new key
//! (every new reservation id) costs one probe of a set and no read. A set is exact about what
//! it holds: two archived keys of one shard that share a fingerprint are counted (`shared`), so
//! removing one does not forget the other. At about 5 to 11 bytes a key (a `u32` and a control
//! byte per bucket, at hashbrown's load factor) 100 million archived keys take about 1 GB; a
//! false hit (a new key whose fingerprint an archived key of its shard has) costs one read,
//! with probability (archived keys per shard) / 2^32.
//!
//! # When an entry may leave memory
//! Only once a durable checkpoint covers its last change (`last_lsn < covered_below`), so that
//! an archived copy is always a state some checkpoint-and-replay passes through: recovery loads
//! the newest checkpoint (which may hold the entry too: memory wins) and replays the events
//! after it, and an event that touches an entry absent from the checkpoint finds the archived
//! copy, which is exactly the state before that event. A copy from after the checkpoint would
//! be applied twice, so a fault-in refuses one (`Corrupt`) instead of guessing.

use super::Ledger;
use super::checkpoint::listed_key;
use super::hold_entry::{HoldEntry, HoldShard};
use super::interner::Kind;
use super::records::{KeyRecord, KeyShard};
use super::table::hash_key;
use crate::archive::{self, ArchivedBytes, ArchivedEntry};
use crate::checkpoint::CheckpointHold;
use crate::command::{IdempotencyKey, Line};
use crate::error::LogError;
use crate::hold::{Hold, HoldState};
use crate::sync::lock;
use crate::types::*;
use foldhash::fast::FixedState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// The fingerprints of one shard's archived keys.
#[derive(Default)]
pub(super) struct FingerprintSet {
    fingerprints: HashSet<u32, FixedState>,
    /// Fingerprints held by more than one archived key: how many more.
    shared: HashMap<u32, u32, FixedState>,
}

impl FingerprintSet {
    pub fn may_contain(&self, fingerprint: u32) -> bool {
        self.fingerprints.contains(&fingerprint)
    }

    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    pub fn insert(&mut self, fingerprint: u32) {
        if !self.fingerprints.insert(fingerprint) {
            *self.shared.entry(fingerprint).or_default() += 1;
        }
    }

    pub fn remove(&mut self, fingerprint: u32) {
        match self.shared.get_mut(&fingerprint) {
            Some(more) if *more > 1 => *more -= 1,
            Some(_) => {
                self.shared.remove(&fingerprint);
            }
            None => {
                self.fingerprints.remove(&fingerprint);
            }
        }
    }

    /// Archived keys counted.
    pub fn len(&self) -> usize {
        self.fingerprints.len() + self.shared.values().map(|&n| n as usize).sum::<usize>()
    }

    /// Bytes the set's tables take (buckets, control bytes).
    pub fn bytes(&self) -> usize {
        self.fingerprints.capacity() * 5 + self.shared.capacity() * 9
    }
}

fn hasher() -> foldhash::fast::FoldHasher<'static> {
    FixedState::with_seed(0xa4c1_17e5).build_hasher()
}

/// The fingerprint of the archived entry of reservation `id` (`archive::hold_key`), computed
/// from its parts, without building the key.
pub(super) fn hold_fingerprint(id: &str) -> u32 {
    let mut h = hasher();
    h.write_u8(b'H');
    h.write(id.as_bytes());
    h.finish() as u32
}

/// The fingerprint of an archived key-shard record (`archive::record_key`), from its parts.
pub(super) fn record_fingerprint(key: &IdempotencyKey) -> u32 {
    let mut h = hasher();
    h.write_u8(b'K');
    h.write_u8(key.kind as u8);
    h.write(key.id.as_bytes());
    h.write(key.sub.as_bytes());
    h.finish() as u32
}

/// Which shard table an archive key belongs to, the shard's routing id, and its fingerprint.
enum Owner<'k> {
    Hold { id: &'k str, fingerprint: u32 },
    Record { id: &'k str, fingerprint: u32 },
}

/// Parses an archive key (`archive::hold_key` or `archive::record_key`).
fn owner(key: &[u8]) -> Result<Owner<'_>, LogError> {
    let bad = || {
        LogError::Corrupt(format!(
            "archive key {key:?} is not a key this engine writes"
        ))
    };
    fn text(bytes: &[u8]) -> Option<&str> {
        std::str::from_utf8(bytes).ok()
    }
    match key.split_first() {
        Some((b'H', id)) => {
            let id = text(id).ok_or_else(bad)?;
            Ok(Owner::Hold {
                id,
                fingerprint: hold_fingerprint(id),
            })
        }
        Some((b'K', rest)) if rest.len() >= 2 => {
            let (kind, len) = (rest[0], usize::from(rest[1]));
            let rest = &rest[2..];
            if rest.len() < len {
                return Err(bad());
            }
            let id = text(&rest[..len]).ok_or_else(bad)?;
            let sub = text(&rest[len..]).ok_or_else(bad)?;
            let mut h = hasher();
            h.write_u8(b'K');
            h.write_u8(kind);
            h.write(id.as_bytes());
            h.write(sub.as_bytes());
            Ok(Owner::Record {
                id,
                fingerprint: h.finish() as u32,
            })
        }
        _ => Err(bad()),
    }
}

/// What one eviction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Hold entries (ended holds and their records) moved to the archive.
    pub holds: usize,
    /// Key-shard records moved to the archive.
    pub records: usize,
}

/// What may be evicted in one pass.
#[derive(Debug, Clone, Copy)]
pub struct Eviction {
    /// The `next_lsn` of the newest durable checkpoint: only entries last changed below it.
    pub covered_below: Lsn,
    /// Only entries whose newest decision is older than this (engine clock, ms).
    pub older_than_ms: u64,
    /// At most this many entries in the pass.
    pub max: usize,
}

/// Entries handed to the archive per write (one durable transaction each).
const EVICT_BATCH: usize = 16_384;

/// Entries chosen for eviction and not yet written, in shard order.
#[derive(Default)]
struct Pending {
    /// (hold shard, reservation id, the entry's last LSN when chosen, its encoding).
    holds: Vec<(usize, ReservationId, Lsn, ArchivedBytes)>,
    /// (key shard, key, its encoding).
    records: Vec<(usize, IdempotencyKey, ArchivedBytes)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.holds.len() + self.records.len()
    }
}
/// Removals from one hold shard in one batch past which its index is rebuilt (when they are
/// also a quarter of what is left), and vacant slots past which the table is (when they are
/// also three times what is left).
const COMPACT_AFTER_REMOVALS: usize = 256;
/// Hold-table slots examined per lock: a pass never holds a hold shard for long.
const SCAN_SLOTS: u32 = 1_024;

impl Ledger {
    fn archive_or_none(&self) -> Option<&dyn archive::KeyArchive> {
        self.archive.as_deref()
    }

    /// The archived copy under `key`, checked to be from before the ledger's current LSN.
    fn archived_copy(&self, key: &[u8]) -> Result<Option<ArchivedEntry>, LogError> {
        let Some(archive) = self.archive_or_none() else {
            return Ok(None);
        };
        let Some(bytes) = archive.get(key)? else {
            return Ok(None);
        };
        let entry = archive::decode(&bytes)?;
        let next_lsn = lock(&self.sequencer).next_lsn;
        if entry.last_lsn() >= next_lsn {
            return Err(LogError::Corrupt(format!(
                "the archived entry {:?} was last changed at LSN {}, after the ledger's \
                 state (next LSN {next_lsn}): the key archive is ahead of the log",
                String::from_utf8_lossy(key),
                entry.last_lsn()
            )));
        }
        Ok(Some(entry))
    }

    /// Brings reservation `id`'s archived entry back into `shard` (which the caller has
    /// locked), if it has one; returns its slot. Position shards are locked one at a time to
    /// find the hold's skus, which the protocol allows (they come after hold shards).
    pub(super) fn fault_in_hold(
        &self,
        shard: &mut HoldShard,
        hash: u64,
        id: &str,
    ) -> Result<Option<u32>, LogError> {
        // A new id with nothing archived in its shard costs this one check.
        if shard.archived.is_empty() || !shard.archived.may_contain(hold_fingerprint(id)) {
            return Ok(None);
        }
        let Some(entry) = self.archived_copy(&archive::hold_key(id))? else {
            return Ok(None);
        };
        self.load_archived_hold(shard, hash, id, entry).map(Some)
    }

    /// Puts an archived hold entry into `shard` under `id`; returns its slot.
    fn load_archived_hold(
        &self,
        shard: &mut HoldShard,
        hash: u64,
        id: &str,
        entry: ArchivedEntry,
    ) -> Result<u32, LogError> {
        let ArchivedEntry::Hold { hold, records, .. } = entry else {
            return Err(LogError::Corrupt(format!(
                "the archive holds a record under reservation {id}'s key"
            )));
        };
        let slot = shard
            .entries
            .find_or_insert(hash, id, || HoldEntry::new(id));
        if let Some(h) = &hold {
            if h.state == HoldState::Open {
                return Err(LogError::Corrupt(format!(
                    "the archive holds hold {id} open"
                )));
            }
            // An ended hold has no place in its skus' ladders: only its lines are resolved.
            let hold = self.loaded_hold(h).map_err(LogError::Corrupt)?;
            let entry = shard.entries.at_mut(slot);
            entry.place(hold, &self.names);
            entry.ended_by = self.names.principal(h.ended_by.as_ref());
        }
        for k in records {
            let (_, record) = KeyRecord::unlisted(k);
            super::checkpoint::load_hold_record(shard.entries.at_mut(slot), record, &self.names);
        }
        Ok(slot)
    }

    /// Brings `key`'s archived record back into `shard` (locked by the caller), if it has one.
    pub(super) fn fault_in_record(
        &self,
        shard: &mut KeyShard,
        key: &IdempotencyKey,
    ) -> Result<(), LogError> {
        if shard.archived.is_empty()
            || !shard.archived.may_contain(record_fingerprint(key))
            || shard.records.contains_key(key)
        {
            return Ok(());
        }
        let Some(entry) = self.archived_copy(&archive::record_key(key))? else {
            return Ok(());
        };
        let ArchivedEntry::Record(k) = entry else {
            return Err(LogError::Corrupt(format!(
                "the archive holds a hold entry under key {key}"
            )));
        };
        if k.key != *key {
            return Err(LogError::Corrupt(format!(
                "the archive holds key {} under key {key}",
                k.key
            )));
        }
        let (key, record) = KeyRecord::unlisted(k);
        shard.records.insert(key, record);
        Ok(())
    }

    /// The archived form of a hold entry and its last change's LSN, if it may leave memory
    /// under `eviction`.
    fn evictable_hold(
        &self,
        entry: &HoldEntry,
        eviction: &Eviction,
    ) -> Option<(ArchivedBytes, Lsn)> {
        let hold = entry.hold.as_ref();
        if hold.is_some_and(|h| h.state == HoldState::Open) {
            return None;
        }
        let records = entry.records(&self.names);
        let mut last_lsn = Lsn::ZERO;
        let mut newest_at_ms = 0;
        if let Some(h) = hold {
            last_lsn = last_lsn.max(h.placed_lsn).max(h.ended_lsn);
            newest_at_ms = newest_at_ms.max(h.ended_at_ms);
        }
        for r in &records {
            last_lsn = last_lsn.max(r.lsn);
            newest_at_ms = newest_at_ms.max(r.at_ms);
        }
        if last_lsn >= eviction.covered_below || newest_at_ms >= eviction.older_than_ms {
            return None;
        }
        let listed = ArchivedEntry::Hold {
            reservation_id: entry.id.clone(),
            hold: hold.map(|h| self.listed_hold(entry, h)),
            records: records
                .into_iter()
                .map(|r| listed_key(entry.key_of(r.fingerprint.kind), r))
                .collect(),
            last_lsn,
        };
        let bytes = ArchivedBytes {
            key: archive::hold_key(entry.id.as_str()),
            newest_at_ms,
            value: archive::encode(&listed).ok()?,
        };
        Some((bytes, last_lsn))
    }

    /// A hold with names instead of interned ids; its skus' shards are locked one at a time.
    fn listed_hold(&self, entry: &HoldEntry, hold: &Hold) -> CheckpointHold {
        CheckpointHold {
            reservation_id: entry.id.clone(),
            channel: Channel(self.names.name(Kind::Channel, hold.channel.0)),
            lines: hold
                .lines
                .iter()
                .map(|l| Line {
                    sku: lock(&self.positions[l.sku.shard()])
                        .at(l.sku.slot)
                        .sku
                        .clone(),
                    location: Location(self.names.name(Kind::Location, l.location.0)),
                    qty: u64::from(l.qty),
                })
                .collect(),
            state: hold.state,
            expires_at_ms: hold.expires_at_ms,
            placed_lsn: hold.placed_lsn,
            placed_at_ms: hold.placed_at_ms,
            ended_at_ms: hold.ended_at_ms,
            placed_by: self.names.principal_name(hold.placed_by),
            ended_by: self.names.principal_name(entry.ended_by),
        }
    }

    /// Moves what `eviction` allows from memory to the archive: ended holds with their
    /// records, and key-shard records. Entries are chosen and encoded under their shard's lock
    /// (a bounded run of slots at a time, so writers wait little), written to the archive in
    /// batches of [`EVICT_BATCH`] (one durable transaction each, without any ledger lock), and
    /// then removed under the lock again unless a command changed them meanwhile (the archived
    /// copy is then an older state that memory overrides; a later pass replaces it).
    pub fn evict(&self, eviction: Eviction) -> Result<Evicted, LogError> {
        let mut evicted = Evicted::default();
        let Some(archive) = self.archive_or_none() else {
            return Ok(evicted);
        };
        let mut pending = Pending::default();
        let mut chosen = 0usize;
        let mut removed_from = vec![0usize; self.config.shards];
        'shards: for shard_index in 0..self.config.shards {
            let mut cursor = 0u32;
            loop {
                let room = eviction.max.saturating_sub(chosen);
                if room == 0 {
                    break 'shards;
                }
                let next = {
                    let shard = lock(&self.holds[shard_index]);
                    let mut next = None;
                    let mut taken = 0;
                    for (slot, entry) in shard.entries.iter_from(cursor) {
                        if slot >= cursor.saturating_add(SCAN_SLOTS) || taken >= room {
                            next = Some(slot);
                            break;
                        }
                        if let Some((bytes, last_lsn)) = self.evictable_hold(entry, &eviction) {
                            pending
                                .holds
                                .push((shard_index, entry.id.clone(), last_lsn, bytes));
                            taken += 1;
                        }
                    }
                    chosen += taken;
                    next
                };
                if pending.len() >= EVICT_BATCH {
                    self.flush_evicted(archive, &mut pending, &mut evicted, &mut removed_from)?;
                }
                match next {
                    Some(slot) => cursor = slot,
                    None => break,
                }
            }
            // Key-shard records: never changed once written, so nothing to re-check. Only
            // clones under the lock; encoding after it.
            let due: Vec<(IdempotencyKey, KeyRecord)> = {
                let shard = lock(&self.keys[shard_index]);
                shard
                    .records
                    .iter()
                    .filter(|(_, r)| {
                        r.lsn < eviction.covered_below && r.at_ms < eviction.older_than_ms
                    })
                    .take(eviction.max.saturating_sub(chosen))
                    .map(|(key, r)| (key.clone(), r.clone()))
                    .collect()
            };
            chosen += due.len();
            for (key, r) in due {
                let bytes = ArchivedBytes {
                    key: archive::record_key(&key),
                    newest_at_ms: r.at_ms,
                    value: archive::encode(&ArchivedEntry::Record(listed_key(key.clone(), r)))?,
                };
                pending.records.push((shard_index, key, bytes));
            }
            if pending.len() >= EVICT_BATCH {
                self.flush_evicted(archive, &mut pending, &mut evicted, &mut removed_from)?;
            }
        }
        self.flush_evicted(archive, &mut pending, &mut evicted, &mut removed_from)?;
        // Only now, with no cursor into a table left: a table left mostly vacant is rebuilt
        // densely (new entries would otherwise land in cold vacant slots); one with many
        // removals gets its index rebuilt (removals leave tombstones that every new id's
        // lookup probes past).
        for (shard_index, &removed) in removed_from.iter().enumerate() {
            if removed < COMPACT_AFTER_REMOVALS {
                continue;
            }
            let mut shard = lock(&self.holds[shard_index]);
            let vacant = shard.entries.vacant();
            if vacant >= 3 * shard.entries.len() {
                shard.compact();
            } else if removed * 4 >= shard.entries.len() {
                shard.entries.compact_index();
            }
        }
        Ok(evicted)
    }

    /// Writes `pending` to the archive, then drops from memory what did not change since it
    /// was chosen, and indexes the keys new to the archive.
    fn flush_evicted(
        &self,
        archive: &dyn archive::KeyArchive,
        pending: &mut Pending,
        evicted: &mut Evicted,
        removed_from: &mut [usize],
    ) -> Result<(), LogError> {
        if pending.len() == 0 {
            return Ok(());
        }
        let holds = std::mem::take(&mut pending.holds);
        let records = std::mem::take(&mut pending.records);
        let mut batch = Vec::with_capacity(holds.len() + records.len());
        let holds: Vec<(usize, ReservationId, Lsn)> = holds
            .into_iter()
            .map(|(shard, id, lsn, bytes)| {
                batch.push(bytes);
                (shard, id, lsn)
            })
            .collect();
        let records: Vec<(usize, IdempotencyKey)> = records
            .into_iter()
            .map(|(shard, key, bytes)| {
                batch.push(bytes);
                (shard, key)
            })
            .collect();
        // The answers come in `batch` order: the holds', then the records'.
        let mut new = archive.put(&batch)?.into_iter();
        let mut holds = holds.into_iter().zip(new.by_ref()).peekable();
        while let Some(&((shard_index, _, _), _)) = holds.peek() {
            let mut shard = lock(&self.holds[shard_index]);
            let mut removed = 0usize;
            while let Some(((_, id, last_lsn), new)) =
                holds.next_if(|((s, _, _), _)| *s == shard_index)
            {
                if new {
                    shard.archived.insert(hold_fingerprint(id.as_str()));
                }
                let hash = hash_key(id.as_str());
                let unchanged = shard
                    .entries
                    .get(hash, id.as_str())
                    .is_some_and(|e| entry_last_lsn(e, self) == last_lsn);
                if unchanged {
                    shard.entries.remove(hash, id.as_str());
                    evicted.holds += 1;
                    removed += 1;
                }
            }
            removed_from[shard_index] += removed;
        }
        let mut records = records.into_iter().zip(new).peekable();
        while let Some(&((shard_index, _), _)) = records.peek() {
            let mut shard = lock(&self.keys[shard_index]);
            while let Some(((_, key), new)) = records.next_if(|((s, _), _)| *s == shard_index) {
                if new {
                    shard.archived.insert(record_fingerprint(&key));
                }
                if shard.records.remove(&key).is_some() {
                    evicted.records += 1;
                }
            }
        }
        Ok(())
    }

    /// Forgets, on disk, up to `max` archived entries whose newest decision is past retention
    /// at `now_ms` (lookups already ignore their records). Returns how many went.
    pub fn purge_archive(&self, now_ms: u64, max: usize) -> Result<usize, LogError> {
        let Some(archive) = self.archive_or_none() else {
            return Ok(0);
        };
        let as_of_ms = now_ms.min(lock(&self.sequencer).last_at_ms);
        // The longest retention of any record: rejections may stay on disk up to it.
        let before_ms = as_of_ms.saturating_sub(self.config.key_retention_ms);
        let removed = archive.purge(before_ms, max)?;
        for key in &removed {
            self.forget_archived(key)?;
        }
        Ok(removed.len())
    }

    fn forget_archived(&self, key: &[u8]) -> Result<(), LogError> {
        match owner(key)? {
            Owner::Hold { id, fingerprint } => {
                lock(&self.holds[self.shard_of(id)])
                    .archived
                    .remove(fingerprint);
            }
            Owner::Record { id, fingerprint } => {
                lock(&self.keys[self.shard_of(id)])
                    .archived
                    .remove(fingerprint);
            }
        }
        Ok(())
    }

    /// Attaches `archive` and indexes every key it holds (recovery: the entries themselves
    /// stay on disk). Returns how many keys it holds.
    pub fn attach_archive(
        &mut self,
        archive: std::sync::Arc<dyn archive::KeyArchive>,
    ) -> Result<u64, LogError> {
        let mut error = None;
        let mut count = 0u64;
        archive.for_each_key(&mut |key| {
            if error.is_some() {
                return;
            }
            count += 1;
            match owner(key) {
                Ok(Owner::Hold { id, fingerprint }) => lock(&self.holds[self.shard_of(id)])
                    .archived
                    .insert(fingerprint),
                Ok(Owner::Record { id, fingerprint }) => lock(&self.keys[self.shard_of(id)])
                    .archived
                    .insert(fingerprint),
                Err(e) => error = Some(e),
            }
        })?;
        if let Some(error) = error {
            return Err(error);
        }
        self.archive = Some(archive);
        Ok(count)
    }

    /// What the attached archive holds; `None` without one.
    pub fn archive_stats(&self) -> Option<archive::ArchiveStats> {
        self.archive_or_none().map(|a| a.stats())
    }

    /// Archived keys the fingerprint sets count, and the bytes the sets take.
    pub fn archived_keys(&self) -> (usize, usize) {
        let mut keys = 0;
        let mut bytes = 0;
        for shard in self.holds.iter() {
            let shard = lock(shard);
            keys += shard.archived.len();
            bytes += shard.archived.bytes();
        }
        for shard in self.keys.iter() {
            let shard = lock(shard);
            keys += shard.archived.len();
            bytes += shard.archived.bytes();
        }
        (keys, bytes)
    }
}

/// An archived entry, in the ledger's own form (for the digest).
pub(super) enum Archived {
    Hold(HoldEntry),
    Record(IdempotencyKey, KeyRecord),
}

impl Ledger {
    /// Calls `visit` with every archived entry that memory does not hold (memory's copy wins).
    /// For digests: it reads the whole archive.
    pub(super) fn for_each_archived_only(
        &self,
        visit: &mut dyn FnMut(Archived),
    ) -> Result<(), LogError> {
        let Some(archive) = self.archive_or_none() else {
            return Ok(());
        };
        // Keys first: no ledger lock is taken while the archive iterates.
        let mut keys = Vec::new();
        archive.for_each_key(&mut |key| keys.push(key.to_vec()))?;
        for key in keys {
            let owner = owner(&key)?;
            let Some(bytes) = archive.get(&key)? else {
                continue;
            };
            match (owner, archive::decode(&bytes)?) {
                (Owner::Hold { id, .. }, entry) => {
                    let hash = hash_key(id);
                    if lock(&self.holds[self.shard_of(id)])
                        .entries
                        .find(hash, id)
                        .is_some()
                    {
                        continue;
                    }
                    let mut scratch = HoldShard::default();
                    let slot = self.load_archived_hold(&mut scratch, hash, id, entry)?;
                    visit(Archived::Hold(scratch.entries.at(slot).clone()));
                }
                (Owner::Record { id, .. }, ArchivedEntry::Record(k)) => {
                    if lock(&self.keys[self.shard_of(id)])
                        .records
                        .contains_key(&k.key)
                    {
                        continue;
                    }
                    let (key, record) = KeyRecord::unlisted(k);
                    visit(Archived::Record(key, record));
                }
                (Owner::Record { .. }, ArchivedEntry::Hold { .. }) => {
                    return Err(LogError::Corrupt(format!(
                        "the archive holds a hold entry under record key {key:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The LSN of a hold entry's last change: its hold's placing and ending, and its records.
fn entry_last_lsn(entry: &HoldEntry, ledger: &Ledger) -> Lsn {
    let mut last = Lsn::ZERO;
    if let Some(h) = &entry.hold {
        last = last.max(h.placed_lsn).max(h.ended_lsn);
    }
    for r in entry.records(&ledger.names) {
        last = last.max(r.lsn);
    }
    last
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_two_keys_share_is_forgotten_only_with_the_second() {
        let mut set = FingerprintSet::default();
        assert!(set.is_empty() && !set.may_contain(7));
        set.insert(7);
        set.insert(7);
        set.insert(9);
        assert_eq!(set.len(), 3);
        set.remove(7);
        assert!(
            set.may_contain(7),
            "the other key with fingerprint 7 is still archived"
        );
        set.remove(7);
        assert!(!set.may_contain(7));
        assert!(set.may_contain(9));
        assert_eq!(set.len(), 1);
        assert!(set.bytes() > 0);
    }

    #[test]
    fn archive_keys_parse_back_to_their_shard_id_and_fingerprint() {
        let key = IdempotencyKey {
            kind: crate::command::CommandKind::Adjust,
            id: "adj-1".into(),
            sub: "x".into(),
        };
        let record_key = archive::record_key(&key);
        let Ok(Owner::Record { id, fingerprint }) = owner(&record_key) else {
            panic!("a record key parses");
        };
        assert_eq!((id, fingerprint), ("adj-1", record_fingerprint(&key)));
        let hold_key = archive::hold_key("r-9");
        let Ok(Owner::Hold { id, fingerprint }) = owner(&hold_key) else {
            panic!("a hold key parses");
        };
        assert_eq!((id, fingerprint), ("r-9", hold_fingerprint("r-9")));
        assert!(owner(b"Kx").is_err() && owner(b"").is_err() && owner(b"Q1").is_err());
    }
}
