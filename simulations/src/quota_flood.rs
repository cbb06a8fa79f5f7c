//! `quota-flood`: the hot path of well-behaved principals keeps its latency while one
//! principal floods (docs/security.md, "Quotas").
//!
//! In process only: the server is started with authentication on and a principals file (in a
//! temporary folder of its own) naming two principals with tokens made here:
//! - `normal` (`connector:load` and `admin`, so it can also stock the skus), no quota: the
//!   normal callers, half doing unary Checks, half durable Reserve + Release, over the shared
//!   connections as in the measuring scenarios;
//! - `flood` (`connector:flood`), held to `--flood-quota` calls a second with a burst of as
//!   many: one caller on a connection of its own sending unary Checks open loop at
//!   `--flood-rate` (10x its quota by default), each call sent when due whatever the answers.
//!
//! Two phases of `--seconds`: the normal callers alone (baseline), then beside the flood. The
//! run passes when no normal call failed, every flood call was answered or refused with
//! RESOURCE_EXHAUSTED `QUOTA_EXCEEDED`, and the flood was granted no more than its bucket
//! allows (`burst + quota x elapsed`, plus 10 ms of its rate and one call for the clocks).

use crate::scenarios::{self, Ctx};
use crate::stats::{OpStats, Row, Tally};
use crate::{LocalServer, Options, connect};
use anyhow::{Context, Result, anyhow, bail};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic_types::StatusExt;

/// What a quota-flood run is told.
#[derive(Debug, Clone)]
pub struct QuotaFloodOptions {
    /// Well-behaved callers (the `normal` principal).
    pub callers: usize,
    /// Length of each phase.
    pub seconds: f64,
    pub skus: usize,
    /// Connections the normal callers share (the flood has one of its own).
    pub connections: usize,
    /// The flood principal's `calls_per_second`, and its `burst`.
    pub flood_quota: u32,
    /// Calls a second the flood caller sends; `None`: 10x `flood_quota`.
    pub flood_rate: Option<f64>,
    pub server_threads: usize,
    pub client_threads: usize,
}

impl Default for QuotaFloodOptions {
    fn default() -> Self {
        Self {
            callers: 63,
            seconds: 5.0,
            skus: 1_000,
            connections: 1,
            flood_quota: 500,
            flood_rate: None,
            server_threads: 1,
            client_threads: 1,
        }
    }
}

/// Most calls a second the flood caller may be asked to send.
pub const FLOOD_RATE_MAX: f64 = 100_000.0;

impl QuotaFloodOptions {
    pub fn flood_rate(&self) -> f64 {
        self.flood_rate
            .unwrap_or(10.0 * f64::from(self.flood_quota))
    }

    pub fn validate(&self) -> Result<()> {
        self.measuring().validate()?;
        if self.flood_quota == 0 {
            bail!("--flood-quota must be at least 1 call a second");
        }
        let rate = self.flood_rate();
        if !(rate > 0.0 && rate <= FLOOD_RATE_MAX) {
            bail!("--flood-rate must be in (0, {FLOOD_RATE_MAX}] calls a second");
        }
        Ok(())
    }

    fn measuring(&self) -> Options {
        Options {
            callers: self.callers,
            seconds: self.seconds,
            skus: self.skus,
            connections: self.connections,
            scenarios: Vec::new(),
            ..Options::default()
        }
    }
}

/// The flood caller's calls in the flood phase.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    pub sent: u64,
    pub granted: u64,
    /// Refused RESOURCE_EXHAUSTED with reason `QUOTA_EXCEEDED`.
    pub refused: u64,
    /// Any other answer: a failure of the run.
    pub failed: u64,
    pub first_failure: Option<String>,
    /// From the first call sent to the last answer.
    pub seconds: f64,
    /// Granted calls' latency (`check`) and refusals (`QUOTA_EXCEEDED`).
    pub tally: Tally,
}

/// A run's figures and its verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `quota-flood: baseline`, `quota-flood: flooded` (the normal callers, alone then beside
    /// the flood) and
    /// `quota-flood: flooder` (the flood caller).
    pub rows: Vec<Row>,
    pub flood: Flood,
    pub flood_quota: u32,
    pub flood_rate: f64,
    /// Most grants the flood's bucket allows over `flood.seconds`, margin included.
    pub granted_max: u64,
    /// Empty when the run passed.
    pub failures: Vec<String>,
}

const BASELINE: &str = "quota-flood: baseline";
const FLOODED: &str = "quota-flood: flooded";
const FLOODER: &str = "quota-flood: flooder";

/// The normal principal's token: set process-wide (`crate::use_token`) once, so a process may
/// run the scenario more than once.
static NORMAL_TOKEN: OnceLock<String> = OnceLock::new();

