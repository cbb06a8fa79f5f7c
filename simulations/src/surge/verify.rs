//! The end-of-scenario verification: what the client expects the server to hold, computed from
//! its own ledger of what it was told ([`Expected`]), what the server says it holds, read back
//! through the API ([`Observed`]: Check, StoreStatus, GetReservation), and [`verify`], a pure
//! function comparing the two.
//!
//! Keeping `verify` pure (no I/O) is what lets a test show that it fails on an inconsistent
//! state: a real server cannot be made wrong without faking it, but a hand-made `Observed` can.
//! Every comparison counts as one check, so a report can say "1,234 checks, 0 failed"; the
//! failures are sentences naming the position, store or hold and both numbers.

use super::{Client, Recorder, call, call_expecting};
use crate::pb;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most failure sentences a verdict keeps (the count of all of them is kept too).
pub const FAILURES_LISTED_MAX: usize = 50;

/// A position's numbers as the client's ledger predicts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExpectedPosition {
    pub on_hand: i64,
    pub reserved: i64,
    pub quarantined: i64,
    /// True if no channel may ever have been sold more than was available here: the position
    /// saw no store sales (which are facts and may drive it negative), so `available` must
    /// never be below zero.
    pub no_oversell: bool,
}

/// The state a hold must be in, or that it must not exist (a rejected reserve places none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExpectedHold {
    Absent,
    /// In this state, holding this many units in total over its lines.
    State(HoldStateName, u64),
    /// Either of two states (a commit that raced the hold's expiry is answered either way).
    EitherState(HoldStateName, HoldStateName, u64),
}

/// `pb::HoldState` without the protobuf integer, for messages and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HoldStateName {
    Open,
    Committed,
    Released,
    Expired,
}

impl HoldStateName {
    pub fn from_pb(state: i32) -> Option<HoldStateName> {
        match pb::HoldState::try_from(state).ok()? {
            pb::HoldState::Open => Some(HoldStateName::Open),
            pb::HoldState::Committed => Some(HoldStateName::Committed),
            pb::HoldState::Released => Some(HoldStateName::Released),
            pb::HoldState::Expired => Some(HoldStateName::Expired),
            pb::HoldState::Unspecified => None,
        }
    }
}

/// A store's sales feed as the client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpectedStore {
    pub contiguous_seq: u64,
    pub newest_seq: u64,
    pub gaps: Vec<(u64, u64)>,
    /// Distinct sales sent (each txn id once).
    pub sales_recorded: u64,
    /// Resends the client saw answered as duplicates.
    pub duplicates_absorbed: u64,
    /// The newest sale's lag must be at most this (ms); `None` does not check it.
    pub lag_ms_max: Option<u64>,
}

/// Everything the client expects.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub positions: BTreeMap<(String, String), ExpectedPosition>,
    pub holds: BTreeMap<String, ExpectedHold>,
    pub stores: BTreeMap<String, ExpectedStore>,
    /// Contended stock: (what was put up, what the client was granted). Granting more than
    /// the stock is an oversell whatever the server's numbers say.
    pub grants: Option<(u64, u64)>,
}

/// What the server said, read back after the scenario.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub positions: BTreeMap<(String, String), pb::PositionAvailability>,
    /// `None`: GetReservation answered NOT_FOUND.
    pub holds: BTreeMap<String, Option<pb::Reservation>>,
    pub stores: BTreeMap<String, pb::StoreSequenceStatus>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// Comparisons made.
    pub checks: u64,
    /// Comparisons that failed.
    pub failed: u64,
    /// The first [`FAILURES_LISTED_MAX`] failures, as sentences.
    pub failures: Vec<String>,
}

impl Verdict {
    pub fn new() -> Verdict {
        Verdict {
            passed: true,
            ..Verdict::default()
        }
    }

    /// One comparison; `what` is only built when it failed.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.passed = false;
            self.failed += 1;
            if self.failures.len() < FAILURES_LISTED_MAX {
                self.failures.push(what());
            }
        }
    }

    /// Adds another verdict's checks (a scenario verifies at more than one point).
    pub fn merge(&mut self, stage: &str, other: Verdict) {
        self.passed &= other.passed;
        self.checks += other.checks;
        self.failed += other.failed;
        for failure in other.failures {
            if self.failures.len() < FAILURES_LISTED_MAX {
                self.failures.push(format!("{stage}: {failure}"));
            }
        }
    }
}

