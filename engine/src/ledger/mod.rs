//! The ledger: every position, hold, idempotency record, return and store sequence, behind
//! sharded locks, and the one protocol that decides, sequences and applies a command.
//!
//! # The protocol
//! A command is decided while the ledger holds the locks of everything it reads or writes, in
//! one global order (which is why it cannot deadlock):
//!
//! 1. the idempotency-key shard of the command's key (unless the record is kept with its
//!    hold, see below),
//! 2. the hold shard of its reservation id,
//! 3. the returns table, then the stores table, then the drifts held for review,
//! 4. the position shards of its skus, in ascending shard index,
//! 5. the sequencer (LSN counter and log append), taken last and briefly.
//!
//! Under those locks the ledger decides (an [`Outcome`] recorded in a [`Fact`], or a
//! [`Refusal`] that changes nothing), takes the next LSN, appends the event to the log,
//! applies the event's effects, and records the outcome under the key. Because the LSN is
//! taken while every touched lock is held, LSN order agrees with the order of effects on every
//! position, hold and key, so replaying the log in LSN order reproduces the state. Replay
//! ([`Ledger::replay`]) takes the same locks and runs the same apply code, without deciding.
//!
//! # Files
//! - `scope.rs`: the locking protocol above, as one typed scope per command family (a hold
//!   command, a sale, a return, a stock change), so "the returns table is locked" is a type.
//! - `records.rs`: idempotency records and the key shards; `hold_entry.rs`: the hold shards,
//!   where a reservation's hold and the records of its Reserve, Commit and Release live.
//! - `decide.rs`: what a command's outcome is (reads only); `apply.rs`: the only code that
//!   changes state, one function per kind of fact, shared by live writes and replay.
//! - `reads.rs`: checks and views; `maintenance.rs`: the expiry sweep and the purge of what
//!   is past retention; `checkpoint.rs`: the cut and loading a checkpoint back;
//!   `invariants.rs`: the digest and the structural checks.
//! - `positions.rs`, `table.rs`, `interner.rs`, `returns.rs`: the tables themselves.
//!
//! # Where outcomes are kept
//! The outcomes of Reserve, Commit and Release are keyed by (command, reservation id), so they
//! are kept in the hold shard's entry for that id, next to the hold, rather than in the key
//! shards: a reserve and its release then find and record everything in one table entry that
//! step 2 locks anyway, instead of three entries in two tables far beyond the CPU caches. Most
//! of those records repeat the hold, so they are derived from it (see `hold_entry.rs`): an
//! open single-line hold, its records and its index entries come to about 175 to 210 bytes
//! (`benches/src/bin/memory.rs`). Every other keyed command (Extend, whose key also has a
//! request id, and the stock commands) uses the key shards.
//!
//! Reads (`check`, `check_sku`) take one position-shard lock and never wait for the log or for
//! other shards. The location and channel name tables share a leaf lock (see `interner`).

mod apply;
mod archived;
mod checkpoint;
mod decide;
mod history;
mod hold_entry;
mod interner;
mod invariants;
mod maintenance;
mod memory;
mod positions;
mod reads;
mod reconcile;
mod records;
mod returns;
mod reviews;
mod scope;
mod table;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use archived::{Evicted, Eviction};
pub use checkpoint::Cut;
pub use memory::MemoryUse;
pub use positions::Availability;
pub use reads::{HoldView, PositionView};
pub use reconcile::HeldDriftView;

use crate::command::*;
use crate::error::{ReplayError, SubmitError};
use crate::event::{Event, Fact, HoldRequest};
use crate::hold::SkuSlot;
use crate::limits::{
    HISTORY_MS_DEFAULT, KEY_RETENTION_MS_DEFAULT, REJECTION_RETENTION_MS_DEFAULT, SHARDS_MAX,
    STORE_SEQ_JUMP_MAX_DEFAULT,
};
use crate::log::EventLog;
use crate::outcome::{Outcome, Refusal};
use crate::stores::StoreSequence;
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, lock};
use crate::types::*;
use decide::{decide_acknowledge, decide_sale};
use history::TimeIndex;
use hold_entry::HoldShard;
use interner::Interner;
use positions::PositionShard;
use records::{KeyRecord, KeyShard};
use returns::Returns;
use reviews::Reviews;
use scope::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use table::hash_key;

