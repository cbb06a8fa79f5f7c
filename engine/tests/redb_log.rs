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
#![cfg(feature = "redb")]

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

#[test]
fn events_survive_close_and_reopen_and_recovery_reproduces_the_ledger() {
    // Goal: a reopened log replays to the same ledger. Method: run every command kind through
    // an engine on a RedbLog, close, reopen the folder, recover, and compare digests with the
    // live ledger and with a ledger built on a MemLog.
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let clock = clock();
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    for command in &commands {
        let receipt = engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
        assert!(log.durable_lsn() >= receipt.lsn);
    }
    engine.ledger().check_invariants().expect("invariants");
    let live = engine.ledger().digest();
    assert_eq!(live, reference_digest(&commands));
    let last = log.durable_lsn();
    assert_eq!(last, Lsn(commands.len() as u64));
    close(engine, log).expect("clean close");

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), last);
    let engine = engine_on(&log, &clock);
    assert_eq!(engine.ledger().digest(), live);
    engine.ledger().check_invariants().expect("invariants");

    // The reopened log keeps going from the next LSN, and a retry of an old command is
    // answered from the replayed idempotency index.
    let receipt = engine
        .submit(reserve("after-reopen", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(receipt.lsn, last.next());
    let retry = engine
        .submit(commands[3].clone())
        .expect("retry")
        .expect("not refused");
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, Lsn(4));
    close(engine, log).expect("clean close");

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), last.next());
    let events = log.read_from(Lsn(1), usize::MAX).expect("reads");
    assert_eq!(events.len() as u64, last.next().0);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.lsn, Lsn(i as u64 + 1));
    }
}

#[test]
fn read_from_pages_through_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    engine
        .submit(adjust("a", "sku-1", "dc-1", 1_000))
        .expect("accepted")
        .expect("not refused");
    for i in 0..99 {
        engine
            .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
    }
    let page = log.read_from(Lsn(10), 7).expect("reads");
    let lsns: Vec<u64> = page.iter().map(|e| e.lsn.0).collect();
    assert_eq!(lsns, (10..17).collect::<Vec<_>>());
    assert_eq!(log.read_from(Lsn(0), 2).expect("reads")[0].lsn, Lsn(1));
    assert_eq!(log.read_from(Lsn(98), 10).expect("reads").len(), 3);
    assert!(log.read_from(Lsn(101), 10).expect("reads").is_empty());
    assert!(log.read_from(Lsn(5), 0).expect("reads").is_empty());
}

#[test]
fn durable_lsn_advances_with_every_acknowledged_submit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(0));
    let engine = engine_on(&log, &clock());
    engine
        .submit(adjust("a", "sku-1", "dc-1", 10))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(log.durable_lsn(), Lsn(1));
    for i in 0..5 {
        let receipt = engine
            .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
        assert_eq!(receipt.lsn, Lsn(i + 2));
        assert!(log.durable_lsn() >= receipt.lsn);
    }
    let stats = log.stats();
    assert_eq!(stats.events, 6);
    assert_eq!(stats.fsync_commits, stats.batches);
    assert_eq!(stats.batch_sizes.iter().sum::<u64>(), stats.batches);
}

#[test]
fn concurrent_submitters_share_commits() {
    // Goal: group commit under concurrency keeps the log gap-free and acknowledges every
    // submitter. Method: 8 threads each submit 200 reserves; then the log must hold exactly
    // the 1601 events in order, and replay must match the live ledger.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let engine = Arc::new(engine_on(&log, &clock()));
    engine
        .submit(adjust("a", "sku-1", "dc-1", 1_000_000))
        .expect("accepted")
        .expect("not refused");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let receipt = engine
                        .submit(reserve(&format!("t{t}-{i}"), "sku-1", "dc-1", 1))
                        .expect("accepted")
                        .expect("not refused");
                    assert!(log.durable_lsn() >= receipt.lsn);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("submitter");
    }
    let live = engine.ledger().digest();
    let stats = log.stats();
    assert_eq!(stats.events, 1_601);
    let engine = Arc::into_inner(engine).expect("threads done");
    close(engine, log).expect("clean close");

    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
}

#[test]
fn a_second_open_of_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = RedbLog::open(dir.path(), RedbLogOptions::default()).expect("opens");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("in use");
    assert!(matches!(error, OpenError::InUse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("data folder in use by another process"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{message}"
    );
    // Once the first closes, the folder opens again.
    first.close().expect("clean close");
    RedbLog::open(dir.path(), RedbLogOptions::default())
        .expect("opens after close")
        .close()
        .expect("clean close");
}

#[test]
fn a_file_from_a_newer_format_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        engine
            .submit(adjust("a", "sku-1", "dc-1", 10))
            .expect("accepted")
            .expect("not refused");
        close(engine, log).expect("clean close");
    }
    {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert(FORMAT_VERSION_KEY, LOG_FORMAT_VERSION + 1)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::NewerFormat { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("format version {}", LOG_FORMAT_VERSION + 1)),
        "{message}"
    );

    // Nothing was changed: the version and the event are still there.
    let db = redb::Database::open(&path).expect("redb opens");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let meta = txn.open_table(META).expect("meta");
    let version = redb::ReadableTable::get(&meta, FORMAT_VERSION_KEY)
        .expect("get")
        .expect("present")
        .value();
    assert_eq!(version, LOG_FORMAT_VERSION + 1);
    let events = txn.open_table(EVENTS).expect("events");
    assert_eq!(redb::ReadableTableMetadata::len(&events).expect("len"), 1);
}

#[test]
fn a_file_of_an_older_format_is_refused_and_left_alone() {
    // Goal: a file written by an earlier development build is refused, never converted or
    // half-read, with a message saying what it is and what to do. Method: write a file with
    // events, set its format version to each older one, and open it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        engine
            .submit(adjust("a", "sku-1", "dc-1", 10))
            .expect("accepted")
            .expect("not refused");
        close(engine, log).expect("clean close");
    }
    let set_version = |version: u64| {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut meta = txn.open_table(META).expect("meta");
            meta.insert(FORMAT_VERSION_KEY, version).expect("insert");
        }
        txn.commit().expect("commit");
    };
    for version in 1..LOG_FORMAT_VERSION {
        set_version(version);
        let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
        assert!(
            matches!(
                error,
                OpenError::OlderFormat { found, supported, .. }
                    if found == version && supported == LOG_FORMAT_VERSION
            ),
            "{error:?}"
        );
        let message = error.to_string();
        for part in [
            path.display().to_string(),
            format!("format version {version}"),
            format!("reads only version {LOG_FORMAT_VERSION}"),
            "earlier development build".to_owned(),
            format!("move the data folder {} away", dir.path().display()),
        ] {
            assert!(message.contains(&part), "{part:?} missing from: {message}");
        }
        // Nothing was changed: the version and the event are still there.
        let (lsns, meta, _) = file_contents(dir.path());
        assert_eq!(lsns, vec![1]);
        assert_eq!(meta_value(&meta, FORMAT_VERSION_KEY), Some(version));
    }
    // Back at this build's version, the same file opens.
    set_version(LOG_FORMAT_VERSION);
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(1));
}

