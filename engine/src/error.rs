//! Errors, one enum per operation family (redb's shape). Business refusals are not here: they
//! are values ([`crate::Refusal`], [`crate::Outcome`]).

use crate::limits::VIOLATIONS_LISTED_MAX;
use crate::types::Lsn;
use thiserror::Error;

/// One malformed field, by its path in the request as the client wrote it (`lines[2].qty`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

/// Every violation found in one request, in the order checked: the first leads the message.
/// Listing them all lets a client fix a request in one round trip. At most
/// [`VIOLATIONS_LISTED_MAX`] are kept and the rest only counted, so an error stays small
/// whatever the request (see the limit).
///
/// Empty, it owns no allocation: validating a well-formed request costs nothing, which
/// matters on the hot path (every Reserve is validated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    listed: Vec<Violation>,
    /// Violations found past the listing limit.
    unlisted: u32,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// One violation.
    pub fn one(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut violations = Self::new();
        violations.push(field, reason);
        violations
    }

    /// Notes that `field` is wrong. Callers format a field path only once something is wrong.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        if self.listed.len() < VIOLATIONS_LISTED_MAX {
            self.listed.push(Violation {
                field: field.into(),
                reason: reason.into(),
            });
        } else {
            self.unlisted = self.unlisted.saturating_add(1);
        }
    }

    /// Takes in every violation of `other`, after this one's.
    pub fn extend(&mut self, other: Violations) {
        for violation in other.listed {
            self.push(violation.field, violation.reason);
        }
        self.unlisted = self.unlisted.saturating_add(other.unlisted);
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The violations listed, the first leading.
    pub fn listed(&self) -> &[Violation] {
        &self.listed
    }

    /// The first violation found.
    pub fn first(&self) -> Option<&Violation> {
        self.listed.first()
    }

    /// How many more were found than are listed.
    pub fn unlisted(&self) -> u32 {
        self.unlisted
    }

    /// Rewrites every field path, e.g. to name a snapshot header's fields under `header.`.
    pub fn map_fields(mut self, map: impl Fn(&str) -> String) -> Self {
        for violation in &mut self.listed {
            violation.field = map(&violation.field);
        }
        self
    }

    /// `Ok` when nothing was found.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::error::Error for Violations {}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, v) in self.listed.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "invalid {}: {}", v.field, v.reason)?;
        }
        if self.unlisted > 0 {
            write!(f, "; and {} more not listed", self.unlisted)?;
        }
        Ok(())
    }
}

/// Why a command was not decided: malformed input, back-pressure, or a failed log. None of
/// these is recorded, and every one but `Invalid` is worth retrying unchanged (after a restart
/// for `FailStopped` and `Log`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The command is malformed: every violation, each naming its field (`lines[2].qty`).
    #[error("{0}")]
    Invalid(Violations),
    /// The log's write queue is at its limit. Nothing was applied; retry the same command.
    #[error("write queue full ({capacity} events waiting to be made durable); retry later")]
    Busy { capacity: usize },
    /// The event log failed earlier; the engine refuses writes until restarted (fail-stop).
    #[error("engine stopped accepting writes after a log failure: {0}")]
    FailStopped(String),
    /// The log failed. If `submit` returns this, the event was not acknowledged (it may or
    /// may not survive a restart) and the engine is now fail-stopped.
    #[error("event log: {0}")]
    Log(LogError),
    /// The key archive (the disk tier of idempotency records) could not be read, so whether
    /// the command is a retry is unknown. Nothing was applied and the engine keeps running;
    /// retry the same command.
    #[error("key archive: {0}; nothing was applied, retry")]
    Archive(LogError),
    /// The ledger's memory is past its hard limit: writes that add state are refused until
    /// eviction (keys moved to disk) or ending holds brings it back under. Reads, commits and
    /// releases keep working. Nothing was applied; retry later.
    #[error(
        "the engine's memory is at its limit ({used_bytes} of {limit_bytes} bytes); \
         nothing was applied, retry later"
    )]
    MemoryExhausted { used_bytes: u64, limit_bytes: u64 },
}

impl From<LogError> for SubmitError {
    /// A full queue is back-pressure (`Busy`), not a failure: "busy" has one name.
    fn from(error: LogError) -> Self {
        match error {
            LogError::Full { capacity } => SubmitError::Busy { capacity },
            error => SubmitError::Log(error),
        }
    }
}

impl SubmitError {
    /// True for errors after which the engine refuses writes until restarted.
    pub fn is_fail_stop(&self) -> bool {
        matches!(self, SubmitError::FailStopped(_) | SubmitError::Log(_))
    }
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
