//! The returns table: per return id, the units its INSPECT lines put in quarantine and have
//! not been disposed of yet. A return is remembered while it has units in quarantine, and for
//! the retention window after it was recorded.

use crate::types::{LocationId, ReturnId, Sku};
use foldhash::fast::FixedState;
use std::collections::HashMap;

#[derive(Clone)]
pub(super) struct ReturnRecord {
    pub at_ms: u64,
    /// Units still in quarantine per position, from this return's INSPECT lines.
    pub quarantined: Vec<(Sku, LocationId, u64)>,
}

impl ReturnRecord {
    /// Whether any of its units are still in quarantine.
    pub fn in_quarantine(&self) -> bool {
        self.quarantined.iter().any(|(_, _, q)| *q > 0)
    }
}

#[derive(Default)]
pub(super) struct Returns {
    pub by_id: HashMap<ReturnId, ReturnRecord, FixedState>,
}
