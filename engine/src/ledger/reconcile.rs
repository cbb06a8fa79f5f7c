//! The ledger's part of reconciling ERP snapshots (the run itself is `crate::reconcile`).
//!
//! # Counting on_hand as of a snapshot's time
//! A snapshot says what the ERP counted as of `as_of`; the engine's count at that time is
//! today's `on_hand` less the effect of every event after `as_of` (see
//! `Fact::on_hand_effects` for what "after" means per event). A run gets that effect from two
//! places that meet at one LSN, `tap_from`, so that no event is missed or counted twice while
//! writes go on:
//! - the events before `tap_from`, from the log (the run reads them; each `Reconcile` carries
//!   its position's sum as `since_as_of`);
//! - the events from `tap_from` on, from the tap: [`Ledger::start_tap`] first installs a tap
//!   in every position shard, then reads `tap_from` from the sequencer. Every write records its
//!   on_hand effects in the taps of the shards it holds, under their locks, after applying. A
//!   write given an LSN at or after `tap_from` was sequenced after every tap was installed,
//!   and it held its shards' locks from before it was sequenced until it recorded, so the tap
//!   was there to see it; writes before `tap_from` may be seen too, and are left out by LSN.
//!
//! A `Reconcile` is decided under its position's lock, where the tap is complete up to the
//! newest applied event: `engine_on_hand_at = on_hand - since_as_of - tap`.
//!
//! # Held drifts
//! A drift beyond its tolerance may be held for review (`reviews.rs`) instead of applied. A
//! later reconciliation of the position supersedes it (the ERP has counted again); a
//! `ResolveDrift` applies or dismisses it. Reconciliation facts are applied at the snapshot's
//! time, so a later snapshot never counts a correction twice.

use super::interner::Kind;
use super::positions::Position;
use super::reviews::{HeldDrift, Reviews};
use super::scope::{KeyedScope, PositionLocks};
use super::{Decision, Ledger, Receipt};
use crate::command::*;
use crate::error::LogError;
use crate::event::{Event, Fact};
use crate::outcome::{Outcome, Refusal};
use crate::sync::{MutexGuard, lock};
use crate::types::*;
use foldhash::fast::FixedState;
use std::collections::HashMap;

/// A reconciliation or drift resolution: the key shard of its snapshot, the reviews table,
/// and its position's shard.
pub(super) type ReviewScope<'a> = KeyedScope<'a, MutexGuard<'a, Reviews>>;

/// One shard's record of the on_hand changes applied while a reconciliation runs.
pub(crate) struct Tap {
    /// Only changes dated after this count (see `Fact::on_hand_effects`).
    as_of_ms: u64,
    /// The LSN the run reads the log up to; set once every shard has its tap.
    from: Option<Lsn>,
    /// Per position, `(lsn, delta)` of each change counted.
    changes: HashMap<(Sku, Location), Vec<(Lsn, i64)>, FixedState>,
}

impl Tap {
    fn boxed(as_of_ms: u64) -> Box<Self> {
        Box::new(Self {
            as_of_ms,
            from: None,
            changes: HashMap::default(),
        })
    }

    /// The net change at a position from `from` on, and how many events made it.
    fn since(&self, sku: &Sku, location: &Location, from: Lsn) -> (i64, u32) {
        let key = (sku.clone(), location.clone());
        self.changes.get(&key).map_or((0, 0), |changes| {
            changes
                .iter()
                .filter(|(lsn, _)| *lsn >= from)
                .fold((0, 0), |(sum, n), (_, delta)| (sum + delta, n + 1))
        })
    }
}

/// What reconciling a position comes to.
struct Verdict {
    engine_on_hand_at: i64,
    drift: i64,
    held: bool,
    superseded: Option<SnapshotId>,
    events_since: u32,
}

impl Verdict {
    fn outcome(&self) -> Outcome {
        if self.drift == 0 {
            Outcome::Matched {
                engine_on_hand_at: self.engine_on_hand_at,
                events_since: self.events_since,
            }
        } else {
            Outcome::Reconciled {
                engine_on_hand_at: self.engine_on_hand_at,
                drift: self.drift,
                held: self.held,
                events_since: self.events_since,
            }
        }
    }
}

/// A drift held for review, as reports and clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDriftView {
    pub sku: Sku,
    pub location: Location,
    pub snapshot_id: SnapshotId,
    pub as_of_ms: u64,
    pub erp_on_hand: i64,
    pub engine_on_hand_at: i64,
    pub drift: i64,
    pub lsn: Lsn,
}

