//! Every bound the engine enforces, in one place, with the reason for each.
//!
//! Limits keep one client from exhausting memory or starving others, and they make the
//! validation rules a connector team can rely on explicit.

/// Longest id (sku, location, reservation, store, txn, return, ...), in bytes. Long enough for
/// any ERP or marketplace id we know of; short enough that keys stay cheap to hash and store.
pub const ID_BYTES_MAX: usize = 128;
/// Longest free-text field (adjustment reason), in bytes.
pub const TEXT_BYTES_MAX: usize = 256;
/// Lines in one reserve, commit, sale or return. A basket larger than this is not a basket.
pub const LINES_MAX: usize = 100;
/// Field violations one invalid request lists; past this they are only counted. A status's
/// details travel in HTTP/2 trailers (message and `google.rpc.BadRequest`, so each violation
/// twice), which common clients cap at 16 KiB; 32 violations come to at most ~5 KiB. A
/// request rarely has more than a few, and a basket wrong on every line is fixed the same way
/// for the lines not listed.
pub const VIOLATIONS_LISTED_MAX: usize = 32;
/// Largest quantity on one line or one adjustment: a billion units is far beyond any real
/// position, and keeping quantities below 2^30 means sums of many lines cannot overflow i64.
pub const QTY_MAX: u64 = 1_000_000_000;
/// Shortest hold. Anything shorter expires before a connector could commit it.
pub const TTL_MS_MIN: u64 = 1_000;
/// Longest hold: a week. Longer "holds" are allocations and belong in safety stock.
pub const TTL_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// Default retention of idempotency keys and ended holds: a retry inside this window gets the
/// original answer; after it, the key is forgotten.
pub const KEY_RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3_600_000;
/// Default retention of rejections (reserves refused as Insufficient): a day. They change
/// nothing, so forgetting one only means a retry a day later is decided afresh; a flash sale's
/// millions of rejections then cost memory and disk for a day, not a week.
pub const REJECTION_RETENTION_MS_DEFAULT: u64 = 24 * 3_600_000;
/// Default reach of reconciliation into the past: a snapshot may be reconciled if its `as_of`
/// is at most this old, and the log keeps this much history (see `LedgerConfig::history_ms`).
/// A day covers an ERP that counts nightly; longer costs disk for the log's history.
pub const HISTORY_MS_DEFAULT: u64 = 24 * 3_600_000;
/// Gap ranges tracked per store. A store that skips sequence numbers wildly must not grow
/// memory without bound; past this, the oldest gap is given up on (and counted as abandoned).
pub const STORE_GAP_RANGES_MAX: usize = 4_096;
/// Default of how far a sale's store sequence number may run ahead of its store's newest one
/// before it is flagged as an anomaly (`LedgerConfig::store_seq_jump_max`). A store that is
/// offline for a while comes back a few thousand sales ahead; a number far beyond that is a
/// till that renumbered or a corrupt number (one sale at 2^64-1 would otherwise leave its
/// store "missing" 1.8e19 sales forever).
pub const STORE_SEQ_JUMP_MAX_DEFAULT: u64 = 100_000;
/// Anomalies (sales whose number jumped) kept per store until an operator acknowledges them.
/// Past this the oldest is dropped and counted: a till that keeps sending wild numbers must
/// not grow memory, and sixteen unanswered anomalies already say what is wrong.
pub const STORE_ANOMALIES_MAX: usize = 16;
/// Most shards a ledger may have.
pub const SHARDS_MAX: usize = 1 << 16;

const _: () = assert!(TTL_MS_MIN < TTL_MS_MAX);
const _: () = assert!(SHARDS_MAX.is_power_of_two());
const _: () = assert!(STORE_SEQ_JUMP_MAX_DEFAULT > 0);
const _: () = assert!(STORE_ANOMALIES_MAX > 0);
// LINES_MAX lines of QTY_MAX each must fit comfortably in an i64.
const _: () = assert!((LINES_MAX as u64) * QTY_MAX < (i64::MAX as u64) / 1024);
