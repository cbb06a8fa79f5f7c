//! ERP snapshots and reconciliation end to end: snapshots pushed over the real PushSnapshot
//! stream to a real server whose snapshot store is a `snapshots.redb` in the test's data
//! folder beside the log, reconciled through `Reconcile` (and the scheduler), and the results
//! read back through Check, the reports and ResolveDrift.
//!
//! Time is the harness's `ManualClock` (starting at `T0_MS`), so a snapshot's `as_of_ms` and
//! each event's time are exact: "a sale 1 ms after the snapshot" is exactly that. Each test
//! states its goal first. `a_large_snapshot_streams_and_reconciles_with_exact_counts` pushes
//! 200,000 rows by default; set `INVENTORY_TEST_SNAPSHOT_ROWS=1000000` for the full-size run.

use anyhow::{Context, Result, bail};
use inv_api::{ReconcileConfig, ServeOptions, ServerConfig};
use inv_engine::reconcile::{RedbSnapshotStore, RowDigest, SnapshotRow};
use inv_engine::{Location, ManualClock, RedbLog, RedbLogOptions, Sku};
use inv_tests::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const DC: &str = "dc-1";
/// Rows per chunk the tests send (the server allows 10,000 by default).
const CHUNK_ROWS: usize = 1_000;

fn row(sku: &str, location: &str, on_hand: i64) -> pb::SnapshotRow {
    pb::SnapshotRow {
        sku: sku.into(),
        location: location.into(),
        on_hand,
        safety_stock: None,
    }
}

fn header(id: &str, as_of_ms: u64, mode: pb::SnapshotMode) -> pb::SnapshotHeader {
    pb::SnapshotHeader {
        snapshot_id: id.into(),
        as_of_ms,
        scope: Vec::new(),
        mode: mode as i32,
        source: "erp-test".into(),
    }
}

/// The summary a well-behaved client sends: the row count and the documented checksum.
fn summary(rows: &[pb::SnapshotRow]) -> pb::SnapshotSummary {
    let mut digest = RowDigest::default();
    for row in rows {
        digest.add(&SnapshotRow {
            sku: Sku::from(row.sku.as_str()),
            location: Location::from(row.location.as_str()),
            on_hand: row.on_hand,
            safety_stock: row.safety_stock,
        });
    }
    let summary = digest.finish();
    pb::SnapshotSummary {
        row_count: summary.rows,
        checksum: summary.checksum,
    }
}

fn message(message: pb::push_snapshot_request::Message) -> pb::PushSnapshotRequest {
    pb::PushSnapshotRequest {
        message: Some(message),
    }
}

/// The messages of a push: header, chunks of [`CHUNK_ROWS`], summary.
fn push_messages(
    header: pb::SnapshotHeader,
    rows: &[pb::SnapshotRow],
    summary: pb::SnapshotSummary,
) -> Vec<pb::PushSnapshotRequest> {
    use pb::push_snapshot_request::Message as M;
    let mut messages = vec![message(M::Header(header))];
    for chunk in rows.chunks(CHUNK_ROWS) {
        messages.push(message(M::Chunk(pb::SnapshotChunk {
            rows: chunk.to_vec(),
        })));
    }
    messages.push(message(M::Summary(summary)));
    messages
}

async fn push_raw(
    client: &mut Client,
    messages: Vec<pb::PushSnapshotRequest>,
) -> Result<pb::PushSnapshotResponse, Status> {
    client
        .push_snapshot(tokio_stream::iter(messages))
        .await
        .map(tonic::Response::into_inner)
}

/// Pushes a complete snapshot.
async fn push(
    client: &mut Client,
    header: pb::SnapshotHeader,
    rows: &[pb::SnapshotRow],
) -> Result<pb::PushSnapshotResponse, Status> {
    push_raw(client, push_messages(header, rows, summary(rows))).await
}

async fn reconcile(client: &mut Client, id: &str, dry_run: bool) -> Result<pb::Reconciliation> {
    let response = client
        .reconcile(pb::ReconcileRequest {
            target: Some(pb::reconcile_request::Target::SnapshotId(id.into())),
            dry_run,
        })
        .await?
        .into_inner();
    let [reconciliation] = <[pb::Reconciliation; 1]>::try_from(response.reconciliations)
        .map_err(|r| anyhow::anyhow!("expected one reconciliation, got {}", r.len()))?;
    Ok(reconciliation)
}

fn counts(reconciliation: &pb::Reconciliation) -> Result<pb::ReconciliationCounts> {
    reconciliation
        .report
        .as_ref()
        .and_then(|r| r.counts)
        .context("a reconciliation with a report")
}

