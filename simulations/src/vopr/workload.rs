//! The workload generator: from a seed, the whole run as a list of [`Op`]s, decided before
//! the run starts.
//!
//! The list is made up front, from the generator's own bookkeeping (ids it handed out, holds
//! it asked for), never from the engine's answers: the same seed then gives the same list on
//! every machine, and the shrinker can drop operations from it and replay the rest (a commit
//! whose reserve was dropped is still a valid request: it gets "reservation not found").
//!
//! Each seed also draws its own [`Swarm`]: the mix of operations and the fault rates, so that
//! one seed hammers crashes and slow writes while another runs long stretches of traffic
//! between them (TigerBeetle's swarm testing: a fault that is rare in every run finds fewer
//! bugs than one that is common in some).
//!
//! # What clients do
//! Marketplace holds (one to three lines, hot skus with little stock and cold skus with
//! more), full and partial commits, releases and extends; stores post POS sales in batches
//! with their own sequence numbers, some delivered twice, out of order, or held back and
//! sent later as a late batch (a gap, then its filling); now and then a store's number jumps
//! far beyond the engine's bound (a wild 2^64-1, or a till that renumbers and keeps selling
//! from there), and an operator accepts or dismisses those anomalies (sometimes one that is
//! not there); returns restock or go to
//! inspection and are disposed of later; the ERP adjusts stock and sets safety stock.
//! Clients time out and retry with the same key, sometimes with another payload (a client
//! bug the engine must refuse, naming the field).
//!
//! # ERP snapshots and reconciliation
//! Now and then the ERP pushes a snapshot ([`Op::PushSnapshot`]): FULL or DELTA, of every
//! location or some, counted as of a recent time (often a little in the past, so events after
//! it exist), with and without safety stock, sometimes first as a push that breaks off. Each
//! row's count is planned relative to the model's own count at that time ([`ErpCount`]: exact,
//! or a deliberate drift), because the generator never sees the engine; the simulator
//! resolves it when the push runs. Some snapshots are too old (refused naming the window) or
//! ahead of the clock; some are pushed again, as they were (the original answer) or changed
//! (a conflict naming the field). A pushed snapshot is then reconciled by a run in steps
//! ([`Op::ReconcileStart`], [`Op::ReconcileStep`]s, [`Op::ReconcileFinish`]) with ordinary
//! client traffic and faults between the steps, so the run's tap counts writes made while it
//! is in progress, and a crash may cut it short: the next reconciliation op resumes it.
//! Some runs are dry runs (kept free of traffic in between, so their report is predicted
//! exactly); a second start while one runs is refused. Clients resolve held drifts
//! (`ResolveDrift`, apply or dismiss, with retries) like any other request.

use super::rng::Rng;
use inv_engine::reconcile::TolerancePolicy;
use inv_engine::{
    AcknowledgeStoreAnomaly, Adjust, AdjustmentId, AnomalyAction, BeyondTolerance, Channel,
    Command, Commit, Dispose, DispositionAction, DispositionId, DriftAction, Extend, LedgerConfig,
    Line, Location, RecordReturn, RecordSale, Release, RequestId, ReservationId, Reserve,
    ResolveDrift, ReturnDisposition, ReturnId, ReturnLine, SetSafetyStock, Sku, SnapshotId,
    StoreId, Tolerance, TxnId,
};
use std::collections::VecDeque;
use std::fmt;

/// Engine time when every run starts (any fixed value works; this one is in 2023).
pub const T0_MS: u64 = 1_700_000_000_000;
/// Hot skus: little stock, most of the reserves.
pub const HOT_SKUS: usize = 2;
/// Cold skus: more stock, few reserves each.
pub const COLD_SKUS: usize = 16;
/// One warehouse and three stores; stores are also the POS stores that post sales.
pub const LOCATIONS: [&str; 4] = ["dc-1", "store-1", "store-2", "store-3"];
/// Holds the generator remembers as targets for commits, releases and extends.
const HOLDS_REMEMBERED_MAX: usize = 64;
/// Requests the generator remembers as candidates for a retry.
const RECENT_MAX: usize = 48;

pub fn sku_name(i: usize) -> String {
    if i < HOT_SKUS {
        format!("hot-{i}")
    } else {
        format!("cold-{:02}", i - HOT_SKUS)
    }
}

/// How a client request reaches the engine; a label for fault counts and reproductions (the
/// request itself says everything the engine sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// The first delivery, in order.
    Fresh,
    /// The same request delivered a second time (a network duplicate).
    Duplicate,
    /// Delivered after a request the client sent later.
    Reordered,
    /// A sale held back and delivered in a later batch (the gap it left closes).
    Late,
    /// Sent again after a timeout, same key and payload.
    Retry,
    /// Sent again after a timeout with the same key but another payload.
    RetryChanged,
}

