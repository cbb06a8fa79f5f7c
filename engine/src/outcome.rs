//! Outcomes: what the engine decided for a command.
//!
//! An outcome is a value, not an error: running out of stock or committing an expired hold are
//! ordinary answers that a connector acts on. Outcomes are recorded in the event and under the
//! command's idempotency key, so a retry gets the same answer even if stock has changed since
//! (TigerBeetle's `id_already_failed`). Only shape errors, key conflicts and references to
//! things that do not exist are [`crate::SubmitError`]s, and those are never recorded.

use crate::hold::HoldState;
use serde::{Deserialize, Serialize};

/// A reserve line that could not be granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    /// Index into the reserve's `lines`.
    pub line_index: u32,
    pub requested: u64,
    /// Availability when the reserve was decided (may be negative: see `Availability`).
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Reserve: the hold is placed and lasts until `expires_at_ms` (engine clock).
    Granted { expires_at_ms: u64 },
    /// Reserve: at least one line was short; nothing was held.
    Insufficient { short: Vec<ShortLine> },
    /// Commit: per hold line (in the hold's line order) the units committed; the rest of each
    /// line was released.
    Committed { committed: Vec<u64> },
    /// Release: the hold's units are available again.
    Released,
    /// Extend: the hold now expires at `expires_at_ms`.
    Extended { expires_at_ms: u64 },
    /// The hold's TTL had passed when this command was decided; the event expires it (for an
    /// `Expire` command that is its whole purpose).
    Expired,
    /// Commit, release or extend of a hold that had already ended in the given state.
    HoldAlreadyEnded(HoldState),
    /// Sale, return, disposition, adjustment or safety stock: applied.
    Recorded,
}

impl Outcome {
    /// True when the command changed stock (as opposed to being refused for a business reason).
    pub fn is_success(&self) -> bool {
        !matches!(
            self,
            Outcome::Insufficient { .. } | Outcome::Expired | Outcome::HoldAlreadyEnded(_)
        )
    }
}
