//! Surge scenarios: drive a running server over gRPC the way a peak day does, then prove what it
//! holds afterwards.
//!
//! Each scenario keeps a ledger of what the server told it (grants, commits, sales recorded,
//! returns, dispositions), computes from it the state the server must be in
//! ([`verify::Expected`]), reads the real state back through the API ([`verify::observe`]:
//! Check, StoreStatus, GetReservation) and compares the two ([`verify::verify`]). A scenario
//! passes only if every comparison holds; `load` exits 1 otherwise. Timing is reported, never
//! judged: the machines this runs on are shared and noisy.
//!
//! # Scenarios
//! - [`flash_sale`]: one hot sku, thousands of buyers at once over unary Reserve and Session
//!   streams, some retrying after a client timeout with the same key. Exactly the stock is
//!   granted, every buyer gets a definite answer, then a checkout wave commits or releases
//!   every grant.
//! - [`store_reconnect`]: stores that were offline post their backlogs at once, in shuffled
//!   batches with duplicate resends and one batch held back; the held-back gap shows, then
//!   closes; every sale counts once and on_hand is conserved.
//! - [`return_wave`]: returns of earlier orders arrive (restocked at once or quarantined for
//!   inspection), and the inspection verdicts come later, while holds go on on the same skus.
//! - [`holiday_surge`]: all of it at a rate rising to 10x over a large catalogue: carts
//!   (committed, released, abandoned to expire), checks, store batches, returns and bulk
//!   backfills; the report shows the hot path's p99 as the rate rises and the bulk refusals.
//! - [`reconcile_under_load`]: a large FULL ERP snapshot with planted drift is pushed and
//!   reconciled while the hot path runs at a fixed rate; the report compares the hot path's
//!   latency before, during and after, and the drift found must be exactly the drift planted.
//!
//! # Layout
//! - [`recorder`]: per-RPC histograms and timelines, shared by every task of a scenario.
//! - [`verify`]: the expected model, reading the server back, and the pure comparison.
//! - [`market`]: carts, returns and the client's ledger, shared by return-wave and
//!   holiday-surge.
//! - [`report`]: the summary table, the JSON report and the SVG chart.
//!
//! Every id a scenario sends starts with a run prefix, so scenarios can share one server
//! (`--target`) without ever sharing a key, a sku or a store.

pub mod flash_sale;
pub mod holiday_surge;
pub mod market;
pub mod reconcile_under_load;
pub mod recorder;
pub mod report;
pub mod return_wave;
pub mod store_reconnect;
pub mod verify;

pub use recorder::Recorder;
pub use report::Report;
pub use verify::{Expected, Observed, Verdict};

use crate::pb;
use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Code, Status};

pub use crate::Client;

/// The location marketplace stock lives at.
pub const DC: &str = "dc-1";

/// One surge scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SurgeScenario {
    FlashSale,
    StoreReconnect,
    ReturnWave,
    HolidaySurge,
    ReconcileUnderLoad,
}

impl SurgeScenario {
    pub const ALL: [SurgeScenario; 5] = [
        SurgeScenario::FlashSale,
        SurgeScenario::StoreReconnect,
        SurgeScenario::ReturnWave,
        SurgeScenario::HolidaySurge,
        SurgeScenario::ReconcileUnderLoad,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SurgeScenario::FlashSale => "flash-sale",
            SurgeScenario::StoreReconnect => "store-reconnect",
            SurgeScenario::ReturnWave => "return-wave",
            SurgeScenario::HolidaySurge => "holiday-surge",
            SurgeScenario::ReconcileUnderLoad => "reconcile-under-load",
        }
    }

    pub fn from_name(name: &str) -> Option<SurgeScenario> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Every size and knob of the surge scenarios. [`SurgeOptions::default`] is the full size for
