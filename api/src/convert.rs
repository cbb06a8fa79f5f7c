//! Proto <-> domain conversion.
//!
//! Decoding only translates: the engine validates every command's shape itself (ids, quantities,
//! line counts, TTL bounds) and names every offending field, so those rules live in one place.
//! What only the wire can get wrong is checked here: enum values that are unknown or
//! UNSPECIFIED, and batch envelopes that are too large. Every problem of a request is collected
//! into one INVALID_ARGUMENT (a `google.rpc.BadRequest` with a violation per field): a request
//! with a wire problem is also checked by the engine's rules ([`finish_command`]), so a client
//! fixes everything in one round trip.
//!
//! Reads are not commands, so the ids they name are checked here, with the engine's limits.

use crate::BATCH_ITEMS_MAX;
use crate::status::Failure;
use inv_engine::Violations;
use inv_engine::{
    AcknowledgeStoreAnomaly, Adjust, AdjustmentId, AnomalyAction, Availability, Channel, Command,
    Commit, Dispose, DispositionAction, DispositionId, Extend, HoldState, HoldView, Line, Location,
    Outcome, Receipt, RecordReturn, RecordSale, Release, RequestId, ReservationId, Reserve,
    ReturnDisposition, ReturnId, ReturnLine, SetSafetyStock, Sku, StoreAnomaly, StoreId,
    StoreStatus, TxnId,
};
use inv_proto::v1 as pb;

/// Field violations found while decoding one request (listed up to the engine's limit, like
/// the engine's own).
#[derive(Debug, Default)]
pub struct FieldErrors(Violations);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(field, description);
    }

    /// `value` if nothing was wrong, else one INVALID_ARGUMENT naming every violation.
    pub fn finish<T>(self, value: T) -> Result<T, Failure> {
        match self.0.into_result() {
            Ok(()) => Ok(value),
            Err(violations) => Err(Failure::invalid(violations)),
        }
    }
}

/// `command` if decoding found nothing wrong. Else one INVALID_ARGUMENT listing the engine's
/// violations of the rest of the command (which it would otherwise only report once the wire
/// problems are fixed) and then the wire's. A well-formed request is not checked here: the
/// engine checks it when it is submitted.
pub fn finish_command(errors: FieldErrors, command: Command) -> Result<Command, Failure> {
    if errors.0.is_empty() {
        return Ok(command);
    }
    let mut violations = command.violations();
    violations.extend(errors.0);
    Err(Failure::invalid(violations))
}

/// Refuses a batch envelope with no items or more than [`BATCH_ITEMS_MAX`].
pub fn check_batch_len(field: &str, len: usize) -> Result<(), Failure> {
    if len == 0 {
        return Err(Failure::invalid_field(field, "must not be empty"));
    }
    check_filter_len(field, len)
}

/// Refuses a filter list longer than [`BATCH_ITEMS_MAX`] (an empty filter means "all").
pub fn check_filter_len(field: &str, len: usize) -> Result<(), Failure> {
    if len > BATCH_ITEMS_MAX {
        return Err(Failure::invalid_field(
            field,
            format!("more than {BATCH_ITEMS_MAX} items"),
        ));
    }
    Ok(())
}

/// Why `id` could not name anything, if it could not: the rule the engine applies to the ids
/// in commands, applied by reads too.
pub use inv_engine::id_problem;

/// Checks an id named by a read.
pub fn check_id(errors: &mut FieldErrors, field: &str, id: &str) {
    if let Some(problem) = id_problem(id) {
        errors.push(field, problem);
    }
}

// ---------------------------------------------------------------------------------------------
// Requests -> commands

fn line(line: pb::Line) -> Line {
    Line {
        sku: Sku::new(line.sku),
        location: Location::new(line.location),
        qty: line.qty,
    }
}

pub fn reserve(request: pb::ReserveRequest) -> Reserve {
    Reserve {
        reservation_id: ReservationId::new(request.reservation_id),
        channel: Channel::new(request.channel),
        lines: request.lines.into_iter().map(line).collect(),
        ttl_ms: request.ttl_ms,
    }
}

pub fn commit(request: pb::CommitRequest) -> Command {
    Command::Commit(Commit {
        reservation_id: ReservationId::new(request.reservation_id),
        // proto3 cannot tell an absent list from an empty one; an empty list of lines would
        // be invalid anyway, so empty means "everything held".
        lines: (!request.lines.is_empty()).then(|| request.lines.into_iter().map(line).collect()),
    })
}