async fn report(client: &mut Client, id: &str) -> Result<pb::Reconciliation, Status> {
    let response = client
        .get_reconciliation_report(pb::GetReconciliationReportRequest {
            snapshot_id: id.into(),
        })
        .await?
        .into_inner();
    response
        .reconciliation
        .ok_or_else(|| Status::internal("no reconciliation in the answer"))
}

async fn on_hand(client: &mut Client, sku: &str, location: &str) -> Result<i64> {
    Ok(available(client, sku, location).await?.on_hand)
}

async fn stock(client: &mut Client, id: &str, sku: &str, qty: i64) -> Result<()> {
    client.adjust(adjust(id, sku, DC, qty)).await?;
    Ok(())
}

/// Checks a call failed with `code` and `reason`, naming `field` (in the BadRequest for
/// INVALID_ARGUMENT, and in the message).
fn expect_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    field: &str,
) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    let info = status
        .get_details_error_info()
        .expect("every error carries an ErrorInfo");
    assert_eq!(info.reason, reason, "{status:?}");
    assert!(
        status.message().contains(field)
            || info.metadata.get("field").map(String::as_str) == Some(field),
        "{status:?} should name {field:?}"
    );
    if code == Code::InvalidArgument {
        let bad = status
            .get_details_bad_request()
            .expect("INVALID_ARGUMENT carries a BadRequest");
        assert!(
            bad.field_violations.iter().any(|v| v.field == field),
            "violations {:?} should include {field:?}",
            bad.field_violations
        );
    }
    status
}

/// A server over a redb log and snapshot store in `dir`, with the given settings.
async fn start_with_config(dir: &Path, config: ServerConfig) -> Result<TestServer> {
    let log = RedbLog::open(dir, RedbLogOptions::default())?;
    let options = ServeOptions {
        snapshots: Some(Arc::new(RedbSnapshotStore::open(dir)?)),
        ..ServeOptions::default()
    };
    TestServer::start_with_options(
        Arc::new(log),
        Arc::new(ManualClock::new(T0_MS)),
        config,
        options,
    )
    .await
}

