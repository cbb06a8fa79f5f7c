//! `Session`: checks, reserves, commits and releases over one bidirectional stream.
//!
//! A connector that sends thousands of requests a second pays for a unary call each (HTTP/2
//! stream setup, headers, trailers, a task). A session pays for one stream and then only for
//! its messages. Each request is handled by the same `pipeline` function as its unary RPC, so
//! conversion, validation and the status mapping are shared; a failure becomes
//! the `ItemError` its unary call would have failed with, and the stream goes on.
//!
//! # How a stream is driven
//! The response stream *is* the session: each time tonic asks for the next answer, the
//! session reads requests and advances the requests in flight until one is ready. So one
//! stream costs no task or channel of its own, and everything it does runs on the task hyper
//! already has for the stream.
//! - A check is answered at once, inline.
//! - A write is decided (and appended) when it is read, so requests are decided in the order
//!   they arrive; what is left, the wait for durability, joins the requests in flight, and its
//!   answer goes out when it is durable. Answers are therefore out of order.
//! - Answers ready to go are preferred over reading more requests, and at most
//!   [`SESSION_IN_FLIGHT_MAX`] requests are in flight: past that the session stops reading, the
//!   HTTP/2 receive window fills and flow control holds the client back. A client that does
//!   not read its answers is held back the same way, through the send window.
//! - Writes draw on the server's interactive writes budget, one permit per write in flight,
//!   exactly as unary writes do; an exhausted budget is a RESOURCE_EXHAUSTED answer to that
//!   request only.
//! - Each request costs its principal one call of its quota (docs/security.md), as opening the
//!   stream did; a request over it is answered RESOURCE_EXHAUSTED (QUOTA_EXCEEDED, the
//!   message saying when to retry) without being applied, and the stream goes on.
//!
//! # How a stream ends
//! - The client closes its side: every request read is answered, then the stream ends OK.
//! - The server shuts down: the session stops reading, answers what it has read (each write is
//!   already in the log), and ends with UNAVAILABLE (SHUTTING_DOWN). An open stream would
//!   otherwise hold graceful shutdown until the drain timeout (STACK.md §5.1).
//! - The request side fails (a message too large, a reset): as for shutdown, with that status;
//!   a message over the decode limit ends it RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE), as the
//!   unary call would have been answered.
//! - The client goes away: tonic drops the session, and with it the waits in flight; their
//!   writes are in the log already and become durable with the rest.

use crate::auth::{self, Caller, Permission};
use crate::pipeline;
use crate::shared::Shared;
use crate::status::{self, Failure};
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use inv_proto::v1 as pb;
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};

/// Most requests of one stream read but not yet answered. Enough to keep a group commit full
/// from one connector (a durable write takes about one fsync, ~0.2-1 ms, and a connector
/// pipelines its requests over that time); small enough that a stream's memory stays bounded
/// (~1 KiB per write in flight).
pub const SESSION_IN_FLIGHT_MAX: usize = 1_024;

/// The response stream of one session.
pub type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::SessionResponse, Status>> + Send>>;

/// A write waiting for durability, with its answer once it is.
type InFlight = Pin<Box<dyn Future<Output = pb::SessionResponse> + Send>>;

/// One open stream.
struct Session {
    shared: Arc<Shared>,
    /// Who opened the stream: every request on it is checked against its roles.
    caller: Caller,
    /// The client's requests.
    inbound: Streaming<pb::SessionRequest>,
    /// Writes read and decided, waiting for durability; at most [`SESSION_IN_FLIGHT_MAX`].
    in_flight: FuturesUnordered<InFlight>,
    /// Completes when the server starts shutting down. Pinned once, so waiting on it costs
    /// one registration per stream instead of one per answer.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// False once the client closed its side, the request side failed, or shutdown began.
    reading: bool,
    /// How the stream ends once nothing is in flight: OK (`None`) or this status.
    end: Option<Status>,
}

/// Starts a session over `inbound`.
pub(crate) fn start(
    shared: Arc<Shared>,
    caller: Caller,
    inbound: Streaming<pb::SessionRequest>,
) -> SessionStream {
    let shutdown = shared.shutdown.clone();
    let session = Session {
        shared,
        caller,
        inbound,
        in_flight: FuturesUnordered::new(),
        shutdown: Box::pin(shutdown.cancelled_owned()),
        reading: true,
        end: None,
    };
    Box::pin(futures_util::stream::unfold(session, |mut session| async {
        let item = session.next().await?;
        Some((item, session))
    }))
}

