//! How a process that hosts the server (the `inventory` binary, the load tool) sets up its
//! runtime and its memory, for latency. Both choices were measured with the load tool on a
//! 2-core VM (`cargo run --release -p inv-sim --bin load`); the figures are in the comments.

use std::io;

/// A tokio runtime builder for `worker_threads` workers.
///
/// One worker gets a current-thread runtime, not a one-worker multi-thread runtime. The
/// multi-thread scheduler runs a task woken by the running task next (its "LIFO slot"). Each
/// finished call wakes its HTTP/2 connection's task, so that task ran after every single
/// answer and wrote it alone: one `writev` per answer on each side of the connection. The
/// current-thread scheduler queues the connection task behind the other ready calls, so one
/// write carries every answer that is ready. Measured: a unary Check went from 21 to 11 µs of
/// CPU (server and client together), and its p99 from 0.86-1.17 ms to 0.74-0.80 ms with 64
/// callers on one connection. (tokio can turn the slot off only behind `tokio_unstable`.)
pub fn runtime_builder(worker_threads: usize) -> tokio::runtime::Builder {
    if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    }
}

/// Turns transparent huge pages off for this process (Linux; elsewhere nothing to do).
///
/// With THP set to `always` (a common distribution default), the first touch of a fresh
/// 2 MiB region of heap zeroes a whole huge page while the touching thread waits. In a VM
/// whose memory the host backs lazily that took 4-5 ms here, and any thread could take it: the
/// log writer in the middle of a group commit held up every write in that batch. That was
/// the whole tail of durable Reserve: p99 5.3-5.9 ms with huge pages, 1.8 ms without; the same
/// run's p50 and throughput did not change. Small pages cost a little TLB reach, which the
/// ledger's benchmarks do not show at the sizes the server runs.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments.
        let status = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_runs_on_the_calling_thread() {
        let runtime = runtime_builder(1).enable_all().build().unwrap();
        let caller = std::thread::current().id();
        let ran_on = runtime.block_on(async {
            tokio::spawn(async { std::thread::current().id() })
                .await
                .unwrap()
        });
        assert_eq!(ran_on, caller, "a spawned task runs on block_on's thread");
        assert_eq!(
            runtime.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        let runtime = runtime_builder(2).enable_all().build().unwrap();
        assert_eq!(runtime.metrics().num_workers(), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_off_is_visible_to_the_kernel() {
        // The flag is per process and only affects page faults, so setting it in a test
        // process is harmless.
        disable_transparent_huge_pages().unwrap();
        let status = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(status, 1, "PR_GET_THP_DISABLE reports the flag set");
    }
}
