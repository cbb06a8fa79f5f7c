//! Whole-ledger checks: the digest two replays of one log must agree on, and the structural
//! invariants (see the crate doc). For tests and simulations: both are O(ledger) and take every
//! lock, so they never run on the hot path.

use super::Ledger;
use super::archived::Archived;
use super::hold_entry::{HoldEntry, HoldShard};
use super::interner::Kind;
use super::positions::{LadderKey, PositionShard};
use super::records::{KeyRecord, kept_with_hold};
use super::sku_slot;
use crate::command::IdempotencyKey;
use crate::hold::{HoldState, SkuSlot};
use crate::sync::{MutexGuard, lock};
use crate::types::*;
use std::collections::{BTreeMap, HashMap};

impl Ledger {
    /// A hash of everything the log determines: positions, holds, keys within retention,
    /// returns, store sequences and the next LSN. Two ledgers with equal digests answer every
    /// query alike. Judged as of the latest event time, so it does not depend on when the
    /// digest is taken or on whether a purge ran.
    pub fn digest(&self) -> u64 {
        let (next_lsn, as_of_ms) = {
            let s = lock(&self.sequencer);
            (s.next_lsn, s.last_at_ms)
        };
        let mut lines: Vec<String> = Vec::new();
        for ((sku, location), p) in self.positions() {
            lines.push(format!("P {sku} {location} {p:?}"));
        }
        let key_line = |key: &IdempotencyKey, r: &KeyRecord| {
            format!(
                "K {key} {:?} {} {} {:?}",
                r.fingerprint, r.lsn, r.at_ms, r.outcome
            )
        };
        let entry_lines = |entry: &HoldEntry, lines: &mut Vec<String>| {
            if let Some(hold) = &entry.hold
                && (hold.state == HoldState::Open || self.retained(hold.ended_at_ms, as_of_ms))
            {
                // Stored fields, not the clock-dependent view.
                let view = self.hold_view(entry.id.as_str(), hold, entry.ended_by, 0, |s| {
                    lock(&self.positions[s.shard()]).at(s.slot).sku.clone()
                });
                lines.push(format!("H {view:?} {:?}", hold.state));
            }
            for r in entry.records(&self.names) {
                if self.record_retained(&r, as_of_ms) {
                    lines.push(key_line(&entry.key_of(r.fingerprint.kind), &r));
                }
            }
        };
        for shard in self.holds.iter() {
            let shard = lock(shard);
            for (_, entry) in shard.entries.iter() {
                entry_lines(entry, &mut lines);
            }
            for ((expires, lsn), &slot) in &shard.expiry {
                lines.push(format!("X {expires} {lsn} {}", shard.entries.at(slot).id));
            }
        }
        for shard in self.keys.iter() {
            let shard = lock(shard);
            for (key, r) in &shard.records {
                if self.record_retained(r, as_of_ms) {
                    lines.push(key_line(key, r));
                }
            }
        }
        // What is archived and not in memory too: the digest is of the ledger's state, not of
        // where it keeps it (`archived.rs`).
        self.for_each_archived_only(&mut |archived| match archived {
            Archived::Hold(entry) => entry_lines(&entry, &mut lines),
            Archived::Record(key, r) => {
                if self.record_retained(&r, as_of_ms) {
                    lines.push(key_line(&key, &r));
                }
            }
        })
        .expect("the key archive reads back for a digest");
        for (id, r) in &lock(&self.returns).by_id {
            if r.quarantined.iter().any(|(_, _, q)| *q > 0) || self.retained(r.at_ms, as_of_ms) {
                let q: Vec<_> = r
                    .quarantined
                    .iter()
                    .map(|(s, l, q)| format!("{s}@{}={q}", self.names.name(Kind::Location, l.0)))
                    .collect();
                lines.push(format!("R {id} {} {q:?}", r.at_ms));
            }
        }
        for ((sku, location), held) in &lock(&self.reviews).by_position {
            lines.push(format!("D {sku} {location} {held:?}"));
        }
        for (id, s) in &lock(&self.stores).by_id {
            let mut status = s.status(id.as_str());
            // Retries are not events; they are counted but not replayed.
            status.duplicates_absorbed = 0;
            lines.push(format!("S {status:?}"));
        }
        lines.push(format!("N {next_lsn}"));
        lines.sort_unstable();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for line in &lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hasher.digest()
    }

