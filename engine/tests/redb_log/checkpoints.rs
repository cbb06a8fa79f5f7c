//! Checkpoints: what they trim, how recovery combines them with the log's tail, and crashes or failed syncs around them.

use super::*;

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
    assert!(
        engine
            .reservation("next")
            .expect("the key archive reads")
            .is_some()
    );
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
