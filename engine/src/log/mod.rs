//! The event log interface the ledger writes through, and its in-memory implementations.
//!
//! The ledger calls [`EventLog::append`] once per accepted event, in strictly increasing,
//! gap-free LSN order, while it still holds the locks of everything the event touches. `append`
//! must therefore be quick and must not wait for the disk: a durable log queues the event and
//! makes it durable later, and the caller learns of durability through
//! [`EventLog::wait_durable`]. If `append` fails the event is not applied and the engine
//! fail-stops. Four methods, each with its contract (redb's `StorageBackend` is the model for
//! the size of this trait), plus defaulted ones: [`EventLog::admit`] (back-pressure),
//! [`EventLog::health`] and [`EventLog::set_durable_listener`] (waiting without a thread), and
//! [`EventLog::write_checkpoint`] / [`EventLog::latest_checkpoint`] (recovery from a checkpoint
//! plus the log's tail, and trimming).
//!
//! # Checkpoints and trimming
//! A log may store the newest [`Checkpoint`] and drop the events it covers (LSNs below
//! `checkpoint.next_lsn`). Recovery then loads the checkpoint and replays from its `next_lsn`
//! (`Engine::recover`), and [`EventLog::read_from`] refuses a start below the first retained
//! event with [`LogError::Trimmed`]. A log that keeps the defaults stores no checkpoint and
//! trims nothing, which is always correct: recovery replays from LSN 1.
//!
//! [`encoding`] is the byte format of an event in a durable log; `redb` (feature `redb`) is
//! the durable log itself.

use crate::checkpoint::Checkpoint;
use crate::error::LogError;
use crate::event::Event;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::types::Lsn;
use std::sync::Arc;

pub mod encoding;
#[cfg(feature = "redb")]
pub mod redb;
mod stats;

pub use stats::{BATCH_SIZE_BUCKETS, LogStats};

pub trait EventLog: Send + Sync {
    /// Queues `event`, whose LSN is exactly one more than the previous append's. Called under
    /// ledger locks: no blocking I/O. An error means the event was not taken.
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError>;

    /// Blocks until every event with an LSN up to `lsn` is durable (or fails).
    fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError>;

    /// The highest LSN below which the log is a durable, gap-free prefix.
    fn durable_lsn(&self) -> Lsn;

    /// Up to `max` events starting at `from`, in LSN order (for recovery and change feeds).
    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError>;

    /// Called before a command is decided, outside any ledger lock. `Err(LogError::Full)`
    /// means the write queue is at its limit: retry later, nothing was applied. Any other error
    /// means the log has failed or closed. Logs without a queue keep the default, which admits
    /// everything.
    fn admit(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// `Err` once the log has failed or closed; never blocks. With [`EventLog::durable_lsn`]
    /// and a listener, this lets an async caller wait for durability without a thread.
    fn health(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Registers `listener`, called on the log's own thread whenever the durable LSN advances
    /// or the log fails (it must be quick and must not block). At most one listener; logs that
    /// are durable as soon as `append` returns keep the default, which never calls it.
    fn set_durable_listener(&self, _listener: DurableListener) {}

    /// The newest checkpoint this log stores, if any. Recovery loads it and replays the log
    /// from its `next_lsn`, which the log must still hold (or be about to append).
    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        Ok(None)
    }

    /// Stores `checkpoint` as the newest, and may drop the events it covers (LSNs below
    /// `checkpoint.next_lsn`); returns once it is durable. The caller must have waited until
    /// every event below `checkpoint.next_lsn` is durable (`Engine::checkpoint` does), and a
    /// log may refuse a checkpoint ahead of its appends (`LogError::OutOfOrder`). A checkpoint
    /// not newer than the stored one is ignored: the stored one already covers it. The default
    /// stores nothing, which is correct for a log that also trims nothing.
    fn write_checkpoint(&self, _checkpoint: &Checkpoint) -> Result<(), LogError> {
        Ok(())
    }

    /// True for a log whose `wait_durable` returns as soon as an event is appended (redb's
    /// `Durability::Async`): a server then acknowledges on append. Derived from the log, never
    /// chosen, so a log that fsyncs before acknowledging can never have its writes acknowledged
    /// early. Logs durable on append keep the default, false: waiting costs them nothing.
    fn acks_on_append(&self) -> bool {
        false
    }

    /// The writer's counters, for metrics; logs without a writer keep the default (none).
    fn stats(&self) -> Option<LogStats> {
        None
    }
}

/// A wake-up for whoever waits on durability; it reads [`EventLog::durable_lsn`] itself.
pub type DurableListener = Arc<dyn Fn() + Send + Sync>;

/// Keeps every event in memory; durable as soon as appended. For tests, simulations and
/// replay checks: `read_from(1)` into a fresh ledger must reproduce the live one.
///
/// It keeps the newest checkpoint written to it, so `Engine::recover` on a `MemLog` exercises
/// recovery from a checkpoint plus the tail, but it never trims: every event stays readable
/// from LSN 1, so a test can still compare that recovery with a full replay.
#[derive(Default)]
pub struct MemLog {
    events: Mutex<Vec<Arc<Event>>>,
    checkpoint: Mutex<Option<Checkpoint>>,
}

impl MemLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        lock(&self.events).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every event, in LSN order.
    pub fn events(&self) -> Vec<Arc<Event>> {
        lock(&self.events).clone()
    }
}

impl EventLog for MemLog {
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        let mut events = lock(&self.events);
        let expected = Lsn(events.len() as u64 + 1);
        if event.lsn != expected {
            return Err(LogError::OutOfOrder {
                expected,
                got: event.lsn,
            });
        }
        events.push(Arc::clone(event));
        Ok(())
    }

    fn wait_durable(&self, _lsn: Lsn) -> Result<(), LogError> {
        Ok(())
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(lock(&self.events).len() as u64)
    }

    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        let events = lock(&self.events);
        let start = usize::try_from(from.0.max(1) - 1).unwrap_or(usize::MAX);
        Ok(events.iter().skip(start).take(max).cloned().collect())
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        Ok(lock(&self.checkpoint).clone())
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let appended = lock(&self.events).len() as u64;
        if checkpoint.next_lsn.0 > appended + 1 {
            return Err(LogError::OutOfOrder {
                expected: Lsn(appended + 1),
                got: checkpoint.next_lsn,
            });
        }
        let mut stored = lock(&self.checkpoint);
        if stored
            .as_ref()
            .is_none_or(|current| current.next_lsn < checkpoint.next_lsn)
        {
            *stored = Some(checkpoint.clone());
        }
        Ok(())
    }
}

/// Retains nothing. Only for measuring the in-memory ledger on its own (benchmarks and long
/// simulations that check state, not replay); an engine on this log cannot recover.
#[derive(Default)]
pub struct DiscardLog {
    last: AtomicU64,
}

impl EventLog for DiscardLog {
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        self.last.store(event.lsn.0, Ordering::Release);
        Ok(())
    }

    fn wait_durable(&self, _lsn: Lsn) -> Result<(), LogError> {
        Ok(())
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(self.last.load(Ordering::Acquire))
    }

    fn read_from(&self, _from: Lsn, _max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        Ok(Vec::new())
    }
}
