//! A hash table for many long-lived entries: the entries live densely in fixed-size chunks, and
//! a hashbrown table of slot numbers finds them by key.
//!
//! A plain `HashMap<K, V>` keeps its entries in its buckets, so its load factor (44% to 87% as
//! it doubles) multiplies the entry size: a million 100-byte entries can take 230 bytes each.
//! Here the load factor only applies to the index (8 bytes plus a control byte per bucket), the
//! chunks have no doubling slack but in the last one, and growing never moves an entry.
//!
//! The index keeps 32 bits of each key's hash next to the slot, so rehashing it (as it grows,
//! or when hashbrown clears the tombstones a purge leaves) never reads the entries, which
//! would be a cache miss per entry, and a lookup only reads an entry whose hash matches. An
//! entry keeps its slot for as long as it is in the table, so other indexes can point at it
//! with a `u32` instead of a copy of its key.
//!
//! Slots that `retain` frees at the end of the table are handed back to the chunks (which keep
//! their capacity), as if never used, and new entries are appended there: an append writes its
//! slot without reading it first, where reusing a vacant slot loads it (to drop the `None`) and
//! waits on a cache miss, since purged slots are long cold. Vacant slots below the last entry
//! are reused lowest first, so new entries still land next to each other.
//!
//! Chunks are shared copy-on-write: [`DenseTable::snapshot`] takes a reference to every chunk
//! (a counter bump each, not a copy of the entries), and a later write to a chunk a snapshot
//! still holds copies that one chunk first. A checkpoint's cut holds every lock only for the
//! snapshots, and writers pay for the copies of the chunks they touch while the checkpoint
//! is being built, instead of all waiting for a copy of the whole ledger.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// The hash of every key the ledger shards or looks up. Shard selection takes bits 40 and up,
/// the tables' indexes bits 0 to 31 (see `index_hash`), so a key's shard says nothing about
/// its bucket.
pub(crate) fn hash_key(key: &str) -> u64 {
    FixedState::with_seed(0x1e_d6e5).hash_one(key)
}

/// The hash the index is built on: 32 bits of `hash_key` (bits 0 to 31, which shard selection
/// does not use), repeated in the high half so that hashbrown's 7-bit tag (the top bits) is
/// independent of the bucket (the low bits) for any table of fewer than 2^25 buckets.
fn index_hash(hash32: u32) -> u64 {
    u64::from(hash32) << 32 | u64::from(hash32)
}

/// One index bucket: an entry's slot and its key's hash.
#[derive(Clone, Copy)]
struct Indexed {
    slot: u32,
    hash32: u32,
}

/// An entry that carries its own key.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

/// Bytes per chunk (rounded down to a power of two of entries): small enough that the last,
/// partly filled chunk of each of the ledger's shards costs little, large enough that chunk
/// pointers do not matter.
const CHUNK_BYTES: usize = 16 * 1024;

pub(crate) struct DenseTable<T> {
    /// The occupied slots, hashed by their entries' keys.
    index: HashTable<Indexed>,
    /// Slot `s` is `chunks[s >> CHUNK_SHIFT][s & (CHUNK - 1)]`, for `s < slots`: the chunks
    /// before the one slot `slots` falls in are full, the ones after it are empty (and may
    /// keep their capacity). Shared with snapshots until written (see the module docs).
    chunks: Vec<Chunk<T>>,
    /// Slots in use, occupied or vacant.
    slots: usize,
    /// Vacant slots below `slots`, a min-heap, so `pop` reuses the lowest (and freeing one is
    /// O(log n), which eviction does for every entry it moves out).
    free: BinaryHeap<Reverse<u32>>,
}

type Chunk<T> = Arc<Vec<Option<T>>>;

/// The occupied slots of `chunks` with their entries, in slot order.
fn occupied<T>(chunks: &[Chunk<T>]) -> impl Iterator<Item = (u32, &T)> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter())
        .enumerate()
        .filter_map(|(slot, place)| Some((slot as u32, place.as_ref()?)))
}

impl<T> Default for DenseTable<T> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            chunks: Vec::new(),
            slots: 0,
            free: BinaryHeap::new(),
        }
    }
}

impl<T: Keyed + Clone> DenseTable<T> {
    const CHUNK_SHIFT: u32 = {
        let entries = CHUNK_BYTES / size_of::<Option<T>>();
        if entries <= 1 { 0 } else { entries.ilog2() }
    };
    const CHUNK: usize = 1 << Self::CHUNK_SHIFT;

    fn place(chunks: &[Chunk<T>], slot: u32) -> &Option<T> {
        let slot = slot as usize;
        &chunks[slot >> Self::CHUNK_SHIFT][slot & (Self::CHUNK - 1)]
    }

