//! Waiting for durability without parking a thread per call.
//!
//! A write is acknowledged only once its event is durable. `EventLog::wait_durable` would block
//! the calling thread until then, and `docs/durability.md` measured that waking hundreds of
//! parked threads on two cores, not the disk, limits durable throughput. So writes await
//! durability here instead: the log calls a listener (registered once, at startup) whenever its
//! durable LSN advances or it fails; the listener bumps a `tokio::sync::watch`, and every
//! waiting request re-reads `EventLog::durable_lsn` and `EventLog::health`. One call of the
//! listener wakes every request whose event was in the group commit; the log's own batching is
//! untouched.
//!
//! A waiter subscribes before it reads the durable LSN, so an advance between the read and the
//! wait is never lost (the log publishes the LSN before it calls the listener). A log that never
//! calls listeners (one durable on append, like `MemLog`) reports its appends as durable at
//! once; as a safety net against a listener that is not ours (a log takes only one), waiters
//! also look again every [`RECHECK_INTERVAL`].

use inv_engine::{EventLog, LogError, Lsn};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a waiter re-reads the durable LSN without a wake-up. Only matters if the
/// listener is not called; the log wakes waiters long before this.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

pub(crate) struct DurabilityWaiter {
    log: Arc<dyn EventLog>,
    /// See `ServerConfig::ack_on_append`.
    ack_on_append: bool,
    /// Bumped by the log's listener on every advance or failure.
    advanced: watch::Sender<u64>,
}

impl DurabilityWaiter {
    /// Registers the listener on `log`. A log takes one listener: serve one `Engine` at a time.
    pub fn new(log: Arc<dyn EventLog>, ack_on_append: bool) -> Self {
        let advanced = watch::Sender::new(0u64);
        let bump = advanced.clone();
        log.set_durable_listener(Arc::new(move || {
            bump.send_modify(|count| *count = count.wrapping_add(1));
        }));
        Self {
            log,
            ack_on_append,
            advanced,
        }
    }

    /// Returns once every event up to `lsn` (already appended) may be acknowledged, or the
    /// log's failure.
    pub async fn wait(&self, lsn: Lsn) -> Result<(), LogError> {
        if self.ack_on_append {
            return self.log.health();
        }
        let mut advanced = self.advanced.subscribe();
        loop {
            if self.log.durable_lsn() >= lsn {
                return Ok(());
            }
            self.log.health()?;
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
