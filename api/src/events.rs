//! `ListEvents`: the events of one position or one hold, read from the event log, so support
//! staff can answer "what happened to this order's stock" without reading code.
//!
//! The log is the only source, as for the change feed (`watch`): a listing reads the events
//! after `after_lsn` (or from the first one decided at `since_ms`, found by a binary search
//! over LSNs with one-event reads, since decision time follows LSN order), keeps those the
//! filter matches, and describes each: its kind (the fact's name), its ids, the lines it
//! touched at the filter with what it did to `on_hand` and to the units held there, and its
//! outcome in words.
//!
//! Commit, release, expiry and extension events name only the reservation. Their lines come
//! from the hold's `HoldPlaced` when the listing read it, else from the engine's memory of the
//! hold (kept for the key retention window). A hold known to neither shows no lines, and a
//! position filter cannot tell whether it had a line there, so it leaves such events out.
//!
//! Where it runs: a listing only reads, but a scan of up to [`SCAN_EVENTS_MAX`] events decodes
//! that many log records, tens to hundreds of milliseconds of CPU that on the runtime's
//! workers or the blocking pool would be taken from Reserve and Check. So it runs on the bulk
//! lane (a thread at a lower OS priority, see `bulk`), [`READ_EVENTS_MAX`] events per read,
//! yielding between reads so bulk writes interleave, and gets the CPU the hot path leaves.
//! Its budget is its own (`EVENT_LISTINGS_MAX` in `shared`; past it, RESOURCE_EXHAUSTED), so
//! a support tool never takes a store batch's place. At shutdown a listing stops between two
//! reads and answers the page it has; `next_after_lsn` says where to go on.
//!
//! Bounds: at most [`PAGE_SIZE_MAX`] events per page, [`SCAN_EVENTS_MAX`] events looked at
//! per call, and one remembered entry per hold met (so no more than the events looked at).

use crate::convert::FieldErrors;
use crate::shared::{EVENT_LISTINGS_MAX, Shared};
use crate::status::{self, Failure};
use inv_engine::event::OnHandEffect;
use inv_engine::{
    DispositionAction, DriftAction, Engine, Event, Fact, HoldRequest, HoldState, Line, LogError,
    Lsn, ReservationId, ReturnDisposition, SubmitError,
};
use inv_proto::v1 as pb;
use std::collections::HashMap;
use std::sync::Arc;

/// Events in a page when the request does not say.
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Most events in a page: a screenful of history per call, a bounded answer.
pub const PAGE_SIZE_MAX: usize = 1_000;
/// Most events of the log one call looks at, matching or not. A position's events are sparse
/// in a busy log; without this bound one call could decode the whole history (millions of
/// events). At a few microseconds per event it bounds a call to well under a second of the
/// bulk lane, and the caller goes on from `next_after_lsn`.
pub const SCAN_EVENTS_MAX: u64 = 100_000;
/// Events read from the log at once; the lane is yielded between reads.
pub const READ_EVENTS_MAX: usize = 1_024;
/// Short lines a refusal's words name before "and N more".
const SHORT_LINES_NAMED_MAX: usize = 3;

/// Which events a listing shows.
enum Filter {
    /// Events that touched this position, showing the line there.
    Position { sku: String, location: String },
    /// Events of this hold, showing every line.
    Hold(String),
}

impl Filter {
    fn shows(&self, line_sku: &str, line_location: &str) -> bool {
        match self {
            Filter::Position { sku, location } => sku == line_sku && location == line_location,
            Filter::Hold(_) => true,
        }
    }

    fn shown(&self, lines: &[Line]) -> Vec<Line> {
        lines
            .iter()
            .filter(|l| self.shows(l.sku.as_str(), l.location.as_str()))
            .cloned()
            .collect()
    }
}

/// A validated request.
struct Query {
    filter: Filter,
    after_lsn: u64,
    since_ms: Option<u64>,
    page_size: usize,
}

