//! The key archive: the disk tier of idempotency records and ended holds.
//!
//! The ledger keeps every record a retry may need for the retention window (7 days by
//! default). Kept in memory, a week of keys at peak is tens of gigabytes, so only a recent
//! window stays there; older records and ended holds are *evicted* to an archive and
//! *faulted back in* when a command or a read names them again. An in-memory index of 32-bit
//! fingerprints per ledger shard (`ledger/archived.rs`) says, without reading the disk, that a
//! key is new (the common case: every new reservation id), and a retry of an archived key
//! reads exactly one entry.
//!
//! The archive is a cache of state the log already determines, with one rule that keeps
//! recovery exact: an entry is only evicted once a durable checkpoint covers its last change
//! (see `Ledger::evict`). Recovery loads that checkpoint (which may still hold the entry in
//! memory: memory wins), replays the log after it (which faults entries in as live writes
//! do), and rebuilds the fingerprint index from the archive's keys; it never loads the
//! archive's entries.
//!
//! This module is the interface and an in-memory implementation ([`MemArchive`], for tests
//! and simulations); `redb.rs` is the durable one (`keys.redb` beside the log).

#[cfg(feature = "redb")]
pub mod redb;

use crate::checkpoint::{CheckpointHold, CheckpointKey};
use crate::command::IdempotencyKey;
use crate::error::LogError;
use crate::types::{Lsn, ReservationId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// One entry to store: its key (see [`hold_key`], [`record_key`]), the newest decision time
/// inside it (what retention judges it by) and its encoding ([`encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedBytes {
    pub key: Vec<u8>,
    pub newest_at_ms: u64,
    pub value: Vec<u8>,
}

/// What an archive holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub entries: u64,
    /// Bytes of the archive's file (0 in memory).
    pub file_bytes: u64,
}

/// Where evicted entries are kept. Every method may block on the disk; the ledger calls them
/// only from maintenance (put, purge) and, for `get`, when the fingerprint index says a key a
/// command names may be archived.
pub trait KeyArchive: Send + Sync {
    /// Stores `entries` durably (each replacing whatever is stored under its key). Returns,
    /// per entry in order, whether its key was new to the archive: the index counts keys, so
    /// it must not count a replaced one twice.
    fn put(&self, entries: &[ArchivedBytes]) -> Result<Vec<bool>, LogError>;
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError>;
    /// Removes up to `max` entries whose `newest_at_ms` is below `before_ms`, oldest first, and
    /// returns their keys. Need not be durable: a purge lost to a crash is done again.
    fn purge(&self, before_ms: u64, max: usize) -> Result<Vec<Vec<u8>>, LogError>;
    /// Calls `visit` with every stored key, in any order (recovery rebuilds the index).
    fn for_each_key(&self, visit: &mut dyn FnMut(&[u8])) -> Result<(), LogError>;
    fn stats(&self) -> ArchiveStats;
}

/// An evicted entry, as the archive stores it (names, not interned ids, as in a checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchivedEntry {
    /// Everything kept under a reservation id: its ended hold (unless past retention) and the
    /// records of its Reserve, Commit and Release.
    Hold {
        reservation_id: ReservationId,
        hold: Option<CheckpointHold>,
        records: Vec<CheckpointKey>,
        /// The LSN of the entry's last change.
        last_lsn: Lsn,
    },
    /// A record kept in the key shards (every other keyed command).
    Record(CheckpointKey),
}

impl ArchivedEntry {
    /// The LSN of the entry's last change.
    pub fn last_lsn(&self) -> Lsn {
        match self {
            ArchivedEntry::Hold { last_lsn, .. } => *last_lsn,
            ArchivedEntry::Record(record) => record.lsn,
        }
    }
}

/// The archive key of the entry under reservation id `id`.
pub fn hold_key(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(b'H');
    key.extend_from_slice(id.as_bytes());
    key
}

