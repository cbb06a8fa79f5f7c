//! ListEvents: the events of a position or a hold, read back from the log.

use super::*;

/// Lists with `request`, page after page (of `page_size`), until the log's end.
async fn list_all(
    client: &mut Client,
    request: pb::ListEventsRequest,
) -> Result<Vec<pb::LoggedEvent>> {
    let mut events = Vec::new();
    let mut after_lsn = request.after_lsn;
    // Bounded: each page advances `after_lsn` by at least one event, and the log is small.
    for _ in 0..1_000 {
        let page = client
            .list_events(pb::ListEventsRequest {
                after_lsn,
                ..request.clone()
            })
            .await?
            .into_inner();
        assert!(page.next_after_lsn >= after_lsn, "{page:?}");
        let at_end = page.next_after_lsn >= page.end_lsn;
        assert!(
            at_end || page.next_after_lsn > after_lsn,
            "a page must advance: {page:?}"
        );
        after_lsn = page.next_after_lsn;
        events.extend(page.events);
        if at_end {
            return Ok(events);
        }
    }
    bail!("the listing did not reach the end of the log")
}

fn by_hold(id: &str) -> pb::ListEventsRequest {
    pb::ListEventsRequest {
        reservation_id: id.into(),
        ..Default::default()
    }
}

fn by_position(sku: &str, location: &str) -> pb::ListEventsRequest {
    pb::ListEventsRequest {
        sku: sku.into(),
        location: location.into(),
        ..Default::default()
    }
}

/// `(sku, location, qty, on_hand_delta, reserved_delta)` of each line.
fn lines(event: &pb::LoggedEvent) -> Vec<(&str, &str, u64, i64, Option<i64>)> {
    event
        .lines
        .iter()
        .map(|l| {
            (
                l.sku.as_str(),
                l.location.as_str(),
                l.qty,
                l.on_hand_delta,
                l.reserved_delta,
            )
        })
        .collect()
}

