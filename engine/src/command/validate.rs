//! Checking a command's shape (not the ledger's state): every violation, each named by its
//! field the way a client wrote it (`lines[2].qty`), collected without allocating while the
//! command is well formed (Reserve's hot path).

use super::*;

impl Command {
    /// Checks the command's shape (not the ledger's state). The error lists every violation,
    /// each naming its field the way a client wrote it, e.g. `lines[2].qty`.
    pub fn validate(&self) -> Result<(), SubmitError> {
        self.violations()
            .into_result()
            .map_err(SubmitError::Invalid)
    }

    /// Every violation of the command's shape, in field order; empty (and allocation-free)
    /// for a well-formed command.
    pub fn violations(&self) -> Violations {
        let mut v = Violations::new();
        match self {
            Command::Reserve(c) => {
                check_id(&mut v, "reservation_id", c.reservation_id.as_str());
                check_id(&mut v, "channel", c.channel.as_str());
                check_lines(&mut v, &c.lines);
                check_ttl(&mut v, "ttl_ms", c.ttl_ms);
            }
            Command::Commit(c) => {
                check_id(&mut v, "reservation_id", c.reservation_id.as_str());
                if let Some(lines) = &c.lines {
                    check_lines(&mut v, lines);
                }
            }
            Command::Release(c) => check_id(&mut v, "reservation_id", c.reservation_id.as_str()),
            Command::Extend(c) => {
                check_id(&mut v, "reservation_id", c.reservation_id.as_str());
                check_id(&mut v, "request_id", c.request_id.as_str());
                check_ttl(&mut v, "ttl_ms", c.ttl_ms);
            }
            Command::Expire(c) => check_id(&mut v, "reservation_id", c.reservation_id.as_str()),
            Command::RecordSale(c) => {
                check_id(&mut v, "store_id", c.store_id.as_str());
                check_id(&mut v, "txn_id", c.txn_id.as_str());
                if c.store_seq == 0 {
                    v.push("store_seq", "must be at least 1");
                }
                check_lines(&mut v, &c.lines);
            }
            Command::RecordReturn(c) => {
                check_id(&mut v, "return_id", c.return_id.as_str());
                if check_line_count(&mut v, c.lines.len()) {
                    for (i, line) in c.lines.iter().enumerate() {
                        check_line(&mut v, i, &line.sku, &line.location, line.qty);
                    }
                    check_distinct_positions(&mut v, c.lines.iter().map(|l| (&l.sku, &l.location)));
                }
            }
            Command::Dispose(c) => {
                check_id(&mut v, "disposition_id", c.disposition_id.as_str());
                check_id(&mut v, "return_id", c.return_id.as_str());
                check_id(&mut v, "sku", c.sku.as_str());
                check_id(&mut v, "location", c.location.as_str());
                check_qty(&mut v, "qty", c.qty);
            }
            Command::Adjust(c) => {
                check_id(&mut v, "adjustment_id", c.adjustment_id.as_str());
                check_id(&mut v, "sku", c.sku.as_str());
                check_id(&mut v, "location", c.location.as_str());
                if c.delta == 0 {
                    v.push("delta", "must not be zero");
                } else if c.delta.unsigned_abs() > QTY_MAX {
                    v.push("delta", format!("magnitude exceeds {QTY_MAX}"));
                }
                if c.reason.len() > TEXT_BYTES_MAX {
                    v.push("reason", format!("longer than {TEXT_BYTES_MAX} bytes"));
                }
            }
            Command::SetSafetyStock(c) => {
                check_id(&mut v, "request_id", c.request_id.as_str());
                check_id(&mut v, "sku", c.sku.as_str());
                check_id(&mut v, "location", c.location.as_str());
                if c.qty > QTY_MAX {
                    v.push("qty", format!("exceeds {QTY_MAX}"));
                }
            }
            Command::Reconcile(c) => {
                check_id(&mut v, "snapshot_id", c.snapshot_id.as_str());
                check_id(&mut v, "sku", c.sku.as_str());
                check_id(&mut v, "location", c.location.as_str());
                if c.erp_on_hand.unsigned_abs() > QTY_MAX {
                    v.push("on_hand", format!("magnitude exceeds {QTY_MAX}"));
                }
            }
            Command::ResolveDrift(c) => {
                check_id(&mut v, "snapshot_id", c.snapshot_id.as_str());
                check_id(&mut v, "sku", c.sku.as_str());
                check_id(&mut v, "location", c.location.as_str());
            }
            Command::AcknowledgeStoreAnomaly(c) => c.check(&mut v),
        }
        v
    }
}

