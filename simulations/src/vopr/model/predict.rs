//! What the model predicts: the answer a request must get ([`Expected`]), the fact the
//! engine must log for it, and the `PositionReconciled` a reconciliation run must log. Read
//! only: nothing here changes the model (folding is in `apply.rs`).

use super::keys::{conflict_path, first_difference, key_name, model_key};
use super::{Model, ModelHold, Position, position_of};
use inv_engine::{
    AnomalyAction, BeyondTolerance, Command, DriftAction, Fact, HoldState, Line, Lsn, Outcome,
    Reconcile, Refusal, ShortLine, SnapshotId, Tolerance,
};

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

impl Model {
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

    fn live_hold(&self, id: &str, now_ms: u64) -> Option<&ModelHold> {
        self.holds
            .get(id)
            .filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
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
}
