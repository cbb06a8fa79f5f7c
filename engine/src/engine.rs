//! The engine: a ledger, the clock it decides by, and the log it answers through.
//!
//! This is the type the API and simulations hold. It adds three things to the ledger: time
//! (read once per command from the injected [`Clock`]), durability (a submit returns only once
//! its event, or for a retry the original event, is durable in the log), and recovery with
//! checkpoints.
//!
//! # Recovery and checkpoints
//! [`Engine::recover`] loads the log's newest checkpoint, if it has one
//! ([`EventLog::latest_checkpoint`], [`Ledger::from_checkpoint`]), and replays the events from
//! the checkpoint's `next_lsn` on; without a checkpoint it replays from LSN 1. While the ledger
//! applies one batch of events, another thread reads and decodes the next one.
//!
//! [`Engine::checkpoint`] writes a checkpoint through the log, which then drops the events it
//! covers. [`Engine::checkpoint_if_due`] does so when a [`CheckpointPolicy`] says it is time:
//! the server calls it from a timer (every few seconds), so no submit ever pays for one.

use crate::archive::KeyArchive;
use crate::clock::Clock;
use crate::command::Command;
use crate::error::{LogError, ReplayError, SubmitError};
use crate::event::Event;
use crate::ledger::{Availability, Decision, Eviction, HoldView, Ledger, LedgerConfig, MemoryUse};
use crate::log::{DurableListener, EventLog};
use crate::stores::StoreStatus;
use crate::sync::{Mutex, lock};
use crate::types::{Lsn, PrincipalName};
use std::sync::Arc;
use std::sync::mpsc;

/// Events per `read_from` call during recovery: large enough that the per-call cost (a redb
/// read transaction, a thread hand-off) vanishes, small enough (a few MiB decoded) that the
/// reader stays only a batch or two ahead.
pub const RECOVERY_BATCH_EVENTS: usize = 16_384;

/// When [`Engine::checkpoint_if_due`] writes a checkpoint: once `every_events` events have been
/// appended since the last one, or once `every_ms` of engine time has passed since the last one
/// and at least one event was appended. Zero turns a trigger off.
///
/// The trade: a checkpoint costs time proportional to the ledger (a copy under all locks, during
/// which submits wait, then building, encoding and writing it, during which they do not; see
/// `docs/durability.md` for measurements); the events since the last checkpoint are what a
/// restart must replay. The events trigger bounds restart time under load; the time trigger
/// keeps a quiet engine's log short, and its checkpoint fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every_events: u64,
    pub every_ms: u64,
}

impl Default for CheckpointPolicy {
    /// Every 1,000,000 events (about a second of replay) or every 10 minutes.
    fn default() -> Self {
        Self {
            every_events: 1_000_000,
            every_ms: 600_000,
        }
    }
}

/// How the engine bounds its memory: how long idempotency records and ended holds stay in
/// memory before they may move to the key archive, and the hard limit past which writes that
/// add state are refused (see `ledger/memory.rs` for what is counted, and `ledger/archived.rs`
/// for the archive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// The ledger's estimated memory past which writes that add state are refused with
    /// [`SubmitError::MemoryExhausted`]; 0: no limit.
    pub limit_bytes: u64,
    /// Percent of `limit_bytes` past which records go to the archive as soon as a checkpoint
    /// covers them (not after `key_memory_ms`), and checkpoints are taken as often as the
    /// checkpoint task polls.
    pub high_water_percent: u64,
    /// Records and ended holds stay in memory at least this long (ms) after their last
    /// decision; then, once a checkpoint covers them, the next checkpoint moves them to the
    /// archive. Only with an archive attached.
    pub key_memory_ms: u64,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        Self {
            limit_bytes: 0,
            high_water_percent: 80,
            key_memory_ms: 3_600_000,
        }
    }
}

impl MemoryPolicy {
    fn high_water_bytes(&self) -> u64 {
        self.limit_bytes / 100 * self.high_water_percent.min(100)
    }
}

/// Entries one checkpoint's eviction pass moves to the archive, at most.
const EVICT_PER_CHECKPOINT_MAX: usize = 4_000_000;
/// Archived entries past retention forgotten per checkpoint, at most.
const ARCHIVE_PURGE_PER_CHECKPOINT_MAX: usize = 4_000_000;

