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
//!
//! # Files
//! - `workload.rs`: the simulated world (skus, locations, the start time).
//! - `workload/op.rs`: [`Op`], one step of a run, and what each carries.
//! - `workload/swarm.rs`: [`Swarm`], the seed's op mix and fault rates.
//! - `workload/generator.rs`: [`generate`] and the generator's bookkeeping;
//!   `generator/clients.rs`: the clients' requests; `generator/erp.rs`: the ERP's turn.

mod generator;
mod op;
mod swarm;

pub use generator::generate;
pub use op::{AsOf, Delivery, ErpCount, Op, PlannedRow, PlannedSnapshot, Repush};
pub use swarm::Swarm;

/// Engine time when every run starts (any fixed value works; this one is in 2023).
pub const T0_MS: u64 = 1_700_000_000_000;
/// Hot skus: little stock, most of the reserves.
pub const HOT_SKUS: usize = 2;
/// Cold skus: more stock, few reserves each.
pub const COLD_SKUS: usize = 16;
/// One warehouse and three stores; stores are also the POS stores that post sales.
pub const LOCATIONS: [&str; 4] = ["dc-1", "store-1", "store-2", "store-3"];

pub fn sku_name(i: usize) -> String {
    if i < HOT_SKUS {
        format!("hot-{i}")
    } else {
        format!("cold-{:02}", i - HOT_SKUS)
    }
}
