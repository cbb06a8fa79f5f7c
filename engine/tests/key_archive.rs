//! The two tiers of idempotency records (`ledger/archived.rs`): what moves to the key archive
//! behaves exactly as if it had stayed in memory.
//!
//! - A twin test runs one seeded workload on two engines, one that evicts to an archive at
//!   every checkpoint and one that keeps everything in memory, and requires every answer
//!   (LSN, outcome, duplicate flag, refusal) and the final digest to agree. Retries, late
//!   commits of ended holds, GetReservation of archived holds all go through the archive.
//! - Recovery: a redb log and a redb archive, commands after the last checkpoint that touch
//!   archived entries, then a restart: the same digest, retries answered with their original
//!   LSNs.
//! - Retention by kind, the memory limit, and an archive that belongs to another log.

use inv_engine::archive::redb::RedbArchive;
use inv_engine::archive::{KeyArchive, MemArchive};
use inv_engine::testing::commands::{adjust, commit, extend, release, reserve, sale};
use inv_engine::*;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
const KEY_MEMORY_MS: u64 = 1_000;

fn config() -> LedgerConfig {
    LedgerConfig {
        shards: 8,
        ..LedgerConfig::default()
    }
}

fn tiered() -> MemoryPolicy {
    MemoryPolicy {
        key_memory_ms: KEY_MEMORY_MS,
        ..MemoryPolicy::default()
    }
}

/// splitmix64.
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

/// A seeded mix: stock, reserves (some too large: rejected), commits, releases, extends,
/// sales, and retries and late commands on old ids, which by then are often archived.
fn workload(seed: u64, steps: usize) -> Vec<Command> {
    let mut rng = Rng(seed);
    let mut commands = Vec::with_capacity(steps);
    for i in 0..steps {
        let sku = format!("sku-{}", rng.below(6));
        let id = |rng: &mut Rng| format!("r-{}", rng.below(i as u64 + 1));
        let command = match rng.below(10) {
            0 => adjust(&format!("a-{i}"), &sku, "dc", 20),
            1..=3 => reserve(&format!("r-{i}"), &sku, "dc", 1 + rng.below(12)),
            4 => commit(&id(&mut rng)),
            5 => release(&id(&mut rng)),
            6 => extend(&id(&mut rng), &format!("x-{i}"), 30_000),
            7 => sale(
                "store-1",
                &format!("t-{i}"),
                i as u64 + 1,
                T0,
                vec![Line::new(&sku, "dc", 1)],
            ),
            // A retry of an earlier reserve (same id; the payload may differ: a conflict).
            8 => {
                let old = rng.below(i as u64 + 1);
                reserve(&format!("r-{old}"), &sku, "dc", 1 + rng.below(12))
            }
            _ => adjust(&format!("a-{}", rng.below(i as u64 + 1)), &sku, "dc", 20),
        };
        commands.push(command);
    }
    commands
}

struct Twin {
    tiered: Engine,
    plain: Engine,
    clock: Arc<ManualClock>,
    archive: Arc<MemArchive>,
}

impl Twin {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let archive = Arc::new(MemArchive::new());
        let tiered = Engine::recover_with(
            config(),
            Arc::new(MemLog::new()),
            clock.clone(),
            Some(archive.clone() as Arc<dyn KeyArchive>),
            tiered(),
        )
        .expect("an empty log recovers");
        let plain = Engine::recover(config(), Arc::new(MemLog::new()), clock.clone())
            .expect("an empty log recovers");
        Twin {
            tiered,
            plain,
            clock,
            archive,
        }
    }
}