/// a load-tester's laptop; [`SurgeOptions::ci`] runs every scenario in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurgeOptions {
    /// Seeds every random choice (which buyer retries, batch order, dispositions, ...).
    pub seed: u64,
    /// HTTP/2 connections the scenario's tasks share.
    pub connections: usize,
    /// flash-sale: buyers, each asking for one unit of the hot sku.
    pub buyers: usize,
    /// flash-sale: units of the hot sku put up.
    pub stock: u64,
    /// flash-sale: Session streams the session buyers share.
    pub sessions: usize,
    /// flash-sale: percent of buyers that come over a Session stream (the rest unary).
    pub session_pct: u32,
    /// flash-sale, return-wave: percent of requests whose first try is given up on (unary: a
    /// client timeout of a few ms) or sent twice (Session), then retried with the same key.
    pub retry_pct: u32,
    /// store-reconnect, holiday-surge: stores posting sales.
    pub stores: usize,
    /// store-reconnect: sales in each store's backlog.
    pub sales_per_store: usize,
    /// store-reconnect, holiday-surge: sales per RecordSales batch (return-wave: returns per
    /// RecordReturns batch).
    pub batch_sales: usize,
    /// store-reconnect, return-wave, holiday-surge: percent of batches resent (duplicates).
    pub dup_pct: u32,
    /// store-reconnect, return-wave: skus sold.
    pub skus: usize,
    /// holiday-surge: skus in the catalogue.
    pub catalog_skus: usize,
    /// return-wave: orders placed (and committed) before the returns come back.
    pub orders: usize,
    /// return-wave: percent of orders returned.
    pub return_pct: u32,
    /// return-wave, holiday-surge: concurrent marketplace callers.
    pub callers: usize,
    /// holiday-surge: how long the ramp lasts.
    pub duration_secs: f64,
    /// holiday-surge: marketplace calls a second at the start; the rate rises linearly to
    /// `peak_factor` times this.
    pub base_rate: f64,
    pub peak_factor: f64,
    /// holiday-surge: TTL of a cart's hold; abandoned carts expire after it.
    pub ttl_ms: u64,
    /// holiday-surge: concurrent bulk backfill callers.
    pub bulk_callers: usize,
    /// holiday-surge: if set, the hot path's p99 (check, reserve, commit) in every quarter of
    /// the ramp must be at most this many ms, or the verification fails. Unset by default:
    /// shared machines are too noisy for a latency bound to be a pass/fail check.
    pub hot_p99_ms_max: Option<f64>,
    /// reconcile-under-load: positions stocked, and rows of the FULL snapshot pushed.
    pub snapshot_rows: usize,
    /// reconcile-under-load: hot-path calls a second (Check, Reserve, Commit, Release), held
    /// steady before, during and after the push and reconciliation.
    pub hot_rate: f64,
    /// reconcile-under-load: seconds of hot-path traffic measured before the push starts, and
    /// again after the reconciliation ends.
    pub calm_secs: f64,
}

impl Default for SurgeOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            connections: 4,
            buyers: 10_000,
            stock: 1_000,
            sessions: 8,
            session_pct: 50,
            retry_pct: 10,
            stores: 300,
            sales_per_store: 200,
            batch_sales: 25,
            dup_pct: 10,
            skus: 2_000,
            catalog_skus: 100_000,
            orders: 20_000,
            return_pct: 40,
            callers: 64,
            duration_secs: 60.0,
            base_rate: 500.0,
            peak_factor: 10.0,
            ttl_ms: 5_000,
            bulk_callers: 2,
            hot_p99_ms_max: None,
            snapshot_rows: 1_000_000,
            hot_rate: 1_000.0,
            calm_secs: 10.0,
        }
    }
}

