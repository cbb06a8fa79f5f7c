//! Per-principal call quotas end to end (docs/security.md, "Quotas"): a real server on
//! 127.0.0.1 with a principals file holding a `[quota]` table and a principal's own rate.
//! Covered: a principal over its burst is refused RESOURCE_EXHAUSTED QUOTA_EXCEEDED with a
//! RetryInfo while another principal's calls go through, a refused Reserve applies nothing,
//! waiting the retry delay lets a call through, a Session's requests each cost a call, a reload
//! changes a quota, a bad quota refuses the file, and refusals are counted on /metrics.
//!
//! Buckets refill from the real clock, so no test counts on how long a call takes: each sends
//! until refused (bounded) and checks what the refusal says and what it left unchanged.

use anyhow::{Context, Result, bail, ensure};
use inv_api::auth::{Auth, token_sha256_hex};
use inv_tests::*;
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const SKU: &str = "sneaker-42";
const LOCATION: &str = "dc";
const METRICS_TOKEN: &str = "tok-metrics";
/// Most calls any loop here sends before it must have been refused.
const CALLS_MAX: usize = 50;

/// `shop` (a connector, held to the `[quota]` connector rate), `slow` (its own rate, 1 a
/// second) and `ops` (admin, no quota: unlimited).
fn principals_file(connector_quota: &str) -> String {
    let mut text = format!(
        "metrics_token_sha256 = [\"{}\"]\n[quota]\nconnector = {connector_quota}\n",
        token_sha256_hex(METRICS_TOKEN)
    );
    for (name, roles, token, own) in [
        ("shop", r#"["connector:web"]"#, "tok-shop", ""),
        (
            "slow",
            r#"["connector:web"]"#,
            "tok-slow",
            "calls_per_second = 1\n",
        ),
        ("ops", r#"["admin"]"#, "tok-ops", ""),
    ] {
        text.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\nroles = {roles}\ntoken_sha256 = [\"{}\"]\n{own}",
            token_sha256_hex(token)
        ));
    }
    text
}

const FIVE_A_SECOND: &str = "{ calls_per_second = 5, burst = 5 }";

fn client(channel: &Channel, token: &str) -> Authed {
    authed_client(channel, Some(token))
}

async fn start(dir: &Path) -> Result<(TestServer, Arc<Auth>)> {
    TestServer::start_authenticated(dir, &principals_file(FIVE_A_SECOND)).await
}

fn check() -> pb::CheckRequest {
    pb::CheckRequest {
        positions: vec![pb::Position {
            sku: SKU.into(),
            location: LOCATION.into(),
        }],
    }
}

async fn available(client: &mut Authed) -> Result<i64> {
    let response = client.check(check()).await?.into_inner();
    match response.results.into_iter().next().and_then(|r| r.result) {
        Some(pb::check_result::Result::Availability(a)) => Ok(a.available),
        other => bail!("check answered {other:?}"),
    }
}

/// Checks that `status` is a quota refusal of `principal` at `calls_per_second`; its retry
/// delay.
fn assert_quota_exceeded(status: &Status, principal: &str, calls_per_second: &str) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "QUOTA_EXCEEDED", "{status:?}");
    assert_eq!(info.domain, "inventory.v1");
    assert_eq!(
        info.metadata.get("principal").map(String::as_str),
        Some(principal)
    );
    assert_eq!(
        info.metadata.get("calls_per_second").map(String::as_str),
        Some(calls_per_second)
    );
    assert!(
        status.message().contains(&format!("{principal:?}"))
            && status.message().contains(calls_per_second),
        "{status:?}"
    );
    let delay = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    delay
}

/// Sends Checks as `client` until one is refused; how many went through, and the refusal.
async fn check_until_refused(client: &mut Authed) -> Result<(usize, Status)> {
    for through in 0..CALLS_MAX {
        if let Err(status) = client.check(check()).await {
            return Ok((through, status));
        }
    }
    bail!("{CALLS_MAX} calls and none refused")
}

#[tokio::test]
async fn over_its_burst_a_principal_is_refused_with_a_retry_delay_and_others_are_not() -> Result<()>
{
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let mut shop = client(&server.channel, "tok-shop");
        let mut ops = client(&server.channel, "tok-ops");
        let (through, status) = check_until_refused(&mut shop).await?;
        // The burst of 5 at least (more only if the loop ran slower than the refill).
        ensure!(through >= 5, "refused after {through} calls: {status:?}");
        let delay = assert_quota_exceeded(&status, "shop", "5");
        // Another principal, in the same moment: untouched.
        for _ in 0..10 {
            ops.check(check()).await?;
        }
        // After the retry delay, a call is there again.
        tokio::time::sleep(delay).await;
        shop.check(check()).await?;
        // Counted under the principal.
        let metrics = metrics(&server).await?;
        ensure!(
            metrics.lines().any(|line| line
                .starts_with("inventory_quota_refusals_total{principal=\"shop\"} ")
                && !line.ends_with(" 0")),
            "{metrics}"
        );
        server.join().await
    })
    .await
}

