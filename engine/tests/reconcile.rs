//! Reconciliation with the ERP, end to end through the engine: what an ERP integration team
//! depends on. Each test pushes a snapshot the way the API does (`Push::begin`, chunks of
//! rows, `finish` with the row count and checksum), reconciles it (`Reconciliation`), and
//! checks the ledger, the log and the report against what the contract in issue 10 says:
//! `drift = erp_on_hand - engine_on_hand_at(as_of)`, where the engine's count at `as_of` is
//! today's on_hand less every on_hand change dated after `as_of`.
//!
//! The clock is a `ManualClock`; restarts use a real `RedbLog` and `RedbSnapshotStore` in a
//! temporary folder.

use inv_engine::reconcile::store::SNAPSHOTS_KEPT_MAX;
use inv_engine::reconcile::*;
use inv_engine::testing::commands::{adjust, commit, release, reserve, sale};
use inv_engine::*;
use std::path::Path;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;
const DC1: &str = "dc-1";
const DC2: &str = "dc-2";
const DAY_MS: u64 = 86_400_000;

// ------------------------------------------------------------------------------------------
// Set-up

struct Rig {
    engine: Engine,
    clock: Arc<ManualClock>,
    log: Arc<MemLog>,
    store: MemSnapshotStore,
}

fn rig() -> Rig {
    let log = Arc::new(MemLog::new());
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("an empty log recovers");
    Rig {
        engine,
        clock,
        log,
        store: MemSnapshotStore::new(),
    }
}

impl Rig {
    fn ok(&self, command: Command) -> Receipt {
        ok(&self.engine, command)
    }

    fn on_hand(&self, sku: &str, location: &str) -> i64 {
        on_hand(&self.engine, sku, location)
    }

    fn push(&self, header: SnapshotHeader, rows: &[SnapshotRow]) -> Result<Pushed, PushError> {
        push(&self.engine, &self.store, header, rows)
    }

    fn reconcile(&self, id: &str, policy: TolerancePolicy) -> Result<Report, ReconcileError> {
        Reconciliation::start(&self.engine, &self.store, id, policy, false)?.finish()
    }

    fn dry_run(&self, id: &str, policy: TolerancePolicy) -> Result<Report, ReconcileError> {
        Reconciliation::start(&self.engine, &self.store, id, policy, true)?.finish()
    }

    /// The reconciliation facts logged so far.
    fn reconciled_events(&self) -> Vec<Arc<Event>> {
        self.log
            .events()
            .into_iter()
            .filter(|e| matches!(e.fact, Fact::PositionReconciled { .. }))
            .collect()
    }

    /// A from-scratch replay of the log reaches the live digest.
    fn assert_replay_matches(&self) {
        let replayed = Engine::recover(
            LedgerConfig::default(),
            Arc::clone(&self.log) as Arc<dyn EventLog>,
            Arc::clone(&self.clock) as Arc<dyn Clock>,
        )
        .expect("replays");
        assert_eq!(replayed.digest(), self.engine.digest(), "replay differs");
        replayed.check_invariants().expect("replayed invariants");
        self.engine.check_invariants().expect("live invariants");
    }
}

fn ok(engine: &Engine, command: Command) -> Receipt {
    engine
        .submit(command.clone())
        .expect("accepted")
        .unwrap_or_else(|refusal| panic!("{command:?} refused: {refusal}"))
}

fn on_hand(engine: &Engine, sku: &str, location: &str) -> i64 {
    engine.check(sku, location).map_or(0, |a| a.on_hand)
}

fn header(id: &str, as_of_ms: u64, mode: SnapshotMode, scope: SnapshotScope) -> SnapshotHeader {
    SnapshotHeader {
        snapshot_id: SnapshotId::from(id),
        as_of_ms,
        scope,
        mode,
        source: "erp".into(),
    }
}

fn full(id: &str, as_of_ms: u64) -> SnapshotHeader {
    header(id, as_of_ms, SnapshotMode::Full, SnapshotScope::All)
}

fn delta(id: &str, as_of_ms: u64) -> SnapshotHeader {
    header(id, as_of_ms, SnapshotMode::Delta, SnapshotScope::All)
}

fn locations(names: &[&str]) -> SnapshotScope {
    SnapshotScope::Locations(names.iter().map(|n| Location::from(*n)).collect())
}

fn row(sku: &str, location: &str, on_hand: i64) -> SnapshotRow {
    SnapshotRow {
        sku: Sku::from(sku),
        location: Location::from(location),
        on_hand,
        safety_stock: None,
    }
}

fn summary(rows: &[SnapshotRow]) -> SnapshotSummary {
    let mut digest = RowDigest::default();
    rows.iter().for_each(|r| digest.add(r));
    digest.finish()
}

/// Pushes `rows` in chunks of two, as a client streams them, with the right summary.
fn push(
    engine: &Engine,
    store: &dyn SnapshotStore,
    header: SnapshotHeader,
    rows: &[SnapshotRow],
) -> Result<Pushed, PushError> {
    let now = engine.now_ms();
    let start = engine.ledger().history_start_ms_at(now);
    let mut push = Push::begin(store, header, now, start)?;
    for chunk in rows.chunks(2) {
        push.rows(chunk)?;
    }
    push.finish(&summary(rows), now)
}

/// Every drift applied, whatever its size.
fn apply_all() -> TolerancePolicy {
    TolerancePolicy {
        default: Tolerance {
            units: 0,
            percent_bp: 0,
            beyond: BeyondTolerance::Apply,
        },
        by_location: Default::default(),
    }
}

fn counts(report: &Report) -> (u64, u64, u64, u64, u64) {
    let c = &report.counts;
    (c.compared, c.matched, c.drifted, c.applied, c.held)
}

fn line<'r>(report: &'r Report, sku: &str, location: &str) -> &'r DriftLine {
    report
        .largest
        .iter()
        .find(|l| l.sku.as_str() == sku && l.location.as_str() == location)
        .unwrap_or_else(|| panic!("no drift line for ({sku}, {location}): {report:?}"))
}

// ------------------------------------------------------------------------------------------
// Drift found and repaired

