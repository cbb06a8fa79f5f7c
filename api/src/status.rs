//! The one mapping from engine errors and refusing outcomes to gRPC statuses.
//!
//! Every failure becomes a [`Failure`] first: a canonical code, a machine-readable
//! [`ErrorReason`], the offending fields (every violation of a malformed request, the first
//! leading; otherwise the one field to blame, if any) and a message. A unary call turns it into
//! a `tonic::Status` carrying a `google.rpc.ErrorInfo` (domain [`DOMAIN`]; the field to blame
//! as its `field` metadata) and, for INVALID_ARGUMENT and KEY_REUSED, a `google.rpc.BadRequest`
//! with every field violation (or the field that differs from the request first sent under the
//! key); a batch call or a Session request turns it into an `ItemError`, whose one `field` is
//! the first violation's and whose message names them all. One mapping for all keeps a bad sale
//! in a batch and the same sale sent alone answering alike.
//!
//! | engine says | code | reason | recorded under the key |
//! |---|---|---|---|
//! | `SubmitError::Invalid`, conversion errors (every violation) | INVALID_ARGUMENT | INVALID_FIELD | no |
//! | `Refusal::KeyConflict` (the path that differs, `lines[1].qty`) | ALREADY_EXISTS | KEY_REUSED | no |
//! | `Refusal::ReservationIdInUse` / `ReturnIdInUse` | ALREADY_EXISTS | ID_IN_USE | no |
//! | `Refusal::ReservationNotFound` / `ReturnNotFound` | NOT_FOUND | RESERVATION_NOT_FOUND / RETURN_NOT_FOUND | no |
//! | `Refusal::NotHeld` / `NotQuarantined` | FAILED_PRECONDITION | NOT_HELD / NOT_QUARANTINED | no |
//! | `Refusal::HoldNotLapsed` (the expiry sweep's own; never reaches a client) | INTERNAL | INTERNAL | no |
//! | `Outcome::Expired` | FAILED_PRECONDITION | HOLD_EXPIRED | yes |
//! | `Outcome::HoldAlreadyEnded(state)` | FAILED_PRECONDITION | HOLD_ALREADY_{COMMITTED,RELEASED,EXPIRED} | yes |
//! | `SubmitError::Busy`, a concurrency budget used up | RESOURCE_EXHAUSTED | LOG_FULL / OVERLOADED | no |
//! | `SubmitError::FailStopped`, `SubmitError::Log` | UNAVAILABLE | FAIL_STOPPED | no |
//! | `SubmitError::MemoryExhausted` (past `--memory-limit-bytes`) | RESOURCE_EXHAUSTED | MEMORY_EXHAUSTED | no |
//! | a request message over `--request-bytes-max` (tonic's OUT_OF_RANGE, see [`decode_limit`]) | RESOURCE_EXHAUSTED | MESSAGE_TOO_LARGE | no |
//! | `SubmitError::Archive` (the key archive could not be read) | UNAVAILABLE | ARCHIVE_UNAVAILABLE | no |
//! | `Refusal::DriftNotHeld` | FAILED_PRECONDITION | DRIFT_NOT_HELD | no |
//! | `Refusal::StoreNotFound` / `StoreAnomalyNotFound` | NOT_FOUND | STORE_NOT_FOUND / STORE_ANOMALY_NOT_FOUND | no |
//! | `Refusal::ReconciliationNotRunning` (the run's own; never reaches a client) | INTERNAL | INTERNAL | no |
//! | no credential or an unknown one (`auth`) | UNAUTHENTICATED | UNAUTHENTICATED | no |
//! | a role without the permission (`auth`; ErrorInfo `permission`) | PERMISSION_DENIED | PERMISSION_DENIED | no |
//!
//! Snapshots and reconciliation (`reconcile`) are not commands, but map the same way:
//!
//! | engine says | code | reason |
//! |---|---|---|
//! | `PushError::Invalid` (every header field, every `rows[i].*` of a chunk), a malformed or out-of-order message, a chunk over its limits | INVALID_ARGUMENT | INVALID_FIELD |
//! | `StoreError::DuplicateRow` | INVALID_ARGUMENT | INVALID_FIELD |
//! | `PushError::Incomplete`, a stream that ended or broke before its summary | INVALID_ARGUMENT / CANCELLED | SNAPSHOT_INCOMPLETE |
//! | `PushError::Conflict` (the id was pushed with other content), `StoreError::AlreadyStored` | ALREADY_EXISTS | KEY_REUSED |
//! | `StoreError::UploadInProgress` | ABORTED | SNAPSHOT_UPLOAD_IN_PROGRESS |
//! | another reconciliation is running | ABORTED | RECONCILIATION_IN_PROGRESS |
//! | `ReconcileError::NotFound` | NOT_FOUND | SNAPSHOT_NOT_FOUND |
//! | `ReconcileError::NotStaged` | FAILED_PRECONDITION | SNAPSHOT_NOT_STAGED |
//! | `ReconcileError::TooOld` | FAILED_PRECONDITION | SNAPSHOT_TOO_OLD |
//! | `ReconcileError::Busy` | RESOURCE_EXHAUSTED | LOG_FULL |
//! | `ReconcileError::Submit` / `Log` | as `SubmitError` |
//! | `StoreError::Io`, `ReconcileError::Unexpected` | INTERNAL | INTERNAL |
//!
//! RESOURCE_EXHAUSTED and UNAVAILABLE mean nothing was applied (or, for a log failure after the
//! append, nothing is promised): retrying the same request is always safe, because every write
//! is idempotent.