/// Checks the request, naming every offending field at once.
fn query(request: pb::ListEventsRequest) -> Result<Query, Failure> {
    let mut errors = FieldErrors::default();
    let by_position = !request.sku.is_empty() || !request.location.is_empty();
    let by_hold = !request.reservation_id.is_empty();
    let filter = match (by_position, by_hold) {
        (false, false) => {
            errors.push("sku", "set sku and location, or reservation_id");
            errors.push("reservation_id", "set reservation_id, or sku and location");
            None
        }
        (true, true) => {
            errors.push(
                "reservation_id",
                "filter by a position (sku and location) or by a hold, not both",
            );
            None
        }
        (true, false) => {
            crate::convert::check_id(&mut errors, "sku", &request.sku);
            crate::convert::check_id(&mut errors, "location", &request.location);
            Some(Filter::Position {
                sku: request.sku,
                location: request.location,
            })
        }
        (false, true) => {
            crate::convert::check_id(&mut errors, "reservation_id", &request.reservation_id);
            Some(Filter::Hold(request.reservation_id))
        }
    };
    let page_size = match request.page_size.map(|n| n as usize) {
        None => PAGE_SIZE_DEFAULT,
        Some(n) if (1..=PAGE_SIZE_MAX).contains(&n) => n,
        Some(_) => {
            errors.push("page_size", format!("must be 1 to {PAGE_SIZE_MAX}"));
            PAGE_SIZE_DEFAULT
        }
    };
    let filter = errors
        .finish(filter)?
        .expect("a request without a filter is refused");
    Ok(Query {
        filter,
        after_lsn: request.after_lsn,
        since_ms: request.since_ms,
        page_size,
    })
}

/// Validates the request and lists a page on the bulk lane.
pub(crate) async fn list(
    shared: &Arc<Shared>,
    request: pb::ListEventsRequest,
) -> Result<pb::ListEventsResponse, Failure> {
    let query = query(request)?;
    let head = shared.engine.head_lsn().0;
    if query.after_lsn > head {
        return Err(Failure::lsn_ahead_of_log(
            "after_lsn",
            query.after_lsn,
            head,
        ));
    }
    let permit = Arc::clone(&shared.event_listings)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("event listings", EVENT_LISTINGS_MAX))?;
    let after_lsn = query.after_lsn;
    let lane_shared = Arc::clone(shared);
    let answer = shared
        .bulk_lane
        .run(async move {
            let _permit = permit;
            scan(&lane_shared, query).await
        })
        .await;
    // The lane's own shutdown answer speaks of writes; this is a read.
    answer.map_err(|failure| match failure.reason {
        pb::ErrorReason::ShuttingDown => Failure::shutting_down(format!(
            "the server is shutting down; list again from after_lsn = {after_lsn} on a healthy \
             server"
        )),
        _ => failure,
    })
}

/// Reads the log from the query's start and gathers a page (see the module docs).
async fn scan(shared: &Shared, query: Query) -> Result<pb::ListEventsResponse, Failure> {
    let engine = &shared.engine;
    // Only durable events are listed: under `--durability async` the log's tail may not be
    // readable yet.
    let end = engine.durable_lsn().0;
    let mut log = Log {
        engine,
        first_retained: first_retained(engine)?,
    };
    let mut from = (query.after_lsn + 1).max(log.first_retained);
    if let Some(since_ms) = query.since_ms {
        from = log.first_decided_at(from, end, since_ms)?;
    }
    let mut listing = Listing {
        filter: &query.filter,
        holds: Holds {
            engine,
            known: HashMap::new(),
        },
    };
    let mut events = Vec::new();
    // Every event up to `through` has been looked at (or was already behind the start).
    let mut through = from - 1;
    let mut scanned = 0;
    while through < end
        && scanned < SCAN_EVENTS_MAX
        && events.len() < query.page_size
        && !shared.shutdown.is_cancelled()
    {
        let max = (READ_EVENTS_MAX as u64)
            .min(end - through)
            .min(SCAN_EVENTS_MAX - scanned) as usize;
        let Some(read) = log.read(through + 1, max)? else {
            // Trimmed meanwhile: what is gone cannot be listed.
            through = through.max(log.first_retained - 1);
            continue;
        };
        if read.is_empty() {
            // Below the durable end the log holds every event; a log that keeps none
            // (`DiscardLog`) answers nothing, and so does this.
            break;
        }
        for event in &read {
            scanned += 1;
            through = event.lsn.0;
            if let Some(listed) = listing.describe(event)? {
                events.push(listed);
                if events.len() == query.page_size {
                    break;
                }
            }
        }
        crate::lane::pace(shared).await;
    }
    Ok(pb::ListEventsResponse {
        events,
        next_after_lsn: through,
        end_lsn: end,
        first_retained_lsn: log.first_retained,
    })
}

