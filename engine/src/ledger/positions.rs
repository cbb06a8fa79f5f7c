//! Positions: the stock of one sku at one location, grouped by sku within a shard.
//!
//! All locations of a sku live in one shard, next to each other: a per-sku availability view is
//! one lock and one lookup, and a basket of one sku across several stores locks one shard. Each
//! sku also carries the expiry ladder of the open holds on it, so availability can leave out
//! holds whose TTL has passed before their expiry event is recorded (a lazily swept hold must
//! never cause a false sold-out).

use crate::types::{LocationId, Lsn, Sku};
use foldhash::fast::FixedState;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};

/// The numbers a channel needs to decide whether it may sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Availability {
    /// Units physically present (signed: store sales are facts and may drive it negative).
    pub on_hand: i64,
    /// Units held by open holds whose TTL has not passed.
    pub reserved: i64,
    pub safety_stock: i64,
    /// Returned units awaiting inspection; not sellable, not part of `on_hand`.
    pub quarantined: i64,
    /// `on_hand - reserved - safety_stock`, unclamped; callers show `max(available, 0)`.
    pub available: i64,
}

impl Availability {
    /// What a channel may sell: never negative.
    pub fn sellable(&self) -> u64 {
        self.available.max(0).unsigned_abs()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub location: LocationId,
    pub on_hand: i64,
    /// Sum of the quantities of open holds on this position, including holds whose TTL has
    /// passed but whose expiry event is not recorded yet (those are subtracted at read time).
    pub reserved: i64,
    pub safety_stock: i64,
    pub quarantined: i64,
}

impl Position {
    fn empty(location: LocationId) -> Self {
        Self {
            location,
            on_hand: 0,
            reserved: 0,
            safety_stock: 0,
            quarantined: 0,
        }
    }
}

/// Orders an open hold line by expiry. The placing LSN makes keys unique and the order total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LadderKey {
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub location: LocationId,
}

#[derive(Debug, Default)]
pub(crate) struct SkuEntry {
    /// Sorted by location id. Inline for the common single-location case.
    pub positions: SmallVec<[Position; 1]>,
    /// Open hold lines on this sku by expiry, with their quantity. Boxed and absent when no hold
    /// is open, so a sku without holds pays 8 bytes for it.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes per sku instead of 24 when no hold is open"
    )]
    pub ladder: Option<Box<BTreeMap<LadderKey, u32>>>,
}

impl SkuEntry {
    pub fn position(&self, location: LocationId) -> Option<&Position> {
        self.positions
            .binary_search_by_key(&location, |p| p.location)
            .ok()
            .map(|i| &self.positions[i])
    }

    pub fn position_mut(&mut self, location: LocationId) -> Option<&mut Position> {
        match self
            .positions
            .binary_search_by_key(&location, |p| p.location)
        {
            Ok(i) => Some(&mut self.positions[i]),
            Err(_) => None,
        }
    }

    pub fn position_or_insert(&mut self, location: LocationId) -> &mut Position {
        let i = match self
            .positions
            .binary_search_by_key(&location, |p| p.location)
        {
            Ok(i) => i,
            Err(i) => {
                // Positions are created rarely; grow exactly so a sku stocked at a few locations
                // does not carry doubling slack.
                self.positions.reserve_exact(1);
                self.positions.insert(i, Position::empty(location));
                i
            }
        };
        &mut self.positions[i]
    }

    /// Units of open holds on `location` whose TTL has passed at `now_ms`.
    pub fn lapsed_reserved(&self, location: LocationId, now_ms: u64) -> i64 {
        let Some(ladder) = &self.ladder else {
            return 0;
        };
        match ladder.first_key_value() {
            Some((first, _)) if first.expires_at_ms <= now_ms => {}
            _ => return 0,
        }
        ladder
            .iter()
            .take_while(|(key, _)| key.expires_at_ms <= now_ms)
            .filter(|(key, _)| key.location == location)
            .map(|(_, qty)| i64::from(*qty))
            .sum()
    }

    pub fn availability(&self, location: LocationId, now_ms: u64) -> Option<Availability> {
        let position = self.position(location)?;
        let reserved = position.reserved - self.lapsed_reserved(location, now_ms);
        debug_assert!(reserved >= 0, "live reserved went negative");
        Some(Availability {
            on_hand: position.on_hand,
            reserved,
            safety_stock: position.safety_stock,
            quarantined: position.quarantined,
            available: position.on_hand - reserved - position.safety_stock,
        })
    }

    pub fn ladder_insert(&mut self, key: LadderKey, qty: u32) {
        let previous = self.ladder.get_or_insert_default().insert(key, qty);
        assert!(previous.is_none(), "ladder key inserted twice: {key:?}");
    }

    pub fn ladder_remove(&mut self, key: &LadderKey) -> u32 {
        let ladder = self
            .ladder
            .as_mut()
            .expect("an open hold line has a ladder entry");
        let qty = ladder
            .remove(key)
            .expect("an open hold line has a ladder entry");
        if ladder.is_empty() {
            self.ladder = None;
        }
        qty
    }
}

/// One lock's worth of skus.
#[derive(Debug, Default)]
pub(crate) struct PositionShard {
    pub skus: HashMap<Sku, SkuEntry, FixedState>,
}
