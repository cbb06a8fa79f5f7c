//! Where staged snapshots, their rows and their reports are kept: the [`SnapshotStore`]
//! interface, and [`MemSnapshotStore`] for tests and simulations. The durable store is
//! `RedbSnapshotStore` (feature `redb`), a file of its own beside the event log: snapshots
//! are large, derived from the ERP and not part of the ledger's state, so they stay out of
//! the log.
//!
//! An upload writes its rows as they arrive, chunk by chunk, so memory is bounded per chunk
//! and not per snapshot; only [`SnapshotStore::finish_upload`] makes the snapshot visible
//! (staged), and an upload that does not finish (a broken stream, a crash) leaves nothing: it
//! is aborted, or swept when the store is opened.

use super::report::StoredSnapshot;
use super::snapshot::SnapshotRow;
use crate::sync::{Mutex, lock};
use crate::types::{Location, Sku, SnapshotId};
use std::collections::{BTreeMap, BTreeSet};

/// Reports (and their snapshots' headers) kept; older ones are forgotten. Only finished
/// snapshots (reconciled or failed) are: forgetting a staged one would lose the ERP's count,
/// and dropping the rows of one being reconciled would make a FULL snapshot count every
/// position as omitted (0). A push is refused (`StoreError::Full`) while this many
/// snapshots are unfinished.
pub const SNAPSHOTS_KEPT_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The same snapshot id is being uploaded by another push right now.
    #[error("snapshot {0} is being pushed by another stream")]
    UploadInProgress(String),
    /// The snapshot is stored already (another push of the id finished first): an upload
    /// must not write over its rows. A push answers it as a retry (`Push::begin`).
    #[error("snapshot {0} is stored already")]
    AlreadyStored(String),
    /// A position appears twice in one snapshot; `index` is the second row's.
    #[error("rows[{index}]: position ({sku}, {location}) appears more than once")]
    DuplicateRow {
        index: u64,
        sku: String,
        location: String,
    },
    /// [`SNAPSHOTS_KEPT_MAX`] snapshots are staged and not reconciled yet.
    #[error("{0} snapshots are staged and not reconciled yet; reconcile them before pushing more")]
    Full(usize),
    #[error("snapshot store: {0}")]
    Io(String),
}

/// A position: rows are kept and read back in this order.
pub type PositionKey = (Sku, Location);

pub trait SnapshotStore: Send + Sync {
    /// Starts an upload of `snapshot_id`; refused (`AlreadyStored`) if it is stored.
    fn begin_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError>;
    /// Writes rows `first_index..` of an upload; refuses a position written before.
    fn put_rows(
        &self,
        snapshot_id: &SnapshotId,
        first_index: u64,
        rows: &[SnapshotRow],
    ) -> Result<(), StoreError>;
    /// Makes the upload's snapshot stored, durably, with `snapshot`'s header and status.
    fn finish_upload(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError>;
    /// Forgets an upload and its rows.
    fn abort_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError>;
    /// A stored snapshot with its status and report.
    fn get(&self, snapshot_id: &str) -> Result<Option<StoredSnapshot>, StoreError>;
    /// Updates a stored snapshot's status and report (durably).
    fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError>;
    /// Up to `max` rows of a stored snapshot after `after`, by position.
    fn rows_after(
        &self,
        snapshot_id: &SnapshotId,
        after: Option<&PositionKey>,
        max: usize,
    ) -> Result<Vec<SnapshotRow>, StoreError>;
    /// Whether a stored snapshot has a row for the position.
    fn contains(
        &self,
        snapshot_id: &SnapshotId,
        sku: &Sku,
        location: &Location,
    ) -> Result<bool, StoreError>;
    /// Frees a reconciled snapshot's rows (its header, checksum and report stay).
    fn drop_rows(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError>;
    /// Snapshots newest first (by the time they were staged, then id), after `before`.
    fn list(
        &self,
        before: Option<(u64, &SnapshotId)>,
        max: usize,
    ) -> Result<Vec<StoredSnapshot>, StoreError>;
}

/// Keeps everything in memory.
#[derive(Default)]
pub struct MemSnapshotStore {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    uploads: BTreeSet<SnapshotId>,
    rows: BTreeMap<SnapshotId, BTreeMap<PositionKey, SnapshotRow>>,
    snapshots: BTreeMap<SnapshotId, StoredSnapshot>,
}

impl MemSnapshotStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl SnapshotStore for MemSnapshotStore {
    fn begin_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        // Checked here, under the lock, and not only by the caller's `get` before: a push
        // of the same id that finished in between would otherwise have its rows deleted
        // (and its record overwritten by this upload's finish).
        if state.snapshots.contains_key(snapshot_id) {
            return Err(StoreError::AlreadyStored(snapshot_id.to_string()));
        }
        let unfinished = state.snapshots.values().filter(|s| !s.finished()).count();
        if unfinished >= SNAPSHOTS_KEPT_MAX {
            return Err(StoreError::Full(unfinished));
        }
        if !state.uploads.insert(snapshot_id.clone()) {
            return Err(StoreError::UploadInProgress(snapshot_id.to_string()));
        }
        state.rows.remove(snapshot_id);
        Ok(())
    }

    fn put_rows(
        &self,
        snapshot_id: &SnapshotId,
        first_index: u64,
        rows: &[SnapshotRow],
    ) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let table = state.rows.entry(snapshot_id.clone()).or_default();
        for (i, row) in rows.iter().enumerate() {
            let key = (row.sku.clone(), row.location.clone());
            if table.insert(key, row.clone()).is_some() {
                return Err(StoreError::DuplicateRow {
                    index: first_index + i as u64,
                    sku: row.sku.to_string(),
                    location: row.location.to_string(),
                });
            }
        }
        Ok(())
    }

