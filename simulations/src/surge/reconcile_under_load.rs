//! `reconcile-under-load`: a large FULL ERP snapshot is pushed and reconciled while the hot
//! path runs at a fixed rate. It measures whether reconciliation disturbs the hot path, and
//! proves that the drift reconciliation finds is exactly the drift the ERP's counts carry.
//!
//! 1. `snapshot_rows` positions at a location of the run's own are stocked with
//!    [`STOCK`] units each. The API has no batch Adjust, and a million Adjusts (one fsync'd
//!    event each) take minutes, so the stock arrives as restocked returns: RecordReturns
//!    batches of [`STOCKING_RETURNS`] returns of 100 lines, on the bulk lane. The snapshot's
//!    `as_of` is taken right after, before any hot-path call, so every hot-path event falls
//!    after `as_of`.
//! 2. `callers` callers share `hot_rate` calls a second, on the first [`HOT_POSITIONS_MAX`]
//!    positions only (the hot set): Check 40%, Reserve one unit 30%, and 30% end the caller's
//!    oldest open hold (Commit 70%, Release 30%). This runs for `calm_secs` (the *before*
//!    window), through the push and the reconciliation (*during*), and `calm_secs` more
//!    (*after*). The report also splits *during* into its *push* and *reconcile* halves.
//!    Each answer counts in the phase it arrives in, however short the phase (a release
//!    build pushes and reconciles the CI size in tens of milliseconds).
//! 3. The push: header (FULL, the run's location as scope), chunks of [`CHUNK_ROWS`] rows
//!    built as they are sent, and a summary whose checksum is the engine's own
//!    [`RowDigest`](inv_engine::reconcile::RowDigest), as the CLI computes it. Every row is
//!    `STOCK`, the ERP's count at `as_of`, except the planted drift, on cold positions only
//!    (never touched by the hot path): every 100th cold position drifts by 1-2 units (within
//!    the default tolerance of 2 units / 1%: applied), every 1,000th (offset by 550) by 5-30
//!    units (beyond it: held for review). Then `Reconcile` runs for that snapshot.
//!
//! The verification, through the API:
//! - the report's counts: compared = rows, drifted = applied + held planted, applied and held
//!   each exactly as planted, omitted 0, matched = the rest; every one of its largest drifts
//!   is a planted one with the planted drift;
//! - `ListHeldDrifts` of the snapshot lists exactly the planted beyond-tolerance set, each with
//!   its drift, the ERP's count and the engine's count at `as_of` (= `STOCK`);
//! - `Check` of every position: a planted applied drift shows as exactly `STOCK + drift` (cold
//!   positions: nothing else moved them); a held one as `STOCK`; a hot position as `STOCK -`
//!   the units the client was told it committed (the ERP counted `STOCK` at `as_of`, so the
//!   commits after it are not counted twice); every other position as `STOCK`; `reserved = 0`
//!   everywhere (every hold ended) and availability never negative;
//! - every hold is in the state its last answer left it in (GetReservation).
//!
//! It assumes the server's default tolerance (2 units, 1%, beyond: hold); against a `--target`
//! configured otherwise the counts will not match, and the verification says so.

mod erp;

use super::market::{self, CartEnd, Ledger, lock};
use super::verify::Verdict;
use super::{Env, Outcome, Rng, WindowRow, call, now_ms, verify_against};
use crate::pb;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::Code;

