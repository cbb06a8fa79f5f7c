//! The PushSnapshot stream: a header, chunks of rows, a summary.
//!
//! A push is received on a thread of its own, at the bulk lane's lower OS priority, with a
//! current-thread runtime to poll the stream: decoding a chunk of protobuf rows, checking
//! them, the checksum and the snapshot store's writes all cost CPU per row, and a million rows
//! on the runtime's workers would be taken from the hot path (measured with `load --scenario
//! reconcile-under-load`). The worker only moves the connection's bytes. The thread reads a
//! message, stages it (`inv_engine::reconcile::Push`: rows are written as they arrive, and the
//! snapshot is staged only by a matching summary) and only then reads the next, so a client
//! that sends faster than the store writes is held back by HTTP/2 flow control, not by memory.
//!
//! Nothing is staged unless the summary arrives and matches, and nothing follows it: on any
//! other end (the stream breaks, the client cancels, a message is wrong) the thread drops its
//! `Push`, which aborts the upload.

use super::convert;
use crate::shared::Shared;
use crate::status::{self, Failure};
use inv_engine::reconcile::{Push, Pushed, SnapshotHeader, SnapshotSummary};
use inv_proto::v1 as pb;
use pb::push_snapshot_request::Message as M;
use prost::Message as _;
use std::sync::Arc;
use tonic::{Code, Streaming};
use tracing::info;

pub(crate) async fn push(
    shared: &Arc<Shared>,
    stream: Streaming<pb::PushSnapshotRequest>,
) -> Result<pb::PushSnapshotResponse, Failure> {
    let reconciler = &shared.reconciler;
    let permit = Arc::clone(&reconciler.pushes)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("snapshot pushes", super::PUSHES_IN_FLIGHT_MAX))?;
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("snapshot-push".into())
            .spawn(move || {
                // The permit is the thread's: a client that gives up does not free the slot
                // before the thread has let go of the stream.
                let _permit = permit;
                // Everything the push holds (the server's state, the stream, the runtime) is
                // dropped before the answer is sent: once the client has it, a server that
                // stops finds no thread still holding its stores open.
                let answer = {
                    let shared = shared;
                    crate::lane::lower_priority(shared.config.bulk_nice, shared.config.bulk_idle);
                    match tokio::runtime::Builder::new_current_thread().build() {
                        Ok(runtime) => runtime.block_on(receive(&shared, stream)),
                        Err(e) => Err(Failure::internal(format!(
                            "cannot start a snapshot push's runtime: {e}"
                        ))),
                    }
                };
                let _ = answer_tx.send(answer);
            })
            .map_err(|e| Failure::internal(format!("cannot start a snapshot push thread: {e}")))?;
    }
    let pushed = answer_rx
        .await
        .map_err(|_| Failure::internal("the snapshot push thread ended without an answer"))??;
    let snapshot_id = pushed.snapshot.header.snapshot_id.to_string();
    if !pushed.duplicate {
        reconciler
            .metrics
            .observe_staged(pushed.snapshot.summary.rows);
        info!(
            snapshot_id,
            rows = pushed.snapshot.summary.rows,
            "snapshot staged"
        );
    }
    Ok(pb::PushSnapshotResponse {
        snapshot: Some(convert::reconciliation(&pushed.snapshot, None)),
        duplicate: pushed.duplicate,
    })
}

/// Reads the whole push and stages it, on the push's thread. An `Err` is why nothing was
/// staged.
async fn receive(
    shared: &Shared,
    mut stream: Streaming<pb::PushSnapshotRequest>,
) -> Result<Pushed, Failure> {
    let limit_bytes = shared.config.request_bytes_max;
    let header = match next(&mut stream, limit_bytes).await? {
        Some(M::Header(header)) => {
            let engine = &shared.engine;
            let now_ms = engine.now_ms();
            let history_start_ms = engine.history_start_ms(now_ms);
            convert::header(header, |h| h.validate(now_ms, history_start_ms))?
        }
        Some(_) => {
            return Err(Failure::invalid_field(
                "header",
                "the first message of a push must be its header",
            ));
        }
        None => {
            return Err(Failure::snapshot_incomplete(
                Code::InvalidArgument,
                "header",
                "the stream ended before its header; nothing was staged",
            ));
        }
    };
    let snapshot_id = header.snapshot_id.to_string();
    let result = stage(shared, header, &mut stream).await;
    if let Err(failure) = &result {
        info!(snapshot_id, message = %failure.message, "snapshot push abandoned; nothing staged");
    }
    result
}

