//! The engine's own sharded tables against `dashmap`, for docs/design.md ("Why not dashmap").
//!
//! Both hold the same 100,000 positions (25,000 skus x 4 locations, as in the `ledger` bench),
//! in 64 shards, hashed with foldhash. The dashmap model keys a `SkuLike` (a sku's positions
//! and an empty expiry ladder, laid out as the engine's `SkuEntry`) by sku name, and resolves
//! location names through a second `DashMap` (the engine's interner). Timed, per iteration:
//!
//! - `maps_check`: the availability of one random position. `ledger` is `Ledger::check` as
//!   the API calls it; `dashmap` is the location lookup, `DashMap::get` of the sku, the
//!   position found by location, and `on_hand - reserved - safety_stock`.
//! - `maps_reserve_release`: one unit held then given back on one random position. `ledger`
//!   is a single-line `Reserve` then its `Release` through `Ledger::submit` (no persistence:
//!   `DiscardLog`), which also records the hold, its idempotency records, the expiry ladder
//!   line and two events. `dashmap` is only the map part of that: two `DashMap::get_mut`s of
//!   the sku, the availability test and `reserved += 1`, then `reserved -= 1`. The
//!   difference between the two is the domain work, not the map.
//! - `maps_cut`: a consistent copy of the 100,000 positions, what a checkpoint starts from.
//!   `ledger` is `Ledger::cut` (every lock held while it snapshots the copy-on-write tables;
//!   keys purged first, so it copies positions only); `dashmap` is `DashMap::clone`, which
//!   copies every entry and takes the shards' read locks one after another, so it is not even
//!   a consistent cut across shards.
//!
//! The ledger's reserve bench purges its ended holds every `PURGE_EVERY` pairs (untimed, with
//! a 1 s key retention), so its tables stay small: this compares the map paths, while the
//! `ledger` bench models a steady state with millions of retained keys.
//!
//! Run:
//!
//! ```text
//! cargo bench -p inv-benches --bench maps -- --warm-up-time 1 --measurement-time 2
//! ```

// As in the `inventory` binary and the `ledger` bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use compact_str::{CompactString, format_compact};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use foldhash::fast::FixedState;
use inv_benches::{
    BIG_STOCK, NOW_MS, XorShift, adjust, location_name, release, reserve, sku_name, stock,
};
use inv_engine::{DiscardLog, Ledger, LedgerConfig, Outcome};
use smallvec::SmallVec;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKUS: usize = 25_000;
const LOCATIONS_PER_SKU: usize = 4;
/// The engine's default shard count, given to dashmap too (its default is 4x the cores).
const SHARDS: usize = 64;
/// Key retention of the ledgers here: short, so a purge after moving the clock drops
/// everything the timed pairs left.
const RETENTION_MS: u64 = 1_000;
/// Reserve+release pairs between two (untimed) purges.
const PURGE_EVERY: u64 = 200_000;

/// A position as the engine lays it out (`ledger/positions.rs`: 32 bytes).
#[derive(Clone)]
struct PositionLike {
    location: u32,
    safety_stock: u32,
    on_hand: i64,
    reserved: i64,
    #[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
    quarantined: i64,
}

/// The engine's expiry ladder's shape (32 bytes); empty here, as it is in the check bench.
#[derive(Clone, Default)]
#[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
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

/// A sku's positions and ladder: the engine's `SkuEntry` less the name, which is the key here.
#[derive(Clone)]
struct SkuLike {
    positions: SmallVec<[PositionLike; 1]>,
    #[allow(dead_code, reason = "carried for the entry's size, as in the engine")]
    ladder: LadderLike,
}

type Map<V> = DashMap<CompactString, V, FixedState>;

fn map<V>() -> Map<V> {
    DashMap::with_hasher_and_shard_amount(FixedState::with_seed(0x1e_d6e5), SHARDS)
}

/// The dashmap model: locations by name, and skus with their positions.
struct DashModel {
    locations: Map<u32>,
    skus: Map<SkuLike>,
}

impl DashModel {
    fn stocked() -> Self {
        let model = Self {
            locations: map(),
            skus: map(),
        };
        for j in 0..LOCATIONS_PER_SKU {
            model.locations.insert(location_name(j), j as u32);
        }
        for i in 0..SKUS {
            let positions = (0..LOCATIONS_PER_SKU)
                .map(|j| PositionLike {
                    location: j as u32,
                    safety_stock: 0,
                    on_hand: BIG_STOCK,
                    reserved: 0,
                    quarantined: 0,
                })
                .collect();
            model.skus.insert(
                sku_name(i),
                SkuLike {
                    positions,
                    ladder: LadderLike::Empty,
                },
            );
        }
        model
    }

    fn available(&self, sku: &str, location: &str) -> Option<i64> {
        let location = *self.locations.get(location)?;
        let entry = self.skus.get(sku)?;
        let p = entry.positions.iter().find(|p| p.location == location)?;
        Some(p.on_hand - p.reserved - i64::from(p.safety_stock))
    }

