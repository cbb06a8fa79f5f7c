//! The write pipeline, and the check: what the unary handlers (`service`), the `Session`
//! stream (`session`) and the bulk lane (`bulk`) all call, so each kind of request is decided
//! and answered one way whichever path it came by. This module imports none of them.
//!
//! A write is two halves. [`decide`] takes a permit of the writes budget and has the engine
//! decide and append it (a few short engine locks, no I/O), so requests are decided in the
//! order they are handled; [`settle`] then awaits durability without parking a thread (see
//! `durability`). The `*_now` functions decide at once and return a future that settles and
//! encodes the answer, so a Session stream can keep many in flight. A client that goes away
//! mid-call changes nothing: its event is already in the log and becomes durable with the
//! rest, and a retry gets the recorded answer.

use crate::BATCH_ITEMS_MAX;
use crate::convert::{self, FieldErrors};
use crate::shared::Shared;
use crate::status::{self, Failure};
use inv_engine::{Command, Decision, Lsn, Outcome, PrincipalName, Receipt, SubmitError};
use inv_proto::v1 as pb;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Items a bulk call decides before letting another bulk call on the lane run.
pub const BULK_CHUNK_ITEMS: usize = 64;

/// An interactive write decided and appended, not yet durable. Holds its permit of the writes
/// budget until it is answered.
pub(crate) struct Decided {
    receipt: Receipt,
    _permit: OwnedSemaphorePermit,
}

/// The first half of an interactive write `by` issued: take a permit of the writes budget,
/// then decide and append. A refusal is answered at once (it changed nothing).
pub(crate) fn decide(
    shared: &Shared,
    command: Command,
    by: Option<PrincipalName>,
) -> Result<Decided, Failure> {
    let permit = Arc::clone(&shared.writes)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("writes", shared.config.writes_in_flight_max))?;
    let receipt = accepted(shared, shared.engine.submit_queued_by(command, by))?;
    Ok(Decided {
        receipt,
        _permit: permit,
    })
}

/// The receipt of an accepted command, or the failure a client gets for it. Notes a log
/// failure (which fail-stops the server).
fn accepted(shared: &Shared, decision: Result<Decision, SubmitError>) -> Result<Receipt, Failure> {
    match decision {
        Ok(Ok(receipt)) => Ok(receipt),
        Ok(Err(refusal)) => Err(status::refused(&refusal)),
        Err(error) => Err(failure(shared, &error)),
    }
}

/// The second half: wait until the write is durable, without parking a thread.
pub(crate) async fn settle(shared: &Shared, decided: Decided) -> Result<Receipt, Failure> {
    let Decided { receipt, _permit } = decided;
    shared
        .durability
        .wait(receipt.lsn)
        .await
        .map_err(|error| failure(shared, &SubmitError::Log(error)))?;
    shared.advance_head(receipt.lsn.0);
    Ok(receipt)
}

/// Notes the error (a log failure fail-stops the server) and maps it.
fn failure(shared: &Shared, error: &SubmitError) -> Failure {
    shared.observe_error(error);
    status::submit_error(error)
}

/// Submits one interactive write `by` issued and waits for it to be durable.
pub(crate) async fn submit(
    shared: &Shared,
    command: Command,
    by: Option<PrincipalName>,
) -> Result<Receipt, Failure> {
    let decided = decide(shared, command, by)?;
    settle(shared, decided).await
}

/// A receipt whose outcome refuses a hold command (it ended or expired; recorded under the
/// key) becomes that refusal.
fn hold_answer(receipt: Receipt) -> Result<Receipt, Failure> {
    match status::recorded_refusal(&receipt.outcome, receipt.lsn) {
        Some(refusal) => Err(refusal),
        None => Ok(receipt),
    }
}

fn unexpected(outcome: &Outcome) -> Failure {
    Failure::internal(format!("unexpected outcome {outcome:?}"))
}

