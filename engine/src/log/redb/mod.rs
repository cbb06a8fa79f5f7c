//! The durable event log: events in a redb file, written by one thread with group commit.
//!
//! # Shape
//! The ledger calls [`EventLog::append`] under its locks, so append only checks the LSN and
//! pushes the event onto an unbounded channel: no I/O, no waiting. One writer thread takes the
//! first queued event, drains up to [`RedbLogOptions::batch_events_max`] more, writes the whole
//! batch in one redb write transaction (as one record, or a few if it is large), commits it,
//! and then wakes the submitters in [`EventLog::wait_durable`] whose LSNs it covers. Under load
//! a batch is everything that arrived during the previous commit, so one fsync acknowledges
//! hundreds of submitters; when idle, a lone event is committed at once. `docs/durability.md`
//! says what each step means for a crash.
//!
//! # The data folder
//! A log lives in a data folder `<dir>`, as the file `<dir>/ledger.redb` ([`FILE_NAME`]), beside
//! the marker `<dir>/LOG_CREATED` ([`MARKER_FILE_NAME`]), which says the folder has held a log.
//! [`RedbLog::open`] creates a new log only in a folder with neither: it builds the file under
//! a temporary name, commits its tables and format version with an fsync, hard-links it into
//! place, syncs the folder, and then writes the marker (synced, renamed into place, folder
//! synced), all under an `flock` of the folder. So `ledger.redb` is never empty, and a 0-byte
//! one is refused ([`OpenError::EmptyFile`]); with the marker, a missing one is refused too
//! ([`OpenError::MissingFile`]): either means the history is gone, and an empty log would serve
//! an empty ledger, decide retried commands afresh and reuse LSNs. A file that is not a redb
//! database, is damaged, holds no log or breaks the invariants below is refused as
//! [`OpenError::Corrupt`]. Nothing here deletes or rewrites a log: to start over, move the
//! folder away.
//!
//! # File layout
//! `ledger.redb` has three tables:
//! - [`EVENTS`] (`u64 -> &[u8]`): one record per group-commit batch (a large batch is cut into
//!   records of about [`RECORD_BYTES_TARGET`]), under its first LSN (see [`super::encoding`]).
//!   Together the records cover LSNs `k..=n` with no gap or overlap, where `k` is the newest
//!   checkpoint's `next_lsn` (1 without a checkpoint) and may sit inside the record holding
//!   it; records wholly below `k` may remain until trimmed. The writer asserts continuity
//!   before every event, [`RedbLog::open`] checks the records at both ends and the one joining
//!   the checkpoint, and [`EventLog::read_from`] checks every record it reads.
//! - [`CHECKPOINT`] (`u64 -> &[u8]`): the newest checkpoint, as its encoding (see
//!   [`super::encoding::encode_checkpoint`]) cut into chunks of [`CHECKPOINT_CHUNK_BYTES`] under
//!   keys [`chunk_key`]`(g, 0..chunks)` of its generation `g`; the other generation holds a
//!   checkpoint being staged (or the replaced one's chunks, until swept), which readers ignore.
//!   Chunks keep every value a little under a power of two of pages, so redb allocates no slack
//!   for a checkpoint of any size.
//! - [`META`] (`&str -> u64`): [`FORMAT_VERSION_KEY`] holds the layout version, which must be
//!   this build's [`LOG_FORMAT_VERSION`]: a file of an earlier version (an earlier development
//!   build's: the engine has no deployed data, so nothing is converted) is refused with
//!   [`OpenError::OlderFormat`], a later one with [`OpenError::NewerFormat`]. With a checkpoint,
//!   [`CHECKPOINT_NEXT_LSN_KEY`], [`CHECKPOINT_CHUNKS_KEY`], [`CHECKPOINT_BYTES_KEY`],
//!   [`CHECKPOINT_XXH3_KEY`] and [`CHECKPOINT_GENERATION_KEY`] describe it.
//!
//! # Checkpoints and trimming
//! [`EventLog::write_checkpoint`] encodes the checkpoint on the caller's thread and hands the
//! bytes to the writer thread on the same channel as the events, so it is taken after every
//! event queued before it. The writer then stages its chunks into the free generation, a few
//! per commit ([`CHECKPOINT_STAGE_CHUNKS_PER_COMMIT`]), with the event batches that keep
//! arriving or on their own, so no batch waits for more than a few MiB of checkpoint. A last
//! small fsync commit switches the meta rows to the new generation: after a crash the file
//! holds either the old checkpoint and all its events, or the new checkpoint and the events
//! from it on (plus, in the record holding `next_lsn`, the events before it in that batch,
//! which readers skip); staged chunks without a switch are ignored, and deleted at open. The
//! switch also makes every batch before it durable (in `Async` mode too). Later commits then
//! delete a few records wholly below `next_lsn` and a few of the old generation's chunks each
//! (the trim), and close deletes what is left.
//!
//! # Failure
//! The log is fail-stop (redb's `PreviousIo`, TigerBeetle's "crash, don't limp"): the first
//! write or commit that fails is recorded, every waiter is woken with [`LogError::Io`], and
//! every later `append`, `admit` and `wait_durable` for an LSN that is not durable fails the
//! same way until the process reopens the file. An LSN is reported durable only after the
//! commit holding it returned `Ok` (in [`Durability::Sync`], a commit with an fsync).
//!
//! # This module's files
//! - `mod.rs` (this file): the public face. [`RedbLog`] with its accessors, close and the
//!   [`EventLog`] impl (which hands reading to `read.rs`, checkpoints to `checkpoint.rs` and
//!   the writer), [`RedbLogOptions`], [`Durability`], [`OpenError`], the re-exports of the
//!   public constants, and this doc.
//! - `layout.rs`: what the file holds and is called: file and marker names, tables, meta keys,
//!   [`LOG_FORMAT_VERSION`], chunk keys, record size.
//! - `shared.rs`: the state the submitters and the writer share (LSN watermarks, the first
//!   failure, sleeping waiters, counters) and how waiters are woken.
//! - `checkpoint.rs`: checkpoint storage, one transaction's worth at a time: staging chunks,
//!   the switch, sweeping a replaced generation, trimming records, loading the stored one.
//! - `writer.rs`: the writer thread: its loop, gathering and committing batches, `Async`
//!   flushes, and driving checkpoints (it owns every write transaction).
//! - `read.rs`: [`EventLog::read_from`], checking that records join.
//! - `folder.rs`: the data folder without redb: what is at `ledger.redb`, the marker, the
//!   folder lock, linking a new file into place, syncing the folder.
//! - `open.rs`: [`RedbLog::open`]: the options check, the folder's refusals, creating a new
//!   log, redb's open and its errors, the checks of the tables, starting the writer.
//!
//! Imports run one way: a file imports the public items of `mod.rs` and, among the others,
//! only files above it in this list (`layout` imports none; `open` may import all).
//! The fault-injecting backend for tests is not here: `crate::testing::faults` (feature
//! `testing`).
//!
//! "Transaction" is a redb word and stays in this module; the engine speaks of append and
//! durability.

