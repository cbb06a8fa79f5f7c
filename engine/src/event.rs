//! Events: what happened, in LSN order, in the past tense.
//!
//! An event is a [`Fact`] with the LSN it was given and the engine time it was decided at. A
//! fact carries the whole request that caused it (so a replay can rebuild the request's
//! idempotency record, fingerprint included) and what was decided (a grant's expiry, a
//! commit's quantities). Replay applies facts and never re-decides: a placed hold is placed
//! again even if the replaying engine's clock says it would have expired, because what matters
//! is what the client was told. The ledger is exactly the fold of its events in LSN order.
//!
//! Facts are the log's own types: a fact can only be built from a request and an outcome that
//! belong together ([`Fact::decided`]), so the log never holds a reserve that was "released".
//! How they are written to disk is pinned by [`crate::log::encoding`] and its golden files.

use crate::command::*;
use crate::hold::HoldState;
use crate::outcome::{Outcome, ShortLine};
use crate::types::{Location, Lsn, PrincipalName, ReservationId, Sku, SnapshotId};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub lsn: Lsn,
    /// Engine clock when the fact was decided, milliseconds since the epoch.
    pub at_ms: u64,
    /// The principal that issued the command (`None` with authentication off, and for the
    /// engine's own expiry sweep).
    pub by: Option<PrincipalName>,
    pub fact: Fact,
}

impl Event {
    /// The key and fingerprint of the request this event records, as its principal sent it
    /// (`None` for the expiry sweep's).
    pub fn key(&self) -> Option<(IdempotencyKey, Fingerprint)> {
        let (key, fingerprint) = self.fact.key()?;
        Some((key, fingerprint.sent_by(self.by.as_ref())))
    }
}

/// A request about a hold that already exists, as recorded when it found the hold lapsed or
/// ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldRequest {
    Commit(Commit),
    Release(Release),
    Extend(Extend),
    /// The engine's own expiry sweep.
    Expire(Expire),
}

impl HoldRequest {
    pub fn reservation_id(&self) -> &ReservationId {
        match self {
            HoldRequest::Commit(c) => &c.reservation_id,
            HoldRequest::Release(c) => &c.reservation_id,
            HoldRequest::Extend(c) => &c.reservation_id,
            HoldRequest::Expire(c) => &c.reservation_id,
        }
    }

    fn into_command(self) -> Command {
        match self {
            HoldRequest::Commit(c) => Command::Commit(c),
            HoldRequest::Release(c) => Command::Release(c),
            HoldRequest::Extend(c) => Command::Extend(c),
            HoldRequest::Expire(c) => Command::Expire(c),
        }
    }

    /// The request's idempotency key and fingerprint (`None` for the expiry sweep's).
    pub fn key(&self) -> Option<(IdempotencyKey, Fingerprint)> {
        match self {
            HoldRequest::Commit(c) => Some(keyed(c)),
            HoldRequest::Release(c) => Some(keyed(c)),
            HoldRequest::Extend(c) => Some(keyed(c)),
            HoldRequest::Expire(_) => None,
        }
    }
}

