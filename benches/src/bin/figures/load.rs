//! The rows of the `load` tool's `--json` output.

use crate::format::{duration_us, si};
use crate::sections::{Figure, fig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Deserialize)]
struct LoadRow {
    scenario: String,
    op: String,
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    #[serde(default)]
    errors: BTreeMap<String, u64>,
}

/// (row id, scenario, op, what) of the rows read from one `load` run.
type LoadWanted = [(&'static str, &'static str, &'static str, &'static str)];

pub(crate) const LOAD_CLOSED: [(&str, &str, &str, &str); 6] = [
    ("load.check", "check", "check", "unary Check, closed loop"),
    (
        "load.reserve",
        "reserve",
        "reserve",
        "unary durable Reserve (then its Release), closed loop",
    ),
    (
        "load.release",
        "reserve",
        "release",
        "the Releases of that scenario",
    ),
    (
        "load.session_check",
        "session-check",
        "check",
        "`Session` stream, checks (32 in flight per caller)",
    ),
    (
        "load.session_reserve",
        "session-reserve",
        "reserve",
        "`Session` stream, durable reserves",
    ),
    (
        "load.session_release",
        "session-reserve",
        "release",
        "`Session` stream, their releases",
    ),
];
pub(crate) const LOAD_PACED_CHECK: [(&str, &str, &str, &str); 1] = [(
    "load.check_paced",
    "check",
    "check",
    "unary Check paced at 50,000/s in total",
)];
pub(crate) const LOAD_PACED_RESERVE: [(&str, &str, &str, &str); 1] = [(
    "load.reserve_paced",
    "reserve",
    "reserve",
    "unary durable Reserve paced at 40,000/s in total",
)];

pub(crate) fn load_rows(output: &str, wanted: &LoadWanted) -> Result<Vec<Figure>, String> {
    let rows: Vec<LoadRow> =
        serde_json::from_str(output).map_err(|e| format!("load --json: {e}"))?;
    let mut figures = Vec::new();
    for &(id, scenario, op, what) in wanted {
        let row = rows
            .iter()
            .find(|r| r.scenario == scenario && r.op == op)
            .ok_or_else(|| format!("no {scenario}/{op} row in the load output"))?;
        let mut figure = format!(
            "{}/s; p50 {}, p99 {}",
            si(row.ops_per_s),
            duration_us(row.p50_us as f64),
            duration_us(row.p99_us as f64)
        );
        let errors: u64 = row.errors.values().sum();
        if errors > 0 {
            let _ = write!(figure, "; {errors} errors");
        }
        figures.push(fig(id, what, figure));
    }
    Ok(figures)
}