#[tokio::test]
async fn a_refused_reserve_applies_nothing() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let mut ops = client(&server.channel, "tok-ops");
        ops.adjust(adjust("adj-1", SKU, LOCATION, 100)).await?;
        let before = available(&mut ops).await?;
        let mut slow = client(&server.channel, "tok-slow");
        let mut granted = 0;
        for i in 0..CALLS_MAX {
            let id = format!("r-{i}");
            match slow
                .reserve(reserve(&id, vec![line(SKU, LOCATION, 1)], 60_000))
                .await
            {
                Ok(_) => granted += 1,
                Err(status) => {
                    assert_quota_exceeded(&status, "slow", "1");
                    // Nothing held: availability counts the granted holds only, and the
                    // refused id is unknown.
                    assert_eq!(available(&mut ops).await?, before - granted);
                    let unknown = ops
                        .get_reservation(pb::GetReservationRequest { reservation_id: id })
                        .await
                        .expect_err("the refused hold does not exist");
                    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
                    return server.join().await;
                }
            }
        }
        bail!("{CALLS_MAX} reserves at 1 a second and none refused")
    })
    .await
}

#[tokio::test]
async fn each_session_request_costs_a_call() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, _auth) = start(dir.path()).await?;
        let mut slow = client(&server.channel, "tok-slow");
        let (requests, outbound) = tokio::sync::mpsc::channel(CALLS_MAX);
        // Opening costs the one call of `slow`'s burst.
        let mut answers = slow
            .session(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await?
            .into_inner();
        for correlation_id in 0..CALLS_MAX as u64 {
            requests
                .send(pb::SessionRequest {
                    correlation_id,
                    request: Some(Ask::Check(check())),
                })
                .await?;
            let answer = answers.next().await.context("the session ended")??;
            if let Some(Answer::Error(error)) = answer.response {
                assert_eq!(error.code, Code::ResourceExhausted as u32, "{error:?}");
                assert_eq!(error.reason, pb::ErrorReason::QuotaExceeded as i32);
                assert!(error.message.contains("retry in"), "{error:?}");
                // The stream goes on: the next request is answered (refused or not), and the
                // stream ends OK once the client closes its side.
                requests
                    .send(pb::SessionRequest {
                        correlation_id: u64::MAX,
                        request: Some(Ask::Check(check())),
                    })
                    .await?;
                let next = answers.next().await.context("the session ended")??;
                assert_eq!(next.correlation_id, u64::MAX);
                drop(requests);
                ensure!(answers.next().await.is_none(), "the stream ends OK");
                return server.join().await;
            }
        }
        bail!("{CALLS_MAX} session requests at 1 a second and none refused")
    })
    .await
}

#[tokio::test]
async fn a_reload_changes_a_quota_and_a_bad_quota_is_refused() -> Result<()> {
    bounded(async {
        let dir = TempDir::new()?;
        let (server, auth) = start(dir.path()).await?;
        let path = dir.path().join("principals.toml");
        let mut shop = client(&server.channel, "tok-shop");
        let (_, status) = check_until_refused(&mut shop).await?;
        assert_quota_exceeded(&status, "shop", "5");
        // A bad quota: the file is refused naming the key, and the quota in use stays.
        for (quota, why) in [
            (
                "{ calls_per_second = -5 }",
                "quota.connector.calls_per_second",
            ),
            (
                "{ calls_per_second = 0 }",
                "quota.connector.calls_per_second",
            ),
            (
                "{ calls_per_second = 5, burst = 0 }",
                "quota.connector.burst",
            ),
        ] {
            std::fs::write(&path, principals_file(quota))?;
            let error = auth.reload().expect_err("a bad quota").to_string();
            assert!(error.contains(why), "{quota}: {error}");
        }
        std::fs::write(
            &path,
            principals_file(FIVE_A_SECOND)
                .replace("[quota]\n", "[quota]\nboss = { calls_per_second = 1 }\n"),
        )?;
        let error = auth.reload().expect_err("an unknown role").to_string();
        assert!(error.contains("quota.boss"), "{error}");
        let (_, status) = check_until_refused(&mut shop).await?;
        assert_quota_exceeded(&status, "shop", "5");
        // Raised: a fresh bucket of 1000 takes far more than 5 a second would.
        std::fs::write(
            &path,
            principals_file("{ calls_per_second = 1000, burst = 1000 }"),
        )?;
        auth.reload()?;
        for _ in 0..CALLS_MAX {
            shop.check(check()).await?;
        }
        server.join().await
    })
    .await
}

/// The metrics exposition, fetched with the metrics token.
async fn metrics(server: &TestServer) -> Result<String> {
    let addr = server.metrics_addr.context("a metrics endpoint")?;
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .context("the scrape hung")??;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    Ok(answer)
}
