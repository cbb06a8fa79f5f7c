//! Golden files: the bytes of every kind of event, of a batch record and of a checkpoint, as
//! this build writes them, checked in under `engine/tests/fixtures/` with the format version
//! in their name. A test fails when the encoding of any of them changes: either the change was
//! unintended (reordered enum variants, a field inserted in the middle), or it needs a new
//! version number, a new golden file, and a decoder that keeps reading the old bytes.
//!
//! A golden file for a version is written once, by running the tests with
//! `INVENTORY_WRITE_GOLDEN=1` when no file exists for it yet; an existing file is never
//! rewritten, so blessing a changed encoding under an old version is impossible. A batch
//! record holds encoded events, so its file names both versions (`batch-v2-events-v4`).
//! The files of versions this build no longer reads are removed with their decoders.

use super::*;
use crate::checkpoint::*;
use crate::command::*;
use crate::event::{Event, Fact, HoldRequest};
use crate::hold::HoldState;
use crate::outcome::{Outcome, ShortLine};
use crate::stores::{StoreAnomaly, StoreSequence};
use crate::types::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

const T0: u64 = 1_700_000_000_000;

fn event(lsn: u64, fact: Fact) -> Event {
    Event {
        lsn: Lsn(lsn),
        at_ms: T0 + lsn,
        // Every other event names its principal, so both encodings are pinned.
        by: lsn
            .is_multiple_of(2)
            .then(|| PrincipalName::from("connector-web")),
        fact,
    }
}

fn rid(id: &str) -> ReservationId {
    ReservationId::from(id)
}

/// An index per kind of fact. Exhaustive on purpose: a new kind of fact does not compile
/// until it is given an index here, and then [`every_kind_of_fact`] must show it.
fn kind_index(fact: &Fact) -> usize {
    match fact {
        Fact::HoldPlaced { .. } => 0,
        Fact::ReserveRefused { .. } => 1,
        Fact::HoldCommitted { .. } => 2,
        Fact::HoldReleased(_) => 3,
        Fact::HoldExtended { .. } => 4,
        Fact::HoldExpired(_) => 5,
        Fact::HoldAlreadyEnded { .. } => 6,
        Fact::SaleRecorded(_) => 7,
        Fact::ReturnRecorded(_) => 8,
        Fact::ReturnDisposed(_) => 9,
        Fact::StockAdjusted(_) => 10,
        Fact::SafetyStockSet(_) => 11,
        Fact::PositionReconciled { .. } => 12,
        Fact::DriftResolved { .. } => 13,
        Fact::SaleRecordedOutOfSequence { .. } => 14,
        Fact::StoreAnomalyAcknowledged { .. } => 15,
    }
}
const FACT_KINDS: usize = 16;

