//! A surge scenario's report: a one-screen summary, the same as JSON (`--report`), and a chart
//! of throughput and p99 latency per RPC over time (`--chart`, SVG drawn with plotters, no
//! system fonts needed to open it).

use super::recorder::{Recorder, RpcRow, TimelinePoint};
use super::{Outcome, SurgeOptions, SurgeScenario, Verdict};
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Everything one scenario run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The server's URL (an in-process server's is a loopback ephemeral port).
    pub target: String,
    pub options: SurgeOptions,
    /// Wall time of the whole scenario, setup and verification included.
    pub seconds: f64,
    /// One row per RPC (the verification's reads are the `verify:*` rows); throughput is over
    /// each RPC's active span (`seconds`), not the whole run.
    pub rpcs: Vec<RpcRow>,
    /// Per RPC and time bucket: throughput and p99.
    pub timeline: Vec<TimelinePoint>,
    /// The scenario's headline numbers (`granted`, `stock`, `oversell`, ...).
    pub facts: BTreeMap<String, i64>,
    pub notes: Vec<String>,
    /// Every store's feed at the end (lag per store), for the scenarios with stores.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<super::StoreLine>,
    /// Latency per RPC in named windows of the run (reconcile-under-load: before, during and
    /// after the snapshot's push and reconciliation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<super::WindowRow>,
    pub verification: Verdict,
}

impl Report {
    pub fn new(
        scenario: SurgeScenario,
        target: &str,
        options: &SurgeOptions,
        seconds: f64,
        recorder: &Recorder,
        outcome: Outcome,
    ) -> Report {
        Report {
            scenario: scenario.name().to_owned(),
            target: target.to_owned(),
            options: options.clone(),
            seconds,
            rpcs: recorder.rows(),
            timeline: recorder.timeline(),
            facts: outcome.facts,
            notes: outcome.notes,
            stores: outcome.stores,
            windows: outcome.windows,
            verification: outcome.verdict,
        }
    }

