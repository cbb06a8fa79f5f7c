//! The ledger: every position, hold, idempotency key, return and store sequence, behind
//! sharded locks, and the one protocol that decides, sequences and applies a command.
//!
//! # The protocol
//! A command is decided while the ledger holds the locks of everything it reads or writes, in
//! one global order (which is why it cannot deadlock):
//!
//! 1. the idempotency-key shard of the command's key (unless the key is kept with its hold, see
//!    below),
//! 2. the hold shard of its reservation id,
//! 3. the returns table, then the stores table,
//! 4. the position shards of its skus, in ascending shard index,
//! 5. the sequencer (LSN counter and log append), taken last and briefly.
//!
//! Under those locks the ledger decides an [`Outcome`], takes the next LSN, appends the event to
//! the log, applies the event's effects, and records the outcome under the key. Because the
//! LSN is taken while every touched lock is held, LSN order agrees with the order of effects on
//! every position, hold and key, so replaying the log in LSN order reproduces the state.
//! Replay ([`Ledger::replay`]) runs steps 1 to 4 and the same apply code, without deciding.
//!
//! # Where outcomes are kept
//! The outcomes of Reserve, Commit and Release are keyed by (command, reservation id), so they
//! are kept in the hold shard's entry for that id, next to the hold, rather than in the key
//! shards: a reserve and its release then find and record everything in one table entry that
//! step 2 locks anyway, instead of three entries in two tables far beyond the CPU caches. The
//! retention rules are the key table's (a record is live while `at_ms + retention > now`), and
//! digests, checkpoints and purges count those records as keys. Every other keyed command
//! (Extend, whose key also has a request id, and the stock commands) uses the key shards.
//!
//! Most of those records repeat the hold: the reserve that placed it has the hold's LSN, time
//! and expiry, and the release or full commit that ended it has an outcome the end state
//! determines. So they are derived from the hold, which keeps the few fields they add (see
//! `HoldEntry`), and only the others are stored whole. A hold names its skus by their slot in
//! the position shards, not by name: an open single-line hold, its records and its index
//! entries come to about 175 to 210 bytes (`benches/src/bin/memory.rs`).
//!
//! Reads (`check`, `check_sku`) take one position-shard lock and never wait for the log or for
//! other shards. The location and channel name tables share a leaf lock (see `interner`).

mod checkpoint;
mod interner;
mod positions;
mod stores;
mod table;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use checkpoint::{
    Checkpoint, CheckpointHold, CheckpointKey, CheckpointPosition, CheckpointReturn, Cut,
};
pub use positions::Availability;
pub use stores::{StoreSequence, StoreStatus};

use crate::command::*;
use crate::error::{ReplayError, SubmitError};
use crate::event::Event;
use crate::hold::{Hold, HoldLine, HoldLines, HoldState, SkuSlot};
use crate::limits::{KEY_RETENTION_MS_DEFAULT, SHARDS_MAX};
use crate::log::EventLog;
use crate::outcome::{Outcome, ShortLine};
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, lock};
use crate::types::*;
use foldhash::fast::FixedState;
use interner::{Interner, Kind};
use positions::{LadderKey, PositionShard, SkuEntry};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use table::{DenseTable, Keyed, hash_key};

/// Sizing and retention, fixed when the ledger is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerConfig {
    /// Number of lock shards for positions, holds and keys; a power of two. More shards mean
    /// less contention between unrelated skus; 4x the core count is plenty.
    pub shards: usize,
    /// How long idempotency keys and ended holds are remembered.
    pub key_retention_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            key_retention_ms: KEY_RETENTION_MS_DEFAULT,
        }
    }
}

/// The answer to a submitted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The LSN of the event that recorded the outcome (for a retry: the original event's).
    pub lsn: Lsn,
    pub outcome: Outcome,
    /// True when this was a retry answered from the idempotency index.
    pub duplicate: bool,
}

/// A hold as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub reservation_id: String,
    pub channel: String,
    pub lines: Vec<Line>,
    /// `Expired` for an open hold whose TTL has passed, even before its expiry is recorded.
    pub state: HoldState,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    pub ended_at_ms: u64,
}

/// One position with names resolved, for reports, tests and digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionView {
    pub on_hand: i64,
    /// Sum of all open holds (including lapsed ones not yet expired by an event).
    pub reserved: i64,
    pub safety_stock: i64,
    pub quarantined: i64,
}

#[derive(Debug, Clone, PartialEq)]
struct KeyRecord {
    fingerprint: Fingerprint,
    lsn: Lsn,
    at_ms: u64,
    outcome: Outcome,
}

/// Whether a command's outcome is kept in the hold entry of its reservation id instead of the
/// key shards (see "Where outcomes are kept" in the module doc). Such keys are
/// `(kind, reservation id, "")`, and the key's id is the hold shard's id.
fn kept_with_hold(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::Reserve | CommandKind::Commit | CommandKind::Release
    )
}

/// The bit of `HoldEntry::derived` for a kind kept with its hold.
fn derived_bit(kind: CommandKind) -> u8 {
    match kind {
        CommandKind::Reserve => 1,
        CommandKind::Commit => 2,
        CommandKind::Release => 4,
        _ => 0,
    }
}

/// The hash a fingerprint gives an id field (`Command::fingerprint`'s, which a unit test pins).
fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The outcomes of every keyed command not kept with a hold.
#[derive(Default)]
struct KeyShard {
    records: HashMap<IdempotencyKey, KeyRecord, FixedState>,
}

/// Everything remembered under one reservation id. An entry exists while it holds a hold or a
/// record; both are dropped by purge once past retention (an open hold never is).
///
/// An open hold is kept for its TTL and an ended one for the retention window, so this entry
/// is what most of the ledger's memory is made of, and it is kept small (120 bytes, no
/// allocation for a single-line hold). The usual records are not stored but derived from the
/// hold, whose fields they repeat: the reserve that placed it (its LSN, time and outcome are
/// the hold's; only two fingerprint fields are kept), and the release or commit of every line
/// that ended it (`ended_lsn`, `ended_at_ms`, and an outcome the end state determines).
/// Other records (rejections, partial commits, answers about an ended hold) are stored whole.
#[derive(Clone)]
struct HoldEntry {
    id: ReservationId,
    /// The hold placed under this id; `None` after an insufficient reserve, or once the ended
    /// hold was purged while a later record under the id is still retained.
    hold: Option<Hold>,
    /// Which records are derived from `hold` (`derived_bit` of their kind).
    derived: u8,
    /// The placing reserve's fingerprint fields the hold does not carry: its lines' hash and
    /// its TTL (at most `TTL_MS_MAX`, so 32 bits).
    reserve_lines_hash: u64,
    reserve_ttl_ms: u32,
    /// Records that are not derived, at most one per kind (and none of a derived kind).
    #[allow(
        clippy::box_collection,
        reason = "boxed, the usual entry (with none) spends 8 bytes on them instead of 24"
    )]
    stored: Option<Box<Vec<KeyRecord>>>,
}

impl Keyed for HoldEntry {
    fn key(&self) -> &str {
        self.id.as_str()
    }
}

impl HoldEntry {
    fn new(id: &str) -> Self {
        Self {
            id: ReservationId::from(id),
            hold: None,
            derived: 0,
            reserve_lines_hash: 0,
            reserve_ttl_ms: 0,
            stored: None,
        }
    }

    fn stored(&self) -> &[KeyRecord] {
        self.stored.as_deref().map_or(&[], Vec::as_slice)
    }

    /// When the record under `kind` was decided, if there is one (live or not).
    fn record_at_ms(&self, kind: CommandKind) -> Option<u64> {
        if self.derived & derived_bit(kind) == 0 {
            return self
                .stored()
                .iter()
                .find(|r| r.fingerprint.kind == kind)
                .map(|r| r.at_ms);
        }
        let hold = self.hold.as_ref().expect("derived records have their hold");
        Some(match kind {
            CommandKind::Reserve => hold.placed_at_ms,
            _ => hold.ended_at_ms,
        })
    }

