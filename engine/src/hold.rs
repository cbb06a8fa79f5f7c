//! Holds: a marketplace's claim on units until it commits, releases, or the TTL passes.
//!
//! A hold is `Open` until exactly one of commit, release or expiry ends it; the ended states are
//! terminal. [`HoldState::can_transition`] is the whole state machine (sled's event verifier
//! shape), and every transition in the ledger asserts it.
//!
//! A hold is kept for its whole retention window, so it is stored small: its lines name their
//! sku by its slot in the position shards (skus are never removed, so the slot is the sku for
//! the life of the ledger) and its location and channel by interned ids, and a single-line
//! hold keeps its line inline.

use crate::types::{ChannelId, LocationId, Lsn};
use serde::{Deserialize, Serialize};

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

/// Where a sku's entry is: its position shard and its slot in that shard's table. Stable for
/// the life of the ledger, because skus are never removed; 8 bytes instead of the name's 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SkuSlot {
    /// At most `SHARDS_MAX - 1`, which fits in 16 bits.
    pub shard: u16,
    pub slot: u32,
}

impl SkuSlot {
    pub fn shard(self) -> usize {
        usize::from(self.shard)
    }
}

/// One held line. `qty` fits in u32 because a line is at most `QTY_MAX` (10^9) units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HoldLine {
    pub sku: SkuSlot,
    pub location: LocationId,
    pub qty: u32,
}

/// A hold's lines: most holds have one, kept inline (24 bytes either way, no allocation).
#[derive(Debug, Clone)]
pub(crate) enum HoldLines {
    One(HoldLine),
    Many(Box<[HoldLine]>),
}

impl HoldLines {
    pub fn new(lines: &[HoldLine]) -> Self {
        match lines {
            [line] => HoldLines::One(*line),
            _ => HoldLines::Many(lines.into()),
        }
    }
}

impl std::ops::Deref for HoldLines {
    type Target = [HoldLine];

    fn deref(&self) -> &[HoldLine] {
        match self {
            HoldLines::One(line) => std::slice::from_ref(line),
            HoldLines::Many(lines) => lines,
        }
    }
}

/// Who placed or ended a hold, as its entry stores it: 0 for no principal, else 1 + the name's
/// id in the principal table. Two bytes, so it fits in padding the hold (and its entry, for
/// who ended it) already had (a deployment names tens of principals, not thousands).
/// [`PrincipalRef::UNKNOWN`] is past the last: a name beyond 65,534, whose records are then
/// stored whole (see `ledger::hold_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PrincipalRef(pub u16);

impl PrincipalRef {
    pub const NONE: PrincipalRef = PrincipalRef(0);
    pub const UNKNOWN: PrincipalRef = PrincipalRef(u16::MAX);

    /// The reference to the name with `id` in the principal table.
    pub fn of(id: u32) -> PrincipalRef {
        match u16::try_from(id + 1) {
            Ok(n) if n != Self::UNKNOWN.0 => PrincipalRef(n),
            _ => Self::UNKNOWN,
        }
    }

    /// The name's id in the principal table; `None` for no principal and for `UNKNOWN`.
    pub fn id(self) -> Option<u32> {
        (self != Self::NONE && self != Self::UNKNOWN).then(|| u32::from(self.0) - 1)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub lines: HoldLines,
    pub channel: ChannelId,
    pub state: HoldState,
    /// Who placed it.
    pub placed_by: PrincipalRef,
    pub expires_at_ms: u64,
    pub placed_lsn: Lsn,
    pub placed_at_ms: u64,
    /// The event that ended the hold (`Lsn::ZERO` while open, or if unknown after loading a
    /// checkpoint): the ledger derives that command's recorded outcome from the hold.
    pub ended_lsn: Lsn,
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

    pub fn transition(&mut self, to: HoldState, lsn: Lsn, at_ms: u64) {
        assert!(
            self.state.can_transition(to),
            "hold transition {:?} -> {:?} is not allowed",
            self.state,
            to
        );
        self.state = to;
        self.ended_lsn = lsn;
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

    /// The sizes the per-hold memory budget is built on (see `benches/src/bin/memory.rs`).
    #[test]
    fn a_single_line_hold_is_small() {
        assert_eq!(size_of::<HoldLine>(), 16);
        assert_eq!(size_of::<HoldLines>(), 24);
        assert_eq!(size_of::<Hold>(), 72);
        assert_eq!(size_of::<Option<Hold>>(), 72);
    }
}
