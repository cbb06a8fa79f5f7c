//! Opening a log: the options check, what is found in the data folder (with `folder.rs`), the
//! creation of a new log, redb's open (its errors and panics as [`OpenError`]), the checks of
//! the tables before anything is trusted, and the start of the writer thread.

use super::checkpoint::Checkpoints;
use super::folder::{self, LogFile};
use super::layout::{
    CHECKPOINT, CHECKPOINT_CHUNKS_KEY, CHECKPOINT_GENERATION_KEY, CHECKPOINT_NEXT_LSN_KEY, EVENTS,
    FILE_NAME, FORMAT_VERSION_KEY, HISTORY_START_LSN_KEY, LOG_FORMAT_VERSION, MARKER_FILE_NAME,
    META, generation_keys,
};
use super::shared::Shared;
use super::writer::Writer;
use super::{Durability, OpenError, RedbLog, RedbLogOptions};
use crate::log::encoding;
use crate::types::Lsn;
use ::redb::backends::FileBackend;
use ::redb::{
    AccessGuard, Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageBackend,
    StorageError, Table,
};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

impl RedbLog {
    /// Opens the log in data folder `dir` and starts the writer thread.
    ///
    /// - A folder that never held a log (no `ledger.redb`, no `LOG_CREATED` marker) gets a new,
    ///   empty log: the folder is created if missing, the file is built under a temporary
    ///   name, synced and linked into place, and then the marker is written.
    /// - A folder whose marker says it has held a log but has no `ledger.redb` is refused
    ///   ([`OpenError::MissingFile`]), and an empty (0-byte) `ledger.redb` always is
    ///   ([`OpenError::EmptyFile`]): the history is gone, and an empty log would reuse its LSNs.
    /// - Otherwise the file is opened and checked. It is refused, naming it, if another process
    ///   (or another `RedbLog` in this one) has it open, if it is of another format version,
    ///   or if it is not a log or is corrupt: a file that cannot be trusted never opens as an
    ///   empty log. A good file in a folder without the marker (from a build before it) gets
    ///   the marker.
    ///
    /// To start over on purpose, move the folder away (or delete it); nothing here deletes a
    /// log.
    pub fn open(dir: &Path, options: RedbLogOptions) -> Result<RedbLog, OpenError> {
        let path = dir.join(FILE_NAME);
        validate(&path, &options)?;
        std::fs::create_dir_all(dir).map_err(|source| in_dir(dir, source))?;
        let (found, marked) = look(dir, &path)?;
        let marked = match decide(dir, &path, found, marked)? {
            Found::Log => marked,
            Found::Nothing => create_log(dir, &path, &options)?,
        };
        let log = open_file(&path, &options)?;
        if !marked {
            let _lock = folder::lock(dir).map_err(|source| in_dir(dir, source))?;
            folder::write_marker(dir).map_err(|source| in_dir(dir, source))?;
        }
        Ok(log)
    }

    /// Opens the log on any redb storage backend; an empty one gets a new log. For fault
    /// injection in tests (see [`crate::testing::faults::FaultyFileBackend`]): none of the
    /// folder's checks of [`RedbLog::open`] are made, and `path` is only used in messages.
    #[cfg(feature = "testing")]
    pub fn open_with_backend(
        path: &Path,
        backend: impl StorageBackend,
        options: RedbLogOptions,
    ) -> Result<RedbLog, OpenError> {
        validate(path, &options)?;
        let new = backend.len().map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })? == 0;
        let db = open_database(path, backend, &options)?;
        if new {
            init_tables(path, &db)?;
        }
        open_db(path, db, &options)
    }
}

/// Opens the existing log file `path` and starts the writer.
fn open_file(path: &Path, options: &RedbLogOptions) -> Result<RedbLog, OpenError> {
    // Never `create`: a file that vanished since it was looked at is not a new log.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })?;
    let backend = FileBackend::new(file).map_err(|error| map_open_error(path, error))?;
    let db = open_database(path, backend, options)?;
    open_db(path, db, options)
}

