//! Durable reserve throughput and acknowledgement latency through `Engine` over `RedbLog`.
//!
//! Each run opens a fresh log in a temporary folder, stocks 1024 positions with `Adjust`, then
//! lets N submitter threads send single-line reserves (each on its own reservation id, skus
//! spread over the shards) for a fixed time. A reserve counts when `Engine::submit` returns,
//! i.e. when its event is durable. Reported per run: throughput, ack latency percentiles,
//! the writer's batch sizes and where its time went, and process / writer CPU.
//!
//! Also measured: the disk's own fsync latency (4 KiB write + `sync_data`, 200 times), redb
//! alone with one record per event and one per batch, the CPU of one durable commit at 1 to
//! 256 events per commit in a file that has stopped growing (as a long-running server's does)
//! beside the disk's own sync, the engine on `DiscardLog` (no log at all: the ceiling of the
//! submitters themselves), `Durability::Async`, and pipelined `sync` runs where each submitter
//! keeps several reserves in flight (as a connection with many concurrent requests does)
//! instead of one.
//!
//! Run: `cargo run --release -p inv-engine --example log_throughput -- [--secs 3]
//! [--dir PATH] [--threads 1,2,16,64] [--inflight 4,8] [--runs sync:64,sync:64:8,async:2]
//! [--bounds 0]`. The folder defaults to the system temp dir; point it at the disk you mean to
//! measure.

/// What `--help` prints: the file's doc says what each run measures.
const USAGE: &str = include_str!("usage/log_throughput.txt");

// As in the `inventory` binary (see the workspace Cargo.toml for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hdrhistogram::Histogram;
use inv_engine::log::redb::{BATCH_SIZE_BUCKETS, Durability, LogStats};
use inv_engine::testing::commands::{adjust_with_reason, reserve_lines};
use inv_engine::*;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKUS: usize = 1024;
const LOCATION: &str = "dc-1";

struct Args {
    secs: f64,
    dir: PathBuf,
    threads: Vec<usize>,
    /// Reserves each submitter keeps in flight in the extra pipelined `sync` runs (made with
    /// the largest submitter count).
    inflight: Vec<usize>,
    /// Explicit runs (`kind:submitters[:in flight][:reopen]`, comma-separated) instead of the
    /// default set.
    runs: Option<Vec<String>>,
    /// Whether to measure the disk and redb alone first.
    bounds: bool,
    /// Leave transparent huge pages on (the server turns them off; see api/src/host.rs).
    thp: bool,
    /// Set in the child processes: the one run to make (`none`, `sync` or `async`, a colon,
    /// the submitter count, and `:reopen` to time a restart afterwards).
    child: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        secs: 3.0,
        dir: std::env::temp_dir(),
        threads: vec![1, 2, 16, 64],
        inflight: vec![4, 8],
        runs: None,
        bounds: true,
        thp: false,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => args.secs = value.parse().expect("--secs takes seconds"),
            "--dir" => args.dir = PathBuf::from(value),
            "--threads" => {
                args.threads = value
                    .split(',')
                    .map(|t| t.parse().expect("--threads takes a comma list"))
                    .collect();
            }
            "--inflight" => {
                args.inflight = value
                    .split(',')
                    .map(|t| t.parse().expect("--inflight takes a comma list"))
                    .collect();
            }
            "--runs" => args.runs = Some(value.split(',').map(str::to_owned).collect()),
            "--bounds" => args.bounds = value != "0" && value != "false",
            "--thp" => args.thp = value != "0" && value != "false",
            "--child" => args.child = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Process CPU time in seconds (user + system), from /proc; 0 where unavailable.
fn process_cpu_s() -> f64 {
    cpu_of("/proc/self/stat")
}

fn cpu_of(stat_path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Field 14 is index 11 after the state field (field 3 is index 0).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU seconds of the live thread named `name`.
fn thread_cpu_s(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return cpu_of(&task.path().join("stat").display().to_string());
        }
    }
    0.0
}

