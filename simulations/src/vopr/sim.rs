//! The executor and invariant checker: runs a list of [`Op`]s against the real engine on one
//! thread, beside the reference model, and checks every invariant after every op.
//!
//! # Durability as the client sees it
//! A request is decided with `Engine::submit_queued`, so the simulator, not the engine,
//! decides when its event becomes durable. A recorded answer (a new event, or a retry's
//! original one) reaches the client only once its LSN is durable: at once for an ordinary
//! write (the simulator syncs the log), later for a slow one (the client waits in
//! `in_flight` until some later sync, and may time out and retry meanwhile), never if a crash
//! comes first. A refusal changes nothing and is answered at once. Every answer delivered is
//! remembered in `acked` until the next crash, which must not lose any of them.
//!
//! # Invariants (the names a failure reports)
//! - `no_oversell`: a reserve was granted where the model says some line was short.
//! - `idempotency`: a retry did not get the original answer (or a changed payload under a
//!   used key was not refused with the field that differs).
//! - `model_agreement`: any other answer that differs from the model's prediction.
//! - `log_agreement`: the event logged is not the fact the model derives from the request
//!   and the outcome, at the time the engine must have decided it.
//! - `conservation`: on_hand, reserved, safety stock or quarantined units of some position,
//!   the count of open holds, or the head LSN differ from the model's fold of the facts.
//! - `store_sequencing`: a store's contiguous sequence, gaps, counts or lag differ.
//! - `expiry`: the sweep expired other holds, or another number of them, than were due.
//! - `acked_durable`: after a crash an acknowledged event is missing or different.
//! - `replay_digest`: the live ledger's digest differs from a replay of its log (an
//!   incremental replay every few steps, a fresh one from LSN 1 after every restart and at
//!   the end), or recovery from checkpoint plus tail differs from that fresh replay.
//! - `holds`: a hold's view (lines, state, times) differs from the model's, after a restart
//!   and at the end.
//! - `reconciliation`: a snapshot push, a run's start, a logged correction, a run's report or
//!   the snapshot store's record differs from what the model and the simulator's account of
//!   the store predict (a dry run that changed anything, a correction not equal to the
//!   model's verdict at the moment it was decided, on_hand after a correction not equal to
//!   the ERP's count plus the net changes after `as_of`, report counts off).
//! - `held_drifts`: the drifts held for review differ from the model's.
//! - `engine_invariants`: `Engine::check_invariants` failed.
//! - `recovery`, `submit_error`, `engine_panic`: the engine refused to recover, returned an
//!   infrastructure error on a healthy log, or panicked.

mod erp;

use super::log::SimLog;
use super::model::{Expected, Model, Refused, refused_of};
use super::workload::{Op, T0_MS};
use inv_engine::archive::{KeyArchive, MemArchive};
use inv_engine::reconcile::MemSnapshotStore;
use inv_engine::{
    Clock, Command, DiscardLog, Engine, Event, EventLog, Fact, HoldState, Ledger, LedgerConfig,
    Lsn, ManualClock, MemoryPolicy, Outcome,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the op after (or during) which it was found.
    pub step: usize,
    pub invariant: &'static str,
    pub detail: String,
}

/// What a run that held every invariant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub steps: usize,
    /// Events in the log at the end (its head LSN).
    pub events: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// `Ledger::digest` of the final state.
    pub digest: u64,
    /// Answers the clients got, by kind (outcome, "duplicate", or the refusal): shows which
    /// paths a seed reached.
    pub answers: BTreeMap<&'static str, u64>,
    /// Answers delivered after their event was durable.
    pub acked: u64,
    /// Events appended but lost to crashes and failed syncs (never acknowledged).
    pub lost: u64,
    /// Entries in the key archive at the end: how much of the run's state had left memory.
    pub archived: u64,
}