pub fn release(request: pb::ReleaseRequest) -> Command {
    Command::Release(Release {
        reservation_id: ReservationId::new(request.reservation_id),
    })
}

pub fn extend(request: pb::ExtendRequest) -> Command {
    Command::Extend(Extend {
        reservation_id: ReservationId::new(request.reservation_id),
        request_id: RequestId::new(request.request_id),
        ttl_ms: request.ttl_ms,
    })
}

pub fn sale(store_id: &str, sale: pb::Sale) -> Command {
    Command::RecordSale(RecordSale {
        store_id: StoreId::from(store_id),
        txn_id: TxnId::new(sale.txn_id),
        store_seq: sale.store_seq,
        occurred_at_ms: sale.occurred_at_ms,
        lines: sale.lines.into_iter().map(line).collect(),
    })
}

/// A return; field paths in the error are relative to the return (`lines[0].disposition`).
pub fn return_(request: pb::Return) -> Result<Command, Failure> {
    let mut errors = FieldErrors::default();
    let lines = request
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let disposition = match pb::ReturnDisposition::try_from(l.disposition) {
                Ok(pb::ReturnDisposition::Restock) => ReturnDisposition::Restock,
                Ok(pb::ReturnDisposition::Inspect) => ReturnDisposition::Inspect,
                Ok(pb::ReturnDisposition::Unspecified) => {
                    errors.push(
                        format!("lines[{i}].disposition"),
                        "must be RESTOCK or INSPECT",
                    );
                    ReturnDisposition::Restock
                }
                Err(_) => {
                    errors.push(
                        format!("lines[{i}].disposition"),
                        format!("unknown value {}", l.disposition),
                    );
                    ReturnDisposition::Restock
                }
            };
            ReturnLine {
                sku: Sku::new(l.sku),
                location: Location::new(l.location),
                qty: l.qty,
                disposition,
            }
        })
        .collect();
    let command = Command::RecordReturn(RecordReturn {
        return_id: ReturnId::new(request.return_id),
        lines,
    });
    finish_command(errors, command)
}

pub fn disposition(request: pb::DispositionRequest) -> Result<Command, Failure> {
    let mut errors = FieldErrors::default();
    let action = match pb::DispositionAction::try_from(request.action) {
        Ok(pb::DispositionAction::Restock) => DispositionAction::Restock,
        Ok(pb::DispositionAction::Scrap) => DispositionAction::Scrap,
        Ok(pb::DispositionAction::Unspecified) => {
            errors.push("action", "must be RESTOCK or SCRAP");
            DispositionAction::Scrap
        }
        Err(_) => {
            errors.push("action", format!("unknown value {}", request.action));
            DispositionAction::Scrap
        }
    };
    let command = Command::Dispose(Dispose {
        disposition_id: DispositionId::new(request.disposition_id),
        return_id: ReturnId::new(request.return_id),
        sku: Sku::new(request.sku),
        location: Location::new(request.location),
        qty: request.qty,
        action,
    });
    finish_command(errors, command)
}

pub fn adjust(request: pb::AdjustRequest) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::new(request.adjustment_id),
        sku: Sku::new(request.sku),
        location: Location::new(request.location),
        delta: request.delta,
        reason: request.reason.into(),
    })
}

pub fn set_safety_stock(request: pb::SetSafetyStockRequest) -> Command {
    Command::SetSafetyStock(SetSafetyStock {
        request_id: RequestId::new(request.request_id),
        sku: Sku::new(request.sku),
        location: Location::new(request.location),
        qty: request.qty,
    })
}

// ---------------------------------------------------------------------------------------------
// Domain -> responses

pub fn availability(
    sku: &str,
    location: &str,
    availability: Option<Availability>,
) -> pb::PositionAvailability {
    availability_owned(sku.to_owned(), location.to_owned(), availability)
}

/// [`availability`] with the ids moved in rather than copied (Check's hot path).
pub fn availability_owned(
    sku: String,
    location: String,
    availability: Option<Availability>,
) -> pb::PositionAvailability {
    let exists = availability.is_some();
    let a = availability.unwrap_or_default();
    pb::PositionAvailability {
        sku,
        location,
        exists,
        on_hand: a.on_hand,
        reserved: a.reserved,
        safety_stock: a.safety_stock,
        quarantined: a.quarantined,
        available: a.available,
        sellable: a.sellable(),
    }
}

