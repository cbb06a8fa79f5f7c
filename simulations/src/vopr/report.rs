//! What a run prints. Everything here goes to stdout and depends only on the seed and the
//! number of steps (times go to stderr), so two runs of one seed print the same bytes.

use super::shrink::Shrunk;
use super::sim::{Summary, Violation};
use std::fmt::Write as _;

/// The last line of a passing run: seed, steps, events, faults injected, final digest.
pub fn final_line(seed: u64, summary: &Summary) -> String {
    format!(
        "vopr seed={seed} steps={} events={} faults={} digest={:016x}",
        summary.steps,
        summary.events,
        summary.faults_total(),
        summary.digest
    )
}

/// The faults injected, by kind, on one line.
pub fn faults_line(summary: &Summary) -> String {
    let mut line = String::from("faults:");
    for (kind, count) in &summary.faults {
        let _ = write!(line, " {kind}={count}");
    }
    line
}

/// The answers clients got, by kind, and how many were acknowledged or lost.
pub fn answers_line(summary: &Summary) -> String {
    let mut line = String::from("answers:");
    for (kind, count) in &summary.answers {
        let _ = write!(line, " {kind}={count}");
    }
    let _ = write!(
        line,
        "; acked after durable={} events lost to crashes={} keys archived={}",
        summary.acked, summary.lost, summary.archived
    );
    line
}

/// A failure: where, which invariant, the details, and the shrunk reproduction.
pub fn failure(seed: u64, steps: usize, violation: &Violation, shrunk: Option<&Shrunk>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FAILED seed={seed} steps={steps} step={} invariant={}",
        violation.step, violation.invariant
    );
    let _ = writeln!(out, "  {}", violation.detail);
    if let Some(shrunk) = shrunk {
        let _ = writeln!(
            out,
            "shrunk reproduction: {} ops (from {}), failing at op {} with {}{}:",
            shrunk.ops.len(),
            violation.step + 1,
            shrunk.violation.step,
            shrunk.violation.invariant,
            if shrunk.exhausted {
                ", shrink budget exhausted"
            } else {
                ""
            }
        );
        for (i, op) in shrunk.ops.iter().enumerate() {
            let _ = writeln!(out, "  {i:>4} {op}");
        }
        let _ = writeln!(out, "  => {}", shrunk.violation.detail);
    }
    let _ = write!(
        out,
        "reproduce: cargo run --release -p inv-sim --bin vopr -- --seed {seed} --steps {steps}"
    );
    out
}