/// Sizing, retention and bounds, fixed when the ledger is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerConfig {
    /// Number of lock shards for positions, holds and keys; a power of two. More shards mean
    /// less contention between unrelated skus; 4x the core count is plenty.
    pub shards: usize,
    /// How long idempotency keys and ended holds are remembered.
    pub key_retention_ms: u64,
    /// How far back a snapshot may be reconciled: the log keeps (and the time index finds)
    /// the events of this window. See `ledger/history.rs`.
    pub history_ms: u64,
    /// How long a rejection (a reserve refused as Insufficient) is remembered, if shorter than
    /// `key_retention_ms`: it changed nothing, so a retry after it is simply decided again,
    /// and a flash sale's millions of rejections need not be kept for a week.
    pub rejection_retention_ms: u64,
    /// How far a sale's store sequence number may run ahead of its store's newest number
    /// before it is flagged as an anomaly instead of taken into the sequence (see
    /// `crate::stores`); at least 1. Used only when a sale is decided: the fact records the
    /// verdict, so replay does not read it and may run with another value.
    pub store_seq_jump_max: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            key_retention_ms: KEY_RETENTION_MS_DEFAULT,
            history_ms: HISTORY_MS_DEFAULT,
            rejection_retention_ms: REJECTION_RETENTION_MS_DEFAULT,
            store_seq_jump_max: STORE_SEQ_JUMP_MAX_DEFAULT,
        }
    }
}

/// The answer to an accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The LSN of the event that recorded the outcome (for a retry: the original event's).
    pub lsn: Lsn,
    pub outcome: Outcome,
    /// True when this was a retry answered from the idempotency index.
    pub duplicate: bool,
}

/// What the ledger decided for a well-formed command: a recorded outcome, or a refusal that
/// changed nothing. (Malformed input and failures are the outer `Result`'s `SubmitError`.)
pub type Decision = Result<Receipt, Refusal>;

/// Stores keyed by id; ordered, because their listing and digest show the order.
#[derive(Default)]
struct Stores {
    by_id: BTreeMap<StoreId, StoreSequence>,
}

struct Sequencer {
    next_lsn: Lsn,
    /// Latest decision time seen; the "as of" time for retention in digests and purges.
    last_at_ms: u64,
    failure: Option<String>,
    /// Where in the log each second of the history window begins.
    history: TimeIndex,
}

impl Sequencer {
    /// Takes event `lsn`, decided at `at_ms`, as the newest.
    fn advance(&mut self, lsn: Lsn, at_ms: u64, history_ms: u64) {
        self.next_lsn = lsn.next();
        self.last_at_ms = self.last_at_ms.max(at_ms);
        self.history.note(lsn, self.last_at_ms, history_ms);
    }
}

pub struct Ledger {
    config: LedgerConfig,
    positions: Box<[Mutex<PositionShard>]>,
    holds: Box<[Mutex<HoldShard>]>,
    keys: Box<[Mutex<KeyShard>]>,
    returns: Mutex<Returns>,
    stores: Mutex<Stores>,
    reviews: Mutex<Reviews>,
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
    /// Where evicted records and ended holds are kept (see `archived.rs`); `None`: all in
    /// memory.
    archive: Option<Arc<dyn crate::archive::KeyArchive>>,
    /// Set while the ledger's memory is past its hard limit (see `memory.rs`), with the use
    /// and the limit it was judged by, for the refusal's message.
    memory_exhausted: AtomicBool,
    memory_used_bytes: AtomicU64,
    memory_limit_bytes: AtomicU64,
}

