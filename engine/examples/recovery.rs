//! Recovery time: a full replay of a long log, and a checkpoint of a large ledger.
//!
//! 1. **Build.** A fresh `RedbLog` (`Async` durability, 1 s flush) in a temporary folder, and
//!    one submitter sending `--events` commands through `Engine::submit`: first one stocking
//!    `Adjust` per position (`--positions`, spread over 4 locations), then a seeded mix of
//!    single-line reserves (40%), releases (20%) and commits (20%) of the oldest open holds,
//!    and adjustments (20%). The engine clock advances so the whole log spans `--days` days,
//!    which decides how many idempotency keys and ended holds are still within the 7-day
//!    retention at the end (and so in a checkpoint).
//! 2. **Full replay.** Reopen the folder and recover from LSN 1, timed: `open` (with and
//!    without redb's integrity check), reading and decoding alone (`read_from` in batches),
//!    the ledger's own sequential `Ledger::replay_log`, and `Engine::recover`, which decodes
//!    the next batch on a second thread while the ledger applies the current one.
//! 3. **Checkpoint.** On the recovered engine, the steps of `Engine::checkpoint` one by one:
//!    `Ledger::purge` (what is past retention), the copy under every lock (`Ledger::cut`, the
//!    only part that blocks writes), building the checkpoint from it, its encoding (size, by part); then `Engine::checkpoint` itself
//!    (purge, copy, encode, and the log writing the chunks and trimming every event in one
//!    fsync commit).
//! 4. **Load.** Reopen and time `open`, `latest_checkpoint` (read + checksum + decode),
//!    `Ledger::from_checkpoint`, and `Engine::recover` as a whole.
//!
//! The folder is deleted at the end (unless `--keep`). Disk: about 130 bytes per event in the
//! log file, so ~1.3 GB for 10M events; memory: a few GB for the ledgers at 10M events.
//!
//! Run: `cargo run --release -p inv-engine --example recovery -- [--events 10000000]
//! [--positions 1000000] [--days 28] [--dir PATH] [--verify] [--keep] [--replay-only]
//! [--reuse DIR] [--sequential also|only|no]`. `--verify` also compares the digest of every
//! recovered ledger with the live one (slow at this size). `--keep --replay-only` leaves a
//! built, untrimmed log behind, and `--reuse DIR` replays it again without building (for
//! profiling the replay alone, or comparing `--sequential only` with `--sequential no` in
//! separate processes).

/// What `--help` prints: the file's doc says what each run measures.
const USAGE: &str = include_str!("usage/recovery.txt");

// As in the `inventory` binary (see the workspace Cargo.toml for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use inv_engine::checkpoint::Checkpoint;
use inv_engine::engine::CheckpointPolicy;
use inv_engine::log::encoding;
use inv_engine::log::redb::{Durability, FILE_NAME};
use inv_engine::testing::commands::{adjust_with_reason, commit, release, reserve_on};
use inv_engine::*;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000;
const LOCATIONS: usize = 4;
const DAY_MS: u64 = 24 * 3_600_000;

