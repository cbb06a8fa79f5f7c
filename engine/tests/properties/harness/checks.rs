//! The checks after every step (everything observable, against the model) and at the end of a
//! case (the log replays three ways).

use super::{Harness, check};
use crate::model::ModelHeld;
use crate::steps::{POSITIONS, RESERVATION_IDS, line, pos_names, pos_of, rid};
use inv_engine::{
    Engine, HoldState, HoldView, Ledger, LedgerConfig, Lsn, ManualClock, MemLog, PositionView,
    StoreStatus,
};
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Harness {
    /// Everything observable, against the model, after every step.
    pub(crate) fn check_state(&mut self) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        if let Err(e) = self.ledger().check_invariants() {
            return Err(TestCaseError::fail(format!("invariants: {e}")));
        }
        let lsn = self.ledger().next_lsn();
        check!(
            lsn == Lsn(self.model.next_lsn) && self.log.len() as u64 == lsn.0 - 1,
            "next_lsn {lsn}, model {}, log length {}",
            self.model.next_lsn,
            self.log.len()
        );

        // Conservation: on_hand and quarantined follow only from the returned outcomes.
        let positions = self.ledger().positions();
        let mut expected = BTreeMap::new();
        for (p, mp) in self.model.positions.iter().enumerate() {
            if mp.exists {
                let (sku, location) = pos_names(p);
                expected.insert(
                    (sku.to_owned(), location.to_owned()),
                    PositionView {
                        on_hand: mp.on_hand,
                        reserved: self.model.reserved_all(p),
                        safety_stock: mp.safety_stock,
                        quarantined: mp.quarantined,
                    },
                );
            }
        }
        check!(
            positions == expected,
            "positions {positions:?}\n   model {expected:?}"
        );
        for p in 0..POSITIONS {
            let (sku, location) = pos_names(p);
            let actual = self.ledger().check(sku, location, now);
            let model = self.model.availability(p, now);
            check!(
                actual == model,
                "check({sku}, {location}) = {actual:?}, model {model:?}"
            );
        }

        let ids = (0..RESERVATION_IDS)
            .map(rid)
            .chain(self.fresh_ids.iter().cloned());
        for id in ids {
            let actual = self
                .ledger()
                .reservation(&id, now)
                .expect("the key archive reads");
            let model = self.model.live_hold(&id, now).map(|h| HoldView {
                reservation_id: id.clone(),
                channel: h.channel.clone(),
                lines: h.lines.iter().map(|&(p, q)| line(p, q)).collect(),
                state: if h.state == HoldState::Open && now >= h.expires_at_ms {
                    HoldState::Expired
                } else {
                    h.state
                },
                expires_at_ms: h.expires_at_ms,
                placed_lsn: Lsn(h.placed_lsn),
                placed_at_ms: h.placed_at_ms,
                ended_at_ms: h.ended_at_ms,
                // This model's commands are issued with authentication off.
                placed_by: None,
                ended_by: None,
            });
            check!(
                actual == model,
                "reservation({id}) = {actual:?}, model {model:?}"
            );
        }
        let open = self
            .model
            .holds
            .values()
            .filter(|h| h.state == HoldState::Open)
            .count();
        check!(
            self.ledger().holds_open() == open,
            "holds_open {} but the model has {open}",
            self.ledger().holds_open()
        );

        let held: BTreeMap<usize, ModelHeld> = self
            .ledger()
            .held_drifts(None)
            .into_iter()
            .map(|h| {
                let held = ModelHeld {
                    snapshot_id: h.snapshot_id.to_string(),
                    as_of_ms: h.as_of_ms,
                    erp_on_hand: h.erp_on_hand,
                    engine_on_hand_at: h.engine_on_hand_at,
                    drift: h.drift,
                };
                (pos_of(h.sku.as_str(), h.location.as_str()), held)
            })
            .collect();
        check!(
            held == self.model.held,
            "held drifts {held:?}\n      model {:?}",
            self.model.held
        );

        let statuses = self.ledger().store_statuses();
        let model: Vec<StoreStatus> = self
            .model
            .stores
            .iter()
            .map(|(id, s)| s.status(id))
            .collect();
        check!(
            statuses == model,
            "store statuses {statuses:?}\n  model {model:?}"
        );

        let digest = self.ledger().digest();
        if let Some(previous) = self.digests.insert(lsn.0, digest) {
            check!(
                previous == digest,
                "digest changed without an event (next_lsn {lsn})"
            );
        }
        Ok(())
    }

    /// Invariant 4: the log replays, event by event, through every digest seen live, and
    /// again into a second ledger (of another shard count) and through `Engine::recover`.
    pub(crate) fn check_replay(&self) -> Result<(), TestCaseError> {
        let events = self.log.events();
        let live = self.ledger().digest();
        let live_positions = self.ledger().positions();

        let first = Ledger::new(self.config, Arc::new(MemLog::new()));
        check!(
            self.digests.get(&1) == Some(&first.digest()),
            "empty digests differ"
        );
        for event in &events {
            if let Err(e) = first.replay(event) {
                return Err(TestCaseError::fail(format!("replay of {event:?}: {e}")));
            }
            if let Some(seen) = self.digests.get(&(event.lsn.0 + 1)) {
                check!(
                    first.digest() == *seen,
                    "replay digest after lsn {} differs from the live one",
                    event.lsn
                );
            }
        }
        check!(first.digest() == live, "replayed digest differs");
        check!(
            first.positions() == live_positions,
            "replayed positions differ"
        );
        if let Err(e) = first.check_invariants() {
            return Err(TestCaseError::fail(format!("replayed invariants: {e}")));
        }

        let second_config = LedgerConfig {
            shards: if self.config.shards == 64 { 2 } else { 64 },
            ..self.config
        };
        let second = Ledger::new(second_config, Arc::new(MemLog::new()));
        for event in &events {
            if let Err(e) = second.replay(event) {
                return Err(TestCaseError::fail(format!("second replay: {e}")));
            }
        }
        check!(
            second.digest() == live && second.digest() == first.digest(),
            "second replay digest differs"
        );

        let engine = Engine::recover(
            self.config,
            self.log.clone(),
            Arc::new(ManualClock::new(self.now_ms)),
        )
        .map_err(|e| TestCaseError::fail(format!("recover: {e}")))?;
        check!(engine.ledger().digest() == live, "recovered digest differs");
        check!(
            engine.ledger().next_lsn() == self.ledger().next_lsn(),
            "recovered next_lsn differs"
        );
        Ok(())
    }
}