/// The last checkpoint this engine wrote (or recovered from).
#[derive(Debug, Clone, Copy)]
struct CheckpointMark {
    next_lsn: Lsn,
    at_ms: u64,
    /// The `next_lsn` of the newest durable checkpoint (`Lsn(1)`: none): what eviction may
    /// move to the archive was last changed below it.
    durable_below: Lsn,
}

pub struct Engine {
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    /// Held for the whole of a checkpoint, so two never run at once.
    checkpoints: Mutex<CheckpointMark>,
    memory: MemoryPolicy,
    /// Why the last eviction to the key archive failed, until taken
    /// ([`Engine::take_eviction_failure`]). A failed eviction only keeps the keys in memory a
    /// while longer, so it never stops the checkpoint it is part of.
    eviction_failure: Mutex<Option<String>>,
}

impl Engine {
    /// Rebuilds the ledger from `log` (its newest checkpoint, if any, then every event after
    /// it), then accepts new events into it.
    ///
    /// Fails if the checkpoint does not load, if the log does not continue exactly at the
    /// checkpoint's `next_lsn`, or if an event does not decode or apply.
    pub fn recover(
        config: LedgerConfig,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ReplayError> {
        Self::recover_with(config, log, clock, None, MemoryPolicy::default())
    }

    /// [`Engine::recover`] with a key archive (the disk tier of idempotency records, see
    /// `ledger/archived.rs`) and a memory policy. The archive's keys are indexed before the
    /// log's tail is replayed (replay faults archived entries in as live writes do); its
    /// entries stay on disk.
    pub fn recover_with(
        config: LedgerConfig,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        archive: Option<Arc<dyn KeyArchive>>,
        memory: MemoryPolicy,
    ) -> Result<Self, ReplayError> {
        let checkpoint = log.latest_checkpoint()?;
        let durable_below = checkpoint.as_ref().map_or(Lsn(1), |c| c.next_lsn);
        let mut ledger = match checkpoint {
            Some(checkpoint) => {
                // The log must hold (or end just before) the checkpoint's next LSN: a log that
                // ends earlier would take the next append at a used LSN.
                let durable = log.durable_lsn();
                if durable.0 + 1 < checkpoint.next_lsn.0 {
                    return Err(ReplayError::Gap {
                        expected: checkpoint.next_lsn,
                        found: durable.next(),
                    });
                }
                Ledger::from_checkpoint(config, Arc::clone(&log), &checkpoint)?
            }
            None => Ledger::new(config, Arc::clone(&log)),
        };
        if let Some(archive) = archive {
            // Entries are archived only once a checkpoint covers them: an archive with entries
            // beside a log without a checkpoint belongs to another log.
            if durable_below == Lsn(1) && archive.stats().entries > 0 {
                return Err(ReplayError::Log(LogError::Corrupt(format!(
                    "the key archive holds {} entries but the log has no checkpoint: they are \
                     not this log's (move the archive away to start over)",
                    archive.stats().entries
                ))));
            }
            ledger.attach_archive(archive)?;
        }
        replay_tail(&ledger, log.as_ref())?;
        let mark = CheckpointMark {
            next_lsn: ledger.next_lsn(),
            at_ms: clock.now_ms(),
            durable_below,
        };
        let engine = Self {
            ledger,
            clock,
            checkpoints: Mutex::new(mark),
            memory,
            eviction_failure: Mutex::new(None),
        };
        engine.memory_tick();
        Ok(engine)
    }

    /// The ledger itself, for tests, simulations and tools that check its invariants or
    /// compare digests. Servers stay on the methods below.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Decides and applies `command`, and returns once its outcome is durable. A refusal
    /// changed nothing and is not recorded, so it is answered at once (the state it was
    /// decided against may include events not yet durable; a crash can only make a later
    /// retry decide it anew).
    pub fn submit(&self, command: Command) -> Result<Decision, SubmitError> {
        self.submit_by(command, None)
    }

    /// [`Engine::submit`] of a command `by` issued (recorded in its event; see
    /// [`Ledger::submit_by`]).
    pub fn submit_by(
        &self,
        command: Command,
        by: Option<PrincipalName>,
    ) -> Result<Decision, SubmitError> {
        let decision = self.submit_queued_by(command, by)?;
        if let Ok(receipt) = &decision {
            self.ledger.log().wait_durable(receipt.lsn)?;
        }
        Ok(decision)
    }

    /// Decides and applies `command` and queues its event, without waiting for durability.
    /// A receipt must not reach the client until `receipt.lsn` is durable
    /// ([`EventLog::wait_durable`], or a [`DurableListener`] for async callers): this is the
    /// first half of [`Engine::submit`], for callers that wait without a thread.
    pub fn submit_queued(&self, command: Command) -> Result<Decision, SubmitError> {
        self.submit_queued_by(command, None)
    }

    /// [`Engine::submit_queued`] of a command `by` issued.
    pub fn submit_queued_by(
        &self,
        command: Command,
        by: Option<PrincipalName>,
    ) -> Result<Decision, SubmitError> {
        // Back-pressure before any lock is taken: a full log queue refuses the command
        // untouched (`SubmitError::Busy`), so the caller may retry it as it is.
        self.ledger.log().admit()?;
        self.ledger.submit_by(command, by, self.clock.now_ms())
    }

    /// The LSN of the last event applied (0 before the first).
    pub fn head_lsn(&self) -> Lsn {
        Lsn(self.ledger.next_lsn().0 - 1)
    }

    /// The highest LSN below which the log is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.ledger.log().durable_lsn()
    }