#[test]
fn what_is_archived_answers_exactly_as_if_it_had_stayed_in_memory() {
    for seed in 1..=4 {
        let twin = Twin::new();
        let mut archived_max = 0;
        for (i, command) in workload(seed, 2_000).into_iter().enumerate() {
            let a = twin.tiered.submit(command.clone());
            let b = twin.plain.submit(command.clone());
            assert_eq!(a, b, "seed {seed}, step {i}: {command:?}");
            if i % 50 == 49 {
                twin.clock.advance_ms(KEY_MEMORY_MS / 2);
                twin.tiered.checkpoint().expect("checkpoint");
                twin.plain.checkpoint().expect("checkpoint");
                archived_max = archived_max.max(twin.archive.stats().entries);
            }
            if i % 100 == 99 {
                // Reads of every hold so far agree too (archived ones are faulted in).
                for r in 0..=i {
                    let id = format!("r-{r}");
                    assert_eq!(
                        twin.tiered.reservation(&id).expect("archive readable"),
                        twin.plain.reservation(&id).expect("in memory"),
                        "seed {seed}, step {i}: GetReservation {id}"
                    );
                }
            }
        }
        assert!(
            archived_max > 500,
            "seed {seed}: eviction archived only {archived_max} entries"
        );
        // The reads above faulted every hold back in; the next checkpoints move them out again.
        twin.clock.advance_ms(KEY_MEMORY_MS * 2);
        twin.tiered.checkpoint().expect("checkpoint");
        twin.tiered.checkpoint().expect("checkpoint");
        let (archived, index_bytes) = twin.tiered.ledger().archived_keys();
        assert!(archived > 0 && index_bytes > 0);
        assert!(
            twin.tiered.ledger().memory_use().hold_entries
                < twin.plain.ledger().memory_use().hold_entries,
            "seed {seed}: eviction did not shrink the memory tier"
        );
        assert_eq!(
            twin.tiered.digest(),
            twin.plain.digest(),
            "seed {seed}: the archived engine's state differs"
        );
        twin.tiered.check_invariants().expect("invariants");
    }
}

#[test]
fn a_restart_with_the_archive_replays_to_the_acknowledged_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(T0));
    let open = |clock: &Arc<ManualClock>| {
        let log = Arc::new(RedbLog::open(dir.path(), RedbLogOptions::default()).expect("log"));
        let archive = Arc::new(RedbArchive::open(dir.path()).expect("archive"));
        Engine::recover_with(config(), log, clock.clone(), Some(archive), tiered())
            .expect("recovers")
    };
    let engine = open(&clock);
    let mut answers = Vec::new();
    let commands = workload(7, 600);
    for (i, command) in commands.iter().enumerate() {
        answers.push((command.clone(), engine.submit(command.clone())));
        if i % 100 == 99 {
            clock.advance_ms(KEY_MEMORY_MS);
            engine.checkpoint().expect("checkpoint");
        }
    }
    assert!(engine.ledger().archived_keys().0 > 100, "nothing archived");
    // After the last checkpoint: late commands on ids that are archived by now, so the log's
    // tail faults them in again on replay.
    for r in 0..50 {
        let command = commit(&format!("r-{r}"));
        answers.push((command.clone(), engine.submit(command)));
    }
    let digest = engine.digest();
    drop(engine);

    let engine = open(&clock);
    assert_eq!(engine.digest(), digest, "recovery changed the state");
    engine.check_invariants().expect("invariants");
    for (command, answer) in answers {
        let Ok(Ok(receipt)) = answer else { continue };
        let retry = engine
            .submit(command.clone())
            .expect("submits")
            .expect("a retry is answered");
        assert!(retry.duplicate, "{command:?} was not known after restart");
        assert_eq!(
            (retry.lsn, &retry.outcome),
            (receipt.lsn, &receipt.outcome),
            "{command:?}"
        );
    }
}

