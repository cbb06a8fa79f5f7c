//! `figures`: runs the project's measurements and writes their headline numbers, with the date,
//! the commit, the machine and the exact command of each, into docs/figures.md. Nothing else
//! in the repository states a measured figure; the README and the docs point at its rows.
//!
//! ```text
//! cargo run --release -p inv-benches --bin figures                      # everything (longer; not timed yet)
//! cargo run --release -p inv-benches --bin figures -- --quick           # short runs, ~7 min on 2 cores
//! cargo run --release -p inv-benches --bin figures -- --only ledger,memory
//! cargo run --release -p inv-benches --bin figures -- --list            # the commands, no run
//! ```
//!
//! Each section runs one or more of the existing tools as child processes (`cargo bench`,
//! `cargo run --release ...`) from the workspace root and reads what they report: criterion's
//! `new/estimates.json` and `new/benchmark.json` files under the target folder (medians), the
//! `--json` rows of `load` and `map_memory`, and the text lines of the `memory` binary and the
//! `log_throughput` and `recovery` examples, which have no machine-readable output. A run
//! replaces only the sections it ran; the others are kept as they were in the file, each with
//! its own date, commit and machine line. A section whose command fails, or whose output no
//! longer parses, is left as it was and the run exits non-zero.
//!
//! Builds happen before each tool starts measuring (cargo builds, then runs), so compiling is
//! never timed; the first run on a fresh target folder just takes longer.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

const USAGE: &str = "\
figures: run the benches and measurements and write docs/figures.md

Usage: cargo run --release -p inv-benches --bin figures -- [OPTIONS]

Options:
  --only LIST   sections to run, comma-separated (default: all):
                ledger, maps, memory, map-memory, log, recovery, load
  --quick       short runs (criterion 2 s per bench, 1 s per log run, a 1M-event recovery,
                2 s per load scenario); the file says which
  --out PATH    the file to write [default: docs/figures.md in the workspace]
  --list        print the commands each section would run, and stop
  -h, --help    this text
";

/// Every section, in the order the file lists them.
const SECTIONS: [&str; 7] = [
    "ledger",
    "maps",
    "memory",
    "map-memory",
    "log",
    "recovery",
    "load",
];

struct Args {
    only: Vec<String>,
    quick: bool,
    out: Option<PathBuf>,
    list: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        only: SECTIONS.iter().map(|s| s.to_string()).collect(),
        quick: false,
        out: None,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--quick" => args.quick = true,
            "--list" => args.list = true,
            "--out" => args.out = Some(it.next().ok_or("--out needs a path")?.into()),
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                args.only = list.split(',').map(|s| s.trim().to_owned()).collect();
                for s in &args.only {
                    if !SECTIONS.contains(&s.as_str()) {
                        return Err(format!(
                            "unknown section {s}; the sections are {}",
                            SECTIONS.join(", ")
                        ));
                    }
                }
            }
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    Ok(args)
}

// ------------------------------------------------------------------------------------------
// What a section runs and reports

/// One command a section runs: the program's arguments after `cargo`.
#[derive(Clone)]
struct Run {
    args: Vec<String>,
}

impl Run {
    fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn shell(&self) -> String {
        format!("cargo {}", self.args.join(" "))
    }
}

/// One row of the file.
struct Figure {
    /// Stable name of the row, for references from other documents (`section.name`).
    id: String,
    what: String,
    figure: String,
}

fn fig(id: &str, what: impl Into<String>, figure: impl Into<String>) -> Figure {
    Figure {
        id: id.to_owned(),
        what: what.into(),
        figure: figure.into(),
    }
}

/// The commands of a section.
fn runs(section: &str, quick: bool) -> Vec<Run> {
    let criterion_time = if quick { "2" } else { "3" };
    match section {
        "ledger" | "maps" => vec![Run::new(&[
            "bench",
            "-p",
            "inv-benches",
            "--bench",
            section,
            "--",
            "--warm-up-time",
            "1",
            "--measurement-time",
            criterion_time,
        ])],
        "memory" => vec![Run::new(&[
            "run",
            "--release",
            "-p",
            "inv-benches",
            "--bin",
            "memory",
        ])],
        "map-memory" => vec![Run::new(&[
            "run",
            "--release",
            "-p",
            "inv-benches",
            "--bin",
            "map_memory",
            "--",
            "--json",
        ])],
        "log" => vec![Run::new(&[
            "run",
            "--release",
            "-p",
            "inv-engine",
            "--example",
            "log_throughput",
            "--",
            "--secs",
            if quick { "1" } else { "3" },
            "--runs",
            "none:1,none:2,sync:1,sync:16,sync:64,sync:64:4,sync:64:8,async:1,async:2,async:64",
        ])],
        "recovery" => {
            let mut args = vec![
                "run",
                "--release",
                "-p",
                "inv-engine",
                "--example",
                "recovery",
                "--",
                "--sequential",
                "no",
            ];
            if quick {
                args.extend(["--events", "1000000", "--positions", "100000"]);
            }
            vec![Run::new(&args)]
        }
        "load" => {
            let seconds = if quick { "2" } else { "5" };
            let base = [
                "run",
                "--release",
                "-p",
                "inv-sim",
                "--bin",
                "load",
                "--",
                "--callers",
                "64",
                "--seconds",
                seconds,
                "--json",
            ];
            let with = |extra: &[&str]| {
                let mut args = base.to_vec();
                args.extend(extra);
                Run::new(&args)
            };
            vec![
                with(&[
                    "--scenario",
                    "check",
                    "--scenario",
                    "reserve",
                    "--scenario",
                    "session-check",
                    "--scenario",
                    "session-reserve",
                ]),
                with(&["--rate", "50000", "--scenario", "check"]),
                with(&["--rate", "40000", "--scenario", "reserve"]),
            ]
        }
        other => unreachable!("unknown section {other}"),
    }
}