/// A row's count, relative to the model's count of the position at the snapshot's time
/// (resolved by the simulator when the push runs; a count below 0 is sent as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErpCount {
    /// What the engine counted then: no drift.
    Exact,
    /// Off by this many units (shrinkage, a missed message, a miscount).
    Drift(i64),
}

/// A snapshot's time, relative to the clock when it is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// This many ms before now.
    Back(u64),
    /// Older than the history window: refused, naming the window.
    TooOld,
    /// Further ahead of the clock than the allowed skew: refused.
    Ahead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRow {
    pub sku: String,
    pub location: String,
    pub count: ErpCount,
    pub safety_stock: Option<u64>,
}

/// A snapshot the ERP pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSnapshot {
    pub id: String,
    pub as_of: AsOf,
    pub full: bool,
    /// `None`: every location.
    pub scope: Option<Vec<String>>,
    /// Distinct positions, each in scope.
    pub rows: Vec<PlannedRow>,
    /// A first push of it breaks off (its summary miscounts): it must stage nothing.
    pub broken_first: bool,
}

/// How a snapshot is pushed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repush {
    /// The same content: the original answer.
    Same,
    /// Another count in one row: refused, naming `rows`.
    OtherRows,
    /// Another time: refused, naming `header.as_of_ms`.
    OtherAsOf,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A client request. `slow`: the log's write of its event is slow, so the client gets no
    /// answer until a later sync makes it durable (or a crash loses it).
    Submit {
        command: Command,
        slow: bool,
        delivery: Delivery,
    },
    /// The log syncs: every appended event becomes durable, and waiting clients are answered.
    Sync,
    /// Simulated time passes.
    Advance { ms: u64 },
    /// The clock steps (NTP): forward past TTLs, or back a little.
    ClockJump { ms: i64 },
    /// The expiry sweep records up to `batch` lapsed holds.
    ExpireDue { batch: u32 },
    /// A checkpoint at this point (it syncs first, as `Engine::checkpoint` does).
    Checkpoint,
    /// Power cut and restart: recovery from the checkpoint plus the durable log.
    Crash,
    /// The next sync fails; the engine fail-stops and is restarted.
    FailNextSync,
    /// The ERP pushes a snapshot (header, chunks of rows, summary).
    PushSnapshot(PlannedSnapshot),
    /// The ERP pushes snapshot `id` again (a retry, or a client bug).
    Repush { id: String, change: Repush },
    /// A reconciliation of snapshot `id` starts (or resumes, after a crash cut one short).
    /// While one runs, the ops up to [`Op::ReconcileFinish`] interleave with its steps; a
    /// second start meanwhile is refused.
    ReconcileStart {
        id: String,
        dry_run: bool,
        policy: TolerancePolicy,
    },
    /// The running reconciliation does one step of at most `positions` positions.
    ReconcileStep { positions: u32 },
    /// The running reconciliation finishes (every step left) and stores its report.
    ReconcileFinish,
}

impl Op {
    /// Faults this op injects, by name (empty for plain traffic).
    pub fn fault(&self) -> Option<&'static str> {
        match self {
            Op::Submit {
                delivery, slow: s, ..
            } => match delivery {
                Delivery::Fresh if *s => Some("slow_write"),
                Delivery::Fresh => None,
                Delivery::Duplicate => Some("duplicate"),
                Delivery::Reordered => Some("reordered"),
                Delivery::Late => Some("late"),
                Delivery::Retry => Some("retry"),
                Delivery::RetryChanged => Some("retry_changed"),
            },
            Op::ClockJump { .. } => Some("clock_jump"),
            Op::Checkpoint => Some("checkpoint"),
            Op::Crash => Some("crash"),
            Op::FailNextSync => Some("sync_failure"),
            Op::Repush { .. } => Some("snapshot_repush"),
            Op::Sync
            | Op::Advance { .. }
            | Op::ExpireDue { .. }
            | Op::PushSnapshot(_)
            | Op::ReconcileStart { .. }
            | Op::ReconcileStep { .. }
            | Op::ReconcileFinish => None,
        }
    }
}

impl fmt::Display for Op {
    /// One line per op, compact enough for a reproduction of a few dozen ops.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Submit {
                command,
                slow,
                delivery,
            } => {
                write!(
                    f,
                    "submit {delivery:?}{} {command:?}",
                    if *slow { " slow" } else { "" }
                )
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// One seed's mix: a weight per kind of operation (0 turns it off) and the fault rates.
#[derive(Debug, Clone)]
pub struct Swarm {
    /// Lock shards of the ledger (1 to 8): fewer shards put more on each lock and table.
    pub shards: usize,
    weights: [u64; KINDS],
    /// Percent of fresh requests whose write is slow.
    slow_percent: u64,
    /// Percent of fresh requests delivered twice.
    duplicate_percent: u64,
    /// Percent of fresh requests swapped with the request before them.
    reorder_percent: u64,
}

const KINDS: usize = 23;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Reserve,
    Commit,
    CommitPartial,
    Release,
    Extend,
    SaleBatch,
    LateBatch,
    Return,
    Dispose,
    Adjust,
    SafetyStock,
    Retry,
    RetryChanged,
    Advance,
    ClockJump,
    ExpireDue,
    Sync,
    Checkpoint,
    Crash,
    Snapshot,
    ResolveDrift,
    StoreJump,
    StoreAck,
}

