//! What each section runs and reports: its commands, title and text, and the reader that turns
//! the commands' outputs into the section's rows.

use crate::criterion::{LEDGER_BENCHES, MAPS_BENCHES, criterion_rows};
use crate::load::{LOAD_CLOSED, LOAD_PACED_CHECK, LOAD_PACED_RESERVE, load_rows};
use crate::log::log_rows;
use crate::memory::{map_memory_rows, memory_rows};
use crate::recovery::recovery_rows;
use crate::runner::Ctx;

/// One command a section runs: the program's arguments after `cargo`.
#[derive(Clone)]
pub(crate) struct Run {
    pub(crate) args: Vec<String>,
}

impl Run {
    pub(crate) fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub(crate) fn shell(&self) -> String {
        format!("cargo {}", self.args.join(" "))
    }
}

/// One row of the file.
pub(crate) struct Figure {
    /// Stable name of the row, for references from other documents (`section.name`).
    pub(crate) id: String,
    pub(crate) what: String,
    pub(crate) figure: String,
}

pub(crate) fn fig(id: &str, what: impl Into<String>, figure: impl Into<String>) -> Figure {
    Figure {
        id: id.to_owned(),
        what: what.into(),
        figure: figure.into(),
    }
}

/// The commands of a section.
pub(crate) fn runs(section: &str, quick: bool) -> Vec<Run> {
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

pub(crate) fn title(section: &str) -> &'static str {
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

pub(crate) fn about(section: &str) -> &'static str {
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
pub(crate) fn parse(
    section: &str,
    outputs: &[String],
    ctx: &Ctx,
) -> Result<Vec<Vec<Figure>>, String> {
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