/// The oldest LSN the log still holds (1 if it trimmed nothing).
fn first_retained(engine: &Engine) -> Result<u64, Failure> {
    // A read of nothing from LSN 1 is refused with the first retained LSN, if trimmed.
    match engine.read_events(Lsn(1), 0) {
        Ok(_) => Ok(1),
        Err(LogError::Trimmed { first_retained }) => Ok(first_retained.0.max(1)),
        Err(error) => Err(read_failure(&error)),
    }
}

fn read_failure(error: &LogError) -> Failure {
    Failure::internal(format!("reading the event log: {error}"))
}

/// The log as a listing reads it, following its trimmed start.
struct Log<'a> {
    engine: &'a Engine,
    first_retained: u64,
}

impl Log<'_> {
    /// Up to `max` events from `from` on; `None` if the log was trimmed past `from` meanwhile
    /// (`first_retained` then says where it now starts).
    fn read(&mut self, from: u64, max: usize) -> Result<Option<Vec<Arc<Event>>>, Failure> {
        match self.engine.read_events(Lsn(from), max) {
            Ok(events) => Ok(Some(events)),
            Err(LogError::Trimmed { first_retained }) => {
                self.first_retained = self.first_retained.max(first_retained.0);
                Ok(None)
            }
            Err(error) => Err(read_failure(&error)),
        }
    }

    /// The first LSN in `from..=end` whose event was decided at or after `since_ms`, or
    /// `end + 1` if none was: a binary search with one-event reads, as decision time rises
    /// with LSN (see `ListEventsRequest.since_ms` for the few ms it may not).
    fn first_decided_at(&mut self, from: u64, end: u64, since_ms: u64) -> Result<u64, Failure> {
        // The answer is in `low..=high`.
        let (mut low, mut high) = (from, end.saturating_add(1).max(from));
        while low < high {
            let middle = low + (high - low) / 2;
            match self.read(middle, 1)? {
                Some(events) => match events.first() {
                    Some(event) if event.at_ms < since_ms => low = middle + 1,
                    // Decided at or after `since_ms`, or nothing there (nothing to list).
                    _ => high = middle,
                },
                // Trimmed meanwhile: every event the log still holds is at least as late as
                // the ones it dropped.
                None => {
                    low = low.max(self.first_retained);
                    high = high.max(low);
                }
            }
        }
        Ok(low)
    }
}

/// What a listing knows of the holds it met, by reservation id: the lines the filter shows
/// (empty: none at the filter's position), or `None` when neither the events read so far nor
/// the engine know the hold.
struct Holds<'a> {
    engine: &'a Engine,
    known: HashMap<ReservationId, Option<Vec<Line>>>,
}

impl Holds<'_> {
    fn placed(&mut self, filter: &Filter, id: &ReservationId, lines: &[Line]) {
        self.known.insert(id.clone(), Some(filter.shown(lines)));
    }

    /// The shown lines of hold `id`, as placed before event `lsn`.
    fn lines(
        &mut self,
        filter: &Filter,
        id: &ReservationId,
        lsn: u64,
    ) -> Result<Option<Vec<Line>>, Failure> {
        if let Some(known) = self.known.get(id) {
            return Ok(known.clone());
        }
        let hold = self
            .engine
            .reservation(id.as_str())
            .map_err(|e| status::submit_error(&SubmitError::Archive(e)))?;
        // An id may be used again once its hold is forgotten: a hold placed after this event
        // is another one.
        let lines = hold
            .filter(|h| h.placed_lsn.0 < lsn)
            .map(|h| filter.shown(&h.lines));
        self.known.insert(id.clone(), lines.clone());
        Ok(lines)
    }
}

/// Describes the events a filter matches.
struct Listing<'a> {
    filter: &'a Filter,
    holds: Holds<'a>,
}

