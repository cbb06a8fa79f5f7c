//! The durable event log: events in a redb file, written by one thread with group commit.
//!
//! # Shape
//! The ledger calls [`EventLog::append`] under its locks, so append only checks the LSN and
//! pushes the event onto an unbounded channel: no I/O, no waiting. One writer thread takes the
//! first queued event, drains up to [`RedbLogOptions::batch_events_max`] more, writes the whole
//! batch as one record in one redb write transaction, commits it, and then wakes the
//! submitters in [`EventLog::wait_durable`] whose LSNs it covers. Under load a batch is
//! everything that arrived during the previous commit, so one fsync acknowledges hundreds of
//! submitters; when idle, a lone event is committed at once. `docs/durability.md` says what each step means for a
//! crash.
//!
//! # File layout
//! One file, `<dir>/ledger.redb` ([`FILE_NAME`]), with three tables:
//! - [`EVENTS`] (`u64 -> &[u8]`): one record per group-commit batch, under the batch's first
//!   LSN (see [`super::encoding`]; files of formats 1 and 2 hold one event per record, and
//!   still read). Together the records cover LSNs `k..=n` with no gap or overlap, where `k` is
//!   the newest checkpoint's `next_lsn` (1 without a checkpoint) and may sit inside the record
//!   holding it; records wholly below `k` may remain until trimmed. The writer asserts
//!   continuity before every event, [`RedbLog::open`] checks the records at both ends and the
//!   one joining the checkpoint, and [`EventLog::read_from`] checks every record it reads.
//! - [`CHECKPOINT`] (`u64 -> &[u8]`): the newest checkpoint, as its encoding (see
//!   [`super::encoding::encode_checkpoint`]) cut into chunks of [`CHECKPOINT_CHUNK_BYTES`] under
//!   keys [`chunk_key`]`(g, 0..chunks)` of its generation `g`; the other generation holds a
//!   checkpoint being staged (or the replaced one's chunks, until swept), which readers ignore.
//!   Chunks keep every value a little under a power of two of pages, so redb allocates no slack
//!   for a checkpoint of any size.
//! - [`META`] (`&str -> u64`): [`FORMAT_VERSION_KEY`] holds the layout version (1 to
//!   [`LOG_FORMAT_VERSION`]); a file with a larger version is refused, never half-read. With a
//!   checkpoint, [`CHECKPOINT_NEXT_LSN_KEY`], [`CHECKPOINT_CHUNKS_KEY`],
//!   [`CHECKPOINT_BYTES_KEY`], [`CHECKPOINT_XXH3_KEY`] and [`CHECKPOINT_GENERATION_KEY`]
//!   describe it.
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
//! write or commit that fails is recorded, every waiter is woken with
//! [`LogError::Io`], and every later `append`, `admit` and `wait_durable` for an LSN that is not
//! durable fails the same way until the process reopens the file. An LSN is reported durable
//! only after the commit holding it returned `Ok` (in [`Durability::Sync`], a commit with an
//! fsync).
//!
//! "Transaction" is a redb word and stays in this file; the engine speaks of append and
//! durability.

use super::EventLog;
use super::encoding::{
    self, BATCH_FORMAT_VERSION, CHECKPOINT_FORMAT_VERSION, FORMAT_VERSION as EVENT_FORMAT_VERSION,
};
use crate::error::LogError;
use crate::event::Event;
use crate::ledger::Checkpoint;
use crate::types::Lsn;
use ::redb::backends::FileBackend;
use ::redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, StorageError, TableDefinition,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The file the log lives in, inside the data folder.
pub const FILE_NAME: &str = "ledger.redb";
/// First LSN of a batch to the batch's record.
pub const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Small named numbers about the file.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The newest checkpoint's encoding, chunk index to chunk bytes.
pub const CHECKPOINT: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoint");
/// The key in [`META`] that holds the file's format version.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// In [`META`], with a checkpoint: its `next_lsn`, which is also the first LSN [`EVENTS`] is
/// read from (its first record may start earlier).
pub const CHECKPOINT_NEXT_LSN_KEY: &str = "checkpoint_next_lsn";
/// In [`META`], with a checkpoint: how many chunks [`CHECKPOINT`] holds.
pub const CHECKPOINT_CHUNKS_KEY: &str = "checkpoint_chunks";
/// In [`META`], with a checkpoint: the length of its encoding.
pub const CHECKPOINT_BYTES_KEY: &str = "checkpoint_bytes";
/// In [`META`], with a checkpoint: the xxh3-64 of its encoding (checked on load, beyond redb's
/// page checksums: it catches chunks from different checkpoints mixed together).
pub const CHECKPOINT_XXH3_KEY: &str = "checkpoint_xxh3";
/// In [`META`], with a checkpoint: which of the two chunk ranges of [`CHECKPOINT`] holds it
/// (see [`chunk_key`]). Absent means 0, as in files of format 3 and older.
pub const CHECKPOINT_GENERATION_KEY: &str = "checkpoint_generation";
/// Chunks the writer stages per commit: about 4 MiB, a few ms of writing, so event batches
/// committed meanwhile wait at most that long for a checkpoint.
pub const CHECKPOINT_STAGE_CHUNKS_PER_COMMIT: u64 = 4;
/// Stale chunks (of the previous checkpoint) deleted per commit after a switch.
pub const CHECKPOINT_SWEEP_CHUNKS_PER_COMMIT: usize = 4;
/// Event records below the checkpoint deleted per commit after a switch: about 4 MiB.
pub const TRIM_RECORDS_PER_COMMIT: usize = 64;
/// Size of every checkpoint chunk but the last: 1 MiB less a page, so a chunk with its leaf
/// header fits a 1 MiB redb allocation.
pub const CHECKPOINT_CHUNK_BYTES: usize = (1 << 20) - 4096;
/// The version of this file layout (tables above, records in the encodings of
/// [`super::encoding`]). A change to either takes the next number. Version 2 added the
/// checkpoint table and trimming; version 3 stores one record per batch instead of one per
/// event; version 4 keeps checkpoint chunks in two generations ([`chunk_key`]) and may hold
/// event records below the checkpoint until they are trimmed. Older files are read as they
/// are (no generation row means generation 0, chunk keys `0..n`): an older file is marked
/// version 4 by the first commit that writes a batch record or a checkpoint, after which
/// older builds refuse it with [`OpenError::NewerFormat`] rather than misread it.
pub const LOG_FORMAT_VERSION: u64 = 4;
/// The oldest layout this build reads.
pub const LOG_FORMAT_VERSION_OLDEST: u64 = 1;
const _: () = assert!(
    EVENT_FORMAT_VERSION == 1 && BATCH_FORMAT_VERSION == 2 && CHECKPOINT_FORMAT_VERSION == 1,
    "bump LOG_FORMAT_VERSION with the encodings"
);

/// The key of chunk `index` of checkpoint generation `generation` (0 or 1): the two
/// generations live in disjoint key ranges, so a checkpoint is staged beside the stored one
/// and readers, which follow [`CHECKPOINT_GENERATION_KEY`], never see it until the switch.
pub fn chunk_key(generation: u64, index: u64) -> u64 {
    debug_assert!(generation <= 1 && index < 1 << 32);
    generation << 32 | index
}