struct Args {
    events: u64,
    positions: u64,
    days: u64,
    dir: PathBuf,
    verify: bool,
    keep: bool,
    /// Replay the log in this folder instead of building one (the folder is kept).
    reuse: Option<PathBuf>,
    /// Stop after the full replay (leaves the log untrimmed, for `--reuse`).
    replay_only: bool,
    /// Also time `Ledger::replay_log` (sequential) before `Engine::recover`. Each replay
    /// builds a multi-GB ledger, and the second one in a process runs on the first one's freed
    /// memory, so compare the two in separate runs (`--sequential only` / `no`).
    sequential: Sequential,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sequential {
    Also,
    Only,
    No,
}

fn parse_args() -> Args {
    let mut args = Args {
        events: 10_000_000,
        positions: 1_000_000,
        days: 28,
        dir: std::env::temp_dir(),
        verify: false,
        keep: false,
        reuse: None,
        replay_only: false,
        sequential: Sequential::Also,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => args.events = value().replace('_', "").parse().expect("a count"),
            "--positions" => args.positions = value().replace('_', "").parse().expect("a count"),
            "--days" => args.days = value().parse().expect("days"),
            "--dir" => args.dir = PathBuf::from(value()),
            "--verify" => args.verify = true,
            "--keep" => args.keep = true,
            "--reuse" => args.reuse = Some(PathBuf::from(value())),
            "--replay-only" => args.replay_only = true,
            "--sequential" => {
                args.sequential = match value().as_str() {
                    "also" => Sequential::Also,
                    "only" => Sequential::Only,
                    "no" => Sequential::No,
                    other => panic!("--sequential takes also, only or no, not {other}"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        args.events >= args.positions,
        "--events must cover one adjust per position"
    );
    args
}

/// splitmix64: small, seeded, good enough to pick workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn position_name(p: u64) -> (String, String) {
    let sku = format!("sku-{:07}", p / LOCATIONS as u64);
    let location = format!("dc-{}", p % LOCATIONS as u64 + 1);
    (sku, location)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn rate(count: u64, d: Duration) -> String {
    let per_s = count as f64 / d.as_secs_f64().max(1e-9);
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.0} k/s", per_s / 1e3)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(FILE_NAME)).map_or(0, |m| m.len())
}

/// Resident set size of this process, from /proc (0 where unavailable).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn open_log(dir: &Path, check_integrity_on_open: bool) -> (Arc<RedbLog>, Duration) {
    let started = Instant::now();
    let log = RedbLog::open(
        dir,
        RedbLogOptions {
            check_integrity_on_open,
            ..RedbLogOptions::default()
        },
    )
    .expect("log opens");
    (Arc::new(log), started.elapsed())
}

fn close(engine: Engine, log: Arc<RedbLog>) {
    drop(engine);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
        .expect("clean close");
}

fn submit(engine: &Engine, command: Command) -> Receipt {
    loop {
        match engine.submit(command.clone()) {
            Ok(Ok(receipt)) => return receipt,
            Ok(Err(refusal)) => panic!("submit refused: {refusal}"),
            Err(SubmitError::Busy { .. }) => std::thread::sleep(Duration::from_micros(200)),
            Err(error) => panic!("submit failed: {error}"),
        }
    }
}

/// Phase 1: writes the log through the engine. Returns the live digest if `verify`.
fn build(args: &Args, dir: &Path) -> Option<u64> {
    let log = Arc::new(
        RedbLog::open(
            dir,
            RedbLogOptions {
                durability: Durability::Async {
                    flush_interval_ms: 1_000,
                },
                batch_events_max: 16_384,
                queue_events_max: 262_144,
                ..RedbLogOptions::default()
            },
        )
        .expect("log opens"),
    );
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("empty log");
    let step_ms = (args.days * DAY_MS) as f64 / args.events as f64;
    let mut rng = Rng(0x5EED);
    let mut open: VecDeque<u64> = VecDeque::new();
    let mut next_hold = 0u64;
    let started = Instant::now();
    let mut counts = [0u64; 4];
    for n in 0..args.events {
        clock.set_ms(T0 + (n as f64 * step_ms) as u64);
        let command = if n < args.positions {
            let (sku, location) = position_name(n);
            adjust_with_reason(
                &format!("stock-{n}"),
                &sku,
                &location,
                1_000,
                "initial stock",
            )
        } else {
            let pick = rng.below(100);
            let pick = if open.len() > 20_000 { 50 } else { pick };
            match pick {
                0..40 => {
                    counts[0] += 1;
                    let (sku, location) = position_name(rng.below(args.positions));
                    let id = format!("r{next_hold}");
                    next_hold += 1;
                    open.push_back(next_hold - 1);
                    let channel = ["web", "amazon-us"][(pick % 2) as usize];
                    let lines = vec![Line::new(&sku, &location, 1 + rng.below(3))];
                    reserve_on(channel, &id, lines, DAY_MS)
                }
                40..80 if !open.is_empty() => {
                    let id = format!("r{}", open.pop_front().expect("non-empty"));
                    if pick < 60 {
                        counts[1] += 1;
                        release(&id)
                    } else {
                        counts[2] += 1;
                        commit(&id)
                    }
                }
                _ => {
                    counts[3] += 1;
                    let (sku, location) = position_name(rng.below(args.positions));
                    // -10..=10 without 0.
                    let delta = [-1, 1][rng.below(2) as usize] * (1 + rng.below(10) as i64);
                    adjust_with_reason(&format!("adj-{n}"), &sku, &location, delta, "cycle count")
                }
            }
        };
        submit(&engine, command);
        if (n + 1) % 1_000_000 == 0 {
            eprintln!(
                "  built {} M events ({}, rss {})",
                (n + 1) / 1_000_000,
                secs(started.elapsed()),
                mib(rss())
            );
        }
    }
    let submitted = started.elapsed();
    let digest = args.verify.then(|| engine.ledger().digest());
    close(engine, log);
    let total = started.elapsed();
    println!(
        "build: {} events ({} stocking adjusts, then {} reserves, {} releases, {} commits, {} \
         adjusts) over {} days of engine time",
        args.events, args.positions, counts[0], counts[1], counts[2], counts[3], args.days
    );
    println!(
        "build: submitted in {} ({}), durable and closed after {} ({}); file {} ({:.0} B/event)",
        secs(submitted),
        rate(args.events, submitted),
        secs(total),
        rate(args.events, total),
        mib(file_size(dir)),
        file_size(dir) as f64 / args.events as f64
    );
    digest
}

fn config() -> LedgerConfig {
    LedgerConfig::default()
}

fn clock_at_end(args: &Args) -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(T0 + args.days * DAY_MS))
}

