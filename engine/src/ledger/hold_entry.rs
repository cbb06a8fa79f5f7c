//! The hold shards: per reservation id, its hold and the records of its Reserve, Commit and
//! Release (see "Where outcomes are kept" in the ledger's module doc), and the open holds by
//! expiry, which the expiry sweep walks.

use super::interner::{Interner, Kind};
use super::records::{KeyRecord, derived_bit, id_hash, is_rejection, kept_with_hold};
use super::table::{DenseTable, Keyed, hash_key};
use crate::command::{
    CommandKind, FINGERPRINT_FIELDS_MAX, Fingerprint, IdempotencyKey, principal_hash,
};
use crate::hold::PrincipalRef;
use crate::hold::{Hold, HoldState};
use crate::outcome::Outcome;
use crate::types::{Lsn, ReservationId};
use smallvec::SmallVec;
use std::collections::BTreeMap;

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
pub(super) struct HoldEntry {
    pub id: ReservationId,
    /// The hold placed under this id; `None` after an insufficient reserve, or once the ended
    /// hold was purged while a later record under the id is still retained.
    pub hold: Option<Hold>,
    /// Which records are derived from `hold` (`derived_bit` of their kind).
    pub derived: u8,
    /// The placing reserve's fingerprint fields the hold does not carry: its lines' hash and
    /// its TTL (at most `TTL_MS_MAX`, so 32 bits).
    reserve_lines_hash: u64,
    reserve_ttl_ms: u32,
    /// Who ended the hold (the principal of the event at `Hold::ended_lsn`); who placed it is
    /// on the hold. Kept here, in padding the entry had, because the hold had room for one.
    pub ended_by: PrincipalRef,
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
    pub(super) fn new(id: &str) -> Self {
        Self {
            id: ReservationId::from(id),
            hold: None,
            derived: 0,
            reserve_lines_hash: 0,
            reserve_ttl_ms: 0,
            ended_by: PrincipalRef::NONE,
            stored: None,
        }
    }

    pub(super) fn stored(&self) -> &[KeyRecord] {
        self.stored.as_deref().map_or(&[], Vec::as_slice)
    }

