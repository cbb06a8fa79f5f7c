//! The `inventory.v1.Inventory` service: decode, call the engine, encode.
//!
//! Writes return only once their event is durable. Each write is decided and appended inline
//! (a few short engine locks, no I/O), then awaits durability through the shared
//! `DurabilityWaiter`, so no thread is parked per call; bulk calls run on the bulk lane
//! (`bulk`). Each kind of call holds a permit of its own budget while it runs (see the
//! crate docs). A client that goes away mid-call changes nothing: its event is already in the
//! log and becomes durable with the rest, and a retry gets the recorded answer.
//!
//! Reads (`Check`, `CheckSku`, `GetReservation`, `StoreStatus`) take one short engine lock
//! each and never wait for the log, so they run inline.
//!
//! Check, Reserve, Commit and Release are also served over the `Session` stream (`session`),
//! through the same `*_now` methods: a write is decided when called, and the future it returns
//! waits for durability and encodes the answer, so both paths answer alike.

use crate::bulk::{self, BULK_CHUNK_ITEMS};
use crate::convert::{self, FieldErrors};
use crate::session::{self, SessionStream};
use crate::status::{self, Failure};
use crate::watch::{self, WatchStream};
use crate::{BATCH_ITEMS_MAX, Shared};
use inv_engine::{Command, Engine, Lsn, Outcome, Receipt, SubmitError};
use inv_proto::v1 as pb;
use inv_proto::v1::inventory_server::Inventory;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tonic::{Request, Response, Status, Streaming};

/// Gaps listed for one store; the count of missing sequence numbers is always exact.
const STORE_GAPS_LISTED_MAX: usize = 1_000;
/// Gaps listed per store when every store is listed.
const STORE_GAPS_LISTED_IN_LIST_MAX: usize = 100;

/// The service. Cheap to clone: everything lives in the shared state.
#[derive(Clone)]
pub struct InventoryService {
    shared: Arc<Shared>,
}

impl InventoryService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Submits one interactive write and waits for it to be durable.
    ///
    /// Deciding takes a few short engine locks and never waits for I/O (the log's `append`
    /// only queues), so it runs inline; the wait for durability is asynchronous (see
    /// `durability`). This is `Engine::submit` with its blocking wait replaced.
    async fn submit(&self, command: Command) -> Result<Receipt, Failure> {
        let decided = decide(&self.shared, command)?;
        settle(&self.shared, decided).await
    }

    /// Reserve, decided now (so requests on one Session stream are decided in arrival order);
    /// the returned future waits for durability and encodes the answer. Owns what it needs, so
    /// a Session stream can keep many in flight.
    pub(crate) fn reserve_now(
        &self,
        request: pb::ReserveRequest,
    ) -> impl Future<Output = Result<pb::ReserveResponse, Failure>> + Send + 'static {
        self.shared
            .metrics
            .observe_reserve_channel(&request.channel);
        let reserve = convert::reserve(request);
        let lines = reserve.lines.clone();
        let decided = decide(&self.shared, Command::Reserve(reserve));
        let shared = Arc::clone(&self.shared);
        async move {
            let receipt = settle(&shared, decided?).await?;
            shared.metrics.observe_reserve_outcome(&receipt);
            convert::reserve_response(&receipt, &lines)
        }
    }

    /// Commit, decided now; the future waits for durability and encodes the answer (see
    /// [`InventoryService::reserve_now`]).
    pub(crate) fn commit_now(
        &self,
        request: pb::CommitRequest,
    ) -> impl Future<Output = Result<pb::CommitResponse, Failure>> + Send + 'static {
        let reservation_id = request.reservation_id.clone();
        let decided = decide(&self.shared, convert::commit(request));
        let shared = Arc::clone(&self.shared);
        async move {
            let receipt = settle(&shared, decided?).await?;
            if let Some(refusal) = status::refusal(&receipt.outcome, receipt.lsn) {
                return Err(refusal);
            }
            let hold = shared.engine.reservation(&reservation_id);
            convert::commit_response(&receipt, hold.as_ref())
        }
    }

    /// Release, decided now; the future waits for durability and encodes the answer (see
    /// [`InventoryService::reserve_now`]).
    pub(crate) fn release_now(
        &self,
        request: pb::ReleaseRequest,
    ) -> impl Future<Output = Result<pb::ReleaseResponse, Failure>> + Send + 'static {
        let decided = decide(&self.shared, convert::release(request));
        let shared = Arc::clone(&self.shared);
        async move {
            let receipt = settle(&shared, decided?).await?;
            if let Some(refusal) = status::refusal(&receipt.outcome, receipt.lsn) {
                return Err(refusal);
            }
            match receipt.outcome {
                Outcome::Released => Ok(pb::ReleaseResponse {
                    lsn: receipt.lsn.0,
                    duplicate: receipt.duplicate,
                }),
                other => Err(Failure::internal(format!("unexpected outcome {other:?}"))),
            }
        }
    }

    /// Check: answered at once, per position. Only a malformed envelope fails the whole call.
    pub(crate) fn check_now(
        &self,
        request: pb::CheckRequest,
    ) -> Result<pb::CheckResponse, Failure> {
        use pb::check_result::Result as R;
        let positions = request.positions;
        convert::check_batch_len("positions", positions.len())?;
        let engine = self.engine();
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

    /// Submits a write that answers `Recorded` (disposition, adjustment, safety stock).
    async fn submit_recorded(&self, command: Command) -> Result<(u64, bool), Status> {
        let receipt = self.submit(command).await?;
        match receipt.outcome {
            Outcome::Recorded => Ok((receipt.lsn.0, receipt.duplicate)),
            other => Err(Failure::internal(format!("unexpected outcome {other:?}")).into()),
        }
    }
}

