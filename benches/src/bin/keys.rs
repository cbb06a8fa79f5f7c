//! The two tiers of idempotency records (memory, then the key archive on disk), measured
//! against the issue's targets through the real engine API: `Engine::submit` over a `RedbLog`
//! and a `RedbArchive`, with a `ManualClock` moving engine time.
//!
//! Run:
//!
//! ```text
//! cargo run --release -p inv-benches --bin keys -- [--keys 1000000] [--dir PATH] [--json]
//! cargo run --release -p inv-benches --bin keys -- --keys 100000000   # the issue's full size
//! ```
//!
//! Other flags: `--round N` (keys per build round, 1,000,000), `--sample N` (archived keys
//! retried, 10,000), `--new N` (new reserves per engine in part 3, 200,000), `--keep` (leave
//! the data folder behind).
//!
//! 1. **Build.** N keys, each a distinct reservation id reserved (1 unit, granted) and then
//!    released through `Engine::submit`: one ended hold entry with its Reserve and Release
//!    records, which the archive stores as one entry (the hold's key). In rounds of `--round`
//!    keys, so memory stays bounded while building: after a round the clock moves past
//!    `key_memory_ms` and the engine checkpoints twice: the first checkpoint covers the round,
//!    the second (`Engine::checkpoint`'s own eviction) moves it to the archive. Reported: the
//!    fingerprint index (`Ledger::archived_keys`, the archive's only in-memory cost) per key,
//!    live heap growth per key (a counting global allocator around mimalloc, the server's
//!    allocator), VmRSS growth per key, and the build rate (so the time of a 100M build is
//!    known without running it).
//! 2. **Retry of a key on disk.** A seeded random sample of the archived keys is retried
//!    (same reservation id, same lines), each submit timed; each must answer `duplicate` with
//!    the original LSN and outcome. Each sampled key is retried once, so each retry faults its
//!    entry in from disk (one redb read). The OS page cache is warm: the file was just
//!    written, so at small N this is a read from memory through redb, not a disk seek.
//! 3. **New-key reserves, tiers on vs off.** The same number of new reserves (granted, then
//!    released untimed) on the engine with N archived keys and on an engine without an
//!    archive (`Engine::recover`) that keeps the same N keys in memory, as the engine did
//!    before the tiers (at most 4,000,000 of them), both over a `RedbLog` with the same options (`Async`
//!    durability, so a submit waits for the append, not for an fsync: the figure is the
//!    ledger's CPU cost plus the append). Blocks of 1,000 alternate between the engines
//!    (ABBA order) after an untimed warm-up on each, so drift on the machine falls on both.
//! 4. **Recovery.** Everything still in memory is evicted (two more checkpoints), the engine
//!    and its files are closed, and `Engine::recover_with` reopens the same folder with the
//!    `RedbArchive`: indexing the archive's keys dominates. Then a part of the sample is
//!    retried again on the recovered engine, checked the same way.
//!
//! One file of about 900 lines, on purpose: the four parts run in order on the engine and the
//! data folder part 1 builds, and print one table; split, each part would only pass that state
//! along.
//!
//! A wrong retry answer is a bug in the engine: the tool prints every figure, then the wrong
//! answers, and exits with a failure.