mod checkpoint;
mod folder;
mod layout;
mod open;
mod read;
mod shared;
mod writer;

pub use super::stats::{BATCH_SIZE_BUCKETS, LogStats};
pub use checkpoint::{
    CHECKPOINT_STAGE_CHUNKS_PER_COMMIT, CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT, TRIM_RECORDS_PER_COMMIT,
};
pub use layout::{
    CHECKPOINT, CHECKPOINT_BYTES_KEY, CHECKPOINT_CHUNK_BYTES, CHECKPOINT_CHUNKS_KEY,
    CHECKPOINT_GENERATION_KEY, CHECKPOINT_NEXT_LSN_KEY, CHECKPOINT_XXH3_KEY, EVENTS, FILE_NAME,
    FORMAT_VERSION_KEY, LOG_FORMAT_VERSION, MARKER_FILE_NAME, META, RECORD_BYTES_TARGET, chunk_key,
};

use super::encoding;
use super::{DurableListener, EventLog};
use crate::checkpoint::Checkpoint;
use crate::error::LogError;
use crate::event::Event;
use crate::types::Lsn;
use ::redb::Database;
use checkpoint::CheckpointWrite;
use crossbeam_channel::Sender;
use shared::{Shared, lock};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use thiserror::Error;
use writer::Message;

