//! Running reconciliations (on demand, and on the schedule), resolving held drifts, and the
//! report reads.
//!
//! A run goes to the bulk lane holding the one [`super::Reconciler::try_begin`] guard, and
//! steps there [`STEP_POSITIONS`] positions at a time, yielding between steps so bulk calls
//! interleave and the hot path keeps the CPU it needs. A full log queue (`Busy`) pauses the
//! run briefly instead of failing it. At shutdown a run stops between two steps: the snapshot
//! stays RECONCILING and the next run (after the restart) resumes it, each position already
//! reconciled answering with its first outcome.

use super::{STEP_POSITIONS, convert};
use crate::pipeline;
use crate::shared::Shared;
use crate::status::{self, Failure};
use inv_engine::Outcome;
use inv_engine::reconcile::{
    ReconcileError, Reconciliation, Report, SnapshotStatus, StoredSnapshot,
};
use inv_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// How long a run pauses when the log's queue is full.
const BUSY_PAUSE: Duration = Duration::from_millis(5);
/// Most entries in one ListReconciliations answer, and the default.
const LIST_PAGE_MAX: usize = 1_000;
const LIST_PAGE_DEFAULT: usize = 50;
/// Most entries in one ListHeldDrifts answer, and the default.
const HELD_PAGE_MAX: usize = 1_000;
const HELD_PAGE_DEFAULT: usize = 100;
/// Snapshots looked at when listing the staged ones (the store keeps at most 10,000).
const STAGED_SCAN_MAX: usize = 10_000;

/// Which snapshots a run reconciles.
enum Target {
    One(String),
    AllStaged,
}

pub(crate) async fn reconcile(
    shared: &Arc<Shared>,
    request: pb::ReconcileRequest,
) -> Result<pb::ReconcileResponse, Failure> {
    use pb::reconcile_request::Target as T;
    let target = match request.target {
        Some(T::SnapshotId(id)) => {
            let mut errors = crate::convert::FieldErrors::default();
            crate::convert::check_id(&mut errors, "snapshot_id", &id);
            errors.finish(Target::One(id))?
        }
        Some(T::AllStaged(true)) => Target::AllStaged,
        Some(T::AllStaged(false)) | None => {
            return Err(Failure::invalid_field(
                "target",
                "name a snapshot_id, or set all_staged",
            ));
        }
    };
    let dry_run = request.dry_run;
    let guard = shared
        .reconciler
        .try_begin()
        .ok_or_else(Failure::reconciliation_in_progress)?;
    let lane_shared = Arc::clone(shared);
    let reconciliations = shared
        .bulk_lane
        .run(async move {
            let _guard = guard;
            run_target(&lane_shared, target, dry_run).await
        })
        .await?;
    Ok(pb::ReconcileResponse { reconciliations })
}

/// Runs the target's reconciliations one after the other. With one snapshot, its failure is
/// the call's; with all staged, a snapshot that cannot be reconciled (too old) is reported as
/// failed and the rest still run.
async fn run_target(
    shared: &Shared,
    target: Target,
    dry_run: bool,
) -> Result<Vec<pb::Reconciliation>, Failure> {
    let ids = match target {
        Target::One(id) => {
            let (snapshot, report) = run_one(shared, &id, dry_run).await?;
            return Ok(vec![convert::reconciliation(&snapshot, Some(&report))]);
        }
        Target::AllStaged => staged(shared)?,
    };
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        match run_one(shared, &id, dry_run).await {
            Ok((snapshot, report)) => {
                answers.push(convert::reconciliation(&snapshot, Some(&report)))
            }
            Err(RunError::Snapshot(failure)) => {
                warn!(snapshot_id = id, message = %failure.message, "snapshot not reconciled");
                if let Some(snapshot) = get(shared, &id)? {
                    answers.push(convert::reconciliation(&snapshot, None));
                }
            }
            Err(RunError::Run(failure)) => return Err(failure),
        }
    }
    Ok(answers)
}

/// Why one snapshot was not reconciled: something about it (it stays listed as it is), or
/// something that stops every run (the log, the store, shutdown).
enum RunError {
    Snapshot(Failure),
    Run(Failure),
}

impl RunError {
    /// Whether a reconciliation started and could not finish (counted as `failed`), as opposed
    /// to a call that named nothing to run (an unknown or already reconciled snapshot) or a
    /// run stopped by shutdown (it resumes after the restart).
    fn is_failed_run(&self) -> bool {
        match self {
            RunError::Snapshot(failure) => failure.reason == pb::ErrorReason::SnapshotTooOld,
            RunError::Run(failure) => failure.reason != pb::ErrorReason::ShuttingDown,
        }
    }
}