/// Starts the server with authentication on, runs both phases and stops it.
pub fn run(options: &QuotaFloodOptions) -> Result<Outcome> {
    options.validate()?;
    let normal = NORMAL_TOKEN.get_or_init(inv_api::auth::new_token);
    if crate::CLIENT_TOKEN.get().is_none() {
        crate::use_token(normal)?;
    }
    if crate::CLIENT_TOKEN.get().map(|v| v.as_encoded_bytes())
        != Some(format!("Bearer {normal}").as_bytes())
    {
        bail!("quota-flood makes its own tokens: run it without --token");
    }
    let flood = inv_api::auth::new_token();
    let dir = tempfile::tempdir().context("creating the principals' folder")?;
    let path = dir.path().join("principals.toml");
    std::fs::write(
        &path,
        format!(
            "[[principal]]\nname = \"normal\"\nroles = [\"connector:load\", \"admin\"]\n\
             token_sha256 = [\"{}\"]\n\n\
             [[principal]]\nname = \"flood\"\nroles = [\"connector:flood\"]\n\
             token_sha256 = [\"{}\"]\ncalls_per_second = {quota}\nburst = {quota}\n",
            inv_api::auth::token_sha256_hex(normal),
            inv_api::auth::token_sha256_hex(&flood),
            quota = options.flood_quota,
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    let auth = inv_api::auth::Auth::load(&path).map_err(|e| anyhow!("{e:?}"))?;
    let server = LocalServer::start_serving(
        options.server_threads,
        inv_api::ServerConfig::default(),
        inv_api::ServeOptions {
            auth: Some(auth),
            ..inv_api::ServeOptions::default()
        },
    )?;
    let runtime = inv_api::host::runtime_builder(options.client_threads)
        .thread_name("load")
        .enable_all()
        .build()
        .context("starting the load generator's runtime")?;
    let url = server.url();
    // Only a guard against a server that stops answering.
    let budget = Duration::from_secs_f64(options.seconds * 4.0 + 60.0);
    let outcome = runtime.block_on(async {
        tokio::time::timeout(budget, phases(&url, &flood, options))
            .await
            .map_err(|_| anyhow!("quota-flood did not finish within {budget:?}"))?
    });
    drop(runtime);
    server.stop()?;
    outcome
}

async fn phases(url: &str, flood_token: &str, options: &QuotaFloodOptions) -> Result<Outcome> {
    let measuring = options.measuring();
    let mut channels = Vec::with_capacity(measuring.connections.max(1));
    for _ in 0..channels.capacity() {
        channels.push(connect(url).await?);
    }
    let ctx = Arc::new(Ctx {
        skus: (0..measuring.skus).map(|i| format!("sku-{i:06}")).collect(),
        options: measuring,
        channels,
        url: url.to_owned(),
        run: format!(
            "quota-flood-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        ),
        pace: None,
    });
    scenarios::stock(&ctx).await?;

    let (baseline, took) = normal_callers(&ctx).await?;
    let mut rows = baseline.rows(BASELINE, took, None);
    let mut failures = normal_failures(&baseline, "baseline");

    // The flood starts a moment before the normal callers and ends with them.
    let flood_rate = options.flood_rate();
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let flooder = tokio::spawn(flood(
        url.to_owned(),
        flood_token.to_owned(),
        flood_rate,
        deadline,
    ));
    let (beside, took) = normal_callers(&ctx).await?;
    let flood = flooder.await.context("the flood caller panicked")??;
    rows.extend(beside.rows(FLOODED, took, None));
    rows.extend(flood.tally.rows(FLOODER, flood.seconds, None));
    failures.extend(normal_failures(&beside, "beside the flood"));

    let quota = f64::from(options.flood_quota);
    // burst + refill over the flood, plus 10 ms of refill and a call for the two clocks.
    let granted_max = (quota + quota * flood.seconds + quota * 0.010 + 1.0).floor() as u64;
    if flood.granted > granted_max {
        failures.push(format!(
            "the flood principal was granted {} calls in {:.3} s, more than its quota allows \
             ({granted_max})",
            flood.granted, flood.seconds
        ));
    }
    if flood.failed > 0 {
        failures.push(format!(
            "{} flood calls failed otherwise than QUOTA_EXCEEDED; first: {}",
            flood.failed,
            flood.first_failure.as_deref().unwrap_or("?")
        ));
    }
    Ok(Outcome {
        rows,
        flood,
        flood_quota: options.flood_quota,
        flood_rate,
        granted_max,
        failures,
    })
}

/// Half the normal callers Check, half Reserve and Release, for `--seconds`.
async fn normal_callers(ctx: &Arc<Ctx>) -> Result<(Tally, f64)> {
    let (callers, seconds) = (ctx.options.callers, ctx.options.seconds);
    scenarios::run_callers(ctx, callers, seconds, |ctx, i, deadline| async move {
        if i % 2 == 0 {
            scenarios::check_caller(ctx, i, deadline).await
        } else {
            scenarios::reserve_caller(ctx, i, deadline).await
        }
    })
    .await
}

fn normal_failures(tally: &Tally, phase: &str) -> Vec<String> {
    tally
        .0
        .iter()
        .flat_map(|(op, stats)| {
            stats
                .errors
                .iter()
                .map(move |(code, n)| format!("{n} normal {op} calls failed {code} ({phase})"))
        })
        .collect()
}

/// Sends the flood principal's token instead of the process-wide one.
#[derive(Clone)]
struct FloodToken(MetadataValue<Ascii>);

impl tonic::service::Interceptor for FloodToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// One Check a `1 / rate` s until `deadline`, each in a task of its own (open loop), over a
/// connection of its own.
async fn flood(url: String, token: String, rate: f64, deadline: Instant) -> Result<Flood> {
    let channel = connect(&url).await?;
    let value = format!("Bearer {token}").parse()?;
    let client = inv_proto::v1::inventory_client::InventoryClient::with_interceptor(
        channel,
        FloodToken(value),
    );
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let mut out = Flood::default();
    let mut n = 0u64;
    loop {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        n += 1;
        let mut client = client.clone();
        calls.spawn(async move {
            let sent = Instant::now();
            let answer = client
                .check(crate::pb::CheckRequest {
                    positions: vec![crate::pb::Position {
                        sku: "sku-000000".to_owned(),
                        location: scenarios::LOCATION.to_owned(),
                    }],
                })
                .await;
            (sent.elapsed(), answer.map(drop))
        });
        while let Some(done) = calls.try_join_next() {
            tally_flood(&mut out, done.context("a flood call panicked")?);
        }
    }
    while let Some(done) = calls.join_next().await {
        tally_flood(&mut out, done.context("a flood call panicked")?);
    }
    out.sent = n;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

fn tally_flood(out: &mut Flood, (latency, answer): (Duration, Result<(), tonic::Status>)) {
    let op: &mut OpStats = out.tally.op("check");
    match answer {
        Ok(()) => {
            out.granted += 1;
            op.ok_after(latency);
        }
        Err(status)
            if status.code() == Code::ResourceExhausted
                && status
                    .get_error_details()
                    .error_info()
                    .is_some_and(|info| info.reason == "QUOTA_EXCEEDED") =>
        {
            out.refused += 1;
            op.error_named("QUOTA_EXCEEDED");
        }
        Err(status) => {
            out.failed += 1;
            op.error(status.code());
            out.first_failure
                .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
        }
    }
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn row(&self, scenario: &str, op: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.op == op)
    }

    /// The flood's counts, the normal callers' p99 flood/baseline, and the verdict.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let f = &self.flood;
        let _ = writeln!(
            out,
            "flood principal (quota {q}/s, burst {q}) sent {} Checks at {:.0}/s over {:.2} s: \
             {} granted ({:.0}/s; its bucket allows at most {}), {} refused QUOTA_EXCEEDED, \
             {} other errors",
            f.sent,
            self.flood_rate,
            f.seconds,
            f.granted,
            f.granted as f64 / f.seconds.max(1e-9),
            self.granted_max,
            f.refused,
            f.failed,
            q = self.flood_quota,
        );
        for op in ["check", "reserve", "release"] {
            if let (Some(a), Some(b)) = (self.row(BASELINE, op), self.row(FLOODED, op)) {
                let _ = writeln!(
                    out,
                    "normal {op}: {:.0} -> {:.0}/s, p50 {:.3} -> {:.3} ms, p99 {:.3} -> {:.3} ms \
                     (flood/baseline p99 {:.2}x)",
                    a.ops_per_s,
                    b.ops_per_s,
                    a.p50_us as f64 / 1e3,
                    b.p50_us as f64 / 1e3,
                    a.p99_us as f64 / 1e3,
                    b.p99_us as f64 / 1e3,
                    b.p99_us as f64 / (a.p99_us.max(1)) as f64,
                );
            }
        }
        if self.passed() {
            let _ = writeln!(out, "quota-flood: verification PASSED");
        } else {
            let _ = writeln!(out, "quota-flood: verification FAILED");
            for failure in &self.failures {
                let _ = writeln!(out, "  {failure}");
            }
        }
        out
    }
}