/// Units of every position at stocking, and the ERP's count of an undrifted one.
const STOCK: i64 = 100;
/// Most positions the hot path touches.
const HOT_POSITIONS_MAX: usize = 1_000;
/// Returns per stocking RecordReturns batch; each has [`inv_engine::limits::LINES_MAX`] lines,
/// so a batch stocks 10,000 positions (about 0.5 MB on the wire).
const STOCKING_RETURNS: usize = 100;
/// Stocking batches in flight: the server's default bulk budget.
const STOCKING_TASKS: usize = 2;
/// Rows per pushed chunk (the CLI's default).
const CHUNK_ROWS: usize = 5_000;
/// Every this many cold positions, one drifts within tolerance (applied)...
const APPLIED_EVERY: usize = 100;
/// ... and every this many, at this offset, one drifts beyond it (held).
const HELD_EVERY: usize = 1_000;
/// The offset is not a multiple of [`APPLIED_EVERY`], so no position is picked twice.
const HELD_OFFSET: usize = 550;
/// Hold TTL: long enough that no hold of the hot path expires during a full-size run.
const TTL_MS: u64 = 300_000;
/// Open holds a caller keeps before it must end one.
const OPEN_HOLDS_MAX: usize = 16;
/// How often the pacer hands out permits.
const PACE_TICK: Duration = Duration::from_millis(5);
/// Reconcile tries while another reconciliation (the server's schedule) is running.
const RECONCILE_TRIES_MAX: u32 = 600;
/// How long one Reconcile call may take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(1_800);

/// The hot-path RPCs whose latency is compared across the windows.
const HOT_OPS: [&str; 4] = ["check", "reserve", "commit", "release"];

/// How many positions the hot path touches for `rows` positions.
pub fn hot_positions(rows: usize) -> usize {
    (rows / 10).clamp(1, HOT_POSITIONS_MAX)
}

/// The drift planted on position `k` of `rows` (0 for none), and whether it is beyond the
/// default tolerance. Only cold positions (`k >= hot_positions(rows)`) drift.
pub fn planted(seed: u64, rows: usize, k: usize) -> Option<(i64, bool)> {
    let hot = hot_positions(rows);
    let cold = k.checked_sub(hot)?;
    let mut rng = Rng::new(seed ^ 0xD81F_7000 ^ (k as u64).wrapping_mul(0x85EB_CA6B));
    let sign = if rng.below(2) == 0 { 1 } else { -1 };
    if cold % APPLIED_EVERY == 0 {
        Some((sign * (1 + rng.below(2) as i64), false))
    } else if cold % HELD_EVERY == HELD_OFFSET {
        Some((sign * (5 + rng.below(26) as i64), true))
    } else {
        None
    }
}

/// The counts [`planted`] gives for `rows` positions: (applied, held).
pub fn planted_counts(rows: usize) -> (u64, u64) {
    let cold = rows - hot_positions(rows);
    let applied = cold.div_ceil(APPLIED_EVERY);
    let held = (cold + HELD_EVERY - 1 - HELD_OFFSET) / HELD_EVERY;
    (applied as u64, held as u64)
}

