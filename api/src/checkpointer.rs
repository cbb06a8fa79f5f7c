//! The checkpoint task: writes a checkpoint of the ledger when the policy says one is due, and
//! judges the memory budget every tick (`Engine::memory_tick`; see docs/memory.md). Each
//! checkpoint also moves what it may to the key archive (`Engine::checkpoint`).
//!
//! A restart loads the newest checkpoint and replays only the events after it, so checkpoints
//! bound restart time; the log drops the events a checkpoint covers, so they also bound the
//! data folder. Whether one is due is decided by the engine (`Engine::checkpoint_if_due`, from
//! `checkpoint_every_events` and `checkpoint_every_ms`); this task only asks, on the blocking
//! pool because a checkpoint copies the ledger and waits for the log. No submit ever pays for a
//! checkpoint beyond the short copy made under the ledger's locks.

use crate::shared::Shared;
use inv_engine::{LogError, SubmitError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

/// How often the task asks whether a checkpoint is due, at most.
const POLL_MS_MAX: u64 = 1_000;

pub(crate) async fn run(shared: Arc<Shared>) {
    let policy = shared.config.checkpoint_policy();
    let checkpoints = policy.every_events > 0 || policy.every_ms > 0;
    // Often enough to notice the event count soon after it is reached, and the time trigger
    // within a tenth of its period.
    let poll_ms = match policy.every_ms {
        0 => POLL_MS_MAX,
        every_ms => (every_ms / 10).clamp(10, POLL_MS_MAX),
    };
    let period = Duration::from_millis(poll_ms);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let engine = Arc::clone(&shared.engine);
        let started = Instant::now();
        // The memory budget is judged every tick (a lock per shard, briefly), checkpoints or
        // not: it is what refuses writes before the process runs out of memory.
        let round = tokio::task::spawn_blocking(move || {
            engine.memory_tick();
            if checkpoints {
                engine.checkpoint_if_due(&policy)
            } else {
                Ok(None)
            }
        })
        .await;
        if let Some(failure) = shared.engine.take_eviction_failure() {
            warn!(%failure, "keys could not be moved to the key archive; they stay in memory");
        }
        match round {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(next_lsn))) => info!(
                next_lsn = next_lsn.0,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpoint written; the log before it is trimmed"
            ),
            Ok(Err(LogError::Closed)) => return,
            Ok(Err(error)) => {
                if shared.engine.log_health().is_err() {
                    // The log failed under the checkpoint: the engine is fail-stopped.
                    error!(%error, "checkpoint failed; the event log has failed");
                    shared.observe_error(&SubmitError::Log(error));
                    return;
                }
                warn!(%error, "checkpoint not written; trying again on the next tick");
            }
            Err(join) => {
                error!(error = %join, "checkpoint panicked; trying again on the next tick")
            }
        }
    }
}