fn title(section: &str) -> &'static str {
    match section {
        "ledger" => "In-process ledger (criterion medians, no persistence)",
        "maps" => "The engine's tables against dashmap (criterion medians; see docs/design.md)",
        "memory" => "Memory per position, hold and key (live heap bytes)",
        "map-memory" => "Memory per position: the engine's sku table against dashmap",
        "log" => "Durable log: throughput and acknowledgement latency (RedbLog)",
        "recovery" => "Recovery and checkpoints",
        "load" => "gRPC over loopback (the `load` tool against an in-process server)",
        _ => "",
    }
}

fn about(section: &str) -> &'static str {
    match section {
        "ledger" => {
            "`Ledger::check` and `Ledger::submit` as the API calls them, on 100,000 stocked \
             positions, a `DiscardLog` and a fixed decision time; the reserve benches keep up to \
             a million retained keys (see the top of `benches/benches/ledger.rs`)."
        }
        "maps" => {
            "The same 100,000 positions in the ledger and in a `DashMap` of the same entries, \
             64 shards each; what each side does is at the top of `benches/benches/maps.rs`."
        }
        "memory" => {
            "Counting global allocator around the real engine API; malloc's own per-allocation \
             overhead is not counted. Position rows subtract a keys-only control; hold rows \
             count everything. See the top of `benches/src/bin/memory.rs`."
        }
        "map-memory" => {
            "Live heap bytes per position for N positions: the ledger (minus a keys-only \
             control) and a `DashMap` holding the engine's entry layout. See \
             `benches/src/bin/map_memory.rs`."
        }
        "log" => {
            "Single-line reserves through `Engine` over `RedbLog` in the system temp folder, \
             each run in its own process; closed loop means each submitter waits for its \
             acknowledgement before the next reserve, `xN` keeps N in flight. The fsync figures \
             are the disk's: on a VM with a write-back cache they say nothing about durability. \
             See the top of `engine/examples/log_throughput.rs`."
        }
        "recovery" => {
            "A log built through the engine (`Async`), then a full replay, a checkpoint of the \
             recovered ledger step by step, and a restart from it. See the top of \
             `engine/examples/recovery.rs`."
        }
        "load" => {
            "The real server in process (`RedbLog`, `Sync` durability) and the load generator \
             sharing the same cores, 64 callers on one HTTP/2 connection; latencies are the \
             client's. Closed loop unless paced with `--rate`. See `simulations/src/lib.rs`."
        }
        _ => "",
    }
}

/// Turns the outputs of a section's commands (in order) into its rows.
fn parse(section: &str, outputs: &[String], ctx: &Ctx) -> Result<Vec<Vec<Figure>>, String> {
    match section {
        "ledger" => Ok(vec![criterion_rows(ctx, "ledger", LEDGER_BENCHES)?]),
        "maps" => Ok(vec![criterion_rows(ctx, "maps", MAPS_BENCHES)?]),
        "memory" => Ok(vec![memory_rows(&outputs[0])?]),
        "map-memory" => Ok(vec![map_memory_rows(&outputs[0])?]),
        "log" => Ok(vec![log_rows(&outputs[0])?]),
        "recovery" => Ok(vec![recovery_rows(&outputs[0])?]),
        "load" => {
            let closed = load_rows(&outputs[0], &LOAD_CLOSED)?;
            let check = load_rows(&outputs[1], &LOAD_PACED_CHECK)?;
            let reserve = load_rows(&outputs[2], &LOAD_PACED_RESERVE)?;
            Ok(vec![closed, check, reserve])
        }
        other => Err(format!("unknown section {other}")),
    }
}

// ------------------------------------------------------------------------------------------
// Number formatting

