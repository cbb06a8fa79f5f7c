//! `return-wave`: the returns of earlier orders come back, some restocked on arrival and some
//! held for inspection, and the inspection verdicts (restock or scrap) follow "hours later",
//! while marketplace holds go on on the same skus the whole time.
//!
//! 1. Orders: `orders` carts of 1-3 skus (1-2 units each) are reserved and committed by
//!    `callers` callers; with stock per sku close to demand some are refused. A retrying
//!    caller commits twice (the second must come back a duplicate).
//! 2. Returns: `return_pct` of the committed orders are returned in full, each line restocked
//!    at once or sent to inspection; RecordReturns batches (of `batch_sales` returns) go out
//!    shuffled with `dup_pct`
//!    resent, while half the callers keep placing holds (committed in full or in part, or
//!    released).
//! 3. Verdicts: every inspected line but one in ten gets a disposition, restock or scrap,
//!    sometimes split in two; some are resent; one asks for more units than are in
//!    quarantine and must be refused. Holds go on meanwhile.
//!
//! Verified at the end, for every sku: on_hand = stock - committed + restocked on arrival +
//! restocked on inspection; quarantined = inspected - disposed; reserved = 0 and available never
//! negative (no oversell); every order and hold in the state its last answer left it in; every
//! return recorded once, its resends absorbed.

use super::market::{self, CartEnd, Ledger, lock};
use super::verify::{ExpectedHold, HoldStateName};
use super::{DC, Env, Outcome, Rng, call, pct, stock, verify_against};
use crate::pb;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// TTL of every hold in this scenario: none expires on its own here.
const HOLD_TTL_MS: u64 = 600_000;

/// One quarantined return line awaiting its verdict.
#[derive(Debug, Clone)]
struct Inspected {
    return_id: String,
    sku: String,
    qty: u64,
}

