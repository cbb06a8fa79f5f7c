//! Events: accepted commands with their decided outcome, in LSN order.
//!
//! An event records the command, the time used to decide it, and the outcome. Replay applies
//! the outcome's effects and never re-decides: a granted reserve is granted again even if the
//! replaying engine's clock says it would have expired, because what matters is what the
//! client was told. The ledger is exactly the fold of its events in LSN order.

use crate::command::Command;
use crate::outcome::Outcome;
use crate::types::Lsn;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub lsn: Lsn,
    /// Engine clock when the command was decided, milliseconds since the epoch.
    pub at_ms: u64,
    pub command: Command,
    pub outcome: Outcome,
}
