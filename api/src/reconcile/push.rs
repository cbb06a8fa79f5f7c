//! The PushSnapshot stream: a header, chunks of rows, a summary.
//!
//! The async side reads the stream and checks each message's shape and limits; a blocking
//! thread of the push's own stages what it is sent (`inv_engine::reconcile::Push`: rows are
//! written as they arrive, and the snapshot is staged only by a matching summary). The two are
//! joined by a channel of [`PUSH_CHUNKS_QUEUED`] chunks, so a client that sends faster than the
//! store writes is held back by HTTP/2 flow control, not by memory.
//!
//! Nothing is staged unless the summary arrives and matches, and nothing follows it: on any
//! other end (the stream breaks, the client cancels, a message is wrong) the channel is
//! dropped without a summary and the staging thread drops its `Push`, which aborts the upload.

use super::{PUSH_CHUNKS_QUEUED, convert};
use crate::shared::Shared;
use crate::status::{self, Failure};
use inv_engine::reconcile::{
    Push, PushError, Pushed, SnapshotHeader, SnapshotRow, SnapshotSummary,
};
use inv_proto::v1 as pb;
use pb::push_snapshot_request::Message as M;
use prost::Message as _;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::{Code, Streaming};
use tracing::{info, warn};

/// What the reading side hands the staging thread.
enum Staging {
    Rows(Vec<SnapshotRow>),
    Finish(SnapshotSummary),
}

/// How a push ended on the staging thread.
enum Staged {
    Done(Box<Pushed>),
    Refused(PushError),
    /// The channel closed without a summary: the upload was aborted.
    Abandoned,
}

pub(crate) async fn push(
    shared: &Arc<Shared>,
    mut stream: Streaming<pb::PushSnapshotRequest>,
) -> Result<pb::PushSnapshotResponse, Failure> {
    let reconciler = &shared.reconciler;
    let _permit = Arc::clone(&reconciler.pushes)
        .try_acquire_owned()
        .map_err(|_| Failure::overloaded("snapshot pushes", super::PUSHES_IN_FLIGHT_MAX))?;
    let header = match next(&mut stream).await? {
        Some(M::Header(header)) => convert::header(header)?,
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
    let (sender, receiver) = mpsc::channel(PUSH_CHUNKS_QUEUED);
    // Staging (checksum, validation, the store's writes) is bulk work: it runs on a thread of
    // its own at the bulk lane's lower priority, so on a busy machine the hot path keeps the
    // CPU and the push slows down instead (its channel then pushes back on the client).
    let (staged_tx, staged_rx) = tokio::sync::oneshot::channel();
    {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("snapshot-stage".into())
            .spawn(move || {
                crate::lane::lower_priority(shared.config.bulk_nice);
                let _ = staged_tx.send(stage(&shared, header, receiver));
            })
            .map_err(|e| Failure::internal(format!("cannot start a staging thread: {e}")))?;
    }
    let read = read_rows(shared, &mut stream, &sender).await;
    drop(sender);
    let staged = staged_rx
        .await
        .map_err(|_| Failure::internal("the staging thread ended without an answer"))?;
    match (read, staged) {
        (_, Staged::Refused(error)) => Err(status::push_error(&error)),
        (Err(failure), _) => {
            info!(snapshot_id, message = %failure.message, "snapshot push abandoned; nothing staged");
            Err(failure)
        }
        (Ok(()), Staged::Done(pushed)) => {
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
        (Ok(()), Staged::Abandoned) => Err(Failure::internal(
            "the staging thread ended before the summary it was sent",
        )),
    }
}

/// The next message, or `None` at the end of the stream. A broken or cancelled stream is a
/// failure: nothing is staged.
async fn next(stream: &mut Streaming<pb::PushSnapshotRequest>) -> Result<Option<M>, Failure> {
    match stream.message().await {
        Ok(Some(request)) => match request.message {
            Some(message) => Ok(Some(message)),
            None => Err(Failure::invalid_field(
                "message",
                "must be a header, a chunk or a summary",
            )),
        },
        Ok(None) => Ok(None),
        Err(status) => Err(Failure::snapshot_incomplete(
            Code::Cancelled,
            "summary",
            format!(
                "the stream broke off before its summary ({}); nothing was staged",
                status.message()
            ),
        )),
    }
}

/// Reads chunks up to the summary and hands them to the staging thread, then the summary once
/// the stream has ended after it. An `Err` is why the push is abandoned; `Ok` also when the
/// staging thread refused something (it then says what).
async fn read_rows(
    shared: &Shared,
    stream: &mut Streaming<pb::PushSnapshotRequest>,
    sender: &mpsc::Sender<Staging>,
) -> Result<(), Failure> {
    let config = &shared.config;
    let mut rows_sent: u64 = 0;
    loop {
        let summary = match next(stream).await? {
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
                let rows = convert::rows(chunk.rows, rows_sent)?;
                rows_sent += count;
                if sender.send(Staging::Rows(rows)).await.is_err() {
                    // The staging thread refused an earlier chunk; it says why.
                    return Ok(());
                }
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
        if next(stream).await?.is_some() {
            return Err(Failure::invalid_field(
                "summary",
                "must be the last message of the push",
            ));
        }
        let summary = SnapshotSummary {
            rows: summary.row_count,
            checksum: summary.checksum,
        };
        let _ = sender.send(Staging::Finish(summary)).await;
        return Ok(());
    }
}

/// The staging thread: begins the push, writes each chunk, and stages on the summary. Returns
/// early on the first refusal (dropping the receiver, which the reader notices).
fn stage(shared: &Shared, header: SnapshotHeader, mut receiver: mpsc::Receiver<Staging>) -> Staged {
    let engine = &shared.engine;
    let store = shared.reconciler.store.as_ref();
    let now_ms = engine.now_ms();
    let mut push = match Push::begin(store, header, now_ms, history_start_ms(shared, now_ms)) {
        Ok(push) => push,
        Err(error) => return Staged::Refused(error),
    };
    while let Some(message) = receiver.blocking_recv() {
        match message {
            Staging::Rows(rows) => {
                if let Err(error) = push.rows(&rows) {
                    return Staged::Refused(error);
                }
            }
            Staging::Finish(summary) => {
                return match push.finish(&summary, engine.now_ms()) {
                    Ok(pushed) => Staged::Done(Box::new(pushed)),
                    Err(error) => Staged::Refused(error),
                };
            }
        }
    }
    warn!("a snapshot push ended without its summary; its upload is aborted");
    Staged::Abandoned
}

/// The oldest `as_of_ms` a new snapshot may have: within the history window
/// (`--reconcile-history-ms`) of the engine's clock, and within the history the ledger still
/// has (which reaches further back only while nothing newer has pushed it out).
fn history_start_ms(shared: &Shared, now_ms: u64) -> u64 {
    shared.engine.history_start_ms(now_ms)
}
