//! The seed's swarm: a weight per kind of operation and the fault rates, drawn once per
//! seed, and the draw of the next kind of operation from them.

use crate::vopr::rng::Rng;

/// One seed's mix: a weight per kind of operation (0 turns it off) and the fault rates.
#[derive(Debug, Clone)]
pub struct Swarm {
    /// Lock shards of the ledger (1 to 8): fewer shards put more on each lock and table.
    pub shards: usize,
    pub(super) weights: [u64; KINDS],
    /// Percent of fresh requests whose write is slow.
    pub(super) slow_percent: u64,
    /// Percent of fresh requests delivered twice.
    pub(super) duplicate_percent: u64,
    /// Percent of fresh requests swapped with the request before them.
    pub(super) reorder_percent: u64,
}

const KINDS: usize = 23;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
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

    pub(super) fn pick(&self, rng: &mut Rng) -> Kind {
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