/// Begins the push, stages each chunk as it is read, and stages the snapshot on a summary that
/// matches and ends the stream. Dropping the `Push` on any early return aborts the upload.
async fn stage(
    shared: &Shared,
    header: SnapshotHeader,
    stream: &mut Streaming<pb::PushSnapshotRequest>,
) -> Result<Pushed, Failure> {
    let engine = &shared.engine;
    let config = &shared.config;
    let now_ms = engine.now_ms();
    let mut push = Push::begin(
        shared.reconciler.store.as_ref(),
        header,
        now_ms,
        engine.history_start_ms(now_ms),
    )
    .map_err(|e| status::push_error(&e))?;
    let mut rows_sent: u64 = 0;
    loop {
        let summary = match next(stream, config.request_bytes_max).await? {
            Some(M::Chunk(chunk)) => {
                if chunk.rows.len() > config.snapshot_chunk_rows_max {
                    return Err(Failure::invalid_field(
                        "chunk.rows",
                        format!(
                            "{} rows; a chunk has at most {} (--snapshot-chunk-rows-max): \
                             send smaller chunks",
                            chunk.rows.len(),
                            config.snapshot_chunk_rows_max
                        ),
                    ));
                }
                let bytes = chunk.encoded_len();
                if bytes > config.snapshot_chunk_bytes_max {
                    return Err(Failure::invalid_field(
                        "chunk",
                        format!(
                            "{bytes} bytes; a chunk is at most {} bytes \
                             (--snapshot-chunk-bytes-max): send smaller chunks",
                            config.snapshot_chunk_bytes_max
                        ),
                    ));
                }
                let count = chunk.rows.len() as u64;
                let rows = convert::rows(chunk.rows);
                rows_sent += count;
                push.rows(&rows).map_err(|e| status::push_error(&e))?;
                continue;
            }
            Some(M::Summary(summary)) => summary,
            Some(M::Header(_)) => {
                return Err(Failure::invalid_field(
                    "header",
                    "sent twice: a push has one header, first",
                ));
            }
            None => {
                return Err(Failure::snapshot_incomplete(
                    Code::InvalidArgument,
                    "summary",
                    format!(
                        "the stream ended after {rows_sent} rows without its summary; \
                         nothing was staged"
                    ),
                ));
            }
        };
        if summary.row_count != rows_sent {
            return Err(Failure::snapshot_incomplete(
                Code::InvalidArgument,
                "summary.row_count",
                format!(
                    "the summary counts {} rows, {rows_sent} arrived; nothing was staged",
                    summary.row_count
                ),
            ));
        }
        // Nothing may follow the summary: the snapshot is staged once the stream has ended.
        if next(stream, config.request_bytes_max).await?.is_some() {
            return Err(Failure::invalid_field(
                "summary",
                "must be the last message of the push",
            ));
        }
        let summary = SnapshotSummary {
            rows: summary.row_count,
            checksum: summary.checksum,
        };
        return push
            .finish(&summary, engine.now_ms())
            .map_err(|e| status::push_error(&e));
    }
}

/// The next message, or `None` at the end of the stream. A broken or cancelled stream is a
/// failure: nothing is staged. So is a message over the decode limit (`limit_bytes`), answered
/// as the limit's own RESOURCE_EXHAUSTED, as for a unary call.
async fn next(
    stream: &mut Streaming<pb::PushSnapshotRequest>,
    limit_bytes: usize,
) -> Result<Option<M>, Failure> {
    match stream.message().await {
        Ok(Some(request)) => match request.message {
            Some(message) => Ok(Some(message)),
            None => Err(Failure::invalid_field(
                "message",
                "must be a header, a chunk or a summary",
            )),
        },
        Ok(None) => Ok(None),
        Err(status) => Err(
            status::decode_limit(&status, limit_bytes).unwrap_or_else(|| {
                Failure::snapshot_incomplete(
                    Code::Cancelled,
                    "summary",
                    format!(
                        "the stream broke off before its summary ({}); nothing was staged",
                        status.message()
                    ),
                )
            }),
        ),
    }
}
