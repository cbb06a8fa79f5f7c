//! Unit tests: one or more per command and per refusal, each driving a real ledger over a
//! `MemLog` with explicit times, and ending with the structural invariant check.

use super::hold_entry::HoldEntry;
use super::records::derived_bit;
use super::*;
use crate::hold::HoldState;
use crate::log::MemLog;
use crate::outcome::ShortLine;

const T0: u64 = 1_700_000_000_000;
const TTL: u64 = 60_000;

struct Fixture {
    log: Arc<MemLog>,
    ledger: Ledger,
}

impl Fixture {
    fn new() -> Self {
        let log = Arc::new(MemLog::new());
        let ledger = Ledger::new(
            LedgerConfig {
                shards: 4,
                ..LedgerConfig::default()
            },
            log.clone(),
        );
        Self { log, ledger }
    }

    fn submit(&self, command: Command, now_ms: u64) -> Result<Decision, SubmitError> {
        let decision = self.ledger.submit(command, now_ms);
        self.ledger.check_invariants().expect("invariants hold");
        decision
    }

    /// The refusal of a well-formed command.
    fn refused(&self, command: Command, now_ms: u64) -> Refusal {
        self.submit(command, now_ms)
            .expect("well-formed")
            .expect_err("refused")
    }

    fn ok(&self, command: Command, now_ms: u64) -> Receipt {
        self.submit(command, now_ms)
            .expect("well-formed")
            .expect("accepted")
    }

    fn stock(&self, sku: &str, location: &str, qty: i64) {
        let id = format!("stock-{sku}-{location}-{}", self.log.len());
        self.ok(adjust(&id, sku, location, qty), T0);
    }

    fn available(&self, sku: &str, location: &str, now_ms: u64) -> i64 {
        self.ledger
            .check(sku, location, now_ms)
            .map_or(0, |a| a.available)
    }

    /// The live ledger equals a from-scratch replay of its log.
    fn assert_replays(&self) {
        let replayed = Ledger::new(self.ledger.config(), Arc::new(MemLog::new()));
        for event in self.log.events() {
            replayed.replay(&event).expect("replays");
        }
        replayed
            .check_invariants()
            .expect("replayed invariants hold");
        assert_eq!(replayed.digest(), self.ledger.digest());
    }
}

fn adjust(id: &str, sku: &str, location: &str, delta: i64) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from(id),
        sku: Sku::from(sku),
        location: Location::from(location),
        delta,
        reason: "test".into(),
    })
}

fn reserve(id: &str, lines: &[(&str, &str, u64)]) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::from(id),
        channel: Channel::from("web"),
        lines: lines.iter().map(|&(s, l, q)| Line::new(s, l, q)).collect(),
        ttl_ms: TTL,
    })
}

fn commit(id: &str, lines: Option<&[(&str, &str, u64)]>) -> Command {
    Command::Commit(Commit {
        reservation_id: ReservationId::from(id),
        lines: lines.map(|ls| ls.iter().map(|&(s, l, q)| Line::new(s, l, q)).collect()),
    })
}

fn release(id: &str) -> Command {
    Command::Release(Release {
        reservation_id: ReservationId::from(id),
    })
}

fn sale(store: &str, txn: &str, seq: u64, lines: &[(&str, &str, u64)]) -> Command {
    Command::RecordSale(RecordSale {
        store_id: StoreId::from(store),
        txn_id: TxnId::from(txn),
        store_seq: seq,
        occurred_at_ms: T0 - 5_000,
        lines: lines.iter().map(|&(s, l, q)| Line::new(s, l, q)).collect(),
    })
}

fn ret(id: &str, lines: &[(&str, &str, u64, ReturnDisposition)]) -> Command {
    Command::RecordReturn(RecordReturn {
        return_id: ReturnId::from(id),
        lines: lines
            .iter()
            .map(|&(s, l, q, d)| ReturnLine {
                sku: Sku::from(s),
                location: Location::from(l),
                qty: q,
                disposition: d,
            })
            .collect(),
    })
}

fn dispose(id: &str, return_id: &str, qty: u64, action: DispositionAction) -> Command {
    Command::Dispose(Dispose {
        disposition_id: DispositionId::from(id),
        return_id: ReturnId::from(return_id),
        sku: Sku::from("sku-1"),
        location: Location::from("dc-1"),
        qty,
        action,
    })
}

// ---- Reserve ----------------------------------------------------------------------------

#[test]
fn reserve_grants_when_every_line_is_available_and_holds_the_units() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-1", 3);
    let r = f.ok(
        reserve("r1", &[("sku-1", "dc-1", 4), ("sku-2", "dc-1", 3)]),
        T0,
    );
    assert_eq!(
        r.outcome,
        Outcome::Granted {
            expires_at_ms: T0 + TTL
        }
    );
    assert_eq!(f.available("sku-1", "dc-1", T0), 6);
    assert_eq!(f.available("sku-2", "dc-1", T0), 0);
    let a = f.ledger.check("sku-1", "dc-1", T0).expect("exists");
    assert_eq!((a.on_hand, a.reserved), (10, 4));
    let hold = f
        .ledger
        .reservation("r1", T0)
        .expect("the key archive reads")
        .expect("hold exists");
    assert_eq!(hold.state, HoldState::Open);
    assert_eq!(hold.channel, "web");
    assert_eq!(hold.lines.len(), 2);
    f.assert_replays();
}

#[test]
fn reserve_is_all_or_nothing_and_reports_each_short_line() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-1", 1);
    let r = f.ok(
        reserve(
            "r1",
            &[
                ("sku-1", "dc-1", 4),
                ("sku-2", "dc-1", 2),
                ("sku-3", "dc-1", 1),
            ],
        ),
        T0,
    );
    assert_eq!(
        r.outcome,
        Outcome::Insufficient {
            short: vec![
                ShortLine {
                    line_index: 1,
                    requested: 2,
                    available: 1
                },
                // A position that does not exist is a shortage with availability 0.
                ShortLine {
                    line_index: 2,
                    requested: 1,
                    available: 0
                },
            ]
        }
    );
    assert_eq!(f.available("sku-1", "dc-1", T0), 10, "nothing was held");
    assert!(
        f.ledger.check("sku-3", "dc-1", T0).is_none(),
        "no position created"
    );
    f.assert_replays();
}

