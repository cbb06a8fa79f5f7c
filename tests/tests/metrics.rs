//! The `/metrics` endpoint end to end: a real server with its metrics listener on 127.0.0.1:0,
//! driven through the generated client, scraped over plain HTTP.
//!
//! The test makes a known set of calls (grants, a rejection, a retry, a failed commit, store
//! sales with a gap, expiries, a cancelled change feed) and checks that each shows up in the
//! series that should count it, with exactly the expected value. When `promtool` is on PATH
//! the scrape also goes through `promtool check metrics` (the Prometheus project's own
//! parser and linter); without it that part is skipped with a warning printed past the test
//! harness's capture, so it shows in `cargo test`'s output (`INVENTORY_SKIP_PROMTOOL=1`
//! acknowledges the skip and quiets it; CI sets `INVENTORY_REQUIRE_PROMTOOL=1`, which makes a
//! missing promtool a failure).

use anyhow::{Context, Result, bail};
use inv_tests::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

const SKU: &str = "sneaker-42";
const DC: &str = "web-dc";
const TTL_MS: u64 = 60_000;

/// Every sample of a scrape by its series (`name{labels}`), value parsed.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> Result<f64> {
    samples
        .get(series)
        .copied()
        .with_context(|| format!("{series} missing from the scrape: {samples:#?}"))
}

/// Scrapes until `series` has `expected` (background effects such as a cancelled stream are
/// counted a moment after the call returns), then returns that scrape.
async fn scrape_until(server: &TestServer, series: &str, expected: f64) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.scrape().await?;
        if samples(&text).get(series) == Some(&expected) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{series} never reached {expected}; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `promtool check metrics` on `text` if promtool is installed; `Ok(false)` if it is not.
fn promtool_check(text: &str) -> Result<bool> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).context("starting promtool"),
    };
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "promtool check metrics failed ({}):\n{}{}\n--- the scrape ---\n{text}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
    Ok(true)
}

/// Says that `promtool check metrics` did not run. The test still passes, so that the README's
/// `cargo test --workspace` works on a machine without promtool, but not silently: the warning
/// goes straight to the process's stderr, which the test harness does not capture (it only
/// captures `eprintln!`), so it shows in `cargo test`'s output. `INVENTORY_SKIP_PROMTOOL=1`
/// says the skip is known, and turns the warning into a captured note.
fn promtool_skipped() {
    if std::env::var_os("INVENTORY_SKIP_PROMTOOL").is_some_and(|v| v == "1") {
        eprintln!("note: INVENTORY_SKIP_PROMTOOL=1; skipped `promtool check metrics`");
        return;
    }
    let warning = "\n\
        warning: SKIPPED `promtool check metrics`: promtool is not on PATH, so the /metrics\n\
        warning: exposition was NOT validated by Prometheus' own parser (the series values were\n\
        warning: checked). Install it (Debian/Ubuntu: `apt-get install prometheus`) to run the\n\
        warning: full check, or set INVENTORY_SKIP_PROMTOOL=1 to acknowledge the skip.\n\n";
    // Not `eprintln!`: the harness would capture it, and a passing test's output is dropped.
    let _ = std::io::stderr().write_all(warning.as_bytes());
}

