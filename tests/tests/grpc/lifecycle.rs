//! The server's life: shutdown, a failed log, the bulk lane's budget and limits, restarts and checkpoints.

use super::*;

#[test]
fn serve_lets_go_of_the_engine_before_it_returns() -> Result<()> {
    // Goal: once `serve` returns, nothing it started still holds the engine, so its caller can
    // close the log at once. On a current-thread runtime (the server's runtime with one
    // worker) no task runs after `block_on` returns, so a task `serve` left behind would keep
    // the engine, and the log, open until the runtime is dropped.
    let dir = tempfile::tempdir()?;
    let log = Arc::new(inv_engine::RedbLog::open(
        dir.path(),
        inv_engine::RedbLogOptions::default(),
    )?);
    let engine = Arc::new(inv_engine::Engine::recover(
        inv_engine::LedgerConfig::default(),
        log,
        Arc::new(inv_engine::ManualClock::new(T0_MS)),
    )?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = inv_api::serve(
            Arc::clone(&engine),
            test_config(),
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                let _ = stopped.await;
            },
        );
        let client = async move {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?;
            let mut client = pb::inventory_client::InventoryClient::new(channel);
            // A durable write: it waits for the log through the durability relay.
            client.adjust(adjust("a-1", SKU, DC, 5)).await?;
            drop(client);
            let _ = stop.send(());
            anyhow::Ok(())
        };
        let (served, called) = tokio::join!(server, client);
        served?;
        called
    }))?;
    assert_eq!(
        Arc::strong_count(&engine),
        1,
        "serve returned with a task still holding the engine"
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_calls_in_flight_and_ends_change_feeds() -> Result<()> {
    // Goal: after the shutdown signal the server stops accepting, a write already waiting for
    // durability still completes with its answer, an open change feed ends (UNAVAILABLE) rather
    // than holding shutdown forever, and health turns NOT_SERVING.
    let (log, mut server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        let mut feed = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![],
                locations: vec![],
                after_lsn: None,
            })
            .await?
            .into_inner();
        feed.next().await.expect("the first progress message")?;

        log.hold();
        let mut writer = client.clone();
        let in_flight = tokio::spawn(async move {
            writer
                .reserve(reserve("h1", vec![line(SKU, DC, 2)], TTL_MS))
                .await
        });
        while log.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        server.begin_shutdown();
        // The feed ends with UNAVAILABLE naming where to resume.
        let ended = loop {
            match feed.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => break status,
                None => bail!("the feed ended without a status"),
            }
        };
        assert_eq!(ended.code(), Code::Unavailable);
        assert!(ended.message().contains("after_lsn"), "{ended:?}");

        // The write is still waiting, so the server is still draining.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!server.is_stopped(), "serve returned with a call in flight");
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let health = HealthClient::new(server.channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if let Ok(health) = health {
            assert_eq!(health.into_inner().status, ServingStatus::NotServing as i32);
        }
        // The listener is closed: new connections are refused while the old call drains.
        assert!(
            server.connect().await.is_err(),
            "a new connection was accepted while draining"
        );

        log.release();
        let answer = in_flight.await??.into_inner();
        assert!(
            granted(&answer).is_some(),
            "the in-flight reserve completes: {answer:?}"
        );
        Ok(())
    })
    .await?;
    tokio::time::timeout(Duration::from_secs(5), server.join()).await??;
    Ok(())
}

