//! The durable snapshot store: `<dir>/snapshots.redb`, beside the event log.
//!
//! # Tables
//! - `snapshots` (`&str` id -> postcard of `StoredSnapshot`): every stored snapshot with its
//!   status and report; at most [`SNAPSHOTS_KEPT_MAX`], the oldest finished (reconciled
//!   or failed) forgotten first, never a staged one (see `SNAPSHOTS_KEPT_MAX`).
//! - `staged_order` (`(u64 staged_at_ms, &str id)` -> `()`): the same, in the order listed.
//! - `rows` (`&[u8]` key -> `(i64 on_hand, u64 safety_stock)`): the rows of stored
//!   snapshots and of uploads in progress. The key is `id \0 sku \0 location` (ids hold no
//!   control characters, so this sorts by id, then sku, then location); a safety stock of
//!   `u64::MAX` means none.
//! - `uploads` (`&str` id -> `u64`): uploads in progress. Their rows are written with
//!   `Durability::None` as chunks arrive; `finish_upload` removes the entry and stores the
//!   snapshot in one fsync'd commit. An upload still listed when the store is opened was cut
//!   short by a crash: its rows are deleted then.
//!
//! A failed commit leaves the store as it was before it (redb's transactions); the caller
//! answers the push with an error and the ERP pushes again.

use super::report::StoredSnapshot;
use super::snapshot::SnapshotRow;
use super::store::{PositionKey, SNAPSHOTS_KEPT_MAX, SnapshotStore, StoreError};
use crate::types::{Location, Sku, SnapshotId};
use ::redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// The store's file, inside the data folder.
pub const SNAPSHOTS_FILE_NAME: &str = "snapshots.redb";

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const STAGED_ORDER: TableDefinition<(u64, &str), ()> = TableDefinition::new("staged_order");
const ROWS: TableDefinition<&[u8], (i64, u64)> = TableDefinition::new("rows");
const UPLOADS: TableDefinition<&str, u64> = TableDefinition::new("uploads");

pub struct RedbSnapshotStore {
    db: Database,
    path: PathBuf,
}

fn row_key(id: &str, sku: &str, location: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + sku.len() + location.len() + 2);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key.extend_from_slice(sku.as_bytes());
    key.push(0);
    key.extend_from_slice(location.as_bytes());
    key
}

/// Every row key of snapshot `id`: `id \0 ..` up to (not including) `id \1`.
fn row_range(id: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = id.as_bytes().to_vec();
    start.push(0);
    let mut end = id.as_bytes().to_vec();
    end.push(1);
    (start, end)
}

fn row_of(key: &[u8], value: (i64, u64)) -> Option<SnapshotRow> {
    let mut parts = key.split(|&b| b == 0);
    let (_, sku, location) = (parts.next()?, parts.next()?, parts.next()?);
    Some(SnapshotRow {
        sku: Sku::from(std::str::from_utf8(sku).ok()?),
        location: Location::from(std::str::from_utf8(location).ok()?),
        on_hand: value.0,
        safety_stock: (value.1 != u64::MAX).then_some(value.1),
    })
}