pub(super) fn check_id(violations: &mut Violations, field: &str, id: &str) {
    if let Some(reason) = id_problem(id) {
        violations.push(field, reason);
    }
}

/// Why `id` is not a valid id, if it is not. Separate from the field name so the hot path
/// builds no strings unless something is wrong.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if id.len() > ID_BYTES_MAX {
        return Some(format!("longer than {ID_BYTES_MAX} bytes"));
    }
    // Control characters never belong in an id, and excluding them keeps keys unambiguous.
    // (Ids are almost always ASCII, where a byte scan says the same as decoding chars.)
    let control = if id.is_ascii() {
        id.bytes().any(|b| b.is_ascii_control())
    } else {
        id.chars().any(char::is_control)
    };
    if control {
        return Some("contains a control character".to_owned());
    }
    None
}

fn check_ttl(violations: &mut Violations, field: &str, ttl_ms: u64) {
    if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
        violations.push(
            field,
            format!("must be within [{TTL_MS_MIN}, {TTL_MS_MAX}] ms"),
        );
    }
}

fn qty_problem(qty: u64) -> Option<String> {
    if qty == 0 {
        return Some("must be greater than zero".to_owned());
    }
    if qty > QTY_MAX {
        return Some(format!("exceeds {QTY_MAX}"));
    }
    None
}

fn check_qty(violations: &mut Violations, field: &str, qty: u64) {
    if let Some(reason) = qty_problem(qty) {
        violations.push(field, reason);
    }
}

/// Checks the number of lines; false if there are too many to look at each. The lines of an
/// over-long list are not examined: the work per request stays bounded by [`LINES_MAX`], and
/// the client has to cut the list anyway.
fn check_line_count(violations: &mut Violations, count: usize) -> bool {
    if count == 0 {
        violations.push("lines", "must not be empty");
    }
    if count > LINES_MAX {
        violations.push("lines", format!("more than {LINES_MAX} lines"));
        return false;
    }
    true
}

fn check_line(violations: &mut Violations, i: usize, sku: &Sku, location: &Location, qty: u64) {
    if let Some(reason) = id_problem(sku.as_str()) {
        violations.push(format!("lines[{i}].sku"), reason);
    }
    if let Some(reason) = id_problem(location.as_str()) {
        violations.push(format!("lines[{i}].location"), reason);
    }
    if let Some(reason) = qty_problem(qty) {
        violations.push(format!("lines[{i}].qty"), reason);
    }
}

fn check_lines(violations: &mut Violations, lines: &[Line]) {
    if check_line_count(violations, lines.len()) {
        for (i, line) in lines.iter().enumerate() {
            check_line(violations, i, &line.sku, &line.location, line.qty);
        }
        check_distinct_positions(violations, lines.iter().map(|l| (&l.sku, &l.location)));
    }
}

/// Each position may appear once per request: a basket with the same position twice is almost
/// always a client bug, and merging silently would hide it. Every repeat is a violation of its
/// own, naming the line it repeats (not the ids: a violation's text stays short).
fn check_distinct_positions<'a>(
    violations: &mut Violations,
    positions: impl Iterator<Item = (&'a Sku, &'a Location)>,
) {
    // At most LINES_MAX entries (callers check the count first), on the stack for a basket.
    let mut seen: SmallVec<[(&Sku, &Location); 8]> = SmallVec::new();
    for (i, position) in positions.enumerate() {
        if let Some(first) = seen.iter().position(|p| *p == position) {
            violations.push(
                format!("lines[{i}]"),
                format!("the same position (sku, location) as lines[{first}]"),
            );
        }
        seen.push(position);
    }
}