/// `1234567.0` -> "1.23M", `45600.0` -> "45.6k", `123.0` -> "123".
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A duration given in nanoseconds, in the unit that reads best.
fn duration_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A duration given in whole microseconds (as the tools report latencies).
fn duration_us(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.0} µs")
    } else {
        duration_ns(us * 1e3)
    }
}

// ------------------------------------------------------------------------------------------
// Criterion

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
struct BenchRow {
    bench: &'static str,
    row: &'static str,
    what: &'static str,
    /// "" for a plain median per iteration; otherwise the rate's unit ("checks", "pairs").
    per: &'static str,
}

const LEDGER_BENCHES: &[BenchRow] = &[
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

const MAPS_BENCHES: &[BenchRow] = &[
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

fn criterion_rows(ctx: &Ctx, group: &str, known: &[BenchRow]) -> Result<Vec<Figure>, String> {
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

// ------------------------------------------------------------------------------------------
// Text outputs

/// The first number at the start of `s` (after spaces), and the word after it.
fn leading_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let value = s[..end].parse().ok()?;
    let unit = s[end..].split_whitespace().next().unwrap_or("");
    Some((value, unit))
}

/// The number right after `marker` in `line`.
fn after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    leading_number(&line[at..]).map(|(v, _)| v)
}

/// A duration right after `marker` ("1.23 s", "45.6 ms", "120 us"), in seconds.
fn seconds_after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    let (v, unit) = leading_number(&line[at..])?;
    let unit = unit.trim_end_matches([',', ';', ')']);
    Some(match unit {
        "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        _ => return None,
    })
}

/// A rate right after `marker` as the recovery example prints it ("1.24 M/s", "817 k/s").
fn rate_after(line: &str, marker: &str) -> Option<f64> {
    let at = line.find(marker)? + marker.len();
    let (v, unit) = leading_number(&line[at..])?;
    Some(match unit.trim_end_matches([',', ';', ')']) {
        "M/s" => v * 1e6,
        "k/s" => v * 1e3,
        _ => return None,
    })
}

/// A duration right after `marker` as the tool wrote it ("0.08 s", "11.8 ms"): its precision
/// is the tool's, so it is quoted rather than converted.
fn duration_after(line: &str, marker: &str) -> Option<String> {
    seconds_after(line, marker)?;
    let at = line.find(marker)? + marker.len();
    let (value, unit) = leading_number(&line[at..])?;
    let written = line[at..].split_whitespace().next()?;
    let unit = match unit.trim_end_matches([',', ';', ')']) {
        "us" => "µs",
        u => u,
    };
    debug_assert!(written.parse::<f64>().ok() == Some(value));
    Some(format!("{written} {unit}"))
}

/// The one line of `output` that starts with `prefix`.
fn line<'a>(output: &'a str, prefix: &str) -> Result<&'a str, String> {
    output
        .lines()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| format!("no line starting with {prefix:?} in the output"))
}

fn need<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("could not read {what} from the output"))
}

/// The `memory` binary's tables: per row name, (N, B/item, B/key).
fn memory_table(output: &str) -> BTreeMap<String, Vec<(u64, f64, f64)>> {
    let mut rows: BTreeMap<String, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for line in output.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        // The target column is "-" or "<= 128 ok" / "<= 128 MISS".
        let target = match tokens.last() {
            Some(&"ok") | Some(&"MISS") => 3,
            Some(&"-") => 1,
            _ => continue,
        };
        if tokens.len() < target + 7 {
            continue;
        }
        let numbers = &tokens[tokens.len() - target - 6..tokens.len() - target];
        let name = tokens[..tokens.len() - target - 6].join(" ");
        let (Ok(n), Ok(per_item), Ok(per_key)) = (
            numbers[0].parse::<u64>(),
            numbers[1].parse::<f64>(),
            numbers[3].parse::<f64>(),
        ) else {
            continue;
        };
        rows.entry(name).or_default().push((n, per_item, per_key));
    }
    rows
}

