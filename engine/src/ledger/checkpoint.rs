//! Checkpoints: the whole ledger at one LSN, as plain data.
//!
//! A checkpoint lets recovery start from a recent state instead of LSN 1: load the newest
//! checkpoint, then replay the log after it. It is taken with every lock held (in protocol
//! order), so it is an exact cut: the state after event `next_lsn - 1` and before any later
//! one. Copying is in memory and quick; encoding and writing happen after the locks are
//! released. Names are stored, not interned ids, because ids are assigned in first-seen order
//! and differ between processes. The outcomes the ledger keeps with their holds (Reserve,
//! Commit, Release) are listed as keys like every other, and loading puts them back with their
//! holds: where the ledger keeps a record is its own business, not the checkpoint's.

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

impl Ledger {
    /// Copies the whole ledger at one LSN. Writers wait while it copies (readers of other
    /// shards do not); for a million positions that is tens of milliseconds.
    pub fn checkpoint(&self) -> Checkpoint {
        let keys: Vec<_> = self.keys.iter().map(lock).collect();
        let holds: Vec<_> = self.holds.iter().map(lock).collect();
        let returns = lock(&self.returns);
        let stores = lock(&self.stores);
        let positions: Vec<_> = self.positions.iter().map(lock).collect();
        let sequencer = lock(&self.sequencer);

        let location = |id: LocationId| Location(self.names.name(Kind::Location, id.0));
        let mut checkpoint = Checkpoint {
            next_lsn: sequencer.next_lsn,
            last_at_ms: sequencer.last_at_ms,
            positions: Vec::new(),
            holds: Vec::new(),
            keys: Vec::new(),
            returns: Vec::new(),
            stores: stores
                .by_id
                .iter()
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect(),
        };
        for shard in &positions {
            for entry in shard.iter() {
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
        for shard in &holds {
            for (_, entry) in shard.entries.iter() {
                checkpoint
                    .keys
                    .extend(
                        entry
                            .records(&self.names)
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
                .entries
                .iter()
                .filter_map(|(_, e)| Some((&e.id, e.hold.as_ref()?)));
            checkpoint.holds.extend(holds.map(|(id, h)| {
                CheckpointHold {
                    reservation_id: id.clone(),
                    channel: Channel(self.names.name(Kind::Channel, h.channel.0)),
                    lines: h
                        .lines
                        .iter()
                        .map(|l| Line {
                            sku: positions[l.sku.shard()].at(l.sku.slot).sku.clone(),
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
        for shard in &keys {
            checkpoint
                .keys
                .extend(shard.records.iter().map(|(key, r)| CheckpointKey {
                    key: key.clone(),
                    fingerprint: r.fingerprint,
                    lsn: r.lsn,
                    at_ms: r.at_ms,
                    outcome: r.outcome.clone(),
                }));
        }
        checkpoint
            .returns
            .extend(returns.by_id.iter().map(|(id, r)| {
                CheckpointReturn {
                    return_id: id.clone(),
                    at_ms: r.at_ms,
                    quarantined: r
                        .quarantined
                        .iter()
                        .map(|(sku, loc, q)| (sku.clone(), location(*loc), *q))
                        .collect(),
                }
            }));
        checkpoint
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