/// Base weights, per mille of the op mix before the swarm scales them; `FailNextSync` is
/// drawn separately (it is a variant of `Sync`).
const BASE: [(Kind, u64); KINDS] = [
    (Kind::Reserve, 200),
    (Kind::Commit, 70),
    (Kind::CommitPartial, 40),
    (Kind::Release, 60),
    (Kind::Extend, 40),
    (Kind::SaleBatch, 40),
    (Kind::LateBatch, 15),
    (Kind::Return, 30),
    (Kind::Dispose, 25),
    (Kind::Adjust, 50),
    (Kind::SafetyStock, 20),
    (Kind::Retry, 60),
    (Kind::RetryChanged, 20),
    (Kind::Advance, 150),
    (Kind::ClockJump, 8),
    (Kind::ExpireDue, 50),
    (Kind::Sync, 60),
    (Kind::Checkpoint, 12),
    (Kind::Crash, 10),
    // Rare: a snapshot brings a run of a few dozen ops with it.
    (Kind::Snapshot, 12),
    (Kind::ResolveDrift, 8),
    (Kind::StoreJump, 6),
    (Kind::StoreAck, 8),
];

impl Swarm {
    pub fn draw(rng: &mut Rng) -> Swarm {
        let mut weights = [0u64; KINDS];
        for (i, (kind, base)) in BASE.iter().enumerate() {
            // Reserves and time always happen; anything else may be off for a whole seed.
            let always = matches!(kind, Kind::Reserve | Kind::Advance);
            let factor = if always {
                rng.range(1, 4)
            } else {
                rng.range(0, 4)
            };
            weights[i] = base * factor;
        }
        Swarm {
            shards: 1 << rng.range(0, 3),
            weights,
            slow_percent: [0, 5, 20, 50][rng.index(4)],
            duplicate_percent: [0, 3, 10][rng.index(3)],
            reorder_percent: [0, 3, 10][rng.index(3)],
        }
    }

    fn pick(&self, rng: &mut Rng) -> Kind {
        let total: u64 = self.weights.iter().sum();
        let mut x = rng.below(total);
        for (i, w) in self.weights.iter().enumerate() {
            if x < *w {
                return BASE[i].0;
            }
            x -= w;
        }
        unreachable!("x < total")
    }
}

/// A hold the generator asked for: a target for commits, releases and extends.
struct Asked {
    id: String,
    lines: Vec<Line>,
}

/// A snapshot the generator pushed: a target for re-pushes, runs and resolutions.
struct Pushed {
    id: String,
    positions: Vec<(String, String)>,
}

struct Store {
    name: &'static str,
    next_seq: u64,
    /// Txn ids of this store's sales whose number jumped: targets for an operator's verdict.
    jumped: Vec<String>,
    /// Sales held back, to be delivered by a later late batch.
    held_back: Vec<Command>,
}

struct Generator {
    rng: Rng,
    swarm: Swarm,
    ops: Vec<Op>,
    /// The generator's idea of the clock (it issues every clock op).
    now_ms: u64,
    next_id: u64,
    holds: VecDeque<Asked>,
    recent: VecDeque<Command>,
    stores: Vec<Store>,
    /// Units sent to inspection: (return id, sku, location, qty not yet disposed of).
    inspected: Vec<(String, String, String, u64)>,
    /// Snapshots pushed, newest last.
    snapshots: Vec<Pushed>,
    /// A run a crash or a failed sync may have cut short, to resume first: (id, policy).
    interrupted: Option<(String, TolerancePolicy)>,
    /// A reconciliation is running: its window's ops are plain traffic and faults.
    in_run: bool,
}

/// The swarm and the ops of `steps` steps for `seed`.
pub fn generate(seed: u64, steps: usize) -> (Swarm, Vec<Op>) {
    let mut root = Rng::new(seed);
    let mut swarm_rng = root.fork();
    let swarm = Swarm::draw(&mut swarm_rng);
    let mut g = Generator {
        rng: root.fork(),
        swarm: swarm.clone(),
        ops: Vec::with_capacity(steps + 16),
        now_ms: T0_MS,
        next_id: 0,
        holds: VecDeque::new(),
        recent: VecDeque::new(),
        stores: LOCATIONS[1..]
            .iter()
            .map(|name| Store {
                name,
                next_seq: 1,
                jumped: Vec::new(),
                held_back: Vec::new(),
            })
            .collect(),
        inspected: Vec::new(),
        snapshots: Vec::new(),
        interrupted: None,
        in_run: false,
    };
    g.stock();
    while g.ops.len() < steps {
        g.step();
    }
    g.ops.truncate(steps);
    (swarm, g.ops)
}

