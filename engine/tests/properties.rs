//! Property tests: random command sequences over a tiny, collision-heavy universe (2 skus x 2
//! locations, a handful of reservation, store, return and request ids), driven straight into a
//! `Ledger` over a `MemLog` with an explicit clock that only moves forward.
//!
//! Every step is checked against a reference model that is kept *only* from the outcomes the
//! engine returned (and, for the expiry sweep, the events it appended): positions (on hand,
//! quarantined, reserved, safety stock), hold views, store sequences, the exact outcome or
//! refusal of every command, the idempotency contract, and availability at the moment a
//! reserve is decided. At the end of each case the log is replayed into fresh ledgers (twice,
//! event by event against the digests seen live) and through `Engine::recover`.
//!
//! Reconciliation is part of the universe: a step pushes a snapshot (FULL or DELTA, of one
//! location or all, dated up to 20 s back, its counts the model's own count at that time
//! plus a small drift) and runs a `Reconciliation` over it (or a dry run), sometimes with a
//! command decided while the run is in progress; another resolves held drifts. The model
//! keeps every on_hand change with its event time, so it predicts the engine's count at any
//! `as_of`, each logged `PositionReconciled`, and the report's counts.
//!
//! Store sequences run under a small jump bound ([`SEQ_JUMP_MAX`]): some sales jump far
//! beyond it (to 2^64-1 among others) and become anomalies, which a step acknowledges
//! (ACCEPT or DISMISS, sometimes of a txn that has none); the model keeps its own sequence
//! (every number received, and a floor an ACCEPT raises) and predicts each flag, each
//! verdict's outcome and every store status.

use inv_engine::limits::STORE_ANOMALIES_MAX;
use inv_engine::reconcile::*;
use inv_engine::testing::commands::{
    acknowledge_anomaly, adjust, adjust_with_reason, commit, commit_lines, dispose, extend,
    record_return, release, reserve_lines, reserve_on, return_line, sale, set_safety_stock,
};
use inv_engine::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

const SKUS: [&str; 2] = ["sku-a", "sku-b"];
const LOCS: [&str; 2] = ["loc-1", "loc-2"];
/// Positions are numbered 0..4: sku = p / 2, location = p % 2.
const POSITIONS: usize = 4;
/// Reservation ids "r0".."r7" are shared by all commands; a step value of 8..16 means a fresh
/// id for a reserve, and a recently reserved id for commit, release and extend.
const RESERVATION_IDS: u8 = 8;
const T0: u64 = 1_700_000_000_000;
/// The ledger's `store_seq_jump_max` in these cases: small, so sequence numbers of a few
/// hundred jump while the ordinary ones (1 to 6) never do.
const SEQ_JUMP_MAX: u64 = 100;

fn pos_names(p: usize) -> (&'static str, &'static str) {
    (SKUS[p / 2], LOCS[p % 2])
}

