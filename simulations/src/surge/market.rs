//! Marketplace traffic shared by the return-wave and holiday-surge scenarios, and the client's
//! ledger it keeps: carts (a Reserve, then a commit, a partial commit, a release, or nothing
//! until the hold expires), returns and dispositions, each recorded as the server answered it.
//!
//! The ledger only ever moves by what the server said: the units a commit answer reports
//! committed, a grant or a rejection, a return recorded. So the verification it feeds checks
//! the server's state against the server's own answers: conservation, not a second opinion on
//! which reserve should have won.

use super::verify::{ExpectedHold, ExpectedPosition, HoldStateName};
use super::{DC, Env, Expected, call, call_expecting};
use crate::pb;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tonic::Code;

/// What the client knows, from the server's answers.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per (sku, location): on_hand's change since stocking.
    pub on_hand_delta: BTreeMap<(String, String), i64>,
    /// Per (sku, location): units in quarantine.
    pub quarantined: BTreeMap<(String, String), i64>,
    /// Every hold placed or refused, in the state it must end in.
    pub holds: BTreeMap<String, ExpectedHold>,
    /// Positions that saw store sales (which may drive them negative).
    pub sold_at: std::collections::BTreeSet<(String, String)>,
    /// Answers flagged `duplicate` (retries absorbed).
    pub duplicates: u64,
    pub granted: u64,
    pub rejected: u64,
    pub committed_units: u64,
    /// Holds that expired before the client's commit or release reached them.
    pub expired_first: u64,
    /// Things the server answered that it must not have.
    pub failures: Vec<String>,
}

impl Ledger {
    pub fn add(&mut self, sku: &str, location: &str, delta: i64) {
        *self
            .on_hand_delta
            .entry((sku.to_owned(), location.to_owned()))
            .or_default() += delta;
    }

    /// The expected state: every position stocked with `stock` (plus every position the ledger
    /// moved, stocked with 0 unless listed) and every hold.
    pub fn expected(&self, stocked: &BTreeMap<(String, String), i64>) -> Expected {
        let mut expected = Expected::default();
        let keys = stocked
            .keys()
            .chain(self.on_hand_delta.keys())
            .chain(self.quarantined.keys());
        for key in keys {
            let on_hand = stocked.get(key).copied().unwrap_or(0)
                + self.on_hand_delta.get(key).copied().unwrap_or(0);
            expected.positions.insert(
                key.clone(),
                ExpectedPosition {
                    on_hand,
                    reserved: 0,
                    quarantined: self.quarantined.get(key).copied().unwrap_or(0),
                    no_oversell: !self.sold_at.contains(key),
                },
            );
        }
        expected.holds = self.holds.clone();
        expected
    }
}

/// Locks the ledger (a poisoned lock still holds consistent numbers: every update is a few
/// additions with no await).
pub fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cart's lines: 1 to `lines_max` distinct skus of `skus` at the DC, `qty_max` units at most.
pub fn cart_lines(
    rng: &mut super::Rng,
    skus: &[String],
    lines_max: u64,
    qty_max: u64,
) -> Vec<pb::Line> {
    let n = 1 + rng.below(lines_max.min(skus.len() as u64));
    let mut lines: Vec<pb::Line> = Vec::with_capacity(n as usize);
    while (lines.len() as u64) < n {
        let sku = &skus[rng.below(skus.len() as u64) as usize];
        if lines.iter().any(|l| &l.sku == sku) {
            continue;
        }
        lines.push(pb::Line {
            sku: sku.clone(),
            location: DC.to_owned(),
            qty: 1 + rng.below(qty_max),
        });
    }
    lines
}

/// Places a hold; true if granted. A rejection is recorded as a hold that must not exist.
pub async fn reserve(
    env: &Env,
    client_i: usize,
    id: &str,
    lines: &[pb::Line],
    ttl_ms: u64,
    ledger: &Mutex<Ledger>,
) -> bool {
    let request = pb::ReserveRequest {
        reservation_id: id.to_owned(),
        channel: "market".to_owned(),
        lines: lines.to_vec(),
        ttl_ms,
    };
    let client = env.client(client_i);
    let answer = call(&env.recorder, "reserve", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.reserve(request).await }
    })
    .await;
    let mut ledger = lock(ledger);
    match answer {
        Ok(response) => match response.result {
            Some(pb::reserve_response::Result::Granted(_)) => {
                ledger.granted += 1;
                let held = lines.iter().map(|l| l.qty).sum();
                ledger.holds.insert(
                    id.to_owned(),
                    ExpectedHold::State(HoldStateName::Open, held),
                );
                true
            }
            _ => {
                env.recorder.rejected("reserve");
                ledger.rejected += 1;
                ledger.holds.insert(id.to_owned(), ExpectedHold::Absent);
                false
            }
        },
        Err(status) => {
            ledger
                .failures
                .push(format!("reserve {id} failed: {status}"));
            false
        }
    }
}

