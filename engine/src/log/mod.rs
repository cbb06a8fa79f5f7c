//! The event log interface the ledger writes through, and its in-memory implementations.
//!
//! The ledger calls [`EventLog::append`] once per accepted event, in strictly increasing,
//! gap-free LSN order, while it still holds the locks of everything the event touches. `append`
//! must therefore be quick and must not wait for the disk: a durable log queues the event and
//! makes it durable later, and the caller learns of durability through
//! [`EventLog::wait_durable`]. If `append` fails the event is not applied and the engine
//! fail-stops. Four methods, each with its contract (redb's `StorageBackend` is the model for
//! the size of this trait), plus [`EventLog::admit`], the back-pressure check with a default.
//!
//! [`encoding`] is the byte format of an event in a durable log; `redb` (feature `redb`) is
//! the durable log itself.

use crate::error::LogError;
use crate::event::Event;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::types::Lsn;
use std::sync::Arc;

pub mod encoding;
#[cfg(feature = "redb")]
pub mod redb;

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
}

/// A wake-up for whoever waits on durability; it reads [`EventLog::durable_lsn`] itself.
pub type DurableListener = Arc<dyn Fn() + Send + Sync>;

/// Keeps every event in memory; durable as soon as appended. For tests, simulations and
/// replay checks: `read_from(1)` into a fresh ledger must reproduce the live one.
#[derive(Default)]
pub struct MemLog {
    events: Mutex<Vec<Arc<Event>>>,
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
