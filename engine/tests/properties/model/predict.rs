//! What the model says a submit must return: a duplicate, a refusal, or a new event with its
//! outcome.

use super::Model;
use crate::keys::{conflict_path, first_difference, key_name, model_key};
use crate::steps::pos_of;
use inv_engine::{AnomalyAction, Command, DriftAction, HoldState, Outcome, Refusal, ShortLine};

/// What the model says a submit must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    Duplicate { lsn: u64, outcome: Outcome },
    Refused(Refused),
    Event(Outcome),
}

/// A [`Refusal`] as the model predicts it: every field but the free-text reasons of
/// `KeyConflict` and `NotHeld`, whose field paths it predicts instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
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
}

pub(crate) fn refused_of(refusal: &Refusal) -> Option<Refused> {
    Some(match refusal.clone() {
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
        _ => return None,
    })
}

impl Model {
    pub(crate) fn predict(&self, command: &Command, now_ms: u64) -> Expected {
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
                    // Its key is past retention, but the hold is still remembered.
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
                        let p = pos_of(l.sku.as_str(), l.location.as_str());
                        let available = self.availability(p, now_ms).map_or(0, |a| a.available);
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
                            let p = pos_of(l.sku.as_str(), l.location.as_str());
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
                let p = pos_of(c.sku.as_str(), c.location.as_str());
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
                // Its key is past retention, but recording the id again would orphan the
                // units it still has in quarantine.
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
                let p = pos_of(c.sku.as_str(), c.location.as_str());
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
            Command::Reconcile(_) => {
                unreachable!("a Reconcile is issued by a Reconciliation run, never submitted here")
            }
        }
    }
}