#[test]
fn a_snapshot_equal_to_the_engine_gives_zero_drift_and_logs_nothing() {
    // Goal: the ERP agreeing with the engine changes nothing at all. Method: stock, a hold and
    // a sale, then a FULL snapshot with exactly the engine's on_hand; the log, the digest and
    // every position stay as they were.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 5));
    r.ok(reserve("h1", "sku-1", DC1, 3));
    r.ok(sale(
        "store-1",
        "t1",
        1,
        T0,
        vec![Line::new("sku-2", DC1, 1)],
    ));
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(
        full("s1", as_of),
        &[row("sku-1", DC1, 10), row("sku-2", DC1, 4)],
    )
    .expect("staged");
    let (digest, head) = (r.engine.digest(), r.engine.head_lsn());

    let report = r.reconcile("s1", TolerancePolicy::default()).expect("runs");
    assert_eq!(counts(&report), (2, 2, 0, 0, 0));
    assert_eq!(report.counts.drift_abs_total, 0);
    assert!(report.largest.is_empty());
    assert_eq!(r.engine.head_lsn(), head, "nothing logged");
    assert_eq!(r.engine.digest(), digest, "nothing changed");
    let stored = r.store.get("s1").expect("reads").expect("stored");
    assert_eq!(stored.status, SnapshotStatus::Reconciled);
    assert_eq!(stored.report.as_ref(), Some(&report));
}

#[test]
fn a_lower_erp_count_is_applied_and_availability_and_replay_follow() {
    // Goal: the ERP counted fewer units than the engine: on_hand is corrected by the drift
    // through one logged fact, open holds keep their units, availability follows, and a
    // replay reaches the same state. Method: 10 on hand, a hold of 3, ERP says 7.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(reserve("h1", "sku-1", DC1, 3));
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(delta("s1", as_of), &[row("sku-1", DC1, 7)])
        .expect("staged");

    let report = r.reconcile("s1", apply_all()).expect("runs");
    assert_eq!(counts(&report), (1, 0, 1, 1, 0));
    let drift = line(&report, "sku-1", DC1);
    assert_eq!(
        (drift.erp_on_hand, drift.engine_on_hand_at, drift.drift),
        (7, 10, -3)
    );
    assert!(!drift.held);
    let availability = r.engine.check("sku-1", DC1).expect("exists");
    assert_eq!(
        (
            availability.on_hand,
            availability.reserved,
            availability.available
        ),
        (7, 3, 4)
    );
    let events = r.reconciled_events();
    assert_eq!(events.len(), 1, "one fact per drifted position");
    let Fact::PositionReconciled {
        reconcile, drift, ..
    } = &events[0].fact
    else {
        unreachable!()
    };
    assert_eq!((reconcile.erp_on_hand, *drift), (7, -3));
    assert_eq!(reconcile.snapshot_id.as_str(), "s1");
    r.assert_replay_matches();
}

#[test]
fn a_sale_dated_after_as_of_but_logged_before_the_reconciliation_is_not_counted_twice() {
    // Goal: the headline case. The ERP counted at `as_of`; a till sale at as_of + 1 ms
    // reaches the engine before the snapshot does. The ERP's count does not include it, the
    // engine's today does: no drift, and on_hand keeps the sale. The same for a commit and an
    // adjustment decided after `as_of`.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 10));
    r.ok(adjust("a3", "sku-3", DC1, 10));
    r.ok(reserve("h1", "sku-2", DC1, 4));
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(500);
    r.ok(sale(
        "store-1",
        "t1",
        1,
        as_of + 1,
        vec![Line::new("sku-1", DC1, 2)],
    ));
    r.ok(commit("h1"));
    r.ok(adjust("a4", "sku-3", DC1, -1));
    r.clock.advance_ms(500);
    r.push(
        full("s1", as_of),
        &[
            row("sku-1", DC1, 10),
            row("sku-2", DC1, 10),
            row("sku-3", DC1, 10),
        ],
    )
    .expect("staged");
    let report = r.reconcile("s1", apply_all()).expect("runs");
    assert_eq!(counts(&report), (3, 3, 0, 0, 0), "{report:?}");
    assert_eq!(r.on_hand("sku-1", DC1), 8);
    assert_eq!(r.on_hand("sku-2", DC1), 6);
    assert_eq!(r.on_hand("sku-3", DC1), 9);
    assert!(r.reconciled_events().is_empty());
}