fn pos_of(sku: &str, location: &str) -> usize {
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

fn line(p: usize, qty: u64) -> Line {
    let (sku, location) = pos_names(p);
    Line::new(sku, location, qty)
}

fn rid(r: u8) -> String {
    format!("r{r}")
}

// ------------------------------------------------------------------------------------------
// Abstract steps (what proptest generates and shrinks)

#[derive(Debug, Clone)]
enum Step {
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
struct Case {
    shards: usize,
    /// Opening stock per position (0: no opening adjustment, the position may not exist).
    stock: [i64; POSITIONS],
    steps: Vec<Step>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
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

// ------------------------------------------------------------------------------------------
// The reference model

/// An idempotency key as the model understands it: kind, natural id, second id.
type Key = (&'static str, String, String);

fn model_key(c: &Command) -> Option<Key> {
    let e = String::new;
    Some(match c {
        Command::Reserve(c) => ("Reserve", c.reservation_id.to_string(), e()),
        Command::Commit(c) => ("Commit", c.reservation_id.to_string(), e()),
        Command::Release(c) => ("Release", c.reservation_id.to_string(), e()),
        Command::Extend(c) => (
            "Extend",
            c.reservation_id.to_string(),
            c.request_id.to_string(),
        ),
        Command::Expire(_) => return None,
        Command::RecordSale(c) => ("RecordSale", c.store_id.to_string(), c.txn_id.to_string()),
        Command::RecordReturn(c) => ("RecordReturn", c.return_id.to_string(), e()),
        Command::Dispose(c) => ("Dispose", c.disposition_id.to_string(), e()),
        Command::Adjust(c) => ("Adjust", c.adjustment_id.to_string(), e()),
        Command::SetSafetyStock(c) => ("SetSafetyStock", c.request_id.to_string(), e()),
        Command::Reconcile(c) => (
            "Reconcile",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::ResolveDrift(c) => (
            "ResolveDrift",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::AcknowledgeStoreAnomaly(c) => (
            "AcknowledgeStoreAnomaly",
            c.store_id.to_string(),
            c.txn_id.to_string(),
        ),
    })
}

/// The second id of a key made of a snapshot and a position, as the engine documents it:
/// sku and location separated by U+001F.
fn position_sub(sku: &str, location: &str) -> String {
    format!("{sku}\u{1f}{location}")
}

/// How a refusal names a key: `kind:id`, and `:sub` when the key has a second id.
fn key_name((kind, id, sub): &Key) -> String {
    if sub.is_empty() {
        format!("{kind}:{id}")
    } else {
        format!("{kind}:{id}:{sub}")
    }
}

/// The first field (in the documented order) where two commands of one kind differ.
fn first_difference(a: &Command, b: &Command) -> Option<&'static str> {
    let fields: Vec<(&'static str, bool)> = match (a, b) {
        (Command::Reserve(a), Command::Reserve(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("channel", a.channel == b.channel),
            ("lines", a.lines == b.lines),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::Commit(a), Command::Commit(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Release(a), Command::Release(b)) => {
            vec![("reservation_id", a.reservation_id == b.reservation_id)]
        }
        (Command::Extend(a), Command::Extend(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("request_id", a.request_id == b.request_id),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::RecordSale(a), Command::RecordSale(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("store_seq", a.store_seq == b.store_seq),
            ("occurred_at_ms", a.occurred_at_ms == b.occurred_at_ms),
            ("lines", a.lines == b.lines),
        ],
        (Command::RecordReturn(a), Command::RecordReturn(b)) => vec![
            ("return_id", a.return_id == b.return_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Dispose(a), Command::Dispose(b)) => vec![
            ("disposition_id", a.disposition_id == b.disposition_id),
            ("return_id", a.return_id == b.return_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
            ("action", a.action == b.action),
        ],
        (Command::Adjust(a), Command::Adjust(b)) => vec![
            ("adjustment_id", a.adjustment_id == b.adjustment_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("delta", a.delta == b.delta),
            ("reason", a.reason == b.reason),
        ],
        (Command::SetSafetyStock(a), Command::SetSafetyStock(b)) => vec![
            ("request_id", a.request_id == b.request_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
        ],
        (Command::ResolveDrift(a), Command::ResolveDrift(b)) => vec![
            ("snapshot_id", a.snapshot_id == b.snapshot_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("action", a.action == b.action),
        ],
        (Command::AcknowledgeStoreAnomaly(a), Command::AcknowledgeStoreAnomaly(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("action", a.action == b.action),
        ],
        _ => return Some("command"),
    };
    fields.into_iter().find(|(_, same)| !same).map(|(f, _)| f)
}

/// The path a key conflict names for `field`, the first field that differs between the
/// original and the new request: for the lines (which a fingerprint hashes as one field), the
/// first line and subfield that differ, or `lines` when the counts differ or one of two
/// commits lists none (commits everything). The engine finds the original in its log, which
/// a `MemLog` never trims.
fn conflict_path(field: &str, original: &Command, new: &Command) -> String {
    type Lines = Vec<(Sku, Location, u64, Option<ReturnDisposition>)>;
    fn lines(command: &Command) -> Option<Lines> {
        let plain = |lines: &[Line]| {
            lines
                .iter()
                .map(|l| (l.sku.clone(), l.location.clone(), l.qty, None))
                .collect()
        };
        match command {
            Command::Reserve(c) => Some(plain(&c.lines)),
            Command::Commit(c) => c.lines.as_deref().map(plain),
            Command::RecordSale(c) => Some(plain(&c.lines)),
            Command::RecordReturn(c) => Some(
                c.lines
                    .iter()
                    .map(|l| {
                        (
                            l.sku.clone(),
                            l.location.clone(),
                            l.qty,
                            Some(l.disposition),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
    if field != "lines" {
        return field.to_owned();
    }
    let (Some(a), Some(b)) = (lines(original), lines(new)) else {
        return field.to_owned();
    };
    if a.len() != b.len() {
        return field.to_owned();
    }
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let differs = [
            ("sku", a.0 != b.0),
            ("location", a.1 != b.1),
            ("qty", a.2 != b.2),
            ("disposition", a.3 != b.3),
        ];
        if let Some((name, _)) = differs.iter().find(|(_, differs)| *differs) {
            return format!("lines[{i}].{name}");
        }
    }
    field.to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ModelPosition {
    exists: bool,
    on_hand: i64,
    quarantined: i64,
    safety_stock: i64,
}

#[derive(Debug, Clone)]
struct ModelHold {
    lines: Vec<(usize, u64)>,
    channel: String,
    expires_at_ms: u64,
    state: HoldState,
    placed_lsn: u64,
    placed_at_ms: u64,
    ended_at_ms: u64,
}

#[derive(Debug, Clone)]
struct KeyRecord {
    command: Command,
    lsn: u64,
    at_ms: u64,
    outcome: Outcome,
}

#[derive(Debug, Clone)]
struct ModelReturn {
    at_ms: u64,
    quarantined: Vec<(usize, u64)>,
}

/// A store's sequence as the model keeps it: every number received, one by one, above a
/// floor that only an accepted jump raises (every number up to the floor is in the
/// sequence or given up on), and the anomalies in a plain list.
#[derive(Debug, Clone, Default)]
struct ModelStore {
    floor: u64,
    received: BTreeSet<u64>,
    newest_seq: u64,
    newest_occurred_at_ms: u64,
    newest_recorded_at_ms: u64,
    sales_recorded: u64,
    seq_reused: u64,
    gaps_abandoned: u64,
    anomalies: Vec<StoreAnomaly>,
    anomalies_dropped: u64,
    duplicates_absorbed: u64,
}

impl ModelStore {
    fn has(&self, seq: u64) -> bool {
        seq <= self.floor || self.received.contains(&seq)
    }

    fn contiguous(&self) -> u64 {
        let mut contiguous = self.floor;
        while contiguous < u64::MAX && self.received.contains(&(contiguous + 1)) {
            contiguous += 1;
        }
        contiguous
    }

    fn receive(&mut self, seq: u64, occurred_at_ms: u64, recorded_at_ms: u64) {
        if self.has(seq) {
            self.seq_reused += 1;
            return;
        }
        self.received.insert(seq);
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = occurred_at_ms;
            self.newest_recorded_at_ms = recorded_at_ms;
        }
    }

    fn flag(&mut self, anomaly: StoreAnomaly) {
        if let Some(i) = self
            .anomalies
            .iter()
            .position(|a| a.txn_id == anomaly.txn_id)
        {
            self.anomalies.remove(i);
            self.anomalies_dropped += 1;
        }
        self.anomalies.push(anomaly);
        if self.anomalies.len() > STORE_ANOMALIES_MAX {
            self.anomalies.remove(0);
            self.anomalies_dropped += 1;
        }
    }

    /// How many missing numbers accepting `seq` gives up on.
    fn abandoned_by(&self, seq: u64) -> u64 {
        if self.has(seq) {
            return 0;
        }
        let contiguous = self.contiguous();
        let received = self.received.range(contiguous + 1..seq).count() as u64;
        // Anomalies below it came too: an ACCEPT settles them.
        let doubted: BTreeSet<u64> = self
            .anomalies
            .iter()
            .map(|a| a.store_seq)
            .filter(|&n| n > contiguous && n < seq && !self.received.contains(&n))
            .collect();
        seq - contiguous - 1 - received - doubted.len() as u64
    }

    /// Applies a verdict; the missing numbers it gave up on.
    fn acknowledge(&mut self, txn_id: &str, accept: bool) -> Option<u64> {
        let i = self
            .anomalies
            .iter()
            .position(|a| a.txn_id.as_str() == txn_id)?;
        let anomaly = self.anomalies.remove(i);
        if !accept {
            return Some(0);
        }
        let seq = anomaly.store_seq;
        if self.has(seq) {
            self.seq_reused += 1;
            return Some(0);
        }
        let abandoned = self.abandoned_by(seq);
        self.gaps_abandoned = self.gaps_abandoned.saturating_add(abandoned);
        self.anomalies.retain(|a| a.store_seq > seq);
        self.received.retain(|&n| n > seq);
        self.floor = seq;
        if seq >= self.newest_seq {
            self.newest_seq = seq;
            self.newest_occurred_at_ms = anomaly.occurred_at_ms;
            self.newest_recorded_at_ms = anomaly.recorded_at_ms;
        }
        Some(abandoned)
    }

    fn status(&self, store_id: &str) -> StoreStatus {
        let contiguous_seq = self.contiguous();
        let mut gaps = Vec::new();
        let mut seq = contiguous_seq.checked_add(1);
        while let Some(at) = seq.filter(|&n| n <= self.newest_seq) {
            if self.received.contains(&at) {
                seq = at.checked_add(1);
                continue;
            }
            let start = at;
            let mut end = at;
            while end < self.newest_seq && !self.received.contains(&(end + 1)) {
                end += 1;
            }
            gaps.push((start, end));
            seq = end.checked_add(1);
        }
        StoreStatus {
            store_id: store_id.to_owned(),
            contiguous_seq,
            newest_seq: self.newest_seq,
            missing_count: gaps.iter().map(|(s, e)| e - s + 1).sum(),
            gaps,
            sales_recorded: self.sales_recorded,
            seq_reused: self.seq_reused,
            gaps_abandoned: self.gaps_abandoned,
            duplicates_absorbed: self.duplicates_absorbed,
            newest_lag_ms: self
                .newest_recorded_at_ms
                .saturating_sub(self.newest_occurred_at_ms),
            newest_occurred_at_ms: self.newest_occurred_at_ms,
            anomalies: self.anomalies.clone(),
            anomalies_dropped: self.anomalies_dropped,
        }
    }
}

/// What the model says a submit must return.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Duplicate { lsn: u64, outcome: Outcome },
    Refused(Refused),
    Event(Outcome),
}

/// A [`Refusal`] as the model predicts it: every field but the free-text reasons of
/// `KeyConflict` and `NotHeld`, whose field paths it predicts instead.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refused {
    KeyConflict {
        key: String,
        field: String,
    },
    ReservationIdInUse {
        reservation_id: String,
        state: HoldState,
    },
    ReservationNotFound(String),
    NotHeld(String),
    HoldNotLapsed(String),
    ReturnIdInUse(String),
    ReturnNotFound(String),
    NotQuarantined {
        return_id: String,
        sku: String,
        location: String,
        requested: u64,
        quarantined: u64,
    },
    DriftNotHeld {
        snapshot_id: String,
        sku: String,
        location: String,
    },
    StoreNotFound(String),
    StoreAnomalyNotFound {
        store_id: String,
        txn_id: String,
    },
}

fn refused_of(refusal: &Refusal) -> Option<Refused> {
    Some(match refusal.clone() {
        Refusal::KeyConflict { key, field, .. } => Refused::KeyConflict { key, field },
        Refusal::ReservationIdInUse {
            reservation_id,
            state,
        } => Refused::ReservationIdInUse {
            reservation_id,
            state,
        },
        Refusal::ReservationNotFound(id) => Refused::ReservationNotFound(id),
        Refusal::NotHeld { field, .. } => Refused::NotHeld(field),
        Refusal::HoldNotLapsed(id) => Refused::HoldNotLapsed(id),
        Refusal::ReturnIdInUse(id) => Refused::ReturnIdInUse(id),
        Refusal::ReturnNotFound(id) => Refused::ReturnNotFound(id),
        Refusal::NotQuarantined {
            return_id,
            sku,
            location,
            requested,
            quarantined,
        } => Refused::NotQuarantined {
            return_id,
            sku,
            location,
            requested,
            quarantined,
        },
        Refusal::DriftNotHeld {
            snapshot_id,
            sku,
            location,
        } => Refused::DriftNotHeld {
            snapshot_id,
            sku,
            location,
        },
        Refusal::StoreNotFound(id) => Refused::StoreNotFound(id),
        Refusal::StoreAnomalyNotFound { store_id, txn_id } => {
            Refused::StoreAnomalyNotFound { store_id, txn_id }
        }
        _ => return None,
    })
}

/// A drift the model holds for review at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelHeld {
    snapshot_id: String,
    as_of_ms: u64,
    erp_on_hand: i64,
    engine_on_hand_at: i64,
    drift: i64,
}

/// What reconciling one position must decide, as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelVerdict {
    erp_on_hand: i64,
    engine_on_hand_at: i64,
    drift: i64,
    held: bool,
    superseded: Option<String>,
    events_since: u32,
}

impl ModelVerdict {
    /// Whether the engine logs a fact for it: a drift, or a held drift to supersede.
    fn logged(&self) -> bool {
        self.drift != 0 || self.superseded.is_some()
    }
}

#[derive(Debug, Clone)]
struct Model {
    retention_ms: u64,
    positions: [ModelPosition; POSITIONS],
    holds: BTreeMap<String, ModelHold>,
    keys: HashMap<Key, KeyRecord>,
    returns: BTreeMap<String, ModelReturn>,
    stores: BTreeMap<String, ModelStore>,
    next_lsn: u64,
    last_at_ms: u64,
    /// Every on_hand change: (position, event time, delta), as `Fact::on_hand_effects`
    /// documents event time (a sale at its till time capped at when it was recorded, a
    /// correction at its snapshot's time, anything else at its decision time).
    effects: Vec<(usize, u64, i64)>,
    held: BTreeMap<usize, ModelHeld>,
    /// Snapshots reconciled for real: (as_of, scope as a location index, `None` for all).
    reconciled: Vec<(u64, Option<usize>)>,
}

impl Model {
    fn new(retention_ms: u64) -> Self {
        Self {
            retention_ms,
            positions: [ModelPosition::default(); POSITIONS],
            holds: BTreeMap::new(),
            keys: HashMap::new(),
            returns: BTreeMap::new(),
            stores: BTreeMap::new(),
            next_lsn: 1,
            last_at_ms: 0,
            effects: Vec::new(),
            held: BTreeMap::new(),
            reconciled: Vec::new(),
        }
    }

    /// The engine's count of `p` at `as_of_ms`: on_hand less every change dated after it;
    /// and how many changes that is.
    fn on_hand_at(&self, p: usize, as_of_ms: u64) -> (i64, u32) {
        let (mut since, mut events) = (0, 0);
        for &(ep, t, delta) in &self.effects {
            if ep == p && t > as_of_ms {
                since += delta;
                events += 1;
            }
        }
        (self.positions[p].on_hand - since, events)
    }

    /// What reconciling `p` against `erp_on_hand` at `as_of_ms` decides now.
    fn verdict(
        &self,
        p: usize,
        erp_on_hand: i64,
        as_of_ms: u64,
        tolerance: &Tolerance,
    ) -> ModelVerdict {
        let (engine_on_hand_at, events_since) = self.on_hand_at(p, as_of_ms);
        let drift = erp_on_hand - engine_on_hand_at;
        ModelVerdict {
            erp_on_hand,
            engine_on_hand_at,
            drift,
            held: drift != 0
                && tolerance.beyond == BeyondTolerance::Hold
                && drift.unsigned_abs() > tolerance.units
                && u128::from(drift.unsigned_abs()) * 10_000
                    > u128::from(engine_on_hand_at.unsigned_abs())
                        * u128::from(tolerance.percent_bp),
            superseded: self.held.get(&p).map(|h| h.snapshot_id.clone()),
            events_since,
        }
    }

    fn retained(&self, at_ms: u64, now_ms: u64) -> bool {
        at_ms.saturating_add(self.retention_ms) > now_ms
    }

    fn live_hold(&self, id: &str, now_ms: u64) -> Option<&ModelHold> {
        self.holds
            .get(id)
            .filter(|h| h.state == HoldState::Open || self.retained(h.ended_at_ms, now_ms))
    }

    /// Units of every open hold on `p`, lapsed or not (what `PositionView::reserved` shows).
    fn reserved_all(&self, p: usize) -> i64 {
        self.holds
            .values()
            .filter(|h| h.state == HoldState::Open)
            .flat_map(|h| h.lines.iter())
            .filter(|(lp, _)| *lp == p)
            .map(|(_, q)| *q as i64)
            .sum()
    }

    /// Units of open holds on `p` whose TTL has not passed at `now_ms`.
    fn reserved_live(&self, p: usize, now_ms: u64) -> i64 {
        self.holds
            .values()
            .filter(|h| h.state == HoldState::Open && now_ms < h.expires_at_ms)
            .flat_map(|h| h.lines.iter())
            .filter(|(lp, _)| *lp == p)
            .map(|(_, q)| *q as i64)
            .sum()
    }

    fn availability(&self, p: usize, now_ms: u64) -> Option<Availability> {
        let position = &self.positions[p];
        if !position.exists {
            return None;
        }
        let reserved = self.reserved_live(p, now_ms);
        Some(Availability {
            on_hand: position.on_hand,
            reserved,
            safety_stock: position.safety_stock,
            quarantined: position.quarantined,
            available: position.on_hand - reserved - position.safety_stock,
        })
    }

    fn lapsed_open_holds(&self, now_ms: u64) -> BTreeSet<String> {
        self.holds
            .iter()
            .filter(|(_, h)| h.state == HoldState::Open && now_ms >= h.expires_at_ms)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn hold_ended(hold: &ModelHold, now_ms: u64) -> Option<Outcome> {
        if hold.state != HoldState::Open {
            Some(Outcome::HoldAlreadyEnded(hold.state))
        } else if now_ms >= hold.expires_at_ms {
            Some(Outcome::Expired)
        } else {
            None
        }
    }

    fn predict(&self, command: &Command, now_ms: u64) -> Expected {
        if let Some(key) = model_key(command)
            && let Some(record) = self.keys.get(&key)
            && self.retained(record.at_ms, now_ms)
        {
            return match first_difference(&record.command, command) {
                Some(field) => Expected::Refused(Refused::KeyConflict {
                    key: key_name(&key),
                    field: conflict_path(field, &record.command, command),
                }),
                None => Expected::Duplicate {
                    lsn: record.lsn,
                    outcome: record.outcome.clone(),
                },
            };
        }
        match command {
            Command::Reserve(c) => {
                if let Some(hold) = self.live_hold(c.reservation_id.as_str(), now_ms) {
                    // Its key is past retention, but the hold is still remembered.
                    return Expected::Refused(Refused::ReservationIdInUse {
                        reservation_id: c.reservation_id.to_string(),
                        state: hold.state,
                    });
                }
                let short: Vec<ShortLine> = c
                    .lines
                    .iter()
                    .enumerate()
                    .filter_map(|(i, l)| {
                        let p = pos_of(l.sku.as_str(), l.location.as_str());
                        let available = self.availability(p, now_ms).map_or(0, |a| a.available);
                        (available < l.qty as i64).then_some(ShortLine {
                            line_index: i as u32,
                            requested: l.qty,
                            available,
                        })
                    })
                    .collect();
                Expected::Event(if short.is_empty() {
                    Outcome::Granted {
                        expires_at_ms: now_ms + c.ttl_ms,
                    }
                } else {
                    Outcome::Insufficient { short }
                })
            }
            Command::Commit(c) => {
                let Some(hold) = self.live_hold(c.reservation_id.as_str(), now_ms) else {
                    return Expected::Refused(Refused::ReservationNotFound(
                        c.reservation_id.to_string(),
                    ));
                };
                if let Some(ended) = Self::hold_ended(hold, now_ms) {
                    return Expected::Event(ended);
                }
                let committed = match &c.lines {
                    None => hold.lines.iter().map(|(_, q)| *q).collect(),
                    Some(lines) => {
                        let mut committed = vec![0; hold.lines.len()];
                        for (i, l) in lines.iter().enumerate() {
                            let p = pos_of(l.sku.as_str(), l.location.as_str());
                            let Some(index) = hold.lines.iter().position(|(hp, _)| *hp == p) else {
                                return Expected::Refused(Refused::NotHeld(format!("lines[{i}]")));
                            };
                            if l.qty > hold.lines[index].1 {
                                return Expected::Refused(Refused::NotHeld(format!(
                                    "lines[{i}].qty"
                                )));
                            }
                            committed[index] = l.qty;
                        }
                        committed
                    }
                };
                Expected::Event(Outcome::Committed { committed })
            }
            Command::Release(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(hold) => {
                    Expected::Event(Self::hold_ended(hold, now_ms).unwrap_or(Outcome::Released))
                }
            },
            Command::Extend(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(hold) => {
                    Expected::Event(Self::hold_ended(hold, now_ms).unwrap_or(Outcome::Extended {
                        expires_at_ms: now_ms + c.ttl_ms,
                    }))
                }
            },
            Command::Expire(c) => match self.live_hold(c.reservation_id.as_str(), now_ms) {
                None => {
                    Expected::Refused(Refused::ReservationNotFound(c.reservation_id.to_string()))
                }
                Some(h) if h.state == HoldState::Open && now_ms >= h.expires_at_ms => {
                    Expected::Event(Outcome::Expired)
                }
                Some(_) => Expected::Refused(Refused::HoldNotLapsed(c.reservation_id.to_string())),
            },
            Command::Dispose(c) => {
                let Some(record) = self.returns.get(c.return_id.as_str()) else {
                    return Expected::Refused(Refused::ReturnNotFound(c.return_id.to_string()));
                };
                let p = pos_of(c.sku.as_str(), c.location.as_str());
                let quarantined = record
                    .quarantined
                    .iter()
                    .find(|(qp, _)| *qp == p)
                    .map_or(0, |(_, q)| *q);
                if c.qty > quarantined {
                    Expected::Refused(Refused::NotQuarantined {
                        return_id: c.return_id.to_string(),
                        sku: c.sku.to_string(),
                        location: c.location.to_string(),
                        requested: c.qty,
                        quarantined,
                    })
                } else {
                    Expected::Event(Outcome::Recorded)
                }
            }
            Command::RecordReturn(c) => {
                // Its key is past retention, but recording the id again would orphan the
                // units it still has in quarantine.
                if self
                    .returns
                    .get(c.return_id.as_str())
                    .is_some_and(|r| r.quarantined.iter().any(|(_, q)| *q > 0))
                {
                    Expected::Refused(Refused::ReturnIdInUse(c.return_id.to_string()))
                } else {
                    Expected::Event(Outcome::Recorded)
                }
            }
            Command::RecordSale(_) | Command::Adjust(_) | Command::SetSafetyStock(_) => {
                Expected::Event(Outcome::Recorded)
            }
            Command::AcknowledgeStoreAnomaly(c) => {
                let Some(store) = self.stores.get(c.store_id.as_str()) else {
                    return Expected::Refused(Refused::StoreNotFound(c.store_id.to_string()));
                };
                let Some(anomaly) = store.anomalies.iter().find(|a| a.txn_id == c.txn_id) else {
                    return Expected::Refused(Refused::StoreAnomalyNotFound {
                        store_id: c.store_id.to_string(),
                        txn_id: c.txn_id.to_string(),
                    });
                };
                let accepted = c.action == AnomalyAction::Accept;
                Expected::Event(Outcome::StoreAnomalyAcknowledged {
                    store_seq: anomaly.store_seq,
                    accepted,
                    gaps_abandoned: if accepted {
                        store.abandoned_by(anomaly.store_seq)
                    } else {
                        0
                    },
                })
            }
            Command::ResolveDrift(c) => {
                let p = pos_of(c.sku.as_str(), c.location.as_str());
                match self.held.get(&p) {
                    Some(held) if held.snapshot_id == c.snapshot_id.as_str() => {
                        Expected::Event(Outcome::DriftResolved {
                            drift: held.drift,
                            applied: c.action == DriftAction::Apply,
                        })
                    }
                    _ => Expected::Refused(Refused::DriftNotHeld {
                        snapshot_id: c.snapshot_id.to_string(),
                        sku: c.sku.to_string(),
                        location: c.location.to_string(),
                    }),
                }
            }
            Command::Reconcile(_) => {
                unreachable!("a Reconcile is issued by a Reconciliation run, never submitted here")
            }
        }
    }

    fn end_hold(&mut self, id: &str, to: HoldState, committed: Option<&[u64]>, at_ms: u64) {
        let hold = self.holds.get_mut(id).expect("model: ended hold exists");
        assert_eq!(hold.state, HoldState::Open, "model: only open holds end");
        hold.state = to;
        hold.ended_at_ms = at_ms;
        if let Some(committed) = committed {
            let lines = hold.lines.clone();
            for ((p, _), c) in lines.iter().zip(committed) {
                self.positions[*p].on_hand -= *c as i64;
                if *c > 0 {
                    self.effects.push((*p, at_ms, -(*c as i64)));
                }
            }
        }
    }

    /// The fact the engine must log for `command` decided as `outcome`: a commit names the
    /// positions of its hold (in the hold's order), which only the model's hold knows.
    fn fact(&self, command: &Command, outcome: &Outcome) -> Result<Fact, Box<(Command, Outcome)>> {
        if let (Command::Commit(c), Outcome::Committed { committed }) = (command, outcome)
            && let Some(hold) = self.holds.get(c.reservation_id.as_str())
            && hold.lines.len() == committed.len()
        {
            let lines = hold
                .lines
                .iter()
                .zip(committed)
                .map(|(&(p, _), &qty)| {
                    let (sku, location) = pos_names(p);
                    Line::new(sku, location, qty)
                })
                .collect();
            return Ok(Fact::HoldCommitted {
                commit: c.clone(),
                lines,
            });
        }
        // Whether a sale's number jumps is the model's own judgement of its store.
        if let (Command::RecordSale(c), Outcome::Recorded) = (command, outcome) {
            let newest_seq = self
                .stores
                .get(c.store_id.as_str())
                .map_or(0, |s| s.newest_seq);
            if c.store_seq > newest_seq.saturating_add(SEQ_JUMP_MAX) {
                return Ok(Fact::SaleRecordedOutOfSequence {
                    sale: c.clone(),
                    newest_seq,
                });
            }
        }
        // The held drift's time and size are only in the model's record of it.
        if let (Command::ResolveDrift(c), Outcome::DriftResolved { drift, .. }) = (command, outcome)
            && let Some(held) = self.held.get(&pos_of(c.sku.as_str(), c.location.as_str()))
        {
            return Ok(Fact::DriftResolved {
                resolve: c.clone(),
                as_of_ms: held.as_of_ms,
                drift: *drift,
            });
        }
        Fact::decided(command.clone(), outcome.clone())
    }

    /// Applies an event the engine appended: the fact of the command and the outcome the
    /// engine returned.
    fn apply(&mut self, fact: &Fact, lsn: u64, at_ms: u64) {
        match fact {
            Fact::HoldPlaced {
                reserve: c,
                expires_at_ms,
            } => {
                self.holds.insert(
                    c.reservation_id.to_string(),
                    ModelHold {
                        lines: c
                            .lines
                            .iter()
                            .map(|l| (pos_of(l.sku.as_str(), l.location.as_str()), l.qty))
                            .collect(),
                        channel: c.channel.to_string(),
                        expires_at_ms: *expires_at_ms,
                        state: HoldState::Open,
                        placed_lsn: lsn,
                        placed_at_ms: at_ms,
                        ended_at_ms: 0,
                    },
                );
            }
            Fact::ReserveRefused { .. } | Fact::HoldAlreadyEnded { .. } => {}
            Fact::HoldCommitted { commit: c, lines } => {
                let committed: Vec<u64> = lines.iter().map(|l| l.qty).collect();
                self.end_hold(
                    c.reservation_id.as_str(),
                    HoldState::Committed,
                    Some(&committed),
                    at_ms,
                )
            }
            Fact::HoldReleased(c) => {
                self.end_hold(c.reservation_id.as_str(), HoldState::Released, None, at_ms)
            }
            Fact::HoldExpired(request) => self.end_hold(
                request.reservation_id().as_str(),
                HoldState::Expired,
                None,
                at_ms,
            ),
            Fact::HoldExtended {
                extend: c,
                expires_at_ms,
            } => {
                let hold = self
                    .holds
                    .get_mut(c.reservation_id.as_str())
                    .expect("model: extended hold exists");
                hold.expires_at_ms = *expires_at_ms;
            }
            Fact::SaleRecorded(c) | Fact::SaleRecordedOutOfSequence { sale: c, .. } => {
                for l in &c.lines {
                    let pos = pos_of(l.sku.as_str(), l.location.as_str());
                    let p = &mut self.positions[pos];
                    p.exists = true;
                    p.on_hand -= l.qty as i64;
                    self.effects
                        .push((pos, c.occurred_at_ms.min(at_ms), -(l.qty as i64)));
                }
                let store = self.stores.entry(c.store_id.to_string()).or_default();
                store.sales_recorded += 1;
                if let Fact::SaleRecordedOutOfSequence { newest_seq, .. } = fact {
                    assert_eq!(
                        *newest_seq, store.newest_seq,
                        "model: the jump's newest seq"
                    );
                    store.flag(StoreAnomaly {
                        txn_id: c.txn_id.clone(),
                        store_seq: c.store_seq,
                        newest_seq: *newest_seq,
                        occurred_at_ms: c.occurred_at_ms,
                        recorded_at_ms: at_ms,
                        lsn: Lsn(lsn),
                    });
                } else {
                    store.receive(c.store_seq, c.occurred_at_ms, at_ms);
                }
            }
            Fact::StoreAnomalyAcknowledged {
                acknowledge: c,
                gaps_abandoned,
                ..
            } => {
                let store = self
                    .stores
                    .get_mut(c.store_id.as_str())
                    .expect("model: an acknowledged store exists");
                let abandoned =
                    store.acknowledge(c.txn_id.as_str(), c.action == AnomalyAction::Accept);
                assert_eq!(abandoned, Some(*gaps_abandoned), "model: {fact:?}");
            }
            Fact::ReturnRecorded(c) => {
                let mut quarantined = Vec::new();
                for l in &c.lines {
                    let p = pos_of(l.sku.as_str(), l.location.as_str());
                    let position = &mut self.positions[p];
                    position.exists = true;
                    match l.disposition {
                        ReturnDisposition::Restock => {
                            position.on_hand += l.qty as i64;
                            self.effects.push((p, at_ms, l.qty as i64));
                        }
                        ReturnDisposition::Inspect => {
                            position.quarantined += l.qty as i64;
                            quarantined.push((p, l.qty));
                        }
                    }
                }
                self.returns
                    .insert(c.return_id.to_string(), ModelReturn { at_ms, quarantined });
            }
            Fact::ReturnDisposed(c) => {
                let p = pos_of(c.sku.as_str(), c.location.as_str());
                let record = self
                    .returns
                    .get_mut(c.return_id.as_str())
                    .expect("model: disposed return exists");
                let entry = record
                    .quarantined
                    .iter_mut()
                    .find(|(qp, _)| *qp == p)
                    .expect("model: disposed units were quarantined");
                entry.1 -= c.qty;
                let position = &mut self.positions[p];
                position.quarantined -= c.qty as i64;
                if c.action == DispositionAction::Restock {
                    position.on_hand += c.qty as i64;
                    self.effects.push((p, at_ms, c.qty as i64));
                }
            }
            Fact::StockAdjusted(c) => {
                let pos = pos_of(c.sku.as_str(), c.location.as_str());
                let p = &mut self.positions[pos];
                p.exists = true;
                p.on_hand += c.delta;
                self.effects.push((pos, at_ms, c.delta));
            }
            Fact::SafetyStockSet(c) => {
                let p = &mut self.positions[pos_of(c.sku.as_str(), c.location.as_str())];
                p.exists = true;
                p.safety_stock = c.qty as i64;
            }
            Fact::PositionReconciled {
                reconcile: r,
                engine_on_hand_at,
                drift,
                held,
                superseded,
                ..
            } => {
                let p = pos_of(r.sku.as_str(), r.location.as_str());
                let removed = self.held.remove(&p).map(|h| h.snapshot_id);
                assert_eq!(
                    removed.as_deref(),
                    superseded.as_ref().map(|s| s.as_str()),
                    "model: a reconciliation supersedes the drift held there"
                );
                if *held {
                    self.held.insert(
                        p,
                        ModelHeld {
                            snapshot_id: r.snapshot_id.to_string(),
                            as_of_ms: r.as_of_ms,
                            erp_on_hand: r.erp_on_hand,
                            engine_on_hand_at: *engine_on_hand_at,
                            drift: *drift,
                        },
                    );
                } else if *drift != 0 {
                    let position = &mut self.positions[p];
                    position.exists = true;
                    position.on_hand += drift;
                    self.effects.push((p, r.as_of_ms, *drift));
                }
            }
            Fact::DriftResolved {
                resolve,
                as_of_ms,
                drift,
            } => {
                let p = pos_of(resolve.sku.as_str(), resolve.location.as_str());
                let held = self
                    .held
                    .remove(&p)
                    .expect("model: a resolved drift was held");
                assert_eq!(held.snapshot_id, resolve.snapshot_id.as_str());
                assert_eq!((held.as_of_ms, held.drift), (*as_of_ms, *drift));
                if resolve.action == DriftAction::Apply {
                    let position = &mut self.positions[p];
                    position.exists = true;
                    position.on_hand += drift;
                    if *drift != 0 {
                        self.effects.push((p, *as_of_ms, *drift));
                    }
                }
            }
        }
        let (command, outcome) = fact.to_decision();
        if let Some(key) = model_key(&command) {
            self.keys.insert(
                key,
                KeyRecord {
                    command,
                    lsn,
                    at_ms,
                    outcome,
                },
            );
        }
        assert_eq!(lsn, self.next_lsn, "model: events in LSN order");
        self.next_lsn += 1;
        self.last_at_ms = self.last_at_ms.max(at_ms);
    }

    /// What `Ledger::purge(now_ms)` forgets; returns how many entries.
    fn purge(&mut self, now_ms: u64) -> usize {
        let as_of = now_ms.min(self.last_at_ms);
        let r = self.retention_ms;
        let kept = |at: u64| at.saturating_add(r) > as_of;
        let before = self.keys.len() + self.holds.len() + self.returns.len();
        self.keys.retain(|_, k| kept(k.at_ms));
        self.holds
            .retain(|_, h| h.state == HoldState::Open || kept(h.ended_at_ms));
        self.returns
            .retain(|_, ret| ret.quarantined.iter().any(|(_, q)| *q > 0) || kept(ret.at_ms));
        before - (self.keys.len() + self.holds.len() + self.returns.len())
    }
}

// ------------------------------------------------------------------------------------------
// The harness: one ledger, one model, one clock

struct Harness {
    config: LedgerConfig,
    log: Arc<MemLog>,
    /// An engine over the log, so reconciliations run as the server runs them; commands
    /// are still decided through its ledger at the harness's own time.
    engine: Arc<Engine>,
    /// The engine's clock: set to `now_ms` before a reconciliation.
    clock: Arc<ManualClock>,
    snapshots: Arc<MemSnapshotStore>,
    snapshots_pushed: usize,
    model: Model,
    now_ms: u64,
    /// Commands the engine accepted as new events (keyed ones only): what retries reuse.
    history: Vec<Command>,
    /// The live digest whenever the step left `next_lsn` at the given value.
    digests: BTreeMap<u64, u64>,
    /// Reservation ids handed out fresh (never reused by a later reserve).
    fresh_ids: Vec<String>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    granted: usize,
    insufficient: usize,
    reconciled: usize,
    drifts_applied: usize,
    drifts_held: usize,
    drifts_resolved: usize,
    duplicates: usize,
    conflicts: usize,
    expired: usize,
    /// Sales whose number jumped beyond `SEQ_JUMP_MAX`, and verdicts on them.
    seq_anomalies: usize,
    anomalies_accepted: usize,
    anomalies_dismissed: usize,
}

macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($arg)+)));
        }
    };
}

impl Harness {
    fn new(config: LedgerConfig) -> Self {
        let log = Arc::new(MemLog::new());
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Engine::recover(config, log.clone(), clock.clone()).expect("an empty log");
        let mut digests = BTreeMap::new();
        digests.insert(1, engine.ledger().digest());
        Self {
            config,
            log,
            engine: Arc::new(engine),
            clock,
            snapshots: Arc::new(MemSnapshotStore::new()),
            snapshots_pushed: 0,
            model: Model::new(config.key_retention_ms),
            now_ms: T0,
            history: Vec::new(),
            digests,
            fresh_ids: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn ledger(&self) -> &Ledger {
        self.engine.ledger()
    }

    /// Submits one command and checks the receipt or refusal against the model, the
    /// availability a reserve was decided against, and the idempotency contract.
    fn submit(&mut self, command: Command) -> Result<Result<Decision, SubmitError>, TestCaseError> {
        let now = self.now_ms;
        let digest_before = self.ledger().digest();
        let lsn_before = self.ledger().next_lsn();
        let log_before = self.log.len();
        let expected = self.model.predict(&command, now);

        // Availability of each reserve line's position, read right before the decision.
        let at_decision: Vec<Option<Availability>> = match &command {
            Command::Reserve(c) => c
                .lines
                .iter()
                .map(|l| {
                    self.ledger()
                        .check(l.sku.as_str(), l.location.as_str(), now)
                })
                .collect(),
            _ => Vec::new(),
        };

        let result = self.ledger().submit(command.clone(), now);
        let returned = result.clone();
        let unchanged = |h: &Harness| -> Result<(), TestCaseError> {
            check!(
                h.ledger().next_lsn() == lsn_before,
                "next_lsn moved on a non-event for {command:?}"
            );
            check!(
                h.log.len() == log_before,
                "log grew on a non-event for {command:?}"
            );
            check!(
                h.ledger().digest() == digest_before,
                "digest changed on a non-event for {command:?}"
            );
            Ok(())
        };
        match (expected, result) {
            (Expected::Duplicate { lsn, outcome }, Ok(Ok(receipt))) => {
                check!(
                    receipt.duplicate,
                    "retry of {command:?} not marked duplicate: {receipt:?}"
                );
                check!(
                    receipt.lsn == Lsn(lsn) && receipt.outcome == outcome,
                    "retry of {command:?}: got {receipt:?}, original was lsn {lsn} {outcome:?}"
                );
                unchanged(self)?;
                if let Command::RecordSale(c) = &command
                    && let Some(store) = self.model.stores.get_mut(c.store_id.as_str())
                {
                    store.duplicates_absorbed += 1;
                }
                self.stats.duplicates += 1;
                Ok(returned)
            }
            (Expected::Refused(expected), Ok(Err(refusal))) => {
                check!(
                    refused_of(&refusal).as_ref() == Some(&expected),
                    "{command:?}: expected refusal {expected:?}, got {refusal:?}"
                );
                if matches!(expected, Refused::KeyConflict { .. }) {
                    self.stats.conflicts += 1;
                }
                unchanged(self)?;
                Ok(returned)
            }
            (Expected::Event(outcome), Ok(Ok(receipt))) => {
                check!(
                    !receipt.duplicate,
                    "new command {command:?} marked duplicate"
                );
                check!(
                    receipt.lsn == Lsn(self.model.next_lsn),
                    "{command:?}: lsn {} but expected {}",
                    receipt.lsn,
                    self.model.next_lsn
                );
                check!(
                    receipt.outcome == outcome,
                    "{command:?} at {now}: outcome {:?}, model expected {outcome:?}",
                    receipt.outcome
                );
                let events = self.log.events();
                check!(
                    events.len() == log_before + 1,
                    "one event per accepted command"
                );
                let event = events.last().expect("just appended");
                let fact = self.model.fact(&command, &receipt.outcome);
                check!(
                    fact.is_ok(),
                    "{command:?}: outcome {:?} does not belong to the command",
                    receipt.outcome
                );
                let fact = fact.expect("checked");
                check!(
                    event.lsn == receipt.lsn && event.at_ms == now && event.fact == fact,
                    "logged event {event:?} does not match the receipt {receipt:?}"
                );
                if receipt.outcome == Outcome::Expired {
                    self.stats.expired += 1;
                }
                if matches!(receipt.outcome, Outcome::DriftResolved { .. }) {
                    self.stats.drifts_resolved += 1;
                }
                match &fact {
                    Fact::SaleRecordedOutOfSequence { .. } => self.stats.seq_anomalies += 1,
                    Fact::StoreAnomalyAcknowledged { acknowledge, .. } => {
                        if acknowledge.action == AnomalyAction::Accept {
                            self.stats.anomalies_accepted += 1;
                        } else {
                            self.stats.anomalies_dismissed += 1;
                        }
                    }
                    _ => {}
                }
                if let Command::Reserve(c) = &command {
                    self.check_reserve_decision(c, &at_decision, &receipt.outcome)?;
                }
                // The model moves on the engine's answer, not on its own prediction.
                self.model.apply(&fact, receipt.lsn.0, now);
                if model_key(&command).is_some() {
                    self.history.push(command);
                }
                Ok(returned)
            }
            (expected, actual) => Err(TestCaseError::fail(format!(
                "{command:?} at {now}: expected {expected:?}, got {actual:?}"
            ))),
        }
    }

    /// Invariant 2 at the moment of decision: a granted line never exceeds the availability of
    /// its position read just before; an insufficient reserve reports that availability.
    fn check_reserve_decision(
        &mut self,
        c: &Reserve,
        at_decision: &[Option<Availability>],
        outcome: &Outcome,
    ) -> Result<(), TestCaseError> {
        match outcome {
            Outcome::Granted { .. } => {
                self.stats.granted += 1;
                for (l, before) in c.lines.iter().zip(at_decision) {
                    let Some(before) = before else {
                        return Err(TestCaseError::fail(format!(
                            "granted {l:?} on a position that does not exist"
                        )));
                    };
                    check!(
                        l.qty as i64 <= before.available,
                        "granted {l:?} with only {} available at decision",
                        before.available
                    );
                    let after = self
                        .ledger()
                        .check(l.sku.as_str(), l.location.as_str(), self.now_ms)
                        .expect("position exists");
                    check!(
                        after.available == before.available - l.qty as i64 && after.available >= 0,
                        "grant of {l:?} moved available from {} to {}",
                        before.available,
                        after.available
                    );
                }
            }
            Outcome::Insufficient { short } => {
                self.stats.insufficient += 1;
                check!(!short.is_empty(), "insufficient without a short line");
                for s in short {
                    let i = s.line_index as usize;
                    let before = at_decision[i].map_or(0, |a| a.available);
                    check!(
                        s.available == before && (s.requested as i64) > before,
                        "short line {s:?} but {before} was available at decision"
                    );
                }
                for (i, l) in c.lines.iter().enumerate() {
                    let before = at_decision[i].map_or(0, |a| a.available);
                    if !short.iter().any(|s| s.line_index as usize == i) {
                        check!(
                            l.qty as i64 <= before,
                            "line {i} not reported short with {before} available"
                        );
                    }
                }
            }
            other => return Err(TestCaseError::fail(format!("reserve got {other:?}"))),
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let command = match step {
            Step::Reserve {
                rid: r,
                channel,
                lines,
                ttl_ms,
            } => reserve_on(
                &format!("ch{channel}"),
                &self.reserve_id(*r),
                lines.iter().map(|&(p, q)| line(p, q)).collect(),
                *ttl_ms,
            ),
            Step::Commit {
                rid: r,
                partial,
                from_hold,
            } => {
                let lines = partial.as_ref().map(|picks| {
                    match self
                        .model
                        .holds
                        .get(&self.hold_target(*r))
                        .filter(|_| *from_hold)
                    {
                        Some(hold) => {
                            let mut lines: Vec<Line> = Vec::new();
                            for &(sel, qty) in picks {
                                let (p, held) = hold.lines[sel % hold.lines.len()];
                                let l = line(p, 1 + (qty - 1) % held);
                                if !lines
                                    .iter()
                                    .any(|x| x.sku == l.sku && x.location == l.location)
                                {
                                    lines.push(l);
                                }
                            }
                            lines
                        }
                        None => {
                            let mut lines: Vec<Line> = Vec::new();
                            for &(p, qty) in picks {
                                let l = line(p, qty);
                                if !lines
                                    .iter()
                                    .any(|x| x.sku == l.sku && x.location == l.location)
                                {
                                    lines.push(l);
                                }
                            }
                            lines
                        }
                    }
                });
                let target = self.hold_target(*r);
                match lines {
                    Some(lines) => commit_lines(&target, lines),
                    None => commit(&target),
                }
            }
            Step::Release { rid: r } => release(&self.hold_target(*r)),
            Step::Extend {
                rid: r,
                request,
                ttl_ms,
            } => extend(&self.hold_target(*r), &format!("x{request}"), *ttl_ms),
            Step::Sale {
                store,
                txn,
                store_seq,
                lag_ms,
                lines,
            } => sale(
                &format!("store-{store}"),
                &format!("t{txn}"),
                *store_seq,
                self.now_ms - lag_ms,
                lines.iter().map(|&(p, q)| line(p, q)).collect(),
            ),
            Step::Acknowledge {
                pick,
                store,
                txn,
                accept,
                wrong,
            } => {
                let known: Vec<(String, String)> = self
                    .model
                    .stores
                    .iter()
                    .flat_map(|(id, s)| {
                        s.anomalies
                            .iter()
                            .map(|a| (id.clone(), a.txn_id.to_string()))
                    })
                    .collect();
                let (store, txn) = match known.get(pick % known.len().max(1)) {
                    Some(target) if !*wrong => target.clone(),
                    _ => (format!("store-{store}"), format!("t{txn}")),
                };
                let action = if *accept {
                    AnomalyAction::Accept
                } else {
                    AnomalyAction::Dismiss
                };
                acknowledge_anomaly(&store, &txn, action)
            }
            Step::Return { ret, lines } => record_return(
                &format!("ret{ret}"),
                lines
                    .iter()
                    .map(|&(p, qty, inspect)| {
                        let (sku, location) = pos_names(p);
                        let disposition = if inspect {
                            ReturnDisposition::Inspect
                        } else {
                            ReturnDisposition::Restock
                        };
                        return_line(sku, location, qty, disposition)
                    })
                    .collect(),
            ),
            Step::Dispose {
                disposition,
                ret,
                pos,
                qty,
                restock,
            } => {
                let (sku, location) = pos_names(*pos);
                let action = if *restock {
                    DispositionAction::Restock
                } else {
                    DispositionAction::Scrap
                };
                dispose(
                    &format!("d{disposition}"),
                    &format!("ret{ret}"),
                    sku,
                    location,
                    *qty,
                    action,
                )
            }
            Step::Adjust {
                adjustment,
                pos,
                delta,
                reason,
            } => {
                let (sku, location) = pos_names(*pos);
                adjust_with_reason(
                    &format!("a{adjustment}"),
                    sku,
                    location,
                    *delta,
                    ["receipt", "count"][*reason as usize % 2],
                )
            }
            Step::SafetyStock { request, pos, qty } => {
                let (sku, location) = pos_names(*pos);
                set_safety_stock(&format!("s{request}"), sku, location, *qty)
            }
            Step::Advance { ms } => {
                self.now_ms += ms;
                return Ok(());
            }
            Step::AdvanceToExpiry { pick, offset } => {
                let expiries: Vec<u64> = self
                    .model
                    .holds
                    .values()
                    .filter(|h| h.state == HoldState::Open)
                    .map(|h| h.expires_at_ms.saturating_add_signed(i64::from(*offset)))
                    .filter(|&t| t > self.now_ms)
                    .collect();
                if !expiries.is_empty() {
                    self.now_ms = expiries[pick % expiries.len()];
                }
                return Ok(());
            }
            Step::ExpireDue { batch } => return self.expire_due(*batch),
            Step::Reconcile {
                rows,
                full,
                scope,
                back_ms,
                units,
                hold,
                dry_run,
                during,
            } => {
                let tolerance = Tolerance {
                    units: *units,
                    percent_bp: 1_000,
                    beyond: if *hold {
                        BeyondTolerance::Hold
                    } else {
                        BeyondTolerance::Apply
                    },
                };
                let scope = match scope % 3 {
                    0 => None,
                    s => Some(usize::from(s) - 1),
                };
                return self.reconcile(
                    rows,
                    *full,
                    scope,
                    *back_ms,
                    tolerance,
                    *dry_run,
                    during.as_deref(),
                );
            }
            Step::Resolve { pos, apply, wrong } => {
                let (sku, location) = pos_names(*pos);
                let held = self.model.held.get(pos).map(|h| h.snapshot_id.clone());
                let snapshot_id = match held {
                    Some(id) if !*wrong => id,
                    _ => format!("snap{}", pos % self.snapshots_pushed.max(1)),
                };
                Command::ResolveDrift(ResolveDrift {
                    snapshot_id: SnapshotId::from(snapshot_id.as_str()),
                    sku: Sku::from(sku),
                    location: Location::from(location),
                    action: if *apply {
                        DriftAction::Apply
                    } else {
                        DriftAction::Dismiss
                    },
                })
            }
            Step::Purge => return self.purge(),
            Step::Retry { pick } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let original = self.history[pick % self.history.len()].clone();
                let key = model_key(&original).expect("history holds keyed commands");
                let record = self.model.keys.get(&key).cloned();
                let result = self.submit(original.clone())?;
                // Within retention the retry must be answered from the key, unchanged.
                if let Some(record) = record
                    && record.command == original
                    && self.model.retained(record.at_ms, self.now_ms)
                {
                    let Ok(Ok(receipt)) = result else {
                        return Err(TestCaseError::fail(format!(
                            "retry of {original:?} refused: {result:?}"
                        )));
                    };
                    check!(
                        receipt.duplicate
                            && receipt.lsn == Lsn(record.lsn)
                            && receipt.outcome == record.outcome,
                        "retry of {original:?} got {receipt:?}"
                    );
                }
                return Ok(());
            }
            Step::Conflict { pick, field } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let original = self.history[pick % self.history.len()].clone();
                let Some((changed, field_name)) = mutate(&original, *field) else {
                    return Ok(());
                };
                let key = model_key(&original).expect("history holds keyed commands");
                let retained = self
                    .model
                    .keys
                    .get(&key)
                    .is_some_and(|r| self.model.retained(r.at_ms, self.now_ms));
                let current = self.model.keys.get(&key).map(|r| r.command.clone());
                let result = self.submit(changed.clone())?;
                // Only a conflict with the *original* payload is certain (a later re-decision
                // after retention may have stored another payload under the key). `submit`
                // has already checked that nothing changed.
                if retained && current.as_ref() == Some(&original) {
                    let path = conflict_path(field_name, &original, &changed);
                    check!(
                        matches!(&result, Ok(Err(Refusal::KeyConflict { field, .. })) if *field == path),
                        "conflicting reuse {changed:?} of {original:?} got {result:?}, expected a conflict on {path}"
                    );
                }
                return Ok(());
            }
        };
        self.submit(command).map(|_| ())
    }

    fn reserve_id(&mut self, r: u8) -> String {
        if r < RESERVATION_IDS {
            return rid(r);
        }
        let id = format!("fresh{}", self.fresh_ids.len());
        self.fresh_ids.push(id.clone());
        id
    }

    fn hold_target(&self, r: u8) -> String {
        if r < RESERVATION_IDS || self.fresh_ids.is_empty() {
            return rid(r % RESERVATION_IDS);
        }
        // The latest few fresh ids, most recent first.
        let back = usize::from(r - RESERVATION_IDS) % self.fresh_ids.len().min(3);
        self.fresh_ids[self.fresh_ids.len() - 1 - back].clone()
    }

    /// Pushes a snapshot whose counts are the model's own count at `as_of` plus each row's
    /// drift, reconciles it (deciding `during` after the run started), and checks every
    /// logged fact and the report against the model's verdicts.
    #[allow(clippy::too_many_arguments)]
    fn reconcile(
        &mut self,
        picks: &[(usize, i64, Option<u64>)],
        full: bool,
        scope: Option<usize>,
        back_ms: u64,
        tolerance: Tolerance,
        dry_run: bool,
        during: Option<&Step>,
    ) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let as_of = now.saturating_sub(back_ms).max(T0);
        let in_scope = |p: usize| scope.is_none_or(|l| p % 2 == l);
        let id = format!("snap{}", self.snapshots_pushed);
        self.snapshots_pushed += 1;
        let mut listed = BTreeSet::new();
        let rows: Vec<(usize, SnapshotRow)> = picks
            .iter()
            .filter(|(p, ..)| in_scope(*p) && listed.insert(*p))
            .map(|&(p, drift, safety_stock)| {
                let (sku, location) = pos_names(p);
                let row = SnapshotRow {
                    sku: Sku::from(sku),
                    location: Location::from(location),
                    on_hand: (self.model.on_hand_at(p, as_of).0 + drift).max(0),
                    safety_stock,
                };
                (p, row)
            })
            .collect();
        let header = SnapshotHeader {
            snapshot_id: SnapshotId::from(id.as_str()),
            as_of_ms: as_of,
            scope: match scope {
                None => SnapshotScope::All,
                Some(l) => SnapshotScope::Locations([Location::from(LOCS[l])].into()),
            },
            mode: if full {
                SnapshotMode::Full
            } else {
                SnapshotMode::Delta
            },
            source: "model".into(),
        };
        let (engine, store) = (Arc::clone(&self.engine), Arc::clone(&self.snapshots));
        let history_start_ms = engine.ledger().history_start_ms_at(now);
        let mut digest = RowDigest::default();
        let mut push = Push::begin(store.as_ref(), header, now, history_start_ms)
            .map_err(|e| TestCaseError::fail(format!("push begins: {e}")))?;
        for (_, row) in &rows {
            digest.add(row);
            push.rows(std::slice::from_ref(row))
                .map_err(|e| TestCaseError::fail(format!("push rows: {e}")))?;
        }
        push.finish(&digest.finish(), now)
            .map_err(|e| TestCaseError::fail(format!("push finishes: {e}")))?;

        self.clock.set_ms(now);
        let policy = TolerancePolicy {
            default: tolerance,
            by_location: Default::default(),
        };
        let log_before = self.log.len();
        let digest_before = self.ledger().digest();
        let superseded_by_newer = self
            .model
            .reconciled
            .iter()
            .any(|&(a, s)| a > as_of && (s.is_none() || scope.is_none() || s == scope));
        let started = Reconciliation::start(&engine, store.as_ref(), &id, policy, dry_run);
        if superseded_by_newer {
            check!(
                matches!(started, Err(ReconcileError::Superseded { .. })),
                "a snapshot older than one reconciled must be refused: {:?}",
                started.map(|_| ())
            );
            check!(self.log.len() == log_before, "a refused run logged");
            check!(
                self.ledger().digest() == digest_before,
                "a refused run changed the ledger"
            );
            return Ok(());
        }
        let run = started.map_err(|e| TestCaseError::fail(format!("run starts: {e}")))?;
        if let Some(during) = during {
            self.step(during)?;
        }

        // The verdicts, decided from the state once `during` is applied: nothing else moves
        // these positions until the run has decided them.
        let mut expected: BTreeMap<usize, ModelVerdict> = BTreeMap::new();
        for (p, row) in &rows {
            expected.insert(*p, self.model.verdict(*p, row.on_hand, as_of, &tolerance));
        }
        let mut omitted = 0;
        if full {
            for p in 0..POSITIONS {
                if in_scope(p) && self.model.positions[p].exists && !listed.contains(&p) {
                    expected.insert(p, self.model.verdict(p, 0, as_of, &tolerance));
                    omitted += 1;
                }
            }
        }
        let safety_set: Vec<(usize, u64)> = rows
            .iter()
            .filter_map(|(p, row)| {
                let qty = row.safety_stock?;
                (self.model.positions[*p].safety_stock != qty as i64).then_some((*p, qty))
            })
            .collect();
        let mut counts = ReconciliationCounts {
            compared: expected.len() as u64,
            omitted,
            safety_stock_set: safety_set.len() as u64,
            ..ReconciliationCounts::default()
        };
        for v in expected.values() {
            if v.drift == 0 {
                counts.matched += 1;
            } else {
                counts.drifted += 1;
                counts.drift_abs_total += v.drift.unsigned_abs();
                if v.held {
                    counts.held += 1;
                } else {
                    counts.applied += 1;
                }
            }
            if v.superseded.is_some() {
                counts.superseded += 1;
            }
        }

        let log_mid = self.log.len();
        let report = run
            .finish()
            .map_err(|e| TestCaseError::fail(format!("run finishes: {e}")))?;
        check!(
            report.counts == counts,
            "report counts {:?}\n      model {counts:?}",
            report.counts
        );
        check!(report.dry_run == dry_run, "dry_run not reported");
        let events = self.log.events();
        if dry_run {
            check!(self.log.len() == log_mid, "a dry run logged");
            return Ok(());
        }
        let mut logged = BTreeSet::new();
        for event in &events[log_mid..] {
            match &event.fact {
                Fact::PositionReconciled {
                    reconcile: r,
                    engine_on_hand_at,
                    drift,
                    held,
                    superseded,
                    events_since,
                } => {
                    let p = pos_of(r.sku.as_str(), r.location.as_str());
                    let Some(v) = expected.get(&p) else {
                        return Err(TestCaseError::fail(format!(
                            "reconciled a position not compared: {event:?}"
                        )));
                    };
                    let actual = ModelVerdict {
                        erp_on_hand: r.erp_on_hand,
                        engine_on_hand_at: *engine_on_hand_at,
                        drift: *drift,
                        held: *held,
                        superseded: superseded.as_ref().map(|s| s.to_string()),
                        events_since: *events_since,
                    };
                    check!(
                        actual == *v && v.logged(),
                        "position {p} as of {as_of}: logged {actual:?}, model {v:?}"
                    );
                    check!(
                        r.snapshot_id.as_str() == id && r.as_of_ms == as_of,
                        "{event:?} names another snapshot"
                    );
                    check!(logged.insert(p), "position {p} reconciled twice");
                    if *held {
                        self.stats.drifts_held += 1;
                    } else if *drift != 0 {
                        self.stats.drifts_applied += 1;
                    }
                }
                Fact::SafetyStockSet(c) => {
                    let p = pos_of(c.sku.as_str(), c.location.as_str());
                    check!(
                        safety_set.contains(&(p, c.qty)),
                        "unexpected safety stock {event:?}"
                    );
                }
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "a reconciliation logged {event:?}"
                    )));
                }
            }
            self.model.apply(&event.fact, event.lsn.0, event.at_ms);
        }
        let expected_logged: BTreeSet<usize> = expected
            .iter()
            .filter(|(_, v)| v.logged())
            .map(|(p, _)| *p)
            .collect();
        check!(
            logged == expected_logged,
            "logged facts for {logged:?}, model expected {expected_logged:?}"
        );
        self.model.reconciled.push((as_of, scope));
        self.stats.reconciled += 1;
        let stored = store.get(&id).expect("reads").expect("stored");
        check!(
            stored.status == SnapshotStatus::Reconciled && stored.report.as_ref() == Some(&report),
            "stored {stored:?}"
        );
        Ok(())
    }

    fn expire_due(&mut self, batch: usize) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let lapsed = self.model.lapsed_open_holds(now);
        let log_before = self.log.len();
        let expired = self
            .ledger()
            .expire_due(now, batch)
            .map_err(|e| TestCaseError::fail(format!("expire_due failed: {e}")))?;
        check!(
            expired == batch.min(lapsed.len()),
            "expire_due({batch}) expired {expired} of {} lapsed holds",
            lapsed.len()
        );
        let events = self.log.events();
        check!(
            events.len() == log_before + expired,
            "expire_due appended {} events for {expired} expiries",
            events.len() - log_before
        );
        let mut seen = BTreeSet::new();
        for event in &events[log_before..] {
            let Fact::HoldExpired(HoldRequest::Expire(Expire { reservation_id })) = &event.fact
            else {
                return Err(TestCaseError::fail(format!(
                    "expire_due appended {event:?}"
                )));
            };
            check!(
                event.fact.outcome() == Outcome::Expired
                    && event.at_ms == now
                    && lapsed.contains(reservation_id.as_str())
                    && seen.insert(reservation_id.to_string()),
                "unexpected expiry event {event:?} (lapsed: {lapsed:?})"
            );
            self.model.apply(&event.fact, event.lsn.0, event.at_ms);
            self.stats.expired += 1;
        }
        Ok(())
    }

    fn purge(&mut self) -> Result<(), TestCaseError> {
        let digest = self.ledger().digest();
        let purged = self.ledger().purge(self.now_ms);
        let expected = self.model.purge(self.now_ms);
        check!(
            purged == expected,
            "purge forgot {purged} entries, model expected {expected}"
        );
        check!(self.ledger().digest() == digest, "purge changed the digest");
        Ok(())
    }

    /// Everything observable, against the model, after every step.
    fn check_state(&mut self) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        if let Err(e) = self.ledger().check_invariants() {
            return Err(TestCaseError::fail(format!("invariants: {e}")));
        }
        let lsn = self.ledger().next_lsn();
        check!(
            lsn == Lsn(self.model.next_lsn) && self.log.len() as u64 == lsn.0 - 1,
            "next_lsn {lsn}, model {}, log length {}",
            self.model.next_lsn,
            self.log.len()
        );

        // Conservation: on_hand and quarantined follow only from the returned outcomes.
        let positions = self.ledger().positions();
        let mut expected = BTreeMap::new();
        for (p, mp) in self.model.positions.iter().enumerate() {
            if mp.exists {
                let (sku, location) = pos_names(p);
                expected.insert(
                    (sku.to_owned(), location.to_owned()),
                    PositionView {
                        on_hand: mp.on_hand,
                        reserved: self.model.reserved_all(p),
                        safety_stock: mp.safety_stock,
                        quarantined: mp.quarantined,
                    },
                );
            }
        }
        check!(
            positions == expected,
            "positions {positions:?}\n   model {expected:?}"
        );
        for p in 0..POSITIONS {
            let (sku, location) = pos_names(p);
            let actual = self.ledger().check(sku, location, now);
            let model = self.model.availability(p, now);
            check!(
                actual == model,
                "check({sku}, {location}) = {actual:?}, model {model:?}"
            );
        }

        let ids = (0..RESERVATION_IDS)
            .map(rid)
            .chain(self.fresh_ids.iter().cloned());
        for id in ids {
            let actual = self
                .ledger()
                .reservation(&id, now)
                .expect("the key archive reads");
            let model = self.model.live_hold(&id, now).map(|h| HoldView {
                reservation_id: id.clone(),
                channel: h.channel.clone(),
                lines: h.lines.iter().map(|&(p, q)| line(p, q)).collect(),
                state: if h.state == HoldState::Open && now >= h.expires_at_ms {
                    HoldState::Expired
                } else {
                    h.state
                },
                expires_at_ms: h.expires_at_ms,
                placed_lsn: Lsn(h.placed_lsn),
                placed_at_ms: h.placed_at_ms,
                ended_at_ms: h.ended_at_ms,
                // This model's commands are issued with authentication off.
                placed_by: None,
                ended_by: None,
            });
            check!(
                actual == model,
                "reservation({id}) = {actual:?}, model {model:?}"
            );
        }
        let open = self
            .model
            .holds
            .values()
            .filter(|h| h.state == HoldState::Open)
            .count();
        check!(
            self.ledger().holds_open() == open,
            "holds_open {} but the model has {open}",
            self.ledger().holds_open()
        );

        let held: BTreeMap<usize, ModelHeld> = self
            .ledger()
            .held_drifts(None)
            .into_iter()
            .map(|h| {
                let held = ModelHeld {
                    snapshot_id: h.snapshot_id.to_string(),
                    as_of_ms: h.as_of_ms,
                    erp_on_hand: h.erp_on_hand,
                    engine_on_hand_at: h.engine_on_hand_at,
                    drift: h.drift,
                };
                (pos_of(h.sku.as_str(), h.location.as_str()), held)
            })
            .collect();
        check!(
            held == self.model.held,
            "held drifts {held:?}\n      model {:?}",
            self.model.held
        );

        let statuses = self.ledger().store_statuses();
        let model: Vec<StoreStatus> = self
            .model
            .stores
            .iter()
            .map(|(id, s)| s.status(id))
            .collect();
        check!(
            statuses == model,
            "store statuses {statuses:?}\n  model {model:?}"
        );

        let digest = self.ledger().digest();
        if let Some(previous) = self.digests.insert(lsn.0, digest) {
            check!(
                previous == digest,
                "digest changed without an event (next_lsn {lsn})"
            );
        }
        Ok(())
    }

    /// Invariant 4: the log replays, event by event, through every digest seen live, and
    /// again into a second ledger (of another shard count) and through `Engine::recover`.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let events = self.log.events();
        let live = self.ledger().digest();
        let live_positions = self.ledger().positions();

        let first = Ledger::new(self.config, Arc::new(MemLog::new()));
        check!(
            self.digests.get(&1) == Some(&first.digest()),
            "empty digests differ"
        );
        for event in &events {
            if let Err(e) = first.replay(event) {
                return Err(TestCaseError::fail(format!("replay of {event:?}: {e}")));
            }
            if let Some(seen) = self.digests.get(&(event.lsn.0 + 1)) {
                check!(
                    first.digest() == *seen,
                    "replay digest after lsn {} differs from the live one",
                    event.lsn
                );
            }
        }
        check!(first.digest() == live, "replayed digest differs");
        check!(
            first.positions() == live_positions,
            "replayed positions differ"
        );
        if let Err(e) = first.check_invariants() {
            return Err(TestCaseError::fail(format!("replayed invariants: {e}")));
        }

        let second_config = LedgerConfig {
            shards: if self.config.shards == 64 { 2 } else { 64 },
            ..self.config
        };
        let second = Ledger::new(second_config, Arc::new(MemLog::new()));
        for event in &events {
            if let Err(e) = second.replay(event) {
                return Err(TestCaseError::fail(format!("second replay: {e}")));
            }
        }
        check!(
            second.digest() == live && second.digest() == first.digest(),
            "second replay digest differs"
        );

        let engine = Engine::recover(
            self.config,
            self.log.clone(),
            Arc::new(ManualClock::new(self.now_ms)),
        )
        .map_err(|e| TestCaseError::fail(format!("recover: {e}")))?;
        check!(engine.ledger().digest() == live, "recovered digest differs");
        check!(
            engine.ledger().next_lsn() == self.ledger().next_lsn(),
            "recovered next_lsn differs"
        );
        Ok(())
    }
}

/// The command with one non-key field changed (still valid), and that field's name. `None`
/// when the command has no field outside its key (release).
fn mutate(command: &Command, which: usize) -> Option<(Command, &'static str)> {
    let bump_qty = |lines: &[Line]| -> Vec<Line> {
        let mut lines = lines.to_vec();
        lines[0].qty = lines[0].qty % 5 + 1;
        lines
    };
    let other_sku = |s: &Sku| {
        Sku::from(if s.as_str() == SKUS[0] {
            SKUS[1]
        } else {
            SKUS[0]
        })
    };
    let other_location = |l: &Location| {
        Location::from(if l.as_str() == LOCS[0] {
            LOCS[1]
        } else {
            LOCS[0]
        })
    };
    let mut c = command.clone();
    let field = match &mut c {
        Command::Reserve(r) => match which % 3 {
            0 => {
                r.channel = Channel::new(format!("{}-other", r.channel));
                "channel"
            }
            1 => {
                r.lines = bump_qty(&r.lines);
                "lines"
            }
            _ => {
                r.ttl_ms += 1;
                "ttl_ms"
            }
        },
        Command::Commit(r) => {
            r.lines = match &r.lines {
                None => Some(vec![line(0, 1)]),
                Some(_) => None,
            };
            "lines"
        }
        Command::Release(_) | Command::Expire(_) => return None,
        Command::Extend(r) => {
            r.ttl_ms += 1;
            "ttl_ms"
        }
        Command::RecordSale(r) => match which % 3 {
            0 => {
                // Down from the top: a sale may be numbered u64::MAX.
                r.store_seq = r.store_seq.checked_add(1).unwrap_or(r.store_seq - 1);
                "store_seq"
            }
            1 => {
                r.occurred_at_ms += 1;
                "occurred_at_ms"
            }
            _ => {
                r.lines = bump_qty(&r.lines);
                "lines"
            }
        },
        Command::RecordReturn(r) => {
            if which.is_multiple_of(2) {
                r.lines[0].qty = r.lines[0].qty % 5 + 1;
            } else {
                r.lines[0].disposition = match r.lines[0].disposition {
                    ReturnDisposition::Restock => ReturnDisposition::Inspect,
                    ReturnDisposition::Inspect => ReturnDisposition::Restock,
                };
            }
            "lines"
        }
        Command::Dispose(r) => match which % 5 {
            0 => {
                r.return_id = ReturnId::new(format!("{}-other", r.return_id));
                "return_id"
            }
            1 => {
                r.sku = other_sku(&r.sku);
                "sku"
            }
            2 => {
                r.location = other_location(&r.location);
                "location"
            }
            3 => {
                r.qty += 1;
                "qty"
            }
            _ => {
                r.action = match r.action {
                    DispositionAction::Restock => DispositionAction::Scrap,
                    DispositionAction::Scrap => DispositionAction::Restock,
                };
                "action"
            }
        },
        Command::Adjust(r) => match which % 4 {
            0 => {
                r.sku = other_sku(&r.sku);
                "sku"
            }
            1 => {
                r.location = other_location(&r.location);
                "location"
            }
            2 => {
                r.delta *= 2;
                "delta"
            }
            _ => {
                r.reason = format!("{}-other", r.reason).into();
                "reason"
            }
        },
        Command::SetSafetyStock(r) => match which % 3 {
            0 => {
                r.sku = other_sku(&r.sku);
                "sku"
            }
            1 => {
                r.location = other_location(&r.location);
                "location"
            }
            _ => {
                r.qty += 1;
                "qty"
            }
        },
        Command::ResolveDrift(r) => {
            r.action = match r.action {
                DriftAction::Apply => DriftAction::Dismiss,
                DriftAction::Dismiss => DriftAction::Apply,
            };
            "action"
        }
        Command::AcknowledgeStoreAnomaly(r) => {
            r.action = match r.action {
                AnomalyAction::Accept => AnomalyAction::Dismiss,
                AnomalyAction::Dismiss => AnomalyAction::Accept,
            };
            "action"
        }
        Command::Reconcile(_) => return None,
    };
    Some((c, field))
}

fn run_case(case: &Case, retention_ms: u64) -> Result<Stats, TestCaseError> {
    let config = LedgerConfig {
        shards: case.shards,
        key_retention_ms: retention_ms,
        store_seq_jump_max: SEQ_JUMP_MAX,
        ..LedgerConfig::default()
    };
    let mut h = Harness::new(config);
    for (p, &qty) in case.stock.iter().enumerate() {
        if qty != 0 {
            let (sku, location) = pos_names(p);
            let opening = h.submit(adjust_with_reason(
                &format!("opening-{p}"),
                sku,
                location,
                qty,
                "opening",
            ))?;
            check!(
                matches!(opening, Ok(Ok(_))),
                "opening stock refused: {opening:?}"
            );
            h.check_state()?;
        }
    }
    for (i, step) in case.steps.iter().enumerate() {
        h.step(step)
            .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
        h.check_state()
            .map_err(|e| TestCaseError::fail(format!("after step {i} {step:?}: {e}")))?;
    }
    h.check_replay()?;
    Ok(h.stats)
}

proptest! {
    #![proptest_config(ProptestConfig {
        max_shrink_iters: 4_096,
        ..ProptestConfig::default()
    })]

    // Goal: every documented invariant holds after every step of random, colliding command
    // sequences; method: drive a Ledger with a forward-only clock and keys kept for the
    // default week, checking each receipt, refusal and position against a model built only
    // from the engine's outcomes, then replay the log three ways.
    #[test]
    fn random_command_sequences_keep_every_invariant(case in case_strategy()) {
        run_case(&case, LedgerConfig::default().key_retention_ms)?;
    }

    // Goal: the same invariants hold when idempotency keys and ended holds are forgotten
    // mid-run; method: as above with a 6 s retention and purges, so retries past retention
    // are decided afresh (a reserve whose hold is still remembered and a return whose units
    // are still in quarantine are refused, as the model predicts).
    #[test]
    fn random_command_sequences_with_short_key_retention(case in case_strategy()) {
        run_case(&case, 6_000)?;
    }
}

// Goal: make sure the generator really exercises every path it is meant to (grants, refusals,
// retries, conflicts, expiries, reconciliations, store sequence anomalies and their verdicts);
// method: run a fixed-seed batch of cases and count.
#[test]
fn the_generator_reaches_every_kind_of_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut total = Stats::default();
    for _ in 0..64 {
        let case = case_strategy()
            .new_tree(&mut runner)
            .expect("generates")
            .current();
        let stats =
            run_case(&case, LedgerConfig::default().key_retention_ms).expect("the case passes");
        total.granted += stats.granted;
        total.insufficient += stats.insufficient;
        total.duplicates += stats.duplicates;
        total.conflicts += stats.conflicts;
        total.expired += stats.expired;
        total.reconciled += stats.reconciled;
        total.drifts_applied += stats.drifts_applied;
        total.drifts_held += stats.drifts_held;
        total.drifts_resolved += stats.drifts_resolved;
        total.seq_anomalies += stats.seq_anomalies;
        total.anomalies_accepted += stats.anomalies_accepted;
        total.anomalies_dismissed += stats.anomalies_dismissed;
    }
    assert!(total.granted > 150, "{total:?}");
    assert!(total.insufficient > 100, "{total:?}");
    assert!(total.duplicates > 100, "{total:?}");
    assert!(total.conflicts > 100, "{total:?}");
    assert!(total.expired > 30, "{total:?}");
    assert!(total.reconciled > 50, "{total:?}");
    assert!(total.drifts_applied > 30, "{total:?}");
    assert!(total.drifts_held > 10, "{total:?}");
    assert!(total.drifts_resolved > 3, "{total:?}");
    assert!(total.seq_anomalies > 25, "{total:?}");
    assert!(total.anomalies_accepted > 1, "{total:?}");
    assert!(total.anomalies_dismissed > 1, "{total:?}");
}