/// Checks the tables of `db` (the log file `path`) and starts the writer.
fn open_db(path: &Path, db: Database, options: &RedbLogOptions) -> Result<RedbLog, OpenError> {
    let prepared = prepare_tables(path, &db)?;
    start(path, db, options, prepared)
}

fn in_dir(dir: &Path, source: io::Error) -> OpenError {
    OpenError::Io {
        path: dir.to_owned(),
        source,
    }
}

/// What is at the log file `path` in `dir`, and whether `dir` holds the marker.
fn look(dir: &Path, path: &Path) -> Result<(LogFile, bool), OpenError> {
    let marked = folder::has_marker(dir).map_err(|source| in_dir(dir, source))?;
    let found = folder::log_file(path).map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok((found, marked))
}

/// What a data folder holds, as far as opening it goes.
enum Found {
    /// A log file to open (and check).
    Log,
    /// No log file, and no sign there ever was one: a new log is created.
    Nothing,
}

/// Refuses a log file that lost its contents: an empty one, or a missing one where the marker
/// says a log was.
fn decide(dir: &Path, path: &Path, found: LogFile, marked: bool) -> Result<Found, OpenError> {
    match found {
        LogFile::Present => Ok(Found::Log),
        LogFile::Missing if !marked => Ok(Found::Nothing),
        LogFile::Missing => Err(OpenError::MissingFile {
            path: path.to_owned(),
            marker: dir.join(MARKER_FILE_NAME),
        }),
        LogFile::Empty => Err(OpenError::EmptyFile {
            path: path.to_owned(),
        }),
    }
}

/// Creates a new log at `path` in `dir` under the folder's lock, unless another open did while
/// this one waited for it; returns whether the marker is there. Builds the file under a
/// temporary name (tables and format version, fsynced), links it into place, syncs the
/// folder, and writes the marker. A crash at any point leaves either no `ledger.redb` (and a
/// leftover, removed by the next creation) or a whole new one, perhaps without the marker,
/// which the next open writes.
fn create_log(dir: &Path, path: &Path, options: &RedbLogOptions) -> Result<bool, OpenError> {
    let _lock = folder::lock(dir).map_err(|source| in_dir(dir, source))?;
    let (found, marked) = look(dir, path)?;
    if let Found::Log = decide(dir, path, found, marked)? {
        return Ok(marked);
    }
    folder::remove_leftovers(dir).map_err(|source| in_dir(dir, source))?;
    let built = folder::new_file_path(dir);
    let placed = build_file(&built, options).and_then(|()| {
        folder::link_into_place(&built, path).map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })
    });
    // The log, if placed, lives on under `path`; only the temporary name goes.
    let removed = std::fs::remove_file(&built);
    placed?;
    removed.map_err(|source| OpenError::Io {
        path: built,
        source,
    })?;
    folder::sync_dir(dir).map_err(|source| in_dir(dir, source))?;
    folder::write_marker(dir).map_err(|source| in_dir(dir, source))?;
    Ok(true)
}

/// Builds a new, empty log file at `path`, which must not exist.
fn build_file(path: &Path, options: &RedbLogOptions) -> Result<(), OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    let backend = FileBackend::new(file).map_err(|error| map_open_error(path, error))?;
    let db = open_database(path, backend, options)?;
    init_tables(path, &db)?;
    db.close()
        .map_err(|error| io(io::Error::other(error.to_string())))
}

/// Creates the tables of a new log and writes its format version, in one fsync commit.
fn init_tables(path: &Path, db: &Database) -> Result<(), OpenError> {
    let errors = Errors(path);
    let txn = db.begin_write().map_err(|e| errors.io("begin write", &e))?;
    txn.open_table(EVENTS)
        .map_err(|e| errors.io("create events", &e))?;
    txn.open_table(CHECKPOINT)
        .map_err(|e| errors.io("create checkpoint", &e))?;
    txn.open_table(META)
        .map_err(|e| errors.io("create meta", &e))?
        .insert(FORMAT_VERSION_KEY, LOG_FORMAT_VERSION)
        .map_err(|e| errors.io("write format version", &e))?;
    // A new transaction's durability is redb's `Immediate`: the commit syncs the file.
    txn.commit().map_err(|e| errors.io("commit", &e))
}