#[tokio::test]
async fn a_failed_log_makes_writes_unavailable_and_health_not_serving() -> Result<()> {
    // Goal: a full log queue is RESOURCE_EXHAUSTED with nothing applied; a failed append
    // fail-stops the engine: writes are UNAVAILABLE from then on, reads still answer, and
    // health reports NOT_SERVING.
    let (log, server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;

        log.set_full(true);
        expect_error(
            client
                .reserve(reserve("h1", vec![line(SKU, DC, 1)], TTL_MS))
                .await,
            Code::ResourceExhausted,
            "LOG_FULL",
            "full",
        );
        log.set_full(false);
        assert_eq!(available(&mut client, SKU, DC).await?.reserved, 0);

        log.set_failing(true);
        expect_error(
            client
                .reserve(reserve("h1", vec![line(SKU, DC, 1)], TTL_MS))
                .await,
            Code::Unavailable,
            "FAIL_STOPPED",
            "disk gone",
        );
        log.set_failing(false);
        expect_error(
            client.adjust(adjust("r2", SKU, DC, 1)).await,
            Code::Unavailable,
            "FAIL_STOPPED",
            "",
        );
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 5);

        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut health = HealthClient::new(server.channel.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: "inventory.v1.Inventory".into(),
                })
                .await?
                .into_inner()
                .status;
            if status == ServingStatus::NotServing as i32 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("health still reports {status}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn writes_waiting_for_durability_when_the_log_fails_are_answered_unavailable() -> Result<()> {
    // Goal: a write decided but not yet durable when the log fails is never acknowledged and
    // never left hanging: it (and one queued behind it) is answered UNAVAILABLE, FAIL_STOPPED.
    let (log, server) = TestServer::over_controlled_log(test_config()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        log.hold();
        let waiting: Vec<_> = ["h1", "h2"]
            .into_iter()
            .map(|id| {
                let mut writer = client.clone();
                tokio::spawn(async move {
                    writer
                        .reserve(reserve(id, vec![line(SKU, DC, 1)], TTL_MS))
                        .await
                })
            })
            .collect();
        while log.pending() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The disk goes: the next append fails, and the log stays failed.
        log.set_failing(true);
        expect_error(
            client.adjust(adjust("r2", SKU, DC, 1)).await,
            Code::Unavailable,
            "FAIL_STOPPED",
            "disk gone",
        );
        for write in waiting {
            expect_error(write.await?, Code::Unavailable, "FAIL_STOPPED", "disk gone");
        }
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn bulk_calls_have_their_own_budget() -> Result<()> {
    // Goal: when the bulk budget is used up, another bulk call is RESOURCE_EXHAUSTED at once
    // (nothing applied) instead of queueing, while the interactive budget is untouched.
    let config = inv_api::ServerConfig {
        bulk_in_flight_max: 1,
        ..test_config()
    };
    let (log, server) = TestServer::over_controlled_log(config).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        log.hold();
        let mut bulk = client.clone();
        let first = tokio::spawn(async move {
            bulk.record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales: vec![sale("t1", 1, vec![line(SKU, DC, 1)])],
            })
            .await
        });
        while log.pending() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        expect_error(
            client
                .record_sales(pb::RecordSalesRequest {
                    store_id: "store-2".into(),
                    sales: vec![sale("t1", 1, vec![line(SKU, DC, 1)])],
                })
                .await,
            Code::ResourceExhausted,
            "OVERLOADED",
            "bulk",
        );
        log.release();
        let done = first.await??.into_inner();
        assert!(matches!(
            done.results[0].result,
            Some(pb::batch_item_result::Result::Recorded(_))
        ));
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 4);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn bulk_calls_obey_the_request_size_limit_like_every_call() -> Result<()> {
    // Goal: the bulk methods, served on their own lane through a raw codec, refuse a request
    // over `request_bytes_max` with the same code as a generated handler (Check), apply
    // nothing of it, and keep serving.
    let config = inv_api::ServerConfig {
        request_bytes_max: 4 << 10,
        ..test_config()
    };
    let server = TestServer::in_memory(config).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 500).await?;
        let sales: Vec<pb::Sale> = (1..=200)
            .map(|seq| sale(&format!("t{seq}"), seq, vec![line(SKU, DC, 1)]))
            .collect();
        let too_big = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales,
            })
            .await
            .expect_err("over the limit");
        let positions = (0..200)
            .map(|_| pb::Position {
                sku: SKU.into(),
                location: DC.into(),
            })
            .collect();
        let check = client
            .check(pb::CheckRequest { positions })
            .await
            .expect_err("over the limit");
        assert_eq!(too_big.code(), check.code(), "{too_big:?} vs {check:?}");
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 500);
        let answer = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales: vec![sale("t1", 1, vec![line(SKU, DC, 1)])],
            })
            .await?
            .into_inner();
        assert!(matches!(
            answer.results[0].result,
            Some(pb::batch_item_result::Result::Recorded(_))
        ));
        assert_eq!(available(&mut client, SKU, DC).await?.on_hand, 499);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_restart_over_the_same_data_folder_keeps_everything() -> Result<()> {
    // Goal: stopping the server and starting another over the same folder rebuilds the same
    // ledger from the log: positions, holds, store sequences, idempotency keys (a retry after
    // the restart is still a duplicate with the original LSN) and the LSN sequence.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let (reserved, digest, next_lsn) = bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 10).await?;
        let reserved = client
            .reserve(reserve("h1", vec![line(SKU, DC, 3)], TTL_MS))
            .await?
            .into_inner();
        client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales: vec![
                    sale("t1", 1, vec![line(SKU, DC, 1)]),
                    sale("t3", 3, vec![line(SKU, DC, 1)]),
                ],
            })
            .await?;
        client
            .reserve(reserve("h2", vec![line(SKU, DC, 1)], TTL_MS))
            .await?;
        client
            .release(pb::ReleaseRequest {
                reservation_id: "h2".into(),
            })
            .await?;
        Ok((
            reserved,
            server.engine.ledger().digest(),
            server.engine.ledger().next_lsn(),
        ))
    })
    .await?;
    server.join().await?;

    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        assert_eq!(server.engine.ledger().next_lsn(), next_lsn);
        assert_eq!(server.engine.ledger().digest(), digest);
        let mut client = server.client.clone();
        let a = available(&mut client, SKU, DC).await?;
        assert_eq!((a.on_hand, a.reserved, a.available), (8, 3, 5));
        let retry = client
            .reserve(reserve("h1", vec![line(SKU, DC, 3)], TTL_MS))
            .await?
            .into_inner();
        assert_eq!((retry.lsn, retry.duplicate), (reserved.lsn, true));
        let hold = client
            .get_reservation(pb::GetReservationRequest {
                reservation_id: "h2".into(),
            })
            .await?
            .into_inner()
            .reservation
            .expect("a hold");
        assert_eq!(hold.state, pb::HoldState::Released as i32);
        let store = client
            .store_status(pb::StoreStatusRequest {
                store_id: "store-1".into(),
            })
            .await?
            .into_inner();
        let gaps: Vec<_> = store.stores[0]
            .gaps
            .iter()
            .map(|g| (g.first, g.last))
            .collect();
        assert_eq!(gaps, [(2, 2)]);
        // New writes continue the LSN sequence.
        let next = stock(&mut client, "r2", SKU, DC, 1).await?;
        assert_eq!(next, next_lsn.0);
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
async fn the_server_checkpoints_and_a_restart_resumes_from_the_checkpoint() -> Result<()> {
    // Goal: with a checkpoint every 10 events, the server writes checkpoints on its own (the
    // log before them is trimmed), and a restart over the folder loads the newest one plus the
    // tail into the same ledger: same digest, same LSN sequence, keys still deduplicate.
    let dir = tempfile::tempdir()?;
    let config = inv_api::ServerConfig {
        checkpoint_every_events: 10,
        checkpoint_every_ms: 0,
        ..test_config()
    };
    let open = |dir: &std::path::Path| {
        inv_engine::RedbLog::open(dir, inv_engine::RedbLogOptions::default())
            .map(Arc::new)
            .map_err(anyhow::Error::from)
    };
    let log = open(dir.path())?;
    let clock = Arc::new(inv_engine::ManualClock::new(T0_MS));
    let server = TestServer::start_with(log.clone(), clock.clone(), config).await?;
    let (first_lsn, digest, next_lsn) = bounded(async {
        let mut client = server.client.clone();
        let first_lsn = stock(&mut client, "a0", SKU, DC, 100).await?;
        for i in 1..25 {
            stock(&mut client, &format!("a{i}"), SKU, DC, 1).await?;
        }
        // The checkpointer polls once a second at most; wait (bounded) for it.
        while log.checkpoint_lsn().is_none_or(|lsn| lsn.0 < 11) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok((
            first_lsn,
            server.engine.ledger().digest(),
            server.engine.ledger().next_lsn(),
        ))
    })
    .await?;
    assert!(log.stats().checkpoints >= 1);
    drop(log);
    server.join().await?;

    let log = open(dir.path())?;
    let checkpoint = log.checkpoint_lsn().expect("a checkpoint was kept");
    assert!(checkpoint.0 >= 11, "checkpoint at {checkpoint:?}");
    let server = TestServer::start_with(log, clock, test_config()).await?;
    bounded(async {
        assert_eq!(server.engine.ledger().digest(), digest);
        assert_eq!(server.engine.ledger().next_lsn(), next_lsn);
        let mut client = server.client.clone();
        let retry = client
            .adjust(adjust("a0", SKU, DC, 100))
            .await?
            .into_inner();
        assert_eq!((retry.lsn, retry.duplicate), (first_lsn, true));
        let a = available(&mut client, SKU, DC).await?;
        assert_eq!(a.on_hand, 124);
        Ok(())
    })
    .await?;
    server.join().await
}