pub async fn run(env: &Arc<Env>) -> Result<Outcome> {
    let o = &env.options;
    let skus: Arc<Vec<String>> = Arc::new((0..o.skus).map(|k| env.id("sku", k)).collect());
    // A little more than the orders ask for (2 lines of 1.5 units on average), so that only
    // some orders find a sku sold out.
    let stock_per_sku = (o.orders as i64 * 4 / o.skus as i64).max(4);
    stock(env, &skus, DC, stock_per_sku).await?;
    let stocked: BTreeMap<(String, String), i64> = skus
        .iter()
        .map(|s| ((s.clone(), DC.to_owned()), stock_per_sku))
        .collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // 1. Orders.
    env.stage("orders", o.orders as u64);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..o.callers.min(o.orders) {
        let (env, skus, ledger) = (Arc::clone(env), Arc::clone(&skus), Arc::clone(&ledger));
        tasks.spawn(async move {
            let mut committed = Vec::new();
            for j in (t..env.options.orders).step_by(env.options.callers) {
                let mut rng = Rng::new(env.options.seed ^ (j as u64) << 16 ^ 0x0D);
                let lines = market::cart_lines(&mut rng, &skus, 3, 2);
                let id = env.id("order", j);
                if market::reserve(&env, t, &id, &lines, HOLD_TTL_MS, &ledger).await {
                    market::end_cart(&env, t, &id, &lines, CartEnd::Commit, &ledger).await;
                    if pct(env.options.seed, 5, j as u64) < env.options.retry_pct {
                        market::end_cart(&env, t, &id, &lines, CartEnd::Commit, &ledger).await;
                    }
                    let done = matches!(
                        lock(&ledger).holds.get(&id),
                        Some(ExpectedHold::State(HoldStateName::Committed, _))
                    );
                    if done {
                        committed.push((j, lines));
                    }
                }
                env.progress.inc(1);
            }
            committed
        });
    }
    let mut orders: Vec<(usize, Vec<pb::Line>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        orders.extend(joined.context("an order task panicked")?);
    }
    orders.sort_by_key(|(j, _)| *j);

    // 2. Returns, with holds going on.
    let returns: Vec<pb::Return> = orders
        .iter()
        .filter(|(j, _)| pct(o.seed, 20, *j as u64) < o.return_pct)
        .map(|(j, lines)| pb::Return {
            return_id: env.id("return", j),
            lines: lines
                .iter()
                .enumerate()
                .map(|(l, line)| pb::ReturnLine {
                    sku: line.sku.clone(),
                    location: line.location.clone(),
                    qty: line.qty,
                    disposition: if pct(o.seed, 21, (*j * 8 + l) as u64) < 40 {
                        pb::ReturnDisposition::Inspect as i32
                    } else {
                        pb::ReturnDisposition::Restock as i32
                    },
                })
                .collect(),
        })
        .collect();
    let mut batches: Vec<Vec<usize>> = (0..returns.len())
        .collect::<Vec<_>>()
        .chunks(o.batch_sales)
        .map(<[usize]>::to_vec)
        .collect();
    let mut rng = Rng::new(o.seed ^ 0x2E7);
    for i in (1..batches.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        batches.swap(i, j);
    }
    for b in (0..batches.len()).rev() {
        if pct(o.seed, 22, b as u64) < o.dup_pct {
            let at = b + 1 + rng.below((batches.len() - b) as u64) as usize;
            let resend = batches[b].clone();
            batches.insert(at, resend);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let holders = holds_going_on(env, &skus, &ledger, &stop);
    env.stage("returns", batches.len() as u64);
    let returns = Arc::new(returns);
    let mut firsts: BTreeMap<usize, u32> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let bulk_callers = o.bulk_callers.min(batches.len()).max(1);
    for t in 0..bulk_callers {
        let mine: Vec<Vec<usize>> = batches
            .iter()
            .skip(t)
            .step_by(bulk_callers)
            .cloned()
            .collect();
        let (env, returns, ledger) = (Arc::clone(env), Arc::clone(&returns), Arc::clone(&ledger));
        tasks.spawn(async move {
            let mut recorded = Vec::new();
            for batch in mine {
                let items: Vec<pb::Return> = batch.iter().map(|&r| returns[r].clone()).collect();
                let new = market::record_returns(&env, t, &items, &ledger).await;
                recorded.extend(new.into_iter().map(|k| batch[k]));
                env.progress.inc(1);
            }
            recorded
        });
    }
    let mut inspected: Vec<Inspected> = Vec::new();
    let (mut restocked_units, mut inspected_units) = (0u64, 0u64);
    while let Some(joined) = tasks.join_next().await {
        for r in joined.context("a returns task panicked")? {
            *firsts.entry(r).or_default() += 1;
            let mut ledger = lock(&ledger);
            for line in &returns[r].lines {
                let key = (line.sku.clone(), line.location.clone());
                if line.disposition == pb::ReturnDisposition::Inspect as i32 {
                    *ledger.quarantined.entry(key).or_default() += line.qty as i64;
                    inspected_units += line.qty;
                    inspected.push(Inspected {
                        return_id: returns[r].return_id.clone(),
                        sku: line.sku.clone(),
                        qty: line.qty,
                    });
                } else {
                    ledger.add(&line.sku, &line.location, line.qty as i64);
                    restocked_units += line.qty;
                }
            }
        }
    }

    // 3. Inspection verdicts, hours later, holds still going on.
    env.stage("dispositions", inspected.len() as u64);
    let facts = dispositions(env, &inspected, &ledger).await?;
    stop.store(true, Ordering::Relaxed);
    let mut holds_during = 0u64;
    for holder in holders {
        holds_during += holder.await.context("a holds task panicked")?;
    }

    let mut verdict = super::Verdict::new();
    for (r, ret) in returns.iter().enumerate() {
        let n = firsts.get(&r).copied().unwrap_or(0);
        verdict.check(n == 1, || {
            format!(
                "return {} was answered as newly recorded {n} times",
                ret.return_id
            )
        });
    }
    verdict.check(facts.over_ask_refused, || {
        "a disposition of more units than in quarantine was not refused".to_owned()
    });
    let expected = {
        let ledger = lock(&ledger);
        for failure in &ledger.failures {
            verdict.check(false, || failure.clone());
        }
        ledger.expected(&stocked)
    };
    let (last, observed) = verify_against(env, &expected).await?;
    verdict.merge("after the wave", last);

    let ledger = lock(&ledger);
    let mut outcome = Outcome::default();
    outcome.observed(&expected, &observed);
    outcome.fact("orders", o.orders);
    outcome.fact("orders_committed", orders.len());
    outcome.fact("returns", returns.len());
    outcome.fact("returned_units_restocked", restocked_units);
    outcome.fact("returned_units_inspected", inspected_units);
    outcome.fact("dispositions", facts.sent);
    outcome.fact("disposed_restock_units", facts.restock_units);
    outcome.fact("disposed_scrap_units", facts.scrap_units);
    outcome.fact("awaiting_inspection_units", facts.awaiting_units);
    outcome.fact("holds_during_wave", holds_during);
    outcome.fact("granted", ledger.granted);
    outcome.fact("rejected", ledger.rejected);
    outcome.fact("committed_units", ledger.committed_units);
    outcome.fact("duplicates_absorbed", ledger.duplicates);
    outcome.fact("stock_per_sku", stock_per_sku);
    outcome.notes.push(format!(
        "{} of {} orders committed; {} returns ({restocked_units} units restocked on arrival, \
         {inspected_units} inspected: {} restocked, {} scrapped, {} still in quarantine); {} holds \
         placed during the wave",
        orders.len(),
        o.orders,
        returns.len(),
        facts.restock_units,
        facts.scrap_units,
        facts.awaiting_units,
        holds_during
    ));
    outcome.verdict = verdict;
    Ok(outcome)
}

/// Starts half the callers (at least one) placing holds until `stop`: 1-2 skus, one unit
/// each, committed in full (60%), in part (20%) or released (20%). Each returns how many
/// holds it tried.
fn holds_going_on(
    env: &Arc<Env>,
    skus: &Arc<Vec<String>>,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..(env.options.callers / 2).max(1))
        .map(|t| {
            let (env, skus, ledger, stop) = (
                Arc::clone(env),
                Arc::clone(skus),
                Arc::clone(ledger),
                Arc::clone(stop),
            );
            tokio::spawn(async move {
                let mut rng = Rng::new(env.options.seed ^ 0x401D ^ (t as u64) << 24);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = env.id("hold", format!("{t}-{n}"));
                    let lines = market::cart_lines(&mut rng, &skus, 2, 1);
                    if market::reserve(&env, t, &id, &lines, HOLD_TTL_MS, &ledger).await {
                        let end = match rng.below(10) {
                            0..6 => CartEnd::Commit,
                            6..8 => CartEnd::CommitPartial,
                            _ => CartEnd::Release,
                        };
                        market::end_cart(&env, t, &id, &lines, end, &ledger).await;
                    }
                }
                n
            })
        })
        .collect()
}