    /// The record under `kind`, live or not. `names` gives the channel of a derived reserve.
    fn record(&self, kind: CommandKind, names: &Interner) -> Option<KeyRecord> {
        if self.derived & derived_bit(kind) == 0 {
            return self
                .stored()
                .iter()
                .find(|r| r.fingerprint.kind == kind)
                .cloned();
        }
        let hold = self.hold.as_ref().expect("derived records have their hold");
        let mut fields = [0u64; FINGERPRINT_FIELDS_MAX];
        fields[0] = id_hash(self.id.as_str());
        let fingerprint = |fields| Fingerprint { kind, fields };
        Some(match kind {
            CommandKind::Reserve => {
                fields[1] = id_hash(&names.name(Kind::Channel, hold.channel.0));
                fields[2] = self.reserve_lines_hash;
                fields[3] = u64::from(self.reserve_ttl_ms);
                KeyRecord {
                    fingerprint: fingerprint(fields),
                    lsn: hold.placed_lsn,
                    at_ms: hold.placed_at_ms,
                    outcome: Outcome::Granted {
                        expires_at_ms: hold
                            .placed_at_ms
                            .saturating_add(u64::from(self.reserve_ttl_ms)),
                    },
                }
            }
            _ => {
                let outcome = match hold.state {
                    HoldState::Committed => Outcome::Committed {
                        committed: hold.lines.iter().map(|l| u64::from(l.qty)).collect(),
                    },
                    HoldState::Released => Outcome::Released,
                    HoldState::Expired => Outcome::Expired,
                    HoldState::Open => unreachable!("an end record is derived from an ended hold"),
                };
                if kind == CommandKind::Commit {
                    // A commit of every line: see `Command::fingerprint`.
                    fields[1] = u64::MAX;
                }
                KeyRecord {
                    fingerprint: fingerprint(fields),
                    lsn: hold.ended_lsn,
                    at_ms: hold.ended_at_ms,
                    outcome,
                }
            }
        })
    }

    /// Every record of this entry, live or not.
    fn records(&self, names: &Interner) -> SmallVec<[KeyRecord; 3]> {
        let mut records: SmallVec<[KeyRecord; 3]> = SmallVec::new();
        for kind in [
            CommandKind::Reserve,
            CommandKind::Commit,
            CommandKind::Release,
        ] {
            if self.derived & derived_bit(kind) != 0 {
                records.extend(self.record(kind, names));
            }
        }
        records.extend(self.stored().iter().cloned());
        records
    }

    /// Whether the hold determines a record with these parts, so that it can be derived: the
    /// reserve that placed the hold, or the commit of every line or release that ended it.
    /// (The reserve's channel is the hold's by construction; `from_checkpoint`, whose input
    /// is not built here, compares the derived record with the listed one.)
    fn derivable(
        &self,
        fingerprint: &Fingerprint,
        lsn: Lsn,
        at_ms: u64,
        outcome: &Outcome,
    ) -> bool {
        let Some(hold) = &self.hold else {
            return false;
        };
        let fields = &fingerprint.fields;
        match fingerprint.kind {
            CommandKind::Reserve => {
                hold.placed_lsn == lsn
                    && hold.placed_at_ms == at_ms
                    && fields[3] <= u64::from(u32::MAX)
                    && fields[4..].iter().all(|&f| f == 0)
                    && *outcome
                        == Outcome::Granted {
                            expires_at_ms: at_ms.saturating_add(fields[3]),
                        }
            }
            CommandKind::Commit | CommandKind::Release => {
                let commit = fingerprint.kind == CommandKind::Commit;
                let ended_here = hold.ended_lsn == lsn
                    && lsn != Lsn::ZERO
                    && hold.ended_at_ms == at_ms
                    && (!commit || fields[1] == u64::MAX)
                    && fields[if commit { 2 } else { 1 }..].iter().all(|&f| f == 0);
                ended_here
                    && match (hold.state, outcome) {
                        (HoldState::Expired, Outcome::Expired) => true,
                        (HoldState::Released, Outcome::Released) => !commit,
                        (HoldState::Committed, Outcome::Committed { committed }) => {
                            commit
                                && committed.len() == hold.lines.len()
                                && committed
                                    .iter()
                                    .zip(hold.lines.iter())
                                    .all(|(&c, l)| c == u64::from(l.qty))
                        }
                        _ => false,
                    }
            }
            _ => false,
        }
    }

    /// Records an outcome under its kind, replacing a previous record of that kind (which a
    /// retried command only gets past once it is out of retention): derived from the hold if
    /// the hold determines it, stored otherwise.
    fn set_record(&mut self, fingerprint: Fingerprint, lsn: Lsn, at_ms: u64, outcome: &Outcome) {
        let kind = fingerprint.kind;
        let bit = derived_bit(kind);
        debug_assert!(bit != 0, "{kind:?} is not kept with a hold");
        self.derived &= !bit;
        self.remove_stored(kind);
        if self.derivable(&fingerprint, lsn, at_ms, outcome) {
            self.derived |= bit;
            if kind == CommandKind::Reserve {
                self.reserve_lines_hash = fingerprint.fields[2];
                self.reserve_ttl_ms =
                    u32::try_from(fingerprint.fields[3]).expect("derivable checked the ttl");
            }
        } else {
            self.store(KeyRecord {
                fingerprint,
                lsn,
                at_ms,
                outcome: outcome.clone(),
            });
        }
    }

    /// Stores `record` whole (replacing any record of its kind, derived or stored).
    fn store(&mut self, record: KeyRecord) {
        let kind = record.fingerprint.kind;
        self.derived &= !derived_bit(kind);
        self.remove_stored(kind);
        self.stored.get_or_insert_default().push(record);
    }

    fn remove_stored(&mut self, kind: CommandKind) {
        if let Some(stored) = &mut self.stored {
            stored.retain(|r| r.fingerprint.kind != kind);
            if stored.is_empty() {
                self.stored = None;
            }
        }
    }

    /// Puts a newly placed hold in the entry. Records derived from a previous hold are stored
    /// whole first: they are past retention (as that hold is), but stay until a purge.
    fn place(&mut self, hold: Hold, names: &Interner) {
        if self.derived != 0 {
            for record in self.records(names) {
                if self.derived & derived_bit(record.fingerprint.kind) != 0 {
                    self.store(record);
                }
            }
        }
        self.hold = Some(hold);
    }

    /// Drops the records and the ended hold that `retained` (given a decision time) says are
    /// past retention; returns how many went.
    fn purge(&mut self, retained: impl Fn(u64) -> bool) -> usize {
        let mut purged = 0;
        for kind in [
            CommandKind::Reserve,
            CommandKind::Commit,
            CommandKind::Release,
        ] {
            let bit = derived_bit(kind);
            if self.derived & bit != 0
                && !retained(self.record_at_ms(kind).expect("a derived record"))
            {
                self.derived &= !bit;
                purged += 1;
            }
        }
        if let Some(stored) = &mut self.stored {
            let before = stored.len();
            stored.retain(|r| retained(r.at_ms));
            purged += before - stored.len();
            if stored.is_empty() {
                self.stored = None;
            } else {
                stored.shrink_to_fit();
            }
        }
        if self
            .hold
            .as_ref()
            .is_some_and(|h| h.state != HoldState::Open && !retained(h.ended_at_ms))
        {
            // Its derived records were decided no later than it ended, so they went above.
            debug_assert_eq!(self.derived, 0, "derived records outlive their hold");
            self.derived = 0;
            self.hold = None;
            purged += 1;
        }
        purged
    }

    fn is_empty(&self) -> bool {
        self.hold.is_none() && self.derived == 0 && self.stored.is_none()
    }

    /// The key a record of this entry would have in the key shards.
    fn key_of(&self, kind: CommandKind) -> IdempotencyKey {
        IdempotencyKey {
            kind,
            id: self.id.0.clone(),
            sub: Default::default(),
        }
    }

