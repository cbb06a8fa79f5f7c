//! Folding: how one fact, the next LSN's, changes the model ([`Model::apply`]), whether the
//! simulator folds it after checking the engine's answer or a rebuild refolds it after a
//! crash. Kept apart from the predictions, which only read the model.

use super::keys::model_key;
use super::{KeyRecord, Model, ModelHeld, ModelHold, ModelReturn, position_of};
use inv_engine::{
    AnomalyAction, DispositionAction, DriftAction, Fact, HoldState, Lsn, ReturnDisposition,
    StoreAnomaly,
};

impl Model {
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
