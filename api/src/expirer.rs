//! The expiry sweep: records an expiry event for every hold whose TTL has passed.
//!
//! Availability never waits for this task (the engine stops counting a lapsed hold the moment
//! its TTL passes), so the sweep only bounds how late the expiry becomes a fact in the log and
//! in the change feed. Every `expire_interval_ms` it asks the engine for up to
//! `expire_batch_max` expiries; while a round comes back full it runs the next one at once, so a
//! backlog (after a restart, say) drains without waiting for ticks. `expire_due` waits for the
//! log, so it runs on the blocking pool; the task stops when shutdown starts, and `serve` waits
//! for the round in progress before it returns.

use crate::shared::Shared;
use inv_engine::SubmitError;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, warn};

pub(crate) async fn run(shared: Arc<Shared>) {
    let batch_max = shared.config.expire_batch_max;
    let period = Duration::from_millis(shared.config.expire_interval_ms);
    // The first round one period after start, not at once: nothing can lapse before then that
    // recovery did not already see, and tests that drive expiry themselves get a quiet start.
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backlog = false;
    loop {
        if !backlog {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
        } else if shared.shutdown.is_cancelled() {
            return;
        }
        let engine = Arc::clone(&shared.engine);
        let round = tokio::task::spawn_blocking(move || engine.expire_due(batch_max)).await;
        backlog = false;
        match round {
            Ok(Ok(0)) => {}
            Ok(Ok(expired)) => {
                debug!(expired, "holds expired");
                shared.metrics.observe_expiries(expired);
                shared.advance_head(shared.engine.head_lsn().0);
                backlog = expired >= batch_max;
            }
            Ok(Err(SubmitError::Busy { capacity })) => {
                // Back-pressure, not failure: the next tick tries again.
                warn!(capacity, "log queue full; expiry sweep deferred");
            }
            Ok(Err(error)) => {
                shared.observe_error(&error);
                if error.is_fail_stop() {
                    error!(%error, "expiry sweep stopped: the engine is fail-stopped");
                    return;
                }
                error!(%error, "expiry sweep failed; retrying on the next tick");
            }
            Err(join) => {
                error!(error = %join, "expiry sweep panicked; retrying on the next tick");
            }
        }
    }
}
