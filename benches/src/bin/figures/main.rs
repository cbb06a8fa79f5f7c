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
//!
//! Layout, top-down: `main.rs` (options and the run over the sections), `sections.rs` (what
//! each section runs, its title and text, and which reader turns its outputs into rows), one
//! reader per tool (`criterion.rs` for the ledger and maps benches, `memory.rs`, `log.rs`,
//! `recovery.rs`, `load.rs`) over `text.rs` (numbers and durations in text lines) and
//! `format.rs` (how figures are written), `runner.rs` (running the tools; the commit and the
//! machine) and `document.rs` (the sections of docs/figures.md).

mod criterion;
mod document;
mod format;
mod load;
mod log;
mod memory;
mod recovery;
mod runner;
mod sections;
mod text;

use document::{HEADER, Meta, existing_sections, placeholder, render_section};
use format::utc;
use runner::{Ctx, commit, load_average, machine, run, workspace};
use sections::{parse, runs};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
