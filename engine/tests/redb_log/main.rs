//! The durable log on real redb files in a temporary folder: what survives a close and a
//! reopen, how opening refuses files it must not trust, and what a failing or vanishing disk
//! leaves behind.
//!
//! Checkpoints: what a checkpoint trims, how recovery combines it with the log's tail, what a
//! reader of trimmed LSNs is told, and what a crash or a failed fsync around a checkpoint
//! leaves behind.
//!
//! Disk faults come from `FaultyFileBackend`, a real `FileBackend` behind a volatile write
//! cache: a failed sync or a power cut loses exactly the writes since the last successful sync,
//! and the file on disk is then what a restart would find. Reopening always goes through the
//! plain `RedbLog::open`, as a restarted process would.
//!
//! One test binary, one file per area.

#![cfg(feature = "redb")]

mod checkpoints;
mod folder;
mod log;

use inv_engine::checkpoint::{Checkpoint, CheckpointPosition};
use inv_engine::engine::CheckpointPolicy;
use inv_engine::log::redb::{
    CHECKPOINT, CHECKPOINT_CHUNK_BYTES, CHECKPOINT_CHUNKS_KEY, CHECKPOINT_GENERATION_KEY,
    CHECKPOINT_NEXT_LSN_KEY, CHECKPOINT_STAGE_CHUNKS_PER_COMMIT, Durability, EVENTS, FILE_NAME,
    FORMAT_VERSION_KEY, LOG_FORMAT_VERSION, MARKER_FILE_NAME, META, chunk_key,
};
use inv_engine::testing::commands::{
    adjust, commit, dispose, extend, record_return, release, reserve, return_line, sale,
    set_safety_stock,
};
use inv_engine::testing::faults::{FaultSwitch, FaultyFileBackend};
use inv_engine::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000;

/// A workload touching every command kind, so replay exercises every decoder and apply path.
fn mixed_workload() -> Vec<Command> {
    let mut commands = vec![
        adjust("a1", "sku-1", "dc-1", 100),
        adjust("a2", "sku-2", "dc-1", 50),
        set_safety_stock("ss1", "sku-1", "dc-1", 5),
    ];
    for i in 0..40 {
        commands.push(reserve(&format!("r{i}"), "sku-1", "dc-1", 2));
    }
    commands.push(reserve("too-big", "sku-2", "dc-1", 1_000));
    for i in 0..10 {
        commands.push(commit(&format!("r{i}")));
        commands.push(release(&format!("r{}", i + 10)));
        commands.push(extend(&format!("r{}", i + 20), "x1", 120_000));
    }
    for seq in 1..=5 {
        commands.push(sale(
            "store-1",
            &format!("t{seq}"),
            seq,
            T0,
            vec![Line::new("sku-2", "dc-1", 1)],
        ));
    }
    commands.push(record_return(
        "ret1",
        vec![return_line("sku-2", "dc-1", 3, ReturnDisposition::Inspect)],
    ));
    commands.push(dispose(
        "d1",
        "ret1",
        "sku-2",
        "dc-1",
        2,
        DispositionAction::Restock,
    ));
    commands
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

/// The ledger's config in these tests: no history window beyond the current second, so a
/// checkpoint trims everything it covers (the window has a test of its own).
fn config() -> LedgerConfig {
    LedgerConfig {
        history_ms: 0,
        ..LedgerConfig::default()
    }
}

fn engine_on(log: &Arc<RedbLog>, clock: &Arc<ManualClock>) -> Engine {
    let log: Arc<dyn EventLog> = Arc::clone(log) as Arc<dyn EventLog>;
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    Engine::recover(config(), log, clock).expect("recovers")
}

fn close(engine: Engine, log: Arc<RedbLog>) -> Result<(), LogError> {
    drop(engine);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
}

fn open(dir: &Path) -> Arc<RedbLog> {
    Arc::new(RedbLog::open(dir, RedbLogOptions::default()).expect("opens"))
}

fn open_faulty(dir: &Path, options: RedbLogOptions) -> (Arc<RedbLog>, FaultSwitch) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join(FILE_NAME);
    let (backend, switch) = FaultyFileBackend::open(&path).expect("file opens");
    let log = RedbLog::open_with_backend(&path, backend, options).expect("log opens");
    (Arc::new(log), switch)
}

/// Runs `commands` through an engine on a `MemLog` with the same clock: the ledger the
/// durable log must reproduce.
fn reference_digest(commands: &[Command]) -> u64 {
    let engine = Engine::recover(
        config(),
        Arc::new(MemLog::new()),
        Arc::new(ManualClock::new(T0)),
    )
    .expect("empty log");
    for command in commands {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    engine.ledger().digest()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The keys of the file's events table (each record's first LSN) and its meta rows, read with redb directly (the log
/// must be closed).
fn file_contents(dir: &Path) -> (Vec<u64>, Vec<(String, u64)>, u64) {
    let db = redb::Database::open(dir.join(FILE_NAME)).expect("redb opens");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let events = txn.open_table(EVENTS).expect("events");
    let lsns = redb::ReadableTable::range(&events, 0u64..)
        .expect("range")
        .map(|entry| entry.expect("entry").0.value())
        .collect();
    let meta = txn.open_table(META).expect("meta");
    let rows = redb::ReadableTable::range::<&str>(&meta, ..)
        .expect("range")
        .map(|entry| {
            let (key, value) = entry.expect("entry");
            (key.value().to_owned(), value.value())
        })
        .collect();
    let chunks = txn.open_table(CHECKPOINT).expect("chunks");
    let chunk_count = redb::ReadableTableMetadata::len(&chunks).expect("len");
    (lsns, rows, chunk_count)
}

fn meta_value(rows: &[(String, u64)], key: &str) -> Option<u64> {
    rows.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}
