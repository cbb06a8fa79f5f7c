//! The reference model: what the engine must answer, kept independently of the engine.
//!
//! The model is a plain fold of the facts it accepted, over ordered maps, with none of the
//! engine's sharding, interning, ladders or derived records. For every request it predicts
//! the exact answer ([`Model::predict`]): a new event with its outcome, the original answer
//! of a retry, or a refusal. The simulator compares, then folds the fact the model itself
//! builds from the request and the outcome (so a wrong fact in the log is caught by the
//! comparison with the log, not copied into the model).
//!
//! The model knows nothing of durability: the simulator keeps the facts it folded
//! ([`Model::history`]) and, after a crash, rebuilds the model from those the log made
//! durable ([`Model::rebuild`]).
//!
//! Reconciliation is modelled from the facts too: every on_hand change is kept with its event
//! time and LSN ([`Model::on_hand_at`]), so the model computes the engine's count at a
//! snapshot's time (`on_hand` less every change dated after it) and predicts each
//! `PositionReconciled` a run must log ([`Model::reconcile_fact`]); held drifts are folded
//! like positions, and `ResolveDrift` is predicted like any client request. The snapshot store
//! is not ledger state: the simulator keeps its own account of it (`sim.rs`).

use inv_engine::limits::STORE_ANOMALIES_MAX;
use inv_engine::{
    AnomalyAction, Availability, BeyondTolerance, Command, DispositionAction, DriftAction, Fact,
    HoldState, Line, Lsn, Outcome, Reconcile, Refusal, ReturnDisposition, ShortLine, SnapshotId,
    StoreAnomaly, StoreStatus, Tolerance,
};
use std::collections::{BTreeMap, BTreeSet};

/// (sku, location).
pub type Position = (String, String);

fn position_of(line: &Line) -> Position {
    (line.sku.to_string(), line.location.to_string())
}

