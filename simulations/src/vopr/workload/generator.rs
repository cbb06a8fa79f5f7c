//! The generator: its own bookkeeping (ids handed out, holds asked for, stores' numbers,
//! snapshots pushed) and the loop that turns the swarm's picks into ops. The requests of each
//! kind are built in `generator/clients.rs` and `generator/erp.rs`.

mod clients;
mod erp;

use super::swarm::{Kind, Swarm};
use super::{COLD_SKUS, Delivery, HOT_SKUS, LOCATIONS, Op, T0_MS, sku_name};
use crate::vopr::rng::Rng;
use inv_engine::reconcile::TolerancePolicy;
use inv_engine::{
    Adjust, AdjustmentId, Command, Commit, Extend, Line, Location, Release, RequestId,
    ReservationId, SetSafetyStock, Sku,
};
use std::collections::VecDeque;

/// Holds the generator remembers as targets for commits, releases and extends.
const HOLDS_REMEMBERED_MAX: usize = 64;
/// Requests the generator remembers as candidates for a retry.
const RECENT_MAX: usize = 48;

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