    /// The slot, for writing: its chunk is copied first if a snapshot shares it.
    fn place_mut(chunks: &mut [Chunk<T>], slot: u32) -> &mut Option<T> {
        let slot = slot as usize;
        &mut Arc::make_mut(&mut chunks[slot >> Self::CHUNK_SHIFT])[slot & (Self::CHUNK - 1)]
    }

    fn indexed(chunks: &[Chunk<T>], slot: u32) -> &T {
        Self::place(chunks, slot)
            .as_ref()
            .expect("the index lists occupied slots only")
    }

    /// The slot of the entry with `key`; `hash` is `hash_key(key)`.
    pub fn find(&self, hash: u64, key: &str) -> Option<u32> {
        let chunks = &self.chunks;
        let hash32 = hash as u32;
        self.index
            .find(index_hash(hash32), |i| {
                i.hash32 == hash32 && Self::indexed(chunks, i.slot).key() == key
            })
            .map(|i| i.slot)
    }

    pub fn get(&self, hash: u64, key: &str) -> Option<&T> {
        self.find(hash, key).map(|slot| self.at(slot))
    }

    /// The entry in an occupied slot.
    pub fn at(&self, slot: u32) -> &T {
        Self::indexed(&self.chunks, slot)
    }

    /// The entry in `slot`, if the slot is occupied (for checks of slots held elsewhere).
    pub fn get_at(&self, slot: u32) -> Option<&T> {
        if slot as usize >= self.slots {
            return None;
        }
        Self::place(&self.chunks, slot).as_ref()
    }

    pub fn at_mut(&mut self, slot: u32) -> &mut T {
        Self::place_mut(&mut self.chunks, slot)
            .as_mut()
            .expect("a slot handed out for an entry still in the table")
    }

    /// The slot of the entry with `key`, inserting `make()` (whose key must be `key`) if there
    /// is none.
    pub fn find_or_insert(&mut self, hash: u64, key: &str, make: impl FnOnce() -> T) -> u32 {
        match self.find(hash, key) {
            Some(slot) => slot,
            None => self.insert(hash, make),
        }
    }

    /// Inserts `make()`, whose key must not be in the table yet; returns its slot. (`make` is
    /// called at the slot, so the compiler can build a large entry in place.)
    fn insert(&mut self, hash: u64, make: impl FnOnce() -> T) -> u32 {
        let slot = match self.free.pop() {
            Some(Reverse(slot)) => {
                let place = Self::place_mut(&mut self.chunks, slot);
                debug_assert!(place.is_none(), "free slot {slot} is occupied");
                *place = Some(make());
                slot
            }
            None => {
                let slot = u32::try_from(self.slots).expect("fewer than 2^32 entries");
                let index = self.slots >> Self::CHUNK_SHIFT;
                if index == self.chunks.len() {
                    self.chunks.push(Arc::new(Vec::new()));
                }
                let chunk = Arc::make_mut(&mut self.chunks[index]);
                if chunk.len() == chunk.capacity() {
                    // Double, but never past a chunk: that is where the slack stops.
                    let target = (chunk.capacity() * 2).clamp(4.min(Self::CHUNK), Self::CHUNK);
                    chunk.reserve_exact(target - chunk.len());
                }
                chunk.push(Some(make()));
                self.slots += 1;
                slot
            }
        };
        let hash32 = hash as u32;
        self.index
            .insert_unique(index_hash(hash32), Indexed { slot, hash32 }, |i| {
                index_hash(i.hash32)
            });
        slot
    }

    /// Removes the entry with `key` (`hash` is `hash_key(key)`) and frees its slot, which the
    /// next insert may reuse (lowest vacant slot first, as after `retain`).
    pub fn remove(&mut self, hash: u64, key: &str) -> Option<T> {
        let chunks = &self.chunks;
        let hash32 = hash as u32;
        let found = self
            .index
            .find_entry(index_hash(hash32), |i| {
                i.hash32 == hash32 && Self::indexed(chunks, i.slot).key() == key
            })
            .ok()?;
        let (Indexed { slot, .. }, _) = found.remove();
        let taken = Self::place_mut(&mut self.chunks, slot).take();
        self.free.push(Reverse(slot));
        taken
    }

    /// Rebuilds the index without the tombstones removals leave: after many removals a lookup
    /// of a key that is not there (every new reservation id) probes past them until an empty
    /// bucket, which eviction, removing most of a shard at once, made measurably slower.
    /// O(index) under the caller's lock; call it after a large batch of removals only.
    pub fn compact_index(&mut self) {
        self.index
            .shrink_to(self.index.len(), |i| index_hash(i.hash32));
    }

