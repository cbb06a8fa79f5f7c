//! The workloads. Each caller is a tokio task with its own client (over its channel), its own
//! random number generator (seeded by its index, so a run's mix is the same every time) and its
//! own [`Tally`]; the tallies are added up when the callers stop.

use crate::stats::Tally;
use crate::{Options, pb};
use anyhow::{Context, Result, bail};
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

pub use crate::Client;

/// The location every sku is stocked at.
pub const LOCATION: &str = "dc-1";
/// Units each sku is stocked with: the most one Adjust may add, far more than a run takes.
pub const STOCK_PER_SKU: i64 = 1_000_000_000;
/// Holds a mix caller remembers for a later commit or release; older ones are left to expire.
const MIX_HOLDS_MAX: usize = 256;
/// How long a backfill first waits before resending a batch the server refused as
/// overloaded; the wait doubles with each refusal in a row, up to [`BULK_BACKOFF_MAX`]. A
/// refused batch costs both sides its whole encoding and transfer, so retrying at once would
/// mostly burn the CPU the hot path needs.
const BULK_BACKOFF: Duration = Duration::from_millis(5);
const BULK_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// What every caller shares.
pub struct Ctx {
    pub options: Options,
    pub channels: Vec<Channel>,
    /// The server's URL; the backfill connects on its own runtime (see `backfill_caller`).
    pub url: String,
    pub skus: Vec<String>,
    /// Prefixes every id this run sends, so runs against one server never share a key.
    pub run: String,
    /// With `--rate`: when the next unary call is due (one pacer for every server a run
    /// measures).
    pub pace: Option<Arc<Pace>>,
}

impl Ctx {
    /// Waits until the next unary call is due (at once without `--rate`).
    async fn paced(&self) {
        if let Some(pace) = &self.pace {
            pace.wait().await;
        }
    }

    fn client(&self, caller: usize) -> Client {
        crate::client(self.channels[caller % self.channels.len()].clone())
            .max_decoding_message_size(16 << 20)
    }

    fn sku(&self, rng: &mut Rng) -> &str {
        &self.skus[rng.below(self.skus.len() as u64) as usize]
    }

    fn ttl_ms(&self) -> u64 {
        self.options.ttl_ms
    }
}

/// xorshift64*: fast, small and seedable; quality is no concern here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Paces the unary callers to `options.rate` calls a second in total; without a rate, calls go
/// back to back (a closed loop). A thread of its own hands out permits every
/// [`PACE_TICK`], a few calls at a time: tokio's timer has a 1 ms resolution, so callers that
/// each slept until their own next call were released in bursts of `rate / 1000` at every
/// millisecond, and the burst, not the server, set the p99 (1.1 ms for Checks at 50 k/s).
/// Permits go to whichever caller is free; at most [`PACE_DEBT_MAX`] wait unused, so a stall
/// is not followed by an unbounded burst.
pub struct Pace {
    permits: Arc<Semaphore>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the pacing thread hands out permits.
const PACE_TICK: Duration = Duration::from_micros(250);

/// Most permits that may wait unused.
const PACE_DEBT_MAX: usize = 64;

impl Pace {
    pub fn start(rate: f64) -> Result<Pace> {
        let permits = Arc::new(Semaphore::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (permits, stop) = (Arc::clone(&permits), Arc::clone(&stop));
            std::thread::Builder::new()
                // A load-generator thread: its CPU is the client's.
                .name(format!("{}-pace", crate::cpu::CLIENT_THREADS))
                .spawn(move || {
                    let started = Instant::now();
                    let mut issued = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(PACE_TICK);
                        let due = (started.elapsed().as_secs_f64() * rate) as u64;
                        let room = PACE_DEBT_MAX.saturating_sub(permits.available_permits());
                        permits.add_permits(((due - issued) as usize).min(room));
                        issued = due;
                    }
                })?
        };
        Ok(Pace {
            permits,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until the next call is due.
    pub async fn wait(&self) {
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
    }
}

impl Drop for Pace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.permits.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `callers` callers until `seconds` have passed; returns their tallies added up and how
/// long they took (the last calls finish a little after the deadline).
pub async fn run_callers<F, Fut>(
    ctx: &Arc<Ctx>,
    callers: usize,
    seconds: f64,
    caller: F,
) -> Result<(Tally, f64)>
where
    F: Fn(Arc<Ctx>, usize, Instant) -> Fut,
    Fut: Future<Output = Result<Tally>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|i| tokio::spawn(caller(Arc::clone(ctx), i, deadline)))
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(&task.await.context("a caller panicked")??);
    }
    Ok((tally, started.elapsed().as_secs_f64()))
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A Check of `--check-positions` positions, skus picked at random.
fn check_request(ctx: &Ctx, rng: &mut Rng) -> pb::CheckRequest {
    pb::CheckRequest {
        positions: (0..ctx.options.check_positions)
            .map(|_| pb::Position {
                sku: ctx.sku(rng).to_owned(),
                location: LOCATION.to_owned(),
            })
            .collect(),
    }
}

fn reserve_request(ctx: &Ctx, id: String, sku: &str) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: id,
        channel: "load".to_owned(),
        lines: vec![pb::Line {
            sku: sku.to_owned(),
            location: LOCATION.to_owned(),
            qty: 1,
        }],
        ttl_ms: ctx.ttl_ms(),
    }
}