fn generation_keys(generation: u64) -> std::ops::Range<u64> {
    chunk_key(generation, 0)..chunk_key(generation, 0) + (1 << 32)
}

/// Default most events in one commit. 4096 events of ~100 bytes is ~400 KiB, a few ms to write
/// even on a slow disk, so one batch never holds later submitters back for long; a larger
/// batch gains little, since the fsync is already shared by thousands.
pub const BATCH_EVENTS_MAX_DEFAULT: usize = 4_096;
/// Default most events appended but not yet committed before [`EventLog::admit`] refuses new
/// commands: 16 full batches. It bounds the channel's memory (an `Arc<Event>` each) and the
/// time a new command would wait behind the queue when the disk stalls.
pub const QUEUE_EVENTS_MAX_DEFAULT: usize = 65_536;
/// A batch is cut into records of about this many bytes of events at most (the last event may
/// overshoot), so a record with its leaf header fits a 64 KiB redb allocation: redb allocates
/// a large value in power-of-two runs of pages, and one 300 KiB record would take 512 KiB.
pub const RECORD_BYTES_TARGET: usize = (64 << 10) - 4096;
/// Batch-size histogram buckets: bucket `i` counts batches of `2^i ..= 2^(i+1) - 1` events; the
/// last bucket also takes anything larger.
pub const BATCH_SIZE_BUCKETS: usize = 17;

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
    /// The file is not a redb database, fails its checksums, or its tables break the log's
    /// invariants. Nothing was changed; the file is left for inspection.
    #[error("{} is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot start the log writer for {}: {source}", .path.display())]
    Thread { path: PathBuf, source: io::Error },
}

/// Counters from the writer thread, for benchmarks and diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Commits that carried events.
    pub batches: u64,
    /// Events committed.
    pub events: u64,
    /// Commits with an fsync (in `Sync` mode, every batch; in `Async`, the flushes).
    pub fsync_commits: u64,
    /// Batches by size: see [`BATCH_SIZE_BUCKETS`].
    pub batch_sizes: [u64; BATCH_SIZE_BUCKETS],
    pub batch_events_largest: u64,
    /// Time spent encoding and inserting events, in ns.
    pub insert_ns: u64,
    /// Time spent in redb's commit (including its fsync), in ns.
    pub commit_ns: u64,
    /// Checkpoints written (each switched to by its own fsync commit, not counted in
    /// `fsync_commits`).
    pub checkpoints: u64,
    /// Size of the newest checkpoint written, in bytes.
    pub checkpoint_bytes_last: u64,
    /// Events deleted because a checkpoint covered them.
    pub events_trimmed: u64,
    /// Time from the writer taking each checkpoint to its switch being durable, in ns (event
    /// batches keep committing meanwhile).
    pub checkpoint_ns: u64,
    /// Commits that carried checkpoint chunks (alone or with an event batch), plus switches.
    pub checkpoint_commits: u64,
    /// The longest single commit made while a checkpoint was being written (staging, a batch
    /// with chunks, or the switch), in ns: about the longest an event waited because of one.
    pub checkpoint_commit_ns_max: u64,
}

impl LogStats {
    /// The sizes bucket `i` counts, inclusive.
    pub fn bucket_bounds(i: usize) -> (u64, u64) {
        let low = 1u64 << i;
        let high = if i + 1 == BATCH_SIZE_BUCKETS {
            u64::MAX
        } else {
            (low << 1) - 1
        };
        (low, high)
    }

    fn record_batch(&mut self, events: u64, insert_ns: u64, commit_ns: u64, fsync: bool) {
        self.batches += 1;
        self.events += events;
        self.fsync_commits += u64::from(fsync);
        let bucket = (events.max(1).ilog2() as usize).min(BATCH_SIZE_BUCKETS - 1);
        self.batch_sizes[bucket] += 1;
        self.batch_events_largest = self.batch_events_largest.max(events);
        self.insert_ns += insert_ns;
        self.commit_ns += commit_ns;
    }
}

/// State the submitters and the writer thread share.
struct Shared {
    path: PathBuf,
    durability: Durability,
    queue_events_max: usize,
    /// LSN of the last event `append` accepted.
    appended_lsn: AtomicU64,
    /// LSN of the last event in a committed batch (durable in `Sync` mode, visible in both).
    committed_lsn: AtomicU64,
    /// LSN up to which every event is covered by an fsync commit.
    durable_lsn: AtomicU64,
    /// The stored checkpoint's `next_lsn` (0: none), i.e. the first LSN the file still holds.
    checkpoint_lsn: AtomicU64,
    /// Set once, on the first failure; checked without a lock on every call.
    failed: AtomicBool,
    /// Set when `close` (or drop) starts.
    closed: AtomicBool,
    /// Set when the writer thread has ended, however it ended.
    writer_exited: AtomicBool,
    /// Why the log failed (the first failure only).
    failure: Mutex<Option<String>>,
    /// Threads asleep (or about to sleep) in `wait_durable`, with the LSN each waits for. The
    /// writer wakes exactly those its commit covers: no thread waiting for the next batch is
    /// woken only to sleep again, and a woken thread takes no lock on its way out.
    waiters: Mutex<Vec<(u64, Thread)>>,
    /// Told after every advance or failure (see `EventLog::set_durable_listener`).
    listener: std::sync::OnceLock<super::DurableListener>,
    stats: Mutex<LogStats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a panic elsewhere while the
    // lock was held does not make the data wrong.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn failure_error(&self) -> LogError {
        LogError::Io(
            lock(&self.failure)
                .clone()
                .unwrap_or_else(|| format!("{}: log failed", self.path.display())),
        )
    }

    /// Records the first failure and wakes every waiter.
    fn fail(&self, failure: String) {
        lock(&self.failure).get_or_insert(failure);
        self.failed.store(true, Ordering::Release);
        self.wake(true);
    }

    /// Publishes new committed and durable LSNs and wakes the waiters; returns how many.
    fn advance(&self, committed: u64, durable: Option<u64>) -> usize {
        self.committed_lsn.store(committed, Ordering::Release);
        if let Some(durable) = durable {
            self.durable_lsn.store(durable, Ordering::Release);
            return self.wake(false);
        }
        0
    }

    /// Wakes the waiters whose LSN is durable now (every waiter if `all`), after the state
    /// they wait on has been published. A waiter registers before it checks that state, and
    /// the lock orders the two, so none sleeps through its wake-up.
    fn wake(&self, all: bool) -> usize {
        if let Some(listener) = self.listener.get() {
            listener();
        }
        let durable = self.durable_lsn.load(Ordering::Acquire);
        let ready: Vec<Thread> = lock(&self.waiters)
            .extract_if(.., |(lsn, _)| all || *lsn <= durable)
            .map(|(_, thread)| thread)
            .collect();
        let woken = ready.len();
        for thread in ready {
            thread.unpark();
        }
        woken
    }
}

/// What the writer thread is asked to do, in order.
enum Message {
    Event(Arc<Event>),
    Checkpoint(CheckpointWrite),
}