#[derive(Debug, Default)]
struct DispositionFacts {
    sent: u64,
    restock_units: u64,
    scrap_units: u64,
    awaiting_units: u64,
    over_ask_refused: bool,
}

/// Decides every inspected line but one in ten: restock or scrap, split in two when it has
/// more than one unit and the draw says so; some resent. One over-asking disposition (one
/// unit more than a line still awaiting inspection has) must be refused.
async fn dispositions(
    env: &Arc<Env>,
    inspected: &[Inspected],
    ledger: &Arc<Mutex<Ledger>>,
) -> Result<DispositionFacts> {
    let o = &env.options;
    let mut facts = DispositionFacts::default();
    let mut plan: Vec<(pb::DispositionRequest, bool)> = Vec::new();
    let mut over_ask: Option<pb::DispositionRequest> = None;
    for (n, line) in inspected.iter().enumerate() {
        let draw = pct(o.seed, 30, n as u64);
        let request = |k: usize, qty: u64, restock: bool| pb::DispositionRequest {
            disposition_id: env.id("disp", format!("{n}-{k}")),
            return_id: line.return_id.clone(),
            sku: line.sku.clone(),
            location: DC.to_owned(),
            qty,
            action: if restock {
                pb::DispositionAction::Restock as i32
            } else {
                pb::DispositionAction::Scrap as i32
            },
        };
        if draw < 10 {
            facts.awaiting_units += line.qty;
            if over_ask.is_none() {
                over_ask = Some(request(9, line.qty + 1, true));
            }
            continue;
        }
        let resend = pct(o.seed, 31, n as u64) < o.dup_pct;
        if line.qty >= 2 && draw < 40 {
            plan.push((request(0, 1, true), resend));
            plan.push((request(1, line.qty - 1, false), false));
        } else {
            plan.push((request(0, line.qty, draw < 70), resend));
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(env.options.callers.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (request, resend)) in plan.into_iter().enumerate() {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let env = Arc::clone(env);
        tasks.spawn(async move {
            let client = env.client(i);
            let mut answers = Vec::new();
            for _ in 0..if resend { 2 } else { 1 } {
                let answer = call(&env.recorder, "disposition", || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.disposition(request).await }
                })
                .await;
                answers.push(answer);
            }
            env.progress.inc(1);
            drop(permit);
            (request, answers)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (request, answers) = joined.context("a disposition task panicked")?;
        let mut ledger = lock(ledger);
        for (k, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(response) if response.duplicate == (k > 0) => {
                    ledger.duplicates += u64::from(response.duplicate);
                    if k > 0 {
                        continue;
                    }
                    facts.sent += 1;
                    let key = (request.sku.clone(), request.location.clone());
                    *ledger.quarantined.entry(key).or_default() -= request.qty as i64;
                    if request.action == pb::DispositionAction::Restock as i32 {
                        ledger.add(&request.sku, &request.location, request.qty as i64);
                        facts.restock_units += request.qty;
                    } else {
                        facts.scrap_units += request.qty;
                    }
                }
                Ok(response) => ledger.failures.push(format!(
                    "disposition {} try {k}: duplicate = {}",
                    request.disposition_id, response.duplicate
                )),
                Err(status) => ledger.failures.push(format!(
                    "disposition {} failed: {status}",
                    request.disposition_id
                )),
            }
        }
    }
    facts.over_ask_refused = match over_ask {
        None => true,
        Some(request) => {
            let client = env.client(0);
            let answer = super::call_expecting(
                &env.recorder,
                "disposition",
                &[tonic::Code::FailedPrecondition],
                || {
                    let (mut client, request) = (client.clone(), request.clone());
                    async move { client.disposition(request).await }
                },
            )
            .await;
            matches!(answer, Err(status) if status.code() == tonic::Code::FailedPrecondition)
        }
    };
    Ok(facts)
}
