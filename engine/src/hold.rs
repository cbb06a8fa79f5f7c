//! Holds: a marketplace's claim on units until it commits, releases, or the TTL passes.
//!
//! A hold is `Open` until exactly one of commit, release or expiry ends it; the ended states are
//! terminal. [`HoldState::can_transition`] is the whole state machine (sled's event verifier
//! shape), and every transition in the ledger asserts it.

use crate::types::{ChannelId, LocationId, Lsn, Sku};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HoldState {
    Open,
    Committed,
    Released,
    Expired,
}

impl HoldState {
    pub fn can_transition(self, to: HoldState) -> bool {
        matches!(
            (self, to),
            (
                HoldState::Open,
                HoldState::Committed | HoldState::Released | HoldState::Expired
            )
        )
    }
}

/// One held line. `qty` fits in u32 because a line is at most `QTY_MAX` (10^9) units; the
/// smaller field keeps a single-line hold inside its memory budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HoldLine {
    pub sku: Sku,
    pub location: LocationId,
    pub qty: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub lines: SmallVec<[HoldLine; 1]>,
    pub channel: ChannelId,
    pub state: HoldState,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    /// When the hold ended (0 while open); ended holds are kept for the key retention window so
    /// a late commit or release gets "already ended" rather than "not found".
    pub ended_at_ms: u64,
}

impl Hold {
    /// Open, but its TTL has passed: it no longer reduces availability even though its expiry
    /// event may not be recorded yet.
    pub fn is_lapsed(&self, now_ms: u64) -> bool {
        self.state == HoldState::Open && now_ms >= self.expires_at_ms
    }

    pub fn transition(&mut self, to: HoldState, at_ms: u64) {
        assert!(
            self.state.can_transition(to),
            "hold transition {:?} -> {:?} is not allowed",
            self.state,
            to
        );
        self.state = to;
        self.ended_at_ms = at_ms;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_open_holds_can_end_and_ended_states_are_terminal() {
        use HoldState::*;
        let all = [Open, Committed, Released, Expired];
        for from in all {
            for to in all {
                let allowed = from == Open && to != Open;
                assert_eq!(from.can_transition(to), allowed, "{from:?} -> {to:?}");
            }
        }
    }
}
