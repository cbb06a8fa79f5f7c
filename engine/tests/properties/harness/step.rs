//! One abstract step, turned into commands and submitted (or into a clock move, an expiry sweep,
//! a purge, a retry or a conflicting reuse).

use super::{Harness, check, mutate};
use crate::keys::{conflict_path, model_key};
use crate::steps::{RESERVATION_IDS, Step, line, pos_names, rid};
use inv_engine::testing::commands::{
    acknowledge_anomaly, adjust_with_reason, commit, commit_lines, dispose, extend, record_return,
    release, reserve_on, return_line, sale, set_safety_stock,
};
use inv_engine::{
    AnomalyAction, BeyondTolerance, Command, DispositionAction, DriftAction, Expire, Fact,
    HoldRequest, HoldState, Line, Location, Lsn, Outcome, Refusal, ResolveDrift, ReturnDisposition,
    Sku, SnapshotId, Tolerance,
};
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;

impl Harness {
    pub(crate) fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let command = match step {
            Step::Reserve {
                rid: r,
                channel,
                lines,
                ttl_ms,
            } => reserve_on(
                &format!("ch{channel}"),
                &self.reserve_id(*r),
                lines.iter().map(|&(p, q)| line(p, q)).collect(),
                *ttl_ms,
            ),
            Step::Commit {
                rid: r,
                partial,
                from_hold,
            } => {
                let lines = partial.as_ref().map(|picks| {
                    match self
                        .model
                        .holds
                        .get(&self.hold_target(*r))
                        .filter(|_| *from_hold)
                    {
                        Some(hold) => {
                            let mut lines: Vec<Line> = Vec::new();
                            for &(sel, qty) in picks {
                                let (p, held) = hold.lines[sel % hold.lines.len()];
                                let l = line(p, 1 + (qty - 1) % held);
                                if !lines
                                    .iter()
                                    .any(|x| x.sku == l.sku && x.location == l.location)
                                {
                                    lines.push(l);
                                }
                            }
                            lines
                        }
                        None => {
                            let mut lines: Vec<Line> = Vec::new();
                            for &(p, qty) in picks {
                                let l = line(p, qty);
                                if !lines
                                    .iter()
                                    .any(|x| x.sku == l.sku && x.location == l.location)
                                {
                                    lines.push(l);
                                }
                            }
                            lines
                        }
                    }
                });
                let target = self.hold_target(*r);
                match lines {
                    Some(lines) => commit_lines(&target, lines),
                    None => commit(&target),
                }
            }
            Step::Release { rid: r } => release(&self.hold_target(*r)),
            Step::Extend {
                rid: r,
                request,
                ttl_ms,
            } => extend(&self.hold_target(*r), &format!("x{request}"), *ttl_ms),
            Step::Sale {
                store,
                txn,
                store_seq,
                lag_ms,
                lines,
            } => sale(
                &format!("store-{store}"),
                &format!("t{txn}"),
                *store_seq,
                self.now_ms - lag_ms,
                lines.iter().map(|&(p, q)| line(p, q)).collect(),
            ),
            Step::Acknowledge {
                pick,
                store,
                txn,
                accept,
                wrong,
            } => {
                let known: Vec<(String, String)> = self
                    .model
                    .stores
                    .iter()
                    .flat_map(|(id, s)| {
                        s.anomalies
                            .iter()
                            .map(|a| (id.clone(), a.txn_id.to_string()))
                    })
                    .collect();
                let (store, txn) = match known.get(pick % known.len().max(1)) {
                    Some(target) if !*wrong => target.clone(),
                    _ => (format!("store-{store}"), format!("t{txn}")),
                };
                let action = if *accept {
                    AnomalyAction::Accept
                } else {
                    AnomalyAction::Dismiss
                };
                acknowledge_anomaly(&store, &txn, action)
            }
            Step::Return { ret, lines } => record_return(
                &format!("ret{ret}"),
                lines
                    .iter()
                    .map(|&(p, qty, inspect)| {
                        let (sku, location) = pos_names(p);
                        let disposition = if inspect {
                            ReturnDisposition::Inspect
                        } else {
                            ReturnDisposition::Restock
                        };
                        return_line(sku, location, qty, disposition)
                    })
                    .collect(),
            ),
            Step::Dispose {
                disposition,
                ret,
                pos,
                qty,
                restock,
            } => {
                let (sku, location) = pos_names(*pos);
                let action = if *restock {
                    DispositionAction::Restock
                } else {
                    DispositionAction::Scrap
                };
                dispose(
                    &format!("d{disposition}"),
                    &format!("ret{ret}"),
                    sku,
                    location,
                    *qty,
                    action,
                )
            }
            Step::Adjust {
                adjustment,
                pos,
                delta,
                reason,
            } => {
                let (sku, location) = pos_names(*pos);
                adjust_with_reason(
                    &format!("a{adjustment}"),
                    sku,
                    location,
                    *delta,
                    ["receipt", "count"][*reason as usize % 2],
                )
            }
            Step::SafetyStock { request, pos, qty } => {
                let (sku, location) = pos_names(*pos);
                set_safety_stock(&format!("s{request}"), sku, location, *qty)
            }
            Step::Advance { ms } => {
                self.now_ms += ms;
                return Ok(());
            }
            Step::AdvanceToExpiry { pick, offset } => {
                let expiries: Vec<u64> = self
                    .model
                    .holds
                    .values()
                    .filter(|h| h.state == HoldState::Open)
                    .map(|h| h.expires_at_ms.saturating_add_signed(i64::from(*offset)))
                    .filter(|&t| t > self.now_ms)
                    .collect();
                if !expiries.is_empty() {
                    self.now_ms = expiries[pick % expiries.len()];
                }
                return Ok(());
            }
            Step::ExpireDue { batch } => return self.expire_due(*batch),
            Step::Reconcile {
                rows,
                full,
                scope,
                back_ms,
                units,
                hold,
                dry_run,
                during,
            } => {
                let tolerance = Tolerance {
                    units: *units,
                    percent_bp: 1_000,
                    beyond: if *hold {
                        BeyondTolerance::Hold
                    } else {
                        BeyondTolerance::Apply
                    },
                };
                let scope = match scope % 3 {
                    0 => None,
                    s => Some(usize::from(s) - 1),
                };
                return self.reconcile(
                    rows,
                    *full,
                    scope,
                    *back_ms,
                    tolerance,
                    *dry_run,
                    during.as_deref(),
                );
            }
            Step::Resolve { pos, apply, wrong } => {
                let (sku, location) = pos_names(*pos);
                let held = self.model.held.get(pos).map(|h| h.snapshot_id.clone());
                let snapshot_id = match held {
                    Some(id) if !*wrong => id,
                    _ => format!("snap{}", pos % self.snapshots_pushed.max(1)),
                };
                Command::ResolveDrift(ResolveDrift {
                    snapshot_id: SnapshotId::from(snapshot_id.as_str()),
                    sku: Sku::from(sku),
                    location: Location::from(location),
                    action: if *apply {
                        DriftAction::Apply
                    } else {
                        DriftAction::Dismiss
                    },
                })
            }
            Step::Purge => return self.purge(),
            Step::Retry { pick } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let original = self.history[pick % self.history.len()].clone();
                let key = model_key(&original).expect("history holds keyed commands");
                let record = self.model.keys.get(&key).cloned();
                let result = self.submit(original.clone())?;
                // Within retention the retry must be answered from the key, unchanged.
                if let Some(record) = record
                    && record.command == original
                    && self.model.retained(record.at_ms, self.now_ms)
                {
                    let Ok(Ok(receipt)) = result else {
                        return Err(TestCaseError::fail(format!(
                            "retry of {original:?} refused: {result:?}"
                        )));
                    };
                    check!(
                        receipt.duplicate
                            && receipt.lsn == Lsn(record.lsn)
                            && receipt.outcome == record.outcome,
                        "retry of {original:?} got {receipt:?}"
                    );
                }
                return Ok(());
            }
            Step::Conflict { pick, field } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let original = self.history[pick % self.history.len()].clone();
                let Some((changed, field_name)) = mutate(&original, *field) else {
                    return Ok(());
                };
                let key = model_key(&original).expect("history holds keyed commands");
                let retained = self
                    .model
                    .keys
                    .get(&key)
                    .is_some_and(|r| self.model.retained(r.at_ms, self.now_ms));
                let current = self.model.keys.get(&key).map(|r| r.command.clone());
                let result = self.submit(changed.clone())?;
                // Only a conflict with the *original* payload is certain (a later re-decision
                // after retention may have stored another payload under the key). `submit`
                // has already checked that nothing changed.
                if retained && current.as_ref() == Some(&original) {
                    let path = conflict_path(field_name, &original, &changed);
                    check!(
                        matches!(&result, Ok(Err(Refusal::KeyConflict { field, .. })) if *field == path),
                        "conflicting reuse {changed:?} of {original:?} got {result:?}, expected a conflict on {path}"
                    );
                }
                return Ok(());
            }
        };
        self.submit(command).map(|_| ())
    }

    fn reserve_id(&mut self, r: u8) -> String {
        if r < RESERVATION_IDS {
            return rid(r);
        }
        let id = format!("fresh{}", self.fresh_ids.len());
        self.fresh_ids.push(id.clone());
        id
    }

    fn hold_target(&self, r: u8) -> String {
        if r < RESERVATION_IDS || self.fresh_ids.is_empty() {
            return rid(r % RESERVATION_IDS);
        }
        // The latest few fresh ids, most recent first.
        let back = usize::from(r - RESERVATION_IDS) % self.fresh_ids.len().min(3);
        self.fresh_ids[self.fresh_ids.len() - 1 - back].clone()
    }

    fn expire_due(&mut self, batch: usize) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let lapsed = self.model.lapsed_open_holds(now);
        let log_before = self.log.len();
        let expired = self
            .ledger()
            .expire_due(now, batch)
            .map_err(|e| TestCaseError::fail(format!("expire_due failed: {e}")))?;
        check!(
            expired == batch.min(lapsed.len()),
            "expire_due({batch}) expired {expired} of {} lapsed holds",
            lapsed.len()
        );
        let events = self.log.events();
        check!(
            events.len() == log_before + expired,
            "expire_due appended {} events for {expired} expiries",
            events.len() - log_before
        );
        let mut seen = BTreeSet::new();
        for event in &events[log_before..] {
            let Fact::HoldExpired(HoldRequest::Expire(Expire { reservation_id })) = &event.fact
            else {
                return Err(TestCaseError::fail(format!(
                    "expire_due appended {event:?}"
                )));
            };
            check!(
                event.fact.outcome() == Outcome::Expired
                    && event.at_ms == now
                    && lapsed.contains(reservation_id.as_str())
                    && seen.insert(reservation_id.to_string()),
                "unexpected expiry event {event:?} (lapsed: {lapsed:?})"
            );
            self.model.apply(&event.fact, event.lsn.0, event.at_ms);
            self.stats.expired += 1;
        }
        Ok(())
    }

    fn purge(&mut self) -> Result<(), TestCaseError> {
        let digest = self.ledger().digest();
        let purged = self.ledger().purge(self.now_ms);
        let expected = self.model.purge(self.now_ms);
        check!(
            purged == expected,
            "purge forgot {purged} entries, model expected {expected}"
        );
        check!(self.ledger().digest() == digest, "purge changed the digest");
        Ok(())
    }
}