#[test]
fn safety_stock_is_not_sellable() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    let set = Command::SetSafetyStock(SetSafetyStock {
        request_id: RequestId::from("ss-1"),
        sku: Sku::from("sku-1"),
        location: Location::from("dc-1"),
        qty: 8,
    });
    assert_eq!(f.ok(set, T0).outcome, Outcome::Recorded);
    assert_eq!(f.available("sku-1", "dc-1", T0), 2);
    let r = f.ok(reserve("r1", &[("sku-1", "dc-1", 3)]), T0);
    assert!(matches!(r.outcome, Outcome::Insufficient { .. }));
    let r = f.ok(reserve("r2", &[("sku-1", "dc-1", 2)]), T0);
    assert!(matches!(r.outcome, Outcome::Granted { .. }));
    f.assert_replays();
}

#[test]
fn a_rejected_reserve_stays_rejected_when_retried_after_stock_arrives() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 1);
    let first = f.ok(reserve("r1", &[("sku-1", "dc-1", 5)]), T0);
    assert!(matches!(first.outcome, Outcome::Insufficient { .. }));
    f.stock("sku-1", "dc-1", 100);
    let retry = f.ok(reserve("r1", &[("sku-1", "dc-1", 5)]), T0 + 1);
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, first.lsn);
    assert_eq!(retry.outcome, first.outcome);
    // A genuinely new attempt uses a new key (reservation id).
    let fresh = f.ok(reserve("r1-b", &[("sku-1", "dc-1", 5)]), T0 + 2);
    assert!(matches!(fresh.outcome, Outcome::Granted { .. }));
    f.assert_replays();
}

#[test]
fn a_retry_changes_nothing_and_returns_the_original_lsn() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    let first = f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let digest = f.ledger.digest();
    let next = f.ledger.next_lsn();
    let retry = f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0 + 10);
    assert!(retry.duplicate);
    assert_eq!((retry.lsn, &retry.outcome), (first.lsn, &first.outcome));
    assert_eq!(f.ledger.digest(), digest);
    assert_eq!(f.ledger.next_lsn(), next);
    assert_eq!(f.available("sku-1", "dc-1", T0), 6);
}

#[test]
fn a_key_reused_with_another_payload_is_refused_naming_the_field() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let digest = f.ledger.digest();
    let err = f.refused(reserve("r1", &[("sku-1", "dc-1", 5)]), T0);
    assert!(
        matches!(&err, Refusal::KeyConflict { field, .. } if field == "lines[0].qty"),
        "{err:?}"
    );
    let mut other_channel = reserve("r1", &[("sku-1", "dc-1", 4)]);
    if let Command::Reserve(r) = &mut other_channel {
        r.channel = Channel::from("amazon-us");
    }
    let err = f.refused(other_channel, T0);
    assert!(matches!(err, Refusal::KeyConflict { field, .. } if field == "channel"));
    assert_eq!(f.ledger.digest(), digest, "a conflict changes nothing");
}

/// The field path a key conflict names, for `command` sent under a key first used by
/// `first`.
fn conflict_field(ledger: &Ledger, command: Command) -> (String, String) {
    match ledger.submit(command, T0 + 1) {
        Ok(Err(Refusal::KeyConflict { field, reason, .. })) => (field, reason),
        other => panic!("expected a key conflict: {other:?}"),
    }
}

#[test]
fn a_key_reused_with_other_lines_names_the_line_that_differs_from_the_logged_original() {
    // Goal: the fingerprint hashes all lines as one field; the conflict still names the first
    // line and subfield that differ, read from the original's event in the log, for every
    // command with lines; and with the original gone from the log it names `lines`.
    // Method: one original per command, then variants changing one thing each.
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-1", 10);
    let basket = [("sku-1", "dc-1", 2), ("sku-2", "dc-1", 3)];
    f.ok(reserve("r1", &basket), T0);
    let cases = [
        (
            reserve("r1", &[("sku-1", "dc-1", 2), ("sku-2", "dc-1", 4)]),
            "lines[1].qty",
        ),
        (
            reserve("r1", &[("sku-3", "dc-1", 2), ("sku-2", "dc-1", 3)]),
            "lines[0].sku",
        ),
        (
            reserve("r1", &[("sku-1", "dc-1", 2), ("sku-2", "dc-2", 3)]),
            "lines[1].location",
        ),
        (reserve("r1", &basket[..1]), "lines"),
    ];
    for (command, field) in cases {
        assert_eq!(conflict_field(&f.ledger, command).0, field);
    }
    let (_, reason) = conflict_field(&f.ledger, reserve("r1", &basket[..1]));
    assert!(reason.contains("1 lines, the original had 2"), "{reason}");

    f.ok(commit("r1", Some(&[("sku-1", "dc-1", 1)])), T0);
    let (field, reason) = conflict_field(&f.ledger, commit("r1", None));
    assert_eq!(field, "lines");
    assert!(reason.contains("commit everything held"), "{reason}");
    let (field, _) = conflict_field(&f.ledger, commit("r1", Some(&[("sku-1", "dc-1", 2)])));
    assert_eq!(field, "lines[0].qty");

    f.ok(sale("store-1", "t1", 1, &[("sku-1", "dc-1", 1)]), T0);
    let other_sku = sale("store-1", "t1", 1, &[("sku-2", "dc-1", 1)]);
    assert_eq!(conflict_field(&f.ledger, other_sku).0, "lines[0].sku");

    let ret = |disposition| {
        Command::RecordReturn(RecordReturn {
            return_id: ReturnId::from("ret-1"),
            lines: vec![ReturnLine {
                sku: Sku::from("sku-1"),
                location: Location::from("dc-1"),
                qty: 1,
                disposition,
            }],
        })
    };
    f.ok(ret(ReturnDisposition::Restock), T0);
    assert_eq!(
        conflict_field(&f.ledger, ret(ReturnDisposition::Inspect)).0,
        "lines[0].disposition"
    );
    assert_eq!(
        f.ledger.next_lsn().0 as usize,
        f.log.len() + 1,
        "conflicts log nothing"
    );

    // A log that no longer holds the original: the conflict names the whole list.
    let forgetful = Ledger::new(
        LedgerConfig::default(),
        Arc::new(crate::log::DiscardLog::default()),
    );
    forgetful
        .submit(adjust("a1", "sku-1", "dc-1", 10), T0)
        .expect("ok")
        .expect("ok");
    forgetful
        .submit(reserve("r1", &basket), T0)
        .expect("ok")
        .expect("ok");
    let (field, reason) = conflict_field(&forgetful, reserve("r1", &basket[..1]));
    assert_eq!(field, "lines");
    assert!(reason.contains("does not hold"), "{reason}");
}

