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

use inv_engine::engine::CheckpointPolicy;
use inv_engine::ledger::{Checkpoint, CheckpointPosition};
use inv_engine::log::redb::{
    CHECKPOINT, CHECKPOINT_CHUNK_BYTES, CHECKPOINT_CHUNKS_KEY, CHECKPOINT_GENERATION_KEY,
    CHECKPOINT_NEXT_LSN_KEY, CHECKPOINT_STAGE_CHUNKS_PER_COMMIT, Durability, EVENTS, FILE_NAME,
    FORMAT_VERSION_KEY, FaultSwitch, FaultyFileBackend, LOG_FORMAT_VERSION, META, chunk_key,
};
use inv_engine::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000;

fn adjust(id: &str, sku: &str, location: &str, delta: i64) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from(id),
        sku: Sku::from(sku),
        location: Location::from(location),
        delta,
        reason: "receipt".into(),
    })
}

fn reserve(id: &str, sku: &str, location: &str, qty: u64) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::from(id),
        channel: Channel::from("web"),
        lines: vec![Line::new(sku, location, qty)],
        ttl_ms: 60_000,
    })
}

/// A workload touching every command kind, so replay exercises every decoder and apply path.
fn mixed_workload() -> Vec<Command> {
    let mut commands = vec![
        adjust("a1", "sku-1", "dc-1", 100),
        adjust("a2", "sku-2", "dc-1", 50),
        Command::SetSafetyStock(SetSafetyStock {
            request_id: RequestId::from("ss1"),
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            qty: 5,
        }),
    ];
    for i in 0..40 {
        commands.push(reserve(&format!("r{i}"), "sku-1", "dc-1", 2));
    }
    commands.push(reserve("too-big", "sku-2", "dc-1", 1_000));
    for i in 0..10 {
        commands.push(Command::Commit(Commit {
            reservation_id: ReservationId::from(format!("r{i}").as_str()),
            lines: None,
        }));
        commands.push(Command::Release(Release {
            reservation_id: ReservationId::from(format!("r{}", i + 10).as_str()),
        }));
        commands.push(Command::Extend(Extend {
            reservation_id: ReservationId::from(format!("r{}", i + 20).as_str()),
            request_id: RequestId::from("x1"),
            ttl_ms: 120_000,
        }));
    }
    for seq in 1..=5 {
        commands.push(Command::RecordSale(RecordSale {
            store_id: StoreId::from("store-1"),
            txn_id: TxnId::from(format!("t{seq}").as_str()),
            store_seq: seq,
            occurred_at_ms: T0,
            lines: vec![Line::new("sku-2", "dc-1", 1)],
        }));
    }
    commands.push(Command::RecordReturn(RecordReturn {
        return_id: ReturnId::from("ret1"),
        lines: vec![ReturnLine {
            sku: Sku::from("sku-2"),
            location: Location::from("dc-1"),
            qty: 3,
            disposition: ReturnDisposition::Inspect,
        }],
    }));
    commands.push(Command::Dispose(Dispose {
        disposition_id: DispositionId::from("d1"),
        return_id: ReturnId::from("ret1"),
        sku: Sku::from("sku-2"),
        location: Location::from("dc-1"),
        qty: 2,
        action: DispositionAction::Restock,
    }));
    commands
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

fn engine_on(log: &Arc<RedbLog>, clock: &Arc<ManualClock>) -> Engine {
    let log: Arc<dyn EventLog> = Arc::clone(log) as Arc<dyn EventLog>;
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    Engine::recover(LedgerConfig::default(), log, clock).expect("recovers")
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
        LedgerConfig::default(),
        Arc::new(MemLog::new()),
        Arc::new(ManualClock::new(T0)),
    )
    .expect("empty log");
    for command in commands {
        engine.submit(command.clone()).expect("accepted");
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
        let receipt = engine.submit(command.clone()).expect("accepted");
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
        .expect("accepted");
    assert_eq!(receipt.lsn, last.next());
    let retry = engine.submit(commands[3].clone()).expect("retry");
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
        .expect("accepted");
    for i in 0..99 {
        engine
            .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
            .expect("accepted");
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
        .expect("accepted");
    assert_eq!(log.durable_lsn(), Lsn(1));
    for i in 0..5 {
        let receipt = engine
            .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
            .expect("accepted");
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
        .expect("accepted");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let receipt = engine
                        .submit(reserve(&format!("t{t}-{i}"), "sku-1", "dc-1", 1))
                        .expect("accepted");
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
            .expect("accepted");
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
            .expect("accepted");
        for i in 0..500 {
            engine
                .submit(reserve(&format!("r{i}"), "sku-1", "dc-1", 1))
                .expect("accepted");
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
                .expect("accepted");
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
    let Err(error) = Engine::recover(LedgerConfig::default(), log, clock()) else {
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
                .expect("accepted");
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
    let Err(error) = Engine::recover(LedgerConfig::default(), log, clock()) else {
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
        engine.submit(command.clone()).expect("accepted");
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
        engine.submit(command.clone()).expect("accepted");
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
        engine.submit(command.clone()).expect("accepted");
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
            .expect("acknowledged");
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
    first.join().expect("thread").expect("acknowledged");
    for thread in queued {
        thread.join().expect("thread").expect("acknowledged");
    }
    assert_eq!(log.durable_lsn(), Lsn(4));
    assert_eq!(log.admit(), Ok(()));
    engine
        .submit(reserve("refused", "sku-1", "dc-1", 1))
        .expect("accepted once drained");
}

#[test]
fn appends_out_of_order_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = RedbLog::open(dir.path(), RedbLogOptions::default()).expect("opens");
    let event = |lsn: u64| {
        Arc::new(Event {
            lsn: Lsn(lsn),
            at_ms: T0,
            command: adjust("a", "sku-1", "dc-1", 1),
            outcome: Outcome::Recorded,
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
        engine.submit(command.clone()).expect("accepted");
    }
    let checkpoint_lsn = engine.checkpoint().expect("checkpoint written");
    assert_eq!(checkpoint_lsn, Lsn(41));
    assert_eq!(log.checkpoint_lsn(), Some(Lsn(41)));
    let stats = log.stats();
    assert_eq!(stats.checkpoints, 1);
    assert_eq!(stats.events_trimmed, 40);
    assert!(stats.checkpoint_bytes_last > 0);
    for command in after {
        engine.submit(command.clone()).expect("accepted");
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
    let retry = engine.submit(commands[3].clone()).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, Lsn(4));
    let receipt = engine
        .submit(reserve("after-reopen", "sku-1", "dc-1", 1))
        .expect("accepted");
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
        engine.submit(command.clone()).expect("accepted");
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
        .expect("accepted");
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
            .expect("accepted");
    }
    let old = engine.ledger().checkpoint();
    engine
        .submit(adjust("a5", "sku-1", "dc-1", 1))
        .expect("accepted");
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
        .expect("the log still works");
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
            engine.submit(command.clone()).expect("accepted");
        }
        assert_eq!(engine.checkpoint().expect("written"), Lsn(21));
        for command in &commands[20..] {
            engine.submit(command.clone()).expect("accepted");
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
        .expect("accepted");
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
        .expect("accepted");
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
        engine.submit(command.clone()).expect("accepted");
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
            .map(|command| engine.submit(command.clone()).expect("accepted"))
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
            .expect("accepted");
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
    let Err(error) = Engine::recover(LedgerConfig::default(), log, clock()) else {
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
fn events_missing_after_a_checkpoint_are_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    {
        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for i in 0..6 {
            engine
                .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
                .expect("accepted");
        }
        engine.checkpoint().expect("written");
        engine
            .submit(adjust("a6", "sku-1", "dc-1", 1))
            .expect("accepted");
        engine
            .submit(adjust("a7", "sku-1", "dc-1", 1))
            .expect("accepted");
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

/// Writes a file as builds of log format 1 and 2 did: one record per event, under its LSN,
/// in event encoding version 1.
fn write_legacy_file(dir: &Path, version: u64, events: &[Arc<Event>]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let db = redb::Database::create(dir.join(FILE_NAME)).expect("redb creates");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(EVENTS).expect("events");
        for event in events {
            let bytes = inv_engine::log::encoding::encode(event).expect("encodes");
            table.insert(event.lsn.0, bytes.as_slice()).expect("insert");
        }
        txn.open_table(META)
            .expect("meta")
            .insert(FORMAT_VERSION_KEY, version)
            .expect("insert");
        txn.open_table(CHECKPOINT).expect("chunks");
    }
    txn.commit().expect("commit");
}

#[test]
fn files_of_formats_1_and_2_read_as_they_are_and_continue_in_batches() {
    // Goal: a file written before batch records opens without migration, replays, takes new
    // batch records after its per-event ones, and trims them alike. Method: write 30 events
    // one per record (as formats 1 and 2 did), open, recover, append 10 more, store a
    // checkpoint at lsn 21 (among the old records), reopen; compare with a MemLog run of the
    // same commands.
    for version in [1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let commands = mixed_workload();
        let reference_log = Arc::new(MemLog::new());
        let reference = Engine::recover(
            LedgerConfig::default(),
            Arc::clone(&reference_log) as Arc<dyn EventLog>,
            clock(),
        )
        .expect("empty log");
        for command in &commands[..20] {
            reference.submit(command.clone()).expect("accepted");
        }
        let checkpoint = reference.ledger().checkpoint();
        assert_eq!(checkpoint.next_lsn, Lsn(21));
        for command in &commands[20..30] {
            reference.submit(command.clone()).expect("accepted");
        }
        write_legacy_file(dir.path(), version, &reference_log.events());

        let log = open(dir.path());
        assert_eq!(log.durable_lsn(), Lsn(30));
        let engine = engine_on(&log, &clock());
        assert_eq!(engine.ledger().digest(), reference.ledger().digest());
        close(engine, log).expect("clean close");
        let (_, meta, _) = file_contents(dir.path());
        assert_eq!(
            meta_value(&meta, FORMAT_VERSION_KEY),
            Some(version),
            "opening alone leaves the file to older builds"
        );

        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        for command in &commands[30..40] {
            engine.submit(command.clone()).expect("accepted");
            reference.submit(command.clone()).expect("accepted");
        }
        let expected = reference_log.events();
        assert_eq!(log.read_from(Lsn(1), usize::MAX), Ok(expected.clone()));
        assert_eq!(log.read_from(Lsn(28), 5), Ok(expected[27..32].to_vec()));
        log.write_checkpoint(&checkpoint).expect("written");
        assert_eq!(
            log.read_from(Lsn(20), 5),
            Err(LogError::Trimmed {
                first_retained: Lsn(21)
            })
        );
        assert_eq!(log.read_from(Lsn(21), 100), Ok(expected[20..].to_vec()));
        close(engine, log).expect("clean close");
        let (lsns, meta, _) = file_contents(dir.path());
        assert_eq!(lsns, (21..=40).collect::<Vec<_>>());
        assert_eq!(
            meta_value(&meta, FORMAT_VERSION_KEY),
            Some(LOG_FORMAT_VERSION)
        );

        let log = open(dir.path());
        let engine = engine_on(&log, &clock());
        assert_eq!(engine.ledger().digest(), reference.ledger().digest());
        engine.ledger().check_invariants().expect("invariants");
    }
}

#[test]
fn the_first_batch_marks_an_old_file_with_this_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference_log = Arc::new(MemLog::new());
    let reference = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&reference_log) as Arc<dyn EventLog>,
        clock(),
    )
    .expect("empty log");
    reference
        .submit(adjust("a", "sku-1", "dc-1", 1))
        .expect("accepted");
    write_legacy_file(dir.path(), 2, &reference_log.events());
    let log = open(dir.path());
    let engine = engine_on(&log, &clock());
    engine
        .submit(adjust("b", "sku-1", "dc-1", 1))
        .expect("accepted");
    close(engine, log).expect("clean close");
    let (lsns, meta, _) = file_contents(dir.path());
    assert_eq!(lsns, vec![1, 2]);
    assert_eq!(
        meta_value(&meta, FORMAT_VERSION_KEY),
        Some(LOG_FORMAT_VERSION)
    );
}

#[test]
fn an_old_file_missing_an_event_in_the_middle_is_refused_at_open() {
    // In formats 1 and 2 every record is one event, so open can still count them.
    let dir = tempfile::tempdir().expect("tempdir");
    let reference_log = Arc::new(MemLog::new());
    let reference = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&reference_log) as Arc<dyn EventLog>,
        clock(),
    )
    .expect("empty log");
    for i in 0..4 {
        reference
            .submit(adjust(&format!("a{i}"), "sku-1", "dc-1", 1))
            .expect("accepted");
    }
    let mut events = reference_log.events();
    events.remove(2);
    write_legacy_file(dir.path(), 2, &events);
    let error = RedbLog::open(dir.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(matches!(error, OpenError::Corrupt { .. }), "{error:?}");
    assert!(
        error.to_string().contains("lsn 1..=4 in 3 records"),
        "{error}"
    );
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
    engine.submit(commands[0].clone()).expect("accepted");
    switch.hold_syncs();
    let mut checkpoint = None;
    for (i, command) in commands.iter().enumerate().skip(1) {
        let receipt = engine
            .ledger()
            .submit(command.clone(), engine.now_ms())
            .expect("accepted");
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
        LedgerConfig::default(),
        Arc::clone(&reference_log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("empty log");
    for command in &commands {
        reference.submit(command.clone()).expect("accepted");
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
        .expect("accepted");
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
        engine.submit(command.clone()).expect("acknowledged");
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
        engine.submit(command.clone()).expect("accepted");
    }
    assert_eq!(engine.checkpoint().expect("written"), Lsn(21));
    for command in &commands[20..] {
        engine.submit(command.clone()).expect("accepted");
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
            .expect("accepted");
    }
    assert_eq!(engine.checkpoint_if_due(&policy), Ok(None), "9 events");
    engine
        .submit(adjust("a9", "sku-1", "dc-1", 1))
        .expect("accepted");
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
        .expect("accepted");
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
        .expect("accepted");
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
        .expect("accepted");
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
                        .expect("accepted");
                    if i % 3 == 0 {
                        engine
                            .submit(Command::Release(Release {
                                reservation_id: ReservationId::from(id.as_str()),
                            }))
                            .expect("accepted");
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
