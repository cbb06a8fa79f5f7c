//! A data folder per supported log format, checked in: `tests/fixtures/log-v<N>/` holds the
//! folder a `RedbLog` of format `N` leaves behind (`ledger.redb` and its `LOG_CREATED`
//! marker), written by a fixed scenario. The tests open a copy with `RedbLog::open`, recover an
//! `Engine` from it, and compare everything with an engine that ran the same scenario on a
//! `MemLog` in this process: the events the file still holds (one at least of every kind of
//! fact), its checkpoint, the digest and the views a client reads. So a change to the file
//! layout, the event or checkpoint encoding, or to what replaying a fact does, fails here
//! against bytes an earlier build wrote, not only against bytes this build writes and reads
//! back itself.
//!
//! The scenario is fixed for a format version: once its folder is checked in, changing the
//! scenario (or a command builder it uses) breaks the comparison. A new format version gets a
//! new folder, written once by running this test with `INVENTORY_WRITE_GOLDEN=1` while no
//! folder exists for it; an existing folder is never rewritten, as for the encoding's golden
//! files (`log/encoding/golden.rs`).
#![cfg(feature = "redb")]

use inv_engine::checkpoint::Checkpoint;
use inv_engine::log::redb::{
    FILE_NAME, FORMAT_VERSION_KEY, LOG_FORMAT_VERSION, MARKER_FILE_NAME, META,
};
use inv_engine::testing::commands::{
    acknowledge_anomaly, adjust, commit, commit_lines, dispose, extend, record_return, release,
    reserve, reserve_lines, reserve_on, return_line, sale, set_safety_stock,
};
use inv_engine::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const T0: u64 = 1_700_000_000_000;
/// The environment variable that lets a missing fixture be written (never an existing one).
const WRITE_ENV: &str = "INVENTORY_WRITE_GOLDEN";
/// A fixture stays small: the checked-in file is read by every test run and kept by git
/// forever.
const FIXTURE_BYTES_MAX: u64 = 512 << 10;
/// Long enough that a hold outlives the whole scenario.
const LONG_TTL_MS: u64 = 600_000;
/// Short enough that a hold lapses at the next `LAPSE_MS` step.
const SHORT_TTL_MS: u64 = 5_000;
const LAPSE_MS: u64 = 10_000;

/// Every reservation id the scenario uses.
const RESERVATIONS: [&str; 15] = [
    "r1", "r-big", "r2", "r3", "r4", "r5", "r6", "r7", "r-big-2", "r8", "r9", "r10", "r11",
    "r-none", "r-after",
];
/// Every position the scenario touches (and one it never does).
const POSITIONS: [(&str, &str); 5] = [
    ("sku-1", "dc-1"),
    ("sku-2", "dc-1"),
    ("sku-1", "store-7"),
    ("sku-3", "dc-2"),
    ("sku-9", "dc-1"),
];
const STORES: [&str; 3] = ["st-1", "st-2", "st-none"];

fn fixture_dir(version: u64) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/log-v{version}"))
}

/// Who issues a command of the scenario: a principal per kind of client, and none for
/// adjustments, so events and holds with and without one are both in the file.
fn principal_of(command: &Command) -> Option<PrincipalName> {
    let name = match command.kind() {
        CommandKind::Adjust | CommandKind::Expire => return None,
        CommandKind::Reserve | CommandKind::Commit | CommandKind::Release | CommandKind::Extend => {
            "connector-web"
        }
        CommandKind::RecordSale | CommandKind::AcknowledgeStoreAnomaly => "store-system",
        _ => "erp-sync",
    };
    Some(PrincipalName::from(name))
}

/// A command of the scenario, which must be decided and not refused.
#[track_caller]
fn ok(engine: &Engine, command: Command) -> Receipt {
    let by = principal_of(&command);
    match engine.submit_by(command, by) {
        Ok(Ok(receipt)) => {
            assert!(
                !receipt.duplicate,
                "the scenario sends no retries: {receipt:?}"
            );
            receipt
        }
        other => panic!("the scenario's command was not decided: {other:?}"),
    }
}