// Regression: a return id reused after its idempotency key was forgotten used to overwrite
// the first return's record while it still held units in quarantine, so those units stayed in
// the position's `quarantined` with no return left to dispose of them (invariant 3). Method:
// quarantine 3 units under "ret-1", let the key retention pass, record "ret-1" again: it must
// be refused as a return id still in use, and change nothing.
#[test]
fn a_return_id_still_holding_quarantined_units_cannot_be_reused() {
    let log = Arc::new(MemLog::new());
    let ledger = Ledger::new(
        LedgerConfig {
            shards: 4,
            key_retention_ms: 1_000,
            ..LedgerConfig::default()
        },
        log,
    );
    let inspect = |qty| {
        record_return(
            "ret-1",
            vec![return_line(
                "sku-a",
                "loc-1",
                qty,
                ReturnDisposition::Inspect,
            )],
        )
    };
    ledger
        .submit(inspect(3), T0)
        .expect("first return")
        .expect("not refused");
    let digest = ledger.digest();
    let later = T0 + 5_000;
    match ledger.submit(inspect(2), later) {
        Ok(Err(Refusal::ReturnIdInUse(return_id))) => assert_eq!(return_id, "ret-1"),
        other => panic!("expected the reused return id to be refused, got {other:?}"),
    }
    assert_eq!(ledger.digest(), digest, "a refusal changes nothing");
    let quarantined = ledger.positions()[&("sku-a".to_owned(), "loc-1".to_owned())].quarantined;
    assert_eq!(quarantined, 3);
    assert_eq!(ledger.check_invariants(), Ok(()));
}