fn release_request(id: String) -> pb::ReleaseRequest {
    pb::ReleaseRequest { reservation_id: id }
}

fn commit_request(id: String) -> pb::CommitRequest {
    pb::CommitRequest {
        reservation_id: id,
        lines: vec![],
    }
}

/// True if a Check answer is an availability (not an item error).
fn check_ok(response: &pb::CheckResponse) -> bool {
    matches!(
        response.results.first().and_then(|r| r.result.as_ref()),
        Some(pb::check_result::Result::Availability(_))
    ) && response
        .results
        .iter()
        .all(|r| matches!(r.result, Some(pb::check_result::Result::Availability(_))))
}

/// Some(true) granted, Some(false) out of stock.
fn reserve_granted(response: &pb::ReserveResponse) -> Option<bool> {
    match response.result {
        Some(pb::reserve_response::Result::Granted(_)) => Some(true),
        Some(pb::reserve_response::Result::Rejected(_)) => Some(false),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

/// Stocks every sku with [`STOCK_PER_SKU`] units through Adjust, `callers` at a time.
pub async fn stock(ctx: &Arc<Ctx>) -> Result<()> {
    let callers = ctx.options.callers.clamp(1, ctx.skus.len().max(1));
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let ctx = Arc::clone(ctx);
            tokio::spawn(async move {
                let mut client = ctx.client(i);
                for sku in ctx.skus.iter().skip(i).step_by(callers) {
                    client
                        .adjust(pb::AdjustRequest {
                            adjustment_id: format!("{}-stock-{sku}", ctx.run),
                            sku: sku.clone(),
                            location: LOCATION.to_owned(),
                            delta: STOCK_PER_SKU,
                            reason: "load test stock".to_owned(),
                        })
                        .await
                        .with_context(|| format!("stocking {sku}"))?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a stocking task panicked")??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Unary callers

/// Single-position Checks, back to back.
pub async fn check_caller(ctx: Arc<Ctx>, caller: usize, deadline: Instant) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        ctx.paced().await;
        check_once(&mut client, &mut tally, check_request(&ctx, &mut rng)).await;
    }
    Ok(tally)
}

/// CheckSellable calls of `--check-positions` skus at [`LOCATION`], back to back; tallied as
/// `check` (one call); an answer without one number per sku is an error.
pub async fn check_sellable_caller(
    ctx: Arc<Ctx>,
    caller: usize,
    deadline: Instant,
) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        ctx.paced().await;
        // Each sku copied into the request, as a connector building it from its own strings
        // would.
        let skus = (0..ctx.options.check_positions).map(|_| ctx.sku(&mut rng));
        let request = pb::CheckSellableRequest::new(LOCATION, skus);
        let wanted = request.skus.len();
        let started = Instant::now();
        match client.check_sellable(request).await {
            Ok(response) if response.get_ref().sellable.len() == wanted => {
                tally.op("check").ok(started)
            }
            Ok(_) => tally.op("check").error_named("short answer"),
            Err(status) => tally.op("check").error(status.code()),
        }
    }
    Ok(tally)
}

/// One unary Check, tallied as `check`.
async fn check_once(client: &mut Client, tally: &mut Tally, request: pb::CheckRequest) {
    let started = Instant::now();
    match client.check(request).await {
        Ok(response) if check_ok(response.get_ref()) => tally.op("check").ok(started),
        Ok(_) => tally.op("check").error_named("item:error"),
        Err(status) => tally.op("check").error(status.code()),
    }
}

/// One unary Reserve, tallied as `reserve` (out of stock counts as rejected); true if granted.
async fn reserve_once(client: &mut Client, tally: &mut Tally, request: pb::ReserveRequest) -> bool {
    let started = Instant::now();
    match client.reserve(request).await {
        Ok(response) => {
            let op = tally.op("reserve");
            op.ok(started);
            match reserve_granted(response.get_ref()) {
                Some(true) => true,
                Some(false) => {
                    op.rejected += 1;
                    false
                }
                None => {
                    op.error_named("empty answer");
                    false
                }
            }
        }
        Err(status) => {
            tally.op("reserve").error(status.code());
            false
        }
    }
}

/// A durable Reserve of one unit, then (if granted) a durable Release of it, so stock stays.
pub async fn reserve_caller(ctx: Arc<Ctx>, caller: usize, deadline: Instant) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        ctx.paced().await;
        n += 1;
        let id = format!("{}-r{caller}-{n}", ctx.run);
        let request = reserve_request(&ctx, id.clone(), ctx.sku(&mut rng));
        if reserve_once(&mut client, &mut tally, request).await {
            let started = Instant::now();
            match client.release(release_request(id)).await {
                Ok(_) => tally.op("release").ok(started),
                Err(status) => tally.op("release").error(status.code()),
            }
        }
    }
    Ok(tally)
}

