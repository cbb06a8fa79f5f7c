//! Checkpoint storage: staging a checkpoint's chunks beside the stored one, the switch to it,
//! sweeping the replaced generation's chunks, trimming the records it covers, and loading the
//! stored one. The writer thread (`writer.rs`) decides when, and owns the transactions; this
//! file says what each one writes. The module doc of [`super`] explains the scheme.

use super::layout::{
    CHECKPOINT, CHECKPOINT_BYTES_KEY, CHECKPOINT_CHUNK_BYTES, CHECKPOINT_CHUNKS_KEY,
    CHECKPOINT_GENERATION_KEY, CHECKPOINT_NEXT_LSN_KEY, CHECKPOINT_XXH3_KEY, EVENTS,
    HISTORY_START_LSN_KEY, META, chunk_index, chunk_key, generation_keys,
};
use crate::checkpoint::Checkpoint;
use crate::error::LogError;
use crate::log::encoding;
use crate::types::Lsn;
use ::redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, StorageError, WriteTransaction,
};
use crossbeam_channel::Sender;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

/// Chunks the writer stages per commit: about 4 MiB, a few ms of writing, so event batches
/// committed meanwhile wait at most that long for a checkpoint.
pub const CHECKPOINT_STAGE_CHUNKS_PER_COMMIT: u64 = 4;
/// Stale chunks (of the previous checkpoint) deleted per commit after a switch.
pub const CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT: usize = 4;
/// Event records below the checkpoint deleted per commit after a switch: about 4 MiB.
pub const TRIM_RECORDS_PER_COMMIT: usize = 64;

/// An encoded checkpoint on its way to the writer, and where to send the result.
pub(super) struct CheckpointWrite {
    pub(super) next_lsn: u64,
    /// The first LSN the log keeps for history (see `HISTORY_START_LSN_KEY`).
    pub(super) history_start: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) reply: Sender<Result<(), LogError>>,
}

/// A checkpoint the writer is staging into the generation the stored one is not in.
pub(super) struct Staging {
    pub(super) next_lsn: u64,
    pub(super) history_start: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) reply: Sender<Result<(), LogError>>,
    pub(super) generation: u64,
    /// Chunks committed so far.
    staged: u64,
    pub(super) started: Instant,
}

/// The writer's view of the checkpoint table: the stored checkpoint, the one being staged, and
/// what is left to sweep and trim.
pub(super) struct Checkpoints {
    /// The stored checkpoint's `next_lsn` (0: none).
    pub(super) lsn: u64,
    /// The generation the stored checkpoint's chunks are in (see [`chunk_key`]).
    generation: u64,
    /// The checkpoint being staged, a few chunks per commit.
    pub(super) staging: Option<Staging>,
    /// A generation whose chunks are stale (a replaced checkpoint's), deleted a few per commit.
    sweep_generation: Option<u64>,
    /// Event records with a key below this are covered by the stored checkpoint and deleted a
    /// few per commit (0: none).
    trim_below: u64,
}

/// Words a failure of `what` as the log's failure.
pub(super) type Fail<'a> = &'a dyn Fn(&str, &dyn fmt::Display) -> String;

impl Checkpoints {
    /// The state open found: the stored checkpoint (`lsn` 0: none) in `generation`, and the
    /// records below `trim_below` left to trim.
    pub(super) fn new(lsn: u64, generation: u64, trim_below: u64) -> Checkpoints {
        Checkpoints {
            lsn,
            generation,
            staging: None,
            sweep_generation: None,
            trim_below,
        }
    }

