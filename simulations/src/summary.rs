//! The run's summary under the table: each scenario's headline figures, the engine's server
//! CPU per call against the floor's from the same run, and issue #14's goals read off them.

use crate::stats::{self, Row};
use crate::{ClientMode, Options};
use std::fmt::Write as _;

/// Issue #14's goals for the engine's server CPU per call, against the floor of the same run.
/// Unary Check: at most this many times the floor's.
const CHECK_VS_FLOOR_MAX: f64 = 1.25;
/// A Session check: at most this many µs above the floor's.
const STREAM_CHECK_ABOVE_FLOOR_MAX_US: f64 = 2.0;
/// A durable unary Reserve: at most this many times the floor's unary Reserve.
const RESERVE_VS_FLOOR_MAX: f64 = 2.0;
/// A durable write over the Session stream: at most this many µs.
const STREAM_RESERVE_MAX_US: f64 = 20.0;

fn find<'a>(rows: &'a [Row], server: &str, scenario: &str, op: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.server == server && r.scenario == scenario && r.op == op)
}

/// The engine's and the floor's server CPU per call of `scenario`, if both were measured.
fn server_cpu_pair(rows: &[Row], scenario: &str, op: &str) -> Option<(f64, f64)> {
    let engine = find(rows, stats::ENGINE, scenario, op)?.server_cpu_us_per_op?;
    let floor = find(rows, stats::FLOOR, scenario, op)?.server_cpu_us_per_op?;
    Some((engine, floor))
}

fn opt_us(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |us| format!("{us:.1}"))
}