    /// The entry's own consistency (for `check_invariants`).
    fn check(&self, names: &Interner) -> Result<(), String> {
        let id = &self.id;
        if self.is_empty() {
            return Err(format!("hold entry {id} is empty but kept"));
        }
        if self.derived & !7 != 0 {
            return Err(format!("{id}: unknown derived bits {:#x}", self.derived));
        }
        if self.derived != 0 && self.hold.is_none() {
            return Err(format!(
                "{id}: records derived from a hold it does not have"
            ));
        }
        if self.stored.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(format!("{id}: an empty record list is kept"));
        }
        let stored = self.stored();
        for (i, r) in stored.iter().enumerate() {
            let kind = r.fingerprint.kind;
            if !kept_with_hold(kind) {
                return Err(format!("{id}: a {kind:?} record kept with a hold"));
            }
            if self.derived & derived_bit(kind) != 0
                || stored[..i].iter().any(|p| p.fingerprint.kind == kind)
            {
                return Err(format!("{id}: two {kind:?} records"));
            }
        }
        for r in self.records(names) {
            if r.fingerprint.fields[0] != id_hash(id.as_str()) {
                return Err(format!(
                    "{id}: a {:?} record of another id",
                    r.fingerprint.kind
                ));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct HoldShard {
    entries: DenseTable<HoldEntry>,
    /// Open holds by expiry, to their entry's slot: what the expiry sweep walks.
    expiry: BTreeMap<(u64, Lsn), u32>,
}

impl HoldShard {
    fn entry(&self, id: &str) -> Option<&HoldEntry> {
        self.entries.get(hash_key(id), id)
    }

    /// The slot of the entry for `id`, created empty if there is none.
    fn slot_or_insert(&mut self, id: &str) -> u32 {
        self.entries
            .find_or_insert(hash_key(id), id, || HoldEntry::new(id))
    }
}

#[derive(Clone)]
struct ReturnRecord {
    at_ms: u64,
    /// Units still in quarantine per position, from this return's INSPECT lines.
    quarantined: Vec<(Sku, LocationId, u64)>,
}

#[derive(Default)]
struct Returns {
    by_id: HashMap<ReturnId, ReturnRecord, FixedState>,
}

#[derive(Default)]
struct Stores {
    by_id: BTreeMap<StoreId, StoreSequence>,
}

struct Sequencer {
    next_lsn: Lsn,
    /// Latest decision time seen; the "as of" time for retention in digests and purges.
    last_at_ms: u64,
    failure: Option<String>,
}

/// The sku in slot `slot` of position shard `shard`.
fn sku_slot(shard: usize, slot: u32) -> SkuSlot {
    SkuSlot {
        shard: u16::try_from(shard).expect("at most SHARDS_MAX shards"),
        slot,
    }
}

/// The locks one command holds, acquired in the protocol's order.
struct Scope<'a> {
    keys: Option<MutexGuard<'a, KeyShard>>,
    holds: Option<MutexGuard<'a, HoldShard>>,
    /// The slot of the command's reservation entry in `holds`, looked up once when the shard is
    /// locked (and set when the command creates the entry). Stable while the lock is held.
    hold_slot: Option<u32>,
    returns: Option<MutexGuard<'a, Returns>>,
    stores: Option<MutexGuard<'a, Stores>>,
    positions: SmallVec<[(usize, MutexGuard<'a, PositionShard>); 2]>,
    /// A reserve's lines, resolved once for deciding and applying.
    reserve_lines: SmallVec<[ResolvedLine; 4]>,
    /// A reserve's channel, if its name is known yet.
    reserve_channel: Option<ChannelId>,
}

/// Where a reserve line's position is, as far as it exists.
#[derive(Clone, Copy)]
struct ResolvedLine {
    /// The position shard of the line's sku.
    shard: usize,
    /// The sku's slot in that shard (`None`: the sku has no position anywhere).
    sku: Option<u32>,
    /// `None`: a location name never seen, so no position there.
    location: Option<LocationId>,
}

impl Scope<'_> {
    /// Availability of a resolved reserve line's position; `None` if it does not exist.
    fn availability(&mut self, line: ResolvedLine, now_ms: u64) -> Option<Availability> {
        let entry = self.shard(line.shard).at(line.sku?);
        entry.availability(line.location?, now_ms)
    }

    fn shard(&mut self, index: usize) -> &mut PositionShard {
        let (_, guard) = self
            .positions
            .iter_mut()
            .find(|(i, _)| *i == index)
            .expect("the scope locked every shard its command touches");
        guard
    }

    /// The position shard `index`, if the scope locked it.
    fn shard_ref(&self, index: usize) -> Option<&PositionShard> {
        self.positions
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, guard)| &**guard)
    }

    /// The entry of a hold line's sku (whose shard the scope locked).
    fn sku_entry(&mut self, sku: SkuSlot) -> &mut SkuEntry {
        self.shard(sku.shard()).at_mut(sku.slot)
    }

    /// When the record under `key` was decided, if there is one (live or not).
    fn record_at_ms(&self, key: &IdempotencyKey) -> Option<u64> {
        if kept_with_hold(key.kind) {
            self.hold_entry()?.record_at_ms(key.kind)
        } else {
            self.key_shard().records.get(key).map(|r| r.at_ms)
        }
    }

    /// The record kept under `key`, live or not.
    fn record(&self, key: &IdempotencyKey, names: &Interner) -> Option<KeyRecord> {
        if kept_with_hold(key.kind) {
            self.hold_entry()?.record(key.kind, names)
        } else {
            self.key_shard().records.get(key).cloned()
        }
    }

    fn key_shard(&self) -> &KeyShard {
        self.keys
            .as_ref()
            .expect("keyed commands lock their key shard")
    }

    /// Remembers `event`'s outcome under its idempotency key, so a retry gets it back.
    fn record_outcome(&mut self, key: IdempotencyKey, fingerprint: Fingerprint, event: &Event) {
        if kept_with_hold(key.kind) {
            let slot = self.hold_slot_or_insert(&key.id);
            let entry = self.holds().entries.at_mut(slot);
            entry.set_record(fingerprint, event.lsn, event.at_ms, &event.outcome);
        } else {
            let record = KeyRecord {
                fingerprint,
                lsn: event.lsn,
                at_ms: event.at_ms,
                outcome: event.outcome.clone(),
            };
            self.keys
                .as_mut()
                .expect("keyed commands lock their key shard")
                .records
                .insert(key, record);
        }
    }

    fn holds(&mut self) -> &mut HoldShard {
        self.holds
            .as_mut()
            .expect("hold commands lock their hold shard")
    }

    /// The command's reservation entry, if it has one.
    fn hold_entry(&self) -> Option<&HoldEntry> {
        let holds = self
            .holds
            .as_ref()
            .expect("hold commands lock their hold shard");
        Some(holds.entries.at(self.hold_slot?))
    }

    fn hold(&self) -> Option<&Hold> {
        self.hold_entry()?.hold.as_ref()
    }

    fn hold_mut(&mut self) -> Option<&mut Hold> {
        let slot = self.hold_slot?;
        self.holds().entries.at_mut(slot).hold.as_mut()
    }

    /// The slot of the command's reservation entry (whose id is `id`), created if needed.
    fn hold_slot_or_insert(&mut self, id: &str) -> u32 {
        match self.hold_slot {
            Some(slot) => slot,
            None => {
                let slot = self.holds().slot_or_insert(id);
                self.hold_slot = Some(slot);
                slot
            }
        }
    }
}

pub struct Ledger {
    config: LedgerConfig,
    positions: Box<[Mutex<PositionShard>]>,
    holds: Box<[Mutex<HoldShard>]>,
    keys: Box<[Mutex<KeyShard>]>,
    returns: Mutex<Returns>,
    stores: Mutex<Stores>,
    /// Location and channel names.
    names: Interner,
    sequencer: Mutex<Sequencer>,
    /// Set once the log fails; checked without a lock on every submit.
    failed: AtomicBool,
    /// The latest decision time so far. Every decision is made at `max(now_ms, floor)` and
    /// raises the floor while its locks are held, so decision time never runs backwards
    /// along LSN order on any position or hold: a thread preempted between reading the clock
    /// and locking (or a wall clock stepping back) cannot commit a hold whose units a later
    /// decision already treated as lapsed and granted again.
    time_floor_ms: AtomicU64,
    log: Arc<dyn EventLog>,
}

fn shards_of<T: Default>(count: usize) -> Box<[Mutex<T>]> {
    (0..count).map(|_| Mutex::new(T::default())).collect()
}

impl Ledger {
    /// An empty ledger that appends its events to `log`.
    pub fn new(config: LedgerConfig, log: Arc<dyn EventLog>) -> Self {
        assert!(
            config.shards.is_power_of_two(),
            "shards must be a power of two"
        );
        assert!(config.shards <= SHARDS_MAX, "at most {SHARDS_MAX} shards");
        Self {
            config,
            positions: shards_of(config.shards),
            holds: shards_of(config.shards),
            keys: shards_of(config.shards),
            returns: Mutex::new(Returns::default()),
            stores: Mutex::new(Stores::default()),
            names: Interner::default(),
            sequencer: Mutex::new(Sequencer {
                next_lsn: Lsn(1),
                last_at_ms: 0,
                failure: None,
            }),
            failed: AtomicBool::new(false),
            time_floor_ms: AtomicU64::new(0),
            log,
        }
    }

