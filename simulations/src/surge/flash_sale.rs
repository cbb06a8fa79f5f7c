//! `flash-sale`: one hot sku with limited stock, thousands of buyers at once.
//!
//! Every buyer asks for one unit under its own reservation id, the unary buyers each on a task
//! of their own and the Session buyers multiplexed over a few streams; all of them wait for the
//! doors to open, so the stampede is simultaneous. Some buyers retry: a unary buyer gives up on
//! its first try after a timeout of a few milliseconds (or, when the answer beat the timeout,
//! resends anyway as if it was lost) and calls again with the same id; a Session buyer's
//! request is sent twice on its stream. A Session request that fails retryably, or that a
//! broken stream leaves unanswered, is resent as a unary call. So every buyer ends with a
//! definite answer, granted or out of stock.
//!
//! Verified after the stampede: exactly `min(stock, buyers)` units granted, never more; every
//! buyer answered; every retry answered the same as the original (same LSN, same result); the
//! hot position holds on_hand = stock and reserved = granted; every granted buyer has an OPEN
//! hold of one unit and no rejected buyer has a hold. Then a checkout wave commits three grants
//! in four and releases the rest (retried ones twice), and the second verification finds
//! on_hand = stock - committed, reserved = 0, and every hold COMMITTED or RELEASED as told.

use super::verify::{ExpectedHold, ExpectedPosition, HoldStateName};
use super::{DC, Env, Expected, Outcome, call, pct, stock, verify_against};
use crate::pb;
use anyhow::{Context, Result};
use pb::session_request::Request as Ask;
use pb::session_response::Response as Answer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// TTL of a buyer's hold: long enough that none expires before the checkout wave.
const HOLD_TTL_MS: u64 = 600_000;
/// The longest a retrying unary buyer waits for its first try, in µs.
const IMPATIENCE_US_MAX: u64 = 3_000;
/// Buyers arrive over this long once the doors open (each at a seeded random moment), so the
/// unary and the Session buyers compete for the stock rather than whichever path starts first
/// taking all of it.
const ARRIVALS_US: u64 = 250_000;
/// Checkout calls in flight at once.
const CHECKOUT_IN_FLIGHT_MAX: usize = 256;

/// What a buyer was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answered {
    granted: bool,
    lsn: u64,
}

/// One buyer's answers: the first definite one and, for a retrying buyer, whether the retry
/// agreed with it.
#[derive(Debug, Default, Clone)]
struct Buyer {
    answer: Option<Answered>,
    /// Answers that disagreed with the first (must stay empty).
    disagreements: Vec<Answered>,
    /// Answers flagged `duplicate` by the server (a retry absorbed).
    duplicates: u64,
    /// The request was given up on at least once and resent.
    retried: bool,
    /// The last error, if no answer ever came.
    error: Option<String>,
}

impl Buyer {
    fn answered(&mut self, response: &pb::ReserveResponse) {
        let granted = matches!(
            response.result,
            Some(pb::reserve_response::Result::Granted(_))
        );
        let answer = Answered {
            granted,
            lsn: response.lsn,
        };
        if response.duplicate {
            self.duplicates += 1;
        }
        match self.answer {
            None => self.answer = Some(answer),
            Some(first) if first != answer => self.disagreements.push(answer),
            Some(_) => {}
        }
    }
}

type Buyers = Arc<Vec<Mutex<Buyer>>>;

fn reserve_request(env: &Env, sku: &str, buyer: usize) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: env.id("buyer", buyer),
        channel: "flash-sale".to_owned(),
        lines: vec![pb::Line {
            sku: sku.to_owned(),
            location: DC.to_owned(),
            qty: 1,
        }],
        ttl_ms: HOLD_TTL_MS,
    }
}

