//! `holiday-surge`: every kind of traffic at once, at a marketplace rate rising linearly from
//! `base_rate` to `peak_factor` times it over `duration_secs`, on a catalogue of
//! `catalog_skus` skus.
//!
//! - Marketplace (`callers` callers sharing the paced rate): 45% Checks, 30% new carts (1-2
//!   skus, a few hot skus with little stock in one cart in seven), 25% ends of the caller's
//!   oldest open cart: commit (60%), partial commit (10%), release (15%) or abandonment
//!   (15%), left to expire after `ttl_ms`.
//! - Stores (`stores`): each posts a batch of `batch_sales` sales of its own assortment every
//!   second (a few minutes of till time), now and then one batch late (after the next) or
//!   twice.
//! - Returns: over the second half, carts committed earlier come back, restocked or
//!   quarantined.
//! - Bulk backfill (`bulk_callers`): 1,000-sale RecordSales batches back to back, through the
//!   server's small bulk budget: this is the work that should degrade first (refused as
//!   RESOURCE_EXHAUSTED and resent), while the hot path's p99 stays put.
//!
//! When the ramp ends, the open carts are ended, the abandoned ones are given their TTL, and
//! the verification reads everything back: every catalogue position's on_hand = stock -
//! committed + returned, reserved = 0 (the abandoned carts expired), available never negative
//! at the DC; every cart in the state its answers left it (EXPIRED for the abandoned); every
//! store's sequence contiguous with no gaps, each sale recorded once and every resend
//! absorbed; the store positions down by exactly what was sold.

use super::market::{self, CartEnd, Ledger, lock};
use super::verify::{ExpectedStore, HoldStateName};
use super::{DC, Env, Outcome, Rng, call, now_ms, pct, stock, verify_against};
use crate::pb;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Skus with little stock that one cart in seven asks for.
const HOT_SKUS: usize = 20;
const HOT_STOCK: i64 = 10;
/// Stock of every other sku at the DC.
const CATALOG_STOCK: i64 = 100;
/// How often a store posts a batch, and how much till time that stands for.
const STORE_PERIOD: Duration = Duration::from_secs(1);
const STORE_TILL_SPAN_MS: u64 = 5 * 60_000;
/// Skus a store sells (its assortment).
const STORE_ASSORTMENT: usize = 200;
/// Sales per backfill batch.
const BACKFILL_SALES: usize = 1_000;
/// Open carts a caller keeps before it must end one.
const OPEN_CARTS_MAX: usize = 64;
/// How often the pacer hands out permits, and the most it lets pile up unused.
const PACE_TICK: Duration = Duration::from_millis(5);

/// The ids of the carts that ended committed, for the returns.
type Committed = Arc<Mutex<Vec<(String, Vec<pb::Line>)>>>;

