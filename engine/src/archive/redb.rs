//! The durable key archive: `<dir>/keys.redb`, beside the event log (see the module doc of
//! `archive` for what is evicted here and why).
//!
//! # Tables
//! - `entries` (`&[u8]` key -> `(u64 newest_at_ms, &[u8] value)`): every archived entry;
//!   the value is [`super::encode`]'s bytes, which carry their own version.
//! - `by_time` (`(u64 newest_at_ms, &[u8] key)` -> `()`): the same keys in the order
//!   retention purges them, oldest first; exactly one row per row of `entries`.
//! - `meta` (`&str` -> `u64`): [`FORMAT_VERSION_KEY`] holds the layout version of the
//!   tables above. A file of another version is refused with [`LogError::Corrupt`] rather
//!   than read with the wrong types.
//!
//! # Durability
//! `put` commits with `Durability::Immediate`: the ledger drops the entries from memory as
//! soon as it returns, so an entry whose commit a crash lost would be lost for good.
//! `purge` commits with `Durability::None`: a purge lost to a crash leaves entries the next
//! purge removes again, and recovery rebuilds the fingerprint index from the keys that are
//! actually here. The next `put` (or any later fsync'd commit) makes it durable too.

use super::{ArchiveStats, ArchivedBytes, KeyArchive};
use crate::error::LogError;
use ::redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::path::{Path, PathBuf};

/// redb's page cache for the archive.
pub const ARCHIVE_CACHE_BYTES: usize = 32 << 20;

/// The archive's file, inside the data folder.
pub const KEYS_FILE_NAME: &str = "keys.redb";

/// The key in `meta` that holds the file's layout version.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// The layout of the tables this build reads and writes. Bump it with any change to their
/// key or value types (not with the entry encoding: that has its own version byte).
pub const KEYS_FORMAT_VERSION: u64 = 1;

const ENTRIES: TableDefinition<&[u8], (u64, &[u8])> = TableDefinition::new("entries");
const BY_TIME: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("by_time");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A [`KeyArchive`] in a redb file. redb serialises write transactions itself and its
/// `Database` is `Sync`, so this is shared as `Arc<dyn KeyArchive>` without a lock of its own.
pub struct RedbArchive {
    db: Database,
    path: PathBuf,
}

impl RedbArchive {
    /// Opens (or creates) the archive in `dir`, and checks (or, for a new file, writes) its
    /// format version.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(KEYS_FILE_NAME);
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::Io(format!("{}: create the folder: {e}", path.display())))?;
        // A small page cache: the archive is written in large batches and read only for
        // retries of old keys, and redb's default (1 GiB) would fill with every page written
        // or scanned, outweighing the fingerprint index it exists to keep small.
        let db = Database::builder()
            .set_cache_size(ARCHIVE_CACHE_BYTES)
            .create(&path)
            .map_err(|e| fail(&path, "open", e.into()))?;
        let archive = Self { db, path };
        // In one fsync'd commit with the tables' creation, so no file has tables without a
        // version. A refused version aborts the transaction: the file is left as found.
        archive.write(Durability::Immediate, "open", |txn| {
            txn.open_table(ENTRIES)?;
            txn.open_table(BY_TIME)?;
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(FORMAT_VERSION_KEY)?.map(|v| v.value());
            match stored {
                None => {
                    meta.insert(FORMAT_VERSION_KEY, KEYS_FORMAT_VERSION)?;
                    Ok(())
                }
                Some(KEYS_FORMAT_VERSION) => Ok(()),
                Some(other) => Err(::redb::Error::Corrupted(format!(
                    "key archive format {other}, this build reads {KEYS_FORMAT_VERSION}"
                ))),
            }
        })?;
        Ok(archive)
    }

    fn write<T>(
        &self,
        durability: Durability,
        what: &str,
        body: impl FnOnce(&::redb::WriteTransaction) -> Result<T, ::redb::Error>,
    ) -> Result<T, LogError> {
        let run = || -> Result<T, ::redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(durability)
                .map_err(|e| ::redb::Error::Io(std::io::Error::other(e.to_string())))?;
            let value = body(&txn)?;
            txn.commit()?;
            Ok(value)
        };
        run().map_err(|e| fail(&self.path, what, e))
    }

    fn read<T>(
        &self,
        what: &str,
        body: impl FnOnce(&::redb::ReadTransaction) -> Result<T, ::redb::Error>,
    ) -> Result<T, LogError> {
        let run = || -> Result<T, ::redb::Error> { body(&self.db.begin_read()?) };
        run().map_err(|e| fail(&self.path, what, e))
    }
}