#[test]
fn a_garbage_file_is_refused_naming_it() {
    // Goal: a damaged file never opens as an empty log. Method: fill ledger.redb with bytes
    // that are not a redb database (and, separately, damage a valid one past its header).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, vec![0x5Au8; 64 * 1024]).expect("write garbage");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("corrupt"), "{message}");
    // The garbage is still there for inspection.
    assert_eq!(std::fs::read(&path).expect("read"), vec![0x5Au8; 64 * 1024]);
}

#[test]
fn a_valid_file_damaged_inside_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        engine
            .submit(adjust("a", "sku-1", "dc-1", 1_000))
            .expect("accepted")
            .expect("not refused");
        for i in 0..500 {
            engine
                .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
                .expect("accepted")
                .expect("not refused");
        }
        close(engine, log).expect("clean close");
    }
    // Overwrite everything after the first 8 KiB (the header region) with garbage.
    let mut bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 16 * 1024, "file is {} bytes", bytes.len());
    for byte in &mut bytes[8 * 1024..] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
}

#[test]
fn an_undecodable_event_stops_recovery_naming_its_lsn() {
    // Open reads only the first and last records; recovery reads every one. Method: damage
    // the middle record (recovery refuses it), then the last one (open refuses it).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for id in ["a", "b", "c"] {
            engine
                .submit(adjust(id, "sku-1", "dc-1", 10))
                .expect("accepted")
                .expect("not refused");
        }
        close(engine, log).expect("clean close");
    }
    let damage = |key: u64| {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut events = txn.open_table(EVENTS).expect("events");
            events
                .insert(key, [9u8, 1, 2, 3].as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    };
    damage(2);
    let log = open(dir.path());
    let Err(error) = Engine::recover(config(), log, clock()) else {
        panic!("recovery must refuse the damaged event");
    };
    let message = error.to_string();
    assert!(message.contains("lsn 2"), "{message}");
    assert!(message.contains("version 9"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");

    damage(3);
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("lsn 3"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_missing_record_in_the_middle_stops_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for i in 0..5 {
            engine
                .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 10))
                .expect("accepted")
                .expect("not refused");
        }
        close(engine, log).expect("clean close");
    }
    {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        txn.open_table(EVENTS)
            .expect("events")
            .remove(3u64)
            .expect("remove");
        txn.commit().expect("commit");
    }
    let log = open(dir.path());
    assert!(matches!(
        log.read_from(Lsn(1), 10),
        Err(LogError::Corrupt(m)) if m.contains("expected lsn 3, found 4")
    ));
    assert!(matches!(
        log.read_from(Lsn(3), 10),
        Err(LogError::Corrupt(m)) if m.contains("expected lsn 3, found 4")
    ));
    let Err(error) = Engine::recover(config(), log, clock()) else {
        panic!("recovery must refuse the gap");
    };
    assert!(error.to_string().contains("gap"), "{error}");
}

#[test]
fn a_failed_sync_fail_stops_and_only_acknowledged_events_survive() {
    // Goal: after an fsync failure the log never claims durability it does not have, refuses
    // further work, and the file holds exactly what was acknowledged. Method: acknowledge 20
    // commands, make the next sync fail (losing its unsynced writes, as Linux may), submit
    // once more (refused), then reopen with a plain backend and compare with a reference
    // ledger built from the acknowledged commands only.
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, switch) = open_faulty(dir.path(), RedbLogOptions::default());
    let engine = engine_on(&log, &clock());
    let mut acknowledged = vec![adjust("a", "sku-1", "dc-1", 100)];
    for i in 0..19 {
        acknowledged.push(reserve(&format!("r{i}"), "sku-1", "dc-1", 1));
    }
    for command in &acknowledged {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    assert_eq!(log.durable_lsn(), Lsn(20));

    switch.fail_next_sync();
    let error = engine
        .submit(reserve("lost", "sku-1", "dc-1", 1))
        .expect_err("the sync fails");
    assert!(
        matches!(error, SubmitError::Log(LogError::Io(ref m)) if m.contains("injected fault")),
        "{error:?}"
    );
    assert_eq!(
        log.durable_lsn(),
        Lsn(20),
        "the failed batch is not durable"
    );
    assert!(log.failure().is_some());
    assert!(matches!(log.admit(), Err(LogError::Io(_))));
    assert!(matches!(log.wait_durable(Lsn(21)), Err(LogError::Io(_))));
    assert_eq!(log.wait_durable(Lsn(20)), Ok(()), "durable stays durable");
    // Later commands are refused before anything is decided.
    let next_lsn = engine.ledger().next_lsn();
    let error = engine
        .submit(reserve("after", "sku-1", "dc-1", 1))
        .expect_err("fail-stopped");
    assert!(
        matches!(error, SubmitError::Log(LogError::Io(_))),
        "{error:?}"
    );
    assert_eq!(engine.ledger().next_lsn(), next_lsn);
    assert!(matches!(
        close(engine, log),
        Err(LogError::Io(m)) if m.contains("injected fault")
    ));

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(20));
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), reference_digest(&acknowledged));
}

#[test]
fn acknowledged_events_survive_a_power_cut() {
    // Sync mode: whatever was acknowledged before the power went is in the file afterwards.
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, switch) = open_faulty(dir.path(), RedbLogOptions::default());
    let engine = engine_on(&log, &clock());
    let mut acknowledged = vec![adjust("a", "sku-1", "dc-1", 100)];
    for i in 0..30 {
        acknowledged.push(reserve(&format!("r{i}"), "sku-1", "dc-1", 1));
    }
    for command in &acknowledged {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    switch.power_cut();
    drop(engine);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(31));
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), reference_digest(&acknowledged));
}

#[test]
fn async_mode_roundtrips_and_flushes_within_the_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RedbLogOptions {
        durability: Durability::Async {
            flush_interval_ms: 20,
        },
        ..RedbLogOptions::default()
    };
    let commands = mixed_workload();
    let log = Arc::new(RedbLog::open(dir.path(), options).expect("opens"));
    let engine = engine_on(&log, &clock());
    for command in &commands {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let last = Lsn(commands.len() as u64);
    // Acknowledged at once; durable within the flush interval even with no further traffic.
    wait_until("the flush covers every event", || log.durable_lsn() == last);
    assert!(log.stats().fsync_commits >= 1);
    let live = engine.ledger().digest();
    close(engine, log).expect("clean close");

    let log = Arc::new(RedbLog::open(dir.path(), options).expect("reopens"));
    assert_eq!(log.durable_lsn(), last);
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
    assert_eq!(live, reference_digest(&commands));
}