    /// Adds `delta` to the reserved units of a position if, for a hold (`delta > 0`), that
    /// many are available; returns whether it did.
    fn hold(&self, sku: &str, location: &str, delta: i64) -> bool {
        let Some(location) = self.locations.get(location).map(|id| *id) else {
            return false;
        };
        let Some(mut entry) = self.skus.get_mut(sku) else {
            return false;
        };
        let Some(p) = entry.positions.iter_mut().find(|p| p.location == location) else {
            return false;
        };
        if delta > 0 && p.on_hand - p.reserved - i64::from(p.safety_stock) < delta {
            return false;
        }
        p.reserved += delta;
        true
    }
}

fn ledger(key_retention_ms: u64) -> Ledger {
    let ledger = Ledger::new(
        LedgerConfig {
            shards: SHARDS,
            key_retention_ms,
            ..LedgerConfig::default()
        },
        Arc::new(DiscardLog::default()),
    );
    stock(
        &ledger,
        "stock-",
        SKUS,
        LOCATIONS_PER_SKU,
        BIG_STOCK,
        NOW_MS,
    );
    ledger
}

/// Moves the ledger's clock past the retention window and purges everything ended before.
fn purge(ledger: &Ledger, now_ms: &mut u64, tick: &mut u64) {
    *now_ms += 2 * RETENTION_MS;
    *tick += 1;
    let receipt = ledger
        .submit(
            adjust(
                format_compact!("tick-{tick}"),
                &sku_name(0),
                &location_name(0),
                1,
            ),
            *now_ms,
        )
        .expect("well-formed")
        .expect("tick accepted");
    assert_eq!(receipt.outcome, Outcome::Recorded);
    ledger.purge(*now_ms);
}

fn probes(seed: u64) -> Vec<(CompactString, CompactString)> {
    let mut rng = XorShift::new(seed);
    (0..4_096)
        .map(|_| {
            (
                sku_name(rng.below(SKUS)),
                location_name(rng.below(LOCATIONS_PER_SKU)),
            )
        })
        .collect()
}

fn check(c: &mut Criterion) {
    let ledger = ledger(LedgerConfig::default().key_retention_ms);
    let model = DashModel::stocked();
    let probes = probes(0x5eed);
    let mut group = c.benchmark_group("maps_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ledger", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (sku, location) = &probes[i & (probes.len() - 1)];
                i = i.wrapping_add(1);
                let availability = ledger.check(black_box(sku), black_box(location), NOW_MS);
                black_box(availability.expect("a stocked position").available);
            }
            start.elapsed()
        });
    });
    group.bench_function("dashmap", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (sku, location) = &probes[i & (probes.len() - 1)];
                i = i.wrapping_add(1);
                let available = model.available(black_box(sku), black_box(location));
                black_box(available.expect("a stocked position"));
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn reserve_release(c: &mut Criterion) {
    let ledger = ledger(RETENTION_MS);
    let (mut now_ms, mut tick, mut since_purge, mut next_id) = (NOW_MS, 0u64, 0u64, 0u64);
    let model = DashModel::stocked();
    let positions = probes(0xbee5);
    let mut group = c.benchmark_group("maps_reserve_release");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ledger", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            // Untimed: room in the tables, and the commands as a client would have built them.
            if since_purge + iters > PURGE_EVERY {
                purge(&ledger, &mut now_ms, &mut tick);
                since_purge = 0;
            }
            since_purge += iters;
            let pairs: Vec<_> = (0..iters)
                .map(|_| {
                    next_id += 1;
                    let id = format_compact!("rsv-{next_id}");
                    let line = [positions[i & (positions.len() - 1)].clone()];
                    i = i.wrapping_add(1);
                    (reserve(id.clone(), &line, 1), release(id))
                })
                .collect();
            let start = Instant::now();
            for (r, rel) in pairs {
                let granted = ledger
                    .submit(r, now_ms)
                    .expect("well-formed")
                    .expect("reserve accepted");
                assert!(matches!(granted.outcome, Outcome::Granted { .. }));
                let released = ledger
                    .submit(rel, now_ms)
                    .expect("well-formed")
                    .expect("release accepted");
                assert_eq!(released.outcome, Outcome::Released);
            }
            start.elapsed()
        });
    });
    group.bench_function("dashmap", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (sku, location) = &positions[i & (positions.len() - 1)];
                i = i.wrapping_add(1);
                assert!(model.hold(black_box(sku), black_box(location), 1));
                assert!(model.hold(black_box(sku), black_box(location), -1));
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn cut(c: &mut Criterion) {
    // Positions only: the stocking keys are purged, so the cut copies no key records.
    let ledger = ledger(RETENTION_MS);
    let (mut now_ms, mut tick) = (NOW_MS, 0);
    purge(&ledger, &mut now_ms, &mut tick);
    let model = DashModel::stocked();
    let mut group = c.benchmark_group("maps_cut");
    group.sample_size(30);
    group.bench_function("ledger", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let cut = ledger.cut();
                timed += start.elapsed();
                // Untimed: dropping the cut gives the chunks back to the ledger alone.
                drop(black_box(cut));
            }
            timed
        });
    });
    group.bench_function("dashmap", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let copy = model.skus.clone();
                timed += start.elapsed();
                drop(black_box(copy));
            }
            timed
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = check, reserve_release, cut
}
criterion_main!(benches);
