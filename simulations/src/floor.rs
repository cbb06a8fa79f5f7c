//! The floor: a server of the same `Inventory` service (the stubs tonic generated from the same
//! .proto) that answers constants, so whatever a call costs it is gRPC's own cost (HTTP/2,
//! protobuf, tonic, the runtime) and none of the engine's.
//!
//! Check answers each position asked with a fixed availability (naming the position, as the
//! engine's answer does, so the answers are the same size); Reserve a fixed grant; Commit,
//! Release, Adjust and RecordSales fixed successes; Session each request with the fixed answer
//! of its kind. Everything else is UNIMPLEMENTED. No engine, no log, no authentication, no
//! metrics or tracing layers: tonic's `Server` with its default settings, on `127.0.0.1:0`, on
//! a runtime and thread of its own like [`crate::LocalServer`], its threads named
//! `inv-floor...` ([`crate::cpu::FLOOR_THREADS`]) so their CPU time is told apart.

use crate::pb;
use crate::pb::inventory_server::{Inventory, InventoryServer};
use crate::server::ServerThread;
use anyhow::{Context, Result, anyhow};
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::net::SocketAddr;
use std::pin::Pin;
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Units of every fixed availability.
const ON_HAND: i64 = 1_000;
/// The LSN of every fixed write answer.
const LSN: u64 = 1;
/// Expiry of every fixed grant (a fixed instant: the floor reads no clock).
const EXPIRES_AT_MS: u64 = 4_102_444_800_000;

/// The constant-answer service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor;

fn availability(position: pb::Position) -> pb::CheckResult {
    pb::CheckResult {
        result: Some(pb::check_result::Result::Availability(
            pb::PositionAvailability {
                sku: position.sku,
                location: position.location,
                exists: true,
                on_hand: ON_HAND,
                reserved: 0,
                safety_stock: 0,
                quarantined: 0,
                available: ON_HAND,
                sellable: ON_HAND as u64,
            },
        )),
    }
}

fn check(request: pb::CheckRequest) -> pb::CheckResponse {
    pb::CheckResponse {
        results: request.positions.into_iter().map(availability).collect(),
    }
}

fn granted() -> pb::ReserveResponse {
    pb::ReserveResponse {
        lsn: LSN,
        duplicate: false,
        result: Some(pb::reserve_response::Result::Granted(pb::ReserveGranted {
            expires_at_ms: EXPIRES_AT_MS,
        })),
    }
}

/// A commit of the request's lines as asked, or (none asked: the whole hold) of one line.
fn committed(request: pb::CommitRequest) -> pb::CommitResponse {
    let lines = if request.lines.is_empty() {
        vec![pb::CommittedLine {
            sku: String::new(),
            location: String::new(),
            held: 1,
            committed: 1,
        }]
    } else {
        request
            .lines
            .into_iter()
            .map(|line| pb::CommittedLine {
                sku: line.sku,
                location: line.location,
                held: line.qty,
                committed: line.qty,
            })
            .collect()
    };
    pb::CommitResponse {
        lsn: LSN,
        duplicate: false,
        lines,
    }
}

fn released() -> pb::ReleaseResponse {
    pb::ReleaseResponse {
        lsn: LSN,
        duplicate: false,
    }
}