#[test]
fn async_mode_loses_at_most_the_unflushed_window_on_a_power_cut() {
    // Goal: the documented trade of Async mode, no more. Method: with a flush interval far
    // longer than the test, acknowledge commands (committed without fsync), cut the power,
    // and check that the file holds exactly the prefix an fsync had covered: the events up
    // to the first flush (at open) and nothing after.
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RedbLogOptions {
        durability: Durability::Async {
            flush_interval_ms: 600_000,
        },
        ..RedbLogOptions::default()
    };
    let (log, switch) = open_faulty(dir.path(), options);
    let engine = engine_on(&log, &clock());
    for i in 0..10 {
        engine
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("acknowledged")
            .expect("not refused");
    }
    wait_until("the writer commits every batch", || {
        log.stats().events == 10
    });
    assert_eq!(log.durable_lsn(), Lsn(0), "nothing was fsynced");
    // Readable before it is durable.
    assert_eq!(log.read_from(Lsn(1), 100).expect("reads").len(), 10);
    switch.power_cut();
    drop(engine);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(0));
    assert!(log.read_from(Lsn(1), 100).expect("reads").is_empty());
}

#[test]
fn a_full_queue_refuses_commands_untouched() {
    // Goal: back-pressure. Method: stall the disk so the writer sits in its first fsync,
    // append until the queue limit, and check admit refuses and the engine decides nothing;
    // then release the disk and check everything drains and is acknowledged.
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RedbLogOptions {
        queue_events_max: 4,
        ..RedbLogOptions::default()
    };
    let (log, switch) = open_faulty(dir.path(), options);
    let engine = Arc::new(engine_on(&log, &clock()));
    switch.hold_syncs();
    let first = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || engine.submit(adjust("a", "sku-1", "dc-1", 100)))
    };
    wait_until("the writer blocks in its fsync", || {
        switch.blocked_syncs() == 1
    });
    // Three more fit in the queue (one batch in flight + three queued = 4 = the limit).
    let queued: Vec<_> = (0..3)
        .map(|i| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || engine.submit(reserve(&format!("q{i}"), "sku-1", "dc-1", 1)))
        })
        .collect();
    wait_until("the queue is full", || engine.ledger().next_lsn() == Lsn(5));
    let before = engine.ledger().next_lsn();
    let error = engine
        .submit(reserve("refused", "sku-1", "dc-1", 1))
        .expect_err("queue full");
    assert_eq!(error, SubmitError::Busy { capacity: 4 });
    assert_eq!(engine.ledger().next_lsn(), before, "nothing was decided");
    assert!(engine.reservation("refused").is_none());

    switch.release_syncs();
    first
        .join()
        .expect("thread")
        .expect("acknowledged")
        .expect("not refused");
    for thread in queued {
        thread
            .join()
            .expect("thread")
            .expect("acknowledged")
            .expect("not refused");
    }
    assert_eq!(log.durable_lsn(), Lsn(4));
    assert_eq!(log.admit(), Ok(()));
    engine
        .submit(reserve("refused", "sku-1", "dc-1", 1))
        .expect("accepted once drained")
        .expect("not refused");
}

#[test]
fn appends_out_of_order_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = RedbLog::open(dir.path(), RedbLogOptions::default()).expect("opens");
    let event = |lsn: u64| {
        Arc::new(Event {
            lsn: Lsn(lsn),
            at_ms: T0,
            fact: Fact::decided(adjust("a", "sku-1", "dc-1", 1), Outcome::Recorded)
                .expect("an adjustment is recorded"),
        })
    };
    assert_eq!(
        log.append(&event(2)),
        Err(LogError::OutOfOrder {
            expected: Lsn(1),
            got: Lsn(2)
        })
    );
    log.append(&event(1)).expect("in order");
    assert!(matches!(
        log.append(&event(1)),
        Err(LogError::OutOfOrder { .. })
    ));
    log.wait_durable(Lsn(1)).expect("durable");
    assert!(log.wait_durable(Lsn(2)).is_err(), "never appended");
    log.close().expect("clean close");
}

#[test]
fn invalid_options_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = RedbLog::open(
        dir.path(),
        RedbLogOptions {
            batch_events_max: 0,
            ..RedbLogOptions::default()
        },
    )
    .expect_err("refused");
    assert!(matches!(error, OpenError::Options { .. }), "{error:?}");
    assert!(error.to_string().contains(FILE_NAME), "{error}");
}

// ---- Checkpoints ----------------------------------------------------------------------------

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