/// An encoded checkpoint on its way to the writer, and where to send the result.
struct CheckpointWrite {
    next_lsn: u64,
    bytes: Vec<u8>,
    reply: Sender<Result<(), LogError>>,
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
    /// Opens `<dir>/ledger.redb`, creating the folder and the file if missing, and starts the
    /// writer thread. Fails, naming the file, if another process (or another `RedbLog` in this
    /// one) has it open, if it was written by a newer format, or if it is corrupt: a file that
    /// cannot be read never opens as an empty log.
    pub fn open(dir: &Path, options: RedbLogOptions) -> Result<RedbLog, OpenError> {
        let path = dir.join(FILE_NAME);
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        let backend = FileBackend::new(file).map_err(|error| map_open_error(&path, error))?;
        Self::open_with_backend(&path, backend, options)
    }

    /// Opens the log on any redb storage backend. For fault injection in tests and
    /// simulations (see [`FaultyFileBackend`]); `path` is only used in messages.
    pub fn open_with_backend(
        path: &Path,
        backend: impl StorageBackend,
        options: RedbLogOptions,
    ) -> Result<RedbLog, OpenError> {
        let path = path.to_owned();
        validate(&path, &options)?;
        let db = open_database(&path, backend, &options)?;
        let Prepared {
            last_lsn,
            checkpoint_lsn,
            file_version,
            checkpoint_generation,
            trim_below,
        } = prepare_tables(&path, &db)?;

        let shared = Arc::new(Shared {
            path: path.clone(),
            durability: options.durability,
            queue_events_max: options.queue_events_max,
            appended_lsn: AtomicU64::new(last_lsn),
            committed_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            checkpoint_lsn: AtomicU64::new(checkpoint_lsn),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer_exited: AtomicBool::new(false),
            failure: Mutex::new(None),
            waiters: Mutex::new(Vec::new()),
            listener: std::sync::OnceLock::new(),
            stats: Mutex::new(LogStats::default()),
        });
        let db = Arc::new(db);
        let (sender, receiver) = crossbeam_channel::unbounded();
        let writer = Writer {
            db: Arc::clone(&db),
            receiver,
            shared: Arc::clone(&shared),
            durability: options.durability,
            batch_events_max: options.batch_events_max,
            next_lsn: last_lsn + 1,
            checkpoint_lsn,
            batch: Vec::with_capacity(options.batch_events_max),
            scratch: Vec::with_capacity(256),
            buffer: Vec::with_capacity(RECORD_BYTES_TARGET + 4096),
            record: Vec::with_capacity(RECORD_BYTES_TARGET + 4096),
            file_version,
            unflushed_since: None,
            expected: 0,
            checkpoint_generation,
            staging: None,
            sweep_generation: None,
            trim_below,
        };
        let handle = std::thread::Builder::new()
            .name("inv-log-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Thread { path, source })?;
        Ok(RedbLog {
            shared,
            sender: Mutex::new(Some(sender)),
            writer: Some(handle),
            db: Some(db),
        })
    }

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
        let path = &self.shared.path;
        let io = |what: &str, error: &dyn fmt::Display| {
            LogError::Io(format!("{}: {what}: {error}", path.display()))
        };
        let db = self.db.as_ref().ok_or(LogError::Closed)?;
        let txn = db.begin_read().map_err(|e| io("begin read", &e))?;
        let table = txn.open_table(EVENTS).map_err(|e| io("open events", &e))?;
        let start = from.0.max(1);
        // The checkpoint row and the events are read from the same snapshot, so a checkpoint
        // committed meanwhile cannot make a trimmed range look like a gap.
        let meta = txn.open_table(META).map_err(|e| io("open meta", &e))?;
        let first_retained = ReadableTable::get(&meta, CHECKPOINT_NEXT_LSN_KEY)
            .map_err(|e| io("read checkpoint lsn", &e))?
            .map_or(1, |v| v.value())
            .max(1);
        if start < first_retained {
            return Err(LogError::Trimmed {
                first_retained: Lsn(first_retained),
            });
        }
        let corrupt = |error: LogError| match error {
            LogError::Corrupt(reason) => LogError::Corrupt(format!("{}: {reason}", path.display())),
            other => other,
        };
        let mut events = Vec::with_capacity(max.min(BATCH_EVENTS_MAX_DEFAULT));
        if max == 0 {
            return Ok(events);
        }
        // Start at the record holding `start`: the last one whose first LSN is not above it.
        let first_key = table
            .range(..=start)
            .map_err(|e| io("range", &e))?
            .next_back()
            .transpose()
            .map_err(|e| io("read", &e))?
            .map_or(start, |(key, _)| key.value());
        // The LSN the next record must start at, once past the first.
        let mut expected: Option<u64> = None;
        for entry in table.range(first_key..).map_err(|e| io("range", &e))? {
            if events.len() >= max {
                break;
            }
            let (key, value) = entry.map_err(|e| io("read", &e))?;
            let record =
                encoding::parse_record(Lsn(key.value()), value.value()).map_err(corrupt)?;
            let first = record.first().0;
            match expected {
                // The first record may end before `start` (then the next must be absent), or
                // hold it; it must not begin after it.
                None if first > start => {
                    return Err(LogError::Corrupt(format!(
                        "{}: gap in the log: expected lsn {start}, found {first}",
                        path.display()
                    )));
                }
                None => {}
                Some(expected) if first != expected => {
                    return Err(LogError::Corrupt(format!(
                        "{}: gap in the log: expected lsn {expected}, found {first}",
                        path.display()
                    )));
                }
                Some(_) => {}
            }
            expected = Some(record.last().0 + 1);
            if record.last().0 < start {
                continue;
            }
            record
                .decode_into(Lsn(start), max, &mut events)
                .map_err(corrupt)?;
        }
        Ok(events)
    }

