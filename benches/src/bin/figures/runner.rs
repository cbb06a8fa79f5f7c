//! Running the tools (`cargo` in the workspace root, output captured), and what a section
//! records about where it ran: the commit, the machine and its load.

use crate::sections::Run;
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) target_dir: PathBuf,
    /// When the current section started: criterion results older than this are stale.
    pub(crate) section_started: SystemTime,
}

/// Runs `cargo <args>` in the workspace root; its stdout is captured (and echoed to stderr
/// as it comes, with cargo's and the tool's stderr, so a long run shows progress).
pub(crate) fn run(ctx: &Ctx, r: &Run) -> Result<String, String> {
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
pub(crate) fn workspace() -> Result<(PathBuf, PathBuf), String> {
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
pub(crate) fn commit(root: &Path, out: &Path) -> String {
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

pub(crate) fn machine() -> String {
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

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