impl SurgeOptions {
    /// Every scenario at a size CI runs in seconds on two shared cores.
    pub fn ci() -> Self {
        Self {
            connections: 2,
            buyers: 400,
            stock: 50,
            sessions: 2,
            stores: 12,
            sales_per_store: 40,
            batch_sales: 8,
            skus: 200,
            catalog_skus: 1_000,
            orders: 300,
            callers: 8,
            duration_secs: 5.0,
            base_rate: 60.0,
            ttl_ms: 1_500,
            bulk_callers: 1,
            snapshot_rows: 20_000,
            // Enough that even a push and reconciliation of a few tens of ms (a release
            // build) see hot calls: ~25 in 65 ms.
            hot_rate: 400.0,
            calm_secs: 2.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (name, value, min, max) in [
            ("--connections", self.connections, 1, 256),
            ("--buyers", self.buyers, 1, 1_000_000),
            ("--sessions", self.sessions, 1, 1_024),
            ("--stores", self.stores, 1, 100_000),
            // A backlog posted in shuffled order must stay within the server's default
            // `--store-seq-jump-max`, or its late batches would be sequence anomalies.
            (
                "--sales-per-store",
                self.sales_per_store,
                1,
                inv_engine::limits::STORE_SEQ_JUMP_MAX_DEFAULT as usize,
            ),
            (
                "--batch-sales",
                self.batch_sales,
                1,
                inv_api::BATCH_ITEMS_MAX,
            ),
            ("--skus", self.skus, 1, 1_000_000),
            ("--catalog-skus", self.catalog_skus, 100, 1_000_000),
            ("--orders", self.orders, 1, 1_000_000),
            ("--callers", self.callers, 1, 4_096),
            ("--bulk-callers", self.bulk_callers, 1, 64),
            ("--snapshot-rows", self.snapshot_rows, 1_000, 10_000_000),
        ] {
            if !(min..=max).contains(&value) {
                bail!("{name} must be in {min}..={max}, got {value}");
            }
        }
        for (name, value) in [
            ("--session-pct", self.session_pct),
            ("--retry-pct", self.retry_pct),
            ("--dup-pct", self.dup_pct),
            ("--return-pct", self.return_pct),
        ] {
            if value > 100 {
                bail!("{name} is a percentage, got {value}");
            }
        }
        if !(1..=1_000_000_000).contains(&self.stock) {
            bail!("--stock must be in 1..=1000000000");
        }
        if !(self.duration_secs > 0.0 && self.duration_secs <= 3_600.0) {
            bail!("--duration-secs must be in (0, 3600]");
        }
        if !(self.base_rate > 0.0 && self.base_rate.is_finite()) {
            bail!("--base-rate must be a positive number of calls a second");
        }
        if !(self.hot_rate > 0.0 && self.hot_rate <= 1_000_000.0) {
            bail!("--hot-rate must be a positive number of calls a second");
        }
        if !(self.calm_secs > 0.0 && self.calm_secs <= 3_600.0) {
            bail!("--calm-secs must be in (0, 3600]");
        }
        if !(1.0..=100.0).contains(&self.peak_factor) {
            bail!("--peak-factor must be in 1..=100");
        }
        if let Some(ms) = self.hot_p99_ms_max
            && !(ms > 0.0 && ms.is_finite())
        {
            bail!("--hot-p99-ms-max must be a positive number of ms");
        }
        if !(inv_engine::limits::TTL_MS_MIN..=600_000).contains(&self.ttl_ms) {
            bail!("--ttl-ms must be in 1000..=600000");
        }
        Ok(())
    }
}

/// What every task of a scenario shares.
pub struct Env {
    pub options: SurgeOptions,
    /// The server's address, for a scenario that needs a connection of its own.
    pub url: String,
    pub clients: Vec<Client>,
    pub recorder: Arc<Recorder>,
    /// Prefixes every id, sku and store of the run.
    pub run: String,
    /// Shows progress on a terminal; hidden otherwise.
    pub progress: ProgressBar,
}

impl Env {
    pub fn client(&self, i: usize) -> Client {
        self.clients[i % self.clients.len()].clone()
    }

    pub fn id(&self, what: &str, i: impl std::fmt::Display) -> String {
        format!("{}-{what}-{i}", self.run)
    }

    /// Starts a progress stage of `total` steps.
    pub fn stage(&self, message: &'static str, total: u64) {
        self.progress.set_position(0);
        self.progress.set_length(total);
        self.progress.set_message(message);
    }
}

/// One store's feed as the server reported it at the end (and, for store-reconnect, mid-way).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StoreLine {
    pub store_id: String,
    pub contiguous_seq: u64,
    pub newest_seq: u64,
    pub missing_count: u64,
    pub sales_recorded: u64,
    pub duplicates_absorbed: u64,
    /// Server time minus till time of the newest sale when it was recorded.
    pub lag_ms: u64,
    /// The same mid-way, with the backlog partly in (store-reconnect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms_mid: Option<u64>,
}