/// How the run compares with the floor measured in the same run, and with issue #14's goals.
pub fn summary(rows: &[Row], options: &Options) -> String {
    let mut out = String::new();
    let verdict = |ok: bool| if ok { "meets" } else { "misses" };
    let _ = writeln!(
        out,
        "client: {}",
        match options.client {
            ClientMode::Ordinary => "ordinary (a worker per core, one Channel with tonic's \
                                     defaults, one call in flight per caller)"
                .to_owned(),
            ClientMode::Tuned => format!(
                "tuned ({} connection(s), Session pipeline {})",
                options.connections, options.pipeline
            ),
        }
    );
    let _ = match options.rate {
        Some(rate) => writeln!(
            out,
            "unary scenarios paced at {rate:.0} calls/s in total over {} callers",
            options.callers
        ),
        None => writeln!(
            out,
            "unary scenarios closed-loop: {} callers each wait for their answer, so mean \
             latency = {} / throughput (Little's law); use --rate for latency at a set load",
            options.callers, options.callers
        ),
    };
    let engine = |scenario: &str, op: &str| find(rows, stats::ENGINE, scenario, op);
    if let Some(r) = engine("check", "check") {
        let _ = writeln!(
            out,
            "unary Check: {:.0}/s ({:.0} positions/s), p99 {:.3} ms, server CPU {} µs/call",
            r.ops_per_s,
            r.ops_per_s * options.check_positions as f64,
            r.p99_us as f64 / 1e3,
            opt_us(r.server_cpu_us_per_op)
        );
    }
    if let Some(r) = engine("check-sellable", "check") {
        let _ = writeln!(
            out,
            "unary CheckSellable: {:.0}/s ({:.0} positions/s), p99 {:.3} ms, server CPU {} \
             µs/call",
            r.ops_per_s,
            r.ops_per_s * options.check_positions as f64,
            r.p99_us as f64 / 1e3,
            opt_us(r.server_cpu_us_per_op)
        );
    }
    if let Some(r) = engine("reserve-only", "reserve") {
        let _ = writeln!(
            out,
            "unary durable Reserve (reserve-only): {:.0}/s, p99 {:.3} ms, server CPU {} µs/call",
            r.ops_per_s,
            r.p99_us as f64 / 1e3,
            opt_us(r.server_cpu_us_per_op)
        );
    }
    // Each caller spends half its time releasing, so this shows Release costs what Reserve
    // does.
    if let (Some(r), Some(w)) = (engine("reserve", "reserve"), engine("reserve", "release")) {
        let _ = writeln!(
            out,
            "unary durable Reserve + Release pairs: {:.0} pairs/s = {:.0} durable writes/s, \
             p99 {:.3} / {:.3} ms",
            r.ops_per_s,
            r.ops_per_s + w.ops_per_s,
            r.p99_us as f64 / 1e3,
            w.p99_us as f64 / 1e3,
        );
    }
    if let Some(r) = engine("session-check", "check") {
        let _ = writeln!(
            out,
            "Session checks: {:.0}/s ({:.0} positions/s), server CPU {} µs/check",
            r.ops_per_s,
            r.ops_per_s * options.check_positions as f64,
            opt_us(r.server_cpu_us_per_op)
        );
    }
    if let Some(r) = engine("session-reserve", "reserve") {
        let writes =
            r.ops_per_s + engine("session-reserve", "release").map_or(0.0, |w| w.ops_per_s);
        let _ = writeln!(
            out,
            "Session durable reserves: {:.0}/s ({writes:.0} durable writes/s), server CPU {} \
             µs/write",
            r.ops_per_s,
            opt_us(r.server_cpu_us_per_op)
        );
    }

    let floor_rows: Vec<&Row> = rows.iter().filter(|r| r.server == stats::FLOOR).collect();
    if floor_rows.is_empty() {
        let _ = writeln!(
            out,
            "the floor was not measured: run with --floor for the engine's cost above gRPC's own"
        );
    } else {
        let _ = writeln!(
            out,
            "against the floor (a constant-answer server of the same service, measured in this \
             run): server CPU µs/call engine / floor = ratio (engine - floor); client CPU \
             µs/call engine / floor; throughput engine / floor"
        );
        for floor in &floor_rows {
            let Some(engine) = find(rows, stats::ENGINE, &floor.scenario, &floor.op) else {
                continue;
            };
            let (ratio, above) = match (engine.server_cpu_us_per_op, floor.server_cpu_us_per_op) {
                (Some(e), Some(f)) if f > 0.0 => {
                    (format!("{:.2}x", e / f), format!("{:+.1}", e - f))
                }
                _ => ("?".to_owned(), "?".to_owned()),
            };
            let _ = writeln!(
                out,
                "  {:<20} {:<12} server {:>6} / {:>6} = {:>6} ({:>6} µs)  client {:>6} / {:>6}  \
                 {:>7.0} / {:>7.0} per s",
                floor.scenario,
                floor.op,
                opt_us(engine.server_cpu_us_per_op),
                opt_us(floor.server_cpu_us_per_op),
                ratio,
                above,
                opt_us(engine.client_cpu_us_per_op),
                opt_us(floor.client_cpu_us_per_op),
                engine.ops_per_s,
                floor.ops_per_s
            );
        }
        let _ = writeln!(
            out,
            "issue #14 goals, server CPU per call, from this run's figures{}:",
            if options.client == ClientMode::Ordinary {
                ""
            } else {
                " (the goals are set for --client ordinary; this run used the tuned client)"
            }
        );
        let missing =
            |scenario: &str| format!("not measured (run --scenario {scenario} with --floor)");
        let line = match server_cpu_pair(rows, "check", "check") {
            Some((e, f)) => format!(
                "{:.2}x ({e:.1} / {f:.1} µs): {}",
                e / f,
                verdict(e <= CHECK_VS_FLOOR_MAX * f)
            ),
            None => missing("check"),
        };
        let _ = writeln!(
            out,
            "  unary Check within {CHECK_VS_FLOOR_MAX}x of the floor: {line}"
        );
        let line = match server_cpu_pair(rows, "session-check", "check") {
            Some((e, f)) => format!(
                "{:+.1} µs ({e:.1} / {f:.1} µs): {}",
                e - f,
                verdict(e - f <= STREAM_CHECK_ABOVE_FLOOR_MAX_US)
            ),
            None => missing("session-check"),
        };
        let _ = writeln!(
            out,
            "  stream check at most {STREAM_CHECK_ABOVE_FLOOR_MAX_US} µs above the floor: {line}"
        );
        let line = match server_cpu_pair(rows, "reserve-only", "reserve") {
            Some((e, f)) => format!(
                "{:.2}x ({e:.1} / {f:.1} µs): {}",
                e / f,
                verdict(e <= RESERVE_VS_FLOOR_MAX * f)
            ),
            None => missing("reserve-only"),
        };
        let _ = writeln!(
            out,
            "  durable unary Reserve at most {RESERVE_VS_FLOOR_MAX}x the unary floor \
             (the floor's unary Reserve): {line}"
        );
        let line = match engine("session-reserve", "reserve").and_then(|r| r.server_cpu_us_per_op) {
            Some(e) => format!("{e:.1} µs: {}", verdict(e <= STREAM_RESERVE_MAX_US)),
            None => "not measured (run --scenario session-reserve)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  durable Reserve over the stream at most {STREAM_RESERVE_MAX_US} µs per write \
             (reserves and their releases): {line}"
        );
    }
    for op in ["check", "reserve"] {
        if let (Some(a), Some(b)) = (
            engine("backfill: hot alone", op),
            engine("backfill: hot + bulk", op),
        ) {
            let _ = writeln!(
                out,
                "hot-path {op} beside the backfill: p99 {:.3} -> {:.3} ms, {:.0} -> {:.0}/s",
                a.p99_us as f64 / 1e3,
                b.p99_us as f64 / 1e3,
                a.ops_per_s,
                b.ops_per_s
            );
        }
    }
    if let Some(r) = engine("backfill: bulk", "record_sales") {
        let refused = r.errors.get("RESOURCE_EXHAUSTED").copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "backfill: {} RecordSales batches of {} ({:.0} sales/s) by {} callers; {refused} \
             calls refused RESOURCE_EXHAUSTED (bulk budget in use) and resent",
            r.ops,
            options.backfill_sales,
            r.ops_per_s * options.backfill_sales as f64,
            options.backfill_callers
        );
    }
    out
}