fn fsync_baseline(dir: &Path) {
    let path = dir.join(format!("fsync-probe-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("probe file");
    let block = vec![0xA5u8; 4096];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    for i in 0..220 {
        let started = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_data().expect("sync");
        if i >= 20 {
            histogram
                .record(started.elapsed().as_micros() as u64)
                .expect("in range");
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    println!(
        "disk: 4 KiB append + sync_data x200: median {} us, p99 {} us, max {} us",
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max()
    );
}

/// redb alone, no engine and no threads: back-to-back fsync commits of `batch` ~100-byte
/// events, through the same table and cursor the writer uses, stored two ways: one record per
/// event (log format 2) and one record per batch (format 3, cut at `RECORD_BYTES_TARGET`),
/// alternating so both see the same disk. With N submitters that each wait for their ack, no
/// batch can exceed N events, so this bounds durable throughput.
fn redb_bound(base: &Path) {
    use inv_engine::log::encoding::{finish_batch, push_framed};
    use inv_engine::log::redb::{EVENTS, RECORD_BYTES_TARGET};
    let event = vec![0x42u8; 100];
    for batch in [1u64, 16, 64, 256, 4096] {
        let rounds = if batch >= 4096 { 60 } else { 300 };
        let mut dbs = Vec::new();
        for layout in ["per event", "per batch"] {
            let dir = tempfile::tempdir_in(base).expect("tempdir");
            let db = redb::Database::create(dir.path().join("bound.redb")).expect("db");
            let histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
            dbs.push((layout, dir, db, histogram, 1u64));
        }
        let (mut framed, mut record) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for (layout, _dir, db, histogram, next) in &mut dbs {
                let started = Instant::now();
                let txn = db.begin_write().expect("begin");
                {
                    let mut table = txn.open_table(EVENTS).expect("table");
                    let mut cursor = table
                        .upper_bound_mut(std::ops::Bound::<u64>::Unbounded)
                        .expect("cursor");
                    if *layout == "per event" {
                        for _ in 0..batch {
                            cursor
                                .insert_before(*next, event.as_slice())
                                .expect("insert");
                            *next += 1;
                        }
                    } else {
                        let mut left = batch;
                        while left > 0 {
                            let first = *next;
                            framed.clear();
                            record.clear();
                            let mut count = 0;
                            while left > 0 && framed.len() < RECORD_BYTES_TARGET {
                                push_framed(&mut framed, &event);
                                count += 1;
                                left -= 1;
                            }
                            finish_batch(&mut record, count, &framed);
                            cursor
                                .insert_before(first, record.as_slice())
                                .expect("insert");
                            *next += count;
                        }
                    }
                    cursor.close().expect("close");
                }
                txn.commit().expect("commit");
                if round >= 10 {
                    histogram
                        .record(started.elapsed().as_micros() as u64)
                        .expect("in range");
                }
            }
        }
        for (layout, dir, _db, histogram, _) in &dbs {
            let median = histogram.value_at_quantile(0.5);
            let bytes = std::fs::metadata(dir.path().join("bound.redb")).map_or(0, |m| m.len());
            println!(
                "redb alone, one record {layout}: {batch:>4} events per fsync commit: median {median} us, p99 {} us -> {:.0} events/s; file {:.1} MiB",
                histogram.value_at_quantile(0.99),
                batch as f64 / (median.max(1) as f64 / 1e6),
                bytes as f64 / (1 << 20) as f64,
            );
        }
    }
}

/// This thread's CPU time (user + system) in microseconds, to the microsecond (`/proc`'s stat
/// counts in 10 ms ticks, too coarse for one commit).
fn thread_cpu_us() -> f64 {
    // SAFETY: getrusage writes only the struct it is given, which is plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// What one durable group commit costs in CPU, which is what a durable write's server CPU
/// pays beside its gRPC call: a commit's CPU divided by the events it carries. Measured as a
/// long-running server writes, in a file that has stopped growing: each commit adds one
/// record of `batch` ~100-byte events and deletes the record 256 commits back (as trimming
/// behind a checkpoint does), so redb reuses freed pages and no write lands in a new block.
/// Then once in a file still growing (no trim), as a fresh server's is. Beside it, the disk
/// alone: a 4 KiB overwrite and 8 scattered 4 KiB overwrites (about the pages one redb commit
/// writes), each with one `sync_data`.
fn commit_cpu(base: &Path) {
    use inv_engine::log::encoding::{finish_batch, push_framed};
    use inv_engine::log::redb::EVENTS;
    const WARM: u64 = 600;
    const ROUNDS: u64 = 1_000;
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let probe = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("overwrite-probe"))
        .expect("probe file");
    let page = vec![0xA5u8; 4096];
    for i in 0..64u64 {
        probe.write_all_at(&page, i * 4096).expect("write");
    }
    probe.sync_all().expect("sync");
    for pages in [1u64, 8] {
        let (cpu, started) = (thread_cpu_us(), Instant::now());
        for round in 0..ROUNDS {
            for k in 0..pages {
                // Spread over the file, as a B-tree's pages are.
                probe
                    .write_all_at(&page, ((round * 3 + k * 7) % 64) * 4096)
                    .expect("write");
            }
            probe.sync_data().expect("sync");
        }
        println!(
            "disk alone, {pages} x 4 KiB overwrite + sync_data: {:.1} us CPU, {:.0} us wall per sync",
            (thread_cpu_us() - cpu) / ROUNDS as f64,
            started.elapsed().as_secs_f64() * 1e6 / ROUNDS as f64,
        );
    }
    let event = vec![0x42u8; 100];
    // The steady file at each batch size, then one still growing (no trim), as a fresh
    // server's is: new blocks cost the sync their metadata.
    let runs = [
        (1u64, true),
        (20, true),
        (64, true),
        (256, true),
        (20, false),
    ];
    for (batch, trim) in runs {
        let file = if trim { "steady" } else { "growing" };
        let path = dir.path().join(format!("{file}-{batch}.redb"));
        let db = redb::Database::create(&path).expect("db");
        let file_kib = || std::fs::metadata(&path).map_or(0, |m| m.len() / 1024);
        let (mut framed, mut record) = (Vec::new(), Vec::new());
        for _ in 0..batch {
            push_framed(&mut framed, &event);
        }
        finish_batch(&mut record, batch, &framed);
        let (mut cpu, mut started, mut kib_before) = (0.0, Instant::now(), 0);
        for round in 0..WARM + ROUNDS {
            if round == WARM {
                (cpu, started, kib_before) = (thread_cpu_us(), Instant::now(), file_kib());
            }
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(EVENTS).expect("table");
                table
                    .insert(round * batch + 1, record.as_slice())
                    .expect("insert");
                if let Some(old) = round.checked_sub(256).filter(|_| trim) {
                    table.remove(old * batch + 1).expect("trim");
                }
            }
            txn.commit().expect("commit");
        }
        let per_commit = (thread_cpu_us() - cpu) / ROUNDS as f64;
        println!(
            "redb durable commit, {file} file, {batch:>3} events per commit: {per_commit:.1} us CPU, {:.0} us wall per commit -> {:.2} us CPU per event; file {kib_before} -> {} KiB",
            started.elapsed().as_secs_f64() * 1e6 / ROUNDS as f64,
            per_commit / batch as f64,
            file_kib(),
        );
    }
}

fn reserve_command(reservation_id: &str, sku: usize) -> Command {
    let line = Line::new(&format!("sku-{sku}"), LOCATION, 1);
    reserve_lines(reservation_id, vec![line], 600_000)
}

enum LogKind {
    Redb(Durability),
    Discard,
}

struct RunResult {
    ops: u64,
    /// Submits refused with `SubmitError::Busy` (retried after a short sleep).
    refused_full: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    stats: Option<LogStats>,
    cpu_s: f64,
    writer_cpu_s: f64,
}

type WorkerResult = (u64, u64, Histogram<u64>);

/// One reserve at a time: submit, wait for its ack, repeat (`Engine::submit`).
fn closed_loop(engine: &Engine, t: usize, deadline: Instant) -> WorkerResult {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut ops = 0u64;
    let mut refused_busy = 0u64;
    let mut i = 0u64;
    while Instant::now() < deadline {
        let sku = (t * 7_919 + i as usize * 13) % SKUS;
        let reservation_id = format!("t{t}-{i}");
        i += 1;
        let sent = Instant::now();
        // Retried as it is on Busy until accepted (or the time is up).
        loop {
            match engine.submit(reserve_command(&reservation_id, sku)) {
                Ok(Ok(receipt)) => {
                    assert!(receipt.outcome.is_success(), "{:?}", receipt.outcome);
                    ops += 1;
                    latency
                        .record(sent.elapsed().as_micros() as u64)
                        .expect("in range");
                    break;
                }
                // The write queue is full: nothing was applied. Back off as a client should:
                // spinning would take CPU from the writer that is draining the queue.
                Err(SubmitError::Busy { .. }) => {
                    refused_busy += 1;
                    if Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(Err(refusal)) => panic!("submit refused: {refusal}"),
                Err(error) => panic!("submit failed: {error}"),
            }
        }
    }
    (ops, refused_busy, latency)
}

/// `inflight` reserves outstanding at a time, as a connection with many concurrent requests
/// behaves: `Engine::submit`'s steps (admit, ledger submit, wait for durability) with the
/// waits deferred, oldest first. An ack is timed from its submit to the moment its wait
/// returns (or, for the later ones, to when they are seen durable after it).
fn pipelined(engine: &Engine, t: usize, deadline: Instant, inflight: usize) -> WorkerResult {
    let log = engine.ledger().log();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut ops = 0u64;
    let mut refused_busy = 0u64;
    let mut i = 0u64;
    let mut pending: VecDeque<(Lsn, Instant)> = VecDeque::with_capacity(inflight);
    while Instant::now() < deadline || !pending.is_empty() {
        while pending.len() < inflight && Instant::now() < deadline {
            match log.admit() {
                Ok(()) => {}
                Err(LogError::Full { .. }) => {
                    refused_busy += 1;
                    if !pending.is_empty() {
                        // Waiting for our own oldest is the back-off.
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(error) => panic!("admit failed: {error}"),
            }
            let sku = (t * 7_919 + i as usize * 13) % SKUS;
            let command = reserve_command(&format!("t{t}-{i}"), sku);
            i += 1;
            let sent = Instant::now();
            let receipt = engine
                .ledger()
                .submit(command, engine.now_ms())
                .expect("submit")
                .expect("not refused");
            assert!(receipt.outcome.is_success(), "{:?}", receipt.outcome);
            pending.push_back((receipt.lsn, sent));
        }
        let Some((lsn, sent)) = pending.pop_front() else {
            continue;
        };
        log.wait_durable(lsn).expect("durable");
        let now = Instant::now();
        latency
            .record((now - sent).as_micros() as u64)
            .expect("in range");
        ops += 1;
        let durable = log.durable_lsn();
        while let Some(&(lsn, sent)) = pending.front()
            && lsn <= durable
        {
            pending.pop_front();
            latency
                .record((now - sent).as_micros() as u64)
                .expect("in range");
            ops += 1;
        }
    }
    (ops, refused_busy, latency)
}

fn run(
    kind: &LogKind,
    threads: usize,
    inflight: usize,
    secs: f64,
    base: &Path,
) -> (RunResult, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let redb_log = match kind {
        LogKind::Redb(durability) => Some(Arc::new(
            RedbLog::open(
                dir.path(),
                RedbLogOptions {
                    durability: *durability,
                    ..RedbLogOptions::default()
                },
            )
            .expect("log opens"),
        )),
        LogKind::Discard => None,
    };
    let log: Arc<dyn EventLog> = match &redb_log {
        Some(log) => Arc::clone(log) as Arc<dyn EventLog>,
        None => Arc::new(DiscardLog::default()),
    };
    let engine = Arc::new(
        Engine::recover(LedgerConfig::default(), log, Arc::new(SystemClock)).expect("empty"),
    );
    for s in 0..SKUS {
        engine
            .submit(adjust_with_reason(
                &format!("stock-{s}"),
                &format!("sku-{s}"),
                LOCATION,
                1_000_000_000,
                "benchmark stock",
            ))
            .expect("stocked")
            .expect("not refused");
    }
    let stats_before = redb_log.as_ref().map(|l| l.stats());

    let cpu_before = process_cpu_s();
    let writer_before = thread_cpu_s("inv-log-writer");
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                if inflight <= 1 {
                    closed_loop(&engine, t, deadline)
                } else {
                    pipelined(&engine, t, deadline, inflight)
                }
            })
        })
        .collect();
    let mut ops = 0;
    let mut refused_full = 0;
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for worker in workers {
        let (n, full, h) = worker.join().expect("worker");
        ops += n;
        refused_full += full;
        latency_us.add(&h).expect("same bounds");
    }
    let elapsed = started.elapsed();
    let cpu_s = process_cpu_s() - cpu_before;
    let writer_cpu_s = thread_cpu_s("inv-log-writer") - writer_before;
    let stats = redb_log.as_ref().map(|l| {
        let after = l.stats();
        let before = stats_before.unwrap_or_default();
        let mut delta = after.clone();
        delta.batches -= before.batches;
        delta.events -= before.events;
        delta.fsync_commits -= before.fsync_commits;
        delta.insert_ns -= before.insert_ns;
        delta.commit_ns -= before.commit_ns;
        for i in 0..BATCH_SIZE_BUCKETS {
            delta.batch_sizes[i] -= before.batch_sizes[i];
        }
        delta
    });
    drop(engine);
    if let Some(log) = redb_log {
        Arc::into_inner(log)
            .expect("engine dropped")
            .close()
            .expect("clean close");
    }
    (
        RunResult {
            ops,
            refused_full,
            elapsed,
            latency_us,
            stats,
            cpu_s,
            writer_cpu_s,
        },
        dir,
    )
}

/// Reopens a log a run left behind and replays it: what a restart costs today (no checkpoints).
fn reopen(dir: &Path) {
    for check_integrity_on_open in [true, false] {
        let started = Instant::now();
        let log = RedbLog::open(
            dir,
            RedbLogOptions {
                check_integrity_on_open,
                ..RedbLogOptions::default()
            },
        )
        .expect("reopens");
        let opened = started.elapsed();
        let events = log.durable_lsn().0;
        let log: Arc<dyn EventLog> = Arc::new(log);
        let engine =
            Engine::recover(LedgerConfig::default(), log, Arc::new(SystemClock)).expect("replays");
        let recovered = started.elapsed();
        let bytes =
            std::fs::metadata(dir.join(inv_engine::log::redb::FILE_NAME)).map_or(0, |m| m.len());
        println!(
            "restart (integrity check {}): {events} events, {:.1} MiB file: open {:.0} ms, open + replay {:.0} ms ({:.0} events/s)",
            if check_integrity_on_open { "on" } else { "off" },
            bytes as f64 / (1 << 20) as f64,
            opened.as_secs_f64() * 1e3,
            recovered.as_secs_f64() * 1e3,
            events as f64 / recovered.as_secs_f64(),
        );
        drop(engine);
    }
}

fn report(label: &str, threads: usize, r: &RunResult) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{label:<14} {threads:>3} submitters: {:>9.0} reserves/s ({} in {secs:.2} s); ack p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        r.ops as f64 / secs,
        r.ops,
        r.latency_us.value_at_quantile(0.5),
        r.latency_us.value_at_quantile(0.99),
        r.latency_us.value_at_quantile(0.999),
        r.latency_us.max(),
    );
    println!(
        "{:<14}      cpu: process {:.2} core-s of {:.2} available; log writer thread {:.2} core-s; {} submits refused Busy",
        "",
        r.cpu_s,
        secs * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        r.writer_cpu_s,
        r.refused_full
    );
    if let Some(stats) = &r.stats
        && stats.batches > 0
    {
        let mean = stats.events as f64 / stats.batches as f64;
        println!(
            "{:<14}      writer: {} batches, mean {:.1} events, largest {}, {} fsync commits; per batch: insert {:.0} us, commit {:.0} us; busy {:.0}% of wall time",
            "",
            stats.batches,
            mean,
            stats.batch_events_largest,
            stats.fsync_commits,
            stats.insert_ns as f64 / stats.batches as f64 / 1e3,
            stats.commit_ns as f64 / stats.batches as f64 / 1e3,
            (stats.insert_ns + stats.commit_ns) as f64 / 1e9 / secs * 100.0,
        );
        let buckets: Vec<String> = stats
            .batch_sizes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let (low, high) = LogStats::bucket_bounds(i);
                if high == u64::MAX {
                    format!("{low}+: {n}")
                } else {
                    format!("{low}-{high}: {n}")
                }
            })
            .collect();
        println!("{:<14}      batch sizes: {}", "", buckets.join(", "));
    }
}