use inv_engine::reconcile::{PushError, ReconcileError, StoreError};
use inv_engine::{HoldState, Lsn, Outcome, Refusal, SubmitError, Violations};
use inv_proto::v1 as pb;
use pb::ErrorReason;
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo` domain of every error this service returns.
pub const DOMAIN: &str = "inventory.v1";

/// One field that is wrong, by its path in the request (`lines[2].qty`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// A failed call or batch item, before it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub reason: ErrorReason,
    pub message: String,
    /// For INVALID_ARGUMENT: every violation found (at least one), up to the listing limit
    /// (`inv_engine::limits::VIOLATIONS_LISTED_MAX`). For other codes: at most one, the field
    /// to blame, if any.
    pub violations: Vec<FieldViolation>,
    /// For INVALID_ARGUMENT: violations found past the listing limit, counted only.
    pub violations_unlisted: u32,
    /// Extra machine-readable facts (the LSN that recorded a refusal, a hold's state).
    pub metadata: Vec<(&'static str, String)>,
    /// For QUOTA_EXCEEDED: when to retry, sent as a `google.rpc.RetryInfo`.
    pub retry_delay: Option<Duration>,
}

impl Failure {
    fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            violations: Vec::new(),
            violations_unlisted: 0,
            metadata: Vec::new(),
            retry_delay: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>, description: impl Into<String>) -> Self {
        self.violations.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
        self
    }

    fn with_metadata(mut self, key: &'static str, value: impl ToString) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }

    /// INVALID_ARGUMENT listing every violation, the first leading; the message names them
    /// all (the listed ones in full, then how many more were found).
    pub fn invalid(violations: Violations) -> Self {
        debug_assert!(!violations.is_empty(), "an invalid request names a field");
        let unlisted = violations.unlisted();
        let violations: Vec<FieldViolation> = violations
            .listed()
            .iter()
            .map(|v| FieldViolation {
                field: v.field.clone(),
                description: v.reason.clone(),
            })
            .collect();
        let mut failure = Self {
            violations,
            violations_unlisted: unlisted,
            ..Self::new(Code::InvalidArgument, ErrorReason::InvalidField, "")
        };
        failure.message = failure.invalid_message();
        if unlisted > 0 {
            failure = failure.with_metadata("violations_unlisted", unlisted);
        }
        failure
    }

    /// INVALID_ARGUMENT for one field.
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::invalid(Violations::one(field, description))
    }

    /// The message of an INVALID_ARGUMENT: every violation listed, the first leading.
    fn invalid_message(&self) -> String {
        let mut message = self
            .violations
            .iter()
            .map(|v| format!("invalid {}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        if self.violations_unlisted > 0 {
            message.push_str(&format!(
                "; and {} more not listed",
                self.violations_unlisted
            ));
        }
        message
    }

    /// RESOURCE_EXHAUSTED: a request message larger than the server decodes. `found_bytes`
    /// is the message's size when known.
    pub fn message_too_large(limit_bytes: usize, found_bytes: Option<u64>) -> Self {
        let size = found_bytes.map_or_else(String::new, |n| format!(" ({n} bytes)"));
        let failure = Self::new(
            Code::ResourceExhausted,
            ErrorReason::MessageTooLarge,
            format!(
                "the request message{size} is larger than the server's limit of {limit_bytes} \
                 bytes (--request-bytes-max); nothing was read or applied: split it (fewer \
                 items per batch, smaller chunks) and resend"
            ),
        )
        .with_metadata("limit_bytes", limit_bytes);
        match found_bytes {
            Some(n) => failure.with_metadata("found_bytes", n),
            None => failure,
        }
    }

    /// RESOURCE_EXHAUSTED: a concurrency budget of this server is used up.
    pub fn overloaded(what: &str, limit: usize) -> Self {
        Self::new(
            Code::ResourceExhausted,
            ErrorReason::Overloaded,
            format!("{what}: {limit} already in progress; retry with back-off"),
        )
        .with_metadata("limit", limit)
    }

    /// UNAVAILABLE: the server is draining.
    pub fn shutting_down(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, ErrorReason::ShuttingDown, message)
    }

    /// OUT_OF_RANGE: a resume point past the end of the log.
    pub fn lsn_ahead_of_log(field: &str, lsn: u64, head: u64) -> Self {
        Self::new(
            Code::OutOfRange,
            ErrorReason::LsnAheadOfLog,
            format!("{field} {lsn} is beyond the end of the log (last lsn {head})"),
        )
        .with_field(field, "beyond the end of the log")
        .with_metadata("last_lsn", head)
    }

    pub fn store_not_found(store_id: &str) -> Self {
        Self::new(
            Code::NotFound,
            ErrorReason::StoreNotFound,
            format!("store {store_id} has posted no sales"),
        )
        .with_field("store_id", "unknown store")
    }

    pub fn reservation_not_found(reservation_id: &str) -> Self {
        Self::new(
            Code::NotFound,
            ErrorReason::ReservationNotFound,
            format!("reservation {reservation_id} not found"),
        )
        .with_field("reservation_id", "unknown reservation")
    }

    pub fn snapshot_not_found(snapshot_id: &str) -> Self {
        Self::new(
            Code::NotFound,
            ErrorReason::SnapshotNotFound,
            format!("snapshot {snapshot_id} not found"),
        )
        .with_field("snapshot_id", "unknown snapshot")
    }

    /// A push that did not end with a matching summary: nothing was staged. `code` is
    /// INVALID_ARGUMENT when the client's messages are to blame, CANCELLED when the stream
    /// broke off.
    pub fn snapshot_incomplete(code: Code, field: &str, message: impl Into<String>) -> Self {
        let description = message.into();
        let message = format!("incomplete push ({field}): {description}");
        Self::new(code, ErrorReason::SnapshotIncomplete, message).with_field(field, description)
    }

    /// ABORTED: at most one reconciliation runs at a time.
    pub fn reconciliation_in_progress() -> Self {
        Self::new(
            Code::Aborted,
            ErrorReason::ReconciliationInProgress,
            "another reconciliation is running (at most one runs at a time); nothing was done: \
             retry once it has ended",
        )
    }

    /// UNAUTHENTICATED: no credential, or one no principal has (see `auth`).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, ErrorReason::Unauthenticated, message)
    }

    /// PERMISSION_DENIED: the caller lacks `permission` (its name also in the ErrorInfo).
    pub fn permission_denied(permission: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            message,
        )
        .with_metadata("permission", permission)
    }

    /// RESOURCE_EXHAUSTED: the principal is over its call rate (see `auth`); nothing was read.
    /// Carries a RetryInfo with `delay`, the time until it may call again.
    pub fn quota_exceeded(
        principal: &str,
        calls_per_second: u32,
        delay: Duration,
        message: impl Into<String>,
    ) -> Self {
        let mut failure = Self::new(Code::ResourceExhausted, ErrorReason::QuotaExceeded, message)
            .with_metadata("principal", principal)
            .with_metadata("calls_per_second", calls_per_second);
        failure.retry_delay = Some(delay);
        failure
    }

    /// INTERNAL: a server bug (an outcome that does not belong to the command, a panicked
    /// task). Logged where it is raised.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, ErrorReason::Internal, message)
    }

    /// Rewrites every field path, e.g. to place an item's fields under `sales[3].`.
    pub fn map_fields(mut self, map: impl Fn(&str) -> String) -> Self {
        for violation in &mut self.violations {
            violation.field = map(&violation.field);
        }
        if self.code == Code::InvalidArgument {
            self.message = self.invalid_message();
        }
        self
    }

    /// The item error of a batch call (or a Session request). Its `field` has room for one
    /// path, the first violation's; the message names every violation.
    pub fn into_item_error(self) -> pb::ItemError {
        pb::ItemError {
            code: self.code as u32,
            reason: self.reason as i32,
            field: self
                .violations
                .first()
                .map(|v| v.field.clone())
                .unwrap_or_default(),
            message: self.message,
        }
    }

    /// The reason as `google.rpc.ErrorInfo` wants it: the enum name without its prefix.
    pub fn reason_name(&self) -> &'static str {
        let name = self.reason.as_str_name();
        name.strip_prefix("ERROR_REASON_").unwrap_or(name)
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Status {
        let mut metadata: HashMap<String, String> = failure
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        if failure.code != Code::InvalidArgument
            && let Some(violation) = failure.violations.first()
        {
            metadata.insert("field".to_owned(), violation.field.clone());
        }
        let mut details = ErrorDetails::with_error_info(failure.reason_name(), DOMAIN, metadata);
        // A BadRequest names what to fix in the request: every malformed field, or the field
        // that differs from the request first sent under a reused key.
        if failure.code == Code::InvalidArgument || failure.reason == ErrorReason::KeyReused {
            for violation in &failure.violations {
                details.add_bad_request_violation(&violation.field, &violation.description);
            }
        }
        if let Some(delay) = failure.retry_delay {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(failure.code, failure.message, details)
    }
}

/// The failure for an error the engine returned for a command.
pub fn submit_error(error: &SubmitError) -> Failure {
    match error {
        SubmitError::Invalid(violations) => Failure::invalid(violations.clone()),
        SubmitError::Busy { capacity } => Failure::new(
            Code::ResourceExhausted,
            ErrorReason::LogFull,
            error.to_string(),
        )
        .with_metadata("capacity", capacity),
        SubmitError::FailStopped(_) | SubmitError::Log(_) => Failure::new(
            Code::Unavailable,
            ErrorReason::FailStopped,
            error.to_string(),
        ),
        SubmitError::MemoryExhausted {
            used_bytes,
            limit_bytes,
        } => Failure::new(
            Code::ResourceExhausted,
            ErrorReason::MemoryExhausted,
            error.to_string(),
        )
        .with_metadata("used_bytes", used_bytes)
        .with_metadata("limit_bytes", limit_bytes),
        SubmitError::Archive(_) => Failure::new(
            Code::Unavailable,
            ErrorReason::ArchiveUnavailable,
            error.to_string(),
        ),
        other => Failure::internal(format!("unexpected engine error: {other}")),
    }
}

/// The failure for a refusal: the ledger's state does not allow the command (nothing changed,
/// nothing recorded).
pub fn refused(refusal: &Refusal) -> Failure {
    let message = refusal.to_string();
    match refusal {
        Refusal::KeyConflict { key, field, reason } => {
            Failure::new(Code::AlreadyExists, ErrorReason::KeyReused, message)
                .with_field(field.clone(), reason.clone())
                .with_metadata("key", key)
        }
        Refusal::ReservationIdInUse { state, .. } => {
            Failure::new(Code::AlreadyExists, ErrorReason::IdInUse, message)
                .with_field("reservation_id", "still names a remembered hold")
                .with_metadata("state", format!("{state:?}").to_lowercase())
        }
        Refusal::ReturnIdInUse(_) => {
            Failure::new(Code::AlreadyExists, ErrorReason::IdInUse, message)
                .with_field("return_id", "still has units in quarantine")
        }
        Refusal::ReservationNotFound(id) => Failure::reservation_not_found(id),
        Refusal::ReturnNotFound(id) => {
            Failure::new(Code::NotFound, ErrorReason::ReturnNotFound, message)
                .with_field("return_id", format!("unknown return {id}"))
        }
        Refusal::NotHeld { field, reason } => {
            Failure::new(Code::FailedPrecondition, ErrorReason::NotHeld, message)
                .with_field(field.clone(), reason)
        }
        Refusal::NotQuarantined { quarantined, .. } => Failure::new(
            Code::FailedPrecondition,
            ErrorReason::NotQuarantined,
            message,
        )
        .with_field("qty", "more than the return has in quarantine")
        .with_metadata("quarantined", quarantined),
        Refusal::DriftNotHeld { .. } => {
            Failure::new(Code::FailedPrecondition, ErrorReason::DriftNotHeld, message)
                .with_field("snapshot_id", "holds no drift at this position")
        }
        Refusal::StoreNotFound(id) => Failure::store_not_found(id),
        Refusal::StoreAnomalyNotFound { .. } => {
            Failure::new(Code::NotFound, ErrorReason::StoreAnomalyNotFound, message)
                .with_field("txn_id", "no sequence anomaly of this store")
        }
        other => Failure::internal(format!("unexpected refusal: {other}")),
    }
}

/// The failure for a push the engine refused. Header fields are named under `header.`, rows
/// by their index in the whole snapshot (`rows[1200].on_hand`).
pub fn push_error(error: &PushError) -> Failure {
    match error {
        PushError::Invalid(violations) => Failure::invalid(snapshot_fields(violations.clone())),
        PushError::Conflict { field, .. } => Failure::new(
            Code::AlreadyExists,
            ErrorReason::KeyReused,
            error.to_string(),
        )
        .with_field(
            field.clone(),
            "differs from the snapshot first pushed under this id",
        ),
        PushError::Incomplete(why) => Failure::snapshot_incomplete(
            Code::InvalidArgument,
            "summary.checksum",
            format!("{why}; nothing was staged"),
        ),
        PushError::Store(error) => store_error(error),
        other => Failure::internal(format!("unexpected push error: {other}")),
    }
}

/// A snapshot's violations named as the client sent them: the header's fields under
/// `header.`; rows (`rows[12].sku`) and chunks as they are.
pub fn snapshot_fields(violations: Violations) -> Violations {
    violations.map_fields(|field| {
        if field.starts_with("rows") || field.starts_with("chunk") {
            field.to_owned()
        } else {
            format!("header.{field}")
        }
    })
}

/// The failure for a status tonic answered a request with before any of our code saw the
/// request, if it is the decode limit's: tonic says OUT_OF_RANGE ("decoded message length too
/// large"), where gRPC's convention (and this contract) is RESOURCE_EXHAUSTED with a reason.
/// Our own OUT_OF_RANGE answers always carry an ErrorInfo; tonic's never do.
pub fn decode_limit(status: &Status, limit_bytes: usize) -> Option<Failure> {
    const TONIC_TOO_LARGE: &str = "decoded message length too large";
    if status.code() != Code::OutOfRange
        || !status.details().is_empty()
        || !status.message().contains(TONIC_TOO_LARGE)
    {
        return None;
    }
    // "... found {len} bytes, the limit is: {limit} bytes"
    let found_bytes = status
        .message()
        .split("found ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    Some(Failure::message_too_large(limit_bytes, found_bytes))
}

/// The failure for an error of the snapshot store.
pub fn store_error(error: &StoreError) -> Failure {
    let message = error.to_string();
    match error {
        StoreError::UploadInProgress(_) => Failure::new(
            Code::Aborted,
            ErrorReason::SnapshotUploadInProgress,
            format!("{message}; retry once it has ended"),
        )
        .with_field("header.snapshot_id", "being pushed by another stream"),
        // `Push::begin` answers a stored id as a retry; this only shows if that ever changes.
        StoreError::AlreadyStored(_) => {
            Failure::new(Code::AlreadyExists, ErrorReason::KeyReused, message)
                .with_field("header.snapshot_id", "names a stored snapshot")
        }
        StoreError::DuplicateRow { index, .. } => {
            Failure::invalid_field(format!("rows[{index}]"), message)
        }
        StoreError::Io(_) => {
            tracing::error!(%error, "the snapshot store failed");
            Failure::internal(message)
        }
        other => Failure::internal(format!("unexpected snapshot store error: {other}")),
    }
}

/// The failure for a reconciliation that could not run or finish.
pub fn reconcile_error(error: &ReconcileError) -> Failure {
    let message = error.to_string();
    match error {
        ReconcileError::NotFound(id) => Failure::snapshot_not_found(id),
        ReconcileError::NotStaged { status, .. } => Failure::new(
            Code::FailedPrecondition,
            ErrorReason::SnapshotNotStaged,
            message,
        )
        .with_field("snapshot_id", format!("the snapshot is {status}")),
        ReconcileError::TooOld {
            history_start_ms, ..
        } => Failure::new(
            Code::FailedPrecondition,
            ErrorReason::SnapshotTooOld,
            format!(
                "{message}: its as_of_ms lies before the history window \
                 (--reconcile-history-ms); it is marked failed, push a newer snapshot"
            ),
        )
        .with_field("snapshot_id", "older than the history window")
        .with_metadata("history_start_ms", history_start_ms),
        ReconcileError::Busy => {
            Failure::new(Code::ResourceExhausted, ErrorReason::LogFull, message)
        }
        ReconcileError::Submit(error) => submit_error(error),
        ReconcileError::Log(error) => submit_error(&SubmitError::Log(error.clone())),
        ReconcileError::Store(error) => store_error(error),
        other => {
            tracing::error!(error = %other, "a reconciliation failed unexpectedly");
            Failure::internal(message)
        }
    }
}

/// The failure for an outcome that refuses a hold command (commit, release or extend of a hold
/// that ended or expired). `None` for every other outcome. The refusal was recorded at `lsn`,
/// so a retry gets the same answer.
pub fn recorded_refusal(outcome: &Outcome, lsn: Lsn) -> Option<Failure> {
    let failure = match outcome {
        Outcome::Expired => Failure::new(
            Code::FailedPrecondition,
            ErrorReason::HoldExpired,
            "the hold's TTL had passed; it is now expired",
        ),
        Outcome::HoldAlreadyEnded(state) => {
            let (reason, word) = match state {
                HoldState::Committed => (ErrorReason::HoldAlreadyCommitted, "committed"),
                HoldState::Released => (ErrorReason::HoldAlreadyReleased, "released"),
                HoldState::Expired => (ErrorReason::HoldAlreadyExpired, "expired"),
                HoldState::Open => {
                    return Some(Failure::internal(
                        "engine answered HoldAlreadyEnded(Open) for a hold",
                    ));
                }
            };
            Failure::new(
                Code::FailedPrecondition,
                reason,
                format!("the hold was already {word}"),
            )
            .with_metadata("state", word)
        }
        _ => return None,
    };
    Some(failure.with_metadata("lsn", lsn))
}

/// A blocking task that panicked or was cancelled.
pub fn join_error(error: &tokio::task::JoinError) -> Failure {
    tracing::error!(%error, "an engine call panicked");
    Failure::internal("the engine call did not complete")
}

#[cfg(test)]
mod tests;