#[test]
fn a_checkpoint_trims_the_log_and_recovery_uses_it_plus_the_tail() {
    // Goal: checkpoint + tail recovers exactly the ledger a full replay builds, and the file
    // keeps only the tail. Method: run the mixed workload with a checkpoint in the middle,
    // close, look at the file with redb, reopen, recover, and compare with a ledger built on a
    // MemLog from the same commands; then check reads below the checkpoint are refused and
    // keys from before it still dedupe.
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let (before, after) = commands.split_at(40);
    let clock = clock();
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    for command in before {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let checkpoint_lsn = engine.checkpoint().expect("checkpoint written");
    assert_eq!(checkpoint_lsn, Lsn(41));
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(41)));
    let stats = log.stats();
    assert_eq!(stats.checkpoints, 1);
    assert_eq!(stats.events_trimmed, 40);
    assert!(stats.checkpoint_bytes_last > 0);
    for command in after {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let live = engine.ledger().digest();
    assert_eq!(live, reference_digest(&commands));
    let last = Lsn(commands.len() as u64);
    // Reads below the checkpoint are refused, naming the first LSN kept.
    assert_eq!(
        log.read_from(Lsn(1), 10),
        Err(LogError::Trimmed {
            first_retained: Lsn(41)
        })
    );
    assert_eq!(
        log.read_from(Lsn(40), 10),
        Err(LogError::Trimmed {
            first_retained: Lsn(41)
        })
    );
    assert_eq!(log.read_from(Lsn(41), 1).expect("reads")[0].lsn, Lsn(41));
    close(engine, log).expect("clean close");

    let (lsns, meta, chunks) = file_contents(dir.path());
    assert_eq!(lsns, (41..=last.0).collect::<Vec<_>>());
    assert_eq!(meta_value(&meta, CHECKPOINT_NEXT_LSN_KEY), Some(41));
    assert_eq!(meta_value(&meta, CHECKPOINT_CHUNKS_KEY), Some(chunks));
    assert_eq!(
        meta_value(&meta, FORMAT_VERSION_KEY),
        Some(LOG_FORMAT_VERSION)
    );

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), last);
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(41)));
    let stored = log
        .latest_checkpoint()
        .expect("reads")
        .expect("a checkpoint");
    assert_eq!(stored.next_lsn, Lsn(41));
    let engine = engine_on(&log, &clock);
    assert_eq!(engine.ledger().digest(), live);
    engine.ledger().check_invariants().expect("invariants");
    // A command from before the checkpoint is answered from the checkpoint's keys.
    let retry = engine
        .submit(commands[3].clone())
        .expect("retry")
        .expect("not refused");
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, Lsn(4));
    let receipt = engine
        .submit(reserve("after-reopen", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(receipt.lsn, last.next());
}

#[test]
fn a_checkpoint_of_the_whole_log_leaves_no_events_and_the_log_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let clock = clock();
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    for command in &commands {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let last = Lsn(commands.len() as u64);
    assert_eq!(engine.checkpoint().expect("written"), last.next());
    // A second checkpoint with nothing new is accepted and changes nothing.
    assert_eq!(engine.checkpoint().expect("written"), last.next());
    assert_eq!(
        log.stats().checkpoints,
        1,
        "the same cut is not written twice"
    );
    let live = engine.ledger().digest();
    close(engine, log).expect("clean close");

    let (lsns, _, _) = file_contents(dir.path());
    assert!(
        lsns.is_empty(),
        "every event is in the checkpoint: {lsns:?}"
    );

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), last, "the log still knows where it is");
    assert!(log.read_from(last.next(), 10).expect("reads").is_empty());
    assert!(matches!(
        log.read_from(last, 10),
        Err(LogError::Trimmed { first_retained }) if first_retained == last.next()
    ));
    let engine = engine_on(&log, &clock);
    assert_eq!(engine.ledger().digest(), live);
    let receipt = engine
        .submit(reserve("next", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(receipt.lsn, last.next());
    close(engine, log).expect("clean close");

    // And once more: a checkpoint, a tail of one event, a reopen.
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    assert_eq!(engine.ledger().next_lsn(), Lsn(last.0 + 2));
    assert!(engine.reservation("next").is_some());
}

#[test]
fn checkpoints_ahead_of_the_log_are_refused_and_older_ones_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    for i in 0..5 {
        engine
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
    }
    let old = engine.ledger().checkpoint();
    engine
        .submit(adjust("a5", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    let mut ahead = engine.ledger().checkpoint();
    ahead.next_lsn = Lsn(100);
    assert_eq!(
        log.write_checkpoint(&ahead),
        Err(LogError::OutOfOrder {
            expected: Lsn(7),
            got: Lsn(100)
        })
    );
    assert_eq!(
        log.failure(),
        None,
        "a refused checkpoint does not fail the log"
    );
    assert_eq!(engine.checkpoint().expect("written"), Lsn(7));
    // The older one would need events the newer one trimmed: ignored.
    log.write_checkpoint(&old).expect("ignored");
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(7)));
    assert_eq!(
        log.latest_checkpoint().expect("reads").map(|c| c.next_lsn),
        Some(Lsn(7))
    );
    engine
        .submit(adjust("a6", "sku-1", "dc-1", 1))
        .expect("the log still works")
        .expect("not refused");
}

#[test]
fn a_checkpoint_spanning_many_chunks_roundtrips() {
    // Goal: chunking. Method: a checkpoint of 100k positions with long names (several MiB)
    // written to an empty log, read back equal, and loaded by recovery.
    let dir = tempfile::tempdir().expect("tempdir");
    let positions: Vec<CheckpointPosition> = (0..100_000)
        .map(|i| CheckpointPosition {
            sku: Sku::from(format!("sku-with-a-rather-long-name-{i:08}").as_str()),
            location: Location::from(format!("location-{}", i % 97).as_str()),
            on_hand: i,
            reserved: 0,
            safety_stock: i % 3,
            quarantined: 0,
        })
        .collect();
    let checkpoint = Checkpoint {
        next_lsn: Lsn(1),
        last_at_ms: T0,
        positions,
        holds: Vec::new(),
        keys: Vec::new(),
        returns: Vec::new(),
        stores: Vec::new(),
        held_drifts: Vec::new(),
        history: vec![(Lsn::ZERO, 0)],
    };
    let log = RedbLog::open(dir.path(), RedbLogOptions::default()).expect("opens");
    log.write_checkpoint(&checkpoint).expect("written");
    let bytes = log.stats().checkpoint_bytes_last as usize;
    assert!(bytes > 3 * CHECKPOINT_CHUNK_BYTES, "{bytes} bytes");
    log.close().expect("clean close");
    let (_, meta, chunks) = file_contents(dir.path());
    assert_eq!(chunks, bytes.div_ceil(CHECKPOINT_CHUNK_BYTES) as u64);
    assert_eq!(meta_value(&meta, CHECKPOINT_CHUNKS_KEY), Some(chunks));

    let log = open(dir.path());
    assert_eq!(
        log.latest_checkpoint().expect("reads").as_ref(),
        Some(&checkpoint)
    );
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().positions().len(), 100_000);
    assert_eq!(
        engine
            .check("sku-with-a-rather-long-name-00000042", "location-42")
            .map(|a| a.on_hand),
        Some(42)
    );
}

/// A checkpoint of `count` positions with long names: several MiB, so several chunks.
fn large_checkpoint(count: i64) -> Checkpoint {
    let positions: Vec<CheckpointPosition> = (0..count)
        .map(|i| CheckpointPosition {
            sku: Sku::from(format!("sku-with-a-rather-long-name-{i:08}").as_str()),
            location: Location::from(format!("location-{}", i % 97).as_str()),
            on_hand: i,
            reserved: 0,
            safety_stock: i % 3,
            quarantined: 0,
        })
        .collect();
    Checkpoint {
        next_lsn: Lsn(1),
        last_at_ms: T0,
        positions,
        holds: Vec::new(),
        keys: Vec::new(),
        returns: Vec::new(),
        stores: Vec::new(),
        held_drifts: Vec::new(),
        history: vec![(Lsn::ZERO, 0)],
    }
}