/// Makes one run (in a child process) and prints its report.
fn child(spec: &str, args: &Args) {
    let mut parts = spec.split(':');
    let kind = parts.next().expect("kind");
    let threads: usize = parts
        .next()
        .and_then(|t| t.parse().ok())
        .expect("submitter count");
    let mut inflight = 1;
    let mut reopen_after = false;
    for part in parts {
        match part {
            "reopen" => reopen_after = true,
            k => inflight = k.parse().expect("in flight per submitter"),
        }
    }
    let (label, kind) = match kind {
        "none" => ("no log", LogKind::Discard),
        "sync" => ("durable sync", LogKind::Redb(Durability::Sync)),
        "async" => (
            "async 10ms",
            LogKind::Redb(Durability::Async {
                flush_interval_ms: 10,
            }),
        ),
        other => panic!("unknown run kind {other}"),
    };
    let (result, dir) = run(&kind, threads, inflight, args.secs, &args.dir);
    let label = if inflight > 1 {
        format!("{label} x{inflight}")
    } else {
        label.to_owned()
    };
    report(&label, threads, &result);
    if reopen_after {
        reopen(dir.path());
    }
}

fn main() {
    let args = parse_args();
    // As the server does: zeroing a fresh 2 MiB page stalls the touching thread (the writer
    // too) for ~5 ms in a VM. Children inherit the setting.
    #[cfg(target_os = "linux")]
    if !args.thp {
        // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    std::fs::create_dir_all(&args.dir).expect("bench folder");
    if let Some(spec) = &args.child {
        child(spec, &args);
        return;
    }
    println!(
        "log_throughput: {} cores, folder {}, {} s per run",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.dir.display(),
        args.secs
    );
    // Other work on the machine skews every figure below; say how much there was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    if args.bounds {
        fsync_baseline(&args.dir);
        redb_bound(&args.dir);
        commit_cpu(&args.dir);
    }
    // Each run in its own process: a run leaves millions of holds behind in the allocator,
    // and freeing them measurably slowed the fsyncs of the next run in the same process.
    let largest = args.threads.iter().copied().max().unwrap_or(1);
    let mut specs = Vec::new();
    for kind in ["none", "sync", "async"] {
        for &threads in &args.threads {
            let reopen = if kind == "sync" && threads == largest {
                ":reopen"
            } else {
                ""
            };
            specs.push(format!("{kind}:{threads}{reopen}"));
            if kind == "sync" && threads == largest {
                for k in &args.inflight {
                    specs.push(format!("sync:{threads}:{k}"));
                }
            }
        }
    }
    if let Some(runs) = &args.runs {
        specs = runs.clone();
    }
    let exe = std::env::current_exe().expect("own path");
    for spec in specs {
        let status = std::process::Command::new(&exe)
            .args(["--child", &spec, "--secs", &args.secs.to_string()])
            .args(["--thp", if args.thp { "1" } else { "0" }])
            .arg("--dir")
            .arg(&args.dir)
            .status()
            .expect("child runs");
        assert!(status.success(), "run {spec} failed: {status}");
    }
}
