//! The ERP's side of the scenario: the full snapshot, pushed from a thread and a connection of
//! its own, as another machine would (a file of its own: the rest of the scenario is the hot
//! path, the reconciliation and the checks of its report).

use super::{CHUNK_ROWS, Env, STOCK, planted};
use crate::pb;
use anyhow::{Context, Result, anyhow, bail};
use inv_engine::reconcile::{RowDigest, SnapshotRow};
use inv_engine::{Location, Sku};
use std::sync::Arc;
use std::time::Instant;

fn message(message: pb::push_snapshot_request::Message) -> pb::PushSnapshotRequest {
    pb::PushSnapshotRequest {
        message: Some(message),
    }
}

/// Pushes the FULL snapshot: rows built as they are sent, a chunk at a time (memory bounded by
/// a few chunks, as the CLI streams a file), and the summary with the engine's [`RowDigest`].
/// Returns the seconds from the first message to the answer.
///
/// The ERP is another machine in production. Here it shares the cores with the server and the
/// hot path's callers, so it runs as one would see it from the server: on a connection and a
/// thread of its own, at a lower OS priority ([`ERP_NICE`]), so that building and encoding a
/// million rows is not measured as the server's latency.
pub(super) async fn push(
    env: &Arc<Env>,
    snapshot_id: &str,
    as_of_ms: u64,
    location: &str,
    skus: &Arc<Vec<String>>,
) -> Result<f64> {
    env.stage("pushing the snapshot", skus.len() as u64);
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    {
        let (env, skus) = (Arc::clone(env), Arc::clone(skus));
        let (snapshot_id, location) = (snapshot_id.to_owned(), location.to_owned());
        std::thread::Builder::new()
            .name("erp-push".into())
            .spawn(move || {
                crate::cpu::lower_thread_priority(ERP_NICE);
                let answer = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(push_from_erp(
                        &env,
                        &snapshot_id,
                        as_of_ms,
                        &location,
                        &skus,
                    )),
                    Err(e) => Err(anyhow!("cannot start the ERP's runtime: {e}")),
                };
                let _ = answer_tx.send(answer);
            })
            .context("starting the ERP's push thread")?;
    }
    answer_rx
        .await
        .map_err(|_| anyhow!("the ERP's push thread ended without an answer"))?
}

/// Niceness of the ERP's push thread (see [`push`]).
const ERP_NICE: i32 = 10;

/// [`push`], on the ERP's thread: its own connection, the rows built as they are sent.
async fn push_from_erp(
    env: &Arc<Env>,
    snapshot_id: &str,
    as_of_ms: u64,
    location: &str,
    skus: &Arc<Vec<String>>,
) -> Result<f64> {
    use pb::push_snapshot_request::Message as M;
    let rows = skus.len();
    let mut client = crate::client(crate::connect(&env.url).await?);
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::PushSnapshotRequest>(4);
    let producer = {
        let (env, skus, location) = (Arc::clone(env), Arc::clone(skus), location.to_owned());
        let header = pb::SnapshotHeader {
            snapshot_id: snapshot_id.to_owned(),
            as_of_ms,
            scope: vec![location.clone()],
            mode: pb::SnapshotMode::Full as i32,
            source: "inv-sim reconcile-under-load".to_owned(),
        };
        tokio::spawn(async move {
            if sender.send(message(M::Header(header))).await.is_err() {
                return;
            }
            let seed = env.options.seed;
            let mut digest = RowDigest::default();
            let location_id = Location::from(location.as_str());
            for (c, chunk_skus) in skus.chunks(CHUNK_ROWS).enumerate() {
                let mut chunk = Vec::with_capacity(chunk_skus.len());
                for (i, sku) in chunk_skus.iter().enumerate() {
                    let k = c * CHUNK_ROWS + i;
                    let drift = planted(seed, rows, k).map_or(0, |d| d.0);
                    let row = pb::SnapshotRow {
                        sku: sku.clone(),
                        location: location.clone(),
                        on_hand: STOCK + drift,
                        safety_stock: None,
                    };
                    digest.add(&SnapshotRow {
                        sku: Sku::from(sku.as_str()),
                        location: location_id.clone(),
                        on_hand: row.on_hand,
                        safety_stock: None,
                    });
                    chunk.push(row);
                }
                let n = chunk.len() as u64;
                if sender
                    .send(message(M::Chunk(pb::SnapshotChunk { rows: chunk })))
                    .await
                    .is_err()
                {
                    // The server refused the push; its answer says why.
                    return;
                }
                env.progress.inc(n);
            }
            let summary = digest.finish();
            let _ = sender
                .send(message(M::Summary(pb::SnapshotSummary {
                    row_count: summary.rows,
                    checksum: summary.checksum,
                })))
                .await;
        })
    };
    let started = Instant::now();
    let answer = client
        .push_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    let push_s = started.elapsed().as_secs_f64();
    producer.await.context("the snapshot producer panicked")?;
    match answer {
        Ok(response) => {
            env.recorder.ok("push_snapshot", started);
            let response = response.into_inner();
            let staged = response
                .snapshot
                .ok_or_else(|| anyhow!("PushSnapshot answered without the snapshot"))?;
            if staged.row_count != rows as u64 || response.duplicate {
                bail!(
                    "PushSnapshot staged {} rows (duplicate: {}), expected {rows} new",
                    staged.row_count,
                    response.duplicate
                );
            }
            Ok(push_s)
        }
        Err(status) => {
            env.recorder
                .error("push_snapshot", crate::stats::code_name(status.code()));
            bail!("PushSnapshot of {rows} rows failed: {status}")
        }
    }
}