pub async fn run(env: &Arc<Env>) -> Result<Outcome> {
    let o = &env.options;
    let skus: Arc<Vec<String>> = Arc::new((0..o.catalog_skus).map(|k| env.id("sku", k)).collect());
    let hot: Arc<Vec<String>> = Arc::new(skus[..HOT_SKUS].to_vec());
    stock(env, &skus[..HOT_SKUS], DC, HOT_STOCK).await?;
    stock(env, &skus[HOT_SKUS..], DC, CATALOG_STOCK).await?;
    let mut stocked: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (k, sku) in skus.iter().enumerate() {
        let qty = if k < HOT_SKUS {
            HOT_STOCK
        } else {
            CATALOG_STOCK
        };
        stocked.insert((sku.clone(), DC.to_owned()), qty);
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let committed: Committed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let permits = Arc::new(Semaphore::new(0));
    let duration = Duration::from_secs_f64(o.duration_secs);
    env.stage("ramp (ms)", duration.as_millis() as u64);
    let started = Instant::now();
    // The recorder started before the stocking; the ramp's quarters are counted from here.
    let ramp_t0_s = env.recorder.elapsed_s();

    let pacer = {
        let (permits, stop, env) = (Arc::clone(&permits), Arc::clone(&stop), Arc::clone(env));
        tokio::spawn(async move {
            let (base, peak) = (env.options.base_rate, env.options.peak_factor);
            let total_s = env.options.duration_secs;
            let debt_max = env.options.callers * 2;
            let mut issued = 0u64;
            let mut tick = tokio::time::interval(PACE_TICK);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = started.elapsed().as_secs_f64().min(total_s);
                // The integral of base * (1 + (peak - 1) * t / total) from 0 to t.
                let due = (base * (t + (peak - 1.0) * t * t / (2.0 * total_s))) as u64;
                let room = debt_max.saturating_sub(permits.available_permits());
                permits.add_permits(((due - issued) as usize).min(room));
                issued = due;
                env.progress
                    .set_position(started.elapsed().as_millis() as u64);
            }
            permits.close();
        })
    };
    let callers: Vec<_> = (0..o.callers)
        .map(|t| {
            let (env, skus, hot, ledger, committed, permits) = (
                Arc::clone(env),
                Arc::clone(&skus),
                Arc::clone(&hot),
                Arc::clone(&ledger),
                Arc::clone(&committed),
                Arc::clone(&permits),
            );
            tokio::spawn(async move {
                marketplace(&env, t, &skus, &hot, &ledger, &committed, &permits).await
            })
        })
        .collect();
    let stores: Vec<_> = (0..o.stores)
        .map(|s| {
            let (env, skus, stop) = (Arc::clone(env), Arc::clone(&skus), Arc::clone(&stop));
            tokio::spawn(async move { store(&env, s, &skus, &stop, false).await })
        })
        .collect();
    let backfills: Vec<_> = (0..o.bulk_callers)
        .map(|b| {
            let (env, skus, stop) = (Arc::clone(env), Arc::clone(&skus), Arc::clone(&stop));
            tokio::spawn(async move { store(&env, o_stores(&env) + b, &skus, &stop, true).await })
        })
        .collect();
    let returns = {
        let (env, committed, ledger, stop) = (
            Arc::clone(env),
            Arc::clone(&committed),
            Arc::clone(&ledger),
            Arc::clone(&stop),
        );
        tokio::spawn(async move { returns_wave(&env, &committed, &ledger, &stop, started).await })
    };

    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    pacer.await.context("the pacer panicked")?;
    let mut marketplace_ops = 0u64;
    for caller in callers {
        marketplace_ops += caller.await.context("a marketplace caller panicked")?;
    }
    let ramp_s = started.elapsed().as_secs_f64();
    let mut expected_stores: BTreeMap<String, ExpectedStore> = BTreeMap::new();
    let mut store_sales = 0u64;
    let mut backfill_sales = 0u64;
    let mut sale_positions: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    for (task, backfill) in stores
        .into_iter()
        .map(|t| (t, false))
        .chain(backfills.into_iter().map(|t| (t, true)))
    {
        let posted = task.await.context("a store panicked")?;
        if backfill {
            backfill_sales += posted.sales;
        } else {
            store_sales += posted.sales;
        }
        for (key, qty) in posted.sold {
            *sale_positions.entry(key).or_default() -= qty;
        }
        failures.extend(posted.failures);
        expected_stores.insert(
            posted.id,
            ExpectedStore {
                contiguous_seq: posted.sales,
                newest_seq: posted.sales,
                gaps: vec![],
                sales_recorded: posted.sales,
                duplicates_absorbed: posted.duplicates,
                lag_ms_max: None,
            },
        );
    }
    let returns = returns.await.context("the returns task panicked")?;

    // The abandoned carts expire once their TTL has passed (reads count a lapsed hold as
    // expired at once, before its expiry event is recorded).
    env.progress.set_message("waiting for expiry");
    tokio::time::sleep(Duration::from_millis(o.ttl_ms + 500)).await;

    let mut verdict = super::Verdict::new();
    let mut expected = {
        let mut ledger = lock(&ledger);
        ledger.sold_at.extend(sale_positions.keys().cloned());
        for failure in ledger.failures.iter().chain(&failures) {
            verdict.check(false, || failure.clone());
        }
        ledger.expected(&stocked)
    };
    for (key, qty) in sale_positions {
        let position = expected.positions.entry(key).or_default();
        position.on_hand += qty;
        position.no_oversell = false;
    }
    expected.stores = expected_stores;
    let (last, observed) = verify_against(env, &expected).await?;
    verdict.merge("after the surge", last);

    let ledger = lock(&ledger);
    let recorder = &env.recorder;
    let quarter = o.duration_secs / 4.0;
    let p99s = |op: &'static str| -> String {
        (0..4)
            .map(|q| {
                recorder
                    .p99_between(
                        op,
                        ramp_t0_s + q as f64 * quarter,
                        ramp_t0_s + (q + 1) as f64 * quarter,
                    )
                    .map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1e3))
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let refused = |op: &str| -> u64 {
        recorder
            .rows()
            .iter()
            .find(|r| r.op == op)
            .and_then(|r| r.errors.get("RESOURCE_EXHAUSTED").copied())
            .unwrap_or(0)
    };
    let expired = ledger
        .holds
        .values()
        .filter(|h| {
            matches!(
                h,
                super::verify::ExpectedHold::State(HoldStateName::Expired, _)
            )
        })
        .count();
    let mut outcome = Outcome::default();
    outcome.observed(&expected, &observed);
    outcome.fact("catalog_skus", o.catalog_skus);
    outcome.fact("rate_start_per_s", o.base_rate as u64);
    outcome.fact("rate_peak_per_s", (o.base_rate * o.peak_factor) as u64);
    outcome.fact("marketplace_ops", marketplace_ops);
    outcome.fact("carts", ledger.holds.len());
    outcome.fact("granted", ledger.granted);
    outcome.fact("rejected", ledger.rejected);
    outcome.fact("committed_units", ledger.committed_units);
    outcome.fact("expired", expired);
    outcome.fact("expired_before_their_end", ledger.expired_first);
    outcome.fact("store_sales", store_sales);
    outcome.fact("backfill_sales", backfill_sales);
    outcome.fact("returns", returns);
    let store_duplicates: u64 = expected
        .stores
        .values()
        .map(|s| s.duplicates_absorbed)
        .sum();
    outcome.fact("duplicates_absorbed", ledger.duplicates + store_duplicates);
    outcome.fact(
        "bulk_refused",
        refused("record_sales") + refused("backfill:record_sales"),
    );
    outcome.notes.push(format!(
        "ramp {:.0} -> {:.0} calls/s over {:.0} s: {} marketplace calls of {:.0} due ({:.0}/s on \
         average; fewer than due means {} callers could not keep up)",
        o.base_rate,
        o.base_rate * o.peak_factor,
        o.duration_secs,
        marketplace_ops,
        o.base_rate * o.duration_secs * (1.0 + o.peak_factor) / 2.0,
        marketplace_ops as f64 / ramp_s.max(1e-9),
        o.callers
    ));
    outcome.notes.push(format!(
        "hot-path p99 by quarter of the ramp (ms): check {} | reserve {} | commit {}",
        p99s("check"),
        p99s("reserve"),
        p99s("commit")
    ));
    outcome.notes.push(format!(
        "bulk by quarter (ms): store batches {} | backfill {}; refused while the bulk budget was \
         in use (and resent): stores {}, backfill {}, returns {}",
        p99s("record_sales"),
        p99s("backfill:record_sales"),
        refused("record_sales"),
        refused("backfill:record_sales"),
        refused("record_returns")
    ));
    if let Some(bound_ms) = o.hot_p99_ms_max {
        for op in ["check", "reserve", "commit"] {
            for q in 0..4 {
                let from = ramp_t0_s + q as f64 * quarter;
                if let Some(us) = recorder.p99_between(op, from, from + quarter) {
                    let ms = us as f64 / 1e3;
                    verdict.check(ms <= bound_ms, || {
                        format!(
                            "hot path: {op} p99 {ms:.2} ms in quarter {} of the ramp, bound \
                             {bound_ms} ms",
                            q + 1
                        )
                    });
                }
            }
        }
    }
    outcome.verdict = verdict;
    Ok(outcome)
}