/// The fixed scenario, on `engine` with its `clock` at `T0`: some of every kind of fact, a
/// checkpoint, then one at least of every kind of fact again (the tail the file keeps), ending
/// with open holds. Must not change once a fixture of the current format exists.
fn scenario(engine: &Engine, clock: &ManualClock) {
    assert_eq!(clock.now_ms(), T0);
    let granted = |r: &Receipt| matches!(r.outcome, Outcome::Granted { .. });

    // Before the checkpoint: its positions, holds (open and ended), keys, returns, stores.
    ok(engine, adjust("a1", "sku-1", "dc-1", 50));
    ok(engine, adjust("a2", "sku-2", "dc-1", 20));
    ok(engine, adjust("a3", "sku-1", "store-7", 5));
    ok(engine, set_safety_stock("ss1", "sku-1", "dc-1", 3));
    let r1 = ok(
        engine,
        reserve_lines(
            "r1",
            vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-2", "dc-1", 1)],
            LONG_TTL_MS,
        ),
    );
    assert!(granted(&r1), "{r1:?}");
    let big = ok(engine, reserve("r-big", "sku-2", "dc-1", 100));
    assert!(
        matches!(big.outcome, Outcome::Insufficient { .. }),
        "{big:?}"
    );
    let partial = ok(
        engine,
        commit_lines("r1", vec![Line::new("sku-1", "dc-1", 1)]),
    );
    assert_eq!(
        partial.outcome,
        Outcome::Committed {
            committed: vec![1, 0]
        }
    );
    assert!(granted(&ok(engine, reserve("r2", "sku-1", "dc-1", 4))));
    assert_eq!(ok(engine, release("r2")).outcome, Outcome::Released);
    assert_eq!(
        ok(engine, commit("r2")).outcome,
        Outcome::HoldAlreadyEnded(HoldState::Released)
    );
    assert!(granted(&ok(
        engine,
        reserve_on(
            "amazon-us",
            "r3",
            vec![Line::new("sku-2", "dc-1", 2)],
            SHORT_TTL_MS
        )
    )));
    // Extended well past the scenario's end: open when the checkpoint is taken and at the end.
    let extended = ok(engine, extend("r3", "x1", 120_000));
    assert!(matches!(extended.outcome, Outcome::Extended { .. }));
    ok(
        engine,
        sale(
            "st-1",
            "t1",
            1,
            T0 - 2_000,
            vec![Line::new("sku-1", "store-7", 1)],
        ),
    );
    ok(
        engine,
        sale(
            "st-1",
            "t3",
            3,
            T0 - 1_000,
            vec![Line::new("sku-1", "store-7", 2)],
        ),
    );
    // A number far beyond the bound: an anomaly the checkpoint carries.
    ok(
        engine,
        sale(
            "st-1",
            "t-jump",
            1_000_000,
            T0 - 500,
            vec![Line::new("sku-1", "store-7", 1)],
        ),
    );
    ok(
        engine,
        record_return(
            "ret1",
            vec![
                return_line("sku-1", "dc-1", 3, ReturnDisposition::Inspect),
                return_line("sku-2", "dc-1", 1, ReturnDisposition::Restock),
            ],
        ),
    );
    ok(
        engine,
        dispose("d1", "ret1", "sku-1", "dc-1", 1, DispositionAction::Restock),
    );
    assert!(granted(&ok(
        engine,
        reserve_lines("r4", vec![Line::new("sku-1", "store-7", 1)], SHORT_TTL_MS)
    )));
    assert!(granted(&ok(
        engine,
        reserve_lines("r5", vec![Line::new("sku-1", "dc-1", 1)], SHORT_TTL_MS)
    )));
    clock.advance_ms(LAPSE_MS);
    assert_eq!(ok(engine, release("r5")).outcome, Outcome::Expired);
    assert_eq!(engine.expire_due(100), Ok(1), "r4 lapsed");
    engine.checkpoint().expect("the checkpoint is written");

    // The tail: one at least of every kind of fact.
    clock.advance_ms(1_000);
    ok(engine, adjust("a4", "sku-3", "dc-2", 10));
    ok(engine, set_safety_stock("ss2", "sku-3", "dc-2", 1));
    assert!(granted(&ok(
        engine,
        reserve_lines("r6", vec![Line::new("sku-3", "dc-2", 2)], LONG_TTL_MS)
    )));
    assert!(granted(&ok(
        engine,
        reserve_on(
            "amazon-us",
            "r7",
            vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-3", "dc-2", 1)],
            LONG_TTL_MS,
        )
    )));
    let big = ok(engine, reserve("r-big-2", "sku-3", "dc-2", 50));
    assert!(
        matches!(big.outcome, Outcome::Insufficient { .. }),
        "{big:?}"
    );
    assert!(granted(&ok(engine, reserve("r8", "sku-2", "dc-1", 1))));
    assert_eq!(
        ok(engine, commit("r8")).outcome,
        Outcome::Committed { committed: vec![1] }
    );
    assert!(granted(&ok(engine, reserve("r9", "sku-1", "dc-1", 1))));
    assert_eq!(ok(engine, release("r9")).outcome, Outcome::Released);
    assert_eq!(
        ok(engine, commit("r9")).outcome,
        Outcome::HoldAlreadyEnded(HoldState::Released)
    );
    let extended = ok(engine, extend("r7", "x1", 900_000));
    assert!(matches!(extended.outcome, Outcome::Extended { .. }));
    ok(
        engine,
        sale(
            "st-1",
            "t2",
            2,
            T0 + 5_000,
            vec![Line::new("sku-2", "dc-1", 1)],
        ),
    );
    ok(
        engine,
        sale(
            "st-2",
            "t1",
            1,
            T0 + 6_000,
            vec![Line::new("sku-3", "dc-2", 1)],
        ),
    );
    ok(
        engine,
        sale(
            "st-2",
            "t-max",
            u64::MAX,
            T0 + 6_500,
            vec![Line::new("sku-3", "dc-2", 1)],
        ),
    );
    let dismissed = ok(
        engine,
        acknowledge_anomaly("st-2", "t-max", AnomalyAction::Dismiss),
    );
    assert!(
        matches!(
            dismissed.outcome,
            Outcome::StoreAnomalyAcknowledged {
                accepted: false,
                ..
            }
        ),
        "{dismissed:?}"
    );
    // The anomaly from before the checkpoint: the store renumbered.
    let accepted = ok(
        engine,
        acknowledge_anomaly("st-1", "t-jump", AnomalyAction::Accept),
    );
    assert_eq!(
        accepted.outcome,
        Outcome::StoreAnomalyAcknowledged {
            store_seq: 1_000_000,
            accepted: true,
            gaps_abandoned: 1_000_000 - 4,
        }
    );
    ok(
        engine,
        record_return(
            "ret2",
            vec![return_line("sku-3", "dc-2", 2, ReturnDisposition::Inspect)],
        ),
    );
    ok(
        engine,
        dispose("d2", "ret2", "sku-3", "dc-2", 1, DispositionAction::Scrap),
    );
    // A return from before the checkpoint, its units still in quarantine there.
    ok(
        engine,
        dispose("d3", "ret1", "sku-1", "dc-1", 1, DispositionAction::Scrap),
    );
    assert!(granted(&ok(
        engine,
        reserve_lines("r10", vec![Line::new("sku-2", "dc-1", 1)], SHORT_TTL_MS)
    )));
    assert!(granted(&ok(
        engine,
        reserve_lines("r11", vec![Line::new("sku-3", "dc-2", 1)], SHORT_TTL_MS)
    )));
    reconcile_a_snapshot(engine, clock);
    clock.advance_ms(LAPSE_MS);
    assert_eq!(ok(engine, commit("r11")).outcome, Outcome::Expired);
    assert_eq!(engine.expire_due(100), Ok(1), "r10 lapsed");
    // Ends with open holds: r3 (from before the checkpoint), r6 and r7.
    assert_eq!(engine.holds_open(), 3);
}