/// Compares what the server holds with what the client expects. Pure: see the module doc.
pub fn verify(expected: &Expected, observed: &Observed) -> Verdict {
    let mut v = Verdict::new();
    if let Some((stock, granted)) = expected.grants {
        v.check(granted <= stock, || {
            format!("oversold: {granted} units granted from a stock of {stock}")
        });
    }
    for ((sku, location), want) in &expected.positions {
        let key = (sku.clone(), location.clone());
        let Some(got) = observed.positions.get(&key) else {
            v.check(false, || format!("{sku}@{location}: not read back"));
            continue;
        };
        v.check(got.exists, || format!("{sku}@{location}: does not exist"));
        for (name, want, got) in [
            ("on_hand", want.on_hand, got.on_hand),
            ("reserved", want.reserved, got.reserved),
            ("quarantined", want.quarantined, got.quarantined),
        ] {
            v.check(want == got, || {
                format!("{sku}@{location}: {name} is {got}, expected {want}")
            });
        }
        // The server's own arithmetic, and the oversell rule where it applies.
        v.check(
            got.available == got.on_hand - got.reserved - got.safety_stock,
            || {
                format!(
                    "{sku}@{location}: available {} != on_hand - reserved - safety",
                    got.available
                )
            },
        );
        v.check(got.reserved >= 0, || {
            format!("{sku}@{location}: reserved is negative ({})", got.reserved)
        });
        if want.no_oversell {
            v.check(got.available >= 0, || {
                format!(
                    "{sku}@{location}: oversold, available {} (on_hand {}, reserved {})",
                    got.available, got.on_hand, got.reserved
                )
            });
        }
    }
    for (id, want) in &expected.holds {
        let got = observed.holds.get(id);
        match (want, got) {
            (_, None) => v.check(false, || format!("hold {id}: not read back")),
            (ExpectedHold::Absent, Some(got)) => v.check(got.is_none(), || {
                format!("hold {id}: exists but its reserve was rejected")
            }),
            (ExpectedHold::State(a, qty), Some(got)) => check_hold(&mut v, id, &[*a], *qty, got),
            (ExpectedHold::EitherState(a, b, qty), Some(got)) => {
                check_hold(&mut v, id, &[*a, *b], *qty, got)
            }
        }
    }
    for (id, want) in &expected.stores {
        let Some(got) = observed.stores.get(id) else {
            v.check(false, || format!("store {id}: unknown to the server"));
            continue;
        };
        let gaps: Vec<(u64, u64)> = got.gaps.iter().map(|g| (g.first, g.last)).collect();
        let missing: u64 = want.gaps.iter().map(|(a, b)| b - a + 1).sum();
        for (name, want, got) in [
            ("contiguous_seq", want.contiguous_seq, got.contiguous_seq),
            ("newest_seq", want.newest_seq, got.newest_seq),
            ("missing_count", missing, got.missing_count),
            ("sales_recorded", want.sales_recorded, got.sales_recorded),
            ("seq_reused", 0, got.seq_reused),
            ("gaps_abandoned", 0, got.gaps_abandoned),
            (
                "duplicates_absorbed",
                want.duplicates_absorbed,
                got.duplicates_absorbed,
            ),
        ] {
            v.check(want == got, || {
                format!("store {id}: {name} is {got}, expected {want}")
            });
        }
        v.check(gaps == want.gaps, || {
            format!("store {id}: gaps are {gaps:?}, expected {:?}", want.gaps)
        });
        if let Some(max) = want.lag_ms_max {
            v.check(got.newest_lag_ms <= max, || {
                format!(
                    "store {id}: lag {} ms, expected at most {max}",
                    got.newest_lag_ms
                )
            });
        }
    }
    v
}

/// Positions where no channel may be oversold (see [`ExpectedPosition::no_oversell`]) that the
/// server shows with a negative availability: the report's `oversold_positions` (must be 0).
pub fn oversold_positions(expected: &Expected, observed: &Observed) -> u64 {
    expected
        .positions
        .iter()
        .filter(|(key, want)| {
            want.no_oversell
                && observed
                    .positions
                    .get(*key)
                    .is_some_and(|got| got.available < 0)
        })
        .count() as u64
}

