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
//! ([`DurabilityWaiter::relay`]), which then wakes the requests whose events are now durable.
//! Waking the requests straight from the writer thread cost a runtime wake-up (a syscall) per
//! request on a current-thread runtime: 64 per group commit with 64 callers, 9 µs of CPU per
//! durable Reserve and a fifth of the throughput. From the relay, on the runtime, the wakes are
//! plain queue pushes, and the writer returns to the disk sooner.
//!
//! Requests wait in a queue ordered by LSN, each on a oneshot, so a group commit wakes exactly
//! the requests it made durable. (Before, every waiter watched one counter, so each commit woke
//! all of them, later batches' included, and each armed a timer of its own as a safety net:
//! measured, about 3.5 wake-ups and a timer per durable Reserve.) A waiter enqueues itself and
//! then reads the durable LSN again, so an advance the relay handled just before the waiter
//! was queued is never lost: the log publishes the LSN before it calls the listener. A log that
//! never calls listeners (one durable on append, like `MemLog`) reports its appends as durable
//! at once; as a safety net against a listener that is not ours (a log takes only one), the
//! relay also looks again every [`RECHECK_INTERVAL`], one timer for all the waiters.

use inv_engine::{Engine, LogError, Lsn};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// How often the relay re-reads the durable LSN without a notification. Only matters if the
/// listener is not called; the log wakes the relay long before this.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

/// A request waiting for `lsn` to be durable. Ordered by LSN (then by arrival, so equal LSNs,
/// a bulk call's and a retry's, are told apart).
struct Waiter {
    lsn: Lsn,
    seq: u64,
    done: oneshot::Sender<Result<(), LogError>>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.lsn, self.seq) == (other.lsn, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.lsn, self.seq).cmp(&(other.lsn, other.seq))
    }
}

/// The waiting requests, lowest LSN first. Bounded by the writes in flight (each holds a
/// permit of `--writes-in-flight-max` or of the bulk budget while it waits).
#[derive(Default)]
struct Queue {
    waiters: BinaryHeap<Reverse<Waiter>>,
    next_seq: u64,
}

pub(crate) struct DurabilityWaiter {
    engine: Arc<Engine>,
    /// A log that acknowledges on append (`Engine::acks_on_append`, from the log, never
    /// chosen): waiting for its fsync would add up to its flush interval to every write and
    /// make none of them safer.
    ack_on_append: bool,
    /// Notified by the log's listener (on the writer thread) on every advance or failure.
    logged: Arc<Notify>,
    /// The requests waiting; the relay wakes them. Locked briefly, never across an await.
    queue: Mutex<Queue>,
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
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Wakes the requests the log's notifications made durable (all of them, with the error,
    /// if the log failed), on the runtime, and calls `on_failure` when the log failed; runs
    /// until dropped (`serve` aborts it once every call has finished).
    pub async fn relay(&self, on_failure: impl Fn()) {
        let mut failed = false;
        loop {
            tokio::select! {
                () = self.logged.notified() => {}
                () = tokio::time::sleep(RECHECK_INTERVAL) => {}
            }
            let health = self.engine.log_health();
            if health.is_err() && !failed {
                failed = true;
                on_failure();
            }
            self.wake_durable(health);
        }
    }

    /// Wakes every waiter whose LSN is durable, or every waiter with `health`'s error.
    fn wake_durable(&self, health: Result<(), LogError>) {
        let durable = self.engine.durable_lsn();
        let mut queue = self.queue.lock().expect("durability queue poisoned");
        while let Some(Reverse(first)) = queue.waiters.peek() {
            if health.is_ok() && first.lsn > durable {
                break;
            }
            let Some(Reverse(waiter)) = queue.waiters.pop() else {
                break;
            };
            // A waiter that went away (its request was cancelled) does not mind.
            let _ = waiter.done.send(health.clone());
        }
    }

    /// Returns once every event up to `lsn` (already appended) may be acknowledged, or the
    /// log's failure.
    pub async fn wait(&self, lsn: Lsn) -> Result<(), LogError> {
        if self.ack_on_append {
            return self.engine.log_health();
        }
        if self.engine.durable_lsn() >= lsn {
            return Ok(());
        }
        self.engine.log_health()?;
        let (done, woken) = oneshot::channel();
        {
            let mut queue = self.queue.lock().expect("durability queue poisoned");
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.waiters.push(Reverse(Waiter { lsn, seq, done }));
        }
        // Queued first, read second: an advance the relay handled before this waiter was in
        // the queue is seen here (see the module doc). The entry left behind is dropped by
        // the relay's next pass.
        if self.engine.durable_lsn() >= lsn {
            return Ok(());
        }
        // The relay is gone only once the server is: no call waits then.
        woken.await.unwrap_or(Err(LogError::Closed))
    }
}
