//! Positions: the stock of one sku at one location, grouped by sku within a shard.
//!
//! All locations of a sku live in one shard, next to each other: a per-sku availability view is
//! one lock and one lookup, and a basket of one sku across several stores locks one shard. Each
//! sku also carries the expiry ladder of the open holds on it, so availability can leave out
//! holds whose TTL has passed before their expiry event is recorded (a lazily swept hold must
//! never cause a false sold-out).
//!
//! Skus are never removed, and a large ledger has millions of them, most at one location: the
//! per-sku entries live in a `DenseTable`, so a position costs its entry plus a few bytes of
//! index rather than its entry scaled up by a hash table's load factor.

use super::table::{DenseTable, Keyed, hash_key};
use crate::types::{LocationId, Lsn, Sku};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::BTreeMap;

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

/// 32 bytes: a multi-location sku's positions then sit two to a cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub location: LocationId,
    /// Set by one command to at most `QTY_MAX`, so it fits in 32 bits. (`on_hand`, `reserved`
    /// and `quarantined` are sums of many commands and stay 64-bit.)
    pub safety_stock: u32,
    pub on_hand: i64,
    /// Sum of the quantities of open holds on this position, including holds whose TTL has
    /// passed but whose expiry event is not recorded yet (those are subtracted at read time).
    pub reserved: i64,
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

/// One open hold line in a ladder: its key and quantity, 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LadderLine {
    expires_at_ms: u64,
    placed_lsn: Lsn,
    location: LocationId,
    qty: u32,
}

impl LadderLine {
    fn new(key: LadderKey, qty: u32) -> Self {
        Self {
            expires_at_ms: key.expires_at_ms,
            placed_lsn: key.placed_lsn,
            location: key.location,
            qty,
        }
    }

    fn key(&self) -> LadderKey {
        LadderKey {
            expires_at_ms: self.expires_at_ms,
            placed_lsn: self.placed_lsn,
            location: self.location,
        }
    }
}

/// Most open hold lines a sku's ladder keeps in a sorted vec before it switches to a B-tree.
/// Below this a vec is both smaller (24 bytes a line, where a tree's first node takes 300+)
/// and quicker (one short memmove, no node allocation); above it a tree keeps inserts and
/// removals logarithmic for a hot sku with thousands of holds.
const LADDER_FEW_MAX: usize = 8;

/// The open hold lines on one sku, by expiry, with their quantity. Most skus have no open hold
/// or one, so those cases are kept inline and allocate nothing.
#[derive(Debug, Default)]
pub(crate) enum Ladder {
    #[default]
    Empty,
    One(LadderLine),
    /// Two to `LADDER_FEW_MAX` lines, sorted by key.
    Few(Vec<LadderLine>),
    /// More lines than that, until every one of them has ended.
    #[allow(
        clippy::box_collection,
        reason = "boxed, the enum stays at 32 bytes (40 otherwise), on every sku"
    )]
    Many(Box<BTreeMap<LadderKey, u32>>),
}

impl Ladder {
    /// Whether this ladder is in a shape it should not be kept in: a vec of fewer than two
    /// lines or an empty tree (memory it does not need).
    pub fn is_misshapen(&self) -> bool {
        match self {
            Ladder::Empty | Ladder::One(_) => false,
            Ladder::Few(lines) => lines.len() < 2,
            Ladder::Many(lines) => lines.is_empty(),
        }
    }

    /// Every line in key order (for checks; the hot paths match on the variant).
    pub fn lines(&self) -> Vec<(LadderKey, u32)> {
        match self {
            Ladder::Empty => Vec::new(),
            Ladder::One(line) => vec![(line.key(), line.qty)],
            Ladder::Few(lines) => lines.iter().map(|l| (l.key(), l.qty)).collect(),
            Ladder::Many(lines) => lines.iter().map(|(k, q)| (*k, *q)).collect(),
        }
    }

    fn first_expiry(&self) -> Option<u64> {
        match self {
            Ladder::Empty => None,
            Ladder::One(line) => Some(line.expires_at_ms),
            Ladder::Few(lines) => lines.first().map(|l| l.expires_at_ms),
            Ladder::Many(lines) => lines.first_key_value().map(|(k, _)| k.expires_at_ms),
        }
    }