#[test]
fn malformed_reserves_are_refused_naming_the_field() {
    let f = Fixture::new();
    let cases: Vec<(Command, &str)> = vec![
        (reserve("", &[("sku-1", "dc-1", 1)]), "reservation_id"),
        (
            reserve(&"x".repeat(129), &[("sku-1", "dc-1", 1)]),
            "reservation_id",
        ),
        (reserve("r", &[]), "lines"),
        (reserve("r", &[("sku-1", "dc-1", 0)]), "lines[0].qty"),
        (reserve("r", &[("sku-1", "", 1)]), "lines[0].location"),
        (
            reserve("r", &[("sku-1", "dc-1", crate::limits::QTY_MAX + 1)]),
            "lines[0].qty",
        ),
        (
            reserve("r", &[("sku-1", "dc-1", 1), ("sku-1", "dc-1", 2)]),
            "lines[1]",
        ),
        (reserve("r\n", &[("sku-1", "dc-1", 1)]), "reservation_id"),
    ];
    for (command, field) in cases {
        match f.submit(command, T0) {
            Err(SubmitError::Invalid(v)) => {
                assert_eq!(v.first().expect("a violation").field, field)
            }
            other => panic!("expected Invalid({field}), got {other:?}"),
        }
    }
    let too_many: Vec<(String, String, u64)> = (0..=crate::limits::LINES_MAX)
        .map(|i| (format!("sku-{i}"), "dc-1".to_owned(), 1))
        .collect();
    let lines: Vec<(&str, &str, u64)> = too_many
        .iter()
        .map(|(s, l, q)| (s.as_str(), l.as_str(), *q))
        .collect();
    assert!(matches!(
        f.submit(reserve("r", &lines), T0),
        Err(SubmitError::Invalid(v)) if v.first().is_some_and(|v| v.field == "lines")
    ));
    let mut short_ttl = reserve("r", &[("sku-1", "dc-1", 1)]);
    if let Command::Reserve(r) = &mut short_ttl {
        r.ttl_ms = 999;
    }
    assert!(matches!(
        f.submit(short_ttl, T0),
        Err(SubmitError::Invalid(v)) if v.first().is_some_and(|v| v.field == "ttl_ms")
    ));
    assert_eq!(f.ledger.next_lsn(), Lsn(1), "nothing was recorded");
}

// ---- Commit / Release / Extend / Expire -----------------------------------------------------

#[test]
fn commit_takes_the_units_off_on_hand() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let r = f.ok(commit("r1", None), T0 + 1);
    assert_eq!(r.outcome, Outcome::Committed { committed: vec![4] });
    let a = f.ledger.check("sku-1", "dc-1", T0 + 1).expect("exists");
    assert_eq!((a.on_hand, a.reserved, a.available), (6, 0, 6));
    assert_eq!(
        f.ledger
            .reservation("r1", T0 + 1)
            .expect("the key archive reads")
            .expect("kept")
            .state,
        HoldState::Committed
    );
    f.assert_replays();
}

#[test]
fn a_partial_commit_releases_the_remainder() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-1", 10);
    f.ok(
        reserve("r1", &[("sku-1", "dc-1", 4), ("sku-2", "dc-1", 5)]),
        T0,
    );
    let r = f.ok(commit("r1", Some(&[("sku-2", "dc-1", 2)])), T0 + 1);
    assert_eq!(
        r.outcome,
        Outcome::Committed {
            committed: vec![0, 2]
        }
    );
    assert_eq!(f.available("sku-1", "dc-1", T0 + 1), 10);
    assert_eq!(f.available("sku-2", "dc-1", T0 + 1), 8);
    f.assert_replays();
}

#[test]
fn a_commit_of_lines_not_held_is_refused() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let err = f.refused(commit("r1", Some(&[("sku-1", "dc-1", 5)])), T0);
    assert!(matches!(err, Refusal::NotHeld { ref field, .. } if field == "lines[0].qty"));
    let err = f.refused(commit("r1", Some(&[("sku-9", "dc-1", 1)])), T0);
    assert!(matches!(err, Refusal::NotHeld { ref field, .. } if field == "lines[0]"));
    // Nothing was recorded, so a corrected commit under the same key still works.
    let r = f.ok(commit("r1", Some(&[("sku-1", "dc-1", 4)])), T0);
    assert_eq!(r.outcome, Outcome::Committed { committed: vec![4] });
}

#[test]
fn commands_on_unknown_reservations_are_not_found() {
    let f = Fixture::new();
    for command in [commit("nope", None), release("nope")] {
        assert!(matches!(
            f.submit(command, T0),
            Ok(Err(Refusal::ReservationNotFound(id))) if id == "nope"
        ));
    }
    assert_eq!(f.ledger.next_lsn(), Lsn(1));
}

