//! `store-reconnect`: stores that were offline for two hours reconnect at once and post their
//! backlogs.
//!
//! Each store's backlog is `sales_per_store` sales (1 or 2 lines of the shared skus, sold at the
//! store's own location, with till times spread over the two hours), cut into batches of
//! `batch_sales`. The batches go out in a shuffled order, `dup_pct` of them are resent later in
//! full, and most batches start with a copy of a sale from an earlier batch (a till resending
//! what it was unsure of). One batch from the middle is held back. Every store posts at the same
//! time, one batch after another, resending batches the server refuses as overloaded.
//!
//! Verified twice. With the batch held back: each store's contiguous sequence stops just
//! before it, its newest sequence is the last of the backlog, the one gap is exactly the held
//! batch, and sales recorded count each sale once. After the held batch and one live sale:
//! no gap, contiguous = newest = backlog + 1, every resend absorbed as a duplicate (the
//! server's count equals the duplicate answers the client got, and no first send was answered
//! as a duplicate), no sequence reused or abandoned, the lag back under a minute, and every
//! (sku, store) position's on_hand equal to minus the units sold there.

use super::verify::{ExpectedPosition, ExpectedStore};
use super::{Env, Expected, Outcome, Rng, call, now_ms, pct, verify_against};
use crate::pb;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long the stores were offline: the till times of their backlogs span this.
const OFFLINE_MS: u64 = 2 * 3_600_000;
/// The live sale's lag must be under this once the backlog is in.
const LAG_MS_MAX: u64 = 60_000;

/// One store's plan: its sales (index = seq - 1) and its batches (ranges of seqs).
struct StorePlan {
    id: String,
    sales: Vec<pb::Sale>,
    /// Batches to send before the mid-point check, in order; each is a list of sale indexes,
    /// the first possibly a resent copy.
    first_wave: Vec<Vec<usize>>,
    /// The held-back batch (inclusive seq range) and its sale indexes.
    held: Option<((u64, u64), Vec<usize>)>,
}

/// What a store's sends came back as.
#[derive(Default)]
struct Sent {
    /// Sale index -> times answered as recorded for the first time (must end at exactly 1).
    firsts: BTreeMap<usize, u32>,
    duplicates: u64,
    items: u64,
    failures: Vec<String>,
}

fn plan(env: &Env, s: usize, skus: &[String]) -> StorePlan {
    let o = &env.options;
    let id = env.id("store", s);
    let mut rng = Rng::new(o.seed ^ (s as u64).wrapping_mul(0x2545_F491));
    let m = o.sales_per_store as u64;
    let start_ms = now_ms().saturating_sub(OFFLINE_MS);
    let sales: Vec<pb::Sale> = (1..=m)
        .map(|seq| {
            let first = rng.below(skus.len() as u64) as usize;
            let mut lines = vec![pb::Line {
                sku: skus[first].clone(),
                location: id.clone(),
                qty: 1 + rng.below(3),
            }];
            if skus.len() > 1 && rng.below(2) == 0 {
                let second = (first + 1 + rng.below(skus.len() as u64 - 1) as usize) % skus.len();
                lines.push(pb::Line {
                    sku: skus[second].clone(),
                    location: id.clone(),
                    qty: 1 + rng.below(3),
                });
            }
            pb::Sale {
                txn_id: format!("t{seq}"),
                store_seq: seq,
                occurred_at_ms: start_ms + seq * OFFLINE_MS / (m + 1),
                lines,
            }
        })
        .collect();
    let mut batches: Vec<Vec<usize>> = (0..sales.len())
        .collect::<Vec<_>>()
        .chunks(o.batch_sales)
        .map(<[usize]>::to_vec)
        .collect();
    // Hold back one batch that is not the last, so its range shows as a gap.
    let held = if batches.len() >= 2 {
        let k = rng.below(batches.len() as u64 - 1) as usize;
        let batch = batches.remove(k);
        let range = (
            batch[0] as u64 + 1,
            *batch.last().expect("not empty") as u64 + 1,
        );
        Some((range, batch))
    } else {
        None
    };
    // Shuffle what is left (Fisher-Yates), then resend some batches later in full.
    for i in (1..batches.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        batches.swap(i, j);
    }
    let mut first_wave: Vec<Vec<usize>> = Vec::with_capacity(batches.len() * 2);
    for (b, batch) in batches.iter().enumerate() {
        let mut batch = batch.clone();
        // A till resending a sale of the batch before, unsure it got through.
        if let Some(previous) = first_wave.last()
            && pct(o.seed, 11, (s * 1_000_003 + b) as u64) < 50
        {
            let copy = previous[rng.below(previous.len() as u64) as usize];
            if !batch.contains(&copy) {
                batch.insert(0, copy);
            }
        }
        first_wave.push(batch);
    }
    // Resend some batches in full, each somewhere after its original. Going backwards keeps the
    // positions still to visit where they were.
    for b in (0..first_wave.len()).rev() {
        if pct(o.seed, 12, (s * 1_000_003 + b) as u64) < o.dup_pct {
            let at = b + 1 + rng.below((first_wave.len() - b) as u64) as usize;
            let resend = first_wave[b].clone();
            first_wave.insert(at, resend);
        }
    }
    StorePlan {
        id,
        sales,
        first_wave,
        held,
    }
}

