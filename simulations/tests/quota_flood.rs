//! The quota-flood scenario at a tiny size against the real server, in process with
//! authentication on (docs/security.md, "Quotas").
//!
//! Goal: its own verification passes (the flooding principal was granted no more than its
//! bucket allows, every other flood call was refused QUOTA_EXCEEDED, no normal call failed),
//! and the flood was in fact held back: at 10x its quota most of its calls are refused. No
//! latency is asserted: CI machines are too noisy; `load` reports the figures.

use anyhow::Result;
use inv_sim::quota_flood::{self, QuotaFloodOptions};

#[test]
fn a_flood_at_ten_times_its_quota_is_held_to_it_and_others_do_not_fail() -> Result<()> {
    let options = QuotaFloodOptions {
        callers: 4,
        seconds: 1.0,
        skus: 50,
        connections: 1,
        flood_quota: 20,
        flood_rate: None,
        server_threads: 1,
        client_threads: 1,
    };
    assert_eq!(options.flood_rate(), 200.0);
    let outcome = quota_flood::run(&options)?;
    let summary = outcome.summary();
    assert!(outcome.passed(), "verification failed:\n{summary}");

    let flood = &outcome.flood;
    assert!(flood.sent > 0, "{summary}");
    assert_eq!(flood.failed, 0, "{summary}");
    assert_eq!(flood.granted + flood.refused, flood.sent, "{summary}");
    assert!(flood.granted >= 1, "{summary}");
    assert!(flood.granted <= outcome.granted_max, "{summary}");
    assert!(flood.refused > 0, "{summary}");

    for scenario in ["quota-flood: baseline", "quota-flood: flooded"] {
        for op in ["check", "reserve", "release"] {
            let row = outcome
                .rows
                .iter()
                .find(|r| r.scenario == scenario && r.op == op)
                .unwrap_or_else(|| panic!("no {scenario} {op} row:\n{summary}"));
            assert!(row.ops > 0, "{scenario} {op}:\n{summary}");
            assert!(row.errors.is_empty(), "{scenario} {op}:\n{summary}");
        }
    }
    let flooder = outcome
        .rows
        .iter()
        .find(|r| r.scenario == "quota-flood: flooder")
        .expect("the flood caller's row");
    assert_eq!(
        flooder.errors.get("QUOTA_EXCEEDED").copied(),
        Some(flood.refused)
    );
    Ok(())
}