// Goal: pin the exact idempotency contract on one deterministic sequence (retry after state
// changed still gets the original answer); method: an insufficient reserve, then stock
// arrives, then the same reserve is retried.
#[test]
fn a_retried_refusal_keeps_its_original_outcome_after_stock_arrives() {
    let log = Arc::new(MemLog::new());
    let ledger = Ledger::new(LedgerConfig::default(), log.clone());
    let reserve = reserve_lines("r", vec![Line::new("sku-a", "loc-1", 2)], 5_000);
    ledger
        .submit(adjust("a0", "sku-a", "loc-1", 1), T0)
        .expect("adjust")
        .expect("not refused");
    let first = ledger
        .submit(reserve.clone(), T0)
        .expect("reserve")
        .expect("not refused");
    assert!(matches!(first.outcome, Outcome::Insufficient { .. }));
    ledger
        .submit(adjust("a1", "sku-a", "loc-1", 10), T0 + 1)
        .expect("adjust")
        .expect("not refused");
    let digest = ledger.digest();
    let retry = ledger
        .submit(reserve, T0 + 2)
        .expect("retry")
        .expect("not refused");
    assert!(retry.duplicate);
    assert_eq!((retry.lsn, retry.outcome), (first.lsn, first.outcome));
    assert_eq!(ledger.digest(), digest);
    assert_eq!(ledger.next_lsn(), Lsn(4));
}