/// Sends one batch (sale indexes of `plan`) until it is answered, and tallies its items.
async fn send(env: &Env, s: usize, plan: &StorePlan, batch: &[usize], sent: &mut Sent) {
    let request = pb::RecordSalesRequest {
        store_id: plan.id.clone(),
        sales: batch.iter().map(|&k| plan.sales[k].clone()).collect(),
    };
    let client = env.client(s);
    let answer = call(&env.recorder, "record_sales", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.record_sales(request).await }
    })
    .await;
    let response = match answer {
        Ok(response) => response,
        Err(status) => {
            sent.failures
                .push(format!("store {}: a batch failed: {status}", plan.id));
            return;
        }
    };
    for item in response.results {
        sent.items += 1;
        let k = batch[item.index as usize];
        match item.result {
            Some(pb::batch_item_result::Result::Recorded(recorded)) => {
                if recorded.duplicate {
                    sent.duplicates += 1;
                } else {
                    *sent.firsts.entry(k).or_default() += 1;
                }
            }
            Some(pb::batch_item_result::Result::Error(error)) => {
                env.recorder
                    .error("record_sales", format!("item:{:?}", error.reason()));
                sent.failures.push(format!(
                    "store {}: sale seq {} refused: {}",
                    plan.id,
                    k + 1,
                    error.message
                ));
            }
            None => sent
                .failures
                .push(format!("store {}: an empty item answer", plan.id)),
        }
    }
    env.progress.inc(1);
}

pub async fn run(env: &Arc<Env>) -> Result<Outcome> {
    let o = &env.options;
    let skus: Vec<String> = (0..o.skus).map(|k| env.id("sku", k)).collect();
    let plans: Vec<Arc<StorePlan>> = (0..o.stores)
        .map(|s| Arc::new(plan(env, s, &skus)))
        .collect();
    let batches: usize = plans.iter().map(|p| p.first_wave.len()).sum();
    env.stage("backlogs", batches as u64);

    // Everyone reconnects at once, each store posting its batches one after another.
    let mut tasks = tokio::task::JoinSet::new();
    for (s, plan) in plans.iter().enumerate() {
        let (env, plan) = (Arc::clone(env), Arc::clone(plan));
        tasks.spawn(async move {
            let mut sent = Sent::default();
            for batch in &plan.first_wave {
                send(&env, s, &plan, batch, &mut sent).await;
            }
            (s, sent)
        });
    }
    let mut sent: Vec<Sent> = (0..o.stores).map(|_| Sent::default()).collect();
    while let Some(joined) = tasks.join_next().await {
        let (s, store) = joined.context("a store task panicked")?;
        sent[s] = store;
    }

    let mut verdict = super::Verdict::new();
    let mut outcome = Outcome::default();
    let expected_mid = expectation(&plans, &sent, false);
    let (mid, observed_mid) = verify_against(env, &expected_mid).await?;
    let observed = &observed_mid;
    verdict.merge("with one batch held back", mid);
    let gaps_mid: u64 = observed.stores.values().map(|s| s.missing_count).sum();
    let lag_mid = observed
        .stores
        .values()
        .map(|s| s.newest_lag_ms)
        .max()
        .unwrap_or(0);

    // The held batches, resent once more for good measure, then one live sale per store.
    env.stage("held batches", plans.len() as u64 * 3);
    let mut tasks = tokio::task::JoinSet::new();
    for (s, plan) in plans.iter().enumerate() {
        let (env, plan) = (Arc::clone(env), Arc::clone(plan));
        let mut store = std::mem::take(&mut sent[s]);
        tasks.spawn(async move {
            if let Some((_, batch)) = &plan.held {
                send(&env, s, &plan, batch, &mut store).await;
                send(&env, s, &plan, batch, &mut store).await;
            }
            let live = live_sale(&plan);
            let request = pb::RecordSalesRequest {
                store_id: plan.id.clone(),
                sales: vec![live],
            };
            let client = env.client(s);
            match call(&env.recorder, "record_sales", || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.record_sales(request).await }
            })
            .await
            {
                Ok(response) => {
                    let ok = matches!(
                        response.results.first().and_then(|r| r.result.as_ref()),
                        Some(pb::batch_item_result::Result::Recorded(r)) if !r.duplicate
                    );
                    if !ok {
                        store
                            .failures
                            .push(format!("store {}: the live sale was not recorded", plan.id));
                    }
                }
                Err(status) => store
                    .failures
                    .push(format!("store {}: the live sale failed: {status}", plan.id)),
            }
            (s, store)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (s, store) = joined.context("a store task panicked")?;
        sent[s] = store;
    }

    let expected = expectation(&plans, &sent, true);
    let (last, observed) = verify_against(env, &expected).await?;
    outcome.observed(&expected, &observed);
    for line in &mut outcome.stores {
        line.lag_ms_mid = observed_mid
            .stores
            .get(&line.store_id)
            .map(|s| s.newest_lag_ms);
    }
    verdict.merge("after reconnecting", last);
    for (s, store) in sent.iter().enumerate() {
        for failure in &store.failures {
            verdict.check(false, || failure.clone());
        }
        for k in 0..plans[s].sales.len() {
            let n = store.firsts.get(&k).copied().unwrap_or(0);
            verdict.check(n == 1, || {
                format!(
                    "store {}: sale seq {} was answered as newly recorded {n} times",
                    plans[s].id,
                    k + 1
                )
            });
        }
    }
    let lag_final = observed
        .stores
        .values()
        .map(|s| s.newest_lag_ms)
        .max()
        .unwrap_or(0);
    let items: u64 = sent.iter().map(|s| s.items).sum();
    let duplicates: u64 = sent.iter().map(|s| s.duplicates).sum();
    outcome.fact("stores", o.stores);
    outcome.fact("sales_recorded", o.stores * (o.sales_per_store + 1));
    outcome.fact("items_sent", items);
    outcome.fact("duplicates_absorbed", duplicates);
    outcome.fact("batches", batches);
    outcome.fact("gaps_missing_mid", gaps_mid);
    outcome.fact("lag_ms_max_mid", lag_mid);
    outcome.fact("lag_ms_max_final", lag_final);
    outcome.notes.push(format!(
        "{} stores posted {} sales ({} items with resends); {} sequence numbers missing with one \
         batch each held back, 0 expected after; lag max {:.1} min -> {:.1} s",
        o.stores,
        o.stores * o.sales_per_store,
        items,
        gaps_mid,
        lag_mid as f64 / 60_000.0,
        lag_final as f64 / 1_000.0
    ));
    outcome.verdict = verdict;
    Ok(outcome)
}