    /// Vacant slots below the last used one.
    pub fn vacant(&self) -> usize {
        self.free.len()
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Every entry with its slot from slot `from` on, in slot order.
    pub fn iter_from(&self, from: u32) -> impl Iterator<Item = (u32, &T)> {
        let first_chunk = (from as usize) >> Self::CHUNK_SHIFT;
        let skipped = (first_chunk << Self::CHUNK_SHIFT) as u32;
        occupied(self.chunks.get(first_chunk..).unwrap_or(&[]))
            .map(move |(slot, entry)| (slot + skipped, entry))
            .filter(move |(slot, _)| *slot >= from)
    }

    /// Every entry with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        occupied(&self.chunks)
    }

    /// The table as it is now, sharing its chunks: a counter bump per chunk, however many
    /// entries they hold. Later writes to the table copy a shared chunk before changing it,
    /// so the snapshot never changes.
    pub fn snapshot(&self) -> Snapshot<T> {
        let used = self.slots.div_ceil(Self::CHUNK);
        Snapshot {
            chunks: self.chunks[..used].to_vec(),
            slots: self.slots,
            chunk_shift: Self::CHUNK_SHIFT,
        }
    }

    /// Keeps the entries for which `keep` (which may change them) returns true; frees the
    /// others' slots.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut T) -> bool) {
        let (chunks, free) = (&mut self.chunks, &mut self.free);
        let free_before = free.len();
        self.index.retain(|&mut Indexed { slot, .. }| {
            let place = Self::place_mut(chunks, slot);
            let kept = keep(place.as_mut().expect("the index lists occupied slots only"));
            if !kept {
                *place = None;
                free.push(Reverse(slot));
            }
            kept
        });
        if self.free.len() == free_before {
            return;
        }
        // Hand the vacant slots at the end back to their chunks.
        let mut slots = self.slots;
        while slots > 0 && Self::place(&self.chunks, slots as u32 - 1).is_none() {
            slots -= 1;
        }
        for (i, chunk) in self.chunks.iter_mut().enumerate() {
            let len = slots.saturating_sub(i << Self::CHUNK_SHIFT);
            if chunk.len() > len {
                Arc::make_mut(chunk).truncate(len);
            }
        }
        self.slots = slots;
        self.free.retain(|&Reverse(slot)| (slot as usize) < slots);
    }

    /// The index and the slots agree: every occupied slot is found by its key, and no other.
    pub fn check(&self) -> Result<(), String> {
        let mut occupied = 0usize;
        for (slot, entry) in self.iter() {
            occupied += 1;
            if self.find(hash_key(entry.key()), entry.key()) != Some(slot) {
                return Err(format!("entry {} is not indexed at its slot", entry.key()));
            }
        }
        if occupied != self.index.len() {
            return Err(format!(
                "{occupied} occupied slots but {} indexed",
                self.index.len()
            ));
        }
        let slots: usize = self.chunks.iter().map(|chunk| chunk.len()).sum();
        if slots != self.slots || occupied + self.free.len() != slots {
            return Err(format!(
                "{occupied} occupied and {} free of {slots} slots",
                self.free.len()
            ));
        }
        Ok(())
    }
}

/// A [`DenseTable`]'s entries at one moment (see [`DenseTable::snapshot`]).
pub(crate) struct Snapshot<T> {
    chunks: Vec<Chunk<T>>,
    slots: usize,
    /// The table's `CHUNK_SHIFT`.
    chunk_shift: u32,
}

impl<T> Snapshot<T> {
    /// The entry in `slot`, if it was occupied.
    pub fn get(&self, slot: u32) -> Option<&T> {
        let slot = slot as usize;
        if slot >= self.slots {
            return None;
        }
        self.chunks[slot >> self.chunk_shift][slot & ((1 << self.chunk_shift) - 1)].as_ref()
    }

    /// Every occupied entry with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        occupied(&self.chunks)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Named(String, u32);

    impl Keyed for Named {
        fn key(&self) -> &str {
            &self.0
        }
    }

    fn insert(table: &mut DenseTable<Named>, name: &str, value: u32) -> u32 {
        table.find_or_insert(hash_key(name), name, || Named(name.to_owned(), value))
    }