impl Listing<'_> {
    /// The event as the filter shows it, or `None` if it does not match.
    fn describe(&mut self, event: &Event) -> Result<Option<pb::LoggedEvent>, Failure> {
        let fact = &event.fact;
        if let Filter::Hold(id) = self.filter
            && fact.reservation_id().map(ReservationId::as_str) != Some(id.as_str())
        {
            return Ok(None);
        }
        let lines = self.lines(event)?;
        if lines.is_empty() && matches!(self.filter, Filter::Position { .. }) {
            return Ok(None);
        }
        let mut listed = pb::LoggedEvent {
            lsn: event.lsn.0,
            at_ms: event.at_ms,
            kind: fact.name().to_owned(),
            by: event
                .by
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            ..Default::default()
        };
        ids(fact, &mut listed);
        listed.outcome = outcome(fact, &lines);
        listed.lines = lines;
        Ok(Some(listed))
    }

    /// The lines of the event the filter shows, with their effects.
    fn lines(&mut self, event: &Event) -> Result<Vec<pb::EventLine>, Failure> {
        let filter = self.filter;
        let lsn = event.lsn.0;
        let effects = event.fact.on_hand_effects(event.at_ms);
        let out = Lines {
            filter,
            effects: &effects,
        };
        let placed = |qty: u64| qty as i64;
        let ended = |qty: u64| -(qty as i64);
        let unchanged = |_: u64| 0;
        Ok(match &event.fact {
            Fact::HoldPlaced { reserve, .. } => {
                self.holds
                    .placed(filter, &reserve.reservation_id, &reserve.lines);
                out.of(&reserve.lines, placed)
            }
            Fact::ReserveRefused { reserve, .. } => out.of(&reserve.lines, unchanged),
            Fact::HoldCommitted { commit, lines } => {
                let shown = filter.shown(lines);
                if shown.is_empty() {
                    return Ok(Vec::new());
                }
                let hold = self.holds.lines(filter, &commit.reservation_id, lsn)?;
                out.committed(&shown, hold.as_deref())
            }
            Fact::HoldReleased(release) => {
                let hold = self.holds.lines(filter, &release.reservation_id, lsn)?;
                out.of(hold.as_deref().unwrap_or_default(), ended)
            }
            Fact::HoldExpired(request) => {
                let hold = self.holds.lines(filter, request.reservation_id(), lsn)?;
                out.of(hold.as_deref().unwrap_or_default(), ended)
            }
            Fact::HoldExtended { extend, .. } => {
                let hold = self.holds.lines(filter, &extend.reservation_id, lsn)?;
                out.of(hold.as_deref().unwrap_or_default(), unchanged)
            }
            Fact::HoldAlreadyEnded { request, .. } => {
                let hold = self.holds.lines(filter, request.reservation_id(), lsn)?;
                out.of(hold.as_deref().unwrap_or_default(), unchanged)
            }
            Fact::SaleRecorded(sale) | Fact::SaleRecordedOutOfSequence { sale, .. } => {
                out.of(&sale.lines, unchanged)
            }
            Fact::ReturnRecorded(ret) => ret
                .lines
                .iter()
                .filter_map(|l| out.one(l.sku.as_str(), l.location.as_str(), l.qty))
                .collect(),
            Fact::ReturnDisposed(d) => out
                .one(d.sku.as_str(), d.location.as_str(), d.qty)
                .into_iter()
                .collect(),
            Fact::StockAdjusted(a) => out
                .one(a.sku.as_str(), a.location.as_str(), a.delta.unsigned_abs())
                .into_iter()
                .collect(),
            Fact::SafetyStockSet(s) => out
                .one(s.sku.as_str(), s.location.as_str(), s.qty)
                .into_iter()
                .collect(),
            Fact::PositionReconciled {
                reconcile, drift, ..
            } => out
                .one(
                    reconcile.sku.as_str(),
                    reconcile.location.as_str(),
                    drift.unsigned_abs(),
                )
                .into_iter()
                .collect(),
            Fact::DriftResolved { resolve, drift, .. } => out
                .one(
                    resolve.sku.as_str(),
                    resolve.location.as_str(),
                    drift.unsigned_abs(),
                )
                .into_iter()
                .collect(),
            // A store's sequence, not a position's or a hold's.
            Fact::StoreAnomalyAcknowledged { .. } => Vec::new(),
        })
    }
}

/// Builds the lines of one event the filter shows, each with the event's `on_hand` effect
/// there (`Fact::on_hand_effects`, the definition reconciliation counts by).
struct Lines<'a, 'e> {
    filter: &'a Filter,
    effects: &'a [OnHandEffect<'e>],
}

impl Lines<'_, '_> {
    fn line(
        &self,
        sku: &str,
        location: &str,
        qty: u64,
        reserved_delta: Option<i64>,
    ) -> pb::EventLine {
        pb::EventLine {
            sku: sku.to_owned(),
            location: location.to_owned(),
            qty,
            on_hand_delta: self
                .effects
                .iter()
                .filter(|e| e.sku.as_str() == sku && e.location.as_str() == location)
                .map(|e| e.delta)
                .sum(),
            reserved_delta,
        }
    }