#[test]
fn release_gives_the_units_back_and_ended_holds_answer_already_ended() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    assert_eq!(f.ok(release("r1"), T0 + 1).outcome, Outcome::Released);
    assert_eq!(f.available("sku-1", "dc-1", T0 + 1), 10);
    assert_eq!(
        f.ok(commit("r1", None), T0 + 2).outcome,
        Outcome::HoldAlreadyEnded(HoldState::Released)
    );
    f.ok(reserve("r2", &[("sku-1", "dc-1", 1)]), T0);
    f.ok(commit("r2", None), T0 + 1);
    assert_eq!(
        f.ok(release("r2"), T0 + 2).outcome,
        Outcome::HoldAlreadyEnded(HoldState::Committed)
    );
    assert_eq!(
        f.ledger.check("sku-1", "dc-1", T0).expect("exists").on_hand,
        9
    );
    f.assert_replays();
}

#[test]
fn a_lapsed_hold_stops_counting_before_its_expiry_is_recorded() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 5);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 5)]), T0);
    assert_eq!(f.available("sku-1", "dc-1", T0 + TTL - 1), 0);
    // At the expiry instant the hold no longer reduces availability, with no event recorded.
    assert_eq!(f.available("sku-1", "dc-1", T0 + TTL), 5);
    assert_eq!(
        f.ledger
            .reservation("r1", T0 + TTL)
            .expect("the key archive reads")
            .expect("kept")
            .state,
        HoldState::Expired
    );
    // A new reserve may take those units before the sweep runs...
    let r = f.ok(reserve("r2", &[("sku-1", "dc-1", 5)]), T0 + TTL);
    assert!(matches!(r.outcome, Outcome::Granted { .. }));
    // ...and the lapsed hold can no longer be committed: the commit records its expiry.
    assert_eq!(f.ok(commit("r1", None), T0 + TTL).outcome, Outcome::Expired);
    assert_eq!(
        f.ledger
            .check("sku-1", "dc-1", T0 + TTL)
            .expect("exists")
            .reserved,
        5
    );
    f.assert_replays();
}

#[test]
fn expire_due_records_an_expiry_event_per_lapsed_hold() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 1)]), T0);
    f.ok(reserve("r2", &[("sku-1", "dc-1", 2)]), T0 + 10);
    f.ok(reserve("r3", &[("sku-1", "dc-1", 3)]), T0 + 20);
    assert_eq!(f.ledger.expire_due(T0 + TTL + 10, 100).expect("ok"), 2);
    assert_eq!(f.ledger.holds_open(), 1);
    assert_eq!(
        f.ledger
            .check("sku-1", "dc-1", T0 + TTL + 10)
            .expect("exists")
            .reserved,
        3
    );
    // The batch limit bounds the work per call.
    f.ok(reserve("r4", &[("sku-1", "dc-1", 1)]), T0 + TTL + 10);
    assert_eq!(f.ledger.expire_due(T0 + 3 * TTL, 1).expect("ok"), 1);
    assert_eq!(f.ledger.expire_due(T0 + 3 * TTL, 10).expect("ok"), 1);
    assert_eq!(f.ledger.holds_open(), 0);
    assert_eq!(
        f.ok(release("r1"), T0 + 3 * TTL).outcome,
        Outcome::HoldAlreadyEnded(HoldState::Expired)
    );
    f.assert_replays();
}

#[test]
fn extend_moves_the_expiry() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let extend = |request: &str, now| {
        Command::Extend(Extend {
            reservation_id: ReservationId::from("r1"),
            request_id: RequestId::from(request),
            ttl_ms: 2 * TTL,
        })
        .clone()
        .pipe(|c| f.submit(c, now).expect("well-formed"))
    };
    let r = extend("x1", T0 + 1_000).expect("ok");
    assert_eq!(
        r.outcome,
        Outcome::Extended {
            expires_at_ms: T0 + 1_000 + 2 * TTL
        }
    );
    assert_eq!(f.available("sku-1", "dc-1", T0 + TTL + 5), 6, "still held");
    assert_eq!(f.ledger.expire_due(T0 + TTL + 5, 10).expect("ok"), 0);
    assert_eq!(
        f.ledger.expire_due(T0 + 1_000 + 2 * TTL, 10).expect("ok"),
        1
    );
    let late = extend("x2", T0 + 3 * TTL).expect("ok");
    assert_eq!(late.outcome, Outcome::HoldAlreadyEnded(HoldState::Expired));
    f.assert_replays();
}

/// `x.pipe(f)` reads left to right in the closure above.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn clients_cannot_expire_an_open_hold() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 4)]), T0);
    let expire = Command::Expire(Expire {
        reservation_id: ReservationId::from("r1"),
    });
    assert!(matches!(
        f.refused(expire, T0 + 1),
        Refusal::HoldNotLapsed(id) if id == "r1"
    ));
    assert_eq!(f.available("sku-1", "dc-1", T0 + 1), 6);
}

// ---- Sales ----------------------------------------------------------------------------------

#[test]
fn a_sale_decrements_on_hand_even_below_zero() {
    let f = Fixture::new();
    f.stock("sku-1", "store-7", 2);
    let r = f.ok(sale("store-7", "t1", 1, &[("sku-1", "store-7", 3)]), T0);
    assert_eq!(r.outcome, Outcome::Recorded);
    let a = f.ledger.check("sku-1", "store-7", T0).expect("exists");
    assert_eq!((a.on_hand, a.available, a.sellable()), (-1, -1, 0));
    // A sale creates the position if it did not exist.
    f.ok(sale("store-7", "t2", 2, &[("sku-2", "store-7", 1)]), T0);
    assert_eq!(
        f.ledger
            .check("sku-2", "store-7", T0)
            .expect("created")
            .on_hand,
        -1
    );
    f.assert_replays();
}

