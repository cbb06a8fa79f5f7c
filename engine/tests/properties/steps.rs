//! The universe's names (2 skus x 2 locations, reservation ids, the clock's start), the abstract
//! steps proptest generates and shrinks, and their strategies.

use inv_engine::Line;
use proptest::prelude::*;

pub(crate) const SKUS: [&str; 2] = ["sku-a", "sku-b"];
pub(crate) const LOCS: [&str; 2] = ["loc-1", "loc-2"];
/// Positions are numbered 0..4: sku = p / 2, location = p % 2.
pub(crate) const POSITIONS: usize = 4;
/// Reservation ids "r0".."r7" are shared by all commands; a step value of 8..16 means a fresh
/// id for a reserve, and a recently reserved id for commit, release and extend.
pub(crate) const RESERVATION_IDS: u8 = 8;
pub(crate) const T0: u64 = 1_700_000_000_000;
/// The ledger's `store_seq_jump_max` in these cases: small, so sequence numbers of a few
/// hundred jump while the ordinary ones (1 to 6) never do.
pub(crate) const SEQ_JUMP_MAX: u64 = 100;

pub(crate) fn pos_names(p: usize) -> (&'static str, &'static str) {
    (SKUS[p / 2], LOCS[p % 2])
}

pub(crate) fn pos_of(sku: &str, location: &str) -> usize {
    let s = SKUS
        .iter()
        .position(|x| *x == sku)
        .expect("sku of the universe");
    let l = LOCS
        .iter()
        .position(|x| *x == location)
        .expect("location of the universe");
    s * 2 + l
}

pub(crate) fn line(p: usize, qty: u64) -> Line {
    let (sku, location) = pos_names(p);
    Line::new(sku, location, qty)
}

pub(crate) fn rid(r: u8) -> String {
    format!("r{r}")
}

// ------------------------------------------------------------------------------------------
// Abstract steps (what proptest generates and shrinks)

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Reserve {
        rid: u8,
        channel: u8,
        lines: Vec<(usize, u64)>,
        ttl_ms: u64,
    },
    /// `partial: None` commits everything. With `from_hold`, the partial lines are mapped onto
    /// the hold's own lines (so most partial commits are valid); without it they are taken
    /// as given (so some name positions or quantities the hold does not have).
    Commit {
        rid: u8,
        partial: Option<Vec<(usize, u64)>>,
        from_hold: bool,
    },
    Release {
        rid: u8,
    },
    Extend {
        rid: u8,
        request: u8,
        ttl_ms: u64,
    },
    Sale {
        store: u8,
        txn: u8,
        store_seq: u64,
        lag_ms: u64,
        lines: Vec<(usize, u64)>,
    },
    /// A verdict on a store's anomaly: the `pick`-th of those the model knows, or (`wrong`,
    /// or none known) on sale `t{txn}` of `store-{store}`, which may have none.
    Acknowledge {
        pick: usize,
        store: u8,
        txn: u8,
        accept: bool,
        wrong: bool,
    },
    Return {
        ret: u8,
        /// (position, qty, inspect?)
        lines: Vec<(usize, u64, bool)>,
    },
    Dispose {
        disposition: u8,
        ret: u8,
        pos: usize,
        qty: u64,
        restock: bool,
    },
    Adjust {
        adjustment: u8,
        pos: usize,
        delta: i64,
        reason: u8,
    },
    SafetyStock {
        request: u8,
        pos: usize,
        qty: u64,
    },
    Advance {
        ms: u64,
    },
    /// Move the clock to the expiry of an open hold, plus `offset` (-1, 0 or 1) ms: the
    /// boundary where a hold stops counting.
    AdvanceToExpiry {
        pick: usize,
        offset: i8,
    },
    ExpireDue {
        batch: usize,
    },
    Purge,
    /// Push a snapshot and reconcile it. `rows`: (position, drift from the model's count at
    /// `as_of`, safety stock); `scope`: 0 all, 1 loc-1, 2 loc-2; `during`: a command decided
    /// after the run started and before it reconciles any position (its tap must count it).
    Reconcile {
        rows: Vec<(usize, i64, Option<u64>)>,
        full: bool,
        scope: u8,
        back_ms: u64,
        units: u64,
        hold: bool,
        dry_run: bool,
        during: Option<Box<Step>>,
    },
    /// Apply or dismiss the drift held at a position (`wrong`: name another snapshot).
    Resolve {
        pos: usize,
        apply: bool,
        wrong: bool,
    },
    /// Resubmit an earlier accepted command exactly.
    Retry {
        pick: usize,
    },
    /// Resubmit an earlier accepted command with one non-key field changed.
    Conflict {
        pick: usize,
        field: usize,
    },
}

fn lines_strategy() -> impl Strategy<Value = Vec<(usize, u64)>> {
    (
        Just((0..POSITIONS).collect::<Vec<_>>()).prop_shuffle(),
        1..=3usize,
        prop::collection::vec(1..=5u64, 3),
    )
        .prop_map(|(order, n, qtys)| order.into_iter().take(n).zip(qtys).collect())
}

fn return_lines_strategy() -> impl Strategy<Value = Vec<(usize, u64, bool)>> {
    (lines_strategy(), prop::collection::vec(any::<bool>(), 3)).prop_map(|(lines, inspect)| {
        lines
            .into_iter()
            .zip(inspect)
            .map(|((p, q), i)| (p, q, i))
            .collect()
    })
}

