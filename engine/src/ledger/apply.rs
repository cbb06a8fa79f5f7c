//! Applying: the only code that changes state, shared by live writes and replay, one function
//! per kind of fact. An `Err` means the fact does not fit the state (on replay: the log is
//! corrupt or from another ledger; live: an engine bug, which `Ledger::write` turns into a
//! panic before anything else runs).

use super::Ledger;
use super::interner::Kind;
use super::positions::{LadderKey, Position};
use super::returns::ReturnRecord;
use super::scope::{HoldScope, PositionLocks, ReserveScope, ReturnScope, SaleScope, StockScope};
use super::sku_slot;
use crate::command::*;
use crate::event::{Event, Fact};
use crate::hold::{Hold, HoldLine, HoldLines, HoldState};
use crate::stores::StoreAnomaly;
use crate::types::*;
use smallvec::SmallVec;

impl Ledger {
    /// HoldPlaced and ReserveRefused.
    pub(super) fn apply_reserve(
        &self,
        scope: &mut ReserveScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        match &event.fact {
            Fact::HoldPlaced {
                reserve,
                expires_at_ms,
            } => self.place_hold(scope, reserve, *expires_at_ms, event),
            // Nothing held; the refusal is recorded under the key by the caller.
            Fact::ReserveRefused { .. } => Ok(()),
            other => Err(format!("{} is not a reserve's fact", other.name())),
        }
    }

    fn place_hold(
        &self,
        scope: &mut ReserveScope<'_>,
        reserve: &Reserve,
        expires_at_ms: u64,
        event: &Event,
    ) -> Result<(), String> {
        if scope
            .hold
            .hold()
            .is_some_and(|h| h.state == HoldState::Open)
        {
            return Err("a hold placed on an id whose hold is open".into());
        }
        let channel = match scope.channel {
            Some(channel) => channel,
            None => ChannelId(self.names.intern(Kind::Channel, reserve.channel.as_str())),
        };
        let mut lines: SmallVec<[HoldLine; 4]> = SmallVec::new();
        for (line, resolved) in reserve.lines.iter().zip(scope.lines.iter()) {
            let location = resolved
                .location
                .ok_or("a hold placed on an unknown location")?;
            let sku = resolved.sku.ok_or("a hold placed on an unknown sku")?;
            let entry = scope.hold.positions.shard(resolved.shard).at_mut(sku);
            let qty = u32::try_from(line.qty).map_err(|_| "line qty exceeds u32")?;
            let position = entry
                .position_mut(location)
                .ok_or("a hold placed on an unknown position")?;
            position.reserved += i64::from(qty);
            let key = LadderKey {
                expires_at_ms,
                placed_lsn: event.lsn,
                location,
            };
            entry.ladder_insert(key, qty);
            lines.push(HoldLine {
                sku: sku_slot(resolved.shard, sku),
                location,
                qty,
            });
        }
        let slot = scope.hold.slot_or_insert(reserve.reservation_id.as_str());
        let holds = &mut scope.hold.holds;
        holds.expiry.insert((expires_at_ms, event.lsn), slot);
        // Replaces an ended hold past retention, as a new reserve of its id may.
        let hold = Hold {
            lines: HoldLines::new(&lines),
            channel,
            state: HoldState::Open,
            placed_by: self.names.principal(event.by.as_ref()),
            expires_at_ms,
            placed_lsn: event.lsn,
            placed_at_ms: event.at_ms,
            ended_lsn: Lsn::ZERO,
            ended_at_ms: 0,
        };
        holds.entries.at_mut(slot).place(hold, &self.names);
        Ok(())
    }

    /// The facts about an existing hold.
    pub(super) fn apply_to_hold(
        &self,
        scope: &mut HoldScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        let ended = match &event.fact {
            Fact::HoldCommitted { lines, .. } => {
                let committed: Vec<u64> = lines.iter().map(|l| l.qty).collect();
                end_hold(scope, HoldState::Committed, Some(&committed), event)
            }
            Fact::HoldReleased(_) => end_hold(scope, HoldState::Released, None, event),
            Fact::HoldExpired(_) => end_hold(scope, HoldState::Expired, None, event),
            Fact::HoldExtended { expires_at_ms, .. } => return extend_hold(scope, *expires_at_ms),
            // Nothing changes; the answer is recorded under the key by the caller.
            Fact::HoldAlreadyEnded { .. } => return Ok(()),
            other => return Err(format!("{} is not a fact about a hold", other.name())),
        };
        ended?;
        let ended_by = self.names.principal(event.by.as_ref());
        scope.entry_mut().ok_or("hold vanished")?.ended_by = ended_by;
        Ok(())
    }