/// What an event records. Variants are append-only in meaning: the encoding pins each one
/// (see `log::encoding`), so a new fact is a new variant at the end and a new format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    /// A reserve was granted: every line is held until `expires_at_ms`.
    HoldPlaced {
        reserve: Reserve,
        expires_at_ms: u64,
    },
    /// A reserve found at least one line short; nothing was held.
    ReserveRefused {
        reserve: Reserve,
        short: Vec<ShortLine>,
    },
    /// A hold was committed: per hold line (in the hold's order, with its position named) the
    /// units taken off `on_hand`; the rest was released. The positions are named so that the
    /// log alone says what each commit took, without the hold (change feeds, reconciliation).
    HoldCommitted { commit: Commit, lines: Vec<Line> },
    /// A hold was released: its units are available again.
    HoldReleased(Release),
    /// A hold's expiry moved to `expires_at_ms`.
    HoldExtended { extend: Extend, expires_at_ms: u64 },
    /// A hold was found past its TTL by `request`, which ended it as expired.
    HoldExpired(HoldRequest),
    /// `request` found its hold already ended in `state`; nothing changed.
    HoldAlreadyEnded {
        request: HoldRequest,
        state: HoldState,
    },
    /// A point-of-sale sale took its lines off `on_hand`.
    SaleRecorded(RecordSale),
    /// A return came back: restocked lines onto `on_hand`, inspected ones into quarantine.
    ReturnRecorded(RecordReturn),
    /// Quarantined units of a return were restocked or scrapped.
    ReturnDisposed(Dispose),
    /// `on_hand` was adjusted by a signed delta.
    StockAdjusted(Adjust),
    /// A position's safety stock was set.
    SafetyStockSet(SetSafetyStock),
    /// An ERP snapshot's count of a position differed from the engine's at the snapshot's
    /// time (`drift = erp_on_hand - engine_on_hand_at`), or a drift was held there from an
    /// earlier snapshot. The drift was applied to `on_hand`, or (`held`) held for review; a
    /// drift held at the position before is `superseded` (its review is moot: this count is
    /// newer).
    PositionReconciled {
        reconcile: Reconcile,
        engine_on_hand_at: i64,
        drift: i64,
        held: bool,
        superseded: Option<SnapshotId>,
        /// Events after the snapshot's time that moved this position's on_hand (the log's
        /// and the tap's), for the report.
        events_since: u32,
    },
    /// A drift held for review was applied to `on_hand` or dismissed.
    DriftResolved {
        resolve: ResolveDrift,
        /// The time of the snapshot that found it.
        as_of_ms: u64,
        drift: i64,
    },
    /// A point-of-sale sale took its lines off `on_hand` like any other, but its `store_seq`
    /// jumped more than the engine's bound (`LedgerConfig::store_seq_jump_max`, as it was
    /// when decided) beyond `newest_seq`, its store's newest number then: the number is kept
    /// out of the store's sequence as an anomaly until acknowledged (see `crate::stores`).
    /// The decision is in the fact, so replay under any bound rebuilds the same sequence.
    SaleRecordedOutOfSequence { sale: RecordSale, newest_seq: u64 },
    /// An operator acknowledged the anomaly of the sale `acknowledge` names, whose number was
    /// `store_seq`: accepted into the sequence (`gaps_abandoned` missing numbers below it
    /// given up on) or dismissed.
    StoreAnomalyAcknowledged {
        acknowledge: AcknowledgeStoreAnomaly,
        store_seq: u64,
        gaps_abandoned: u64,
    },
}

/// One change a fact makes to a position's `on_hand`, with the time it happened: what the
/// ERP would have seen by then. A sale happened when the till says, but never after the engine
/// recorded it (a store clock ahead of the engine's cannot date a sale in the future); a
/// correction from a snapshot happened at the snapshot's time; everything else when the
/// engine decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnHandEffect<'a> {
    pub sku: &'a Sku,
    pub location: &'a Location,
    pub delta: i64,
    pub event_time_ms: u64,
}

fn keyed<K: KeyedCommand>(command: &K) -> (IdempotencyKey, Fingerprint) {
    (command.idempotency_key(), command.fingerprint())
}