    /// Takes a checkpoint to stage (none may be staging), given the LSN the next event will
    /// have; or answers it at once if the log cannot hold it, or the stored one covers it.
    pub(super) fn take(&mut self, write: CheckpointWrite, next_lsn: u64) {
        debug_assert!(self.staging.is_none(), "one checkpoint at a time");
        let CheckpointWrite {
            next_lsn: at,
            history_start,
            bytes,
            reply,
        } = write;
        if at == 0 || at > next_lsn {
            // Nothing is written: the caller asked for something the log cannot hold.
            let _ = reply.send(Err(LogError::OutOfOrder {
                expected: Lsn(next_lsn),
                got: Lsn(at),
            }));
            return;
        }
        if at <= self.lsn {
            // The stored checkpoint is at least as new; it already covers this one.
            let _ = reply.send(Ok(()));
            return;
        }
        // Without a stored checkpoint both generations are free (open deleted every chunk).
        let generation = if self.lsn == 0 {
            0
        } else {
            1 - self.generation
        };
        if self.sweep_generation == Some(generation) {
            // The first staging commit clears the whole range.
            self.sweep_generation = None;
        }
        self.staging = Some(Staging {
            next_lsn: at,
            history_start: history_start.min(at),
            bytes,
            reply,
            generation,
            staged: 0,
            started: Instant::now(),
        });
    }

    /// Whether chunks of a replaced checkpoint or records below the stored one remain.
    pub(super) fn has_leftovers(&self) -> bool {
        self.sweep_generation.is_some() || self.trim_below > 0
    }

    /// Writes the next chunks of the checkpoint being staged (if any) in `txn`; returns
    /// whether every chunk is then written.
    pub(super) fn stage_chunks(
        &mut self,
        txn: &WriteTransaction,
        path: &Path,
    ) -> Result<bool, String> {
        let Some(staging) = self.staging.as_mut() else {
            return Ok(false);
        };
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of the checkpoint at lsn {} failed: {error}",
                path.display(),
                staging.next_lsn
            )
        };
        let mut chunks = txn.open_table(CHECKPOINT).map_err(|e| fail("open", &e))?;
        let range = generation_keys(staging.generation);
        if staging.staged == 0 {
            // Left by an unfinished staging before a crash, or by the checkpoint before the
            // stored one.
            chunks
                .retain_in(range, |_, _| false)
                .map_err(|e| fail("clear the staging range", &e))?;
        }
        let total = staging.bytes.len().div_ceil(CHECKPOINT_CHUNK_BYTES) as u64;
        let end = (staging.staged + CHECKPOINT_STAGE_CHUNKS_PER_COMMIT).min(total);
        for index in staging.staged..end {
            let from = index as usize * CHECKPOINT_CHUNK_BYTES;
            let to = (from + CHECKPOINT_CHUNK_BYTES).min(staging.bytes.len());
            chunks
                .insert(
                    chunk_key(staging.generation, index),
                    &staging.bytes[from..to],
                )
                .map_err(|e| fail("insert chunk", &e))?;
        }
        staging.staged = end;
        Ok(end == total)
    }

    /// Deletes in `txn` a few chunks of the stale generation and a few event records below
    /// the stored checkpoint; readers skip both.
    pub(super) fn sweep(&mut self, txn: &WriteTransaction, path: &Path) -> Result<(), String> {
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!("{}: {what} failed: {error}", path.display())
        };
        if let Some(generation) = self.sweep_generation {
            let mut chunks = txn
                .open_table(CHECKPOINT)
                .map_err(|e| fail("open chunks", &e))?;
            let keys = first_keys(
                &chunks,
                generation_keys(generation),
                CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT + 1,
            )
            .map_err(|e| fail("find stale chunks", &e))?;
            for &key in keys.iter().take(CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT) {
                chunks
                    .remove(key)
                    .map_err(|e| fail("delete a stale chunk", &e))?;
            }
            if keys.len() <= CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT {
                self.sweep_generation = None;
            }
        }
        if self.trim_below > 0 {
            let mut events = txn
                .open_table(EVENTS)
                .map_err(|e| fail("open events", &e))?;
            let keys = first_keys(&events, 0..self.trim_below, TRIM_RECORDS_PER_COMMIT)
                .map_err(|e| fail("find records to trim", &e))?;
            for key in keys {
                events.remove(key).map_err(|e| fail("trim", &e))?;
            }
        }
        Ok(())
    }

    /// Deletes in `txn` whatever stale chunks and records below the checkpoint are left (at
    /// close); returns whether there was anything to delete.
    pub(super) fn sweep_rest(
        &mut self,
        txn: &WriteTransaction,
        fail: Fail<'_>,
    ) -> Result<bool, String> {
        let mut deleted = false;
        if let Some(generation) = self.sweep_generation.take() {
            let mut chunks = txn
                .open_table(CHECKPOINT)
                .map_err(|e| fail("open chunks", &e))?;
            let range = generation_keys(generation);
            if !first_keys(&chunks, range.clone(), 1)
                .map_err(|e| fail("find stale chunks", &e))?
                .is_empty()
            {
                chunks
                    .retain_in(range, |_, _| false)
                    .map_err(|e| fail("delete stale chunks", &e))?;
                deleted = true;
            }
        }
        let mut events = txn
            .open_table(EVENTS)
            .map_err(|e| fail("open events", &e))?;
        if !first_keys(&events, 0..self.trim_below, 1)
            .map_err(|e| fail("find records to trim", &e))?
            .is_empty()
        {
            events
                .retain_in(..self.trim_below, |_, _| false)
                .map_err(|e| fail("trim", &e))?;
            deleted = true;
        }
        Ok(deleted)
    }

    /// Notes the switch to `staging`, committed with the records below `cut` to trim: it is
    /// the stored checkpoint now, and the generation it replaced is stale.
    pub(super) fn switched(&mut self, staging: &Staging, cut: u64) {
        self.sweep_generation = Some(1 - staging.generation);
        self.generation = staging.generation;
        self.trim_below = self.trim_below.max(cut);
        self.lsn = staging.next_lsn;
    }
}