/// Content redb or this file finds wrong is `Corrupt` (retrying cannot help); the rest is
/// `Io`. Both name the file.
fn fail(path: &Path, what: &str, error: ::redb::Error) -> LogError {
    let message = format!("{}: {what}: {error}", path.display());
    match error {
        ::redb::Error::Corrupted(_) | ::redb::Error::UpgradeRequired(_) => {
            LogError::Corrupt(message)
        }
        _ => LogError::Io(message),
    }
}

impl KeyArchive for RedbArchive {
    fn put(&self, entries: &[ArchivedBytes]) -> Result<Vec<bool>, LogError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // In key order: a batch's entries land on the B-tree's leaves in one sweep, each page
        // read and written once per batch instead of once per entry (keys are reservation ids,
        // random in the tree). Stable, so a key twice in a batch keeps its order.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| entries[a].key.cmp(&entries[b].key));
        self.write(Durability::Immediate, "put", |txn| {
            let mut table = txn.open_table(ENTRIES)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut new = vec![false; entries.len()];
            for &i in &order {
                let entry = &entries[i];
                let key = entry.key.as_slice();
                let old_at_ms = table
                    .insert(key, (entry.newest_at_ms, entry.value.as_slice()))?
                    .map(|old| old.value().0);
                if let Some(at_ms) = old_at_ms
                    && by_time.remove((at_ms, key))?.is_none()
                {
                    // Left in place, the missing row's replacement would never be purged.
                    return Err(::redb::Error::Corrupted(format!(
                        "entry at {at_ms} ms has no by_time row"
                    )));
                }
                by_time.insert((entry.newest_at_ms, key), ())?;
                new[i] = old_at_ms.is_none();
            }
            Ok(new)
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        self.read("get", |txn| {
            let table = txn.open_table(ENTRIES)?;
            let value = table.get(key)?;
            Ok(value.map(|v| v.value().1.to_vec()))
        })
    }

    fn purge(&self, before_ms: u64, max: usize) -> Result<Vec<Vec<u8>>, LogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.write(Durability::None, "purge", |txn| {
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut due: Vec<(u64, Vec<u8>)> = Vec::with_capacity(max.min(4_096));
            for row in by_time.iter()? {
                let (key, _) = row?;
                let (at_ms, key) = key.value();
                if at_ms >= before_ms || due.len() >= max {
                    break;
                }
                due.push((at_ms, key.to_vec()));
            }
            let mut table = txn.open_table(ENTRIES)?;
            for (at_ms, key) in &due {
                by_time.remove((*at_ms, key.as_slice()))?;
                let removed_at_ms = table.remove(key.as_slice())?.map(|old| old.value().0);
                // The pair of `put`'s check: every by_time row names its entry and its time.
                if removed_at_ms != Some(*at_ms) {
                    return Err(::redb::Error::Corrupted(format!(
                        "by_time row at {at_ms} ms names an entry at {removed_at_ms:?}"
                    )));
                }
            }
            Ok(due.into_iter().map(|(_, key)| key).collect())
        })
    }

    fn for_each_key(&self, visit: &mut dyn FnMut(&[u8])) -> Result<(), LogError> {
        self.read("list keys", |txn| {
            for row in txn.open_table(ENTRIES)?.iter()? {
                visit(row?.0.value());
            }
            Ok(())
        })
    }

    fn stats(&self) -> ArchiveStats {
        // For `/metrics` only: a failed read shows as zeros rather than failing the scrape.
        let entries = self
            .read("count", |txn| Ok(txn.open_table(ENTRIES)?.len()?))
            .unwrap_or(0);
        let file_bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        ArchiveStats {
            entries,
            file_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], newest_at_ms: u64, value: &[u8]) -> ArchivedBytes {
        ArchivedBytes {
            key: key.to_vec(),
            newest_at_ms,
            value: value.to_vec(),
        }
    }

