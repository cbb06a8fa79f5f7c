//! What every handler, the background tasks and the change feeds share: the engine, the
//! budgets, the head LSN the change feeds follow, the shutdown token, and the fail-stop
//! wake-up.

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::durability::DurabilityWaiter;
use crate::lane::BulkLane;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use inv_engine::{Engine, SubmitError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// ListEvents calls at once (each holds one read of events and its page): a handful of
/// people looking into orders at a time; more is RESOURCE_EXHAUSTED.
pub const EVENT_LISTINGS_MAX: usize = 4;

pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub config: ServerConfig,
    /// Budget of interactive writes waiting on the log.
    pub writes: Arc<Semaphore>,
    /// Budget of bulk calls; separate so interactive writes never wait behind them.
    pub bulk: Arc<Semaphore>,
    /// Where bulk calls run (see `lane` and `bulk`).
    pub bulk_lane: BulkLane,
    /// Budget of open change feeds.
    pub watches: Arc<Semaphore>,
    /// Budget of ListEvents calls scanning the log (`events`); its own, so a support tool
    /// never takes a bulk write's place.
    pub event_listings: Arc<Semaphore>,
    /// The highest LSN this server knows to be applied. Change feeds wake when it moves, so
    /// they follow the log without polling it hard.
    pub head: tokio::sync::watch::Sender<u64>,
    /// Cancelled when shutdown starts: stops the expirer and ends change feeds.
    pub shutdown: CancellationToken,
    /// Notified whenever the engine may have fail-stopped (a write saw a log failure, or the
    /// log told the durability relay it failed); the health task then asks the engine, which
    /// is the one source of truth (`Engine::failure`).
    pub fail_stop: Notify,
    /// Where writes await durability.
    pub durability: DurabilityWaiter,
    /// Counters and histograms, encoded at `/metrics` with a snapshot of the engine.
    pub metrics: Metrics,
    /// ERP snapshots and reconciliations: the snapshot store, the tolerance, the one-run guard.
    pub reconciler: Reconciler,
    /// The principals allowed to call; `None` when authentication is off.
    pub auth: Option<Arc<Auth>>,
    /// Requests answered on Session streams, which the call counters see only when a stream
    /// ends: with them, [`Shared::hot_activity`] sees the hot path (`lane::pace`).
    pub session_requests: AtomicU64,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        config: ServerConfig,
        shutdown: CancellationToken,
        reconciler: Reconciler,
        auth: Option<Arc<Auth>>,
    ) -> std::io::Result<Self> {
        let head = engine.head_lsn().0;
        let durability = DurabilityWaiter::new(Arc::clone(&engine));
        Ok(Self {
            engine,
            config,
            writes: Arc::new(Semaphore::new(config.writes_in_flight_max)),
            bulk: Arc::new(Semaphore::new(config.bulk_in_flight_max)),
            bulk_lane: BulkLane::start(config.bulk_nice, config.bulk_idle)?,
            watches: Arc::new(Semaphore::new(config.watch_streams_max)),
            event_listings: Arc::new(Semaphore::new(EVENT_LISTINGS_MAX)),
            head: tokio::sync::watch::Sender::new(head),
            shutdown,
            fail_stop: Notify::new(),
            durability,
            metrics: Metrics::new(),
            reconciler,
            auth,
            session_requests: AtomicU64::new(0),
        })
    }

    /// A number that moves whenever the hot path answers something: hot unary calls that
    /// ended, and Session requests. The bulk lane compares it between its chunks.
    pub fn hot_activity(&self) -> u64 {
        self.metrics
            .hot_calls()
            .wrapping_add(self.session_requests.load(Ordering::Relaxed))
    }

    /// Tells change feeds that events up to `lsn` are in the log.
    pub fn advance_head(&self, lsn: u64) {
        self.head.send_if_modified(|head| {
            let moved = lsn > *head;
            if moved {
                *head = lsn;
            }
            moved
        });
    }

    /// Notes a write error: a log failure fail-stops the engine, and health is told.
    pub fn observe_error(&self, error: &SubmitError) {
        if error.is_fail_stop() {
            error!(%error, "the event log failed; refusing writes until restarted");
            self.fail_stop.notify_one();
        }
    }

    /// Whether the engine has fail-stopped.
    pub fn is_failed(&self) -> bool {
        self.engine.failure().is_some()
    }
}
