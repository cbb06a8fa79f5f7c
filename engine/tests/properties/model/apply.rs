//! The fact the engine must log for a decision, and how an event the engine appended moves the
//! model.

use super::{KeyRecord, Model, ModelHeld, ModelHold, ModelReturn};
use crate::keys::model_key;
use crate::steps::{SEQ_JUMP_MAX, pos_names, pos_of};
use inv_engine::{
    AnomalyAction, Command, DispositionAction, DriftAction, Fact, HoldState, Line, Lsn, Outcome,
    ReturnDisposition, StoreAnomaly,
};

impl Model {
    fn end_hold(&mut self, id: &str, to: HoldState, committed: Option<&[u64]>, at_ms: u64) {
        let hold = self.holds.get_mut(id).expect("model: ended hold exists");
        assert_eq!(hold.state, HoldState::Open, "model: only open holds end");
        hold.state = to;
        hold.ended_at_ms = at_ms;
        if let Some(committed) = committed {
            let lines = hold.lines.clone();
            for ((p, _), c) in lines.iter().zip(committed) {
                self.positions[*p].on_hand -= *c as i64;
                if *c > 0 {
                    self.effects.push((*p, at_ms, -(*c as i64)));
                }
            }
        }
    }

    /// The fact the engine must log for `command` decided as `outcome`: a commit names the
    /// positions of its hold (in the hold's order), which only the model's hold knows.
    pub(crate) fn fact(
        &self,
        command: &Command,
        outcome: &Outcome,
    ) -> Result<Fact, Box<(Command, Outcome)>> {
        if let (Command::Commit(c), Outcome::Committed { committed }) = (command, outcome)
            && let Some(hold) = self.holds.get(c.reservation_id.as_str())
            && hold.lines.len() == committed.len()
        {
            let lines = hold
                .lines
                .iter()
                .zip(committed)
                .map(|(&(p, _), &qty)| {
                    let (sku, location) = pos_names(p);
                    Line::new(sku, location, qty)
                })
                .collect();
            return Ok(Fact::HoldCommitted {
                commit: c.clone(),
                lines,
            });
        }
        // Whether a sale's number jumps is the model's own judgement of its store.
        if let (Command::RecordSale(c), Outcome::Recorded) = (command, outcome) {
            let newest_seq = self
                .stores
                .get(c.store_id.as_str())
                .map_or(0, |s| s.newest_seq);
            if c.store_seq > newest_seq.saturating_add(SEQ_JUMP_MAX) {
                return Ok(Fact::SaleRecordedOutOfSequence {
                    sale: c.clone(),
                    newest_seq,
                });
            }
        }
        // The held drift's time and size are only in the model's record of it.
        if let (Command::ResolveDrift(c), Outcome::DriftResolved { drift, .. }) = (command, outcome)
            && let Some(held) = self.held.get(&pos_of(c.sku.as_str(), c.location.as_str()))
        {
            return Ok(Fact::DriftResolved {
                resolve: c.clone(),
                as_of_ms: held.as_of_ms,
                drift: *drift,
            });
        }
        Fact::decided(command.clone(), outcome.clone())
    }

