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
//!
//! # Files
//! - `model.rs`: the model's state (positions, holds, held drifts, the facts folded) and what
//!   the simulator reads from it.
//! - `model/keys.rs`: idempotency keys as the model names them, and the field a conflict names.
//! - `model/store.rs`: a store's sale numbers, gaps and anomalies, kept one by one.
//! - `model/predict.rs`: the answer a request must get and the facts the engine must log
//!   (reads only); `model/apply.rs`: folding one fact into the model.

mod apply;
mod keys;
mod predict;
mod store;

pub use predict::{Expected, Refused, refused_of};

use inv_engine::{Availability, Command, Fact, HoldState, Line, Outcome, StoreStatus};
use keys::{Key, model_key};
use std::collections::{BTreeMap, BTreeSet};
use store::ModelStore;

/// (sku, location).
pub type Position = (String, String);

fn position_of(line: &Line) -> Position {
    (line.sku.to_string(), line.location.to_string())
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

    /// Counts a retried sale answered from its key, as the engine's store status does.
    pub fn note_duplicate(&mut self, command: &Command) {
        if let Command::RecordSale(sale) = command
            && let Some(store) = self.stores.get_mut(sale.store_id.as_str())
        {
            store.duplicates_absorbed += 1;
        }
    }
}