pub fn totals(rows: &[pb::PositionAvailability]) -> pb::AvailabilityTotals {
    let mut total = pb::AvailabilityTotals::default();
    for row in rows {
        total.on_hand += row.on_hand;
        total.reserved += row.reserved;
        total.safety_stock += row.safety_stock;
        total.quarantined += row.quarantined;
        total.available += row.available;
        total.sellable += row.sellable;
    }
    total
}

pub fn hold_state(state: HoldState) -> pb::HoldState {
    match state {
        HoldState::Open => pb::HoldState::Open,
        HoldState::Committed => pb::HoldState::Committed,
        HoldState::Released => pb::HoldState::Released,
        HoldState::Expired => pb::HoldState::Expired,
    }
}

fn line_out(line: &Line) -> pb::Line {
    pb::Line {
        sku: line.sku.to_string(),
        location: line.location.to_string(),
        qty: line.qty,
    }
}

pub fn reservation(hold: &HoldView) -> pb::Reservation {
    pb::Reservation {
        reservation_id: hold.reservation_id.clone(),
        channel: hold.channel.clone(),
        lines: hold.lines.iter().map(line_out).collect(),
        state: hold_state(hold.state) as i32,
        expires_at_ms: hold.expires_at_ms,
        placed_lsn: hold.placed_lsn.0,
        placed_at_ms: hold.placed_at_ms,
        ended_at_ms: hold.ended_at_ms,
        placed_by: hold.placed_by.clone().unwrap_or_default(),
        ended_by: hold.ended_by.clone().unwrap_or_default(),
    }
}

fn unexpected(outcome: &Outcome, what: &str) -> Failure {
    tracing::error!(
        ?outcome,
        what,
        "the engine answered an outcome that does not fit"
    );
    Failure::internal(format!("unexpected outcome for {what}"))
}

/// `lines` are the reserve's lines as sent, to name each short line's position.
pub fn reserve_response(receipt: &Receipt, lines: &[Line]) -> Result<pb::ReserveResponse, Failure> {
    use pb::reserve_response::Result as R;
    let result = match &receipt.outcome {
        Outcome::Granted { expires_at_ms } => R::Granted(pb::ReserveGranted {
            expires_at_ms: *expires_at_ms,
        }),
        Outcome::Insufficient { short } => R::Rejected(pb::ReserveRejected {
            short_lines: short
                .iter()
                .map(|s| {
                    let line = lines.get(s.line_index as usize);
                    pb::ShortLine {
                        line_index: s.line_index,
                        sku: line.map(|l| l.sku.to_string()).unwrap_or_default(),
                        location: line.map(|l| l.location.to_string()).unwrap_or_default(),
                        requested: s.requested,
                        available: s.available,
                    }
                })
                .collect(),
        }),
        other => return Err(unexpected(other, "reserve")),
    };
    Ok(pb::ReserveResponse {
        lsn: receipt.lsn.0,
        duplicate: receipt.duplicate,
        result: Some(result),
    })
}

/// `hold` is the hold after the commit, to name each line (the outcome lists committed units
/// in the hold's line order).
pub fn commit_response(
    receipt: &Receipt,
    hold: Option<&HoldView>,
) -> Result<pb::CommitResponse, Failure> {
    let Outcome::Committed { committed } = &receipt.outcome else {
        return Err(unexpected(&receipt.outcome, "commit"));
    };
    let lines = committed
        .iter()
        .enumerate()
        .map(|(i, &committed)| {
            let line = hold.and_then(|h| h.lines.get(i));
            pb::CommittedLine {
                sku: line.map(|l| l.sku.to_string()).unwrap_or_default(),
                location: line.map(|l| l.location.to_string()).unwrap_or_default(),
                held: line.map_or(committed, |l| l.qty),
                committed,
            }
        })
        .collect();
    Ok(pb::CommitResponse {
        lsn: receipt.lsn.0,
        duplicate: receipt.duplicate,
        lines,
    })
}

pub fn recorded(receipt: &Receipt) -> pb::Recorded {
    pb::Recorded {
        lsn: receipt.lsn.0,
        duplicate: receipt.duplicate,
    }
}