    /// Units of lines on `location` whose TTL has passed at `now_ms`.
    fn lapsed(&self, location: LocationId, now_ms: u64) -> i64 {
        let lapsed = |lines: &mut dyn Iterator<Item = (u64, LocationId, u32)>| -> i64 {
            lines
                .take_while(|&(expires_at_ms, _, _)| expires_at_ms <= now_ms)
                .filter(|&(_, at, _)| at == location)
                .map(|(_, _, qty)| i64::from(qty))
                .sum()
        };
        let of_line = |l: &LadderLine| (l.expires_at_ms, l.location, l.qty);
        match self {
            Ladder::Empty => 0,
            Ladder::One(line) => lapsed(&mut std::iter::once(of_line(line))),
            Ladder::Few(lines) => lapsed(&mut lines.iter().map(of_line)),
            Ladder::Many(lines) => {
                lapsed(&mut lines.iter().map(|(k, q)| (k.expires_at_ms, k.location, *q)))
            }
        }
    }

    fn insert(&mut self, key: LadderKey, qty: u32) {
        let line = LadderLine::new(key, qty);
        match self {
            Ladder::Empty => *self = Ladder::One(line),
            Ladder::One(first) => {
                assert!(first.key() != key, "ladder key inserted twice: {key:?}");
                let mut lines = Vec::with_capacity(2);
                lines.extend(if first.key() < key {
                    [*first, line]
                } else {
                    [line, *first]
                });
                *self = Ladder::Few(lines);
            }
            Ladder::Few(lines) if lines.len() < LADDER_FEW_MAX => {
                let Err(i) = lines.binary_search_by_key(&key, LadderLine::key) else {
                    panic!("ladder key inserted twice: {key:?}");
                };
                // One line at a time: a sku with a few holds keeps no spare capacity.
                lines.reserve_exact(1);
                lines.insert(i, line);
            }
            Ladder::Few(lines) => {
                let mut tree: BTreeMap<LadderKey, u32> =
                    lines.iter().map(|l| (l.key(), l.qty)).collect();
                let previous = tree.insert(key, qty);
                assert!(previous.is_none(), "ladder key inserted twice: {key:?}");
                *self = Ladder::Many(Box::new(tree));
            }
            Ladder::Many(lines) => {
                let previous = lines.insert(key, qty);
                assert!(previous.is_none(), "ladder key inserted twice: {key:?}");
            }
        }
    }

