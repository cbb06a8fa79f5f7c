//! What the file holds: its name, its tables, the meta rows, the format version, and the keys
//! of checkpoint chunks. The module doc of [`super`] describes the layout as a whole.

use crate::log::encoding::{
    BATCH_FORMAT_VERSION, CHECKPOINT_FORMAT_VERSION, FORMAT_VERSION as EVENT_FORMAT_VERSION,
};
use ::redb::TableDefinition;
use std::ops::Range;

/// The file the log lives in, inside the data folder.
pub const FILE_NAME: &str = "ledger.redb";
/// Beside [`FILE_NAME`]: the marker that says the folder has held a log. It is written (and
/// synced, with the folder) right after a new log file is put in place, or when a log file
/// without it is opened. While it exists, a missing log file is refused at open; an empty
/// (0-byte) one always is.
pub const MARKER_FILE_NAME: &str = "LOG_CREATED";
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
/// In [`META`], with a checkpoint: the first LSN kept for reconciliation's history (at most
/// the checkpoint's `next_lsn`; see `Checkpoint::history_start_lsn`). Records below the
/// checkpoint but not below this stay, and `read_from` reads them; absent, the checkpoint's
/// `next_lsn`.
pub const HISTORY_START_LSN_KEY: &str = "history_start_lsn";
/// In [`META`], with a checkpoint: how many chunks [`CHECKPOINT`] holds.
pub const CHECKPOINT_CHUNKS_KEY: &str = "checkpoint_chunks";
/// In [`META`], with a checkpoint: the length of its encoding.
pub const CHECKPOINT_BYTES_KEY: &str = "checkpoint_bytes";
/// In [`META`], with a checkpoint: the xxh3-64 of its encoding (checked on load, beyond redb's
/// page checksums: it catches chunks from different checkpoints mixed together).
pub const CHECKPOINT_XXH3_KEY: &str = "checkpoint_xxh3";
/// In [`META`], with a checkpoint: which of the two chunk ranges of [`CHECKPOINT`] holds it
/// (see [`chunk_key`]).
pub const CHECKPOINT_GENERATION_KEY: &str = "checkpoint_generation";
/// Size of every checkpoint chunk but the last: 1 MiB less a page, so a chunk with its leaf
/// header fits a 1 MiB redb allocation.
pub const CHECKPOINT_CHUNK_BYTES: usize = (1 << 20) - 4096;
/// A batch is cut into records of about this many bytes of events at most (the last event may
/// overshoot), so a record with its leaf header fits a 64 KiB redb allocation: redb allocates
/// a large value in power-of-two runs of pages, and one 300 KiB record would take 512 KiB.
pub const RECORD_BYTES_TARGET: usize = (64 << 10) - 4096;
/// The version of this file layout (tables above, records in the encodings of
/// [`crate::log::encoding`]). A change to either takes the next number. Version 2 added the
/// checkpoint table and trimming; version 3 stores one record per batch instead of one per
/// event; version 4 keeps checkpoint chunks in two generations ([`chunk_key`]) and may hold
/// event records below the checkpoint until they are trimmed; version 5 stores events as facts
/// (event encoding 2); version 6 adds the store sequence anomaly facts and keeps anomalies in
/// checkpoints (event encoding 3, checkpoint encoding 3); version 7 records the principal of
/// each event and of each hold's placing and ending, and a principal in each idempotency
/// record's fingerprint (event encoding 4, checkpoint encoding 4).
///
/// A build reads only its own version and converts nothing: the engine has no deployed data,
/// so a file of an earlier version (written by an earlier development build) is refused at
/// open with [`super::OpenError::OlderFormat`], and one of a later version with
/// [`super::OpenError::NewerFormat`], rather than misread.
pub const LOG_FORMAT_VERSION: u64 = 7;
const _: () = assert!(
    EVENT_FORMAT_VERSION == 4 && BATCH_FORMAT_VERSION == 2 && CHECKPOINT_FORMAT_VERSION == 4,
    "bump LOG_FORMAT_VERSION with the encodings"
);

/// The key of chunk `index` of checkpoint generation `generation` (0 or 1): the two
/// generations live in disjoint key ranges, so a checkpoint is staged beside the stored one
/// and readers, which follow [`CHECKPOINT_GENERATION_KEY`], never see it until the switch.
pub fn chunk_key(generation: u64, index: u64) -> u64 {
    debug_assert!(generation <= 1 && index < 1 << 32);
    generation << 32 | index
}

/// Every key of generation `generation`'s chunks.
pub(super) fn generation_keys(generation: u64) -> Range<u64> {
    chunk_key(generation, 0)..chunk_key(generation, 0) + (1 << 32)
}

/// The index within its generation of the chunk under `key`.
pub(super) fn chunk_index(key: u64) -> u64 {
    key & ((1 << 32) - 1)
}