/// Writes in `txn` the meta rows that make the fully staged checkpoint the stored one, and
/// returns the key below which event records are wholly covered by it and older than the
/// history kept (to trim later).
pub(super) fn write_switch(
    txn: &WriteTransaction,
    staging: &Staging,
    fail: Fail<'_>,
) -> Result<u64, String> {
    let next_lsn = staging.next_lsn;
    let bytes = &staging.bytes;
    let mut meta = txn.open_table(META).map_err(|e| fail("open meta", &e))?;
    for (key, value) in [
        (CHECKPOINT_NEXT_LSN_KEY, next_lsn),
        (
            CHECKPOINT_CHUNKS_KEY,
            bytes.len().div_ceil(CHECKPOINT_CHUNK_BYTES) as u64,
        ),
        (CHECKPOINT_BYTES_KEY, bytes.len() as u64),
        (CHECKPOINT_XXH3_KEY, xxhash_rust::xxh3::xxh3_64(bytes)),
        (CHECKPOINT_GENERATION_KEY, staging.generation),
        (HISTORY_START_LSN_KEY, staging.history_start),
    ] {
        meta.insert(key, value)
            .map_err(|e| fail("write meta", &e))?;
    }
    let events = txn.open_table(EVENTS).map_err(|e| fail("open", &e))?;
    // Only records wholly below `keep_from` go (in later commits): the one holding it stays,
    // and readers skip its leading events.
    let keep_from = staging.history_start;
    let holding = events
        .range(..=keep_from)
        .map_err(|e| fail("find the record to keep", &e))?
        .next_back()
        .transpose()
        .map_err(|e| fail("find the record to keep", &e))?
        .map(|(key, value)| {
            encoding::parse_record(Lsn(key.value()), value.value())
                .map(|record| (record.first().0, record.last().0))
        })
        .transpose()
        .map_err(|e| fail("read the record to keep", &e))?;
    Ok(match holding {
        Some((first, last)) if last >= keep_from => first,
        _ => keep_from,
    })
}

/// Up to `max` keys of `table` in `range`, in order.
fn first_keys<V: ::redb::Value + 'static>(
    table: &::redb::Table<u64, V>,
    range: Range<u64>,
    max: usize,
) -> Result<Vec<u64>, StorageError> {
    let mut keys = Vec::with_capacity(max);
    for entry in table.range(range)?.take(max) {
        keys.push(entry?.0.value());
    }
    Ok(keys)
}

/// What the meta table says about the stored checkpoint.
struct Stored {
    next_lsn: u64,
    chunks: u64,
    length: usize,
    xxh3: u64,
    generation: u64,
}