/// Phase 2: full replay, several ways.
fn full_replay(args: &Args, dir: &Path, live: Option<u64>) -> (Engine, Arc<RedbLog>) {
    let (log, open_unchecked) = open_log(dir, false);
    // Reading and decoding alone.
    let started = Instant::now();
    let mut next = Lsn(1);
    let mut read = 0u64;
    let mut encoded_bytes = 0u64;
    loop {
        let events = log
            .read_from(next, engine::RECOVERY_BATCH_EVENTS)
            .expect("reads");
        let Some(last) = events.last() else { break };
        next = last.lsn.next();
        read += events.len() as u64;
        // A sample, to report the encoded size without slowing the pass down much.
        if let Some(first) = events.first() {
            encoded_bytes += encoding::encode(first).expect("encodes").len() as u64;
        }
    }
    let decode = started.elapsed();
    let batches = read.div_ceil(engine::RECOVERY_BATCH_EVENTS as u64);
    println!(
        "replay: {read} events of ~{} B encoded; open without integrity check {}; read + \
         decode alone {} ({})",
        encoded_bytes / batches.max(1),
        secs(open_unchecked),
        secs(decode),
        rate(read, decode)
    );
    if args.sequential != Sequential::No {
        // The ledger's own sequential loop: read a batch, apply it, repeat.
        let started = Instant::now();
        let ledger = Ledger::new(config(), Arc::new(DiscardLog::default()));
        let replayed = ledger.replay_log(log.as_ref()).expect("replays");
        let sequential = started.elapsed();
        println!(
            "replay: Ledger::replay_log (sequential, batches of 4096) {} ({}), rss {}",
            secs(sequential),
            rate(replayed, sequential),
            mib(rss())
        );
        if args.sequential == Sequential::Only {
            std::process::exit(0);
        }
    }
    drop(log);

    let (log, open_checked) = open_log(dir, true);
    let started = Instant::now();
    let engine = Engine::recover(
        config(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        clock_at_end(args),
    )
    .expect("recovers");
    let recover = started.elapsed();
    println!(
        "replay: open with integrity check {}; Engine::recover (decode on a second thread) {} \
         ({}); open + recover {}, rss {}",
        secs(open_checked),
        secs(recover),
        rate(args.events, recover),
        secs(open_checked + recover),
        mib(rss())
    );
    if let Some(live) = live {
        assert_eq!(
            engine.ledger().digest(),
            live,
            "replay reproduces the ledger"
        );
        println!("replay: digest equals the live ledger's");
    }
    (engine, log)
}

/// The encoded size of each part of `checkpoint`.
fn part_sizes(checkpoint: &Checkpoint) -> Vec<(&'static str, usize, u64)> {
    let empty = Checkpoint {
        next_lsn: checkpoint.next_lsn,
        last_at_ms: checkpoint.last_at_ms,
        positions: Vec::new(),
        holds: Vec::new(),
        keys: Vec::new(),
        returns: Vec::new(),
        stores: Vec::new(),
        held_drifts: Vec::new(),
        history: checkpoint.history.clone(),
    };
    let size = |c: &Checkpoint| encoding::encode_checkpoint(c).expect("encodes").len() as u64;
    let base = size(&empty);
    vec![
        (
            "positions",
            checkpoint.positions.len(),
            size(&Checkpoint {
                positions: checkpoint.positions.clone(),
                ..empty.clone()
            }) - base,
        ),
        (
            "holds",
            checkpoint.holds.len(),
            size(&Checkpoint {
                holds: checkpoint.holds.clone(),
                ..empty.clone()
            }) - base,
        ),
        (
            "keys",
            checkpoint.keys.len(),
            size(&Checkpoint {
                keys: checkpoint.keys.clone(),
                ..empty.clone()
            }) - base,
        ),
    ]
}

/// Phase 3: write a checkpoint of the recovered ledger, the steps `Engine::checkpoint` takes
/// timed one by one, then `Engine::checkpoint` itself, then one more under load.
fn checkpoint(args: &Args, engine: &Engine, log: &RedbLog) {
    let now_ms = T0 + args.days * DAY_MS;
    let started = Instant::now();
    let purged = engine.ledger().purge(now_ms);
    let purge = started.elapsed();
    let started = Instant::now();
    let cut = engine.ledger().cut();
    let copied = started.elapsed();
    let locked = cut.locked_for();
    let started = Instant::now();
    let copy = cut.into_checkpoint(engine.ledger());
    let built = started.elapsed();
    let started = Instant::now();
    let bytes = encoding::encode_checkpoint(&copy).expect("encodes");
    let encoded = started.elapsed();
    println!(
        "checkpoint: purge of {purged} entries past retention {} (one shard lock at a time); \
         cut {} (buffers sized and faulted in first, then every lock held (writes blocked) \
         for {}); build after the locks {}; encode {}",
        secs(purge),
        secs(copied),
        millis(locked),
        secs(built),
        secs(encoded)
    );
    println!(
        "checkpoint: {} positions, {} holds, {} keys, {} returns, {} stores -> {}",
        copy.positions.len(),
        copy.holds.len(),
        copy.keys.len(),
        copy.returns.len(),
        copy.stores.len(),
        mib(bytes.len() as u64)
    );
    for (part, count, size) in part_sizes(&copy) {
        println!(
            "checkpoint:   {part}: {count} -> {} ({:.0} B each)",
            mib(size),
            size as f64 / count.max(1) as f64
        );
    }
    drop(bytes);
    drop(copy);
    let before = log.stats();
    let started = Instant::now();
    let next_lsn = engine.checkpoint().expect("checkpoint written");
    let total = started.elapsed();
    let after = log.stats();
    println!(
        "checkpoint: Engine::checkpoint at lsn {next_lsn}: {} in all; of which the writer, from \
         taking it to the switch (trim of {} events left to later commits) {} in {} commits, \
         the longest {}",
        secs(total),
        after.events_trimmed - before.events_trimmed,
        secs(Duration::from_nanos(
            after.checkpoint_ns - before.checkpoint_ns
        )),
        after.checkpoint_commits - before.checkpoint_commits,
        millis(Duration::from_nanos(after.checkpoint_commit_ns_max))
    );
    let policy = CheckpointPolicy::default();
    println!(
        "checkpoint: (the default policy writes one every {} events or {} s)",
        policy.every_events,
        policy.every_ms / 1_000
    );
}

/// A second checkpoint while a thread submits adjusts (each +1 then -1, so stock is unchanged)
/// and waits for each to be durable: how long writes wait because of a checkpoint.
/// Returns the ledger's digest after it, if `verify` (the submits changed it).
fn checkpoint_under_load(engine: &Engine, log: &RedbLog, verify: bool) -> Option<u64> {
    let started = Instant::now();
    let cut = engine.ledger().cut();
    let copied = started.elapsed();
    let locked = cut.locked_for();
    drop(cut);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let before = log.stats();
    let (total, (submits, longest)) = std::thread::scope(|scope| {
        let submitter = scope.spawn(|| {
            let mut longest = Duration::ZERO;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (sku, location) = position_name(n % 1_000);
                let started = Instant::now();
                submit(
                    engine,
                    adjust_with_reason(
                        &format!("load-{n}"),
                        &sku,
                        &location,
                        if n.is_multiple_of(2) { 1 } else { -1 },
                        "checkpoint under load",
                    ),
                );
                longest = longest.max(started.elapsed());
                n += 1;
            }
            (n, longest)
        });
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        engine.checkpoint().expect("checkpoint written");
        let total = started.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (total, submitter.join().expect("submitter"))
    });
    let after = log.stats();
    println!(
        "checkpoint under load: cut again {} (every lock held {}); \
         Engine::checkpoint {} with a submitter running: {submits} durable submits in all, the \
         slowest {}; the writer's {} checkpoint commits, the longest {}",
        millis(copied),
        millis(locked),
        secs(total),
        millis(longest),
        after.checkpoint_commits - before.checkpoint_commits,
        millis(Duration::from_nanos(after.checkpoint_commit_ns_max))
    );
    verify.then(|| engine.ledger().digest())
}