impl Fact {
    /// The fact recording `outcome` for `command`. `Err` gives both back when the outcome does
    /// not belong to the command, which is an engine bug.
    pub fn decided(command: Command, outcome: Outcome) -> Result<Fact, Box<(Command, Outcome)>> {
        use Outcome as O;
        Ok(match (command, outcome) {
            (Command::Reserve(reserve), O::Granted { expires_at_ms }) => Fact::HoldPlaced {
                reserve,
                expires_at_ms,
            },
            (Command::Reserve(reserve), O::Insufficient { short }) => {
                Fact::ReserveRefused { reserve, short }
            }
            (Command::Commit(commit), O::Committed { committed }) => {
                // Outside the ledger the hold's positions are not known: only a commit that
                // lists its lines in the hold's order can be rebuilt here (tests and tools).
                let Some(lines) = commit.lines.clone().filter(|l| l.len() == committed.len())
                else {
                    return Err(Box::new((
                        Command::Commit(commit),
                        O::Committed { committed },
                    )));
                };
                let lines = lines
                    .into_iter()
                    .zip(committed)
                    .map(|(line, qty)| Line { qty, ..line })
                    .collect();
                Fact::HoldCommitted { commit, lines }
            }
            (Command::Release(release), O::Released) => Fact::HoldReleased(release),
            (Command::Extend(extend), O::Extended { expires_at_ms }) => Fact::HoldExtended {
                extend,
                expires_at_ms,
            },
            (Command::Commit(c), O::Expired) => Fact::HoldExpired(HoldRequest::Commit(c)),
            (Command::Release(c), O::Expired) => Fact::HoldExpired(HoldRequest::Release(c)),
            (Command::Extend(c), O::Expired) => Fact::HoldExpired(HoldRequest::Extend(c)),
            (Command::Expire(c), O::Expired) => Fact::HoldExpired(HoldRequest::Expire(c)),
            (Command::Commit(c), O::HoldAlreadyEnded(state)) => Fact::HoldAlreadyEnded {
                request: HoldRequest::Commit(c),
                state,
            },
            (Command::Release(c), O::HoldAlreadyEnded(state)) => Fact::HoldAlreadyEnded {
                request: HoldRequest::Release(c),
                state,
            },
            (Command::Extend(c), O::HoldAlreadyEnded(state)) => Fact::HoldAlreadyEnded {
                request: HoldRequest::Extend(c),
                state,
            },
            (Command::RecordSale(c), O::Recorded) => Fact::SaleRecorded(c),
            (Command::RecordReturn(c), O::Recorded) => Fact::ReturnRecorded(c),
            (Command::Dispose(c), O::Recorded) => Fact::ReturnDisposed(c),
            (Command::Adjust(c), O::Recorded) => Fact::StockAdjusted(c),
            (Command::SetSafetyStock(c), O::Recorded) => Fact::SafetyStockSet(c),
            (
                Command::AcknowledgeStoreAnomaly(acknowledge),
                O::StoreAnomalyAcknowledged {
                    store_seq,
                    accepted,
                    gaps_abandoned,
                },
            ) if accepted == (acknowledge.action == AnomalyAction::Accept) => {
                Fact::StoreAnomalyAcknowledged {
                    acknowledge,
                    store_seq,
                    gaps_abandoned,
                }
            }
            // Reconciliations are decided by the ledger only: what they supersede, and the
            // snapshot time a resolution applies at, are the ledger's state. So is a sale out
            // of sequence: a `Recorded` sale is one in sequence here.
            (command, outcome) => return Err(Box::new((command, outcome))),
        })
    }

    /// The answer a client got (and a retry gets) for this fact.
    pub fn outcome(&self) -> Outcome {
        match self {
            Fact::HoldPlaced { expires_at_ms, .. } => Outcome::Granted {
                expires_at_ms: *expires_at_ms,
            },
            Fact::ReserveRefused { short, .. } => Outcome::Insufficient {
                short: short.clone(),
            },
            Fact::HoldCommitted { lines, .. } => Outcome::Committed {
                committed: lines.iter().map(|l| l.qty).collect(),
            },
            Fact::HoldReleased(_) => Outcome::Released,
            Fact::HoldExtended { expires_at_ms, .. } => Outcome::Extended {
                expires_at_ms: *expires_at_ms,
            },
            Fact::HoldExpired(_) => Outcome::Expired,
            Fact::HoldAlreadyEnded { state, .. } => Outcome::HoldAlreadyEnded(*state),
            Fact::SaleRecorded(_)
            | Fact::ReturnRecorded(_)
            | Fact::ReturnDisposed(_)
            | Fact::StockAdjusted(_)
            | Fact::SafetyStockSet(_)
            | Fact::SaleRecordedOutOfSequence { .. } => Outcome::Recorded,
            Fact::PositionReconciled {
                engine_on_hand_at,
                drift,
                held,
                events_since,
                ..
            } => Outcome::Reconciled {
                engine_on_hand_at: *engine_on_hand_at,
                drift: *drift,
                held: *held,
                events_since: *events_since,
            },
            Fact::DriftResolved { resolve, drift, .. } => Outcome::DriftResolved {
                drift: *drift,
                applied: resolve.action == DriftAction::Apply,
            },
            Fact::StoreAnomalyAcknowledged {
                acknowledge,
                store_seq,
                gaps_abandoned,
            } => Outcome::StoreAnomalyAcknowledged {
                store_seq: *store_seq,
                accepted: acknowledge.action == AnomalyAction::Accept,
                gaps_abandoned: *gaps_abandoned,
            },
        }
    }