#[test]
fn store_sequencing_shows_gaps_lag_and_absorbed_duplicates() {
    let f = Fixture::new();
    f.ok(sale("s1", "t1", 1, &[("sku-1", "s1", 1)]), T0);
    f.ok(sale("s1", "t3", 3, &[("sku-1", "s1", 1)]), T0);
    let dup = f.ok(sale("s1", "t3", 3, &[("sku-1", "s1", 1)]), T0 + 1);
    assert!(dup.duplicate);
    let status = f.ledger.store_status("s1").expect("known store");
    assert_eq!(status.contiguous_seq, 1);
    assert_eq!(status.newest_seq, 3);
    assert_eq!(status.gaps, vec![(2, 2)]);
    assert_eq!(status.duplicates_absorbed, 1);
    assert_eq!(status.newest_lag_ms, 5_000);
    assert_eq!(
        f.ledger.check("sku-1", "s1", T0).expect("exists").on_hand,
        -2
    );
    f.ok(sale("s1", "t2", 2, &[("sku-1", "s1", 1)]), T0);
    assert_eq!(
        f.ledger.store_status("s1").expect("known").contiguous_seq,
        3
    );
    assert!(f.ledger.store_status("unknown").is_none());
    f.assert_replays();
}

// ---- Returns and dispositions ---------------------------------------------------------------

#[test]
fn returns_restock_or_quarantine_and_dispositions_resolve_quarantine() {
    use DispositionAction::{Restock, Scrap};
    use ReturnDisposition::Inspect;
    let f = Fixture::new();
    f.ok(
        ret("ret-1", &[("sku-1", "dc-1", 2, ReturnDisposition::Restock)]),
        T0,
    );
    f.ok(ret("ret-2", &[("sku-1", "dc-1", 5, Inspect)]), T0);
    let a = f.ledger.check("sku-1", "dc-1", T0).expect("exists");
    assert_eq!((a.on_hand, a.quarantined, a.available), (2, 5, 2));
    f.ok(dispose("d1", "ret-2", 3, Restock), T0);
    f.ok(dispose("d2", "ret-2", 1, Scrap), T0);
    let a = f.ledger.check("sku-1", "dc-1", T0).expect("exists");
    assert_eq!((a.on_hand, a.quarantined), (5, 1));
    f.assert_replays();
}

#[test]
fn dispositions_for_unknown_returns_or_too_many_units_are_refused() {
    use DispositionAction::{Restock, Scrap};
    use ReturnDisposition::Inspect;
    let f = Fixture::new();
    f.ok(ret("ret-1", &[("sku-1", "dc-1", 2, Inspect)]), T0);
    assert!(matches!(
        f.submit(dispose("d1", "ret-x", 1, Restock), T0),
        Ok(Err(Refusal::ReturnNotFound(id))) if id == "ret-x"
    ));
    assert!(matches!(
        f.submit(dispose("d1", "ret-1", 3, Restock), T0),
        Ok(Err(Refusal::NotQuarantined {
            requested: 3,
            quarantined: 2,
            ..
        }))
    ));
    f.ok(dispose("d1", "ret-1", 2, Scrap), T0);
    assert!(matches!(
        f.submit(dispose("d2", "ret-1", 1, Scrap), T0),
        Ok(Err(Refusal::NotQuarantined { quarantined: 0, .. }))
    ));
    let a = f.ledger.check("sku-1", "dc-1", T0).expect("exists");
    assert_eq!((a.on_hand, a.quarantined), (0, 0));
}

// ---- Adjustments and retention --------------------------------------------------------------

#[test]
fn decisions_never_go_back_in_time() {
    // A decision timed before an earlier one (a stale clock read, or a wall clock stepping
    // back) is made as of the earlier one, so a lapsed hold stays lapsed.
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 1);
    f.ok(reserve("r1", &[("sku-1", "dc-1", 1)]), T0);
    f.ok(adjust("a-late", "sku-2", "dc-1", 1), T0 + TTL);
    assert_eq!(f.available("sku-1", "dc-1", T0), 1, "reads are clamped too");
    let late_commit = f.ok(commit("r1", None), T0 + 1);
    assert_eq!(late_commit.outcome, Outcome::Expired);
    assert_eq!(f.log.events().last().expect("logged").at_ms, T0 + TTL);
    f.assert_replays();
}

#[test]
fn adjustments_change_on_hand_and_a_zero_delta_is_refused() {
    let f = Fixture::new();
    f.ok(adjust("a1", "sku-1", "dc-1", 7), T0);
    f.ok(adjust("a2", "sku-1", "dc-1", -2), T0);
    assert_eq!(
        f.ledger.check("sku-1", "dc-1", T0).expect("exists").on_hand,
        5
    );
    assert!(matches!(
        f.submit(adjust("a3", "sku-1", "dc-1", 0), T0),
        Err(SubmitError::Invalid(v)) if v.first().is_some_and(|v| v.field == "delta")
    ));
}

#[test]
fn keys_are_forgotten_after_the_retention_window_and_purge_frees_them() {
    let log = Arc::new(MemLog::new());
    let ledger = Ledger::new(
        LedgerConfig {
            shards: 2,
            key_retention_ms: 1_000,
            ..LedgerConfig::default()
        },
        log.clone(),
    );
    ledger
        .submit(adjust("a0", "sku-1", "dc-1", 1), T0)
        .expect("ok")
        .expect("not refused");
    let first = ledger
        .submit(adjust("a1", "sku-1", "dc-1", 1), T0)
        .expect("ok")
        .expect("not refused");
    let retry = ledger
        .submit(adjust("a1", "sku-1", "dc-1", 1), T0 + 999)
        .expect("ok")
        .expect("not refused");
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, first.lsn);
    // Past retention the key is new again.
    let later = ledger
        .submit(adjust("a1", "sku-1", "dc-1", 1), T0 + 1_000)
        .expect("ok")
        .expect("not refused");
    assert!(!later.duplicate);
    assert_eq!(
        ledger.check("sku-1", "dc-1", T0).expect("exists").on_hand,
        3
    );
    let digest = ledger.digest();
    assert_eq!(
        ledger.purge(T0 + 5_000),
        1,
        "a0 is past retention; a1 was re-recorded"
    );
    assert_eq!(
        ledger.digest(),
        digest,
        "purging changes nothing observable"
    );
}

// ---- Fail-stop ------------------------------------------------------------------------------