#[test]
fn a_sale_before_as_of_shows_as_drift_only_if_the_erp_did_not_see_it() {
    // Goal: a sale the till rang before `as_of` belongs to the ERP's count. If the ERP saw
    // it, there is no drift; if it did not, the snapshot shows the units (drift) and the
    // ERP, as the system of record, wins. Method: the sale arrives late (logged after
    // `as_of`, dated before it); one position's ERP count includes it, the other's not.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 10));
    r.clock.advance_ms(10_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(2_000);
    r.ok(sale(
        "store-1",
        "t1",
        1,
        as_of - 5_000,
        vec![Line::new("sku-1", DC1, 2), Line::new("sku-2", DC1, 2)],
    ));
    r.push(
        delta("s1", as_of),
        &[row("sku-1", DC1, 8), row("sku-2", DC1, 10)],
    )
    .expect("staged");
    let report = r.reconcile("s1", apply_all()).expect("runs");
    assert_eq!(counts(&report), (2, 1, 1, 1, 0));
    let unseen = line(&report, "sku-2", DC1);
    assert_eq!((unseen.engine_on_hand_at, unseen.drift), (8, 2));
    assert_eq!(r.on_hand("sku-1", DC1), 8);
    assert_eq!(r.on_hand("sku-2", DC1), 10);
}

#[test]
fn holds_placed_and_ended_while_a_run_is_in_progress_are_untouched_and_counted_once() {
    // Goal: the run does not stop the shop. Holds open before it keep their units, holds
    // placed during it are not disturbed, and a commit during it (after `as_of`) is counted
    // exactly once. Method: start a run, then reserve and commit between its steps.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 20));
    r.ok(reserve("before", "sku-1", DC1, 2));
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(delta("s1", as_of), &[row("sku-1", DC1, 15)])
        .expect("staged");
    let mut run =
        Reconciliation::start(&r.engine, &r.store, "s1", apply_all(), false).expect("starts");
    r.ok(reserve("during", "sku-1", DC1, 3));
    r.ok(reserve("sold", "sku-1", DC1, 1));
    r.ok(commit("sold"));
    while run.step(1).expect("steps") {}
    let report = run.finish().expect("finishes");
    // At as_of the engine had 20; the ERP 15: drift -5, on top of the commit after as_of.
    assert_eq!(line(&report, "sku-1", DC1).drift, -5);
    let availability = r.engine.check("sku-1", DC1).expect("exists");
    assert_eq!((availability.on_hand, availability.reserved), (14, 5));
    assert_eq!(
        r.engine
            .reservation("during")
            .expect("the key archive reads")
            .map(|h| h.state),
        Some(HoldState::Open)
    );
    r.ok(release("during"));
    r.assert_replay_matches();
}

// ------------------------------------------------------------------------------------------
// Scope and mode

#[test]
fn full_counts_omitted_positions_in_scope_as_zero_and_delta_only_the_rows() {
    // Goal: FULL speaks for every position in its scope (one it omits is 0 at the ERP);
    // DELTA only for its rows; a location outside the scope is never touched. Method: three
    // positions, two in dc-1 and one in dc-2; a snapshot of dc-1 lists only sku-1.
    let scenario = |mode: SnapshotMode| {
        let r = rig();
        r.ok(adjust("a1", "sku-1", DC1, 10));
        r.ok(adjust("a2", "sku-2", DC1, 5));
        r.ok(adjust("a3", "sku-1", DC2, 7));
        r.clock.advance_ms(1_000);
        let as_of = r.clock.now_ms();
        r.clock.advance_ms(1_000);
        r.push(
            header("s1", as_of, mode, locations(&[DC1])),
            &[row("sku-1", DC1, 9)],
        )
        .expect("staged");
        let report = r.reconcile("s1", apply_all()).expect("runs");
        (r, report)
    };

    let (r, report) = scenario(SnapshotMode::Full);
    assert_eq!(counts(&report), (2, 0, 2, 2, 0));
    assert_eq!(report.counts.omitted, 1);
    assert_eq!(line(&report, "sku-2", DC1).drift, -5);
    assert_eq!(r.on_hand("sku-1", DC1), 9);
    assert_eq!(r.on_hand("sku-2", DC1), 0);
    assert_eq!(r.on_hand("sku-1", DC2), 7, "out of scope");
    r.assert_replay_matches();

    let (r, report) = scenario(SnapshotMode::Delta);
    assert_eq!(counts(&report), (1, 0, 1, 1, 0));
    assert_eq!(report.counts.omitted, 0);
    assert_eq!(r.on_hand("sku-1", DC1), 9);
    assert_eq!(r.on_hand("sku-2", DC1), 5, "not listed");
    assert_eq!(r.on_hand("sku-1", DC2), 7, "out of scope");
}

#[test]
fn a_row_outside_the_scope_is_refused_naming_the_row() {
    let r = rig();
    let error = r
        .push(
            header("s1", T0, SnapshotMode::Full, locations(&[DC1])),
            &[row("sku-1", DC1, 1), row("sku-1", DC2, 1)],
        )
        .expect_err("refused");
    let PushError::Invalid(invalid) = error else {
        panic!("{error:?}")
    };
    let invalid = invalid.first().expect("a violation").clone();
    assert_eq!(invalid.field, "rows[1].location");
    assert_eq!(r.store.get("s1"), Ok(None), "nothing staged");
}

// ------------------------------------------------------------------------------------------
// Pushing

#[test]
fn an_incomplete_or_miscounted_push_stages_nothing_and_the_id_stays_usable() {
    // Goal: only a complete push stages a snapshot. Method: a summary with one row too many,
    // one with a wrong checksum, a stream that breaks off (the push dropped), a duplicate
    // position; none stages anything, and a correct push of the same id afterwards works.
    let r = rig();
    let rows = [row("sku-1", DC1, 1), row("sku-2", DC1, 2)];
    let now = r.clock.now_ms();

    let mut push = Push::begin(&r.store, full("s1", now), now, 0).expect("begins");
    push.rows(&rows).expect("rows");
    let mut miscounted = summary(&rows);
    miscounted.rows += 1;
    let error = push.finish(&miscounted, now).expect_err("miscounted");
    assert!(matches!(error, PushError::Incomplete(_)), "{error:?}");
    assert_eq!(r.store.get("s1"), Ok(None));

    let mut push = Push::begin(&r.store, full("s1", now), now, 0).expect("begins again");
    push.rows(&rows).expect("rows");
    let mut wrong = summary(&rows);
    wrong.checksum = summary(&rows[..1]).checksum;
    let error = push.finish(&wrong, now).expect_err("wrong checksum");
    assert!(matches!(error, PushError::Incomplete(_)), "{error:?}");
    assert_eq!(r.store.get("s1"), Ok(None));

    let mut push = Push::begin(&r.store, full("s1", now), now, 0).expect("begins again");
    push.rows(&rows[..1]).expect("rows");
    drop(push);
    assert_eq!(r.store.get("s1"), Ok(None));

    let mut push = Push::begin(&r.store, full("s1", now), now, 0).expect("begins again");
    push.rows(&rows[..1]).expect("rows");
    let error = push.rows(&rows[..1]).expect_err("the same position twice");
    assert!(
        matches!(
            error,
            PushError::Store(StoreError::DuplicateRow { index: 1, .. })
        ),
        "{error:?}"
    );
    drop(push);
    assert_eq!(r.store.get("s1"), Ok(None));
    assert!(matches!(
        r.reconcile("s1", apply_all()),
        Err(ReconcileError::NotFound(_))
    ));

    let pushed = r
        .push(full("s1", now), &rows)
        .expect("a complete push stages");
    assert!(!pushed.duplicate);
    assert_eq!(pushed.snapshot.summary.rows, 2);
    assert_eq!(pushed.snapshot.status, SnapshotStatus::Staged);
}

#[test]
fn a_re_push_of_the_same_id_answers_the_original_or_names_what_differs() {
    // Goal: the snapshot id is the idempotency key. Method: push, push again identically
    // (the original answer, nothing written), then with another row and with another header
    // field (a conflict naming the field); after a reconciliation the identical retry still
    // answers the stored snapshot, now reconciled.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 3));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    let rows = [row("sku-1", DC1, 1), row("sku-2", DC1, 2)];
    let first = r.push(full("s1", as_of), &rows).expect("staged");
    let again = r.push(full("s1", as_of), &rows).expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.snapshot, first.snapshot);

    let other_rows = [row("sku-1", DC1, 1), row("sku-2", DC1, 3)];
    let error = r
        .push(full("s1", as_of), &other_rows)
        .expect_err("conflict");
    assert_eq!(
        error,
        PushError::Conflict {
            snapshot_id: "s1".into(),
            field: "rows".into()
        }
    );
    let error = r.push(full("s1", as_of - 1), &rows).expect_err("conflict");
    assert_eq!(
        error,
        PushError::Conflict {
            snapshot_id: "s1".into(),
            field: "header.as_of_ms".into()
        }
    );
    let error = r.push(delta("s1", as_of), &rows).expect_err("conflict");
    assert_eq!(
        error,
        PushError::Conflict {
            snapshot_id: "s1".into(),
            field: "header.mode".into()
        }
    );

    let report = r.reconcile("s1", apply_all()).expect("runs");
    let retry = r.push(full("s1", as_of), &rows).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.snapshot.status, SnapshotStatus::Reconciled);
    assert_eq!(retry.snapshot.report, Some(report));
}