pub async fn run(env: &Arc<Env>) -> Result<Outcome> {
    let o = &env.options;
    let sku = env.id("hot", "sku");
    stock(env, std::slice::from_ref(&sku), DC, o.stock as i64).await?;

    let buyers: Buyers = Arc::new((0..o.buyers).map(|_| Mutex::default()).collect());
    let session_buyer = |i: usize| pct(o.seed, 1, i as u64) < o.session_pct;
    let retrying = |i: usize| pct(o.seed, 2, i as u64) < o.retry_pct;

    // The stampede: every buyer waits for the doors, then all go at once.
    env.stage("stampede", o.buyers as u64);
    let (open_doors, doors) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut streams: Vec<Vec<usize>> = vec![Vec::new(); o.sessions];
    for i in 0..o.buyers {
        if session_buyer(i) {
            streams[i % o.sessions].push(i);
            continue;
        }
        let (env, buyers, sku, mut doors) = (
            Arc::clone(env),
            Arc::clone(&buyers),
            sku.clone(),
            doors.clone(),
        );
        let retry = retrying(i);
        tasks.spawn(async move {
            let _ = doors.wait_for(|open| *open).await;
            tokio::time::sleep(arrival(env.options.seed, i)).await;
            unary_buyer(&env, &buyers, &sku, i, retry).await;
            env.progress.inc(1);
        });
    }
    for (s, members) in streams.into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        let (env, buyers, sku, mut doors) = (
            Arc::clone(env),
            Arc::clone(&buyers),
            sku.clone(),
            doors.clone(),
        );
        let retry: Vec<bool> = members.iter().map(|&i| retrying(i)).collect();
        tasks.spawn(async move {
            session_buyers(&env, &buyers, &sku, s, &members, &retry, &mut doors).await;
        });
    }
    let stampede_started = Instant::now();
    open_doors.send_replace(true);
    while let Some(joined) = tasks.join_next().await {
        joined.context("a buyer task panicked")?;
    }
    let stampede_s = stampede_started.elapsed().as_secs_f64();

    // What the buyers were told.
    let snapshot: Vec<Buyer> = buyers
        .iter()
        .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let granted: Vec<usize> = (0..o.buyers)
        .filter(|&i| snapshot[i].answer.is_some_and(|a| a.granted))
        .collect();
    let answered = snapshot.iter().filter(|b| b.answer.is_some()).count();
    let mut outcome = Outcome::default();
    let mut verdict = super::Verdict::new();
    let want = o.stock.min(o.buyers as u64);
    verdict.check(granted.len() as u64 == want, || {
        format!(
            "{} units granted, expected exactly min(stock {}, buyers {}) = {want}",
            granted.len(),
            o.stock,
            o.buyers
        )
    });
    for (i, buyer) in snapshot.iter().enumerate() {
        verdict.check(buyer.answer.is_some(), || {
            format!(
                "buyer {i} got no definite answer (last error: {})",
                buyer.error.as_deref().unwrap_or("none")
            )
        });
        verdict.check(buyer.disagreements.is_empty(), || {
            format!(
                "buyer {i}: a retry was answered {:?}, the original {:?}",
                buyer.disagreements, buyer.answer
            )
        });
    }

    let mut expected = Expected {
        grants: Some((o.stock, granted.len() as u64)),
        ..Expected::default()
    };
    expected.positions.insert(
        (sku.clone(), DC.to_owned()),
        ExpectedPosition {
            on_hand: o.stock as i64,
            reserved: granted.len() as i64,
            quarantined: 0,
            no_oversell: true,
        },
    );
    for (i, buyer) in snapshot.iter().enumerate() {
        let hold = match buyer.answer {
            Some(a) if a.granted => ExpectedHold::State(HoldStateName::Open, 1),
            Some(_) => ExpectedHold::Absent,
            None => continue,
        };
        expected.holds.insert(env.id("buyer", i), hold);
    }
    let (after_stampede, observed) = verify_against(env, &expected).await?;
    outcome.observed(&expected, &observed);
    verdict.merge("after the stampede", after_stampede);

    // The checkout wave: three grants in four are committed, the rest released.
    env.stage("checkout", granted.len() as u64);
    let limit = Arc::new(Semaphore::new(CHECKOUT_IN_FLIGHT_MAX));
    let mut tasks = tokio::task::JoinSet::new();
    for &i in &granted {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let commit = pct(o.seed, 3, i as u64) < 75;
        let twice = retrying(i);
        let env = Arc::clone(env);
        tasks.spawn(async move {
            let result = checkout(&env, i, commit, twice).await;
            env.progress.inc(1);
            drop(permit);
            (i, commit, result)
        });
    }
    let (mut committed, mut released, mut checkout_duplicates) = (0u64, 0u64, 0u64);
    let mut checkout_failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, commit, result) = joined.context("a checkout task panicked")?;
        match result {
            Ok(duplicates) => {
                checkout_duplicates += duplicates;
                let (state, n) = if commit {
                    (HoldStateName::Committed, &mut committed)
                } else {
                    (HoldStateName::Released, &mut released)
                };
                *n += 1;
                expected
                    .holds
                    .insert(env.id("buyer", i), ExpectedHold::State(state, 1));
            }
            Err(e) => checkout_failures.push(format!("buyer {i}: {e}")),
        }
    }
    for failure in &checkout_failures {
        verdict.check(false, || failure.clone());
    }
    expected.positions.insert(
        (sku.clone(), DC.to_owned()),
        ExpectedPosition {
            on_hand: o.stock as i64 - committed as i64,
            reserved: 0,
            quarantined: 0,
            no_oversell: true,
        },
    );
    let (after_checkout, observed) = verify_against(env, &expected).await?;
    outcome.observed(&expected, &observed);
    verdict.merge("after checkout", after_checkout);

    let duplicates: u64 = snapshot.iter().map(|b| b.duplicates).sum();
    let duplicates_session: u64 = (0..o.buyers)
        .filter(|&i| session_buyer(i))
        .map(|i| snapshot[i].duplicates)
        .sum();
    let retried = snapshot.iter().filter(|b| b.retried).count();
    let sessions = (0..o.buyers).filter(|&i| session_buyer(i)).count();
    outcome.fact("stock", o.stock);
    outcome.fact("buyers", o.buyers);
    outcome.fact("buyers_unary", o.buyers - sessions);
    outcome.fact("buyers_session", sessions);
    outcome.fact("answered", answered);
    outcome.fact("granted", granted.len());
    outcome.fact("rejected", answered - granted.len());
    outcome.fact("oversell", (granted.len() as u64).saturating_sub(o.stock));
    outcome.fact("retried", retried);
    outcome.fact("duplicates_absorbed", duplicates + checkout_duplicates);
    outcome.fact("duplicates_session", duplicates_session);
    outcome.fact("committed", committed);
    outcome.fact("released", released);
    outcome.notes.push(format!(
        "stampede: {} buyers answered in {stampede_s:.2} s ({:.0} buyers/s); granted {} of stock {}, \
         oversell {}",
        answered,
        answered as f64 / stampede_s.max(1e-9),
        granted.len(),
        o.stock,
        (granted.len() as u64).saturating_sub(o.stock)
    ));
    outcome.verdict = verdict;
    Ok(outcome)
}