/// A log whose appends fail: the engine must refuse this and every later write, and keep
/// answering reads.
struct BrokenLog;

impl EventLog for BrokenLog {
    fn append(&self, _event: &Arc<Event>) -> Result<(), crate::error::LogError> {
        Err(crate::error::LogError::Io("disk on fire".into()))
    }
    fn wait_durable(&self, _lsn: Lsn) -> Result<(), crate::error::LogError> {
        Ok(())
    }
    fn durable_lsn(&self) -> Lsn {
        Lsn::ZERO
    }
    fn read_from(
        &self,
        _from: Lsn,
        _max: usize,
    ) -> Result<Vec<Arc<Event>>, crate::error::LogError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_log_failure_applies_nothing_and_stops_writes() {
    let ledger = Ledger::new(LedgerConfig::default(), Arc::new(BrokenLog));
    let err = ledger
        .submit(adjust("a1", "sku-1", "dc-1", 5), T0)
        .expect_err("append fails");
    assert!(matches!(err, SubmitError::Log(_)));
    assert!(
        ledger.check("sku-1", "dc-1", T0).is_none(),
        "nothing applied"
    );
    assert!(matches!(
        ledger.submit(adjust("a2", "sku-1", "dc-1", 5), T0),
        Err(SubmitError::FailStopped(_))
    ));
    assert_eq!(ledger.next_lsn(), Lsn(1));
    ledger.check_invariants().expect("invariants hold");
}

#[test]
fn replay_refuses_a_gap() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 1);
    f.stock("sku-1", "dc-1", 1);
    let events = f.log.events();
    let fresh = Ledger::new(f.ledger.config(), Arc::new(MemLog::new()));
    assert!(matches!(
        fresh.replay(&events[1]),
        Err(ReplayError::Gap {
            expected: Lsn(1),
            found: Lsn(2)
        })
    ));
}

// ---- Checkpoints ----------------------------------------------------------------------------

#[test]
fn a_checkpoint_plus_the_log_tail_reproduces_the_ledger() {
    use ReturnDisposition::Inspect;
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-2", 10);
    f.ok(
        reserve("r1", &[("sku-1", "dc-1", 2), ("sku-2", "dc-2", 1)]),
        T0,
    );
    f.ok(reserve("r2", &[("sku-1", "dc-1", 1)]), T0);
    f.ok(release("r2"), T0 + 1);
    f.ok(sale("s1", "t1", 1, &[("sku-1", "dc-1", 1)]), T0);
    f.ok(sale("s1", "t3", 3, &[("sku-1", "dc-1", 1)]), T0);
    f.ok(ret("ret-1", &[("sku-2", "dc-2", 2, Inspect)]), T0);
    let checkpoint = f.ledger.checkpoint();
    assert_eq!(checkpoint.next_lsn, f.ledger.next_lsn());

    // Work after the checkpoint, including on holds and returns the checkpoint carries.
    f.ok(commit("r1", Some(&[("sku-1", "dc-1", 1)])), T0 + 2);
    f.ok(sale("s1", "t2", 2, &[("sku-2", "dc-2", 1)]), T0 + 2);
    f.ok(reserve("r3", &[("sku-2", "dc-2", 3)]), T0 + 3);
    f.ledger.expire_due(T0 + 3 + TTL, 10).expect("ok");

    let restored = Ledger::from_checkpoint(f.ledger.config(), Arc::new(MemLog::new()), &checkpoint)
        .expect("loads");
    for event in f
        .log
        .events()
        .iter()
        .skip(checkpoint.next_lsn.0 as usize - 1)
    {
        restored.replay(event).expect("tail replays");
    }
    restored.check_invariants().expect("invariants hold");
    assert_eq!(restored.digest(), f.ledger.digest());
    // Keys in the checkpoint still dedupe.
    let retry = restored
        .submit(reserve("r2", &[("sku-1", "dc-1", 1)]), T0 + 4)
        .expect("ok")
        .expect("not refused");
    assert!(retry.duplicate);
}

/// A cut shares the ledger's tables copy-on-write, so writes between taking the cut and
/// building the checkpoint from it (the server's writes go on while it is encoded) must not
/// show in it: not changed holds, not new skus and holds, not purged entries.
#[test]
fn a_cut_is_unchanged_by_the_writes_after_it() {
    let f = Fixture::new();
    for i in 0..300 {
        f.stock(&format!("sku-{i}"), "dc-1", 10);
    }
    for i in 0..300 {
        let sku = format!("sku-{i}");
        f.ok(reserve(&format!("r{i}"), &[(sku.as_str(), "dc-1", 1)]), T0);
    }
    let at_cut = f.ledger.checkpoint();
    let cut = f.ledger.cut();

    // Write into every shared chunk: end holds, add skus and holds, expire and purge.
    for i in 0..300 {
        if i % 2 == 0 {
            f.ok(release(&format!("r{i}")), T0 + 1);
        } else {
            f.ok(commit(&format!("r{i}"), None), T0 + 1);
        }
    }
    for i in 300..400 {
        let sku = format!("sku-{i}");
        f.stock(&sku, "dc-2", 5);
        f.ok(
            reserve(&format!("r{i}"), &[(sku.as_str(), "dc-2", 2)]),
            T0 + 2,
        );
    }
    f.ledger.expire_due(T0 + 2 + TTL, 1_000).expect("ok");
    f.ledger
        .purge(T0 + 2 + TTL + f.ledger.config().key_retention_ms + 1);
    f.ledger.check_invariants().expect("invariants hold");

    let built = cut.into_checkpoint(&f.ledger);
    assert_eq!(built, at_cut, "the checkpoint is the state at the cut");
}