#[test]
fn chunks_staged_by_a_checkpoint_that_never_switched_are_ignored_and_removed() {
    // Goal: a crash after some chunks of a new checkpoint were committed but before the switch
    // leaves the old checkpoint in force. Method: checkpoint, add events, close; write chunks
    // into the other generation's range as an unfinished staging would have (junk bytes: a
    // reader must not even look at them); reopen: the old checkpoint loads, recovery gives
    // the live ledger, and the stray chunks are gone. The next checkpoint then goes to that
    // generation, and the one after back to the first.
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let live = {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for command in &commands[..20] {
            engine
                .submit(command.clone())
                .expect("accepted")
                .expect("not refused");
        }
        assert_eq!(engine.checkpoint().expect("written"), Lsn(21));
        for command in &commands[20..] {
            engine
                .submit(command.clone())
                .expect("accepted")
                .expect("not refused");
        }
        let live = engine.ledger().digest();
        close(engine, log).expect("clean close");
        live
    };
    let (_, meta, stored_chunks) = file_contents(dir.path());
    assert_eq!(meta_value(&meta, CHECKPOINT_GENERATION_KEY), Some(0));
    {
        let db = redb::Database::open(dir.path().join(FILE_NAME)).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut chunks = txn.open_table(CHECKPOINT).expect("chunks");
            for index in 0..3 {
                chunks
                    .insert(chunk_key(1, index), [0xAB; 1000].as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    let log = open(dir.path());
    assert_eq!(
        log.latest_checkpoint().expect("reads").map(|c| c.next_lsn),
        Some(Lsn(21))
    );
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
    // The next checkpoint is staged where the stray chunks were, and switched to.
    engine
        .submit(adjust("after", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    let next = engine.checkpoint().expect("written");
    let live = engine.ledger().digest();
    close(engine, log).expect("clean close");
    let (lsns, meta, chunks) = file_contents(dir.path());
    assert!(
        lsns.is_empty(),
        "every event is in the checkpoint: {lsns:?}"
    );
    assert_eq!(meta_value(&meta, CHECKPOINT_GENERATION_KEY), Some(1));
    assert_eq!(meta_value(&meta, CHECKPOINT_NEXT_LSN_KEY), Some(next.0));
    assert_eq!(
        meta_value(&meta, CHECKPOINT_CHUNKS_KEY),
        Some(chunks),
        "only the stored generation's chunks are left (the first had {stored_chunks})"
    );

    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
    engine
        .submit(adjust("after-2", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    engine.checkpoint().expect("written");
    let live = engine.ledger().digest();
    close(engine, log).expect("clean close");
    let (_, meta, _) = file_contents(dir.path());
    assert_eq!(meta_value(&meta, CHECKPOINT_GENERATION_KEY), Some(0));
    let log = open(dir.path());
    assert_eq!(engine_on(&log, &clock()).ledger().digest(), live);
}

#[test]
fn a_power_cut_before_the_switch_leaves_the_previous_checkpoint() {
    // Goal: nothing of a checkpoint counts until its switch commit is durable. Method: a
    // checkpoint of several chunks with every sync held: it is staged, and its switch blocks
    // on the sync; cut the power there. Reopen: no checkpoint, every acknowledged event.
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let (log, switch) = open_faulty(dir.path(), RedbLogOptions::default());
    let engine = engine_on(&log, &clock());
    for command in &commands {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let live = engine.ledger().digest();
    let mut large = large_checkpoint(100_000);
    large.next_lsn = Lsn(3);
    switch.hold_syncs();
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.write_checkpoint(&large))
    };
    wait_until("the switch's sync blocks", || switch.blocked_syncs() > 0);
    switch.power_cut();
    assert!(matches!(
        writer.join().expect("no panic"),
        Err(LogError::Io(_))
    ));
    drop(engine);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.checkpoint_lsn(), None);
    assert_eq!(log.latest_checkpoint().expect("reads"), None);
    assert_eq!(log.durable_lsn(), Lsn(commands.len() as u64));
    assert_eq!(engine_on(&log, &clock()).ledger().digest(), live);
}

#[test]
fn events_commit_between_the_chunks_of_a_large_checkpoint() {
    // Goal: a checkpoint is written a few chunks per commit, and events appended meanwhile
    // are committed and acknowledged in LSN order beside it; recovery from it plus the tail
    // gives the live ledger. Method: recover an engine from a large checkpoint, then take
    // another checkpoint on one thread while this one submits; check the commit count, the
    // receipts and the log's content (no timing is asserted).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.write_checkpoint(&large_checkpoint(100_000))
        .expect("written");
    let engine = engine_on(&log, &clock());
    let first = log.stats();
    let chunks = first
        .checkpoint_bytes_last
        .div_ceil(CHECKPOINT_CHUNK_BYTES as u64);
    assert!(
        chunks > CHECKPOINT_STAGE_CHUNKS_PER_COMMIT,
        "{chunks} chunks"
    );
    assert!(
        first.checkpoint_commits > chunks / CHECKPOINT_STAGE_CHUNKS_PER_COMMIT,
        "staged in several commits: {first:?}"
    );
    let commands = mixed_workload();
    let (receipts, next_lsn) = std::thread::scope(|scope| {
        let checkpoint = scope.spawn(|| engine.checkpoint().expect("written"));
        let receipts: Vec<Receipt> = commands
            .iter()
            .map(|command| {
                engine
                    .submit(command.clone())
                    .expect("accepted")
                    .expect("not refused")
            })
            .collect();
        (receipts, checkpoint.join().expect("no panic"))
    });
    let lsns: Vec<u64> = receipts.iter().map(|r| r.lsn.0).collect();
    assert_eq!(lsns, (1..=commands.len() as u64).collect::<Vec<_>>());
    assert!(next_lsn.0 >= 1 && next_lsn.0 <= commands.len() as u64 + 1);
    let events = log.read_from(next_lsn, usize::MAX).expect("reads");
    assert_eq!(
        events.iter().map(|e| e.lsn.0).collect::<Vec<_>>(),
        (next_lsn.0..=commands.len() as u64).collect::<Vec<_>>()
    );
    let live = engine.ledger().digest();
    close(engine, log).expect("clean close");

    let log = open(dir.path());
    assert_eq!(log.checkpoint_lsn(), Some(next_lsn));
    assert_eq!(engine_on(&log, &clock()).ledger().digest(), live);
}

#[test]
fn a_damaged_checkpoint_stops_recovery_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        engine
            .submit(adjust("a", "sku-1", "dc-1", 10))
            .expect("accepted")
            .expect("not refused");
        engine.checkpoint().expect("written");
        close(engine, log).expect("clean close");
    }
    {
        // Flip a byte inside the checkpoint (redb's own checksums are intact: the damage is
        // a valid write of wrong bytes, as a bug would make).
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut chunks = txn.open_table(CHECKPOINT).expect("chunks");
            let mut bytes = redb::ReadableTable::get(&chunks, 0u64)
                .expect("get")
                .expect("chunk 0")
                .value()
                .to_vec();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            chunks.insert(0u64, bytes.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let log = open(dir.path());
    let Err(error) = Engine::recover(config(), log, clock()) else {
        panic!("recovery must refuse the damaged checkpoint");
    };
    let message = error.to_string();
    assert!(message.contains("checkpoint"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");

    // A missing chunk is caught at open, before anything is read.
    {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut chunks = txn.open_table(CHECKPOINT).expect("chunks");
            chunks.remove(0u64).expect("remove");
        }
        txn.commit().expect("commit");
    }
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("chunks"), "{error}");
}

#[test]
fn a_checkpoint_without_its_generation_row_is_refused_at_open() {
    // Files of format 3 had no generation row; this build reads only its own format, in which
    // every checkpoint names its generation.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        engine
            .submit(adjust("a", "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
        engine.checkpoint().expect("written");
        close(engine, log).expect("clean close");
    }
    {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut meta = txn.open_table(META).expect("meta");
            meta.remove(CHECKPOINT_GENERATION_KEY).expect("remove");
        }
        txn.commit().expect("commit");
    }
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(
        error.to_string().contains(CHECKPOINT_GENERATION_KEY),
        "{error}"
    );
}

#[test]
fn events_missing_after_a_checkpoint_are_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for i in 0..6 {
            engine
                .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
                .expect("accepted")
                .expect("not refused");
        }
        engine.checkpoint().expect("written");
        engine
            .submit(adjust("a6", "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
        engine
            .submit(adjust("a7", "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
        close(engine, log).expect("clean close");
    }
    {
        // Lose the first event after the checkpoint.
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut events = txn.open_table(EVENTS).expect("events");
            events.remove(7u64).expect("remove");
        }
        txn.commit().expect("commit");
    }
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("from lsn 7"), "{error}");
}

#[test]
fn read_from_starts_inside_a_batch_and_a_checkpoint_keeps_the_batch_it_cuts() {
    // Goal: reads starting anywhere in a batch record, and a checkpoint whose next_lsn falls
    // inside one. Method: hold the disk's syncs while the writer commits lsn 2, append lsn
    // 3..=51 meanwhile, release: they become one record. Read every start and length; then
    // store a checkpoint at lsn 20 (inside that record), which must drop only the records
    // wholly below it; reopen and recover.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let (log, switch) = open_faulty(dir.path(), RedbLogOptions::default());
    let engine = engine_on(&log, &clock);
    let commands: Vec<Command> = std::iter::once(adjust("a", "sku-1", "dc-1", 1_000))
        .chain((0..50).map(|i| reserve(&format!("r{i}"), "sku-1", "dc-1", 1)))
        .collect();
    engine
        .submit(commands[0].clone())
        .expect("accepted")
        .expect("not refused");
    switch.hold_syncs();
    let mut checkpoint = None;
    for (i, command) in commands.iter().enumerate().skip(1) {
        let receipt = engine
            .ledger()
            .submit(command.clone(), engine.now_ms())
            .expect("accepted")
            .expect("not refused");
        assert_eq!(receipt.lsn, Lsn(i as u64 + 1));
        if i == 1 {
            wait_until("the writer waits on the disk", || {
                switch.blocked_syncs() == 1
            });
        }
        if receipt.lsn == Lsn(19) {
            checkpoint = Some(engine.ledger().checkpoint());
        }
    }
    switch.release_syncs();
    log.wait_durable(Lsn(51)).expect("durable");
    assert_eq!(log.stats().batch_events_largest, 49);

    let reference_log = Arc::new(MemLog::new());
    let reference = Engine::recover(
        config(),
        Arc::clone(&reference_log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("empty log");
    for command in &commands {
        reference
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let expected = reference_log.events();
    assert_eq!(log.read_from(Lsn(1), usize::MAX), Ok(expected.clone()));
    for from in 0..=52u64 {
        for max in [0, 1, 2, 7, 100] {
            let start = from.max(1) as usize - 1;
            let want: Vec<_> = expected.iter().skip(start).take(max).cloned().collect();
            assert_eq!(
                log.read_from(Lsn(from), max),
                Ok(want),
                "from {from}, max {max}"
            );
        }
    }

    let checkpoint = checkpoint.expect("taken");
    assert_eq!(checkpoint.next_lsn, Lsn(20));
    log.write_checkpoint(&checkpoint).expect("written");
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(20)));
    assert_eq!(
        log.read_from(Lsn(19), 10),
        Err(LogError::Trimmed {
            first_retained: Lsn(20)
        })
    );
    assert_eq!(log.read_from(Lsn(20), 100), Ok(expected[19..].to_vec()));
    assert_eq!(log.read_from(Lsn(25), 3), Ok(expected[24..27].to_vec()));
    let live = engine.ledger().digest();
    assert_eq!(live, reference.ledger().digest());
    close(engine, log).expect("clean close");

    let (lsns, meta, _) = file_contents(dir.path());
    assert_eq!(
        lsns,
        vec![3],
        "records 1 and 2 are wholly below the checkpoint"
    );
    assert_eq!(meta_value(&meta, CHECKPOINT_NEXT_LSN_KEY), Some(20));

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(51));
    let engine = engine_on(&log, &clock);
    assert_eq!(engine.ledger().digest(), live);
    engine.ledger().check_invariants().expect("invariants");
    let receipt = engine
        .submit(reserve("next", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(receipt.lsn, Lsn(52));
}

#[test]
fn a_checkpoint_in_async_mode_makes_everything_before_it_durable() {
    // Goal: the checkpoint's fsync commit covers the non-durable batches before it. Method:
    // Async mode with a flush interval longer than the test, acknowledge commands (nothing
    // fsynced), checkpoint, cut the power, reopen: the checkpoint and every event before it
    // are there.
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RedbLogOptions {
        durability: Durability::Async {
            flush_interval_ms: 600_000,
        },
        ..RedbLogOptions::default()
    };
    let commands = mixed_workload();
    let (log, switch) = open_faulty(dir.path(), options);
    let engine = engine_on(&log, &clock());
    for command in &commands {
        engine
            .submit(command.clone())
            .expect("acknowledged")
            .expect("not refused");
    }
    let last = Lsn(commands.len() as u64);
    assert_eq!(log.durable_lsn(), Lsn(0), "nothing was fsynced");
    assert_eq!(engine.checkpoint().expect("written"), last.next());
    assert_eq!(log.durable_lsn(), last);
    let live = engine.ledger().digest();
    switch.power_cut();
    drop(engine);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), last);
    assert_eq!(log.checkpoint_lsn(), Some(last.next()));
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
}

#[test]
fn a_failed_checkpoint_fail_stops_and_leaves_the_previous_state() {
    // Goal: a checkpoint whose fsync fails is not half-written and stops the log like any
    // failed commit. Method: checkpoint once, acknowledge more, fail the next sync during the
    // second checkpoint, check the errors, reopen: the first checkpoint plus every
    // acknowledged event, nothing of the second checkpoint.
    let dir = tempfile::tempdir().expect("tempdir");
    let commands = mixed_workload();
    let (log, switch) = open_faulty(dir.path(), RedbLogOptions::default());
    let engine = engine_on(&log, &clock());
    for command in &commands[..20] {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    assert_eq!(engine.checkpoint().expect("written"), Lsn(21));
    for command in &commands[20..] {
        engine
            .submit(command.clone())
            .expect("accepted")
            .expect("not refused");
    }
    let live = engine.ledger().digest();
    switch.fail_next_sync();
    let error = engine.checkpoint().expect_err("the sync fails");
    assert!(
        matches!(error, LogError::Io(ref m) if m.contains("injected fault")),
        "{error:?}"
    );
    assert!(log.failure().is_some());
    assert!(matches!(
        engine.submit(reserve("after", "sku-1", "dc-1", 1)),
        Err(SubmitError::Log(LogError::Io(_)))
    ));
    assert!(matches!(engine.checkpoint(), Err(LogError::Io(_))));
    drop(engine);
    drop(log);

    let log = open(dir.path());
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(21)));
    assert_eq!(log.durable_lsn(), Lsn(commands.len() as u64));
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
}

#[test]
fn checkpoints_are_written_when_the_policy_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let log = open(dir.path());
    let engine = engine_on(&log, &clock);
    let policy = CheckpointPolicy {
        every_events: 10,
        every_ms: 60_000,
    };
    assert_eq!(engine.checkpoint_if_due(&policy), Ok(None), "nothing yet");
    for i in 0..9 {
        engine
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
    }
    assert_eq!(engine.checkpoint_if_due(&policy), Ok(None), "9 events");
    engine
        .submit(adjust("a9", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(
        engine.checkpoint_if_due(&policy),
        Ok(Some(Lsn(11))),
        "10 events"
    );
    assert_eq!(
        engine.checkpoint_if_due(&policy),
        Ok(None),
        "counted afresh"
    );
    clock.advance_ms(60_000);
    assert_eq!(
        engine.checkpoint_if_due(&policy),
        Ok(None),
        "the timer needs an event to write"
    );
    engine
        .submit(adjust("a10", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    assert_eq!(
        engine.checkpoint_if_due(&policy),
        Ok(Some(Lsn(12))),
        "one event after the interval"
    );
    let off = CheckpointPolicy {
        every_events: 0,
        every_ms: 0,
    };
    engine
        .submit(adjust("a11", "sku-1", "dc-1", 1))
        .expect("accepted")
        .expect("not refused");
    clock.advance_ms(3_600_000);
    assert_eq!(
        engine.checkpoint_if_due(&off),
        Ok(None),
        "both triggers off"
    );
    assert_eq!(log.stats().checkpoints, 2);
}

#[test]
fn checkpoints_and_batches_interleave_under_concurrent_submitters() {
    // Goal: a checkpoint taken while submitters run lands after every event it covers and
    // trims nothing it does not. Method: 4 threads submit while another checkpoints in a
    // loop; then the file must hold exactly the events from the last checkpoint on, and
    // recovery must reproduce the live ledger.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let engine = Arc::new(engine_on(&log, &clock()));
    engine
        .submit(adjust("a", "sku-1", "dc-1", 1_000_000))
        .expect("accepted")
        .expect("not refused");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let engine = Arc::clone(&engine);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                engine.checkpoint().expect("written");
                written += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            written
        })
    };
    let submitters: Vec<_> = (0..4)
        .map(|t| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                for i in 0..150 {
                    let id = format!("t{t}-{i}");
                    engine
                        .submit(reserve(&id, "sku-1", "dc-1", 1))
                        .expect("accepted")
                        .expect("not refused");
                    if i % 3 == 0 {
                        engine
                            .submit(release(&id))
                            .expect("accepted")
                            .expect("not refused");
                    }
                }
            })
        })
        .collect();
    for thread in submitters {
        thread.join().expect("submitter");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let written = checkpointer.join().expect("checkpointer");
    assert!(written >= 2, "{written} checkpoints");
    let live = engine.ledger().digest();
    let last = engine.ledger().next_lsn().0 - 1;
    let first = log.checkpoint_lsn().expect("a checkpoint").0;
    let engine = Arc::into_inner(engine).expect("threads done");
    close(engine, log).expect("clean close");

    // Records are keyed by their batch's first LSN; the first may start before the checkpoint.
    let (keys, _, _) = file_contents(dir.path());
    assert!(keys.first().is_none_or(|&key| key <= first), "{keys:?}");
    let log = open(dir.path());
    let lsns: Vec<u64> = log
        .read_from(Lsn(first), usize::MAX)
        .expect("reads")
        .iter()
        .map(|event| event.lsn.0)
        .collect();
    assert_eq!(lsns, (first..=last).collect::<Vec<_>>());
    let engine = engine_on(&log, &clock());
    assert_eq!(engine.ledger().digest(), live);
    engine.ledger().check_invariants().expect("invariants");
}

// --------------------------------------------------------------------------------------------
// The data folder: a new log, the marker, and files that must not open as an empty log

/// The names in `dir`, sorted (upper case first).
fn folder_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A folder holding a closed log with `events` adjustments.
fn folder_with_events(events: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    for i in 0..events {
        engine
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("accepted")
            .expect("not refused");
    }
    close(engine, log).expect("clean close");
    dir
}

#[test]
fn a_new_folder_gets_a_log_file_and_its_marker() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("data");
    let log = open(&dir);
    assert_eq!(log.durable_lsn(), Lsn(0));
    assert_eq!(folder_entries(&dir), vec![MARKER_FILE_NAME, FILE_NAME]);
    let marker = std::fs::read_to_string(dir.join(MARKER_FILE_NAME)).expect("marker");
    for line in [
        format!("format_version = {LOG_FORMAT_VERSION}\n"),
        "log_id = \"".to_owned(),
        "created_at_ms = ".to_owned(),
    ] {
        assert!(marker.contains(&line), "{line:?} missing from:\n{marker}");
    }
    // The new file already holds the tables and the format version.
    drop(log);
    let (lsns, meta, chunks) = file_contents(&dir);
    assert_eq!((lsns, chunks), (vec![], 0));
    assert_eq!(
        meta_value(&meta, FORMAT_VERSION_KEY),
        Some(LOG_FORMAT_VERSION)
    );
    // Reopening keeps the marker as it was.
    let log = open(&dir);
    assert_eq!(log.durable_lsn(), Lsn(0));
    drop(log);
    assert_eq!(
        std::fs::read_to_string(dir.join(MARKER_FILE_NAME)).expect("marker"),
        marker
    );
}

#[test]
fn an_empty_log_file_is_refused_and_left_alone() {
    // Goal: the defect found by crashing a server from outside: a ledger.redb truncated to 0
    // bytes opened as a new, empty log (0 events recovered, LSNs reused). Method: truncate a
    // log's file; open must refuse, with or without the marker, and leave the file as it is.
    let dir = folder_with_events(3);
    let path = dir.path().join(FILE_NAME);
    std::fs::File::create(&path).expect("truncate");
    for marker in [true, false] {
        if !marker {
            std::fs::remove_file(dir.path().join(MARKER_FILE_NAME)).expect("remove marker");
        }
        let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
        assert!(matches!(error, OpenError::EmptyFile { .. }), "{error:?}");
        let message = error.to_string();
        for part in [
            format!("{} is empty (0 bytes)", path.display()),
            "cannot be trusted".to_owned(),
            format!("move the data folder {} away", dir.path().display()),
        ] {
            assert!(message.contains(&part), "{part:?} missing from: {message}");
        }
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0);
    }
    assert_eq!(folder_entries(dir.path()), vec![FILE_NAME]);
}

