//! The memory budget end to end (issue "Idempotency at scale"): a flood of reserves that are
//! all rejected, each under a new reservation id, against a real server over a real data
//! folder (`RedbLog`, the key archive `keys.redb`, the snapshot store) with a small
//! `MemoryPolicy`.
//!
//! What the test shows, through the generated client and `GET /metrics` only:
//! 1. The server keeps answering past the budget. Every flood call gets either its rejection
//!    or RESOURCE_EXHAUSTED with reason MEMORY_EXHAUSTED, never anything else and never a
//!    hang; Check answers throughout; Commit and Release of holds granted before the flood
//!    succeed while writes are being refused.
//! 2. Nothing acknowledged is lost: every reserve that got an answer gets the same answer
//!    (same LSN, `duplicate` set) when retried with the same id and payload, including the
//!    ones whose records moved to the key archive.
//! 3. Memory stays flat: the parts of `inventory_memory_bytes` sum to at most the limit plus
//!    10% in every sample taken during the flood, and `inventory_keys_in_memory` stays under
//!    what the budget can hold while the flood acknowledges more keys than that.
//! 4. After a restart on the same folder, the retries still get their original answers.
//!
//! Why the high-water mark is 100%: records then stay in memory until the budget is crossed
//! (`key_memory_ms` is an hour and the clock is manual), so refusals start on any machine,
//! however fast its disk lets checkpoints evict; then each crossing is followed by eviction
//! and writes are accepted again, so the flood sees several rounds of both.
//!
//! The server is `inv_api::serve_with` over an engine opened as `inventory serve` opens one
//! (`main.rs`: `RedbLog`, `RedbArchive`, `Engine::recover_with`, a final checkpoint at
//! shutdown). The crate's `TestServer` recovers without an archive or a memory policy, and the
//! `inventory` binary is not built for this crate's tests, so the wiring is repeated here.
//!
//! `INVENTORY_TEST_FLOOD_RESERVES` sets the flood's size (default 6 000).

use anyhow::{Context, Result, bail, ensure};
use inv_api::{ServeError, ServeOptions, ServerConfig};
use inv_engine::archive::redb::RedbArchive;
use inv_engine::reconcile::RedbSnapshotStore;
use inv_engine::{
    CheckpointPolicy, Engine, LedgerConfig, ManualClock, MemoryPolicy, RedbLog, RedbLogOptions,
};
use inv_tests::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const DC: &str = "dc-1";
/// The sku the carts hold: all of its stock, so the flood cannot be granted any.
const CART_SKU: &str = "flash-sneaker";
/// The sku the bots ask for: never stocked, so every reserve of it is rejected.
const BOT_SKU: &str = "sold-out-console";
/// Long enough that no cart expires (the clock is manual and never moves anyway).
const TTL_MS: u64 = 600_000;

/// The ledger's budget: small, so under a thousand rejections (300 B each) cross it.
const LIMIT_BYTES: u64 = 256 << 10;
/// Holds granted before the flood: RESOLVES of them resolved during it, the rest left open.
const CARTS: usize = 2 * RESOLVES;
/// Past the budget (not sooner), every checkpoint moves what the previous one covered to the
/// archive.
const HIGH_WATER_PERCENT: u64 = 100;
/// How far over the limit a sample may be: the limit is judged once per checkpointer poll
/// (10 ms here), so calls admitted during one poll may overshoot it.
const OVERSHOOT_PERCENT: u64 = 10;
/// The smallest estimate of any in-memory entry (an open hold): no more entries than the
/// budget divided by this can be in memory while it is kept.
const ENTRY_BYTES_MIN: u64 = 210;

/// Flood calls in flight at once.
const FLOOD_WORKERS: usize = 16;
/// Carts committed and released (alternately) while writes are refused.
const RESOLVES: usize = 20;
/// Longest any one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the whole test may take.
const TEST_BUDGET: Duration = Duration::from_secs(180);