/// Reserve, Commit and Release outcomes are kept with their holds (see the module doc): they
/// must still be answered, conflict, expire, purge and checkpoint exactly like any other key.
#[test]
fn outcomes_kept_with_holds_behave_like_keys() {
    let log = Arc::new(MemLog::new());
    let config = LedgerConfig {
        shards: 2,
        key_retention_ms: 1_000,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::new(config, log.clone());
    let ok = |command: Command, now_ms: u64| {
        let receipt = ledger
            .submit(command, now_ms)
            .expect("accepted")
            .expect("not refused");
        ledger.check_invariants().expect("invariants hold");
        receipt
    };
    ok(adjust("a0", "sku-1", "dc-1", 10), T0);
    // An insufficient reserve: a record with no hold.
    let short = ok(reserve("r-short", &[("sku-1", "dc-1", 100)]), T0);
    assert!(matches!(short.outcome, Outcome::Insufficient { .. }));
    ok(adjust("a-more", "sku-1", "dc-1", 100), T0);
    let retry = ok(reserve("r-short", &[("sku-1", "dc-1", 100)]), T0 + 100);
    assert!(retry.duplicate, "a rejected reserve stays rejected");
    assert_eq!(retry.outcome, short.outcome);
    ok(reserve("r1", &[("sku-1", "dc-1", 1)]), T0);
    assert!(matches!(
        ledger.submit(reserve("r1", &[("sku-1", "dc-1", 2)]), T0 + 500),
        Ok(Err(Refusal::KeyConflict { field, .. })) if field == "lines[0].qty"
    ));
    let released = ok(release("r1"), T0 + 900);
    let retry = ok(release("r1"), T0 + 1_500);
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, released.lsn);
    let late_commit = ok(commit("r1", None), T0 + 1_800);
    assert_eq!(
        late_commit.outcome,
        Outcome::HoldAlreadyEnded(HoldState::Released)
    );

    let checkpoint = ledger.checkpoint();
    let restored =
        Ledger::from_checkpoint(config, Arc::new(MemLog::new()), &checkpoint).expect("loads");
    assert_eq!(restored.digest(), ledger.digest());
    let retry = restored
        .submit(release("r1"), T0 + 1_800)
        .expect("ok")
        .expect("not refused");
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, released.lsn);

    // Past retention: the two stocking keys, both reserve records, the release record and the
    // released hold go; the late commit's record stays, alone in its entry.
    ok(adjust("a1", "sku-1", "dc-1", 1), T0 + 2_000);
    let digest = ledger.digest();
    assert_eq!(ledger.purge(T0 + 2_000), 6);
    assert_eq!(
        ledger.digest(),
        digest,
        "purging changes nothing observable"
    );
    ledger.check_invariants().expect("invariants hold");
    assert!(
        ledger
            .reservation("r1", T0 + 2_000)
            .expect("the key archive reads")
            .is_none()
    );
    let retry = ok(commit("r1", None), T0 + 2_100);
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, late_commit.lsn);

    // The id is free again for a reserve; the commit key is still the late commit's.
    let again = ok(reserve("r1", &[("sku-1", "dc-1", 1)]), T0 + 2_100);
    assert!(matches!(again.outcome, Outcome::Granted { .. }));
    let retry = ok(commit("r1", None), T0 + 2_200);
    assert!(retry.duplicate);
    assert_eq!(retry.lsn, late_commit.lsn);
    assert_eq!(ok(release("r1"), T0 + 2_200).outcome, Outcome::Released);

    let checkpoint = ledger.checkpoint();
    let restored =
        Ledger::from_checkpoint(config, Arc::new(MemLog::new()), &checkpoint).expect("loads");
    assert_eq!(restored.digest(), ledger.digest());
    let replayed = Ledger::new(config, Arc::new(MemLog::new()));
    replayed.replay_log(log.as_ref()).expect("replays");
    replayed.check_invariants().expect("invariants hold");
    assert_eq!(replayed.digest(), ledger.digest());
}

/// The sizes the per-hold memory budget rests on (see `benches/src/bin/memory.rs`): a hold
/// entry with its hold and its derived records, with no allocation for a single-line hold.
#[test]
fn a_hold_entry_is_small() {
    assert_eq!(size_of::<HoldEntry>(), 120);
    assert_eq!(size_of::<Option<HoldEntry>>(), 120);
}

/// Derived records read back exactly as the command's own fingerprint and outcome: a retry of
/// the reserve, of a full commit and of a release gets the original answer, and a different
/// payload names the field, for records derived from the hold as for stored ones.
#[test]
fn derived_records_equal_the_recorded_ones() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    f.stock("sku-2", "dc-1", 10);
    let lines = [("sku-1", "dc-1", 2), ("sku-2", "dc-1", 1)];
    let placed = f.ok(reserve("r1", &lines), T0);
    let command = reserve("r1", &lines);
    {
        let shard = lock(&f.ledger.holds[f.ledger.shard_of("r1")]);
        let entry = shard.entry("r1").expect("entry");
        assert_eq!(entry.derived, derived_bit(CommandKind::Reserve));
        let record = entry
            .record(CommandKind::Reserve, &f.ledger.names)
            .expect("a reserve record");
        assert_eq!(Some(record.fingerprint), command.fingerprint());
        assert_eq!((record.lsn, &record.outcome), (placed.lsn, &placed.outcome));
    }
    let retry = f.ok(command, T0 + 10);
    assert!(retry.duplicate);
    assert_eq!((retry.lsn, retry.outcome), (placed.lsn, placed.outcome));
    for (field, other) in [
        ("channel", {
            let Command::Reserve(mut c) = reserve("r1", &lines) else {
                unreachable!()
            };
            c.channel = Channel::from("other");
            Command::Reserve(c)
        }),
        ("lines", reserve("r1", &lines[..1])),
    ] {
        match f.submit(other, T0 + 10) {
            Ok(Err(Refusal::KeyConflict { field: named, .. })) => assert_eq!(named, field),
            other => panic!("expected a conflict on {field}: {other:?}"),
        }
    }
    let committed = f.ok(commit("r1", None), T0 + 20);
    let retry = f.ok(commit("r1", None), T0 + 30);
    assert!(retry.duplicate);
    assert_eq!(
        (retry.lsn, &retry.outcome),
        (committed.lsn, &committed.outcome)
    );
    let late_release = f.ok(release("r1"), T0 + 40);
    assert_eq!(
        late_release.outcome,
        Outcome::HoldAlreadyEnded(HoldState::Committed)
    );
    {
        let shard = lock(&f.ledger.holds[f.ledger.shard_of("r1")]);
        let entry = shard.entry("r1").expect("entry");
        let derived = derived_bit(CommandKind::Reserve) | derived_bit(CommandKind::Commit);
        assert_eq!(entry.derived, derived);
        assert_eq!(
            entry.stored().len(),
            1,
            "the late release's answer is stored"
        );
    }
    // A release of a lapsed hold records its expiry, derived from the expired hold.
    f.ok(reserve("r2", &lines[..1]), T0 + 40);
    let expired = f.ok(release("r2"), T0 + 40 + TTL);
    assert_eq!(expired.outcome, Outcome::Expired);
    let retry = f.ok(release("r2"), T0 + 41 + TTL);
    assert_eq!((retry.lsn, retry.outcome), (expired.lsn, Outcome::Expired));
    f.assert_replays();
    let checkpoint = f.ledger.checkpoint();
    let restored = Ledger::from_checkpoint(f.ledger.config(), Arc::new(MemLog::new()), &checkpoint)
        .expect("loads");
    assert_eq!(restored.digest(), f.ledger.digest());
    let shard = lock(&restored.holds[restored.shard_of("r1")]);
    let derived = derived_bit(CommandKind::Reserve) | derived_bit(CommandKind::Commit);
    assert_eq!(
        shard.entry("r1").expect("entry").derived,
        derived,
        "a checkpoint restores records in the derived form"
    );
}