/// Default most events in one commit. 4096 events of ~100 bytes is ~400 KiB, a few ms to write
/// even on a slow disk, so one batch never holds later submitters back for long; a larger
/// batch gains little, since the fsync is already shared by thousands.
pub const BATCH_EVENTS_MAX_DEFAULT: usize = 4_096;
/// Default most events appended but not yet committed before [`EventLog::admit`] refuses new
/// commands: 16 full batches. It bounds the channel's memory (an `Arc<Event>` each) and the
/// time a new command would wait behind the queue when the disk stalls.
pub const QUEUE_EVENTS_MAX_DEFAULT: usize = 65_536;

/// When an appended event counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every batch commits with an fsync (redb `Durability::Immediate`), and `wait_durable`
    /// returns once the batch holding the LSN has. An acknowledged command survives a crash or
    /// power loss.
    Sync,
    /// Batches commit without an fsync (redb `Durability::None`); an fsync commit follows at
    /// most `flush_interval_ms` after the first unflushed batch (and on close). `wait_durable`
    /// returns at once. Any crash (`kill -9` too: redb rolls back to its last fsync commit on
    /// open) or power loss can lose the last `flush_interval_ms` (plus one batch) of
    /// acknowledged commands. [`EventLog::durable_lsn`] still reports only what an fsync
    /// covered.
    Async { flush_interval_ms: u64 },
}

/// How a [`RedbLog`] batches, queues and opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbLogOptions {
    pub durability: Durability,
    /// Most events in one commit (at least 1).
    pub batch_events_max: usize,
    /// Most events appended but not yet committed before `admit` answers `Full` (at least 1).
    pub queue_events_max: usize,
    /// Verify every page checksum when the file is opened (redb's
    /// `set_check_integrity_on_open`). Costs a read of the whole file, like the replay that
    /// follows; without it a file damaged outside redb may make redb panic on open instead of
    /// reporting corruption.
    pub check_integrity_on_open: bool,
    /// redb's page cache, in bytes. The log only appends and replays once, so a small cache is
    /// enough.
    pub cache_size_bytes: usize,
}

impl Default for RedbLogOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            batch_events_max: BATCH_EVENTS_MAX_DEFAULT,
            queue_events_max: QUEUE_EVENTS_MAX_DEFAULT,
            check_integrity_on_open: true,
            cache_size_bytes: 64 << 20,
        }
    }
}

/// Why [`RedbLog::open`] failed. Every message names the file (or folder).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("invalid log options for {}: {reason}", .path.display())]
    Options { path: PathBuf, reason: String },
    #[error("cannot open {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// redb holds a lock on the file for as long as a database is open on it.
    #[error("data folder in use by another process: {}", .path.display())]
    InUse { path: PathBuf },
    #[error(
        "{} has log format version {found}; this build reads up to {supported}: \
         upgrade the engine, or restore a file written by this version",
        .path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// `ledger.redb` is empty (0 bytes). A new log is never empty (it is linked into place
    /// only once written), so this is a log that lost its contents: opening it as a new log
    /// would serve an empty ledger, decide retried commands afresh and reuse LSNs.
    #[error(
        "{} is empty (0 bytes): a log file is never empty, so this one lost its contents and \
         cannot be trusted. Restore it from a backup, or move the data folder {} away to \
         start over with an empty log",
        .path.display(),
        folder_of(.path).display()
    )]
    EmptyFile { path: PathBuf },
    /// `ledger.redb` is missing from a folder whose marker (`LOG_CREATED`) says it has held a
    /// log: for the same reasons as [`OpenError::EmptyFile`], no new log is started.
    #[error(
        "{} is missing, but {} says this folder has held a log: its history is gone, and a new \
         log would reuse its LSNs. Restore the file from a backup, or move the data folder {} \
         away to start over with an empty log",
        .path.display(),
        .marker.display(),
        folder_of(.path).display()
    )]
    MissingFile { path: PathBuf, marker: PathBuf },
    /// The file was written by an earlier development build in a layout this build does not
    /// read: the engine has no deployed data, so there is no migration. Nothing was changed.
    #[error(
        "{} has log format version {found}, written by an earlier development build; this \
         build reads only version {supported} and converts nothing: move the data folder {} \
         away to start over with an empty log",
        .path.display(),
        folder_of(.path).display()
    )]
    OlderFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// The file is not a redb database, fails its checksums, or its tables break the log's
    /// invariants. Nothing was changed; the file is left for inspection.
    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot start the log writer for {}: {source}", .path.display())]
    Thread { path: PathBuf, source: io::Error },
}

