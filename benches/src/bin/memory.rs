//! Memory per position, per open single-line hold and per retained idempotency key, measured
//! with a counting global allocator around the real engine API (no persistence: `DiscardLog`).
//!
//! Run:
//!
//! ```text
//! cargo run --release -p inv-benches --bin memory
//! ```
//!
//! Live heap bytes are the sum of the sizes requested from the allocator; malloc's own
//! per-allocation overhead (chunk headers, rounding) is not counted, so the live-allocation
//! counts are printed alongside. The ledger's hash tables are sized by powers of two, so the
//! bytes per item swing with the load factor at a given N; each figure is measured at two Ns.
//!
//! Every `Adjust` and `Reserve` also stores an idempotency key, so key cost is isolated two ways:
//! - "minus keys" (the headline): a control ledger receives the same number of commands with the
//!   same id strings (so the same key-shard and key-table shape: keys are sharded and hashed by
//!   id, and every key record has the same size) but all on one existing position, creating no
//!   positions and no holds; its growth is the key cost, and it is subtracted.
//! - "after purge" (a cross-check, an upper bound): with a short `key_retention_ms`, the keys are
//!   purged once a later harmless command has moved the ledger's time past their retention.
//!   `purge` empties the key tables but keeps their capacity, so what remains still includes
//!   the emptied key-table slots.
//!
//! The ledger keeps the outcomes of Reserve, Commit and Release in the hold table's entry for
//! the reservation id (mostly derived from the hold itself), not in the key table, so the
//! control's key-table growth is not what a hold's keys cost. The hold rows' headline is
//! therefore everything: the whole growth per hold with nothing subtracted (hold entry and its
//! lines, its records, its slot in the hold index, its expiry-index entry and its ladder line),
//! and the target is checked against that. The control is still printed, for comparison.