/// Stores are numbered 0..stores, the backfill callers after them.
fn o_stores(env: &Env) -> usize {
    env.options.stores
}

/// One marketplace caller: takes a permit from the pacer per call until the ramp ends, then
/// ends its open carts. Returns the calls it made.
async fn marketplace(
    env: &Arc<Env>,
    t: usize,
    skus: &[String],
    hot: &[String],
    ledger: &Arc<Mutex<Ledger>>,
    committed: &Committed,
    permits: &Semaphore,
) -> u64 {
    let mut rng = Rng::new(env.options.seed ^ 0x4011 ^ (t as u64) << 32);
    let mut open: VecDeque<(String, Vec<pb::Line>, CartEnd)> = VecDeque::new();
    let mut n = 0u64;
    let client = env.client(t);
    while let Ok(permit) = permits.acquire().await {
        permit.forget();
        n += 1;
        let draw = rng.below(100);
        if draw < 45 || (draw >= 75 && open.is_empty()) {
            let sku = if rng.below(10) == 0 {
                &hot[rng.below(hot.len() as u64) as usize]
            } else {
                &skus[rng.below(skus.len() as u64) as usize]
            };
            let request = pb::CheckRequest {
                positions: vec![pb::Position {
                    sku: sku.clone(),
                    location: DC.to_owned(),
                }],
            };
            if let Err(status) = call(&env.recorder, "check", || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.check(request).await }
            })
            .await
            {
                lock(ledger)
                    .failures
                    .push(format!("check failed: {status}"));
            }
        } else if draw < 75 && open.len() < OPEN_CARTS_MAX {
            let mut lines = market::cart_lines(&mut rng, skus, 2, 1);
            if rng.below(7) == 0 && !lines.iter().any(|l| hot.contains(&l.sku)) {
                lines[0].sku = hot[rng.below(hot.len() as u64) as usize].clone();
            }
            let id = env.id("cart", format!("{t}-{n}"));
            if market::reserve(env, t, &id, &lines, env.options.ttl_ms, ledger).await {
                let end = match rng.below(100) {
                    0..60 => CartEnd::Commit,
                    60..70 => CartEnd::CommitPartial,
                    70..85 => CartEnd::Release,
                    _ => CartEnd::Abandon,
                };
                open.push_back((id, lines, end));
            }
        } else if let Some((id, lines, end)) = open.pop_front() {
            end_one(env, t, &id, &lines, end, ledger, committed).await;
        }
    }
    while let Some((id, lines, end)) = open.pop_front() {
        end_one(env, t, &id, &lines, end, ledger, committed).await;
    }
    n
}

