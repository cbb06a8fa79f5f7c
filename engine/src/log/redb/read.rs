//! Reading events back ([`super::EventLog::read_from`]): from one snapshot, checking that the
//! records it reads join with no gap or overlap.

use super::BATCH_EVENTS_MAX_DEFAULT;
use super::layout::{CHECKPOINT_NEXT_LSN_KEY, EVENTS, HISTORY_START_LSN_KEY, META};
use crate::error::LogError;
use crate::event::Event;
use crate::log::encoding;
use crate::types::Lsn;
use ::redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Up to `max` events from LSN `from` on, in order. `Trimmed` below the first LSN kept (the
/// history's start, or else the stored checkpoint's `next_lsn`); `Corrupt`, naming the file, for a record that does not parse or decode, or a
/// gap or overlap between records.
pub(super) fn read_from(
    db: &Database,
    path: &Path,
    from: Lsn,
    max: usize,
) -> Result<Vec<Arc<Event>>, LogError> {
    let io = |what: &str, error: &dyn fmt::Display| {
        LogError::Io(format!("{}: {what}: {error}", path.display()))
    };
    let txn = db.begin_read().map_err(|e| io("begin read", &e))?;
    let table = txn.open_table(EVENTS).map_err(|e| io("open events", &e))?;
    let start = from.0.max(1);
    // The checkpoint row and the events are read from the same snapshot, so a checkpoint
    // committed meanwhile cannot make a trimmed range look like a gap.
    let meta = txn.open_table(META).map_err(|e| io("open meta", &e))?;
    let row = |key: &str| {
        ReadableTable::get(&meta, key)
            .map(|v| v.map(|v| v.value()))
            .map_err(|e| io("read the first lsn kept", &e))
    };
    let first_retained = match row(HISTORY_START_LSN_KEY)? {
        Some(lsn) => lsn,
        None => row(CHECKPOINT_NEXT_LSN_KEY)?.unwrap_or(1),
    }
    .max(1);
    if start < first_retained {
        return Err(LogError::Trimmed {
            first_retained: Lsn(first_retained),
        });
    }
    let mut events = Vec::with_capacity(max.min(BATCH_EVENTS_MAX_DEFAULT));
    if max == 0 {
        return Ok(events);
    }
    read_records(&table, path, start, max, &mut events, &io)?;
    Ok(events)
}

/// Decodes the records from the one holding `start` on into `events`, until it holds `max`.
fn read_records(
    table: &ReadOnlyTable<u64, &[u8]>,
    path: &Path,
    start: u64,
    max: usize,
    events: &mut Vec<Arc<Event>>,
    io: &dyn Fn(&str, &dyn fmt::Display) -> LogError,
) -> Result<(), LogError> {
    let corrupt = |error: LogError| match error {
        LogError::Corrupt(reason) => LogError::Corrupt(format!("{}: {reason}", path.display())),
        other => other,
    };
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
        let record = encoding::parse_record(Lsn(key.value()), value.value()).map_err(corrupt)?;
        let first = record.first().0;
        check_joins(path, expected, start, first)?;
        expected = Some(record.last().0 + 1);
        if record.last().0 < start {
            continue;
        }
        record
            .decode_into(Lsn(start), max, events)
            .map_err(corrupt)?;
    }
    Ok(())
}

/// Checks that a record starting at `first` follows the previous one, which ended just before
/// `expected` (`None`: this is the first record read, which must not begin after `start`; it
/// may end before `start`, and then the next must be absent).
fn check_joins(path: &Path, expected: Option<u64>, start: u64, first: u64) -> Result<(), LogError> {
    let want = match expected {
        None if first > start => start,
        Some(expected) if first != expected => expected,
        _ => return Ok(()),
    };
    Err(LogError::Corrupt(format!(
        "{}: gap in the log: expected lsn {want}, found {first}",
        path.display()
    )))
}