    #[test]
    fn entries_keep_their_slot_and_freed_slots_are_reused_lowest_first() {
        let mut table = DenseTable::default();
        // Enough entries for several chunks.
        let n = 3 * DenseTable::<Named>::CHUNK as u32 + 5;
        for i in 0..n {
            assert_eq!(insert(&mut table, &format!("k{i}"), i), i);
        }
        assert_eq!(
            insert(&mut table, "k7", 99),
            7,
            "an existing key keeps its slot"
        );
        assert_eq!(table.get(hash_key("k7"), "k7").map(|e| e.1), Some(7));
        assert!(table.get(hash_key("nope"), "nope").is_none());

        table.retain(|e| e.1 % 3 != 0);
        table.check().expect("consistent after retain");
        assert!(table.get(hash_key("k3"), "k3").is_none());
        assert_eq!(table.at(4).1, 4, "kept entries stay where they were");
        assert_eq!(insert(&mut table, "new-a", 0), 0, "lowest freed slot first");
        assert_eq!(insert(&mut table, "new-b", 0), 3);
        table.check().expect("consistent after reuse");
        assert_eq!(table.iter().count() as u32, n - n.div_ceil(3) + 2);

        // Vacant slots at the end go back to the chunks; the table then fills by appending.
        table.retain(|e| e.0 == "k4");
        table.check().expect("consistent after emptying the end");
        assert_eq!(table.slots, 5, "slots up to k4 stay in use");
        assert_eq!(insert(&mut table, "a", 0), 0);
        for (i, name) in ["b", "c", "d"].into_iter().enumerate() {
            assert_eq!(insert(&mut table, name, 0), i as u32 + 1);
        }
        assert_eq!(insert(&mut table, "e", 0), 5, "appended after k4");
        table.retain(|_| false);
        table.check().expect("consistent when empty");
        assert_eq!((table.slots, table.free.len()), (0, 0));
        assert_eq!(insert(&mut table, "f", 0), 0);
        table.check().expect("consistent after refilling");
    }

    #[test]
    fn removed_entries_free_their_slots_lowest_first_and_iteration_resumes_at_a_slot() {
        let mut table = DenseTable::default();
        let n = 2 * DenseTable::<Named>::CHUNK as u32 + 9;
        for i in 0..n {
            insert(&mut table, &format!("k{i}"), i);
        }
        // Removed in descending order: reuse must still take the lowest slot first.
        for i in [n - 2, 40, 9, 3] {
            let name = format!("k{i}");
            assert_eq!(table.remove(hash_key(&name), &name).map(|e| e.1), Some(i));
        }
        assert!(table.remove(hash_key("k3"), "k3").is_none(), "gone already");
        table.check().expect("consistent after removals");
        assert_eq!((table.len(), table.vacant()), (n as usize - 4, 4));
        let from = DenseTable::<Named>::CHUNK as u32 + 1;
        let resumed: Vec<u32> = table.iter_from(from).map(|(slot, _)| slot).collect();
        let expected: Vec<u32> = (from..n).filter(|&s| s != n - 2).collect();
        assert_eq!(resumed, expected);
        assert_eq!(table.iter_from(4).next().map(|(s, _)| s), Some(4));
        for (name, slot) in [("a", 3), ("b", 9), ("c", 40), ("d", n - 2), ("e", n)] {
            assert_eq!(insert(&mut table, name, 0), slot, "{name}");
        }
        table.compact_index();
        table
            .check()
            .expect("consistent after rebuilding the index");
        assert_eq!(table.get(hash_key("c"), "c").map(|e| e.1), Some(0));
    }

    #[test]
    fn a_snapshot_keeps_its_entries_while_the_table_changes() {
        let mut table = DenseTable::default();
        let n = 2 * DenseTable::<Named>::CHUNK as u32 + 3;
        for i in 0..n {
            insert(&mut table, &format!("k{i}"), i);
        }
        let before: Vec<(u32, Named)> = table.iter().map(|(s, e)| (s, e.clone())).collect();
        let snapshot = table.snapshot();

        // Change, add, remove and shrink, in shared chunks and past them.
        table.at_mut(1).1 = 1_000;
        insert(&mut table, "after", 7);
        table.retain(|e| e.1 % 2 == 0 || e.0 == "after");
        table
            .check()
            .expect("consistent after writes to shared chunks");
        assert_eq!(table.at(1).1, 1_000, "the table has the new value");
        assert!(table.get(hash_key("k3"), "k3").is_none());

        let seen: Vec<(u32, Named)> = snapshot.iter().map(|(s, e)| (s, e.clone())).collect();
        assert_eq!(seen, before, "the snapshot is unchanged");
        assert_eq!(snapshot.slots, n as usize);
        assert_eq!(snapshot.get(1).map(|e| e.1), Some(1));
        assert_eq!(snapshot.get(n - 1).map(|e| e.1), Some(n - 1));
        assert!(snapshot.get(n).is_none(), "past the snapshot's slots");
        drop(snapshot);
        table.at_mut(0).1 = 5;
        table.check().expect("consistent once the snapshot is gone");
    }
}