/// At least one event of every kind of fact, with fields that exercise every shape: several
/// lines, a partial and a full commit, expiry found by each kind of request, negative and
/// large numbers, an id longer than the inline 24 bytes.
pub(super) fn every_kind_of_fact() -> Vec<Event> {
    let reserve = Reserve {
        reservation_id: rid("r-1"),
        channel: Channel::from("web"),
        lines: vec![Line::new("sku-1", "dc-1", 2), Line::new("sku-2", "dc-1", 1)],
        ttl_ms: 60_000,
    };
    let facts = vec![
        Fact::HoldPlaced {
            reserve: reserve.clone(),
            expires_at_ms: T0 + 60_001,
        },
        Fact::ReserveRefused {
            reserve: Reserve {
                reservation_id: rid("r-2"),
                channel: Channel::from("amazon-us"),
                lines: vec![Line::new("sku-1", "dc-1", 500)],
                ttl_ms: 1_000,
            },
            short: vec![ShortLine {
                line_index: 0,
                requested: 500,
                available: -3,
            }],
        },
        Fact::HoldCommitted {
            commit: Commit {
                reservation_id: rid("r-1"),
                lines: Some(vec![Line::new("sku-1", "dc-1", 1)]),
            },
            lines: vec![Line::new("sku-1", "dc-1", 1), Line::new("sku-2", "dc-1", 0)],
        },
        Fact::HoldCommitted {
            commit: Commit {
                reservation_id: rid("r-7"),
                lines: None,
            },
            lines: vec![Line::new("sku-9", "dc-1", 4)],
        },
        Fact::HoldAlreadyEnded {
            request: HoldRequest::Commit(Commit {
                reservation_id: rid("r-3"),
                lines: None,
            }),
            state: HoldState::Released,
        },
        Fact::HoldReleased(Release {
            reservation_id: rid("r-4"),
        }),
        Fact::HoldExtended {
            extend: Extend {
                reservation_id: rid("r-5"),
                request_id: RequestId::from("x-1"),
                ttl_ms: 120_000,
            },
            expires_at_ms: T0 + 120_006,
        },
        Fact::HoldExpired(HoldRequest::Expire(Expire {
            reservation_id: rid("r-6"),
        })),
        Fact::HoldExpired(HoldRequest::Release(Release {
            reservation_id: rid("r-8"),
        })),
        Fact::HoldExpired(HoldRequest::Extend(Extend {
            reservation_id: rid("r-9"),
            request_id: RequestId::from("x-2"),
            ttl_ms: 1_000,
        })),
        Fact::SaleRecorded(RecordSale {
            store_id: StoreId::from("store-0042"),
            txn_id: TxnId::from("t-99"),
            store_seq: 17,
            occurred_at_ms: T0 - 1_000,
            lines: vec![Line::new("sku-1", "store-0042", 3)],
        }),
        Fact::ReturnRecorded(RecordReturn {
            return_id: ReturnId::from("ret-1"),
            lines: vec![
                ReturnLine {
                    sku: Sku::from("sku-1"),
                    location: Location::from("dc-1"),
                    qty: 1,
                    disposition: ReturnDisposition::Restock,
                },
                ReturnLine {
                    sku: Sku::from("sku-2"),
                    location: Location::from("dc-1"),
                    qty: 2,
                    disposition: ReturnDisposition::Inspect,
                },
            ],
        }),
        Fact::ReturnDisposed(Dispose {
            disposition_id: DispositionId::from("d-1"),
            return_id: ReturnId::from("ret-1"),
            sku: Sku::from("sku-2"),
            location: Location::from("dc-1"),
            qty: 2,
            action: DispositionAction::Scrap,
        }),
        Fact::StockAdjusted(Adjust {
            adjustment_id: AdjustmentId::from("adj-1"),
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            delta: -1_000_000_000,
            reason: "cycle count: a reason longer than twenty-four bytes".into(),
        }),
        Fact::SafetyStockSet(SetSafetyStock {
            request_id: RequestId::from("ss-1"),
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            qty: 5,
        }),
        Fact::PositionReconciled {
            reconcile: Reconcile {
                snapshot_id: SnapshotId::from("snap-1"),
                sku: Sku::from("sku-1"),
                location: Location::from("dc-1"),
                as_of_ms: T0 - 60_000,
                erp_on_hand: 40,
                since_as_of: -3,
                events_since: 2,
                tap_from_lsn: Lsn(14),
                tolerance: Tolerance {
                    units: 2,
                    percent_bp: 150,
                    beyond: BeyondTolerance::Hold,
                },
            },
            engine_on_hand_at: 46,
            drift: -6,
            held: true,
            superseded: Some(SnapshotId::from("snap-0")),
            events_since: 3,
        },
        Fact::DriftResolved {
            resolve: ResolveDrift {
                snapshot_id: SnapshotId::from("snap-1"),
                sku: Sku::from("sku-1"),
                location: Location::from("dc-1"),
                action: DriftAction::Dismiss,
            },
            as_of_ms: T0 - 60_000,
            drift: -6,
        },
        Fact::SaleRecordedOutOfSequence {
            sale: RecordSale {
                store_id: StoreId::from("store-0042"),
                txn_id: TxnId::from("t-100"),
                store_seq: u64::MAX,
                occurred_at_ms: T0 - 500,
                lines: vec![Line::new("sku-2", "store-0042", 1)],
            },
            newest_seq: 17,
        },
        Fact::StoreAnomalyAcknowledged {
            acknowledge: AcknowledgeStoreAnomaly {
                store_id: StoreId::from("store-0042"),
                txn_id: TxnId::from("t-100"),
                action: AnomalyAction::Accept,
            },
            store_seq: u64::MAX,
            gaps_abandoned: u64::MAX - 18,
        },
        Fact::StoreAnomalyAcknowledged {
            acknowledge: AcknowledgeStoreAnomaly {
                store_id: StoreId::from("store-0042"),
                txn_id: TxnId::from("t-101"),
                action: AnomalyAction::Dismiss,
            },
            store_seq: 250_000,
            gaps_abandoned: 0,
        },
    ];
    facts
        .into_iter()
        .enumerate()
        .map(|(i, fact)| event(i as u64 + 1, fact))
        .collect()
}