/// The principal that issued a command is in its event and on the hold it placed or ended,
/// through a replay and a checkpoint, and a key belongs to whoever used it first: the same
/// request by another principal (or by none) is a conflict naming `principal`, for records
/// derived from the hold as for stored ones.
#[test]
fn principals_are_recorded_and_own_their_keys() {
    let f = Fixture::new();
    f.stock("sku-1", "dc-1", 10);
    let web = Some(PrincipalName::from("connector-web"));
    let other = Some(PrincipalName::from("connector-other"));
    let by = |command: Command, by: &Option<PrincipalName>, now_ms: u64| {
        let decision = f.ledger.submit_by(command, by.clone(), now_ms);
        f.ledger.check_invariants().expect("invariants hold");
        decision.expect("well-formed")
    };
    let conflict_on = |decision: Decision| match decision {
        Err(Refusal::KeyConflict { field, .. }) => field,
        other => panic!("expected a key conflict: {other:?}"),
    };
    let lines = [("sku-1", "dc-1", 2)];
    let placed = by(reserve("r1", &lines), &web, T0).expect("granted");
    let event = f.log.events().last().cloned().expect("logged");
    assert_eq!(event.by, web, "the event names who reserved");
    let retry = by(reserve("r1", &lines), &web, T0 + 1).expect("a retry");
    assert!(retry.duplicate && retry.lsn == placed.lsn, "{retry:?}");
    assert_eq!(
        conflict_on(by(reserve("r1", &lines), &other, T0 + 1)),
        "principal"
    );
    assert_eq!(
        conflict_on(by(reserve("r1", &lines), &None, T0 + 1)),
        "principal"
    );

    // Ended by another principal (the engine does not scope channels; the API does).
    let released = by(release("r1"), &other, T0 + 2).expect("released");
    let hold = f
        .ledger
        .reservation("r1", T0 + 3)
        .expect("reads")
        .expect("kept");
    assert_eq!(hold.placed_by.as_deref(), Some("connector-web"));
    assert_eq!(hold.ended_by.as_deref(), Some("connector-other"));
    let retry = by(release("r1"), &other, T0 + 3).expect("a retry");
    assert!(retry.duplicate && retry.lsn == released.lsn, "{retry:?}");
    assert_eq!(conflict_on(by(release("r1"), &web, T0 + 3)), "principal");
    {
        let shard = lock(&f.ledger.holds[f.ledger.shard_of("r1")]);
        let entry = shard.entry("r1").expect("entry");
        let derived = derived_bit(CommandKind::Reserve) | derived_bit(CommandKind::Release);
        assert_eq!(
            entry.derived, derived,
            "named principals keep records derived"
        );
    }
    // A stored record (an adjustment) is owned the same way.
    by(adjust("adj-1", "sku-1", "dc-1", 5), &web, T0 + 4).expect("recorded");
    assert_eq!(
        conflict_on(by(adjust("adj-1", "sku-1", "dc-1", 5), &other, T0 + 4)),
        "principal"
    );
    // The expiry sweep has no principal.
    by(reserve("r2", &lines), &web, T0 + 5).expect("granted");
    f.ledger.expire_due(T0 + 5 + TTL, 10).expect("swept");
    let hold = f
        .ledger
        .reservation("r2", T0 + 6 + TTL)
        .expect("reads")
        .expect("kept");
    assert_eq!(
        (hold.placed_by.as_deref(), hold.ended_by.as_deref()),
        (Some("connector-web"), None)
    );

    f.assert_replays();
    let checkpoint = f.ledger.checkpoint();
    let restored = Ledger::from_checkpoint(f.ledger.config(), Arc::new(MemLog::new()), &checkpoint)
        .expect("loads");
    assert_eq!(restored.digest(), f.ledger.digest());
    let hold = restored
        .reservation("r1", T0 + 7)
        .expect("reads")
        .expect("kept");
    assert_eq!(
        (hold.placed_by.as_deref(), hold.ended_by.as_deref()),
        (Some("connector-web"), Some("connector-other"))
    );
    let retry = restored
        .submit_by(release("r1"), other.clone(), T0 + 7)
        .expect("well-formed")
        .expect("a retry");
    assert!(retry.duplicate, "{retry:?}");
    let refused = restored.submit_by(reserve("r1", &lines), other, T0 + 7);
    assert!(
        matches!(&refused, Ok(Err(Refusal::KeyConflict { field, .. })) if field == "principal"),
        "{refused:?}"
    );
}