/// "115.2 B (N = 1,000,000), 118.9 B (N = 600,000)".
fn per_n(values: &[(u64, f64)]) -> String {
    values
        .iter()
        .map(|(n, b)| format!("{b:.0} B at N = {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn memory_rows(output: &str) -> Result<Vec<Figure>, String> {
    let table = memory_table(output);
    let get = |name: &str| {
        table
            .get(name)
            .ok_or_else(|| format!("no row {name:?} in the memory output"))
    };
    let items = |name: &str| -> Result<String, String> {
        let rows = get(name)?;
        Ok(per_n(
            &rows.iter().map(|&(n, b, _)| (n, b)).collect::<Vec<_>>(),
        ))
    };
    let mut rows = vec![
        fig(
            "memory.position_1",
            "position, 1 location per sku (its key's cost subtracted)",
            items("position, 1 location per sku")?,
        ),
        fig(
            "memory.position_4",
            "position, 4 locations per sku",
            items("position, 4 locations per sku")?,
        ),
        fig(
            "memory.open_hold",
            "open single-line hold, 1 hold per sku, all told (hold, records, indexes, ladder line)",
            items("open single-line hold, 1 hold per sku")?,
        ),
        fig(
            "memory.open_hold_shared",
            "open single-line hold, 1,000 holds per sku, all told",
            items("open single-line hold, 1,000 holds per sku")?,
        ),
        fig(
            "memory.ended_hold",
            "ended (released) single-line hold kept for the retention window, 1 hold per sku",
            items("ended (released) single-line hold, 1 hold per sku")?,
        ),
    ];
    let keys = get("position, 1 location per sku")?;
    rows.push(fig(
        "memory.key",
        "idempotency key of an `Adjust` (keys-only control)",
        per_n(&keys.iter().map(|&(n, _, k)| (n, k)).collect::<Vec<_>>()),
    ));
    Ok(rows)
}

#[derive(Deserialize)]
struct MapMemoryRow {
    table: String,
    positions: u64,
    locations_per_sku: u64,
    bytes_per_position: f64,
}

fn map_memory_rows(output: &str) -> Result<Vec<Figure>, String> {
    let rows: Vec<MapMemoryRow> =
        serde_json::from_str(output).map_err(|e| format!("map_memory --json: {e}"))?;
    let mut figures = Vec::new();
    for (table, what) in [
        (
            "ledger",
            "the engine's sku table (through `Ledger::submit`)",
        ),
        ("dashmap", "`DashMap` of the same entries"),
    ] {
        for locations in [1, 4] {
            let values: Vec<(u64, f64)> = rows
                .iter()
                .filter(|r| r.table == table && r.locations_per_sku == locations)
                .map(|r| (r.positions, r.bytes_per_position))
                .collect();
            if values.is_empty() {
                return Err(format!("no {table} row with {locations} locations per sku"));
            }
            figures.push(fig(
                &format!("map_memory.{table}_{locations}"),
                format!(
                    "{what}, {locations} location{} per sku",
                    if locations == 1 { "" } else { "s" }
                ),
                per_n(&values),
            ));
        }
    }
    Ok(figures)
}

/// One run's report in `log_throughput`'s output.
struct LogRun {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    busy: Option<f64>,
    batch_mean: Option<f64>,
}

/// `log_throughput`'s runs, by label and submitter count ("durable sync x8", 64).
fn log_runs(output: &str) -> BTreeMap<(String, u64), LogRun> {
    let mut runs = BTreeMap::new();
    let mut last: Option<(String, u64)> = None;
    for line in output.lines() {
        if let Some((left, right)) = line.split_once(" submitters: ") {
            let mut words: Vec<&str> = left.split_whitespace().collect();
            let Some(threads) = words.pop().and_then(|t| t.parse::<u64>().ok()) else {
                continue;
            };
            let label = words.join(" ");
            let (Some(rate), Some(p50), Some(p99)) = (
                leading_number(right).map(|(v, _)| v),
                after(right, "ack p50 "),
                after(right, "p99 "),
            ) else {
                continue;
            };
            let key = (label, threads);
            runs.insert(
                key.clone(),
                LogRun {
                    rate,
                    p50_us: p50,
                    p99_us: p99,
                    busy: None,
                    batch_mean: None,
                },
            );
            last = Some(key);
        } else if let Some(run) = last.as_ref().and_then(|k| runs.get_mut(k)) {
            if line.contains("submits refused Busy") {
                let before = line.split(" submits refused Busy").next().unwrap_or("");
                run.busy = before
                    .rsplit(';')
                    .next()
                    .and_then(|s| leading_number(s).map(|(v, _)| v));
            } else if line.contains("writer: ") {
                run.batch_mean = after(line, "batches, mean ");
            }
        }
    }
    runs
}

fn log_rows(output: &str) -> Result<Vec<Figure>, String> {
    let mut rows = Vec::new();
    let disk = line(output, "disk: ")?;
    rows.push(fig(
        "log.fsync",
        "the disk alone: 4 KiB append + `sync_data`",
        format!(
            "median {}, p99 {}",
            duration_us(need(after(disk, "median "), "the fsync median")?),
            duration_us(need(after(disk, "p99 "), "the fsync p99")?)
        ),
    ));
    for batch in [1u64, 64, 4096] {
        let prefix = "redb alone, one record per batch:";
        let found = output.lines().find(|l| {
            l.starts_with(prefix)
                && leading_number(&l[prefix.len()..]).map(|(v, _)| v as u64) == Some(batch)
        });
        let found = found.ok_or_else(|| format!("no redb line for {batch} events"))?;
        rows.push(fig(
            &format!("log.redb_{batch}"),
            format!(
                "redb alone: one fsync commit of {batch} event{} (one record)",
                if batch == 1 { "" } else { "s" }
            ),
            format!(
                "median {}",
                duration_us(need(after(found, "median "), "a redb median")?)
            ),
        ));
    }
    let runs = log_runs(output);
    let wanted: [(&str, &str, u64, &str); 10] = [
        (
            "log.none_1",
            "no log",
            1,
            "engine with no log (the submitters' ceiling), 1 submitter",
        ),
        ("log.none_2", "no log", 2, "same, 2 submitters"),
        (
            "log.sync_1",
            "durable sync",
            1,
            "durable `Sync`, closed loop, 1 submitter",
        ),
        (
            "log.sync_16",
            "durable sync",
            16,
            "durable `Sync`, closed loop, 16 submitters",
        ),
        (
            "log.sync_64",
            "durable sync",
            64,
            "durable `Sync`, closed loop, 64 submitters",
        ),
        (
            "log.sync_64x4",
            "durable sync x4",
            64,
            "durable `Sync`, 64 submitters x 4 in flight",
        ),
        (
            "log.sync_64x8",
            "durable sync x8",
            64,
            "durable `Sync`, 64 submitters x 8 in flight",
        ),
        (
            "log.async_1",
            "async 10ms",
            1,
            "`Async` (10 ms flush), 1 submitter",
        ),
        ("log.async_2", "async 10ms", 2, "`Async`, 2 submitters"),
        ("log.async_64", "async 10ms", 64, "`Async`, 64 submitters"),
    ];
    for (id, label, threads, what) in wanted {
        let run = runs
            .get(&(label.to_owned(), threads))
            .ok_or_else(|| format!("no {label} run with {threads} submitters"))?;
        let mut figure = format!("{} reserves/s", si(run.rate));
        if label != "no log" {
            let _ = write!(
                figure,
                "; ack p50 {}, p99 {}",
                duration_us(run.p50_us),
                duration_us(run.p99_us)
            );
        }
        if let Some(mean) = run.batch_mean.filter(|_| label.starts_with("durable")) {
            let _ = write!(figure, "; mean batch {mean:.1} events");
        }
        if let Some(busy) = run.busy.filter(|&b| b > 0.0) {
            let _ = write!(figure, "; {} submits refused `Busy`", si(busy));
        }
        rows.push(fig(id, what, figure));
    }
    Ok(rows)
}

fn recovery_rows(output: &str) -> Result<Vec<Figure>, String> {
    let head = line(output, "recovery: ")?;
    let events = need(after(head, "recovery: "), "the event count")?;
    let positions = need(after(head, " events over "), "the position count")?;
    let size = format!(
        "{} events, {} positions",
        thousands(events as u64),
        thousands(positions as u64)
    );
    let mut rows = Vec::new();

    let build = line(output, "build: submitted in ")?;
    rows.push(fig(
        "recovery.build",
        format!("build the log through the engine (`Async`): {size}"),
        format!(
            "{} ({} events/s); file {:.0} B/event",
            need(duration_after(build, "submitted in "), "the build time")?,
            si(need(rate_after(build, " s ("), "the build rate")?),
            need(after(build, "MiB ("), "the bytes per event")?
        ),
    ));

    let decode = line(output, "replay: ")?;
    let decode_at = need(decode.find("decode alone "), "the read + decode figure")?;
    rows.push(fig(
        "recovery.read_decode",
        "full replay: read + decode alone (`read_from`)",
        format!(
            "{} events/s",
            si(need(
                rate_after(&decode[decode_at..], " s ("),
                "the decode rate"
            )?)
        ),
    ));
    let recover = line(output, "replay: open with integrity check ")?;
    rows.push(fig(
        "recovery.replay",
        format!("full replay: `Engine::recover` from LSN 1 ({size})"),
        format!(
            "{} ({} events/s); open with the integrity check {}",
            need(
                duration_after(recover, "(decode on a second thread) "),
                "the replay time"
            )?,
            si(need(
                {
                    let at = recover.find("second thread) ").unwrap_or(0);
                    rate_after(&recover[at..], " s (")
                },
                "the replay rate"
            )?),
            need(duration_after(recover, "integrity check "), "the open time")?
        ),
    ));

    let cut = line(output, "checkpoint: purge of ")?;
    rows.push(fig(
        "recovery.purge",
        "checkpoint step 1: purge past retention",
        format!(
            "{} ({} entries)",
            need(duration_after(cut, "past retention "), "the purge time")?,
            thousands(need(after(cut, "purge of "), "the purged count")? as u64)
        ),
    ));
    rows.push(fig(
        "recovery.cut",
        "checkpoint step 2: `Ledger::cut`, of which every lock held (writes blocked)",
        format!(
            "{}, of which locked {}",
            need(duration_after(cut, "; cut "), "the cut time")?,
            need(
                duration_after(cut, "writes blocked) for "),
                "the locked time"
            )?
        ),
    ));
    let counts = output
        .lines()
        .find(|l| l.starts_with("checkpoint: ") && l.contains(" positions, ") && l.contains("->"))
        .ok_or("no checkpoint size line")?;
    let mut parts = Vec::new();
    for part in ["positions", "holds", "keys"] {
        let prefix = format!("checkpoint:   {part}: ");
        let l = line(output, &prefix)?;
        let each = need(after(l, "MiB ("), "bytes per part")?;
        parts.push(format!("{part} {each:.0} B each"));
    }
    rows.push(fig(
        "recovery.checkpoint_size",
        format!(
            "checkpoint encoding: {} positions, {} holds, {} keys",
            thousands(need(after(counts, "checkpoint: "), "positions")? as u64),
            thousands(need(after(counts, " positions, "), "holds")? as u64),
            thousands(need(after(counts, " holds, "), "keys")? as u64)
        ),
        format!(
            "{:.0} MiB; {}",
            need(after(counts, "-> "), "the checkpoint size")?,
            parts.join(", ")
        ),
    ));
    let whole = line(output, "checkpoint: Engine::checkpoint at lsn ")?;
    rows.push(fig(
        "recovery.checkpoint",
        "`Engine::checkpoint` in all; the writer's longest commit while staging it",
        format!(
            "{}; longest commit {}",
            need(
                whole
                    .find("at lsn ")
                    .and_then(|at| duration_after(&whole[at..], ": ")),
                "the checkpoint time"
            )?,
            need(duration_after(whole, "the longest "), "the longest commit")?
        ),
    ));
    let loaded = line(output, "checkpoint under load: ")?;
    rows.push(fig(
        "recovery.under_load",
        "a checkpoint with a durable submitter running: its slowest submit",
        need(duration_after(loaded, "the slowest "), "the slowest submit")?,
    ));
    let read = line(output, "load: open with integrity check ")?;
    rows.push(fig(
        "recovery.load_parts",
        "restart: `latest_checkpoint` (read, checksum, decode); `Ledger::from_checkpoint`",
        format!(
            "{}; {}",
            need(duration_after(read, "decode) "), "the checkpoint read")?,
            need(duration_after(read, "from_checkpoint "), "the load")?
        ),
    ));
    let restart = line(output, "load: open + Engine::recover from the checkpoint ")?;
    rows.push(fig(
        "recovery.restart",
        "restart from the checkpoint: open + `Engine::recover`",
        need(
            duration_after(restart, "from the checkpoint "),
            "the restart time",
        )?,
    ));
    Ok(rows)
}

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

const LOAD_CLOSED: [(&str, &str, &str, &str); 6] = [
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
const LOAD_PACED_CHECK: [(&str, &str, &str, &str); 1] = [(
    "load.check_paced",
    "check",
    "check",
    "unary Check paced at 50,000/s in total",
)];
const LOAD_PACED_RESERVE: [(&str, &str, &str, &str); 1] = [(
    "load.reserve_paced",
    "reserve",
    "reserve",
    "unary durable Reserve paced at 40,000/s in total",
)];

fn load_rows(output: &str, wanted: &LoadWanted) -> Result<Vec<Figure>, String> {
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

// ------------------------------------------------------------------------------------------
// Running

struct Ctx {
    root: PathBuf,
    target_dir: PathBuf,
    /// When the current section started: criterion results older than this are stale.
    section_started: SystemTime,
}

/// Runs `cargo <args>` in the workspace root; its stdout is captured (and echoed to stderr
/// as it comes, with cargo's and the tool's stderr, so a long run shows progress).
fn run(ctx: &Ctx, r: &Run) -> Result<String, String> {
    eprintln!("\n==> {}", r.shell());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(&r.args)
        .current_dir(&ctx.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", r.shell()))?;
    let mut output = String::new();
    if let Some(stdout) = child.stdout.take() {
        for l in BufReader::new(stdout).lines() {
            let l = l.map_err(|e| format!("reading the output of {}: {e}", r.shell()))?;
            eprintln!("{l}");
            output.push_str(&l);
            output.push('\n');
        }
    }
    let status = child.wait().map_err(|e| format!("{}: {e}", r.shell()))?;
    if !status.success() {
        return Err(format!("{} failed: {status}", r.shell()));
    }
    Ok(output)
}

fn capture(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `cargo metadata`'s workspace root and target folder.
fn workspace() -> Result<(PathBuf, PathBuf), String> {
    #[derive(Deserialize)]
    struct Metadata {
        workspace_root: PathBuf,
        target_directory: PathBuf,
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", out.status));
    }
    let m: Metadata =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    Ok((m.workspace_root, m.target_directory))
}

/// The commit, with " (dirty)" if tracked or untracked files differ from it (the output file
/// itself aside).
fn commit(root: &Path, out: &Path) -> String {
    let Some(hash) = capture("git", &["rev-parse", "--short", "HEAD"], root) else {
        return "unknown (not a git checkout)".to_owned();
    };
    let out_rel = out.strip_prefix(root).unwrap_or(out).to_string_lossy();
    let dirty = capture("git", &["status", "--porcelain"], root).is_some_and(|s| {
        s.lines()
            .any(|l| l.get(3..).is_some_and(|path| path.trim() != out_rel))
    });
    if dirty {
        format!("`{hash}` (dirty)")
    } else {
        format!("`{hash}`")
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(format!(", {:.0} GiB", kib / (1024.0 * 1024.0)))
        })
        .unwrap_or_default();
    format!("{cores} cores, {model}{memory}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// UTC "YYYY-MM-DD HH:MM" of `t`.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

// ------------------------------------------------------------------------------------------
// The file

const BEGIN: &str = "<!-- figures:begin ";
const END: &str = "<!-- figures:end ";

/// The sections of an existing file, by id, markers included.
fn existing_sections(text: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let Some(id_end) = after_begin.find(" -->") else {
            break;
        };
        let id = after_begin[..id_end].to_owned();
        let end_marker = format!("{END}{id} -->");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let stop = start + end + end_marker.len();
        sections.insert(id, rest[start..stop].to_owned());
        rest = &rest[stop..];
    }
    sections
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

struct Meta {
    date: String,
    commit: String,
    machine: String,
    quick: bool,
    load_before: String,
    load_after: String,
}

fn render_section(id: &str, meta: &Meta, runs: &[Run], rows: &[Vec<Figure>]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}{id} -->");
    let _ = writeln!(s, "## {}\n", title(id));
    let _ = writeln!(
        s,
        "Measured {} on commit {}, {} run; {}; load average {} before, {} after.\n",
        meta.date,
        meta.commit,
        if meta.quick {
            "quick (`--quick`)"
        } else {
            "full"
        },
        meta.machine,
        meta.load_before,
        meta.load_after
    );
    let _ = writeln!(s, "{}\n", about(id));
    for (run, rows) in runs.iter().zip(rows) {
        let _ = writeln!(s, "```sh\n{}\n```\n", run.shell());
        let _ = writeln!(s, "| row | what | figure |\n|---|---|---|");
        for r in rows {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} |",
                r.id,
                cell(&r.what),
                cell(&r.figure)
            );
        }
        s.push('\n');
    }
    let _ = write!(s, "{END}{id} -->");
    s
}

fn placeholder(id: &str) -> String {
    format!(
        "{BEGIN}{id} -->\n## {}\n\nNot measured yet: `cargo run --release -p inv-benches --bin \
         figures -- --only {id}`.\n{END}{id} -->",
        title(id)
    )
}

const HEADER: &str = "\
# Measured figures

Generated by `cargo run --release -p inv-benches --bin figures` (`benches/src/bin/figures.rs`);
do not edit by hand. Every measured number the README and the docs rely on is here, under a
row name (`ledger.check`, `log.sync_64`, ...) that they cite. `--only SECTION,...` re-measures
some sections and keeps the others; `--quick` makes short runs. Each section says when, on which
commit and machine, and how busy the machine was: figures from a shared or busy machine are
noisy, so compare rows measured together, and re-run on a quiet machine before quoting one.
";

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("figures: {e}");
            std::process::exit(2);
        }
    };
    if args.list {
        for section in SECTIONS
            .iter()
            .filter(|s| args.only.iter().any(|o| o == *s))
        {
            for r in runs(section, args.quick) {
                println!("{section}: {}", r.shell());
            }
        }
        return;
    }
    let (root, target_dir) = match workspace() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("figures: {e}");
            std::process::exit(2);
        }
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("docs/figures.md"));
    let mut ctx = Ctx {
        root: root.clone(),
        target_dir,
        section_started: SystemTime::now(),
    };
    let machine = machine();
    let mut fresh: BTreeMap<String, String> = BTreeMap::new();
    let mut failed = Vec::new();
    for section in SECTIONS
        .iter()
        .filter(|s| args.only.iter().any(|o| o == *s))
    {
        let section_runs = runs(section, args.quick);
        // Whole seconds: file times may be truncated to the second.
        ctx.section_started = SystemTime::now() - std::time::Duration::from_secs(1);
        let meta_before = (utc(SystemTime::now()), load_average());
        let mut outputs = Vec::new();
        let mut error = None;
        for r in &section_runs {
            match run(&ctx, r) {
                Ok(o) => outputs.push(o),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let rows = match error {
            Some(e) => Err(e),
            None => parse(section, &outputs, &ctx),
        };
        match rows {
            Ok(rows) => {
                let meta = Meta {
                    date: meta_before.0,
                    commit: commit(&root, &out),
                    machine: machine.clone(),
                    quick: args.quick,
                    load_before: meta_before.1,
                    load_after: load_average(),
                };
                fresh.insert(
                    section.to_string(),
                    render_section(section, &meta, &section_runs, &rows),
                );
            }
            Err(e) => {
                eprintln!("figures: section {section} left as it was: {e}");
                failed.push(section.to_string());
            }
        }
    }
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let old_sections = existing_sections(&old);
    let mut text = String::from(HEADER);
    for section in SECTIONS {
        text.push('\n');
        let body = fresh
            .get(section)
            .or_else(|| old_sections.get(section))
            .cloned()
            .unwrap_or_else(|| placeholder(section));
        text.push_str(&body);
        text.push('\n');
    }
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("figures: writing {}: {e}", out.display());
        std::process::exit(1);
    }
    eprintln!(
        "\nfigures: wrote {} ({} section{} measured{})",
        out.display(),
        fresh.len(),
        if fresh.len() == 1 { "" } else { "s" },
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failed.join(", "))
        }
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_memory_table() {
        let out = "\
item                                                             N   B/item allocs/item   B/key  with keys after purge      target
position, 1 location per sku                               1000000    115.2        1.00    71.3      186.5       140.0   <= 128 ok
open single-line hold, 1,000 holds per sku                   60000    180.0        1.00    71.3      180.0       150.0   <= 256 ok
ended (released) single-line hold, 1 hold per sku           100000    200.0        1.00    71.3      200.0       150.0           -
";
        let t = memory_table(out);
        assert_eq!(
            t["position, 1 location per sku"],
            vec![(1_000_000, 115.2, 71.3)]
        );
        assert_eq!(t["open single-line hold, 1,000 holds per sku"][0].0, 60_000);
        assert_eq!(
            t["ended (released) single-line hold, 1 hold per sku"][0].1,
            200.0
        );
    }

    #[test]
    fn reads_log_runs() {
        let out = "\
durable sync x8 64 submitters:    364000 reserves/s (1092000 in 3.00 s); ack p50 1200 us, p99 3300 us, p99.9 4000 us, max 5000 us
                    cpu: process 5.00 core-s of 6.00 available; log writer thread 1.00 core-s; 12 submits refused Busy
                    writer: 5000 batches, mean 212.0 events, largest 600, 5000 fsync commits; per batch: insert 20 us, commit 295 us; busy 50% of wall time
";
        let runs = log_runs(out);
        let r = &runs[&("durable sync x8".to_owned(), 64)];
        assert_eq!((r.rate, r.p50_us, r.p99_us), (364_000.0, 1_200.0, 3_300.0));
        assert_eq!(r.busy, Some(12.0));
        assert_eq!(r.batch_mean, Some(212.0));
    }

    #[test]
    fn reads_durations_and_rates() {
        let l = "replay: open with integrity check 0.43 s; Engine::recover (decode on a second thread) 8.05 s (1.24 M/s); open + recover 8.48 s, rss 1400.0 MiB";
        assert_eq!(seconds_after(l, "integrity check "), Some(0.43));
        assert_eq!(seconds_after(l, "(decode on a second thread) "), Some(8.05));
        let at = l.find("second thread) ").expect("marker");
        assert_eq!(rate_after(&l[at..], " s ("), Some(1.24e6));
        assert_eq!(rate_after("x 817 k/s)", "x "), Some(817e3));
        assert_eq!(
            seconds_after("locked for 48.0 ms);", "locked for "),
            Some(0.048)
        );
    }

    #[test]
    fn keeps_the_sections_it_did_not_run() {
        let text = format!(
            "{HEADER}\n{}\n\n{}\n",
            placeholder("ledger"),
            placeholder("log")
        );
        let sections = existing_sections(&text);
        assert_eq!(sections.len(), 2);
        assert!(sections["log"].starts_with("<!-- figures:begin log -->"));
        assert!(sections["log"].ends_with("<!-- figures:end log -->"));
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(si(1_390_000.0), "1.39M");
        assert_eq!(si(92_400.0), "92k");
        assert_eq!(si(4_000.0), "4.0k");
        assert_eq!(duration_ns(48.2), "48 ns");
        assert_eq!(duration_ns(720.0), "720 ns");
        assert_eq!(duration_ns(1_500.0), "1.50 µs");
        assert_eq!(duration_us(760.0), "760 µs");
        assert_eq!(duration_us(9.0), "9 µs");
        assert_eq!(duration_us(1_600.0), "1.6 ms");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00 UTC");
    }
}