    /// Applies an event the engine appended: the fact of the command and the outcome the
    /// engine returned.
    pub(crate) fn apply(&mut self, fact: &Fact, lsn: u64, at_ms: u64) {
        match fact {
            Fact::HoldPlaced {
                reserve: c,
                expires_at_ms,
            } => {
                self.holds.insert(
                    c.reservation_id.to_string(),
                    ModelHold {
                        lines: c
                            .lines
                            .iter()
                            .map(|l| (pos_of(l.sku.as_str(), l.location.as_str()), l.qty))
                            .collect(),
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
                )
            }
            Fact::HoldReleased(c) => {
                self.end_hold(c.reservation_id.as_str(), HoldState::Released, None, at_ms)
            }
            Fact::HoldExpired(request) => self.end_hold(
                request.reservation_id().as_str(),
                HoldState::Expired,
                None,
                at_ms,
            ),
            Fact::HoldExtended {
                extend: c,
                expires_at_ms,
            } => {
                let hold = self
                    .holds
                    .get_mut(c.reservation_id.as_str())
                    .expect("model: extended hold exists");
                hold.expires_at_ms = *expires_at_ms;
            }
            Fact::SaleRecorded(c) | Fact::SaleRecordedOutOfSequence { sale: c, .. } => {
                for l in &c.lines {
                    let pos = pos_of(l.sku.as_str(), l.location.as_str());
                    let p = &mut self.positions[pos];
                    p.exists = true;
                    p.on_hand -= l.qty as i64;
                    self.effects
                        .push((pos, c.occurred_at_ms.min(at_ms), -(l.qty as i64)));
                }
                let store = self.stores.entry(c.store_id.to_string()).or_default();
                store.sales_recorded += 1;
                if let Fact::SaleRecordedOutOfSequence { newest_seq, .. } = fact {
                    assert_eq!(
                        *newest_seq, store.newest_seq,
                        "model: the jump's newest seq"
                    );
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
                let store = self
                    .stores
                    .get_mut(c.store_id.as_str())
                    .expect("model: an acknowledged store exists");
                let abandoned =
                    store.acknowledge(c.txn_id.as_str(), c.action == AnomalyAction::Accept);
                assert_eq!(abandoned, Some(*gaps_abandoned), "model: {fact:?}");
            }
            Fact::ReturnRecorded(c) => {
                let mut quarantined = Vec::new();
                for l in &c.lines {
                    let p = pos_of(l.sku.as_str(), l.location.as_str());
                    let position = &mut self.positions[p];
                    position.exists = true;
                    match l.disposition {
                        ReturnDisposition::Restock => {
                            position.on_hand += l.qty as i64;
                            self.effects.push((p, at_ms, l.qty as i64));
                        }
                        ReturnDisposition::Inspect => {
                            position.quarantined += l.qty as i64;
                            quarantined.push((p, l.qty));
                        }
                    }
                }
                self.returns
                    .insert(c.return_id.to_string(), ModelReturn { at_ms, quarantined });
            }
            Fact::ReturnDisposed(c) => {
                let p = pos_of(c.sku.as_str(), c.location.as_str());
                let record = self
                    .returns
                    .get_mut(c.return_id.as_str())
                    .expect("model: disposed return exists");
                let entry = record
                    .quarantined
                    .iter_mut()
                    .find(|(qp, _)| *qp == p)
                    .expect("model: disposed units were quarantined");
                entry.1 -= c.qty;
                let position = &mut self.positions[p];
                position.quarantined -= c.qty as i64;
                if c.action == DispositionAction::Restock {
                    position.on_hand += c.qty as i64;
                    self.effects.push((p, at_ms, c.qty as i64));
                }
            }
            Fact::StockAdjusted(c) => {
                let pos = pos_of(c.sku.as_str(), c.location.as_str());
                let p = &mut self.positions[pos];
                p.exists = true;
                p.on_hand += c.delta;
                self.effects.push((pos, at_ms, c.delta));
            }
            Fact::SafetyStockSet(c) => {
                let p = &mut self.positions[pos_of(c.sku.as_str(), c.location.as_str())];
                p.exists = true;
                p.safety_stock = c.qty as i64;
            }
            Fact::PositionReconciled {
                reconcile: r,
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            } => {
                let p = pos_of(r.sku.as_str(), r.location.as_str());
                let removed = self.held.remove(&p).map(|h| h.snapshot_id);
                assert_eq!(
                    removed.as_deref(),
                    superseded.as_ref().map(|s| s.as_str()),
                    "model: a reconciliation supersedes the drift held there"
                );
                if *held {
                    self.held.insert(
                        p,
                        ModelHeld {
                            snapshot_id: r.snapshot_id.to_string(),
                            as_of_ms: r.as_of_ms,
                            erp_on_hand: r.erp_on_hand,
                            engine_on_hand_at: *engine_on_hand_at,
                            drift: *drift,
                        },
                    );
                } else if *drift != 0 {
                    let position = &mut self.positions[p];
                    position.exists = true;
                    position.on_hand += drift;
                    self.effects.push((p, r.as_of_ms, *drift));
                }
            }
            Fact::DriftResolved {
                resolve,
                as_of_ms,
                drift,
            } => {
                let p = pos_of(resolve.sku.as_str(), resolve.location.as_str());
                let held = self
                    .held
                    .remove(&p)
                    .expect("model: a resolved drift was held");
                assert_eq!(held.snapshot_id, resolve.snapshot_id.as_str());
                assert_eq!((held.as_of_ms, held.drift), (*as_of_ms, *drift));
                if resolve.action == DriftAction::Apply {
                    let position = &mut self.positions[p];
                    position.exists = true;
                    position.on_hand += drift;
                    if *drift != 0 {
                        self.effects.push((p, *as_of_ms, *drift));
                    }
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
        assert_eq!(lsn, self.next_lsn, "model: events in LSN order");
        self.next_lsn += 1;
        self.last_at_ms = self.last_at_ms.max(at_ms);
    }
}