fn check_hold(
    v: &mut Verdict,
    id: &str,
    states: &[HoldStateName],
    qty: u64,
    got: &Option<pb::Reservation>,
) {
    let Some(got) = got else {
        v.check(false, || {
            format!("hold {id}: not found, expected {states:?}")
        });
        return;
    };
    let state = HoldStateName::from_pb(got.state);
    v.check(state.is_some_and(|s| states.contains(&s)), || {
        format!("hold {id}: state {state:?}, expected {states:?}")
    });
    let held: u64 = got.lines.iter().map(|l| l.qty).sum();
    v.check(held == qty, || {
        format!("hold {id}: {held} units, expected {qty}")
    });
}

/// How many reads are in flight at once while observing.
const READS_IN_FLIGHT_MAX: usize = 64;
/// Positions per Check (the API's limit).
const CHECK_POSITIONS_MAX: usize = 1_000;

/// Reads back everything `expected` names: positions by Check in batches of 1,000, every
/// hold by GetReservation, every store by StoreStatus, a bounded number at a time.
pub async fn observe(
    clients: &[Client],
    recorder: &Arc<Recorder>,
    expected: &Expected,
) -> Result<Observed> {
    let mut observed = Observed::default();
    let keys: Vec<(String, String)> = expected.positions.keys().cloned().collect();
    let batches: Vec<Vec<(String, String)>> = keys
        .chunks(CHECK_POSITIONS_MAX)
        .map(<[_]>::to_vec)
        .collect();
    let results = run_bounded(clients, batches, |client, batch| {
        let recorder = Arc::clone(recorder);
        async move {
            let request = pb::CheckRequest {
                positions: batch
                    .iter()
                    .map(|(sku, location)| pb::Position {
                        sku: sku.clone(),
                        location: location.clone(),
                    })
                    .collect(),
            };
            let response = call(&recorder, "verify:check", || {
                let request = request.clone();
                let mut client = client.clone();
                async move { client.check(request).await }
            })
            .await?;
            let mut found = Vec::new();
            for (key, result) in batch.into_iter().zip(response.results) {
                if let Some(pb::check_result::Result::Availability(a)) = result.result {
                    found.push((key, a));
                }
            }
            anyhow::Ok(found)
        }
    })
    .await?;
    for found in results {
        observed.positions.extend(found);
    }

    let ids: Vec<String> = expected.holds.keys().cloned().collect();
    let holds = run_bounded(clients, ids, |client, id| {
        let recorder = Arc::clone(recorder);
        async move {
            let request = pb::GetReservationRequest {
                reservation_id: id.clone(),
            };
            let answer = call_expecting(
                &recorder,
                "verify:get_reservation",
                &[tonic::Code::NotFound],
                || {
                    let mut client = client.clone();
                    let request = request.clone();
                    async move { client.get_reservation(request).await }
                },
            )
            .await;
            match answer {
                Ok(response) => anyhow::Ok((id, response.reservation)),
                Err(status) if status.code() == tonic::Code::NotFound => Ok((id, None)),
                Err(status) => Err(anyhow::anyhow!("GetReservation {id}: {status}")),
            }
        }
    })
    .await?;
    observed.holds.extend(holds);

    let stores: Vec<String> = expected.stores.keys().cloned().collect();
    let statuses = run_bounded(clients, stores, |client, id| {
        let recorder = Arc::clone(recorder);
        async move {
            let request = pb::StoreStatusRequest {
                store_id: id.clone(),
            };
            let answer = call(&recorder, "verify:store_status", || {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.store_status(request).await }
            })
            .await;
            match answer {
                Ok(response) => anyhow::Ok(response.stores.into_iter().next()),
                Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
                Err(status) => Err(anyhow::anyhow!("StoreStatus {id}: {status}")),
            }
        }
    })
    .await?;
    for status in statuses.into_iter().flatten() {
        observed.stores.insert(status.store_id.clone(), status);
    }
    Ok(observed)
}