    /// Why the engine stopped accepting writes, if it has: the one source of truth for
    /// fail-stop. Either an append failed (the ledger refused to go on), or the log's writer
    /// failed on its own thread (every later write will fail).
    pub fn failure(&self) -> Option<String> {
        self.ledger
            .failure()
            .or_else(|| self.ledger.log().health().err().map(|e| e.to_string()))
    }

    /// `Err` once the log has failed or closed; never blocks.
    pub fn log_health(&self) -> Result<(), LogError> {
        self.ledger.log().health()
    }

    /// Registers the one wake-up the log calls when its durable LSN advances or it fails (see
    /// [`EventLog::set_durable_listener`]).
    pub fn set_durable_listener(&self, listener: DurableListener) {
        self.ledger.log().set_durable_listener(listener);
    }

    /// Waits until every event up to `lsn` is durable (blocking; async callers use the
    /// listener).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        self.ledger.log().wait_durable(lsn)
    }

    /// Up to `max` logged events from `from` on, for change feeds and tools.
    pub fn read_events(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        self.ledger.log().read_from(from, max)
    }

    /// Whether a write may be acknowledged once appended (see [`EventLog::acks_on_append`]).
    pub fn acks_on_append(&self) -> bool {
        self.ledger.log().acks_on_append()
    }

    /// Writer statistics of the log, if it keeps any.
    pub fn log_stats(&self) -> Option<crate::log::LogStats> {
        self.ledger.log().stats()
    }

    /// Every store's sale sequencing.
    pub fn store_statuses(&self) -> Vec<StoreStatus> {
        self.ledger.store_statuses()
    }

    /// Open holds, lapsed ones awaiting their expiry event included.
    pub fn holds_open(&self) -> usize {
        self.ledger.holds_open()
    }

    /// The drifts held for review, of one snapshot or of all; see [`Ledger::held_drifts`].
    pub fn held_drifts(&self, snapshot_id: Option<&str>) -> Vec<crate::ledger::HeldDriftView> {
        self.ledger.held_drifts(snapshot_id)
    }

    /// How many drifts are held for review, without copying them.
    pub fn held_drifts_count(&self) -> usize {
        self.ledger.held_drifts_count()
    }

    /// The oldest snapshot time reconciliation can still count from at `now_ms`: the history
    /// window (`LedgerConfig::history_ms`) and the history the log still holds.
    pub fn history_start_ms(&self, now_ms: u64) -> u64 {
        self.ledger.history_start_ms_at(now_ms)
    }

    /// See [`Ledger::digest`].
    pub fn digest(&self) -> u64 {
        self.ledger.digest()
    }

    /// See [`Ledger::check_invariants`].
    pub fn check_invariants(&self) -> Result<(), String> {
        self.ledger.check_invariants()
    }

    pub fn check(&self, sku: &str, location: &str) -> Option<Availability> {
        self.ledger.check(sku, location, self.clock.now_ms())
    }

    /// What each sku may sell at `location`, in order (0 where the position never existed).
    pub fn sellable_at<'a>(
        &self,
        location: &str,
        skus: impl IntoIterator<Item = &'a str>,
        out: &mut Vec<u64>,
    ) {
        self.ledger
            .sellable_at(location, skus, self.clock.now_ms(), out)
    }

    pub fn check_sku(&self, sku: &str) -> Vec<(String, Availability)> {
        self.ledger.check_sku(sku, self.clock.now_ms())
    }

    pub fn reservation(&self, reservation_id: &str) -> Result<Option<HoldView>, LogError> {
        self.ledger.reservation(reservation_id, self.clock.now_ms())
    }

    pub fn store_status(&self, store_id: &str) -> Option<StoreStatus> {
        self.ledger.store_status(store_id)
    }

    /// Records expiry events for up to `batch_max` lapsed holds; returns how many.
    pub fn expire_due(&self, batch_max: usize) -> Result<usize, SubmitError> {
        let expired = self.ledger.expire_due(self.clock.now_ms(), batch_max)?;
        if expired > 0 {
            self.ledger.log().wait_durable(self.head_lsn())?;
        }
        Ok(expired)
    }

    /// Writes a checkpoint of the whole ledger through the log, which may then drop the events
    /// it covers. Returns the checkpoint's `next_lsn`: a restart loads the checkpoint and
    /// replays from there.
    ///
    /// First it forgets what is past retention ([`Ledger::purge`]: keys, ended holds and fully
    /// disposed returns that lookups and digests already ignore; one shard lock at a time), so
    /// that the cut taken with every lock held ([`Ledger::cut`]: an exact cut, during which
    /// submits wait; the large tables are shared copy-on-write, the key records copied) is
    /// proportional to what is live, and so is the checkpoint. Building the
    /// checkpoint from the cut, encoding and writing it happen after the locks are released
    /// (the log writes it a few MiB per commit, between event batches). The
    /// checkpoint is handed to the log only once every event it covers is durable, so a
    /// stored checkpoint never contains an effect the log could still lose. One checkpoint at
    /// a time: a second caller waits for the first.
    pub fn checkpoint(&self) -> Result<Lsn, LogError> {
        let mut mark = lock(&self.checkpoints);
        let at_ms = self.clock.now_ms();
        self.ledger.purge(at_ms);
        if let Err(error) = self.evict(at_ms, mark.durable_below) {
            *lock(&self.eviction_failure) = Some(error.to_string());
        }
        let checkpoint = self.ledger.checkpoint();
        let next_lsn = checkpoint.next_lsn;
        if next_lsn.0 > 1 {
            self.ledger.log().wait_durable(Lsn(next_lsn.0 - 1))?;
        }
        self.ledger.log().write_checkpoint(&checkpoint)?;
        *mark = CheckpointMark {
            next_lsn,
            at_ms,
            durable_below: next_lsn,
        };
        self.memory_tick();
        Ok(next_lsn)
    }

    /// Moves to the archive what the newest durable checkpoint covers and memory need not
    /// hold (sooner past the high-water mark), and forgets what is past retention there.
    fn evict(&self, at_ms: u64, durable_below: Lsn) -> Result<(), LogError> {
        let older_than_ms = if self.memory_pressed() {
            u64::MAX
        } else {
            at_ms.saturating_sub(self.memory.key_memory_ms)
        };
        self.ledger.evict(Eviction {
            covered_below: durable_below,
            older_than_ms,
            max: EVICT_PER_CHECKPOINT_MAX,
        })?;
        self.ledger
            .purge_archive(at_ms, ARCHIVE_PURGE_PER_CHECKPOINT_MAX)?;
        Ok(())
    }

    /// Measures the ledger's memory, and refuses writes that add state while it is past the
    /// policy's limit (accepts them again once it is back under). The server calls it every
    /// second or so; every checkpoint calls it after its eviction.
    pub fn memory_tick(&self) -> MemoryUse {
        let use_ = self.ledger.memory_use();
        let limit = self.memory.limit_bytes;
        let exhausted = limit > 0 && use_.total() > limit;
        self.ledger
            .set_memory_exhausted(exhausted, use_.total(), limit);
        use_
    }

    /// Whether the ledger's memory is past the high-water mark (judged at the last
    /// [`Engine::memory_tick`]).
    fn memory_pressed(&self) -> bool {
        self.memory.limit_bytes > 0
            && self.ledger.memory_used_last() > self.memory.high_water_bytes()
    }

    /// Why the last eviction to the key archive failed, if one did since the last call. The
    /// server logs it; the keys stay in memory (and the budget refuses writes if they fill
    /// it).
    pub fn take_eviction_failure(&self) -> Option<String> {
        lock(&self.eviction_failure).take()
    }

    pub fn memory_policy(&self) -> MemoryPolicy {
        self.memory
    }

    /// Whether writes that add state are being refused (judged at the last
    /// [`Engine::memory_tick`]).
    pub fn memory_exhausted(&self) -> bool {
        self.ledger.memory_refusing()
    }

    /// Writes a checkpoint if `policy` says one is due (see [`CheckpointPolicy`]); returns its
    /// `next_lsn` if it wrote one. Counts from the last checkpoint this engine wrote, or from
    /// recovery.
    pub fn checkpoint_if_due(&self, policy: &CheckpointPolicy) -> Result<Option<Lsn>, LogError> {
        let mark = *lock(&self.checkpoints);
        let events = self.ledger.next_lsn().0.saturating_sub(mark.next_lsn.0);
        let elapsed_ms = self.clock.now_ms().saturating_sub(mark.at_ms);
        // Past the high-water mark, every poll: each checkpoint lets the next one evict more.
        let due = events > 0
            && ((policy.every_events > 0 && events >= policy.every_events)
                || (policy.every_ms > 0 && elapsed_ms >= policy.every_ms)
                || self.memory_pressed());
        if !due {
            return Ok(None);
        }
        self.checkpoint().map(Some)
    }
}