    /// When the record under `kind` was decided, if there is one (live or not).
    pub(super) fn record_at_ms(&self, kind: CommandKind) -> Option<u64> {
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

    /// The record under `kind`, live or not. `names` gives the channel of a derived reserve and
    /// the principals.
    pub(super) fn record(&self, kind: CommandKind, names: &Interner) -> Option<KeyRecord> {
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
        let by = |by: PrincipalRef| principal_hash(names.principal_name(by).as_ref());
        Some(match kind {
            CommandKind::Reserve => {
                fields[1] = id_hash(&names.name(Kind::Channel, hold.channel.0));
                fields[2] = self.reserve_lines_hash;
                fields[3] = u64::from(self.reserve_ttl_ms);
                KeyRecord {
                    fingerprint: Fingerprint {
                        kind,
                        by: by(hold.placed_by),
                        fields,
                    },
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
                    fingerprint: Fingerprint {
                        kind,
                        by: by(self.ended_by),
                        fields,
                    },
                    lsn: hold.ended_lsn,
                    at_ms: hold.ended_at_ms,
                    outcome,
                }
            }
        })
    }

    /// Every record of this entry, live or not.
    pub(super) fn records(&self, names: &Interner) -> SmallVec<[KeyRecord; 3]> {
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
    /// (The reserve's channel and principal are the hold's by construction, as are the
    /// principal of the commit or release that ended it, since the hold records the event at
    /// `lsn`; `from_checkpoint`, whose input is not built here, compares the derived record
    /// with the listed one. Only a principal beyond the name table's reach is not derived.)
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
                hold.placed_by != PrincipalRef::UNKNOWN
                    && hold.placed_lsn == lsn
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
                let ended_here = self.ended_by != PrincipalRef::UNKNOWN
                    && hold.ended_lsn == lsn
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
    pub(super) fn set_record(
        &mut self,
        fingerprint: Fingerprint,
        lsn: Lsn,
        at_ms: u64,
        outcome: &Outcome,
    ) {
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
    pub(super) fn store(&mut self, record: KeyRecord) {
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
    pub(super) fn place(&mut self, hold: Hold, names: &Interner) {
        if self.derived != 0 {
            for record in self.records(names) {
                if self.derived & derived_bit(record.fingerprint.kind) != 0 {
                    self.store(record);
                }
            }
        }
        self.ended_by = PrincipalRef::NONE;
        self.hold = Some(hold);
    }

    /// Drops the records and the ended hold that `retained` (given a decision time) says are
    /// past retention; returns how many went.
    pub(super) fn purge(&mut self, retained: impl Fn(u64, bool) -> bool) -> usize {
        let mut purged = 0;
        for kind in [
            CommandKind::Reserve,
            CommandKind::Commit,
            CommandKind::Release,
        ] {
            let bit = derived_bit(kind);
            if self.derived & bit != 0
                && !retained(self.record_at_ms(kind).expect("a derived record"), false)
            {
                self.derived &= !bit;
                purged += 1;
            }
        }
        if let Some(stored) = &mut self.stored {
            let before = stored.len();
            stored.retain(|r| retained(r.at_ms, is_rejection(&r.outcome)));
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
            .is_some_and(|h| h.state != HoldState::Open && !retained(h.ended_at_ms, false))
        {
            // Its derived records were decided no later than it ended, so they went above.
            debug_assert_eq!(self.derived, 0, "derived records outlive their hold");
            self.derived = 0;
            self.hold = None;
            self.ended_by = PrincipalRef::NONE;
            purged += 1;
        }
        purged
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hold.is_none() && self.derived == 0 && self.stored.is_none()
    }

    /// The key a record of this entry would have in the key shards.
    pub(super) fn key_of(&self, kind: CommandKind) -> IdempotencyKey {
        IdempotencyKey {
            kind,
            id: self.id.0.clone(),
            sub: Default::default(),
        }
    }

    /// The entry's own consistency (for `check_invariants`).
    pub(super) fn check(&self, names: &Interner) -> Result<(), String> {
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
pub(super) struct HoldShard {
    pub entries: DenseTable<HoldEntry>,
    /// Open holds by expiry, to their entry's slot: what the expiry sweep walks.
    pub expiry: BTreeMap<(u64, Lsn), u32>,
    /// The fingerprints of this shard's archived entries (see `archived.rs`).
    pub archived: super::archived::FingerprintSet,
}

impl HoldShard {
    /// Moves every entry to a fresh table, densely, and points the expiry index at the new
    /// slots. Reusing a vacant slot writes to memory that has gone cold (a cache miss per new
    /// reservation), so after an eviction left most of the table vacant this is cheaper than
    /// keeping it: `ledger/archived.rs` calls it then. O(entries) under the shard's lock.
    pub(super) fn compact(&mut self) {
        let mut fresh = DenseTable::default();
        let mut moved = std::collections::HashMap::with_capacity(self.entries.len());
        for (slot, entry) in self.entries.iter() {
            let id = entry.id.as_str();
            let new_slot = fresh.find_or_insert(hash_key(id), id, || entry.clone());
            moved.insert(slot, new_slot);
        }
        for slot in self.expiry.values_mut() {
            *slot = moved[slot];
        }
        self.entries = fresh;
    }

    #[cfg(all(test, not(loom)))]
    pub(super) fn entry(&self, id: &str) -> Option<&HoldEntry> {
        self.entries.get(hash_key(id), id)
    }

    /// The slot of the entry for `id`, created empty if there is none.
    pub(super) fn slot_or_insert(&mut self, id: &str) -> u32 {
        self.entries
            .find_or_insert(hash_key(id), id, || HoldEntry::new(id))
    }
}
