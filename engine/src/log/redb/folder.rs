//! The data folder around the file: what is found where a log is expected, the marker that
//! says the folder has held a log, and the durable steps (fsync of files and of the folder) of
//! putting a new log file and the marker in place. No redb here: `open.rs` builds the file.

use super::layout::{FILE_NAME, LOG_FORMAT_VERSION, MARKER_FILE_NAME};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What is found at `<dir>/ledger.redb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogFile {
    Missing,
    /// A file of 0 bytes: never what a log is, not even a new one (a new log is put in place
    /// only once its tables are written and synced).
    Empty,
    Present,
}

pub(super) fn log_file(path: &Path) -> io::Result<LogFile> {
    match fs::metadata(path) {
        Ok(metadata) if metadata.len() == 0 => Ok(LogFile::Empty),
        Ok(_) => Ok(LogFile::Present),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(LogFile::Missing),
        Err(error) => Err(error),
    }
}

/// Whether `dir` holds the marker, i.e. has held a log.
pub(super) fn has_marker(dir: &Path) -> io::Result<bool> {
    dir.join(MARKER_FILE_NAME).try_exists()
}

/// The name a new log file is built under before it is linked into place: unique, so
/// processes creating a log in the same folder at once never share one.
pub(super) fn new_file_path(dir: &Path) -> PathBuf {
    dir.join(format!("{FILE_NAME}{CREATING}{:032x}", unique_id()))
}

/// What follows the file name in the name of a log file being built.
const CREATING: &str = ".creating-";
/// What follows the marker's name in the name of a marker being written.
const WRITING: &str = ".writing-";

/// Deletes what a creation cut short (a crash) left in `dir`: files being built or written
/// under a temporary name. Called under the folder's lock, when `dir` holds no log and no
/// marker: nothing in use is lost.
pub(super) fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = name.starts_with(&format!("{FILE_NAME}{CREATING}"))
            || name.starts_with(&format!("{MARKER_FILE_NAME}{WRITING}"));
        if leftover && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Puts the new log file `built` in place as `path`. A hard link, not a rename, because it
/// never replaces a file, even one that appeared meanwhile (then this fails); the temporary
/// name is then removed by the caller.
pub(super) fn link_into_place(built: &Path, path: &Path) -> io::Result<()> {
    fs::hard_link(built, path)
}

/// An exclusive lock on a data folder, held while a log or the marker is put in place there,
/// so that opens racing on one new folder create one log. Released when dropped.
pub(super) struct FolderLock {
    #[cfg(unix)]
    _folder: File,
}

/// Waits for the lock on `dir` (an advisory `flock` of the folder itself; elsewhere than on
/// Unix, no lock).
pub(super) fn lock(dir: &Path) -> io::Result<FolderLock> {
    #[cfg(unix)]
    {
        let folder = File::open(dir)?;
        folder.lock()?;
        Ok(FolderLock { _folder: folder })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(FolderLock {})
    }
}

/// Writes the marker into `dir` durably: under a temporary name, synced, renamed into place,
/// and the folder synced. Its contents are for people; only its existence is checked.
pub(super) fn write_marker(dir: &Path) -> io::Result<()> {
    let created_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let contents = format!(
        "# This folder holds (or held) an inv-engine event log, {FILE_NAME}. While this file\n\
         # exists, a missing or empty {FILE_NAME} is refused at open instead of starting an\n\
         # empty log. To start over on purpose, move the whole folder away.\n\
         format_version = {LOG_FORMAT_VERSION}\n\
         log_id = \"{:032x}\"\n\
         created_at_ms = {created_at_ms}\n",
        unique_id()
    );
    let temp = dir.join(format!("{MARKER_FILE_NAME}{WRITING}{:032x}", unique_id()));
    let written = write_synced(&temp, contents.as_bytes())
        .and_then(|()| fs::rename(&temp, dir.join(MARKER_FILE_NAME)));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes the folder's entries (a new, linked, renamed or removed name) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Other systems cannot open a folder as a file; their metadata journal orders it.
        let _ = (dir, File::open);
        Ok(())
    }
}

/// 128 bits unique to this call: std's per-process random keys (seeded by the OS), the time
/// and the process id. Unique, not secret.
fn unique_id() -> u128 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mut id = 0u128;
    for half in 0..2u8 {
        // Each `RandomState` has keys of its own, even within one thread.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u8(half);
        id = id << 64 | u128::from(hasher.finish());
    }
    id
}