    /// Every change this fact makes to a position's `on_hand` (see [`OnHandEffect`]). Holds
    /// placed, released or expired change `reserved`, not `on_hand`; quarantined units are
    /// not on hand until restocked.
    pub fn on_hand_effects(&self, at_ms: u64) -> SmallVec<[OnHandEffect<'_>; 2]> {
        let effect = |sku, location, delta, event_time_ms| OnHandEffect {
            sku,
            location,
            delta,
            event_time_ms,
        };
        let mut effects = SmallVec::new();
        match self {
            Fact::HoldCommitted { lines, .. } => effects.extend(
                lines
                    .iter()
                    .filter(|l| l.qty > 0)
                    .map(|l| effect(&l.sku, &l.location, -(l.qty as i64), at_ms)),
            ),
            Fact::SaleRecorded(sale) | Fact::SaleRecordedOutOfSequence { sale, .. } => {
                let when = sale.occurred_at_ms.min(at_ms);
                effects.extend(
                    sale.lines
                        .iter()
                        .map(|l| effect(&l.sku, &l.location, -(l.qty as i64), when)),
                );
            }
            Fact::ReturnRecorded(ret) => effects.extend(
                ret.lines
                    .iter()
                    .filter(|l| l.disposition == ReturnDisposition::Restock)
                    .map(|l| effect(&l.sku, &l.location, l.qty as i64, at_ms)),
            ),
            Fact::ReturnDisposed(d) if d.action == DispositionAction::Restock => {
                effects.push(effect(&d.sku, &d.location, d.qty as i64, at_ms));
            }
            Fact::StockAdjusted(a) => effects.push(effect(&a.sku, &a.location, a.delta, at_ms)),
            Fact::PositionReconciled {
                reconcile: r,
                drift,
                held: false,
                ..
            } if *drift != 0 => effects.push(effect(&r.sku, &r.location, *drift, r.as_of_ms)),
            Fact::DriftResolved {
                resolve: r,
                as_of_ms,
                drift,
            } if r.action == DriftAction::Apply && *drift != 0 => {
                effects.push(effect(&r.sku, &r.location, *drift, *as_of_ms));
            }
            _ => {}
        }
        effects
    }

    /// The idempotency key and fingerprint of the request behind this fact (`None` for the
    /// engine's own expiry sweep), without copying the request.
    pub fn key(&self) -> Option<(IdempotencyKey, Fingerprint)> {
        match self {
            Fact::HoldPlaced { reserve, .. } | Fact::ReserveRefused { reserve, .. } => {
                Some(keyed(reserve))
            }
            Fact::HoldCommitted { commit, .. } => Some(keyed(commit)),
            Fact::HoldReleased(release) => Some(keyed(release)),
            Fact::HoldExtended { extend, .. } => Some(keyed(extend)),
            Fact::HoldExpired(request) | Fact::HoldAlreadyEnded { request, .. } => request.key(),
            Fact::SaleRecorded(c) => Some(keyed(c)),
            Fact::ReturnRecorded(c) => Some(keyed(c)),
            Fact::ReturnDisposed(c) => Some(keyed(c)),
            Fact::StockAdjusted(c) => Some(keyed(c)),
            Fact::SafetyStockSet(c) => Some(keyed(c)),
            Fact::PositionReconciled { reconcile, .. } => Some(keyed(reconcile)),
            Fact::DriftResolved { resolve, .. } => Some(keyed(resolve)),
            Fact::SaleRecordedOutOfSequence { sale, .. } => Some(keyed(sale)),
            Fact::StoreAnomalyAcknowledged { acknowledge, .. } => Some(keyed(acknowledge)),
        }
    }

