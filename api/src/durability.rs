//! Waiting for durability without parking a thread per call.
//!
//! A write is acknowledged only once its event is durable. `EventLog::wait_durable` would block
//! the calling thread until then, and `docs/durability.md` measured that waking hundreds of
//! parked threads on two cores, not the disk, limits durable throughput. So writes await
//! durability here instead: the log calls a listener (registered once, at startup) whenever its
//! durable LSN advances or it fails, and every waiting request then re-reads
//! `EventLog::durable_lsn` and `EventLog::health`. One call of the listener wakes every request
//! whose event was in the group commit; the log's own batching is untouched.
//!
//! The listener runs on the log's writer thread, so it wakes one task only, the relay
//! ([`DurabilityWaiter::relay`]), which then bumps a `tokio::sync::watch` that the requests
//! wait on. Waking the requests straight from the writer thread cost a runtime wake-up (a
//! syscall) per request on a current-thread runtime: 64 per group commit with 64 callers, 9 µs
//! of CPU per durable Reserve and a fifth of the throughput. From the relay, on the runtime,
//! the wakes are plain queue pushes, and the writer returns to the disk sooner.
//!
//! A waiter subscribes before it reads the durable LSN, so an advance between the read and the
//! wait is never lost (the log publishes the LSN before it calls the listener, and a
//! notification the relay is not yet waiting for is kept for it). A log that never calls
//! listeners (one durable on append, like `MemLog`) reports its appends as durable at once; as
//! a safety net against a listener that is not ours (a log takes only one) or a relay that is
//! not running, waiters also look again every [`RECHECK_INTERVAL`].

use inv_engine::{Engine, LogError, Lsn};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often a waiter re-reads the durable LSN without a wake-up. Only matters if the
/// listener is not called; the log wakes waiters long before this.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

pub(crate) struct DurabilityWaiter {
    engine: Arc<Engine>,
    /// A log that acknowledges on append (`Engine::acks_on_append`, from the log, never
    /// chosen): waiting for its fsync would add up to its flush interval to every write and
    /// make none of them safer.
    ack_on_append: bool,
    /// Notified by the log's listener (on the writer thread) on every advance or failure.
    logged: Arc<Notify>,
    /// Bumped by the relay after each notification; requests wait on it.
    advanced: watch::Sender<u64>,
}

impl DurabilityWaiter {
    /// Registers the listener on the engine's log. A log takes one listener: serve one
    /// `Engine` at a time.
    pub fn new(engine: Arc<Engine>) -> Self {
        let logged = Arc::new(Notify::new());
        let notify = Arc::clone(&logged);
        engine.set_durable_listener(Arc::new(move || notify.notify_one()));
        Self {
            ack_on_append: engine.acks_on_append(),
            engine,
            logged,
            advanced: watch::Sender::new(0u64),
        }
    }

    /// Passes the log's notifications on to the waiting requests, on the runtime, and calls
    /// `on_failure` when one says the log failed; runs until dropped (`serve` aborts it once
    /// every call has finished).
    pub async fn relay(&self, on_failure: impl Fn()) {
        loop {
            self.logged.notified().await;
            self.advanced
                .send_modify(|count| *count = count.wrapping_add(1));
            if self.engine.log_health().is_err() {
                on_failure();
            }
        }
    }

    /// Returns once every event up to `lsn` (already appended) may be acknowledged, or the
    /// log's failure.
    pub async fn wait(&self, lsn: Lsn) -> Result<(), LogError> {
        if self.ack_on_append {
            return self.engine.log_health();
        }
        let mut advanced = self.advanced.subscribe();
        loop {
            if self.engine.durable_lsn() >= lsn {
                return Ok(());
            }
            self.engine.log_health()?;
            tokio::select! {
                changed = advanced.changed() => {
                    if changed.is_err() {
                        return Err(LogError::Closed);
                    }
                }
                () = tokio::time::sleep(RECHECK_INTERVAL) => {}
            }
        }
    }
}
