//! Deciding: what a command's outcome is, given the state its scope locked. Reads only; the
//! fact it returns is applied by `apply.rs` once it has an LSN. A [`Refusal`] changes nothing
//! and is not logged.

use super::Ledger;
use super::interner::Kind;
use super::scope::{HoldScope, ReserveScope, ReturnScope, SaleScope};
use super::sku_slot;
use super::table::hash_key;
use crate::command::*;
use crate::event::{Fact, HoldRequest};
use crate::hold::{Hold, HoldState};
use crate::outcome::{Refusal, ShortLine};
use crate::types::*;

impl Ledger {
    /// `hold` if it is open or ended within the retention window.
    pub(super) fn live_hold<'s>(&self, hold: Option<&'s Hold>, now_ms: u64) -> Option<&'s Hold> {
        hold.filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
    }

    /// A reserve is granted only if every line has `available >= qty` now; otherwise it is
    /// refused as a whole, listing every short line.
    pub(super) fn decide_reserve(
        &self,
        scope: &mut ReserveScope<'_>,
        reserve: Reserve,
        now_ms: u64,
    ) -> Result<Fact, Refusal> {
        if let Some(hold) = self.live_hold(scope.hold.hold(), now_ms) {
            // The key was forgotten but the hold is still remembered (an extended hold can
            // outlive its reserve's key): the id is taken.
            return Err(Refusal::ReservationIdInUse {
                reservation_id: reserve.reservation_id.to_string(),
                state: hold.state,
            });
        }
        let mut short = Vec::new();
        for (i, line) in reserve.lines.iter().enumerate() {
            let availability = scope.availability(i, now_ms);
            let available = availability.map_or(0, |a| a.available);
            #[cfg(feature = "testing")]
            if availability.is_some() && crate::testing::planted::skip_availability_check() {
                continue;
            }
            if available < line.qty as i64 {
                short.push(ShortLine {
                    line_index: i as u32,
                    requested: line.qty,
                    available,
                });
            }
        }
        Ok(if short.is_empty() {
            Fact::HoldPlaced {
                expires_at_ms: now_ms.saturating_add(reserve.ttl_ms),
                reserve,
            }
        } else {
            Fact::ReserveRefused { reserve, short }
        })
    }

    /// Commit, release, extend or expiry of an existing hold. A hold that has ended answers
    /// "already ended"; one past its TTL is expired by whichever request finds it so.
    pub(super) fn decide_on_hold(
        &self,
        scope: &mut HoldScope<'_>,
        request: HoldRequest,
        now_ms: u64,
    ) -> Result<Fact, Refusal> {
        let id = request.reservation_id();
        let Some(hold) = self.live_hold(scope.hold(), now_ms) else {
            return Err(Refusal::ReservationNotFound(id.to_string()));
        };
        if let HoldRequest::Expire(_) = request {
            return if hold.is_lapsed(now_ms) {
                Ok(Fact::HoldExpired(request))
            } else {
                Err(Refusal::HoldNotLapsed(id.to_string()))
            };
        }
        if hold.state != HoldState::Open {
            let state = hold.state;
            return Ok(Fact::HoldAlreadyEnded { request, state });
        }
        if hold.is_lapsed(now_ms) {
            return Ok(Fact::HoldExpired(request));
        }
        Ok(match request {
            HoldRequest::Commit(commit) => {
                let committed: Vec<u64> = match &commit.lines {
                    None => hold.lines.iter().map(|l| u64::from(l.qty)).collect(),
                    Some(lines) => self.partial_commit(scope, hold, lines)?,
                };
                let lines = self.named_lines(scope, hold, &committed);
                Fact::HoldCommitted { commit, lines }
            }
            HoldRequest::Release(release) => Fact::HoldReleased(release),
            HoldRequest::Extend(extend) => Fact::HoldExtended {
                expires_at_ms: now_ms.saturating_add(extend.ttl_ms),
                extend,
            },
            HoldRequest::Expire(_) => unreachable!("decided above"),
        })
    }

    /// The hold's lines by name, with `qty[i]` units on line `i`.
    fn named_lines(&self, scope: &HoldScope<'_>, hold: &Hold, qty: &[u64]) -> Vec<Line> {
        hold.lines
            .iter()
            .zip(qty)
            .map(|(line, &qty)| Line {
                sku: scope
                    .positions
                    .shard_ref(line.sku.shard())
                    .expect("the scope locked the shards of the hold's skus")
                    .at(line.sku.slot)
                    .sku
                    .clone(),
                location: Location(self.names.name(Kind::Location, line.location.0)),
                qty,
            })
            .collect()
    }

    /// Per hold line, the units a partial commit takes; every listed line must be held.
    fn partial_commit(
        &self,
        scope: &HoldScope<'_>,
        hold: &Hold,
        lines: &[Line],
    ) -> Result<Vec<u64>, Refusal> {
        let mut committed = vec![0u64; hold.lines.len()];
        for (i, line) in lines.iter().enumerate() {
            let location = self
                .names
                .get(Kind::Location, line.location.as_str())
                .map(LocationId);
            // The scope locked the shards of every held sku; a sku in another shard is not held.
            let hash = hash_key(line.sku.as_str());
            let shard = self.shard_of_hash(hash);
            let sku = scope
                .positions
                .shard_ref(shard)
                .and_then(|s| s.find(hash, line.sku.as_str()))
                .map(|slot| sku_slot(shard, slot));
            let Some(index) = hold
                .lines
                .iter()
                .position(|h| Some(h.sku) == sku && Some(h.location) == location)
            else {
                return Err(Refusal::NotHeld {
                    field: format!("lines[{i}]"),
                    reason: format!(
                        "({}, {}) is not held by this reservation",
                        line.sku, line.location
                    ),
                });
            };
            let held = u64::from(hold.lines[index].qty);
            if line.qty > held {
                return Err(Refusal::NotHeld {
                    field: format!("lines[{i}].qty"),
                    reason: format!("{} exceeds the {held} units held", line.qty),
                });
            }
            committed[index] = line.qty;
        }
        Ok(committed)
    }

    /// A return is recorded unless its id still has units in quarantine: its key is past
    /// retention, but recording the id again would orphan them.
    pub(super) fn decide_return(
        &self,
        scope: &ReturnScope<'_>,
        ret: RecordReturn,
    ) -> Result<Fact, Refusal> {
        if scope
            .table
            .by_id
            .get(&ret.return_id)
            .is_some_and(|record| record.in_quarantine())
        {
            return Err(Refusal::ReturnIdInUse(ret.return_id.to_string()));
        }
        Ok(Fact::ReturnRecorded(ret))
    }

    /// A disposition needs its return to have at least `qty` units in quarantine there.
    pub(super) fn decide_dispose(
        &self,
        scope: &ReturnScope<'_>,
        dispose: Dispose,
    ) -> Result<Fact, Refusal> {
        let record = scope
            .table
            .by_id
            .get(&dispose.return_id)
            .ok_or_else(|| Refusal::ReturnNotFound(dispose.return_id.to_string()))?;
        let location = self
            .names
            .get(Kind::Location, dispose.location.as_str())
            .map(LocationId);
        let quarantined = record
            .quarantined
            .iter()
            .find(|(sku, loc, _)| *sku == dispose.sku && Some(*loc) == location)
            .map_or(0, |(_, _, q)| *q);
        if dispose.qty > quarantined {
            return Err(Refusal::NotQuarantined {
                return_id: dispose.return_id.to_string(),
                sku: dispose.sku.to_string(),
                location: dispose.location.to_string(),
                requested: dispose.qty,
                quarantined,
            });
        }
        Ok(Fact::ReturnDisposed(dispose))
    }
}