#[test]
fn a_rejection_is_forgotten_after_its_shorter_window_and_a_grant_is_not() {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover(
        LedgerConfig {
            rejection_retention_ms: 1_000,
            ..config()
        },
        Arc::new(MemLog::new()),
        clock.clone(),
    )
    .expect("recovers");
    engine
        .submit(adjust("a", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    let granted = engine
        .submit(reserve("granted", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    let rejected = engine
        .submit(reserve("rejected", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    assert!(matches!(rejected.outcome, Outcome::Insufficient { .. }));
    // Within the window the rejection stands, even though stock arrived.
    engine
        .submit(adjust("b", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    let retry = engine
        .submit(reserve("rejected", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    assert!(retry.duplicate && retry.lsn == rejected.lsn);
    // After it, a retry is decided afresh; the grant is still remembered.
    clock.advance_ms(1_001);
    let retry = engine
        .submit(reserve("rejected", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    assert!(!retry.duplicate, "the rejection outlived its window");
    assert!(matches!(retry.outcome, Outcome::Granted { .. }));
    let again = engine
        .submit(reserve("granted", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    assert!(again.duplicate && again.lsn == granted.lsn);
}

#[test]
fn past_the_memory_limit_writes_that_add_state_are_refused_and_the_rest_goes_on() {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover_with(
        config(),
        Arc::new(MemLog::new()),
        clock.clone(),
        None,
        MemoryPolicy {
            // Room for a few positions and holds at the estimate's sizes.
            limit_bytes: 2_000,
            ..MemoryPolicy::default()
        },
    )
    .expect("recovers");
    engine
        .submit(adjust("a", "sku", "dc", 100))
        .expect("submits")
        .expect("accepted");
    let held = engine
        .submit(reserve("r1", "sku", "dc", 1))
        .expect("submits")
        .expect("accepted");
    let mut n = 2;
    while engine.memory_tick().total() <= 2_000 {
        engine
            .submit(reserve(&format!("r{n}"), "sku", "dc", 1))
            .expect("submits")
            .expect("accepted");
        n += 1;
    }
    assert!(engine.memory_exhausted());
    let refused = engine.submit(reserve("new", "sku", "dc", 1));
    assert!(
        matches!(
            refused,
            Err(SubmitError::MemoryExhausted {
                limit_bytes: 2_000,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(matches!(
        engine.submit(adjust("b", "sku", "dc", 1)),
        Err(SubmitError::MemoryExhausted { .. })
    ));
    // Reads, retries and the end of a hold go on.
    assert!(engine.check("sku", "dc").is_some());
    let retry = engine
        .submit(reserve("r1", "sku", "dc", 1))
        .expect("submits")
        .expect("accepted");
    assert!(retry.duplicate && retry.lsn == held.lsn);
    let committed = engine
        .submit(commit("r1"))
        .expect("submits")
        .expect("accepted");
    assert!(matches!(committed.outcome, Outcome::Committed { .. }));
    engine
        .submit(release("r2"))
        .expect("submits")
        .expect("accepted");
}

#[test]
fn an_archive_beside_a_log_without_a_checkpoint_is_refused() {
    let clock = Arc::new(ManualClock::new(T0));
    let archive = Arc::new(MemArchive::new());
    archive
        .put(&[inv_engine::archive::ArchivedBytes {
            key: inv_engine::archive::hold_key("r-elsewhere"),
            newest_at_ms: T0,
            value: vec![1],
        }])
        .expect("put");
    let recovered = Engine::recover_with(
        config(),
        Arc::new(MemLog::new()),
        clock,
        Some(archive),
        tiered(),
    );
    let Err(error) = recovered else {
        panic!("an archive of another log was accepted")
    };
    assert!(
        error.to_string().contains("no checkpoint"),
        "unclear error: {error}"
    );
}

#[test]
fn a_shard_emptied_by_eviction_is_rebuilt_and_its_open_holds_stay_found() {
    // One shard, so one eviction pass empties most of one table and rebuilds it
    // (`HoldShard::compact`), moving the open holds to new slots.
    let clock = Arc::new(ManualClock::new(T0));
    let config = LedgerConfig {
        shards: 1,
        ..LedgerConfig::default()
    };
    let archive = Arc::new(MemArchive::new());
    let tiered = Engine::recover_with(
        config,
        Arc::new(MemLog::new()),
        clock.clone(),
        Some(archive.clone() as Arc<dyn KeyArchive>),
        tiered(),
    )
    .expect("recovers");
    let plain = Engine::recover(config, Arc::new(MemLog::new()), clock.clone()).expect("recovers");
    let both = |command: Command| {
        let a = tiered.submit(command.clone());
        assert_eq!(a, plain.submit(command.clone()), "{command:?}");
        a
    };
    both(adjust("stock", "sku", "dc", 10_000))
        .expect("submits")
        .expect("accepted");
    for i in 0..2_000 {
        both(reserve(&format!("r-{i}"), "sku", "dc", 1))
            .expect("submits")
            .expect("granted");
        // Every 100th hold stays open (TTL 60 s); the rest end.
        if i % 100 != 0 {
            both(release(&format!("r-{i}")))
                .expect("submits")
                .expect("released");
        }
    }
    clock.advance_ms(KEY_MEMORY_MS + 1);
    tiered.checkpoint().expect("checkpoint");
    tiered.checkpoint().expect("checkpoint");
    let hold_entries = tiered.ledger().memory_use().hold_entries;
    assert_eq!(hold_entries, 20, "only the open holds stay in memory");
    tiered
        .check_invariants()
        .expect("invariants after the rebuild");
    // The open holds' expiry is still found: the sweep expires exactly them.
    clock.advance_ms(60_000);
    assert_eq!(tiered.expire_due(1_000).expect("expires"), 20);
    assert_eq!(plain.expire_due(1_000).expect("expires"), 20);
    for i in (0..2_000).step_by(37) {
        let id = format!("r-{i}");
        assert_eq!(
            tiered.reservation(&id).expect("the key archive reads"),
            plain.reservation(&id).expect("in memory"),
            "{id}"
        );
    }
    assert_eq!(tiered.digest(), plain.digest());
    tiered.check_invariants().expect("invariants");
}

/// An archive whose disk is full: every write fails.
struct FullDisk;

impl KeyArchive for FullDisk {
    fn put(&self, _: &[inv_engine::archive::ArchivedBytes]) -> Result<Vec<bool>, LogError> {
        Err(LogError::Io("no space left on device".into()))
    }
    fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, LogError> {
        Ok(None)
    }
    fn purge(&self, _: u64, _: usize) -> Result<Vec<Vec<u8>>, LogError> {
        Ok(Vec::new())
    }
    fn for_each_key(&self, _: &mut dyn FnMut(&[u8])) -> Result<(), LogError> {
        Ok(())
    }
    fn stats(&self) -> inv_engine::archive::ArchiveStats {
        inv_engine::archive::ArchiveStats::default()
    }
}

#[test]
fn a_failed_eviction_keeps_the_keys_in_memory_and_the_checkpoint_goes_on() {
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover_with(
        config(),
        Arc::new(MemLog::new()),
        clock.clone(),
        Some(Arc::new(FullDisk)),
        tiered(),
    )
    .expect("recovers");
    engine
        .submit(adjust("a", "sku", "dc", 5))
        .expect("submits")
        .expect("accepted");
    let held = engine
        .submit(reserve("r1", "sku", "dc", 1))
        .expect("submits")
        .expect("granted");
    engine
        .submit(release("r1"))
        .expect("submits")
        .expect("released");
    clock.advance_ms(KEY_MEMORY_MS + 1);
    let first = engine.checkpoint().expect("a checkpoint is written");
    let second = engine
        .checkpoint()
        .expect("and another, though eviction fails");
    assert!(second >= first);
    let failure = engine
        .take_eviction_failure()
        .expect("the failure is reported");
    assert!(failure.contains("no space left"), "{failure}");
    assert_eq!(engine.take_eviction_failure(), None, "reported once");
    assert_eq!(
        engine.ledger().memory_use().hold_entries,
        1,
        "still in memory"
    );
    let retry = engine
        .submit(reserve("r1", "sku", "dc", 1))
        .expect("submits")
        .expect("answered");
    assert!(retry.duplicate && retry.lsn == held.lsn);
}