/// Reserve, decided now; the future waits for durability and encodes the answer.
pub(crate) fn reserve_now(
    shared: &Arc<Shared>,
    request: pb::ReserveRequest,
    by: Option<PrincipalName>,
) -> impl Future<Output = Result<pb::ReserveResponse, Failure>> + Send + 'static {
    shared.metrics.observe_reserve_channel(&request.channel);
    let reserve = convert::reserve(request);
    let lines = reserve.lines.clone();
    let decided = decide(shared, Command::Reserve(reserve), by);
    let shared = Arc::clone(shared);
    async move {
        let receipt = settle(&shared, decided?).await?;
        shared.metrics.observe_reserve_outcome(&receipt);
        convert::reserve_response(&receipt, &lines)
    }
}

/// Commit, decided now; the future waits for durability and encodes the answer.
pub(crate) fn commit_now(
    shared: &Arc<Shared>,
    request: pb::CommitRequest,
    by: Option<PrincipalName>,
) -> impl Future<Output = Result<pb::CommitResponse, Failure>> + Send + 'static {
    let reservation_id = request.reservation_id.clone();
    let decided = decide(shared, convert::commit(request), by);
    let shared = Arc::clone(shared);
    async move {
        let receipt = hold_answer(settle(&shared, decided?).await?)?;
        // The hold's view completes the answer; the commit stands if it cannot be read.
        let hold = shared.engine.reservation(&reservation_id).ok().flatten();
        convert::commit_response(&receipt, hold.as_ref())
    }
}

/// Release, decided now; the future waits for durability and encodes the answer.
pub(crate) fn release_now(
    shared: &Arc<Shared>,
    request: pb::ReleaseRequest,
    by: Option<PrincipalName>,
) -> impl Future<Output = Result<pb::ReleaseResponse, Failure>> + Send + 'static {
    let decided = decide(shared, convert::release(request), by);
    let shared = Arc::clone(shared);
    async move {
        let receipt = hold_answer(settle(&shared, decided?).await?)?;
        match receipt.outcome {
            Outcome::Released => Ok(pb::ReleaseResponse {
                lsn: receipt.lsn.0,
                duplicate: receipt.duplicate,
            }),
            other => Err(unexpected(&other)),
        }
    }
}

/// Extend, decided and settled.
pub(crate) async fn extend(
    shared: &Shared,
    request: pb::ExtendRequest,
    by: Option<PrincipalName>,
) -> Result<pb::ExtendResponse, Failure> {
    let receipt = hold_answer(submit(shared, convert::extend(request), by).await?)?;
    match receipt.outcome {
        Outcome::Extended { expires_at_ms } => Ok(pb::ExtendResponse {
            lsn: receipt.lsn.0,
            duplicate: receipt.duplicate,
            expires_at_ms,
        }),
        other => Err(unexpected(&other)),
    }
}

/// A write that answers `Recorded` (disposition, adjustment, safety stock): its LSN and
/// whether it was a retry.
pub(crate) async fn submit_recorded(
    shared: &Shared,
    command: Command,
    by: Option<PrincipalName>,
) -> Result<(u64, bool), Failure> {
    let receipt = submit(shared, command, by).await?;
    match receipt.outcome {
        Outcome::Recorded => Ok((receipt.lsn.0, receipt.duplicate)),
        other => Err(unexpected(&other)),
    }
}

/// Check: answered at once, per position. Only a malformed envelope fails the whole call.
pub(crate) fn check_now(
    shared: &Shared,
    request: pb::CheckRequest,
) -> Result<pb::CheckResponse, Failure> {
    use pb::check_result::Result as R;
    let positions = request.positions;
    convert::check_batch_len("positions", positions.len())?;
    let engine = &shared.engine;
    let results = positions
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            // Field paths are formatted only for a position that is wrong, and the ids move
            // into the answer: this is the hottest read path.
            let mut errors = FieldErrors::default();
            if let Some(problem) = convert::id_problem(&p.sku) {
                errors.push(format!("positions[{i}].sku"), problem);
            }
            if let Some(problem) = convert::id_problem(&p.location) {
                errors.push(format!("positions[{i}].location"), problem);
            }
            let result = match errors.finish(()) {
                Ok(()) => {
                    let found = engine.check(&p.sku, &p.location);
                    R::Availability(convert::availability_owned(p.sku, p.location, found))
                }
                Err(failure) => R::Error(failure.into_item_error()),
            };
            pb::CheckResult {
                result: Some(result),
            }
        })
        .collect();
    Ok(pb::CheckResponse { results })
}