/// An idempotency key as the model understands it: kind, natural id, second id.
type Key = (&'static str, String, String);

/// The second id of a key made of a snapshot and a position, as the engine joins them.
fn position_sub(sku: &str, location: &str) -> String {
    format!("{sku}\u{1f}{location}")
}

fn model_key(c: &Command) -> Option<Key> {
    let e = String::new;
    Some(match c {
        Command::Reserve(c) => ("Reserve", c.reservation_id.to_string(), e()),
        Command::Commit(c) => ("Commit", c.reservation_id.to_string(), e()),
        Command::Release(c) => ("Release", c.reservation_id.to_string(), e()),
        Command::Extend(c) => (
            "Extend",
            c.reservation_id.to_string(),
            c.request_id.to_string(),
        ),
        Command::RecordSale(c) => ("RecordSale", c.store_id.to_string(), c.txn_id.to_string()),
        Command::RecordReturn(c) => ("RecordReturn", c.return_id.to_string(), e()),
        Command::Dispose(c) => ("Dispose", c.disposition_id.to_string(), e()),
        Command::Adjust(c) => ("Adjust", c.adjustment_id.to_string(), e()),
        Command::SetSafetyStock(c) => ("SetSafetyStock", c.request_id.to_string(), e()),
        Command::Reconcile(c) => (
            "Reconcile",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::ResolveDrift(c) => (
            "ResolveDrift",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::AcknowledgeStoreAnomaly(c) => (
            "AcknowledgeStoreAnomaly",
            c.store_id.to_string(),
            c.txn_id.to_string(),
        ),
        Command::Expire(_) => return None,
    })
}

/// The path a key conflict names for `field`, the first field that differs: for the lines
/// (hashed as one field in a key's record), the first line and subfield that differ, which
/// the engine finds by reading the original request from its log (the simulated log keeps
/// every event); `lines` when the counts differ or one of two commits lists none.
fn conflict_path(field: &str, original: &Command, new: &Command) -> String {
    type Lines = Vec<(String, String, u64, Option<ReturnDisposition>)>;
    fn lines(command: &Command) -> Option<Lines> {
        let plain = |lines: &[Line]| {
            lines
                .iter()
                .map(|l| (l.sku.to_string(), l.location.to_string(), l.qty, None))
                .collect()
        };
        match command {
            Command::Reserve(c) => Some(plain(&c.lines)),
            Command::Commit(c) => c.lines.as_deref().map(plain),
            Command::RecordSale(c) => Some(plain(&c.lines)),
            Command::RecordReturn(c) => Some(
                c.lines
                    .iter()
                    .map(|l| {
                        let (sku, location) = (l.sku.to_string(), l.location.to_string());
                        (sku, location, l.qty, Some(l.disposition))
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
    if field != "lines" {
        return field.to_owned();
    }
    let (Some(a), Some(b)) = (lines(original), lines(new)) else {
        return field.to_owned();
    };
    if a.len() != b.len() {
        return field.to_owned();
    }
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let differs = [
            ("sku", a.0 != b.0),
            ("location", a.1 != b.1),
            ("qty", a.2 != b.2),
            ("disposition", a.3 != b.3),
        ];
        if let Some((name, _)) = differs.iter().find(|(_, differs)| *differs) {
            return format!("lines[{i}].{name}");
        }
    }
    field.to_owned()
}

/// How a refusal names a key: `kind:id`, and `:sub` when the key has a second id.
fn key_name((kind, id, sub): &Key) -> String {
    if sub.is_empty() {
        format!("{kind}:{id}")
    } else {
        format!("{kind}:{id}:{sub}")
    }
}

/// The first field (in the documented order) where two requests of one kind differ.
fn first_difference(a: &Command, b: &Command) -> Option<&'static str> {
    let fields: Vec<(&'static str, bool)> = match (a, b) {
        (Command::Reserve(a), Command::Reserve(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("channel", a.channel == b.channel),
            ("lines", a.lines == b.lines),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::Commit(a), Command::Commit(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Release(a), Command::Release(b)) => {
            vec![("reservation_id", a.reservation_id == b.reservation_id)]
        }
        (Command::Extend(a), Command::Extend(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("request_id", a.request_id == b.request_id),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::RecordSale(a), Command::RecordSale(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("store_seq", a.store_seq == b.store_seq),
            ("occurred_at_ms", a.occurred_at_ms == b.occurred_at_ms),
            ("lines", a.lines == b.lines),
        ],
        (Command::RecordReturn(a), Command::RecordReturn(b)) => vec![
            ("return_id", a.return_id == b.return_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Dispose(a), Command::Dispose(b)) => vec![
            ("disposition_id", a.disposition_id == b.disposition_id),
            ("return_id", a.return_id == b.return_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
            ("action", a.action == b.action),
        ],
        (Command::Adjust(a), Command::Adjust(b)) => vec![
            ("adjustment_id", a.adjustment_id == b.adjustment_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("delta", a.delta == b.delta),
            ("reason", a.reason == b.reason),
        ],
        (Command::SetSafetyStock(a), Command::SetSafetyStock(b)) => vec![
            ("request_id", a.request_id == b.request_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
        ],
        (Command::ResolveDrift(a), Command::ResolveDrift(b)) => vec![
            ("snapshot_id", a.snapshot_id == b.snapshot_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("action", a.action == b.action),
        ],
        (Command::AcknowledgeStoreAnomaly(a), Command::AcknowledgeStoreAnomaly(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("action", a.action == b.action),
        ],
        _ => return Some("command"),
    };
    fields.into_iter().find(|(_, same)| !same).map(|(f, _)| f)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelPosition {
    pub on_hand: i64,
    pub quarantined: i64,
    pub safety_stock: i64,
}

#[derive(Debug, Clone)]
pub struct ModelHold {
    pub lines: Vec<(Position, u64)>,
    pub channel: String,
    pub expires_at_ms: u64,
    pub state: HoldState,
    pub placed_lsn: u64,
    pub placed_at_ms: u64,
    pub ended_at_ms: u64,
}

/// A drift held for review at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHeld {
    pub snapshot_id: String,
    pub as_of_ms: u64,
    pub erp_on_hand: i64,
    pub engine_on_hand_at: i64,
    pub drift: i64,
    pub lsn: u64,
}

/// One change to a position's on_hand: the LSN of its event, its event time (a sale's till
/// time capped at when it was recorded, a correction's snapshot time, otherwise the decision
/// time), and the change.
#[derive(Debug, Clone, Copy)]
pub struct Effect {
    pub lsn: u64,
    pub at_ms: u64,
    pub delta: i64,
}

#[derive(Debug, Clone)]
struct KeyRecord {
    command: Command,
    lsn: u64,
    at_ms: u64,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct ModelReturn {
    quarantined: Vec<(Position, u64)>,
}

/// A store's sequence as the model keeps it: every number received, one by one, above a
/// floor that only an accepted jump raises (every number up to the floor is in the sequence
/// or given up on), and its anomalies in a plain list. The engine keeps ranges instead.
#[derive(Debug, Clone, Default)]
struct ModelStore {
    floor: u64,
    received: BTreeSet<u64>,
    newest_seq: u64,
    newest_occurred_at_ms: u64,
    newest_recorded_at_ms: u64,
    sales_recorded: u64,
    seq_reused: u64,
    gaps_abandoned: u64,
    anomalies: Vec<StoreAnomaly>,
    anomalies_dropped: u64,
    /// Retries answered from the key since the last restart (not an event, not replayed).
    duplicates_absorbed: u64,
}

impl ModelStore {
    fn has(&self, seq: u64) -> bool {
        seq <= self.floor || self.received.contains(&seq)
    }

    fn contiguous(&self) -> u64 {
        let mut contiguous = self.floor;
        while contiguous < u64::MAX && self.received.contains(&(contiguous + 1)) {
            contiguous += 1;
        }
        contiguous
    }

    fn receive(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        if self.has(seq) {
            self.seq_reused += 1;
            return;
        }
        self.received.insert(seq);
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = occurred_at_ms;
            self.newest_recorded_at_ms = recorded_at_ms;
        }
    }

    /// Keeps a sale whose number jumped; txn ids stay distinct, and the list bounded.
    fn flag(&mut self, anomaly: StoreAnomaly) {
        if let Some(i) = self
            .anomalies
            .iter()
            .position(|a| a.txn_id == anomaly.txn_id)
        {
            self.anomalies.remove(i);
            self.anomalies_dropped += 1;
        }
        self.anomalies.push(anomaly);
        if self.anomalies.len() > STORE_ANOMALIES_MAX {
            self.anomalies.remove(0);
            self.anomalies_dropped += 1;
        }
    }

    /// How many missing numbers accepting `seq` gives up on.
    fn abandoned_by(&self, seq: u64) -> u64 {
        if self.has(seq) {
            return 0;
        }
        let contiguous = self.contiguous();
        let received = self.received.range(contiguous + 1..seq).count() as u64;
        // Anomalies below it came too: an ACCEPT settles them.
        let doubted: BTreeSet<u64> = self
            .anomalies
            .iter()
            .map(|a| a.store_seq)
            .filter(|&n| n > contiguous && n < seq && !self.received.contains(&n))
            .collect();
        seq - contiguous - 1 - received - doubted.len() as u64
    }

    /// Applies a verdict; the missing numbers it gave up on, `None` without the anomaly.
    fn acknowledge(&mut self, txn_id: &str, accept: bool) -> Option<u64> {
        let i = self
            .anomalies
            .iter()
            .position(|a| a.txn_id.as_str() == txn_id)?;
        let anomaly = self.anomalies.remove(i);
        if !accept {
            return Some(0);
        }
        let seq = anomaly.store_seq;
        if self.has(seq) {
            self.seq_reused += 1;
            return Some(0);
        }
        let abandoned = self.abandoned_by(seq);
        self.gaps_abandoned = self.gaps_abandoned.saturating_add(abandoned);
        self.anomalies.retain(|a| a.store_seq > seq);
        self.received.retain(|&n| n > seq);
        self.floor = seq;
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = anomaly.occurred_at_ms;
            self.newest_recorded_at_ms = anomaly.recorded_at_ms;
        }
        Some(abandoned)
    }

    /// The status the engine must report, computed from the numbers received one by one.
    fn status(&self, store_id: &str) -> StoreStatus {
        let contiguous_seq = self.contiguous();
        let mut gaps = Vec::new();
        let mut next = contiguous_seq.checked_add(1);
        while let Some(at) = next.filter(|&n| n <= self.newest_seq) {
            if self.received.contains(&at) {
                next = at.checked_add(1);
                continue;
            }
            let mut end = at;
            while end < self.newest_seq && !self.received.contains(&(end + 1)) {
                end += 1;
            }
            gaps.push((at, end));
            next = end.checked_add(1);
        }
        StoreStatus {
            store_id: store_id.to_owned(),
            contiguous_seq,
            newest_seq: self.newest_seq,
            missing_count: gaps.iter().map(|(s, e)| e - s + 1).sum(),
            gaps,
            sales_recorded: self.sales_recorded,
            seq_reused: self.seq_reused,
            gaps_abandoned: self.gaps_abandoned,
            duplicates_absorbed: self.duplicates_absorbed,
            newest_lag_ms: self
                .newest_recorded_at_ms
                .saturating_sub(self.newest_occurred_at_ms),
            newest_occurred_at_ms: self.newest_occurred_at_ms,
            anomalies: self.anomalies.clone(),
            anomalies_dropped: self.anomalies_dropped,
        }
    }
}

/// What the model says a request must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A retry: the original event's LSN and outcome.
    Duplicate {
        lsn: u64,
        outcome: Outcome,
    },
    Refused(Refused),
    /// A new event with this outcome.
    Event(Outcome),
}

/// A [`Refusal`] as the model predicts it: every field but the free-text reasons of
/// `KeyConflict` and `NotHeld`, whose field paths it predicts instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    KeyConflict {
        key: String,
        field: String,
    },
    ReservationIdInUse {
        reservation_id: String,
        state: HoldState,
    },
    ReservationNotFound(String),
    NotHeld(String),
    HoldNotLapsed(String),
    ReturnIdInUse(String),
    ReturnNotFound(String),
    NotQuarantined {
        return_id: String,
        sku: String,
        location: String,
        requested: u64,
        quarantined: u64,
    },
    DriftNotHeld {
        snapshot_id: String,
        sku: String,
        location: String,
    },
    StoreNotFound(String),
    StoreAnomalyNotFound {
        store_id: String,
        txn_id: String,
    },
    /// A refusal the model never predicts: always a disagreement.
    Other(String),
}

pub fn refused_of(refusal: &Refusal) -> Refused {
    match refusal.clone() {
        Refusal::KeyConflict { key, field, .. } => Refused::KeyConflict { key, field },
        Refusal::ReservationIdInUse {
            reservation_id,
            state,
        } => Refused::ReservationIdInUse {
            reservation_id,
            state,
        },
        Refusal::ReservationNotFound(id) => Refused::ReservationNotFound(id),
        Refusal::NotHeld { field, .. } => Refused::NotHeld(field),
        Refusal::HoldNotLapsed(id) => Refused::HoldNotLapsed(id),
        Refusal::ReturnIdInUse(id) => Refused::ReturnIdInUse(id),
        Refusal::ReturnNotFound(id) => Refused::ReturnNotFound(id),
        Refusal::NotQuarantined {
            return_id,
            sku,
            location,
            requested,
            quarantined,
        } => Refused::NotQuarantined {
            return_id,
            sku,
            location,
            requested,
            quarantined,
        },
        Refusal::DriftNotHeld {
            snapshot_id,
            sku,
            location,
        } => Refused::DriftNotHeld {
            snapshot_id,
            sku,
            location,
        },
        Refusal::StoreNotFound(id) => Refused::StoreNotFound(id),
        Refusal::StoreAnomalyNotFound { store_id, txn_id } => {
            Refused::StoreAnomalyNotFound { store_id, txn_id }
        }
        other => Refused::Other(other.to_string()),
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    retention_ms: u64,
    /// The engine's `store_seq_jump_max`: the model judges each sale's number itself.
    seq_jump_max: u64,
    pub positions: BTreeMap<Position, ModelPosition>,
    pub holds: BTreeMap<String, ModelHold>,
    /// Ids of the open holds (lapsed ones included): availability sums only these.
    open: BTreeSet<String>,
    keys: BTreeMap<Key, KeyRecord>,
    returns: BTreeMap<String, ModelReturn>,
    stores: BTreeMap<String, ModelStore>,
    pub next_lsn: u64,
    /// The engine's time floor: decisions are never dated before an earlier one.
    pub floor_ms: u64,
    /// Every on_hand change, per position, in LSN order (see [`Effect`]).
    pub effects: BTreeMap<Position, Vec<Effect>>,
    /// Drifts held for review, by position.
    pub held: BTreeMap<Position, ModelHeld>,
    /// Every fact folded, with its LSN's time, in LSN order: what a rebuild refolds.
    pub history: Vec<(u64, Fact)>,
}

impl Model {
    pub fn new(retention_ms: u64, seq_jump_max: u64) -> Self {
        Self {
            retention_ms,
            seq_jump_max,
            positions: BTreeMap::new(),
            holds: BTreeMap::new(),
            open: BTreeSet::new(),
            keys: BTreeMap::new(),
            returns: BTreeMap::new(),
            stores: BTreeMap::new(),
            next_lsn: 1,
            floor_ms: 0,
            effects: BTreeMap::new(),
            held: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// The model after a crash: the facts of the first `durable` LSNs, folded anew. The time
    /// floor is what recovery rebuilds: the time of the last durable event.
    pub fn rebuild(&self, durable: u64) -> Result<Model, String> {
        let mut model = Model::new(self.retention_ms, self.seq_jump_max);
        for (at_ms, fact) in self.history.iter().take(durable as usize) {
            model.apply(fact, *at_ms)?;
        }
        Ok(model)
    }

    /// The engine's count of `p` at `as_of_ms` (on_hand less every change dated after it),
    /// and how many changes that is.
    pub fn on_hand_at(&self, p: &Position, as_of_ms: u64) -> (i64, u32) {
        let on_hand = self.positions.get(p).map_or(0, |m| m.on_hand);
        let (since, events) = self.since(p, as_of_ms, |_| true);
        (on_hand - since, events)
    }

    /// The net change at `p` dated after `as_of_ms` by the events `which` selects (by LSN),
    /// and how many.
    pub fn since(&self, p: &Position, as_of_ms: u64, which: impl Fn(u64) -> bool) -> (i64, u32) {
        self.effects.get(p).map_or((0, 0), |effects| {
            effects
                .iter()
                .filter(|e| e.at_ms > as_of_ms && which(e.lsn))
                .fold((0, 0), |(sum, n), e| (sum + e.delta, n + 1))
        })
    }

    /// Whether some change at `p` from LSN `from_lsn` on is dated at or before `as_of_ms`: it
    /// moved the count at `as_of_ms` after a run that started at `from_lsn` read it.
    pub fn moved_at_or_before(&self, p: &Position, as_of_ms: u64, from_lsn: u64) -> bool {
        self.effects.get(p).is_some_and(|effects| {
            effects
                .iter()
                .any(|e| e.lsn >= from_lsn && e.at_ms <= as_of_ms)
        })
    }

    /// Whether the request behind `command` was decided and its key is still kept at
    /// `now_ms` (a retry would get the first answer).
    pub fn key_retained(&self, command: &Command, now_ms: u64) -> bool {
        model_key(command)
            .and_then(|key| self.keys.get(&key))
            .is_some_and(|record| self.retained(record.at_ms, now_ms))
    }

    /// The `PositionReconciled` a run must log when it reconciles `p` against the ERP's
    /// `erp_on_hand` now, or `None` if it must log nothing (no drift and no drift held there:
    /// `Matched`). `tap_from` is where the run's log scan ended and its tap began: the
    /// request carries the log's part of the changes since `as_of`, the fact their total.
    #[allow(clippy::too_many_arguments)]
    pub fn reconcile_fact(
        &self,
        snapshot_id: &str,
        p: &Position,
        as_of_ms: u64,
        erp_on_hand: i64,
        tap_from: u64,
        tolerance: Tolerance,
    ) -> Option<Fact> {
        let (engine_on_hand_at, events_since) = self.on_hand_at(p, as_of_ms);
        let (since_as_of, logged_since) = self.since(p, as_of_ms, |lsn| lsn < tap_from);
        let drift = erp_on_hand - engine_on_hand_at;
        let superseded = self
            .held
            .get(p)
            .map(|h| SnapshotId::from(h.snapshot_id.as_str()));
        if drift == 0 && superseded.is_none() {
            return None;
        }
        let within = drift.unsigned_abs() <= tolerance.units
            || u128::from(drift.unsigned_abs()) * 10_000
                <= u128::from(engine_on_hand_at.unsigned_abs()) * u128::from(tolerance.percent_bp);
        Some(Fact::PositionReconciled {
            reconcile: Reconcile {
                snapshot_id: SnapshotId::from(snapshot_id),
                sku: p.0.as_str().into(),
                location: p.1.as_str().into(),
                as_of_ms,
                erp_on_hand,
                since_as_of,
                events_since: logged_since,
                tap_from_lsn: Lsn(tap_from),
                tolerance,
            },
            engine_on_hand_at,
            drift,
            held: drift != 0 && tolerance.beyond == BeyondTolerance::Hold && !within,
            superseded,
            events_since,
        })
    }

    fn note_effect(&mut self, p: &Position, at_ms: u64, delta: i64) {
        let lsn = self.next_lsn;
        self.effects
            .entry(p.clone())
            .or_default()
            .push(Effect { lsn, at_ms, delta });
    }

    fn retained(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.retention_ms) > now_ms
    }

    fn live_hold(&self, id: &str, now_ms: u64) -> Option<&ModelHold> {
        self.holds
            .get(id)
            .filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
    }

    /// Units of every open hold, lapsed or not, per position (what `PositionView::reserved`
    /// shows); one pass over the open holds.
    pub fn reserved_by_position(&self) -> BTreeMap<&Position, i64> {
        let mut reserved = BTreeMap::new();
        for hold in self.open.iter().filter_map(|id| self.holds.get(id)) {
            for (p, qty) in &hold.lines {
                *reserved.entry(p).or_default() += *qty as i64;
            }
        }
        reserved
    }

    /// Units of open holds on `p` whose TTL has not passed at `now_ms`.
    fn reserved_live(&self, p: &Position, now_ms: u64) -> i64 {
        self.open_lines(now_ms, p)
    }

    fn open_lines(&self, now_ms: u64, p: &Position) -> i64 {
        self.open
            .iter()
            .filter_map(|id| self.holds.get(id))
            .filter(|h| now_ms < h.expires_at_ms)
            .flat_map(|h| h.lines.iter())
            .filter(|(lp, _)| lp == p)
            .map(|(_, q)| *q as i64)
            .sum()
    }

    pub fn availability(&self, p: &Position, now_ms: u64) -> Option<Availability> {
        let position = self.positions.get(p)?;
        let reserved = self.reserved_live(p, now_ms);
        Some(Availability {
            on_hand: position.on_hand,
            reserved,
            safety_stock: position.safety_stock,
            quarantined: position.quarantined,
            available: position.on_hand - reserved - position.safety_stock,
        })
    }

    /// Open holds whose TTL has passed at `now_ms`.
    pub fn lapsed_open_holds(&self, now_ms: u64) -> usize {
        self.open
            .iter()
            .filter_map(|id| self.holds.get(id))
            .filter(|h| now_ms >= h.expires_at_ms)
            .count()
    }

    pub fn open_holds(&self) -> usize {
        self.open.len()
    }

    pub fn store_statuses(&self) -> Vec<StoreStatus> {
        self.stores.iter().map(|(id, s)| s.status(id)).collect()
    }

    fn hold_ended(hold: &ModelHold, now_ms: u64) -> Option<Outcome> {
        if hold.state != HoldState::Open {
            Some(Outcome::HoldAlreadyEnded(hold.state))
        } else if now_ms >= hold.expires_at_ms {
            Some(Outcome::Expired)
        } else {
            None
        }
    }

    /// Counts a retried sale answered from its key, as the engine's store status does.
    pub fn note_duplicate(&mut self, command: &Command) {
        if let Command::RecordSale(sale) = command
            && let Some(store) = self.stores.get_mut(sale.store_id.as_str())
        {
            store.duplicates_absorbed += 1;
        }
    }

    /// The answer `command` must get when decided at `now_ms`.
    pub fn predict(&self, command: &Command, now_ms: u64) -> Expected {
        if let Some(key) = model_key(command)
            && let Some(record) = self.keys.get(&key)
            && self.retained(record.at_ms, now_ms)
        {
            return match first_difference(&record.command, command) {
                Some(field) => Expected::Refused(Refused::KeyConflict {
                    key: key_name(&key),
                    field: conflict_path(field, &record.command, command),
                }),
                None => Expected::Duplicate {
                    lsn: record.lsn,
                    outcome: record.outcome.clone(),
                },
            };
        }
        match command {
            Command::Reserve(c) => {
                if let Some(hold) = self.live_hold(c.reservation_id.as_str(), now_ms) {
                    return Expected::Refused(Refused::ReservationIdInUse {
                        reservation_id: c.reservation_id.to_string(),
                        state: hold.state,
                    });
                }
                let short: Vec<ShortLine> = c
                    .lines
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| {
                        let available = self
                            .availability(&position_of(l), now_ms)
                            .map_or(0, |a| a.available);
                        (available < l.qty as i64).then_some(ShortLine {
                            line_index: i as u32,
                            requested: l.qty,
                            available,
                        })
                    })
                    .collect();
                Expected::Event(if short.is_empty() {
                    Outcome::Granted {
                        expires_at_ms: now_ms + c.ttl_ms,
                    }
                } else {
                    Outcome::Insufficient { short }
                })
            }
            Command::Commit(c) => {
                let Some(hold) = self.live_hold(c.reservation_id.as_str(), now_ms) else {
                    return Expected::Refused(Refused::ReservationNotFound(
                        c.reservation_id.to_string(),
                    ));
                };
                if let Some(ended) = Self::hold_ended(hold, now_ms) {
                    return Expected::Event(ended);
                }
                let committed = match &c.lines {
                    None => hold.lines.iter().map(|(_, q)| *q).collect(),
                    Some(lines) => {
                        let mut committed = vec![0; hold.lines.len()];
                        for (i, l) in lines.iter().enumerate() {
                            let p = position_of(l);
                            let Some(index) = hold.lines.iter().position(|(hp, _)| *hp == p) else {
                                return Expected::Refused(Refused::NotHeld(format!("lines[{i}]")));
                            };
                            if l.qty > hold.lines[index].1 {
                                return Expected::Refused(Refused::NotHeld(format!(
                                    "lines[{i}].qty"
                                )));
                            }
                            committed[index] = l.qty;
                        }
                        committed
                    }
                };
                Expected::Event(Outcome::Committed { committed })
            }
            Command::Release(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(hold) => {
                    Expected::Event(Self::hold_ended(hold, now_ms).unwrap_or(Outcome::Released))
                }
            },
            Command::Extend(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(hold) => {
                    Expected::Event(Self::hold_ended(hold, now_ms).unwrap_or(Outcome::Extended {
                        expires_at_ms: now_ms + c.ttl_ms,
                    }))
                }
            },
            Command::Expire(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(h) if h.state == HoldState::Open && now_ms >= h.expires_at_ms => {
                    Expected::Event(Outcome::Expired)
                }
                Some(_) => Expected::Refused(Refused::HoldNotLapsed(c.reservation_id.to_string())),
            },
            Command::Dispose(c) => {
                let Some(record) = self.returns.get(c.return_id.as_str()) else {
                    return Expected::Refused(Refused::ReturnNotFound(c.return_id.to_string()));
                };
                let p = (c.sku.to_string(), c.location.to_string());
                let quarantined = record
                    .quarantined
                    .iter()
                    .find(|(qp, _)| *qp == p)
                    .map_or(0, |(_, q)| *q);
                if c.qty > quarantined {
                    Expected::Refused(Refused::NotQuarantined {
                        return_id: c.return_id.to_string(),
                        sku: c.sku.to_string(),
                        location: c.location.to_string(),
                        requested: c.qty,
                        quarantined,
                    })
                } else {
                    Expected::Event(Outcome::Recorded)
                }
            }
            Command::RecordReturn(c) => {
                if self
                    .returns
                    .get(c.return_id.as_str())
                    .is_some_and(|r| r.quarantined.iter().any(|(_, q)| *q > 0))
                {
                    Expected::Refused(Refused::ReturnIdInUse(c.return_id.to_string()))
                } else {
                    Expected::Event(Outcome::Recorded)
                }
            }
            Command::RecordSale(_) | Command::Adjust(_) | Command::SetSafetyStock(_) => {
                Expected::Event(Outcome::Recorded)
            }
            Command::AcknowledgeStoreAnomaly(c) => {
                let Some(store) = self.stores.get(c.store_id.as_str()) else {
                    return Expected::Refused(Refused::StoreNotFound(c.store_id.to_string()));
                };
                let Some(anomaly) = store.anomalies.iter().find(|a| a.txn_id == c.txn_id) else {
                    return Expected::Refused(Refused::StoreAnomalyNotFound {
                        store_id: c.store_id.to_string(),
                        txn_id: c.txn_id.to_string(),
                    });
                };
                let accepted = c.action == AnomalyAction::Accept;
                Expected::Event(Outcome::StoreAnomalyAcknowledged {
                    store_seq: anomaly.store_seq,
                    accepted,
                    gaps_abandoned: if accepted {
                        store.abandoned_by(anomaly.store_seq)
                    } else {
                        0
                    },
                })
            }
            Command::ResolveDrift(c) => {
                let p = (c.sku.to_string(), c.location.to_string());
                match self.held.get(&p) {
                    Some(held) if held.snapshot_id == c.snapshot_id.as_str() => {
                        Expected::Event(Outcome::DriftResolved {
                            drift: held.drift,
                            applied: c.action == DriftAction::Apply,
                        })
                    }
                    _ => Expected::Refused(Refused::DriftNotHeld {
                        snapshot_id: c.snapshot_id.to_string(),
                        sku: c.sku.to_string(),
                        location: c.location.to_string(),
                    }),
                }
            }
            // Issued by a reconciliation run, never by a client: the simulator checks the
            // run's facts with `reconcile_fact`.
            Command::Reconcile(_) => Expected::Refused(Refused::Other(
                "a Reconcile is never submitted by a client".to_owned(),
            )),
        }
    }

    /// The fact the engine must log for `command` decided as `outcome`: a commit names the
    /// positions of its hold (in the hold's order), which only the model's hold knows.
    pub fn fact(&self, command: &Command, outcome: &Outcome) -> Result<Fact, String> {
        if let (Command::Commit(c), Outcome::Committed { committed }) = (command, outcome)
            && let Some(hold) = self.holds.get(c.reservation_id.as_str())
            && hold.lines.len() == committed.len()
        {
            let lines = hold
                .lines
                .iter()
                .zip(committed)
                .map(|(((sku, location), _), &qty)| Line::new(sku, location, qty))
                .collect();
            return Ok(Fact::HoldCommitted {
                commit: c.clone(),
                lines,
            });
        }
        // Whether a sale's number jumps beyond the bound is the model's own judgement of its
        // store.
        if let (Command::RecordSale(c), Outcome::Recorded) = (command, outcome) {
            let newest_seq = self
                .stores
                .get(c.store_id.as_str())
                .map_or(0, |s| s.newest_seq);
            if c.store_seq > newest_seq.saturating_add(self.seq_jump_max) {
                return Ok(Fact::SaleRecordedOutOfSequence {
                    sale: c.clone(),
                    newest_seq,
                });
            }
        }
        // A resolution names the time of the snapshot that found the drift, which only the
        // held drift knows.
        if let (Command::ResolveDrift(c), Outcome::DriftResolved { drift, .. }) = (command, outcome)
            && let Some(held) = self.held.get(&(c.sku.to_string(), c.location.to_string()))
        {
            return Ok(Fact::DriftResolved {
                resolve: c.clone(),
                as_of_ms: held.as_of_ms,
                drift: *drift,
            });
        }
        Fact::decided(command.clone(), outcome.clone())
            .map_err(|pair| format!("no fact records {:?} for {:?}", pair.1, pair.0))
    }

    fn end_hold(
        &mut self,
        id: &str,
        to: HoldState,
        committed: Option<&[u64]>,
        at_ms: u64,
    ) -> Result<(), String> {
        let hold = self
            .holds
            .get_mut(id)
            .filter(|h| h.state == HoldState::Open)
            .ok_or_else(|| format!("model: hold {id} ended but it is not open"))?;
        hold.state = to;
        hold.ended_at_ms = at_ms;
        self.open.remove(id);
        if let Some(committed) = committed {
            let lines = hold.lines.clone();
            for ((p, _), c) in lines.iter().zip(committed) {
                self.positions.entry(p.clone()).or_default().on_hand -= *c as i64;
                if *c > 0 {
                    self.note_effect(p, at_ms, -(*c as i64));
                }
            }
        }
        Ok(())
    }

    /// Folds one fact, the next LSN's, decided at `at_ms`.
    pub fn apply(&mut self, fact: &Fact, at_ms: u64) -> Result<(), String> {
        let lsn = self.next_lsn;
        match fact {
            Fact::HoldPlaced {
                reserve: c,
                expires_at_ms,
            } => {
                self.open.insert(c.reservation_id.to_string());
                self.holds.insert(
                    c.reservation_id.to_string(),
                    ModelHold {
                        lines: c.lines.iter().map(|l| (position_of(l), l.qty)).collect(),
                        channel: c.channel.to_string(),
                        expires_at_ms: *expires_at_ms,
                        state: HoldState::Open,
                        placed_lsn: lsn,
                        placed_at_ms: at_ms,
                        ended_at_ms: 0,
                    },
                );
            }
            Fact::ReserveRefused { .. } | Fact::HoldAlreadyEnded { .. } => {}
            Fact::HoldCommitted { commit: c, lines } => {
                let committed: Vec<u64> = lines.iter().map(|l| l.qty).collect();
                self.end_hold(
                    c.reservation_id.as_str(),
                    HoldState::Committed,
                    Some(&committed),
                    at_ms,
                )?;
            }
            Fact::HoldReleased(c) => {
                self.end_hold(c.reservation_id.as_str(), HoldState::Released, None, at_ms)?;
            }
            Fact::HoldExpired(request) => self.end_hold(
                request.reservation_id().as_str(),
                HoldState::Expired,
                None,
                at_ms,
            )?,
            Fact::HoldExtended {
                extend: c,
                expires_at_ms,
            } => {
                let hold = self
                    .holds
                    .get_mut(c.reservation_id.as_str())
                    .ok_or("model: extended hold does not exist")?;
                hold.expires_at_ms = *expires_at_ms;
            }
            Fact::SaleRecorded(c) | Fact::SaleRecordedOutOfSequence { sale: c, .. } => {
                for l in &c.lines {
                    let p = position_of(l);
                    self.positions.entry(p.clone()).or_default().on_hand -= l.qty as i64;
                    self.note_effect(&p, c.occurred_at_ms.min(at_ms), -(l.qty as i64));
                }
                let store = self.stores.entry(c.store_id.to_string()).or_default();
                store.sales_recorded += 1;
                if let Fact::SaleRecordedOutOfSequence { newest_seq, .. } = fact {
                    if *newest_seq != store.newest_seq {
                        return Err(format!(
                            "model: {fact:?} at newest seq {}",
                            store.newest_seq
                        ));
                    }
                    store.flag(StoreAnomaly {
                        txn_id: c.txn_id.clone(),
                        store_seq: c.store_seq,
                        newest_seq: *newest_seq,
                        occurred_at_ms: c.occurred_at_ms,
                        recorded_at_ms: at_ms,
                        lsn: Lsn(lsn),
                    });
                } else {
                    store.receive(c.store_seq, c.occurred_at_ms, at_ms);
                }
            }
            Fact::StoreAnomalyAcknowledged {
                acknowledge: c,
                gaps_abandoned,
                ..
            } => {
                let abandoned = self.stores.get_mut(c.store_id.as_str()).and_then(|s| {
                    s.acknowledge(c.txn_id.as_str(), c.action == AnomalyAction::Accept)
                });
                if abandoned != Some(*gaps_abandoned) {
                    return Err(format!("model: {fact:?}, but it abandons {abandoned:?}"));
                }
            }
            Fact::ReturnRecorded(c) => {
                let mut quarantined = Vec::new();
                for l in &c.lines {
                    let p = (l.sku.to_string(), l.location.to_string());
                    let position = self.positions.entry(p.clone()).or_default();
                    match l.disposition {
                        ReturnDisposition::Restock => {
                            position.on_hand += l.qty as i64;
                            self.note_effect(&p, at_ms, l.qty as i64);
                        }
                        ReturnDisposition::Inspect => {
                            position.quarantined += l.qty as i64;
                            quarantined.push((p, l.qty));
                        }
                    }
                }
                self.returns
                    .insert(c.return_id.to_string(), ModelReturn { quarantined });
            }
            Fact::ReturnDisposed(c) => {
                let p = (c.sku.to_string(), c.location.to_string());
                let record = self
                    .returns
                    .get_mut(c.return_id.as_str())
                    .ok_or("model: disposed return does not exist")?;
                let entry = record
                    .quarantined
                    .iter_mut()
                    .find(|(qp, _)| *qp == p)
                    .ok_or("model: disposed units were never quarantined")?;
                entry.1 = entry
                    .1
                    .checked_sub(c.qty)
                    .ok_or("model: disposed more than quarantined")?;
                let position = self.positions.entry(p.clone()).or_default();
                position.quarantined -= c.qty as i64;
                if c.action == DispositionAction::Restock {
                    position.on_hand += c.qty as i64;
                    self.note_effect(&p, at_ms, c.qty as i64);
                }
            }
            Fact::StockAdjusted(c) => {
                let p = (c.sku.to_string(), c.location.to_string());
                self.positions.entry(p.clone()).or_default().on_hand += c.delta;
                self.note_effect(&p, at_ms, c.delta);
            }
            Fact::SafetyStockSet(c) => {
                let p = (c.sku.to_string(), c.location.to_string());
                self.positions.entry(p).or_default().safety_stock = c.qty as i64;
            }
            Fact::PositionReconciled {
                reconcile: r,
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            } => {
                let p = (r.sku.to_string(), r.location.to_string());
                let removed = self.held.remove(&p).map(|h| h.snapshot_id);
                if removed.as_deref() != superseded.as_ref().map(|s| s.as_str()) {
                    return Err(format!(
                        "model: {p:?} supersedes {superseded:?}, but {removed:?} is held there"
                    ));
                }
                if *held {
                    self.held.insert(
                        p,
                        ModelHeld {
                            snapshot_id: r.snapshot_id.to_string(),
                            as_of_ms: r.as_of_ms,
                            erp_on_hand: r.erp_on_hand,
                            engine_on_hand_at: *engine_on_hand_at,
                            drift: *drift,
                            lsn,
                        },
                    );
                } else if *drift != 0 {
                    self.positions.entry(p.clone()).or_default().on_hand += drift;
                    // A correction happened at its snapshot's time.
                    self.note_effect(&p, r.as_of_ms, *drift);
                }
            }
            Fact::DriftResolved {
                resolve,
                as_of_ms,
                drift,
            } => {
                let p = (resolve.sku.to_string(), resolve.location.to_string());
                let held = self
                    .held
                    .remove(&p)
                    .filter(|h| h.snapshot_id == resolve.snapshot_id.as_str())
                    .ok_or_else(|| {
                        format!("model: no drift of {} held at {p:?}", resolve.snapshot_id)
                    })?;
                if held.drift != *drift || held.as_of_ms != *as_of_ms {
                    return Err(format!("model: resolved {fact:?}, held {held:?}"));
                }
                if resolve.action == DriftAction::Apply && *drift != 0 {
                    self.positions.entry(p.clone()).or_default().on_hand += drift;
                    self.note_effect(&p, *as_of_ms, *drift);
                }
            }
        }
        let (command, outcome) = fact.to_decision();
        if let Some(key) = model_key(&command) {
            self.keys.insert(
                key,
                KeyRecord {
                    command,
                    lsn,
                    at_ms,
                    outcome,
                },
            );
        }
        self.next_lsn += 1;
        self.floor_ms = self.floor_ms.max(at_ms);
        self.history.push((at_ms, fact.clone()));
        Ok(())
    }
}
