//! The reference model: positions, holds, keys, returns, stores and held drifts, kept only from
//! the outcomes the engine returned; what a submit must return and how an event applies are in
//! `model/predict.rs` and `model/apply.rs`.

mod apply;
mod predict;
mod store;

use crate::keys::Key;
use crate::steps::POSITIONS;
use inv_engine::{Availability, BeyondTolerance, Command, HoldState, Outcome, Tolerance};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use store::ModelStore;

pub(crate) use predict::{Expected, Refused, refused_of};

// ------------------------------------------------------------------------------------------
// The reference model

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ModelPosition {
    pub(crate) exists: bool,
    pub(crate) on_hand: i64,
    pub(crate) quarantined: i64,
    pub(crate) safety_stock: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ModelHold {
    pub(crate) lines: Vec<(usize, u64)>,
    pub(crate) channel: String,
    pub(crate) expires_at_ms: u64,
    pub(crate) state: HoldState,
    pub(crate) placed_lsn: u64,
    pub(crate) placed_at_ms: u64,
    pub(crate) ended_at_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct KeyRecord {
    pub(crate) command: Command,
    pub(crate) lsn: u64,
    pub(crate) at_ms: u64,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, Clone)]
struct ModelReturn {
    at_ms: u64,
    quarantined: Vec<(usize, u64)>,
}

/// A drift the model holds for review at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelHeld {
    pub(crate) snapshot_id: String,
    pub(crate) as_of_ms: u64,
    pub(crate) erp_on_hand: i64,
    pub(crate) engine_on_hand_at: i64,
    pub(crate) drift: i64,
}

/// What reconciling one position must decide, as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelVerdict {
    pub(crate) erp_on_hand: i64,
    pub(crate) engine_on_hand_at: i64,
    pub(crate) drift: i64,
    pub(crate) held: bool,
    pub(crate) superseded: Option<String>,
    pub(crate) events_since: u32,
}

impl ModelVerdict {
    /// Whether the engine logs a fact for it: a drift, or a held drift to supersede.
    pub(crate) fn logged(&self) -> bool {
        self.drift != 0 || self.superseded.is_some()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Model {
    retention_ms: u64,
    pub(crate) positions: [ModelPosition; POSITIONS],
    pub(crate) holds: BTreeMap<String, ModelHold>,
    pub(crate) keys: HashMap<Key, KeyRecord>,
    returns: BTreeMap<String, ModelReturn>,
    pub(crate) stores: BTreeMap<String, ModelStore>,
    pub(crate) next_lsn: u64,
    last_at_ms: u64,
    /// Every on_hand change: (position, event time, delta), as `Fact::on_hand_effects`
    /// documents event time (a sale at its till time capped at when it was recorded, a
    /// correction at its snapshot's time, anything else at its decision time).
    effects: Vec<(usize, u64, i64)>,
    pub(crate) held: BTreeMap<usize, ModelHeld>,
    /// Snapshots reconciled for real: (as_of, scope as a location index, `None` for all).
    pub(crate) reconciled: Vec<(u64, Option<usize>)>,
}

impl Model {
    pub(crate) fn new(retention_ms: u64) -> Self {
        Self {
            retention_ms,
            positions: [ModelPosition::default(); POSITIONS],
            holds: BTreeMap::new(),
            keys: HashMap::new(),
            returns: BTreeMap::new(),
            stores: BTreeMap::new(),
            next_lsn: 1,
            last_at_ms: 0,
            effects: Vec::new(),
            held: BTreeMap::new(),
            reconciled: Vec::new(),
        }
    }

    /// The engine's count of `p` at `as_of_ms`: on_hand less every change dated after it;
    /// and how many changes that is.
    pub(crate) fn on_hand_at(&self, p: usize, as_of_ms: u64) -> (i64, u32) {
        let (mut since, mut events) = (0, 0);
        for &(ep, t, delta) in &self.effects {
            if ep == p && t > as_of_ms {
                since += delta;
                events += 1;
            }
        }
        (self.positions[p].on_hand - since, events)
    }

    /// What reconciling `p` against `erp_on_hand` at `as_of_ms` decides now.
    pub(crate) fn verdict(
        &self,
        p: usize,
        erp_on_hand: i64,
        as_of_ms: u64,
        tolerance: &Tolerance,
    ) -> ModelVerdict {
        let (engine_on_hand_at, events_since) = self.on_hand_at(p, as_of_ms);
        let drift = erp_on_hand - engine_on_hand_at;
        ModelVerdict {
            erp_on_hand,
            engine_on_hand_at,
            drift,
            held: drift != 0
                && tolerance.beyond == BeyondTolerance::Hold
                && drift.unsigned_abs() > tolerance.units
                && u128::from(drift.unsigned_abs()) * 10_000
                    > u128::from(engine_on_hand_at.unsigned_abs())
                        * u128::from(tolerance.percent_bp),
            superseded: self.held.get(&p).map(|h| h.snapshot_id.clone()),
            events_since,
        }
    }

    pub(crate) fn retained(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.retention_ms) > now_ms
    }

    pub(crate) fn live_hold(&self, id: &str, now_ms: u64) -> Option<&ModelHold> {
        self.holds
            .get(id)
            .filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
    }

    /// Units of every open hold on `p`, lapsed or not (what `PositionView::reserved` shows).
    pub(crate) fn reserved_all(&self, p: usize) -> i64 {
        self.holds
            .values()
            .filter(|h| h.state == HoldState::Open)
            .flat_map(|h| h.lines.iter())
            .filter(|(lp, _)| *lp == p)
            .map(|(_, q)| *q as i64)
            .sum()
    }

    /// Units of open holds on `p` whose TTL has not passed at `now_ms`.
    fn reserved_live(&self, p: usize, now_ms: u64) -> i64 {
        self.holds
            .values()
            .filter(|h| h.state == HoldState::Open && now_ms < h.expires_at_ms)
            .flat_map(|h| h.lines.iter())
            .filter(|(lp, _)| *lp == p)
            .map(|(_, q)| *q as i64)
            .sum()
    }

    pub(crate) fn availability(&self, p: usize, now_ms: u64) -> Option<Availability> {
        let position = &self.positions[p];
        if !position.exists {
            return None;
        }
        let reserved = self.reserved_live(p, now_ms);
        Some(Availability {
            on_hand: position.on_hand,
            reserved,
            safety_stock: position.safety_stock,
            quarantined: position.quarantined,
            available: position.on_hand - reserved - position.safety_stock,
        })
    }

    pub(crate) fn lapsed_open_holds(&self, now_ms: u64) -> BTreeSet<String> {
        self.holds
            .iter()
            .filter(|(_, h)| h.state == HoldState::Open && now_ms >= h.expires_at_ms)
            .map(|(id, _)| id.clone())
            .collect()
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

    /// What `Ledger::purge(now_ms)` forgets; returns how many entries.
    pub(crate) fn purge(&mut self, now_ms: u64) -> usize {
        let as_of = now_ms.min(self.last_at_ms);
        let r = self.retention_ms;
        let kept = |at: u64| at.saturating_add(r) > as_of;
        let before = self.keys.len() + self.holds.len() + self.returns.len();
        self.keys.retain(|_, k| kept(k.at_ms));
        self.holds
            .retain(|_, h| h.state == HoldState::Open || kept(h.ended_at_ms));
        self.returns
            .retain(|_, ret| ret.quarantined.iter().any(|(_, q)| *q > 0) || kept(ret.at_ms));
        before - (self.keys.len() + self.holds.len() + self.returns.len())
    }
}