// ---------------------------------------------------------------------------------------------
// Bulk calls, run on the bulk lane (see `bulk`)

/// Submits the items of one bulk call, in order, and answers per item. Items that failed to
/// decode are passed through as they are. Items are decided [`BULK_CHUNK_ITEMS`] at a time,
/// yielding between chunks so bulk calls on the lane interleave; then one wait covers the
/// whole batch (one group commit instead of one per item).
async fn submit_bulk(
    shared: &Shared,
    items: Vec<Result<Command, Failure>>,
    by: Option<PrincipalName>,
) -> Vec<Result<Receipt, Failure>> {
    let mut wait_for = Lsn::ZERO;
    let mut results = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 && i % BULK_CHUNK_ITEMS == 0 {
            crate::lane::pace(shared).await;
        }
        results.push(item.and_then(|command| {
            let receipt = accepted(shared, shared.engine.submit_queued_by(command, by.clone()))?;
            wait_for = wait_for.max(receipt.lsn);
            Ok(receipt)
        }));
    }
    if wait_for > Lsn::ZERO {
        match shared.durability.wait(wait_for).await {
            Ok(()) => shared.advance_head(wait_for.0),
            Err(error) => {
                let failure = failure(shared, &SubmitError::Log(error));
                for result in &mut results {
                    if result.is_ok() {
                        *result = Err(failure.clone());
                    }
                }
            }
        }
    }
    results
}

/// RecordSales, once decoded.
pub(crate) async fn record_sales(
    shared: &Shared,
    request: pb::RecordSalesRequest,
    by: Option<PrincipalName>,
) -> Result<pb::RecordSalesResponse, Failure> {
    convert::check_batch_len("sales", request.sales.len())?;
    // The store is the envelope: a bad store id fails the call, not each sale.
    let mut errors = FieldErrors::default();
    convert::check_id(&mut errors, "store_id", &request.store_id);
    errors.finish(())?;
    let store_id = request.store_id;
    let items = request
        .sales
        .into_iter()
        .map(|sale| Ok(convert::sale(&store_id, sale)))
        .collect();
    let results = submit_bulk(shared, items, by)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, result)| {
            result.map_err(|failure| {
                failure.map_fields(|field| match field {
                    "store_id" => field.to_owned(),
                    _ => format!("sales[{i}].{field}"),
                })
            })
        })
        .collect();
    Ok(pb::RecordSalesResponse {
        results: batch_results(results),
    })
}

/// RecordReturns, once decoded.
pub(crate) async fn record_returns(
    shared: &Shared,
    request: pb::RecordReturnsRequest,
    by: Option<PrincipalName>,
) -> Result<pb::RecordReturnsResponse, Failure> {
    let returns = request.returns;
    convert::check_batch_len("returns", returns.len())?;
    debug_assert!(returns.len() <= BATCH_ITEMS_MAX);
    let items = returns.into_iter().map(convert::return_).collect();
    let results = submit_bulk(shared, items, by)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, result)| {
            result.map_err(|failure| failure.map_fields(|field| format!("returns[{i}].{field}")))
        })
        .collect();
    Ok(pb::RecordReturnsResponse {
        results: batch_results(results),
    })
}

fn batch_results(results: Vec<Result<Receipt, Failure>>) -> Vec<pb::BatchItemResult> {
    use pb::batch_item_result::Result as R;
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| pb::BatchItemResult {
            index: index as u32,
            result: Some(match result {
                Ok(receipt) => R::Recorded(convert::recorded(&receipt)),
                Err(failure) => R::Error(failure.into_item_error()),
            }),
        })
        .collect()
}