/// When buyer `i` arrives after the doors open.
fn arrival(seed: u64, i: usize) -> Duration {
    Duration::from_micros(super::Rng::new(seed ^ 0xA771 ^ (i as u64) << 20).below(ARRIVALS_US))
}

/// One unary buyer: a Reserve until a definite answer. Half the retrying buyers give up on
/// their first try after a few milliseconds; the other half get its answer and resend anyway,
/// as if the answer was lost on the way (so the retry must come back as a duplicate).
async fn unary_buyer(env: &Env, buyers: &Buyers, sku: &str, i: usize, retry: bool) {
    let request = reserve_request(env, sku, i);
    let client = env.client(i);
    let record = |f: &mut dyn FnMut(&mut Buyer)| {
        f(&mut buyers[i].lock().unwrap_or_else(|e| e.into_inner()));
    };
    if retry {
        let patience = if pct(env.options.seed, 4, i as u64) < 50 {
            Duration::from_micros(
                super::Rng::new(env.options.seed ^ i as u64).below(IMPATIENCE_US_MAX) + 1,
            )
        } else {
            super::ATTEMPT_TIMEOUT
        };
        let started = Instant::now();
        let mut first = client.clone();
        match tokio::time::timeout(patience, first.reserve(request.clone())).await {
            Ok(Ok(response)) => {
                env.recorder.ok("reserve", started);
                record(&mut |b| b.answered(response.get_ref()));
            }
            Ok(Err(status)) => {
                env.recorder
                    .error("reserve", crate::stats::code_name(status.code()));
            }
            Err(_) => env.recorder.error("reserve", "CLIENT_TIMEOUT"),
        }
        record(&mut |b| b.retried = true);
    }
    let answer = call(&env.recorder, "reserve", || {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.reserve(request).await }
    })
    .await;
    match answer {
        Ok(response) => {
            if !matches!(
                response.result,
                Some(pb::reserve_response::Result::Granted(_))
            ) {
                env.recorder.rejected("reserve");
            }
            record(&mut |b| b.answered(&response));
        }
        Err(status) => record(&mut |b| b.error = Some(status.to_string())),
    }
}

