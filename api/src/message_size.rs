//! Requests over the decode limit, answered as the contract says.
//!
//! tonic refuses a request message larger than its `max_decoding_message_size`
//! (`--request-bytes-max`) before any of our code sees the call, with OUT_OF_RANGE and no
//! ErrorInfo. gRPC's convention for a message over a size limit is RESOURCE_EXHAUSTED, and the
//! contract promises an ErrorInfo with every error, so [`DecodeLimit`] rewrites that answer to
//! `status::decode_limit`'s (MESSAGE_TOO_LARGE, naming the limit). tonic has no hook for the
//! status its codec returns; this layer sees the answer it sends for a unary or
//! server-streaming call whose request did not decode: a "trailers-only" response, the status
//! in its headers. A stream our own handlers read (`session`, `reconcile::push`) gets the same
//! status from `Streaming` and maps it there.
//!
//! The layer sits inside the metrics layer, so the call is counted with the code the client
//! gets. An answer that is not a failed decode costs one header lookup, and nothing is
//! allocated per call (the future is a plain wrapper, not a box).

use crate::status;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codegen::http;

/// Wraps the `Inventory` service and rewrites tonic's answer to a request over the decode limit.
#[derive(Clone)]
pub(crate) struct DecodeLimit<S> {
    inner: S,
    /// The limit the wrapped service decodes with, for the answer.
    limit_bytes: usize,
}

impl<S> DecodeLimit<S> {
    pub fn new(inner: S, limit_bytes: usize) -> Self {
        Self { inner, limit_bytes }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for DecodeLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for DecodeLimit<S>
where
    S: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Unpin,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Answered {
            inner: self.inner.call(request),
            limit_bytes: self.limit_bytes,
        }
    }
}

/// The wrapped service's answer, rewritten once it is ready if it is the decode limit's.
pub(crate) struct Answered<F> {
    inner: F,
    limit_bytes: usize,
}

impl<F> Future for Answered<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let limit_bytes = self.limit_bytes;
        Pin::new(&mut self.inner).poll(cx).map(|answer| {
            answer.map(|mut response| {
                rewrite(response.headers_mut(), limit_bytes);
                response
            })
        })
    }
}

/// Replaces the status in `headers` if it is tonic's decode-limit OUT_OF_RANGE.
fn rewrite(headers: &mut http::HeaderMap, limit_bytes: usize) {
    const OUT_OF_RANGE: &[u8] = b"11";
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(OUT_OF_RANGE) {
        return;
    }
    let Some(failure) =
        Status::from_header_map(headers).and_then(|s| status::decode_limit(&s, limit_bytes))
    else {
        return;
    };
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if let Err(error) = Status::from(failure).add_header(headers) {
        // Only a status whose message cannot be a header value fails here; ours is ASCII.
        tracing::error!(%error, "could not encode the decode-limit answer");
        let _ = error.add_header(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    #[test]
    fn tonics_decode_limit_answer_becomes_resource_exhausted_with_the_reason() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 9000 bytes, the limit is: 4096 bytes",
        );
        let mut headers = http::HeaderMap::new();
        tonic.add_header(&mut headers).expect("encodes");
        rewrite(&mut headers, 4096);
        let status = Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
        assert_eq!(info.metadata["limit_bytes"], "4096");

        // Any other status is left as it is.
        let other = Status::out_of_range("after_lsn is beyond the end of the log");
        let mut headers = http::HeaderMap::new();
        other.add_header(&mut headers).expect("encodes");
        let before = headers.clone();
        rewrite(&mut headers, 4096);
        assert_eq!(headers, before);
    }
}
