//! What a run measures: per operation, answers, latencies and errors; and how it is printed.

use hdrhistogram::Histogram;
pub use inv_proto::code_name;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tonic::Code;

/// Highest latency a histogram records, in µs; slower answers are recorded as this.
const LATENCY_US_MAX: u64 = 60_000_000;

/// One kind of operation of one caller (or, once merged, of every caller).
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of every successful answer, in µs.
    latency_us: Histogram<u64>,
    /// Successful answers that were business refusals (out of stock); also in `latency_us`.
    pub rejected: u64,
    /// Failed calls (or failed batch items, prefixed `item:`) by gRPC code name.
    pub errors: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("valid histogram bounds"),
            rejected: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    /// A successful answer to a call started at `started`.
    pub fn ok(&mut self, started: Instant) {
        self.ok_after(started.elapsed());
    }

    pub fn ok_after(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(us.clamp(1, LATENCY_US_MAX));
    }

    pub fn error(&mut self, code: Code) {
        self.error_named(code_name(code));
    }

    pub fn error_named(&mut self, name: impl Into<String>) {
        *self.errors.entry(name.into()).or_default() += 1;
    }

    pub fn ops(&self) -> u64 {
        self.latency_us.len()
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds add up");
        self.rejected += other.rejected;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }

    /// The row of the report for `seconds` of this operation.
    pub fn row(&self, scenario: &str, op: &str, seconds: f64) -> Row {
        let q = |q: f64| self.latency_us.value_at_quantile(q);
        Row {
            scenario: scenario.to_owned(),
            op: op.to_owned(),
            ops: self.ops(),
            seconds,
            ops_per_s: if seconds > 0.0 {
                self.ops() as f64 / seconds
            } else {
                0.0
            },
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.latency_us.max(),
            rejected: self.rejected,
            errors: self.errors.clone(),
            server: ENGINE.to_owned(),
            cores: 0.0,
            cpu_us_per_call: 0.0,
            server_cpu_us_per_op: None,
            client_cpu_us_per_op: None,
        }
    }
}

/// Every operation of one scenario (or one phase of it), by name.
#[derive(Debug, Clone, Default)]
pub struct Tally(pub BTreeMap<&'static str, OpStats>);

impl Tally {
    pub fn op(&mut self, name: &'static str) -> &mut OpStats {
        self.0.entry(name).or_default()
    }

    pub fn merge(&mut self, other: &Tally) {
        for (name, stats) in &other.0 {
            self.op(name).merge(stats);
        }
    }

    /// One row per operation, of the engine server (see [`Row::server`]). `cpu` is the CPU
    /// time the scenario used, if known; each side's is shared out evenly over every answer and
    /// error of the scenario, whatever the operation.
    pub fn rows(&self, scenario: &str, seconds: f64, cpu: Option<Cpu>) -> Vec<Row> {
        let calls: u64 = self
            .0
            .values()
            .map(|s| s.ops() + s.errors.values().sum::<u64>())
            .sum();
        self.0
            .iter()
            .map(|(op, stats)| {
                let mut row = stats.row(scenario, op, seconds);
                if let Some(cpu) = cpu {
                    let per_call = |s: f64| 1e6 * s / calls.max(1) as f64;
                    row.cores = cpu.process_s / seconds.max(1e-9);
                    row.cpu_us_per_call = per_call(cpu.process_s);
                    row.server_cpu_us_per_op = cpu.server_s.map(per_call);
                    row.client_cpu_us_per_op = Some(per_call(cpu.client_s));
                }
                row
            })
            .collect()
    }
}

/// [`Row::server`] of the engine: the inventory server measured.
pub const ENGINE: &str = "engine";
/// [`Row::server`] of the constant-answer floor ([`crate::floor`]).
pub const FLOOR: &str = "floor";

/// CPU seconds of one scenario (or phase), by side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpu {
    /// This whole process: the client, and the servers run in process.
    pub process_s: f64,
    /// The server the scenario called (engine or floor), if known.
    pub server_s: Option<f64>,
    /// The load generator.
    pub client_s: f64,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub scenario: String,
    /// The server called: [`ENGINE`] or [`FLOOR`].
    pub server: String,
    pub op: String,
    /// Successful answers (out-of-stock answers included).
    pub ops: u64,
    /// How long the scenario (or phase) ran.
    pub seconds: f64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Answers that were out of stock.
    pub rejected: u64,
    /// Failed calls by gRPC code (`item:CODE` for failed items of a batch).
    pub errors: BTreeMap<String, u64>,
    /// CPU cores the whole process used over the scenario (0 when not measured). Below the
    /// machine's core count while saturated means other processes took the rest.
    pub cores: f64,
    /// Process CPU time per call of the scenario, every operation together, in µs (0 when not
    /// measured): the cost of a call, client and in-process server included, however busy the
    /// machine is.
    pub cpu_us_per_call: f64,
    /// The called server's CPU time per call of the scenario (every operation together), in
    /// µs; `None` when unknown (another process without `--server-pid`, or phases where hot
    /// and bulk calls share it).
    pub server_cpu_us_per_op: Option<f64>,
    /// The load generator's CPU time per call of the scenario, in µs.
    pub client_cpu_us_per_op: Option<f64>,
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1_000.0)
}

fn us(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"))
}

/// The report as a fixed-width table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<6} {:<13} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>7} {:>7}  errors",
        "scenario",
        "server",
        "op",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "rejected",
        "cores",
        "srv µs",
        "cli µs"
    );
    for row in rows {
        let errors = if row.errors.is_empty() {
            "-".to_owned()
        } else {
            row.errors
                .iter()
                .map(|(code, n)| format!("{code}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "{:<22} {:<6} {:<13} {:>9} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5.2} {:>7} {:>7}  {}",
            row.scenario,
            row.server,
            row.op,
            row.ops,
            row.ops_per_s,
            ms(row.p50_us),
            ms(row.p99_us),
            ms(row.p999_us),
            ms(row.max_us),
            row.rejected,
            row.cores,
            us(row.server_cpu_us_per_op),
            us(row.client_cpu_us_per_op),
            errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up() {
        let mut a = OpStats::default();
        a.ok_after(Duration::from_micros(100));
        a.error(Code::ResourceExhausted);
        let mut b = OpStats::default();
        b.ok_after(Duration::from_micros(300));
        b.rejected += 1;
        b.error(Code::ResourceExhausted);
        a.merge(&b);
        let mut tally = Tally::default();
        tally.op("op").merge(&a);
        let cpu = Cpu {
            process_s: 0.5,
            server_s: Some(0.3),
            client_s: 0.2,
        };
        let row = tally.rows("s", 2.0, Some(cpu)).remove(0);
        assert_eq!(row.cores, 0.25);
        assert_eq!(row.cpu_us_per_call, 1e6 * 0.5 / 4.0);
        assert_eq!(row.server_cpu_us_per_op, Some(1e6 * 0.3 / 4.0));
        assert_eq!(row.client_cpu_us_per_op, Some(1e6 * 0.2 / 4.0));
        assert_eq!(row.server, ENGINE);
        assert_eq!(row.ops, 2);
        assert_eq!(row.ops_per_s, 1.0);
        assert_eq!(row.rejected, 1);
        assert_eq!(row.errors["RESOURCE_EXHAUSTED"], 2);
        assert!(row.p99_us >= 299, "{row:?}");
        assert!(table(&[row]).contains("RESOURCE_EXHAUSTED=2"));
    }
}