/// A checkpoint with every part filled, as plain data.
pub(super) fn every_part_of_a_checkpoint() -> Checkpoint {
    let mut received = BTreeMap::new();
    received.insert(5, 7);
    Checkpoint {
        next_lsn: Lsn(42),
        last_at_ms: T0 + 41,
        positions: vec![CheckpointPosition {
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            on_hand: -3,
            reserved: 2,
            safety_stock: 1,
            quarantined: 4,
        }],
        holds: vec![CheckpointHold {
            reservation_id: rid("r-1"),
            channel: Channel::from("web"),
            lines: vec![Line::new("sku-1", "dc-1", 2)],
            state: HoldState::Open,
            expires_at_ms: T0 + 60_000,
            placed_lsn: Lsn(7),
            placed_at_ms: T0 + 7,
            ended_at_ms: 0,
            placed_by: Some(PrincipalName::from("connector-web")),
            ended_by: None,
        }],
        keys: vec![CheckpointKey {
            key: IdempotencyKey {
                kind: CommandKind::Extend,
                id: "r-1".into(),
                sub: "x-1".into(),
            },
            fingerprint: Fingerprint {
                kind: CommandKind::Extend,
                by: 0x5eed_f00d,
                fields: [1, 2, 3, 0, 0, 0],
            },
            lsn: Lsn(9),
            at_ms: T0 + 9,
            outcome: Outcome::Extended {
                expires_at_ms: T0 + 60_000,
            },
        }],
        returns: vec![CheckpointReturn {
            return_id: ReturnId::from("ret-1"),
            at_ms: T0 + 3,
            quarantined: vec![(Sku::from("sku-1"), Location::from("dc-1"), 4)],
        }],
        stores: vec![(
            StoreId::from("store-0042"),
            StoreSequence {
                contiguous_seq: 3,
                received,
                newest_seq: 7,
                newest_occurred_at_ms: T0 - 5,
                newest_recorded_at_ms: T0 + 2,
                sales_recorded: 6,
                seq_reused: 1,
                gaps_abandoned: 0,
                anomalies: vec![StoreAnomaly {
                    txn_id: TxnId::from("t-100"),
                    store_seq: u64::MAX,
                    newest_seq: 7,
                    occurred_at_ms: T0 - 4,
                    recorded_at_ms: T0 + 3,
                    lsn: Lsn(8),
                }],
                anomalies_dropped: 2,
                duplicates_absorbed: 0,
            },
        )],
        held_drifts: vec![CheckpointHeldDrift {
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            snapshot_id: SnapshotId::from("snap-1"),
            as_of_ms: T0 - 60_000,
            erp_on_hand: 40,
            engine_on_hand_at: 46,
            drift: -6,
            lsn: Lsn(20),
        }],
        history: vec![(Lsn(3), T0 - 86_000_000), (Lsn(40), T0 + 40)],
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `lines` (`name hex` per line) against the golden file `name`, or writes it if it
/// does not exist and `INVENTORY_WRITE_GOLDEN=1`.
fn check_golden(name: &str, lines: &[(String, Vec<u8>)]) {
    let path = fixtures().join(name);
    let text: String = lines
        .iter()
        .map(|(what, bytes)| format!("{what} {}\n", hex(bytes)))
        .collect();
    let Ok(golden) = std::fs::read_to_string(&path) else {
        if std::env::var_os("INVENTORY_WRITE_GOLDEN").is_some() {
            std::fs::write(&path, &text).expect("write the golden file");
            return;
        }
        panic!(
            "{} is missing: a format version without its golden file. If this version is new \
             on purpose, run the tests once with INVENTORY_WRITE_GOLDEN=1 and check the file in.",
            path.display()
        );
    };
    for (want, got) in golden.lines().zip(text.lines()) {
        assert_eq!(
            got,
            want,
            "{} changed: the encoding differs from the golden bytes of its version. Either the \
             change is a mistake (reordered variants or fields?), or it needs a new version \
             number and a decoder that still reads the old one.",
            path.display()
        );
    }
    assert_eq!(golden.lines().count(), text.lines().count(), "{name}");
}

#[test]
fn the_fixture_has_every_kind_of_fact() {
    let mut seen = [false; FACT_KINDS];
    for event in every_kind_of_fact() {
        seen[kind_index(&event.fact)] = true;
    }
    assert_eq!(seen, [true; FACT_KINDS]);
}

#[test]
fn events_encode_to_their_golden_bytes_and_back() {
    let events = every_kind_of_fact();
    let lines: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            let bytes = encode(e).expect("encodes");
            assert_eq!(decode(e.lsn, &bytes).as_ref(), Ok(e), "roundtrip");
            (format!("{}:{}", e.lsn, e.fact.name()), bytes)
        })
        .collect();
    check_golden(&format!("events-v{FORMAT_VERSION}.golden"), &lines);
}

#[test]
fn a_batch_record_encodes_to_its_golden_bytes() {
    let events = every_kind_of_fact();
    let mut bytes = Vec::new();
    encode_batch_into(&events, &mut bytes).expect("encodes");
    check_golden(
        &format!("batch-v{BATCH_FORMAT_VERSION}-events-v{FORMAT_VERSION}.golden"),
        &[("batch".to_owned(), bytes)],
    );
}

#[test]
fn a_checkpoint_encodes_to_its_golden_bytes_and_back() {
    let checkpoint = every_part_of_a_checkpoint();
    let bytes = encode_checkpoint(&checkpoint).expect("encodes");
    assert_eq!(decode_checkpoint(&bytes), Ok(checkpoint));
    check_golden(
        &format!("checkpoint-v{CHECKPOINT_FORMAT_VERSION}.golden"),
        &[("checkpoint".to_owned(), bytes)],
    );
}