    fn health(&self) -> Result<(), LogError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.shared.failure_error());
        }
        Ok(())
    }

    fn set_durable_listener(&self, listener: super::DurableListener) {
        // A second listener is ignored: the API registers one at startup.
        let _ = self.shared.listener.set(listener);
        // Anything already durable should not wait for the next batch to be noticed.
        self.shared.wake(false);
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        let path = &self.shared.path;
        let io = |what: &str, error: &dyn fmt::Display| {
            LogError::Io(format!("{}: {what}: {error}", path.display()))
        };
        let corrupt =
            |reason: String| LogError::Corrupt(format!("{}: checkpoint: {reason}", path.display()));
        let db = self.db.as_ref().ok_or(LogError::Closed)?;
        let txn = db.begin_read().map_err(|e| io("begin read", &e))?;
        let meta = txn.open_table(META).map_err(|e| io("open meta", &e))?;
        let number = |key: &str| -> Result<Option<u64>, LogError> {
            Ok(ReadableTable::get(&meta, key)
                .map_err(|e| io("read meta", &e))?
                .map(|v| v.value()))
        };
        let Some(next_lsn) = number(CHECKPOINT_NEXT_LSN_KEY)? else {
            return Ok(None);
        };
        let (Some(chunks), Some(length), Some(xxh3)) = (
            number(CHECKPOINT_CHUNKS_KEY)?,
            number(CHECKPOINT_BYTES_KEY)?,
            number(CHECKPOINT_XXH3_KEY)?,
        ) else {
            return Err(corrupt("its meta rows are incomplete".to_owned()));
        };
        let generation = number(CHECKPOINT_GENERATION_KEY)?.unwrap_or(0);
        if generation > 1 {
            return Err(corrupt(format!("generation {generation}")));
        }
        let length = usize::try_from(length).map_err(|_| corrupt("too large".to_owned()))?;
        let table = txn
            .open_table(CHECKPOINT)
            .map_err(|e| io("open checkpoint", &e))?;
        let mut bytes = Vec::with_capacity(length);
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
                    key.value() & ((1 << 32) - 1)
                )));
            }
            bytes.extend_from_slice(value.value());
            seen += 1;
        }
        if seen != chunks || bytes.len() != length {
            return Err(corrupt(format!(
                "{seen} chunks of {} bytes, expected {chunks} chunks of {length} bytes",
                bytes.len()
            )));
        }
        if xxhash_rust::xxh3::xxh3_64(&bytes) != xxh3 {
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        let checkpoint = encoding::decode_checkpoint(&bytes).map_err(|error| match error {
            LogError::Corrupt(reason) => LogError::Corrupt(format!("{}: {reason}", path.display())),
            other => other,
        })?;
        if checkpoint.next_lsn.0 != next_lsn {
            return Err(corrupt(format!(
                "it says next lsn {}, the meta table {next_lsn}",
                checkpoint.next_lsn
            )));
        }
        Ok(Some(checkpoint))
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

// --------------------------------------------------------------------------------------------
// Opening

fn validate(path: &Path, options: &RedbLogOptions) -> Result<(), OpenError> {
    let invalid = |reason: &str| OpenError::Options {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if options.batch_events_max == 0 {
        return Err(invalid("batch_events_max must be at least 1"));
    }
    if options.queue_events_max == 0 {
        return Err(invalid("queue_events_max must be at least 1"));
    }
    if let Durability::Async { flush_interval_ms } = options.durability
        && flush_interval_ms == 0
    {
        return Err(invalid(
            "flush_interval_ms must be at least 1 (use Durability::Sync for an fsync per batch)",
        ));
    }
    Ok(())
}

fn map_open_error(path: &Path, error: DatabaseError) -> OpenError {
    let path = path.to_owned();
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenError::InUse { path }
        }
        DatabaseError::UpgradeRequired(version) => OpenError::Corrupt {
            path,
            reason: format!("redb file format {version} is too old for redb 4"),
        },
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == io::ErrorKind::InvalidData =>
        {
            OpenError::Corrupt {
                path,
                reason: format!("not a redb database ({source})"),
            }
        }
        DatabaseError::Storage(StorageError::Io(source)) => OpenError::Io { path, source },
        DatabaseError::Storage(StorageError::Corrupted(reason)) => {
            OpenError::Corrupt { path, reason }
        }
        other => OpenError::Io {
            path,
            source: io::Error::other(other.to_string()),
        },
    }
}

fn open_database(
    path: &Path,
    backend: impl StorageBackend,
    options: &RedbLogOptions,
) -> Result<Database, OpenError> {
    let mut builder = Database::builder();
    builder
        .set_cache_size(options.cache_size_bytes)
        .set_check_integrity_on_open(options.check_integrity_on_open);
    // redb may panic on a file damaged outside it (its documented behaviour without the
    // integrity check). A panic here is still a refusal to open, so report it as corruption,
    // naming the file, rather than unwinding through the caller.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder.create_with_backend(backend)
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(map_open_error(path, error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("redb panicked");
            Err(OpenError::Corrupt {
                path: path.to_owned(),
                reason: format!("redb could not open it: {message}"),
            })
        }
    }
}

/// What [`prepare_tables`] found in the file.
struct Prepared {
    /// The last LSN the file holds (or covers, if the checkpoint trimmed every event).
    last_lsn: u64,
    /// The stored checkpoint's `next_lsn`; 0 without one.
    checkpoint_lsn: u64,
    /// The format version in the meta table (this build's for a new file).
    file_version: u64,
    /// The generation of the stored checkpoint's chunks.
    checkpoint_generation: u64,
    /// Event records with keys below this are wholly below the checkpoint, left to trim.
    trim_below: u64,
}