#[test]
fn an_as_of_outside_the_history_window_or_in_the_future_is_refused_naming_the_window() {
    // Goal: the engine can only compute its count at times it still has the history for
    // (24 h by default), and a count from the future is a mistake. Method: a fresh engine
    // (its log reaches back to its first event, but the window is the contract), a day and
    // a minute later; then a snapshot from two minutes ahead.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 3));
    r.clock.advance_ms(DAY_MS + 60_000);
    r.ok(adjust("a2", "sku-1", DC1, 1));
    let now = r.clock.now_ms();

    let error = r
        .push(full("old", now - DAY_MS - 1), &[row("sku-1", DC1, 1)])
        .expect_err("too old");
    let PushError::Invalid(invalid) = error else {
        panic!("{error:?}")
    };
    let invalid = invalid.first().expect("a violation").clone();
    assert_eq!(invalid.field, "as_of_ms");
    assert!(
        invalid.reason.contains("history") && invalid.reason.contains("24 h"),
        "the reason names the window: {}",
        invalid.reason
    );

    let error = r
        .push(full("ahead", now + 120_000), &[row("sku-1", DC1, 1)])
        .expect_err("from the future");
    let PushError::Invalid(invalid) = error else {
        panic!("{error:?}")
    };
    let invalid = invalid.first().expect("a violation").clone();
    assert_eq!(invalid.field, "as_of_ms");
    assert!(invalid.reason.contains("skew"), "{}", invalid.reason);

    // Just inside the window, and within the skew: accepted.
    r.push(
        full("recent", now - DAY_MS + 1_000),
        &[row("sku-1", DC1, 4)],
    )
    .expect("within the window");
    r.push(
        full("slightly-ahead", now + 30_000),
        &[row("sku-1", DC1, 4)],
    )
    .expect("within the skew");
}

#[test]
fn a_snapshot_that_ages_out_of_the_window_while_staged_is_refused_and_marked_failed() {
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 3));
    let as_of = r.clock.now_ms();
    r.push(full("s1", as_of), &[row("sku-1", DC1, 1)])
        .expect("staged");
    r.clock.advance_ms(DAY_MS + 1_000);
    r.ok(adjust("a2", "sku-1", DC1, 1));
    let head = r.engine.head_lsn();
    let error = r.reconcile("s1", apply_all()).expect_err("too old now");
    assert!(matches!(error, ReconcileError::TooOld { .. }), "{error:?}");
    assert!(matches!(
        r.store.get("s1").expect("reads").expect("kept").status,
        SnapshotStatus::Failed(_)
    ));
    assert_eq!(r.engine.head_lsn(), head, "nothing applied");
    assert_eq!(r.on_hand("sku-1", DC1), 4);
}

// ------------------------------------------------------------------------------------------
// Tolerance and review

#[test]
fn a_drift_beyond_tolerance_is_held_then_applied_or_dismissed() {
    // Goal: a large drift is not applied blindly: it is held and reported, on_hand unchanged,
    // until a reviewer applies or dismisses it; each verdict is logged, a retry answers the
    // first verdict, and a second verdict is refused. Method: two positions 50 units off, a
    // third 1 unit off (within the default 2 units / 1%).
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 100));
    r.ok(adjust("a2", "sku-2", DC1, 100));
    r.ok(adjust("a3", "sku-3", DC1, 100));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(
        delta("s1", as_of),
        &[
            row("sku-1", DC1, 50),
            row("sku-2", DC1, 150),
            row("sku-3", DC1, 99),
        ],
    )
    .expect("staged");
    let report = r.reconcile("s1", TolerancePolicy::default()).expect("runs");
    assert_eq!(counts(&report), (3, 0, 3, 1, 2));
    assert!(line(&report, "sku-1", DC1).held);
    assert_eq!(r.on_hand("sku-1", DC1), 100, "held, not applied");
    assert_eq!(r.on_hand("sku-2", DC1), 100, "held, not applied");
    assert_eq!(r.on_hand("sku-3", DC1), 99, "within tolerance: applied");
    assert_eq!(r.engine.ledger().held_drifts(Some("s1")).len(), 2);

    let resolve = |sku: &str, action| {
        Command::ResolveDrift(ResolveDrift {
            snapshot_id: SnapshotId::from("s1"),
            sku: Sku::from(sku),
            location: Location::from(DC1),
            action,
        })
    };
    let applied = r.ok(resolve("sku-1", DriftAction::Apply));
    assert_eq!(
        applied.outcome,
        Outcome::DriftResolved {
            drift: -50,
            applied: true
        }
    );
    assert_eq!(r.on_hand("sku-1", DC1), 50);
    let dismissed = r.ok(resolve("sku-2", DriftAction::Dismiss));
    assert_eq!(
        dismissed.outcome,
        Outcome::DriftResolved {
            drift: 50,
            applied: false
        }
    );
    assert_eq!(r.on_hand("sku-2", DC1), 100);
    assert!(r.engine.ledger().held_drifts(None).is_empty());

    let retry = r.ok(resolve("sku-1", DriftAction::Apply));
    assert!(retry.duplicate);
    assert_eq!(retry.outcome, applied.outcome);
    assert_eq!(r.on_hand("sku-1", DC1), 50, "a retry applies nothing");
    let other = r
        .engine
        .submit(resolve("sku-1", DriftAction::Dismiss))
        .expect("accepted");
    assert!(
        matches!(&other, Err(Refusal::KeyConflict { field, .. }) if field == "action"),
        "{other:?}"
    );
    let never = r
        .engine
        .submit(resolve("sku-3", DriftAction::Apply))
        .expect("accepted");
    assert!(
        matches!(never, Err(Refusal::DriftNotHeld { .. })),
        "{never:?}"
    );
    r.assert_replay_matches();
}

#[test]
fn a_held_drift_is_superseded_by_the_next_snapshot_of_the_position() {
    // Goal: once the ERP counts again, an older held drift is no longer the question: the new
    // count decides, and the old one can no longer be applied on top.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 100));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(delta("s1", as_of), &[row("sku-1", DC1, 50)])
        .expect("staged");
    r.reconcile("s1", TolerancePolicy::default()).expect("runs");
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(delta("s2", as_of), &[row("sku-1", DC1, 100)])
        .expect("staged");
    let report = r.reconcile("s2", TolerancePolicy::default()).expect("runs");
    assert_eq!(counts(&report), (1, 1, 0, 0, 0));
    assert_eq!(
        report.counts.superseded, 1,
        "the report says what it superseded"
    );
    assert!(r.engine.ledger().held_drifts(None).is_empty());
    let late = r
        .engine
        .submit(Command::ResolveDrift(ResolveDrift {
            snapshot_id: SnapshotId::from("s1"),
            sku: Sku::from("sku-1"),
            location: Location::from(DC1),
            action: DriftAction::Apply,
        }))
        .expect("accepted");
    assert!(
        matches!(late, Err(Refusal::DriftNotHeld { .. })),
        "{late:?}"
    );
    assert_eq!(r.on_hand("sku-1", DC1), 100);
    r.assert_replay_matches();
}