/// The fixed answer of a Session request's kind; no kind is INVALID_ARGUMENT, as the engine
/// answers it.
fn session_answer(request: pb::SessionRequest) -> pb::SessionResponse {
    let response = match request.request {
        Some(Ask::Check(check_request)) => Answer::Check(check(check_request)),
        Some(Ask::Reserve(_)) => Answer::Reserve(granted()),
        Some(Ask::Commit(commit_request)) => Answer::Commit(committed(commit_request)),
        Some(Ask::Release(_)) => Answer::Release(released()),
        None => Answer::Error(pb::ItemError {
            code: tonic::Code::InvalidArgument as u32,
            field: "request".to_owned(),
            message: "no request set".to_owned(),
            ..pb::ItemError::default()
        }),
    };
    pb::SessionResponse {
        correlation_id: request.correlation_id,
        response: Some(response),
    }
}

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The impl of the service: the methods given, and an UNIMPLEMENTED answer for each method
/// listed after them. One macro emits the whole impl so `async_trait` sees every method.
macro_rules! inventory_impl {
    (
        { $($answered:tt)* }
        unimplemented { $($method:ident($request:ty) -> $response:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl Inventory for Floor {
            $($answered)*
            $(
                async fn $method(
                    &self,
                    _: Request<$request>,
                ) -> Result<Response<$response>, Status> {
                    Err(Status::unimplemented(concat!(
                        "the floor answers only Check, Reserve, Commit, Release, Adjust, \
                         RecordSales and Session, not ",
                        stringify!($method)
                    )))
                }
            )*
        }
    };
}

inventory_impl! {
{
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Ok(Response::new(check(request.into_inner())))
    }

    async fn check_sellable(
        &self,
        request: Request<pb::CheckSellableRequest>,
    ) -> Result<Response<pb::CheckSellableResponse>, Status> {
        // The stock the load tool gives every sku: an answer of the engine's size.
        let stock = crate::scenarios::STOCK_PER_SKU.unsigned_abs();
        let sellable = vec![stock; request.into_inner().skus.len()];
        Ok(Response::new(pb::CheckSellableResponse { sellable }))
    }

    async fn reserve(
        &self,
        _: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        Ok(Response::new(granted()))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        Ok(Response::new(committed(request.into_inner())))
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Ok(Response::new(released()))
    }

    async fn adjust(
        &self,
        _: Request<pb::AdjustRequest>,
    ) -> Result<Response<pb::AdjustResponse>, Status> {
        Ok(Response::new(pb::AdjustResponse {
            lsn: LSN,
            duplicate: false,
        }))
    }

    /// Every sale recorded.
    async fn record_sales(
        &self,
        request: Request<pb::RecordSalesRequest>,
    ) -> Result<Response<pb::RecordSalesResponse>, Status> {
        let sales = request.into_inner().sales.len();
        let results = (0..sales)
            .map(|index| pb::BatchItemResult {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                result: Some(pb::batch_item_result::Result::Recorded(pb::Recorded {
                    lsn: LSN,
                    duplicate: false,
                })),
            })
            .collect();
        Ok(Response::new(pb::RecordSalesResponse { results }))
    }

    type SessionStream = Answers<pb::SessionResponse>;

    /// Each request answered as it is read, in order: nothing is queued beyond what HTTP/2
    /// flow control holds, since a request is read only when its answer's slot is free.
    async fn session(
        &self,
        request: Request<Streaming<pb::SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let answers = request
            .into_inner()
            .map(|request| request.map(session_answer));
        Ok(Response::new(Box::pin(answers)))
    }

    type WatchAvailabilityStream = Answers<pb::WatchAvailabilityResponse>;

    async fn watch_availability(
        &self,
        _: Request<pb::WatchAvailabilityRequest>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        Err(Status::unimplemented(
            "the floor does not answer watch_availability",
        ))
    }

    async fn push_snapshot(
        &self,
        _: Request<Streaming<pb::PushSnapshotRequest>>,
    ) -> Result<Response<pb::PushSnapshotResponse>, Status> {
        Err(Status::unimplemented(
            "the floor does not answer push_snapshot",
        ))
    }

}
    unimplemented {
        extend(pb::ExtendRequest) -> pb::ExtendResponse;
        get_reservation(pb::GetReservationRequest) -> pb::GetReservationResponse;
        check_sku(pb::CheckSkuRequest) -> pb::CheckSkuResponse;
        record_returns(pb::RecordReturnsRequest) -> pb::RecordReturnsResponse;
        disposition(pb::DispositionRequest) -> pb::DispositionResponse;
        set_safety_stock(pb::SetSafetyStockRequest) -> pb::SetSafetyStockResponse;
        store_status(pb::StoreStatusRequest) -> pb::StoreStatusResponse;
        acknowledge_store_anomaly(pb::AcknowledgeStoreAnomalyRequest)
            -> pb::AcknowledgeStoreAnomalyResponse;
        reconcile(pb::ReconcileRequest) -> pb::ReconcileResponse;
        get_reconciliation_report(pb::GetReconciliationReportRequest)
            -> pb::GetReconciliationReportResponse;
        list_reconciliations(pb::ListReconciliationsRequest) -> pb::ListReconciliationsResponse;
        resolve_drift(pb::ResolveDriftRequest) -> pb::ResolveDriftResponse;
        list_held_drifts(pb::ListHeldDriftsRequest) -> pb::ListHeldDriftsResponse;
        list_events(pb::ListEventsRequest) -> pb::ListEventsResponse;
    }
}

/// A running floor server.
pub struct FloorServer {
    serving: ServerThread,
}

impl FloorServer {
    /// Serves [`Floor`] on `127.0.0.1:0` with `worker_threads` runtime workers (one: a
    /// current-thread runtime run by the floor's thread, as [`crate::LocalServer`] does).
    pub fn start(worker_threads: usize) -> Result<FloorServer> {
        let runtime = inv_api::host::runtime_builder(worker_threads)
            .thread_name(crate::cpu::FLOOR_THREADS)
            .enable_all()
            .build()
            .context("starting the floor's runtime")?;
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        // TCP_NODELAY as tonic's `Server::serve` sets by default (an incoming of our own,
        // needed to learn the port, starts without it).
        let incoming = runtime
            .block_on(async { tonic::transport::server::TcpIncoming::bind(addr) })
            .map_err(|e| anyhow!("binding the floor to {addr}: {e}"))?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{}-main", crate::cpu::FLOOR_THREADS))
            .spawn(move || -> Result<()> {
                let served = runtime.block_on(
                    tonic::transport::Server::builder()
                        .add_service(InventoryServer::new(Floor))
                        .serve_with_incoming_shutdown(incoming, async move {
                            // A dropped sender shuts down too.
                            let _ = signal.await;
                        }),
                );
                drop(runtime);
                served.map_err(|e| anyhow!("the floor failed: {e}"))
            })
            .context("starting the floor's thread")?;
        Ok(FloorServer {
            serving: ServerThread::new(addr, shutdown, thread, "the floor's thread"),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.serving.url()
    }

    /// Shuts the floor down.
    pub fn stop(mut self) -> Result<()> {
        self.serving.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_answers_constants_of_the_right_kind() -> Result<()> {
        let floor = FloorServer::start(1)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut client = pb::inventory_client::InventoryClient::connect(floor.url()).await?;
            let positions = (0..3)
                .map(|i| pb::Position {
                    sku: format!("sku-{i}"),
                    location: "dc-1".to_owned(),
                })
                .collect();
            let answer = client
                .check(pb::CheckRequest { positions })
                .await?
                .into_inner();
            assert_eq!(answer.results.len(), 3);
            let reserved = client
                .reserve(pb::ReserveRequest::default())
                .await?
                .into_inner();
            assert!(matches!(
                reserved.result,
                Some(pb::reserve_response::Result::Granted(_))
            ));
            let (requests, outbound) = tokio::sync::mpsc::channel(4);
            let mut answers = client
                .session(tokio_stream::wrappers::ReceiverStream::new(outbound))
                .await?
                .into_inner();
            requests
                .send(pb::SessionRequest {
                    correlation_id: 7,
                    request: Some(Ask::Release(pb::ReleaseRequest::default())),
                })
                .await?;
            let answer = answers.message().await?.expect("an answer");
            assert_eq!(answer.correlation_id, 7);
            assert!(matches!(answer.response, Some(Answer::Release(_))));
            let status = client
                .extend(pb::ExtendRequest::default())
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unimplemented);
            anyhow::Ok(())
        })?;
        drop(runtime);
        floor.stop()
    }
}