#[test]
fn a_missing_log_file_is_refused_where_the_marker_says_a_log_was() {
    let dir = folder_with_events(3);
    let path = dir.path().join(FILE_NAME);
    std::fs::remove_file(&path).expect("remove the log");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::MissingFile { .. }), "{error:?}");
    let message = error.to_string();
    for part in [
        format!("{} is missing", path.display()),
        dir.path().join(MARKER_FILE_NAME).display().to_string(),
        format!("move the data folder {} away", dir.path().display()),
    ] {
        assert!(message.contains(&part), "{part:?} missing from: {message}");
    }
    assert!(!path.exists(), "a refused open creates nothing");

    // The documented way to start over: move the folder away.
    let moved = dir.path().with_extension("old");
    std::fs::rename(dir.path(), &moved).expect("move the folder away");
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(0));
    drop(log);
    std::fs::remove_dir_all(&moved).expect("clean up");
}

#[test]
fn a_truncated_log_file_is_refused() {
    for keep in [100, 4096, 0] {
        let dir = folder_with_events(200);
        let path = dir.path().join(FILE_NAME);
        let bytes = std::fs::read(&path).expect("read");
        // 0 here: half of the file.
        let keep = if keep == 0 { bytes.len() / 2 } else { keep };
        std::fs::write(&path, &bytes[..keep]).expect("truncate");
        let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
        let message = error.to_string();
        assert!(
            matches!(error, OpenError::Corrupt { .. }),
            "{keep} bytes: {error:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(std::fs::read(&path).expect("read"), &bytes[..keep]);
    }
}

#[test]
fn a_redb_file_without_the_log_tables_is_refused() {
    // A valid redb database, but not a log: open never makes one of it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    redb::Database::create(&path).expect("redb creates");
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("not an event log"), "{error}");
}

