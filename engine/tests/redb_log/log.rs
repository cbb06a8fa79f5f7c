//! What survives a close and a reopen, which files opening refuses, and what disk faults and a full queue leave behind.

use super::*;

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
    assert!(
        engine
            .reservation("refused")
            .expect("the key archive reads")
            .is_none()
    );

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
            by: None,
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