// ------------------------------------------------------------------------------------------
// Never twice

#[test]
fn reconciling_a_snapshot_again_is_refused_and_applies_nothing_twice() {
    // Goal: a reconciled snapshot cannot be applied a second time, and the same counts sent
    // again under a new id find no drift (the first correction is dated at `as_of`).
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    let rows = [row("sku-1", DC1, 7)];
    r.push(full("s1", as_of), &rows).expect("staged");
    r.reconcile("s1", apply_all()).expect("runs");
    assert_eq!(r.on_hand("sku-1", DC1), 7);
    let (head, digest) = (r.engine.head_lsn(), r.engine.digest());

    let again = r.reconcile("s1", apply_all()).expect_err("refused");
    assert!(
        matches!(again, ReconcileError::NotStaged { .. }),
        "{again:?}"
    );
    r.push(full("s1-resent", as_of), &rows).expect("staged");
    let report = r.reconcile("s1-resent", apply_all()).expect("runs");
    assert_eq!(counts(&report), (1, 1, 0, 0, 0));
    assert_eq!(r.engine.head_lsn(), head);
    assert_eq!(r.engine.digest(), digest);
}

#[test]
fn an_older_snapshot_reconciled_after_a_newer_one_does_not_apply_the_drift_again() {
    // Goal: snapshots can arrive out of order (a delayed nightly export after the morning's
    // cycle count). The newer count already corrected the position; the older count says
    // nothing new about it and must not apply the same missing units a second time.
    // Method: 10 in the engine, the ERP had 8 all along (two units lost before either
    // count); the newer snapshot corrects to 8, then the older one is reconciled.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.clock.advance_ms(1_000);
    let older = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    let newer = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(delta("older", older), &[row("sku-1", DC1, 8)])
        .expect("staged");
    r.push(delta("newer", newer), &[row("sku-1", DC1, 8)])
        .expect("staged");
    r.reconcile("newer", apply_all()).expect("runs");
    assert_eq!(r.on_hand("sku-1", DC1), 8);
    let outcome = r.reconcile("older", apply_all());
    assert_eq!(r.on_hand("sku-1", DC1), 8, "{outcome:?}");
    r.assert_replay_matches();
}

// ------------------------------------------------------------------------------------------
// Dry run

#[test]
fn a_dry_run_reports_the_drift_and_changes_nothing() {
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 10));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(
        full("s1", as_of),
        &[SnapshotRow {
            safety_stock: Some(3),
            ..row("sku-1", DC1, 4)
        }],
    )
    .expect("staged");
    let (head, digest) = (r.engine.head_lsn(), r.engine.digest());
    let report = r.dry_run("s1", TolerancePolicy::default()).expect("runs");
    assert!(report.dry_run);
    assert_eq!(counts(&report), (2, 0, 2, 0, 2));
    assert_eq!(report.counts.safety_stock_set, 1);
    assert_eq!(r.engine.head_lsn(), head, "nothing logged");
    assert_eq!(r.engine.digest(), digest, "nothing changed");
    let stored = r.store.get("s1").expect("reads").expect("kept");
    assert_eq!(stored.status, SnapshotStatus::Staged);
    assert_eq!(stored.report, None);

    // The real run afterwards still has the rows and finds the same.
    let real = r.reconcile("s1", TolerancePolicy::default()).expect("runs");
    assert_eq!(real.counts, report.counts);
    assert_eq!(
        r.engine.check("sku-1", DC1).map(|a| a.safety_stock),
        Some(3)
    );
}

// ------------------------------------------------------------------------------------------
// Restarts

struct Durable {
    engine: Engine,
    log: Arc<RedbLog>,
    store: RedbSnapshotStore,
}

fn open_durable(dir: &Path, clock: &Arc<ManualClock>) -> Durable {
    let log = Arc::new(RedbLog::open(dir, RedbLogOptions::default()).expect("log opens"));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    let store = RedbSnapshotStore::open(dir).expect("store opens");
    Durable { engine, log, store }
}

fn close_durable(durable: Durable) {
    let Durable { engine, log, store } = durable;
    drop(engine);
    drop(store);
    Arc::into_inner(log)
        .expect("the engine held the only other reference")
        .close()
        .expect("closes");
}