    /// Checks every structural invariant, taking all locks in protocol order. For tests and
    /// simulations (it is O(ledger)), never the hot path.
    pub fn check_invariants(&self) -> Result<(), String> {
        let keys: Vec<_> = self.keys.iter().map(lock).collect();
        let holds: Vec<_> = self.holds.iter().map(lock).collect();
        let returns = lock(&self.returns);
        let stores = lock(&self.stores);
        let reviews = lock(&self.reviews);
        let positions: Vec<_> = self.positions.iter().map(lock).collect();

        for ((sku, location), held) in &reviews.by_position {
            if held.drift == 0 {
                return Err(format!("{sku}@{location}: a held drift of zero"));
            }
        }
        for shard in &keys {
            if let Some(key) = shard.records.keys().find(|k| kept_with_hold(k.kind)) {
                return Err(format!("key {key} is in the key shards, not with its hold"));
            }
        }
        let mut expected = Expected::default();
        for (index, shard) in holds.iter().enumerate() {
            self.check_hold_shard(index, shard, &positions, &mut expected)?;
        }
        for r in returns.by_id.values() {
            for (sku, location, qty) in &r.quarantined {
                *expected
                    .quarantined
                    .entry((sku.clone(), *location))
                    .or_default() += *qty as i64;
            }
        }
        let mut ladder_seen = 0usize;
        for (index, shard) in positions.iter().enumerate() {
            ladder_seen += self.check_position_shard(index, shard, &expected)?;
        }
        if ladder_seen != expected.ladder.len() {
            return Err(format!(
                "{ladder_seen} ladder entries for {} open hold lines",
                expected.ladder.len()
            ));
        }
        for (id, s) in &stores.by_id {
            check_store(s).map_err(|e| format!("store {id}: {e}"))?;
        }
        Ok(())
    }