/// Starts the writer thread on a database whose tables [`prepare_tables`] checked.
fn start(
    path: &Path,
    db: Database,
    options: &RedbLogOptions,
    prepared: Prepared,
) -> Result<RedbLog, OpenError> {
    let shared = Arc::new(Shared::new(
        path.to_owned(),
        options.durability,
        options.queue_events_max,
        prepared.last_lsn,
        prepared.checkpoint_lsn,
    ));
    let db = Arc::new(db);
    let (sender, receiver) = crossbeam_channel::unbounded();
    let writer = Writer::new(
        Arc::clone(&db),
        receiver,
        Arc::clone(&shared),
        options,
        prepared.last_lsn,
        Checkpoints::new(
            prepared.checkpoint_lsn,
            prepared.checkpoint_generation,
            prepared.trim_below,
        ),
    );
    let handle = std::thread::Builder::new()
        .name("inv-log-writer".to_owned())
        .spawn(move || writer.run())
        .map_err(|source| OpenError::Thread {
            path: path.to_owned(),
            source,
        })?;
    Ok(RedbLog {
        shared,
        sender: Mutex::new(Some(sender)),
        writer: Some(handle),
        db: Some(db),
    })
}

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
        DatabaseError::Storage(StorageError::Io(source))
            if source.kind() == io::ErrorKind::UnexpectedEof =>
        {
            OpenError::Corrupt {
                path,
                reason: format!("it ends before redb's structures do: truncated? ({source})"),
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
    /// The generation of the stored checkpoint's chunks.
    checkpoint_generation: u64,
    /// Event records with keys below this are wholly below the checkpoint, left to trim.
    trim_below: u64,
}

/// Words open's errors, naming the file.
#[derive(Clone, Copy)]
struct Errors<'a>(&'a Path);

impl Errors<'_> {
    fn io(self, what: &str, error: &dyn fmt::Display) -> OpenError {
        OpenError::Io {
            path: self.0.to_owned(),
            source: io::Error::other(format!("{what}: {error}")),
        }
    }

    fn corrupt(self, reason: String) -> OpenError {
        OpenError::Corrupt {
            path: self.0.to_owned(),
            reason,
        }
    }
}

/// A row of the meta table.
fn number(
    meta: &Table<&str, u64>,
    key: &str,
    errors: Errors<'_>,
) -> Result<Option<u64>, OpenError> {
    Ok(meta
        .get(key)
        .map_err(|e| errors.io("read meta", &e))?
        .map(|v| v.value()))
}