    pub fn config(&self) -> LedgerConfig {
        self.config
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The LSN the next accepted event will get.
    pub fn next_lsn(&self) -> Lsn {
        lock(&self.sequencer).next_lsn
    }

    /// Why the ledger stopped accepting writes, if it has.
    pub fn failure(&self) -> Option<String> {
        lock(&self.sequencer).failure.clone()
    }

    fn shard_of(&self, s: &str) -> usize {
        self.shard_of_hash(hash_key(s))
    }

    /// The shard of a key whose `hash_key` is `hash`.
    fn shard_of_hash(&self, hash: u64) -> usize {
        // High bits: the tables inside the shard use the low ones.
        (hash >> 40) as usize & (self.config.shards - 1)
    }

    /// `max(now_ms, floor)`, raising the floor to it. Called with the command's locks held.
    fn raise_time_floor(&self, now_ms: u64) -> u64 {
        // Most decisions are not later than the floor (the clock has not ticked since the
        // last one): a load, not a read-modify-write, is enough for them. Whatever an earlier
        // decision under any of these locks raised the floor to happens-before this load (the
        // locks order them), so it is seen.
        let floor = self.time_floor_ms.load(Ordering::Acquire);
        if now_ms <= floor {
            return floor;
        }
        self.time_floor_ms
            .fetch_max(now_ms, Ordering::AcqRel)
            .max(now_ms)
    }

    /// Reads judge expiry no earlier than the latest decision, for the same reason.
    fn read_time(&self, now_ms: u64) -> u64 {
        now_ms.max(self.time_floor_ms.load(Ordering::Acquire))
    }

    fn retained(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.config.key_retention_ms) > now_ms
    }

    // ----------------------------------------------------------------------------------------
    // Locking

    fn lock_scope(&self, command: &Command, key: Option<&IdempotencyKey>) -> Scope<'_> {
        let keys = key
            .filter(|k| !kept_with_hold(k.kind))
            .map(|k| lock(&self.keys[self.shard_of(&k.id)]));
        let reservation_id = match command {
            Command::Reserve(c) => Some(&c.reservation_id),
            Command::Commit(c) => Some(&c.reservation_id),
            Command::Release(c) => Some(&c.reservation_id),
            Command::Extend(c) => Some(&c.reservation_id),
            Command::Expire(c) => Some(&c.reservation_id),
            _ => None,
        };
        let hold_hash = reservation_id.map(|id| hash_key(id.as_str()));
        let holds = hold_hash.map(|hash| lock(&self.holds[self.shard_of_hash(hash)]));
        let hold_slot = holds
            .as_ref()
            .zip(reservation_id.zip(hold_hash))
            .and_then(|(holds, (id, hash))| holds.entries.find(hash, id.as_str()));
        let returns = matches!(command, Command::RecordReturn(_) | Command::Dispose(_))
            .then(|| lock(&self.returns));
        let stores = matches!(command, Command::RecordSale(_)).then(|| lock(&self.stores));

        // A reserve's sku hashes, kept to find the skus once their shards are locked.
        let reserve_hashes: SmallVec<[u64; 4]> = match command {
            Command::Reserve(c) => c.lines.iter().map(|l| hash_key(l.sku.as_str())).collect(),
            _ => SmallVec::new(),
        };
        let mut shard_indexes: SmallVec<[usize; 4]> = SmallVec::new();
        match command {
            Command::Reserve(_) => {
                shard_indexes.extend(reserve_hashes.iter().map(|&h| self.shard_of_hash(h)));
            }
            Command::RecordSale(RecordSale { lines, .. }) => {
                shard_indexes.extend(lines.iter().map(|l| self.shard_of(l.sku.as_str())));
            }
            Command::RecordReturn(c) => {
                shard_indexes.extend(c.lines.iter().map(|l| self.shard_of(l.sku.as_str())));
            }
            Command::Dispose(Dispose { sku, .. })
            | Command::Adjust(Adjust { sku, .. })
            | Command::SetSafetyStock(SetSafetyStock { sku, .. }) => {
                shard_indexes.push(self.shard_of(sku.as_str()));
            }
            Command::Commit(_) | Command::Release(_) | Command::Extend(_) | Command::Expire(_) => {
                let hold = holds
                    .as_ref()
                    .zip(hold_slot)
                    .and_then(|(holds, slot)| holds.entries.at(slot).hold.as_ref());
                if let Some(hold) = hold {
                    shard_indexes.extend(hold.lines.iter().map(|l| l.sku.shard()));
                }
            }
        }
        // Ascending order is the deadlock-freedom argument: every thread that needs two shards
        // takes the lower one first.
        shard_indexes.sort_unstable();
        shard_indexes.dedup();
        let positions = shard_indexes
            .into_iter()
            .map(|i| (i, lock(&self.positions[i])))
            .collect();
        let mut scope = Scope {
            keys,
            holds,
            hold_slot,
            returns,
            stores,
            positions,
            reserve_lines: SmallVec::new(),
            reserve_channel: None,
        };
        if let Command::Reserve(c) = command {
            // Names are looked up once the position shards are locked: a position is created
            // (and its location named) under its shard's lock, so every position an earlier
            // command created is seen.
            let (channel, locations) = self.names.get_reserve(
                c.channel.as_str(),
                c.lines.iter().map(|l| l.location.as_str()),
            );
            scope.reserve_channel = channel.map(ChannelId);
            for ((line, location), hash) in c.lines.iter().zip(locations).zip(reserve_hashes) {
                let shard = self.shard_of_hash(hash);
                let sku = scope.shard(shard).find(hash, line.sku.as_str());
                scope.reserve_lines.push(ResolvedLine {
                    shard,
                    sku,
                    location: location.map(LocationId),
                });
            }
        }
        scope
    }

    // ----------------------------------------------------------------------------------------
    // Writes

    /// Decides `command` at `now_ms`, appends its event to the log and applies it. Returns once
    /// the event is appended (not necessarily durable: see [`EventLog::wait_durable`]).
    pub fn submit(&self, command: Command, now_ms: u64) -> Result<Receipt, SubmitError> {
        command.validate()?;
        if self.failed.load(Ordering::Acquire) {
            return Err(SubmitError::FailStopped(
                self.failure().unwrap_or_else(|| "log failure".to_owned()),
            ));
        }
        let key = command.idempotency_key();
        let mut scope = self.lock_scope(&command, key.as_ref());
        let now_ms = self.raise_time_floor(now_ms);
        let fingerprint = command.fingerprint();

        if let Some(key) = &key
            && scope
                .record_at_ms(key)
                .is_some_and(|at_ms| self.retained(at_ms, now_ms))
            && let Some(record) = scope.record(key, &self.names)
        {
            if let Some(field) = record.fingerprint.differing_field(&fingerprint) {
                return Err(SubmitError::KeyConflict {
                    key: key.to_string(),
                    field,
                });
            }
            let receipt = Receipt {
                lsn: record.lsn,
                outcome: record.outcome,
                duplicate: true,
            };
            if let Command::RecordSale(sale) = &command
                && let Some(store) = scope
                    .stores
                    .as_mut()
                    .and_then(|s| s.by_id.get_mut(&sale.store_id))
            {
                store.duplicates_absorbed += 1;
            }
            return Ok(receipt);
        }

        let outcome = self.decide(&mut scope, &command, now_ms)?;

        let event = {
            let mut sequencer = lock(&self.sequencer);
            if let Some(failure) = &sequencer.failure {
                return Err(SubmitError::FailStopped(failure.clone()));
            }
            let event = Arc::new(Event {
                lsn: sequencer.next_lsn,
                at_ms: now_ms,
                command,
                outcome,
            });
            if let Err(error) = self.log.append(&event) {
                sequencer.failure = Some(error.to_string());
                self.failed.store(true, Ordering::Release);
                return Err(SubmitError::Log(error));
            }
            sequencer.next_lsn = sequencer.next_lsn.next();
            sequencer.last_at_ms = sequencer.last_at_ms.max(now_ms);
            event
        };

        self.apply(&mut scope, &event)
            .expect("an event decided under these locks applies to them");
        if let Some(key) = key {
            scope.record_outcome(key, fingerprint, &event);
        }
        Ok(Receipt {
            lsn: event.lsn,
            outcome: event.outcome.clone(),
            duplicate: false,
        })
    }

