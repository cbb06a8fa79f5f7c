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

use super::table::{DenseTable, Keyed, Snapshot, hash_key};
use crate::types::{LocationId, Lsn, Sku};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

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

/// Most open hold lines a sku's ladder keeps in one sorted vec before it switches to runs.
/// Below this one vec is smallest (24 bytes a line) and quickest (one short memmove).
const LADDER_FEW_MAX: usize = 8;

/// Most lines in one run of a `Many` ladder: a removal moves at most this many lines (1.5 KB),
/// and a sku with thousands of open holds still finds its run by one binary search.
const RUN_LINES_MAX: usize = 64;

/// The lines of a ladder with more than `LADDER_FEW_MAX`, as sorted runs of 1 to
/// `RUN_LINES_MAX` lines. New holds mostly expire after every open one, so the usual insert
/// appends to the last run, and a sku's holds sit 24 bytes a line in full runs; a B-tree
/// (where this began) spends twice that in half-full nodes and walks them on every insert.
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    /// Each run's first key: finding a run reads only this vec.
    firsts: Vec<LadderKey>,
    /// In key order, none empty, none longer than `RUN_LINES_MAX`.
    runs: Vec<Vec<LadderLine>>,
}

impl Runs {
    fn new(lines: Vec<LadderLine>) -> Self {
        debug_assert!(!lines.is_empty() && lines.len() <= RUN_LINES_MAX);
        Self {
            firsts: vec![lines[0].key()],
            runs: vec![lines],
        }
    }

    fn first_expiry(&self) -> u64 {
        self.firsts[0].expires_at_ms
    }

    fn iter(&self) -> impl Iterator<Item = &LadderLine> {
        self.runs.iter().flatten()
    }

    /// The run that holds `key`, or would: the last whose first key is not above it.
    fn run_of(&self, key: &LadderKey) -> usize {
        self.firsts.partition_point(|f| f <= key).saturating_sub(1)
    }

    fn insert(&mut self, line: LadderLine) {
        let key = line.key();
        let last = self.runs.last_mut().expect("runs are never empty");
        if last.last().is_some_and(|l| l.key() < key) {
            // The usual append: no search (each probe of one is a cache miss on a cold sku).
            if last.len() < RUN_LINES_MAX {
                last.push(line);
            } else {
                // A new run, so full runs stay full.
                self.firsts.push(key);
                self.runs.push(vec![line]);
            }
            return;
        }
        let mut r = self.run_of(&key);
        let Err(mut i) = self.runs[r].binary_search_by_key(&key, LadderLine::key) else {
            panic!("ladder key inserted twice: {key:?}");
        };
        if self.runs[r].len() == RUN_LINES_MAX {
            if i == RUN_LINES_MAX {
                // Past the end of a full run: a new run, so full runs stay full.
                self.firsts.insert(r + 1, key);
                self.runs.insert(r + 1, vec![line]);
                return;
            }
            // Split before inserting, so no run's capacity grows past RUN_LINES_MAX.
            let half = RUN_LINES_MAX / 2;
            let tail = self.runs[r].split_off(half);
            self.firsts.insert(r + 1, tail[0].key());
            self.runs.insert(r + 1, tail);
            if i > half {
                (r, i) = (r + 1, i - half);
            }
        }
        self.runs[r].insert(i, line);
        if i == 0 {
            self.firsts[r] = key;
        }
    }

    /// Removes the line with `key`; `None` if there is none. Leaves `self` empty (and to be
    /// dropped) after its last line.
    fn remove(&mut self, key: &LadderKey) -> Option<u32> {
        let r = self.run_of(key);
        let i = self.runs[r]
            .binary_search_by_key(key, LadderLine::key)
            .ok()?;
        let qty = self.runs[r].remove(i).qty;
        if self.runs[r].is_empty() {
            self.runs.remove(r);
            self.firsts.remove(r);
            return Some(qty);
        }
        if i == 0 {
            self.firsts[r] = self.runs[r][0].key();
        }
        // A run down to a quarter joins a neighbour it fits in, so removals cannot leave
        // many near-empty runs behind.
        if self.runs[r].len() <= RUN_LINES_MAX / 4 {
            let fits =
                |a: usize, b: usize| self.runs[a].len() + self.runs[b].len() <= RUN_LINES_MAX;
            let join = if r + 1 < self.runs.len() && fits(r, r + 1) {
                Some(r)
            } else if r > 0 && fits(r - 1, r) {
                Some(r - 1)
            } else {
                None
            };
            if let Some(left) = join {
                let mut right = self.runs.remove(left + 1);
                self.firsts.remove(left + 1);
                self.runs[left].append(&mut right);
            }
        }
        Some(qty)
    }

    fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Runs and first keys agree, runs are in order, and none is empty or too long.
    fn is_well_formed(&self) -> bool {
        self.firsts.len() == self.runs.len()
            && self.runs.iter().zip(&self.firsts).all(|(run, first)| {
                !run.is_empty()
                    && run.len() <= RUN_LINES_MAX
                    && run[0].key() == *first
                    && run.windows(2).all(|w| w[0].key() < w[1].key())
            })
            && self
                .runs
                .windows(2)
                .all(|w| w[0].last().map(LadderLine::key) < w[1].first().map(LadderLine::key))
    }
}

/// The open hold lines on one sku, by expiry, with their quantity. Most skus have no open hold
/// or one, so those cases are kept inline and allocate nothing.
#[derive(Debug, Default, Clone)]
pub(crate) enum Ladder {
    #[default]
    Empty,
    One(LadderLine),
    /// Two to `LADDER_FEW_MAX` lines, sorted by key.
    Few(Vec<LadderLine>),
    /// More lines than that, until every one of them has ended.
    Many {
        /// The first expiry, kept beside the runs: every availability read of the sku asks
        /// for it, and this saves it a cache miss.
        first_expiry_ms: u64,
        /// Boxed, the enum stays at 32 bytes, on every sku.
        lines: Box<Runs>,
    },
}

impl Ladder {
    /// Whether this ladder is in a shape it should not be kept in: a vec of fewer than two
    /// lines or an empty tree (memory it does not need), or a tree whose first expiry is not
    /// the one kept beside it.
    pub fn is_misshapen(&self) -> bool {
        match self {
            Ladder::Empty | Ladder::One(_) => false,
            Ladder::Few(lines) => lines.len() < 2,
            Ladder::Many {
                first_expiry_ms,
                lines,
            } => {
                lines.is_empty()
                    || !lines.is_well_formed()
                    || lines.first_expiry() != *first_expiry_ms
            }
        }
    }

    /// Every line in key order (for checks; the hot paths match on the variant).
    pub fn lines(&self) -> Vec<(LadderKey, u32)> {
        match self {
            Ladder::Empty => Vec::new(),
            Ladder::One(line) => vec![(line.key(), line.qty)],
            Ladder::Few(lines) => lines.iter().map(|l| (l.key(), l.qty)).collect(),
            Ladder::Many { lines, .. } => lines.iter().map(|l| (l.key(), l.qty)).collect(),
        }
    }

    fn first_expiry(&self) -> Option<u64> {
        match self {
            Ladder::Empty => None,
            Ladder::One(line) => Some(line.expires_at_ms),
            Ladder::Few(lines) => lines.first().map(|l| l.expires_at_ms),
            Ladder::Many {
                first_expiry_ms, ..
            } => Some(*first_expiry_ms),
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
            Ladder::Many { lines, .. } => lapsed(&mut lines.iter().map(of_line)),
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
                let mut runs = Runs::new(std::mem::take(lines));
                runs.insert(line);
                *self = Ladder::Many {
                    first_expiry_ms: runs.first_expiry(),
                    lines: Box::new(runs),
                };
            }
            Ladder::Many {
                first_expiry_ms,
                lines,
            } => {
                lines.insert(line);
                *first_expiry_ms = lines.first_expiry();
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
            Ladder::Many {
                first_expiry_ms,
                lines,
            } => {
                let qty = lines.remove(key).expect(MISSING);
                if lines.is_empty() {
                    // Free the runs: most skus have no open hold most of the time.
                    *self = Ladder::Empty;
                } else {
                    *first_expiry_ms = lines.first_expiry();
                }
                qty
            }
        }
    }
}