/// A sale is always recorded (it is a fact); only where its number goes is decided: into its
/// store's sequence, or, if it jumps more than `jump_max` beyond the store's newest number,
/// out of it as an anomaly (`crate::stores`).
pub(super) fn decide_sale(scope: &SaleScope<'_>, sale: RecordSale, jump_max: u64) -> Fact {
    let newest_seq = scope
        .table
        .by_id
        .get(&sale.store_id)
        .map_or(0, |s| s.newest_seq);
    if crate::stores::jumps(newest_seq, sale.store_seq, jump_max) {
        Fact::SaleRecordedOutOfSequence { sale, newest_seq }
    } else {
        Fact::SaleRecorded(sale)
    }
}

/// An acknowledgement needs its store to have an anomaly for the txn; it says what it will
/// do (the number, and how many missing numbers an ACCEPT gives up on).
pub(super) fn decide_acknowledge(
    scope: &SaleScope<'_>,
    acknowledge: AcknowledgeStoreAnomaly,
) -> Result<Fact, Refusal> {
    let store = scope
        .table
        .by_id
        .get(&acknowledge.store_id)
        .ok_or_else(|| Refusal::StoreNotFound(acknowledge.store_id.to_string()))?;
    let anomaly =
        store
            .anomaly(&acknowledge.txn_id)
            .ok_or_else(|| Refusal::StoreAnomalyNotFound {
                store_id: acknowledge.store_id.to_string(),
                txn_id: acknowledge.txn_id.to_string(),
            })?;
    let store_seq = anomaly.store_seq;
    let gaps_abandoned = match acknowledge.action {
        AnomalyAction::Accept => store.missing_below(store_seq),
        AnomalyAction::Dismiss => 0,
    };
    Ok(Fact::StoreAnomalyAcknowledged {
        acknowledge,
        store_seq,
        gaps_abandoned,
    })
}
