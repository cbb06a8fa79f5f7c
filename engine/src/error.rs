//! Errors, one enum per operation family (redb's shape).

use crate::types::Lsn;
use thiserror::Error;

/// Why a command was not accepted. None of these is recorded: nothing changed, and a corrected
/// request may be sent under the same key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The command is malformed; `field` names the offending field (`lines[2].qty`).
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The idempotency key was already used with a different payload.
    #[error("idempotency key {key} was already used with a different {field}")]
    KeyConflict { key: String, field: &'static str },
    #[error("reservation {0} not found")]
    ReservationNotFound(String),
    /// A commit named a line the hold does not have, or more units than it holds.
    #[error("{field}: {reason}")]
    NotHeld { field: String, reason: String },
    #[error("return {0} not found")]
    ReturnNotFound(String),
    /// A disposition asked for more units than the return has in quarantine at that position.
    #[error(
        "return {return_id} has {quarantined} units of {sku} in quarantine at {location}, not {requested}"
    )]
    NotQuarantined {
        return_id: String,
        sku: String,
        location: String,
        requested: u64,
        quarantined: u64,
    },
    /// The log's write queue is at its limit. Nothing was applied; retry the same command.
    #[error("write queue full ({capacity} events waiting to be made durable); retry later")]
    Busy { capacity: usize },
    /// The event log failed earlier; the engine refuses writes until restarted (fail-stop).
    #[error("engine stopped accepting writes after a log failure: {0}")]
    FailStopped(String),
    /// The log failed. If `submit` returns this, the event was not acknowledged (it may or
    /// may not survive a restart) and the engine is now fail-stopped.
    #[error("event log: {0}")]
    Log(#[from] LogError),
}

/// A failure of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("log i/o failed: {0}")]
    Io(String),
    #[error("log is full ({capacity} events waiting); retry later")]
    Full { capacity: usize },
    #[error("log closed")]
    Closed,
    #[error("log out of order: expected lsn {expected}, got {got}")]
    OutOfOrder { expected: Lsn, got: Lsn },
    #[error("log corrupt: {0}")]
    Corrupt(String),
    /// Events before `first_retained` were folded into a checkpoint and removed from the log.
    #[error("log trimmed: events before lsn {first_retained} are in the checkpoint")]
    Trimmed { first_retained: Lsn },
}

/// A replayed event did not fit the ledger: the log is corrupt or from another ledger.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("replay expected lsn {expected}, found {found}")]
    Gap { expected: Lsn, found: Lsn },
    #[error("event at lsn {lsn} does not apply: {reason}")]
    Inapplicable { lsn: Lsn, reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
}
