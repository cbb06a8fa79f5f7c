//! Pushing a snapshot: rows are checked and written as they arrive, and the snapshot is staged
//! only once the stream ends with a summary that matches what arrived. A push that breaks off,
//! is cancelled, or miscounts stages nothing. The snapshot id is the idempotency key: a push
//! of a stored id is checked against it instead of written, and answered with the original
//! (same content) or refused naming what differs.

use super::report::{SnapshotStatus, StoredSnapshot};
use super::snapshot::{
    RowDigest, SNAPSHOT_CHUNK_ROWS_MAX, SNAPSHOT_ROWS_MAX, SnapshotHeader, SnapshotRow,
    SnapshotSummary,
};
use super::store::{SnapshotStore, StoreError};
use crate::error::Violations;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The header or a chunk of rows is malformed: every violation, header fields named as
    /// the header's (`as_of_ms`), rows by their index in the whole snapshot (`rows[12].sku`).
    #[error(transparent)]
    Invalid(#[from] Violations),
    /// The snapshot id is stored with other content; `field` names what differs.
    #[error("snapshot {snapshot_id} was pushed before with a different {field}")]
    Conflict { snapshot_id: String, field: String },
    /// The stream's summary does not match the rows that arrived.
    #[error("the push is incomplete: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a finished push answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub snapshot: StoredSnapshot,
    /// True when the snapshot was stored already (a retry): nothing was written.
    pub duplicate: bool,
}

/// One push in progress. Dropped unfinished, it leaves nothing staged.
pub struct Push<'s> {
    store: &'s dyn SnapshotStore,
    header: SnapshotHeader,
    digest: RowDigest,
    /// `Some`: the id is stored already; the push is compared with it, not written.
    stored: Option<StoredSnapshot>,
    finished: bool,
}

impl<'s> Push<'s> {
    /// Starts a push of `header`. A new snapshot must lie within the history the engine keeps
    /// (`history_start_ms` on, at `now_ms`); a retry of a stored one is compared instead.
    pub fn begin(
        store: &'s dyn SnapshotStore,
        header: SnapshotHeader,
        now_ms: u64,
        history_start_ms: u64,
    ) -> Result<Self, PushError> {
        let mut stored = store.get(header.snapshot_id.as_str())?;
        if stored.is_none() {
            header.validate(now_ms, history_start_ms)?;
            match store.begin_upload(&header.snapshot_id) {
                Ok(()) => {}
                // Another push of the id finished since `get`: this one is its retry.
                Err(error @ StoreError::AlreadyStored(_)) => {
                    stored = Some(store.get(header.snapshot_id.as_str())?.ok_or(error)?);
                }
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(stored) = &stored
            && let Some(field) = header_difference(&stored.header, &header)
        {
            return Err(PushError::Conflict {
                snapshot_id: header.snapshot_id.to_string(),
                field: format!("header.{field}"),
            });
        }
        Ok(Self {
            store,
            header,
            digest: RowDigest::default(),
            stored,
            finished: false,
        })
    }

    /// Takes the next chunk of rows (at most [`SNAPSHOT_CHUNK_ROWS_MAX`]).
    pub fn rows(&mut self, rows: &[SnapshotRow]) -> Result<(), PushError> {
        if rows.len() > SNAPSHOT_CHUNK_ROWS_MAX {
            return Err(Violations::one(
                "chunk.rows",
                format!("more than {SNAPSHOT_CHUNK_ROWS_MAX} rows in one chunk"),
            )
            .into());
        }
        let first = self.digest.rows();
        if first + rows.len() as u64 > SNAPSHOT_ROWS_MAX {
            return Err(
                Violations::one("rows", format!("more than {SNAPSHOT_ROWS_MAX} rows")).into(),
            );
        }
        // The whole chunk is checked before any of it is taken, so every bad row is named.
        let mut violations = Violations::new();
        for (i, row) in rows.iter().enumerate() {
            self.header
                .check_row(first + i as u64, row, &mut violations);
        }
        violations.into_result()?;
        for row in rows {
            self.digest.add(row);
        }
        if self.stored.is_none() {
            self.store.put_rows(&self.header.snapshot_id, first, rows)?;
        }
        Ok(())
    }

    /// Ends the push: the client's summary must match what arrived. Stages the snapshot, or
    /// answers the stored one.
    pub fn finish(mut self, summary: &SnapshotSummary, now_ms: u64) -> Result<Pushed, PushError> {
        self.finished = true;
        let arrived = std::mem::take(&mut self.digest).finish();
        if summary.rows != arrived.rows {
            self.abort();
            return Err(PushError::Incomplete(format!(
                "the summary counts {} rows, {} arrived",
                summary.rows, arrived.rows
            )));
        }
        if !summary.checksum.eq_ignore_ascii_case(&arrived.checksum) {
            self.abort();
            return Err(PushError::Incomplete(format!(
                "the summary's checksum {} is not that of the rows that arrived ({})",
                summary.checksum, arrived.checksum
            )));
        }
        if let Some(stored) = self.stored.take() {
            if stored.summary != arrived {
                return Err(PushError::Conflict {
                    snapshot_id: stored.header.snapshot_id.to_string(),
                    field: "rows".into(),
                });
            }
            return Ok(Pushed {
                snapshot: stored,
                duplicate: true,
            });
        }
        let snapshot = StoredSnapshot {
            header: self.header.clone(),
            summary: arrived,
            staged_at_ms: now_ms,
            status: SnapshotStatus::Staged,
            report: None,
        };
        if let Err(error) = self.store.finish_upload(&snapshot) {
            self.abort();
            return Err(error.into());
        }
        Ok(Pushed {
            snapshot,
            duplicate: false,
        })
    }

    fn abort(&self) {
        if self.stored.is_none() {
            // Best effort: an upload left behind is swept when the store is next opened.
            let _ = self.store.abort_upload(&self.header.snapshot_id);
        }
    }
}

impl Drop for Push<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}

/// The first header field in which `b` differs from `a`.
fn header_difference(a: &SnapshotHeader, b: &SnapshotHeader) -> Option<&'static str> {
    if a.as_of_ms != b.as_of_ms {
        Some("as_of_ms")
    } else if a.scope != b.scope {
        Some("scope")
    } else if a.mode != b.mode {
        Some("mode")
    } else if a.source != b.source {
        Some("source")
    } else {
        None
    }
}