#[tokio::test]
async fn metrics_count_what_the_server_did_and_pass_promtool() -> Result<()> {
    // Goal: every key series reports exactly what the calls above it did, and the exposition
    // is valid Prometheus text. Method: a fixed script of calls, then one scrape compared
    // against the numbers the script implies.
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with_metrics(dir.path()).await?;
    bounded(async {
        let mut client = server.client.clone();
        client.adjust(adjust("receipt-1", SKU, DC, 5)).await?;

        // Two grants (one on another channel), one rejection, one retry of a grant.
        let granted = client
            .reserve(reserve("order-1", vec![line(SKU, DC, 3)], TTL_MS))
            .await?
            .into_inner();
        assert!(matches!(
            granted.result,
            Some(pb::reserve_response::Result::Granted(_))
        ));
        let rejected = client
            .reserve(reserve("order-2", vec![line(SKU, DC, 3)], TTL_MS))
            .await?
            .into_inner();
        assert!(matches!(
            rejected.result,
            Some(pb::reserve_response::Result::Rejected(_))
        ));
        let retried = client
            .reserve(reserve("order-1", vec![line(SKU, DC, 3)], TTL_MS))
            .await?
            .into_inner();
        assert!(retried.duplicate);
        let mut app = reserve("order-3", vec![line(SKU, DC, 1)], TTL_MS);
        app.channel = "app".into();
        client.reserve(app).await?;

        // A failure with a status code of its own.
        let missing = client
            .commit(pb::CommitRequest {
                reservation_id: "no-such-order".into(),
                lines: vec![],
            })
            .await
            .expect_err("an unknown hold");
        assert_eq!(missing.code(), Code::NotFound);

        // Store sales 1 and 3: one gap of one missing sale, 1 s behind the till. And one
        // numbered 2^64-1: an anomaly, which adds nothing to the missing count.
        client
            .record_sales(pb::RecordSalesRequest {
                store_id: "store-7".into(),
                sales: vec![
                    sale("t-1", 1, vec![line("sock", "store-7", 1)]),
                    sale("t-3", 3, vec![line("sock", "store-7", 1)]),
                    sale("t-max", u64::MAX, vec![line("sock", "store-7", 1)]),
                ],
            })
            .await?;

        // A change feed the client abandons: counted as Canceled when the server notices.
        let feed = client
            .watch_availability(pb::WatchAvailabilityRequest {
                skus: vec![SKU.into()],
                locations: vec![],
                after_lsn: None,
            })
            .await?;
        drop(feed);
        scrape_until(
            &server,
            r#"inventory_grpc_requests_total{grpc_method="WatchAvailability",grpc_code="Canceled"}"#,
            1.0,
        )
        .await?;

        // Both granted holds lapse; the expiry sweep records them.
        server.clock.advance_ms(TTL_MS + 1);
        server
            .eventually("both holds expired", |e| e.ledger().holds_open() == 0)
            .await?;
        let text = scrape_until(&server, "inventory_hold_expiries_total", 2.0).await?;
        let s = samples(&text);

        assert_eq!(value(&s, "inventory_reserve_grants_total")?, 2.0);
        assert_eq!(value(&s, "inventory_reserve_rejections_total")?, 1.0);
        assert_eq!(
            value(&s, r#"inventory_reserve_requests_total{channel="web"}"#)?,
            3.0
        );
        assert_eq!(
            value(&s, r#"inventory_reserve_requests_total{channel="app"}"#)?,
            1.0
        );
        let reserve_ok = r#"{grpc_method="Reserve",grpc_code="OK"}"#;
        assert_eq!(
            value(&s, &format!("inventory_grpc_requests_total{reserve_ok}"))?,
            4.0
        );
        assert_eq!(
            value(
                &s,
                &format!("inventory_grpc_request_duration_seconds_count{reserve_ok}")
            )?,
            4.0
        );
        assert_eq!(
            value(
                &s,
                r#"inventory_grpc_requests_total{grpc_method="Commit",grpc_code="NotFound"}"#
            )?,
            1.0
        );
        assert_eq!(
            value(
                &s,
                r#"inventory_grpc_requests_total{grpc_method="RecordSales",grpc_code="OK"}"#
            )?,
            1.0
        );
        assert_eq!(value(&s, "inventory_holds_open")?, 0.0);
        assert_eq!(value(&s, "inventory_fail_stopped")?, 0.0);

        // The LSN gauges agree with the engine, and everything is durable by now.
        let next_lsn = server.engine.ledger().next_lsn().0 as f64;
        assert_eq!(value(&s, "inventory_ledger_next_lsn")?, next_lsn);
        assert_eq!(value(&s, "inventory_log_durable_lsn")?, next_lsn - 1.0);

        // The log's own statistics: every event of this fresh log went through a batch.
        let batches = value(&s, "inventory_log_batches_total")?;
        assert!(batches >= 1.0);
        assert_eq!(value(&s, "inventory_log_batch_events_count")?, batches);
        assert_eq!(value(&s, "inventory_log_batch_events_sum")?, next_lsn - 1.0);
        assert!(value(&s, "inventory_log_commit_seconds_total")? > 0.0);

        let store = r#"{store_id="store-7"}"#;
        assert_eq!(value(&s, "inventory_stores")?, 1.0);
        assert_eq!(value(&s, "inventory_store_seq_anomalies")?, 1.0);
        assert_eq!(
            value(&s, &format!("inventory_store_sale_gaps{store}"))?,
            1.0
        );
        assert_eq!(
            value(&s, &format!("inventory_store_sales_missing{store}"))?,
            1.0
        );
        assert_eq!(
            value(&s, &format!("inventory_store_sale_lag_seconds{store}"))?,
            1.0
        );
        assert_eq!(
            value(&s, &format!("inventory_store_contiguous_seq{store}"))?,
            1.0
        );

        if promtool_check(&text)? {
            eprintln!("promtool check metrics: passed");
        } else if std::env::var_os("INVENTORY_REQUIRE_PROMTOOL").is_some() {
            // CI installs promtool and sets this, so the check cannot be skipped there.
            bail!("promtool is not on PATH but INVENTORY_REQUIRE_PROMTOOL is set");
        } else {
            promtool_skipped();
        }
        Ok(())
    })
    .await?;

    // The endpoint stops with the server.
    let addr = server.metrics_addr.expect("started with metrics");
    server.join().await?;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the metrics endpoint outlived the server"
    );
    Ok(())
}

#[tokio::test]
async fn only_the_worst_stores_get_series_of_their_own() -> Result<()> {
    // Goal: a fleet cannot blow up the scrape's cardinality. With --metrics-stores-max 2 and
    // three stores, the two furthest behind the till have per-store series, the third has
    // none, and `inventory_stores` still counts all three.
    let server = TestServer::start_with_options(
        std::sync::Arc::new(inv_engine::MemLog::new()),
        std::sync::Arc::new(inv_engine::ManualClock::new(T0_MS)),
        inv_api::ServerConfig {
            metrics_stores_max: 2,
            ..test_config()
        },
        inv_api::ServeOptions {
            metrics_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?),
            ..inv_api::ServeOptions::default()
        },
    )
    .await?;
    bounded(async {
        let mut client = server.client.clone();
        for (store, lag_ms) in [("store-a", 1_000), ("store-b", 60_000), ("store-c", 5_000)] {
            let mut one = sale("t-1", 1, vec![line("sock", store, 1)]);
            one.occurred_at_ms = T0_MS - lag_ms;
            client
                .record_sales(pb::RecordSalesRequest {
                    store_id: store.into(),
                    sales: vec![one],
                })
                .await?;
        }
        let s = samples(&server.scrape().await?);
        assert_eq!(value(&s, "inventory_stores")?, 3.0);
        let lag = |store: &str| format!("inventory_store_sale_lag_seconds{{store_id=\"{store}\"}}");
        assert_eq!(value(&s, &lag("store-b"))?, 60.0);
        assert_eq!(value(&s, &lag("store-c"))?, 5.0);
        assert!(
            !s.keys().any(|series| series.contains("store-a")),
            "store-a, the least behind, has series of its own"
        );
        Ok(())
    })
    .await?;
    server.join().await
}