async fn end_one(
    env: &Env,
    t: usize,
    id: &str,
    lines: &[pb::Line],
    end: CartEnd,
    ledger: &Mutex<Ledger>,
    committed: &Committed,
) {
    market::end_cart(env, t, id, lines, end, ledger).await;
    if end == CartEnd::Commit
        && matches!(
            lock(ledger).holds.get(id),
            Some(super::verify::ExpectedHold::State(
                HoldStateName::Committed,
                _
            ))
        )
    {
        committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id.to_owned(), lines.to_vec()));
    }
}

/// What one store (or backfill caller) posted.
struct Posted {
    id: String,
    /// Distinct sales, seq 1..=sales.
    sales: u64,
    duplicates: u64,
    sold: BTreeMap<(String, String), i64>,
    failures: Vec<String>,
}

/// One store: a batch every [`STORE_PERIOD`] (a backfill caller: [`BACKFILL_SALES`]-sale
/// batches back to back) until `stop`; now and then a batch goes out after the next one, or
/// twice. Every batch is resent until answered, so the feed ends with no gap.
async fn store(env: &Env, s: usize, skus: &[String], stop: &AtomicBool, backfill: bool) -> Posted {
    let o = &env.options;
    let id = if backfill {
        env.id("backfill", s)
    } else {
        env.id("store", s)
    };
    let op: &'static str = if backfill {
        "backfill:record_sales"
    } else {
        "record_sales"
    };
    let mut rng = Rng::new(o.seed ^ 0x5702 ^ (s as u64) << 28);
    let first = rng.below(skus.len() as u64) as usize;
    let assortment: Vec<&String> = (0..STORE_ASSORTMENT.min(skus.len()))
        .map(|k| &skus[(first + k * 7) % skus.len()])
        .collect();
    let size = if backfill {
        BACKFILL_SALES
    } else {
        o.batch_sales
    };
    let mut posted = Posted {
        id: id.clone(),
        sales: 0,
        duplicates: 0,
        sold: BTreeMap::new(),
        failures: Vec::new(),
    };
    let client = env.client(s);
    let seq = AtomicU64::new(0);
    // A batch holds the sales of the last few minutes of till time, in order, the newest just
    // before it is posted: so a store that keeps up shows a lag of a moment, not minutes.
    let make = |rng: &mut Rng, posted: &mut Posted| -> pb::RecordSalesRequest {
        let now = now_ms();
        let sales = (0..size)
            .map(|k| {
                let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
                let sku = assortment[rng.below(assortment.len() as u64) as usize];
                let qty = 1 + rng.below(2);
                *posted.sold.entry((sku.clone(), id.clone())).or_default() += qty as i64;
                pb::Sale {
                    txn_id: format!("t{n}"),
                    store_seq: n,
                    occurred_at_ms: now.saturating_sub(
                        STORE_TILL_SPAN_MS - STORE_TILL_SPAN_MS * (k as u64 + 1) / size as u64,
                    ),
                    lines: vec![pb::Line {
                        sku: sku.clone(),
                        location: id.clone(),
                        qty,
                    }],
                }
            })
            .collect();
        pb::RecordSalesRequest {
            store_id: id.clone(),
            sales,
        }
    };
    // Stores start at a random moment of their first period, so they do not all post at once.
    if !backfill {
        tokio::time::sleep(STORE_PERIOD.mul_f64(rng.below(1_000) as f64 / 1_000.0)).await;
    }
    let mut late: Option<pb::RecordSalesRequest> = None;
    while !stop.load(Ordering::Relaxed) {
        let batch = make(&mut rng, &mut posted);
        if late.is_none()
            && !backfill
            && pct(o.seed, 40, (s as u64) << 32 | seq.load(Ordering::Relaxed)) < o.dup_pct
        {
            // This batch goes out after the next one: a gap, then out of order.
            late = Some(batch);
        } else {
            let twice = pct(o.seed, 41, (s as u64) << 32 | seq.load(Ordering::Relaxed)) < o.dup_pct;
            if twice {
                send(env, &client, op, batch.clone(), &mut posted, false).await;
                send(env, &client, op, batch, &mut posted, true).await;
            } else {
                send(env, &client, op, batch, &mut posted, false).await;
            }
            if let Some(batch) = late.take() {
                send(env, &client, op, batch, &mut posted, false).await;
            }
        }
        if !backfill {
            tokio::time::sleep(STORE_PERIOD).await;
        }
    }
    if let Some(batch) = late.take() {
        send(env, &client, op, batch, &mut posted, false).await;
    }
    posted.sales = seq.load(Ordering::Relaxed);
    posted
}