/// Checks the format version, the checkpoint rows and the gap-free run of events after the
/// checkpoint, deletes chunks no checkpoint uses, and returns what it found. Creates nothing:
/// a file without the tables is refused (the transaction is dropped, not committed).
fn prepare_tables(path: &Path, db: &Database) -> Result<Prepared, OpenError> {
    let errors = Errors(path);
    let txn = db.begin_write().map_err(|e| errors.io("begin write", &e))?;
    let prepared = {
        let meta = txn
            .open_table(META)
            .map_err(|e| errors.io("open meta", &e))?;
        let events = txn
            .open_table(EVENTS)
            .map_err(|e| errors.io("open events", &e))?;
        let mut chunks = txn
            .open_table(CHECKPOINT)
            .map_err(|e| errors.io("open checkpoint", &e))?;
        let checkpoint_lsn = number(&meta, CHECKPOINT_NEXT_LSN_KEY, errors)?;
        check_version(&meta, &events, errors)?;
        let generation = checkpoint_generation(&meta, checkpoint_lsn, errors)?;
        delete_stale_chunks(&mut chunks, checkpoint_lsn, generation, errors)?;
        let first_expected = match checkpoint_lsn {
            None => 1,
            Some(0) => return Err(errors.corrupt("a checkpoint at lsn 0".to_owned())),
            Some(lsn) => {
                let stored = chunks.len().map_err(|e| errors.io("count chunks", &e))?;
                if number(&meta, CHECKPOINT_CHUNKS_KEY, errors)? != Some(stored) {
                    return Err(errors.corrupt(format!(
                        "the checkpoint has {stored} chunks, the meta table says otherwise"
                    )));
                }
                lsn
            }
        };
        let (last_lsn, mut trim_below) =
            check_events(&events, checkpoint_lsn, first_expected, errors)?;
        // Records below the checkpoint but within the kept history stay.
        if let Some(history_start) = number(&meta, HISTORY_START_LSN_KEY, errors)?
            && history_start < first_expected
            && checkpoint_lsn.is_some()
        {
            let holding = events
                .range(..=history_start)
                .map_err(|e| errors.io("find the history's first record", &e))?
                .next_back()
                .transpose()
                .map_err(|e| errors.io("read the history's first record", &e))?
                .map_or(history_start, |(key, _)| key.value());
            trim_below = trim_below.min(holding);
        }
        Prepared {
            last_lsn,
            checkpoint_lsn: checkpoint_lsn.unwrap_or(0),
            checkpoint_generation: generation,
            trim_below,
        }
    };
    txn.commit().map_err(|e| errors.io("commit", &e))?;
    Ok(prepared)
}

/// Checks that the file is of this build's format version (which `init_tables` wrote into it
/// when it was created).
fn check_version(
    meta: &Table<&str, u64>,
    events: &Table<u64, &[u8]>,
    errors: Errors<'_>,
) -> Result<(), OpenError> {
    let version = number(meta, FORMAT_VERSION_KEY, errors)?;
    let len = events.len().map_err(|e| errors.io("count events", &e))?;
    let (path, supported) = (errors.0.to_owned(), LOG_FORMAT_VERSION);
    match version {
        Some(LOG_FORMAT_VERSION) => Ok(()),
        Some(found) if found > LOG_FORMAT_VERSION => Err(OpenError::NewerFormat {
            path,
            found,
            supported,
        }),
        Some(0) => Err(errors.corrupt("unknown log format version 0".to_owned())),
        Some(found) => Err(OpenError::OlderFormat {
            path,
            found,
            supported,
        }),
        None => Err(errors.corrupt(format!(
            "no {FORMAT_VERSION_KEY} in the meta table ({len} event records): not an event log"
        ))),
    }
}

/// The generation of the stored checkpoint's chunks (0 without a checkpoint); a checkpoint
/// must name it.
fn checkpoint_generation(
    meta: &Table<&str, u64>,
    checkpoint_lsn: Option<u64>,
    errors: Errors<'_>,
) -> Result<u64, OpenError> {
    if checkpoint_lsn.is_none() {
        return Ok(0);
    }
    match number(meta, CHECKPOINT_GENERATION_KEY, errors)? {
        Some(generation @ 0..=1) => Ok(generation),
        Some(generation) => Err(errors.corrupt(format!("checkpoint generation {generation}"))),
        None => Err(errors.corrupt(format!(
            "a checkpoint without {CHECKPOINT_GENERATION_KEY} in the meta table"
        ))),
    }
}