impl PositionLocks<'_> {
    /// Records `event`'s on_hand effects in the taps of the locked shards (nothing to do, and
    /// nothing allocated, while no tap is installed).
    pub fn record_tap(&mut self, ledger: &Ledger, event: &Event) {
        if !self.any_tap() {
            return;
        }
        for effect in event.fact.on_hand_effects(event.at_ms) {
            let shard = ledger.shard_of(effect.sku.as_str());
            let Some(tap) = self.shard(shard).tap.as_deref_mut() else {
                continue;
            };
            if effect.event_time_ms > tap.as_of_ms {
                let key = (effect.sku.clone(), effect.location.clone());
                tap.changes
                    .entry(key)
                    .or_default()
                    .push((event.lsn, effect.delta));
            }
        }
    }
}

impl Ledger {
    /// Starts counting the on_hand changes dated after `as_of_ms` in every position shard,
    /// and returns `tap_from`: the log holds every event before it, the tap every event from
    /// it on (see the module doc). One tap at a time; a new one replaces the old.
    pub fn start_tap(&self, as_of_ms: u64) -> Lsn {
        for shard in self.positions.iter() {
            lock(shard).tap = Some(Tap::boxed(as_of_ms));
        }
        self.publish_tap_from()
    }

    /// [`Ledger::start_tap`], unless a tap is running already: then `None`, and the running
    /// one is left alone. A second run (a dry run asked for while the scheduled one works)
    /// would otherwise replace the first one's tap, and every later position of the first
    /// run would be refused as not running. Every install takes position shard 0 first, and
    /// this one checks and installs under that lock, so of two callers exactly one wins.
    pub fn try_start_tap(&self, as_of_ms: u64) -> Option<Lsn> {
        {
            let mut first = lock(&self.positions[0]);
            if first.tap.is_some() {
                return None;
            }
            first.tap = Some(Tap::boxed(as_of_ms));
        }
        for shard in self.positions.iter().skip(1) {
            lock(shard).tap = Some(Tap::boxed(as_of_ms));
        }
        Some(self.publish_tap_from())
    }

    /// Reads `tap_from` once every shard has its tap, and tells the taps.
    fn publish_tap_from(&self) -> Lsn {
        let from = lock(&self.sequencer).next_lsn;
        for shard in self.positions.iter() {
            if let Some(tap) = lock(shard).tap.as_deref_mut() {
                tap.from = Some(from);
            }
        }
        from
    }

    /// Stops the tap that [`Ledger::try_start_tap`] started at `from`, and only that one: a
    /// run that ends (or is dropped) must not stop another run's tap.
    pub fn stop_tap_from(&self, from: Lsn) {
        for shard in self.positions.iter() {
            let mut shard = lock(shard);
            if shard
                .tap
                .as_deref()
                .is_some_and(|tap| tap.from == Some(from))
            {
                shard.tap = None;
            }
        }
    }

    /// Stops the tap and frees what it counted.
    pub fn stop_tap(&self) {
        for shard in self.positions.iter() {
            lock(shard).tap = None;
        }
    }

    /// The first LSN a scan of the log for events after `as_of_ms` must read, or `None` if
    /// the history kept (`LedgerConfig::history_ms`) does not reach back that far.
    pub fn history_scan_from(&self, as_of_ms: u64) -> Option<Lsn> {
        lock(&self.sequencer).history.scan_from(as_of_ms)
    }

    /// The oldest snapshot time the engine reconciles, as of its latest decision (see
    /// [`Ledger::history_start_ms_at`]; callers with a clock use that).
    pub fn history_start_ms(&self) -> u64 {
        let latest_ms = lock(&self.sequencer).last_at_ms;
        self.history_start_ms_at(latest_ms)
    }

    /// The oldest snapshot time the engine reconciles at `now_ms`: the window
    /// (`LedgerConfig::history_ms`) back from now, and never before the history the log still
    /// holds. The time index alone is not the contract: until the engine has run for a whole
    /// window its boundary is the first event, and after a quiet spell it is the last event
    /// before the window, so it would accept a snapshot of any age there, and refuse the same
    /// snapshot on another engine. The window makes the rule the issue states, the same
    /// everywhere: older than `history_ms` before now is refused.
    pub fn history_start_ms_at(&self, now_ms: u64) -> u64 {
        let kept_ms = lock(&self.sequencer).history.start_ms();
        kept_ms.max(now_ms.saturating_sub(self.config.history_ms))
    }