    /// SaleRecorded, SaleRecordedOutOfSequence and StoreAnomalyAcknowledged: the facts
    /// about a store's sequence.
    pub(super) fn apply_to_stores(
        &self,
        scope: &mut SaleScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        match &event.fact {
            Fact::SaleRecorded(sale) => {
                self.take_off_sold(scope, sale);
                scope
                    .table
                    .by_id
                    .entry(sale.store_id.clone())
                    .or_default()
                    .record(sale.store_seq, sale.occurred_at_ms, event.at_ms);
                Ok(())
            }
            Fact::SaleRecordedOutOfSequence { sale, newest_seq } => {
                self.take_off_sold(scope, sale);
                let anomaly = StoreAnomaly {
                    txn_id: sale.txn_id.clone(),
                    store_seq: sale.store_seq,
                    newest_seq: *newest_seq,
                    occurred_at_ms: sale.occurred_at_ms,
                    recorded_at_ms: event.at_ms,
                    lsn: event.lsn,
                };
                scope
                    .table
                    .by_id
                    .entry(sale.store_id.clone())
                    .or_default()
                    .flag(anomaly)
            }
            Fact::StoreAnomalyAcknowledged {
                acknowledge: c,
                store_seq,
                gaps_abandoned,
            } => {
                let store = scope
                    .table
                    .by_id
                    .get_mut(&c.store_id)
                    .ok_or("an anomaly acknowledged at an unknown store")?;
                let anomaly = store
                    .anomaly(&c.txn_id)
                    .ok_or("an anomaly acknowledged that the store does not have")?;
                if anomaly.store_seq != *store_seq {
                    return Err(format!(
                        "an anomaly acknowledged at seq {store_seq}, but it is at {}",
                        anomaly.store_seq
                    ));
                }
                let abandoned = store
                    .acknowledge(&c.txn_id, c.action)
                    .ok_or("the anomaly vanished")?;
                if abandoned != *gaps_abandoned {
                    return Err(format!(
                        "an acknowledgement abandoned {abandoned} missing numbers, not the \
                         {gaps_abandoned} decided"
                    ));
                }
                Ok(())
            }
            other => Err(format!("{} is not a fact about a store", other.name())),
        }
    }

    /// A sale's lines come off `on_hand`, in sequence or not: a sale is a fact.
    fn take_off_sold(&self, scope: &mut SaleScope<'_>, sale: &RecordSale) {
        for line in &sale.lines {
            self.position_or_insert(&mut scope.positions, &line.sku, &line.location)
                .on_hand -= line.qty as i64;
        }
    }

    /// ReturnRecorded and ReturnDisposed.
    pub(super) fn apply_to_returns(
        &self,
        scope: &mut ReturnScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        match &event.fact {
            Fact::ReturnRecorded(ret) => {
                self.record_return(scope, ret, event.at_ms);
                Ok(())
            }
            Fact::ReturnDisposed(dispose) => self.dispose(scope, dispose),
            other => Err(format!("{} is not a fact about a return", other.name())),
        }
    }

    fn record_return(&self, scope: &mut ReturnScope<'_>, ret: &RecordReturn, at_ms: u64) {
        let mut quarantined = Vec::new();
        for line in &ret.lines {
            let location = LocationId(self.names.intern(Kind::Location, line.location.as_str()));
            let position = self.position_or_insert(&mut scope.positions, &line.sku, &line.location);
            match line.disposition {
                ReturnDisposition::Restock => position.on_hand += line.qty as i64,
                ReturnDisposition::Inspect => {
                    position.quarantined += line.qty as i64;
                    quarantined.push((line.sku.clone(), location, line.qty));
                }
            }
        }
        let record = ReturnRecord { at_ms, quarantined };
        scope.table.by_id.insert(ret.return_id.clone(), record);
    }

    fn dispose(&self, scope: &mut ReturnScope<'_>, dispose: &Dispose) -> Result<(), String> {
        let location = self
            .names
            .get(Kind::Location, dispose.location.as_str())
            .map(LocationId)
            .ok_or("disposition at an unknown location")?;
        let record = scope
            .table
            .by_id
            .get_mut(&dispose.return_id)
            .ok_or("disposition for an unknown return")?;
        let remaining = record
            .quarantined
            .iter_mut()
            .find(|(sku, loc, _)| *sku == dispose.sku && *loc == location)
            .ok_or("disposition for units never quarantined")?;
        remaining.2 = remaining
            .2
            .checked_sub(dispose.qty)
            .ok_or("disposition of more units than quarantined")?;
        let position =
            self.position_or_insert(&mut scope.positions, &dispose.sku, &dispose.location);
        position.quarantined -= dispose.qty as i64;
        if dispose.action == DispositionAction::Restock {
            position.on_hand += dispose.qty as i64;
        }
        Ok(())
    }