impl From<RunError> for Failure {
    fn from(error: RunError) -> Failure {
        match error {
            RunError::Snapshot(failure) | RunError::Run(failure) => failure,
        }
    }
}

fn run_error(error: &ReconcileError) -> RunError {
    let failure = status::reconcile_error(error);
    match error {
        ReconcileError::NotFound(_)
        | ReconcileError::NotStaged { .. }
        | ReconcileError::TooOld { .. } => RunError::Snapshot(failure),
        _ => RunError::Run(failure),
    }
}

/// The ids of the snapshots waiting for a reconciliation (or resuming one), oldest `as_of`
/// first, so a newer count of a position is applied after an older one.
fn staged(shared: &Shared) -> Result<Vec<String>, Failure> {
    let store = shared.reconciler.store.as_ref();
    let mut staged: Vec<StoredSnapshot> = store
        .list(None, STAGED_SCAN_MAX)
        .map_err(|e| status::store_error(&e))?
        .into_iter()
        .filter(|s| {
            matches!(
                s.status,
                SnapshotStatus::Staged | SnapshotStatus::Reconciling
            )
        })
        .collect();
    staged.sort_by(|a, b| {
        (a.header.as_of_ms, a.staged_at_ms, &a.header.snapshot_id).cmp(&(
            b.header.as_of_ms,
            b.staged_at_ms,
            &b.header.snapshot_id,
        ))
    });
    Ok(staged
        .into_iter()
        .map(|s| s.header.snapshot_id.to_string())
        .collect())
}

/// Reconciles one snapshot, a step at a time; the snapshot as stored afterwards, and the
/// report (a dry run's is not stored).
async fn run_one(
    shared: &Shared,
    snapshot_id: &str,
    dry_run: bool,
) -> Result<(StoredSnapshot, Report), RunError> {
    let reconciler = &shared.reconciler;
    let metrics = &reconciler.metrics;
    let outcome = async {
        let mut run = Reconciliation::start(
            &shared.engine,
            reconciler.store.as_ref(),
            snapshot_id,
            reconciler.config.policy.clone(),
            dry_run,
        )
        .map_err(|e| run_error(&e))?;
        loop {
            if shared.shutdown.is_cancelled() {
                return Err(RunError::Run(Failure::shutting_down(
                    "the server is shutting down; the reconciliation resumes after the restart",
                )));
            }
            match run.step(STEP_POSITIONS) {
                Ok(true) => crate::lane::pace(shared).await,
                Ok(false) => break,
                Err(ReconcileError::Busy) => tokio::time::sleep(BUSY_PAUSE).await,
                Err(error) => return Err(run_error(&error)),
            }
        }
        let report = run.finish().map_err(|e| run_error(&e))?;
        Ok(report)
    }
    .await;
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            if error.is_failed_run() {
                metrics.observe_failed();
            }
            return Err(error);
        }
    };
    metrics.observe_report(&report, shared.engine.now_ms());
    let snapshot = get(shared, snapshot_id)
        .map_err(RunError::Run)?
        .ok_or_else(|| RunError::Run(Failure::snapshot_not_found(snapshot_id)))?;
    // The ledger changed: change feeds look at the new events.
    shared.advance_head(shared.engine.durable_lsn().0);
    info!(
        snapshot_id,
        dry_run,
        compared = report.counts.compared,
        drifted = report.counts.drifted,
        applied = report.counts.applied,
        held = report.counts.held,
        drift_abs_total = report.counts.drift_abs_total,
        elapsed_ms = report.finished_at_ms.saturating_sub(report.started_at_ms),
        "reconciliation finished"
    );
    Ok((snapshot, report))
}

fn get(shared: &Shared, snapshot_id: &str) -> Result<Option<StoredSnapshot>, Failure> {
    shared
        .reconciler
        .store
        .get(snapshot_id)
        .map_err(|e| status::store_error(&e))
}

/// The scheduler: every `ReconcileConfig::every_ms`, reconciles every staged snapshot on the
/// bulk lane. A tick while a reconciliation runs (one asked for by a client) is skipped.
pub(crate) async fn schedule(shared: Arc<Shared>) {
    let every_ms = shared.reconciler.config.every_ms;
    if every_ms == 0 {
        return;
    }
    let every = Duration::from_millis(every_ms);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if shared.is_failed() {
            continue;
        }
        let Some(guard) = shared.reconciler.try_begin() else {
            info!("a reconciliation is running; the scheduled one waits for the next tick");
            continue;
        };
        let lane_shared = Arc::clone(&shared);
        let result = shared
            .bulk_lane
            .run(async move {
                let _guard = guard;
                run_target(&lane_shared, Target::AllStaged, false).await
            })
            .await;
        if let Err(failure) = result {
            error!(message = %failure.message, "the scheduled reconciliation stopped");
        }
    }
}

