//! Memory per position: the engine's sku table (`DenseTable` in 64 shards) against a `DashMap`
//! (64 shards, foldhash) holding the same entries, for docs/design.md.
//!
//! Run:
//!
//! ```text
//! cargo run --release -p inv-benches --bin map_memory [-- --json]
//! ```
//!
//! Live heap bytes come from a counting global allocator around the system allocator, as in
//! the `memory` binary (malloc's own per-allocation overhead is not counted). Each row creates
//! N positions, `locations` per sku:
//!
//! - `ledger`: one `Adjust` per position through `Ledger::submit` (no persistence), minus a
//!   control ledger that receives the same number of commands with the same ids on one
//!   existing position (the idempotency keys' cost), as the `memory` binary's position rows.
//! - `dashmap`: `DashMap<CompactString, SkuLike>` where `SkuLike` has the engine's `SkuEntry`
//!   layout less the name (the name is the key): the sku's positions (32 bytes each, inline
//!   for one) and an empty expiry ladder (32 bytes).
//!
//! Both tables grow by doubling, so bytes per entry swing with the load factor at a given N;
//! each is measured at two Ns.

use compact_str::{CompactString, format_compact};
use dashmap::DashMap;
use foldhash::fast::FixedState;
use inv_benches::{adjust, location_name, sku_name, stock};
use inv_engine::{DiscardLog, Ledger, LedgerConfig, Outcome};
use serde::Serialize;
use smallvec::SmallVec;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live bytes and allocations; delegates to the system allocator.
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

/// (live bytes, live allocations) now.
fn live() -> (i64, i64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
    )
}

const T0: u64 = 1_700_000_000_000;
const SHARDS: usize = 64;

/// A position as the engine lays it out (32 bytes).
#[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
#[derive(Clone)]
struct PositionLike {
    location: u32,
    safety_stock: u32,
    on_hand: i64,
    reserved: i64,
    quarantined: i64,
}

/// The engine's expiry ladder's shape (32 bytes).
#[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
#[derive(Clone, Default)]
enum LadderLike {
    #[default]
    Empty,
    One([u64; 3]),
    Few(Vec<[u64; 3]>),
    Many(u64, Box<RunsLike>),
}

/// The engine's `Runs` (a ladder's sorted runs of lines, with each run's first key).
#[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
#[derive(Clone, Default)]
struct RunsLike {
    firsts: Vec<[u64; 3]>,
    runs: Vec<Vec<[u64; 3]>>,
}

/// The engine's `SkuEntry` less its name.
#[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
#[derive(Clone)]
struct SkuLike {
    positions: SmallVec<[PositionLike; 1]>,
    ladder: LadderLike,
}

#[derive(Serialize)]
struct Row {
    table: &'static str,
    positions: usize,
    locations_per_sku: usize,
    bytes_per_position: f64,
    allocs_per_position: f64,
}

fn ledger() -> Ledger {
    Ledger::new(
        LedgerConfig {
            shards: SHARDS,
            ..LedgerConfig::default()
        },
        Arc::new(DiscardLog::default()),
    )
}

fn ledger_row(n: usize, locations: usize) -> Row {
    let (with_keys, with_keys_allocs) = {
        let ledger = ledger();
        let before = live();
        stock(&ledger, "adj-", n / locations, locations, 1, T0);
        let after = live();
        (after.0 - before.0, after.1 - before.1)
    };
    let (keys, keys_allocs) = {
        let ledger = ledger();
        let (sku, location) = (sku_name(0), location_name(0));
        let seed = ledger
            .submit(adjust("seed".into(), &sku, &location, 1), T0)
            .expect("well-formed")
            .expect("accepted");
        assert_eq!(seed.outcome, Outcome::Recorded);
        let before = live();
        for i in 0..n {
            let receipt = ledger
                .submit(adjust(format_compact!("adj-{i}"), &sku, &location, 1), T0)
                .expect("well-formed")
                .expect("accepted");
            assert_eq!(receipt.outcome, Outcome::Recorded);
        }
        let after = live();
        (after.0 - before.0, after.1 - before.1)
    };
    Row {
        table: "ledger",
        positions: n,
        locations_per_sku: locations,
        bytes_per_position: (with_keys - keys) as f64 / n as f64,
        allocs_per_position: (with_keys_allocs - keys_allocs) as f64 / n as f64,
    }
}

fn dashmap_row(n: usize, locations: usize) -> Row {
    let before = live();
    let map: DashMap<CompactString, SkuLike, FixedState> =
        DashMap::with_hasher_and_shard_amount(FixedState::with_seed(0x1e_d6e5), SHARDS);
    for i in 0..n / locations {
        let positions = (0..locations)
            .map(|j| PositionLike {
                location: j as u32,
                safety_stock: 0,
                on_hand: 1,
                reserved: 0,
                quarantined: 0,
            })
            .collect();
        map.insert(
            sku_name(i),
            SkuLike {
                positions,
                ladder: LadderLike::Empty,
            },
        );
    }
    let after = live();
    drop(map);
    Row {
        table: "dashmap",
        positions: n,
        locations_per_sku: locations,
        bytes_per_position: (after.0 - before.0) as f64 / n as f64,
        allocs_per_position: (after.1 - before.1) as f64 / n as f64,
    }
}

fn main() {
    let json = std::env::args().skip(1).any(|a| a == "--json");
    let mut rows = Vec::new();
    for n in [1_000_000, 600_000] {
        for locations in [1, 4] {
            rows.push(ledger_row(n, locations));
            rows.push(dashmap_row(n, locations));
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
        return;
    }
    println!(
        "Live heap bytes per position (counting allocator; malloc's per-allocation overhead not \
         counted). dashmap entry: {} B key + {} B value.",
        size_of::<CompactString>(),
        size_of::<SkuLike>()
    );
    println!(
        "{:<8} {:>9} {:>10} {:>11} {:>12}",
        "table", "N", "locations", "B/position", "allocs/pos"
    );
    for row in &rows {
        println!(
            "{:<8} {:>9} {:>10} {:>11.1} {:>12.3}",
            row.table,
            row.positions,
            row.locations_per_sku,
            row.bytes_per_position,
            row.allocs_per_position
        );
    }
}
