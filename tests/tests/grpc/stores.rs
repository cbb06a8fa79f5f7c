//! Store sequences: a sale whose `store_seq` jumps beyond the server's bound is an anomaly an
//! operator answers (AcknowledgeStoreAnomaly), not billions of missing sales.

use super::*;

const STORE: &str = "store-1";

fn ack(txn_id: &str, action: pb::AnomalyAction) -> pb::AcknowledgeStoreAnomalyRequest {
    pb::AcknowledgeStoreAnomalyRequest {
        store_id: STORE.into(),
        txn_id: txn_id.into(),
        action: action as i32,
    }
}

async fn store_status(client: &mut Client) -> Result<pb::StoreSequenceStatus> {
    let mut response = client
        .store_status(pb::StoreStatusRequest {
            store_id: STORE.into(),
        })
        .await?
        .into_inner();
    assert_eq!(response.stores.len(), 1);
    Ok(response.stores.remove(0))
}

/// Posts `sales` for [`STORE`]; each must be recorded. Their LSNs, in order.
async fn sell(client: &mut Client, sales: Vec<pb::Sale>) -> Result<Vec<u64>> {
    let response = client
        .record_sales(pb::RecordSalesRequest {
            store_id: STORE.into(),
            sales,
        })
        .await?
        .into_inner();
    response
        .results
        .into_iter()
        .map(|r| match r.result {
            Some(pb::batch_item_result::Result::Recorded(recorded)) => Ok(recorded.lsn),
            other => bail!("a sale was not recorded: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_sale_numbered_2_pow_64_minus_1_is_an_anomaly_an_operator_answers() -> Result<()> {
    // Goal: the story end to end. After sales 1..3, one numbered 2^64-1 is recorded
    // (its units come off on_hand) but StoreStatus shows 0 missing and the sale as an
    // anomaly; DISMISS and ACCEPT answer anomalies, retries get the original answer, the
    // other verdict is KEY_REUSED naming `action`, and a restart over the same folder keeps
    // all of it. Method: a real server over a RedbLog, driven through the generated client,
    // then a second server over the same data folder.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let (before_restart, dismissed) = bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "a1", SKU, STORE, 100).await?;
        let lsns = sell(
            &mut client,
            vec![
                sale("t1", 1, vec![line(SKU, STORE, 1)]),
                sale("t2", 2, vec![line(SKU, STORE, 1)]),
                sale("t3", 3, vec![line(SKU, STORE, 1)]),
                sale("t-max", u64::MAX, vec![line(SKU, STORE, 1)]),
            ],
        )
        .await?;
        let status = store_status(&mut client).await?;
        assert_eq!(
            (
                status.contiguous_seq,
                status.newest_seq,
                status.missing_count
            ),
            (3, 3, 0),
            "{status:?}"
        );
        assert!(status.gaps.is_empty(), "{status:?}");
        assert_eq!(status.sales_recorded, 4);
        let anomalies: Vec<_> = status
            .anomalies
            .iter()
            .map(|a| (a.txn_id.as_str(), a.store_seq, a.newest_seq, a.lsn))
            .collect();
        assert_eq!(anomalies, [("t-max", u64::MAX, 3, lsns[3])]);
        assert_eq!(status.anomalies[0].occurred_at_ms, T0_MS - 1_000);
        assert_eq!(status.anomalies[0].recorded_at_ms, T0_MS);
        // A sale is a fact: the anomaly's unit left on_hand like the others.
        assert_eq!(available(&mut client, SKU, STORE).await?.on_hand, 96);

        let dismissed = client
            .acknowledge_store_anomaly(ack("t-max", pb::AnomalyAction::Dismiss))
            .await?
            .into_inner();
        assert_eq!(
            (
                dismissed.store_seq,
                dismissed.accepted,
                dismissed.gaps_abandoned,
                dismissed.duplicate
            ),
            (u64::MAX, false, 0, false)
        );
        let retry = client
            .acknowledge_store_anomaly(ack("t-max", pb::AnomalyAction::Dismiss))
            .await?
            .into_inner();
        assert_eq!(
            retry,
            pb::AcknowledgeStoreAnomalyResponse {
                duplicate: true,
                ..dismissed
            }
        );
        expect_error(
            client
                .acknowledge_store_anomaly(ack("t-max", pb::AnomalyAction::Accept))
                .await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "action",
        );
        let status = store_status(&mut client).await?;
        assert!(status.anomalies.is_empty(), "{status:?}");
        assert_eq!((status.contiguous_seq, status.missing_count), (3, 0));

        // The store really renumbered: accepted, the sequence goes on from the jump.
        sell(
            &mut client,
            vec![
                sale("t5", 5, vec![line(SKU, STORE, 1)]),
                sale("t-jump", 1_000_000, vec![line(SKU, STORE, 1)]),
            ],
        )
        .await?;
        let accepted = client
            .acknowledge_store_anomaly(ack("t-jump", pb::AnomalyAction::Accept))
            .await?
            .into_inner();
        // 4 and 6..=999_999 were missing below it.
        assert_eq!(
            (
                accepted.store_seq,
                accepted.accepted,
                accepted.gaps_abandoned
            ),
            (1_000_000, true, 999_995)
        );
        let status = store_status(&mut client).await?;
        assert_eq!(
            (
                status.contiguous_seq,
                status.newest_seq,
                status.missing_count,
                status.gaps_abandoned
            ),
            (1_000_000, 1_000_000, 0, 999_995),
            "{status:?}"
        );
        // One left unanswered, for the restart.
        sell(
            &mut client,
            vec![sale("t-far", 5_000_000, vec![line(SKU, STORE, 1)])],
        )
        .await?;
        let status = store_status(&mut client).await?;
        assert_eq!(status.anomalies.len(), 1, "{status:?}");
        assert_eq!(status.missing_count, 0);
        server
            .engine
            .ledger()
            .check_invariants()
            .map_err(anyhow::Error::msg)?;
        Ok((status, dismissed))
    })
    .await?;
    server.join().await?;

    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        assert_eq!(store_status(&mut client).await?, before_restart);
        let retry = client
            .acknowledge_store_anomaly(ack("t-max", pb::AnomalyAction::Dismiss))
            .await?
            .into_inner();
        assert_eq!(
            retry,
            pb::AcknowledgeStoreAnomalyResponse {
                duplicate: true,
                ..dismissed
            }
        );
        let accepted = client
            .acknowledge_store_anomaly(ack("t-far", pb::AnomalyAction::Accept))
            .await?
            .into_inner();
        assert_eq!(
            (
                accepted.store_seq,
                accepted.gaps_abandoned,
                accepted.duplicate
            ),
            (5_000_000, 3_999_999, false)
        );
        let status = store_status(&mut client).await?;
        assert_eq!(
            (status.contiguous_seq, status.missing_count),
            (5_000_000, 0)
        );
        assert!(status.anomalies.is_empty());
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn acknowledging_what_is_not_there_or_malformed_names_the_field() -> Result<()> {
    // Goal: each way an acknowledgement can be wrong gets its own code, reason and field:
    // an unknown store and a sale without an anomaly are NOT_FOUND, an unset action or a bad
    // id INVALID_ARGUMENT; none of them is logged.
    let server = TestServer::in_memory(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        sell(&mut client, vec![sale("t1", 1, vec![line(SKU, STORE, 1)])]).await?;
        let head = server.engine.head_lsn();
        expect_error(
            client
                .acknowledge_store_anomaly(pb::AcknowledgeStoreAnomalyRequest {
                    store_id: "store-9".into(),
                    ..ack("t1", pb::AnomalyAction::Accept)
                })
                .await,
            Code::NotFound,
            "STORE_NOT_FOUND",
            "store_id",
        );
        expect_error(
            client
                .acknowledge_store_anomaly(ack("t1", pb::AnomalyAction::Accept))
                .await,
            Code::NotFound,
            "STORE_ANOMALY_NOT_FOUND",
            "txn_id",
        );
        expect_error(
            client
                .acknowledge_store_anomaly(ack("t1", pb::AnomalyAction::Unspecified))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "action",
        );
        expect_error(
            client
                .acknowledge_store_anomaly(ack("", pb::AnomalyAction::Dismiss))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "txn_id",
        );
        assert_eq!(server.engine.head_lsn(), head, "nothing was logged");
        Ok(())
    })
    .await?;
    server.join().await
}