/// The reconciliation facts in a durable log, by position.
fn reconciled_positions(log: &RedbLog) -> Vec<(String, i64)> {
    log.read_from(Lsn(1), usize::MAX)
        .expect("reads")
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::PositionReconciled {
                reconcile, drift, ..
            } => Some((reconcile.sku.to_string(), *drift)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restart_between_staging_and_reconciling_loses_nothing() {
    // Goal: a staged snapshot is durable; an upload cut short by the restart is gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let d = open_durable(dir.path(), &clock);
    ok(&d.engine, adjust("a1", "sku-1", DC1, 10));
    let as_of = clock.now_ms();
    clock.advance_ms(1_000);
    push(
        &d.engine,
        &d.store,
        delta("s1", as_of),
        &[row("sku-1", DC1, 6)],
    )
    .expect("staged");
    // An upload in progress at the restart: forgotten.
    let mut cut = Push::begin(&d.store, delta("cut", as_of), clock.now_ms(), 0).expect("begins");
    cut.rows(&[row("sku-1", DC1, 1)]).expect("rows");
    std::mem::forget(cut);
    close_durable(d);

    let d = open_durable(dir.path(), &clock);
    assert_eq!(d.store.get("cut"), Ok(None));
    assert!(
        d.store
            .rows_after(&SnapshotId::from("cut"), None, 10)
            .expect("reads")
            .is_empty(),
        "the cut upload's rows are swept"
    );
    let report = Reconciliation::start(&d.engine, &d.store, "s1", apply_all(), false)
        .expect("starts")
        .finish()
        .expect("finishes");
    assert_eq!(counts(&report), (1, 0, 1, 1, 0));
    assert_eq!(on_hand(&d.engine, "sku-1", DC1), 6);
    let digest = d.engine.digest();
    close_durable(d);

    let d = open_durable(dir.path(), &clock);
    assert_eq!(d.engine.digest(), digest, "replay reproduces it");
    let stored = d.store.get("s1").expect("reads").expect("kept");
    assert_eq!(stored.status, SnapshotStatus::Reconciled);
    assert_eq!(stored.report, Some(report));
    close_durable(d);
}

#[test]
fn a_restart_in_the_middle_of_a_run_resumes_and_applies_nothing_twice() {
    // Goal: a reconciliation cut short by a restart resumes from the start: positions it
    // corrected answer with their first outcome, the rest are corrected once, and the
    // report counts every position once. Method: 40 drifted positions, a run dropped after
    // a few steps of 5 positions, the engine closed and reopened, the run started again.
    const POSITIONS: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let d = open_durable(dir.path(), &clock);
    for i in 0..POSITIONS {
        ok(
            &d.engine,
            adjust(&format!("a{i}"), &format!("sku-{i:02}"), DC1, 10),
        );
    }
    clock.advance_ms(1_000);
    let as_of = clock.now_ms();
    clock.advance_ms(1_000);
    let rows: Vec<SnapshotRow> = (0..POSITIONS)
        .map(|i| row(&format!("sku-{i:02}"), DC1, (i % 7) as i64))
        .collect();
    push(&d.engine, &d.store, full("s1", as_of), &rows).expect("staged");
    {
        let mut run =
            Reconciliation::start(&d.engine, &d.store, "s1", apply_all(), false).expect("starts");
        for _ in 0..4 {
            assert!(run.step(5).expect("steps"));
        }
        // A sale after as_of lands between the restarts.
        clock.advance_ms(1_000);
        ok(
            &d.engine,
            sale(
                "store-1",
                "t1",
                1,
                clock.now_ms(),
                vec![Line::new("sku-00", DC1, 1)],
            ),
        );
    }
    let partly = reconciled_positions(&d.log).len();
    assert!(partly > 0 && partly < POSITIONS, "{partly} applied before");
    close_durable(d);

    let d = open_durable(dir.path(), &clock);
    assert_eq!(
        d.store.get("s1").expect("reads").expect("kept").status,
        SnapshotStatus::Reconciling
    );
    let report = Reconciliation::start(&d.engine, &d.store, "s1", apply_all(), false)
        .expect("resumes")
        .finish()
        .expect("finishes");
    assert_eq!(report.counts.compared, POSITIONS as u64);
    assert_eq!(report.counts.applied, POSITIONS as u64);
    let applied = reconciled_positions(&d.log);
    assert_eq!(applied.len(), POSITIONS, "each position corrected once");
    for (i, r) in rows.iter().enumerate() {
        let sold = i64::from(i == 0);
        assert_eq!(
            on_hand(&d.engine, r.sku.as_str(), DC1),
            r.on_hand - sold,
            "{}",
            r.sku
        );
    }
    let digest = d.engine.digest();
    close_durable(d);
    let d = open_durable(dir.path(), &clock);
    assert_eq!(d.engine.digest(), digest);
    close_durable(d);
}

// ------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn writes_from_another_thread_during_a_run_give_an_exact_result() {
    // Goal: the run never stops writes, and misses or double-counts none of them. Method: a
    // writer thread adjusts, sells and commits holds on the same positions while the run
    // steps one position at a time; every write is dated after `as_of` (the clock only moves
    // forward), so the final on_hand of each position must be the ERP's count plus the net
    // of what the writer did, and a replay must agree.
    const SKUS: usize = 8;
    let r = rig();
    for i in 0..SKUS {
        r.ok(adjust(&format!("a{i}"), &format!("sku-{i}"), DC1, 1_000));
    }
    r.clock.advance_ms(1_000);
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1);
    let rows: Vec<SnapshotRow> = (0..SKUS)
        .map(|i| row(&format!("sku-{i}"), DC1, 900 + i as i64))
        .collect();
    r.push(full("s1", as_of), &rows).expect("staged");

    for round in 0..5 {
        let id = format!("s-round-{round}");
        let net = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut net = [0i64; SKUS];
                for n in 0..400usize {
                    let i = n % SKUS;
                    let sku = format!("sku-{i}");
                    r.clock.advance_ms(1);
                    match n % 4 {
                        0 => {
                            ok(&r.engine, adjust(&format!("w{round}-{n}"), &sku, DC1, 3));
                            net[i] += 3;
                        }
                        1 => {
                            let at = r.clock.now_ms();
                            let line = vec![Line::new(&sku, DC1, 2)];
                            let seq = (round * 1_000 + n) as u64 + 1;
                            ok(
                                &r.engine,
                                sale("store-w", &format!("t{seq}"), seq, at, line),
                            );
                            net[i] -= 2;
                        }
                        2 => {
                            let hold = format!("h{round}-{n}");
                            ok(&r.engine, reserve(&hold, &sku, DC1, 1));
                            ok(&r.engine, commit(&hold));
                            net[i] -= 1;
                        }
                        _ => {
                            ok(&r.engine, reserve(&format!("o{round}-{n}"), &sku, DC1, 1));
                        }
                    }
                    std::thread::yield_now();
                }
                net
            });
            let reconciler = s.spawn(|| {
                let source = if round == 0 {
                    "s1".to_owned()
                } else {
                    id.clone()
                };
                let mut run =
                    Reconciliation::start(&r.engine, &r.store, &source, apply_all(), false)
                        .expect("starts");
                while run.step(1).expect("steps") {
                    std::thread::yield_now();
                }
                run.finish().expect("finishes")
            });
            let report = reconciler.join().expect("reconciler");
            assert_eq!(report.counts.compared, SKUS as u64);
            writer.join().expect("writer")
        });
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                r.on_hand(row.sku.as_str(), DC1),
                row.on_hand + net[i],
                "round {round}: {} = ERP + what happened after as_of",
                row.sku
            );
        }
        // The next round: the same counts at a new as_of, taken now (nothing in flight).
        let as_of = r.clock.now_ms();
        r.clock.advance_ms(1);
        let next = format!("s-round-{}", round + 1);
        r.push(full(&next, as_of), &rows).expect("staged");
    }
    r.assert_replay_matches();
}