use compact_str::{CompactString, format_compact};
use inv_benches::{BIG_STOCK, XorShift, adjust, location_name, release, reserve, sku_name};
use inv_engine::archive::KeyArchive;
use inv_engine::archive::redb::{ARCHIVE_CACHE_BYTES, RedbArchive};
use inv_engine::log::redb::Durability;
use inv_engine::{
    Clock, Command, Engine, EventLog, LedgerConfig, Lsn, ManualClock, MemoryPolicy, Outcome,
    Receipt, RedbLog, RedbLogOptions, SubmitError,
};
use std::alloc::{GlobalAlloc, Layout};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes; delegates to mimalloc (the server's allocator, so the throughput
/// figures are the server's too).
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every method delegates to mimalloc with the caller's arguments unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { INNER.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { INNER.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { INNER.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`); 0 where unavailable.
fn status_bytes(field: &str) -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// Engine time at the start.
const T0_MS: u64 = 1_700_000_000_000;
/// How long records stay in memory after their last decision (the policy's `key_memory_ms`).
/// Short, so a round's clock step is short; far below the 7-day key retention, so nothing
/// built is purged.
const KEY_MEMORY_MS: u64 = 60_000;
/// Positions the reserves spread over, each stocked with `BIG_STOCK` (never runs out).
const SKUS: usize = 1_024;
/// Reserves per timed block in part 3.
const BLOCK: u64 = 1_000;
/// Keys of the sample retried again after recovery.
const RECHECK_MAX: usize = 1_000;
/// The issue's targets.
const TARGET_BYTES_PER_KEY: f64 = 20.0;
const TARGET_RETRY_P99_MS: f64 = 1.0;
const TARGET_RATIO_MIN: f64 = 0.9;

struct Args {
    keys: u64,
    round_keys: u64,
    sample: u64,
    new_keys: u64,
    dir: PathBuf,
    keep: bool,
    json: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        keys: 1_000_000,
        round_keys: 1_000_000,
        sample: 10_000,
        new_keys: 200_000,
        dir: std::env::temp_dir(),
        keep: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let count = |v: String| -> u64 { v.replace(['_', ','], "").parse().expect("a count") };
        match flag.as_str() {
            "--keys" => args.keys = count(value()),
            "--round" => args.round_keys = count(value()),
            "--sample" => args.sample = count(value()),
            "--new" => args.new_keys = count(value()),
            "--dir" => args.dir = PathBuf::from(value()),
            "--keep" => args.keep = true,
            "--json" => args.json = true,
            "--help" | "-h" => {
                println!(
                    "keys [--keys N (1000000; the issue's size: 100000000)] [--round N] \
                     [--sample N] [--new N] [--dir PATH] [--keep] [--json]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.keys > 0, "--keys must be positive");
    assert!(args.round_keys > 0, "--round must be positive");
    assert!(args.new_keys >= BLOCK, "--new must be at least {BLOCK}");
    args.sample = args.sample.min(args.keys);
    args
}

fn key_id(i: u64) -> CompactString {
    format_compact!("k{i:010}")
}

fn new_id(side: &str, j: u64) -> CompactString {
    format_compact!("n{side}{j:010}")
}

/// The one line of key `i` (sku by index, so a retry can rebuild the same payload).
fn lines_of(
    lines: &[[(CompactString, CompactString); 1]],
    i: u64,
) -> &[(CompactString, CompactString)] {
    &lines[(i % SKUS as u64) as usize]
}

fn log_options() -> RedbLogOptions {
    RedbLogOptions {
        durability: Durability::Async {
            flush_interval_ms: 1_000,
        },
        batch_events_max: 16_384,
        queue_events_max: 262_144,
        ..RedbLogOptions::default()
    }
}

fn policy() -> MemoryPolicy {
    MemoryPolicy {
        limit_bytes: 0,
        key_memory_ms: KEY_MEMORY_MS,
        ..MemoryPolicy::default()
    }
}

/// Submits `command`, waiting out back-pressure; panics on anything but a receipt.
fn submit(engine: &Engine, command: &Command) -> Receipt {
    for _ in 0..1_000_000 {
        match engine.submit(command.clone()) {
            Ok(Ok(receipt)) => return receipt,
            Ok(Err(refusal)) => panic!("submit refused: {refusal}"),
            Err(SubmitError::Busy { .. }) => std::thread::sleep(Duration::from_micros(100)),
            Err(error) => panic!("submit failed: {error}"),
        }
    }
    panic!("the log stayed busy");
}

fn stock(engine: &Engine) {
    for s in 0..SKUS {
        let receipt = submit(
            engine,
            &adjust(
                format_compact!("stock-{s}"),
                &sku_name(s),
                &location_name(0),
                BIG_STOCK,
            ),
        );
        assert_eq!(receipt.outcome, Outcome::Recorded);
    }
}

fn open_log(dir: &Path) -> Arc<RedbLog> {
    Arc::new(RedbLog::open(dir, log_options()).expect("log opens"))
}

fn close(engine: Engine, log: Arc<RedbLog>) {
    drop(engine);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
        .expect("clean close");
}

/// Moves the clock past `key_memory_ms` and checkpoints twice: the first covers what was
/// decided since the last one, the second moves it to the archive.
/// Returns how long each checkpoint took.
fn evict_all(engine: &Engine, clock: &ManualClock) -> (Duration, Duration) {
    clock.advance_ms(KEY_MEMORY_MS + 1);
    let started = Instant::now();
    engine.checkpoint().expect("checkpoint");
    let cover = started.elapsed();
    let started = Instant::now();
    engine.checkpoint().expect("checkpoint");
    (cover, started.elapsed())
}

/// A key of the retry sample, as the build answered it.
struct Original {
    i: u64,
    lsn: Lsn,
    outcome: Outcome,
}

/// Seeded distinct indices in `0..n`, ascending.
fn sample_indices(n: u64, count: u64) -> Vec<u64> {
    // Past half of `n`, drawing distinct indices would repeat more often than not.
    if count * 2 > n {
        return (0..count).map(|k| k * n / count).collect();
    }
    let mut rng = XorShift::new(0x5EED_0F4E);
    let mut picked = std::collections::BTreeSet::new();
    while (picked.len() as u64) < count {
        picked.insert(rng.next_u64() % n);
    }
    picked.into_iter().collect()
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = XorShift::new(seed);
    for k in (1..items.len()).rev() {
        items.swap(k, rng.below(k + 1));
    }
}

/// Checks a retry's receipt against the original; returns what is wrong, if anything.
fn wrong_retry(original: &Original, receipt: &Receipt) -> Option<String> {
    let right =
        receipt.duplicate && receipt.lsn == original.lsn && receipt.outcome == original.outcome;
    (!right).then(|| {
        format!(
            "key {}: retry answered duplicate={} lsn={} {:?}; original lsn={} {:?}",
            key_id(original.i),
            receipt.duplicate,
            receipt.lsn.0,
            receipt.outcome,
            original.lsn.0,
            original.outcome
        )
    })
}

fn percentile_ns(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Build {
    submit: Duration,
    /// The first checkpoint of each round (covers the round; its holds are in it).
    cover: Duration,
    /// The second (moves the round to the archive, then writes a small checkpoint).
    evict: Duration,
    originals: Vec<Original>,
    /// Rounds after which fewer entries were archived than built.
    short_rounds: Vec<String>,
}

/// Part 1: `args.keys` reserve+release pairs in rounds, each round evicted to the archive.
fn build(
    args: &Args,
    engine: &Engine,
    clock: &ManualClock,
    lines: &[[(CompactString, CompactString); 1]],
    baseline_archived: usize,
) -> Build {
    let sample = sample_indices(args.keys, args.sample);
    let mut next_sample = 0usize;
    let mut originals = Vec::with_capacity(sample.len());
    let mut short_rounds = Vec::new();
    let (mut submit_time, mut cover_time, mut evict_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    let mut start = 0u64;
    while start < args.keys {
        let end = (start + args.round_keys).min(args.keys);
        let round_started = Instant::now();
        for i in start..end {
            let id = key_id(i);
            let receipt = submit(engine, &reserve(id.clone(), lines_of(lines, i), 1));
            assert!(
                matches!(receipt.outcome, Outcome::Granted { .. }) && !receipt.duplicate,
                "key {id}: {receipt:?}"
            );
            if sample.get(next_sample) == Some(&i) {
                originals.push(Original {
                    i,
                    lsn: receipt.lsn,
                    outcome: receipt.outcome,
                });
                next_sample += 1;
            }
            let receipt = submit(engine, &release(id));
            assert_eq!(receipt.outcome, Outcome::Released);
        }
        submit_time += round_started.elapsed();
        let (cover, evict) = evict_all(engine, clock);
        cover_time += cover;
        evict_time += evict;
        let use_ = engine.ledger().memory_use();
        let archived = engine.ledger().archived_keys().0;
        let expected = baseline_archived + end as usize;
        if archived != expected || use_.hold_entries != 0 {
            short_rounds.push(format!(
                "after {end} keys: {archived} archived (expected {expected}), {} hold entries \
                 and {} key records still in memory",
                use_.hold_entries, use_.key_records
            ));
        }
        eprintln!(
            "  built {end} keys in {:.1} s ({:.0} keys/s), archived {archived}, heap {}, rss {}",
            started.elapsed().as_secs_f64(),
            end as f64 / started.elapsed().as_secs_f64(),
            mib(heap_bytes()),
            mib(status_bytes("VmRSS:"))
        );
        start = end;
    }
    assert_eq!(originals.len(), sample.len(), "every sampled key recorded");
    Build {
        submit: submit_time,
        cover: cover_time,
        evict: evict_time,
        originals,
        short_rounds,
    }
}

/// Reserves `count` new ids `n{side}{from..}` (timed), then releases them (untimed).
/// Keys the tiers-off baseline of part 3 keeps in memory, at most (about 140 B each).
const BASELINE_KEYS_MAX: u64 = 4_000_000;

fn new_keys_block(
    engine: &Engine,
    side: &str,
    from: u64,
    count: u64,
    lines: &[[(CompactString, CompactString); 1]],
) -> Duration {
    let commands: Vec<Command> = (from..from + count)
        .map(|j| reserve(new_id(side, j), lines_of(lines, j), 1))
        .collect();
    let started = Instant::now();
    for command in &commands {
        let receipt = submit(engine, command);
        assert!(
            matches!(receipt.outcome, Outcome::Granted { .. }) && !receipt.duplicate,
            "new key: {receipt:?}"
        );
    }
    let elapsed = started.elapsed();
    for j in from..from + count {
        assert_eq!(
            submit(engine, &release(new_id(side, j))).outcome,
            Outcome::Released
        );
    }
    elapsed
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn per_key(bytes: i64, keys: u64) -> f64 {
    bytes as f64 / keys.max(1) as f64
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISS" }
}

fn main() {
    let args = parse_args();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let load_before = load_average();
    let root = args.dir.join(format!("inv-keys-{}", std::process::id()));
    let (dir_on, dir_off) = (root.join("on"), root.join("off"));
    std::fs::create_dir_all(&dir_on).expect("data folder");
    std::fs::create_dir_all(&dir_off).expect("data folder");
    eprintln!("keys: data in {}", root.display());
    let lines: Vec<[(CompactString, CompactString); 1]> = (0..SKUS)
        .map(|s| [(sku_name(s), location_name(0))])
        .collect();

    // Part 1: build.
    let heap_start = heap_bytes();
    let rss_start = status_bytes("VmRSS:");
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = open_log(&dir_on);
    let archive: Arc<dyn KeyArchive> = Arc::new(RedbArchive::open(&dir_on).expect("archive opens"));
    let engine = Engine::recover_with(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
        Some(Arc::clone(&archive)),
        policy(),
    )
    .expect("empty folder");
    stock(&engine);
    // The stocking adjustments' records are archived in the first round too.
    evict_all(&engine, &clock);
    let baseline_archived = engine.ledger().archived_keys().0;
    let heap_stocked = heap_bytes();
    let rss_stocked = status_bytes("VmRSS:");
    let built = build(&args, &engine, &clock, &lines, baseline_archived);
    let heap_built = heap_bytes();
    let rss_built = status_bytes("VmRSS:");
    let rss_peak_build = status_bytes("VmHWM:");
    let (archived_built, index_bytes_built) = engine.ledger().archived_keys();
    let use_built = engine.ledger().memory_use();
    let archive_stats = archive.stats();
    let build_keys_per_s =
        args.keys as f64 / (built.submit + built.cover + built.evict).as_secs_f64();

    // Part 2: retry a sample of archived keys, in random order.
    let mut originals = built.originals;
    shuffle(&mut originals, 0x00C0_FFEE);
    let mut wrong: Vec<String> = built
        .short_rounds
        .iter()
        .map(|s| format!("eviction short {s}"))
        .collect();
    let mut retry_ns: Vec<u64> = Vec::with_capacity(originals.len());
    for original in &originals {
        let command = reserve(key_id(original.i), lines_of(&lines, original.i), 1);
        let started = Instant::now();
        let receipt = submit(&engine, &command);
        retry_ns.push(started.elapsed().as_nanos() as u64);
        wrong.extend(wrong_retry(original, &receipt));
    }
    retry_ns.sort_unstable();
    let faulted_in = engine.ledger().memory_use().hold_entries;

    // Part 3: new keys, tiers on vs off.
    let log_off = open_log(&dir_off);
    let clock_off = Arc::new(ManualClock::new(clock.now_ms()));
    let engine_off = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log_off) as Arc<dyn EventLog>,
        Arc::clone(&clock_off) as Arc<dyn Clock>,
    )
    .expect("empty folder");
    stock(&engine_off);
    // Today's engine keeps every retained key in memory: the baseline holds the same keys
    // (up to BASELINE_KEYS_MAX), reserved and released, so both engines' tables have the
    // history of a loaded ledger and the comparison is the tiers' cost, not a fresh table's
    // advantage.
    let baseline_keys = args.keys.min(BASELINE_KEYS_MAX);
    for i in 0..baseline_keys {
        let id = key_id(i);
        submit(&engine_off, &reserve(id.clone(), lines_of(&lines, i), 1));
        submit(&engine_off, &release(id));
    }
    let warm_up = (args.new_keys / 4).div_ceil(BLOCK) * BLOCK;
    let mut from = 0u64;
    while from < warm_up {
        new_keys_block(&engine, "w", from, BLOCK, &lines);
        new_keys_block(&engine_off, "w", from, BLOCK, &lines);
        from += BLOCK;
    }
    let (mut time_on, mut time_off) = (Duration::ZERO, Duration::ZERO);
    let mut from = 0u64;
    let mut block = 0u64;
    while from < args.new_keys {
        let count = BLOCK.min(args.new_keys - from);
        // ABBA: which engine goes first alternates, so a trend on the machine falls on both.
        if block.is_multiple_of(2) {
            time_on += new_keys_block(&engine, "t", from, count, &lines);
            time_off += new_keys_block(&engine_off, "t", from, count, &lines);
        } else {
            time_off += new_keys_block(&engine_off, "t", from, count, &lines);
            time_on += new_keys_block(&engine, "t", from, count, &lines);
        }
        from += count;
        block += 1;
    }
    close(engine_off, log_off);
    let on_per_s = args.new_keys as f64 / time_on.as_secs_f64();
    let off_per_s = args.new_keys as f64 / time_off.as_secs_f64();
    let ratio = on_per_s / off_per_s;

    // Part 4: evict what the retries and new keys left in memory, close, recover.
    evict_all(&engine, &clock);
    let (archived_closed, _) = engine.ledger().archived_keys();
    let use_closed = engine.ledger().memory_use();
    // Retried after the re-eviction, on the live engine: a faulted-in entry evicted again
    // must still be found.
    let recheck = &originals[..originals.len().min(RECHECK_MAX)];
    for original in recheck {
        let command = reserve(key_id(original.i), lines_of(&lines, original.i), 1);
        wrong.extend(
            wrong_retry(original, &submit(&engine, &command))
                .map(|w| format!("after re-eviction, {w}")),
        );
    }
    evict_all(&engine, &clock);
    close(engine, log);
    drop(archive);
    let heap_closed = heap_bytes();
    let rss_closed = status_bytes("VmRSS:");
    let started = Instant::now();
    let log = Arc::new(RedbLog::open(&dir_on, log_options()).expect("log reopens"));
    let open_log_time = started.elapsed();
    let started = Instant::now();
    let archive: Arc<dyn KeyArchive> =
        Arc::new(RedbArchive::open(&dir_on).expect("archive reopens"));
    let open_archive_time = started.elapsed();
    let started = Instant::now();
    let engine = Engine::recover_with(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
        Some(Arc::clone(&archive)),
        policy(),
    )
    .expect("recovers");
    let recover_time = started.elapsed();
    let heap_recovered = heap_bytes();
    let rss_recovered = status_bytes("VmRSS:");
    let (archived_recovered, index_bytes_recovered) = engine.ledger().archived_keys();
    if archived_recovered != archived_closed {
        wrong.push(format!(
            "recovery indexed {archived_recovered} archived keys; {archived_closed} before closing"
        ));
    }
    for original in recheck {
        let command = reserve(key_id(original.i), lines_of(&lines, original.i), 1);
        wrong.extend(
            wrong_retry(original, &submit(&engine, &command))
                .map(|w| format!("after recovery, {w}")),
        );
    }
    let file_bytes = archive.stats().file_bytes;
    close(engine, log);
    drop(archive);
    let load_after = load_average();

    // Figures.
    let n = args.keys;
    let heap_growth = heap_built - heap_stocked;
    let rss_growth = rss_built - rss_stocked;
    let index_per_key = per_key(index_bytes_built as i64, archived_built as u64);
    let heap_per_key = per_key(heap_growth, n);
    let recovered_heap_per_key = per_key(heap_recovered - heap_closed, archived_recovered as u64);
    let recovered_index_per_key = per_key(index_bytes_recovered as i64, archived_recovered as u64);
    let p = |q: f64| percentile_ns(&retry_ns, q) as f64 / 1e6;
    let (p50, p99, p999, max) = (p(0.5), p(0.99), p(0.999), p(1.0));
    // The archive's page cache is `ARCHIVE_CACHE_BYTES` (filled by the pages it writes and
    // reads) and the log's is `cache_size_bytes`: at 100M keys both are full, so the RAM is
    // the index plus both caches. The index's bytes per key swing with hashbrown's load
    // factor, so this is a projection from this N, not a measurement.
    let projected_gb =
        (index_per_key * 1e8 + ARCHIVE_CACHE_BYTES as f64 + log_options().cache_size_bytes as f64)
            / 1e9;
    let hours_100m = 1e8 / build_keys_per_s / 3600.0;

    println!("keys: two-tier idempotency records (memory + key archive), measured");
    println!("command: {command_line}");
    println!(
        "machine: {} cores; load average {load_before} before, {load_after} after; data in {}",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        root.display()
    );
    println!(
        "N = {n} archived keys (each a reserved-then-released hold: one archive entry), built \
         through Engine::submit over RedbLog (Async) + RedbArchive, {} per round",
        args.round_keys
    );
    println!();
    println!("{:<64} {:>16} {:>12}", "measure", "value", "target");
    let row = |what: &str, value: String, target: String| {
        println!("{what:<64} {value:>16} {target:>12}");
    };
    row(
        "1. archived keys indexed (Ledger::archived_keys)",
        archived_built.to_string(),
        "-".into(),
    );
    row(
        "1. fingerprint index, B/key (in memory)",
        format!("{index_per_key:.1}"),
        format!(
            "<= {TARGET_BYTES_PER_KEY:.0} {}",
            verdict(index_per_key <= TARGET_BYTES_PER_KEY)
        ),
    );
    row(
        "1. live heap growth over the build, B/key",
        format!("{heap_per_key:.1}"),
        format!(
            "<= {TARGET_BYTES_PER_KEY:.0} {}",
            verdict(heap_per_key <= TARGET_BYTES_PER_KEY)
        ),
    );
    row(
        "1. VmRSS growth over the build, B/key",
        format!("{:.1}", per_key(rss_growth, n)),
        "-".into(),
    );
    row(
        "1. ledger's own estimate after the build (memory_use), B/key",
        format!("{:.1}", per_key(use_built.total() as i64, n)),
        "-".into(),
    );
    row(
        "1. after recovery: live heap of the recovered engine, B/key",
        format!("{recovered_heap_per_key:.1}"),
        format!(
            "<= {TARGET_BYTES_PER_KEY:.0} {}",
            verdict(recovered_heap_per_key <= TARGET_BYTES_PER_KEY)
        ),
    );
    row(
        "1. after recovery: fingerprint index, B/key",
        format!("{recovered_index_per_key:.1}"),
        "-".into(),
    );
    row(
        "1. projected at 100M: index + redb caches (archive + log), GB",
        format!("{projected_gb:.2}"),
        format!("<= 2 {}", verdict(projected_gb <= 2.0)),
    );
    row(
        "1. archive file (keys.redb), B/key",
        format!(
            "{:.0}",
            per_key(file_bytes as i64, archived_recovered as u64)
        ),
        "-".into(),
    );
    row(
        "1. build rate, keys/s (2 submits each, checkpoints included)",
        format!("{build_keys_per_s:.0}"),
        "-".into(),
    );
    row(
        "1. build time for 100M keys at this rate, h",
        format!("{hours_100m:.2}"),
        "-".into(),
    );
    row(
        &format!(
            "2. retry of an archived key, p50 ms ({} keys)",
            retry_ns.len()
        ),
        format!("{p50:.3}"),
        "-".into(),
    );
    row(
        "2. retry of an archived key, p99 ms",
        format!("{p99:.3}"),
        format!(
            "< {TARGET_RETRY_P99_MS:.0} {}",
            verdict(p99 < TARGET_RETRY_P99_MS)
        ),
    );
    row(
        "2. retry of an archived key, p99.9 ms",
        format!("{p999:.3}"),
        "-".into(),
    );
    row(
        "2. retry of an archived key, max ms",
        format!("{max:.3}"),
        "-".into(),
    );
    row(
        &format!("3. new-key reserves/s, tiers on ({n} archived keys)"),
        format!("{on_per_s:.0}"),
        "-".into(),
    );
    row(
        "3. new-key reserves/s, tiers off (same keys in memory)",
        format!("{off_per_s:.0}"),
        "-".into(),
    );
    row(
        "3. ratio on / off",
        format!("{ratio:.3}"),
        format!(
            ">= {TARGET_RATIO_MIN} {}",
            verdict(ratio >= TARGET_RATIO_MIN)
        ),
    );
    row(
        &format!("4. Engine::recover_with, s ({archived_recovered} archived keys)"),
        format!("{:.3}", recover_time.as_secs_f64()),
        "-".into(),
    );
    row(
        "4. RedbLog::open (integrity check) + RedbArchive::open, s",
        format!(
            "{:.3} + {:.3}",
            open_log_time.as_secs_f64(),
            open_archive_time.as_secs_f64()
        ),
        "-".into(),
    );
    println!();
    println!(
        "build: submits {:.1} s; first checkpoints (covering each round) {:.1} s; second \
         checkpoints (evicting each round to the archive) {:.1} s ({:.0} entries/s); archive {} \
         entries, {}; ledger after the build: holds {} B ({} entries), keys {} B ({} records), \
         positions {} B, archive index {} B",
        built.submit.as_secs_f64(),
        built.cover.as_secs_f64(),
        built.evict.as_secs_f64(),
        n as f64 / built.evict.as_secs_f64(),
        archive_stats.entries,
        mib(archive_stats.file_bytes as i64),
        use_built.holds,
        use_built.hold_entries,
        use_built.keys,
        use_built.key_records,
        use_built.positions,
        use_built.archive_index
    );
    println!(
        "memory: heap {} at start, {} stocked, {} built, {} closed, {} recovered; VmRSS {} at \
         start, {} stocked, {} built (peak {}), {} closed, {} recovered",
        mib(heap_start),
        mib(heap_stocked),
        mib(heap_built),
        mib(heap_closed),
        mib(heap_recovered),
        mib(rss_start),
        mib(rss_stocked),
        mib(rss_built),
        mib(rss_peak_build),
        mib(rss_closed),
        mib(rss_recovered)
    );
    println!(
        "memory: heap growth includes everything the build left behind (emptied table \
         capacity, the redb page caches of the log and of the archive ({} file), at most \
         ARCHIVE_CACHE_BYTES and the log's cache_size_bytes), not only the index; VmRSS \
         also keeps what mimalloc has not returned to the OS",
        mib(archive_stats.file_bytes as i64)
    );
    println!(
        "retry: each sampled key retried once (one fault-in = one redb read), OS page cache \
         warm; {faulted_in} hold entries in memory after the retries"
    );
    println!(
        "new keys: {} timed per engine in blocks of {BLOCK} (ABBA order) after {warm_up} \
         untimed; both over RedbLog Async (no fsync wait), so CPU + append; tiers on {:.2} s, \
         off {:.2} s",
        args.new_keys,
        time_on.as_secs_f64(),
        time_off.as_secs_f64()
    );
    println!(
        "recovery: {archived_closed} archived before closing, {archived_recovered} indexed on \
         recovery; ledger before closing: {} hold entries, {} key records; {} of the sample \
         retried again after re-eviction and after recovery",
        use_closed.hold_entries,
        use_closed.key_records,
        recheck.len()
    );

    if args.json {
        let json = serde_json::json!({
            "command": command_line,
            "load_before": load_before,
            "load_after": load_after,
            "keys": n,
            "archived_keys": archived_built,
            "index_bytes_per_key": index_per_key,
            "heap_bytes_per_key": heap_per_key,
            "rss_bytes_per_key": per_key(rss_growth, n),
            "recovered_heap_bytes_per_key": recovered_heap_per_key,
            "archive_file_bytes_per_key": per_key(file_bytes as i64, archived_recovered as u64),
            "build_keys_per_s": build_keys_per_s,
            "evict_entries_per_s": n as f64 / built.evict.as_secs_f64(),
            "projected_gb_100m": projected_gb,
            "retry_samples": retry_ns.len(),
            "retry_p50_ms": p50,
            "retry_p99_ms": p99,
            "retry_p999_ms": p999,
            "retry_max_ms": max,
            "new_keys": args.new_keys,
            "new_keys_per_s_on": on_per_s,
            "new_keys_per_s_off": off_per_s,
            "ratio_on_off": ratio,
            "recover_s": recover_time.as_secs_f64(),
            "open_log_s": open_log_time.as_secs_f64(),
            "open_archive_s": open_archive_time.as_secs_f64(),
            "wrong": wrong,
        });
        println!("{json}");
    }

    if !args.keep {
        std::fs::remove_dir_all(&root).expect("remove the data folder");
    }
    if !wrong.is_empty() {
        println!("\nWRONG ({}), first 10:", wrong.len());
        for w in wrong.iter().take(10) {
            println!("  {w}");
        }
        std::process::exit(1);
    }
}
