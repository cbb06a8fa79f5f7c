//! Holds from reserve to commit, release and expiry, and idempotent retries.

use super::*;

#[tokio::test]
async fn a_hold_lives_from_reserve_through_extend_to_partial_commit() -> Result<()> {
    // Goal: every step of a hold's life is visible through the API with the numbers the domain
    // promises: reserve lowers available, extend moves the expiry, a partial commit takes the
    // committed units off on_hand and releases the rest, and the hold reads as COMMITTED.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "receipt-1", SKU, DC, 10).await?;
        stock(&mut client, "receipt-2", "sock", DC, 5).await?;
        let before = available(&mut client, SKU, DC).await?;
        assert!(before.exists);
        assert_eq!(
            (before.on_hand, before.available, before.sellable),
            (10, 10, 10)
        );

        let reserved = client
            .reserve(reserve(
                "order-1",
                vec![line(SKU, DC, 3), line("sock", DC, 2)],
                TTL_MS,
            ))
            .await?
            .into_inner();
        assert_eq!(granted(&reserved), Some(T0_MS + TTL_MS));
        assert!(!reserved.duplicate);
        let during = available(&mut client, SKU, DC).await?;
        assert_eq!(
            (during.on_hand, during.reserved, during.available),
            (10, 3, 7)
        );

        let hold = client
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "order-1".into(),
            })
            .await?
            .into_inner()
            .reservation
            .expect("a hold");
        assert_eq!(hold.state, pb::HoldState::Open as i32);
        assert_eq!(hold.placed_lsn, reserved.lsn);
        assert_eq!(hold.channel, "web");
        assert_eq!(hold.lines.len(), 2);

        server.clock.advance_ms(10_000);
        let extended = client
            .extend(pb::ExtendRequest {
                reservation_id: "order-1".into(),
                request_id: "ext-1".into(),
                ttl_ms: TTL_MS,
            })
            .await?
            .into_inner();
        assert_eq!(extended.expires_at_ms, T0_MS + 10_000 + TTL_MS);

        // Commit 2 of the 3 sneakers and none of the socks: the rest is released.
        let committed = client
            .commit(pb::CommitRequest {
                reservation_id: "order-1".into(),
                lines: vec![line(SKU, DC, 2)],
            })
            .await?
            .into_inner();
        let lines: Vec<_> = committed
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.held, l.committed))
            .collect();
        assert_eq!(lines, [(SKU, 3, 2), ("sock", 2, 0)]);
        let after = available(&mut client, SKU, DC).await?;
        assert_eq!((after.on_hand, after.reserved, after.available), (8, 0, 8));
        let socks = available(&mut client, "sock", DC).await?;
        assert_eq!((socks.on_hand, socks.available), (5, 5));

        let hold = client
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "order-1".into(),
            })
            .await?
            .into_inner()
            .reservation
            .expect("a hold");
        assert_eq!(hold.state, pb::HoldState::Committed as i32);

        // Safety stock and CheckSku: rows per location, totals, and a filter.
        stock(&mut client, "receipt-3", SKU, "store-7", 4).await?;
        client
            .set_safety_stock(pb::SetSafetyStockRequest {
                request_id: "ss-1".into(),
                sku: SKU.into(),
                location: "store-7".into(),
                qty: 6,
            })
            .await?;
        let sku = client
            .check_sku(pb::CheckSkuRequest {
                sku: SKU.into(),
                locations: vec![],
            })
            .await?
            .into_inner();
        let rows: Vec<_> = sku
            .rows
            .iter()
            .map(|r| (r.location.as_str(), r.available, r.sellable))
            .collect();
        assert_eq!(rows, [("store-7", -2, 0), (DC, 8, 8)]);
        let total = sku.total.expect("totals");
        assert_eq!((total.on_hand, total.available, total.sellable), (12, 6, 8));
        let filtered = client
            .check_sku(pb::CheckSkuRequest {
                sku: SKU.into(),
                locations: vec![DC.into(), "nowhere".into()],
            })
            .await?
            .into_inner();
        let rows: Vec<_> = filtered
            .rows
            .iter()
            .map(|r| (r.location.as_str(), r.exists))
            .collect();
        assert_eq!(rows, [("nowhere", false), (DC, true)]);

        // A release of another hold gives its units back.
        client
            .reserve(reserve("order-2", vec![line(SKU, DC, 8)], TTL_MS))
            .await?;
        assert_eq!(available(&mut client, SKU, DC).await?.available, 0);
        client
            .release(pb::ReleaseRequest {
                reservation_id: "order-2".into(),
            })
            .await?;
        assert_eq!(available(&mut client, SKU, DC).await?.available, 8);
        server
            .engine
            .ledger()
            .check_invariants()
            .map_err(anyhow::Error::msg)?;
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn out_of_stock_is_an_answer_listing_each_short_line() -> Result<()> {
    // Goal: a reserve that cannot be granted is a normal response naming every short line with
    // its availability, nothing is held, and a retry gets the same rejection.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 2).await?;
        stock(&mut client, "r2", "sock", DC, 9).await?;
        let request = reserve(
            "order-1",
            vec![line("sock", DC, 1), line(SKU, DC, 3), line("hat", DC, 1)],
            TTL_MS,
        );
        let response = client.reserve(request.clone()).await?.into_inner();
        let Some(pb::reserve_response::Result::Rejected(rejected)) = &response.result else {
            bail!("expected a rejection, got {response:?}");
        };
        let short: Vec<_> = rejected
            .short_lines
            .iter()
            .map(|s| (s.line_index, s.sku.as_str(), s.requested, s.available))
            .collect();
        assert_eq!(short, [(1, SKU, 3, 2), (2, "hat", 1, 0)]);
        assert_eq!(available(&mut client, "sock", DC).await?.reserved, 0);

        // Stock arrives, but the retry still gets the recorded answer.
        stock(&mut client, "r3", SKU, DC, 10).await?;
        let retry = client.reserve(request).await?.into_inner();
        assert!(retry.duplicate);
        assert_eq!(retry.lsn, response.lsn);
        assert_eq!(retry.result, response.result);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_hold_expires_when_the_clock_passes_its_ttl() -> Result<()> {
    // Goal: with the shortest TTL (1 s), moving the manual clock past it frees the units at
    // once, the expirer records the expiry, and committing afterwards is FAILED_PRECONDITION.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        client
            .reserve(reserve("short", vec![line(SKU, DC, 5)], 1_000))
            .await?;
        assert_eq!(available(&mut client, SKU, DC).await?.available, 0);

        server.clock.advance_ms(1_000);
        // Availability does not wait for the expiry event.
        assert_eq!(available(&mut client, SKU, DC).await?.available, 5);
        let hold = client
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "short".into(),
            })
            .await?
            .into_inner()
            .reservation
            .expect("a hold");
        assert_eq!(hold.state, pb::HoldState::Expired as i32);

        // The expirer records it.
        server
            .eventually("the expirer to record the expiry", |e| {
                e.ledger().holds_open() == 0
            })
            .await?;
        let status = expect_error(
            client
                .commit(pb::CommitRequest {
                    reservation_id: "short".into(),
                    lines: vec![],
                })
                .await,
            Code::FailedPrecondition,
            "HOLD_ALREADY_EXPIRED",
            "expired",
        );
        // The refusal is recorded: its LSN is in the metadata, and a retry answers the same.
        let lsn = status
            .get_details_error_info()
            .and_then(|i| i.metadata.get("lsn").cloned())
            .expect("lsn");
        let again = client
            .commit(pb::CommitRequest {
                reservation_id: "short".into(),
                lines: vec![],
            })
            .await
            .expect_err("still refused");
        assert_eq!(
            again
                .get_details_error_info()
                .and_then(|i| i.metadata.get("lsn").cloned()),
            Some(lsn)
        );

        server
            .engine
            .ledger()
            .check_invariants()
            .map_err(anyhow::Error::msg)?;
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_command_on_a_lapsed_hold_records_its_expiry() -> Result<()> {
    // Goal: a hold whose TTL passed before any sweep ran is expired by the next command on it:
    // that command is FAILED_PRECONDITION (HOLD_EXPIRED) and its event ends the hold, so a
    // later sweep finds nothing. The expirer is slowed to an hour so the test decides when
    // expiry happens; a direct `expire_due` call then shows there is nothing left to do.
    let config = inv_api::ServerConfig {
        expire_interval_ms: 3_600_000,
        ..test_config()
    };
    let server = TestServer::in_memory(config).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        client
            .reserve(reserve("late", vec![line(SKU, DC, 1)], 1_000))
            .await?;
        client
            .reserve(reserve("swept", vec![line(SKU, DC, 1)], 2_000))
            .await?;
        server.clock.advance_ms(5_000);
        expect_error(
            client
                .extend(pb::ExtendRequest {
                    reservation_id: "late".into(),
                    request_id: "x1".into(),
                    ttl_ms: 1_000,
                })
                .await,
            Code::FailedPrecondition,
            "HOLD_EXPIRED",
            "expired",
        );
        assert_eq!(server.engine.ledger().holds_open(), 1);
        let engine = Arc::clone(&server.engine);
        let expired = tokio::task::spawn_blocking(move || engine.expire_due(100)).await??;
        assert_eq!(expired, 1, "only the other hold was left to sweep");
        assert_eq!(server.engine.ledger().holds_open(), 0);
        server
            .engine
            .ledger()
            .check_invariants()
            .map_err(anyhow::Error::msg)?;
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn retries_are_idempotent_and_a_reused_key_names_the_differing_field() -> Result<()> {
    // Goal: the same request twice gets the original LSN and answer with `duplicate`; the same
    // key with another payload is ALREADY_EXISTS naming the field that differs.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let first_adjust = stock(&mut client, "r1", SKU, DC, 5).await?;
        let again = client.adjust(adjust("r1", SKU, DC, 5)).await?.into_inner();
        assert_eq!((again.lsn, again.duplicate), (first_adjust, true));
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 5);

        let request = reserve("order-1", vec![line(SKU, DC, 2)], TTL_MS);
        let first = client.reserve(request.clone()).await?.into_inner();
        let retry = client.reserve(request.clone()).await?.into_inner();
        assert_eq!((retry.lsn, retry.duplicate), (first.lsn, true));
        assert_eq!(available(&mut client, SKU, DC).await?.reserved, 2);

        let mut other_ttl = request.clone();
        other_ttl.ttl_ms = TTL_MS + 1;
        expect_error(
            client.reserve(other_ttl).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "ttl_ms",
        );
        let mut other_lines = request.clone();
        other_lines.lines[0].qty = 1;
        expect_error(
            client.reserve(other_lines).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "lines[0].qty",
        );
        expect_error(
            client.adjust(adjust("r1", SKU, DC, 6)).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "delta",
        );

        let commit = pb::CommitRequest {
            reservation_id: "order-1".into(),
            lines: vec![],
        };
        let committed = client.commit(commit.clone()).await?.into_inner();
        let recommitted = client.commit(commit).await?.into_inner();
        assert_eq!(
            (recommitted.lsn, recommitted.duplicate),
            (committed.lsn, true)
        );
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 3);
        Ok(())
    })
    .await?;
    server.join().await
}