/// Creates the tables on first open, checks the format version, the checkpoint rows and the
/// gap-free run of events after the checkpoint, and returns what it found.
fn prepare_tables(path: &Path, db: &Database) -> Result<Prepared, OpenError> {
    let io = |what: &str, error: &dyn fmt::Display| OpenError::Io {
        path: path.to_owned(),
        source: io::Error::other(format!("{what}: {error}")),
    };
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let txn = db.begin_write().map_err(|e| io("begin write", &e))?;
    let prepared = {
        let mut meta = txn.open_table(META).map_err(|e| io("open meta", &e))?;
        let events = txn.open_table(EVENTS).map_err(|e| io("open events", &e))?;
        let mut chunks = txn
            .open_table(CHECKPOINT)
            .map_err(|e| io("open checkpoint", &e))?;
        let number =
            |meta: &::redb::Table<&str, u64>, key: &str| -> Result<Option<u64>, OpenError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| io("read meta", &e))?
                    .map(|v| v.value()))
            };
        let version = number(&meta, FORMAT_VERSION_KEY)?;
        let checkpoint_lsn = number(&meta, CHECKPOINT_NEXT_LSN_KEY)?;
        let len = events.len().map_err(|e| io("count events", &e))?;
        match version {
            Some(found) if found > LOG_FORMAT_VERSION => {
                return Err(OpenError::NewerFormat {
                    path: path.to_owned(),
                    found,
                    supported: LOG_FORMAT_VERSION,
                });
            }
            Some(found) if found >= LOG_FORMAT_VERSION_OLDEST => {}
            Some(found) => return Err(corrupt(format!("unknown log format version {found}"))),
            None if len == 0 && checkpoint_lsn.is_none() => {
                meta.insert(FORMAT_VERSION_KEY, LOG_FORMAT_VERSION)
                    .map_err(|e| io("write format version", &e))?;
            }
            None => {
                return Err(corrupt(format!(
                    "{len} events but no {FORMAT_VERSION_KEY} in the meta table"
                )));
            }
        }
        if version == Some(1) && checkpoint_lsn.is_some() {
            return Err(corrupt(
                "a format version 1 file cannot hold a checkpoint".to_owned(),
            ));
        }
        let generation = number(&meta, CHECKPOINT_GENERATION_KEY)?.unwrap_or(0);
        if generation > 1 {
            return Err(corrupt(format!("checkpoint generation {generation}")));
        }
        // Chunks outside the stored checkpoint's generation were staged by a checkpoint that
        // never switched (a crash), or are a replaced checkpoint's not yet swept: readers
        // ignore them, and they go now.
        let stale = match checkpoint_lsn {
            None => 0..u64::MAX,
            Some(_) => generation_keys(1 - generation),
        };
        if chunks
            .range(stale.clone())
            .map_err(|e| io("find stale chunks", &e))?
            .next()
            .is_some()
        {
            chunks
                .retain_in(stale, |_, _| false)
                .map_err(|e| io("delete stale chunks", &e))?;
        }
        let first_expected = match checkpoint_lsn {
            None => 1,
            Some(0) => return Err(corrupt("a checkpoint at lsn 0".to_owned())),
            Some(lsn) => {
                let stored = chunks.len().map_err(|e| io("count chunks", &e))?;
                if number(&meta, CHECKPOINT_CHUNKS_KEY)? != Some(stored) {
                    return Err(corrupt(format!(
                        "the checkpoint has {stored} chunks, the meta table says otherwise"
                    )));
                }
                lsn
            }
        };
        // The first and last records only: checking every record would read the whole file,
        // and recovery's `read_from` checks each one it replays anyway.
        let span =
            |entry: Option<(::redb::AccessGuard<'_, u64>, ::redb::AccessGuard<'_, &[u8]>)>| {
                entry
                    .map(|(key, value)| {
                        encoding::parse_record(Lsn(key.value()), value.value())
                            .map(|record| (record.first().0, record.last().0))
                            .map_err(|error| corrupt(error.to_string()))
                    })
                    .transpose()
            };
        let first = span(events.first().map_err(|e| io("read first record", &e))?)?;
        let last = span(events.last().map_err(|e| io("read last record", &e))?)?;
        // Records wholly below the checkpoint may remain (they are trimmed a few per commit
        // after it): the record holding its `next_lsn`, or ending just before it, is the one
        // that must join the checkpoint to the events after it.
        let holding = span(
            events
                .range(..=first_expected)
                .map_err(|e| io("find the checkpoint's record", &e))?
                .next_back()
                .transpose()
                .map_err(|e| io("read the checkpoint's record", &e))?,
        )?;
        let after = match holding {
            Some((start, end)) if end < first_expected => span(
                events
                    .range(start + 1..)
                    .map_err(|e| io("find the record after the checkpoint", &e))?
                    .next()
                    .transpose()
                    .map_err(|e| io("read the record after the checkpoint", &e))?,
            )?,
            _ => None,
        };
        let joined = match holding {
            None => true,
            Some((_, end)) if end >= first_expected => true,
            Some((_, end)) => {
                end + 1 == first_expected && after.is_none_or(|(start, _)| start == first_expected)
            }
        };
        let trim_below = match holding {
            _ if checkpoint_lsn.is_none() => 0,
            Some((start, end)) if end >= first_expected => start,
            _ => first_expected,
        };
        let last_lsn = match (first, last) {
            (None, None) => first_expected - 1,
            (Some((first, _)), Some((last_start, last))) => {
                // Each record holds at least one event, so `len` records cannot cover fewer
                // than `len` LSNs; in a file of format 1 or 2 each holds exactly one.
                let lone_events = version.is_some_and(|v| v < 3);
                if first == 0
                    || first > first_expected
                    || !joined
                    || last + 1 < first_expected
                    || last_start < first
                    || last - first + 1 < len
                    || (lone_events && last - first + 1 != len)
                {
                    return Err(corrupt(format!(
                        "the events are not a gap-free run from lsn {first_expected}: lsn \
                         {first}..={last} in {len} records"
                    )));
                }
                last
            }
            _ => return Err(corrupt("the events table is inconsistent".to_owned())),
        };
        Prepared {
            last_lsn,
            checkpoint_lsn: checkpoint_lsn.unwrap_or(0),
            file_version: version.unwrap_or(LOG_FORMAT_VERSION),
            checkpoint_generation: generation,
            trim_below,
        }
    };
    txn.commit().map_err(|e| io("commit", &e))?;
    Ok(prepared)
}

// --------------------------------------------------------------------------------------------
// The writer thread

struct Writer {
    db: Arc<Database>,
    receiver: Receiver<Message>,
    shared: Arc<Shared>,
    durability: Durability,
    batch_events_max: usize,
    /// The LSN the next written event must have.
    next_lsn: u64,
    /// The stored checkpoint's `next_lsn` (0: none).
    checkpoint_lsn: u64,
    batch: Vec<Arc<Event>>,
    /// Reused buffers: one event's bytes, a record's framed events, the whole record.
    scratch: Vec<u8>,
    buffer: Vec<u8>,
    record: Vec<u8>,
    /// The file's format version; below [`LOG_FORMAT_VERSION`] until the first batch record
    /// or checkpoint is committed.
    file_version: u64,
    /// In `Async` mode, when the oldest commit not yet covered by an fsync was made.
    unflushed_since: Option<Instant>,
    /// Waiters the last commit woke: most come straight back with their next command.
    expected: usize,
    /// The generation the stored checkpoint's chunks are in (see [`chunk_key`]).
    checkpoint_generation: u64,
    /// The checkpoint being staged, a few chunks per commit.
    staging: Option<Staging>,
    /// A generation whose chunks are stale (a replaced checkpoint's), deleted a few per commit.
    sweep_generation: Option<u64>,
    /// Event records with a key below this are covered by the stored checkpoint and deleted a
    /// few per commit (0: none).
    trim_below: u64,
}

/// A checkpoint the writer is staging into the generation the stored one is not in.
struct Staging {
    next_lsn: u64,
    bytes: Vec<u8>,
    reply: Sender<Result<(), LogError>>,
    generation: u64,
    /// Chunks committed so far.
    staged: u64,
    started: Instant,
}

const GATHER_MAX: Duration = Duration::from_micros(100);

/// Marks the writer gone when its thread ends, however it ends: waiters must never sleep on a
/// writer that will not wake them.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(format!(
                "{}: the log writer panicked",
                self.0.path.display()
            ));
        }
        self.0.writer_exited.store(true, Ordering::Release);
        self.0.wake(true);
    }
}