impl Generator {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Opening stock: every hot sku everywhere (a little), every cold sku at the warehouse.
    fn stock(&mut self) {
        for sku in 0..HOT_SKUS {
            for location in LOCATIONS {
                let qty = self.rng.range(3, 12) as i64;
                let command = self.adjust_command(&sku_name(sku), location, qty, "opening");
                self.push(command, Delivery::Fresh, false);
            }
        }
        for sku in HOT_SKUS..HOT_SKUS + COLD_SKUS {
            let qty = self.rng.range(10, 60) as i64;
            let command = self.adjust_command(&sku_name(sku), LOCATIONS[0], qty, "opening");
            self.push(command, Delivery::Fresh, false);
        }
    }

    fn push(&mut self, command: Command, delivery: Delivery, slow: bool) {
        self.ops.push(Op::Submit {
            command,
            slow,
            delivery,
        });
    }

    /// A fresh client request, with this seed's chances of a slow write, a duplicate delivery
    /// and a reordering with the request before it.
    fn send(&mut self, command: Command) {
        if command.idempotency_key().is_some() {
            self.recent.push_back(command.clone());
            if self.recent.len() > RECENT_MAX {
                self.recent.pop_front();
            }
        }
        let slow = self.rng.chance(self.swarm.slow_percent);
        let duplicate = self.rng.chance(self.swarm.duplicate_percent);
        let reorder = self.rng.chance(self.swarm.reorder_percent);
        let previous_is_request = matches!(self.ops.last(), Some(Op::Submit { .. }));
        self.push(command.clone(), Delivery::Fresh, slow);
        if reorder && previous_is_request {
            let n = self.ops.len();
            self.ops.swap(n - 1, n - 2);
            if let Op::Submit { delivery, .. } = &mut self.ops[n - 2] {
                *delivery = Delivery::Reordered;
            }
        }
        if duplicate {
            self.push(command, Delivery::Duplicate, false);
        }
    }

    fn step(&mut self) {
        match self.swarm.pick(&mut self.rng) {
            Kind::Reserve => self.reserve(),
            Kind::Commit => self.on_hold(|id, _, _| {
                Command::Commit(Commit {
                    reservation_id: ReservationId::from(id),
                    lines: None,
                })
            }),
            Kind::CommitPartial => self.commit_partial(),
            Kind::Release => self.on_hold(|id, _, _| {
                Command::Release(Release {
                    reservation_id: ReservationId::from(id),
                })
            }),
            Kind::Extend => {
                let request = self.id("x");
                let ttl_ms = self.ttl_ms();
                self.on_hold(move |id, _, _| {
                    Command::Extend(Extend {
                        reservation_id: ReservationId::from(id),
                        request_id: RequestId::from(request.as_str()),
                        ttl_ms,
                    })
                })
            }
            Kind::SaleBatch => self.sale_batch(),
            Kind::LateBatch => self.late_batch(),
            Kind::Return => self.record_return(),
            Kind::Dispose => self.dispose(),
            Kind::Adjust => {
                let (sku, location) = self.position();
                let delta = match self.rng.range(0, 3) {
                    0 => -(self.rng.range(1, 5) as i64),
                    _ => self.rng.range(1, 30) as i64,
                };
                let command = self.adjust_command(&sku, &location, delta, "receipt");
                self.send(command);
            }
            Kind::SafetyStock => {
                let (sku, location) = self.position();
                let request_id = self.id("ss");
                let qty = self.rng.range(0, 4);
                self.send(Command::SetSafetyStock(SetSafetyStock {
                    request_id: RequestId::from(request_id.as_str()),
                    sku: Sku::from(sku.as_str()),
                    location: Location::from(location.as_str()),
                    qty,
                }));
            }
            Kind::Retry | Kind::RetryChanged => self.retry(),
            Kind::Advance => {
                let ms = self.rng.range(0, 3_000);
                self.now_ms += ms;
                self.ops.push(Op::Advance { ms });
            }
            Kind::ClockJump => {
                let ms = if self.rng.chance(30) {
                    -(self.rng.range(1, 10_000) as i64)
                } else {
                    self.rng.range(60_000, 1_800_000) as i64
                };
                self.now_ms = self.now_ms.saturating_add_signed(ms).max(T0_MS);
                self.ops.push(Op::ClockJump { ms });
            }
            Kind::ExpireDue => {
                let batch = self.rng.range(1, 20) as u32;
                self.ops.push(Op::ExpireDue { batch });
            }
            Kind::Sync => {
                // One sync in eight is the one that fails, in seeds with failures at all.
                let fails = self.swarm.weights[Kind::Crash as usize] > 0 && self.rng.chance(12);
                self.ops
                    .push(if fails { Op::FailNextSync } else { Op::Sync });
            }
            Kind::Checkpoint => self.ops.push(Op::Checkpoint),
            Kind::Crash => self.ops.push(Op::Crash),
            Kind::Snapshot if self.in_run => self.concurrent_start(),
            Kind::Snapshot => self.snapshot(),
            Kind::ResolveDrift => self.resolve_drift(),
            Kind::StoreJump => self.store_jump(),
            Kind::StoreAck => self.store_ack(),
        }
    }