fn flood_size() -> usize {
    std::env::var("INVENTORY_TEST_FLOOD_RESERVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_000)
}

fn memory_policy() -> MemoryPolicy {
    MemoryPolicy {
        limit_bytes: LIMIT_BYTES,
        high_water_percent: HIGH_WATER_PERCENT,
        // Long: eviction here is only what memory pressure forces.
        key_memory_ms: 3_600_000,
    }
}

fn server_config() -> ServerConfig {
    ServerConfig {
        // The checkpointer polls every tenth of this (10 ms): the budget is judged that often.
        checkpoint_every_ms: 100,
        drain_timeout_ms: 5_000,
        ..ServerConfig::default()
    }
}

/// A server opened as `inventory serve` opens one, with its metrics endpoint.
struct MemoryServer {
    client: Client,
    metrics_addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl MemoryServer {
    async fn start(data_dir: &Path) -> Result<MemoryServer> {
        let dir = data_dir.to_owned();
        // Recovery reads the log and the archive: off the async workers, as main.rs does.
        let engine = tokio::task::spawn_blocking(move || -> Result<Engine> {
            let log = Arc::new(RedbLog::open(&dir, RedbLogOptions::default())?);
            let archive = RedbArchive::open(&dir)?;
            Ok(Engine::recover_with(
                LedgerConfig {
                    shards: 16,
                    ..LedgerConfig::default()
                },
                log,
                Arc::new(ManualClock::new(T0_MS)),
                Some(Arc::new(archive)),
                memory_policy(),
            )?)
        })
        .await??;
        let engine = Arc::new(engine);
        let snapshots = RedbSnapshotStore::open(data_dir)?;
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_addr = metrics_listener.local_addr()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(inv_api::serve_with(
            Arc::clone(&engine),
            server_config(),
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                // A dropped sender also shuts down, so a failing test never leaks a server.
                let _ = signal.await;
            },
            ServeOptions {
                metrics_listener: Some(metrics_listener),
                snapshots: Some(Arc::new(snapshots)),
                ..ServeOptions::default()
            },
        ));
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .context("connecting to the server")?;
        Ok(MemoryServer {
            client: pb::inventory_client::InventoryClient::new(channel),
            metrics_addr,
            engine,
            shutdown: Some(shutdown),
            task,
        })
    }

    async fn metrics(&self) -> Result<Metrics> {
        Metrics::parse(&scrape(self.metrics_addr).await?)
    }

    /// Stops serving, writes the final checkpoint `inventory serve` writes, and closes the
    /// log and the archive, so the folder can be opened again.
    async fn stop(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let MemoryServer {
            client,
            engine,
            task,
            ..
        } = self;
        drop(client);
        task.await.context("serve panicked")??;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&engine) > 1 {
            ensure!(
                Instant::now() < deadline,
                "the engine is still referenced 5 s after the server stopped"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::spawn_blocking(move || -> Result<()> {
            let any_event = CheckpointPolicy {
                every_events: 1,
                every_ms: 0,
            };
            engine.checkpoint_if_due(&any_event)?;
            drop(engine);
            Ok(())
        })
        .await??;
        Ok(())
    }
}

/// The memory series of one scrape.
#[derive(Debug, Clone, Copy)]
struct Metrics {
    memory_bytes: u64,
    limit_bytes: u64,
    exhausted: bool,
    keys_in_memory: u64,
    keys_archived: u64,
}

impl Metrics {
    fn parse(text: &str) -> Result<Metrics> {
        let mut memory_bytes = 0;
        let mut parts = 0;
        let mut single = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if series.starts_with("inventory_memory_bytes{") {
                memory_bytes += value as u64;
                parts += 1;
            } else {
                single.insert(series.to_owned(), value as u64);
            }
        }
        ensure!(
            parts == 5,
            "inventory_memory_bytes has {parts} parts, not 5:\n{text}"
        );
        let get = |name: &str| {
            single
                .get(name)
                .copied()
                .with_context(|| format!("{name} missing from the scrape:\n{text}"))
        };
        Ok(Metrics {
            memory_bytes,
            limit_bytes: get("inventory_memory_limit_bytes")?,
            exhausted: get("inventory_memory_exhausted")? == 1,
            keys_in_memory: get("inventory_keys_in_memory")?,
            keys_archived: get("inventory_keys_archived")?,
        })
    }
}

fn cart(i: usize) -> pb::ReserveRequest {
    reserve(&format!("cart-{i:05}"), vec![line(CART_SKU, DC, 1)], TTL_MS)
}

fn bot(i: usize) -> pb::ReserveRequest {
    reserve(&format!("bot-{i:06}"), vec![line(BOT_SKU, DC, 1)], TTL_MS)
}

/// Whether `status` is the memory budget's refusal, with its ErrorInfo.
fn is_memory_exhausted(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "MEMORY_EXHAUSTED")
}

