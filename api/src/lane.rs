//! The bulk lane's thread: a current-thread runtime on an OS thread of its own, at a lower
//! priority, where RecordSales and RecordReturns are decoded, decided and answered (see
//! `bulk` for why and for the routing), and where reconciliations and ListEvents' scans of
//! the log run, each yielding between steps.

use crate::status::{self, Failure};
use std::future::Future;
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