    /// The ERP's turn: resume a run cut short, push a snapshot again, or push a new one and
    /// reconcile it.
    fn snapshot(&mut self) {
        if let Some((id, policy)) = self.interrupted.take() {
            return self.reconcile(id, false, policy);
        }
        if !self.snapshots.is_empty() && self.rng.chance(15) {
            let i = self.rng.index(self.snapshots.len());
            let id = self.snapshots[i].id.clone();
            let change = match self.rng.range(0, 9) {
                0..=5 => Repush::Same,
                6 | 7 => Repush::OtherRows,
                _ => Repush::OtherAsOf,
            };
            self.ops.push(Op::Repush { id, change });
            return;
        }
        let id = self.id("snap");
        let as_of = match self.rng.range(0, 99) {
            0..=5 => AsOf::TooOld,
            6..=8 => AsOf::Ahead,
            9..=29 => AsOf::Back(0),
            _ => AsOf::Back(self.rng.range(1, 90_000)),
        };
        let full = self.rng.chance(40);
        let scope = if self.rng.chance(50) {
            None
        } else {
            let mut locations: Vec<String> = LOCATIONS
                .iter()
                .filter(|_| self.rng.chance(50))
                .map(|l| (*l).to_owned())
                .collect();
            if locations.is_empty() {
                locations.push(LOCATIONS[self.rng.index(LOCATIONS.len())].to_owned());
            }
            Some(locations)
        };
        // Mostly exact counts, some drift within and some beyond the default tolerance.
        let exact_percent = [20, 60, 90][self.rng.index(3)];
        let count = self.rng.range(1, 12);
        let mut rows: Vec<PlannedRow> = Vec::new();
        for _ in 0..count {
            let (sku, location) = self.position();
            let in_scope = scope.as_ref().is_none_or(|s| s.contains(&location));
            if !in_scope || rows.iter().any(|r| r.sku == sku && r.location == location) {
                continue;
            }
            let count = if self.rng.chance(exact_percent) {
                ErpCount::Exact
            } else if self.rng.chance(60) {
                ErpCount::Drift(self.rng.range(1, 2) as i64 * [-1, 1][self.rng.index(2)])
            } else {
                ErpCount::Drift(self.rng.range(3, 15) as i64 * [-1, 1][self.rng.index(2)])
            };
            let safety_stock = self.rng.chance(25).then(|| self.rng.range(0, 3));
            rows.push(PlannedRow {
                sku,
                location,
                count,
                safety_stock,
            });
        }
        if rows.is_empty() {
            // A snapshot of one row at least, so a changed re-push has a row to change.
            let location = scope
                .as_ref()
                .map_or(LOCATIONS[0].to_owned(), |s| s[0].clone());
            rows.push(PlannedRow {
                sku: sku_name(self.rng.index(HOT_SKUS)),
                location,
                count: ErpCount::Exact,
                safety_stock: None,
            });
        }
        self.snapshots.push(Pushed {
            id: id.clone(),
            positions: rows
                .iter()
                .map(|r| (r.sku.clone(), r.location.clone()))
                .collect(),
        });
        self.ops.push(Op::PushSnapshot(PlannedSnapshot {
            id: id.clone(),
            as_of,
            full,
            scope,
            rows,
            broken_first: self.rng.chance(10),
        }));
        // Usually reconciled at once; otherwise it waits staged for a later turn (a re-push
        // or a run of an older snapshot after a newer one: refused as superseded).
        if self.rng.chance(85) {
            let dry_run = self.rng.chance(20);
            let policy = self.policy();
            self.reconcile(id, dry_run, policy);
        }
    }

    /// The tolerance a run applies: the default, sometimes strict or lenient, sometimes
    /// applying every drift, sometimes another rule for one location.
    fn policy(&mut self) -> TolerancePolicy {
        let tolerance = |rng: &mut Rng| Tolerance {
            units: [0, 2, 2, 5][rng.index(4)],
            percent_bp: [0, 100, 100, 1_000][rng.index(4)],
            beyond: if rng.chance(75) {
                BeyondTolerance::Hold
            } else {
                BeyondTolerance::Apply
            },
        };
        let mut policy = TolerancePolicy {
            default: tolerance(&mut self.rng),
            ..TolerancePolicy::default()
        };
        if self.rng.chance(30) {
            let location = LOCATIONS[self.rng.index(LOCATIONS.len())];
            policy
                .by_location
                .insert(Location::from(location), tolerance(&mut self.rng));
        }
        policy
    }