pub async fn run(env: &Arc<Env>) -> Result<Outcome> {
    let o = &env.options;
    let rows = o.snapshot_rows;
    // Short names, unique to the run (its prefix ends in a hex stamp): stocking's Adjust ids
    // name the sku and the location after the run prefix, within the 128-byte id limit.
    let stamp = env.run.rsplit('-').next().unwrap_or("0").to_owned();
    let location = format!("erp-{stamp}");
    let skus: Arc<Vec<String>> = Arc::new((0..rows).map(|k| format!("rul-{stamp}-{k}")).collect());
    let hot: Arc<Vec<String>> = Arc::new(skus[..hot_positions(rows)].to_vec());

    let stocking = Instant::now();
    stock_by_returns(env, &skus, &location).await?;
    let stocking_s = stocking.elapsed().as_secs_f64();
    // The ERP's watermark: after every stocking event, before any hot-path event (the pause
    // keeps the two apart on a millisecond clock).
    let as_of_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let permits = Arc::new(Semaphore::new(0));
    let traffic_t0 = Instant::now();
    let t0_s = env.recorder.elapsed_s();
    env.recorder.begin_phase("before");
    let pacer = {
        let (permits, stop, rate) = (Arc::clone(&permits), Arc::clone(&stop), o.hot_rate);
        let debt_max = o.callers * 2;
        tokio::spawn(async move {
            let mut issued = 0u64;
            let mut tick = tokio::time::interval(PACE_TICK);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let due = (rate * traffic_t0.elapsed().as_secs_f64()) as u64;
                let room = debt_max.saturating_sub(permits.available_permits());
                permits.add_permits(((due - issued) as usize).min(room));
                issued = due;
            }
            permits.close();
        })
    };
    let callers: Vec<_> = (0..o.callers)
        .map(|t| {
            let (env, hot, ledger, permits, location) = (
                Arc::clone(env),
                Arc::clone(&hot),
                Arc::clone(&ledger),
                Arc::clone(&permits),
                location.clone(),
            );
            tokio::spawn(async move { hot_path(&env, t, &hot, &location, &ledger, &permits).await })
        })
        .collect();

    env.stage("hot path, before (ms)", (o.calm_secs * 1e3) as u64);
    calm(env, o.calm_secs).await;
    let push_from_s = env.recorder.elapsed_s();
    env.recorder.begin_phase("push");

    let snapshot_id = env.id("snapshot", as_of_ms);
    let pushed = erp::push(env, &snapshot_id, as_of_ms, &location, &skus).await;
    let reconcile_from_s = env.recorder.elapsed_s();
    env.recorder.begin_phase("reconcile");
    let reconciled = match &pushed {
        Ok(_) => Some(reconcile(env, &snapshot_id).await),
        Err(_) => None,
    };
    let after_from_s = env.recorder.elapsed_s();
    env.recorder.begin_phase("after");
    env.stage("hot path, after (ms)", (o.calm_secs * 1e3) as u64);
    calm(env, o.calm_secs).await;
    let after_to_s = env.recorder.elapsed_s();
    env.recorder.end_phases();
    stop.store(true, Ordering::Relaxed);
    pacer.await.context("the pacer panicked")?;
    let mut hot_calls = 0u64;
    for caller in callers {
        hot_calls += caller.await.context("a hot-path caller panicked")?;
    }
    let push_s = pushed?;
    let (reconciliation, reconcile_s) = reconciled.expect("reconciled after a push")?;

    // The expected state: the hot positions as the client's ledger says, the drift applied.
    let mut verdict = Verdict::new();
    let mut stocked: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut planted_map: BTreeMap<(String, String), (i64, bool)> = BTreeMap::new();
    for (k, sku) in skus.iter().enumerate() {
        stocked.insert((sku.clone(), location.clone()), STOCK);
        if let Some(drift) = planted(o.seed, rows, k) {
            planted_map.insert((sku.clone(), location.clone()), drift);
        }
    }
    let (applied_planted, held_planted) = planted_counts(rows);
    verdict.check(
        planted_map.values().filter(|d| !d.1).count() as u64 == applied_planted
            && planted_map.values().filter(|d| d.1).count() as u64 == held_planted,
        || "the planted drift does not match its own count".to_owned(),
    );
    let mut expected = {
        let ledger = lock(&ledger);
        for failure in &ledger.failures {
            verdict.check(false, || failure.clone());
        }
        ledger.expected(&stocked)
    };
    drop(stocked);
    for (key, (drift, held)) in &planted_map {
        if !held {
            let position = expected
                .positions
                .get_mut(key)
                .expect("every row is stocked");
            position.on_hand += drift;
        }
    }

    let counts = check_report(
        &mut verdict,
        &reconciliation,
        rows,
        &planted_map,
        (applied_planted, held_planted),
    );
    let held_listed = list_held(env, &snapshot_id).await?;
    check_held(&mut verdict, &held_listed, &planted_map, as_of_ms);
    let (last, observed) = verify_against(env, &expected).await?;
    verdict.merge("after the reconciliation", last);

    let mut outcome = Outcome::default();
    outcome.observed(&expected, &observed);
    drop(observed);
    let ledger = lock(&ledger);
    outcome.fact("snapshot_rows", rows);
    outcome.fact("hot_positions", hot.len());
    outcome.fact("hot_rate_per_s", o.hot_rate as u64);
    outcome.fact("hot_calls", hot_calls);
    outcome.fact("granted", ledger.granted);
    outcome.fact("rejected", ledger.rejected);
    outcome.fact("committed_units", ledger.committed_units);
    outcome.fact("holds", ledger.holds.len());
    outcome.fact("planted_applied", applied_planted);
    outcome.fact("planted_held", held_planted);
    outcome.fact("compared", counts.compared);
    outcome.fact("matched", counts.matched);
    outcome.fact("drifted", counts.drifted);
    outcome.fact("applied", counts.applied);
    outcome.fact("held", counts.held);
    outcome.fact("omitted", counts.omitted);
    outcome.fact("held_listed", held_listed.len());
    outcome.fact("stocking_ms", (stocking_s * 1e3) as u64);
    outcome.fact("push_ms", (push_s * 1e3) as u64);
    outcome.fact("push_rows_per_s", (rows as f64 / push_s.max(1e-9)) as u64);
    outcome.fact("reconcile_ms", (reconcile_s * 1e3) as u64);
    let server_ms = reconciliation
        .report
        .as_ref()
        .map_or(0, |r| r.finished_at_ms.saturating_sub(r.started_at_ms));
    outcome.fact("reconcile_server_ms", server_ms);
    outcome.notes.push(format!(
        "stocked {rows} positions in {stocking_s:.1} s; pushed the FULL snapshot in {push_s:.1} \
         s ({:.0} rows/s); Reconcile answered in {reconcile_s:.1} s (the server's report: {} \
         ms); hot path at {:.0} calls/s on {} positions",
        rows as f64 / push_s.max(1e-9),
        server_ms,
        o.hot_rate,
        hot.len()
    ));

    for (window, phases, from_s, to_s) in [
        ("before", &["before"][..], t0_s, push_from_s),
        (
            "during",
            &["push", "reconcile"][..],
            push_from_s,
            after_from_s,
        ),
        ("after", &["after"][..], after_from_s, after_to_s),
        // The two halves of "during", to tell which one disturbs the hot path.
        ("push", &["push"][..], push_from_s, reconcile_from_s),
        (
            "reconcile",
            &["reconcile"][..],
            reconcile_from_s,
            after_from_s,
        ),
    ] {
        for op in HOT_OPS {
            let Some((answers, q)) = env.recorder.quantiles_in(op, phases, &[0.5, 0.99, 0.999])
            else {
                continue;
            };
            outcome.windows.push(WindowRow {
                window: window.to_owned(),
                op: op.to_owned(),
                from_s,
                to_s,
                answers,
                p50_us: q[0],
                p99_us: q[1],
                p999_us: q[2],
            });
        }
    }
    let ratio = |op: &str| -> String {
        let p99 = |w: &str| {
            outcome
                .windows
                .iter()
                .find(|r| r.op == op && r.window == w)
                .map(|r| r.p99_us as f64)
        };
        match (p99("before"), p99("during")) {
            (Some(before), Some(during)) if before > 0.0 => format!("{:.2}x", during / before),
            _ => "-".to_owned(),
        }
    };
    outcome.notes.push(format!(
        "hot-path p99 during the push and reconciliation, as a multiple of before: reserve {}, \
         check {}, commit {}",
        ratio("reserve"),
        ratio("check"),
        ratio("commit")
    ));
    outcome.verdict = verdict;
    Ok(outcome)
}

