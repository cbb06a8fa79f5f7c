//! Bad input and unknown or ended things: the right code and a message naming the field; batches answer per item.

use super::*;

#[tokio::test]
async fn malformed_requests_are_invalid_argument_naming_the_field() -> Result<()> {
    // Goal: every shape error is INVALID_ARGUMENT with a BadRequest naming the offending field
    // by its path in the request, and nothing is applied.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, DC, 5).await?;
        let lsn_before = server.engine.ledger().next_lsn();
        let ok = || reserve("order-1", vec![line(SKU, DC, 1)], TTL_MS);
        let long_id = "x".repeat(129);
        let too_many: Vec<_> = (0..101).map(|i| line(&format!("sku-{i}"), DC, 1)).collect();
        let cases: Vec<(&str, pb::ReserveRequest)> = vec![
            (
                "reservation_id",
                pb::ReserveRequest {
                    reservation_id: String::new(),
                    ..ok()
                },
            ),
            (
                "reservation_id",
                pb::ReserveRequest {
                    reservation_id: long_id.clone(),
                    ..ok()
                },
            ),
            (
                "channel",
                pb::ReserveRequest {
                    channel: String::new(),
                    ..ok()
                },
            ),
            (
                "lines",
                pb::ReserveRequest {
                    lines: vec![],
                    ..ok()
                },
            ),
            (
                "lines",
                pb::ReserveRequest {
                    lines: too_many,
                    ..ok()
                },
            ),
            (
                "lines[0].qty",
                pb::ReserveRequest {
                    lines: vec![line(SKU, DC, 0)],
                    ..ok()
                },
            ),
            (
                "lines[0].qty",
                pb::ReserveRequest {
                    lines: vec![line(SKU, DC, 1_000_000_001)],
                    ..ok()
                },
            ),
            (
                "lines[0].sku",
                pb::ReserveRequest {
                    lines: vec![line("", DC, 1)],
                    ..ok()
                },
            ),
            (
                "lines[0].location",
                pb::ReserveRequest {
                    lines: vec![line(SKU, &long_id, 1)],
                    ..ok()
                },
            ),
            (
                "lines[1]",
                pb::ReserveRequest {
                    lines: vec![line(SKU, DC, 1), line(SKU, DC, 2)],
                    ..ok()
                },
            ),
            (
                "ttl_ms",
                pb::ReserveRequest {
                    ttl_ms: 999,
                    ..ok()
                },
            ),
            (
                "ttl_ms",
                pb::ReserveRequest {
                    ttl_ms: 7 * 24 * 3_600_000 + 1,
                    ..ok()
                },
            ),
        ];
        for (field, request) in cases {
            expect_error(
                client.reserve(request).await,
                Code::InvalidArgument,
                "INVALID_FIELD",
                field,
            );
        }
        // Unknown and UNSPECIFIED enum values.
        let dispose = |action| pb::DispositionRequest {
            disposition_id: "d1".into(),
            return_id: "ret-1".into(),
            sku: SKU.into(),
            location: DC.into(),
            qty: 1,
            action,
        };
        expect_error(
            client.disposition(dispose(99)).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "action",
        );
        expect_error(
            client.disposition(dispose(0)).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "action",
        );
        // Other requests' fields.
        expect_error(
            client.adjust(adjust("a1", SKU, DC, 0)).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "delta",
        );
        expect_error(
            client
                .extend(pb::ExtendRequest {
                    reservation_id: "order-1".into(),
                    request_id: String::new(),
                    ttl_ms: TTL_MS,
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "request_id",
        );
        expect_error(
            client
                .get_reservation(pb::GetReservationRequest {
                    reservation_id: long_id.clone(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "reservation_id",
        );
        let positions = (0..1_001)
            .map(|i| pb::Position {
                sku: format!("s{i}"),
                location: DC.into(),
            })
            .collect();
        expect_error(
            client.check(pb::CheckRequest { positions }).await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "positions",
        );
        expect_error(
            client
                .check_sku(pb::CheckSkuRequest {
                    sku: String::new(),
                    locations: vec![],
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "sku",
        );
        expect_error(
            client
                .record_sales(pb::RecordSalesRequest {
                    store_id: String::new(),
                    sales: vec![sale("t1", 1, vec![line(SKU, DC, 1)])],
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "store_id",
        );
        expect_error(
            client
                .record_returns(pb::RecordReturnsRequest { returns: vec![] })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "returns",
        );
        expect_error(
            client
                .watch_availability(pb::WatchAvailabilityRequest {
                    skus: vec![String::new()],
                    locations: vec![],
                    after_lsn: None,
                })
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
            "skus[0]",
        );
        assert_eq!(
            server.engine.ledger().next_lsn(),
            lsn_before,
            "nothing was applied"
        );
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn unknown_and_ended_things_are_not_found_or_failed_precondition() -> Result<()> {
    // Goal: references to what does not exist are NOT_FOUND; acting on a hold that has ended,
    // or on units that are not there, is FAILED_PRECONDITION.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let nobody = || pb::CommitRequest {
            reservation_id: "nobody".into(),
            lines: vec![],
        };
        expect_error(
            client.commit(nobody()).await,
            Code::NotFound,
            "RESERVATION_NOT_FOUND",
            "nobody",
        );
        expect_error(
            client
                .release(pb::ReleaseRequest {
                    reservation_id: "nobody".into(),
                })
                .await,
            Code::NotFound,
            "RESERVATION_NOT_FOUND",
            "nobody",
        );
        expect_error(
            client
                .get_reservation(pb::GetReservationRequest {
                    reservation_id: "nobody".into(),
                })
                .await,
            Code::NotFound,
            "RESERVATION_NOT_FOUND",
            "nobody",
        );
        expect_error(
            client
                .store_status(pb::StoreStatusRequest {
                    store_id: "store-404".into(),
                })
                .await,
            Code::NotFound,
            "STORE_NOT_FOUND",
            "store-404",
        );
        expect_error(
            client
                .disposition(pb::DispositionRequest {
                    disposition_id: "d1".into(),
                    return_id: "ret-404".into(),
                    sku: SKU.into(),
                    location: DC.into(),
                    qty: 1,
                    action: pb::DispositionAction::Scrap as i32,
                })
                .await,
            Code::NotFound,
            "RETURN_NOT_FOUND",
            "ret-404",
        );

        stock(&mut client, "r1", SKU, DC, 5).await?;
        client
            .reserve(reserve("h1", vec![line(SKU, DC, 2)], TTL_MS))
            .await?;
        expect_error(
            client
                .commit(pb::CommitRequest {
                    reservation_id: "h1".into(),
                    lines: vec![line("other", DC, 1)],
                })
                .await,
            Code::FailedPrecondition,
            "NOT_HELD",
            "lines[0]",
        );
        expect_error(
            client
                .commit(pb::CommitRequest {
                    reservation_id: "h1".into(),
                    lines: vec![line(SKU, DC, 3)],
                })
                .await,
            Code::FailedPrecondition,
            "NOT_HELD",
            "lines[0].qty",
        );
        client
            .release(pb::ReleaseRequest {
                reservation_id: "h1".into(),
            })
            .await?;
        expect_error(
            client
                .commit(pb::CommitRequest {
                    reservation_id: "h1".into(),
                    lines: vec![],
                })
                .await,
            Code::FailedPrecondition,
            "HOLD_ALREADY_RELEASED",
            "released",
        );
        expect_error(
            client
                .extend(pb::ExtendRequest {
                    reservation_id: "h1".into(),
                    request_id: "e1".into(),
                    ttl_ms: TTL_MS,
                })
                .await,
            Code::FailedPrecondition,
            "HOLD_ALREADY_RELEASED",
            "released",
        );
        client
            .reserve(reserve("h2", vec![line(SKU, DC, 1)], TTL_MS))
            .await?;
        client
            .commit(pb::CommitRequest {
                reservation_id: "h2".into(),
                lines: vec![],
            })
            .await?;
        expect_error(
            client
                .release(pb::ReleaseRequest {
                    reservation_id: "h2".into(),
                })
                .await,
            Code::FailedPrecondition,
            "HOLD_ALREADY_COMMITTED",
            "committed",
        );

        // A disposition of more units than the return put in quarantine.
        let returned = client
            .record_returns(pb::RecordReturnsRequest {
                returns: vec![pb::Return {
                    return_id: "ret-1".into(),
                    lines: vec![pb::ReturnLine {
                        sku: SKU.into(),
                        location: DC.into(),
                        qty: 2,
                        disposition: pb::ReturnDisposition::Inspect as i32,
                    }],
                }],
            })
            .await?
            .into_inner();
        assert!(matches!(
            returned.results[0].result,
            Some(pb::batch_item_result::Result::Recorded(_))
        ));
        assert_eq!(available(&mut client, SKU, DC).await?.quarantined, 2);
        let dispose = |id: &str, qty| pb::DispositionRequest {
            disposition_id: id.into(),
            return_id: "ret-1".into(),
            sku: SKU.into(),
            location: DC.into(),
            qty,
            action: pb::DispositionAction::Restock as i32,
        };
        expect_error(
            client.disposition(dispose("d2", 3)).await,
            Code::FailedPrecondition,
            "NOT_QUARANTINED",
            "qty",
        );
        client.disposition(dispose("d3", 2)).await?;
        let after = available(&mut client, SKU, DC).await?;
        assert_eq!((after.on_hand, after.quarantined), (6, 0));
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn batches_answer_per_item_and_one_bad_item_loses_nothing_else() -> Result<()> {
    // Goal: RecordSales, RecordReturns and Check answer each item in order; a bad item gets
    // its own error with the field's full path, and the good items around it are applied.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "r1", SKU, "store-1", 10).await?;
        let sales = vec![
            sale("t1", 1, vec![line(SKU, "store-1", 2)]),
            sale("t2", 2, vec![line(SKU, "store-1", 0)]),
            sale("t4", 4, vec![line(SKU, "store-1", 3)]),
        ];
        let response = client
            .record_sales(pb::RecordSalesRequest { store_id: "store-1".into(), sales: sales.clone() })
            .await?
            .into_inner();
        assert_eq!(response.results.len(), 3);
        use pb::batch_item_result::Result as R;
        let Some(R::Error(error)) = &response.results[1].result else {
            bail!("sale 1 should fail: {response:?}");
        };
        assert_eq!(error.code, Code::InvalidArgument as u32);
        assert_eq!(error.reason, pb::ErrorReason::InvalidField as i32);
        assert_eq!(error.field, "sales[1].lines[0].qty");
        for i in [0, 2] {
            assert!(matches!(response.results[i].result, Some(R::Recorded(_))), "sale {i}");
            assert_eq!(response.results[i].index, i as u32);
        }
        assert_eq!(available(&mut client, SKU, "store-1").await?.on_hand, 5);

        // Store sequencing: 2 and 3 are missing. A retry of the batch (with sale 2 fixed)
        // records only sale 2; the others are duplicates.
        let status = client
            .store_status(pb::StoreStatusRequest { store_id: "store-1".into() })
            .await?
            .into_inner();
        let store = &status.stores[0];
        assert_eq!((store.contiguous_seq, store.newest_seq, store.missing_count), (1, 4, 2));
        let mut fixed = sales;
        fixed[1].lines[0].qty = 1;
        let retry = client
            .record_sales(pb::RecordSalesRequest { store_id: "store-1".into(), sales: fixed })
            .await?
            .into_inner();
        let duplicates: Vec<bool> = retry
            .results
            .iter()
            .map(|r| match &r.result {
                Some(R::Recorded(rec)) => rec.duplicate,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(duplicates, [true, false, true]);
        assert_eq!(available(&mut client, SKU, "store-1").await?.on_hand, 4);
        let all = client.store_status(pb::StoreStatusRequest { store_id: String::new() }).await?.into_inner();
        assert_eq!(all.stores.len(), 1);
        assert_eq!(all.stores[0].duplicates_absorbed, 2);

        // Returns: an unknown disposition value fails its return only.
        let ret = |id: &str, disposition| pb::Return {
            return_id: id.into(),
            lines: vec![pb::ReturnLine { sku: SKU.into(), location: "store-1".into(), qty: 1, disposition }],
        };
        let returns = client
            .record_returns(pb::RecordReturnsRequest {
                returns: vec![
                    ret("ret-1", pb::ReturnDisposition::Restock as i32),
                    ret("ret-2", 7),
                    ret("", pb::ReturnDisposition::Restock as i32),
                    ret("ret-4", pb::ReturnDisposition::Inspect as i32),
                ],
            })
            .await?
            .into_inner();
        let outcomes: Vec<String> = returns
            .results
            .iter()
            .map(|r| match &r.result {
                Some(R::Recorded(_)) => "ok".to_owned(),
                Some(R::Error(e)) => e.field.clone(),
                None => "none".to_owned(),
            })
            .collect();
        assert_eq!(outcomes, ["ok", "returns[1].lines[0].disposition", "returns[2].return_id", "ok"]);
        let after = available(&mut client, SKU, "store-1").await?;
        assert_eq!((after.on_hand, after.quarantined), (5, 1));

        // Check: one malformed position among good ones.
        let checked = client
            .check(pb::CheckRequest {
                positions: vec![
                    pb::Position { sku: SKU.into(), location: "store-1".into() },
                    pb::Position { sku: String::new(), location: "store-1".into() },
                    pb::Position { sku: "never".into(), location: "store-1".into() },
                ],
            })
            .await?
            .into_inner();
        use pb::check_result::Result as C;
        assert!(matches!(&checked.results[0].result, Some(C::Availability(a)) if a.exists && a.on_hand == 5));
        assert!(matches!(&checked.results[1].result, Some(C::Error(e)) if e.field == "positions[1].sku"));
        assert!(matches!(&checked.results[2].result, Some(C::Availability(a)) if !a.exists && a.sellable == 0));
        Ok(())
    })
    .await?;
    server.join().await
}