impl RedbSnapshotStore {
    /// Opens (or creates) the store in `dir`, and deletes the rows of uploads a crash cut
    /// short.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(SNAPSHOTS_FILE_NAME);
        std::fs::create_dir_all(dir).map_err(|e| io(&path, "create the folder", &e))?;
        let db = Database::create(&path).map_err(|e| io(&path, "open", &e))?;
        let store = Self { db, path };
        store.write(Durability::Immediate, |txn| {
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(STAGED_ORDER)?;
            txn.open_table(ROWS)?;
            let mut uploads = txn.open_table(UPLOADS)?;
            let cut_short: Vec<String> = uploads
                .iter()?
                .map(|e| e.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()?;
            let mut rows = txn.open_table(ROWS)?;
            for id in cut_short {
                let (start, end) = row_range(&id);
                rows.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
                uploads.remove(id.as_str())?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    fn write<T>(
        &self,
        durability: Durability,
        body: impl FnOnce(&::redb::WriteTransaction) -> Result<T, ::redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, ::redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(durability)
                .map_err(|e| ::redb::Error::Io(std::io::Error::other(e.to_string())))?;
            let value = body(&txn)?;
            txn.commit()?;
            Ok(value)
        };
        run().map_err(|e| io(&self.path, "write", &e))
    }

    fn read<T>(
        &self,
        body: impl FnOnce(&::redb::ReadTransaction) -> Result<T, ::redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, ::redb::Error> { body(&self.db.begin_read()?) };
        run().map_err(|e| io(&self.path, "read", &e))
    }
}

fn io(path: &Path, what: &str, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{}: {what}: {error}", path.display()))
}

fn encode(snapshot: &StoredSnapshot) -> Result<Vec<u8>, ::redb::Error> {
    postcard::to_stdvec(snapshot)
        .map_err(|e| ::redb::Error::Io(std::io::Error::other(e.to_string())))
}

fn decode(bytes: &[u8]) -> Result<StoredSnapshot, ::redb::Error> {
    postcard::from_bytes(bytes).map_err(|e| ::redb::Error::Corrupted(e.to_string()))
}

impl SnapshotStore for RedbSnapshotStore {
    fn begin_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        let id = snapshot_id.as_str();
        // In the same write transaction as the upload's entry, not only the caller's `get`
        // before it: a push of the same id that finished in between would otherwise get
        // this upload's rows mixed into its own, and its record overwritten.
        let refused = self.write(Durability::Immediate, |txn| {
            let snapshots = txn.open_table(SNAPSHOTS)?;
            if snapshots.get(id)?.is_some() {
                return Ok(Some(StoreError::AlreadyStored(id.to_owned())));
            }
            let mut unfinished = 0;
            for entry in snapshots.iter()? {
                if !decode(entry?.1.value())?.finished() {
                    unfinished += 1;
                }
            }
            if unfinished >= SNAPSHOTS_KEPT_MAX {
                return Ok(Some(StoreError::Full(unfinished)));
            }
            drop(snapshots);
            let mut uploads = txn.open_table(UPLOADS)?;
            if uploads.get(id)?.is_some() {
                return Ok(Some(StoreError::UploadInProgress(id.to_owned())));
            }
            uploads.insert(id, 0)?;
            Ok(None)
        })?;
        refused.map_or(Ok(()), Err)
    }

    fn put_rows(
        &self,
        snapshot_id: &SnapshotId,
        first_index: u64,
        rows: &[SnapshotRow],
    ) -> Result<(), StoreError> {
        let id = snapshot_id.as_str();
        let duplicate = self.write(Durability::None, |txn| {
            let mut table = txn.open_table(ROWS)?;
            for (i, row) in rows.iter().enumerate() {
                let key = row_key(id, row.sku.as_str(), row.location.as_str());
                let value = (row.on_hand, row.safety_stock.unwrap_or(u64::MAX));
                if table.insert(key.as_slice(), value)?.is_some() {
                    return Ok(Some(first_index + i as u64));
                }
            }
            Ok(None)
        })?;
        match duplicate {
            None => Ok(()),
            Some(index) => {
                let row = &rows[(index - first_index) as usize];
                Err(StoreError::DuplicateRow {
                    index,
                    sku: row.sku.to_string(),
                    location: row.location.to_string(),
                })
            }
        }
    }

    fn finish_upload(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let id = snapshot.header.snapshot_id.as_str();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(UPLOADS)?.remove(id)?;
            txn.open_table(SNAPSHOTS)?
                .insert(id, encode(snapshot)?.as_slice())?;
            let mut order = txn.open_table(STAGED_ORDER)?;
            order.insert((snapshot.staged_at_ms, id), ())?;
            // Forget the oldest finished ones beyond the limit, rows and all (see
            // `SNAPSHOTS_KEPT_MAX`: never one that is staged or being reconciled).
            let excess = order.len()?.saturating_sub(SNAPSHOTS_KEPT_MAX as u64);
            if excess > 0 {
                let mut forget = Vec::new();
                {
                    let snapshots = txn.open_table(SNAPSHOTS)?;
                    for entry in order.iter()? {
                        if forget.len() as u64 >= excess {
                            break;
                        }
                        let (key, _) = entry?;
                        let (at, old) = (key.value().0, key.value().1.to_owned());
                        let finished = match snapshots.get(old.as_str())? {
                            Some(value) => decode(value.value())?.finished(),
                            None => true,
                        };
                        if finished {
                            forget.push((at, old));
                        }
                    }
                }
                for (at, old) in forget {
                    order.remove((at, old.as_str()))?;
                    txn.open_table(SNAPSHOTS)?.remove(old.as_str())?;
                    let (start, end) = row_range(&old);
                    txn.open_table(ROWS)?
                        .retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
                }
            }
            Ok(())
        })
    }