#[tokio::test]
async fn a_pushed_snapshot_is_reconciled_and_its_report_kept() -> Result<()> {
    // Goal: the whole loop on a DELTA snapshot of three positions: one agrees, one drifted
    // within the tolerance (corrected, visible in Check), one drifted beyond it (held, on_hand
    // unchanged), and the report counts each, lists the drifts largest first and is read back
    // the same by GetReconciliationReport.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        stock(&mut client, "r-2", "sku-b", 5).await?;
        server.clock.advance_ms(1_000);
        let as_of = T0_MS + 500;
        let rows = [
            row("sku-a", DC, 10),
            row("sku-b", DC, 4),
            row("sku-c", DC, 7),
        ];
        let pushed = push(
            &mut client,
            header("s-1", as_of, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        assert!(!pushed.duplicate);
        let snapshot = pushed.snapshot.context("the staged snapshot")?;
        assert_eq!(snapshot.status, pb::SnapshotStatus::Staged as i32);
        assert_eq!(snapshot.row_count, 3);
        assert!(snapshot.report.is_none());

        let done = reconcile(&mut client, "s-1", false).await?;
        assert_eq!(done.status, pb::SnapshotStatus::Reconciled as i32);
        let c = counts(&done)?;
        assert_eq!(
            (c.compared, c.matched, c.drifted, c.applied, c.held),
            (3, 1, 2, 1, 1)
        );
        assert_eq!(c.drift_abs_total, 8);
        let largest = &done.report.as_ref().context("report")?.largest_drifts;
        let drifts: Vec<(&str, i64, bool)> = largest
            .iter()
            .map(|l| (l.sku.as_str(), l.drift, l.held))
            .collect();
        assert_eq!(drifts, [("sku-c", 7, true), ("sku-b", -1, false)]);

        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 10);
        assert_eq!(on_hand(&mut client, "sku-b", DC).await?, 4, "applied");
        assert_eq!(on_hand(&mut client, "sku-c", DC).await?, 0, "held");
        assert_eq!(report(&mut client, "s-1").await?, done);

        // Reconciled once: a second run is refused, naming the state.
        let again = client
            .reconcile(pb::ReconcileRequest {
                target: Some(pb::reconcile_request::Target::SnapshotId("s-1".into())),
                dry_run: false,
            })
            .await;
        expect_error(
            again,
            Code::FailedPrecondition,
            "SNAPSHOT_NOT_STAGED",
            "snapshot_id",
        );
        expect_error(
            report(&mut client, "s-404").await,
            Code::NotFound,
            "SNAPSHOT_NOT_FOUND",
            "snapshot_id",
        );
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_dry_run_reports_without_changing_anything() -> Result<()> {
    // Goal: a dry run answers the report a real run would give, but corrects nothing and
    // leaves the snapshot staged, so the real run afterwards finds the same drift.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        server.clock.advance_ms(1_000);
        let rows = [row("sku-a", DC, 9)];
        push(
            &mut client,
            header("s-1", T0_MS + 500, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        let dry = reconcile(&mut client, "s-1", true).await?;
        assert!(dry.report.as_ref().context("report")?.dry_run);
        assert_eq!(dry.status, pb::SnapshotStatus::Staged as i32);
        assert_eq!(counts(&dry)?.applied, 1);
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 10);
        let real = reconcile(&mut client, "s-1", false).await?;
        assert_eq!(counts(&real)?.applied, 1);
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 9);
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn sales_after_as_of_are_not_counted_twice_and_unseen_ones_before_are_drift() -> Result<()> {
    // Goal: the double-counting case of docs/reconciliation.md. The ERP counted 10 of sku-a and
    // 10 of sku-b at 12:00 (as_of). A sale of sku-a at 12:00 + 1 ms reached the engine before
    // the snapshot did: the engine's 9 today is the ERP's 10 less that sale, so nothing
    // drifted and on_hand stays 9. A sale of 2 of sku-b at 11:59, which the ERP never saw,
    // is drift (+2, within the tolerance) and is corrected to the ERP's count.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        stock(&mut client, "r-2", "sku-b", 10).await?;
        let as_of = T0_MS + 60_000;
        server.clock.set_ms(as_of + 5_000);
        let sale = |txn: &str, seq, at, sku: &str, qty| pb::Sale {
            txn_id: txn.into(),
            store_seq: seq,
            occurred_at_ms: at,
            lines: vec![line(sku, DC, qty)],
        };
        let recorded = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales: vec![
                    sale("t-1", 1, as_of - 60_000 + 1, "sku-b", 2),
                    sale("t-2", 2, as_of + 1, "sku-a", 1),
                ],
            })
            .await?
            .into_inner();
        assert!(
            recorded
                .results
                .iter()
                .all(|r| matches!(r.result, Some(pb::batch_item_result::Result::Recorded(_))))
        );
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 9);
        assert_eq!(on_hand(&mut client, "sku-b", DC).await?, 8);

        let rows = [row("sku-a", DC, 10), row("sku-b", DC, 10)];
        push(
            &mut client,
            header("s-1", as_of, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        let done = reconcile(&mut client, "s-1", false).await?;
        let c = counts(&done)?;
        assert_eq!((c.compared, c.matched, c.applied, c.held), (2, 1, 1, 0));
        let line = &done.report.as_ref().context("report")?.largest_drifts[0];
        assert_eq!(
            (
                line.sku.as_str(),
                line.erp_on_hand,
                line.engine_on_hand_at,
                line.drift
            ),
            ("sku-b", 10, 8, 2)
        );
        assert_eq!(
            on_hand(&mut client, "sku-a", DC).await?,
            9,
            "not counted twice"
        );
        assert_eq!(on_hand(&mut client, "sku-b", DC).await?, 10);
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_full_snapshot_counts_omitted_positions_in_scope_as_zero() -> Result<()> {
    // Goal: FULL versus scope. The snapshot covers dc-1 only and omits sku-b there: sku-b at
    // dc-1 counts as 0 at the ERP (drift -3, beyond the 2-unit tolerance: held). sku-b at
    // dc-2 is out of scope and untouched.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 5).await?;
        stock(&mut client, "r-2", "sku-b", 3).await?;
        client.adjust(adjust("r-3", "sku-b", "dc-2", 4)).await?;
        server.clock.advance_ms(1_000);
        let mut head = header("s-full", T0_MS + 500, pb::SnapshotMode::Full);
        head.scope = vec![DC.into()];
        let done = {
            push(&mut client, head, &[row("sku-a", DC, 5)]).await?;
            reconcile(&mut client, "s-full", false).await?
        };
        let c = counts(&done)?;
        assert_eq!((c.compared, c.matched, c.omitted, c.held), (2, 1, 1, 1));
        assert_eq!(
            on_hand(&mut client, "sku-b", DC).await?,
            3,
            "held, not applied"
        );
        assert_eq!(
            on_hand(&mut client, "sku-b", "dc-2").await?,
            4,
            "out of scope"
        );
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_held_drift_is_resolved_once_and_idempotently() -> Result<()> {
    // Goal: a drift beyond the tolerance is held and listed by ListHeldDrifts; ResolveDrift
    // APPLY corrects on_hand by it (and it is no longer listed), a
    // retry answers the same (duplicate), the other action under the same key is
    // ALREADY_EXISTS naming `action`, and a position with nothing held is DRIFT_NOT_HELD.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 100).await?;
        server.clock.advance_ms(1_000);
        push(
            &mut client,
            header("s-1", T0_MS + 500, pb::SnapshotMode::Delta),
            &[row("sku-a", DC, 80)],
        )
        .await?;
        // Before the reconciliation nothing is held: DRIFT_NOT_HELD is a refusal, not
        // recorded, so the same request under the same key works once the drift is held.
        let early = pb::ResolveDriftRequest {
            snapshot_id: "s-1".into(),
            sku: "sku-a".into(),
            location: DC.into(),
            action: pb::DriftAction::Apply as i32,
        };
        expect_error(
            client.resolve_drift(early).await,
            Code::FailedPrecondition,
            "DRIFT_NOT_HELD",
            "snapshot_id",
        );
        let done = reconcile(&mut client, "s-1", false).await?;
        assert_eq!(counts(&done)?.held, 1);
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 100);
        let held = client
            .list_held_drifts(pb::ListHeldDriftsRequest {
                snapshot_id: "s-1".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(held.total, 1);
        let drift = &held.drifts[0];
        assert_eq!(
            (
                drift.sku.as_str(),
                drift.erp_on_hand,
                drift.engine_on_hand_at,
                drift.drift
            ),
            ("sku-a", 80, 100, -20)
        );

        let resolve = |action: pb::DriftAction| pb::ResolveDriftRequest {
            snapshot_id: "s-1".into(),
            sku: "sku-a".into(),
            location: DC.into(),
            action: action as i32,
        };
        let applied = client
            .resolve_drift(resolve(pb::DriftAction::Apply))
            .await?
            .into_inner();
        assert_eq!(
            (applied.drift, applied.applied, applied.duplicate),
            (-20, true, false)
        );
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 80);
        let held = client
            .list_held_drifts(pb::ListHeldDriftsRequest::default())
            .await?
            .into_inner();
        assert_eq!(held.total, 0, "resolved: no longer held");
        let retry = client
            .resolve_drift(resolve(pb::DriftAction::Apply))
            .await?
            .into_inner();
        assert_eq!((retry.lsn, retry.duplicate), (applied.lsn, true));
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 80);
        expect_error(
            client
                .resolve_drift(resolve(pb::DriftAction::Dismiss))
                .await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "action",
        );
        let mut other = resolve(pb::DriftAction::Apply);
        other.sku = "sku-z".into();
        expect_error(
            client.resolve_drift(other).await,
            Code::FailedPrecondition,
            "DRIFT_NOT_HELD",
            "snapshot_id",
        );
        expect_error(
            client
                .resolve_drift(resolve(pb::DriftAction::Unspecified))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "action",
        );
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_repush_is_idempotent_and_other_content_under_the_id_is_already_exists() -> Result<()> {
    // Goal: the snapshot id is the idempotency key. The same push again answers the original
    // (duplicate, same checksum and staging time); the same id with other rows, or another
    // as_of, is ALREADY_EXISTS (KEY_REUSED) naming what differs.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let rows = [row("sku-a", DC, 1), row("sku-b", DC, 2)];
        let head = header("s-1", T0_MS, pb::SnapshotMode::Delta);
        let first = push(&mut client, head.clone(), &rows).await?;
        server.clock.advance_ms(1_000);
        let again = push(&mut client, head.clone(), &rows).await?;
        assert!(again.duplicate);
        assert_eq!(again.snapshot, first.snapshot);

        let other_rows = [row("sku-a", DC, 1), row("sku-b", DC, 3)];
        expect_error(
            push(&mut client, head.clone(), &other_rows).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "rows",
        );
        let mut later = head.clone();
        later.as_of_ms += 1;
        expect_error(
            push(&mut client, later, &rows).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "header.as_of_ms",
        );
        // Still the original.
        assert_eq!(Some(report(&mut client, "s-1").await?), first.snapshot);
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_miscounted_or_cancelled_push_stages_nothing() -> Result<()> {
    // Goal: only a complete stream stages. A summary that miscounts the rows, or whose
    // checksum is not theirs, or a stream that ends without a summary, is refused naming the
    // summary field; a stream the client cancels midway leaves nothing either. After each,
    // the id is free: GetReconciliationReport is NOT_FOUND and a correct push of it succeeds.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        use pb::push_snapshot_request::Message as M;
        let mut client = server.client.clone();
        let rows = [row("sku-a", DC, 1), row("sku-b", DC, 2)];
        let head = header("s-1", T0_MS, pb::SnapshotMode::Delta);

        let mut miscounted = summary(&rows);
        miscounted.row_count = 3;
        expect_error(
            push_raw(&mut client, push_messages(head.clone(), &rows, miscounted)).await,
            Code::InvalidArgument,
            "SNAPSHOT_INCOMPLETE",
            "summary.row_count",
        );
        let mut wrong_sum = summary(&rows);
        wrong_sum.checksum = summary(&rows[..1]).checksum;
        expect_error(
            push_raw(&mut client, push_messages(head.clone(), &rows, wrong_sum)).await,
            Code::InvalidArgument,
            "SNAPSHOT_INCOMPLETE",
            "summary.checksum",
        );
        let mut no_summary = push_messages(head.clone(), &rows, summary(&rows));
        no_summary.pop();
        expect_error(
            push_raw(&mut client, no_summary).await,
            Code::InvalidArgument,
            "SNAPSHOT_INCOMPLETE",
            "summary",
        );
        expect_error(
            report(&mut client, "s-1").await,
            Code::NotFound,
            "SNAPSHOT_NOT_FOUND",
            "snapshot_id",
        );

        // A cancelled stream: the header and a chunk are sent, then the call is dropped.
        let (sender, receiver) = mpsc::channel(4);
        let mut cancelled_client = server.connect().await?;
        let call = tokio::spawn(async move {
            cancelled_client
                .push_snapshot(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        sender.send(message(M::Header(head.clone()))).await?;
        sender
            .send(message(M::Chunk(pb::SnapshotChunk {
                rows: rows.to_vec(),
            })))
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        call.abort();
        let _ = call.await;
        drop(sender);

        // The cancelled upload is aborted as the server notices the reset; until then the id
        // is busy (ABORTED, retryable).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let pushed = loop {
            match push(&mut client, head.clone(), &rows[..1]).await {
                Err(status) if status.code() == Code::Aborted => {
                    if tokio::time::Instant::now() > deadline {
                        bail!("the cancelled push still holds the id: {status:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other?,
            }
        };
        assert!(!pushed.duplicate);
        assert_eq!(pushed.snapshot.context("snapshot")?.row_count, 1);
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn bad_pushes_are_refused_naming_the_field() -> Result<()> {
    // Goal: every malformed push is INVALID_ARGUMENT naming the offending field by its path,
    // rows by their index in the whole snapshot: an empty sku, a negative count, an as_of older
    // than the history window (the message names the window), no header, a second header, a
    // mode left unspecified, a row outside the scope, a position twice, and chunks over the
    // row and byte limits.
    let dir = tempfile::tempdir()?;
    let config = ServerConfig {
        snapshot_chunk_bytes_max: 64 << 10,
        ..test_config()
    };
    let server = start_with_config(dir.path(), config).await?;
    bounded(async {
        use pb::push_snapshot_request::Message as M;
        let mut client = server.client.clone();
        let head = || header("s-bad", T0_MS, pb::SnapshotMode::Delta);
        let many = |n: usize| -> Vec<pb::SnapshotRow> {
            (0..n).map(|i| row(&format!("sku-{i}"), DC, 1)).collect()
        };
        // Rows are numbered across chunks: the bad row is the 1,501st.
        let mut rows = many(1_500);
        rows.push(row("", DC, 1));
        expect_error(
            push(&mut client, head(), &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "rows[1500].sku",
        );
        let rows = [row("sku-a", DC, 1), row("sku-b", DC, -1)];
        expect_error(
            push(&mut client, head(), &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "rows[1].on_hand",
        );
        let rows = [row("sku-a", DC, 1)];
        let old = header("s-old", T0_MS - 25 * 3_600_000, pb::SnapshotMode::Delta);
        let status = expect_error(
            push(&mut client, old, &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "header.as_of_ms",
        );
        assert!(
            status.message().contains("history window") && status.message().contains("24 h"),
            "names the window: {status:?}"
        );
        let future = header("s-future", T0_MS + 3_600_000, pb::SnapshotMode::Delta);
        expect_error(
            push(&mut client, future, &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "header.as_of_ms",
        );
        let mut messages = push_messages(head(), &rows, summary(&rows));
        messages.remove(0);
        expect_error(
            push_raw(&mut client, messages).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "header",
        );
        let mut messages = push_messages(head(), &rows, summary(&rows));
        messages.insert(1, message(M::Header(head())));
        expect_error(
            push_raw(&mut client, messages).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "header",
        );
        expect_error(
            push(
                &mut client,
                header("s-mode", T0_MS, pb::SnapshotMode::Unspecified),
                &rows,
            )
            .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "header.mode",
        );
        let mut scoped = head();
        scoped.scope = vec!["dc-2".into()];
        expect_error(
            push(&mut client, scoped, &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "rows[0].location",
        );
        let twice = [row("sku-a", DC, 1), row("sku-a", DC, 2)];
        expect_error(
            push(&mut client, head(), &twice).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "rows[1]",
        );
        // One chunk of 10,001 rows: over the row limit.
        let rows = many(10_001);
        let messages = vec![
            message(M::Header(head())),
            message(M::Chunk(pb::SnapshotChunk { rows: rows.clone() })),
            message(M::Summary(summary(&rows))),
        ];
        expect_error(
            push_raw(&mut client, messages).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "chunk.rows",
        );
        // 1,000 rows of long skus: ~130 KiB, over this server's 64 KiB chunk limit.
        let rows: Vec<pb::SnapshotRow> = (0..1_000)
            .map(|i| row(&format!("{i:0>120}"), DC, 1))
            .collect();
        expect_error(
            push(&mut client, head(), &rows).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "chunk",
        );
        // None of it staged anything.
        let listed = client
            .list_reconciliations(pb::ListReconciliationsRequest::default())
            .await?
            .into_inner();
        assert!(listed.reconciliations.is_empty(), "{listed:?}");
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn reconciliations_are_listed_newest_first_a_page_at_a_time() -> Result<()> {
    // Goal: ListReconciliations pages through every snapshot, newest staged first, with no
    // entry twice or missed, and the last page has no next token.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        for i in 0..5 {
            let head = header(&format!("s-{i}"), T0_MS, pb::SnapshotMode::Delta);
            push(&mut client, head, &[row("sku-a", DC, i)]).await?;
            server.clock.advance_ms(1_000);
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = client
                .list_reconciliations(pb::ListReconciliationsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                })
                .await?
                .into_inner();
            pages += 1;
            assert!(page.reconciliations.len() <= 2);
            seen.extend(page.reconciliations.into_iter().map(|r| r.snapshot_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, ["s-4", "s-3", "s-2", "s-1", "s-0"]);
        expect_error(
            client
                .list_reconciliations(pb::ListReconciliationsRequest {
                    page_size: 2,
                    page_token: "garbage".into(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "page_token",
        );
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn staged_snapshots_and_reports_survive_a_restart_and_the_schedule_reconciles() -> Result<()>
{
    // Goal: a snapshot staged before a restart is still staged after it (snapshots.redb beside
    // the log) and the scheduler reconciles it on its own; its report survives a second
    // restart.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let as_of = bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        server.clock.advance_ms(1_000);
        let as_of = T0_MS + 500;
        push(
            &mut client,
            header("s-1", as_of, pb::SnapshotMode::Delta),
            &[row("sku-a", DC, 11)],
        )
        .await?;
        anyhow::Ok(as_of)
    })
    .await?;
    server.join().await?;

    let every = ReconcileConfig {
        every_ms: 50,
        ..ReconcileConfig::default()
    };
    let server = TestServer::start_reconciling(dir.path(), every).await?;
    server.clock.set_ms(as_of + 1_000);
    bounded(async {
        let mut client = server.client.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = report(&mut client, "s-1").await?.status;
            if status == pb::SnapshotStatus::Reconciled as i32 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the scheduler did not reconcile s-1 (status {status})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 11);
        anyhow::Ok(())
    })
    .await?;
    server.join().await?;

    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let kept = report(&mut client, "s-1").await?;
        assert_eq!(kept.status, pb::SnapshotStatus::Reconciled as i32);
        assert_eq!(counts(&kept)?.applied, 1);
        assert_eq!(on_hand(&mut client, "sku-a", DC).await?, 11);
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_large_snapshot_streams_and_reconciles_with_exact_counts() -> Result<()> {
    // Goal: a snapshot of many rows (200,000 by default; INVENTORY_TEST_SNAPSHOT_ROWS sets
    // it) streams through the real server in bounded chunks and reconciles with exact counts:
    // one row in 100 counts 1 to 5 units the engine does not have (1 and 2 are within the
    // tolerance and applied, 3 to 5 held), the rest count 0 and match. While it runs, a
    // second Reconcile is ABORTED: one reconciliation at a time.
    let rows_total: usize = match std::env::var("INVENTORY_TEST_SNAPSHOT_ROWS") {
        Ok(text) => text.parse().context("INVENTORY_TEST_SNAPSHOT_ROWS")?,
        Err(_) => 200_000,
    };
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let body = async {
        let mut client = server.client.clone();
        let rows: Vec<pb::SnapshotRow> = (0..rows_total)
            .map(|i| {
                let on_hand = if i % 100 == 0 { 1 + (i / 100) % 5 } else { 0 };
                row(
                    &format!("sku-{i:07}"),
                    &format!("dc-{}", i % 10),
                    on_hand as i64,
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let pushed = push(
            &mut client,
            header("big", T0_MS, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        let push_elapsed = started.elapsed();
        assert_eq!(
            pushed.snapshot.context("snapshot")?.row_count,
            rows_total as u64
        );

        let started = std::time::Instant::now();
        let mut first = client.clone();
        let run = tokio::spawn(async move { reconcile(&mut first, "big", false).await });
        let mut refused = false;
        while !run.is_finished() {
            // Once the snapshot reads RECONCILING, the first run holds the one-run guard.
            let status = report(&mut client, "big").await?.status;
            if status != pb::SnapshotStatus::Reconciling as i32 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let second = client
                .reconcile(pb::ReconcileRequest {
                    target: Some(pb::reconcile_request::Target::AllStaged(true)),
                    dry_run: false,
                })
                .await;
            if let Err(status) = second {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                let info = status.get_details_error_info().context("error info")?;
                assert_eq!(info.reason, "RECONCILIATION_IN_PROGRESS");
                refused = true;
            }
            break;
        }
        let done = run.await??;
        let reconcile_elapsed = started.elapsed();
        assert!(refused, "the second Reconcile overlapped the first");

        let drifted = rows_total.div_ceil(100) as u64;
        // Drifts cycle 1..=5 over the drifted rows.
        let applied = (0..drifted).filter(|k| k % 5 < 2).count() as u64;
        let drift_abs: u64 = (0..drifted).map(|k| 1 + k % 5).sum();
        let c = counts(&done)?;
        assert_eq!(c.compared, rows_total as u64);
        assert_eq!(c.matched, rows_total as u64 - drifted);
        assert_eq!(
            (c.drifted, c.applied, c.held),
            (drifted, applied, drifted - applied)
        );
        assert_eq!(c.drift_abs_total, drift_abs);
        assert_eq!(done.report.context("report")?.largest_drifts.len(), 20);
        // Every held drift is listed once, a page at a time, by position.
        let mut listed = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_held_drifts(pb::ListHeldDriftsRequest {
                    snapshot_id: "big".into(),
                    page_size: 1_000,
                    page_token,
                })
                .await?
                .into_inner();
            assert_eq!(page.total, drifted - applied);
            listed.extend(page.drifts.into_iter().map(|d| (d.sku, d.location)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(listed.len() as u64, drifted - applied);
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "by position, once each"
        );
        eprintln!(
            "{rows_total} rows: pushed in {push_elapsed:?} ({:.0} rows/s), reconciled in \
             {reconcile_elapsed:?}",
            rows_total as f64 / push_elapsed.as_secs_f64()
        );
        anyhow::Ok(())
    };
    // Bounded more loosely than the others: a debug build on a shared machine.
    tokio::time::timeout(Duration::from_secs(600), body)
        .await
        .context("the large snapshot test did not finish in 600 s")??;
    server.join().await
}

#[tokio::test]
async fn reconciliation_metrics_count_runs_drift_rows_and_held_drifts() -> Result<()> {
    // Goal: /metrics shows what the reconciliation did: one run reconciled (and one dry run),
    // the positions drifted and their absolute drift, the rows staged, the time of the last
    // success (server clock) and the drifts held now, which falls once one is resolved.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_metrics(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        stock(&mut client, "r-2", "sku-b", 10).await?;
        server.clock.advance_ms(1_000);
        let rows = [
            row("sku-a", DC, 9),
            row("sku-b", DC, 4),
            row("sku-c", DC, 0),
        ];
        push(
            &mut client,
            header("s-1", T0_MS + 500, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        reconcile(&mut client, "s-1", true).await?;
        reconcile(&mut client, "s-1", false).await?;
        let value = |text: &str, series: &str| -> Option<f64> {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
                .and_then(|v| v.parse().ok())
        };
        let text = server.scrape().await?;
        for (series, expected) in [
            (
                r#"inventory_reconciliations_total{result="reconciled"}"#,
                1.0,
            ),
            (r#"inventory_reconciliations_total{result="dry_run"}"#, 1.0),
            (r#"inventory_reconciliations_total{result="failed"}"#, 0.0),
            ("inventory_reconcile_positions_drifted_total", 2.0),
            ("inventory_reconcile_drift_units_total", 7.0),
            ("inventory_snapshot_rows_staged_total", 3.0),
            ("inventory_reconcile_drifts_held", 1.0),
            (
                "inventory_reconcile_last_success_timestamp_seconds",
                (T0_MS + 1_000) as f64 / 1_000.0,
            ),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
        }
        client
            .resolve_drift(pb::ResolveDriftRequest {
                snapshot_id: "s-1".into(),
                sku: "sku-b".into(),
                location: DC.into(),
                action: pb::DriftAction::Dismiss as i32,
            })
            .await?;
        let text = server.scrape().await?;
        assert_eq!(value(&text, "inventory_reconcile_drifts_held"), Some(0.0));
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_correction_reaches_the_change_feed_as_reconciled() -> Result<()> {
    // Goal: WatchAvailability streams the change a reconciliation causes like any other, with
    // cause RECONCILED and the corrected numbers.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        use tokio_stream::StreamExt;
        let mut client = server.client.clone();
        stock(&mut client, "r-1", "sku-a", 10).await?;
        server.clock.advance_ms(1_000);
        push(
            &mut client,
            header("s-1", T0_MS + 500, pb::SnapshotMode::Delta),
            &[row("sku-a", DC, 8)],
        )
        .await?;
        reconcile(&mut client, "s-1", false).await?;
        let mut feed = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec!["sku-a".into()],
                locations: Vec::new(),
                after_lsn: Some(0),
            })
            .await?
            .into_inner();
        loop {
            let batch = feed.next().await.context("the feed ended")??;
            if let Some(change) = batch
                .changes
                .iter()
                .find(|c| c.cause == pb::ChangeCause::Reconciled as i32)
            {
                assert_eq!(change.position.as_ref().map(|p| p.on_hand), Some(8));
                break;
            }
        }
        anyhow::Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_reconciliation_cut_short_by_shutdown_resumes_after_restart_applying_nothing_twice()
-> Result<()> {
    // Goal: a server shut down in the middle of a reconciliation stops it between two steps
    // (the call answers UNAVAILABLE) and leaves the snapshot RECONCILING; after a restart over
    // the same folder the same Reconcile finishes it, the positions corrected before the
    // shutdown answer with their first outcome, and every position is corrected exactly once.
    // 50,000 positions each drift by +1 (applied), so the run is long enough to cut short.
    const ROWS: usize = 50_000;
    let dir = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path()).await?;
    let rows: Vec<pb::SnapshotRow> = (0..ROWS)
        .map(|i| row(&format!("sku-{i:05}"), DC, 1))
        .collect();
    let body = async {
        let mut client = server.client.clone();
        push(
            &mut client,
            header("s-1", T0_MS, pb::SnapshotMode::Delta),
            &rows,
        )
        .await?;
        let mut first = client.clone();
        let run = tokio::spawn(async move { reconcile(&mut first, "s-1", false).await });
        loop {
            let status = report(&mut client, "s-1").await?.status;
            if status == pb::SnapshotStatus::Reconciling as i32 || run.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        anyhow::Ok(run)
    };
    let run = tokio::time::timeout(Duration::from_secs(120), body).await??;
    server.begin_shutdown();
    let cut_short = run.await?;
    let status = cut_short.expect_err("the run was cut short by the shutdown");
    assert!(
        format!("{status:#}").contains("shutting down"),
        "{status:#}"
    );
    server.join().await?;

    let server = TestServer::start(dir.path()).await?;
    let body = async {
        let mut client = server.client.clone();
        assert_eq!(
            report(&mut client, "s-1").await?.status,
            pb::SnapshotStatus::Reconciling as i32
        );
        let done = reconcile(&mut client, "s-1", false).await?;
        let c = counts(&done)?;
        assert_eq!(
            (c.compared, c.applied, c.held),
            (ROWS as u64, ROWS as u64, 0)
        );
        for chunk in rows.chunks(1_000) {
            let positions = chunk
                .iter()
                .map(|r| pb::Position {
                    sku: r.sku.clone(),
                    location: r.location.clone(),
                })
                .collect();
            let checked = client
                .check(pb::CheckRequest { positions })
                .await?
                .into_inner();
            for result in checked.results {
                match result.result {
                    Some(pb::check_result::Result::Availability(a)) => {
                        assert_eq!(a.on_hand, 1, "{} corrected once", a.sku)
                    }
                    other => bail!("check answered {other:?}"),
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), body).await??;
    server.join().await
}