/// The commands a reconciliation step decides while its run is in progress.
fn during_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0..16u8,
            0..POSITIONS,
            prop_oneof![-4i64..=-1, 1i64..=8],
            0..2u8
        )
            .prop_map(|(adjustment, pos, delta, reason)| Step::Adjust {
                adjustment,
                pos,
                delta,
                reason
            }),
        (0..2u8, 0..8u8, 1..=6u64, 0..10_000u64, lines_strategy()).prop_map(
            |(store, txn, store_seq, lag_ms, lines)| Step::Sale {
                store,
                txn,
                store_seq,
                lag_ms,
                lines
            }
        ),
        (0..2 * RESERVATION_IDS, prop::bool::weighted(0.8)).prop_map(|(rid, from_hold)| {
            Step::Commit {
                rid,
                partial: None,
                from_hold,
            }
        }),
    ]
}

fn reconcile_strategy() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(
            (
                0..POSITIONS,
                prop_oneof![3 => Just(0i64), 2 => -3i64..=3, 1 => -30i64..=30],
                prop::option::weighted(0.2, 0..=3u64),
            ),
            0..=4,
        ),
        any::<bool>(),
        prop_oneof![2 => Just(0u8), 1 => 1..=2u8],
        prop_oneof![Just(0u64), 1..3_000u64, 5_000..20_000u64],
        0..=3u64,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.4, during_strategy().prop_map(Box::new)),
    )
        .prop_map(
            |(rows, full, scope, back_ms, units, hold, dry_run, during)| Step::Reconcile {
                rows,
                full,
                scope,
                back_ms,
                units,
                hold,
                dry_run,
                during,
            },
        )
}

/// Mostly the store's own small numbers; now and then one beyond [`SEQ_JUMP_MAX`] (within it
/// again once an ACCEPT has moved the sequence up there), or the largest number there is.
fn seq_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1..=6u64,
        1 => 200..=260u64,
        1 => Just(u64::MAX),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => reconcile_strategy(),
        2 => (0..POSITIONS, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(pos, apply, wrong)| Step::Resolve { pos, apply, wrong }),
        8 => (0..2 * RESERVATION_IDS, 0..2u8, lines_strategy(), 1_000..=5_000u64).prop_map(
            |(rid, channel, lines, ttl_ms)| Step::Reserve { rid, channel, lines, ttl_ms }
        ),
        4 => (
            0..2 * RESERVATION_IDS,
            prop::option::of(prop::collection::vec((0..POSITIONS, 1..=5u64), 1..=3)),
            prop::bool::weighted(0.8),
        )
            .prop_map(|(rid, partial, from_hold)| Step::Commit { rid, partial, from_hold }),
        2 => (0..2 * RESERVATION_IDS).prop_map(|rid| Step::Release { rid }),
        2 => (0..2 * RESERVATION_IDS, 0..3u8, 1_000..=5_000u64)
            .prop_map(|(rid, request, ttl_ms)| Step::Extend { rid, request, ttl_ms }),
        3 => (0..2u8, 0..8u8, seq_strategy(), 0..10_000u64, lines_strategy()).prop_map(
            |(store, txn, store_seq, lag_ms, lines)| Step::Sale { store, txn, store_seq, lag_ms, lines }
        ),
        2 => (any::<usize>(), 0..2u8, 0..8u8, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
            |(pick, store, txn, accept, wrong)| Step::Acknowledge { pick, store, txn, accept, wrong }
        ),
        2 => (0..4u8, return_lines_strategy()).prop_map(|(ret, lines)| Step::Return { ret, lines }),
        2 => (0..8u8, 0..4u8, 0..POSITIONS, 1..=4u64, any::<bool>()).prop_map(
            |(disposition, ret, pos, qty, restock)| Step::Dispose { disposition, ret, pos, qty, restock }
        ),
        3 => (0..16u8, 0..POSITIONS, prop_oneof![-4i64..=-1, 1i64..=8], 0..2u8).prop_map(
            |(adjustment, pos, delta, reason)| Step::Adjust { adjustment, pos, delta, reason }
        ),
        1 => (0..6u8, 0..POSITIONS, 0..=3u64)
            .prop_map(|(request, pos, qty)| Step::SafetyStock { request, pos, qty }),
        5 => prop_oneof![0..200u64, 500..6_000u64].prop_map(|ms| Step::Advance { ms }),
        2 => (any::<usize>(), -1..=1i8)
            .prop_map(|(pick, offset)| Step::AdvanceToExpiry { pick, offset }),
        3 => prop_oneof![0..3usize, Just(100usize)].prop_map(|batch| Step::ExpireDue { batch }),
        1 => Just(Step::Purge),
        3 => any::<usize>().prop_map(|pick| Step::Retry { pick }),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(pick, field)| Step::Conflict { pick, field }),
    ]
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) shards: usize,
    /// Opening stock per position (0: no opening adjustment, the position may not exist).
    pub(crate) stock: [i64; POSITIONS],
    pub(crate) steps: Vec<Step>,
}

pub(crate) fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![1usize, 2, 64]),
        prop::array::uniform4(prop_oneof![1 => Just(0i64), 4 => 4..=25i64]),
        prop::collection::vec(step_strategy(), 20..=60),
    )
        .prop_map(|(shards, stock, steps)| Case {
            shards,
            stock,
            steps,
        })
}
