//! Every measuring scenario of the load tool runs end to end against the real in-process
//! server.
//!
//! Goal: each scenario, run for about half a second with a few callers, gets answers for
//! every operation it drives and no error it does not expect (the only expected one is
//! RESOURCE_EXHAUSTED for bulk calls beyond the server's bulk budget). No timing is asserted:
//! CI machines are too noisy for that; `load` itself reports the figures. The server's state
//! after a surge is verified by the surge scenarios (`tests/surge.rs`), not here.

use anyhow::Result;
use inv_sim::{LocalServer, Options, Scenario};
use std::time::Duration;

/// Runs `options` against `server` from a runtime of `client_threads` workers (bounded to
/// 60 s), then stops the server.
fn run_then_stop(
    server: LocalServer,
    options: &Options,
    client_threads: usize,
) -> Result<Vec<inv_sim::Row>> {
    let runtime = inv_api::host::runtime_builder(client_threads)
        .enable_all()
        .build()?;
    let url = server.url();
    let rows = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), inv_sim::run(&url, options.clone())).await
    })??;
    drop(runtime);
    server.stop()?;
    Ok(rows)
}

#[test]
fn every_scenario_answers_without_unexpected_errors() -> Result<()> {
    let server = LocalServer::start(2)?;
    let options = Options {
        callers: 4,
        seconds: 0.5,
        skus: 50,
        pipeline: 4,
        connections: 2,
        // More bulk callers than the server's budget of 2, so some are refused and resent.
        backfill_callers: 4,
        backfill_sales: 100,
        ..Options::default()
    };
    let rows = run_then_stop(server, &options, 2)?;

    let expected: &[(&str, &[&str])] = &[
        ("check", &["check"]),
        ("reserve", &["reserve", "release"]),
        ("reserve-only", &["reserve"]),
        ("mix", &["check", "reserve"]),
        ("session-check", &["check"]),
        ("session-reserve", &["reserve", "release"]),
        ("backfill: hot alone", &["check", "reserve", "release"]),
        ("backfill: hot + bulk", &["check", "reserve", "release"]),
        ("backfill: bulk", &["record_sales"]),
    ];
    assert_eq!(options.scenarios, Scenario::ALL);
    for (scenario, ops) in expected {
        for op in *ops {
            let row = rows
                .iter()
                .find(|r| r.scenario == *scenario && r.op == *op)
                .unwrap_or_else(|| panic!("no row for {scenario} / {op} in {rows:#?}"));
            assert!(row.ops > 0, "{row:?}");
        }
    }
    for row in &rows {
        for (code, n) in &row.errors {
            let expected = row.op == "record_sales" && code == "RESOURCE_EXHAUSTED";
            assert!(expected, "{n} unexpected {code} errors in {row:?}");
        }
        // Stock is abundant: nothing is ever out of stock.
        assert_eq!(row.rejected, 0, "{row:?}");
    }
    let table = inv_sim::stats::table(&rows);
    assert!(table.contains("session-check"), "{table}");
    let summary = inv_sim::summary(&rows, &options);
    assert!(summary.contains("unary Check"), "{summary}");
    Ok(())
}

/// `--rate` holds the unary callers to the rate in total: never more than the rate over the
/// run plus the pacer's bounded debt, however fast the server answers.
#[test]
fn a_paced_run_keeps_to_its_rate() -> Result<()> {
    let server = LocalServer::start(1)?;
    let options = Options {
        callers: 8,
        seconds: 1.0,
        skus: 20,
        rate: Some(500.0),
        scenarios: vec![Scenario::Check],
        ..Options::default()
    };
    let rows = run_then_stop(server, &options, 1)?;
    let row = rows.iter().find(|r| r.op == "check").expect("a check row");
    // 500 due over the run (a little more, as it ends after its deadline), plus at most 64
    // permits banked while stocking.
    assert!(row.ops <= 500 + 64 + 50, "{row:?}");
    // A generous floor: even a slow machine answers 500 checks a second.
    assert!(row.ops >= 100, "{row:?}");
    assert!(row.errors.is_empty(), "{row:?}");
    Ok(())
}

#[test]
fn only_loopback_targets_are_accepted() {
    assert!(inv_sim::check_loopback("http://127.0.0.1:50051").is_ok());
    assert!(inv_sim::check_loopback("http://localhost:50051").is_ok());
    assert!(inv_sim::check_loopback("http://[::1]:50051").is_ok());
    assert!(inv_sim::check_loopback("http://10.0.0.7:50051").is_err());
    assert!(inv_sim::check_loopback("http://example.com:50051").is_err());
}