/// ResolveDrift: an interactive write like any other.
pub(crate) async fn resolve_drift(
    shared: &Shared,
    request: pb::ResolveDriftRequest,
    by: Option<inv_engine::PrincipalName>,
) -> Result<pb::ResolveDriftResponse, Failure> {
    let command = convert::resolve_drift(request)?;
    let receipt = pipeline::submit(shared, command, by).await?;
    match receipt.outcome {
        Outcome::DriftResolved { drift, applied } => Ok(pb::ResolveDriftResponse {
            lsn: receipt.lsn.0,
            duplicate: receipt.duplicate,
            drift,
            applied,
        }),
        other => Err(Failure::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub(crate) fn get_report(
    shared: &Shared,
    request: pb::GetReconciliationReportRequest,
) -> Result<pb::GetReconciliationReportResponse, Failure> {
    let id = request.snapshot_id;
    let mut errors = crate::convert::FieldErrors::default();
    crate::convert::check_id(&mut errors, "snapshot_id", &id);
    errors.finish(())?;
    let snapshot = get(shared, &id)?.ok_or_else(|| Failure::snapshot_not_found(&id))?;
    Ok(pb::GetReconciliationReportResponse {
        reconciliation: Some(convert::reconciliation(&snapshot, None)),
    })
}

pub(crate) fn list(
    shared: &Shared,
    request: pb::ListReconciliationsRequest,
) -> Result<pb::ListReconciliationsResponse, Failure> {
    let page_size = match request.page_size as usize {
        0 => LIST_PAGE_DEFAULT,
        n if n > LIST_PAGE_MAX => {
            return Err(Failure::invalid_field(
                "page_size",
                format!("at most {LIST_PAGE_MAX}"),
            ));
        }
        n => n,
    };
    let after = if request.page_token.is_empty() {
        None
    } else {
        Some(convert::parse_page_token(&request.page_token)?)
    };
    let store = shared.reconciler.store.as_ref();
    // One more than the page: whether there is a next page.
    let mut page = store
        .list(after.as_ref().map(|(at, id)| (*at, id)), page_size + 1)
        .map_err(|e| status::store_error(&e))?;
    let more = page.len() > page_size;
    page.truncate(page_size);
    let next_page_token = match (more, page.last()) {
        (true, Some(last)) => convert::page_token(last),
        _ => String::new(),
    };
    Ok(pb::ListReconciliationsResponse {
        reconciliations: page
            .iter()
            .map(|s| convert::reconciliation(s, None))
            .collect(),
        next_page_token,
    })
}

pub(crate) fn list_held(
    shared: &Shared,
    request: pb::ListHeldDriftsRequest,
) -> Result<pb::ListHeldDriftsResponse, Failure> {
    let page_size = match request.page_size as usize {
        0 => HELD_PAGE_DEFAULT,
        n if n > HELD_PAGE_MAX => {
            return Err(Failure::invalid_field(
                "page_size",
                format!("at most {HELD_PAGE_MAX}"),
            ));
        }
        n => n,
    };
    let after = if request.page_token.is_empty() {
        None
    } else {
        Some(convert::parse_position_token(&request.page_token)?)
    };
    let snapshot = (!request.snapshot_id.is_empty()).then_some(request.snapshot_id.as_str());
    // The ledger answers every held drift (by position); this pages through them.
    let held = shared.engine.held_drifts(snapshot);
    let total = held.len() as u64;
    let start = match &after {
        None => 0,
        Some((sku, location)) => held.partition_point(|h| {
            (h.sku.as_str(), h.location.as_str()) <= (sku.as_str(), location.as_str())
        }),
    };
    let page = &held[start.min(held.len())..(start + page_size).min(held.len())];
    let next_page_token = match page.last() {
        Some(last) if start + page.len() < held.len() => {
            convert::position_token(last.sku.as_str(), last.location.as_str())
        }
        _ => String::new(),
    };
    Ok(pb::ListHeldDriftsResponse {
        drifts: page.iter().map(convert::held_drift).collect(),
        next_page_token,
        total,
    })
}