/// Runs `f` over `items`, at most [`READS_IN_FLIGHT_MAX`] at a time, spreading them over the
/// clients; returns the results in no particular order, or the first error.
async fn run_bounded<T, R, F, Fut>(clients: &[Client], items: Vec<T>, f: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Client, T) -> Fut,
    Fut: std::future::Future<Output = Result<R>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(READS_IN_FLIGHT_MAX));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let future = f(clients[i % clients.len()].clone(), item);
        tasks.spawn(async move {
            let result = future.await;
            drop(permit);
            result
        });
    }
    let mut results = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        results.push(joined??);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(sku: &str, on_hand: i64, reserved: i64) -> pb::PositionAvailability {
        pb::PositionAvailability {
            sku: sku.to_owned(),
            location: "dc-1".to_owned(),
            exists: true,
            on_hand,
            reserved,
            safety_stock: 0,
            quarantined: 0,
            available: on_hand - reserved,
            sellable: (on_hand - reserved).max(0) as u64,
        }
    }

    fn key(sku: &str) -> (String, String) {
        (sku.to_owned(), "dc-1".to_owned())
    }

    /// A consistent state passes, and the verifier counts its comparisons.
    #[test]
    fn a_consistent_state_passes() {
        let mut expected = Expected {
            grants: Some((10, 10)),
            ..Expected::default()
        };
        expected.positions.insert(
            key("hot"),
            ExpectedPosition {
                on_hand: 10,
                reserved: 10,
                quarantined: 0,
                no_oversell: true,
            },
        );
        let mut observed = Observed::default();
        observed
            .positions
            .insert(key("hot"), position("hot", 10, 10));
        let verdict = verify(&expected, &observed);
        assert!(verdict.passed, "{verdict:?}");
        assert!(verdict.checks >= 6, "{verdict:?}");
    }

    /// Goal: the verifier itself fails on a hand-made inconsistent state, naming each fault:
    /// an oversold grant count, an on_hand off by one, a negative availability, a rejected
    /// buyer holding a hold, a hold in the wrong state, and a store with a gap it should not
    /// have and a sale counted twice.
    #[test]
    fn an_inconsistent_state_fails_with_every_fault_named() {
        let mut expected = Expected {
            grants: Some((10, 11)),
            ..Expected::default()
        };
        expected.positions.insert(
            key("hot"),
            ExpectedPosition {
                on_hand: 10,
                reserved: 10,
                quarantined: 0,
                no_oversell: true,
            },
        );
        expected
            .holds
            .insert("r-rejected".into(), ExpectedHold::Absent);
        expected.holds.insert(
            "r-granted".into(),
            ExpectedHold::State(HoldStateName::Committed, 1),
        );
        expected.stores.insert(
            "s1".into(),
            ExpectedStore {
                contiguous_seq: 5,
                newest_seq: 5,
                gaps: vec![],
                sales_recorded: 5,
                duplicates_absorbed: 1,
                lag_ms_max: Some(1_000),
            },
        );

        let mut observed = Observed::default();
        // One unit more reserved than on hand: available -1.
        observed
            .positions
            .insert(key("hot"), position("hot", 9, 10));
        let hold = |state: pb::HoldState| pb::Reservation {
            reservation_id: "x".into(),
            lines: vec![pb::Line {
                sku: "hot".into(),
                location: "dc-1".into(),
                qty: 1,
            }],
            state: state as i32,
            ..pb::Reservation::default()
        };
        observed
            .holds
            .insert("r-rejected".into(), Some(hold(pb::HoldState::Open)));
        observed
            .holds
            .insert("r-granted".into(), Some(hold(pb::HoldState::Released)));
        observed.stores.insert(
            "s1".into(),
            pb::StoreSequenceStatus {
                store_id: "s1".into(),
                contiguous_seq: 3,
                newest_seq: 5,
                gaps: vec![pb::SeqGap { first: 4, last: 4 }],
                missing_count: 1,
                sales_recorded: 6,
                duplicates_absorbed: 1,
                newest_lag_ms: 10,
                ..pb::StoreSequenceStatus::default()
            },
        );

        let verdict = verify(&expected, &observed);
        assert!(!verdict.passed);
        let all = verdict.failures.join("\n");
        for needle in [
            "oversold: 11 units granted from a stock of 10",
            "hot@dc-1: on_hand is 9, expected 10",
            "hot@dc-1: oversold, available -1",
            "hold r-rejected: exists but its reserve was rejected",
            "hold r-granted: state Some(Released), expected [Committed]",
            "store s1: contiguous_seq is 3, expected 5",
            "store s1: gaps are [(4, 4)], expected []",
            "store s1: sales_recorded is 6, expected 5",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(verdict.failed as usize, verdict.failures.len(), "{all}");
    }

    /// A position, hold or store the server cannot produce is a failure, not a skipped check.
    #[test]
    fn anything_not_read_back_fails() {
        let mut expected = Expected::default();
        expected
            .positions
            .insert(key("a"), ExpectedPosition::default());
        expected.holds.insert("h".into(), ExpectedHold::Absent);
        expected.stores.insert("s".into(), ExpectedStore::default());
        let verdict = verify(&expected, &Observed::default());
        assert_eq!(verdict.failed, 3, "{verdict:?}");
    }
}