/// Phase 4: load the checkpoint.
fn load(args: &Args, dir: &Path, live: Option<u64>) {
    let (log, open_checked) = open_log(dir, true);
    let started = Instant::now();
    let checkpoint = log
        .latest_checkpoint()
        .expect("reads")
        .expect("a checkpoint");
    let read = started.elapsed();
    let started = Instant::now();
    let ledger = Ledger::from_checkpoint(
        config(),
        Arc::new(DiscardLog::default()) as Arc<dyn EventLog>,
        &checkpoint,
    )
    .expect("loads");
    let loaded = started.elapsed();
    drop(ledger);
    drop(checkpoint);
    println!(
        "load: open with integrity check {} (file {}); latest_checkpoint (read + checksum + \
         decode) {}; Ledger::from_checkpoint {} (includes check_invariants)",
        secs(open_checked),
        mib(file_size(dir)),
        secs(read),
        secs(loaded)
    );
    drop(log);
    let (log, open_checked) = open_log(dir, true);
    let started = Instant::now();
    let engine = Engine::recover(
        config(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        clock_at_end(args),
    )
    .expect("recovers");
    let recover = started.elapsed();
    println!(
        "load: open + Engine::recover from the checkpoint {} ({} + {}), rss {}",
        secs(open_checked + recover),
        secs(open_checked),
        secs(recover),
        mib(rss())
    );
    if let Some(live) = live {
        assert_eq!(
            engine.ledger().digest(),
            live,
            "checkpoint reproduces the ledger"
        );
        println!("load: digest equals the live ledger's");
    }
    close(engine, log);
}

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.reuse {
        let (engine, log) = full_replay(&args, dir, None);
        if !args.replay_only {
            checkpoint(&args, &engine, &log);
            checkpoint_under_load(&engine, &log, false);
            close(engine, log);
            load(&args, dir, None);
        }
        return;
    }
    let folder = tempfile::Builder::new()
        .prefix("inv-recovery-")
        .tempdir_in(&args.dir)
        .expect("temp folder");
    let dir = folder.path().to_owned();
    println!(
        "recovery: {} events over {} positions in {}",
        args.events,
        args.positions,
        dir.display()
    );
    let live = build(&args, &dir);
    let (engine, log) = full_replay(&args, &dir, live);
    if !args.replay_only {
        checkpoint(&args, &engine, &log);
        let live = checkpoint_under_load(&engine, &log, live.is_some());
        close(engine, log);
        load(&args, &dir, live);
    }
    if args.keep {
        let kept = folder.keep();
        println!("kept {}", kept.display());
    }
}
