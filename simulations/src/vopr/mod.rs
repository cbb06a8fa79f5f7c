//! `vopr`: a deterministic simulator of the engine under faults, in the spirit of
//! TigerBeetle's VOPR and FoundationDB's simulation testing.
//!
//! From one seed it generates a whole run ([`workload`]): marketplace holds, commits,
//! releases, extends, expiries, POS sales, returns, adjustments, safety stock, ERP snapshots
//! reconciled in steps and held drifts resolved, interleaved
//! with faults (crashes, failing and slow log writes, duplicated, reordered and retried
//! client requests, checkpoints at random points, clock jumps). It runs them against the real
//! engine on one thread, with a simulated clock (`ManualClock`) and a simulated log whose
//! durability point it controls ([`log`]), and after every step checks the engine against an
//! independent reference model ([`model`]) and a list of invariants ([`sim`] names them). A
//! failure is shrunk to a short reproduction ([`shrink`]) and reported ([`report`]).
//!
//! Nothing in a run reads the wall clock, the OS's randomness or a hash order: the same seed
//! and steps give the same run and the same final line on every machine.
//!
//! # Layout
//! - [`rng`]: SplitMix64, the one source of randomness, and why it is hand-written.
//! - [`workload`]: the seed's swarm (op mix and fault rates) and the list of ops.
//! - [`log`]: `SimLog`, the log with a volatile tail that a crash loses.
//! - [`model`]: the reference model.
//! - [`sim`]: the executor and the invariant checks; `sim/erp.rs`: snapshot pushes and
//!   reconciliation runs, the simulator's account of the snapshot store, their checks.
//! - [`shrink`]: shortest failing prefix, then greedy deletion.
//! - [`report`]: the lines a run prints.

pub mod log;
pub mod model;
pub mod report;
pub mod rng;
pub mod shrink;
pub mod sim;
pub mod workload;

pub use shrink::{ShrinkBudget, Shrunk};
pub use sim::{Summary, Violation, quiet_panics};
pub use workload::{Op, Swarm};

/// Most steps one seed may run (memory: the model keeps every fact; time: the checks after
/// each step grow with the ledger).
pub const STEPS_MAX: usize = 1_000_000;

/// Steps between live-versus-replay digest checks by default. A digest is O(ledger) (it
/// formats every position, hold and key), so checking it every step makes a run about ten
/// times slower (2,000 steps: ~15 s instead of ~1.5 s); every 20 steps costs about as much as
/// all the other checks together.
pub const DIGEST_EVERY_DEFAULT: usize = 20;

/// How one seed is run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    pub steps: usize,
    /// Compare the live digest with the incremental replay's every this many steps (a fresh
    /// replay from LSN 1 runs after every restart and at the end regardless). The digest is
    /// O(ledger), so every step is quadratic over a long run.
    pub digest_every: usize,
    /// Shrink a failure (`None`: report it as found).
    pub shrink: Option<ShrinkBudget>,
}

impl RunOptions {
    pub fn new(seed: u64, steps: usize) -> Self {
        Self {
            seed,
            steps,
            digest_every: DIGEST_EVERY_DEFAULT,
            shrink: Some(ShrinkBudget::default()),
        }
    }
}

/// How a seed's run ended.
#[derive(Debug, Clone)]
pub enum RunResult {
    Passed(Summary),
    Failed {
        violation: Violation,
        shrunk: Option<Shrunk>,
    },
}

impl RunResult {
    /// The lines to print: on success the fault counts and the final line (last); on failure
    /// the report with its reproduction.
    pub fn report(&self, options: &RunOptions) -> String {
        match self {
            RunResult::Passed(summary) => format!(
                "{}\n{}\n{}",
                report::answers_line(summary),
                report::faults_line(summary),
                report::final_line(options.seed, summary)
            ),
            RunResult::Failed { violation, shrunk } => {
                report::failure(options.seed, options.steps, violation, shrunk.as_ref())
            }
        }
    }

    pub fn violation(&self) -> Option<&Violation> {
        match self {
            RunResult::Passed(_) => None,
            RunResult::Failed { violation, .. } => Some(violation),
        }
    }
}

/// Generates and runs one seed; shrinks a failure if asked to.
pub fn run(options: &RunOptions) -> RunResult {
    let (swarm, ops) = workload::generate(options.seed, options.steps);
    match sim::execute(&ops, swarm.shards, options.digest_every) {
        Ok(summary) => RunResult::Passed(summary),
        Err(violation) => {
            let shrunk = options.shrink.map(|budget| {
                shrink::shrink(&ops, &violation, swarm.shards, options.digest_every, budget)
            });
            RunResult::Failed { violation, shrunk }
        }
    }
}