/// Stocks every position with [`STOCK`] units as restocked returns (see the module doc),
/// [`STOCKING_TASKS`] batches at a time; a refused batch (the bulk budget in use) is resent by
/// [`call`], and every return must come back recorded (a resend's as a duplicate).
async fn stock_by_returns(env: &Arc<Env>, skus: &Arc<Vec<String>>, location: &str) -> Result<()> {
    env.stage("stocking", skus.len() as u64);
    let per_batch = STOCKING_RETURNS * inv_engine::limits::LINES_MAX;
    let batches = skus.len().div_ceil(per_batch);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..STOCKING_TASKS.min(batches) {
        let (env, skus, location) = (Arc::clone(env), Arc::clone(skus), location.to_owned());
        set.spawn(async move {
            let client = env.client(t);
            for b in (t..batches).step_by(STOCKING_TASKS) {
                let batch = &skus[b * per_batch..((b + 1) * per_batch).min(skus.len())];
                let returns: Vec<pb::Return> = batch
                    .chunks(inv_engine::limits::LINES_MAX)
                    .enumerate()
                    .map(|(r, lines)| pb::Return {
                        return_id: env.id("stock", format!("{b}-{r}")),
                        lines: lines
                            .iter()
                            .map(|sku| pb::ReturnLine {
                                sku: sku.clone(),
                                location: location.clone(),
                                qty: STOCK as u64,
                                disposition: pb::ReturnDisposition::Restock as i32,
                            })
                            .collect(),
                    })
                    .collect();
                let request = pb::RecordReturnsRequest { returns };
                let response = call(&env.recorder, "stock:record_returns", || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.record_returns(request).await }
                })
                .await
                .map_err(|s| anyhow!("stocking batch {b}: {s}"))?;
                let recorded = response
                    .results
                    .iter()
                    .filter(|item| {
                        matches!(
                            item.result,
                            Some(pb::batch_item_result::Result::Recorded(_))
                        )
                    })
                    .count();
                if recorded != request.returns.len() {
                    bail!(
                        "stocking batch {b}: {recorded} of {} returns recorded: {:?}",
                        request.returns.len(),
                        response.results.iter().find(|item| !matches!(
                            item.result,
                            Some(pb::batch_item_result::Result::Recorded(_))
                        ))
                    );
                }
                env.progress.inc(batch.len() as u64);
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok(())
}

/// Waits `secs`, moving the progress bar.
async fn calm(env: &Env, secs: f64) {
    let started = Instant::now();
    let total = Duration::from_secs_f64(secs);
    while started.elapsed() < total {
        tokio::time::sleep((total - started.elapsed()).min(Duration::from_millis(100))).await;
        env.progress
            .set_position(started.elapsed().as_millis() as u64);
    }
}

/// One hot-path caller: a permit from the pacer per call until the run stops, then it ends its
/// open holds. Returns the calls it made.
async fn hot_path(
    env: &Arc<Env>,
    t: usize,
    hot: &[String],
    location: &str,
    ledger: &Arc<Mutex<Ledger>>,
    permits: &Semaphore,
) -> u64 {
    let mut rng = Rng::new(env.options.seed ^ 0x2EC0 ^ (t as u64) << 32);
    let mut open: VecDeque<(String, Vec<pb::Line>, CartEnd)> = VecDeque::new();
    let mut n = 0u64;
    let client = env.client(t);
    while let Ok(permit) = permits.acquire().await {
        permit.forget();
        n += 1;
        let draw = rng.below(100);
        let position = &hot[rng.below(hot.len() as u64) as usize];
        if draw < 40 || (draw >= 70 && open.is_empty()) {
            let request = pb::CheckRequest {
                positions: vec![pb::Position {
                    sku: position.clone(),
                    location: location.to_owned(),
                }],
            };
            if let Err(status) = call(&env.recorder, "check", || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.check(request).await }
            })
            .await
            {
                lock(ledger)
                    .failures
                    .push(format!("check failed: {status}"));
            }
        } else if draw < 70 && open.len() < OPEN_HOLDS_MAX {
            let lines = vec![pb::Line {
                sku: position.clone(),
                location: location.to_owned(),
                qty: 1,
            }];
            let id = env.id("hold", format!("{t}-{n}"));
            if market::reserve(env, t, &id, &lines, TTL_MS, ledger).await {
                let end = if rng.below(10) < 7 {
                    CartEnd::Commit
                } else {
                    CartEnd::Release
                };
                open.push_back((id, lines, end));
            }
        } else if let Some((id, lines, end)) = open.pop_front() {
            market::end_cart(env, t, &id, &lines, end, ledger).await;
        }
    }
    while let Some((id, lines, end)) = open.pop_front() {
        market::end_cart(env, t, &id, &lines, end, ledger).await;
    }
    n
}