    /// Applies a recorded event without deciding anything. Events must arrive in LSN order,
    /// starting at the ledger's `next_lsn`.
    pub fn replay(&self, event: &Event) -> Result<(), ReplayError> {
        let key = event.command.idempotency_key();
        let mut scope = self.lock_scope(&event.command, key.as_ref());
        {
            let mut sequencer = lock(&self.sequencer);
            if event.lsn != sequencer.next_lsn {
                return Err(ReplayError::Gap {
                    expected: sequencer.next_lsn,
                    found: event.lsn,
                });
            }
            sequencer.next_lsn = sequencer.next_lsn.next();
            sequencer.last_at_ms = sequencer.last_at_ms.max(event.at_ms);
        }
        self.raise_time_floor(event.at_ms);
        self.apply(&mut scope, event)
            .map_err(|reason| ReplayError::Inapplicable {
                lsn: event.lsn,
                reason,
            })?;
        if let Some(key) = key {
            scope.record_outcome(key, event.command.fingerprint(), event);
        }
        Ok(())
    }

    /// Replays every event of `log` from LSN 1 into this (empty) ledger.
    pub fn replay_log(&self, log: &dyn EventLog) -> Result<u64, ReplayError> {
        const BATCH: usize = 4_096;
        let mut replayed = 0u64;
        loop {
            let events = log.read_from(self.next_lsn(), BATCH)?;
            if events.is_empty() {
                return Ok(replayed);
            }
            for event in &events {
                self.replay(event)?;
                replayed += 1;
            }
        }
    }

    /// Expires up to `batch_max` holds whose TTL has passed at `now_ms`, each as its own
    /// event. Returns how many were expired.
    pub fn expire_due(&self, now_ms: u64, batch_max: usize) -> Result<usize, SubmitError> {
        let mut due: Vec<ReservationId> = Vec::new();
        for shard in self.holds.iter() {
            let remaining = batch_max - due.len();
            if remaining == 0 {
                break;
            }
            let shard = lock(shard);
            due.extend(
                shard
                    .expiry
                    .range(..=(now_ms, Lsn(u64::MAX)))
                    .take(remaining)
                    .map(|(_, &slot)| shard.entries.at(slot).id.clone()),
            );
        }
        let mut expired = 0;
        for reservation_id in due {
            match self.submit(Command::Expire(Expire { reservation_id }), now_ms) {
                Ok(_) => expired += 1,
                // Committed, released or extended since we looked: nothing to expire.
                Err(SubmitError::Invalid { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(expired)
    }

    /// Forgets idempotency keys, ended holds and fully disposed returns older than the
    /// retention window. Lookups already ignore them, so this only frees memory.
    pub fn purge(&self, now_ms: u64) -> usize {
        // Never purge past the latest event time: digests judge retention as of that time.
        let as_of_ms = now_ms.min(lock(&self.sequencer).last_at_ms);
        let mut purged = 0;
        for shard in self.keys.iter() {
            let mut shard = lock(shard);
            let before = shard.records.len();
            shard
                .records
                .retain(|_, r| r.at_ms.saturating_add(self.config.key_retention_ms) > as_of_ms);
            purged += before - shard.records.len();
        }
        for shard in self.holds.iter() {
            let mut shard = lock(shard);
            shard.entries.retain(|entry| {
                purged += entry.purge(|at_ms| self.retained(at_ms, as_of_ms));
                !entry.is_empty()
            });
        }
        let mut returns = lock(&self.returns);
        let before = returns.by_id.len();
        returns.by_id.retain(|_, r| {
            r.quarantined.iter().any(|(_, _, q)| *q > 0)
                || r.at_ms.saturating_add(self.config.key_retention_ms) > as_of_ms
        });
        purged + before - returns.by_id.len()
    }

    // ----------------------------------------------------------------------------------------
    // Deciding

    /// `hold` if it is open or ended within the retention window.
    fn live_hold<'s>(&self, hold: Option<&'s Hold>, now_ms: u64) -> Option<&'s Hold> {
        hold.filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
    }

    fn decide(
        &self,
        scope: &mut Scope<'_>,
        command: &Command,
        now_ms: u64,
    ) -> Result<Outcome, SubmitError> {
        match command {
            Command::Reserve(c) => self.decide_reserve(scope, c, now_ms),
            Command::Commit(c) => {
                let hold = self.hold_for(scope, &c.reservation_id, now_ms)?;
                if let Some(ended) = hold_ended(hold, now_ms) {
                    return Ok(ended);
                }
                let committed = match &c.lines {
                    None => hold.lines.iter().map(|l| u64::from(l.qty)).collect(),
                    Some(lines) => self.partial_commit(scope, hold, lines)?,
                };
                Ok(Outcome::Committed { committed })
            }
            Command::Release(c) => {
                let hold = self.hold_for(scope, &c.reservation_id, now_ms)?;
                Ok(hold_ended(hold, now_ms).unwrap_or(Outcome::Released))
            }
            Command::Extend(c) => {
                let hold = self.hold_for(scope, &c.reservation_id, now_ms)?;
                Ok(hold_ended(hold, now_ms).unwrap_or(Outcome::Extended {
                    expires_at_ms: now_ms.saturating_add(c.ttl_ms),
                }))
            }
            Command::Expire(c) => {
                let hold = self.hold_for(scope, &c.reservation_id, now_ms)?;
                if hold.is_lapsed(now_ms) {
                    Ok(Outcome::Expired)
                } else {
                    Err(crate::command::invalid(
                        "reservation_id",
                        "only an open hold past its expiry can be expired",
                    ))
                }
            }
            Command::Dispose(c) => {
                let returns = scope.returns.as_ref().expect("dispose locks returns");
                let record = returns
                    .by_id
                    .get(&c.return_id)
                    .ok_or_else(|| SubmitError::ReturnNotFound(c.return_id.to_string()))?;
                let location = self
                    .names
                    .get(Kind::Location, c.location.as_str())
                    .map(LocationId);
                let quarantined = record
                    .quarantined
                    .iter()
                    .find(|(sku, loc, _)| *sku == c.sku && Some(*loc) == location)
                    .map_or(0, |(_, _, q)| *q);
                if c.qty > quarantined {
                    return Err(SubmitError::NotQuarantined {
                        return_id: c.return_id.to_string(),
                        sku: c.sku.to_string(),
                        location: c.location.to_string(),
                        requested: c.qty,
                        quarantined,
                    });
                }
                Ok(Outcome::Recorded)
            }
            Command::RecordReturn(c) => {
                let returns = scope.returns.as_ref().expect("returns lock their table");
                if let Some(record) = returns.by_id.get(&c.return_id)
                    && record.quarantined.iter().any(|(_, _, q)| *q > 0)
                {
                    // Its key is past retention, but its units are still in quarantine:
                    // recording the id again would orphan them.
                    return Err(crate::command::invalid(
                        "return_id",
                        "this return still has units in quarantine; dispose of them or use a new return id",
                    ));
                }
                Ok(Outcome::Recorded)
            }
            Command::RecordSale(_) | Command::Adjust(_) | Command::SetSafetyStock(_) => {
                Ok(Outcome::Recorded)
            }
        }
    }

    fn decide_reserve(
        &self,
        scope: &mut Scope<'_>,
        c: &Reserve,
        now_ms: u64,
    ) -> Result<Outcome, SubmitError> {
        if let Some(hold) = self.live_hold(scope.hold(), now_ms) {
            // The key was forgotten but the hold is still remembered (an extended hold can
            // outlive its reserve's key): the id is taken.
            return Err(crate::command::invalid(
                "reservation_id",
                &format!("a hold with this id exists ({:?})", hold.state),
            ));
        }
        let mut short = Vec::new();
        for (i, line) in c.lines.iter().enumerate() {
            let available = scope
                .availability(scope.reserve_lines[i], now_ms)
                .map_or(0, |a| a.available);
            if available < line.qty as i64 {
                short.push(ShortLine {
                    line_index: i as u32,
                    requested: line.qty,
                    available,
                });
            }
        }
        if short.is_empty() {
            Ok(Outcome::Granted {
                expires_at_ms: now_ms.saturating_add(c.ttl_ms),
            })
        } else {
            Ok(Outcome::Insufficient { short })
        }
    }

    fn hold_for<'s>(
        &self,
        scope: &'s Scope<'_>,
        id: &ReservationId,
        now_ms: u64,
    ) -> Result<&'s Hold, SubmitError> {
        self.live_hold(scope.hold(), now_ms)
            .ok_or_else(|| SubmitError::ReservationNotFound(id.to_string()))
    }