    fn keys(archive: &RedbArchive) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        archive
            .for_each_key(&mut |key| seen.push(key.to_vec()))
            .unwrap();
        seen.sort();
        seen
    }

    #[test]
    fn put_then_get_round_trips_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let archive = RedbArchive::open(dir.path()).unwrap();
        assert_eq!(archive.put(&[]).unwrap(), Vec::<bool>::new());
        let new = archive
            .put(&[entry(b"Hres-1", 100, b"one"), entry(b"Kx", 200, b"two")])
            .unwrap();
        assert_eq!(new, vec![true, true]);
        assert_eq!(archive.get(b"Hres-1").unwrap(), Some(b"one".to_vec()));
        assert_eq!(archive.get(b"Kx").unwrap(), Some(b"two".to_vec()));
        assert_eq!(archive.get(b"Hres-2").unwrap(), None);
        let stats = archive.stats();
        assert_eq!(stats.entries, 2);
        assert!(stats.file_bytes > 0);
        assert!(dir.path().join(KEYS_FILE_NAME).is_file());
    }

    #[test]
    fn put_of_a_stored_key_replaces_it_and_drops_its_old_time() {
        let dir = tempfile::tempdir().unwrap();
        let archive = RedbArchive::open(dir.path()).unwrap();
        assert_eq!(archive.put(&[entry(b"a", 100, b"old")]).unwrap(), [true]);
        // A repeated key within one batch counts once, too.
        let new = archive
            .put(&[
                entry(b"a", 300, b"new"),
                entry(b"b", 50, b"b1"),
                entry(b"b", 60, b"b2"),
            ])
            .unwrap();
        assert_eq!(new, vec![false, true, false]);
        assert_eq!(archive.get(b"a").unwrap(), Some(b"new".to_vec()));
        assert_eq!(archive.get(b"b").unwrap(), Some(b"b2".to_vec()));
        assert_eq!(archive.stats().entries, 2);
        // A cutoff between a's old and new times: a is judged by its new time only.
        assert_eq!(archive.purge(200, 10).unwrap(), vec![b"b".to_vec()]);
        assert_eq!(archive.get(b"a").unwrap(), Some(b"new".to_vec()));
        assert_eq!(keys(&archive), vec![b"a".to_vec()]);
    }

    #[test]
    fn purge_removes_entries_older_than_the_cutoff_oldest_first_up_to_max() {
        let dir = tempfile::tempdir().unwrap();
        let archive = RedbArchive::open(dir.path()).unwrap();
        archive
            .put(&[
                entry(b"d", 400, b"4"),
                entry(b"b", 200, b"2"),
                entry(b"a", 100, b"1"),
                entry(b"e", 500, b"5"),
                entry(b"c", 300, b"3"),
            ])
            .unwrap();
        assert_eq!(archive.purge(400, 0).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            archive.purge(400, 2).unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(archive.get(b"a").unwrap(), None);
        assert_eq!(archive.get(b"c").unwrap(), Some(b"3".to_vec()));
        // The cutoff is exclusive: d (at 400) stays.
        assert_eq!(archive.purge(400, 10).unwrap(), vec![b"c".to_vec()]);
        assert_eq!(archive.purge(400, 10).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(keys(&archive), vec![b"d".to_vec(), b"e".to_vec()]);
        assert_eq!(archive.stats().entries, 2);
    }

    #[test]
    fn for_each_key_visits_exactly_the_stored_keys() {
        let dir = tempfile::tempdir().unwrap();
        let archive = RedbArchive::open(dir.path()).unwrap();
        assert!(keys(&archive).is_empty());
        archive
            .put(&[
                entry(b"Kz", 1, b""),
                entry(b"Ha", 2, b"x"),
                entry(b"Kz", 3, b"y"),
            ])
            .unwrap();
        let mut visits = 0;
        archive.for_each_key(&mut |_| visits += 1).unwrap();
        assert_eq!(visits, 2);
        assert_eq!(keys(&archive), vec![b"Ha".to_vec(), b"Kz".to_vec()]);
    }

    #[test]
    fn entries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let archive = RedbArchive::open(dir.path()).unwrap();
            archive
                .put(&[entry(b"a", 100, b"1"), entry(b"b", 200, b"2")])
                .unwrap();
        }
        let archive = RedbArchive::open(dir.path()).unwrap();
        assert_eq!(archive.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(archive.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(keys(&archive), vec![b"a".to_vec(), b"b".to_vec()]);
        // The time rows came back too: a stored key is still reported as replaced, and
        // purge still finds the oldest.
        assert_eq!(archive.put(&[entry(b"b", 300, b"3")]).unwrap(), [false]);
        assert_eq!(archive.purge(250, 10).unwrap(), vec![b"a".to_vec()]);
    }

    #[test]
    fn an_unknown_format_version_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbArchive::open(dir.path()).unwrap());
        let path = dir.path().join(KEYS_FILE_NAME);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(FORMAT_VERSION_KEY, KEYS_FORMAT_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        match RedbArchive::open(dir.path()) {
            Err(LogError::Corrupt(message)) => {
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(
                    message.contains(&format!("format {}", KEYS_FORMAT_VERSION + 1)),
                    "{message}"
                );
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("opened an archive of an unknown format"),
        }
        // Refusing left the file as it was: still refused.
        assert!(matches!(
            RedbArchive::open(dir.path()),
            Err(LogError::Corrupt(_))
        ));
    }
}
