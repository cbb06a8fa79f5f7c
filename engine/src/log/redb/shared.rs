//! The state the submitters and the writer thread share: the LSN watermarks, the first
//! failure, the sleeping waiters and the counters.

use super::Durability;
use crate::error::LogError;
use crate::log::DurableListener;
use crate::log::stats::LogStats;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

/// State the submitters and the writer thread share.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    pub(super) durability: Durability,
    pub(super) queue_events_max: usize,
    /// LSN of the last event `append` accepted.
    pub(super) appended_lsn: AtomicU64,
    /// LSN of the last event in a committed batch (durable in `Sync` mode, visible in both).
    pub(super) committed_lsn: AtomicU64,
    /// LSN up to which every event is covered by an fsync commit.
    pub(super) durable_lsn: AtomicU64,
    /// The stored checkpoint's `next_lsn` (0: none), i.e. the first LSN the file still holds.
    pub(super) checkpoint_lsn: AtomicU64,
    /// Set once, on the first failure; checked without a lock on every call.
    pub(super) failed: AtomicBool,
    /// Set when `close` (or drop) starts.
    pub(super) closed: AtomicBool,
    /// Set when the writer thread has ended, however it ended.
    pub(super) writer_exited: AtomicBool,
    /// Why the log failed (the first failure only).
    pub(super) failure: Mutex<Option<String>>,
    /// Threads asleep (or about to sleep) in `wait_durable`, with the LSN each waits for. The
    /// writer wakes exactly those its commit covers: no thread waiting for the next batch is
    /// woken only to sleep again, and a woken thread takes no lock on its way out.
    pub(super) waiters: Mutex<Vec<(u64, Thread)>>,
    /// Told after every advance or failure (see `EventLog::set_durable_listener`).
    pub(super) listener: OnceLock<DurableListener>,
    pub(super) stats: Mutex<LogStats>,
}

/// The engine's one policy for a poisoned lock (see `crate::sync::lock`).
pub(super) use crate::sync::lock;

impl Shared {
    /// The state of a log just opened: everything up to `last_lsn` is durable.
    pub(super) fn new(
        path: PathBuf,
        durability: Durability,
        queue_events_max: usize,
        last_lsn: u64,
        checkpoint_lsn: u64,
    ) -> Shared {
        Shared {
            path,
            durability,
            queue_events_max,
            appended_lsn: AtomicU64::new(last_lsn),
            committed_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            checkpoint_lsn: AtomicU64::new(checkpoint_lsn),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer_exited: AtomicBool::new(false),
            failure: Mutex::new(None),
            waiters: Mutex::new(Vec::new()),
            listener: OnceLock::new(),
            stats: Mutex::new(LogStats::default()),
        }
    }

    pub(super) fn failure_error(&self) -> LogError {
        LogError::Io(
            lock(&self.failure)
                .clone()
                .unwrap_or_else(|| format!("{}: log failed", self.path.display())),
        )
    }

    /// Records the first failure and wakes every waiter.
    pub(super) fn fail(&self, failure: String) {
        lock(&self.failure).get_or_insert(failure);
        self.failed.store(true, Ordering::Release);
        self.wake(true);
    }

    /// Publishes new committed and durable LSNs and wakes the waiters; returns how many.
    pub(super) fn advance(&self, committed: u64, durable: Option<u64>) -> usize {
        self.committed_lsn.store(committed, Ordering::Release);
        if let Some(durable) = durable {
            self.durable_lsn.store(durable, Ordering::Release);
            return self.wake(false);
        }
        0
    }

    /// Wakes the waiters whose LSN is durable now (every waiter if `all`), after the state
    /// they wait on has been published. A waiter registers before it checks that state, and
    /// the lock orders the two, so none sleeps through its wake-up.
    pub(super) fn wake(&self, all: bool) -> usize {
        if let Some(listener) = self.listener.get() {
            listener();
        }
        let durable = self.durable_lsn.load(Ordering::Acquire);
        let ready: Vec<Thread> = lock(&self.waiters)
            .extract_if(.., |(lsn, _)| all || *lsn <= durable)
            .map(|(_, thread)| thread)
            .collect();
        let woken = ready.len();
        for thread in ready {
            thread.unpark();
        }
        woken
    }
}
