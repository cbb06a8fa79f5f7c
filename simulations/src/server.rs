//! The real server, in process: `inv_api::serve` over a `RedbLog` with `Sync` durability in a
//! temporary data folder, on `127.0.0.1:0`.
//!
//! It runs on a runtime of its own, on a thread of its own, so the load generator's tasks and
//! the server's tasks are scheduled as two processes' would be (they still share the machine's
//! cores). Dropping a [`LocalServer`] without [`LocalServer::stop`] still shuts it down.

use anyhow::{Context, Result, anyhow};
use inv_api::{ServeOptions, ServerConfig};
use inv_engine::{Engine, LedgerConfig, RedbLog, RedbLogOptions, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A running in-process server.
pub struct LocalServer {
    /// Declared first, so it is stopped before the data folder goes.
    serving: ServerThread,
    /// The data folder; removed when the server is dropped.
    _dir: TempDir,
}

impl LocalServer {
    /// Opens a fresh data folder and serves it with `worker_threads` runtime workers and the
    /// default [`ServerConfig`].
    pub fn start(worker_threads: usize) -> Result<LocalServer> {
        Self::start_with(worker_threads, ServerConfig::default())
    }

    /// As [`LocalServer::start`], with the given limits.
    pub fn start_with(worker_threads: usize, config: ServerConfig) -> Result<LocalServer> {
        Self::start_serving(worker_threads, config, ServeOptions::default())
    }

    /// As [`LocalServer::start_with`], with the given [`ServeOptions`] (the quota-flood
    /// scenario turns authentication on through them).
    pub fn start_serving(
        worker_threads: usize,
        config: ServerConfig,
        options: ServeOptions,
    ) -> Result<LocalServer> {
        config.validate()?;
        let dir = tempfile::tempdir().context("creating the data folder")?;
        let log = RedbLog::open(dir.path(), RedbLogOptions::default())
            .with_context(|| format!("opening the log in {}", dir.path().display()))?;
        let engine = Engine::recover(
            LedgerConfig::default(),
            Arc::new(log),
            Arc::new(SystemClock),
        )?;
        // One worker is a current-thread runtime (see `inv_api::host::runtime_builder`), run
        // by the server thread below.
        let runtime = inv_api::host::runtime_builder(worker_threads)
            .max_blocking_threads(config.blocking_threads_max() + 16)
            .thread_name("inv-server")
            .enable_all()
            .build()
            .context("starting the server's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("inv-server-main".into())
            .spawn(move || -> Result<()> {
                let engine = Arc::new(engine);
                let served = runtime.block_on(inv_api::serve_with(
                    Arc::clone(&engine),
                    config,
                    // Without TCP_NODELAY small answers wait for Nagle and delayed ACKs.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move {
                        // A dropped sender shuts down too.
                        let _ = signal.await;
                    },
                    options,
                ));
                // Calls still finishing on the blocking pool hold the engine; wait for them
                // (bounded), then drop the runtime and the engine, which closes the log.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Arc::strong_count(&engine) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                drop(runtime);
                drop(engine);
                served.map_err(|e| anyhow!("serve failed: {e}"))
            })
            .context("starting the server thread")?;
        Ok(LocalServer {
            serving: ServerThread::new(addr, shutdown, thread, "the server thread"),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.serving.url()
    }

    /// Shuts down, drains, and closes the log.
    pub fn stop(mut self) -> Result<()> {
        self.serving.stop()
    }
}

/// A server on a runtime and thread of its own, stopped through a oneshot: what the engine's
/// [`LocalServer`] and the floor (`crate::floor::FloorServer`) share. Dropping it stops it.
pub(crate) struct ServerThread {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
    /// Names the thread in the error of a panic ("the server thread").
    what: &'static str,
}

impl ServerThread {
    pub fn new(
        addr: SocketAddr,
        shutdown: oneshot::Sender<()>,
        thread: JoinHandle<Result<()>>,
        what: &'static str,
    ) -> Self {
        Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            what,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals the shutdown and waits for the thread (once; later calls do nothing).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow!("{} panicked", self.what))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
