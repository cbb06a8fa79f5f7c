//! Loom models of the ledger's locking protocol (see the module doc of `ledger`).
//!
//! Every lock and atomic the ledger takes goes through `crate::sync`, so under `--cfg loom`
//! these models explore every interleaving of whole `submit` calls (no preemption bound is
//! needed: each model completes in under 50 iterations) and loom reports a deadlock if two threads ever wait on each other. Each model is small: two
//! threads, one or two skus, a unit or two of stock, and a fixed `now_ms`, with setup done by
//! ordinary submits before the threads are spawned. Every model ends with the structural
//! invariant check and, where the log matters, a replay of the log compared by digest.
//!
//! Run (a separate target directory keeps the normal build's artifacts):
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! cargo test -p inv-engine --release --no-default-features --lib loom`

use super::*;
use crate::hold::HoldState;
use crate::log::MemLog;
use loom::sync::Arc as LoomArc;

const T0: u64 = 1_700_000_000_000;
const TTL: u64 = 60_000;
const LOC: &str = "dc-1";

/// A fresh ledger over its own `MemLog`; must be called inside `loom::model`, because the
/// ledger's locks are loom's.
fn ledger(shards: usize) -> (Arc<MemLog>, LoomArc<Ledger>) {
    let log = Arc::new(MemLog::new());
    let config = LedgerConfig {
        shards,
        // Long enough that ended holds and keys are remembered for the whole model.
        key_retention_ms: 3_600_000,
        ..LedgerConfig::default()
    };
    let ledger = LoomArc::new(Ledger::new(config, log.clone()));
    (log, ledger)
}

fn adjust(id: &str, sku: &str, delta: i64) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from(id),
        sku: Sku::from(sku),
        location: Location::from(LOC),
        delta,
        reason: "loom".into(),
    })
}

fn reserve(id: &str, lines: &[(&str, u64)]) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::from(id),
        channel: Channel::from("web"),
        lines: lines.iter().map(|&(s, q)| Line::new(s, LOC, q)).collect(),
        ttl_ms: TTL,
    })
}

fn commit(id: &str) -> Command {
    Command::Commit(Commit {
        reservation_id: ReservationId::from(id),
        lines: None,
    })
}

fn release(id: &str) -> Command {
    Command::Release(Release {
        reservation_id: ReservationId::from(id),
    })
}

fn sale(txn: &str, sku: &str, qty: u64) -> Command {
    Command::RecordSale(RecordSale {
        store_id: StoreId::from("store-1"),
        txn_id: TxnId::from(txn),
        store_seq: 1,
        occurred_at_ms: T0 - 1_000,
        lines: vec![Line::new(sku, LOC, qty)],
    })
}

fn submit(ledger: &Ledger, command: Command, now_ms: u64) -> Receipt {
    ledger
        .submit(command, now_ms)
        .expect("accepted")
        .expect("not refused")
}

fn position(ledger: &Ledger, sku: &str) -> PositionView {
    ledger.positions()[&(sku.to_owned(), LOC.to_owned())]
}

/// Two names (`{prefix}-0` and another) that the ledger's own shard function puts in different
/// shards. Sku names chosen this way put two positions behind two locks; reservation ids chosen
/// this way put two reserves behind different hold shard locks (a reserve keeps its key in its
/// hold entry, so it takes no key-shard lock), so the reserves meet first at the position shards,
/// which is the locking the models are about (two reserves in one hold shard would be serialised
/// before they reach any position). Found at run time so the models keep their meaning if the
/// hash seed changes.
fn names_in_distinct_shards(ledger: &Ledger, prefix: &str) -> (String, String) {
    let first = format!("{prefix}-0");
    let second = (1..64)
        .map(|i| format!("{prefix}-{i}"))
        .find(|s| ledger.shard_of(s) != ledger.shard_of(&first))
        .expect("some name of 64 lands in another shard");
    (first, second)
}

/// Replays `log` into a fresh ledger and checks it reproduces `live`.
fn assert_replays(log: &MemLog, live: &Ledger) {
    let (_, replayed) = ledger(live.config().shards);
    for event in log.events() {
        replayed.replay(&event).expect("replays");
    }
    replayed
        .check_invariants()
        .expect("replayed invariants hold");
    assert_eq!(replayed.digest(), live.digest(), "replay differs from live");
}

#[test]
fn loom_opposite_order_reserves_do_not_deadlock_or_oversell() {
    // Goal: two baskets over the same two positions, listed in opposite orders, with stock for
    // only one basket, never deadlock and never both win; method: the skus (and the reservation
    // ids) are chosen in different shards and each thread submits its reserve, so loom permutes
    // the two position-shard acquisitions of both threads.
    loom::model(|| {
        let (log, ledger) = ledger(2);
        let (a, b) = names_in_distinct_shards(&ledger, "sku");
        let (r1, r2) = names_in_distinct_shards(&ledger, "r");
        submit(&ledger, adjust("stock-a", &a, 1), T0);
        submit(&ledger, adjust("stock-b", &b, 1), T0);

        let threads: Vec<_> = [(&r1, [&a, &b]), (&r2, [&b, &a])]
            .into_iter()
            .map(|(id, [x, y])| {
                let ledger = ledger.clone();
                let command = reserve(id, &[(x.as_str(), 1), (y.as_str(), 1)]);
                loom::thread::spawn(move || submit(&ledger, command, T0))
            })
            .collect();
        let receipts: Vec<Receipt> = threads
            .into_iter()
            .map(|t| t.join().expect("thread finished"))
            .collect();

        let granted = receipts
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Granted { .. }))
            .count();
        let insufficient = receipts
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Insufficient { .. }))
            .count();
        assert_eq!((granted, insufficient), (1, 1), "{receipts:?}");
        for sku in [&a, &b] {
            let p = position(&ledger, sku);
            assert_eq!((p.on_hand, p.reserved), (1, 1), "{sku}");
        }
        ledger.check_invariants().expect("invariants hold");
        assert_replays(&log, &ledger);
    });
}

#[test]
fn loom_last_unit_lsn_order_matches_effect_order() {
    // Goal: the LSN order is the order in which effects were seen, so the winner of the last
    // unit has the smaller LSN and the log replays to the live state; method: two reserves race
    // for one unit, then the loser's LSN, its reported availability and a replay are checked.
    loom::model(|| {
        let (log, ledger) = ledger(4);
        submit(&ledger, adjust("stock", "sku-a", 1), T0);

        let (r1, r2) = names_in_distinct_shards(&ledger, "r");
        let threads: Vec<_> = [r1, r2]
            .into_iter()
            .map(|id| {
                let ledger = ledger.clone();
                loom::thread::spawn(move || submit(&ledger, reserve(&id, &[("sku-a", 1)]), T0))
            })
            .collect();
        let receipts: Vec<Receipt> = threads
            .into_iter()
            .map(|t| t.join().expect("thread finished"))
            .collect();

        let (won, lost) = match (&receipts[0].outcome, &receipts[1].outcome) {
            (Outcome::Granted { .. }, Outcome::Insufficient { .. }) => (&receipts[0], &receipts[1]),
            (Outcome::Insufficient { .. }, Outcome::Granted { .. }) => (&receipts[1], &receipts[0]),
            _ => panic!("exactly one reserve must win the last unit: {receipts:?}"),
        };
        assert!(won.lsn < lost.lsn, "winner {won:?} after loser {lost:?}");
        // The loser saw the winner's hold: nothing was available when it was decided.
        let Outcome::Insufficient { short } = &lost.outcome else {
            unreachable!("matched above")
        };
        assert_eq!(short[0].available, 0);
        assert_eq!(ledger.next_lsn(), Lsn(4));
        let p = position(&ledger, "sku-a");
        assert_eq!((p.on_hand, p.reserved), (1, 1));
        ledger.check_invariants().expect("invariants hold");
        assert_replays(&log, &ledger);
    });
}

#[test]
fn loom_commit_racing_expiry_ends_the_hold_once() {
    // Goal: a commit just before a hold's expiry and the expiry sweep at its expiry end the
    // hold exactly once; method: one thread commits at `expires_at - 1`, the other runs
    // `expire_due` at `expires_at`, and the two answers and the position are checked together.
    loom::model(|| {
        let (log, ledger) = ledger(2);
        submit(&ledger, adjust("stock", "sku-a", 1), T0);
        let placed = submit(&ledger, reserve("r-1", &[("sku-a", 1)]), T0);
        let Outcome::Granted { expires_at_ms } = placed.outcome else {
            panic!("setup reserve refused: {placed:?}")
        };

        let committer = {
            let ledger = ledger.clone();
            loom::thread::spawn(move || submit(&ledger, commit("r-1"), expires_at_ms - 1))
        };
        let sweeper = {
            let ledger = ledger.clone();
            loom::thread::spawn(move || ledger.expire_due(expires_at_ms, 10).expect("sweeps"))
        };
        let committed = committer.join().expect("committer finished");
        let expired = sweeper.join().expect("sweeper finished");

        let p = position(&ledger, "sku-a");
        match (&committed.outcome, expired) {
            (Outcome::Committed { committed }, 0) => {
                assert_eq!(committed, &vec![1]);
                assert_eq!(p.on_hand, 0, "a commit takes the unit off on_hand");
                // Adjust, reserve, commit: a sweep that saw the hold before the commit is
                // refused (`HoldNotLapsed`) when it decides, and a refusal is not an event.
                assert_eq!(log.len(), 3);
            }
            (Outcome::Expired | Outcome::HoldAlreadyEnded(HoldState::Expired), 1) => {
                assert_eq!(p.on_hand, 1, "an expiry gives the unit back");
                // Adjust, reserve, expire, and the commit, which found the hold expired (an
                // outcome, recorded).
                assert_eq!(log.len(), 4);
            }
            (outcome, expired) => {
                panic!("the hold must end exactly once: commit {outcome:?}, expired {expired}")
            }
        }
        assert_eq!(p.reserved, 0);
        assert_eq!(ledger.holds_open(), 0);
        ledger.check_invariants().expect("invariants hold");
        assert_replays(&log, &ledger);
    });
}

#[test]
fn loom_release_racing_sale_on_same_position() {
    // Goal: a release and a POS sale on the same position both take effect whatever their
    // order; method: a hold of one of two units is placed, then one thread releases it while
    // the other records a sale of one unit, and the position is checked against the arithmetic.
    loom::model(|| {
        const INITIAL: i64 = 2;
        const SOLD: u64 = 1;
        let (log, ledger) = ledger(2);
        submit(&ledger, adjust("stock", "sku-a", INITIAL), T0);
        let placed = submit(&ledger, reserve("r-1", &[("sku-a", 1)]), T0);
        assert!(matches!(placed.outcome, Outcome::Granted { .. }));

        let releaser = {
            let ledger = ledger.clone();
            loom::thread::spawn(move || submit(&ledger, release("r-1"), T0))
        };
        let seller = {
            let ledger = ledger.clone();
            loom::thread::spawn(move || submit(&ledger, sale("t-1", "sku-a", SOLD), T0))
        };
        let released = releaser.join().expect("releaser finished");
        let sold = seller.join().expect("seller finished");

        assert_eq!(released.outcome, Outcome::Released);
        assert_eq!(sold.outcome, Outcome::Recorded);
        assert_ne!(released.lsn, sold.lsn);
        let p = position(&ledger, "sku-a");
        assert_eq!((p.on_hand, p.reserved), (INITIAL - SOLD as i64, 0));
        ledger.check_invariants().expect("invariants hold");
        assert_replays(&log, &ledger);
    });
}