/// Runs `Reconcile` for the snapshot and returns its reconciliation and the seconds it took. A
/// reconciliation already running (the server's schedule) is waited out; if the schedule
/// picked this snapshot up first, its report is read instead.
async fn reconcile(env: &Env, snapshot_id: &str) -> Result<(pb::Reconciliation, f64)> {
    env.stage("reconciling", 1);
    let client = env.client(0);
    let request = pb::ReconcileRequest {
        target: Some(pb::reconcile_request::Target::SnapshotId(
            snapshot_id.to_owned(),
        )),
        dry_run: false,
    };
    let started = Instant::now();
    for _ in 0..RECONCILE_TRIES_MAX {
        // Not through `call`: its per-try timeout is far shorter than reconciling a million
        // positions takes, and a retry would only find this run in progress.
        let try_started = Instant::now();
        let answer = match tokio::time::timeout(
            RECONCILE_TIMEOUT,
            client.clone().reconcile(request.clone()),
        )
        .await
        {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => bail!("Reconcile {snapshot_id} did not answer in {RECONCILE_TIMEOUT:?}"),
        };
        match &answer {
            Ok(_) => env.recorder.ok("reconcile", try_started),
            Err(status) => env
                .recorder
                .error("reconcile", crate::stats::code_name(status.code())),
        }
        match answer {
            Ok(response) => {
                let seconds = started.elapsed().as_secs_f64();
                env.progress.inc(1);
                let reconciliation = response
                    .reconciliations
                    .into_iter()
                    .find(|r| r.snapshot_id == snapshot_id)
                    .ok_or_else(|| anyhow!("Reconcile did not answer for {snapshot_id}"))?;
                return Ok((reconciliation, seconds));
            }
            Err(status) if matches!(status.code(), Code::Aborted | Code::FailedPrecondition) => {
                // Running already (ABORTED), or no longer staged (the schedule took it).
                let mut client = client.clone();
                let got = client
                    .get_reconciliation_report(pb::GetReconciliationReportRequest {
                        snapshot_id: snapshot_id.to_owned(),
                    })
                    .await
                    .map_err(|s| anyhow!("GetReconciliationReport {snapshot_id}: {s}"))?
                    .into_inner()
                    .reconciliation;
                if let Some(r) = got
                    && r.status == pb::SnapshotStatus::Reconciled as i32
                {
                    return Ok((r, started.elapsed().as_secs_f64()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => bail!("Reconcile {snapshot_id} failed: {status}"),
        }
    }
    bail!("Reconcile {snapshot_id} found another reconciliation running for a minute")
}

/// Checks the report's counts and largest drifts against the planted drift; returns the counts.
fn check_report(
    v: &mut Verdict,
    reconciliation: &pb::Reconciliation,
    rows: usize,
    planted: &BTreeMap<(String, String), (i64, bool)>,
    (applied, held): (u64, u64),
) -> pb::ReconciliationCounts {
    v.check(
        reconciliation.status == pb::SnapshotStatus::Reconciled as i32,
        || {
            format!(
                "snapshot {}: status {}, expected RECONCILED ({})",
                reconciliation.snapshot_id, reconciliation.status, reconciliation.failure
            )
        },
    );
    let Some(report) = &reconciliation.report else {
        v.check(false, || "the reconciliation has no report".to_owned());
        return pb::ReconciliationCounts::default();
    };
    let counts = report.counts.unwrap_or_default();
    let drifted = applied + held;
    for (name, got, want) in [
        ("compared", counts.compared, rows as u64),
        ("drifted", counts.drifted, drifted),
        ("applied", counts.applied, applied),
        ("held", counts.held, held),
        ("matched", counts.matched, rows as u64 - drifted),
        ("omitted", counts.omitted, 0),
        ("superseded", counts.superseded, 0),
    ] {
        v.check(got == want, || {
            format!("report: {name} is {got}, expected {want}")
        });
    }
    let drift_abs: u64 = planted.values().map(|d| d.0.unsigned_abs()).sum();
    v.check(counts.drift_abs_total == drift_abs, || {
        format!(
            "report: drift_abs_total is {}, expected {drift_abs}",
            counts.drift_abs_total
        )
    });
    v.check(!report.dry_run, || "report: a dry run".to_owned());
    for line in &report.largest_drifts {
        let key = (line.sku.clone(), line.location.clone());
        let want = planted.get(&key);
        v.check(
            want.is_some_and(|(drift, held)| {
                *drift == line.drift
                    && *held == line.held
                    && line.engine_on_hand_at == STOCK
                    && line.erp_on_hand == STOCK + drift
            }),
            || {
                format!(
                    "report: largest drift {}@{} is {} (held {}, erp {}, engine at as_of {}), \
                     planted {want:?}",
                    line.sku,
                    line.location,
                    line.drift,
                    line.held,
                    line.erp_on_hand,
                    line.engine_on_hand_at
                )
            },
        );
    }
    counts
}

/// Every drift held for review of the snapshot, by ListHeldDrifts, page by page.
async fn list_held(env: &Env, snapshot_id: &str) -> Result<Vec<pb::HeldDrift>> {
    let client = env.client(0);
    let mut held = Vec::new();
    let mut page_token = String::new();
    // Bounded: a page holds up to 1,000 and a snapshot at most 10,000,000 rows.
    for _ in 0..10_001 {
        let request = pb::ListHeldDriftsRequest {
            snapshot_id: snapshot_id.to_owned(),
            page_size: 1_000,
            page_token: page_token.clone(),
        };
        let page = call(&env.recorder, "verify:list_held_drifts", || {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.list_held_drifts(request).await }
        })
        .await
        .map_err(|s| anyhow!("ListHeldDrifts {snapshot_id}: {s}"))?;
        held.extend(page.drifts);
        if page.next_page_token.is_empty() {
            return Ok(held);
        }
        page_token = page.next_page_token;
    }
    bail!("ListHeldDrifts {snapshot_id} did not end")
}

/// The held drifts listed must be exactly the planted beyond-tolerance set.
fn check_held(
    v: &mut Verdict,
    listed: &[pb::HeldDrift],
    planted: &BTreeMap<(String, String), (i64, bool)>,
    as_of_ms: u64,
) {
    let mut seen: BTreeMap<(String, String), i64> = BTreeMap::new();
    for drift in listed {
        let key = (drift.sku.clone(), drift.location.clone());
        v.check(seen.insert(key.clone(), drift.drift).is_none(), || {
            format!("held drift {}@{} listed twice", drift.sku, drift.location)
        });
        let want = planted.get(&key);
        v.check(
            want.is_some_and(|(d, held)| {
                *held
                    && *d == drift.drift
                    && drift.erp_on_hand == STOCK + d
                    && drift.engine_on_hand_at == STOCK
                    && drift.as_of_ms == as_of_ms
            }),
            || {
                format!(
                    "held drift {}@{}: drift {} (erp {}, engine at as_of {}), planted {want:?}",
                    drift.sku,
                    drift.location,
                    drift.drift,
                    drift.erp_on_hand,
                    drift.engine_on_hand_at
                )
            },
        );
    }
    for ((sku, location), (drift, held)) in planted {
        if *held {
            v.check(seen.contains_key(&(sku.clone(), location.clone())), || {
                format!("held drift {sku}@{location} ({drift:+}) not listed")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed-form counts the tests and the report rely on are what `planted` plants, and
    /// every planted drift is on a cold position, non-zero, and on the right side of the
    /// default tolerance (2 units; 1% of the stock is less).
    #[test]
    fn the_planted_drift_is_counted_and_placed_as_documented() {
        for rows in [1_000, 20_000, 123_457] {
            let mut applied = 0;
            let mut held = 0;
            for k in 0..rows {
                match planted(7, rows, k) {
                    None => {}
                    Some((drift, beyond)) => {
                        assert!(k >= hot_positions(rows));
                        assert_ne!(drift, 0);
                        if beyond {
                            held += 1;
                            assert!(drift.abs() >= 5);
                        } else {
                            applied += 1;
                            assert!(drift.abs() <= 2);
                        }
                    }
                }
            }
            assert_eq!(planted_counts(rows), (applied, held), "{rows} rows");
        }
        assert_eq!(planted_counts(20_000), (190, 19));
        assert_eq!(planted_counts(1_000_000), (9_990, 999));
    }
}