/// A DELTA snapshot of two positions, one a unit off (applied) and one far off (held, then
/// applied by a resolution).
fn reconcile_a_snapshot(engine: &Engine, clock: &ManualClock) {
    use inv_engine::reconcile::*;
    clock.advance_ms(1_000);
    let as_of_ms = clock.now_ms();
    let on_hand = |sku: &str| engine.check(sku, "dc-1").expect("stocked").on_hand;
    let rows = [
        ("sku-1", on_hand("sku-1") + 1),
        ("sku-2", on_hand("sku-2") + 50),
    ];
    clock.advance_ms(1_000);
    let store = MemSnapshotStore::new();
    let header = SnapshotHeader {
        snapshot_id: SnapshotId::from("snap-1"),
        as_of_ms,
        scope: SnapshotScope::All,
        mode: SnapshotMode::Delta,
        source: "erp".into(),
    };
    let mut push = Push::begin(&store, header, clock.now_ms(), 0).expect("a valid header");
    let rows: Vec<SnapshotRow> = rows
        .iter()
        .map(|&(sku, erp)| SnapshotRow {
            sku: Sku::from(sku),
            location: Location::from("dc-1"),
            on_hand: erp,
            safety_stock: None,
        })
        .collect();
    push.rows(&rows).expect("valid rows");
    let mut digest = RowDigest::default();
    rows.iter().for_each(|r| digest.add(r));
    push.finish(&digest.finish(), clock.now_ms())
        .expect("staged");
    let run = Reconciliation::start(engine, &store, "snap-1", TolerancePolicy::default(), false)
        .expect("starts");
    let report = run.finish().expect("finishes");
    assert_eq!((report.counts.applied, report.counts.held), (1, 1));
    let resolved = ok(
        engine,
        Command::ResolveDrift(ResolveDrift {
            snapshot_id: SnapshotId::from("snap-1"),
            sku: Sku::from("sku-2"),
            location: Location::from("dc-1"),
            action: DriftAction::Apply,
        }),
    );
    assert_eq!(
        resolved.outcome,
        Outcome::DriftResolved {
            drift: 50,
            applied: true
        }
    );
}