async fn call<T>(
    what: &str,
    future: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<Result<T, Status>> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => Ok(result.map(tonic::Response::into_inner)),
        Err(_) => bail!("{what} got no answer within {CALL_TIMEOUT:?}"),
    }
}

/// Retries every acknowledged reserve and checks each answer is the original one, marked as
/// a retry.
async fn retry_all(
    client: &Client,
    acknowledged: &[(pb::ReserveRequest, pb::ReserveResponse)],
    when: &str,
) -> Result<()> {
    let chunks: Vec<Vec<(pb::ReserveRequest, pb::ReserveResponse)>> = acknowledged
        .chunks(acknowledged.len().div_ceil(FLOOD_WORKERS).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let mut workers = Vec::new();
    for chunk in chunks {
        let mut client = client.clone();
        let when = when.to_owned();
        workers.push(tokio::spawn(async move {
            for (request, original) in chunk {
                let id = request.reservation_id.clone();
                let retry = call("a retry", client.reserve(request))
                    .await?
                    .map_err(|s| anyhow::anyhow!("{when}: the retry of {id} failed: {s:?}"))?;
                ensure!(
                    retry.duplicate,
                    "{when}: the retry of {id} was decided again: {retry:?} (first: {original:?})"
                );
                ensure!(
                    pb::ReserveResponse {
                        duplicate: false,
                        ..retry.clone()
                    } == original,
                    "{when}: the retry of {id} answered {retry:?}, the first call {original:?}"
                );
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_rejections_is_refused_within_the_budget_and_no_answer_is_lost() -> Result<()> {
    match tokio::time::timeout(TEST_BUDGET, flood_test()).await {
        Ok(result) => result,
        Err(_) => bail!("the test did not finish within {TEST_BUDGET:?}"),
    }
}

async fn flood_test() -> Result<()> {
    let started = Instant::now();
    let flood = flood_size();
    let data_dir = tempfile::tempdir()?;
    let server = MemoryServer::start(data_dir.path()).await?;
    let mut client = server.client.clone();

    // The carts: every unit of the flash sku held, before any bot arrives.
    call(
        "the stock receipt",
        client.adjust(adjust("receipt-1", CART_SKU, DC, CARTS as i64)),
    )
    .await??;
    let mut carts = Vec::with_capacity(CARTS);
    for i in 0..CARTS {
        let request = cart(i);
        let answer = call("a cart's reserve", client.reserve(request.clone())).await??;
        ensure!(
            matches!(
                answer.result,
                Some(pb::reserve_response::Result::Granted(_))
            ),
            "cart {i} was not granted: {answer:?}"
        );
        carts.push((request, answer));
    }
    let before = server.metrics().await?;
    eprintln!("carts held: {before:?}");
    ensure!(before.limit_bytes == LIMIT_BYTES);
    ensure!(
        !before.exhausted,
        "the carts alone exhaust the budget: {before:?}"
    );

    // The flood, with a sampler of /metrics, a reader, and a resolver that commits and
    // releases carts while writes are refused, all running beside it.
    let flooding = Arc::new(AtomicBool::new(true));
    let next_bot = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let rejected: Arc<Mutex<Vec<(pb::ReserveRequest, pb::ReserveResponse)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..FLOOD_WORKERS {
        let mut client = client.clone();
        let (next_bot, refused, rejected) = (next_bot.clone(), refused.clone(), rejected.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next_bot.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= flood {
                    return anyhow::Ok(());
                }
                let request = bot(i);
                match call("a bot's reserve", client.reserve(request.clone())).await? {
                    Ok(answer) => {
                        ensure!(
                            matches!(
                                answer.result,
                                Some(pb::reserve_response::Result::Rejected(_))
                            ) && !answer.duplicate,
                            "bot {i}: a new reserve of an unstocked sku answered {answer:?}"
                        );
                        rejected
                            .lock()
                            .expect("not poisoned")
                            .push((request, answer));
                    }
                    Err(status) if is_memory_exhausted(&status) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => bail!("bot {i}: neither rejected nor refused: {status:?}"),
                }
            }
        }));
    }

    let sampler = {
        let (flooding, metrics_addr) = (flooding.clone(), server.metrics_addr);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while flooding.load(Ordering::Relaxed) {
                samples.push(Metrics::parse(&scrape(metrics_addr).await?)?);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(samples)
        })
    };

    let reader = {
        let (flooding, mut client) = (flooding.clone(), client.clone());
        tokio::spawn(async move {
            let mut checks = 0u64;
            while flooding.load(Ordering::Relaxed) {
                let a = tokio::time::timeout(CALL_TIMEOUT, available(&mut client, CART_SKU, DC))
                    .await
                    .context("a Check got no answer")?
                    .context("a Check during the flood")?;
                // Commits of carts (at most RESOLVES) take stock off the shelf.
                ensure!(
                    a.exists && (CARTS - RESOLVES) as i64 <= a.on_hand && a.on_hand <= CARTS as i64,
                    "Check during the flood: {a:?}"
                );
                checks += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok(checks)
        })
    };

    // Commits and releases carts, each once writes are seen refused (the engine's own flag,
    // read just before the call: the server is in this process).
    let resolver = {
        let (flooding, mut client, engine) =
            (flooding.clone(), client.clone(), server.engine.clone());
        tokio::spawn(async move {
            let mut during_refusal = (0u64, 0u64);
            let mut resolved = Vec::new();
            for i in 0..RESOLVES {
                while !engine.memory_exhausted() && flooding.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if !flooding.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("cart-{i:05}");
                if i % 2 == 0 {
                    let answer = call(
                        "a commit",
                        client.commit(pb::CommitRequest {
                            reservation_id: id.clone(),
                            lines: vec![],
                        }),
                    )
                    .await?
                    .map_err(|s| anyhow::anyhow!("committing {id} during the flood: {s:?}"))?;
                    ensure!(!answer.duplicate, "{id}: {answer:?}");
                    during_refusal.0 += 1;
                } else {
                    let answer = call(
                        "a release",
                        client.release(pb::ReleaseRequest {
                            reservation_id: id.clone(),
                        }),
                    )
                    .await?
                    .map_err(|s| anyhow::anyhow!("releasing {id} during the flood: {s:?}"))?;
                    ensure!(!answer.duplicate, "{id}: {answer:?}");
                    during_refusal.1 += 1;
                }
                resolved.push(i);
            }
            anyhow::Ok((during_refusal, resolved))
        })
    };

    let flood_started = Instant::now();
    let mut failure = None;
    for worker in workers {
        if let Err(error) = worker.await? {
            failure.get_or_insert(error);
        }
    }
    let flood_ms = flood_started.elapsed().as_millis();
    flooding.store(false, Ordering::Relaxed);
    let samples = sampler.await??;
    let checks = reader.await??;
    let ((commits, releases), resolved) = resolver.await??;
    if let Some(error) = failure {
        return Err(error);
    }
    let rejected = std::mem::take(&mut *rejected.lock().expect("not poisoned"));
    let refused = refused.load(Ordering::Relaxed);
    let after = server.metrics().await?;
    eprintln!(
        "flood of {flood} in {flood_ms} ms: {} rejected, {refused} refused; {checks} checks; \
         {commits} commits and {releases} releases while refusing; {} samples; at the end \
         {after:?}",
        rejected.len(),
        samples.len()
    );
    for (n, s) in samples
        .iter()
        .enumerate()
        .step_by(samples.len().div_ceil(12).max(1))
    {
        eprintln!("  sample {n}: {s:?}");
    }

    // 1. Refusals happened, and did not stop the resolutions nor the reads.
    ensure!(
        refused > 0,
        "no reserve of the flood was refused: {after:?}"
    );
    ensure!(
        commits > 0 && releases > 0,
        "commits {commits}, releases {releases} while writes were refused"
    );
    ensure!(checks > 0, "no Check ran during the flood");

    // 3. Memory flat.
    let ceiling = LIMIT_BYTES + LIMIT_BYTES * OVERSHOOT_PERCENT / 100;
    let over: Vec<_> = samples
        .iter()
        .filter(|s| s.memory_bytes > ceiling)
        .collect();
    ensure!(
        over.is_empty(),
        "{} of {} samples over {ceiling} B, first {:?}",
        over.len(),
        samples.len(),
        over.first()
    );
    let memory_peak = samples.iter().map(|s| s.memory_bytes).max().unwrap_or(0);
    eprintln!("memory peak {memory_peak} B of {LIMIT_BYTES} B (ceiling {ceiling} B)");
    let keys_max = ceiling / ENTRY_BYTES_MIN;
    let peak = samples.iter().map(|s| s.keys_in_memory).max().unwrap_or(0);
    ensure!(
        peak <= keys_max,
        "inventory_keys_in_memory peaked at {peak}, more than the budget holds ({keys_max})"
    );
    // Otherwise a ledger keeping every key would pass the line above.
    ensure!(
        (CARTS + rejected.len()) as u64 > keys_max,
        "the flood acknowledged too few keys ({}) to show the budget holds; raise \
         INVENTORY_TEST_FLOOD_RESERVES",
        rejected.len()
    );

    // 2. Every acknowledged reserve answers the same on a retry, archived ones included.
    let mut acknowledged = carts;
    acknowledged.extend(rejected);
    let retries_started = Instant::now();
    retry_all(&client, &acknowledged, "after the flood").await?;
    eprintln!(
        "{} retries in {} ms",
        acknowledged.len(),
        retries_started.elapsed().as_millis()
    );
    // Every resolution answers again as a retry.
    for &i in &resolved {
        let id = format!("cart-{i:05}");
        if i % 2 == 0 {
            let answer = call(
                "a commit's retry",
                client.commit(pb::CommitRequest {
                    reservation_id: id.clone(),
                    lines: vec![],
                }),
            )
            .await??;
            ensure!(answer.duplicate, "{id}: {answer:?}");
        } else {
            let answer = call(
                "a release's retry",
                client.release(pb::ReleaseRequest {
                    reservation_id: id.clone(),
                }),
            )
            .await??;
            ensure!(answer.duplicate, "{id}: {answer:?}");
        }
    }
    let archived = server.metrics().await?.keys_archived;
    ensure!(
        archived > 0,
        "nothing moved to the key archive: {:?}",
        server.metrics().await?
    );

    // 4. The same answers after a restart on the same folder.
    drop(client);
    server.stop().await?;
    let server = MemoryServer::start(data_dir.path()).await?;
    let restarted = server.metrics().await?;
    eprintln!("after the restart: {restarted:?}");
    ensure!(
        restarted.keys_archived > 0,
        "the key archive is empty after the restart: {restarted:?}"
    );
    retry_all(&server.client, &acknowledged, "after the restart").await?;
    server.stop().await?;
    eprintln!("took {} ms", started.elapsed().as_millis());
    Ok(())
}