    fn partial_commit(
        &self,
        scope: &Scope<'_>,
        hold: &Hold,
        lines: &[Line],
    ) -> Result<Vec<u64>, SubmitError> {
        let mut committed = vec![0u64; hold.lines.len()];
        for (i, line) in lines.iter().enumerate() {
            let location = self
                .names
                .get(Kind::Location, line.location.as_str())
                .map(LocationId);
            // The scope locked the shards of every held sku; a sku in another shard is not held.
            let hash = hash_key(line.sku.as_str());
            let shard = self.shard_of_hash(hash);
            let sku = scope
                .shard_ref(shard)
                .and_then(|s| s.find(hash, line.sku.as_str()))
                .map(|slot| sku_slot(shard, slot));
            let Some(index) = hold
                .lines
                .iter()
                .position(|h| Some(h.sku) == sku && Some(h.location) == location)
            else {
                return Err(SubmitError::NotHeld {
                    field: format!("lines[{i}]"),
                    reason: format!(
                        "({}, {}) is not held by this reservation",
                        line.sku, line.location
                    ),
                });
            };
            let held = u64::from(hold.lines[index].qty);
            if line.qty > held {
                return Err(SubmitError::NotHeld {
                    field: format!("lines[{i}].qty"),
                    reason: format!("{} exceeds the {held} units held", line.qty),
                });
            }
            committed[index] = line.qty;
        }
        Ok(committed)
    }

    // ----------------------------------------------------------------------------------------
    // Applying: the only code that changes state, shared by live submits and replay.

    fn apply(&self, scope: &mut Scope<'_>, event: &Event) -> Result<(), String> {
        let at_ms = event.at_ms;
        match (&event.command, &event.outcome) {
            (Command::Reserve(c), Outcome::Granted { expires_at_ms }) => {
                if scope.hold().is_some_and(|h| h.state == HoldState::Open) {
                    return Err("granted reserve of an id whose hold is open".into());
                }
                let channel = match scope.reserve_channel {
                    Some(channel) => channel,
                    None => ChannelId(self.names.intern(Kind::Channel, c.channel.as_str())),
                };
                let mut lines: SmallVec<[HoldLine; 4]> = SmallVec::new();
                for (i, line) in c.lines.iter().enumerate() {
                    let resolved = scope.reserve_lines[i];
                    let location = resolved
                        .location
                        .ok_or("granted reserve on an unknown location")?;
                    let sku = resolved.sku.ok_or("granted reserve on an unknown sku")?;
                    let entry = scope.shard(resolved.shard).at_mut(sku);
                    let qty = u32::try_from(line.qty).map_err(|_| "line qty exceeds u32")?;
                    let position = entry
                        .position_mut(location)
                        .ok_or("granted reserve on an unknown position")?;
                    position.reserved += i64::from(qty);
                    entry.ladder_insert(
                        LadderKey {
                            expires_at_ms: *expires_at_ms,
                            placed_lsn: event.lsn,
                            location,
                        },
                        qty,
                    );
                    lines.push(HoldLine {
                        sku: sku_slot(resolved.shard, sku),
                        location,
                        qty,
                    });
                }
                let slot = scope.hold_slot_or_insert(c.reservation_id.as_str());
                let holds = scope.holds();
                holds.expiry.insert((*expires_at_ms, event.lsn), slot);
                // Replaces an ended hold past retention, as a new reserve of its id may.
                holds.entries.at_mut(slot).place(
                    Hold {
                        lines: HoldLines::new(&lines),
                        channel,
                        state: HoldState::Open,
                        expires_at_ms: *expires_at_ms,
                        placed_lsn: event.lsn,
                        placed_at_ms: at_ms,
                        ended_lsn: Lsn::ZERO,
                        ended_at_ms: 0,
                    },
                    &self.names,
                );
            }
            (Command::Reserve(_), Outcome::Insufficient { .. }) => {}
            (Command::Commit(c), Outcome::Committed { committed }) => {
                self.end_hold(
                    scope,
                    &c.reservation_id,
                    HoldState::Committed,
                    Some(committed),
                    event,
                )?;
            }
            (Command::Release(c), Outcome::Released) => {
                self.end_hold(scope, &c.reservation_id, HoldState::Released, None, event)?;
            }
            (
                Command::Commit(Commit { reservation_id, .. })
                | Command::Release(Release { reservation_id })
                | Command::Extend(Extend { reservation_id, .. })
                | Command::Expire(Expire { reservation_id }),
                Outcome::Expired,
            ) => {
                self.end_hold(scope, reservation_id, HoldState::Expired, None, event)?;
            }
            (Command::Extend(_), Outcome::Extended { expires_at_ms }) => {
                let hold = scope
                    .hold()
                    .filter(|h| h.state == HoldState::Open)
                    .ok_or("extend of a hold that is not open")?;
                let old_expiry = hold.expires_at_ms;
                let placed_lsn = hold.placed_lsn;
                let lines: SmallVec<[HoldLine; 4]> = hold.lines.iter().copied().collect();
                for line in &lines {
                    let entry = scope.sku_entry(line.sku);
                    let old = LadderKey {
                        expires_at_ms: old_expiry,
                        placed_lsn,
                        location: line.location,
                    };
                    let qty = entry.ladder_remove(&old);
                    entry.ladder_insert(
                        LadderKey {
                            expires_at_ms: *expires_at_ms,
                            ..old
                        },
                        qty,
                    );
                }
                let holds = scope.holds();
                let slot = holds
                    .expiry
                    .remove(&(old_expiry, placed_lsn))
                    .ok_or("open hold missing from the expiry index")?;
                holds.expiry.insert((*expires_at_ms, placed_lsn), slot);
                scope.hold_mut().ok_or("hold vanished")?.expires_at_ms = *expires_at_ms;
            }
            (
                Command::Commit(_) | Command::Release(_) | Command::Extend(_),
                Outcome::HoldAlreadyEnded(_),
            ) => {}
            (Command::RecordSale(c), Outcome::Recorded) => {
                for line in &c.lines {
                    let position = self.position_or_insert(scope, &line.sku, &line.location);
                    position.on_hand -= line.qty as i64;
                }
                scope
                    .stores
                    .as_mut()
                    .ok_or("sale without the stores lock")?
                    .by_id
                    .entry(c.store_id.clone())
                    .or_default()
                    .record(c.store_seq, c.occurred_at_ms, at_ms);
            }
            (Command::RecordReturn(c), Outcome::Recorded) => {
                let mut quarantined = Vec::new();
                for line in &c.lines {
                    let location =
                        LocationId(self.names.intern(Kind::Location, line.location.as_str()));
                    let position = self.position_or_insert(scope, &line.sku, &line.location);
                    match line.disposition {
                        ReturnDisposition::Restock => position.on_hand += line.qty as i64,
                        ReturnDisposition::Inspect => {
                            position.quarantined += line.qty as i64;
                            quarantined.push((line.sku.clone(), location, line.qty));
                        }
                    }
                }
                scope
                    .returns
                    .as_mut()
                    .ok_or("return without the returns lock")?
                    .by_id
                    .insert(c.return_id.clone(), ReturnRecord { at_ms, quarantined });
            }
            (Command::Dispose(c), Outcome::Recorded) => {
                let location = self
                    .names
                    .get(Kind::Location, c.location.as_str())
                    .map(LocationId)
                    .ok_or("disposition at an unknown location")?;
                let record = scope
                    .returns
                    .as_mut()
                    .ok_or("dispose without the returns lock")?
                    .by_id
                    .get_mut(&c.return_id)
                    .ok_or("disposition for an unknown return")?;
                let remaining = record
                    .quarantined
                    .iter_mut()
                    .find(|(sku, loc, _)| *sku == c.sku && *loc == location)
                    .ok_or("disposition for units never quarantined")?;
                remaining.2 = remaining
                    .2
                    .checked_sub(c.qty)
                    .ok_or("disposition of more units than quarantined")?;
                let position = self.position_or_insert(scope, &c.sku, &c.location);
                position.quarantined -= c.qty as i64;
                if c.action == DispositionAction::Restock {
                    position.on_hand += c.qty as i64;
                }
            }
            (Command::Adjust(c), Outcome::Recorded) => {
                self.position_or_insert(scope, &c.sku, &c.location).on_hand += c.delta;
            }
            (Command::SetSafetyStock(c), Outcome::Recorded) => {
                let qty = u32::try_from(c.qty).map_err(|_| "safety stock exceeds u32")?;
                self.position_or_insert(scope, &c.sku, &c.location)
                    .safety_stock = qty;
            }
            (command, outcome) => {
                return Err(format!(
                    "outcome {outcome:?} does not belong to command {:?}",
                    command.kind()
                ));
            }
        }
        Ok(())
    }