fn kinds(events: &[pb::LoggedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test]
async fn a_holds_reserve_and_commit_are_listed_by_hold_and_by_position() -> Result<()> {
    // Goal: a hold's reserve and partial commit show under its id (every line) and under each
    // of its positions (that line only), with the ids, the units held and taken off on_hand,
    // and the outcome; another hold at the same location stays out of both.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let stocked = stock(&mut client, "rcpt-1", SKU, DC, 10).await?;
        stock(&mut client, "rcpt-2", "cap", DC, 5).await?;
        let placed = client
            .reserve(reserve(
                "order-1",
                vec![line(SKU, DC, 3), line("cap", DC, 1)],
                TTL_MS,
            ))
            .await?
            .into_inner();
        let expires_at_ms = granted(&placed).expect("granted");
        client
            .reserve(reserve("order-2", vec![line("cap", DC, 2)], TTL_MS))
            .await?;
        let committed = client
            .commit(pb::CommitRequest {
                reservation_id: "order-1".into(),
                lines: vec![line(SKU, DC, 2), line("cap", DC, 1)],
            })
            .await?
            .into_inner();

        let hold = list_all(&mut client, by_hold("order-1")).await?;
        assert_eq!(kinds(&hold), ["HoldPlaced", "HoldCommitted"]);
        let (place, commit) = (&hold[0], &hold[1]);
        assert_eq!((place.lsn, commit.lsn), (placed.lsn, committed.lsn));
        assert_eq!(place.at_ms, T0_MS);
        assert_eq!(
            (place.reservation_id.as_str(), place.channel.as_str()),
            ("order-1", "web")
        );
        assert_eq!(place.expires_at_ms, expires_at_ms);
        assert_eq!(place.outcome, "granted");
        assert_eq!(
            lines(place),
            [(SKU, DC, 3, 0, Some(3)), ("cap", DC, 1, 0, Some(1))]
        );
        assert_eq!(commit.reservation_id, "order-1");
        assert_eq!(commit.outcome, "committed 3 of 4 held; 1 released");
        assert_eq!(
            lines(commit),
            [(SKU, DC, 2, -2, Some(-3)), ("cap", DC, 1, -1, Some(-1))]
        );

        let position = list_all(&mut client, by_position(SKU, DC)).await?;
        assert_eq!(
            kinds(&position),
            ["StockAdjusted", "HoldPlaced", "HoldCommitted"]
        );
        assert_eq!(position[0].lsn, stocked);
        assert_eq!(position[0].adjustment_id, "rcpt-1");
        assert_eq!(position[0].outcome, "adjusted by +10: goods receipt");
        assert_eq!(lines(&position[0]), [(SKU, DC, 10, 10, Some(0))]);
        assert_eq!(lines(&position[1]), [(SKU, DC, 3, 0, Some(3))]);
        assert_eq!(lines(&position[2]), [(SKU, DC, 2, -2, Some(-3))]);
        assert_eq!(position[2].outcome, "committed 2 of 3 held; 1 released");

        let cap = list_all(&mut client, by_position("cap", DC)).await?;
        let holds: Vec<&str> = cap.iter().map(|e| e.reservation_id.as_str()).collect();
        assert_eq!(holds, ["", "order-1", "order-2", "order-1"]);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn sales_adjustments_and_ended_holds_show_their_effects_at_the_position() -> Result<()> {
    // Goal: a sale and an adjustment at the position show with their ids and on_hand effect;
    // a release whose HoldPlaced lies before the listing's start still shows at the position
    // (its lines come from the engine's memory of the hold); a refused reserve and a request
    // that found its hold ended show with their outcome in words.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        stock(&mut client, "rcpt-1", SKU, DC, 10).await?;
        let placed = client
            .reserve(reserve("order-1", vec![line(SKU, DC, 4)], TTL_MS))
            .await?
            .into_inner();
        let refused = client
            .reserve(reserve("order-2", vec![line(SKU, DC, 7)], TTL_MS))
            .await?
            .into_inner();
        assert!(granted(&refused).is_none());
        let sold = client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-9".into(),
                sales: vec![sale("t-1", 1, vec![line(SKU, DC, 1)])],
            })
            .await?
            .into_inner();
        let Some(pb::batch_item_result::Result::Recorded(sold)) = &sold.results[0].result else {
            bail!("sale refused: {sold:?}");
        };
        client
            .adjust(pb::AdjustRequest {
                reason: "damage".into(),
                ..adjust("count-1", SKU, DC, -2)
            })
            .await?;
        client
            .release(pb::ReleaseRequest {
                reservation_id: "order-1".into(),
            })
            .await?;
        let again = client
            .commit(pb::CommitRequest {
                reservation_id: "order-1".into(),
                lines: vec![],
            })
            .await;
        expect_error(again, Code::FailedPrecondition, "HOLD_ALREADY_RELEASED", "");

        let events = list_all(
            &mut client,
            pb::ListEventsRequest {
                after_lsn: placed.lsn,
                ..by_position(SKU, DC)
            },
        )
        .await?;
        assert_eq!(
            kinds(&events),
            [
                "ReserveRefused",
                "SaleRecorded",
                "StockAdjusted",
                "HoldReleased",
                "HoldAlreadyEnded"
            ]
        );
        let [refusal, sale, adjustment, release, ended] = &events[..] else {
            unreachable!("five kinds")
        };
        assert_eq!(refusal.reservation_id, "order-2");
        assert_eq!(
            refusal.outcome,
            format!("refused: 1 line short ({SKU}@{DC} 7 requested, 6 available)")
        );
        assert_eq!(lines(refusal), [(SKU, DC, 7, 0, Some(0))]);
        assert_eq!(sale.lsn, sold.lsn);
        assert_eq!(
            (sale.store_id.as_str(), sale.txn_id.as_str()),
            ("store-9", "t-1")
        );
        assert_eq!(sale.outcome, "sold (store seq 1)");
        assert_eq!(lines(sale), [(SKU, DC, 1, -1, Some(0))]);
        assert_eq!(adjustment.adjustment_id, "count-1");
        assert_eq!(adjustment.outcome, "adjusted by -2: damage");
        assert_eq!(lines(adjustment), [(SKU, DC, 2, -2, Some(0))]);
        assert_eq!(release.outcome, "released 4");
        assert_eq!(lines(release), [(SKU, DC, 4, 0, Some(-4))]);
        assert_eq!(
            ended.outcome,
            "a commit found it already released; nothing changed"
        );
        assert_eq!(lines(ended), [(SKU, DC, 4, 0, Some(0))]);

        // Another position sees none of them.
        let elsewhere = list_all(&mut client, by_position(SKU, "store-1")).await?;
        assert!(elsewhere.is_empty(), "{elsewhere:?}");
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn pages_of_one_walk_every_matching_event_once() -> Result<()> {
    // Goal: paging with page_size 1 from next_after_lsn lists exactly what one large page
    // lists, in LSN order, with no duplicate and no gap; a page past the last match comes back
    // empty but still advances to the end of the log.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        for i in 0..6 {
            stock(&mut client, &format!("a{i}"), SKU, DC, 1).await?;
            stock(&mut client, &format!("b{i}"), "cap", DC, 1).await?;
        }
        stock(&mut client, "c", "cap", DC, 1).await?;
        let end = server.engine.head_lsn().0;

        let all = client
            .list_events(pb::ListEventsRequest {
                page_size: Some(1_000),
                ..by_position(SKU, DC)
            })
            .await?
            .into_inner();
        assert_eq!((all.next_after_lsn, all.end_lsn), (end, end));
        assert_eq!(all.first_retained_lsn, 1);
        let expected: Vec<u64> = all.events.iter().map(|e| e.lsn).collect();
        assert_eq!(expected, [1, 3, 5, 7, 9, 11]);

        let mut walked = Vec::new();
        let mut after_lsn = 0;
        loop {
            let page = client
                .list_events(pb::ListEventsRequest {
                    after_lsn,
                    page_size: Some(1),
                    ..by_position(SKU, DC)
                })
                .await?
                .into_inner();
            assert!(page.events.len() <= 1, "{page:?}");
            if let Some(event) = page.events.first() {
                assert_eq!(
                    page.next_after_lsn, event.lsn,
                    "a full page ends at its event"
                );
                walked.push(event.lsn);
            } else {
                assert_eq!(page.next_after_lsn, end, "an empty page reached the end");
                break;
            }
            after_lsn = page.next_after_lsn;
        }
        assert_eq!(walked, expected);

        // A position with no events at all: nothing, read to the end.
        let none = client
            .list_events(by_position("nothing-here", DC))
            .await?
            .into_inner();
        assert!(none.events.is_empty());
        assert_eq!(none.next_after_lsn, end);
        // At the end: nothing more, and the start comes back as it went.
        let past = client
            .list_events(pb::ListEventsRequest {
                after_lsn: end,
                ..by_position(SKU, DC)
            })
            .await?
            .into_inner();
        assert!(past.events.is_empty());
        assert_eq!(past.next_after_lsn, end);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn since_ms_starts_at_the_first_event_decided_then() -> Result<()> {
    // Goal: since_ms starts the listing at the first event decided at or after it (found by
    // LSN, as decision time follows LSN order); an after_lsn further on wins; a time after the
    // last event lists nothing and reads to the end.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let mut at = Vec::new();
        for minute in 0..5u64 {
            for i in 0..3 {
                let lsn = stock(&mut client, &format!("m{minute}-{i}"), SKU, DC, 1).await?;
                at.push((lsn, T0_MS + minute * 60_000));
            }
            server.clock.advance_ms(60_000);
        }
        let since = |since_ms: u64, after_lsn: u64| pb::ListEventsRequest {
            since_ms: Some(since_ms),
            after_lsn,
            ..by_position(SKU, DC)
        };
        let first_lsn = |events: &[pb::LoggedEvent]| events.first().map(|e| e.lsn);

        let from_minute_2 = list_all(&mut client, since(T0_MS + 120_000, 0)).await?;
        assert_eq!(first_lsn(&from_minute_2), Some(at[6].0));
        assert_eq!(from_minute_2.len(), 9);
        assert!(from_minute_2.iter().all(|e| e.at_ms >= T0_MS + 120_000));
        // Between two decision times: the next one.
        let mid_minute = list_all(&mut client, since(T0_MS + 150_000, 0)).await?;
        assert_eq!(first_lsn(&mid_minute), Some(at[9].0));
        // Before every event: the whole log.
        let everything = list_all(&mut client, since(T0_MS - 1, 0)).await?;
        assert_eq!(everything.len(), at.len());
        // An after_lsn past the time's first event wins.
        let later = list_all(&mut client, since(T0_MS + 60_000, at[10].0)).await?;
        assert_eq!(first_lsn(&later), Some(at[11].0));
        // After the last event: nothing, read to the end.
        let page = client
            .list_events(since(T0_MS + 3_600_000, 0))
            .await?
            .into_inner();
        assert!(page.events.is_empty());
        assert_eq!(page.next_after_lsn, page.end_lsn);
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn a_listing_starts_at_the_oldest_event_the_log_still_holds() -> Result<()> {
    // Goal: once a checkpoint has trimmed history older than the history window, a listing
    // from 0 (or from an LSN inside the trimmed range) starts at the first retained event and
    // says where that is.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        for i in 0..3 {
            stock(&mut client, &format!("old-{i}"), SKU, DC, 1).await?;
        }
        server.clock.advance_ms(25 * 3_600_000);
        let recent = stock(&mut client, "recent", SKU, DC, 1).await?;
        let engine = Arc::clone(&server.engine);
        tokio::task::spawn_blocking(move || engine.checkpoint()).await??;

        for after_lsn in [0, 1] {
            let page = client
                .list_events(pb::ListEventsRequest {
                    after_lsn,
                    ..by_position(SKU, DC)
                })
                .await?
                .into_inner();
            assert!(page.first_retained_lsn > 3, "{page:?}");
            assert!(page.first_retained_lsn <= recent, "{page:?}");
            let lsns: Vec<u64> = page.events.iter().map(|e| e.lsn).collect();
            assert_eq!(lsns, [recent]);
        }
        Ok(())
    })
    .await?;
    server.join().await
}

