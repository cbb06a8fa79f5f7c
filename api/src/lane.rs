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
    /// Starts the lane's thread at niceness `nice` (0: the server's own priority).
    pub fn start(nice: i32) -> std::io::Result<BulkLane> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("inv-bulk".into())
            .spawn(move || {
                lower_priority(nice);
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

/// Longest one pause of the lane: a chunk's worth of work is far shorter, so a longer pause
/// would only mean the clock jumped.
const PAUSE_MAX: Duration = Duration::from_millis(50);

/// Where the lane's pacing stands: at the last pause point, the wall clock, the lane thread's
/// CPU time and the hot path's activity. One lane, one thread, so a thread-local holds it,
/// shared by every job on the lane (their chunks interleave on that thread).
#[derive(Clone, Copy)]
struct Pace {
    at: Instant,
    cpu: Duration,
    hot: u64,
}

thread_local! {
    static PACE: Cell<Option<Pace>> = const { Cell::new(None) };
}

/// Called by bulk work on the lane between chunks, instead of a bare yield. If the hot path
/// answered anything since the last pause point, the lane is held to
/// `--bulk-percent-under-load` of one core over that span: it sleeps until its CPU time is
/// that share of the wall time. Otherwise (or off the lane, or at 100%) it only
/// yields, so a backfill alone runs at full speed.
///
/// Why not only niceness: on two cores the hot path also waits for the log writer and the
/// network, which the lane's events and bytes keep busy at normal priority, so a niced lane
/// still took a third of the hot path's throughput in the backfill scenario. Pacing the
/// lane's own CPU bounds what it feeds them too.
pub(crate) async fn pace(shared: &Shared) {
    let share = f64::from(shared.config.bulk_percent_under_load) / 100.0;
    let (Some(cpu), true) = (thread_cpu_time(), share < 1.0) else {
        tokio::task::yield_now().await;
        return;
    };
    let now = Instant::now();
    let hot = shared.hot_activity();
    let pause = PACE.get().and_then(|last| {
        if last.hot == hot {
            return None;
        }
        let wall = now.saturating_duration_since(last.at);
        let used = cpu.saturating_sub(last.cpu);
        // The wall time `used` may span at `share`, less what has passed.
        Some(used.div_f64(share).saturating_sub(wall).min(PAUSE_MAX))
    });
    match pause {
        Some(pause) if !pause.is_zero() => {
            tokio::time::sleep(pause).await;
            shared.metrics.observe_bulk_paced(pause);
        }
        _ => tokio::task::yield_now().await,
    }
    // The next span starts now; the sleep (and others' chunks during it) is not work.
    PACE.set(thread_cpu_time().map(|cpu| Pace {
        at: Instant::now(),
        cpu,
        hot: shared.hot_activity(),
    }));
}

/// The calling thread's CPU time (`None` where it cannot be read: no pacing then).
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid timespec the call writes; no other memory is touched.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    (result == 0).then(|| Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Lowers the calling thread's priority; a failure only costs the isolation, so it is logged.
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: plain system calls on the calling thread, no memory is passed.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if result != 0 {
        warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower a bulk thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority(nice: i32) {
    if nice != 0 {
        warn!(
            nice,
            "thread priorities are only set on Linux; the bulk lane runs at normal priority"
        );
    }
}