#[test]
fn a_second_run_while_one_is_in_progress_is_refused_and_leaves_the_first_intact() {
    // Goal: one reconciliation at a time. A dry run asked for while the scheduled run works
    // must not take over the ledger's tap (the first run's later positions would all be
    // refused), nor stop it when it is refused. Method: start a run, try a dry run and a
    // second real run of another snapshot, then finish the first and check its result.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 10));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    let rows = [row("sku-1", DC1, 8), row("sku-2", DC1, 9)];
    r.push(delta("s1", as_of), &rows).expect("staged");
    r.push(delta("s2", as_of), &rows).expect("staged");
    let mut run =
        Reconciliation::start(&r.engine, &r.store, "s1", apply_all(), false).expect("starts");
    assert!(run.step(1).expect("scans"));
    let dry = Reconciliation::start(&r.engine, &r.store, "s1", apply_all(), true).map(|_| ());
    assert_eq!(dry, Err(ReconcileError::AlreadyRunning));
    let second = Reconciliation::start(&r.engine, &r.store, "s2", apply_all(), false).map(|_| ());
    assert_eq!(second, Err(ReconcileError::AlreadyRunning));
    assert_eq!(
        r.store.get("s2").expect("reads").expect("kept").status,
        SnapshotStatus::Staged,
        "a refused run changes nothing"
    );
    // A step of zero positions still makes progress.
    while run.step(0).expect("steps") {}
    let report = run.finish().expect("finishes");
    assert_eq!(counts(&report), (2, 0, 2, 2, 0));
    assert_eq!(r.on_hand("sku-1", DC1), 8);
    assert_eq!(r.on_hand("sku-2", DC1), 9);
}

#[test]
fn an_upload_of_a_stored_id_is_refused_by_both_stores_and_leaves_its_rows() {
    // Goal: regression. `Push::begin` looked the id up, then began an upload; a push of the
    // same id finishing in between had its rows deleted (memory) or mixed with the new
    // upload's (redb), and its record overwritten. The stores now refuse an upload of a
    // stored id themselves, and the push answers it as a retry. Method: the interleaving
    // replayed by hand: a push finishes, then an upload of its id begins.
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbSnapshotStore::open(dir.path()).expect("opens");
    let mem = MemSnapshotStore::new();
    let stores: [&dyn SnapshotStore; 2] = [&mem, &redb];
    let r = rig();
    let rows = [row("sku-1", DC1, 1), row("sku-2", DC1, 2)];
    for store in stores {
        push(&r.engine, store, full("s1", T0), &rows).expect("staged");
        assert_eq!(
            store.begin_upload(&SnapshotId::from("s1")),
            Err(StoreError::AlreadyStored("s1".into()))
        );
        let kept = store
            .rows_after(&SnapshotId::from("s1"), None, 10)
            .expect("reads");
        assert_eq!(kept, rows.to_vec(), "the stored rows are intact");
        let again = push(&r.engine, store, full("s1", T0), &rows).expect("a retry");
        assert!(again.duplicate);
    }
}

#[test]
fn a_checkpoint_and_restart_keep_the_history_a_later_reconciliation_reads() {
    // Goal: the events after `as_of` that a checkpoint covers are still found after a
    // restart (the log keeps the history window), so a sale after `as_of` is not counted
    // twice across a restart. Method: RedbLog with checkpoints; a sale after as_of, a
    // checkpoint, a restart, then the snapshot pushed and reconciled.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let d = open_durable(dir.path(), &clock);
    ok(&d.engine, adjust("a1", "sku-1", DC1, 10));
    clock.advance_ms(60_000);
    let as_of = clock.now_ms();
    clock.advance_ms(60_000);
    ok(
        &d.engine,
        sale(
            "store-1",
            "t1",
            1,
            clock.now_ms(),
            vec![Line::new("sku-1", DC1, 3)],
        ),
    );
    clock.advance_ms(60_000);
    for i in 0..5 {
        ok(&d.engine, adjust(&format!("b{i}"), "sku-2", DC1, 1));
        clock.advance_ms(1_000);
    }
    d.engine.checkpoint().expect("checkpoint");
    close_durable(d);

    let d = open_durable(dir.path(), &clock);
    push(
        &d.engine,
        &d.store,
        delta("s1", as_of),
        &[row("sku-1", DC1, 10), row("sku-2", DC1, 0)],
    )
    .expect("staged");
    let report = Reconciliation::start(&d.engine, &d.store, "s1", apply_all(), false)
        .expect("starts")
        .finish()
        .expect("finishes");
    assert_eq!(counts(&report), (2, 2, 0, 0, 0), "{report:?}");
    assert_eq!(on_hand(&d.engine, "sku-1", DC1), 7);
    assert_eq!(on_hand(&d.engine, "sku-2", DC1), 5);
    close_durable(d);
}

#[test]
fn the_tolerance_of_a_location_overrides_the_default() {
    // Goal: a store whose counts are noisy can be given a wider tolerance (or none) than the
    // warehouses. Method: the same 5-unit drift at two locations; the default holds it, the
    // override for dc-2 applies it.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 100));
    r.ok(adjust("a2", "sku-1", DC2, 100));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(
        delta("s1", as_of),
        &[row("sku-1", DC1, 95), row("sku-1", DC2, 95)],
    )
    .expect("staged");
    let policy = TolerancePolicy {
        default: Tolerance::default(),
        by_location: [(Location::from(DC2), apply_all().default)].into(),
    };
    let report = r.reconcile("s1", policy).expect("runs");
    assert_eq!(counts(&report), (2, 0, 2, 1, 1));
    assert!(line(&report, "sku-1", DC1).held);
    assert!(!line(&report, "sku-1", DC2).held);
    assert_eq!(r.on_hand("sku-1", DC1), 100);
    assert_eq!(r.on_hand("sku-1", DC2), 95);
}

#[test]
fn reports_are_listed_newest_first_in_pages_and_survive_a_restart() {
    // Goal: ListReconciliations pages through the snapshots newest first, and what it lists
    // is the same after a restart. Method: five snapshots staged a second apart, three
    // reconciled, listed two at a time from both stores.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let d = open_durable(dir.path(), &clock);
    let mem = MemSnapshotStore::new();
    ok(&d.engine, adjust("a1", "sku-1", DC1, 10));
    for i in 0..5 {
        let as_of = clock.now_ms();
        clock.advance_ms(1_000);
        let rows = [row("sku-1", DC1, 10 - i)];
        for store in [&mem as &dyn SnapshotStore, &d.store] {
            push(&d.engine, store, delta(&format!("s{i}"), as_of), &rows).expect("staged");
        }
        if i < 3 {
            for store in [&mem as &dyn SnapshotStore, &d.store] {
                Reconciliation::start(&d.engine, store, &format!("s{i}"), apply_all(), true)
                    .expect("starts")
                    .finish()
                    .expect("dry run");
            }
            Reconciliation::start(&d.engine, &d.store, &format!("s{i}"), apply_all(), false)
                .expect("starts")
                .finish()
                .expect("runs");
        }
    }
    let pages = |store: &dyn SnapshotStore| -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut before: Option<(u64, SnapshotId)> = None;
        loop {
            let page = store
                .list(before.as_ref().map(|(at, id)| (*at, id)), 2)
                .expect("lists");
            let Some(last) = page.last() else {
                return pages;
            };
            before = Some((last.staged_at_ms, last.header.snapshot_id.clone()));
            pages.push(
                page.iter()
                    .map(|s| s.header.snapshot_id.to_string())
                    .collect(),
            );
        }
    };
    let expected = vec![
        vec!["s4".to_owned(), "s3".to_owned()],
        vec!["s2".to_owned(), "s1".to_owned()],
        vec!["s0".to_owned()],
    ];
    assert_eq!(pages(&mem), expected);
    assert_eq!(pages(&d.store), expected);
    let before: Vec<StoredSnapshot> = d.store.list(None, 10).expect("lists");
    close_durable(d);
    let d = open_durable(dir.path(), &clock);
    assert_eq!(d.store.list(None, 10).expect("lists"), before);
    let statuses: Vec<SnapshotStatus> = before.iter().map(|s| s.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            SnapshotStatus::Staged,
            SnapshotStatus::Staged,
            SnapshotStatus::Reconciled,
            SnapshotStatus::Reconciled,
            SnapshotStatus::Reconciled
        ]
    );
    close_durable(d);
}

