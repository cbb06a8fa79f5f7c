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
/// Most shards a ledger may have.
pub const SHARDS_MAX: usize = 1 << 16;

const _: () = assert!(TTL_MS_MIN < TTL_MS_MAX);
const _: () = assert!(SHARDS_MAX.is_power_of_two());
// LINES_MAX lines of QTY_MAX each must fit comfortably in an i64.
const _: () = assert!((LINES_MAX as u64) * QTY_MAX < (i64::MAX as u64) / 1024);