#[tokio::test]
async fn bad_listings_name_the_field() -> Result<()> {
    // Goal: a listing without a filter, with both filters, with half a position, a bad id or
    // page size is INVALID_ARGUMENT naming the field; an after_lsn beyond the end of the log is
    // OUT_OF_RANGE naming after_lsn.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        let head = stock(&mut client, "rcpt-1", SKU, DC, 1).await?;
        let cases = [
            ("reservation_id", pb::ListEventsRequest::default()),
            (
                "reservation_id",
                pb::ListEventsRequest {
                    reservation_id: "order-1".into(),
                    ..by_position(SKU, DC)
                },
            ),
            ("location", by_position(SKU, "")),
            ("sku", by_position("", DC)),
            ("reservation_id", by_hold(&"x".repeat(129))),
            (
                "page_size",
                pb::ListEventsRequest {
                    page_size: Some(0),
                    ..by_hold("order-1")
                },
            ),
            (
                "page_size",
                pb::ListEventsRequest {
                    page_size: Some(1_001),
                    ..by_hold("order-1")
                },
            ),
        ];
        for (field, request) in cases {
            let answer = client.list_events(request).await;
            expect_error(answer, Code::InvalidArgument, "INVALID_FIELD", field);
        }
        let ahead = client
            .list_events(pb::ListEventsRequest {
                after_lsn: head + 1,
                ..by_hold("order-1")
            })
            .await;
        expect_error(ahead, Code::OutOfRange, "LSN_AHEAD_OF_LOG", "after_lsn");
        // The largest page and the end of the log itself are fine.
        let page = client
            .list_events(pb::ListEventsRequest {
                after_lsn: head,
                page_size: Some(1_000),
                ..by_hold("order-1")
            })
            .await?
            .into_inner();
        assert!(page.events.is_empty());
        Ok(())
    })
    .await?;
    server.join().await
}