/// Over the second half of the ramp, returns carts committed earlier: every half second, the
/// carts committed since the last batch (at most 100), each line restocked (70%) or sent to
/// inspection. Returns how many were recorded.
async fn returns_wave(
    env: &Env,
    committed: &Committed,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
    started: Instant,
) -> u64 {
    let o = &env.options;
    let half = Duration::from_secs_f64(o.duration_secs / 2.0);
    tokio::time::sleep(half.saturating_sub(started.elapsed())).await;
    let mut returned = 0u64;
    let mut taken = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let carts: Vec<(String, Vec<pb::Line>)> = {
            let committed = committed.lock().unwrap_or_else(|e| e.into_inner());
            let end = committed.len().min(taken + 100);
            let carts = committed[taken..end].to_vec();
            taken = end;
            carts
        };
        if carts.is_empty() {
            continue;
        }
        let returns: Vec<pb::Return> = carts
            .iter()
            .enumerate()
            .map(|(k, (cart, lines))| pb::Return {
                return_id: format!("{cart}-return"),
                lines: lines
                    .iter()
                    .map(|line| pb::ReturnLine {
                        sku: line.sku.clone(),
                        location: line.location.clone(),
                        qty: line.qty,
                        disposition: if pct(o.seed, 50, (taken + k) as u64) < 70 {
                            pb::ReturnDisposition::Restock as i32
                        } else {
                            pb::ReturnDisposition::Inspect as i32
                        },
                    })
                    .collect(),
            })
            .collect();
        let recorded = market::record_returns(env, 0, &returns, ledger).await;
        let mut ledger = lock(ledger);
        for r in recorded {
            returned += 1;
            for line in &returns[r].lines {
                if line.disposition == pb::ReturnDisposition::Restock as i32 {
                    ledger.add(&line.sku, &line.location, line.qty as i64);
                } else {
                    *ledger
                        .quarantined
                        .entry((line.sku.clone(), line.location.clone()))
                        .or_default() += line.qty as i64;
                }
            }
        }
    }
    returned
}

/// Sends one store batch until answered; each sale must come back new, or (for a resend) a
/// duplicate.
async fn send(
    env: &Env,
    client: &super::Client,
    op: &'static str,
    request: pb::RecordSalesRequest,
    posted: &mut Posted,
    resend: bool,
) {
    let first_seq = request.sales.first().map_or(0, |s| s.store_seq);
    let answer = call(&env.recorder, op, || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.record_sales(request).await }
    })
    .await;
    match answer {
        Ok(response) => {
            for item in response.results {
                match item.result {
                    Some(pb::batch_item_result::Result::Recorded(r)) if r.duplicate == resend => {
                        posted.duplicates += u64::from(r.duplicate);
                    }
                    other => posted.failures.push(format!(
                        "store {}: sale seq {} answered {other:?} (resend: {resend})",
                        posted.id,
                        first_seq + u64::from(item.index)
                    )),
                }
            }
        }
        Err(status) => posted
            .failures
            .push(format!("store {}: a batch failed: {status}", posted.id)),
    }
}