    /// StockAdjusted and SafetyStockSet.
    pub(super) fn apply_to_stock(
        &self,
        scope: &mut StockScope<'_>,
        event: &Event,
    ) -> Result<(), String> {
        match &event.fact {
            Fact::StockAdjusted(adjust) => {
                self.position_or_insert(&mut scope.positions, &adjust.sku, &adjust.location)
                    .on_hand += adjust.delta;
                Ok(())
            }
            Fact::SafetyStockSet(set) => {
                let qty = u32::try_from(set.qty).map_err(|_| "safety stock exceeds u32")?;
                self.position_or_insert(&mut scope.positions, &set.sku, &set.location)
                    .safety_stock = qty;
                Ok(())
            }
            other => Err(format!("{} is not a stock change", other.name())),
        }
    }

    /// The position (sku, location), created at zero if it does not exist yet.
    fn position_or_insert<'s>(
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
}

/// Ends an open hold: gives back its reserved units, takes committed units off `on_hand`, and
/// removes it from both expiry indexes (the hold shard's and its skus' ladders).
fn end_hold(
    scope: &mut HoldScope<'_>,
    to: HoldState,
    committed: Option<&Vec<u64>>,
    event: &Event,
) -> Result<(), String> {
    let hold = scope
        .hold()
        .filter(|h| h.state == HoldState::Open)
        .ok_or("the hold is not open")?;
    let (expires_at_ms, placed_lsn) = (hold.expires_at_ms, hold.placed_lsn);
    let lines: SmallVec<[HoldLine; 4]> = hold.lines.iter().copied().collect();
    if let Some(committed) = committed
        && committed.len() != lines.len()
    {
        return Err("commit lists a different number of lines than the hold".into());
    }
    for (i, line) in lines.iter().enumerate() {
        let entry = scope.positions.sku_entry(line.sku);
        let qty = entry.ladder_remove(&LadderKey {
            expires_at_ms,
            placed_lsn,
            location: line.location,
        });
        debug_assert_eq!(qty, line.qty);
        let position = entry
            .position_mut(line.location)
            .ok_or("hold line on unknown position")?;
        position.reserved -= i64::from(line.qty);
        debug_assert!(position.reserved >= 0, "reserved went negative");
        if let Some(committed) = committed {
            if committed[i] > u64::from(line.qty) {
                return Err("commit of more than held".into());
            }
            position.on_hand -= committed[i] as i64;
        }
    }
    scope
        .holds
        .expiry
        .remove(&(expires_at_ms, placed_lsn))
        .ok_or("open hold missing from the expiry index")?;
    scope
        .hold_mut()
        .ok_or("hold vanished")?
        .transition(to, event.lsn, event.at_ms);
    Ok(())
}

/// Moves an open hold's expiry in the hold shard's index and in its skus' ladders.
fn extend_hold(scope: &mut HoldScope<'_>, expires_at_ms: u64) -> Result<(), String> {
    let hold = scope
        .hold()
        .filter(|h| h.state == HoldState::Open)
        .ok_or("extend of a hold that is not open")?;
    let old_expiry = hold.expires_at_ms;
    let placed_lsn = hold.placed_lsn;
    let lines: SmallVec<[HoldLine; 4]> = hold.lines.iter().copied().collect();
    for line in &lines {
        let entry = scope.positions.sku_entry(line.sku);
        let old = LadderKey {
            expires_at_ms: old_expiry,
            placed_lsn,
            location: line.location,
        };
        let qty = entry.ladder_remove(&old);
        entry.ladder_insert(
            LadderKey {
                expires_at_ms,
                ..old
            },
            qty,
        );
    }
    let slot = scope
        .holds
        .expiry
        .remove(&(old_expiry, placed_lsn))
        .ok_or("open hold missing from the expiry index")?;
    scope.holds.expiry.insert((expires_at_ms, placed_lsn), slot);
    scope.hold_mut().ok_or("hold vanished")?.expires_at_ms = expires_at_ms;
    Ok(())
}
