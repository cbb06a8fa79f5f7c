//! The clients' requests: marketplace holds and what follows them, stores' sales (in
//! batches, late, or with a jumped number) and an operator's verdicts, returns and their
//! disposal, and retries (as sent, or with another payload under the same key).

use super::{Asked, Generator, HOLDS_REMEMBERED_MAX, RECENT_MAX};
use crate::vopr::rng::Rng;
use crate::vopr::workload::{Delivery, T0_MS, sku_name};
use inv_engine::{
    AcknowledgeStoreAnomaly, AnomalyAction, Channel, Command, Commit, Dispose, DispositionAction,
    DispositionId, DriftAction, LedgerConfig, Line, Location, RecordReturn, RecordSale,
    ReservationId, Reserve, ReturnDisposition, ReturnId, ReturnLine, Sku, StoreId, TxnId,
};

impl Generator {
    pub(super) fn reserve(&mut self) {
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
    pub(super) fn on_hold(&mut self, build: impl FnOnce(&str, &[Line], &mut Rng) -> Command) {
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

    pub(super) fn commit_partial(&mut self) {
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
    pub(super) fn sale_batch(&mut self) {
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
    pub(super) fn store_jump(&mut self) {
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
    pub(super) fn store_ack(&mut self) {
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
    pub(super) fn late_batch(&mut self) {
        let s = self.rng.index(self.stores.len());
        let mut late = std::mem::take(&mut self.stores[s].held_back);
        self.rng.shuffle(&mut late);
        for sale in late {
            let slow = self.rng.chance(self.swarm.slow_percent);
            self.push(sale, Delivery::Late, slow);
        }
    }

    pub(super) fn record_return(&mut self) {
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

    pub(super) fn dispose(&mut self) {
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
    pub(super) fn retry(&mut self) {
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
