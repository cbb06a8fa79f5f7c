//! Criterion's results (the `ledger` and `maps` benches): its JSON files under the target
//! folder, and the rows they are reported as.

use crate::format::{duration_ns, si};
use crate::runner::Ctx;
use crate::sections::{Figure, fig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<BTreeMap<String, u64>>,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: Estimate,
}

/// A criterion result: its id (`group/function[/value]`), the median ns per iteration and the
/// elements per iteration (1 without a throughput).
struct Bench {
    id: String,
    median_ns: f64,
    elements: u64,
}

/// Every criterion result under `target/criterion` written since the section started.
fn criterion_results(ctx: &Ctx) -> Result<BTreeMap<String, Bench>, String> {
    let root = ctx.target_dir.join("criterion");
    let mut found = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let benchmark = path.join("benchmark.json");
                let estimates = path.join("estimates.json");
                let fresh = std::fs::metadata(&estimates)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= ctx.section_started);
                if !fresh {
                    continue;
                }
                let read = |p: &Path| {
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
                };
                let b: BenchmarkJson = serde_json::from_str(&read(&benchmark)?)
                    .map_err(|e| format!("{}: {e}", benchmark.display()))?;
                let e: EstimatesJson = serde_json::from_str(&read(&estimates)?)
                    .map_err(|e| format!("{}: {e}", estimates.display()))?;
                let id = [Some(b.group_id), b.function_id, b.value_str]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/");
                let elements = b
                    .throughput
                    .and_then(|t| t.get("Elements").copied())
                    .unwrap_or(1)
                    .max(1);
                found.insert(
                    id.clone(),
                    Bench {
                        id,
                        median_ns: e.median.point_estimate,
                        elements,
                    },
                );
            } else {
                stack.push(path);
            }
        }
    }
    Ok(found)
}

/// How a criterion result is reported: its row id, what it is, and what one element is.
pub(crate) struct BenchRow {
    bench: &'static str,
    row: &'static str,
    what: &'static str,
    /// "" for a plain median per iteration; otherwise the rate's unit ("checks", "pairs").
    per: &'static str,
}

pub(crate) const LEDGER_BENCHES: &[BenchRow] = &[
    BenchRow {
        bench: "ledger/check_one_position",
        row: "ledger.check",
        what: "check of one position",
        per: "checks",
    },
    BenchRow {
        bench: "ledger/reserve_release_one_line",
        row: "ledger.reserve_release_1",
        what: "reserve + release, 1 line",
        per: "pairs",
    },
    BenchRow {
        bench: "ledger/reserve_release_three_lines",
        row: "ledger.reserve_release_3",
        what: "reserve + release, 3 lines",
        per: "pairs",
    },
    BenchRow {
        bench: "ledger/reserve_only_growing_to_2m",
        row: "ledger.reserve_growing",
        what: "reserve alone, 1 line, open holds growing to 2M",
        per: "reserves",
    },
    BenchRow {
        bench: "reserve_hot_sku_contended/1",
        row: "ledger.hot_1",
        what: "reserve + release on one hot position, 1 thread",
        per: "pairs",
    },
    BenchRow {
        bench: "reserve_hot_sku_contended/2",
        row: "ledger.hot_2",
        what: "same, 2 threads",
        per: "pairs",
    },
    BenchRow {
        bench: "reserve_hot_sku_contended/4",
        row: "ledger.hot_4",
        what: "same, 4 threads",
        per: "pairs",
    },
    BenchRow {
        bench: "reserve_hot_sku_contended/8",
        row: "ledger.hot_8",
        what: "same, 8 threads",
        per: "pairs",
    },
];

pub(crate) const MAPS_BENCHES: &[BenchRow] = &[
    BenchRow {
        bench: "maps_check/ledger",
        row: "maps.check_ledger",
        what: "availability of one position: `Ledger::check`",
        per: "checks",
    },
    BenchRow {
        bench: "maps_check/dashmap",
        row: "maps.check_dashmap",
        what: "same through dashmap: location lookup + `get` + arithmetic",
        per: "checks",
    },
    BenchRow {
        bench: "maps_reserve_release/ledger",
        row: "maps.reserve_release_ledger",
        what: "1-line reserve + release through `Ledger::submit` (hold, keys, ladder, 2 events)",
        per: "pairs",
    },
    BenchRow {
        bench: "maps_reserve_release/dashmap",
        row: "maps.reserve_release_dashmap",
        what: "the map part alone through dashmap: two `get_mut`s, availability test, reserved +/- 1",
        per: "pairs",
    },
    BenchRow {
        bench: "maps_cut/ledger",
        row: "maps.cut_ledger",
        what: "consistent copy of 100,000 positions: `Ledger::cut` (copy-on-write snapshots)",
        per: "",
    },
    BenchRow {
        bench: "maps_cut/dashmap",
        row: "maps.cut_dashmap",
        what: "copy of the same entries: `DashMap::clone` (shard by shard, not a consistent cut)",
        per: "",
    },
];

pub(crate) fn criterion_rows(
    ctx: &Ctx,
    group: &str,
    known: &[BenchRow],
) -> Result<Vec<Figure>, String> {
    let mut results = criterion_results(ctx)?;
    let mut rows = Vec::new();
    for k in known {
        let Some(b) = results.remove(k.bench) else {
            return Err(format!(
                "no fresh criterion result for {} under {}",
                k.bench,
                ctx.target_dir.join("criterion").display()
            ));
        };
        rows.push(fig(k.row, k.what, bench_figure(&b, k.per)));
    }
    // Benches added since this list was written are still reported, under their own id.
    for b in results.values() {
        rows.push(fig(
            &format!("{group}.{}", b.id.replace('/', ".")),
            format!("`{}`", b.id),
            bench_figure(b, ""),
        ));
    }
    Ok(rows)
}

fn bench_figure(b: &Bench, per: &str) -> String {
    let per_element = b.median_ns / b.elements as f64;
    if per.is_empty() {
        if b.elements > 1 {
            format!(
                "{} per element ({} per iteration of {})",
                duration_ns(per_element),
                duration_ns(b.median_ns),
                b.elements
            )
        } else {
            duration_ns(b.median_ns)
        }
    } else {
        format!(
            "{} each, {} {per}/s",
            duration_ns(per_element),
            si(1e9 / per_element)
        )
    }
}