/// The folder `path` is in, for messages.
fn folder_of(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

/// A durable [`EventLog`] in a redb file, with group commit on one writer thread.
pub struct RedbLog {
    shared: Arc<Shared>,
    /// The channel to the writer. `None` once closed; the mutex also makes the LSN check and
    /// the send one step, so concurrent appends cannot enqueue out of order.
    sender: Mutex<Option<Sender<Message>>>,
    writer: Option<JoinHandle<()>>,
    db: Option<Arc<Database>>,
}

impl fmt::Debug for RedbLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbLog")
            .field("path", &self.shared.path)
            .field("durability", &self.shared.durability)
            .field("durable_lsn", &self.durable_lsn())
            .finish_non_exhaustive()
    }
}

impl RedbLog {
    /// The file this log writes.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// A copy of the writer's counters.
    pub fn stats(&self) -> LogStats {
        lock(&self.shared.stats).clone()
    }

    /// The first failure, if the log has failed.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// The stored checkpoint's `next_lsn`, which is the first LSN the file still holds
    /// (`None`: no checkpoint, the file holds every event from LSN 1).
    pub fn checkpoint_lsn(&self) -> Option<Lsn> {
        match self.shared.checkpoint_lsn.load(Ordering::Acquire) {
            0 => None,
            lsn => Some(Lsn(lsn)),
        }
    }

    /// Stops accepting events, lets the writer commit everything queued (with an fsync), joins
    /// it and closes the file. Returns the log's failure if it had one. Dropping the log does
    /// the same and ignores the result.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        self.shared.closed.store(true, Ordering::Release);
        // Dropping the only sender lets the writer drain the channel and exit.
        lock(&self.sender).take();
        let mut result = Ok(());
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            result = Err(LogError::Io(format!(
                "{}: the log writer panicked",
                self.shared.path.display()
            )));
        }
        if self.shared.failed.load(Ordering::Acquire) {
            result = Err(self.shared.failure_error());
        }
        if let Some(db) = self.db.take() {
            // The writer has exited, so this is the last reference unless a read is running
            // on another thread, which `close(self)` rules out; drop covers the rest.
            if let Ok(db) = Arc::try_unwrap(db)
                && let Err(error) = db.close()
                && result.is_ok()
            {
                result = Err(LogError::Io(format!(
                    "{}: close failed: {error}",
                    self.shared.path.display()
                )));
            }
        }
        result
    }
}

impl Drop for RedbLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl EventLog for RedbLog {
    fn stats(&self) -> Option<LogStats> {
        Some(RedbLog::stats(self))
    }

