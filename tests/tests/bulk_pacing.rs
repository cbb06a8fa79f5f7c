//! The bulk lane gives way to the hot path (`lane::pace`, `--bulk-percent-under-load`), and
//! only then: a real server with its metrics endpoint on 127.0.0.1:0. A backfill alone is
//! never paused; the same backfill while a connector checks stock is paused between chunks,
//! and every sale of both is recorded. The speed this buys is measured by the load tool's
//! backfill scenario, not here.

use anyhow::{Context, Result, ensure};
use inv_api::ServerConfig;
use inv_tests::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";
const STORE: &str = "store-7";
/// Sales per RecordSales call (the most a call takes): 16 chunks of the lane's work each.
const SALES_PER_CALL: u64 = 1_000;

/// Seconds the lane has paused so far, from a scrape.
async fn paced_seconds(server: &TestServer) -> Result<f64> {
    let text = server.scrape().await?;
    text.lines()
        .find_map(|line| line.strip_prefix("inventory_bulk_paced_seconds_total "))
        .context("inventory_bulk_paced_seconds_total missing from the scrape")?
        .parse()
        .context("a number")
}

/// RecordSales of the store's sales `first..first + SALES_PER_CALL`, every one recorded.
async fn backfill(client: &mut Client, first: u64) -> Result<()> {
    let sales = (first..first + SALES_PER_CALL)
        .map(|seq| sale(&format!("t-{seq}"), seq, vec![line(SKU, DC, 1)]))
        .collect();
    let answer = client
        .record_sales(pb::RecordSalesRequest {
            store_id: STORE.into(),
            sales,
        })
        .await?
        .into_inner();
    let recorded = answer
        .results
        .iter()
        .filter(|r| matches!(r.result, Some(pb::batch_item_result::Result::Recorded(_))))
        .count();
    ensure!(
        recorded as u64 == SALES_PER_CALL,
        "not all recorded: {answer:?}"
    );
    Ok(())
}

/// Sales calls `first_call..first_call + calls` (each of [`SALES_PER_CALL`]) posted while a
/// connector checks stock back to back, as the hot path beside a backfill.
async fn backfill_beside_checks(server: &TestServer, first_call: u64, calls: u64) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (mut client, stop) = (server.client.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                available(&mut client, SKU, DC).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut client = server.client.clone();
    for call in first_call..first_call + calls {
        backfill(&mut client, 1 + call * SALES_PER_CALL).await?;
    }
    stop.store(true, Ordering::Relaxed);
    checker.await?
}

/// Checks the store's sequence is whole up to `sales`: no sale lost or left out.
async fn assert_store_whole(client: &mut Client, sales: u64) -> Result<()> {
    let status = client
        .store_status(pb::StoreStatusRequest {
            store_id: STORE.into(),
        })
        .await?
        .into_inner();
    let store = status.stores.first().context("the store")?;
    assert_eq!(
        (store.contiguous_seq, store.missing_count),
        (sales, 0),
        "{store:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_bulk_lane_pauses_for_the_hot_path_and_only_then() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The default settings: the lane paced to 25% busy while the hot path is called.
    let server = TestServer::start_with_metrics(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client
            .adjust(adjust("receipt-1", SKU, DC, 1_000_000))
            .await?;

        // Alone: no hot call between its chunks, so no pause.
        backfill(&mut client, 1).await?;
        assert_eq!(paced_seconds(&server).await?, 0.0);

        // Beside a connector checking stock back to back: paused.
        backfill_beside_checks(&server, 1, 4).await?;
        let paced = paced_seconds(&server).await?;
        ensure!(paced > 0.0, "the lane never paused beside the hot path");

        // Nothing was lost to the pauses: the store's sequence is whole.
        assert_store_whole(&mut client, 5 * SALES_PER_CALL).await?;
        Ok(())
    })
    .await
}

/// The scheduling policy of each of this process's threads named `name` (field 41 of
/// `/proc/self/task/TID/stat`; 5 is SCHED_IDLE).
#[cfg(target_os = "linux")]
fn policies_of(name: &str) -> Result<Vec<u64>> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        if std::fs::read_to_string(task.join("comm"))?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit_once(')').context("a stat line")?.1;
        let policy = after
            .split_whitespace()
            .nth(38)
            .context("the policy field")?
            .parse()?;
        policies.push(policy);
    }
    Ok(policies)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_idle_class_lane_runs_as_such_and_still_records_every_sale() -> Result<()> {
    // Goal: `--bulk-idle` puts the lane's thread in SCHED_IDLE (the kernel says so), and a
    // backfill beside a connector checking stock still records every sale.
    let config = ServerConfig {
        bulk_idle: true,
        ..test_config()
    };
    let server = TestServer::in_memory(config).await?;
    bounded(async {
        const SCHED_IDLE: u64 = 5;
        ensure!(
            policies_of("inv-bulk")?.contains(&SCHED_IDLE),
            "no bulk lane thread in SCHED_IDLE: {:?}",
            policies_of("inv-bulk")?
        );
        let mut client = server.client.clone();
        client
            .adjust(adjust("receipt-1", SKU, DC, 1_000_000))
            .await?;
        backfill_beside_checks(&server, 0, 3).await?;
        assert_store_whole(&mut client, 3 * SALES_PER_CALL).await?;
        Ok(())
    })
    .await
}