#[test]
fn a_log_without_the_marker_gets_it_and_opens() {
    // A folder from a build before the marker, or a creation cut short after the file was
    // linked into place.
    let dir = folder_with_events(3);
    std::fs::remove_file(dir.path().join(MARKER_FILE_NAME)).expect("remove marker");
    let log = open(dir.path());
    assert_eq!(log.durable_lsn(), Lsn(3));
    assert_eq!(
        folder_entries(dir.path()),
        vec![MARKER_FILE_NAME, FILE_NAME]
    );
}

#[test]
fn leftovers_of_a_creation_cut_short_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leftovers = [
        format!("{FILE_NAME}.creating-0123"),
        format!("{MARKER_FILE_NAME}.writing-4567"),
    ];
    for name in &leftovers {
        std::fs::write(dir.path().join(name), b"half written").expect("write");
    }
    let unrelated = dir.path().join("notes.txt");
    std::fs::write(&unrelated, b"kept").expect("write");
    let log = open(dir.path());
    drop(log);
    assert_eq!(
        folder_entries(dir.path()),
        vec![MARKER_FILE_NAME, FILE_NAME, "notes.txt"]
    );
}

#[test]
fn opens_racing_to_create_a_log_make_one() {
    // Goal: several opens of one new folder at once create one log, and every other open is
    // refused as in use (never a second log over the first). Method: threads open together
    // and keep what they got until all are done.
    for _ in 0..5 {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("data");
        let start = Arc::new(std::sync::Barrier::new(4));
        let opened: Vec<Result<RedbLog, OpenError>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, start) = (&dir, Arc::clone(&start));
                    s.spawn(move || {
                        start.wait();
                        RedbLog::open(dir, RedbLogOptions::default())
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("opener"))
                .collect()
        });
        let logs = opened.iter().filter(|result| result.is_ok()).count();
        assert_eq!(logs, 1, "{opened:?}");
        for result in &opened {
            if let Err(error) = result {
                assert!(matches!(error, OpenError::InUse { .. }), "{error:?}");
            }
        }
        drop(opened);
        assert_eq!(folder_entries(&dir), vec![MARKER_FILE_NAME, FILE_NAME]);
        let log = open(&dir);
        assert_eq!(log.durable_lsn(), Lsn(0));
    }
}

