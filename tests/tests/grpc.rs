//! The gRPC API end to end: a real server on 127.0.0.1 over a real data folder, driven through
//! the generated client.
//!
//! Each test states its goal first. Time is a `ManualClock` the test advances (TTL tests never
//! sleep through a TTL); the expirer runs every 10 ms, so a test that advanced the clock only
//! waits for that tick. Every test runs under `bounded` (30 s) and finishes in well under a
//! second on a quiet machine.

use anyhow::{Result, bail};
use inv_tests::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";
const TTL_MS: u64 = 60_000;

/// Checks a call failed with `code`, that its message names `field`, and that its ErrorInfo
/// says `reason`.
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
    assert!(
        status.message().contains(field)
            || info.metadata.get("field").map(String::as_str) == Some(field),
        "{status:?} should name {field:?}"
    );
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "inventory.v1");
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

async fn stock(client: &mut Client, id: &str, sku: &str, location: &str, qty: i64) -> Result<u64> {
    Ok(client
        .adjust(adjust(id, sku, location, qty))
        .await?
        .into_inner()
        .lsn)
}

fn granted(response: &pb::ReserveResponse) -> Option<u64> {
    match &response.result {
        Some(pb::reserve_response::Result::Granted(g)) => Some(g.expires_at_ms),
        _ => None,
    }
}

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
            "lines",
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

#[tokio::test]
async fn watch_replays_after_an_lsn_then_follows_live() -> Result<()> {
    // Goal: a feed resumed from an LSN first replays the matching changes after it (and none
    // before, none filtered out), reports where it caught up, then streams live changes.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let first = stock(&mut client, "r1", SKU, DC, 10).await?;
        stock(&mut client, "r2", "other", DC, 10).await?;
        let reserved = client
            .reserve(reserve("h1", vec![line(SKU, DC, 4)], TTL_MS))
            .await?
            .into_inner();
        client
            .release(pb::ReleaseRequest {
                reservation_id: "h1".into(),
            })
            .await?;
        let head = server.engine.ledger().next_lsn().0 - 1;

        let mut feed = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![SKU.into()],
                locations: vec![],
                after_lsn: Some(first),
            })
            .await?
            .into_inner();
        let mut seen = Vec::new();
        let mut through = 0;
        while through < head {
            let message = feed.next().await.expect("the feed stays open")?;
            through = message.through_lsn;
            for change in message.changes {
                seen.push((change.lsn, change.cause));
                assert_eq!(change.position.as_ref().map(|p| p.sku.as_str()), Some(SKU));
            }
        }
        assert_eq!(
            seen,
            [
                (reserved.lsn, pb::ChangeCause::Reserved as i32),
                (head, pb::ChangeCause::Released as i32),
            ]
        );

        // Live: a sale of the watched sku arrives with its availability.
        let sold = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-9".into(),
                sales: vec![sale("t1", 1, vec![line(SKU, DC, 3)])],
            })
            .await?
            .into_inner();
        let Some(pb::batch_item_result::Result::Recorded(recorded)) = &sold.results[0].result
        else {
            bail!("sale refused: {sold:?}");
        };
        let change = loop {
            let message = feed.next().await.expect("the feed stays open")?;
            if let Some(change) = message.changes.into_iter().next() {
                break change;
            }
        };
        assert_eq!(change.lsn, recorded.lsn);
        assert_eq!(change.cause, pb::ChangeCause::Sold as i32);
        let position = change.position.expect("a position");
        assert_eq!((position.on_hand, position.available), (7, 7));

        // A feed without after_lsn starts at the head and sees only what follows.
        let mut live = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![],
                locations: vec![DC.into()],
                after_lsn: None,
            })
            .await?
            .into_inner();
        let start = live.next().await.expect("a progress message")?;
        assert!(start.changes.is_empty());
        assert_eq!(start.through_lsn, recorded.lsn);
        let adjusted = stock(&mut client, "r3", "other", DC, 1).await?;
        let message = live.next().await.expect("a change")?;
        assert_eq!(message.changes[0].lsn, adjusted);
        assert_eq!(message.changes[0].cause, pb::ChangeCause::Adjusted as i32);

        // Resuming beyond the log is OUT_OF_RANGE.
        let ahead = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![],
                locations: vec![],
                after_lsn: Some(adjusted + 100),
            })
            .await;
        expect_error(ahead, Code::OutOfRange, "LSN_AHEAD_OF_LOG", "after_lsn");
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn health_and_reflection_answer() -> Result<()> {
    // Goal: health reports SERVING for the server and the Inventory service, and reflection
    // lists the services, so grpcurl works without local .proto files.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut health = HealthClient::new(server.channel.clone());
        for service in ["", "inventory.v1.Inventory"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await?
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }

        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(server.channel.clone());
        let requests = tokio_stream::iter([
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "inventory.v1.Inventory".into(),
                )),
            },
        ]);
        let mut answers = reflection
            .server_reflection_info(requests)
            .await?
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.next().await.expect("an answer")?.message_response
        else {
            bail!("expected a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in ["inventory.v1.Inventory", "grpc.health.v1.Health"] {
            assert!(names.contains(&expected), "{names:?} lacks {expected}");
        }
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.next().await.expect("an answer")?.message_response
        else {
            bail!("expected the file of the Inventory service");
        };
        assert!(!files.file_descriptor_proto.is_empty());
        Ok(())
    })
    .await?;
    server.join().await
}

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
    let log = Arc::new(ControlledLog::new());
    let mut server = TestServer::start_with(
        log.clone(),
        Arc::new(inv_engine::ManualClock::new(T0_MS)),
        test_config(),
    )
    .await?;
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
    let log = Arc::new(ControlledLog::new());
    let server = TestServer::start_with(
        log.clone(),
        Arc::new(inv_engine::ManualClock::new(T0_MS)),
        test_config(),
    )
    .await?;
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
async fn bulk_calls_have_their_own_budget() -> Result<()> {
    // Goal: when the bulk budget is used up, another bulk call is RESOURCE_EXHAUSTED at once
    // (nothing applied) instead of queueing, while the interactive budget is untouched.
    let log = Arc::new(ControlledLog::new());
    let config = inv_api::ServerConfig {
        bulk_in_flight_max: 1,
        ..test_config()
    };
    let server = TestServer::start_with(
        log.clone(),
        Arc::new(inv_engine::ManualClock::new(T0_MS)),
        config,
    )
    .await?;
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
