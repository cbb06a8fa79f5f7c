//! The gRPC layer: counts and times every call of the `Inventory` service by method and final
//! status code.

use crate::shared::Shared;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;
use tonic::codegen::http;

/// Wraps the `Inventory` service and counts every call by method and final status code, with
/// its duration. The code of a call is in the response headers when it failed before sending a
/// message (a "trailers-only" response), else in the trailers at the end of the body; so the
/// body is wrapped and the call is counted when its trailers pass, or when the body is dropped
/// unfinished (the client went away: `Canceled`).
#[derive(Clone)]
pub(crate) struct Instrumented<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Instrumented<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Instrumented<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for Instrumented<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let shared = Arc::clone(&self.shared);
        let method = shared.metrics.method_of(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let mut call = Call {
                shared,
                method: Some(method),
                started,
            };
            if let Some(code) = header_code(response.headers()) {
                call.end(code);
                return Ok(response);
            }
            Ok(response.map(|body| tonic::body::Body::new(ObservedBody { body, call })))
        })
    }
}

/// The status code a header map carries, if it carries one.
fn header_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// One call being timed; counted once, by [`Call::end`] or on drop.
struct Call {
    shared: Arc<Shared>,
    /// The method's index; taken when the call is counted.
    method: Option<usize>,
    started: Instant,
}

impl Call {
    fn end(&mut self, code: Code) {
        if let Some(method) = self.method.take() {
            self.shared
                .metrics
                .observe_call(method, code, self.started.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A body dropped before its trailers: the client cancelled or the connection went.
        self.end(Code::Cancelled);
    }
}

/// A response body that reports the call's status code when its trailers pass.
struct ObservedBody {
    body: tonic::body::Body,
    call: Call,
}

impl http_body::Body for ObservedBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<tonic::codegen::Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(header_code) {
                    this.call.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.end(status.code()),
            // The end without trailers: nothing said otherwise, so the call ended well.
            Poll::Ready(None) => this.call.end(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Not before the call is counted: `Body::new` drops a body that is already at its
        // end, which would count the call as cancelled.
        self.call.method.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
