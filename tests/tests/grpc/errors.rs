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

/// The field paths of a status's BadRequest, in order.
fn bad_request_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_request_wrong_in_several_fields_lists_every_violation() -> Result<()> {
    // Goal: the contract promises every violation, not the first: a Reserve wrong in three
    // fields lists all three in its BadRequest (in field order, the first leading the
    // message), on a unary call and on a Session stream; a batch item names the first in its
    // `field` (its only slot) and every one in its message; a repeated position is one.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let lsn_before = server.engine.ledger().next_lsn();
        let three_wrong = pb::ReserveRequest {
            reservation_id: String::new(),
            ..reserve("unused", vec![line(SKU, DC, 1), line(SKU, "", 0)], 999)
        };
        let status = client
            .reserve(three_wrong.clone())
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            bad_request_fields(&status),
            [
                "reservation_id",
                "lines[1].location",
                "lines[1].qty",
                "ttl_ms"
            ]
        );
        assert!(
            status.message().starts_with("invalid reservation_id: "),
            "the first violation leads: {status:?}"
        );
        for field in ["lines[1].location", "lines[1].qty", "ttl_ms"] {
            assert!(status.message().contains(field), "{status:?}");
        }

        // A repeated position is a violation of its own, naming the line it repeats.
        let repeated = reserve("r-dup", vec![line(SKU, DC, 1), line(SKU, DC, 0)], TTL_MS);
        let status = client.reserve(repeated).await.expect_err("invalid");
        assert_eq!(bad_request_fields(&status), ["lines[1].qty", "lines[1]"]);

        // The same request on a Session: its answer's item error says what the call said.
        let mut answers = client
            .session(tokio_stream::iter([pb::SessionRequest {
                correlation_id: 7,
                request: Some(pb::session_request::Request::Reserve(three_wrong)),
            }]))
            .await?
            .into_inner();
        let answer = answers.next().await.expect("an answer")?;
        let Some(pb::session_response::Response::Error(error)) = answer.response else {
            bail!("expected an error: {answer:?}");
        };
        assert_eq!(
            (error.code, error.field.as_str()),
            (Code::InvalidArgument as u32, "reservation_id")
        );
        for field in ["lines[1].location", "lines[1].qty", "ttl_ms"] {
            assert!(error.message.contains(field), "{error:?}");
        }

        // A batch item: `field` has room for one path, the message names them all.
        let response = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-1".into(),
                sales: vec![sale("t1", 0, vec![line(SKU, "store-1", 0)])],
            })
            .await?
            .into_inner();
        let Some(pb::batch_item_result::Result::Error(error)) = &response.results[0].result else {
            bail!("the sale should fail: {response:?}");
        };
        assert_eq!(error.field, "sales[0].store_seq");
        assert!(error.message.contains("sales[0].lines[0].qty"), "{error:?}");

        // A wire problem (an unknown enum) is listed with the engine's violations of the rest.
        let status = client
            .disposition(pb::DispositionRequest {
                disposition_id: "d1".into(),
                return_id: String::new(),
                sku: SKU.into(),
                location: DC.into(),
                qty: 0,
                action: 42,
            })
            .await
            .expect_err("invalid");
        assert_eq!(bad_request_fields(&status), ["return_id", "qty", "action"]);
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
async fn a_message_over_the_size_limit_is_resource_exhausted_naming_the_limit() -> Result<()> {
    // Goal: a request larger than --request-bytes-max (8 MiB by default) is answered with
    // gRPC's code for a size limit, RESOURCE_EXHAUSTED, with the MESSAGE_TOO_LARGE reason and
    // the limit in its ErrorInfo and message, not tonic's bare OUT_OF_RANGE; the metrics count
    // the code the client got; a stream (Session, PushSnapshot) with such a message ends the
    // same way; and the connection keeps working.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_metrics(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let limit = (8 << 20).to_string();
        let huge = "x".repeat(10 << 20);
        let expect_too_large = |status: Status| {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            let info = status.get_details_error_info().expect("an ErrorInfo");
            assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
            assert_eq!(info.domain, "inventory.v1");
            assert_eq!(info.metadata.get("limit_bytes"), Some(&limit), "{status:?}");
            assert!(status.message().contains(&format!("{limit} bytes")), "{status:?}");
        };
        let big = pb::ReserveRequest {
            channel: huge.clone(),
            ..reserve("r-big", vec![line(SKU, DC, 1)], TTL_MS)
        };
        expect_too_large(client.reserve(big.clone()).await.expect_err("too large"));
        let scrape = server.scrape().await?;
        assert!(
            scrape.contains(
                r#"inventory_grpc_requests_total{grpc_method="Reserve",grpc_code="ResourceExhausted"} 1"#
            ),
            "the call is counted with the code the client got:\n{scrape}"
        );
        assert!(!scrape.contains(r#"grpc_code="OutOfRange""#), "{scrape}");
        // A bulk call, decoded on the bulk lane's path, answers the same.
        let sales = pb::RecordSalesRequest {
            store_id: "store-1".into(),
            sales: vec![sale(&huge, 1, vec![line(SKU, DC, 1)])],
        };
        expect_too_large(client.record_sales(sales).await.expect_err("too large"));

        // A Session request over the limit ends the stream the same way.
        let mut answers = client
            .session(tokio_stream::iter([pb::SessionRequest {
                correlation_id: 1,
                request: Some(pb::session_request::Request::Reserve(big)),
            }]))
            .await?
            .into_inner();
        match answers.next().await {
            Some(Err(status)) => expect_too_large(status),
            other => bail!("expected the stream to end RESOURCE_EXHAUSTED: {other:?}"),
        }

        // A PushSnapshot chunk over the limit: the push fails the same way, nothing staged.
        use pb::push_snapshot_request::Message as M;
        let push = [
            M::Header(pb::SnapshotHeader {
                snapshot_id: "s-big".into(),
                as_of_ms: T0_MS,
                scope: vec![],
                mode: pb::SnapshotMode::Delta as i32,
                source: "erp".into(),
            }),
            M::Chunk(pb::SnapshotChunk {
                rows: vec![pb::SnapshotRow {
                    sku: huge,
                    location: DC.into(),
                    on_hand: 1,
                    safety_stock: None,
                }],
            }),
        ]
        .map(|message| pb::PushSnapshotRequest {
            message: Some(message),
        });
        expect_too_large(client.push_snapshot(tokio_stream::iter(push)).await.expect_err("too large"));

        // The connection is still good.
        stock(&mut client, "a1", SKU, DC, 1).await?;
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_reused_key_names_the_path_of_what_differs() -> Result<()> {
    // Goal: a key reused with another payload names the exact path that differs, down to the
    // line (`lines[1].qty`), though the key's record keeps only a hash of all the lines: the
    // server compares with the original request in its log. The unary error names it in its
    // message, its ErrorInfo (`field`) and a BadRequest; a batch item in its `field`; a
    // Session answer likewise.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "a1", SKU, DC, 10).await?;
        stock(&mut client, "a2", "sock-1", DC, 10).await?;
        let first = reserve(
            "order-1",
            vec![line(SKU, DC, 1), line("sock-1", DC, 2)],
            TTL_MS,
        );
        client.reserve(first.clone()).await?;
        let mut other_qty = first.clone();
        other_qty.lines[1].qty = 3;
        let status = expect_error(
            client.reserve(other_qty.clone()).await,
            Code::AlreadyExists,
            "KEY_REUSED",
            "lines[1].qty",
        );
        assert!(status.message().contains("lines[1].qty"), "{status:?}");
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("lines[1].qty")
        );
        assert_eq!(bad_request_fields(&status), ["lines[1].qty"]);
        // Fewer lines: the counts are what differs.
        let status = client
            .reserve(reserve("order-1", vec![line(SKU, DC, 1)], TTL_MS))
            .await
            .expect_err("reused");
        assert_eq!(bad_request_fields(&status), ["lines"]);
        assert!(
            status.message().contains("1 lines, the original had 2"),
            "{status:?}"
        );

        // On a Session.
        let mut answers = client
            .session(tokio_stream::iter([pb::SessionRequest {
                correlation_id: 3,
                request: Some(pb::session_request::Request::Reserve(other_qty)),
            }]))
            .await?
            .into_inner();
        let answer = answers.next().await.expect("an answer")?;
        let Some(pb::session_response::Response::Error(error)) = answer.response else {
            bail!("expected an error: {answer:?}");
        };
        assert_eq!(error.code, Code::AlreadyExists as u32);
        assert_eq!(error.field, "lines[1].qty");

        // A sale reused with another sku: the batch item names the line's sku.
        let record = |sku: &str| pb::RecordSalesRequest {
            store_id: "store-1".into(),
            sales: vec![sale("t1", 1, vec![line(sku, DC, 1)])],
        };
        client.record_sales(record(SKU)).await?;
        let response = client.record_sales(record("sock-1")).await?.into_inner();
        let Some(pb::batch_item_result::Result::Error(error)) = &response.results[0].result else {
            bail!("the reused sale should fail: {response:?}");
        };
        assert_eq!(error.code, Code::AlreadyExists as u32);
        assert_eq!(error.reason, pb::ErrorReason::KeyReused as i32);
        assert_eq!(error.field, "sales[0].lines[0].sku");
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn ended_hold_answers_are_recorded_under_the_key_and_missing_units_are_not() -> Result<()> {
    // Goal: pin which FAILED_PRECONDITION answers are recorded under the idempotency key, as
    // the proto's header says. HOLD_* are outcomes: a retry, after the state moved on, gets the
    // same answer with the same LSN (nothing new is logged). NOT_HELD and NOT_QUARANTINED are
    // refusals: nothing is recorded, so a corrected request under the same key succeeds.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "a1", SKU, DC, 10).await?;
        client
            .reserve(reserve("h1", vec![line(SKU, DC, 2)], TTL_MS))
            .await?;
        server.clock.advance_ms(TTL_MS + 1);
        let commit_all = pb::CommitRequest {
            reservation_id: "h1".into(),
            lines: vec![],
        };
        // The expirer may sweep the lapsed hold first: then the commit finds it ended.
        let answer = |status: Status| {
            let info = status.get_details_error_info().expect("an ErrorInfo");
            (
                status.code(),
                info.reason,
                info.metadata.get("lsn").cloned(),
            )
        };
        let first = answer(client.commit(commit_all.clone()).await.expect_err("ended"));
        assert_eq!(first.0, Code::FailedPrecondition);
        assert!(
            ["HOLD_EXPIRED", "HOLD_ALREADY_EXPIRED"].contains(&first.1.as_str()),
            "{first:?}"
        );
        // The state moves on; the retry is answered from the record.
        stock(&mut client, "a2", SKU, DC, 5).await?;
        server.clock.advance_ms(1_000);
        let head = server.engine.head_lsn();
        let retry = answer(client.commit(commit_all).await.expect_err("ended"));
        assert_eq!(retry, first, "the recorded answer, with its LSN");
        assert_eq!(server.engine.head_lsn(), head, "nothing new was logged");

        // NOT_HELD: nothing recorded; the corrected commit under the same key succeeds.
        client
            .reserve(reserve("h2", vec![line(SKU, DC, 2)], TTL_MS))
            .await?;
        expect_error(
            client
                .commit(pb::CommitRequest {
                    reservation_id: "h2".into(),
                    lines: vec![line(SKU, DC, 3)],
                })
                .await,
            Code::FailedPrecondition,
            "NOT_HELD",
            "lines[0].qty",
        );
        let committed = client
            .commit(pb::CommitRequest {
                reservation_id: "h2".into(),
                lines: vec![line(SKU, DC, 2)],
            })
            .await?
            .into_inner();
        assert_eq!(
            (committed.lines[0].committed, committed.duplicate),
            (2, false)
        );

        // NOT_QUARANTINED: the same disposition id, corrected, succeeds.
        client
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
            .await?;
        let dispose = |qty| pb::DispositionRequest {
            disposition_id: "d1".into(),
            return_id: "ret-1".into(),
            sku: SKU.into(),
            location: DC.into(),
            qty,
            action: pb::DispositionAction::Scrap as i32,
        };
        expect_error(
            client.disposition(dispose(3)).await,
            Code::FailedPrecondition,
            "NOT_QUARANTINED",
            "qty",
        );
        let disposed = client.disposition(dispose(2)).await?.into_inner();
        assert!(!disposed.duplicate);
        Ok(())
    })
    .await?;
    server.join().await
}