/// How a granted cart ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CartEnd {
    /// Every line committed in full.
    Commit,
    /// One unit of the first line committed, the rest released.
    CommitPartial,
    Release,
    /// Left alone until its TTL passes.
    Abandon,
}

/// Ends a granted cart as `end` says and records what the server answered. A commit or release
/// that finds the hold already expired (FAILED_PRECONDITION) records it as expired.
pub async fn end_cart(
    env: &Env,
    client_i: usize,
    id: &str,
    lines: &[pb::Line],
    end: CartEnd,
    ledger: &Mutex<Ledger>,
) {
    let held: u64 = lines.iter().map(|l| l.qty).sum();
    let client = env.client(client_i);
    let answer = match end {
        CartEnd::Abandon => {
            lock(ledger).holds.insert(
                id.to_owned(),
                ExpectedHold::State(HoldStateName::Expired, held),
            );
            return;
        }
        CartEnd::Commit | CartEnd::CommitPartial => {
            let request = pb::CommitRequest {
                reservation_id: id.to_owned(),
                lines: if end == CartEnd::Commit {
                    vec![]
                } else {
                    vec![pb::Line {
                        qty: 1,
                        ..lines[0].clone()
                    }]
                },
            };
            // FAILED_PRECONDITION (the hold expired first) is an answer here, not an error.
            call_expecting(&env.recorder, "commit", &[Code::FailedPrecondition], || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.commit(request).await }
            })
            .await
            .map(|response| {
                let committed: Vec<(String, String, u64)> = response
                    .lines
                    .iter()
                    .map(|l| (l.sku.clone(), l.location.clone(), l.committed))
                    .collect();
                (HoldStateName::Committed, committed, response.duplicate)
            })
        }
        CartEnd::Release => {
            let request = pb::ReleaseRequest {
                reservation_id: id.to_owned(),
            };
            call_expecting(
                &env.recorder,
                "release",
                &[Code::FailedPrecondition],
                || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.release(request).await }
                },
            )
            .await
            .map(|response| (HoldStateName::Released, Vec::new(), response.duplicate))
        }
    };
    let mut ledger = lock(ledger);
    match answer {
        Ok((state, committed, duplicate)) => {
            ledger.duplicates += u64::from(duplicate);
            let want: u64 = match end {
                CartEnd::Commit => held,
                _ => 1,
            };
            let units: u64 = committed.iter().map(|c| c.2).sum();
            if state == HoldStateName::Committed && units != want && !duplicate {
                ledger.failures.push(format!(
                    "commit {id}: {units} units committed, expected {want}"
                ));
            }
            // A resend answered as a duplicate moved nothing.
            let committed = if duplicate { Vec::new() } else { committed };
            for (sku, location, qty) in committed {
                ledger.add(&sku, &location, -(qty as i64));
                ledger.committed_units += qty;
            }
            ledger
                .holds
                .insert(id.to_owned(), ExpectedHold::State(state, held));
        }
        Err(status) if status.code() == Code::FailedPrecondition => {
            // The hold's TTL passed before the call was decided: it is expired, nothing left.
            ledger.expired_first += 1;
            ledger.holds.insert(
                id.to_owned(),
                ExpectedHold::State(HoldStateName::Expired, held),
            );
        }
        Err(status) => ledger
            .failures
            .push(format!("{end:?} of {id} failed: {status}")),
    }
}

/// Records `returns` (one RecordReturns batch) until answered; each return's first answer must
/// be new, a resend's a duplicate. Returns the indexes of the returns newly recorded.
pub async fn record_returns(
    env: &Env,
    client_i: usize,
    returns: &[pb::Return],
    ledger: &Mutex<Ledger>,
) -> Vec<usize> {
    let request = pb::RecordReturnsRequest {
        returns: returns.to_vec(),
    };
    let client = env.client(client_i);
    let answer = call(&env.recorder, "record_returns", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.record_returns(request).await }
    })
    .await;
    let mut recorded = Vec::new();
    let mut ledger = lock(ledger);
    match answer {
        Ok(response) => {
            for item in response.results {
                match item.result {
                    Some(pb::batch_item_result::Result::Recorded(r)) if r.duplicate => {
                        ledger.duplicates += 1;
                    }
                    Some(pb::batch_item_result::Result::Recorded(_)) => {
                        recorded.push(item.index as usize);
                    }
                    other => ledger.failures.push(format!(
                        "return {} refused: {other:?}",
                        returns[item.index as usize].return_id
                    )),
                }
            }
        }
        Err(status) => ledger
            .failures
            .push(format!("a RecordReturns batch failed: {status}")),
    }
    recorded
}