    fn position_or_insert<'s>(
        &self,
        scope: &'s mut Scope<'_>,
        sku: &Sku,
        location: &Location,
    ) -> &'s mut positions::Position {
        let location = LocationId(self.names.intern(Kind::Location, location.as_str()));
        scope
            .shard(self.shard_of(sku.as_str()))
            .get_or_insert(sku)
            .position_or_insert(location)
    }

    /// Ends an open hold: gives back its reserved units, takes committed units off `on_hand`,
    /// and removes it from both expiry indexes.
    fn end_hold(
        &self,
        scope: &mut Scope<'_>,
        id: &ReservationId,
        to: HoldState,
        committed: Option<&Vec<u64>>,
        event: &Event,
    ) -> Result<(), String> {
        let hold = scope
            .hold()
            .filter(|h| h.state == HoldState::Open)
            .ok_or_else(|| format!("hold {id} is not open"))?;
        let (expires_at_ms, placed_lsn) = (hold.expires_at_ms, hold.placed_lsn);
        let lines: SmallVec<[HoldLine; 4]> = hold.lines.iter().copied().collect();
        if let Some(committed) = committed
            && committed.len() != lines.len()
        {
            return Err("commit lists a different number of lines than the hold".into());
        }
        for (i, line) in lines.iter().enumerate() {
            let entry = scope.sku_entry(line.sku);
            let qty = entry.ladder_remove(&LadderKey {
                expires_at_ms,
                placed_lsn,
                location: line.location,
            });
            debug_assert_eq!(qty, line.qty);
            let position = entry
                .position_mut(line.location)
                .ok_or("hold line on unknown position")?;
            position.reserved -= i64::from(line.qty);
            debug_assert!(position.reserved >= 0, "reserved went negative");
            if let Some(committed) = committed {
                if committed[i] > u64::from(line.qty) {
                    return Err("commit of more than held".into());
                }
                position.on_hand -= committed[i] as i64;
            }
        }
        let holds = scope.holds();
        holds
            .expiry
            .remove(&(expires_at_ms, placed_lsn))
            .ok_or("open hold missing from the expiry index")?;
        scope
            .hold_mut()
            .ok_or("hold vanished")?
            .transition(to, event.lsn, event.at_ms);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Reads

    /// Availability of one position at `now_ms`; `None` if the position has never existed.
    pub fn check(&self, sku: &str, location: &str, now_ms: u64) -> Option<Availability> {
        let now_ms = self.read_time(now_ms);
        let location = LocationId(self.names.get(Kind::Location, location)?);
        let shard = lock(&self.positions[self.shard_of(sku)]);
        shard.get(sku)?.availability(location, now_ms)
    }

    /// Every location of one sku, by location name.
    pub fn check_sku(&self, sku: &str, now_ms: u64) -> Vec<(String, Availability)> {
        let now_ms = self.read_time(now_ms);
        let shard = lock(&self.positions[self.shard_of(sku)]);
        let Some(entry) = shard.get(sku) else {
            return Vec::new();
        };
        let mut rows: Vec<(String, Availability)> = entry
            .positions
            .iter()
            .filter_map(|p| {
                Some((
                    self.names.name(Kind::Location, p.location.0).to_string(),
                    entry.availability(p.location, now_ms)?,
                ))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    pub fn reservation(&self, id: &str, now_ms: u64) -> Option<HoldView> {
        let now_ms = self.read_time(now_ms);
        let shard = lock(&self.holds[self.shard_of(id)]);
        let hold = self.live_hold(shard.entry(id)?.hold.as_ref(), now_ms)?;
        // Position shards come after hold shards in the protocol, one at a time here.
        Some(self.hold_view(id, hold, now_ms, |s| {
            lock(&self.positions[s.shard()]).at(s.slot).sku.clone()
        }))
    }

    /// `sku_name` names a hold line's sku.
    fn hold_view(
        &self,
        id: &str,
        hold: &Hold,
        now_ms: u64,
        sku_name: impl Fn(SkuSlot) -> Sku,
    ) -> HoldView {
        HoldView {
            reservation_id: id.to_owned(),
            channel: self.names.name(Kind::Channel, hold.channel.0).to_string(),
            lines: hold
                .lines
                .iter()
                .map(|l| Line {
                    sku: sku_name(l.sku),
                    location: Location(self.names.name(Kind::Location, l.location.0)),
                    qty: u64::from(l.qty),
                })
                .collect(),
            state: if hold.is_lapsed(now_ms) {
                HoldState::Expired
            } else {
                hold.state
            },
            expires_at_ms: hold.expires_at_ms,
            placed_lsn: hold.placed_lsn,
            placed_at_ms: hold.placed_at_ms,
            ended_at_ms: hold.ended_at_ms,
        }
    }

    pub fn store_status(&self, store_id: &str) -> Option<StoreStatus> {
        let stores = lock(&self.stores);
        stores.by_id.get(store_id).map(|s| s.status(store_id))
    }

    pub fn store_statuses(&self) -> Vec<StoreStatus> {
        let stores = lock(&self.stores);
        stores
            .by_id
            .iter()
            .map(|(id, s)| s.status(id.as_str()))
            .collect()
    }

    /// Number of open holds (including lapsed ones awaiting their expiry event).
    pub fn holds_open(&self) -> usize {
        self.holds.iter().map(|s| lock(s).expiry.len()).sum()
    }

    /// Every position by (sku, location) name. Locks one shard at a time, so under concurrent
    /// writes it is not a consistent cut; use it when the ledger is quiet.
    pub fn positions(&self) -> BTreeMap<(String, String), PositionView> {
        let mut all = BTreeMap::new();
        for shard in self.positions.iter() {
            let shard = lock(shard);
            for entry in shard.iter() {
                for p in &entry.positions {
                    all.insert(
                        (
                            entry.sku.to_string(),
                            self.names.name(Kind::Location, p.location.0).to_string(),
                        ),
                        PositionView {
                            on_hand: p.on_hand,
                            reserved: p.reserved,
                            safety_stock: i64::from(p.safety_stock),
                            quarantined: p.quarantined,
                        },
                    );
                }
            }
        }
        all
    }

    // ----------------------------------------------------------------------------------------
    // Whole-ledger checks

    /// A hash of everything the log determines: positions, holds, keys within retention,
    /// returns, store sequences and the next LSN. Two ledgers with equal digests answer every
    /// query alike. Judged as of the latest event time, so it does not depend on when the
    /// digest is taken or on whether a purge ran.
    pub fn digest(&self) -> u64 {
        let (next_lsn, as_of_ms) = {
            let s = lock(&self.sequencer);
            (s.next_lsn, s.last_at_ms)
        };
        let mut lines: Vec<String> = Vec::new();
        for ((sku, location), p) in self.positions() {
            lines.push(format!("P {sku} {location} {p:?}"));
        }
        let key_line = |key: &IdempotencyKey, r: &KeyRecord| {
            format!(
                "K {key} {:?} {} {} {:?}",
                r.fingerprint, r.lsn, r.at_ms, r.outcome
            )
        };
        for shard in self.holds.iter() {
            let shard = lock(shard);
            for (_, entry) in shard.entries.iter() {
                if let Some(hold) = &entry.hold
                    && (hold.state == HoldState::Open || self.retained(hold.ended_at_ms, as_of_ms))
                {
                    // Stored fields, not the clock-dependent view.
                    let view = self.hold_view(entry.id.as_str(), hold, 0, |s| {
                        lock(&self.positions[s.shard()]).at(s.slot).sku.clone()
                    });
                    lines.push(format!("H {view:?} {:?}", hold.state));
                }
                for r in entry.records(&self.names) {
                    if self.retained(r.at_ms, as_of_ms) {
                        lines.push(key_line(&entry.key_of(r.fingerprint.kind), &r));
                    }
                }
            }
            for ((expires, lsn), &slot) in &shard.expiry {
                lines.push(format!("X {expires} {lsn} {}", shard.entries.at(slot).id));
            }
        }
        for shard in self.keys.iter() {
            let shard = lock(shard);
            for (key, r) in &shard.records {
                if self.retained(r.at_ms, as_of_ms) {
                    lines.push(key_line(key, r));
                }
            }
        }
        for (id, r) in &lock(&self.returns).by_id {
            if r.quarantined.iter().any(|(_, _, q)| *q > 0) || self.retained(r.at_ms, as_of_ms) {
                let q: Vec<_> = r
                    .quarantined
                    .iter()
                    .map(|(s, l, q)| format!("{s}@{}={q}", self.names.name(Kind::Location, l.0)))
                    .collect();
                lines.push(format!("R {id} {} {q:?}", r.at_ms));
            }
        }
        for (id, s) in &lock(&self.stores).by_id {
            let mut status = s.status(id.as_str());
            // Retries are not events; they are counted but not replayed.
            status.duplicates_absorbed = 0;
            lines.push(format!("S {status:?}"));
        }
        lines.push(format!("N {next_lsn}"));
        lines.sort_unstable();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for line in &lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.digest()
    }

    /// Checks every structural invariant, taking all locks in protocol order. For tests and
    /// simulations (it is O(ledger)), never the hot path.
    pub fn check_invariants(&self) -> Result<(), String> {
        let keys: Vec<_> = self.keys.iter().map(lock).collect();
        let holds: Vec<_> = self.holds.iter().map(lock).collect();
        let returns = lock(&self.returns);
        let stores = lock(&self.stores);
        let positions: Vec<_> = self.positions.iter().map(lock).collect();

        // Open holds: expected reserved per position and expected ladder entries.
        let mut reserved: HashMap<(SkuSlot, LocationId), i64> = HashMap::new();
        let mut ladder: BTreeMap<(SkuSlot, LadderKey), u32> = BTreeMap::new();
        let mut open = 0usize;
        for shard in &keys {
            if let Some(key) = shard.records.keys().find(|k| kept_with_hold(k.kind)) {
                return Err(format!("key {key} is in the key shards, not with its hold"));
            }
        }
        for (index, shard) in holds.iter().enumerate() {
            shard.entries.check()?;
            for (slot, entry) in shard.entries.iter() {
                let id = &entry.id;
                if self.shard_of(id.as_str()) != index {
                    return Err(format!("hold entry {id} is in the wrong shard"));
                }
                entry.check(&self.names)?;
                let Some(hold) = &entry.hold else { continue };
                for line in hold.lines.iter() {
                    let sku = positions
                        .get(line.sku.shard())
                        .and_then(|shard| shard.get_at(line.sku.slot))
                        .ok_or_else(|| format!("hold {id} names a sku slot with no sku"))?;
                    if self.shard_of(sku.sku.as_str()) != line.sku.shard() {
                        return Err(format!(
                            "hold {id} names sku {} in the wrong shard",
                            sku.sku
                        ));
                    }
                }
                if hold.state != HoldState::Open {
                    if shard.expiry.get(&(hold.expires_at_ms, hold.placed_lsn)) == Some(&slot) {
                        return Err(format!("ended hold {id} is still in the expiry index"));
                    }
                    continue;
                }
                open += 1;
                if shard.expiry.get(&(hold.expires_at_ms, hold.placed_lsn)) != Some(&slot) {
                    return Err(format!("open hold {id} is missing from the expiry index"));
                }
                for line in hold.lines.iter() {
                    *reserved.entry((line.sku, line.location)).or_default() += i64::from(line.qty);
                    ladder.insert(
                        (
                            line.sku,
                            LadderKey {
                                expires_at_ms: hold.expires_at_ms,
                                placed_lsn: hold.placed_lsn,
                                location: line.location,
                            },
                        ),
                        line.qty,
                    );
                }
            }
        }
        let indexed: usize = holds.iter().map(|s| s.expiry.len()).sum();
        if indexed != open {
            return Err(format!(
                "{indexed} expiry index entries for {open} open holds"
            ));
        }
        let mut quarantined: HashMap<(Sku, LocationId), i64> = HashMap::new();
        for r in returns.by_id.values() {
            for (sku, location, qty) in &r.quarantined {
                *quarantined.entry((sku.clone(), *location)).or_default() += *qty as i64;
            }
        }
        let mut ladder_seen = 0usize;
        for (index, shard) in positions.iter().enumerate() {
            shard.check()?;
            for (slot, entry) in shard.iter_slots() {
                let sku = &entry.sku;
                let sku_at = sku_slot(index, slot);
                if self.shard_of(sku.as_str()) != index {
                    return Err(format!("sku {sku} is in the wrong shard"));
                }
                if entry
                    .positions
                    .windows(2)
                    .any(|w| w[0].location >= w[1].location)
                {
                    return Err(format!("positions of {sku} are not sorted by location"));
                }
                for p in &entry.positions {
                    let expected = reserved.get(&(sku_at, p.location)).copied().unwrap_or(0);
                    if p.reserved != expected {
                        return Err(format!(
                            "{sku}@{}: reserved {} but open holds sum to {expected}",
                            p.location.0, p.reserved
                        ));
                    }
                    let expected_q = quarantined
                        .get(&(sku.clone(), p.location))
                        .copied()
                        .unwrap_or(0);
                    if p.quarantined != expected_q {
                        return Err(format!(
                            "{sku}@{}: quarantined {} but returns hold {expected_q}",
                            p.location.0, p.quarantined
                        ));
                    }
                }
                if entry.ladder.is_misshapen() {
                    return Err(format!("{sku}: ladder kept in a shape it should have left"));
                }
                for (k, qty) in entry.ladder.lines() {
                    ladder_seen += 1;
                    if ladder.get(&(sku_at, k)) != Some(&qty) {
                        return Err(format!("{sku}: ladder entry {k:?} has no open hold line"));
                    }
                }
            }
        }
        if ladder_seen != ladder.len() {
            return Err(format!(
                "{ladder_seen} ladder entries for {} open hold lines",
                ladder.len()
            ));
        }
        for (id, s) in &stores.by_id {
            let mut floor = s.contiguous_seq + 1;
            for (&start, &end) in &s.received {
                if start <= floor || end < start {
                    return Err(format!("store {id}: received ranges overlap or touch"));
                }
                floor = end + 1;
            }
        }
        Ok(())
    }
}

/// The outcome for a command on a hold that is no longer open, or past its TTL.
fn hold_ended(hold: &Hold, now_ms: u64) -> Option<Outcome> {
    if hold.state != HoldState::Open {
        Some(Outcome::HoldAlreadyEnded(hold.state))
    } else if hold.is_lapsed(now_ms) {
        Some(Outcome::Expired)
    } else {
        None
    }
}