/// Deletes chunks outside the stored checkpoint's generation (every chunk without a
/// checkpoint): a checkpoint that never switched (a crash) staged them, or they are a replaced
/// checkpoint's not yet swept. Readers ignore them.
fn delete_stale_chunks(
    chunks: &mut Table<u64, &[u8]>,
    checkpoint_lsn: Option<u64>,
    generation: u64,
    errors: Errors<'_>,
) -> Result<(), OpenError> {
    let stale = match checkpoint_lsn {
        None => 0..u64::MAX,
        Some(_) => generation_keys(1 - generation),
    };
    if chunks
        .range(stale.clone())
        .map_err(|e| errors.io("find stale chunks", &e))?
        .next()
        .is_some()
    {
        chunks
            .retain_in(stale, |_, _| false)
            .map_err(|e| errors.io("delete stale chunks", &e))?;
    }
    Ok(())
}

/// A record as read from the events table.
type Entry<'a> = (AccessGuard<'a, u64>, AccessGuard<'a, &'static [u8]>);

/// The first and last LSNs of the record in `entry`, if any.
fn span(entry: Option<Entry<'_>>, errors: Errors<'_>) -> Result<Option<(u64, u64)>, OpenError> {
    entry
        .map(|(key, value)| {
            encoding::parse_record(Lsn(key.value()), value.value())
                .map(|record| (record.first().0, record.last().0))
                .map_err(|error| errors.corrupt(error.to_string()))
        })
        .transpose()
}

/// Checks that the records run from `first_expected` (the checkpoint's `next_lsn`, or 1) with
/// no gap, reading only the first and last records and those that join the checkpoint:
/// checking every record would read the whole file, and recovery's `read_from` checks each one
/// it replays anyway. Returns the last LSN and the key below which records are left to trim.
fn check_events(
    events: &Table<u64, &[u8]>,
    checkpoint_lsn: Option<u64>,
    first_expected: u64,
    errors: Errors<'_>,
) -> Result<(u64, u64), OpenError> {
    let len = events.len().map_err(|e| errors.io("count events", &e))?;
    let first = span(
        events
            .first()
            .map_err(|e| errors.io("read first record", &e))?,
        errors,
    )?;
    let last = span(
        events
            .last()
            .map_err(|e| errors.io("read last record", &e))?,
        errors,
    )?;
    let (holding, joined) = joining_record(events, first_expected, errors)?;
    let trim_below = match holding {
        _ if checkpoint_lsn.is_none() => 0,
        Some((start, end)) if end >= first_expected => start,
        _ => first_expected,
    };
    let last_lsn = match (first, last) {
        (None, None) => first_expected - 1,
        (Some((first, _)), Some((last_start, last))) => {
            // Each record holds at least one event, so `len` records cannot cover fewer
            // than `len` LSNs.
            if first == 0
                || first > first_expected
                || !joined
                || last + 1 < first_expected
                || last_start < first
                || last - first + 1 < len
            {
                return Err(errors.corrupt(format!(
                    "the events are not a gap-free run from lsn {first_expected}: lsn \
                     {first}..={last} in {len} records"
                )));
            }
            last
        }
        _ => return Err(errors.corrupt("the events table is inconsistent".to_owned())),
    };
    Ok((last_lsn, trim_below))
}

/// The span of the record holding `first_expected`, or else of the last one before it (records
/// wholly below the checkpoint may remain until trimmed), and whether the records join the
/// checkpoint to the events after it: that record holds `first_expected`, or ends just before
/// it and the next record (if any) starts at it.
fn joining_record(
    events: &Table<u64, &[u8]>,
    first_expected: u64,
    errors: Errors<'_>,
) -> Result<(Option<(u64, u64)>, bool), OpenError> {
    let holding = span(
        events
            .range(..=first_expected)
            .map_err(|e| errors.io("find the checkpoint's record", &e))?
            .next_back()
            .transpose()
            .map_err(|e| errors.io("read the checkpoint's record", &e))?,
        errors,
    )?;
    let after = match holding {
        Some((start, end)) if end < first_expected => span(
            events
                .range(start + 1..)
                .map_err(|e| errors.io("find the record after the checkpoint", &e))?
                .next()
                .transpose()
                .map_err(|e| errors.io("read the record after the checkpoint", &e))?,
            errors,
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
    Ok((holding, joined))
}
