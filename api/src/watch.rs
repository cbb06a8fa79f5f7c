//! `WatchAvailability`: a change feed read from the event log.
//!
//! The log is the only source: a feed keeps the LSN it has looked at (`through`), reads the
//! events after it with `EventLog::read_from`, turns each into the positions it changed, and
//! sends those that match the filter with their availability as read at that moment. A resumed
//! feed is therefore the same code as a live one that starts further back: there is no separate
//! replay path that could disagree with the live path.
//!
//! Following live: the service advances `Shared::head` after every durable write, which wakes
//! the feeds (at most once per [`READ_INTERVAL_MIN`] each); a feed also looks again every
//! [`POLL_INTERVAL`], which covers events it was not told about (another caller of the engine,
//! or a log whose reads lag its acknowledgements). With `Durability::Async` a feed may report
//! an event the log has committed but not yet fsynced, i.e. before its writer's acknowledgement
//! is crash-proof; with `Sync` it only sees durable events.
//!
//! Every loop and buffer is bounded: at most [`READ_EVENTS_MAX`] events per read, at most
//! [`CHANGES_PER_MESSAGE_MAX`] changes per message, [`STREAM_BUFFER`] messages queued for a slow
//! client (then the feed waits for it, holding no lock), and `watch_streams_max` feeds at once.
//! On shutdown a feed ends with UNAVAILABLE naming the LSN to resume from (STACK.md §5.1: an
//! open stream would otherwise hold graceful shutdown forever).

use crate::convert::{self, FieldErrors};
use crate::shared::Shared;
use crate::status::Failure;
use inv_engine::{DriftAction, Engine, Event, Fact, Line, Lsn, ReservationId};
use inv_proto::v1 as pb;
use pb::ChangeCause;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Most events read from the log at once.
pub const READ_EVENTS_MAX: usize = 1_024;
/// Most changes in one message; a larger batch is split at an event boundary.
pub const CHANGES_PER_MESSAGE_MAX: usize = 1_000;
/// How often a feed looks at the log when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often an idle feed reports progress (`through_lsn` without changes) while the log grows
/// with events it filters out, so a reconnecting client does not rescan them.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Messages queued for a client before the feed waits for it.
pub const STREAM_BUFFER: usize = 16;
/// Least time between two reads of the log by one feed. Under a heavy write load the head
/// moves thousands of times a second; a feed then reads every 10 ms and gets everything since
/// in one batch, instead of waking (and taking a blocking thread) for every event.
pub const READ_INTERVAL_MIN: Duration = Duration::from_millis(10);

pub type WatchStream = ReceiverStream<Result<pb::WatchAvailabilityResponse, Status>>;

/// Which positions a feed reports. An empty set matches everything.
struct Filter {
    skus: HashSet<String>,
    locations: HashSet<String>,
}

impl Filter {
    fn matches(&self, sku: &str, location: &str) -> bool {
        (self.skus.is_empty() || self.skus.contains(sku))
            && (self.locations.is_empty() || self.locations.contains(location))
    }
}

/// Validates the request and starts the feed.
pub(crate) fn start(
    shared: &Arc<Shared>,
    request: pb::WatchAvailabilityRequest,
) -> Result<WatchStream, Failure> {
    convert::check_filter_len("skus", request.skus.len())?;
    convert::check_filter_len("locations", request.locations.len())?;
    let mut errors = FieldErrors::default();
    for (i, sku) in request.skus.iter().enumerate() {
        convert::check_id(&mut errors, &format!("skus[{i}]"), sku);
    }
    for (i, location) in request.locations.iter().enumerate() {
        convert::check_id(&mut errors, &format!("locations[{i}]"), location);
    }
    errors.finish(())?;
    let head = shared.engine.head_lsn().0;
    let through = match request.after_lsn {
        Some(lsn) if lsn > head => return Err(Failure::lsn_ahead_of_log("after_lsn", lsn, head)),
        Some(lsn) => lsn,
        None => head,
    };
    let permit = Arc::clone(&shared.watches)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("watch streams", shared.config.watch_streams_max))?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let feed = Feed {
        shared: Arc::clone(shared),
        filter: Arc::new(Filter {
            skus: request.skus.into_iter().collect(),
            locations: request.locations.into_iter().collect(),
        }),
        through,
        tx,
    };
    tokio::spawn(async move {
        feed.run().await;
        drop(permit);
    });
    Ok(ReceiverStream::new(rx))
}

