//! Reads: availability checks and views of holds, stores and positions. A check takes one
//! position-shard lock and never waits for the log or for another shard.

use super::Ledger;
use super::interner::Kind;
use super::positions::{Availability, SkuEntry};
use super::table::hash_key;
use crate::command::Line;
use crate::error::LogError;
use crate::hold::{Hold, HoldState, PrincipalRef, SkuSlot};
use crate::stores::StoreStatus;
use crate::sync::lock;
use crate::types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A hold as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub reservation_id: String,
    pub channel: String,
    pub lines: Vec<Line>,
    /// `Expired` for an open hold whose TTL has passed, even before its expiry is recorded.
    pub state: HoldState,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    pub ended_at_ms: u64,
    /// The principal that placed the hold, and the one whose commit, release or request
    /// ended it (`None`: issued with authentication off, by the expiry sweep, or still open).
    pub placed_by: Option<String>,
    pub ended_by: Option<String>,
}

/// One position with names resolved, for reports, tests and digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionView {
    pub on_hand: i64,
    /// Sum of all open holds (including lapsed ones not yet expired by an event).
    pub reserved: i64,
    pub safety_stock: i64,
    pub quarantined: i64,
}

impl Ledger {
    /// Availability of one position at `now_ms`; `None` if the position has never existed.
    pub fn check(&self, sku: &str, location: &str, now_ms: u64) -> Option<Availability> {
        let now_ms = self.read_time(now_ms);
        let location = LocationId(self.names.get(Kind::Location, location)?);
        self.sku_entry(sku, |entry| entry?.availability(location, now_ms))
    }

    /// What each of `skus` may sell at one location, in order, appended to `out`: 0 for a
    /// position that has never existed. The location is looked up once; each sku takes its
    /// shard's lock for one lookup, as [`Ledger::check`] does.
    pub fn sellable_at<'a>(
        &self,
        location: &str,
        skus: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
        out: &mut Vec<u64>,
    ) {
        let skus = skus.into_iter();
        let Some(location) = self.names.get(Kind::Location, location).map(LocationId) else {
            out.extend(skus.map(|_| 0));
            return;
        };
        let now_ms = self.read_time(now_ms);
        out.extend(skus.map(|sku| {
            self.sku_entry(sku, |entry| entry?.availability(location, now_ms))
                .map_or(0, |a| a.sellable())
        }));
    }

    /// Reads one sku's entry under its shard's lock, hashing the sku once (the shard and the
    /// table inside it use the same hash): the step every check repeats per position.
    fn sku_entry<T>(&self, sku: &str, read: impl FnOnce(Option<&SkuEntry>) -> T) -> T {
        let hash = hash_key(sku);
        let shard = lock(&self.positions[self.shard_of_hash(hash)]);
        read(shard.get_hashed(hash, sku))
    }

    /// Every location of one sku, by location name.
    pub fn check_sku(&self, sku: &str, now_ms: u64) -> Vec<(String, Availability)> {
        let now_ms = self.read_time(now_ms);
        let shard = lock(&self.positions[self.shard_of(sku)]);
        let Some(entry) = shard.get(sku) else {
            return Vec::new();
        };
        let mut rows: Vec<(String, Availability)> = entry
            .positions
            .iter()
            .filter_map(|p| {
                Some((
                    self.names.name(Kind::Location, p.location.0).to_string(),
                    entry.availability(p.location, now_ms)?,
                ))
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// The hold of reservation `id`, if it has one within retention; an ended hold that was
    /// moved to the key archive is faulted back in (hence the `LogError`: a failed read).
    pub fn reservation(&self, id: &str, now_ms: u64) -> Result<Option<HoldView>, LogError> {
        let now_ms = self.read_time(now_ms);
        let hash = hash_key(id);
        let mut shard = lock(&self.holds[self.shard_of_hash(hash)]);
        let slot = match shard.entries.find(hash, id) {
            Some(slot) => slot,
            None => match self.fault_in_hold(&mut shard, hash, id)? {
                Some(slot) => slot,
                None => return Ok(None),
            },
        };
        let entry = shard.entries.at(slot);
        let Some(hold) = self.live_hold(entry.hold.as_ref(), now_ms) else {
            return Ok(None);
        };
        // Position shards come after hold shards in the protocol, one at a time here.
        Ok(Some(self.hold_view(
            id,
            hold,
            entry.ended_by,
            now_ms,
            |s| lock(&self.positions[s.shard()]).at(s.slot).sku.clone(),
        )))
    }

    /// `sku_name` names a hold line's sku.
    pub(super) fn hold_view(
        &self,
        id: &str,
        hold: &Hold,
        ended_by: PrincipalRef,
        now_ms: u64,
        sku_name: impl Fn(SkuSlot) -> Sku,
    ) -> HoldView {
        HoldView {
            reservation_id: id.to_owned(),
            channel: self.names.name(Kind::Channel, hold.channel.0).to_string(),
            lines: hold
                .lines
                .iter()
                .map(|l| Line {
                    sku: sku_name(l.sku),
                    location: Location(self.names.name(Kind::Location, l.location.0)),
                    qty: u64::from(l.qty),
                })
                .collect(),
            state: if hold.is_lapsed(now_ms) {
                HoldState::Expired
            } else {
                hold.state
            },
            expires_at_ms: hold.expires_at_ms,
            placed_lsn: hold.placed_lsn,
            placed_at_ms: hold.placed_at_ms,
            ended_at_ms: hold.ended_at_ms,
            placed_by: self.principal_name(hold.placed_by),
            ended_by: self.principal_name(ended_by),
        }
    }

    fn principal_name(&self, by: PrincipalRef) -> Option<String> {
        if by == PrincipalRef::UNKNOWN {
            // Past the name table's reach (see `PrincipalRef`): the log's event still says.
            return Some("(see the event)".to_owned());
        }
        self.names.principal_name(by).map(|name| name.to_string())
    }

    pub fn store_status(&self, store_id: &str) -> Option<StoreStatus> {
        let stores = lock(&self.stores);
        stores.by_id.get(store_id).map(|s| s.status(store_id))
    }

    pub fn store_statuses(&self) -> Vec<StoreStatus> {
        let stores = lock(&self.stores);
        stores
            .by_id
            .iter()
            .map(|(id, s)| s.status(id.as_str()))
            .collect()
    }

    /// Number of open holds (including lapsed ones awaiting their expiry event).
    pub fn holds_open(&self) -> usize {
        self.holds.iter().map(|s| lock(s).expiry.len()).sum()
    }

    /// Every position by (sku, location) name. Locks one shard at a time, so under concurrent
    /// writes it is not a consistent cut; use it when the ledger is quiet.
    pub fn positions(&self) -> BTreeMap<(String, String), PositionView> {
        let mut all = BTreeMap::new();
        for shard in self.positions.iter() {
            let shard = lock(shard);
            for entry in shard.iter() {
                for p in &entry.positions {
                    all.insert(
                        (
                            entry.sku.to_string(),
                            self.names.name(Kind::Location, p.location.0).to_string(),
                        ),
                        PositionView {
                            on_hand: p.on_hand,
                            reserved: p.reserved,
                            safety_stock: i64::from(p.safety_stock),
                            quarantined: p.quarantined,
                        },
                    );
                }
            }
        }
        all
    }
}
