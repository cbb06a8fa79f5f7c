use super::*;
use crate::limits::VIOLATIONS_LISTED_MAX;
use xxhash_rust::xxh3::Xxh3;

fn fields(violations: &Violations) -> Vec<&str> {
    violations
        .listed()
        .iter()
        .map(|v| v.field.as_str())
        .collect()
}

#[test]
fn validation_lists_every_violation_in_field_order() {
    // Goal: a request wrong in several places names each place, the first leading, so a
    // client fixes them all in one round trip; a repeated position is one of them.
    let reserve = Command::Reserve(Reserve {
        reservation_id: ReservationId::from(""),
        channel: Channel::from("web"),
        lines: vec![
            Line::new("sku-1", "dc-1", 0),
            Line::new("", "dc-1", 1),
            Line::new("sku-1", "dc-1", 2),
        ],
        ttl_ms: 1,
    });
    let Err(SubmitError::Invalid(violations)) = reserve.validate() else {
        panic!("invalid: {:?}", reserve.validate())
    };
    assert_eq!(
        fields(&violations),
        [
            "reservation_id",
            "lines[0].qty",
            "lines[1].sku",
            "lines[2]",
            "ttl_ms"
        ]
    );
    assert!(violations.listed()[3].reason.contains("lines[0]"));
    assert!(
        violations
            .to_string()
            .starts_with("invalid reservation_id: must not be empty; "),
        "the first violation leads: {violations}"
    );
    let adjust = Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from("a1"),
        sku: Sku::from("s\n"),
        location: Location::from(""),
        delta: 0,
        reason: "x".repeat(TEXT_BYTES_MAX + 1).into(),
    });
    assert_eq!(
        fields(&adjust.violations()),
        ["sku", "location", "delta", "reason"]
    );
}

#[test]
fn a_valid_command_has_no_violations() {
    let reserve = Command::Reserve(Reserve {
        reservation_id: ReservationId::from("r1"),
        channel: Channel::from("web"),
        lines: vec![Line::new("sku-1", "dc-1", 1), Line::new("sku-2", "dc-1", 1)],
        ttl_ms: TTL_MS_MIN,
    });
    let violations = reserve.violations();
    assert!(violations.is_empty());
    assert_eq!(reserve.validate(), Ok(()));
}

#[test]
fn violations_past_the_listing_limit_are_counted_not_kept() {
    let lines = (0..LINES_MAX)
        .map(|i| Line::new(&format!("sku-{i}"), "dc-1", 0))
        .collect();
    let sale = Command::RecordSale(RecordSale {
        store_id: StoreId::from("store-1"),
        txn_id: TxnId::from("t1"),
        store_seq: 0,
        occurred_at_ms: 1,
        lines,
    });
    let violations = sale.violations();
    assert_eq!(violations.listed().len(), VIOLATIONS_LISTED_MAX);
    assert_eq!(
        violations.first().map(|v| v.field.as_str()),
        Some("store_seq")
    );
    assert_eq!(
        violations.unlisted() as usize,
        LINES_MAX + 1 - VIOLATIONS_LISTED_MAX
    );
    assert!(
        violations
            .to_string()
            .ends_with(&format!("and {} more not listed", violations.unlisted()))
    );
    // Too many lines: the count is the violation, and no line is looked at.
    let lines = (0..=LINES_MAX).map(|_| Line::new("", "", 0)).collect();
    let sale = Command::RecordSale(RecordSale {
        store_id: StoreId::from("store-1"),
        txn_id: TxnId::from("t1"),
        store_seq: 1,
        occurred_at_ms: 1,
        lines,
    });
    assert_eq!(fields(&sale.violations()), ["lines"]);
}

#[test]
fn lines_difference_names_the_first_line_and_field_that_differ() {
    let lines =
        |qty: u64, sku: &str| vec![Line::new("sku-1", "dc-1", 1), Line::new(sku, "dc-1", qty)];
    let original = lines(2, "sku-2");
    let same = lines(2, "sku-2");
    let cases = [
        (lines(3, "sku-2"), "lines[1].qty"),
        (lines(2, "sku-3"), "lines[1].sku"),
        (
            vec![Line::new("sku-1", "dc-2", 1), Line::new("sku-2", "dc-1", 2)],
            "lines[0].location",
        ),
        // The first difference wins, whatever follows.
        (
            vec![Line::new("sku-1", "dc-1", 9), Line::new("sku-9", "dc-1", 2)],
            "lines[0].qty",
        ),
        (same, "lines"),
    ];
    for (new, field) in cases {
        let (named, reason) =
            lines_difference(RequestLines::Lines(&original), RequestLines::Lines(&new));
        assert_eq!(named, field, "{new:?}");
        assert!(reason.starts_with(DIFFERS_FROM_ORIGINAL), "{reason}");
    }
    let (field, reason) = lines_difference(
        RequestLines::Lines(&original),
        RequestLines::Lines(&original[..1]),
    );
    assert_eq!(
        (
            field.as_str(),
            reason.ends_with("1 lines, the original had 2")
        ),
        ("lines", true),
        "{reason}"
    );
    let (field, reason) = lines_difference(RequestLines::All, RequestLines::Lines(&original));
    assert_eq!(field, "lines");
    assert!(
        reason.contains("2 lines listed, the original listed none"),
        "{reason}"
    );
    let (field, reason) = lines_difference(RequestLines::Lines(&original), RequestLines::All);
    assert_eq!(field, "lines");
    assert!(reason.contains("the original listed 2"), "{reason}");
    let ret = |disposition| {
        [ReturnLine {
            sku: Sku::from("sku-1"),
            location: Location::from("dc-1"),
            qty: 1,
            disposition,
        }]
    };
    let (restock, inspect) = (
        ret(ReturnDisposition::Restock),
        ret(ReturnDisposition::Inspect),
    );
    let (field, _) = lines_difference(
        RequestLines::Returns(&restock),
        RequestLines::Returns(&inspect),
    );
    assert_eq!(field, "lines[0].disposition");
}

/// Fingerprints are stored (under keys, in checkpoints), so the one-shot line hash must
/// equal the streaming hash it replaced, byte for byte.
#[test]
fn line_hashes_are_unchanged() {
    let streaming = |lines: &[Line]| {
        let mut h = Xxh3::new();
        for l in lines {
            h.update(l.sku.as_str().as_bytes());
            h.update(&[0]);
            h.update(l.location.as_str().as_bytes());
            h.update(&[0]);
            h.update(&l.qty.to_le_bytes());
            h.update(&[0]);
        }
        h.digest()
    };
    let long = "x".repeat(ID_BYTES_MAX);
    for count in [0, 1, 3, 10, LINES_MAX] {
        let lines: Vec<Line> = (0..count)
            .map(|i| Line::new(&format!("SKU-{i:09}"), &long[..i % ID_BYTES_MAX], i as u64))
            .collect();
        assert_eq!(hash_lines(&lines), streaming(&lines), "{count} lines");
    }
}