/// Durable Reserves of one unit, back to back; the holds are left to expire.
pub async fn reserve_only_caller(ctx: Arc<Ctx>, caller: usize, deadline: Instant) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        ctx.paced().await;
        n += 1;
        let id = format!("{}-o{caller}-{n}", ctx.run);
        reserve_once(
            &mut client,
            &mut tally,
            reserve_request(&ctx, id, ctx.sku(&mut rng)),
        )
        .await;
    }
    Ok(tally)
}

/// 80% Check, 15% Reserve, 5% Commit or Release (half each) of a hold this caller placed.
pub async fn mix_caller(ctx: Arc<Ctx>, caller: usize, deadline: Instant) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    let mut holds: VecDeque<String> = VecDeque::with_capacity(MIX_HOLDS_MAX);
    let mut n = 0u64;
    while Instant::now() < deadline {
        ctx.paced().await;
        let draw = rng.below(100);
        let resolve = if draw >= 95 { holds.pop_front() } else { None };
        if let Some(id) = resolve {
            let commit = rng.below(2) == 0;
            let started = Instant::now();
            let (op, result) = if commit {
                let result = client.commit(commit_request(id)).await.map(|_| ());
                ("commit", result)
            } else {
                let result = client.release(release_request(id)).await.map(|_| ());
                ("release", result)
            };
            match result {
                Ok(()) => tally.op(op).ok(started),
                Err(status) => tally.op(op).error(status.code()),
            }
        } else if draw < 80 {
            check_once(&mut client, &mut tally, check_request(&ctx, &mut rng)).await;
        } else {
            n += 1;
            let id = format!("{}-m{caller}-{n}", ctx.run);
            let request = reserve_request(&ctx, id.clone(), ctx.sku(&mut rng));
            if reserve_once(&mut client, &mut tally, request).await {
                if holds.len() == MIX_HOLDS_MAX {
                    holds.pop_front();
                }
                holds.push_back(id);
            }
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------------
// Session callers

/// What a request in flight on a session was.
enum Sent {
    Check,
    Reserve(String),
    Release,
}

/// One Session stream kept `options.pipeline` requests deep: Checks, or (with `writes`)
/// Reserves each followed by the Release of its hold.
pub async fn session_caller(
    ctx: Arc<Ctx>,
    caller: usize,
    deadline: Instant,
    writes: bool,
) -> Result<Tally> {
    let mut client = ctx.client(caller);
    let mut rng = Rng::new(caller as u64);
    let mut tally = Tally::default();
    let depth = ctx.options.pipeline.max(1);
    // Never full: at most `depth` requests are in flight.
    let (requests, outbound) = mpsc::channel::<pb::SessionRequest>(depth + 1);
    let mut answers = client
        .session(ReceiverStream::new(outbound))
        .await
        .context("opening a session")?
        .into_inner();
    let mut in_flight: HashMap<u64, (Instant, Sent)> = HashMap::with_capacity(depth);
    let mut next_id = 0u64;
    let mut holds = 0u64;

    // The next request: a release if one is owed, else a check or a reserve.
    let mut send = |in_flight: &mut HashMap<u64, (Instant, Sent)>,
                    release: Option<String>|
     -> pb::SessionRequest {
        next_id += 1;
        let (request, sent) = match release {
            Some(id) => (Ask::Release(release_request(id)), Sent::Release),
            None if writes => {
                holds += 1;
                let id = format!("{}-s{caller}-{holds}", ctx.run);
                let request = reserve_request(&ctx, id.clone(), ctx.sku(&mut rng));
                (Ask::Reserve(request), Sent::Reserve(id))
            }
            None => (Ask::Check(check_request(&ctx, &mut rng)), Sent::Check),
        };
        in_flight.insert(next_id, (Instant::now(), sent));
        pb::SessionRequest {
            correlation_id: next_id,
            request: Some(request),
        }
    };

    for _ in 0..depth {
        let request = send(&mut in_flight, None);
        requests.send(request).await.context("session closed")?;
    }
    while !in_flight.is_empty() {
        let answer = match answers.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => bail!(
                "the session ended with {} requests unanswered",
                in_flight.len()
            ),
            Err(status) => {
                tally.op("stream").error(status.code());
                return Ok(tally);
            }
        };
        let Some((started, sent)) = in_flight.remove(&answer.correlation_id) else {
            bail!("an answer to unknown request {}", answer.correlation_id);
        };
        let mut release = None;
        match (sent, answer.response) {
            (Sent::Check, Some(Answer::Check(response))) if check_ok(&response) => {
                tally.op("check").ok(started);
            }
            (Sent::Reserve(id), Some(Answer::Reserve(response))) => {
                let op = tally.op("reserve");
                op.ok(started);
                match reserve_granted(&response) {
                    Some(true) => release = Some(id),
                    _ => op.rejected += 1,
                }
            }
            (Sent::Release, Some(Answer::Release(_))) => tally.op("release").ok(started),
            (sent, Some(Answer::Error(error))) => {
                let op = match sent {
                    Sent::Check => "check",
                    Sent::Reserve(_) => "reserve",
                    Sent::Release => "release",
                };
                tally
                    .op(op)
                    .error(Code::from_i32(i32::try_from(error.code).unwrap_or(2)));
            }
            (_, other) => tally
                .op("stream")
                .error_named(format!("mismatch: {other:?}")),
        }
        // A hold granted is always released, even past the deadline, so stock stays.
        if release.is_some() || Instant::now() < deadline {
            let request = send(&mut in_flight, release);
            requests.send(request).await.context("session closed")?;
        }
    }
    Ok(tally)
}

// ---------------------------------------------------------------------------------------------
// Bulk

/// RecordSales batches of `options.backfill_sales` one-line sales, back to back, from one store
/// of its own, over `channel`. A batch refused as RESOURCE_EXHAUSTED is resent (it is
/// idempotent) after a short back-off.
pub async fn backfill_caller(
    ctx: Arc<Ctx>,
    channel: Channel,
    caller: usize,
    deadline: Instant,
) -> Result<Tally> {
    let mut client = crate::client(channel);
    let mut rng = Rng::new(caller as u64 ^ 0xBAC4);
    let mut tally = Tally::default();
    let store_id = format!("{}-store-{caller}", ctx.run);
    let mut seq = 0u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut batch: Option<pb::RecordSalesRequest> = None;
    let mut backoff = BULK_BACKOFF;
    while Instant::now() < deadline {
        let request = batch.take().unwrap_or_else(|| pb::RecordSalesRequest {
            store_id: store_id.clone(),
            sales: (0..ctx.options.backfill_sales)
                .map(|_| {
                    seq += 1;
                    pb::Sale {
                        txn_id: format!("t{seq}"),
                        store_seq: seq,
                        occurred_at_ms: now_ms,
                        lines: vec![pb::Line {
                            sku: ctx.sku(&mut rng).to_owned(),
                            location: LOCATION.to_owned(),
                            qty: 1,
                        }],
                    }
                })
                .collect(),
        });
        let started = Instant::now();
        match client.record_sales(request.clone()).await {
            Ok(response) => {
                backoff = BULK_BACKOFF;
                let op = tally.op("record_sales");
                op.ok(started);
                for item in &response.get_ref().results {
                    if let Some(pb::batch_item_result::Result::Error(error)) = &item.result {
                        let code = Code::from_i32(i32::try_from(error.code).unwrap_or(2));
                        op.error_named(format!("item:{}", crate::stats::code_name(code)));
                    }
                }
            }
            Err(status) => {
                tally.op("record_sales").error(status.code());
                if status.code() == Code::ResourceExhausted {
                    batch = Some(request);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BULK_BACKOFF_MAX);
                }
            }
        }
    }
    Ok(tally)
}
