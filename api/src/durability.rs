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
//! relay also looks again every [`RECHECK_INTERVAL`], one timer for all the waiters. Without a
//! relay running (before `serve` starts it, or once it is stopped), a waiter looks for itself
//! at that interval.

use inv_engine::{Engine, LogError, Lsn};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Whether [`DurabilityWaiter::relay`] is running to wake the queue.
    relaying: AtomicBool,
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
            relaying: AtomicBool::new(false),
        }
    }

    /// Wakes the requests the log's notifications made durable (all of them, with the error,
    /// if the log failed), on the runtime, and calls `on_failure` when the log failed; runs
    /// until dropped (`serve` aborts it once every call has finished).
    pub async fn relay(&self, on_failure: impl Fn()) {
        let _relaying = Relaying::start(self);
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
        if !self.relaying.load(Ordering::Acquire) {
            return self.poll_until_durable(lsn).await;
        }
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
        if self.relaying.load(Ordering::Acquire) {
            // Woken by the relay; if it stopped meanwhile, its guard answered `Closed`.
            match woken.await {
                Ok(result) => return result,
                Err(_) => return Err(LogError::Closed),
            }
        }
        // The relay stopped between the two looks (only as the server stops): its guard may
        // have drained the queue before this waiter was in it.
        drop(woken);
        self.poll_until_durable(lsn).await
    }

    /// Without a relay: looks every [`RECHECK_INTERVAL`].
    async fn poll_until_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        loop {
            if self.engine.durable_lsn() >= lsn {
                return Ok(());
            }
            self.engine.log_health()?;
            tokio::time::sleep(RECHECK_INTERVAL).await;
        }
    }
}

/// Marks the relay running while it lives; when it stops (the task is aborted), every request
/// still queued is answered `Closed` rather than left waiting for a relay that is gone.
struct Relaying<'a>(&'a DurabilityWaiter);

impl<'a> Relaying<'a> {
    fn start(waiter: &'a DurabilityWaiter) -> Self {
        waiter.relaying.store(true, Ordering::Release);
        Relaying(waiter)
    }
}

impl Drop for Relaying<'_> {
    fn drop(&mut self) {
        self.0.relaying.store(false, Ordering::Release);
        self.0.wake_durable(Err(LogError::Closed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inv_engine::{
        Adjust, AdjustmentId, Command, LedgerConfig, Location, RedbLog, RedbLogOptions, Sku,
        SystemClock,
    };

    fn adjust(id: &str) -> Command {
        Command::Adjust(Adjust {
            adjustment_id: AdjustmentId::from(id),
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            delta: 1,
            reason: "receipt".into(),
        })
    }

    /// A write waits until its group commit, woken by the relay when one runs, and by its own
    /// looking when none does (before `serve` starts one, or after it stopped).
    #[tokio::test]
    async fn a_write_is_acknowledged_once_durable_with_or_without_the_relay() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = RedbLog::open(dir.path(), RedbLogOptions::default()).expect("opens");
        let engine = Arc::new(
            Engine::recover(
                LedgerConfig::default(),
                Arc::new(log),
                Arc::new(SystemClock),
            )
            .expect("recovers"),
        );
        let waiter = Arc::new(DurabilityWaiter::new(Arc::clone(&engine)));
        let bounded = |wait| tokio::time::timeout(Duration::from_secs(10), wait);

        let receipt = engine
            .submit_queued(adjust("a-1"))
            .expect("decided")
            .expect("ok");
        bounded(waiter.wait(receipt.lsn))
            .await
            .expect("no relay: polled")
            .expect("durable");
        assert!(engine.durable_lsn() >= receipt.lsn);

        let relay = tokio::spawn({
            let waiter = Arc::clone(&waiter);
            async move { waiter.relay(|| {}).await }
        });
        tokio::task::yield_now().await;
        for i in 2..=20 {
            let receipt = engine
                .submit_queued(adjust(&format!("a-{i}")))
                .expect("decided")
                .expect("ok");
            bounded(waiter.wait(receipt.lsn))
                .await
                .expect("woken")
                .expect("durable");
            assert!(engine.durable_lsn() >= receipt.lsn);
        }
        relay.abort();
        let _ = relay.await;
        assert!(!waiter.relaying.load(Ordering::Acquire), "the guard ran");
        let receipt = engine
            .submit_queued(adjust("a-21"))
            .expect("decided")
            .expect("ok");
        bounded(waiter.wait(receipt.lsn))
            .await
            .expect("polled again")
            .expect("durable");
        assert!(
            waiter
                .queue
                .lock()
                .expect("not poisoned")
                .waiters
                .is_empty()
        );
    }
}