use compact_str::{CompactString, format_compact};
use inv_benches::{BIG_STOCK, TTL_MS, adjust, location_name, reserve, sku_name, stock};
use inv_engine::{
    Command, DiscardLog, Ledger, LedgerConfig, Location, Outcome, Release, RequestId,
    ReservationId, SetSafetyStock, Sku,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live bytes and live allocations; delegates to the system allocator.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method delegates to `System` with the caller's arguments unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes and allocations at one moment.
#[derive(Clone, Copy)]
struct Snapshot {
    bytes: i64,
    allocs: i64,
}

fn snapshot() -> Snapshot {
    Snapshot {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
    }
}

/// Growth between two snapshots.
#[derive(Clone, Copy)]
struct Growth {
    bytes: i64,
    allocs: i64,
}

fn since(before: Snapshot) -> Growth {
    let now = snapshot();
    Growth {
        bytes: now.bytes - before.bytes,
        allocs: now.allocs - before.allocs,
    }
}

/// Decision time of the measured commands.
const T0: u64 = 1_700_000_000_000;
/// Retention used by the purge cross-check: keys older than this (relative to the latest
/// event) are purged.
const SHORT_RETENTION_MS: u64 = 1_000;

fn ledger(key_retention_ms: u64) -> Ledger {
    Ledger::new(
        LedgerConfig {
            key_retention_ms,
            ..LedgerConfig::default()
        },
        Arc::new(DiscardLog::default()),
    )
}

fn submit(ledger: &Ledger, command: Command, now_ms: u64) -> Outcome {
    ledger
        .submit(command, now_ms)
        .expect("well-formed")
        .expect("command accepted")
        .outcome
}

/// Moves the ledger's latest event time to `now_ms` with a harmless adjustment on a position
/// that exists, then purges; returns how many records were purged.
fn tick_and_purge(ledger: &Ledger, tick: &str, now_ms: u64) -> usize {
    let outcome = submit(
        ledger,
        adjust(tick.into(), &sku_name(0), &location_name(0), 1),
        now_ms,
    );
    assert_eq!(outcome, Outcome::Recorded);
    ledger.purge(now_ms)
}

/// `n` commands with ids `{prefix}{i}` on one existing position, each storing one key and
/// nothing else: the key cost of `n` commands with those ids. `round` 0 uses adjustments, round
/// 1 safety-stock requests, so two rounds with the same ids store two keys per id (as a
/// reserve and its release do) in the same key shards.
fn keys_only(ledger: &Ledger, prefix: &str, n: usize, now_ms: u64, round: usize) {
    let (sku, location) = (sku_name(0), location_name(0));
    for i in 0..n {
        let id = format_compact!("{prefix}{i}");
        let command = match round {
            0 => adjust(id, &sku, &location, 1),
            _ => Command::SetSafetyStock(SetSafetyStock {
                request_id: RequestId(id),
                sku: Sku(sku.clone()),
                location: Location(location.clone()),
                qty: 0,
            }),
        };
        assert_eq!(submit(ledger, command, now_ms), Outcome::Recorded);
    }
}

struct Row {
    what: String,
    n: usize,
    /// Whether the headline is the whole growth (holds) or the growth minus the key control.
    everything: bool,
    /// Growth with everything (items + keys), the key-only control, and after purge.
    total: Growth,
    keys: Growth,
    purged: Growth,
}

impl Row {
    fn per_item(&self) -> f64 {
        let keys = if self.everything { 0 } else { self.keys.bytes };
        (self.total.bytes - keys) as f64 / self.n as f64
    }

    fn allocs_per_item(&self) -> f64 {
        let keys = if self.everything { 0 } else { self.keys.allocs };
        (self.total.allocs - keys) as f64 / self.n as f64
    }
}

/// Positions: `n` Adjusts creating `n` positions, `locations` per sku.
fn positions_row(n: usize, locations: usize) -> Row {
    assert_eq!(n % locations, 0);
    let skus = n / locations;

    let total = {
        let ledger = ledger(LedgerConfig::default().key_retention_ms);
        let before = snapshot();
        stock(&ledger, "adj-", skus, locations, 1, T0);
        since(before)
    };
    let keys = {
        let ledger = ledger(LedgerConfig::default().key_retention_ms);
        // The one position the control adjusts; created before the baseline.
        submit(
            &ledger,
            adjust("seed".into(), &sku_name(0), &location_name(0), 1),
            T0,
        );
        let before = snapshot();
        keys_only(&ledger, "adj-", n, T0, 0);
        since(before)
    };
    let purged = {
        let ledger = ledger(SHORT_RETENTION_MS);
        let before = snapshot();
        stock(&ledger, "adj-", skus, locations, 1, T0);
        let purged = tick_and_purge(&ledger, "tick", T0 + 10 * SHORT_RETENTION_MS);
        assert_eq!(purged, n, "every stocking key purged");
        since(before)
    };
    Row {
        what: format!(
            "position, {locations} location{} per sku",
            if locations == 1 { "" } else { "s" }
        ),
        n,
        everything: false,
        total,
        keys,
        purged,
    }
}

/// Where the holds go.
#[derive(Clone, Copy)]
enum Spread {
    /// One hold per sku: every hold's sku gets its own expiry ladder.
    OnePerSku,
    /// `n / 1000` skus with 1,000 holds each: ladders are shared.
    ThousandPerSku,
}

/// Holds: `n` granted single-line reserves of 1 unit on existing positions (1 location per sku).
/// With `release`, each is then released: an ended hold, kept for the retention window.
fn holds_row(n: usize, spread: Spread, release: bool) -> Row {
    let skus = match spread {
        Spread::OnePerSku => n,
        Spread::ThousandPerSku => n / 1_000,
    };
    let lines: Vec<[(CompactString, CompactString); 1]> = (0..n)
        .map(|i| [(sku_name(i % skus), location_name(0))])
        .collect();
    let place = |ledger: &Ledger, now_ms: u64| {
        for (i, line) in lines.iter().enumerate() {
            let id = format_compact!("rsv-{i}");
            let outcome = submit(ledger, reserve(id.clone(), line, 1), now_ms);
            assert!(matches!(outcome, Outcome::Granted { .. }), "{outcome:?}");
            if release {
                let outcome = submit(
                    ledger,
                    Command::Release(Release {
                        reservation_id: ReservationId(id),
                    }),
                    now_ms,
                );
                assert_eq!(outcome, Outcome::Released);
            }
        }
    };
    // Keys per hold: the reserve's, and the release's if released.
    let keys_per_hold = if release { 2 } else { 1 };

    let total = {
        let ledger = ledger(LedgerConfig::default().key_retention_ms);
        stock(&ledger, "stock-", skus, 1, BIG_STOCK, T0);
        let before = snapshot();
        place(&ledger, T0);
        since(before)
    };
    let keys = {
        let ledger = ledger(LedgerConfig::default().key_retention_ms);
        stock(&ledger, "stock-", skus, 1, BIG_STOCK, T0);
        let before = snapshot();
        // Same ids, so the same key-table shape; a release key has the reserve's id too.
        for round in 0..keys_per_hold {
            keys_only(&ledger, "rsv-", n, T0, round);
        }
        since(before)
    };
    let purged = {
        let ledger = ledger(SHORT_RETENTION_MS);
        stock(&ledger, "stock-", skus, 1, BIG_STOCK, T0);
        // Drop the stocking keys first so the baseline holds positions only.
        let t1 = T0 + 10 * SHORT_RETENTION_MS;
        tick_and_purge(&ledger, "tick-1", t1);
        let before = snapshot();
        place(&ledger, t1);
        // Open holds outlive this purge (TTL 15 min) and only their keys go; ended holds are
        // kept for the key retention, so they go too.
        let t2 = t1 + 10 * SHORT_RETENTION_MS;
        assert!(t2 - t1 < TTL_MS, "holds still open at the purge");
        tick_and_purge(&ledger, "tick-2", t2);
        since(before)
    };
    let spread_name = match spread {
        Spread::OnePerSku => "1 hold per sku",
        Spread::ThousandPerSku => "1,000 holds per sku",
    };
    let state = if release {
        "ended (released) single-line hold"
    } else {
        "open single-line hold"
    };
    Row {
        what: format!("{state}, {spread_name}"),
        n,
        everything: true,
        total,
        keys,
        purged,
    }
}

fn print_rows(title: &str, rows: &[Row], keys_per_item: i64, target: Option<f64>) {
    println!("\n{title}");
    println!(
        "{:<56} {:>9} {:>8} {:>11} {:>7} {:>10} {:>11} {:>11}",
        "item", "N", "B/item", "allocs/item", "B/key", "with keys", "after purge", "target"
    );
    for row in rows {
        let per_item = row.per_item();
        let allocs = row.allocs_per_item();
        let per_key = row.keys.bytes as f64 / (row.n as i64 * keys_per_item) as f64;
        let with_keys = row.total.bytes as f64 / row.n as f64;
        let after_purge = row.purged.bytes as f64 / row.n as f64;
        let verdict = match target {
            Some(t) if per_item <= t => format!("<= {t:.0} ok"),
            Some(t) => format!("<= {t:.0} MISS"),
            None => "-".to_owned(),
        };
        println!(
            "{:<56} {:>9} {:>8.1} {:>11.2} {:>7.1} {:>10.1} {:>11.1} {:>11}",
            row.what, row.n, per_item, allocs, per_key, with_keys, after_purge, verdict
        );
    }
}

fn main() {
    println!("Ledger memory, live heap bytes from a counting global allocator.");
    println!(
        "Not counted: malloc's per-allocation overhead (chunk header and rounding, about 8-16 \
         bytes per allocation with glibc); see allocs/item."
    );
    println!(
        "B/item, positions = (growth with items and their keys - growth of a keys-only control \
         with the same ids) / N. B/item, holds = growth with everything / N (nothing subtracted)."
    );
    println!(
        "B/key = keys-only control growth / keys. 'with keys' = growth with items and their keys \
         / N (for holds, B/item). 'after purge' = growth / N once the keys are purged (short \
         retention); includes the emptied key-table capacity, which purge keeps."
    );

    let mut positions = Vec::new();
    for n in [1_000_000, 600_000] {
        for locations in [1, 4, 16] {
            positions.push(positions_row(n, locations));
        }
    }
    print_rows("Positions (one Adjust each)", &positions, 1, Some(128.0));

    let mut holds = Vec::new();
    for n in [100_000, 60_000] {
        for spread in [Spread::OnePerSku, Spread::ThousandPerSku] {
            holds.push(holds_row(n, spread, false));
        }
    }
    print_rows(
        "Open holds (one Reserve each; B/item counts everything, its key record included)",
        &holds,
        1,
        Some(256.0),
    );

    let ended = vec![
        holds_row(100_000, Spread::OnePerSku, true),
        holds_row(100_000, Spread::ThousandPerSku, true),
    ];
    print_rows(
        "Ended holds, kept for the retention window (Reserve + Release each; 2 keys per hold)",
        &ended,
        2,
        None,
    );
}
