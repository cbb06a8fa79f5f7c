use super::*;

#[test]
fn every_error_and_refusal_maps_to_its_code() {
    let errors = [
        (
            SubmitError::Invalid(Violations::one("lines[0].qty", "must be greater than zero")),
            Code::InvalidArgument,
        ),
        (SubmitError::Busy { capacity: 1 }, Code::ResourceExhausted),
        (SubmitError::FailStopped("disk".into()), Code::Unavailable),
        (
            SubmitError::Log(inv_engine::LogError::Io("disk".into())),
            Code::Unavailable,
        ),
    ];
    let refusals = [
        (
            Refusal::KeyConflict {
                key: "Reserve:r1".into(),
                field: "ttl_ms".into(),
                reason: "differs".into(),
            },
            Code::AlreadyExists,
            ErrorReason::KeyReused,
        ),
        (
            Refusal::ReservationIdInUse {
                reservation_id: "r1".into(),
                state: HoldState::Open,
            },
            Code::AlreadyExists,
            ErrorReason::IdInUse,
        ),
        (
            Refusal::ReturnIdInUse("ret-1".into()),
            Code::AlreadyExists,
            ErrorReason::IdInUse,
        ),
        (
            Refusal::ReservationNotFound("r1".into()),
            Code::NotFound,
            ErrorReason::ReservationNotFound,
        ),
        (
            Refusal::ReturnNotFound("x".into()),
            Code::NotFound,
            ErrorReason::ReturnNotFound,
        ),
        (
            Refusal::NotHeld {
                field: "lines[0]".into(),
                reason: "not held".into(),
            },
            Code::FailedPrecondition,
            ErrorReason::NotHeld,
        ),
        (
            Refusal::NotQuarantined {
                return_id: "ret-1".into(),
                sku: "s".into(),
                location: "l".into(),
                requested: 2,
                quarantined: 1,
            },
            Code::FailedPrecondition,
            ErrorReason::NotQuarantined,
        ),
    ];
    let failures = errors
        .iter()
        .map(|(error, code)| (submit_error(error), *code, None))
        .chain(
            refusals
                .iter()
                .map(|(refusal, code, reason)| (refused(refusal), *code, Some(*reason))),
        );
    for (failure, code, reason) in failures {
        if let Some(reason) = reason {
            assert_eq!(failure.reason, reason, "{}", failure.message);
        }
        let status = Status::from(failure);
        assert_eq!(status.code(), code, "{}", status.message());
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.domain, DOMAIN);
    }
}

#[test]
fn snapshot_and_reconciliation_errors_map_to_their_codes_naming_the_field() {
    let cases = [
        (
            push_error(&PushError::Invalid(Violations::one(
                "as_of_ms",
                "older than the history",
            ))),
            Code::InvalidArgument,
            ErrorReason::InvalidField,
            "header.as_of_ms",
        ),
        (
            push_error(&PushError::Invalid(Violations::one(
                "rows[7].sku",
                "must not be empty",
            ))),
            Code::InvalidArgument,
            ErrorReason::InvalidField,
            "rows[7].sku",
        ),
        (
            push_error(&PushError::Conflict {
                snapshot_id: "s".into(),
                field: "rows".into(),
            }),
            Code::AlreadyExists,
            ErrorReason::KeyReused,
            "rows",
        ),
        (
            push_error(&PushError::Incomplete("checksum differs".into())),
            Code::InvalidArgument,
            ErrorReason::SnapshotIncomplete,
            "summary.checksum",
        ),
        (
            store_error(&StoreError::UploadInProgress("s".into())),
            Code::Aborted,
            ErrorReason::SnapshotUploadInProgress,
            "header.snapshot_id",
        ),
        (
            reconcile_error(&ReconcileError::NotFound("s".into())),
            Code::NotFound,
            ErrorReason::SnapshotNotFound,
            "snapshot_id",
        ),
        (
            reconcile_error(&ReconcileError::TooOld {
                snapshot_id: "s".into(),
                history_start_ms: 5,
            }),
            Code::FailedPrecondition,
            ErrorReason::SnapshotTooOld,
            "snapshot_id",
        ),
        (
            refused(&Refusal::DriftNotHeld {
                snapshot_id: "s".into(),
                sku: "a".into(),
                location: "b".into(),
            }),
            Code::FailedPrecondition,
            ErrorReason::DriftNotHeld,
            "snapshot_id",
        ),
    ];
    for (failure, code, reason, field) in cases {
        assert_eq!(
            (failure.code, failure.reason),
            (code, reason),
            "{failure:?}"
        );
        assert_eq!(failure.violations[0].field, field, "{failure:?}");
        let status = Status::from(failure);
        assert_eq!(status.code(), code);
    }
    let busy = Failure::reconciliation_in_progress();
    assert_eq!(
        (busy.code, busy.reason),
        (Code::Aborted, ErrorReason::ReconciliationInProgress)
    );
}

