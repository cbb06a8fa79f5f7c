//! The harness: one ledger, one model, one clock; `submit` checks each receipt or refusal against
//! the model. Also `mutate`, which changes one non-key field of a command.

mod checks;
mod reconcile;
mod step;

use crate::keys::model_key;
use crate::model::{Expected, Model, Refused, refused_of};
use crate::steps::{LOCS, SKUS, T0, line};
use inv_engine::reconcile::MemSnapshotStore;
use inv_engine::{
    AnomalyAction, Availability, Channel, Command, Decision, DispositionAction, DriftAction,
    Engine, Fact, Ledger, LedgerConfig, Line, Location, Lsn, ManualClock, MemLog, Outcome, Reserve,
    ReturnDisposition, ReturnId, Sku, SubmitError,
};
use proptest::test_runner::TestCaseError;
use std::collections::BTreeMap;
use std::sync::Arc;

// ------------------------------------------------------------------------------------------
// The harness: one ledger, one model, one clock

pub(crate) struct Harness {
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
    pub(crate) stats: Stats,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) granted: usize,
    pub(crate) insufficient: usize,
    pub(crate) reconciled: usize,
    pub(crate) drifts_applied: usize,
    pub(crate) drifts_held: usize,
    pub(crate) drifts_resolved: usize,
    pub(crate) duplicates: usize,
    pub(crate) conflicts: usize,
    pub(crate) expired: usize,
    /// Sales whose number jumped beyond `SEQ_JUMP_MAX`, and verdicts on them.
    pub(crate) seq_anomalies: usize,
    pub(crate) anomalies_accepted: usize,
    pub(crate) anomalies_dismissed: usize,
}

macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($arg)+)));
        }
    };
}
pub(crate) use check;

impl Harness {
    pub(crate) fn new(config: LedgerConfig) -> Self {
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
    pub(crate) fn submit(
        &mut self,
        command: Command,
    ) -> Result<Result<Decision, SubmitError>, TestCaseError> {
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