fn shards_of<T: Default>(count: usize) -> Box<[Mutex<T>]> {
    (0..count).map(|_| Mutex::new(T::default())).collect()
}

/// The sku in slot `slot` of position shard `shard`.
fn sku_slot(shard: usize, slot: u32) -> SkuSlot {
    SkuSlot {
        shard: u16::try_from(shard).expect("at most SHARDS_MAX shards"),
        slot,
    }
}

impl Ledger {
    /// An empty ledger that appends its events to `log`.
    pub fn new(config: LedgerConfig, log: Arc<dyn EventLog>) -> Self {
        assert!(
            config.shards.is_power_of_two(),
            "shards must be a power of two"
        );
        assert!(config.shards <= SHARDS_MAX, "at most {SHARDS_MAX} shards");
        assert!(
            config.store_seq_jump_max > 0,
            "store_seq_jump_max is at least 1"
        );
        Self {
            config,
            positions: shards_of(config.shards),
            holds: shards_of(config.shards),
            keys: shards_of(config.shards),
            returns: Mutex::new(Returns::default()),
            stores: Mutex::new(Stores::default()),
            reviews: Mutex::new(Reviews::default()),
            names: Interner::default(),
            sequencer: Mutex::new(Sequencer {
                next_lsn: Lsn(1),
                last_at_ms: 0,
                failure: None,
                history: TimeIndex::default(),
            }),
            failed: AtomicBool::new(false),
            time_floor_ms: AtomicU64::new(0),
            log,
            archive: None,
            memory_exhausted: AtomicBool::new(false),
            memory_used_bytes: AtomicU64::new(0),
            memory_limit_bytes: AtomicU64::new(0),
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

    /// Whether something decided at `at_ms` is still within the retention window at `now_ms`.
    fn retained(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.config.key_retention_ms) > now_ms
    }

    /// Whether a record decided at `at_ms` is still retained at `now_ms`: a rejection
    /// (`records::is_rejection`) for the shorter of the two windows.
    fn record_kept(&self, at_ms: u64, rejection: bool, now_ms: u64) -> bool {
        let window = if rejection {
            self.config
                .rejection_retention_ms
                .min(self.config.key_retention_ms)
        } else {
            self.config.key_retention_ms
        };
        at_ms.saturating_add(window) > now_ms
    }

    fn record_retained(&self, record: &KeyRecord, now_ms: u64) -> bool {
        self.record_kept(record.at_ms, records::is_rejection(&record.outcome), now_ms)
    }

    // ----------------------------------------------------------------------------------------
    // Writes

    /// Decides `command` at `now_ms`, appends its event to the log and applies it. Returns once
    /// the event is appended (not necessarily durable: see [`EventLog::wait_durable`]).
    pub fn submit(&self, command: Command, now_ms: u64) -> Result<Decision, SubmitError> {
        self.submit_by(command, None, now_ms)
    }

    /// [`Ledger::submit`] of a command `by` issued: its event records the principal, and its
    /// key is `by`'s (a retry by another principal is a key conflict).
    pub fn submit_by(
        &self,
        command: Command,
        by: Option<PrincipalName>,
        now_ms: u64,
    ) -> Result<Decision, SubmitError> {
        command.validate()?;
        let stamp = Stamp { now_ms, by };
        if self.failed.load(Ordering::Acquire) {
            return Err(SubmitError::FailStopped(
                self.failure().unwrap_or_else(|| "log failure".to_owned()),
            ));
        }
        match command {
            Command::Reserve(reserve) => {
                let written = {
                    let mut scope = self.lock_reserve(&reserve).map_err(SubmitError::Archive)?;
                    let keyed = Some(keyed(&reserve));
                    self.write_with(&mut scope, keyed, reserve, stamp, |l, scope, c, now_ms| {
                        l.decide_reserve(scope, c, now_ms).map_err(Err)
                    })?
                };
                Ok(self.named(written, Command::Reserve))
            }
            Command::Commit(c) => self.submit_to_hold(HoldRequest::Commit(c), stamp),
            Command::Release(c) => self.submit_to_hold(HoldRequest::Release(c), stamp),
            Command::Extend(c) => self.submit_to_hold(HoldRequest::Extend(c), stamp),
            Command::Expire(c) => self.submit_to_hold(HoldRequest::Expire(c), stamp),
            Command::RecordSale(sale) => self.submit_sale(sale, stamp),
            Command::RecordReturn(c) => {
                let written = {
                    let mut scope = self
                        .lock_returns(&c, c.lines.iter().map(|l| &l.sku))
                        .map_err(SubmitError::Archive)?;
                    let keyed = Some(keyed(&c));
                    self.write_with(&mut scope, keyed, c, stamp, |l, scope, c, _| {
                        l.decide_return(scope, c).map_err(Err)
                    })?
                };
                Ok(self.named(written, Command::RecordReturn))
            }
            Command::Dispose(c) => {
                let mut scope = self
                    .lock_returns(&c, std::iter::once(&c.sku))
                    .map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |ledger, scope, _| {
                    ledger.decide_dispose(scope, c).map_err(Err)
                })
            }
            Command::Adjust(c) => {
                let mut scope = self.lock_stock(&c, &c.sku).map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |_, _, _| {
                    Ok(Fact::StockAdjusted(c))
                })
            }
            Command::SetSafetyStock(c) => {
                let mut scope = self.lock_stock(&c, &c.sku).map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |_, _, _| {
                    Ok(Fact::SafetyStockSet(c))
                })
            }
            Command::Reconcile(c) => {
                let mut scope = self
                    .lock_reviews(&c, &c.sku)
                    .map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |ledger, scope, _| {
                    ledger.decide_reconcile(scope, c)
                })
            }
            Command::ResolveDrift(c) => {
                let mut scope = self
                    .lock_reviews(&c, &c.sku)
                    .map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |ledger, scope, _| {
                    ledger.decide_resolve(scope, c)
                })
            }
            Command::AcknowledgeStoreAnomaly(c) => {
                let mut scope = self.lock_stores(&c).map_err(SubmitError::Archive)?;
                self.write(&mut scope, Some(keyed(&c)), stamp, |_, scope, _| {
                    decide_acknowledge(scope, c).map_err(Err)
                })
            }
        }
    }

    fn submit_to_hold(&self, request: HoldRequest, stamp: Stamp) -> Result<Decision, SubmitError> {
        let written = {
            let keyed = request.key();
            let mut scope = self
                .lock_hold(request.reservation_id(), keyed.as_ref().map(|(k, _)| k))
                .map_err(SubmitError::Archive)?;
            self.write_with(&mut scope, keyed, request, stamp, |l, scope, r, now_ms| {
                l.decide_on_hold(scope, r, now_ms).map_err(Err)
            })?
        };
        Ok(self.named(written, |request| match request {
            HoldRequest::Commit(c) => Command::Commit(c),
            HoldRequest::Release(c) => Command::Release(c),
            HoldRequest::Extend(c) => Command::Extend(c),
            HoldRequest::Expire(c) => Command::Expire(c),
        }))
    }

    fn submit_sale(&self, sale: RecordSale, stamp: Stamp) -> Result<Decision, SubmitError> {
        let written = {
            let mut scope = self.lock_sale(&sale).map_err(SubmitError::Archive)?;
            let store_id = sale.store_id.clone();
            let jump_max = self.config.store_seq_jump_max;
            let keyed = Some(keyed(&sale));
            let written =
                self.write_with(&mut scope, keyed, sale, stamp, |_, scope, sale, _| {
                    Ok(decide_sale(scope, sale, jump_max))
                })?;
            if let Written::Decided(Ok(receipt)) = &written
                && receipt.duplicate
                && let Some(store) = scope.table.by_id.get_mut(&store_id)
            {
                // Counted, not logged: a retry is not an event.
                store.duplicates_absorbed += 1;
            }
            written
        };
        Ok(self.named(written, Command::RecordSale))
    }

    /// [`Ledger::write_with`] for a command without lines, whose conflicts are named in full
    /// under the locks. `decide` owns the command.
    fn write<S: Scope>(
        &self,
        scope: &mut S,
        keyed: Option<(IdempotencyKey, Fingerprint)>,
        stamp: Stamp,
        decide: impl FnOnce(&Self, &mut S, u64) -> Result<Fact, Decision>,
    ) -> Result<Decision, SubmitError> {
        let written = self.write_with(scope, keyed, (), stamp, |ledger, scope, (), now_ms| {
            decide(ledger, scope, now_ms)
        })?;
        Ok(match written {
            Written::Decided(decision) => decision,
            // A command without a `lines` field has no lines to differ; named as they are.
            Written::LinesConflict(conflict, ()) => Err(conflict.unnamed()),
        })
    }

    /// The steps every write shares, once its scope is locked: answer a retry from its record,
    /// decide, take the next LSN and append, apply, record the outcome under the key. `decide`
    /// gives the fact to log, or an answer that changes nothing (a refusal, or a reconciled
    /// position that matched), which is returned as it is.
    ///
    /// `command` is handed to `decide`, or back to the caller when the key was used before
    /// with other lines: naming the line that differs needs the original request from the log,
    /// which is read only once the locks are released ([`Ledger::named`]).
    fn write_with<S: Scope, C>(
        &self,
        scope: &mut S,
        keyed: Option<(IdempotencyKey, Fingerprint)>,
        command: C,
        stamp: Stamp,
        decide: impl FnOnce(&Self, &mut S, C, u64) -> Result<Fact, Decision>,
    ) -> Result<Written<C>, SubmitError> {
        let Stamp { now_ms, by } = stamp;
        let now_ms = self.raise_time_floor(now_ms);
        let keyed = keyed.map(|(key, fingerprint)| (key, fingerprint.sent_by(by.as_ref())));
        if let Some((key, fingerprint)) = &keyed
            && let Some(answer) = self.retry_answer(scope, key, fingerprint, now_ms)
        {
            return Ok(match answer {
                Ok(decision) => Written::Decided(decision),
                Err(conflict) => Written::LinesConflict(conflict, command),
            });
        }
        // Past the memory limit, only what ends a hold (freeing memory in time) or moves its
        // expiry is decided; retries were answered above.
        if let Some((used_bytes, limit_bytes)) = self.memory_exhausted()
            && !keyed.as_ref().is_none_or(|(key, _)| {
                matches!(
                    key.kind,
                    CommandKind::Commit | CommandKind::Release | CommandKind::Extend
                )
            })
        {
            return Err(SubmitError::MemoryExhausted {
                used_bytes,
                limit_bytes,
            });
        }
        let fact = match decide(self, scope, command, now_ms) {
            Ok(fact) => fact,
            Err(unchanged) => return Ok(Written::Decided(unchanged)),
        };
        let event = self.sequence(now_ms, by, fact)?;
        scope
            .apply(self, &event)
            .expect("an event decided under these locks applies to them");
        scope.record_tap(self, &event);
        let outcome = event.fact.outcome();
        if let Some((key, fingerprint)) = keyed {
            scope.set_record(key, fingerprint, event.lsn, event.at_ms, &outcome);
        }
        Ok(Written::Decided(Ok(Receipt {
            lsn: event.lsn,
            outcome,
            duplicate: false,
        })))
    }

    /// The answer to a retry of `key`, if its record is retained: the original receipt, or a
    /// conflict naming the first field that differs. `Err` when that field is the lines, which
    /// the record hashes as one field (see [`Ledger::named`]).
    fn retry_answer<S: Scope>(
        &self,
        scope: &S,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now_ms: u64,
    ) -> Option<Result<Decision, LinesConflict>> {
        let record = scope.record(key, &self.names)?;
        if !self.record_retained(&record, now_ms) {
            return None;
        }
        Some(match record.fingerprint.differing_field(fingerprint) {
            Some("lines") => Err(LinesConflict {
                key: key.to_string(),
                original_lsn: record.lsn,
            }),
            Some(field) => Ok(Err(Refusal::KeyConflict {
                key: key.to_string(),
                field: field.to_owned(),
                reason: if field == PRINCIPAL_FIELD {
                    // Not which principal: that is the other caller's business.
                    "is not the one that first used this key".to_owned()
                } else {
                    DIFFERS_FROM_ORIGINAL.to_owned()
                },
            })),
            None => Ok(Ok(Receipt {
                lsn: record.lsn,
                outcome: record.outcome,
                duplicate: true,
            })),
        })
    }

    /// The decision of a write, with a conflict on its lines named down to the line.
    ///
    /// This is the one place the ledger reads its log for a live command, and it does so here,
    /// after the command's locks are released, rather than in the engine: here the new request
    /// (which the ledger consumed) and the record's LSN are both at hand, and the engine would
    /// need the request handed back through every `Decision`. The read may touch the disk,
    /// and a conflict is one client's mistake: it must not hold up other commands on the same
    /// shards. Only a conflict on lines gets here; a valid write never reads.
    fn named<C>(&self, written: Written<C>, command: impl FnOnce(C) -> Command) -> Decision {
        match written {
            Written::Decided(decision) => decision,
            Written::LinesConflict(conflict, new) => Err(self.name_lines(conflict, &command(new))),
        }
    }

    /// Compares `new`'s lines with those of the request first sent under its key, read from
    /// the event at the record's LSN. The log keeps a history window, not every event the
    /// keys remember: if that event is gone (or unreadable, or not yet durable: a conflicting
    /// request racing the original), the conflict names `lines`.
    fn name_lines(&self, conflict: LinesConflict, new: &Command) -> Refusal {
        let original = self
            .log
            .read_from(conflict.original_lsn, 1)
            .ok()
            .and_then(|events| events.into_iter().next())
            .filter(|event| event.lsn == conflict.original_lsn)
            .map(|event| event.fact.to_decision().0)
            .filter(|original| original.idempotency_key() == new.idempotency_key());
        match (
            original.as_ref().and_then(Command::request_lines),
            new.request_lines(),
        ) {
            (Some(original), Some(new)) => {
                let (field, reason) = lines_difference(original, new);
                Refusal::KeyConflict {
                    key: conflict.key,
                    field,
                    reason,
                }
            }
            _ => conflict.unnamed(),
        }
    }

    /// Gives `fact` the next LSN and appends it to the log (step 5 of the protocol). A failed
    /// append fail-stops the ledger: nothing is applied, now or later.
    fn sequence(
        &self,
        at_ms: u64,
        by: Option<PrincipalName>,
        fact: Fact,
    ) -> Result<Arc<Event>, SubmitError> {
        let mut sequencer = lock(&self.sequencer);
        if let Some(failure) = &sequencer.failure {
            return Err(SubmitError::FailStopped(failure.clone()));
        }
        let event = Arc::new(Event {
            lsn: sequencer.next_lsn,
            at_ms,
            by,
            fact,
        });
        if let Err(error) = self.log.append(&event) {
            sequencer.failure = Some(error.to_string());
            self.failed.store(true, Ordering::Release);
            return Err(SubmitError::Log(error));
        }
        let history_ms = self.config.history_ms;
        sequencer.advance(event.lsn, at_ms, history_ms);
        Ok(event)
    }

    // ----------------------------------------------------------------------------------------
    // Replay

    /// Applies a recorded event without deciding anything. Events must arrive in LSN order,
    /// starting at the ledger's `next_lsn`.
    pub fn replay(&self, event: &Event) -> Result<(), ReplayError> {
        match &event.fact {
            Fact::HoldPlaced { reserve, .. } | Fact::ReserveRefused { reserve, .. } => {
                let mut scope = self.lock_reserve(reserve)?;
                self.replay_in(&mut scope, event)
            }
            Fact::HoldCommitted { .. }
            | Fact::HoldReleased(_)
            | Fact::HoldExtended { .. }
            | Fact::HoldExpired(_)
            | Fact::HoldAlreadyEnded { .. } => {
                let key = event.fact.key();
                let id = event.fact.reservation_id().expect("a hold fact");
                let mut scope = self.lock_hold(id, key.as_ref().map(|(k, _)| k))?;
                self.replay_in(&mut scope, event)
            }
            Fact::SaleRecorded(sale) | Fact::SaleRecordedOutOfSequence { sale, .. } => {
                let mut scope = self.lock_sale(sale)?;
                self.replay_in(&mut scope, event)
            }
            Fact::StoreAnomalyAcknowledged { acknowledge: c, .. } => {
                let mut scope = self.lock_stores(c)?;
                self.replay_in(&mut scope, event)
            }
            Fact::ReturnRecorded(c) => {
                let mut scope = self.lock_returns(c, c.lines.iter().map(|l| &l.sku))?;
                self.replay_in(&mut scope, event)
            }
            Fact::ReturnDisposed(c) => {
                let mut scope = self.lock_returns(c, std::iter::once(&c.sku))?;
                self.replay_in(&mut scope, event)
            }
            Fact::StockAdjusted(c) => {
                let mut scope = self.lock_stock(c, &c.sku)?;
                self.replay_in(&mut scope, event)
            }
            Fact::SafetyStockSet(c) => {
                let mut scope = self.lock_stock(c, &c.sku)?;
                self.replay_in(&mut scope, event)
            }
            Fact::PositionReconciled { reconcile: c, .. } => {
                let mut scope = self.lock_reviews(c, &c.sku)?;
                self.replay_in(&mut scope, event)
            }
            Fact::DriftResolved { resolve: c, .. } => {
                let mut scope = self.lock_reviews(c, &c.sku)?;
                self.replay_in(&mut scope, event)
            }
        }
    }

    /// Replay's half of [`Ledger::write`]: check the LSN, apply, record the outcome.
    fn replay_in<S: Scope>(&self, scope: &mut S, event: &Event) -> Result<(), ReplayError> {
        {
            let mut sequencer = lock(&self.sequencer);
            if event.lsn != sequencer.next_lsn {
                return Err(ReplayError::Gap {
                    expected: sequencer.next_lsn,
                    found: event.lsn,
                });
            }
            sequencer.advance(event.lsn, event.at_ms, self.config.history_ms);
        }
        self.raise_time_floor(event.at_ms);
        scope
            .apply(self, event)
            .map_err(|reason| ReplayError::Inapplicable {
                lsn: event.lsn,
                reason,
            })?;
        if let Some((key, fingerprint)) = event.key() {
            let outcome = event.fact.outcome();
            scope.set_record(key, fingerprint, event.lsn, event.at_ms, &outcome);
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
}

/// When and by whom a command was issued.
struct Stamp {
    now_ms: u64,
    by: Option<PrincipalName>,
}

fn keyed<K: KeyedCommand>(command: &K) -> (IdempotencyKey, Fingerprint) {
    (command.idempotency_key(), command.fingerprint())
}

/// A key used before with other lines, found under the command's locks.
struct LinesConflict {
    key: String,
    /// The LSN of the event that recorded the request first sent under the key.
    original_lsn: Lsn,
}

impl LinesConflict {
    /// The refusal when the original request cannot be compared line by line.
    fn unnamed(self) -> Refusal {
        Refusal::KeyConflict {
            key: self.key,
            field: "lines".to_owned(),
            reason: format!(
                "{DIFFERS_FROM_ORIGINAL} (the log does not hold that request to compare \
                 with, so the line that differs is not named)"
            ),
        }
    }
}

/// What [`Ledger::write_with`] did: decided, or found the key used before with other lines and
/// handed the command back to name them (see [`Ledger::named`]).
enum Written<C> {
    Decided(Decision),
    LinesConflict(LinesConflict, C),
}