/// An interactive write decided and appended, not yet durable. Holds its permit of the writes
/// budget until it is answered.
pub(crate) struct Decided {
    receipt: Receipt,
    _permit: OwnedSemaphorePermit,
}

/// The first half of an interactive write: take a permit of the writes budget, then decide and
/// append (a few short engine locks, no I/O).
fn decide(shared: &Arc<Shared>, command: Command) -> Result<Decided, Failure> {
    let permit = Arc::clone(&shared.writes)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("writes", shared.config.writes_in_flight_max))?;
    let receipt = shared
        .engine
        .submit_queued(command)
        .map_err(|error| failure(shared, &error))?;
    Ok(Decided {
        receipt,
        _permit: permit,
    })
}

/// The second half: wait until the write is durable, without parking a thread.
async fn settle(shared: &Shared, decided: Decided) -> Result<Receipt, Failure> {
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

/// Submits the items of one bulk call, in order, and answers per item. Items that failed to
/// decode are passed through as they are. Runs on the bulk lane (see `bulk`): items are
/// decided [`BULK_CHUNK_ITEMS`] at a time, yielding between chunks so bulk calls on the lane
/// interleave; then one wait covers the whole batch (one group commit instead of one per item).
async fn submit_bulk(
    shared: &Shared,
    items: Vec<Result<Command, Failure>>,
) -> Vec<Result<Receipt, Failure>> {
    let mut wait_for = Lsn::ZERO;
    let mut results = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 && i % BULK_CHUNK_ITEMS == 0 {
            tokio::task::yield_now().await;
        }
        results.push(item.and_then(|command| {
            let receipt = shared.engine.submit_queued(command).map_err(|error| {
                shared.observe_error(&error);
                status::submit_error(&error)
            })?;
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

/// RecordSales, once decoded; runs on the bulk lane.
pub(crate) async fn record_sales(
    shared: &Shared,
    request: pb::RecordSalesRequest,
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
    let results = submit_bulk(shared, items)
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

/// RecordReturns, once decoded; runs on the bulk lane.
pub(crate) async fn record_returns(
    shared: &Shared,
    request: pb::RecordReturnsRequest,
) -> Result<pb::RecordReturnsResponse, Failure> {
    let returns = request.returns;
    convert::check_batch_len("returns", returns.len())?;
    debug_assert!(returns.len() <= BATCH_ITEMS_MAX);
    let items = returns.into_iter().map(convert::return_).collect();
    let results = submit_bulk(shared, items)
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

fn check_reservation_id(id: &str) -> Result<(), Failure> {
    let mut errors = FieldErrors::default();
    convert::check_id(&mut errors, "reservation_id", id);
    errors.finish(())
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        Ok(Response::new(self.reserve_now(request.into_inner()).await?))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        Ok(Response::new(self.commit_now(request.into_inner()).await?))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Ok(Response::new(self.release_now(request.into_inner()).await?))
    }

    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let receipt = self.submit(convert::extend(request.into_inner())).await?;
        if let Some(refusal) = status::refusal(&receipt.outcome, receipt.lsn) {
            return Err(refusal.into());
        }
        match receipt.outcome {
            Outcome::Extended { expires_at_ms } => Ok(Response::new(pb::ExtendResponse {
                lsn: receipt.lsn.0,
                duplicate: receipt.duplicate,
                expires_at_ms,
            })),
            other => Err(Failure::internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let id = request.into_inner().reservation_id;
        check_reservation_id(&id)?;
        let hold = self
            .engine()
            .reservation(&id)
            .ok_or_else(|| Failure::reservation_not_found(&id))?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(convert::reservation(&hold)),
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Ok(Response::new(self.check_now(request.into_inner())?))
    }

    async fn check_sku(
        &self,
        request: Request<pb::CheckSkuRequest>,
    ) -> Result<Response<pb::CheckSkuResponse>, Status> {
        let request = request.into_inner();
        convert::check_filter_len("locations", request.locations.len())?;
        let mut errors = FieldErrors::default();
        convert::check_id(&mut errors, "sku", &request.sku);
        for (i, location) in request.locations.iter().enumerate() {
            convert::check_id(&mut errors, &format!("locations[{i}]"), location);
        }
        errors.finish(())?;
        let found = self.engine().check_sku(&request.sku);
        let rows: Vec<pb::PositionAvailability> = if request.locations.is_empty() {
            found
                .iter()
                .map(|(location, a)| convert::availability(&request.sku, location, Some(*a)))
                .collect()
        } else {
            let mut wanted = request.locations.clone();
            wanted.sort_unstable();
            wanted.dedup();
            wanted
                .iter()
                .map(|location| {
                    let a = found
                        .binary_search_by(|(l, _)| l.as_str().cmp(location))
                        .ok()
                        .map(|i| found[i].1);
                    convert::availability(&request.sku, location, a)
                })
                .collect()
        };
        let total = convert::totals(&rows);
        Ok(Response::new(pb::CheckSkuResponse {
            sku: request.sku,
            rows,
            total: Some(total),
        }))
    }

    // The server routes both bulk methods to the lane before their body is read (see
    // `bulk::Routed`); these serve a service used without that layer, with the same budget.
    async fn record_sales(
        &self,
        request: Request<pb::RecordSalesRequest>,
    ) -> Result<Response<pb::RecordSalesResponse>, Status> {
        let permit = bulk::permit(&self.shared)?;
        let shared = Arc::clone(&self.shared);
        let request = request.into_inner();
        let response = self
            .shared
            .bulk_lane
            .run(async move {
                let _permit = permit;
                record_sales(&shared, request).await
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn record_returns(
        &self,
        request: Request<pb::RecordReturnsRequest>,
    ) -> Result<Response<pb::RecordReturnsResponse>, Status> {
        let permit = bulk::permit(&self.shared)?;
        let shared = Arc::clone(&self.shared);
        let request = request.into_inner();
        let response = self
            .shared
            .bulk_lane
            .run(async move {
                let _permit = permit;
                record_returns(&shared, request).await
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn disposition(
        &self,
        request: Request<pb::DispositionRequest>,
    ) -> Result<Response<pb::DispositionResponse>, Status> {
        let command = convert::disposition(request.into_inner())?;
        let (lsn, duplicate) = self.submit_recorded(command).await?;
        Ok(Response::new(pb::DispositionResponse { lsn, duplicate }))
    }

    async fn adjust(
        &self,
        request: Request<pb::AdjustRequest>,
    ) -> Result<Response<pb::AdjustResponse>, Status> {
        let (lsn, duplicate) = self
            .submit_recorded(convert::adjust(request.into_inner()))
            .await?;
        Ok(Response::new(pb::AdjustResponse { lsn, duplicate }))
    }

    async fn set_safety_stock(
        &self,
        request: Request<pb::SetSafetyStockRequest>,
    ) -> Result<Response<pb::SetSafetyStockResponse>, Status> {
        let (lsn, duplicate) = self
            .submit_recorded(convert::set_safety_stock(request.into_inner()))
            .await?;
        Ok(Response::new(pb::SetSafetyStockResponse { lsn, duplicate }))
    }

    async fn store_status(
        &self,
        request: Request<pb::StoreStatusRequest>,
    ) -> Result<Response<pb::StoreStatusResponse>, Status> {
        let store_id = request.into_inner().store_id;
        let stores = if store_id.is_empty() {
            self.engine()
                .ledger()
                .store_statuses()
                .into_iter()
                .map(|s| convert::store_status(s, STORE_GAPS_LISTED_IN_LIST_MAX))
                .collect()
        } else {
            let mut errors = FieldErrors::default();
            convert::check_id(&mut errors, "store_id", &store_id);
            errors.finish(())?;
            let status = self
                .engine()
                .store_status(&store_id)
                .ok_or_else(|| Failure::store_not_found(&store_id))?;
            vec![convert::store_status(status, STORE_GAPS_LISTED_MAX)]
        };
        Ok(Response::new(pb::StoreStatusResponse { stores }))
    }

    type WatchAvailabilityStream = WatchStream;

    async fn watch_availability(
        &self,
        request: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        Ok(Response::new(watch::start(
            &self.shared,
            request.into_inner(),
        )?))
    }
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Ok(Response::new(session::start(
            self.clone(),
            self.shared.shutdown.clone(),
            request.into_inner(),
        )))
    }
}