    /// A line that holds nothing, if shown.
    fn one(&self, sku: &str, location: &str, qty: u64) -> Option<pb::EventLine> {
        self.filter
            .shows(sku, location)
            .then(|| self.line(sku, location, qty, Some(0)))
    }

    /// The shown ones of `lines`, each changing the units held by `reserved(qty)`.
    fn of(&self, lines: &[Line], reserved: impl Fn(u64) -> i64) -> Vec<pb::EventLine> {
        lines
            .iter()
            .filter(|l| self.filter.shows(l.sku.as_str(), l.location.as_str()))
            .map(|l| {
                let (sku, location) = (l.sku.as_str(), l.location.as_str());
                self.line(sku, location, l.qty, Some(reserved(l.qty)))
            })
            .collect()
    }

    /// A commit's shown lines: its units committed; the hold's units there, if the hold is
    /// known, are no longer held (the rest was released).
    fn committed(&self, shown: &[Line], hold: Option<&[Line]>) -> Vec<pb::EventLine> {
        shown
            .iter()
            .map(|l| {
                let held = hold
                    .unwrap_or_default()
                    .iter()
                    .find(|h| h.sku == l.sku && h.location == l.location);
                let reserved = held.map(|h| -(h.qty as i64));
                self.line(l.sku.as_str(), l.location.as_str(), l.qty, reserved)
            })
            .collect()
    }
}

/// Sets the ids of the fact's kind.
fn ids(fact: &Fact, listed: &mut pb::LoggedEvent) {
    if let Some(id) = fact.reservation_id() {
        listed.reservation_id = id.to_string();
    }
    match fact {
        Fact::HoldPlaced {
            reserve,
            expires_at_ms,
        } => {
            listed.channel = reserve.channel.to_string();
            listed.expires_at_ms = *expires_at_ms;
        }
        Fact::ReserveRefused { reserve, .. } => listed.channel = reserve.channel.to_string(),
        Fact::HoldExtended {
            extend,
            expires_at_ms,
        } => {
            listed.request_id = extend.request_id.to_string();
            listed.expires_at_ms = *expires_at_ms;
        }
        Fact::SaleRecorded(sale) | Fact::SaleRecordedOutOfSequence { sale, .. } => {
            listed.store_id = sale.store_id.to_string();
            listed.txn_id = sale.txn_id.to_string();
        }
        Fact::ReturnRecorded(ret) => listed.return_id = ret.return_id.to_string(),
        Fact::ReturnDisposed(d) => {
            listed.return_id = d.return_id.to_string();
            listed.disposition_id = d.disposition_id.to_string();
        }
        Fact::StockAdjusted(a) => listed.adjustment_id = a.adjustment_id.to_string(),
        Fact::SafetyStockSet(s) => listed.request_id = s.request_id.to_string(),
        Fact::PositionReconciled { reconcile, .. } => {
            listed.snapshot_id = reconcile.snapshot_id.to_string();
        }
        Fact::DriftResolved { resolve, .. } => listed.snapshot_id = resolve.snapshot_id.to_string(),
        Fact::StoreAnomalyAcknowledged { acknowledge, .. } => {
            listed.store_id = acknowledge.store_id.to_string();
            listed.txn_id = acknowledge.txn_id.to_string();
        }
        Fact::HoldCommitted { .. }
        | Fact::HoldReleased(_)
        | Fact::HoldExpired(_)
        | Fact::HoldAlreadyEnded { .. } => {}
    }
}