struct Feed {
    shared: Arc<Shared>,
    filter: Arc<Filter>,
    /// Every event up to this LSN has been looked at.
    through: u64,
    tx: mpsc::Sender<Result<pb::WatchAvailabilityResponse, Status>>,
}

/// What one read of the log produced.
struct Batch {
    messages: Vec<pb::WatchAvailabilityResponse>,
    through: u64,
    /// The read was cut at READ_EVENTS_MAX: more events may follow at once.
    full: bool,
}

enum Stop {
    ClientGone,
    ShuttingDown,
}

impl Feed {
    async fn run(mut self) {
        let mut head = self.shared.head.subscribe();
        // The last `through_lsn` the client was sent, and when.
        let mut reported: Option<u64> = None;
        let mut reported_at = Instant::now();
        let stop = 'feed: loop {
            let read_at = Instant::now();
            loop {
                match self.read().await {
                    Err(failure) => {
                        tracing::error!(message = %failure.message, "change feed stopped");
                        let _ = self.tx.send(Err(failure.into())).await;
                        return;
                    }
                    Ok(None) => break,
                    Ok(Some(batch)) => {
                        for message in batch.messages {
                            let through = message.through_lsn;
                            if let Err(stop) = self.send(message).await {
                                break 'feed stop;
                            }
                            reported = Some(through);
                            reported_at = Instant::now();
                        }
                        self.through = batch.through;
                        if !batch.full {
                            break;
                        }
                    }
                }
            }
            // The first catch-up is always reported, so the client learns where it stands;
            // after that, progress without changes is throttled.
            let due = match reported {
                None => true,
                Some(lsn) => lsn < self.through && reported_at.elapsed() >= PROGRESS_INTERVAL,
            };
            if due {
                let progress = pb::WatchAvailabilityResponse {
                    through_lsn: self.through,
                    changes: Vec::new(),
                };
                if let Err(stop) = self.send(progress).await {
                    break 'feed stop;
                }
                reported = Some(self.through);
                reported_at = Instant::now();
            }
            tokio::select! {
                () = self.shared.shutdown.cancelled() => break 'feed Stop::ShuttingDown,
                () = self.tx.closed() => break 'feed Stop::ClientGone,
                changed = head.changed() => {
                    if changed.is_err() {
                        break 'feed Stop::ShuttingDown;
                    }
                }
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            tokio::select! {
                () = self.shared.shutdown.cancelled() => break 'feed Stop::ShuttingDown,
                () = tokio::time::sleep_until(read_at + READ_INTERVAL_MIN) => {}
            }
        };
        if let Stop::ShuttingDown = stop {
            let failure = Failure::shutting_down(format!(
                "server shutting down; resume with after_lsn = {}",
                self.through
            ));
            // A client that stopped reading does not hold shutdown up.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tx.send(Err(failure.into())))
                .await;
        }
    }

    /// Sends one message, giving up if the client left or shutdown started meanwhile.
    async fn send(&self, message: pb::WatchAvailabilityResponse) -> Result<(), Stop> {
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| Stop::ClientGone),
            () = self.shared.shutdown.cancelled() => Err(Stop::ShuttingDown),
        }
    }

    /// Reads the events after `through` and the changes they made, on the blocking pool (the
    /// log may read from disk).
    async fn read(&self) -> Result<Option<Batch>, Failure> {
        let shared = Arc::clone(&self.shared);
        let filter = Arc::clone(&self.filter);
        let from = Lsn(self.through + 1);
        tokio::task::spawn_blocking(move || read_changes(&shared.engine, &filter, from))
            .await
            .map_err(|e| crate::status::join_error(&e))?
    }
}

