//! Idempotency keys as the model understands them, how a refusal names one, and the field (or
//! field path) a key conflict names.

use inv_engine::{Command, Line, Location, ReturnDisposition, Sku};

/// An idempotency key as the model understands it: kind, natural id, second id.
pub(crate) type Key = (&'static str, String, String);

pub(crate) fn model_key(c: &Command) -> Option<Key> {
    let e = String::new;
    Some(match c {
        Command::Reserve(c) => ("Reserve", c.reservation_id.to_string(), e()),
        Command::Commit(c) => ("Commit", c.reservation_id.to_string(), e()),
        Command::Release(c) => ("Release", c.reservation_id.to_string(), e()),
        Command::Extend(c) => (
            "Extend",
            c.reservation_id.to_string(),
            c.request_id.to_string(),
        ),
        Command::Expire(_) => return None,
        Command::RecordSale(c) => ("RecordSale", c.store_id.to_string(), c.txn_id.to_string()),
        Command::RecordReturn(c) => ("RecordReturn", c.return_id.to_string(), e()),
        Command::Dispose(c) => ("Dispose", c.disposition_id.to_string(), e()),
        Command::Adjust(c) => ("Adjust", c.adjustment_id.to_string(), e()),
        Command::SetSafetyStock(c) => ("SetSafetyStock", c.request_id.to_string(), e()),
        Command::Reconcile(c) => (
            "Reconcile",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::ResolveDrift(c) => (
            "ResolveDrift",
            c.snapshot_id.to_string(),
            position_sub(c.sku.as_str(), c.location.as_str()),
        ),
        Command::AcknowledgeStoreAnomaly(c) => (
            "AcknowledgeStoreAnomaly",
            c.store_id.to_string(),
            c.txn_id.to_string(),
        ),
    })
}

/// The second id of a key made of a snapshot and a position, as the engine documents it:
/// sku and location separated by U+001F.
fn position_sub(sku: &str, location: &str) -> String {
    format!("{sku}\u{1f}{location}")
}

/// How a refusal names a key: `kind:id`, and `:sub` when the key has a second id.
pub(crate) fn key_name((kind, id, sub): &Key) -> String {
    if sub.is_empty() {
        format!("{kind}:{id}")
    } else {
        format!("{kind}:{id}:{sub}")
    }
}

/// The first field (in the documented order) where two commands of one kind differ.
pub(crate) fn first_difference(a: &Command, b: &Command) -> Option<&'static str> {
    let fields: Vec<(&'static str, bool)> = match (a, b) {
        (Command::Reserve(a), Command::Reserve(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("channel", a.channel == b.channel),
            ("lines", a.lines == b.lines),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::Commit(a), Command::Commit(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Release(a), Command::Release(b)) => {
            vec![("reservation_id", a.reservation_id == b.reservation_id)]
        }
        (Command::Extend(a), Command::Extend(b)) => vec![
            ("reservation_id", a.reservation_id == b.reservation_id),
            ("request_id", a.request_id == b.request_id),
            ("ttl_ms", a.ttl_ms == b.ttl_ms),
        ],
        (Command::RecordSale(a), Command::RecordSale(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("store_seq", a.store_seq == b.store_seq),
            ("occurred_at_ms", a.occurred_at_ms == b.occurred_at_ms),
            ("lines", a.lines == b.lines),
        ],
        (Command::RecordReturn(a), Command::RecordReturn(b)) => vec![
            ("return_id", a.return_id == b.return_id),
            ("lines", a.lines == b.lines),
        ],
        (Command::Dispose(a), Command::Dispose(b)) => vec![
            ("disposition_id", a.disposition_id == b.disposition_id),
            ("return_id", a.return_id == b.return_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
            ("action", a.action == b.action),
        ],
        (Command::Adjust(a), Command::Adjust(b)) => vec![
            ("adjustment_id", a.adjustment_id == b.adjustment_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("delta", a.delta == b.delta),
            ("reason", a.reason == b.reason),
        ],
        (Command::SetSafetyStock(a), Command::SetSafetyStock(b)) => vec![
            ("request_id", a.request_id == b.request_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("qty", a.qty == b.qty),
        ],
        (Command::ResolveDrift(a), Command::ResolveDrift(b)) => vec![
            ("snapshot_id", a.snapshot_id == b.snapshot_id),
            ("sku", a.sku == b.sku),
            ("location", a.location == b.location),
            ("action", a.action == b.action),
        ],
        (Command::AcknowledgeStoreAnomaly(a), Command::AcknowledgeStoreAnomaly(b)) => vec![
            ("store_id", a.store_id == b.store_id),
            ("txn_id", a.txn_id == b.txn_id),
            ("action", a.action == b.action),
        ],
        _ => return Some("command"),
    };
    fields.into_iter().find(|(_, same)| !same).map(|(f, _)| f)
}

/// The path a key conflict names for `field`, the first field that differs between the
/// original and the new request: for the lines (which a fingerprint hashes as one field), the
/// first line and subfield that differ, or `lines` when the counts differ or one of two
/// commits lists none (commits everything). The engine finds the original in its log, which
/// a `MemLog` never trims.
pub(crate) fn conflict_path(field: &str, original: &Command, new: &Command) -> String {
    type Lines = Vec<(Sku, Location, u64, Option<ReturnDisposition>)>;
    fn lines(command: &Command) -> Option<Lines> {
        let plain = |lines: &[Line]| {
            lines
                .iter()
                .map(|l| (l.sku.clone(), l.location.clone(), l.qty, None))
                .collect()
        };
        match command {
            Command::Reserve(c) => Some(plain(&c.lines)),
            Command::Commit(c) => c.lines.as_deref().map(plain),
            Command::RecordSale(c) => Some(plain(&c.lines)),
            Command::RecordReturn(c) => Some(
                c.lines
                    .iter()
                    .map(|l| {
                        (
                            l.sku.clone(),
                            l.location.clone(),
                            l.qty,
                            Some(l.disposition),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
    if field != "lines" {
        return field.to_owned();
    }
    let (Some(a), Some(b)) = (lines(original), lines(new)) else {
        return field.to_owned();
    };
    if a.len() != b.len() {
        return field.to_owned();
    }
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        let differs = [
            ("sku", a.0 != b.0),
            ("location", a.1 != b.1),
            ("qty", a.2 != b.2),
            ("disposition", a.3 != b.3),
        ];
        if let Some((name, _)) = differs.iter().find(|(_, differs)| *differs) {
            return format!("lines[{i}].{name}");
        }
    }
    field.to_owned()
}