    fn finish_upload(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let id = &snapshot.header.snapshot_id;
        state.uploads.remove(id);
        state.rows.entry(id.clone()).or_default();
        state.snapshots.insert(id.clone(), snapshot.clone());
        while state.snapshots.len() > SNAPSHOTS_KEPT_MAX {
            // The oldest finished one (see `SNAPSHOTS_KEPT_MAX`); none: keep them all.
            let Some(oldest) = state
                .snapshots
                .values()
                .filter(|s| s.finished())
                .min_by_key(|s| (s.staged_at_ms, s.header.snapshot_id.clone()))
                .map(|s| s.header.snapshot_id.clone())
            else {
                break;
            };
            state.snapshots.remove(&oldest);
            state.rows.remove(&oldest);
        }
        Ok(())
    }

    fn abort_upload(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        state.uploads.remove(snapshot_id);
        if !state.snapshots.contains_key(snapshot_id) {
            state.rows.remove(snapshot_id);
        }
        Ok(())
    }

    fn get(&self, snapshot_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(lock(&self.state).snapshots.get(snapshot_id).cloned())
    }

    fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let id = snapshot.header.snapshot_id.clone();
        state.snapshots.insert(id, snapshot.clone());
        Ok(())
    }

    fn rows_after(
        &self,
        snapshot_id: &SnapshotId,
        after: Option<&PositionKey>,
        max: usize,
    ) -> Result<Vec<SnapshotRow>, StoreError> {
        let state = lock(&self.state);
        let Some(rows) = state.rows.get(snapshot_id) else {
            return Ok(Vec::new());
        };
        let range = match after {
            Some(after) => rows.range((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => rows.range(..),
        };
        Ok(range.take(max).map(|(_, row)| row.clone()).collect())
    }

    fn contains(
        &self,
        snapshot_id: &SnapshotId,
        sku: &Sku,
        location: &Location,
    ) -> Result<bool, StoreError> {
        let state = lock(&self.state);
        let key = (sku.clone(), location.clone());
        Ok(state
            .rows
            .get(snapshot_id)
            .is_some_and(|rows| rows.contains_key(&key)))
    }

    fn drop_rows(&self, snapshot_id: &SnapshotId) -> Result<(), StoreError> {
        lock(&self.state).rows.remove(snapshot_id);
        Ok(())
    }

    fn list(
        &self,
        before: Option<(u64, &SnapshotId)>,
        max: usize,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        let state = lock(&self.state);
        let mut all: Vec<&StoredSnapshot> = state
            .snapshots
            .values()
            .filter(|s| {
                before.is_none_or(|(at, id)| (s.staged_at_ms, &s.header.snapshot_id) < (at, id))
            })
            .collect();
        all.sort_by(|a, b| {
            (b.staged_at_ms, &b.header.snapshot_id).cmp(&(a.staged_at_ms, &a.header.snapshot_id))
        });
        Ok(all.into_iter().take(max).cloned().collect())
    }
}
