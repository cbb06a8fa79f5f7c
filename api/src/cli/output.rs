//! Printing answers: tables, JSON documents, item errors, times, and progress bars.

use super::Exit;
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use inv_proto::code_name;
use inv_proto::v1 as pb;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use tonic::Code;

pub(super) const AVAILABILITY_HEADERS: [&str; 9] = [
    "SKU",
    "LOCATION",
    "EXISTS",
    "ON_HAND",
    "RESERVED",
    "SAFETY",
    "QUARANTINED",
    "AVAILABLE",
    "SELLABLE",
];

pub(super) fn availability_row(a: &pb::PositionAvailability) -> Vec<String> {
    vec![
        a.sku.clone(),
        a.location.clone(),
        if a.exists { "yes" } else { "no" }.into(),
        a.on_hand.to_string(),
        a.reserved.to_string(),
        a.safety_stock.to_string(),
        a.quarantined.to_string(),
        a.available.to_string(),
        a.sellable.to_string(),
    ]
}

pub(super) fn availability_json(a: &pb::PositionAvailability) -> Value {
    json!({
        "sku": a.sku, "location": a.location, "exists": a.exists, "on_hand": a.on_hand,
        "reserved": a.reserved, "safety_stock": a.safety_stock, "quarantined": a.quarantined,
        "available": a.available, "sellable": a.sellable,
    })
}

pub(super) fn line_json(l: &pb::Line) -> Value {
    json!({ "sku": l.sku, "location": l.location, "qty": l.qty })
}

pub(super) fn item_error_json(e: &pb::ItemError) -> Value {
    let code = i32::try_from(e.code)
        .map(Code::from_i32)
        .unwrap_or(Code::Unknown);
    let reason = pb::ErrorReason::try_from(e.reason)
        .map(|r| {
            let name = r.as_str_name();
            name.strip_prefix("ERROR_REASON_")
                .unwrap_or(name)
                .to_owned()
        })
        .unwrap_or_default();
    json!({ "code": code_name(code), "reason": reason, "field": e.field, "message": e.message })
}

pub(super) fn item_exit(e: &pb::ItemError) -> Exit {
    Exit::of(
        i32::try_from(e.code)
            .map(Code::from_i32)
            .unwrap_or(Code::Unknown),
    )
}

pub(super) fn duplicate_note(duplicate: bool) -> &'static str {
    if duplicate {
        "; a retry: this is the recorded answer"
    } else {
        ""
    }
}

pub(super) fn print_json(value: &Value) {
    // Serializing a Value cannot fail; a closed stdout is not worth a panic.
    let _ = writeln!(std::io::stdout(), "{value:#}");
}

/// Left-aligned columns, numbers right-aligned, two spaces apart. Nothing for no rows but the
/// header (a script wanting nothing at all uses --json).
pub(super) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![true; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
            numeric[i] &= cell.is_empty() || cell.parse::<f64>().is_ok();
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate().take(columns) {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if numeric[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < columns {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut headers.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// Milliseconds since the Unix epoch as UTC, `2023-11-14T22:13:20.000Z`.
pub fn format_utc_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let ms_of_day = ms % 86_400_000;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}

pub(super) fn format_lag_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else if ms < 7_200_000 {
        format!("{:.1}m", ms as f64 / 60_000.0)
    } else {
        format!("{:.1}h", ms as f64 / 3_600_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(format_utc_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    /// Bytes of a file read (a snapshot streams while it is read).
    Bytes,
    /// Items sent (sales, returns), named in the bar.
    Items(&'static str),
}

/// A progress bar on stderr when it is a terminal and the output is not `--json`; hidden
/// (drawing nothing) otherwise, so scripts and pipes see only the answer. Without a known
/// length it is a spinner. A bar dropped on an error clears itself, so the error is printed
/// on a clean line.
pub(super) fn progress_bar(length: Option<u64>, unit: Unit, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let Some(length) = length else {
        return ProgressBar::new_spinner().with_finish(ProgressFinish::AndClear);
    };
    let template = match unit {
        Unit::Bytes => {
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}".to_string()
        }
        Unit::Items(what) => {
            format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} {{msg}}")
        }
    };
    let bar = ProgressBar::new(length).with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