#[test]
fn a_full_snapshot_whose_rows_went_missing_empties_nothing() {
    // Goal: regression. A FULL snapshot counts every position in scope that it does not
    // list as 0. If its rows were gone from the store (forgotten to make room while it was
    // being reconciled, before that was fixed), the run found no rows and set every
    // position in scope to 0. The run now checks it read as many rows as the push counted.
    let r = rig();
    r.ok(adjust("a1", "sku-1", DC1, 10));
    r.ok(adjust("a2", "sku-2", DC1, 10));
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    r.push(
        full("s1", as_of),
        &[row("sku-1", DC1, 10), row("sku-2", DC1, 10)],
    )
    .expect("staged");
    r.store
        .drop_rows(&SnapshotId::from("s1"))
        .expect("rows dropped");
    let head = r.engine.head_lsn();
    let error = r.reconcile("s1", apply_all()).expect_err("refused");
    assert!(
        matches!(&error, ReconcileError::Unexpected(reason) if reason.contains("0 of")),
        "{error:?}"
    );
    assert_eq!(r.engine.head_lsn(), head, "nothing applied");
    assert_eq!(r.on_hand("sku-1", DC1), 10);
    assert_eq!(r.on_hand("sku-2", DC1), 10);
}

#[test]
fn the_store_forgets_only_finished_snapshots_and_refuses_a_push_when_full_of_staged_ones() {
    // Goal: regression. Beyond `SNAPSHOTS_KEPT_MAX` the store forgot the oldest snapshot
    // whatever its state: a staged count was lost, and a snapshot being reconciled lost
    // its rows mid-run. Now only reconciled or failed snapshots are forgotten, and while the
    // limit is all staged snapshots a push is refused with a reason. Method: the limit of
    // staged (empty DELTA) snapshots, one more refused; one reconciled, then a push
    // succeeds and forgets that one, not a staged one.
    let r = rig();
    let as_of = r.clock.now_ms();
    r.clock.advance_ms(1_000);
    for i in 0..SNAPSHOTS_KEPT_MAX {
        r.push(delta(&format!("s{i:05}"), as_of), &[])
            .expect("staged");
    }
    let error = r.push(delta("one-more", as_of), &[]).expect_err("full");
    assert_eq!(
        error,
        PushError::Store(StoreError::Full(SNAPSHOTS_KEPT_MAX))
    );
    r.clock.advance_ms(1_000);
    r.reconcile("s05000", apply_all()).expect("runs");
    r.push(delta("one-more", as_of), &[]).expect("room now");
    assert_eq!(
        r.store.get("s05000"),
        Ok(None),
        "the finished one is forgotten"
    );
    assert!(
        r.store.get("s00000").expect("reads").is_some(),
        "the oldest staged one is kept"
    );
    assert_eq!(
        r.store.list(None, usize::MAX).expect("lists").len(),
        SNAPSHOTS_KEPT_MAX
    );
    let error = r
        .push(delta("and-another", as_of), &[])
        .expect_err("full again");
    assert_eq!(
        error,
        PushError::Store(StoreError::Full(SNAPSHOTS_KEPT_MAX))
    );
}

#[test]
fn a_run_against_a_full_log_queue_resumes_at_the_row_it_stopped_and_applies_each_once() {
    // Goal: back-pressure from the log (a full queue answers `Busy`) pauses a run without
    // skipping or repeating a position. Method: a RedbLog that queues one event at a time,
    // 30 drifted positions stepped 7 at a time, a step that answers Busy is simply taken
    // again; every position must be corrected exactly once.
    const POSITIONS: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let options = RedbLogOptions {
        queue_events_max: 1,
        batch_events_max: 1,
        ..RedbLogOptions::default()
    };
    let log = Arc::new(RedbLog::open(dir.path(), options).expect("log opens"));
    let engine = Engine::recover(
        LedgerConfig::default(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .expect("recovers");
    let store = RedbSnapshotStore::open(dir.path()).expect("store opens");
    for i in 0..POSITIONS {
        ok(
            &engine,
            adjust(&format!("a{i}"), &format!("sku-{i:02}"), DC1, 10),
        );
    }
    let as_of = clock.now_ms();
    clock.advance_ms(1_000);
    let rows: Vec<SnapshotRow> = (0..POSITIONS)
        .map(|i| SnapshotRow {
            safety_stock: (i % 5 == 0).then_some(1),
            ..row(&format!("sku-{i:02}"), DC1, i as i64)
        })
        .collect();
    push(&engine, &store, delta("s1", as_of), &rows).expect("staged");
    let mut run = Reconciliation::start(&engine, &store, "s1", apply_all(), false).expect("starts");
    let mut busy = 0;
    loop {
        match run.step(7) {
            Ok(true) => {}
            Ok(false) => break,
            Err(ReconcileError::Busy) => busy += 1,
            Err(error) => panic!("{error}"),
        }
    }
    let report = run.finish().expect("finishes");
    assert_eq!(
        report.counts.applied,
        POSITIONS as u64 - 1,
        "sku-10 matched"
    );
    assert_eq!(report.counts.safety_stock_set, 6);
    let applied = reconciled_positions(&log);
    assert_eq!(
        applied.len(),
        POSITIONS - 1,
        "each position corrected once ({busy} busy)"
    );
    for (i, r) in rows.iter().enumerate() {
        let availability = engine.check(r.sku.as_str(), DC1).expect("exists");
        assert_eq!(availability.on_hand, i as i64, "{}", r.sku);
        assert_eq!(
            availability.safety_stock,
            i64::from(i % 5 == 0),
            "{}",
            r.sku
        );
    }
    println!("steps answered busy: {busy}");
    close_durable(Durable { engine, log, store });
}
