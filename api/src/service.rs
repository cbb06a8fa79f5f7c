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
//! each and never wait for the log, so they run inline. The reconciliation RPCs are in
//! `reconcile`; their reads (reports from the snapshot store, held drifts) run on the blocking
//! pool. `ListEvents` scans the event log on the bulk lane (`events`).
//!
//! Each handler first asks the caller (`auth`) for the permission its RPC needs, before it
//! reads or changes anything.
//!
//! Every write goes through `pipeline`, which the `Session` stream and the bulk lane use too,
//! so each kind of request is answered alike on every path.

use crate::auth::{self, Caller, Grant, Permission};
use crate::bulk;
use crate::convert::{self, FieldErrors};
use crate::events;
use crate::pipeline;
use crate::reconcile;
use crate::session::{self, SessionStream};
use crate::shared::Shared;
use crate::status::{self, Failure};
use crate::watch::{self, WatchStream};
use inv_engine::{Engine, SubmitError};
use inv_proto::v1 as pb;
use inv_proto::v1::inventory_server::Inventory;
use std::sync::Arc;
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
}

/// The caller `auth::Authenticated` resolved for this call.
fn caller<T>(request: &Request<T>) -> Result<Caller, Failure> {
    Caller::of(request.extensions())
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
        let (request, caller) = request_in_channel(request)?;
        let answer = pipeline::reserve_now(&self.shared, request, caller.by());
        Ok(Response::new(answer.await?))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let (request, caller) = hold_in_scope(&self.shared, request, |r| &r.reservation_id)?;
        let answer = pipeline::commit_now(&self.shared, request, caller.by());
        Ok(Response::new(answer.await?))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let (request, caller) = hold_in_scope(&self.shared, request, |r| &r.reservation_id)?;
        let answer = pipeline::release_now(&self.shared, request, caller.by());
        Ok(Response::new(answer.await?))
    }

    async fn extend(
        &self,
        request: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::ExtendResponse>, Status> {
        let (request, caller) = hold_in_scope(&self.shared, request, |r| &r.reservation_id)?;
        let answer = pipeline::extend(&self.shared, request, caller.by()).await?;
        Ok(Response::new(answer))
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().reservation_id;
        check_reservation_id(&id)?;
        auth::hold_in_scope(&self.shared, &caller, Permission::HoldsRead, &id)?;
        let hold = self
            .engine()
            .reservation(&id)
            .map_err(|e| status::submit_error(&SubmitError::Archive(e)))?
            .ok_or_else(|| Failure::reservation_not_found(&id))?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(convert::reservation(&hold)),
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        caller(&request)?.require(Permission::AvailabilityRead)?;
        Ok(Response::new(pipeline::check_now(
            &self.shared,
            request.into_inner(),
        )?))
    }

    async fn check_sellable(
        &self,
        request: Request<pb::CheckSellableRequest>,
    ) -> Result<Response<pb::CheckSellableResponse>, Status> {
        caller(&request)?.require(Permission::AvailabilityRead)?;
        let request = request.into_inner();
        convert::check_batch_len("skus", request.skus.len())?;
        // The answer has no room for per-item errors, so a malformed sku or location fails
        // the call. Paths are formatted only then.
        let bad = |id: &str| convert::id_problem(id).is_some();
        if bad(&request.location) || request.skus.iter().any(bad) {
            let mut errors = FieldErrors::default();
            convert::check_id(&mut errors, "location", &request.location);
            for (i, sku) in request.skus.iter().enumerate() {
                convert::check_id(&mut errors, &format!("skus[{i}]"), sku);
            }
            errors.finish(())?;
        }
        let mut sellable = Vec::with_capacity(request.skus.len());
        self.engine()
            .sellable_at(&request.location, request.skus.iter(), &mut sellable);
        Ok(Response::new(pb::CheckSellableResponse { sellable }))
    }

    async fn check_sku(
        &self,
        request: Request<pb::CheckSkuRequest>,
    ) -> Result<Response<pb::CheckSkuResponse>, Status> {
        caller(&request)?.require(Permission::AvailabilityRead)?;
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
    // `bulk::Routed`); a service used without that layer runs them there all the same.
    async fn record_sales(
        &self,
        request: Request<pb::RecordSalesRequest>,
    ) -> Result<Response<pb::RecordSalesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        auth::check_sales(&caller, &request)?;
        let answer = bulk::on_lane(
            &self.shared,
            bulk::permit(&self.shared)?,
            |shared| async move { pipeline::record_sales(&shared, request, caller.by()).await },
        );
        Ok(Response::new(answer.await?))
    }

    async fn record_returns(
        &self,
        request: Request<pb::RecordReturnsRequest>,
    ) -> Result<Response<pb::RecordReturnsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        auth::check_returns(&caller, &request)?;
        let answer = bulk::on_lane(
            &self.shared,
            bulk::permit(&self.shared)?,
            |shared| async move { pipeline::record_returns(&shared, request, caller.by()).await },
        );
        Ok(Response::new(answer.await?))
    }

    async fn disposition(
        &self,
        request: Request<pb::DispositionRequest>,
    ) -> Result<Response<pb::DispositionResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::StockWrite)?;
        let command = convert::disposition(request.into_inner())?;
        let (lsn, duplicate) =
            pipeline::submit_recorded(&self.shared, command, caller.by()).await?;
        Ok(Response::new(pb::DispositionResponse { lsn, duplicate }))
    }

    async fn adjust(
        &self,
        request: Request<pb::AdjustRequest>,
    ) -> Result<Response<pb::AdjustResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::StockWrite)?;
        let command = convert::adjust(request.into_inner());
        let (lsn, duplicate) =
            pipeline::submit_recorded(&self.shared, command, caller.by()).await?;
        Ok(Response::new(pb::AdjustResponse { lsn, duplicate }))
    }

    async fn set_safety_stock(
        &self,
        request: Request<pb::SetSafetyStockRequest>,
    ) -> Result<Response<pb::SetSafetyStockResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::StockWrite)?;
        let command = convert::set_safety_stock(request.into_inner());
        let (lsn, duplicate) =
            pipeline::submit_recorded(&self.shared, command, caller.by()).await?;
        Ok(Response::new(pb::SetSafetyStockResponse { lsn, duplicate }))
    }

    async fn store_status(
        &self,
        request: Request<pb::StoreStatusRequest>,
    ) -> Result<Response<pb::StoreStatusResponse>, Status> {
        let caller = caller(&request)?;
        let store_id = request.into_inner().store_id;
        let stores = if store_id.is_empty() {
            // A store principal is shown its own stores only.
            let permission = Permission::StoresRead;
            let mine = match caller.grant(permission) {
                Grant::All => None,
                Grant::Scoped(stores) => Some(stores.clone()),
                Grant::None => return Err(caller.denied(permission, None).into()),
            };
            self.engine()
                .store_statuses()
                .into_iter()
                .filter(|s| mine.as_ref().is_none_or(|mine| mine.contains(&s.store_id)))
                .map(|s| convert::store_status(s, STORE_GAPS_LISTED_IN_LIST_MAX))
                .collect()
        } else {
            let mut errors = FieldErrors::default();
            convert::check_id(&mut errors, "store_id", &store_id);
            errors.finish(())?;
            caller.require_in(Permission::StoresRead, "store", &store_id)?;
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
        caller(&request)?.require(Permission::AvailabilityRead)?;
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
        let caller = caller(&request)?;
        Ok(Response::new(session::start(
            Arc::clone(&self.shared),
            caller,
            request.into_inner(),
        )))
    }

    async fn push_snapshot(
        &self,
        request: Request<Streaming<pb::PushSnapshotRequest>>,
    ) -> Result<Response<pb::PushSnapshotResponse>, Status> {
        caller(&request)?.require(Permission::ReconcileWrite)?;
        let answer = reconcile::push(&self.shared, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        caller(&request)?.require(Permission::ReconcileWrite)?;
        let answer = reconcile::reconcile(&self.shared, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn get_reconciliation_report(
        &self,
        request: Request<pb::GetReconciliationReportRequest>,
    ) -> Result<Response<pb::GetReconciliationReportResponse>, Status> {
        caller(&request)?.require(Permission::ReconcileRead)?;
        let (shared, request) = (Arc::clone(&self.shared), request.into_inner());
        let answer = blocking(move || reconcile::get_report(&shared, request)).await?;
        Ok(Response::new(answer))
    }

    async fn list_reconciliations(
        &self,
        request: Request<pb::ListReconciliationsRequest>,
    ) -> Result<Response<pb::ListReconciliationsResponse>, Status> {
        caller(&request)?.require(Permission::ReconcileRead)?;
        let (shared, request) = (Arc::clone(&self.shared), request.into_inner());
        let answer = blocking(move || reconcile::list(&shared, request)).await?;
        Ok(Response::new(answer))
    }

    async fn resolve_drift(
        &self,
        request: Request<pb::ResolveDriftRequest>,
    ) -> Result<Response<pb::ResolveDriftResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::ReconcileWrite)?;
        let answer =
            reconcile::resolve_drift(&self.shared, request.into_inner(), caller.by()).await?;
        Ok(Response::new(answer))
    }

    async fn list_held_drifts(
        &self,
        request: Request<pb::ListHeldDriftsRequest>,
    ) -> Result<Response<pb::ListHeldDriftsResponse>, Status> {
        caller(&request)?.require(Permission::ReconcileRead)?;
        let (shared, request) = (Arc::clone(&self.shared), request.into_inner());
        let answer = blocking(move || reconcile::list_held(&shared, request)).await?;
        Ok(Response::new(answer))
    }

    // A scan of the log: on the bulk lane, with a budget of its own (see `events`).
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        caller(&request)?.require(Permission::EventsRead)?;
        let answer = events::list(&self.shared, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    // A write like the others: decided inline, answered once durable.
    async fn acknowledge_store_anomaly(
        &self,
        request: Request<pb::AcknowledgeStoreAnomalyRequest>,
    ) -> Result<Response<pb::AcknowledgeStoreAnomalyResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Permission::StoresWrite)?;
        let command = convert::acknowledge_store_anomaly(request.into_inner())?;
        let receipt = pipeline::submit(&self.shared, command, caller.by()).await?;
        Ok(Response::new(convert::anomaly_acknowledged(receipt)?))
    }
}

/// Reserve: the hold's channel must be one of the caller's.
fn request_in_channel(
    request: Request<pb::ReserveRequest>,
) -> Result<(pb::ReserveRequest, Caller), Failure> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    caller.require_in(Permission::HoldsWrite, "channel", &request.channel)?;
    Ok((request, caller))
}

/// Commit, Release and Extend: the hold the request names must be in the caller's scope.
fn hold_in_scope<T>(
    shared: &Shared,
    request: Request<T>,
    reservation_id: impl Fn(&T) -> &str,
) -> Result<(T, Caller), Failure> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    auth::hold_in_scope(
        shared,
        &caller,
        Permission::HoldsWrite,
        reservation_id(&request),
    )?;
    Ok((request, caller))
}

/// Runs a read of the snapshot store (or of every held drift) on the blocking pool: a page of
/// reports is a few disk reads, not worth a worker's time.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| crate::status::join_error(&e))?
}
