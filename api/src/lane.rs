//! The bulk lane's thread: a current-thread runtime on an OS thread of its own, at a lower
//! priority, where RecordSales and RecordReturns are decoded, decided and answered (see
//! `bulk` for why and for the routing), and where reconciliations and ListEvents' scans of
//! the log run, each yielding between steps.

use crate::shared::Shared;
use crate::status::{self, Failure};
use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;

/// The lane: a thread running a current-thread runtime until the lane is dropped.
pub(crate) struct BulkLane {
    handle: tokio::runtime::Handle,
    /// Dropped (or sent) to stop the thread; its runtime then cancels what is left.
    stop: Option<oneshot::Sender<()>>,
}

impl BulkLane {
    /// Starts the lane's thread at niceness `nice` (0: the server's own priority), in the
    /// idle scheduling class if `idle`.
    pub fn start(nice: i32, idle: bool) -> std::io::Result<BulkLane> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("inv-bulk".into())
            .spawn(move || {
                lower_priority(nice, idle);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(BulkLane {
            handle,
            stop: Some(stop),
        })
    }

    /// Runs `job` on the lane and returns its answer. A lane that has stopped (the server is
    /// shutting down) answers UNAVAILABLE.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, Failure>> + Send + 'static,
        T: Send + 'static,
    {
        match self.handle.spawn(job).await {
            Ok(result) => result,
            Err(error) if error.is_cancelled() => Err(Failure::shutting_down(
                "the server is shutting down; the bulk call may not have been applied: \
                 retry it (it is idempotent) on a healthy server",
            )),
            Err(error) => Err(status::join_error(&error)),
        }
    }
}

impl Drop for BulkLane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Longest one pause of the lane: a chunk's worth of work is far shorter.
const PAUSE_MAX: Duration = Duration::from_millis(50);

/// A span between two pause points longer than this was not one chunk's work but the lane
/// sitting idle between calls: no pause is owed for it.
const SPAN_MAX: Duration = Duration::from_millis(200);

/// Where the lane's pacing stands: when the last pause point was passed, and the hot path's
/// activity then. One lane, one thread, so a thread-local holds it, shared by every job on
/// the lane (their chunks interleave on that thread).
#[derive(Clone, Copy)]
struct Pace {
    at: Instant,
    hot: u64,
}

thread_local! {
    static PACE: Cell<Option<Pace>> = const { Cell::new(None) };
}

/// Called by bulk work on the lane between chunks, instead of a bare yield. If the hot path
/// answered anything since the last pause point, the lane is held to a duty cycle of
/// `--bulk-percent-under-load`: after a span of work it sleeps for as long as keeps its busy
/// time at that share of the wall clock. Otherwise (or at 100%) it only yields, so a backfill
/// alone runs at full speed.
///
/// Why wall time and not the lane's CPU time: the lane's own CPU is the smaller part of what
/// bulk work costs. Each sale it decides is also encoded and committed by the log writer, and
/// its bytes are read off the network by the runtime's workers, all at normal priority, and a
/// niced lane starved of CPU still feeds them at the rate it gets through chunks. Pacing the
/// lane's busy time paces its output, and with it all of that. (Measured: pacing by the lane's
/// CPU never engaged when the server had one core, where the lane was niced out of most of it
/// but the writer was not; see docs/design.md.)
pub(crate) async fn pace(shared: &Shared) {
    let share = f64::from(shared.config.bulk_percent_under_load) / 100.0;
    if share >= 1.0 {
        tokio::task::yield_now().await;
        return;
    }
    let now = Instant::now();
    let hot = shared.hot_activity();
    let pause = PACE.get().and_then(|last| {
        let span = now.saturating_duration_since(last.at);
        if last.hot == hot || span > SPAN_MAX {
            return None;
        }
        // Busy for `span`: idle for as long again times (1 - share) / share.
        Some(span.mul_f64((1.0 - share) / share).min(PAUSE_MAX))
    });
    match pause {
        Some(pause) if !pause.is_zero() => {
            tokio::time::sleep(pause).await;
            shared.metrics.observe_bulk_paced(pause);
        }
        _ => tokio::task::yield_now().await,
    }
    // The next span starts now; the sleep (and others' chunks during it) is not work.
    PACE.set(Some(Pace {
        at: Instant::now(),
        hot: shared.hot_activity(),
    }));
}

/// Lowers the calling thread's priority to niceness `nice`, and with `idle` moves it to the
/// idle scheduling class; a failure only costs the isolation, so it is logged.
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority(nice: i32, idle: bool) {
    // SAFETY: plain system calls on the calling thread; `param` outlives the call that reads it.
    let tid = unsafe { libc::gettid() };
    if idle {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: as above.
        if unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "cannot move a bulk thread to SCHED_IDLE");
        }
    }
    if nice == 0 {
        return;
    }
    // SAFETY: as above.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if result != 0 {
        warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower a bulk thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority(nice: i32, idle: bool) {
    if nice != 0 || idle {
        warn!(
            nice,
            idle, "thread priorities are only set on Linux; the bulk lane runs at normal priority"
        );
    }
}