/// What a scenario hands back: its headline numbers and its verdict.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Named numbers for the report (`granted`, `stock`, `oversell`, `duplicates_absorbed`,
    /// ...), in a stable order.
    pub facts: BTreeMap<String, i64>,
    /// Lines the summary prints under the table.
    pub notes: Vec<String>,
    pub verdict: Verdict,
    /// Every store's feed at the end, for the report's lag per store.
    pub stores: Vec<StoreLine>,
    /// Latency of some RPCs in named windows of the run (reconcile-under-load: before, during
    /// and after the snapshot's push and reconciliation).
    pub windows: Vec<WindowRow>,
}

/// One RPC's latency in one window of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WindowRow {
    pub window: String,
    pub op: String,
    /// Seconds since the scenario started, at the recorder's bucket resolution.
    pub from_s: f64,
    pub to_s: f64,
    pub answers: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl Outcome {
    /// Takes the report's figures from a verification's reads: the positions oversold (the
    /// worst of every verification so far) and every store's feed.
    pub fn observed(&mut self, expected: &Expected, observed: &Observed) {
        let oversold = verify::oversold_positions(expected, observed);
        let worst = self.facts.get("oversold_positions").copied().unwrap_or(0);
        self.fact("oversold_positions", oversold.max(worst as u64));
        self.stores = observed
            .stores
            .values()
            .map(|s| StoreLine {
                store_id: s.store_id.clone(),
                contiguous_seq: s.contiguous_seq,
                newest_seq: s.newest_seq,
                missing_count: s.missing_count,
                sales_recorded: s.sales_recorded,
                duplicates_absorbed: s.duplicates_absorbed,
                lag_ms: s.newest_lag_ms,
                lag_ms_mid: None,
            })
            .collect();
    }

    pub fn fact(&mut self, name: &str, value: impl TryInto<i64>) {
        self.facts
            .insert(name.to_owned(), value.try_into().unwrap_or(i64::MAX));
    }
}

/// Runs one scenario against `url` and returns its report.
pub async fn run(url: &str, scenario: SurgeScenario, options: &SurgeOptions) -> Result<Report> {
    options.validate()?;
    crate::check_loopback(url)?;
    let mut clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        clients.push(crate::client(crate::connect(url).await?).max_decoding_message_size(16 << 20));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // The chart's resolution: about 100 points over a holiday ramp, 250 ms otherwise (500 ms
    // for reconcile-under-load, whose stocking of a million positions comes first and the
    // recorder keeps a bounded number of buckets).
    let bucket = match scenario {
        SurgeScenario::HolidaySurge => {
            Duration::from_secs_f64((options.duration_secs / 100.0).max(0.25))
        }
        SurgeScenario::ReconcileUnderLoad => Duration::from_millis(500),
        _ => Duration::from_millis(250),
    };
    let env = Arc::new(Env {
        options: options.clone(),
        url: url.to_owned(),
        clients,
        recorder: Arc::new(Recorder::new(bucket)),
        run: format!("{}-{nanos:x}", scenario.name()),
        progress: progress_bar(scenario.name()),
    });
    let started = Instant::now();
    let outcome = match scenario {
        SurgeScenario::FlashSale => flash_sale::run(&env).await?,
        SurgeScenario::StoreReconnect => store_reconnect::run(&env).await?,
        SurgeScenario::ReturnWave => return_wave::run(&env).await?,
        SurgeScenario::HolidaySurge => holiday_surge::run(&env).await?,
        SurgeScenario::ReconcileUnderLoad => reconcile_under_load::run(&env).await?,
    };
    env.progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report::new(
        scenario,
        url,
        options,
        seconds,
        &env.recorder,
        outcome,
    ))
}