/// The stored checkpoint, read from one snapshot of `db` and checked against its meta rows;
/// `None` without one.
pub(super) fn load_latest(db: &Database, path: &Path) -> Result<Option<Checkpoint>, LogError> {
    let io = |what: &str, error: &dyn fmt::Display| {
        LogError::Io(format!("{}: {what}: {error}", path.display()))
    };
    let corrupt =
        |reason: String| LogError::Corrupt(format!("{}: checkpoint: {reason}", path.display()));
    let txn = db.begin_read().map_err(|e| io("begin read", &e))?;
    let meta = txn.open_table(META).map_err(|e| io("open meta", &e))?;
    let Some(stored) = stored_rows(&meta, &io, &corrupt)? else {
        return Ok(None);
    };
    let table = txn
        .open_table(CHECKPOINT)
        .map_err(|e| io("open checkpoint", &e))?;
    let bytes = read_chunks(&table, &stored, &io, &corrupt)?;
    if xxhash_rust::xxh3::xxh3_64(&bytes) != stored.xxh3 {
        return Err(corrupt("checksum mismatch".to_owned()));
    }
    let checkpoint = encoding::decode_checkpoint(&bytes).map_err(|error| match error {
        LogError::Corrupt(reason) => LogError::Corrupt(format!("{}: {reason}", path.display())),
        other => other,
    })?;
    if checkpoint.next_lsn.0 != stored.next_lsn {
        return Err(corrupt(format!(
            "it says next lsn {}, the meta table {}",
            checkpoint.next_lsn, stored.next_lsn
        )));
    }
    Ok(Some(checkpoint))
}

type Io<'a> = &'a dyn Fn(&str, &dyn fmt::Display) -> LogError;
type Corrupt<'a> = &'a dyn Fn(String) -> LogError;

/// The meta rows of the stored checkpoint; `None` without one.
fn stored_rows(
    meta: &ReadOnlyTable<&str, u64>,
    io: Io<'_>,
    corrupt: Corrupt<'_>,
) -> Result<Option<Stored>, LogError> {
    let number = |key: &str| -> Result<Option<u64>, LogError> {
        Ok(ReadableTable::get(meta, key)
            .map_err(|e| io("read meta", &e))?
            .map(|v| v.value()))
    };
    let Some(next_lsn) = number(CHECKPOINT_NEXT_LSN_KEY)? else {
        return Ok(None);
    };
    let (Some(chunks), Some(length), Some(xxh3), Some(generation)) = (
        number(CHECKPOINT_CHUNKS_KEY)?,
        number(CHECKPOINT_BYTES_KEY)?,
        number(CHECKPOINT_XXH3_KEY)?,
        number(CHECKPOINT_GENERATION_KEY)?,
    ) else {
        return Err(corrupt("its meta rows are incomplete".to_owned()));
    };
    if generation > 1 {
        return Err(corrupt(format!("generation {generation}")));
    }
    let length = usize::try_from(length).map_err(|_| corrupt("too large".to_owned()))?;
    Ok(Some(Stored {
        next_lsn,
        chunks,
        length,
        xxh3,
        generation,
    }))
}

/// The stored checkpoint's encoding: its generation's chunks, which must be numbered `0..` and
/// add up to the rows' count and length.
fn read_chunks(
    table: &ReadOnlyTable<u64, &[u8]>,
    stored: &Stored,
    io: Io<'_>,
    corrupt: Corrupt<'_>,
) -> Result<Vec<u8>, LogError> {
    let generation = stored.generation;
    let mut bytes = Vec::with_capacity(stored.length);
    let mut seen = 0u64;
    // Only the stored generation: another one's chunks are staged or stale.
    for entry in table
        .range(generation_keys(generation))
        .map_err(|e| io("range", &e))?
    {
        let (key, value) = entry.map_err(|e| io("read checkpoint", &e))?;
        if key.value() != chunk_key(generation, seen) {
            // The index within the generation, as the chunks were numbered when written.
            return Err(corrupt(format!(
                "expected chunk {seen} of generation {generation}, found chunk {}",
                chunk_index(key.value())
            )));
        }
        bytes.extend_from_slice(value.value());
        seen += 1;
    }
    if seen != stored.chunks || bytes.len() != stored.length {
        return Err(corrupt(format!(
            "{seen} chunks of {} bytes, expected {} chunks of {} bytes",
            bytes.len(),
            stored.chunks,
            stored.length
        )));
    }
    Ok(bytes)
}
