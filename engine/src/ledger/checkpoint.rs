//! Checkpoints: the whole ledger at one LSN, as plain data.
//!
//! A checkpoint lets recovery start from a recent state instead of LSN 1: load the newest
//! checkpoint, then replay the log after it. It is taken with every lock held (in protocol
//! order), so it is an exact cut: the state after event `next_lsn - 1` and before any later
//! one. Under the locks only the tables are cloned ([`Ledger::cut`]); resolving names,
//! deriving records ([`Cut::into_checkpoint`]), encoding and writing happen after the locks are
//! released. Names are stored, not interned ids, because ids are assigned in first-seen order
//! and differ between processes. The outcomes the ledger keeps with their holds (Reserve,
//! Commit, Release) are listed as keys like every other, and loading puts them back with their
//! holds: where the ledger keeps a record is its own business, not the checkpoint's.

use super::positions::SkuEntry;
use super::table::Snapshot;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPosition {
    pub sku: Sku,
    pub location: Location,
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
    pub quarantined: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointHold {
    pub reservation_id: ReservationId,
    pub channel: Channel,
    pub lines: Vec<Line>,
    pub state: HoldState,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    pub ended_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKey {
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub lsn: Lsn,
    pub at_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReturn {
    pub return_id: ReturnId,
    pub at_ms: u64,
    pub quarantined: Vec<(Sku, Location, u64)>,
}

/// The ledger's state after event `next_lsn - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub next_lsn: Lsn,
    pub last_at_ms: u64,
    pub positions: Vec<CheckpointPosition>,
    pub holds: Vec<CheckpointHold>,
    pub keys: Vec<CheckpointKey>,
    pub returns: Vec<CheckpointReturn>,
    pub stores: Vec<(StoreId, StoreSequence)>,
}

/// The ledger's tables as taken with every lock held: the sku and hold tables as snapshots
/// that share their chunks with the ledger (copy-on-write, see `table.rs`), the idempotency
/// records and the rest as plain clones. [`Cut::into_checkpoint`] turns it into a
/// [`Checkpoint`] after the locks are released, so writers wait only for the snapshots and
/// clones (see [`Ledger::cut`]).
pub struct Cut {
    /// How long every lock was held (writes waited) to take it.
    locked_for: std::time::Duration,
    next_lsn: Lsn,
    last_at_ms: u64,
    /// Per position shard, its skus by slot.
    positions: Vec<Snapshot<SkuEntry>>,
    /// Per hold shard, its entries.
    holds: Vec<Snapshot<HoldEntry>>,
    keys: Vec<Vec<(IdempotencyKey, KeyRecord)>>,
    returns: Vec<(ReturnId, ReturnRecord)>,
    stores: Vec<(StoreId, StoreSequence)>,
}

impl Cut {
    /// How long writes waited for this cut: the time every lock was held.
    pub fn locked_for(&self) -> std::time::Duration {
        self.locked_for
    }

    /// The LSN the cut was taken at: the state after event `next_lsn - 1`.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Builds the owned checkpoint: names resolved, derived records listed. Needs no ledger
    /// lock; names are only ever appended to the interner, so every id in the cut resolves.
    pub fn into_checkpoint(self, ledger: &Ledger) -> Checkpoint {
        let locations = ledger.names.names(Kind::Location);
        let channels = ledger.names.names(Kind::Channel);
        let location = |id: LocationId| Location(locations[id.0 as usize].clone());
        let sku_at = |slot: SkuSlot| {
            self.positions[usize::from(slot.shard)]
                .get(slot.slot)
                .map(|entry| entry.sku.clone())
                .expect("a hold line names an occupied sku slot")
        };
        let mut checkpoint = Checkpoint {
            next_lsn: self.next_lsn,
            last_at_ms: self.last_at_ms,
            positions: Vec::with_capacity(
                self.positions
                    .iter()
                    .flat_map(Snapshot::iter)
                    .map(|(_, entry)| entry.positions.len())
                    .sum(),
            ),
            holds: Vec::with_capacity(
                self.holds
                    .iter()
                    .flat_map(Snapshot::iter)
                    .filter(|(_, e)| e.hold.is_some())
                    .count(),
            ),
            keys: Vec::new(),
            returns: Vec::with_capacity(self.returns.len()),
            stores: self.stores.clone(),
        };
        for shard in &self.positions {
            for (_, entry) in shard.iter() {
                checkpoint
                    .positions
                    .extend(entry.positions.iter().map(|p| CheckpointPosition {
                        sku: entry.sku.clone(),
                        location: location(p.location),
                        on_hand: p.on_hand,
                        reserved: p.reserved,
                        safety_stock: i64::from(p.safety_stock),
                        quarantined: p.quarantined,
                    }));
            }
        }
        for shard in &self.holds {
            for (_, entry) in shard.iter() {
                checkpoint
                    .keys
                    .extend(
                        entry
                            .records(&ledger.names)
                            .into_iter()
                            .map(|r| CheckpointKey {
                                key: entry.key_of(r.fingerprint.kind),
                                fingerprint: r.fingerprint,
                                lsn: r.lsn,
                                at_ms: r.at_ms,
                                outcome: r.outcome,
                            }),
                    );
            }
            let holds = shard
                .iter()
                .filter_map(|(_, e)| Some((&e.id, e.hold.as_ref()?)));
            checkpoint.holds.extend(holds.map(|(id, h)| {
                CheckpointHold {
                    reservation_id: id.clone(),
                    channel: Channel(channels[h.channel.0 as usize].clone()),
                    lines: h
                        .lines
                        .iter()
                        .map(|l| Line {
                            sku: sku_at(l.sku),
                            location: location(l.location),
                            qty: u64::from(l.qty),
                        })
                        .collect(),
                    state: h.state,
                    expires_at_ms: h.expires_at_ms,
                    placed_lsn: h.placed_lsn,
                    placed_at_ms: h.placed_at_ms,
                    ended_at_ms: h.ended_at_ms,
                }
            }));
        }
        for shard in self.keys {
            checkpoint
                .keys
                .extend(shard.into_iter().map(|(key, r)| CheckpointKey {
                    key,
                    fingerprint: r.fingerprint,
                    lsn: r.lsn,
                    at_ms: r.at_ms,
                    outcome: r.outcome,
                }));
        }
        checkpoint
            .returns
            .extend(self.returns.into_iter().map(|(id, r)| {
                CheckpointReturn {
                    return_id: id,
                    at_ms: r.at_ms,
                    quarantined: r
                        .quarantined
                        .into_iter()
                        .map(|(sku, loc, q)| (sku, location(loc), q))
                        .collect(),
                }
            }));
        checkpoint
    }
}

impl Ledger {
    /// Copies the whole ledger at one LSN: [`Ledger::cut`], then [`Cut::into_checkpoint`].
    pub fn checkpoint(&self) -> Checkpoint {
        self.cut().into_checkpoint(self)
    }

    /// Clones the ledger's tables with every lock held (in protocol order), so the copy is an
    /// exact cut at one LSN. Writers wait while it copies (readers of other shards do not);
    /// only clones happen here, everything else in [`Cut::into_checkpoint`].
    pub fn cut(&self) -> Cut {
        // The records' buffers are sized and their pages touched before any lock is taken, one
        // shard lock at a time: filling fresh pages under every lock is what made the first
        // checkpoint of a process block writes for most of a second.
        let mut keys: Vec<Vec<(IdempotencyKey, KeyRecord)>> = self
            .keys
            .iter()
            .map(|shard| prefaulted(lock(shard).records.len()))
            .collect();

        let locked_at = std::time::Instant::now();
        let key_shards: Vec<_> = self.keys.iter().map(lock).collect();
        let hold_shards: Vec<_> = self.holds.iter().map(lock).collect();
        let returns = lock(&self.returns);
        let stores = lock(&self.stores);
        let position_shards: Vec<_> = self.positions.iter().map(lock).collect();
        let sequencer = lock(&self.sequencer);
        // Counter bumps, not copies: writers copy the chunks they touch until the cut is
        // dropped.
        let positions = position_shards.iter().map(|s| s.snapshot()).collect();
        let holds = hold_shards.iter().map(|s| s.entries.snapshot()).collect();
        // Collected, not cloned: a map's clone keeps the capacity of its largest size, which
        // after a purge can be many times what is live.
        for (records, shard) in keys.iter_mut().zip(&key_shards) {
            records.extend(shard.records.iter().map(|(k, r)| (k.clone(), r.clone())));
        }
        Cut {
            locked_for: locked_at.elapsed(),
            next_lsn: sequencer.next_lsn,
            last_at_ms: sequencer.last_at_ms,
            positions,
            holds,
            keys,
            returns: returns
                .by_id
                .iter()
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect(),
            stores: stores
                .by_id
                .iter()
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect(),
        }
    }

    /// A ledger in exactly the state `checkpoint` captured, appending new events to `log`
    /// (which must continue at `checkpoint.next_lsn`).
    pub fn from_checkpoint(
        config: LedgerConfig,
        log: Arc<dyn EventLog>,
        checkpoint: &Checkpoint,
    ) -> Result<Self, ReplayError> {
        let ledger = Ledger::new(config, log);
        let bad = |reason: String| ReplayError::Inapplicable {
            lsn: checkpoint.next_lsn,
            reason: format!("checkpoint: {reason}"),
        };
        for p in &checkpoint.positions {
            let location = LocationId(ledger.names.intern(Kind::Location, p.location.as_str()));
            let mut shard = lock(&ledger.positions[ledger.shard_of(p.sku.as_str())]);
            let position = shard.get_or_insert(&p.sku).position_or_insert(location);
            position.on_hand = p.on_hand;
            position.reserved = p.reserved;
            position.safety_stock = u32::try_from(p.safety_stock)
                .map_err(|_| bad(format!("safety stock of {} out of range", p.sku)))?;
            position.quarantined = p.quarantined;
        }
        for h in &checkpoint.holds {
            let channel = ChannelId(ledger.names.intern(Kind::Channel, h.channel.as_str()));
            let mut lines: SmallVec<[HoldLine; 4]> = SmallVec::new();
            for line in &h.lines {
                let location = ledger
                    .names
                    .get(Kind::Location, line.location.as_str())
                    .map(LocationId)
                    .ok_or_else(|| bad(format!("hold {} on unknown location", h.reservation_id)))?;
                let qty =
                    u32::try_from(line.qty).map_err(|_| bad("hold qty exceeds u32".into()))?;
                let hash = hash_key(line.sku.as_str());
                let shard_index = ledger.shard_of_hash(hash);
                let mut shard = lock(&ledger.positions[shard_index]);
                let slot = shard
                    .find(hash, line.sku.as_str())
                    .ok_or_else(|| bad(format!("hold {} on unknown sku", h.reservation_id)))?;
                if h.state == HoldState::Open {
                    shard.at_mut(slot).ladder_insert(
                        LadderKey {
                            expires_at_ms: h.expires_at_ms,
                            placed_lsn: h.placed_lsn,
                            location,
                        },
                        qty,
                    );
                }
                lines.push(HoldLine {
                    sku: sku_slot(shard_index, slot),
                    location,
                    qty,
                });
            }
            let mut shard = lock(&ledger.holds[ledger.shard_of(h.reservation_id.as_str())]);
            let slot = shard.slot_or_insert(h.reservation_id.as_str());
            let entry = shard.entries.at_mut(slot);
            if entry.hold.is_some() {
                return Err(bad(format!("hold {} listed twice", h.reservation_id)));
            }
            entry.place(
                Hold {
                    lines: HoldLines::new(&lines),
                    channel,
                    state: h.state,
                    expires_at_ms: h.expires_at_ms,
                    placed_lsn: h.placed_lsn,
                    placed_at_ms: h.placed_at_ms,
                    // Not listed: set below from the record of the command that ended it, if kept.
                    ended_lsn: Lsn::ZERO,
                    ended_at_ms: h.ended_at_ms,
                },
                &ledger.names,
            );
            if h.state == HoldState::Open {
                shard.expiry.insert((h.expires_at_ms, h.placed_lsn), slot);
            }
        }
        for k in &checkpoint.keys {
            let record = KeyRecord {
                fingerprint: k.fingerprint,
                lsn: k.lsn,
                at_ms: k.at_ms,
                outcome: k.outcome.clone(),
            };
            if record.fingerprint.kind != k.key.kind {
                return Err(bad(format!(
                    "key {} has a fingerprint of another kind",
                    k.key
                )));
            }
            let shard = ledger.shard_of(&k.key.id);
            if kept_with_hold(k.key.kind) {
                if !k.key.sub.is_empty() {
                    return Err(bad(format!("key {} has a sub id", k.key)));
                }
                let mut shard = lock(&ledger.holds[shard]);
                let slot = shard.slot_or_insert(&k.key.id);
                let entry = shard.entries.at_mut(slot);
                if let Some(hold) = &mut entry.hold
                    && hold.state != HoldState::Open
                    && hold.ended_lsn == Lsn::ZERO
                    && hold.ended_at_ms == record.at_ms
                    && matches!(
                        record.outcome,
                        Outcome::Committed { .. } | Outcome::Released | Outcome::Expired
                    )
                {
                    // Only the command that ended the hold has one of these outcomes.
                    hold.ended_lsn = record.lsn;
                }
                entry.set_record(
                    record.fingerprint,
                    record.lsn,
                    record.at_ms,
                    &record.outcome,
                );
                // A record is only derived if deriving gives it back exactly (the checkpoint
                // was not necessarily written by this code).
                if entry.record(k.key.kind, &ledger.names).as_ref() != Some(&record) {
                    entry.store(record);
                }
            } else {
                lock(&ledger.keys[shard])
                    .records
                    .insert(k.key.clone(), record);
            }
        }
        {
            let mut returns = lock(&ledger.returns);
            for r in &checkpoint.returns {
                let quarantined = r
                    .quarantined
                    .iter()
                    .map(|(sku, loc, q)| {
                        (
                            sku.clone(),
                            LocationId(ledger.names.intern(Kind::Location, loc.as_str())),
                            *q,
                        )
                    })
                    .collect();
                returns.by_id.insert(
                    r.return_id.clone(),
                    ReturnRecord {
                        at_ms: r.at_ms,
                        quarantined,
                    },
                );
            }
        }
        lock(&ledger.stores).by_id = checkpoint.stores.iter().cloned().collect();
        {
            let mut sequencer = lock(&ledger.sequencer);
            sequencer.next_lsn = checkpoint.next_lsn;
            sequencer.last_at_ms = checkpoint.last_at_ms;
        }
        ledger.raise_time_floor(checkpoint.last_at_ms);
        ledger.check_invariants().map_err(bad)?;
        Ok(ledger)
    }
}

/// An empty vector with room for `len` items and a little growth, its memory already written
/// once so that filling it later takes no page faults.
fn prefaulted<T>(len: usize) -> Vec<T> {
    // Room for what arrives between sizing and locking, so the fill rarely reallocates.
    let capacity = len + len / 16 + 16;
    let mut buffer = Vec::with_capacity(capacity);
    // One write per page is enough to fault it in.
    let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
    for place in buffer.spare_capacity_mut().iter_mut().step_by(per_page) {
        *place = std::mem::MaybeUninit::zeroed();
    }
    buffer
}