    /// One hold shard's entries and expiry index; adds what its open holds reserve to
    /// `expected`.
    fn check_hold_shard(
        &self,
        index: usize,
        shard: &HoldShard,
        positions: &[MutexGuard<'_, PositionShard>],
        expected: &mut Expected,
    ) -> Result<(), String> {
        shard.entries.check()?;
        let mut open = 0usize;
        for (slot, entry) in shard.entries.iter() {
            let id = &entry.id;
            if self.shard_of(id.as_str()) != index {
                return Err(format!("hold entry {id} is in the wrong shard"));
            }
            entry.check(&self.names)?;
            let Some(hold) = &entry.hold else { continue };
            for line in hold.lines.iter() {
                let sku = positions
                    .get(line.sku.shard())
                    .and_then(|shard| shard.get_at(line.sku.slot))
                    .ok_or_else(|| format!("hold {id} names a sku slot with no sku"))?;
                if self.shard_of(sku.sku.as_str()) != line.sku.shard() {
                    return Err(format!(
                        "hold {id} names sku {} in the wrong shard",
                        sku.sku
                    ));
                }
            }
            let indexed = shard.expiry.get(&(hold.expires_at_ms, hold.placed_lsn)) == Some(&slot);
            if hold.state != HoldState::Open {
                if indexed {
                    return Err(format!("ended hold {id} is still in the expiry index"));
                }
                continue;
            }
            open += 1;
            if !indexed {
                return Err(format!("open hold {id} is missing from the expiry index"));
            }
            for line in hold.lines.iter() {
                *expected
                    .reserved
                    .entry((line.sku, line.location))
                    .or_default() += i64::from(line.qty);
                let key = LadderKey {
                    expires_at_ms: hold.expires_at_ms,
                    placed_lsn: hold.placed_lsn,
                    location: line.location,
                };
                expected.ladder.insert((line.sku, key), line.qty);
            }
        }
        if shard.expiry.len() != open {
            return Err(format!(
                "hold shard {index}: {} expiry index entries for {open} open holds",
                shard.expiry.len()
            ));
        }
        Ok(())
    }

    /// One position shard against what the holds and returns say; returns how many ladder
    /// entries it has.
    fn check_position_shard(
        &self,
        index: usize,
        shard: &PositionShard,
        expected: &Expected,
    ) -> Result<usize, String> {
        shard.check()?;
        let mut ladder_seen = 0;
        for (slot, entry) in shard.iter_slots() {
            let sku = &entry.sku;
            let sku_at = sku_slot(index, slot);
            if self.shard_of(sku.as_str()) != index {
                return Err(format!("sku {sku} is in the wrong shard"));
            }
            if entry
                .positions
                .windows(2)
                .any(|w| w[0].location >= w[1].location)
            {
                return Err(format!("positions of {sku} are not sorted by location"));
            }
            for p in &entry.positions {
                let reserved = expected.reserved.get(&(sku_at, p.location));
                if p.reserved != reserved.copied().unwrap_or(0) {
                    return Err(format!(
                        "{sku}@{}: reserved {} but open holds sum to {reserved:?}",
                        p.location.0, p.reserved
                    ));
                }
                let quarantined = expected.quarantined.get(&(sku.clone(), p.location));
                if p.quarantined != quarantined.copied().unwrap_or(0) {
                    return Err(format!(
                        "{sku}@{}: quarantined {} but returns hold {quarantined:?}",
                        p.location.0, p.quarantined
                    ));
                }
            }
            if entry.ladder.is_misshapen() {
                return Err(format!("{sku}: ladder kept in a shape it should have left"));
            }
            for (k, qty) in entry.ladder.lines() {
                ladder_seen += 1;
                if expected.ladder.get(&(sku_at, k)) != Some(&qty) {
                    return Err(format!("{sku}: ladder entry {k:?} has no open hold line"));
                }
            }
        }
        Ok(ladder_seen)
    }
}

/// What the positions must hold, per the holds and returns.
#[derive(Default)]
struct Expected {
    /// Units reserved per position by open holds.
    reserved: HashMap<(SkuSlot, LocationId), i64>,
    /// Per sku ladder entry, the open hold line's quantity.
    ladder: BTreeMap<(SkuSlot, LadderKey), u32>,
    /// Units in quarantine per position, per the returns.
    quarantined: HashMap<(Sku, LocationId), i64>,
}

/// One store's sequence: ranges apart and above the prefix, nothing beyond the newest number,
/// anomalies bounded, distinct, and each beyond the newest number of its time.
fn check_store(s: &crate::stores::StoreSequence) -> Result<(), String> {
    use crate::limits::STORE_ANOMALIES_MAX;
    if s.contiguous_seq > s.newest_seq {
        return Err(format!(
            "contiguous seq {} beyond the newest {}",
            s.contiguous_seq, s.newest_seq
        ));
    }
    // Saturating: a prefix at u64::MAX has nothing above it, which the first check then sees.
    let mut floor = s.contiguous_seq.saturating_add(1);
    for (&start, &end) in &s.received {
        if start <= floor || end < start {
            return Err("received ranges overlap or touch".to_owned());
        }
        if end > s.newest_seq {
            return Err(format!(
                "a received range ends at {end}, beyond the newest {}",
                s.newest_seq
            ));
        }
        floor = end.saturating_add(1);
    }
    if s.anomalies.len() > STORE_ANOMALIES_MAX {
        return Err(format!("{} anomalies kept", s.anomalies.len()));
    }
    for (i, anomaly) in s.anomalies.iter().enumerate() {
        if anomaly.store_seq <= anomaly.newest_seq {
            return Err(format!("anomaly {} did not jump", anomaly.txn_id));
        }
        if s.anomalies[..i].iter().any(|a| a.txn_id == anomaly.txn_id) {
            return Err(format!("txn {} has two anomalies", anomaly.txn_id));
        }
    }
    Ok(())
}