/// The Session buyers of stream `s`: every request sent at once (a retrying buyer's twice),
/// answers matched by correlation id. Whatever the stream leaves unanswered, or answers with a
/// retryable error, is resent as a unary call.
async fn session_buyers(
    env: &Arc<Env>,
    buyers: &Buyers,
    sku: &str,
    s: usize,
    members: &[usize],
    retry: &[bool],
    doors: &mut watch::Receiver<bool>,
) {
    // Correlation id n is requests[n]: (buyer, when sent).
    let mut requests: Vec<usize> = Vec::with_capacity(members.len() * 2);
    for (k, &i) in members.iter().enumerate() {
        requests.push(i);
        if retry[k] {
            requests.push(i);
            buyers[i].lock().unwrap_or_else(|e| e.into_inner()).retried = true;
        }
    }
    let sent_at: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; requests.len()]));
    let mut pending: HashMap<u64, usize> = requests
        .iter()
        .enumerate()
        .map(|(n, &i)| (n as u64, i))
        .collect();
    let mut resend: Vec<usize> = Vec::new();
    let mut client = env.client(s);
    let (tx, rx) = mpsc::channel::<pb::SessionRequest>(1_024);
    // The stream is open before the doors are, as a connector's would be.
    let opened = client.session(ReceiverStream::new(rx)).await;
    let _ = doors.wait_for(|open| *open).await;
    match opened {
        Ok(response) => {
            let mut answers = response.into_inner();
            let sender = {
                let (env, sku, requests, sent_at) = (
                    Arc::clone(env),
                    sku.to_owned(),
                    requests.clone(),
                    Arc::clone(&sent_at),
                );
                tokio::spawn(async move {
                    let doors_opened = Instant::now();
                    let mut order: Vec<(Duration, usize)> = (0..requests.len())
                        .map(|n| (arrival(env.options.seed, requests[n]), n))
                        .collect();
                    order.sort_unstable();
                    for (at, n) in order {
                        let i = requests[n];
                        tokio::time::sleep_until((doors_opened + at).into()).await;
                        let request = pb::SessionRequest {
                            correlation_id: n as u64,
                            request: Some(Ask::Reserve(reserve_request(&env, &sku, i))),
                        };
                        sent_at.lock().unwrap_or_else(|e| e.into_inner())[n] = Some(Instant::now());
                        if tx.send(request).await.is_err() {
                            break;
                        }
                    }
                    // Dropping `tx` closes the request side: the server ends the stream once
                    // it has answered everything.
                })
            };
            while !pending.is_empty() {
                let message = match answers.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        env.recorder
                            .error("session:stream", crate::stats::code_name(status.code()));
                        break;
                    }
                };
                let Some(i) = pending.remove(&message.correlation_id) else {
                    env.recorder.error("session:stream", "UNKNOWN_CORRELATION");
                    continue;
                };
                let started = sent_at.lock().unwrap_or_else(|e| e.into_inner())
                    [message.correlation_id as usize];
                match message.response {
                    Some(Answer::Reserve(response)) => {
                        if let Some(started) = started {
                            env.recorder.ok("session:reserve", started);
                        }
                        if !matches!(
                            response.result,
                            Some(pb::reserve_response::Result::Granted(_))
                        ) {
                            env.recorder.rejected("session:reserve");
                        }
                        buyers[i]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .answered(&response);
                    }
                    Some(Answer::Error(error)) => {
                        let code = tonic::Code::from_i32(error.code as i32);
                        env.recorder
                            .error("session:reserve", crate::stats::code_name(code));
                        resend.push(i);
                    }
                    _ => {
                        env.recorder.error("session:reserve", "WRONG_ANSWER");
                        resend.push(i);
                    }
                }
            }
            sender.abort();
        }
        Err(status) => {
            env.recorder
                .error("session:stream", crate::stats::code_name(status.code()));
        }
    }
    resend.extend(pending.into_values());
    resend.sort_unstable();
    resend.dedup();
    for &i in &resend {
        let done = buyers[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answer
            .is_some();
        if !done {
            unary_buyer(env, buyers, sku, i, false).await;
        }
    }
    env.progress.inc(members.len() as u64);
}

/// Commits (or releases) buyer `i`'s hold, twice if `twice`; returns how many answers were
/// flagged duplicate. A commit must report the one unit committed.
async fn checkout(env: &Env, i: usize, commit: bool, twice: bool) -> Result<u64> {
    let client = env.client(i);
    let id = env.id("buyer", i);
    let mut duplicates = 0;
    let mut lsns = Vec::new();
    for _ in 0..if twice { 2 } else { 1 } {
        if commit {
            let request = pb::CommitRequest {
                reservation_id: id.clone(),
                lines: vec![],
            };
            let response = call(&env.recorder, "commit", || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.commit(request).await }
            })
            .await
            .map_err(|s| anyhow::anyhow!("commit: {s}"))?;
            let units: u64 = response.lines.iter().map(|l| l.committed).sum();
            anyhow::ensure!(units == 1, "commit reported {units} units committed, not 1");
            duplicates += u64::from(response.duplicate);
            lsns.push(response.lsn);
        } else {
            let request = pb::ReleaseRequest {
                reservation_id: id.clone(),
            };
            let response = call(&env.recorder, "release", || {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.release(request).await }
            })
            .await
            .map_err(|s| anyhow::anyhow!("release: {s}"))?;
            duplicates += u64::from(response.duplicate);
            lsns.push(response.lsn);
        }
    }
    anyhow::ensure!(
        lsns.windows(2).all(|w| w[0] == w[1]),
        "a resent checkout got another LSN: {lsns:?}"
    );
    anyhow::ensure!(
        !twice || duplicates == 1,
        "a resent checkout was not answered as a duplicate"
    );
    Ok(duplicates)
}