impl Session {
    /// The next answer, the status that ends the stream, or `None` once it has ended.
    async fn next(&mut self) -> Option<Result<pb::SessionResponse, Status>> {
        loop {
            debug_assert!(self.in_flight.len() <= SESSION_IN_FLIGHT_MAX);
            let read = self.reading && self.in_flight.len() < SESSION_IN_FLIGHT_MAX;
            tokio::select! {
                // Shutdown first, then answers before more requests: answering frees room.
                biased;
                () = &mut self.shutdown, if self.reading => {
                    self.stop_reading(Failure::shutting_down(
                        "the server is shutting down; requests without an answer were not \
                         read: resend them to a healthy server",
                    )
                    .into());
                }
                Some(answer) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    return Some(Ok(answer));
                }
                message = self.inbound.next(), if read => match message {
                    Some(Ok(request)) => {
                        if let Some(answer) = self.handle(request) {
                            return Some(Ok(answer));
                        }
                    }
                    None => self.reading = false,
                    Some(Err(status)) => {
                        let limit_bytes = self.shared.config.request_bytes_max;
                        let end = status::decode_limit(&status, limit_bytes)
                            .map_or(status, Status::from);
                        self.stop_reading(end);
                    }
                },
                // Not reading and nothing in flight: the stream is over.
                else => return self.end.take().map(Err),
            }
        }
    }

    fn stop_reading(&mut self, end: Status) {
        self.reading = false;
        self.end = Some(end);
    }

    /// Handles one request: the answer if it is ready now, else `None` (it is in flight).
    fn handle(&mut self, request: pb::SessionRequest) -> Option<pb::SessionResponse> {
        let id = request.correlation_id;
        // Seen by the bulk lane's pacing (`lane::pace`): a stream is hot traffic too.
        self.shared
            .session_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Refused like its unary RPC would be, as this request's answer; the stream goes on.
        if let Err(failure) = self
            .take_call()
            .and_then(|()| self.authorize(request.request.as_ref()))
        {
            return Some(response(id, Err(failure)));
        }
        match request.request {
            Some(Ask::Check(check)) => Some(response(
                id,
                pipeline::check_now(&self.shared, check).map(Answer::Check),
            )),
            Some(Ask::Reserve(reserve)) => {
                let answer = pipeline::reserve_now(&self.shared, reserve, self.caller.by());
                self.push(id, answer, Answer::Reserve);
                None
            }
            Some(Ask::Commit(commit)) => {
                let answer = pipeline::commit_now(&self.shared, commit, self.caller.by());
                self.push(id, answer, Answer::Commit);
                None
            }
            Some(Ask::Release(release)) => {
                let answer = pipeline::release_now(&self.shared, release, self.caller.by());
                self.push(id, answer, Answer::Release);
                None
            }
            None => Some(response(
                id,
                Err(Failure::invalid_field(
                    "request",
                    "must be one of check, reserve, commit or release",
                )),
            )),
        }
    }

    /// One call of the principal's quota (the principal the stream was opened with).
    fn take_call(&self) -> Result<(), Failure> {
        let Caller::Principal(principal) = &self.caller else {
            return Ok(());
        };
        principal.take_call(Instant::now()).inspect_err(|_| {
            self.shared.metrics.observe_quota_refusal(&principal.name);
        })
    }

    /// The permission check of one request, as its unary RPC makes it.
    fn authorize(&self, request: Option<&Ask>) -> Result<(), Failure> {
        let (shared, caller) = (&self.shared, &self.caller);
        match request {
            Some(Ask::Check(_)) => caller.require(Permission::AvailabilityRead),
            Some(Ask::Reserve(reserve)) => {
                caller.require_in(Permission::HoldsWrite, "channel", &reserve.channel)
            }
            Some(Ask::Commit(commit)) => auth::hold_in_scope(
                shared,
                caller,
                Permission::HoldsWrite,
                &commit.reservation_id,
            ),
            Some(Ask::Release(release)) => auth::hold_in_scope(
                shared,
                caller,
                Permission::HoldsWrite,
                &release.reservation_id,
            ),
            None => Ok(()),
        }
    }

    /// Puts a decided write in flight.
    fn push<T: 'static>(
        &mut self,
        id: u64,
        answer: impl Future<Output = Result<T, Failure>> + Send + 'static,
        wrap: fn(T) -> Answer,
    ) {
        self.in_flight.push(Box::pin(
            async move { response(id, answer.await.map(wrap)) },
        ));
    }
}

/// The answer to request `correlation_id`: its response, or the error its unary RPC would have
/// failed with.
fn response(correlation_id: u64, result: Result<Answer, Failure>) -> pb::SessionResponse {
    pb::SessionResponse {
        correlation_id,
        response: Some(result.unwrap_or_else(|failure| Answer::Error(failure.into_item_error()))),
    }
}
