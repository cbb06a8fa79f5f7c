//! The gRPC API end to end: a real server on 127.0.0.1 over a real data folder, driven through
//! the generated client.
//!
//! Each test states its goal first. Time is a `ManualClock` the test advances (TTL tests never
//! sleep through a TTL); the expirer runs every 10 ms, so a test that advanced the clock only
//! waits for that tick. Every test runs under `bounded` (30 s) and finishes in well under a
//! second on a quiet machine.
//!
//! One test binary, one file per area.

mod errors;
mod events;
mod feeds;
mod holds;
mod lifecycle;
mod reads;
mod stores;

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
    // A BadRequest names what to fix: every malformed field, or what differs under a reused
    // key.
    if code == Code::InvalidArgument || reason == "KEY_REUSED" {
        let bad = status
            .get_details_bad_request()
            .expect("INVALID_ARGUMENT and KEY_REUSED carry a BadRequest");
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