impl Summary {
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

type Check = Result<(), (&'static str, String)>;

fn fail<T>(
    invariant: &'static str,
    detail: impl Into<String>,
) -> Result<T, (&'static str, String)> {
    Err((invariant, detail.into()))
}

/// A recorded answer waiting for its event to become durable.
struct Waiting {
    lsn: Lsn,
}

struct Sim {
    config: LedgerConfig,
    log: Arc<SimLog>,
    clock: Arc<ManualClock>,
    /// Shared with a reconciliation run in progress, which borrows it (see `erp.rs`).
    engine: Arc<Engine>,
    model: Model,
    /// The ERP's snapshots: durable state, like `snapshots.redb` beside the log, so a crash
    /// keeps it whole (a push or a status change is durable when its call returns).
    store: Arc<MemSnapshotStore>,
    /// The key archive: durable state too, like `keys.redb` (a `put` is durable when it
    /// returns). Records and ended holds move there [`KEY_MEMORY_MS`] after their last
    /// decision, at checkpoints, so crashes land between evictions, fault-ins and checkpoints.
    archive: Arc<MemArchive>,
    /// What the store must hold, by snapshot id (see `erp.rs`).
    book: BTreeMap<String, erp::Booked>,
    /// A second ledger fed every event as it is appended: its digest must track the live one.
    shadow: Ledger,
    in_flight: Vec<Waiting>,
    /// Events whose answers reached a client since the last crash.
    acked: Vec<Arc<Event>>,
    faults: BTreeMap<&'static str, u64>,
    answers: BTreeMap<&'static str, u64>,
    acked_total: u64,
    lost_total: u64,
    /// Compare the shadow's digest with the live one every this many steps.
    digest_every: usize,
}

/// How long records stay in memory before a checkpoint may archive them: short against the
/// workload's clock steps (0-3 s, jumps of minutes), so most keys are archived at some point.
const KEY_MEMORY_MS: u64 = 5_000;

/// The engine over the simulated log and the key archive, as a restart builds it.
fn recover(
    config: LedgerConfig,
    log: &Arc<SimLog>,
    clock: &Arc<ManualClock>,
    archive: &Arc<MemArchive>,
) -> Result<Engine, (&'static str, String)> {
    Engine::recover_with(
        config,
        Arc::clone(log) as Arc<dyn EventLog>,
        Arc::clone(clock) as Arc<dyn Clock>,
        Some(Arc::clone(archive) as Arc<dyn KeyArchive>),
        MemoryPolicy {
            key_memory_ms: KEY_MEMORY_MS,
            ..MemoryPolicy::default()
        },
    )
    .or_else(|e| fail("recovery", e.to_string()))
}

fn fresh_ledger(config: LedgerConfig) -> Ledger {
    Ledger::new(config, Arc::new(DiscardLog::default()))
}

impl Sim {
    fn new(shards: usize, digest_every: usize) -> Result<Sim, (&'static str, String)> {
        let config = LedgerConfig {
            shards,
            ..LedgerConfig::default()
        };
        let log = Arc::new(SimLog::new());
        let clock = Arc::new(ManualClock::new(T0_MS));
        let archive = Arc::new(MemArchive::new());
        let engine = recover(config, &log, &clock, &archive)?;
        Ok(Sim {
            config,
            log,
            clock,
            engine: Arc::new(engine),
            model: Model::new(config.key_retention_ms, config.store_seq_jump_max),
            store: Arc::new(MemSnapshotStore::new()),
            archive,
            book: BTreeMap::new(),
            shadow: fresh_ledger(config),
            in_flight: Vec::new(),
            acked: Vec::new(),
            faults: BTreeMap::new(),
            answers: BTreeMap::new(),
            acked_total: 0,
            lost_total: 0,
            digest_every: digest_every.max(1),
        })
    }

    fn step(&mut self, index: usize, op: &Op) -> Check {
        if let Some(fault) = op.fault() {
            *self.faults.entry(fault).or_default() += 1;
        }
        match op {
            Op::Submit { command, slow, .. } => self.submit(command, *slow)?,
            Op::Sync => {
                // A failure here was armed by `FailNextSync`; the restart below follows it.
                let _ = self.log.sync();
            }
            Op::Advance { ms } => self.clock.advance_ms(*ms),
            Op::ClockJump { ms } => {
                let now = self.clock.now_ms();
                self.clock.set_ms(now.saturating_add_signed(*ms).max(T0_MS));
            }
            Op::ExpireDue { batch } => self.expire_due(*batch as usize)?,
            Op::Checkpoint => {
                // Fails only if a sync failure was armed; the restart below follows it.
                let _ = self.engine.checkpoint();
            }
            Op::Crash => self.restart()?,
            Op::FailNextSync => self.log.fail_next_sync(),
            Op::PushSnapshot(plan) => self.push_snapshot(plan)?,
            Op::Repush { id, change } => self.repush(id, *change)?,
            // A run's ops are taken by `execute` while it runs; with none running (it never
            // started, or a crash ended it) they do nothing.
            Op::ReconcileStart { .. } | Op::ReconcileStep { .. } | Op::ReconcileFinish => {}
        }
        self.settle(index)
    }

    /// After every op: answers the clients whose events became durable, restarts a failed
    /// engine, and checks every invariant.
    fn settle(&mut self, index: usize) -> Check {
        self.deliver_durable();
        if self.engine.failure().is_some() || self.log.is_dead() {
            // Fail-stop: the supervisor restarts the process, which recovers from the log.
            self.restart()?;
        }
        self.check(index)
    }

    /// The time the engine decides a request at: its clock, but never before an earlier
    /// decision (the ledger's time floor).
    fn decision_time(&self) -> u64 {
        self.clock.now_ms().max(self.model.floor_ms)
    }

    fn submit(&mut self, command: &Command, slow: bool) -> Check {
        let now_ms = self.decision_time();
        let expected = self.model.predict(command, now_ms);
        let decision = match self.engine.submit_queued(command.clone()) {
            Ok(decision) => decision,
            Err(error) => return fail("submit_error", format!("{command:?}: {error}")),
        };
        // Every write raises the floor, refusals and retries included.
        self.model.floor_ms = now_ms;
        let got = match &decision {
            Ok(receipt) if receipt.duplicate => Expected::Duplicate {
                lsn: receipt.lsn.0,
                outcome: receipt.outcome.clone(),
            },
            Ok(receipt) => Expected::Event(receipt.outcome.clone()),
            Err(refusal) => Expected::Refused(refused_of(refusal)),
        };
        if got != expected {
            let invariant = match (&expected, &got) {
                (
                    Expected::Event(Outcome::Insufficient { .. }),
                    Expected::Event(Outcome::Granted { .. }),
                ) => "no_oversell",
                (Expected::Duplicate { .. }, _) | (_, Expected::Duplicate { .. }) => "idempotency",
                (Expected::Refused(r), _) if format!("{r:?}").starts_with("KeyConflict") => {
                    "idempotency"
                }
                _ => "model_agreement",
            };
            return fail(
                invariant,
                format!("{command:?}\n  at {now_ms}: expected {expected:?}\n  got {got:?}"),
            );
        }
        *self.answers.entry(answer_kind(&got)).or_default() += 1;
        let Ok(receipt) = decision else {
            return Ok(());
        };
        if receipt.duplicate {
            self.model.note_duplicate(command);
        } else {
            let fact = self.model.fact(command, &receipt.outcome);
            self.accept_event(receipt.lsn, now_ms, fact)?;
        }
        if receipt.lsn <= self.log.durable_lsn() {
            self.ack(receipt.lsn)?;
        } else if slow {
            self.in_flight.push(Waiting { lsn: receipt.lsn });
        } else if self.log.sync().is_ok() {
            self.ack(receipt.lsn)?;
        }
        // A failed sync: the client got an error, not an answer; the restart follows.
        Ok(())
    }

    /// Checks the event the engine logged at `lsn` against the fact the model derives, then
    /// folds it into the model and the shadow ledger.
    fn accept_event(&mut self, lsn: Lsn, at_ms: u64, fact: Result<Fact, String>) -> Check {
        if lsn.0 != self.model.next_lsn {
            return fail(
                "conservation",
                format!("event at lsn {lsn}, model expects {}", self.model.next_lsn),
            );
        }
        let fact = fact.or_else(|e| fail("model_agreement", e))?;
        // The simulated clients issue commands with authentication off.
        let expected = Event {
            lsn,
            at_ms,
            by: None,
            fact,
        };
        let Some(logged) = self.log.event(lsn) else {
            return fail("log_agreement", format!("no event at lsn {lsn}"));
        };
        if *logged != expected {
            return fail(
                "log_agreement",
                format!("logged {logged:?}\n  expected {expected:?}"),
            );
        }
        self.model
            .apply(&expected.fact, at_ms)
            .or_else(|e| fail("model_agreement", e))?;
        self.shadow
            .replay(&logged)
            .or_else(|e| fail("replay_digest", format!("shadow replay: {e}")))
    }

    fn ack(&mut self, lsn: Lsn) -> Check {
        match self.log.event(lsn) {
            Some(event) => {
                self.acked.push(event);
                self.acked_total += 1;
                Ok(())
            }
            None => fail(
                "acked_durable",
                format!("acknowledging lsn {lsn}, not in the log"),
            ),
        }
    }

    /// Answers the waiting clients whose events became durable.
    fn deliver_durable(&mut self) {
        let durable = self.log.durable_lsn();
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.in_flight.drain(..).partition(|w| w.lsn <= durable);
        self.in_flight = waiting;
        for w in ready {
            if let Some(event) = self.log.event(w.lsn) {
                self.acked.push(event);
                self.acked_total += 1;
            }
        }
    }

    fn expire_due(&mut self, batch: usize) -> Check {
        let now_raw = self.clock.now_ms();
        let due = self.model.lapsed_open_holds(now_raw);
        let at_ms = self.decision_time();
        let head = self.engine.head_lsn();
        let expired = match self.engine.ledger().expire_due(now_raw, batch) {
            Ok(n) => n,
            Err(error) => return fail("submit_error", format!("expire_due: {error}")),
        };
        if expired != due.min(batch) {
            return fail(
                "expiry",
                format!("expired {expired} holds; {due} were due, batch {batch}"),
            );
        }
        if due > 0 {
            self.model.floor_ms = at_ms;
        }
        for lsn in head.0 + 1..=self.engine.head_lsn().0 {
            let Some(event) = self.log.event(Lsn(lsn)) else {
                return fail("expiry", format!("no event at lsn {lsn}"));
            };
            let Fact::HoldExpired(request) = &event.fact else {
                return fail("expiry", format!("the sweep logged {event:?}"));
            };
            let command = Command::Expire(inv_engine::Expire {
                reservation_id: request.reservation_id().clone(),
            });
            let expected = self.model.predict(&command, at_ms);
            if expected != Expected::Event(Outcome::Expired) {
                return fail(
                    "expiry",
                    format!("{event:?}: the model expects {expected:?}"),
                );
            }
            self.accept_event(Lsn(lsn), at_ms, Ok(event.fact.clone()))?;
        }
        Ok(())
    }

    /// A crash and restart: the log loses what was not durable, waiting clients never get an
    /// answer, and the engine recovers from the checkpoint plus the durable log.
    fn restart(&mut self) -> Check {
        self.lost_total += self.log.crash() as u64;
        self.in_flight.clear();
        let durable = self.log.durable_lsn();
        for event in std::mem::take(&mut self.acked) {
            match self.log.event(event.lsn) {
                Some(kept) if kept == event => {}
                other => {
                    return fail(
                        "acked_durable",
                        format!("acknowledged {event:?}\n  after the crash {other:?}"),
                    );
                }
            }
        }
        self.engine = Arc::new(recover(self.config, &self.log, &self.clock, &self.archive)?);
        self.model = self
            .model
            .rebuild(durable.0)
            .or_else(|e| fail("model_agreement", e))?;
        self.fresh_replay()?;
        self.check_holds()
    }

    /// A fresh replay of the whole log from LSN 1 must give the live digest; it becomes the
    /// new shadow.
    fn fresh_replay(&mut self) -> Check {
        let replayed = fresh_ledger(self.config);
        replayed
            .replay_log(self.log.as_ref())
            .or_else(|e| fail("replay_digest", format!("fresh replay: {e}")))?;
        let (live, fresh) = (self.engine.digest(), replayed.digest());
        if live != fresh {
            return fail(
                "replay_digest",
                format!("live digest {live:#018x}, fresh replay {fresh:#018x}"),
            );
        }
        self.shadow = replayed;
        Ok(())
    }

    /// The checks after every op.
    fn check(&mut self, index: usize) -> Check {
        let head = self.engine.head_lsn().0;
        if head + 1 != self.model.next_lsn {
            return fail(
                "conservation",
                format!("head lsn {head}, model next lsn {}", self.model.next_lsn),
            );
        }
        let positions = self.engine.ledger().positions();
        if positions.len() != self.model.positions.len() {
            return fail(
                "conservation",
                format!(
                    "{} positions, the model has {}",
                    positions.len(),
                    self.model.positions.len()
                ),
            );
        }
        let reserved_by_position = self.model.reserved_by_position();
        for (p, view) in &positions {
            let Some(m) = self.model.positions.get(p) else {
                return fail(
                    "conservation",
                    format!("position {p:?} unknown to the model"),
                );
            };
            let reserved = reserved_by_position.get(p).copied().unwrap_or(0);
            let same = view.on_hand == m.on_hand
                && view.quarantined == m.quarantined
                && view.safety_stock == m.safety_stock
                && view.reserved == reserved;
            if !same {
                return fail(
                    "conservation",
                    format!("{p:?}: engine {view:?}, model {m:?} reserved {reserved}"),
                );
            }
        }
        let open = self.engine.holds_open();
        if open != self.model.open_holds() {
            return fail(
                "conservation",
                format!(
                    "{open} open holds, the model has {}",
                    self.model.open_holds()
                ),
            );
        }
        let stores = self.engine.store_statuses();
        let expected = self.model.store_statuses();
        if stores != expected {
            return fail(
                "store_sequencing",
                format!("engine {stores:?}\n  model {expected:?}"),
            );
        }
        self.check_held_drifts()?;
        self.engine
            .check_invariants()
            .or_else(|e| fail("engine_invariants", e))?;
        if (index + 1).is_multiple_of(self.digest_every) {
            let (live, shadow) = (self.engine.digest(), self.shadow.digest());
            if live != shadow {
                return fail(
                    "replay_digest",
                    format!("live digest {live:#018x}, replayed {shadow:#018x}"),
                );
            }
        }
        Ok(())
    }

    /// Every hold the model knows, as the engine shows it.
    fn check_holds(&self) -> Check {
        let now_ms = self.decision_time();
        for (id, hold) in &self.model.holds {
            let view = match self.engine.reservation(id) {
                Ok(view) => view,
                Err(e) => return Err(("reservation readable", format!("{id}: {e}"))),
            };
            let live = hold.state == HoldState::Open
                || hold
                    .ended_at_ms
                    .saturating_add(self.config.key_retention_ms)
                    > now_ms;
            let Some(view) = view else {
                if live {
                    return fail("holds", format!("hold {id} is missing"));
                }
                continue;
            };
            let state = if hold.state == HoldState::Open && now_ms >= hold.expires_at_ms {
                HoldState::Expired
            } else {
                hold.state
            };
            let lines: Vec<_> = view
                .lines
                .iter()
                .map(|l| ((l.sku.to_string(), l.location.to_string()), l.qty))
                .collect();
            let same = lines == hold.lines
                && view.channel == hold.channel
                && view.state == state
                && view.expires_at_ms == hold.expires_at_ms
                && view.placed_lsn.0 == hold.placed_lsn
                && view.placed_at_ms == hold.placed_at_ms
                && view.ended_at_ms == hold.ended_at_ms;
            if !same {
                return fail(
                    "holds",
                    format!("hold {id}: engine {view:?}, model {hold:?}"),
                );
            }
        }
        Ok(())
    }

    fn finish(mut self, steps: usize) -> Result<Summary, (&'static str, String)> {
        self.fresh_replay()?;
        self.check_holds()?;
        Ok(Summary {
            steps,
            events: self.engine.head_lsn().0,
            digest: self.engine.digest(),
            faults: self.faults,
            answers: self.answers,
            acked: self.acked_total,
            lost: self.lost_total,
            archived: self.archive.stats().entries,
        })
    }
}

fn answer_kind(answer: &Expected) -> &'static str {
    match answer {
        Expected::Duplicate { .. } => "duplicate",
        Expected::Event(outcome) => match outcome {
            Outcome::Granted { .. } => "granted",
            Outcome::Insufficient { .. } => "insufficient",
            Outcome::Committed { .. } => "committed",
            Outcome::Released => "released",
            Outcome::Extended { .. } => "extended",
            Outcome::Expired => "expired",
            Outcome::HoldAlreadyEnded(_) => "already_ended",
            Outcome::Recorded => "recorded",
            Outcome::DriftResolved { applied: true, .. } => "drift_applied_by_review",
            Outcome::DriftResolved { applied: false, .. } => "drift_dismissed",
            Outcome::StoreAnomalyAcknowledged { accepted: true, .. } => "store_anomaly_accepted",
            Outcome::StoreAnomalyAcknowledged {
                accepted: false, ..
            } => "store_anomaly_dismissed",
            _ => "other",
        },
        Expected::Refused(refused) => match refused {
            Refused::KeyConflict { .. } => "key_conflict",
            Refused::ReservationIdInUse { .. } => "id_in_use",
            Refused::ReservationNotFound(_) => "not_found",
            Refused::NotHeld(_) => "not_held",
            Refused::HoldNotLapsed(_) => "not_lapsed",
            Refused::ReturnIdInUse(_) => "return_id_in_use",
            Refused::ReturnNotFound(_) => "return_not_found",
            Refused::NotQuarantined { .. } => "not_quarantined",
            Refused::DriftNotHeld { .. } => "drift_not_held",
            Refused::StoreNotFound(_) => "store_not_found",
            Refused::StoreAnomalyNotFound { .. } => "store_anomaly_not_found",
            Refused::Other(_) => "other_refusal",
        },
    }
}

thread_local! {
    /// Where the last panic on this thread happened (see [`quiet_panics`]).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the process's panic hook with one that records where a panic happened instead
/// of printing it: the simulator reports an engine panic as a violation, and the shrinker
/// provokes many. For the `vopr` binary; tests keep the default hook.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(at));
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    match LAST_PANIC.with(|last| last.borrow_mut().take()) {
        Some(at) => format!("{message} (at {at})"),
        None => message,
    }
}

/// Runs `ops` on a fresh engine with `shards` lock shards, checking every invariant after
/// every op (the live-versus-replay digest every `digest_every` ops).
pub fn execute(ops: &[Op], shards: usize, digest_every: usize) -> Result<Summary, Violation> {
    let mut step = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(shards, digest_every)?;
        let mut i = 0;
        while i < ops.len() {
            step = i;
            i = match &ops[i] {
                // The run borrows the engine and the store while the ops of its window run.
                Op::ReconcileStart { .. } => sim.reconcile_window(ops, i, &mut step)?,
                op => {
                    sim.step(i, op)?;
                    i + 1
                }
            };
        }
        step = ops.len();
        sim.finish(ops.len())
    }));
    match result {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err((invariant, detail))) => Err(Violation {
            step,
            invariant,
            detail,
        }),
        Err(payload) => Err(Violation {
            step,
            invariant: "engine_panic",
            detail: panic_message(payload.as_ref()),
        }),
    }
}