/// A progress bar on stderr when it is a terminal; a hidden one (drawing nothing) otherwise,
/// so logs and CI output stay clean.
fn progress_bar(scenario: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(&format!(
        "{scenario} {{msg:<24}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Most tries of one call (its first included).
/// Bulk calls are refused often while their budget is in use, so this is generous: with the
/// back-off below it is over a minute and a half.
const ATTEMPTS_MAX: u32 = 400;
/// How long one try may take before the client gives up on it and retries.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// First back-off after a refusal; it doubles up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_millis(2);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// True for failures after which the same request may (and should) be resent: nothing was
/// applied (RESOURCE_EXHAUSTED, UNAVAILABLE), or the client does not know (a timeout, a
/// cancelled or broken call). Every write is idempotent, so a resend is always safe.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::ResourceExhausted
            | Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
    )
}

/// Calls `f` until it gives an answer or a failure that is not [`retryable`], at most
/// [`ATTEMPTS_MAX`] times, backing off between tries; every try is recorded under `op`.
pub async fn call<T, F, Fut>(recorder: &Recorder, op: &'static str, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    call_expecting(recorder, op, &[], f).await
}

/// As [`call`], but a failure with one of the `expected` codes (a NOT_FOUND for a hold that
/// must not exist) is recorded as an answer and a rejection, not as an error.
pub async fn call_expecting<T, F, Fut>(
    recorder: &Recorder,
    op: &'static str,
    expected: &[Code],
    mut f: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut backoff = BACKOFF;
    let mut last = Status::unknown("no attempt made");
    for _ in 0..ATTEMPTS_MAX {
        let started = Instant::now();
        match tokio::time::timeout(ATTEMPT_TIMEOUT, f()).await {
            Ok(Ok(response)) => {
                recorder.ok(op, started);
                return Ok(response.into_inner());
            }
            Ok(Err(status)) if expected.contains(&status.code()) => {
                recorder.ok(op, started);
                recorder.rejected(op);
                return Err(status);
            }
            Ok(Err(status)) => {
                recorder.error(op, crate::stats::code_name(status.code()));
                if !retryable(status.code()) {
                    return Err(status);
                }
                last = status;
            }
            Err(_) => {
                recorder.error(op, "CLIENT_TIMEOUT");
                last = Status::deadline_exceeded("the client gave up waiting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    Err(last)
}

/// Milliseconds since the Unix epoch, by this machine's clock (for store till times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stocks `skus` at `location` with `qty` units each through Adjust, `clients.len() * 16` at a
/// time.
pub async fn stock(env: &Arc<Env>, skus: &[String], location: &str, qty: i64) -> Result<()> {
    env.stage("stocking", skus.len() as u64);
    let tasks = (env.clients.len() * 16).min(skus.len()).max(1);
    let skus = Arc::new(skus.to_vec());
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (env, skus, location) = (Arc::clone(env), Arc::clone(&skus), location.to_owned());
        set.spawn(async move {
            let client = env.client(t);
            for sku in skus.iter().skip(t).step_by(tasks) {
                let request = pb::AdjustRequest {
                    adjustment_id: format!("{}-stock-{sku}@{location}", env.run),
                    sku: sku.clone(),
                    location: location.clone(),
                    delta: qty,
                    reason: "surge stock".to_owned(),
                };
                call(&env.recorder, "adjust", || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.adjust(request).await }
                })
                .await
                .map_err(|s| anyhow::anyhow!("stocking {sku}: {s}"))?;
                env.progress.inc(1);
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok(())
}

/// Reads the server back for `expected` and verifies it; returns the verdict and what was
/// read (for the report's figures, such as store lag).
pub async fn verify_against(env: &Env, expected: &Expected) -> Result<(Verdict, Observed)> {
    env.progress.set_message("verifying");
    let observed = verify::observe(&env.clients, &env.recorder, expected).await?;
    Ok((verify::verify(expected, &observed), observed))
}

/// xorshift64*, as the measuring scenarios use: seedable and cheap.
pub use crate::scenarios::Rng;

/// A deterministic per-item draw in 0..100 from the run's seed: which buyer retries, which
/// batch is resent. The same seed makes the same choices.
pub fn pct(seed: u64, salt: u64, item: u64) -> u32 {
    let mut rng = Rng::new(seed ^ salt.wrapping_mul(0x9E37_79B9) ^ item.wrapping_mul(0x85EB_CA6B));
    (rng.next_u64() % 100) as u32
}