/// The store's first sale after reconnecting, at the till now.
fn live_sale(plan: &StorePlan) -> pb::Sale {
    let seq = plan.sales.len() as u64 + 1;
    pb::Sale {
        txn_id: format!("t{seq}"),
        store_seq: seq,
        occurred_at_ms: now_ms(),
        lines: plan.sales[0].lines.clone(),
    }
}

/// What every store and position must show: mid-way (the held batches missing) or at the end
/// (everything in, plus the live sale).
fn expectation(plans: &[Arc<StorePlan>], sent: &[Sent], done: bool) -> Expected {
    let mut expected = Expected::default();
    for (plan, sent) in plans.iter().zip(sent) {
        let m = plan.sales.len() as u64;
        let held: Vec<usize> = match (&plan.held, done) {
            (Some((_, batch)), false) => batch.clone(),
            _ => Vec::new(),
        };
        let mut sold: Vec<&pb::Sale> = plan
            .sales
            .iter()
            .enumerate()
            .filter(|(k, _)| !held.contains(k))
            .map(|(_, sale)| sale)
            .collect();
        let live = live_sale(plan);
        if done {
            sold.push(&live);
        }
        for sale in &sold {
            for line in &sale.lines {
                expected
                    .positions
                    .entry((line.sku.clone(), line.location.clone()))
                    .or_insert(ExpectedPosition::default())
                    .on_hand -= line.qty as i64;
            }
        }
        let store = match (&plan.held, done) {
            (Some(((first, last), _)), false) => ExpectedStore {
                contiguous_seq: first - 1,
                newest_seq: m,
                gaps: vec![(*first, *last)],
                sales_recorded: m - (last - first + 1),
                duplicates_absorbed: sent.duplicates,
                lag_ms_max: None,
            },
            _ => ExpectedStore {
                contiguous_seq: m + u64::from(done),
                newest_seq: m + u64::from(done),
                gaps: vec![],
                sales_recorded: m + u64::from(done),
                duplicates_absorbed: sent.duplicates,
                lag_ms_max: done.then_some(LAG_MS_MAX),
            },
        };
        expected.stores.insert(plan.id.clone(), store);
    }
    expected
}
