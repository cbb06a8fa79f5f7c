//! Throughput of the in-process ledger on its hot paths: availability checks, reserve+release
//! pairs of one and three lines, reserves alone into a table of open holds growing to
//! `GROWN_HOLDS_MAX`, and reserve+release pairs from 1 to 8 threads on one hot sku/location. No persistence: the ledger appends to a `DiscardLog`, and every call gets an
//! explicit decision time (no clock). Building the commands (ids, lines) is done outside the
//! timed region; what is timed is `Ledger::check` / `Ledger::submit` as the API would call them.
//!
//! Idempotency keys and ended holds are retained for the default week, so a live ledger keeps
//! millions of them and its key and hold tables are far larger than the CPU caches. The
//! reserve benches model that steady state: before timing, the ledger is run through
//! `RETAINED_PAIRS` pairs (untimed) so its tables reach that size, and whenever that many more
//! pairs have been done, the clock is moved past the retention window and the ledger purged
//! (untimed). Tables then keep their capacity (purge does not shrink them) and nothing is
//! resized inside the timed region, which keeps the figures stable and the memory bounded.
//!
//! Run (the `--bench` filter keeps the criterion flags away from the lib's test harness):
//!
//! ```text
//! cargo bench -p inv-benches --bench ledger -- --warm-up-time 1 --measurement-time 3
//! ```

// As in the `inventory` binary (see the workspace Cargo.toml for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use compact_str::{CompactString, format_compact};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use inv_benches::{BIG_STOCK, NOW_MS, XorShift, location_name, release, reserve, sku_name, stock};
use inv_engine::{Command, DiscardLog, Ledger, LedgerConfig, Outcome};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Reserve+release pairs whose keys and ended holds a reserve bench's ledger retains at most:
/// 1M keys and 500k ended holds, several hundred MB, far beyond any cache.
const RETAINED_PAIRS: u64 = 500_000;
/// More than the default key retention (a week): moving the clock by this much lets a purge
/// drop everything decided before.
const PAST_RETENTION_MS: u64 = 8 * 24 * 3_600_000;

/// Open holds the growing-table bench places before it starts over on a fresh ledger: a flash
/// sale's worth, so the hold tables, expiry indexes and ladders grow far beyond the caches.
const GROWN_HOLDS_MAX: u64 = 2_000_000;

/// Skus in the stocked ledger; with `LOCATIONS_PER_SKU` that makes 100,000 positions.
const SKUS: usize = 25_000;
const LOCATIONS_PER_SKU: usize = 4;