    /// A run of snapshot `id`: started, stepped a few positions at a time with ordinary ops
    /// between the steps (none for a dry run), finished. A crash or a failing sync in the
    /// window may cut it short: the next snapshot turn resumes it.
    fn reconcile(&mut self, id: String, dry_run: bool, policy: TolerancePolicy) {
        self.ops.push(Op::ReconcileStart {
            id: id.clone(),
            dry_run,
            policy: policy.clone(),
        });
        self.in_run = true;
        let mut faulted = false;
        for _ in 0..self.rng.range(1, 6) {
            if !dry_run {
                for _ in 0..self.rng.range(0, 4) {
                    let before = self.ops.len();
                    self.step();
                    faulted |= self.ops[before..]
                        .iter()
                        .any(|op| matches!(op, Op::Crash | Op::FailNextSync));
                }
            }
            let positions = self.rng.range(1, 8) as u32;
            self.ops.push(Op::ReconcileStep { positions });
        }
        self.ops.push(Op::ReconcileFinish);
        self.in_run = false;
        if faulted && !dry_run {
            self.interrupted = Some((id, policy));
        }
    }

    /// A second start while a run is in progress: refused, the running one unharmed.
    fn concurrent_start(&mut self) {
        let Some(pushed) = self.snapshots.last() else {
            return;
        };
        let id = pushed.id.clone();
        let policy = self.policy();
        self.ops.push(Op::ReconcileStart {
            id,
            dry_run: true,
            policy,
        });
    }

    /// A reviewer applies or dismisses a drift a recent snapshot may have held (the engine
    /// answers DRIFT_NOT_HELD where none is held).
    fn resolve_drift(&mut self) {
        if self.snapshots.is_empty() {
            return self.reserve();
        }
        let n = self.snapshots.len();
        let i = n - 1 - self.rng.index(n.min(3));
        let (sku, location) = if self.rng.chance(80) {
            let positions = &self.snapshots[i].positions;
            positions[self.rng.index(positions.len())].clone()
        } else {
            self.position()
        };
        let action = if self.rng.chance(60) {
            DriftAction::Apply
        } else {
            DriftAction::Dismiss
        };
        self.send(Command::ResolveDrift(ResolveDrift {
            snapshot_id: SnapshotId::from(self.snapshots[i].id.as_str()),
            sku: Sku::from(sku.as_str()),
            location: Location::from(location.as_str()),
            action,
        }));
    }

    fn ttl_ms(&mut self) -> u64 {
        match self.rng.range(0, 9) {
            0 => self.rng.range(1_000, 5_000),
            9 => self.rng.range(300_000, 3_600_000),
            _ => self.rng.range(5_000, 120_000),
        }
    }

    fn sku(&mut self) -> usize {
        if self.rng.chance(60) {
            self.rng.index(HOT_SKUS)
        } else {
            HOT_SKUS + self.rng.index(COLD_SKUS)
        }
    }

    /// A position, usually one that was stocked.
    fn position(&mut self) -> (String, String) {
        let sku = self.sku();
        let location = if sku < HOT_SKUS || self.rng.chance(20) {
            LOCATIONS[self.rng.index(LOCATIONS.len())]
        } else {
            LOCATIONS[0]
        };
        (sku_name(sku), location.to_owned())
    }

    fn adjust_command(&mut self, sku: &str, location: &str, delta: i64, reason: &str) -> Command {
        let id = self.id("a");
        Command::Adjust(Adjust {
            adjustment_id: AdjustmentId::from(id.as_str()),
            sku: Sku::from(sku),
            location: Location::from(location),
            delta,
            reason: reason.into(),
        })
    }

    fn reserve(&mut self) {
        let count = [1, 1, 1, 2, 2, 3][self.rng.index(6)];
        let mut lines: Vec<Line> = Vec::new();
        while lines.len() < count {
            let (sku, location) = self.position();
            if lines
                .iter()
                .any(|l| l.sku.as_str() == sku && l.location.as_str() == location)
            {
                // Positions must be distinct within a request; a shorter basket is fine.
                break;
            }
            let qty = if sku.starts_with("hot") {
                self.rng.range(1, 3)
            } else {
                self.rng.range(1, 8)
            };
            lines.push(Line::new(&sku, &location, qty));
        }
        let id = self.id("r");
        let ttl_ms = self.ttl_ms();
        let channel = ["web", "amazon", "store-app"][self.rng.index(3)];
        self.holds.push_back(Asked {
            id: id.clone(),
            lines: lines.clone(),
        });
        if self.holds.len() > HOLDS_REMEMBERED_MAX {
            self.holds.pop_front();
        }
        self.send(Command::Reserve(Reserve {
            reservation_id: ReservationId::from(id.as_str()),
            channel: Channel::from(channel),
            lines,
            ttl_ms,
        }));
    }

    /// A request about a hold asked for recently (the newest ones more often).
    fn on_hold(&mut self, build: impl FnOnce(&str, &[Line], &mut Rng) -> Command) {
        if self.holds.is_empty() {
            return self.reserve();
        }
        let n = self.holds.len();
        let i = if self.rng.chance(50) {
            n - 1 - self.rng.index(n.min(4))
        } else {
            self.rng.index(n)
        };
        let command = build(&self.holds[i].id, &self.holds[i].lines, &mut self.rng);
        self.send(command);
    }