    /// The one-screen summary: RPC table, facts, notes, verdict.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== {} against {} ({:.1} s)",
            self.scenario, self.target, self.seconds
        );
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8}  errors",
            "rpc",
            "answers",
            "over s",
            "per s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "rejected"
        );
        for row in &self.rpcs {
            let errors = if row.errors.is_empty() {
                "-".to_owned()
            } else {
                row.errors
                    .iter()
                    .map(|(code, n)| format!("{code}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let ms = |us: u64| format!("{:.3}", us as f64 / 1e3);
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>7.1} {:>9.0} {:>8} {:>8} {:>9} {:>8} {:>8}  {}",
                row.op,
                row.ok,
                row.seconds,
                row.ops_per_s,
                ms(row.p50_us),
                ms(row.p99_us),
                ms(row.p999_us),
                ms(row.max_us),
                row.rejected,
                errors
            );
        }
        let facts: Vec<String> = self.facts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for line in wrap(&facts, 96) {
            let _ = writeln!(out, "{line}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        if !self.windows.is_empty() {
            let _ = writeln!(
                out,
                "{:<10} {:<8} {:>13} {:>9} {:>8} {:>8} {:>9}",
                "window", "rpc", "from-to s", "answers", "p50 ms", "p99 ms", "p99.9 ms"
            );
            for w in &self.windows {
                let ms = |us: u64| format!("{:.3}", us as f64 / 1e3);
                let _ = writeln!(
                    out,
                    "{:<10} {:<8} {:>13} {:>9} {:>8} {:>8} {:>9}",
                    w.window,
                    w.op,
                    format!("{:.1}-{:.1}", w.from_s, w.to_s),
                    w.answers,
                    ms(w.p50_us),
                    ms(w.p99_us),
                    ms(w.p999_us)
                );
            }
        }
        if !self.stores.is_empty() {
            let mut lags: Vec<u64> = self.stores.iter().map(|s| s.lag_ms).collect();
            lags.sort_unstable();
            let missing: u64 = self.stores.iter().map(|s| s.missing_count).sum();
            let _ = writeln!(
                out,
                "stores: {} at the end, lag p50 {} ms, max {} ms; {missing} sequence numbers \
                 missing (per store in the JSON report)",
                self.stores.len(),
                lags[lags.len() / 2],
                lags[lags.len() - 1]
            );
        }
        let v = &self.verification;
        let _ = writeln!(
            out,
            "verification: {} ({} checks, {} failed)",
            if v.passed { "PASS" } else { "FAIL" },
            v.checks,
            v.failed
        );
        for failure in v.failures.iter().take(10) {
            let _ = writeln!(out, "  FAILED: {failure}");
        }
        if v.failures.len() > 10 {
            let _ = writeln!(out, "  ... {} more in the JSON report", v.failed - 10);
        }
        out
    }

    /// One line for a log or a closing note.
    pub fn headline(&self) -> String {
        let rpc = |op: &str| self.rpcs.iter().find(|r| r.op == op);
        let mut parts = vec![format!("{}:", self.scenario)];
        for op in [
            "reserve",
            "session:reserve",
            "record_sales",
            "record_returns",
            "check",
        ] {
            if let Some(r) = rpc(op) {
                parts.push(format!(
                    "{op} {:.0}/s p99 {:.2} ms",
                    r.ops_per_s,
                    r.p99_us as f64 / 1e3
                ));
            }
        }
        for fact in [
            "granted",
            "stock",
            "oversell",
            "sales_recorded",
            "duplicates_absorbed",
            "snapshot_rows",
            "push_rows_per_s",
            "push_ms",
            "reconcile_ms",
            "drifted",
            "held",
        ] {
            if let Some(v) = self.facts.get(fact) {
                parts.push(format!("{fact}={v}"));
            }
        }
        for op in ["reserve", "check"] {
            let p99s: Vec<String> = self
                .windows
                .iter()
                .filter(|w| w.op == op)
                .map(|w| format!("{:.2}", w.p99_us as f64 / 1e3))
                .collect();
            if !p99s.is_empty() {
                let names: Vec<&str> = self
                    .windows
                    .iter()
                    .filter(|w| w.op == op)
                    .map(|w| w.window.as_str())
                    .collect();
                parts.push(format!(
                    "{op} p99 {} {} ms",
                    names.join("/"),
                    p99s.join("/")
                ));
            }
        }
        parts.push(format!(
            "verification {} ({} checks)",
            if self.verification.passed {
                "PASS"
            } else {
                "FAIL"
            },
            self.verification.checks
        ));
        parts.join(" ")
    }

    pub fn write_json(reports: &[Report], path: &Path) -> Result<()> {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(reports)?
        };
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }

    /// Draws throughput (top) and p99 latency (bottom, log scale) per RPC over time.
    pub fn write_chart(&self, path: &Path) -> Result<()> {
        let ops: Vec<&str> = {
            let mut ops: Vec<&str> = self
                .timeline
                .iter()
                .map(|p| p.op.as_str())
                .filter(|op| !op.starts_with("verify:") && *op != "adjust")
                .collect();
            ops.dedup();
            ops.sort_unstable();
            ops.dedup();
            ops
        };
        let drawn: Vec<&TimelinePoint> = self
            .timeline
            .iter()
            .filter(|p| ops.contains(&p.op.as_str()))
            .collect();
        let t_min = drawn.iter().map(|p| p.t_s).fold(f64::MAX, f64::min).floor();
        let t_min = if t_min == f64::MAX { 0.0 } else { t_min };
        let t_max = drawn
            .iter()
            .map(|p| p.t_s)
            .fold(t_min + 1.0, f64::max)
            .ceil();
        let rate_max = drawn
            .iter()
            .map(|p| p.ops_per_s.max(p.errors_per_s))
            .fold(1.0f64, f64::max)
            * 1.1;
        let p99_ms = |p: &TimelinePoint| (p.p99_us as f64 / 1e3).max(0.001);
        let answered = || drawn.iter().filter(|p| p.p99_us > 0);
        let p99_max = answered().map(|p| p99_ms(p)).fold(1.0f64, f64::max) * 1.5;
        let p99_min = answered().map(|p| p99_ms(p)).fold(p99_max, f64::min) / 1.5;
        let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let (top, bottom) = root.split_vertically(350);
        let caption = format!(
            "{}: answers per second, failed tries thin (verification {})",
            self.scenario,
            if self.verification.passed {
                "PASS"
            } else {
                "FAIL"
            }
        );
        let mut rate = ChartBuilder::on(&top)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(t_min..t_max, 0f64..rate_max)
            .map_err(chart_error)?;
        rate.configure_mesh()
            .x_desc("seconds since the scenario started")
            .y_desc("answers/s")
            .draw()
            .map_err(chart_error)?;
        let mut latency = ChartBuilder::on(&bottom)
            .caption("p99 latency (ms, log scale)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(t_min..t_max, (p99_min..p99_max).log_scale())
            .map_err(chart_error)?;
        latency
            .configure_mesh()
            .x_desc("seconds since the scenario started")
            .y_desc("p99 ms")
            .draw()
            .map_err(chart_error)?;
        for (i, op) in ops.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<&TimelinePoint> =
                self.timeline.iter().filter(|p| p.op == *op).collect();
            rate.draw_series(LineSeries::new(
                points.iter().map(|p| (p.t_s, p.ops_per_s)),
                color.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(*op)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            latency
                .draw_series(LineSeries::new(
                    points
                        .iter()
                        .filter(|p| p.p99_us > 0)
                        .map(|p| (p.t_s, p99_ms(p))),
                    color.stroke_width(2),
                ))
                .map_err(chart_error)?;
            // Failed tries (refusals while a budget is in use, timeouts), thin, where any.
            if points.iter().any(|p| p.errors_per_s > 0.0) {
                rate.draw_series(LineSeries::new(
                    points.iter().map(|p| (p.t_s, p.errors_per_s)),
                    color.stroke_width(1),
                ))
                .map_err(chart_error)?
                .label(format!("{op} failed tries (thin)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
        }
        rate.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
        Ok(())
    }
}

fn chart_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// Joins `items` with spaces into lines of at most `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for item in items {
        if !line.is_empty() && line.len() + 1 + item.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The path for one scenario's file when several scenarios share one `--report`/`--chart`
/// name: `out.svg` becomes `out-flash-sale.svg`.
pub fn path_for(path: &Path, scenario: &str, several: bool) -> std::path::PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-{scenario}.{ext}"),
        None => format!("{stem}-{scenario}"),
    };
    path.with_file_name(name)
}