fn stocked_ledger() -> Ledger {
    let ledger = Ledger::new(LedgerConfig::default(), Arc::new(DiscardLog::default()));
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

/// A random stocked position.
fn random_position(rng: &mut XorShift) -> (CompactString, CompactString) {
    (
        sku_name(rng.below(SKUS)),
        location_name(rng.below(LOCATIONS_PER_SKU)),
    )
}

/// A stocked ledger kept in the steady state described in the module docs.
struct Steady {
    ledger: Ledger,
    now_ms: u64,
    /// Pairs done since the last purge.
    pairs: u64,
    /// Ids are unique across the whole run (`{prefix}{next_id}`).
    next_id: u64,
}

impl Steady {
    /// A stocked ledger whose tables have been grown by `RETAINED_PAIRS` pairs and purged.
    fn new() -> Self {
        let mut steady = Self {
            ledger: stocked_ledger(),
            now_ms: NOW_MS,
            pairs: 0,
            next_id: 0,
        };
        let hot = [(sku_name(0), location_name(0))];
        for _ in 0..RETAINED_PAIRS {
            let id = steady.id("warm-");
            reserve_release(
                &steady.ledger,
                reserve(id.clone(), &hot, 1),
                release(id),
                NOW_MS,
            );
        }
        steady.purge_all();
        steady
    }

    fn id(&mut self, prefix: &str) -> CompactString {
        self.next_id += 1;
        format_compact!("{prefix}{}", self.next_id)
    }

    /// Untimed: if `coming` more pairs would exceed `RETAINED_PAIRS` since the last purge,
    /// purges first.
    fn make_room(&mut self, coming: u64) {
        if self.pairs + coming > RETAINED_PAIRS {
            self.purge_all();
        }
        self.pairs += coming;
    }

    /// Moves the clock past the retention window and purges every key and ended hold.
    fn purge_all(&mut self) {
        self.now_ms += PAST_RETENTION_MS;
        // A purge only reaches up to the latest event time: record one at the new time.
        let tick = self.id("tick-");
        let receipt = self
            .ledger
            .submit(
                inv_benches::adjust(tick, &sku_name(0), &location_name(0), 1),
                self.now_ms,
            )
            .expect("well-formed")
            .expect("tick accepted");
        assert_eq!(receipt.outcome, Outcome::Recorded);
        self.ledger.purge(self.now_ms);
        self.pairs = 0;
    }
}

/// Reserves (which must be granted) and releases (which must release) one pair.
fn reserve_release(ledger: &Ledger, reserve: Command, release: Command, now_ms: u64) {
    let granted = ledger
        .submit(reserve, now_ms)
        .expect("well-formed")
        .expect("reserve accepted");
    assert!(
        matches!(granted.outcome, Outcome::Granted { .. }),
        "reserve not granted: {:?}",
        granted.outcome
    );
    let released = ledger
        .submit(release, now_ms)
        .expect("well-formed")
        .expect("release accepted");
    assert_eq!(released.outcome, Outcome::Released);
}

fn check_one_position(c: &mut Criterion) {
    let ledger = stocked_ledger();
    let mut rng = XorShift::new(0x5eed);
    let probes: Vec<(CompactString, CompactString)> =
        (0..4_096).map(|_| random_position(&mut rng)).collect();
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_one_position", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let (sku, location) = &probes[i & (probes.len() - 1)];
                i = i.wrapping_add(1);
                let availability = ledger.check(black_box(sku), black_box(location), NOW_MS);
                black_box(availability.expect("a stocked position"));
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// Reserve of `lines` distinct random positions (distinct skus) then its release, per iteration.
fn reserve_release_lines(c: &mut Criterion, name: &str, lines: usize) {
    let mut steady = Steady::new();
    let mut rng = XorShift::new(0xbee5 + lines as u64);
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            // Untimed: room in the tables, unique ids and the commands, as a client would have
            // built them.
            steady.make_room(iters);
            let pairs: Vec<(Command, Command)> = (0..iters)
                .map(|_| {
                    let id = steady.id("rsv-");
                    let mut positions: Vec<(CompactString, CompactString)> =
                        Vec::with_capacity(lines);
                    while positions.len() < lines {
                        let p = random_position(&mut rng);
                        if positions.iter().all(|q| q.0 != p.0) {
                            positions.push(p);
                        }
                    }
                    (reserve(id.clone(), &positions, 1), release(id))
                })
                .collect();
            let (ledger, now_ms) = (&steady.ledger, steady.now_ms);
            let start = Instant::now();
            for (r, rel) in pairs {
                reserve_release(ledger, r, rel, now_ms);
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn reserve_release_one_line(c: &mut Criterion) {
    reserve_release_lines(c, "reserve_release_one_line", 1);
}

fn reserve_release_three_lines(c: &mut Criterion) {
    reserve_release_lines(c, "reserve_release_three_lines", 3);
}

/// Single-line reserves alone, on random positions, into a ledger that keeps every hold open:
/// the tables grow from empty to `GROWN_HOLDS_MAX` open holds (about 80 per sku), then the
/// ledger is replaced by a fresh one (untimed). The figure is the mean over that growth.
fn reserve_only_growing(c: &mut Criterion) {
    let mut ledger = stocked_ledger();
    let mut open = 0u64;
    let mut next_id = 0u64;
    let mut rng = XorShift::new(0x960_3e5);
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reserve_only_growing_to_2m", |b| {
        b.iter_custom(|iters| {
            if open + iters > GROWN_HOLDS_MAX {
                ledger = stocked_ledger();
                open = 0;
            }
            open += iters;
            let reserves: Vec<Command> = (0..iters)
                .map(|_| {
                    next_id += 1;
                    reserve(
                        format_compact!("grow-{next_id}"),
                        &[random_position(&mut rng)],
                        1,
                    )
                })
                .collect();
            let start = Instant::now();
            for r in reserves {
                let granted = ledger
                    .submit(r, NOW_MS)
                    .expect("well-formed")
                    .expect("reserve accepted");
                assert!(
                    matches!(granted.outcome, Outcome::Granted { .. }),
                    "reserve not granted: {:?}",
                    granted.outcome
                );
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// `threads` threads each doing `iters` reserve+release pairs of one unit on the same
/// sku/location. One iteration = one pair per thread, so elements per iteration = `threads`.
fn reserve_hot_sku_contended(c: &mut Criterion) {
    let mut steady = Steady::new();
    let hot = vec![(sku_name(0), location_name(0))];
    let mut round = 0u64;
    let mut group = c.benchmark_group("reserve_hot_sku_contended");
    for threads in [1usize, 2, 4, 8] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    steady.make_room(iters * threads as u64);
                    round += 1;
                    let round = round;
                    let (ledger, now_ms) = (&steady.ledger, steady.now_ms);
                    let barrier = Barrier::new(threads + 1);
                    std::thread::scope(|s| {
                        let workers: Vec<_> = (0..threads)
                            .map(|t| {
                                let (hot, barrier) = (&hot, &barrier);
                                s.spawn(move || {
                                    let pairs: Vec<(Command, Command)> = (0..iters)
                                        .map(|n| {
                                            let id =
                                                format_compact!("hot-{threads}-{round}-{t}-{n}");
                                            (reserve(id.clone(), hot, 1), release(id))
                                        })
                                        .collect();
                                    barrier.wait();
                                    for (r, rel) in pairs {
                                        reserve_release(ledger, r, rel, now_ms);
                                    }
                                })
                            })
                            .collect();
                        barrier.wait();
                        let start = Instant::now();
                        for worker in workers {
                            worker.join().expect("worker panicked");
                        }
                        start.elapsed()
                    })
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = check_one_position, reserve_release_one_line, reserve_release_three_lines,
        reserve_only_growing, reserve_hot_sku_contended
}
criterion_main!(benches);