impl Writer {
    fn run(mut self) {
        let _exit = ExitGuard(Arc::clone(&self.shared));
        loop {
            let first = if self.staging.is_some() {
                // A checkpoint is being staged: never sleep, stage the next chunks instead.
                match self.receiver.try_recv() {
                    Ok(message) => Ok(message),
                    Err(TryRecvError::Empty) => {
                        if let Err(failure) = self.step_checkpoint() {
                            self.shared.fail(failure);
                            return;
                        }
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                match self.flush_deadline() {
                    None => self
                        .receiver
                        .recv()
                        .map_err(|_| RecvTimeoutError::Disconnected),
                    Some(deadline) => self.receiver.recv_deadline(deadline),
                }
            };
            match first {
                Ok(Message::Event(event)) => self.batch.push(event),
                Ok(Message::Checkpoint(checkpoint)) => {
                    if let Err(failure) = self.begin_checkpoint(checkpoint) {
                        self.shared.fail(failure);
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(failure) = self.flush() {
                        self.shared.fail(failure);
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Closed: everything queued has been committed; finish a staged checkpoint
                    // (its caller waits for it) and make everything durable.
                    while self.staging.is_some() {
                        if let Err(failure) = self.step_checkpoint() {
                            self.shared.fail(failure);
                            return;
                        }
                    }
                    if let Err(failure) = self.finish_sweep() {
                        self.shared.fail(failure);
                        return;
                    }
                    if self.unflushed_since.is_some()
                        && let Err(failure) = self.flush()
                    {
                        self.shared.fail(failure);
                    }
                    return;
                }
            }
            // A checkpoint ends the batch: it is staged after the events before it.
            let mut checkpoint = None;
            let gather_until = Instant::now() + GATHER_MAX;
            loop {
                while self.batch.len() < self.batch_events_max {
                    match self.receiver.try_recv() {
                        Ok(Message::Event(event)) => self.batch.push(event),
                        Ok(Message::Checkpoint(write)) => {
                            checkpoint = Some(write);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if checkpoint.is_some()
                    || self.batch.len() >= self.batch_events_max.min(self.expected)
                    || self.durability != Durability::Sync
                    || Instant::now() >= gather_until
                {
                    break;
                }
                std::thread::yield_now();
            }
            let fsync = match self.durability {
                Durability::Sync => true,
                Durability::Async { .. } => self
                    .flush_deadline()
                    .is_some_and(|deadline| Instant::now() >= deadline),
            };
            if let Err(failure) = self.commit_batch(fsync) {
                // A checkpoint taken here, or being staged, is answered by its dropped reply
                // sender.
                self.shared.fail(failure);
                return;
            }
            self.batch.clear();
            if let Some(checkpoint) = checkpoint
                && let Err(failure) = self.begin_checkpoint(checkpoint)
            {
                self.shared.fail(failure);
                return;
            }
        }
    }

    /// Takes a checkpoint to stage: later commits write its chunks, a few at a time, and the
    /// last switches to it (see `switch_checkpoint`). `Err` is a log failure; a checkpoint
    /// refused for being ahead of the log is answered without failing the log.
    fn begin_checkpoint(&mut self, write: CheckpointWrite) -> Result<(), String> {
        // One at a time: a second caller's checkpoint waits for the first to be switched to.
        while self.staging.is_some() {
            self.step_checkpoint()?;
        }
        let CheckpointWrite {
            next_lsn,
            bytes,
            reply,
        } = write;
        if next_lsn == 0 || next_lsn > self.next_lsn {
            // Nothing is written: the caller asked for something the log cannot hold.
            let _ = reply.send(Err(LogError::OutOfOrder {
                expected: Lsn(self.next_lsn),
                got: Lsn(next_lsn),
            }));
            return Ok(());
        }
        if next_lsn <= self.checkpoint_lsn {
            // The stored checkpoint is at least as new; it already covers this one.
            let _ = reply.send(Ok(()));
            return Ok(());
        }
        // Without a stored checkpoint generation 0 is free (old files keep theirs there).
        let generation = if self.checkpoint_lsn == 0 {
            0
        } else {
            1 - self.checkpoint_generation
        };
        if self.sweep_generation == Some(generation) {
            // The first staging commit clears the whole range.
            self.sweep_generation = None;
        }
        self.staging = Some(Staging {
            next_lsn,
            bytes,
            reply,
            generation,
            staged: 0,
            started: Instant::now(),
        });
        Ok(())
    }

    /// A write transaction with `durability`; a failure is worded by the caller's `fail`.
    fn begin(
        &self,
        durability: ::redb::Durability,
        fail: &dyn Fn(&str, &dyn fmt::Display) -> String,
    ) -> Result<::redb::WriteTransaction, String> {
        let mut txn = self.db.begin_write().map_err(|e| fail("begin", &e))?;
        txn.set_durability(durability)
            .map_err(|e| fail("set durability", &e))?;
        Ok(txn)
    }

    /// Stages the next chunks of the checkpoint in a commit of their own (no events were
    /// waiting), and switches to it once every chunk is in.
    fn step_checkpoint(&mut self) -> Result<(), String> {
        if self
            .flush_deadline()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.flush()?;
        }
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} while staging a checkpoint failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        // Staged chunks are ignored until the switch, whose fsync commit persists them.
        let txn = self.begin(::redb::Durability::None, &fail)?;
        let staged = Self::stage_chunks(&txn, self.staging.as_mut(), &self.shared.path)?;
        Self::sweep(
            &txn,
            &mut self.sweep_generation,
            self.trim_below,
            &self.shared.path,
        )?;
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.note_checkpoint_commit(started);
        if staged {
            self.switch_checkpoint()?;
        }
        Ok(())
    }

    /// Writes the next chunks of `staging` (if any) in `txn`; returns whether every chunk is
    /// then written.
    fn stage_chunks(
        txn: &::redb::WriteTransaction,
        staging: Option<&mut Staging>,
        path: &Path,
    ) -> Result<bool, String> {
        let Some(staging) = staging else {
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
    fn sweep(
        txn: &::redb::WriteTransaction,
        sweep_generation: &mut Option<u64>,
        trim_below: u64,
        path: &Path,
    ) -> Result<(), String> {
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!("{}: {what} failed: {error}", path.display())
        };
        if let Some(generation) = *sweep_generation {
            let mut chunks = txn
                .open_table(CHECKPOINT)
                .map_err(|e| fail("open chunks", &e))?;
            let keys = Self::first_keys(
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
                *sweep_generation = None;
            }
        }
        if trim_below > 0 {
            let mut events = txn
                .open_table(EVENTS)
                .map_err(|e| fail("open events", &e))?;
            let keys = Self::first_keys(&events, 0..trim_below, TRIM_RECORDS_PER_COMMIT)
                .map_err(|e| fail("find records to trim", &e))?;
            for key in keys {
                events.remove(key).map_err(|e| fail("trim", &e))?;
            }
        }
        Ok(())
    }

    /// Deletes whatever stale chunks and records below the checkpoint are left, in one fsync
    /// commit (at close, when no submitter waits on it).
    fn finish_sweep(&mut self) -> Result<(), String> {
        if self.sweep_generation.is_none() && self.trim_below == 0 {
            return Ok(());
        }
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} at close failed: {error}",
                self.shared.path.display()
            )
        };
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        let mut deleted = false;
        if let Some(generation) = self.sweep_generation.take() {
            let mut chunks = txn
                .open_table(CHECKPOINT)
                .map_err(|e| fail("open chunks", &e))?;
            let range = generation_keys(generation);
            if !Self::first_keys(&chunks, range.clone(), 1)
                .map_err(|e| fail("find stale chunks", &e))?
                .is_empty()
            {
                chunks
                    .retain_in(range, |_, _| false)
                    .map_err(|e| fail("delete stale chunks", &e))?;
                deleted = true;
            }
        }
        {
            let mut events = txn
                .open_table(EVENTS)
                .map_err(|e| fail("open events", &e))?;
            if !Self::first_keys(&events, 0..self.trim_below, 1)
                .map_err(|e| fail("find records to trim", &e))?
                .is_empty()
            {
                events
                    .retain_in(..self.trim_below, |_, _| false)
                    .map_err(|e| fail("trim", &e))?;
                deleted = true;
            }
        }
        if !deleted {
            // Nothing was left: no commit (dropping the transaction aborts it).
            return Ok(());
        }
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }

    /// Up to `max` keys of `table` in `range`, in order.
    fn first_keys<V: ::redb::Value + 'static>(
        table: &::redb::Table<u64, V>,
        range: std::ops::Range<u64>,
        max: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let mut keys = Vec::with_capacity(max);
        for entry in table.range(range)?.take(max) {
            keys.push(entry?.0.value());
        }
        Ok(keys)
    }

    fn note_checkpoint_commit(&self, started: Instant) {
        let mut stats = lock(&self.shared.stats);
        stats.checkpoint_commits += 1;
        stats.checkpoint_commit_ns_max =
            stats.checkpoint_commit_ns_max.max(nanos(started.elapsed()));
    }

    /// Switches to the fully staged checkpoint in one small fsync commit: the meta rows name
    /// its generation, and records wholly below its `next_lsn` are marked for trimming. After
    /// a crash the file holds either the old checkpoint (with every event after it) or the
    /// new one; never a mix. Answers the caller.
    fn switch_checkpoint(&mut self) -> Result<(), String> {
        let staging = self.staging.take().expect("a staged checkpoint");
        match self.commit_switch(&staging) {
            Ok(()) => {
                let _ = staging.reply.send(Ok(()));
                Ok(())
            }
            Err(failure) => {
                // Recorded before the caller hears of it, so it gets this failure.
                self.shared.fail(failure.clone());
                let _ = staging.reply.send(Err(self.shared.failure_error()));
                Err(failure)
            }
        }
    }

    fn commit_switch(&mut self, staging: &Staging) -> Result<(), String> {
        let next_lsn = staging.next_lsn;
        let bytes = &staging.bytes;
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of the checkpoint at lsn {next_lsn} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let trimmed = next_lsn - self.checkpoint_lsn.max(1);
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        let cut = {
            let mut meta = txn.open_table(META).map_err(|e| fail("open meta", &e))?;
            for (key, value) in [
                (FORMAT_VERSION_KEY, LOG_FORMAT_VERSION),
                (CHECKPOINT_NEXT_LSN_KEY, next_lsn),
                (
                    CHECKPOINT_CHUNKS_KEY,
                    bytes.len().div_ceil(CHECKPOINT_CHUNK_BYTES) as u64,
                ),
                (CHECKPOINT_BYTES_KEY, bytes.len() as u64),
                (CHECKPOINT_XXH3_KEY, xxhash_rust::xxh3::xxh3_64(bytes)),
                (CHECKPOINT_GENERATION_KEY, staging.generation),
            ] {
                meta.insert(key, value)
                    .map_err(|e| fail("write meta", &e))?;
            }
            let events = txn.open_table(EVENTS).map_err(|e| fail("open", &e))?;
            // Only records wholly below `next_lsn` go (in later commits): the one holding it
            // stays, and readers skip its leading events.
            let holding = events
                .range(..=next_lsn)
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
            match holding {
                Some((first, last)) if last >= next_lsn => first,
                _ => next_lsn,
            }
        };
        txn.commit().map_err(|e| fail("commit", &e))?;
        self.file_version = LOG_FORMAT_VERSION;
        self.sweep_generation = Some(1 - staging.generation);
        self.checkpoint_generation = staging.generation;
        self.trim_below = self.trim_below.max(cut);
        self.checkpoint_lsn = next_lsn;
        self.shared
            .checkpoint_lsn
            .store(next_lsn, Ordering::Release);
        self.note_checkpoint_commit(started);
        {
            let mut stats = lock(&self.shared.stats);
            stats.checkpoints += 1;
            stats.checkpoint_bytes_last = bytes.len() as u64;
            stats.events_trimmed += trimmed;
            stats.checkpoint_ns += nanos(staging.started.elapsed());
        }
        // An fsync commit persists every commit before it.
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }

    fn flush_deadline(&self) -> Option<Instant> {
        match self.durability {
            Durability::Sync => None,
            Durability::Async { flush_interval_ms } => self
                .unflushed_since
                .map(|since| since + Duration::from_millis(flush_interval_ms)),
        }
    }

    /// Writes the batch in one transaction and commits it, with an fsync if `fsync`.
    fn commit_batch(&mut self, fsync: bool) -> Result<(), String> {
        let first = self.next_lsn;
        let count = self.batch.len() as u64;
        let last = first + count - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of lsn {first}..={last} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let durability = if fsync {
            ::redb::Durability::Immediate
        } else {
            ::redb::Durability::None
        };
        let txn = self.begin(durability, &fail)?;
        {
            if self.file_version < LOG_FORMAT_VERSION {
                // Batch records follow: older builds must refuse the file from this commit on.
                txn.open_table(META)
                    .map_err(|e| fail("open meta", &e))?
                    .insert(FORMAT_VERSION_KEY, LOG_FORMAT_VERSION)
                    .map_err(|e| fail("write format version", &e))?;
            }
            let mut table = txn.open_table(EVENTS).map_err(|e| fail("open", &e))?;
            // Appending through a cursor at the end of the table: the keys are ascending, and
            // the cursor refuses one that is not (a second guard on continuity).
            let mut cursor = table
                .upper_bound_mut(Bound::<u64>::Unbounded)
                .map_err(|e| fail("seek", &e))?;
            let mut events = self.batch.iter().peekable();
            while events.peek().is_some() {
                // One record per batch, cut where it would outgrow one 64 KiB allocation.
                let record_first = self.next_lsn;
                self.record.clear();
                self.buffer.clear();
                let mut count = 0u64;
                while let Some(event) = events.next_if(|_| self.buffer.len() < RECORD_BYTES_TARGET)
                {
                    // The durable log must stay a gap-free prefix: checked in every build.
                    assert_eq!(
                        event.lsn.0, self.next_lsn,
                        "log writer: events must arrive in LSN order with no gap"
                    );
                    self.scratch.clear();
                    encoding::encode_into(event, &mut self.scratch)
                        .map_err(|e| fail("encode", &e))?;
                    encoding::push_framed(&mut self.buffer, &self.scratch);
                    self.next_lsn += 1;
                    count += 1;
                }
                encoding::finish_batch(&mut self.record, count, &self.buffer);
                cursor
                    .insert_before(record_first, self.record.as_slice())
                    .map_err(|e| fail("insert", &e))?;
            }
            cursor.close().map_err(|e| fail("insert", &e))?;
        }
        // A checkpoint being staged rides along a few chunks at a time, so the batch waits
        // for those only, never for the whole checkpoint.
        let staging = self.staging.is_some();
        let staged = Self::stage_chunks(&txn, self.staging.as_mut(), &self.shared.path)?;
        Self::sweep(
            &txn,
            &mut self.sweep_generation,
            self.trim_below,
            &self.shared.path,
        )?;
        let inserted = Instant::now();
        txn.commit().map_err(|e| fail("commit", &e))?;
        let committed = Instant::now();
        self.file_version = LOG_FORMAT_VERSION;

        lock(&self.shared.stats).record_batch(
            count,
            nanos(inserted - started),
            nanos(committed - inserted),
            fsync,
        );
        if fsync {
            self.unflushed_since = None;
            self.expected = self.shared.advance(last, Some(last));
        } else {
            self.unflushed_since.get_or_insert(started);
            self.shared.advance(last, None);
        }
        if staging {
            self.note_checkpoint_commit(started);
        }
        if staged {
            self.switch_checkpoint()?;
        }
        Ok(())
    }

    /// Makes every committed batch durable with an empty fsync commit (`Async` mode).
    fn flush(&mut self) -> Result<(), String> {
        let last = self.next_lsn - 1;
        let fail = |what: &str, error: &dyn fmt::Display| {
            format!(
                "{}: {what} of the flush up to lsn {last} failed: {error}",
                self.shared.path.display()
            )
        };
        let started = Instant::now();
        let txn = self.begin(::redb::Durability::Immediate, &fail)?;
        txn.commit().map_err(|e| fail("commit", &e))?;
        {
            let mut stats = lock(&self.shared.stats);
            stats.fsync_commits += 1;
            stats.commit_ns += nanos(started.elapsed());
        }
        self.unflushed_since = None;
        self.shared.advance(last, Some(last));
        Ok(())
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

// --------------------------------------------------------------------------------------------
// Fault injection

/// A [`FileBackend`] behind a volatile write cache, with a switch that makes the device fail.
/// For tests and simulations of disk faults, with a real redb file underneath.
///
/// Writes and length changes are held in memory until `sync_data`, which applies them to the
/// file and syncs it; reads see the cached writes over the file. That is the model of a disk
/// (or page cache) whose unsynced writes are lost on power failure, and of Linux after a failed
/// fsync, which may drop the dirty pages it could not write. Through the [`FaultSwitch`]:
/// - [`FaultSwitch::fail_next_sync`]: the next `sync_data` fails with `EIO` and the cached
///   writes are lost; from then on the device is dead.
/// - [`FaultSwitch::power_cut`]: the cached writes are lost now and the device is dead.
/// - [`FaultSwitch::hold_syncs`] / [`FaultSwitch::release_syncs`]: a stalled disk; every
///   `sync_data` blocks until released (for back-pressure tests).
///
/// A dead device fails every read, write, length change and sync with `EIO`; the file keeps
/// what the last successful sync left, which is what a reopen (with a plain backend) sees.
/// Locks are passed through to the file, so a dead backend still holds and releases them.
#[derive(Debug)]
pub struct FaultyFileBackend {
    inner: FileBackend,
    state: Arc<FaultState>,
}

/// Controls a [`FaultyFileBackend`] from outside the database.
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<FaultState>);

#[derive(Debug, Default)]
struct FaultState {
    fail_next_sync: AtomicBool,
    dead: AtomicBool,
    cache: Mutex<WriteCache>,
    stall: Mutex<Stall>,
    stall_released: Condvar,
}

#[derive(Debug, Default)]
struct Stall {
    held: bool,
    /// `sync_data` calls blocked right now.
    blocked: u64,
}

#[derive(Debug, Default)]
struct WriteCache {
    ops: Vec<CachedOp>,
    /// The storage length as redb sees it (`None`: the file's own length).
    len: Option<u64>,
}

#[derive(Debug)]
enum CachedOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FaultSwitch {
    /// The next `sync_data` fails and loses the writes since the last one; the device is dead
    /// after it.
    pub fn fail_next_sync(&self) {
        self.0.fail_next_sync.store(true, Ordering::Release);
    }

    /// Loses every write since the last sync, now, and kills the device: the file is what a
    /// power cut at this instant would leave.
    pub fn power_cut(&self) {
        let mut cache = lock(&self.0.cache);
        self.0.dead.store(true, Ordering::Release);
        *cache = WriteCache::default();
        drop(cache);
        // A dead device does not stall: blocked syncs go on to fail.
        self.release_syncs();
    }

    /// From now on every `sync_data` blocks (before touching the file) until
    /// [`Self::release_syncs`].
    pub fn hold_syncs(&self) {
        lock(&self.0.stall).held = true;
    }

    pub fn release_syncs(&self) {
        lock(&self.0.stall).held = false;
        self.0.stall_released.notify_all();
    }

    /// How many `sync_data` calls are blocked by [`Self::hold_syncs`] right now.
    pub fn blocked_syncs(&self) -> u64 {
        lock(&self.0.stall).blocked
    }

    pub fn is_dead(&self) -> bool {
        self.0.dead.load(Ordering::Acquire)
    }
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: device dead ({what})"))
}

impl FaultyFileBackend {
    /// Opens (or creates) `path` behind the cache; returns the backend and its switch.
    pub fn open(path: &Path) -> io::Result<(FaultyFileBackend, FaultSwitch)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        let state = Arc::new(FaultState::default());
        Ok((
            FaultyFileBackend {
                inner,
                state: Arc::clone(&state),
            },
            FaultSwitch(state),
        ))
    }

    fn check_alive(&self, what: &str) -> io::Result<()> {
        if self.state.dead.load(Ordering::Acquire) {
            return Err(eio(what));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyFileBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.check_alive("len")?;
        let cache = lock(&self.state.cache);
        match cache.len {
            Some(len) => Ok(len),
            None => self.inner.len(),
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.check_alive("read")?;
        let cache = lock(&self.state.cache);
        let len = match cache.len {
            Some(len) => len,
            None => self.inner.len()?,
        };
        let end = offset + out.len() as u64;
        if end > len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the storage",
            ));
        }
        // The file's bytes (zeros past its end), then every cached operation in order.
        let file_len = self.inner.len()?;
        let from_file = file_len.saturating_sub(offset).min(out.len() as u64) as usize;
        if from_file > 0 {
            self.inner.read(offset, &mut out[..from_file])?;
        }
        out[from_file..].fill(0);
        for op in &cache.ops {
            match op {
                CachedOp::Write { offset: at, data } => {
                    let at_end = at + data.len() as u64;
                    let start = offset.max(*at);
                    let stop = end.min(at_end);
                    if start < stop {
                        out[(start - offset) as usize..(stop - offset) as usize]
                            .copy_from_slice(&data[(start - at) as usize..(stop - at) as usize]);
                    }
                }
                CachedOp::SetLen(new_len) => {
                    // Bytes cut off by a shrink read as zero if the storage grows again.
                    if *new_len < end {
                        let start = new_len.saturating_sub(offset) as usize;
                        out[start..].fill(0);
                    }
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_alive("set_len")?;
        let mut cache = lock(&self.state.cache);
        cache.ops.push(CachedOp::SetLen(len));
        cache.len = Some(len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        {
            let mut stall = lock(&self.state.stall);
            stall.blocked += 1;
            while stall.held {
                stall = self
                    .state
                    .stall_released
                    .wait(stall)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            stall.blocked -= 1;
        }
        self.check_alive("sync_data")?;
        let mut cache = lock(&self.state.cache);
        if self.state.fail_next_sync.swap(false, Ordering::AcqRel) {
            self.state.dead.store(true, Ordering::Release);
            *cache = WriteCache::default();
            return Err(eio("sync_data failed; unsynced writes lost"));
        }
        for op in cache.ops.drain(..) {
            match op {
                CachedOp::Write { offset, data } => self.inner.write(offset, &data)?,
                CachedOp::SetLen(len) => self.inner.set_len(len)?,
            }
        }
        cache.len = None;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_alive("write")?;
        let mut cache = lock(&self.state.cache);
        let end = offset + data.len() as u64;
        let len = match cache.len {
            Some(len) => len,
            None => self.inner.len()?,
        };
        cache.len = Some(len.max(end));
        cache.ops.push(CachedOp::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), ::redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), ::redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), ::redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, ::redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