    fn remove(&mut self, key: &LadderKey) -> u32 {
        const MISSING: &str = "an open hold line has a ladder entry";
        match self {
            Ladder::Empty => panic!("{MISSING}"),
            Ladder::One(line) => {
                assert!(line.key() == *key, "{MISSING}");
                let qty = line.qty;
                *self = Ladder::Empty;
                qty
            }
            Ladder::Few(lines) => {
                let i = lines
                    .binary_search_by_key(key, LadderLine::key)
                    .expect(MISSING);
                let qty = lines.remove(i).qty;
                if let [last] = lines[..] {
                    // Back inline, freeing the vec.
                    *self = Ladder::One(last);
                }
                qty
            }
            Ladder::Many(lines) => {
                let qty = lines.remove(key).expect(MISSING);
                if lines.is_empty() {
                    // Free the tree: most skus have no open hold most of the time.
                    *self = Ladder::Empty;
                }
                qty
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct SkuEntry {
    pub sku: Sku,
    /// Sorted by location id. Inline for the common single-location case.
    pub positions: SmallVec<[Position; 1]>,
    /// Open hold lines on this sku by expiry, with their quantity.
    pub ladder: Ladder,
}

impl Keyed for SkuEntry {
    fn key(&self) -> &str {
        self.sku.as_str()
    }
}

impl SkuEntry {
    fn new(sku: Sku) -> Self {
        Self {
            sku,
            positions: SmallVec::new(),
            ladder: Ladder::default(),
        }
    }

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
        match self.ladder.first_expiry() {
            Some(first) if first <= now_ms => self.ladder.lapsed(location, now_ms),
            _ => 0,
        }
    }

    pub fn availability(&self, location: LocationId, now_ms: u64) -> Option<Availability> {
        let position = self.position(location)?;
        let reserved = position.reserved - self.lapsed_reserved(location, now_ms);
        debug_assert!(reserved >= 0, "live reserved went negative");
        Some(Availability {
            on_hand: position.on_hand,
            reserved,
            safety_stock: i64::from(position.safety_stock),
            quarantined: position.quarantined,
            available: position.on_hand - reserved - i64::from(position.safety_stock),
        })
    }

    pub fn ladder_insert(&mut self, key: LadderKey, qty: u32) {
        self.ladder.insert(key, qty);
    }

    pub fn ladder_remove(&mut self, key: &LadderKey) -> u32 {
        self.ladder.remove(key)
    }
}

/// One lock's worth of skus.
#[derive(Default)]
pub(crate) struct PositionShard {
    skus: DenseTable<SkuEntry>,
}

impl PositionShard {
    /// The slot of `sku`'s entry (`hash` is its `hash_key`), stable for as long as the shard
    /// exists: skus are never removed.
    pub fn find(&self, hash: u64, sku: &str) -> Option<u32> {
        self.skus.find(hash, sku)
    }

    pub fn at(&self, slot: u32) -> &SkuEntry {
        self.skus.at(slot)
    }

    pub fn at_mut(&mut self, slot: u32) -> &mut SkuEntry {
        self.skus.at_mut(slot)
    }

    pub fn get(&self, sku: &str) -> Option<&SkuEntry> {
        self.skus.get(hash_key(sku), sku)
    }

    pub fn get_mut(&mut self, sku: &str) -> Option<&mut SkuEntry> {
        self.skus.get_mut(hash_key(sku), sku)
    }

    pub fn get_or_insert(&mut self, sku: &Sku) -> &mut SkuEntry {
        let slot = self
            .skus
            .find_or_insert(hash_key(sku.as_str()), sku.as_str(), || {
                SkuEntry::new(sku.clone())
            });
        self.skus.at_mut(slot)
    }

    /// Every sku of the shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &SkuEntry> {
        self.skus.iter().map(|(_, entry)| entry)
    }

    /// The table's own consistency (for `check_invariants`).
    pub fn check(&self) -> Result<(), String> {
        self.skus.check()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn key(expires_at_ms: u64, lsn: u64, location: u32) -> LadderKey {
        LadderKey {
            expires_at_ms,
            placed_lsn: Lsn(lsn),
            location: LocationId(location),
        }
    }

    /// Lines go inline, to a vec, to a tree and back to nothing, staying in key order, and
    /// lapsed units are summed the same in every shape.
    #[test]
    fn the_ladder_keeps_its_lines_in_order_in_every_shape() {
        let mut ladder = Ladder::default();
        let mut expected: BTreeMap<LadderKey, u32> = BTreeMap::new();
        // A scrambled but deterministic order of 3 * LADDER_FEW_MAX lines.
        let n = 3 * LADDER_FEW_MAX as u64;
        let keys: Vec<LadderKey> = (0..n)
            .map(|i| (i * 7) % n)
            .map(|i| key(1_000 + i / 2, i, (i % 3) as u32))
            .collect();
        let check = |ladder: &Ladder, expected: &BTreeMap<LadderKey, u32>| {
            assert!(!ladder.is_misshapen(), "{ladder:?}");
            let lines: Vec<_> = expected.iter().map(|(k, q)| (*k, *q)).collect();
            assert_eq!(ladder.lines(), lines);
            for now_ms in [999, 1_003, 1_100] {
                let sum: i64 = expected
                    .iter()
                    .filter(|(k, _)| k.expires_at_ms <= now_ms && k.location == LocationId(1))
                    .map(|(_, q)| i64::from(*q))
                    .sum();
                assert_eq!(ladder.lapsed(LocationId(1), now_ms), sum);
            }
        };
        for (i, k) in keys.iter().enumerate() {
            ladder.insert(*k, i as u32 + 1);
            expected.insert(*k, i as u32 + 1);
            check(&ladder, &expected);
        }
        assert!(matches!(ladder, Ladder::Many(_)));
        for k in keys.iter().rev() {
            assert_eq!(ladder.remove(k), expected.remove(k).expect("inserted"));
            check(&ladder, &expected);
        }
        assert!(matches!(ladder, Ladder::Empty));
        ladder.insert(keys[0], 5);
        ladder.insert(keys[1], 6);
        assert!(matches!(ladder, Ladder::Few(_)));
        assert_eq!(ladder.remove(&keys[0]), 5);
        assert!(
            matches!(ladder, Ladder::One(_)),
            "a vec of one goes back inline"
        );
    }
}