    fn commit_partial(&mut self) {
        self.on_hold(|id, held, rng| {
            let mut lines: Vec<Line> = Vec::new();
            for l in held {
                if !rng.chance(60) {
                    continue;
                }
                // Now and then more than held: the engine must refuse it (NotHeld).
                let qty = if rng.chance(8) {
                    l.qty + 1
                } else {
                    rng.range(1, l.qty)
                };
                lines.push(Line { qty, ..l.clone() });
            }
            if lines.is_empty() {
                lines.push(Line {
                    qty: 1,
                    ..held[0].clone()
                });
            }
            Command::Commit(Commit {
                reservation_id: ReservationId::from(id),
                lines: Some(lines),
            })
        });
    }

    /// A store posts its next few sales: some held back (a gap), some delivered twice, the
    /// batch shuffled.
    fn sale_batch(&mut self) {
        let s = self.rng.index(self.stores.len());
        let count = self.rng.range(1, 6);
        let mut batch = Vec::new();
        for _ in 0..count {
            let seq = self.stores[s].next_seq;
            self.stores[s].next_seq += 1;
            let location = self.stores[s].name;
            let line_count = self.rng.range(1, 2);
            let mut lines: Vec<Line> = Vec::new();
            for _ in 0..line_count {
                let sku = sku_name(self.sku());
                if lines.iter().all(|l| l.sku.as_str() != sku) {
                    lines.push(Line::new(&sku, location, self.rng.range(1, 3)));
                }
            }
            let lag_ms = self.rng.range(0, 120_000);
            let sale = Command::RecordSale(RecordSale {
                store_id: StoreId::from(location),
                txn_id: TxnId::from(format!("t{seq}").as_str()),
                store_seq: seq,
                occurred_at_ms: self.now_ms.saturating_sub(lag_ms).max(T0_MS - 60_000),
                lines,
            });
            if self.rng.chance(15) {
                self.stores[s].held_back.push(sale);
            } else {
                batch.push(sale);
            }
        }
        let before = batch.clone();
        self.rng.shuffle(&mut batch);
        for (i, sale) in batch.into_iter().enumerate() {
            let delivery = if before.get(i) == Some(&sale) {
                Delivery::Fresh
            } else {
                Delivery::Reordered
            };
            let slow = self.rng.chance(self.swarm.slow_percent);
            self.recent.push_back(sale.clone());
            self.push(sale.clone(), delivery, slow);
            if self.rng.chance(self.swarm.duplicate_percent) {
                self.push(sale, Delivery::Duplicate, false);
            }
        }
        while self.recent.len() > RECENT_MAX {
            self.recent.pop_front();
        }
    }

    /// One sale whose number jumps beyond the engine's bound: a wild number near 2^64-1, or a
    /// till that renumbered (its later sales go on from the new number, each an anomaly too
    /// until one is accepted).
    fn store_jump(&mut self) {
        let s = self.rng.index(self.stores.len());
        let bound = LedgerConfig::default().store_seq_jump_max;
        let (seq, txn) = if self.rng.chance(40) {
            (u64::MAX - self.rng.range(0, 2), self.id("wild"))
        } else {
            let seq = self.stores[s].next_seq + bound + self.rng.range(1, 1_000);
            self.stores[s].next_seq = seq + 1;
            (seq, format!("t{seq}"))
        };
        let location = self.stores[s].name;
        let sku = sku_name(self.sku());
        let occurred_at_ms = self.now_ms.saturating_sub(self.rng.range(0, 60_000));
        self.stores[s].jumped.push(txn.clone());
        self.send(Command::RecordSale(RecordSale {
            store_id: StoreId::from(location),
            txn_id: TxnId::from(txn.as_str()),
            store_seq: seq,
            occurred_at_ms,
            lines: vec![Line::new(&sku, location, 1)],
        }));
    }