    /// The reservation a hold fact is about.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Fact::HoldPlaced { reserve, .. } | Fact::ReserveRefused { reserve, .. } => {
                Some(&reserve.reservation_id)
            }
            Fact::HoldCommitted { commit, .. } => Some(&commit.reservation_id),
            Fact::HoldReleased(release) => Some(&release.reservation_id),
            Fact::HoldExtended { extend, .. } => Some(&extend.reservation_id),
            Fact::HoldExpired(request) | Fact::HoldAlreadyEnded { request, .. } => {
                Some(request.reservation_id())
            }
            _ => None,
        }
    }

    /// The fact's name as the log and the event listing show it.
    pub fn name(&self) -> &'static str {
        match self {
            Fact::HoldPlaced { .. } => "HoldPlaced",
            Fact::ReserveRefused { .. } => "ReserveRefused",
            Fact::HoldCommitted { .. } => "HoldCommitted",
            Fact::HoldReleased(_) => "HoldReleased",
            Fact::HoldExtended { .. } => "HoldExtended",
            Fact::HoldExpired(_) => "HoldExpired",
            Fact::HoldAlreadyEnded { .. } => "HoldAlreadyEnded",
            Fact::SaleRecorded(_) => "SaleRecorded",
            Fact::ReturnRecorded(_) => "ReturnRecorded",
            Fact::ReturnDisposed(_) => "ReturnDisposed",
            Fact::StockAdjusted(_) => "StockAdjusted",
            Fact::SafetyStockSet(_) => "SafetyStockSet",
            Fact::PositionReconciled { .. } => "PositionReconciled",
            Fact::DriftResolved { .. } => "DriftResolved",
            Fact::SaleRecordedOutOfSequence { .. } => "SaleRecordedOutOfSequence",
            Fact::StoreAnomalyAcknowledged { .. } => "StoreAnomalyAcknowledged",
        }
    }

    /// The request and outcome this fact records (a copy; for tests and tools, not the hot
    /// path).
    pub fn to_decision(&self) -> (Command, Outcome) {
        let command = match self.clone() {
            Fact::HoldPlaced { reserve, .. } | Fact::ReserveRefused { reserve, .. } => {
                Command::Reserve(reserve)
            }
            Fact::HoldCommitted { commit, .. } => Command::Commit(commit),
            Fact::HoldReleased(release) => Command::Release(release),
            Fact::HoldExtended { extend, .. } => Command::Extend(extend),
            Fact::HoldExpired(request) | Fact::HoldAlreadyEnded { request, .. } => {
                request.into_command()
            }
            Fact::SaleRecorded(c) => Command::RecordSale(c),
            Fact::ReturnRecorded(c) => Command::RecordReturn(c),
            Fact::ReturnDisposed(c) => Command::Dispose(c),
            Fact::StockAdjusted(c) => Command::Adjust(c),
            Fact::SafetyStockSet(c) => Command::SetSafetyStock(c),
            Fact::PositionReconciled { reconcile, .. } => Command::Reconcile(reconcile),
            Fact::DriftResolved { resolve, .. } => Command::ResolveDrift(resolve),
            Fact::SaleRecordedOutOfSequence { sale, .. } => Command::RecordSale(sale),
            Fact::StoreAnomalyAcknowledged { acknowledge, .. } => {
                Command::AcknowledgeStoreAnomaly(acknowledge)
            }
        };
        (command, self.outcome())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::types::*;

    /// Every fact gives back the request and outcome it was decided from, so replay rebuilds
    /// exactly the idempotency record the live decision made.
    #[test]
    fn a_fact_gives_back_its_decision() {
        let reserve = Reserve {
            reservation_id: ReservationId::from("r"),
            channel: Channel::from("web"),
            lines: vec![Line::new("s", "l", 1)],
            ttl_ms: 60_000,
        };
        let commit = Commit {
            reservation_id: ReservationId::from("r"),
            lines: Some(vec![Line::new("s", "l", 1)]),
        };
        let cases = [
            (
                Command::Reserve(reserve.clone()),
                Outcome::Granted { expires_at_ms: 9 },
            ),
            (
                Command::Reserve(reserve),
                Outcome::Insufficient { short: Vec::new() },
            ),
            (
                Command::Commit(commit.clone()),
                Outcome::Committed { committed: vec![1] },
            ),
            (Command::Commit(commit.clone()), Outcome::Expired),
            (
                Command::Commit(commit),
                Outcome::HoldAlreadyEnded(HoldState::Released),
            ),
            (
                Command::Expire(Expire {
                    reservation_id: ReservationId::from("r"),
                }),
                Outcome::Expired,
            ),
            (
                Command::AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly {
                    store_id: StoreId::from("s"),
                    txn_id: TxnId::from("t"),
                    action: AnomalyAction::Accept,
                }),
                Outcome::StoreAnomalyAcknowledged {
                    store_seq: 9,
                    accepted: true,
                    gaps_abandoned: 4,
                },
            ),
        ];
        for (command, outcome) in cases {
            let fact = Fact::decided(command.clone(), outcome.clone()).expect("belongs");
            assert_eq!(fact.to_decision(), (command.clone(), outcome));
            let key = command.idempotency_key().zip(command.fingerprint());
            assert_eq!(fact.key(), key);
        }
    }

    #[test]
    fn an_outcome_that_does_not_belong_to_its_command_is_refused() {
        let release = Command::Release(Release {
            reservation_id: ReservationId::from("r"),
        });
        assert!(Fact::decided(release, Outcome::Recorded).is_err());
        // A dismissal cannot be recorded as accepted.
        let dismiss = Command::AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly {
            store_id: StoreId::from("s"),
            txn_id: TxnId::from("t"),
            action: AnomalyAction::Dismiss,
        });
        let accepted = Outcome::StoreAnomalyAcknowledged {
            store_seq: 9,
            accepted: true,
            gaps_abandoned: 0,
        };
        assert!(Fact::decided(dismiss, accepted).is_err());
    }
}