/// The archive key of a record kept in the key shards: kind, the id's length, id, sub id.
pub fn record_key(key: &IdempotencyKey) -> Vec<u8> {
    let (id, sub) = (key.id.as_bytes(), key.sub.as_bytes());
    let mut bytes = Vec::with_capacity(3 + id.len() + sub.len());
    bytes.push(b'K');
    bytes.push(key.kind as u8);
    // Ids are at most `ID_BYTES_MAX` (128) bytes, so one byte holds the length.
    bytes.push(u8::try_from(id.len()).expect("ids are at most 128 bytes"));
    bytes.extend_from_slice(id);
    bytes.extend_from_slice(sub);
    bytes
}

/// The version byte of an encoded [`ArchivedEntry`] (2: holds and fingerprints name their
/// principals; version 1 is not read).
pub const ARCHIVE_FORMAT_VERSION: u8 = 2;

/// One version byte, then postcard of the entry (as a checkpoint; see `log::encoding`).
pub fn encode(entry: &ArchivedEntry) -> Result<Vec<u8>, LogError> {
    let mut bytes = vec![ARCHIVE_FORMAT_VERSION];
    postcard::to_io(entry, &mut bytes)
        .map_err(|e| LogError::Io(format!("encoding an archived entry: {e}")))?;
    Ok(bytes)
}

pub fn decode(bytes: &[u8]) -> Result<ArchivedEntry, LogError> {
    match bytes.split_first() {
        Some((&ARCHIVE_FORMAT_VERSION, payload)) => {
            let (entry, rest) = postcard::take_from_bytes(payload)
                .map_err(|e| LogError::Corrupt(format!("archived entry: {e}")))?;
            if !rest.is_empty() {
                return Err(LogError::Corrupt(format!(
                    "archived entry: {} trailing bytes",
                    rest.len()
                )));
            }
            Ok(entry)
        }
        Some((version, _)) => Err(LogError::Corrupt(format!(
            "archived entry of unknown format {version}"
        ))),
        None => Err(LogError::Corrupt("empty archived entry".to_owned())),
    }
}

/// An archive in memory: the same contract, for tests and simulations.
#[derive(Default)]
pub struct MemArchive {
    inner: Mutex<MemInner>,
}

#[derive(Default)]
struct MemInner {
    entries: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    by_time: BTreeSet<(u64, Vec<u8>)>,
}

impl MemArchive {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The archive's own lock (std's, also under loom: no ledger lock is ever taken inside it).
fn lock(mutex: &Mutex<MemInner>) -> std::sync::MutexGuard<'_, MemInner> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeyArchive for MemArchive {
    fn put(&self, entries: &[ArchivedBytes]) -> Result<Vec<bool>, LogError> {
        let mut inner = lock(&self.inner);
        Ok(entries
            .iter()
            .map(|e| {
                let old = inner
                    .entries
                    .insert(e.key.clone(), (e.newest_at_ms, e.value.clone()));
                if let Some((at_ms, _)) = &old {
                    inner.by_time.remove(&(*at_ms, e.key.clone()));
                }
                inner.by_time.insert((e.newest_at_ms, e.key.clone()));
                old.is_none()
            })
            .collect())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        let inner = lock(&self.inner);
        Ok(inner.entries.get(key).map(|(_, value)| value.clone()))
    }

    fn purge(&self, before_ms: u64, max: usize) -> Result<Vec<Vec<u8>>, LogError> {
        let mut inner = lock(&self.inner);
        let due: Vec<(u64, Vec<u8>)> = inner
            .by_time
            .range(..(before_ms, Vec::new()))
            .take(max)
            .cloned()
            .collect();
        for item in &due {
            inner.by_time.remove(item);
            inner.entries.remove(&item.1);
        }
        Ok(due.into_iter().map(|(_, key)| key).collect())
    }

    fn for_each_key(&self, visit: &mut dyn FnMut(&[u8])) -> Result<(), LogError> {
        let inner = lock(&self.inner);
        inner.entries.keys().for_each(|key| visit(key));
        Ok(())
    }

    fn stats(&self) -> ArchiveStats {
        ArchiveStats {
            entries: lock(&self.inner).entries.len() as u64,
            file_bytes: 0,
        }
    }
}
