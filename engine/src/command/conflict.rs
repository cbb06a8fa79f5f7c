//! Naming what differs when a key is reused with another payload. A fingerprint hashes all of
//! a request's lines as one field, so a conflict on them is named down to the line only by
//! comparing with the original request, read back from the log (see `Ledger::submit`).

use super::*;

/// What a field named by a key conflict says when nothing more precise is known.
pub const DIFFERS_FROM_ORIGINAL: &str = "differs from the request first sent under this key";

/// The lines of a request, as a key conflict compares them. A fingerprint hashes all of a
/// request's lines as one field, so a conflict on them is named down to the line only by
/// comparing with the original request (see `Ledger::submit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLines<'a> {
    /// A reserve's, a sale's or a partial commit's lines.
    Lines(&'a [Line]),
    /// A commit of everything held: no lines listed.
    All,
    /// A return's lines.
    Returns(&'a [ReturnLine]),
}

impl Command {
    /// The command's `lines`, if it has that field.
    pub fn request_lines(&self) -> Option<RequestLines<'_>> {
        match self {
            Command::Reserve(c) => Some(RequestLines::Lines(&c.lines)),
            Command::Commit(c) => Some(
                c.lines
                    .as_deref()
                    .map_or(RequestLines::All, RequestLines::Lines),
            ),
            Command::RecordSale(c) => Some(RequestLines::Lines(&c.lines)),
            Command::RecordReturn(c) => Some(RequestLines::Returns(&c.lines)),
            _ => None,
        }
    }
}

/// One line, as [`lines_difference`] compares it.
#[derive(PartialEq)]
struct LineView<'a> {
    sku: &'a Sku,
    location: &'a Location,
    qty: u64,
    disposition: Option<ReturnDisposition>,
}

impl RequestLines<'_> {
    fn views(&self) -> Option<Vec<LineView<'_>>> {
        match self {
            RequestLines::All => None,
            RequestLines::Lines(lines) => Some(
                lines
                    .iter()
                    .map(|l| LineView {
                        sku: &l.sku,
                        location: &l.location,
                        qty: l.qty,
                        disposition: None,
                    })
                    .collect(),
            ),
            RequestLines::Returns(lines) => Some(
                lines
                    .iter()
                    .map(|l| LineView {
                        sku: &l.sku,
                        location: &l.location,
                        qty: l.qty,
                        disposition: Some(l.disposition),
                    })
                    .collect(),
            ),
        }
    }
}

/// Where the lines of `new` first differ from those of `original`, the request first sent
/// under the same key: the field path (`lines[1].qty`, or `lines` when the counts differ) and
/// what differs. Only the path and counts are told, never the original's values.
pub fn lines_difference(original: RequestLines<'_>, new: RequestLines<'_>) -> (String, String) {
    let lines = |detail: String| {
        let reason = if detail.is_empty() {
            DIFFERS_FROM_ORIGINAL.to_owned()
        } else {
            format!("{DIFFERS_FROM_ORIGINAL}: {detail}")
        };
        ("lines".to_owned(), reason)
    };
    let (original, new) = match (original.views(), new.views()) {
        (Some(original), Some(new)) => (original, new),
        (None, Some(new)) => {
            return lines(format!(
                "{} lines listed, the original listed none (commit everything held)",
                new.len()
            ));
        }
        (Some(original), None) => {
            return lines(format!(
                "none listed (commit everything held), the original listed {}",
                original.len()
            ));
        }
        (None, None) => return lines(String::new()),
    };
    if original.len() != new.len() {
        return lines(format!(
            "{} lines, the original had {}",
            new.len(),
            original.len()
        ));
    }
    for (i, (o, n)) in original.iter().zip(&new).enumerate() {
        let field = if o.sku != n.sku {
            "sku"
        } else if o.location != n.location {
            "location"
        } else if o.qty != n.qty {
            "qty"
        } else if o.disposition != n.disposition {
            "disposition"
        } else {
            continue;
        };
        return (
            format!("lines[{i}].{field}"),
            DIFFERS_FROM_ORIGINAL.to_owned(),
        );
    }
    // Equal lines under different line hashes: only a hash collision, or an original that is
    // not the request the record was made from, gets here.
    lines(String::new())
}