fn read_changes(engine: &Engine, filter: &Filter, from: Lsn) -> Result<Option<Batch>, Failure> {
    let events = engine
        .read_events(from, READ_EVENTS_MAX)
        .map_err(|error| Failure::internal(format!("reading the event log: {error}")))?;
    let Some(last) = events.last() else {
        return Ok(None);
    };
    let through = last.lsn.0;
    let mut messages = Vec::new();
    let mut changes = Vec::new();
    for event in &events {
        for (cause, sku, location) in affected(engine, event) {
            if filter.matches(&sku, &location) {
                let availability = engine.check(&sku, &location);
                changes.push(pb::AvailabilityChange {
                    lsn: event.lsn.0,
                    cause: cause as i32,
                    position: Some(convert::availability(&sku, &location, availability)),
                });
            }
        }
        if changes.len() >= CHANGES_PER_MESSAGE_MAX {
            messages.push(pb::WatchAvailabilityResponse {
                through_lsn: event.lsn.0,
                changes: std::mem::take(&mut changes),
            });
        }
    }
    if !changes.is_empty() {
        messages.push(pb::WatchAvailabilityResponse {
            through_lsn: through,
            changes,
        });
    }
    Ok(Some(Batch {
        messages,
        through,
        full: events.len() == READ_EVENTS_MAX,
    }))
}

/// The positions an event changed, with why. Refusals (out of stock, commands on ended holds)
/// and extensions change no availability and yield nothing.
///
/// Commit, release and expiry events name only the reservation, so their positions come from
/// the hold, which the engine remembers for the key retention window (a feed resumed from
/// further back than that cannot name them and skips them).
fn affected(engine: &Engine, event: &Event) -> Vec<(ChangeCause, String, String)> {
    let one = |cause, sku: &dyn ToString, location: &dyn ToString| {
        vec![(cause, sku.to_string(), location.to_string())]
    };
    let hold = |cause, id: &ReservationId| {
        engine
            .reservation(id.as_str())
            .ok()
            .flatten()
            .map(|h| {
                h.lines
                    .iter()
                    .map(|l| (cause, l.sku.to_string(), l.location.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let lines = |cause, lines: &[Line]| {
        lines
            .iter()
            .map(|l| (cause, l.sku.to_string(), l.location.to_string()))
            .collect()
    };
    match &event.fact {
        Fact::HoldPlaced { reserve, .. } => lines(ChangeCause::Reserved, &reserve.lines),
        Fact::HoldCommitted { commit, .. } => hold(ChangeCause::Committed, &commit.reservation_id),
        Fact::HoldReleased(release) => hold(ChangeCause::Released, &release.reservation_id),
        Fact::HoldExpired(request) => hold(ChangeCause::Expired, request.reservation_id()),
        Fact::SaleRecorded(sale) | Fact::SaleRecordedOutOfSequence { sale, .. } => {
            lines(ChangeCause::Sold, &sale.lines)
        }
        Fact::ReturnRecorded(ret) => ret
            .lines
            .iter()
            .map(|l| {
                (
                    ChangeCause::Returned,
                    l.sku.to_string(),
                    l.location.to_string(),
                )
            })
            .collect(),
        Fact::ReturnDisposed(c) => one(ChangeCause::Disposed, &c.sku, &c.location),
        Fact::StockAdjusted(c) => one(ChangeCause::Adjusted, &c.sku, &c.location),
        Fact::SafetyStockSet(c) => one(ChangeCause::SafetyStockSet, &c.sku, &c.location),
        Fact::PositionReconciled {
            reconcile,
            held: false,
            drift,
            ..
        } if *drift != 0 => one(ChangeCause::Reconciled, &reconcile.sku, &reconcile.location),
        Fact::DriftResolved { resolve, drift, .. }
            if resolve.action == DriftAction::Apply && *drift != 0 =>
        {
            one(ChangeCause::Reconciled, &resolve.sku, &resolve.location)
        }
        // Held or zero drift, a dismissed drift, refusals, extensions and verdicts on a store's
        // sequence change no availability.
        Fact::PositionReconciled { .. }
        | Fact::DriftResolved { .. }
        | Fact::StoreAnomalyAcknowledged { .. }
        | Fact::ReserveRefused { .. }
        | Fact::HoldExtended { .. }
        | Fact::HoldAlreadyEnded { .. } => Vec::new(),
    }
}