// Goal: a checkpoint keeps the events of the history window that reconciliation reads, and
// trims only what is older. Method: events over two minutes of a manual clock with a one-minute
// window, a checkpoint, a restart; reads from the window's first event work and end at the
// head, reads before it are refused as trimmed, and recovery still starts at the checkpoint.
#[test]
fn a_checkpoint_keeps_the_history_window_and_trims_what_is_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let config = LedgerConfig {
        history_ms: 60_000,
        ..LedgerConfig::default()
    };
    let log = open(dir.path());
    let engine = Engine::recover(
        config,
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    for i in 0..120u64 {
        let command = adjust(&format!("a{i}"), "sku-1", "dc-1", 1);
        engine
            .submit(command)
            .expect("accepted")
            .expect("not refused");
        clock.advance_ms(1_000);
    }
    let next_lsn = engine.checkpoint().expect("written");
    assert_eq!(next_lsn, Lsn(121));
    let kept_from = log
        .latest_checkpoint()
        .expect("reads")
        .expect("a checkpoint")
        .history_start_lsn();
    // The window reaches back a minute from the last event: about the last 60 of 120.
    assert!((Lsn(55)..=Lsn(62)).contains(&kept_from), "{kept_from}");
    close(engine, log).expect("closes");

    let log = open(dir.path());
    assert_eq!(
        log.read_from(Lsn(kept_from.0 - 1), 1),
        Err(LogError::Trimmed {
            first_retained: kept_from
        })
    );
    let kept = log.read_from(kept_from, usize::MAX).expect("reads");
    assert_eq!(kept.first().map(|e| e.lsn), Some(kept_from));
    assert_eq!(kept.last().map(|e| e.lsn), Some(Lsn(120)));
    let engine = Engine::recover(
        config,
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    assert_eq!(engine.check("sku-1", "dc-1").map(|a| a.on_hand), Some(120));
    // The window is what reconciliation can reach.
    assert_eq!(engine.ledger().history_scan_from(T0), None, "too old");
    assert!(engine.ledger().history_scan_from(T0 + 100_000).is_some());
}