#[test]
fn item_fields_are_placed_under_their_item() {
    let failure = Failure::invalid_field("lines[0].qty", "must be greater than zero")
        .map_fields(|f| format!("sales[3].{f}"));
    let item = failure.into_item_error();
    assert_eq!(item.field, "sales[3].lines[0].qty");
    assert!(item.message.contains("sales[3].lines[0].qty"));
    assert_eq!(item.code, Code::InvalidArgument as u32);
}

#[test]
fn every_violation_is_in_the_bad_request_and_the_message_the_first_leading() {
    let mut violations = Violations::new();
    for field in ["reservation_id", "lines[0].qty", "ttl_ms"] {
        violations.push(field, "wrong");
    }
    let status = Status::from(Failure::invalid(violations));
    assert!(
        status
            .message()
            .starts_with("invalid reservation_id: wrong; ")
    );
    let bad = status.get_details_bad_request().expect("a BadRequest");
    let fields: Vec<_> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["reservation_id", "lines[0].qty", "ttl_ms"]);
    // Past the listing limit: counted, in the message and the ErrorInfo.
    let mut many = Violations::new();
    let limit = inv_engine::limits::VIOLATIONS_LISTED_MAX;
    for i in 0..limit + 3 {
        many.push(format!("lines[{i}].qty"), "wrong");
    }
    let status = Status::from(Failure::invalid(many));
    assert!(
        status.message().ends_with("; and 3 more not listed"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.metadata["violations_unlisted"], "3");
    let bad = status.get_details_bad_request().expect("a BadRequest");
    assert_eq!(bad.field_violations.len(), limit);
}

#[test]
fn a_reused_key_names_the_differing_field_in_error_info_and_bad_request() {
    let status = Status::from(refused(&Refusal::KeyConflict {
        key: "Reserve:r1".into(),
        field: "lines[1].qty".into(),
        reason: "differs from the request first sent under this key".into(),
    }));
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("lines[1].qty"), "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "KEY_REUSED");
    assert_eq!(info.metadata["field"], "lines[1].qty");
    let bad = status.get_details_bad_request().expect("a BadRequest");
    assert_eq!(bad.field_violations[0].field, "lines[1].qty");
}

#[test]
fn only_tonics_decode_limit_becomes_message_too_large() {
    let tonic = Status::out_of_range(
        "Error, decoded message length too large: found 10485765 bytes, the limit is: \
         8388608 bytes",
    );
    let failure = decode_limit(&tonic, 8_388_608).expect("the decode limit");
    assert_eq!(
        (failure.code, failure.reason),
        (Code::ResourceExhausted, ErrorReason::MessageTooLarge)
    );
    assert!(
        failure.message.contains("8388608 bytes"),
        "{}",
        failure.message
    );
    let status = Status::from(failure);
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.metadata["limit_bytes"], "8388608");
    assert_eq!(info.metadata["found_bytes"], "10485765");
    // Our own OUT_OF_RANGE (it has an ErrorInfo) and other statuses pass untouched.
    let ours = Status::from(Failure::lsn_ahead_of_log("after_lsn", 9, 3));
    assert!(decode_limit(&ours, 8_388_608).is_none());
    assert!(decode_limit(&Status::out_of_range("other"), 8_388_608).is_none());
    assert!(decode_limit(&Status::internal("decoded message length too large"), 1).is_none());
}
