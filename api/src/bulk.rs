//! The bulk lane: RecordSales and RecordReturns run on a thread of their own, at a lower OS
//! priority, so a store backfill never takes CPU the hot path (Reserve, Check, Commit,
//! Release) needs.
//!
//! A batch of a thousand sales costs milliseconds of CPU to decode, decide, log and answer.
//! On the runtime's workers that time is taken from whatever hot call is queued behind it,
//! and on two cores a few concurrent backfills cut Check throughput tenfold (measured with
//! `load --scenario backfill`). So:
//! - [`Routed`] intercepts the two bulk methods before their body is read. Without a permit of
//!   the bulk budget (`ServerConfig::bulk_in_flight_max`) the call is answered
//!   RESOURCE_EXHAUSTED at once, having cost neither side a decode.
//! - With a permit, tonic only gathers the message's bytes (a raw codec, no protobuf work)
//!   and hands them to the lane: one OS thread with a current-thread runtime, niced to
//!   `ServerConfig::bulk_nice`. There the batch is decoded, decided in chunks (so two bulk
//!   calls interleave), waited on for durability and encoded; the worker thread only copies
//!   the answer's bytes out.
//! - The OS scheduler then gives the lane the CPU the hot path leaves: under a saturating
//!   surge bulk calls slow down (and their budget refuses the surplus); when the hot path is
//!   quiet they run at full speed.
//!
//! The lane's engine calls take the same short locks as any write. A niced thread preempted
//! inside one could hold up hot writes, so the lane is niced moderately by default, not to
//! the lowest priority (see `ServerConfig::bulk_nice`).

use crate::auth::{self, Caller, Grant, Permission};
use crate::pipeline;
use crate::shared::Shared;
use crate::status::Failure;
use futures_util::future::Either;
use inv_proto::v1 as pb;
use prost::Message;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::OwnedSemaphorePermit;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Bytes, http};
use tonic::{Request, Response, Status};

const RECORD_SALES_PATH: &str = "/inventory.v1.Inventory/RecordSales";
const RECORD_RETURNS_PATH: &str = "/inventory.v1.Inventory/RecordReturns";

/// Runs `job` on the lane holding `permit` of the bulk budget until it has answered: the one
/// way a bulk call is served, routed or not.
pub(crate) fn on_lane<T, F, Fut>(
    shared: &Arc<Shared>,
    permit: OwnedSemaphorePermit,
    job: F,
) -> impl Future<Output = Result<T, Failure>> + Send + 'static
where
    F: FnOnce(Arc<Shared>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    T: Send + 'static,
{
    let shared = Arc::clone(shared);
    async move {
        let lane_shared = Arc::clone(&shared);
        shared
            .bulk_lane
            .run(async move {
                let _permit = permit;
                job(lane_shared).await
            })
            .await
    }
}

/// Takes a permit of the bulk budget, or the RESOURCE_EXHAUSTED answer.
pub(crate) fn permit(shared: &Shared) -> Result<OwnedSemaphorePermit, Failure> {
    Arc::clone(&shared.bulk)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("bulk calls", shared.config.bulk_in_flight_max))
}

// ---------------------------------------------------------------------------------------------
// Routing

#[derive(Clone, Copy)]
enum Kind {
    Sales,
    Returns,
}

/// Wraps the `Inventory` service and serves its bulk methods on the lane (see the module docs);
/// every other call goes to the wrapped service untouched.
#[derive(Clone)]
pub(crate) struct Routed<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Routed<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Routed<S> {
    const NAME: &'static str = S::NAME;
}

/// A bulk call's answer (or its refusal), as the server sends it.
type BulkFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<S, B> tonic::codegen::Service<http::Request<B>> for Routed<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<S::Future, BulkFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let kind = match request.uri().path() {
            RECORD_SALES_PATH => Kind::Sales,
            RECORD_RETURNS_PATH => Kind::Returns,
            _ => return Either::Left(self.inner.call(request)),
        };
        let shared = Arc::clone(&self.shared);
        // Resolved by `auth::Authenticated`, which wraps this; checked once the body is read.
        let caller = match Caller::of(request.extensions()) {
            Ok(caller) => caller,
            Err(failure) => {
                let response = Status::from(failure).into_http();
                return Either::Right(Box::pin(async move { Ok(response) }));
            }
        };
        // A caller with no store at all is refused before the body is read too.
        let permission = match kind {
            Kind::Sales => Permission::SalesWrite,
            Kind::Returns => Permission::ReturnsWrite,
        };
        if caller.grant(permission) == Grant::None {
            let response = Status::from(caller.denied(permission, None)).into_http();
            return Either::Right(Box::pin(async move { Ok(response) }));
        }
        // Before the body is read: a refused batch costs the server nothing but its headers.
        let permit = match permit(&shared) {
            Ok(permit) => permit,
            Err(failure) => {
                let response = Status::from(failure).into_http();
                return Either::Right(Box::pin(async move { Ok(response) }));
            }
        };
        Either::Right(Box::pin(async move {
            let config = shared.config;
            let mut grpc = tonic::server::Grpc::new(RawCodec).apply_max_message_size_config(
                Some(config.request_bytes_max),
                Some(config.response_bytes_max),
            );
            let call = LaneCall {
                shared,
                caller,
                kind,
                permit: Some(permit),
            };
            Ok(grpc.unary(call, request).await)
        }))
    }
}

/// One bulk call, from its message's bytes to its answer's bytes, on the lane.
struct LaneCall {
    shared: Arc<Shared>,
    caller: Caller,
    kind: Kind,
    /// Held until the lane has answered.
    permit: Option<OwnedSemaphorePermit>,
}

impl tonic::server::UnaryService<Bytes> for LaneCall {
    type Response = Bytes;
    type Future = LaneFuture;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let Some(permit) = self.permit.take() else {
            // tonic calls a unary service once per request; a second call has no permit.
            return Box::pin(async { Err(Status::internal("a bulk call was served twice")) });
        };
        let kind = self.kind;
        let caller = self.caller.clone();
        let bytes = request.into_inner();
        let answer = on_lane(&self.shared, permit, move |shared| async move {
            let response = match kind {
                Kind::Sales => {
                    let request = decode::<pb::RecordSalesRequest>(bytes)?;
                    auth::check_sales(&caller, &request)?;
                    pipeline::record_sales(&shared, request, caller.by())
                        .await?
                        .encode_to_vec()
                }
                Kind::Returns => {
                    let request = decode::<pb::RecordReturnsRequest>(bytes)?;
                    auth::check_returns(&caller, &request)?;
                    pipeline::record_returns(&shared, request, caller.by())
                        .await?
                        .encode_to_vec()
                }
            };
            Ok(Bytes::from(response))
        });
        Box::pin(async move { Ok(Response::new(answer.await?)) })
    }
}

/// A bulk call's answer message, from the lane.
type LaneFuture = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

/// Decodes a message as tonic's prost codec would, with the same status on failure.
fn decode<M: Message + Default>(bytes: Bytes) -> Result<M, Failure> {
    M::decode(bytes).map_err(|error| Failure::internal(error.to_string()))
}

/// A codec that passes a message's bytes through: decoding and encoding happen on the lane.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use prost::bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