#[derive(Debug, Clone)]
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
    /// Positions (sku, location) in the shard: skus and positions are never removed, so a
    /// count kept as they are created (`position_or_insert`) is exact.
    positions: usize,
    /// While a reconciliation runs: the on_hand changes applied to this shard's positions
    /// (see `reconcile.rs`). `None` otherwise, which is what the hot path checks.
    pub tap: Option<Box<super::reconcile::Tap>>,
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
        self.get_hashed(hash_key(sku), sku)
    }

    /// [`PositionShard::get`] for a caller that hashed the sku already (to find the shard).
    pub fn get_hashed(&self, hash: u64, sku: &str) -> Option<&SkuEntry> {
        self.skus.get(hash, sku)
    }

    /// The position (sku, location), created at zero if there is none.
    pub fn position_or_insert(&mut self, sku: &Sku, location: LocationId) -> &mut Position {
        let slot = self
            .skus
            .find_or_insert(hash_key(sku.as_str()), sku.as_str(), || {
                SkuEntry::new(sku.clone())
            });
        let entry = self.skus.at_mut(slot);
        if entry.position(location).is_none() {
            self.positions += 1;
        }
        entry.position_or_insert(location)
    }

    /// Positions in the shard.
    pub fn position_count(&self) -> usize {
        self.positions
    }

    /// The entry in `slot`, if there is one (for checks of slots held elsewhere).
    pub fn get_at(&self, slot: u32) -> Option<&SkuEntry> {
        self.skus.get_at(slot)
    }

    /// Every sku of the shard with its slot, in slot order.
    pub fn iter_slots(&self) -> impl Iterator<Item = (u32, &SkuEntry)> {
        self.skus.iter()
    }

    /// The shard's skus as they are now, sharing the table's chunks (see
    /// `DenseTable::snapshot`).
    pub fn snapshot(&self) -> Snapshot<SkuEntry> {
        self.skus.snapshot()
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
    use std::collections::BTreeMap;

    fn key(expires_at_ms: u64, lsn: u64, location: u32) -> LadderKey {
        LadderKey {
            expires_at_ms,
            placed_lsn: Lsn(lsn),
            location: LocationId(location),
        }
    }

    /// Lines go inline, to a vec, to runs (split, joined) and back to nothing, staying in key
    /// order, and lapsed units are summed the same in every shape.
    #[test]
    fn the_ladder_keeps_its_lines_in_order_in_every_shape() {
        let mut ladder = Ladder::default();
        let mut expected: BTreeMap<LadderKey, u32> = BTreeMap::new();
        // A scrambled but deterministic order of enough lines for several runs.
        let n = 3 * RUN_LINES_MAX as u64 + 5;
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
        assert!(matches!(ladder, Ladder::Many { .. }));
        for k in keys.iter().rev() {
            assert_eq!(ladder.remove(k), expected.remove(k).expect("inserted"));
            check(&ladder, &expected);
        }
        assert!(matches!(ladder, Ladder::Empty));
        assert_eq!(size_of::<Ladder>(), 32, "a ladder is on every sku");

        // Appends (the usual order) fill runs completely; removing every other line joins
        // the runs it thins, and the rest empties it.
        let n = 10 * RUN_LINES_MAX as u64 + 3;
        for i in 0..n {
            ladder.insert(key(2_000 + i, i, 0), 1);
            expected.insert(key(2_000 + i, i, 0), 1);
        }
        check(&ladder, &expected);
        let Ladder::Many { lines, .. } = &ladder else {
            panic!("many lines: {ladder:?}")
        };
        assert_eq!(lines.runs.len(), 11);
        assert!(lines.runs[..10].iter().all(|r| r.len() == RUN_LINES_MAX));
        for i in (0..n).step_by(2) {
            ladder.remove(&key(2_000 + i, i, 0));
            expected.remove(&key(2_000 + i, i, 0));
            check(&ladder, &expected);
        }
        let Ladder::Many { lines, .. } = &ladder else {
            panic!("many lines: {ladder:?}")
        };
        assert!(lines.runs.len() < 11, "thinned runs were joined");
        for i in (1..n).step_by(2) {
            ladder.remove(&key(2_000 + i, i, 0));
            expected.remove(&key(2_000 + i, i, 0));
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
