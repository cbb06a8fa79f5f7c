//! The shrinker: from a failing list of ops, a short one that fails the same way.
//!
//! Two passes, as the issue asks: first the shortest failing prefix (everything after the
//! op that failed is cut, and the failure's own step bounds the prefix), then greedy
//! deletion: drop chunks of ops, halving the chunk size down to single ops, and keep each
//! deletion after which the run still fails with the same invariant (a different failure is
//! a different bug, and chasing it would lose this one). Every candidate is a full
//! deterministic re-run, so the result reproduces by itself. Bounded by a number of runs and
//! a time budget: a long failing run still gets a reproduction, if a longer one.

use super::sim::{Violation, execute};
use super::workload::Op;
use std::time::{Duration, Instant};

/// How much work the shrinker may do.
#[derive(Debug, Clone, Copy)]
pub struct ShrinkBudget {
    pub runs_max: usize,
    pub time_max: Duration,
}

impl Default for ShrinkBudget {
    fn default() -> Self {
        Self {
            runs_max: 2_000,
            time_max: Duration::from_secs(60),
        }
    }
}

/// The shrunk ops and the violation they produce.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub ops: Vec<Op>,
    pub violation: Violation,
    /// Runs the shrinker made.
    pub runs: usize,
    /// Whether the budget ran out before the greedy pass finished.
    pub exhausted: bool,
}

pub fn shrink(
    ops: &[Op],
    violation: &Violation,
    shards: usize,
    digest_every: usize,
    budget: ShrinkBudget,
) -> Shrunk {
    let started = Instant::now();
    let mut runs = 0;
    let mut exhausted = false;
    let mut best: Vec<Op> = ops[..(violation.step + 1).min(ops.len())].to_vec();
    let mut best_violation = violation.clone();
    // Does `candidate` still fail the same invariant? If so, cut it to its failing prefix.
    let try_candidate = |candidate: Vec<Op>, runs: &mut usize| -> Option<(Vec<Op>, Violation)> {
        *runs += 1;
        match execute(&candidate, shards, digest_every) {
            Err(v) if v.invariant == violation.invariant => {
                let end = (v.step + 1).min(candidate.len());
                Some((candidate[..end].to_vec(), v))
            }
            _ => None,
        }
    };
    let mut chunk = best.len() / 2;
    'passes: while chunk >= 1 {
        let mut start = 0;
        while start < best.len() {
            if runs >= budget.runs_max || started.elapsed() >= budget.time_max {
                exhausted = true;
                break 'passes;
            }
            let end = (start + chunk).min(best.len());
            let mut candidate = best[..start].to_vec();
            candidate.extend_from_slice(&best[end..]);
            match try_candidate(candidate, &mut runs) {
                Some((shorter, v)) => {
                    best = shorter;
                    best_violation = v;
                }
                None => start += chunk,
            }
        }
        chunk /= 2;
    }
    Shrunk {
        ops: best,
        violation: best_violation,
        runs,
        exhausted,
    }
}