/// One store's status; at most `gaps_max` gaps are listed (the count stays exact).
pub fn store_status(status: StoreStatus, gaps_max: usize) -> pb::StoreSequenceStatus {
    let gaps_truncated = status.gaps.len() > gaps_max;
    pb::StoreSequenceStatus {
        store_id: status.store_id,
        contiguous_seq: status.contiguous_seq,
        newest_seq: status.newest_seq,
        gaps: status
            .gaps
            .iter()
            .take(gaps_max)
            .map(|&(first, last)| pb::SeqGap { first, last })
            .collect(),
        missing_count: status.missing_count,
        gaps_truncated,
        sales_recorded: status.sales_recorded,
        seq_reused: status.seq_reused,
        gaps_abandoned: status.gaps_abandoned,
        duplicates_absorbed: status.duplicates_absorbed,
        newest_lag_ms: status.newest_lag_ms,
        newest_occurred_at_ms: status.newest_occurred_at_ms,
        anomalies: status.anomalies.iter().map(store_anomaly).collect(),
        anomalies_dropped: status.anomalies_dropped,
    }
}

fn store_anomaly(anomaly: &StoreAnomaly) -> pb::StoreSeqAnomaly {
    pb::StoreSeqAnomaly {
        txn_id: anomaly.txn_id.to_string(),
        store_seq: anomaly.store_seq,
        newest_seq: anomaly.newest_seq,
        occurred_at_ms: anomaly.occurred_at_ms,
        recorded_at_ms: anomaly.recorded_at_ms,
        lsn: anomaly.lsn.0,
    }
}

pub fn acknowledge_store_anomaly(
    request: pb::AcknowledgeStoreAnomalyRequest,
) -> Result<Command, Failure> {
    let mut errors = FieldErrors::default();
    let action = match pb::AnomalyAction::try_from(request.action) {
        Ok(pb::AnomalyAction::Accept) => AnomalyAction::Accept,
        Ok(pb::AnomalyAction::Dismiss) => AnomalyAction::Dismiss,
        Ok(pb::AnomalyAction::Unspecified) => {
            errors.push("action", "must be ACCEPT or DISMISS");
            AnomalyAction::Dismiss
        }
        Err(_) => {
            errors.push("action", format!("unknown value {}", request.action));
            AnomalyAction::Dismiss
        }
    };
    let command = Command::AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly {
        store_id: StoreId::new(request.store_id),
        txn_id: TxnId::new(request.txn_id),
        action,
    });
    finish_command(errors, command)
}

/// AcknowledgeStoreAnomaly's answer from its receipt.
pub fn anomaly_acknowledged(
    receipt: Receipt,
) -> Result<pb::AcknowledgeStoreAnomalyResponse, Failure> {
    match receipt.outcome {
        Outcome::StoreAnomalyAcknowledged {
            store_seq,
            accepted,
            gaps_abandoned,
        } => Ok(pb::AcknowledgeStoreAnomalyResponse {
            lsn: receipt.lsn.0,
            duplicate: receipt.duplicate,
            store_seq,
            accepted,
            gaps_abandoned,
        }),
        other => Err(Failure::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unspecified_enums_name_their_fields() {
        let request = pb::Return {
            return_id: "r1".into(),
            lines: vec![
                pb::ReturnLine {
                    sku: "a".into(),
                    location: "l".into(),
                    qty: 1,
                    disposition: 0,
                },
                pb::ReturnLine {
                    sku: "b".into(),
                    location: "l".into(),
                    qty: 1,
                    disposition: 42,
                },
            ],
        };
        let failure = return_(request).expect_err("both lines are invalid");
        let fields: Vec<_> = failure
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["lines[0].disposition", "lines[1].disposition"]);
    }

    #[test]
    fn a_wire_problem_is_listed_with_the_engines_violations_of_the_rest() {
        // Goal: an unknown enum is found while decoding, before the engine sees the command;
        // the answer still names the engine's violations too, so one round trip fixes all.
        let failure = disposition(pb::DispositionRequest {
            disposition_id: String::new(),
            return_id: "ret-1".into(),
            sku: "sku-1".into(),
            location: "dc-1".into(),
            qty: 0,
            action: 0,
        })
        .expect_err("invalid");
        let fields: Vec<_> = failure
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["disposition_id", "qty", "action"]);
    }

    #[test]
    fn an_empty_commit_list_commits_everything() {
        let Command::Commit(c) = commit(pb::CommitRequest {
            reservation_id: "r".into(),
            lines: vec![],
        }) else {
            panic!("a commit")
        };
        assert_eq!(c.lines, None);
    }
}