/// The outcome in words, of the lines shown where it speaks of units.
fn outcome(fact: &Fact, lines: &[pb::EventLine]) -> String {
    let total = |qty: fn(&pb::EventLine) -> u64| lines.iter().map(qty).sum::<u64>();
    // The units the hold held on the lines shown, if known for each.
    let held = || -> Option<u64> {
        lines
            .iter()
            .map(|l| l.reserved_delta.map(i64::unsigned_abs))
            .sum()
    };
    match fact {
        Fact::HoldPlaced { .. } => "granted".to_owned(),
        Fact::ReserveRefused { reserve, short } => {
            let mut named: Vec<String> = short
                .iter()
                .take(SHORT_LINES_NAMED_MAX)
                .map(|s| {
                    let position = reserve
                        .lines
                        .get(s.line_index as usize)
                        .map_or_else(String::new, |l| format!("{}@{} ", l.sku, l.location));
                    format!(
                        "{position}{} requested, {} available",
                        s.requested, s.available
                    )
                })
                .collect();
            if short.len() > SHORT_LINES_NAMED_MAX {
                named.push(format!("and {} more", short.len() - SHORT_LINES_NAMED_MAX));
            }
            let plural = if short.len() == 1 { "" } else { "s" };
            format!(
                "refused: {} line{plural} short ({})",
                short.len(),
                named.join("; ")
            )
        }
        Fact::HoldCommitted { .. } => {
            let committed = total(|l| l.qty);
            match held() {
                Some(held) if held > committed => format!(
                    "committed {committed} of {held} held; {} released",
                    held - committed
                ),
                _ => format!("committed {committed}"),
            }
        }
        Fact::HoldReleased(_) => match held() {
            Some(held) if !lines.is_empty() => format!("released {held}"),
            _ => "released".to_owned(),
        },
        Fact::HoldExtended { .. } => "extended".to_owned(),
        Fact::HoldExpired(HoldRequest::Expire(_)) => "expired at its TTL".to_owned(),
        Fact::HoldExpired(request) => {
            format!("expired: {} found it past its TTL", verb(request))
        }
        Fact::HoldAlreadyEnded { request, state } => format!(
            "{} found it already {}; nothing changed",
            verb(request),
            state_word(*state)
        ),
        Fact::SaleRecorded(sale) => format!("sold (store seq {})", sale.store_seq),
        Fact::SaleRecordedOutOfSequence { sale, newest_seq } => format!(
            "sold (store seq {} jumped past the store's newest, {newest_seq}: kept out of its \
             sequence as an anomaly)",
            sale.store_seq
        ),
        Fact::ReturnRecorded(ret) => {
            let (restocked, quarantined) = ret
                .lines
                .iter()
                .filter(|l| {
                    lines
                        .iter()
                        .any(|s| s.sku == l.sku.as_str() && s.location == l.location.as_str())
                })
                .fold((0, 0), |(r, q), l| match l.disposition {
                    ReturnDisposition::Restock => (r + l.qty, q),
                    ReturnDisposition::Inspect => (r, q + l.qty),
                });
            format!("returned: {restocked} restocked, {quarantined} quarantined for inspection")
        }
        Fact::ReturnDisposed(d) => match d.action {
            DispositionAction::Restock => format!("{} restocked from quarantine", d.qty),
            DispositionAction::Scrap => format!("{} scrapped from quarantine", d.qty),
        },
        Fact::StockAdjusted(a) if a.reason.is_empty() => format!("adjusted by {:+}", a.delta),
        Fact::StockAdjusted(a) => format!("adjusted by {:+}: {}", a.delta, a.reason),
        Fact::SafetyStockSet(s) => format!("safety stock set to {}", s.qty),
        Fact::PositionReconciled {
            reconcile,
            engine_on_hand_at,
            drift,
            held,
            superseded,
            ..
        } => {
            let verdict = match (*drift, *held) {
                (0, _) => "no drift".to_owned(),
                (drift, true) => format!("drift {drift:+} held for review"),
                (drift, false) => format!("drift {drift:+} applied"),
            };
            let mut words = format!(
                "{verdict} (ERP counted {}, the engine had {engine_on_hand_at} at the \
                 snapshot's time)",
                reconcile.erp_on_hand
            );
            if let Some(earlier) = superseded {
                words.push_str(&format!(
                    "; supersedes the drift held from snapshot {earlier}"
                ));
            }
            words
        }
        Fact::DriftResolved { resolve, drift, .. } => match resolve.action {
            DriftAction::Apply => format!("held drift {drift:+} applied"),
            DriftAction::Dismiss => format!("held drift {drift:+} dismissed"),
        },
        Fact::StoreAnomalyAcknowledged { .. } => "store sequence anomaly acknowledged".to_owned(),
    }
}

/// Who asked, for an expiry or an ended hold's words.
fn verb(request: &HoldRequest) -> &'static str {
    match request {
        HoldRequest::Commit(_) => "a commit",
        HoldRequest::Release(_) => "a release",
        HoldRequest::Extend(_) => "an extension",
        HoldRequest::Expire(_) => "the expiry sweep",
    }
}

fn state_word(state: HoldState) -> &'static str {
    match state {
        HoldState::Open => "open",
        HoldState::Committed => "committed",
        HoldState::Released => "released",
        HoldState::Expired => "expired",
    }
}