    fn abort_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        let id = snapshot_id.as_str();
        self.write(Durability::Immediate, |txn| {
            if txn.open_table(UPLOADS)?.remove(id)?.is_none() {
                return Ok(());
            }
            let (start, end) = row_range(id);
            txn.open_table(ROWS)?
                .retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
            Ok(())
        })
    }

    fn get(&self, snapshot_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(SNAPSHOTS)?;
            let value = table.get(snapshot_id)?;
            value.map(|v| decode(v.value())).transpose()
        })
    }

    fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let id = snapshot.header.snapshot_id.as_str();
        self.write(Durability::Immediate, |txn| {
            txn.open_table(SNAPSHOTS)?
                .insert(id, encode(snapshot)?.as_slice())?;
            Ok(())
        })
    }

    fn rows_after(
        &self,
        snapshot_id: &SnapshotId,
        after: Option<&PositionKey>,
        max: usize,
    ) -> Result<Vec<SnapshotRow>, StoreError> {
        let id = snapshot_id.as_str();
        let (start, end) = row_range(id);
        let from = after.map(|(sku, location)| row_key(id, sku.as_str(), location.as_str()));
        let lower = match &from {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Included(start.as_slice()),
        };
        self.read(|txn| {
            let table = txn.open_table(ROWS)?;
            let mut rows = Vec::with_capacity(max.min(4_096));
            for entry in table.range::<&[u8]>((lower, Bound::Excluded(end.as_slice())))? {
                if rows.len() >= max {
                    break;
                }
                let (key, value) = entry?;
                let row = row_of(key.value(), value.value())
                    .ok_or_else(|| ::redb::Error::Corrupted("a malformed row key".into()))?;
                rows.push(row);
            }
            Ok(rows)
        })
    }

    fn contains(
        &self,
        snapshot_id: &SnapshotId,
        sku: &Sku,
        location: &Location,
    ) -> Result<bool, StoreError> {
        let key = row_key(snapshot_id.as_str(), sku.as_str(), location.as_str());
        self.read(|txn| Ok(txn.open_table(ROWS)?.get(key.as_slice())?.is_some()))
    }

    fn drop_rows(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        let (start, end) = row_range(snapshot_id.as_str());
        self.write(Durability::Immediate, |txn| {
            txn.open_table(ROWS)?
                .retain_in(start.as_slice()..end.as_slice(), |_, _| false)?;
            Ok(())
        })
    }

    fn list(
        &self,
        before: Option<(u64, &SnapshotId)>,
        max: usize,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        self.read(|txn| {
            let order = txn.open_table(STAGED_ORDER)?;
            let snapshots = txn.open_table(SNAPSHOTS)?;
            let upper = match before {
                Some((at, id)) => Bound::Excluded((at, id.as_str())),
                None => Bound::Unbounded,
            };
            let mut listed = Vec::new();
            for entry in order.range::<(u64, &str)>((Bound::Unbounded, upper))?.rev() {
                if listed.len() >= max {
                    break;
                }
                let (key, _) = entry?;
                if let Some(value) = snapshots.get(key.value().1)? {
                    listed.push(decode(value.value())?);
                }
            }
            Ok(listed)
        })
    }
}