    pub(super) fn lock_reviews(
        &self,
        command: &impl KeyedCommand,
        sku: &Sku,
    ) -> Result<ReviewScope<'_>, LogError> {
        let keys = self.lock_key_shard(command)?;
        let reviews = lock(&self.reviews);
        let positions = self.lock_positions(std::iter::once(self.shard_of(sku.as_str())).collect());
        Ok(KeyedScope {
            keys,
            table: reviews,
            positions,
        })
    }

    /// The engine's count of a position at the snapshot's time, and whether it drifted from
    /// the ERP's (see the module doc). A position that matches, with no drift held there,
    /// changes nothing and is not logged.
    pub(super) fn decide_reconcile(
        &self,
        scope: &mut ReviewScope<'_>,
        reconcile: Reconcile,
    ) -> Result<Fact, Decision> {
        let verdict = self.verdict(scope, &reconcile).map_err(Err)?;
        if verdict.drift == 0 && verdict.superseded.is_none() {
            return Err(Ok(Receipt {
                lsn: Lsn::ZERO,
                outcome: verdict.outcome(),
                duplicate: false,
            }));
        }
        Ok(Fact::PositionReconciled {
            reconcile,
            engine_on_hand_at: verdict.engine_on_hand_at,
            drift: verdict.drift,
            held: verdict.held,
            superseded: verdict.superseded,
            events_since: verdict.events_since,
        })
    }

    /// What `reconcile` would decide now, without deciding it: for a dry run.
    pub fn preview_reconcile(&self, reconcile: &Reconcile) -> Result<Outcome, Refusal> {
        // The same locks as the write, without faulting its key in: a preview reads no record.
        let scope = KeyedScope {
            keys: lock(&self.keys[self.shard_of(reconcile.key_ids().0)]),
            table: lock(&self.reviews),
            positions: self
                .lock_positions(std::iter::once(self.shard_of(reconcile.sku.as_str())).collect()),
        };
        Ok(self.verdict(&scope, reconcile)?.outcome())
    }

    fn verdict(&self, scope: &ReviewScope<'_>, reconcile: &Reconcile) -> Result<Verdict, Refusal> {
        let not_running = || Refusal::ReconciliationNotRunning(reconcile.snapshot_id.to_string());
        let shard = scope
            .positions
            .shard_ref(self.shard_of(reconcile.sku.as_str()))
            .expect("the scope locked the position's shard");
        let tap = shard.tap.as_deref().ok_or_else(not_running)?;
        if tap.as_of_ms != reconcile.as_of_ms || tap.from != Some(reconcile.tap_from_lsn) {
            return Err(not_running());
        }
        let (tapped, tapped_events) =
            tap.since(&reconcile.sku, &reconcile.location, reconcile.tap_from_lsn);
        let on_hand = self
            .names
            .get(Kind::Location, reconcile.location.as_str())
            .and_then(|location| {
                let entry = shard.get(reconcile.sku.as_str())?;
                entry.position(LocationId(location)).map(|p| p.on_hand)
            })
            .unwrap_or(0);
        let engine_on_hand_at = on_hand - reconcile.since_as_of - tapped;
        let drift = reconcile.erp_on_hand - engine_on_hand_at;
        let position = (reconcile.sku.clone(), reconcile.location.clone());
        let tolerance = reconcile.tolerance;
        Ok(Verdict {
            engine_on_hand_at,
            drift,
            held: drift != 0
                && tolerance.beyond == BeyondTolerance::Hold
                && !tolerance.accepts(drift, engine_on_hand_at),
            superseded: scope
                .table
                .by_position
                .get(&position)
                .map(|held| held.snapshot_id.clone()),
            events_since: reconcile.events_since.saturating_add(tapped_events),
        })
    }

    /// A held drift of the named snapshot at the position, applied or dismissed.
    pub(super) fn decide_resolve(
        &self,
        scope: &ReviewScope<'_>,
        resolve: ResolveDrift,
    ) -> Result<Fact, Decision> {
        let position = (resolve.sku.clone(), resolve.location.clone());
        match scope.table.by_position.get(&position) {
            Some(held) if held.snapshot_id == resolve.snapshot_id => Ok(Fact::DriftResolved {
                as_of_ms: held.as_of_ms,
                drift: held.drift,
                resolve,
            }),
            _ => Err(Err(Refusal::DriftNotHeld {
                snapshot_id: resolve.snapshot_id.to_string(),
                sku: resolve.sku.to_string(),
                location: resolve.location.to_string(),
            })),
        }
    }

    /// PositionReconciled and DriftResolved.
    pub(super) fn apply_to_reviews(
        &self,
        scope: &mut ReviewScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        match &event.fact {
            Fact::PositionReconciled {
                reconcile: r,
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            } => {
                let position = (r.sku.clone(), r.location.clone());
                let removed = scope.table.by_position.remove(&position);
                if removed.map(|h| h.snapshot_id) != *superseded {
                    return Err("the drift it supersedes is not the one held".into());
                }
                if *held {
                    let held = HeldDrift {
                        snapshot_id: r.snapshot_id.clone(),
                        as_of_ms: r.as_of_ms,
                        erp_on_hand: r.erp_on_hand,
                        engine_on_hand_at: *engine_on_hand_at,
                        drift: *drift,
                        lsn: event.lsn,
                    };
                    scope.table.by_position.insert(position, held);
                } else if *drift != 0 {
                    self.on_hand_at(&mut scope.positions, &r.sku, &r.location)
                        .on_hand += drift;
                }
                Ok(())
            }
            Fact::DriftResolved { resolve, drift, .. } => {
                let position = (resolve.sku.clone(), resolve.location.clone());
                scope
                    .table
                    .by_position
                    .remove(&position)
                    .filter(|held| held.snapshot_id == resolve.snapshot_id)
                    .ok_or("no such drift is held")?;
                if resolve.action == DriftAction::Apply {
                    self.on_hand_at(&mut scope.positions, &resolve.sku, &resolve.location)
                        .on_hand += drift;
                }
                Ok(())
            }
            other => Err(format!("{} is not a reconciliation", other.name())),
        }
    }

    fn on_hand_at<'s>(
        &self,
        positions: &'s mut PositionLocks<'_>,
        sku: &Sku,
        location: &Location,
    ) -> &'s mut Position {
        let location = LocationId(self.names.intern(Kind::Location, location.as_str()));
        positions
            .shard(self.shard_of(sku.as_str()))
            .position_or_insert(sku, location)
    }

    /// The positions of position shard `shard` (of `LedgerConfig::shards`), by name: a
    /// reconciliation walks them one shard, one lock, at a time.
    pub fn positions_of_shard(&self, shard: usize) -> Vec<(Sku, Location)> {
        let shard = lock(&self.positions[shard]);
        let mut positions = Vec::new();
        for entry in shard.iter() {
            for p in &entry.positions {
                let location = Location(self.names.name(Kind::Location, p.location.0));
                positions.push((entry.sku.clone(), location));
            }
        }
        positions
    }

    /// The drift held for review at one position, if any.
    pub fn held_drift(&self, sku: &Sku, location: &Location) -> Option<HeldDriftView> {
        let position = (sku.clone(), location.clone());
        lock(&self.reviews)
            .by_position
            .get(&position)
            .map(|held| HeldDriftView {
                sku: sku.clone(),
                location: location.clone(),
                snapshot_id: held.snapshot_id.clone(),
                as_of_ms: held.as_of_ms,
                erp_on_hand: held.erp_on_hand,
                engine_on_hand_at: held.engine_on_hand_at,
                drift: held.drift,
                lsn: held.lsn,
            })
    }

    /// The drifts held for review, by position; only `snapshot_id`'s if given.
    pub fn held_drifts_count(&self) -> usize {
        lock(&self.reviews).by_position.len()
    }

    pub fn held_drifts(&self, snapshot_id: Option<&str>) -> Vec<HeldDriftView> {
        lock(&self.reviews)
            .by_position
            .iter()
            .filter(|(_, held)| snapshot_id.is_none_or(|id| held.snapshot_id.as_str() == id))
            .map(|((sku, location), held)| HeldDriftView {
                sku: sku.clone(),
                location: location.clone(),
                snapshot_id: held.snapshot_id.clone(),
                as_of_ms: held.as_of_ms,
                erp_on_hand: held.erp_on_hand,
                engine_on_hand_at: held.engine_on_hand_at,
                drift: held.drift,
                lsn: held.lsn,
            })
            .collect()
    }
}