    fn acks_on_append(&self) -> bool {
        matches!(self.durability(), Durability::Async { .. })
    }

    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        let sender = lock(&self.sender);
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.shared.failure_error());
        }
        let Some(sender) = sender.as_ref() else {
            return Err(LogError::Closed);
        };
        let expected = Lsn(self.shared.appended_lsn.load(Ordering::Relaxed) + 1);
        if event.lsn != expected {
            return Err(LogError::OutOfOrder {
                expected,
                got: event.lsn,
            });
        }
        if sender.send(Message::Event(Arc::clone(event))).is_err() {
            // The writer exited: it failed (and recorded why) or panicked.
            return Err(self.shared.failure_error());
        }
        self.shared
            .appended_lsn
            .store(event.lsn.0, Ordering::Release);
        Ok(())
    }

    fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        let shared = &self.shared;
        if shared.durable_lsn.load(Ordering::Acquire) >= lsn.0 {
            return Ok(());
        }
        if shared.failed.load(Ordering::Acquire) {
            return Err(shared.failure_error());
        }
        let appended = shared.appended_lsn.load(Ordering::Acquire);
        if lsn.0 > appended {
            return Err(LogError::Io(format!(
                "{}: wait for lsn {lsn}, which was never appended (last appended: {appended})",
                shared.path.display()
            )));
        }
        if let Durability::Async { .. } = shared.durability {
            // The documented trade: the writer commits it shortly, an fsync follows within
            // the flush interval.
            return Ok(());
        }
        lock(&shared.waiters).push((lsn.0, std::thread::current()));
        // An entry left behind when this returns is removed by the writer's next wake-up; its
        // unpark then only makes some later `park` of this thread return early, and every
        // `park` runs in a loop like this one.
        let result = loop {
            if shared.durable_lsn.load(Ordering::Acquire) >= lsn.0 {
                break Ok(());
            }
            if shared.failed.load(Ordering::Acquire) {
                break Err(LogError::Io(String::new()));
            }
            if shared.writer_exited.load(Ordering::Acquire) {
                break Err(LogError::Closed);
            }
            std::thread::park();
        };
        match result {
            Err(LogError::Io(_)) => Err(shared.failure_error()),
            other => other,
        }
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable_lsn.load(Ordering::Acquire))
    }

    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        let db = self.db.as_ref().ok_or(LogError::Closed)?;
        read::read_from(db, &self.shared.path, from, max)
    }

    fn health(&self) -> Result<(), LogError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.shared.failure_error());
        }
        Ok(())
    }

    fn set_durable_listener(&self, listener: DurableListener) {
        // A second listener is ignored: the API registers one at startup.
        let _ = self.shared.listener.set(listener);
        // Anything already durable should not wait for the next batch to be noticed.
        self.shared.wake(false);
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        let db = self.db.as_ref().ok_or(LogError::Closed)?;
        checkpoint::load_latest(db, &self.shared.path)
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        self.health()?;
        // Encoding a large checkpoint takes a while: do it here, not on the writer thread that
        // every submitter waits for.
        let bytes = encoding::encode_checkpoint(checkpoint)?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        {
            let sender = lock(&self.sender);
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.failure_error());
            }
            let Some(sender) = sender.as_ref() else {
                return Err(LogError::Closed);
            };
            let message = Message::Checkpoint(CheckpointWrite {
                next_lsn: checkpoint.next_lsn.0,
                history_start: checkpoint.history_start_lsn().0,
                bytes,
                reply,
            });
            if sender.send(message).is_err() {
                return Err(self.shared.failure_error());
            }
        }
        // The writer answers every checkpoint it takes; if it exits first (a failure before it
        // got there), the reply sender is dropped and this returns.
        match answer.recv() {
            Ok(result) => result,
            Err(_) if self.shared.failed.load(Ordering::Acquire) => {
                Err(self.shared.failure_error())
            }
            Err(_) => Err(LogError::Closed),
        }
    }

    fn admit(&self) -> Result<(), LogError> {
        let shared = &self.shared;
        if shared.failed.load(Ordering::Acquire) {
            return Err(shared.failure_error());
        }
        if shared.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        // Read committed first: appended only grows, so the difference can only be
        // overstated, never understated.
        let committed = shared.committed_lsn.load(Ordering::Acquire);
        let appended = shared.appended_lsn.load(Ordering::Acquire);
        let queued = appended.saturating_sub(committed);
        if queued >= shared.queue_events_max as u64 {
            return Err(LogError::Full {
                capacity: shared.queue_events_max,
            });
        }
        Ok(())
    }
}