/// An engine that ran the scenario on a `MemLog`, its log, and its clock.
fn reference() -> (Engine, Arc<MemLog>, Arc<ManualClock>) {
    let log = Arc::new(MemLog::new());
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("an empty log recovers");
    scenario(&engine, &clock);
    (engine, log, clock)
}

/// Writes the fixture of this build's format into `dir`, which must not exist: the scenario
/// on a `RedbLog` in a folder beside it, closed, then renamed into place.
fn write_fixture(dir: &Path) {
    let parent = dir.parent().expect("fixtures folder");
    let building = parent.join(format!(
        "{}.writing-{}",
        dir.file_name().expect("a name").to_string_lossy(),
        std::process::id()
    ));
    let log = Arc::new(RedbLog::open(&building, RedbLogOptions::default()).expect("log opens"));
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("a new log recovers");
    scenario(&engine, &clock);
    drop(engine);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
        .expect("clean close");
    assert!(!dir.exists(), "{} appeared meanwhile", dir.display());
    std::fs::rename(&building, dir).expect("the fixture is put in place");
}

/// Serialises the tests' look at (and the writing of) the fixture folder.
static FIXTURES: Mutex<()> = Mutex::new(());

/// The fixture folder of `version`, written first if it is missing and `WRITE_ENV` is set.
fn fixture(version: u64) -> PathBuf {
    let _one_at_a_time = FIXTURES.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fixture_dir(version);
    if !dir.exists() {
        assert!(
            std::env::var_os(WRITE_ENV).is_some(),
            "{} is missing: log format version {version} has no fixture folder. If this \
             format version is new on purpose, write its fixture once with \
             `{WRITE_ENV}=1 cargo test -p inv-engine --test format_fixtures` and check the \
             folder in (an existing fixture is never rewritten).",
            dir.display()
        );
        assert_eq!(
            version, LOG_FORMAT_VERSION,
            "only this build's format can be written"
        );
        write_fixture(&dir);
    }
    dir
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A copy of the fixture folder in a temporary folder, so nothing touches the checked-in one.
fn copy_of(fixture: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    for name in entries(fixture) {
        std::fs::copy(fixture.join(&name), copy.path().join(&name)).expect("copy");
    }
    copy
}

/// `checkpoint` with every list in one order (the ledger lists some from hash tables).
fn sorted(mut checkpoint: Checkpoint) -> Checkpoint {
    checkpoint
        .positions
        .sort_by(|a, b| (&a.sku, &a.location).cmp(&(&b.sku, &b.location)));
    checkpoint
        .holds
        .sort_by(|a, b| a.reservation_id.cmp(&b.reservation_id));
    checkpoint.keys.sort_by(|a, b| a.key.cmp(&b.key));
    checkpoint
        .returns
        .sort_by(|a, b| a.return_id.cmp(&b.return_id));
    checkpoint.stores.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint
}

/// An index per kind of fact. Exhaustive on purpose: a new kind of fact does not compile until
/// it is given an index here, and then the scenario must record one.
fn kind_index(fact: &Fact) -> usize {
    match fact {
        Fact::HoldPlaced { .. } => 0,
        Fact::ReserveRefused { .. } => 1,
        Fact::HoldCommitted { .. } => 2,
        Fact::HoldReleased(_) => 3,
        Fact::HoldExtended { .. } => 4,
        Fact::HoldExpired(_) => 5,
        Fact::HoldAlreadyEnded { .. } => 6,
        Fact::SaleRecorded(_) => 7,
        Fact::ReturnRecorded(_) => 8,
        Fact::ReturnDisposed(_) => 9,
        Fact::StockAdjusted(_) => 10,
        Fact::SafetyStockSet(_) => 11,
        Fact::PositionReconciled { .. } => 12,
        Fact::DriftResolved { .. } => 13,
        Fact::SaleRecordedOutOfSequence { .. } => 14,
        Fact::StoreAnomalyAcknowledged { .. } => 15,
    }
}
const FACT_KINDS: usize = 16;

// Goal: a log folder written by an earlier build of this format recovers to exactly the ledger
// its scenario builds today. Method: open a copy of the checked-in folder, check what the file
// holds (a checkpoint, and after it a tail with every kind of fact) against a MemLog engine
// that ran the same scenario, recover, compare the digest and the views, then go on writing.
#[test]
fn the_fixture_of_this_format_recovers_to_the_ledger_of_its_scenario() {
    let fixture = fixture(LOG_FORMAT_VERSION);
    assert_eq!(entries(&fixture), vec![MARKER_FILE_NAME, FILE_NAME]);
    let bytes = std::fs::metadata(fixture.join(FILE_NAME))
        .expect("the log file")
        .len();
    assert!(bytes <= FIXTURE_BYTES_MAX, "the fixture is {bytes} bytes");
    let (reference, reference_log, reference_clock) = reference();
    let copy = copy_of(&fixture);

    // What the file holds: the checkpoint, and the events from it on, exactly.
    let log = Arc::new(RedbLog::open(copy.path(), RedbLogOptions::default()).expect("opens"));
    let checkpoint = reference_log
        .latest_checkpoint()
        .expect("kept")
        .expect("the scenario writes a checkpoint");
    let first = checkpoint.next_lsn;
    assert!(first > Lsn(1), "the checkpoint covers some events");
    assert_eq!(log.checkpoint_lsn(), Some(first));
    assert_eq!(log.durable_lsn(), reference.head_lsn());
    // The history window (a day by default) covers the whole scenario, so the file keeps the
    // events before the checkpoint too, for reconciliation.
    assert_eq!(checkpoint.history_start_lsn(), Lsn(1));
    let kept = log.read_from(Lsn(1), usize::MAX).expect("reads");
    let all = reference_log.read_from(Lsn(1), usize::MAX).expect("reads");
    assert_eq!(kept, all, "the file keeps every event of the window");
    let stored = log
        .latest_checkpoint()
        .expect("reads")
        .expect("a checkpoint");
    let cut = checkpoint
        .stores
        .iter()
        .find(|(id, _)| id.as_str() == "st-1")
        .expect("st-1 sold before the checkpoint");
    assert_eq!(
        cut.1.anomalies.len(),
        1,
        "the checkpoint carries the anomaly"
    );
    assert_eq!(sorted(stored), sorted(checkpoint));
    let tail = log.read_from(first, usize::MAX).expect("reads");
    let expected_tail = reference_log.read_from(first, usize::MAX).expect("reads");
    assert!(
        tail.len() > FACT_KINDS,
        "{} events after the checkpoint",
        tail.len()
    );
    assert_eq!(tail.len(), expected_tail.len());
    for (got, want) in tail.iter().zip(&expected_tail) {
        assert_eq!(got, want, "the event at lsn {} differs", want.lsn);
    }
    let mut kinds = [false; FACT_KINDS];
    for event in &tail {
        kinds[kind_index(&event.fact)] = true;
    }
    assert_eq!(
        kinds, [true; FACT_KINDS],
        "every kind of fact after the checkpoint"
    );

    // Recovered from it: the same ledger, seen the same way at the same time.
    let clock = Arc::new(ManualClock::new(reference_clock.now_ms()));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    engine.check_invariants().expect("invariants");
    assert_eq!(engine.head_lsn(), reference.head_lsn());
    assert_eq!(engine.digest(), reference.digest());
    assert_eq!(engine.ledger().positions(), reference.ledger().positions());
    for (sku, location) in POSITIONS {
        assert_eq!(
            engine.check(sku, location),
            reference.check(sku, location),
            "{sku}@{location}"
        );
    }
    for sku in ["sku-1", "sku-3"] {
        assert_eq!(engine.check_sku(sku), reference.check_sku(sku), "{sku}");
    }
    let available = engine.check("sku-1", "dc-1").expect("a position");
    assert_eq!(available.quarantined, 1, "{available:?}");
    for id in RESERVATIONS {
        assert_eq!(
            engine.reservation(id).expect("the key archive reads"),
            reference.reservation(id).expect("the key archive reads"),
            "{id}"
        );
    }
    assert_eq!(engine.holds_open(), 3);
    let open = engine
        .reservation("r7")
        .expect("the key archive reads")
        .expect("r7 is remembered");
    assert_eq!(
        (open.state, open.lines.len()),
        (HoldState::Open, 2),
        "{open:?}"
    );
    assert_eq!(
        engine
            .reservation("r3")
            .expect("the key archive reads")
            .map(|h| h.state),
        Some(HoldState::Open),
        "a hold from before the checkpoint is still open"
    );
    for store in STORES {
        assert_eq!(
            engine.store_status(store),
            reference.store_status(store),
            "{store}"
        );
    }
    let store = engine.store_status("st-1").expect("st-1 sold");
    assert_eq!(
        (store.contiguous_seq, store.newest_seq, store.missing_count),
        (1_000_000, 1_000_000, 0),
        "{store:?}"
    );
    let store = engine.store_status("st-2").expect("st-2 sold");
    assert_eq!(
        (store.newest_seq, store.missing_count, store.anomalies.len()),
        (1, 0, 0),
        "{store:?}"
    );
    assert_eq!(engine.store_statuses(), reference.store_statuses());

    // It goes on: a retry of a command from before the checkpoint is answered from the
    // checkpoint's keys, and a new command takes the next LSN, on both.
    let retry = reserve_lines(
        "r1",
        vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-2", "dc-1", 1)],
        LONG_TTL_MS,
    );
    let by = principal_of(&retry);
    let recovered = engine
        .submit_by(retry.clone(), by.clone())
        .expect("decided");
    assert_eq!(recovered, reference.submit_by(retry, by).expect("decided"));
    let recovered = recovered.expect("a duplicate");
    assert!(
        recovered.duplicate && recovered.lsn < first,
        "{recovered:?}"
    );
    // The same request by another principal: the key (and so the answer) is not theirs.
    let other = Some(PrincipalName::from("connector-other"));
    let retry = reserve_lines(
        "r1",
        vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-2", "dc-1", 1)],
        LONG_TTL_MS,
    );
    let refused = engine.submit_by(retry, other).expect("decided");
    assert!(
        matches!(&refused, Err(Refusal::KeyConflict { field, .. }) if field == "principal"),
        "{refused:?}"
    );
    let next = reserve("r-after", "sku-3", "dc-2", 1);
    let by = principal_of(&next);
    let recovered = engine.submit_by(next.clone(), by.clone()).expect("decided");
    assert_eq!(recovered, reference.submit_by(next, by).expect("decided"));
    assert_eq!(recovered.map(|r| r.lsn), Ok(reference.head_lsn()));
    assert_eq!(engine.digest(), reference.digest());
    drop(engine);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
        .expect("clean close");
}

// Goal: a file of an older format version is refused at open, not misread, and left as it
// was. Method: rewrite the format version row of a copy of the fixture to the version before
// this one (with redb directly, as a file of that version would have it), and open it.
#[test]
fn a_copy_of_the_fixture_marked_with_the_previous_format_is_refused() {
    let fixture = fixture(LOG_FORMAT_VERSION);
    let copy = copy_of(&fixture);
    let path = copy.path().join(FILE_NAME);
    let older = LOG_FORMAT_VERSION - 1;
    {
        let db = redb::Database::open(&path).expect("redb opens");
        let txn = db.begin_write().expect("write");
        {
            let mut meta = txn.open_table(META).expect("meta");
            let version = meta
                .insert(FORMAT_VERSION_KEY, older)
                .expect("insert")
                .map(|v| v.value());
            assert_eq!(
                version,
                Some(LOG_FORMAT_VERSION),
                "the fixture's own version"
            );
        }
        txn.commit().expect("commit");
    }
    let error = RedbLog::open(copy.path(), RedbLogOptions::default()).expect_err("refused");
    assert!(
        matches!(
            error,
            OpenError::OlderFormat { found, supported, .. }
                if found == older && supported == LOG_FORMAT_VERSION
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    // Left as it was.
    let db = redb::Database::open(&path).expect("redb opens");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let meta = txn.open_table(META).expect("meta");
    let version = redb::ReadableTable::get(&meta, FORMAT_VERSION_KEY)
        .expect("get")
        .map(|v| v.value());
    assert_eq!(version, Some(older));
}