    /// An operator answers a store's anomaly: most often one of its jumps (the newest, as for
    /// a renumbered till, or any), now and then a sale that never jumped (STORE_ANOMALY_NOT_FOUND)
    /// or a store that never sold (STORE_NOT_FOUND).
    fn store_ack(&mut self) {
        let s = self.rng.index(self.stores.len());
        let store = if self.rng.chance(5) {
            "store-none"
        } else {
            self.stores[s].name
        };
        let jumped = &self.stores[s].jumped;
        let txn = if jumped.is_empty() || self.rng.chance(10) {
            format!("t{}", self.rng.range(1, 5))
        } else if self.rng.chance(50) {
            jumped[jumped.len() - 1].clone()
        } else {
            jumped[self.rng.index(jumped.len())].clone()
        };
        let action = if self.rng.chance(60) {
            AnomalyAction::Accept
        } else {
            AnomalyAction::Dismiss
        };
        self.send(Command::AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly {
            store_id: StoreId::from(store),
            txn_id: TxnId::from(txn.as_str()),
            action,
        }));
    }

    /// A store's held-back sales arrive, late and in any order.
    fn late_batch(&mut self) {
        let s = self.rng.index(self.stores.len());
        let mut late = std::mem::take(&mut self.stores[s].held_back);
        self.rng.shuffle(&mut late);
        for sale in late {
            let slow = self.rng.chance(self.swarm.slow_percent);
            self.push(sale, Delivery::Late, slow);
        }
    }

    fn record_return(&mut self) {
        let id = self.id("ret");
        let count = self.rng.range(1, 2);
        let mut lines: Vec<ReturnLine> = Vec::new();
        for _ in 0..count {
            let (sku, location) = self.position();
            if lines
                .iter()
                .any(|l| l.sku.as_str() == sku && l.location.as_str() == location)
            {
                break;
            }
            let qty = self.rng.range(1, 3);
            let disposition = if self.rng.chance(50) {
                ReturnDisposition::Inspect
            } else {
                ReturnDisposition::Restock
            };
            if disposition == ReturnDisposition::Inspect {
                self.inspected
                    .push((id.clone(), sku.clone(), location.clone(), qty));
            }
            lines.push(ReturnLine {
                sku: Sku::from(sku.as_str()),
                location: Location::from(location.as_str()),
                qty,
                disposition,
            });
        }
        self.send(Command::RecordReturn(RecordReturn {
            return_id: ReturnId::from(id.as_str()),
            lines,
        }));
    }

    fn dispose(&mut self) {
        if self.inspected.is_empty() {
            return self.record_return();
        }
        let i = self.rng.index(self.inspected.len());
        let (return_id, sku, location, left) = self.inspected[i].clone();
        // Now and then more than is left: the engine must refuse it (NotQuarantined).
        let qty = if self.rng.chance(10) {
            left + 1
        } else {
            self.rng.range(1, left)
        };
        if qty <= left {
            self.inspected[i].3 -= qty;
            if self.inspected[i].3 == 0 {
                self.inspected.swap_remove(i);
            }
        }
        let id = self.id("d");
        let action = if self.rng.chance(50) {
            DispositionAction::Restock
        } else {
            DispositionAction::Scrap
        };
        self.send(Command::Dispose(Dispose {
            disposition_id: DispositionId::from(id.as_str()),
            return_id: ReturnId::from(return_id.as_str()),
            sku: Sku::from(sku.as_str()),
            location: Location::from(location.as_str()),
            qty,
            action,
        }));
    }

    /// A client resends a recent request after a timeout: as it was, or (a client bug) with
    /// another payload under the same key.
    fn retry(&mut self) {
        if self.recent.is_empty() {
            return self.reserve();
        }
        let i = self.rng.index(self.recent.len());
        let command = self.recent[i].clone();
        let changed = self.rng.chance(30);
        match changed.then(|| mutate(&command)).flatten() {
            Some(other) => self.push(other, Delivery::RetryChanged, false),
            None => {
                let slow = self.rng.chance(self.swarm.slow_percent);
                self.push(command, Delivery::Retry, slow)
            }
        }
    }
}

/// `command` with one field other than its key changed; `None` if it has no such field.
fn mutate(command: &Command) -> Option<Command> {
    let mut command = command.clone();
    match &mut command {
        Command::Reserve(c) => c.ttl_ms += 1_000,
        Command::Commit(c) => {
            c.lines.take()?;
        }
        Command::Extend(c) => c.ttl_ms += 1_000,
        Command::RecordSale(c) => c.occurred_at_ms += 1,
        Command::RecordReturn(c) => c.lines[0].qty += 1,
        Command::Dispose(c) => c.qty += 1,
        Command::Adjust(c) => c.delta = if c.delta == -1 { 1 } else { c.delta + 1 },
        Command::SetSafetyStock(c) => c.qty += 1,
        Command::ResolveDrift(c) => {
            c.action = match c.action {
                DriftAction::Apply => DriftAction::Dismiss,
                DriftAction::Dismiss => DriftAction::Apply,
            }
        }
        Command::AcknowledgeStoreAnomaly(c) => {
            c.action = match c.action {
                AnomalyAction::Accept => AnomalyAction::Dismiss,
                AnomalyAction::Dismiss => AnomalyAction::Accept,
            }
        }
        Command::Release(_) | Command::Expire(_) | Command::Reconcile(_) => return None,
    }
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_list_and_another_seed_another() {
        let (_, a) = generate(42, 500);
        let (_, b) = generate(42, 500);
        let (_, c) = generate(43, 500);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 500);
    }

    #[test]
    fn every_generated_request_is_well_formed() {
        for seed in 0..20 {
            for op in generate(seed, 400).1 {
                if let Op::Submit { command, .. } = op {
                    command.validate().expect("valid request");
                }
            }
        }
    }
}