/// Replays every event of `log` from the ledger's `next_lsn` on. A reader thread fetches (and,
/// for a durable log, decodes) the next batch while this thread applies the current one.
/// Returns how many events were replayed.
fn replay_tail(ledger: &Ledger, log: &dyn EventLog) -> Result<u64, ReplayError> {
    let start = ledger.next_lsn();
    std::thread::scope(|scope| {
        // Two batches in flight: one being applied, one ready.
        let (batches, received) = mpsc::sync_channel::<Result<Vec<Arc<Event>>, LogError>>(1);
        scope.spawn(move || {
            let mut next = start;
            loop {
                let batch = log.read_from(next, RECOVERY_BATCH_EVENTS);
                let done = match &batch {
                    Ok(events) => match events.last() {
                        Some(last) => {
                            next = last.lsn.next();
                            false
                        }
                        None => true,
                    },
                    Err(_) => true,
                };
                // A send fails once the applier gave up on an error: stop reading.
                if batches.send(batch).is_err() || done {
                    return;
                }
            }
        });
        let mut replayed = 0u64;
        for batch in received {
            let events = batch?;
            for event in &events {
                // `replay` refuses any event but the ledger's next LSN: the tail must start
                // exactly at the checkpoint and have no gap.
                ledger.replay(event)?;
            }
            replayed += events.len() as u64;
        }
        Ok(replayed)
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::clock::ManualClock;
    use crate::command::*;
    use crate::log::MemLog;
    use crate::types::*;

    const T0: u64 = 1_700_000_000_000;

    fn adjust(id: &str, sku: &str, delta: i64) -> Command {
        Command::Adjust(Adjust {
            adjustment_id: AdjustmentId::from(id),
            sku: Sku::from(sku),
            location: Location::from("dc-1"),
            delta,
            reason: "receipt".into(),
        })
    }

    fn reserve(id: &str, sku: &str, qty: u64) -> Command {
        Command::Reserve(Reserve {
            reservation_id: ReservationId::from(id),
            channel: Channel::from("web"),
            lines: vec![Line::new(sku, "dc-1", qty)],
            ttl_ms: 60_000,
        })
    }

    fn engine_on(log: &Arc<MemLog>, clock: &Arc<ManualClock>) -> Result<Engine, ReplayError> {
        Engine::recover(
            LedgerConfig {
                shards: 4,
                ..LedgerConfig::default()
            },
            Arc::clone(log) as Arc<dyn EventLog>,
            Arc::clone(clock) as Arc<dyn Clock>,
        )
    }

    /// A from-scratch replay of every event in `log`.
    fn full_replay(log: &MemLog) -> Ledger {
        let ledger = Ledger::new(LedgerConfig::default(), Arc::new(MemLog::new()));
        for event in log.events() {
            ledger.replay(&event).expect("replays");
        }
        ledger
    }

    #[test]
    fn recovery_from_a_checkpoint_plus_the_tail_equals_a_full_replay() {
        let log = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = engine_on(&log, &clock).expect("empty log");
        for i in 0..30 {
            engine
                .submit(adjust(&format!("a{i}"), &format!("sku-{}", i % 7), 10))
                .expect("accepted")
                .expect("not refused");
        }
        for i in 0..20 {
            engine
                .submit(reserve(&format!("r{i}"), &format!("sku-{}", i % 7), 2))
                .expect("accepted")
                .expect("not refused");
        }
        assert_eq!(engine.checkpoint(), Ok(Lsn(51)));
        for i in 0..10 {
            engine
                .submit(Command::Release(Release {
                    reservation_id: ReservationId::from(format!("r{i}").as_str()),
                }))
                .expect("accepted")
                .expect("not refused");
        }
        clock.advance_ms(120_000);
        assert_eq!(engine.expire_due(100), Ok(10));
        let live = engine.ledger().digest();
        drop(engine);

        // MemLog keeps the checkpoint and every event: recovery uses the checkpoint, and a
        // full replay is still possible to compare with.
        assert_eq!(
            log.latest_checkpoint().expect("kept").map(|c| c.next_lsn),
            Some(Lsn(51))
        );
        let recovered = engine_on(&log, &clock).expect("recovers");
        assert_eq!(recovered.ledger().digest(), live);
        assert_eq!(full_replay(&log).digest(), live);
        recovered.ledger().check_invariants().expect("invariants");
        let retry = recovered
            .submit(reserve("r3", "sku-3", 2))
            .expect("retry")
            .expect("not refused");
        assert!(retry.duplicate);
        assert_eq!(retry.lsn, Lsn(34));
        assert_eq!(
            recovered
                .submit(adjust("next", "sku-0", 1))
                .expect("accepted")
                .expect("not refused")
                .lsn,
            Lsn(71)
        );
    }

    /// A log that reports a checkpoint it cannot continue from.
    struct ShortLog {
        inner: MemLog,
        checkpoint: Checkpoint,
    }

    impl EventLog for ShortLog {
        fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
            self.inner.append(event)
        }
        fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
            self.inner.wait_durable(lsn)
        }
        fn durable_lsn(&self) -> Lsn {
            self.inner.durable_lsn()
        }
        fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
            self.inner.read_from(from, max)
        }
        fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
            Ok(Some(self.checkpoint.clone()))
        }
    }

    #[test]
    fn recovery_refuses_a_log_that_does_not_continue_at_the_checkpoint() {
        let source = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = engine_on(&source, &clock).expect("empty log");
        for i in 0..5 {
            engine
                .submit(adjust(&format!("a{i}"), "sku-1", 1))
                .expect("accepted")
                .expect("not refused");
        }
        let checkpoint = engine.ledger().checkpoint();
        assert_eq!(checkpoint.next_lsn, Lsn(6));

        // The log ends before the checkpoint: its next append would reuse an LSN.
        let inner = MemLog::new();
        for event in source.events().iter().take(3) {
            inner.append(event).expect("in order");
        }
        let short = Arc::new(ShortLog { inner, checkpoint });
        let error = Engine::recover(LedgerConfig::default(), short, clock)
            .err()
            .expect("refused");
        assert_eq!(
            error,
            ReplayError::Gap {
                expected: Lsn(6),
                found: Lsn(4)
            }
        );
    }

    #[test]
    fn a_memlog_refuses_a_checkpoint_ahead_of_it_and_ignores_older_ones() {
        let log = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = engine_on(&log, &clock).expect("empty log");
        engine
            .submit(adjust("a", "sku-1", 1))
            .expect("accepted")
            .expect("not refused");
        let old = engine.ledger().checkpoint();
        engine
            .submit(adjust("b", "sku-1", 1))
            .expect("accepted")
            .expect("not refused");
        let mut ahead = engine.ledger().checkpoint();
        ahead.next_lsn = Lsn(9);
        assert_eq!(
            log.write_checkpoint(&ahead),
            Err(LogError::OutOfOrder {
                expected: Lsn(3),
                got: Lsn(9)
            })
        );
        assert_eq!(engine.checkpoint(), Ok(Lsn(3)));
        assert_eq!(log.write_checkpoint(&old), Ok(()));
        assert_eq!(
            log.latest_checkpoint().expect("kept").map(|c| c.next_lsn),
            Some(Lsn(3))
        );
    }
}
