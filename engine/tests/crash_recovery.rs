//! `kill -9` crash test: real processes killed at random moments, then recovered and checked.
//!
//! # What it proves
//! For a `RedbLog` in `Durability::Sync` mode, written by several threads at once with
//! checkpoints (and so trimming) going on, a process killed with SIGKILL at an arbitrary moment
//! leaves a folder from which `Engine::recover` (newest checkpoint + the log's tail) rebuilds a
//! ledger such that:
//! 1. every acknowledged command is in the history at the LSN it was acknowledged with, with
//!    the same command and outcome, and re-submitting it comes back as a duplicate with that
//!    LSN and outcome (idempotency keys survive, including keys only the checkpoint holds);
//! 2. nothing is half-applied: the recovered ledger passes `check_invariants`, and its digest
//!    equals that of a from-scratch replay of the whole history into a fresh ledger (done
//!    twice, and the two agree), and that of the checkpoint plus the tail loaded afresh;
//! 3. the history is a gap-free prefix `1..=n`, and the log, the checkpoint and the recovered
//!    ledger agree on `n`; reads below the checkpoint are refused as trimmed;
//! 4. open holds keep their expiry: every hold whose last expiry-setting event was
//!    acknowledged shows that `expires_at_ms`, and every hold is in the state the history
//!    says, across several crashes and recoveries.
//!
//! The child runs with the key archive (`keys.redb`) and moves records and ended holds there 20
//! ms after their last decision, at each checkpoint, so points 1 and 2 also hold for what a
//! kill left on disk rather than in the checkpoint (each round prints how many keys were
//! archived).
//!
//! # How
//! The test binary (`harness = false`) re-executes itself (`std::env::current_exe()`) as the
//! child with `INV_CRASH_CHILD=<data dir>`. The child opens the `RedbLog` in `Sync` mode,
//! recovers, prints `READY <next lsn>`, then runs four submitter threads sending a seeded random
//! mix of every client command (reserves, commits, partial commits, releases, extends, sales,
//! returns, dispositions, adjustments, safety stock, and retries of its own earlier commands),
//! an expiry thread (`expire_due`), and a checkpoint thread (`checkpoint_if_due` with a small
//! policy, so each round writes several checkpoints). Each acknowledged result is printed as one
//! line, `ACK <json>` (LSN, duplicate flag, outcome and the command itself), and flushed, only
//! after `Engine::submit` returned: a printed line is an acknowledgement the client saw.
//!
//! Checkpoints trim the log, so the full history would be lost to the check in point 2. The
//! child's log is therefore wrapped (`ArchivingLog`): before a checkpoint is handed to the
//! `RedbLog`, every event it will trim is appended to `archive.jsonl` in the data folder (a
//! plain file write, which survives a `kill -9` though not a power cut). The parent's history
//! is the archive below the checkpoint plus the log from the checkpoint on; an event in both
//! must be identical.
//!
//! The parent runs `INV_CRASH_ROUNDS` rounds (default 5) on one data folder, so state
//! accumulates: start the child, wait for `READY`, read acknowledgements for a random 100-600
//! ms, `Child::kill` (SIGKILL), wait for it, then open the folder itself (`RedbLog::open` +
//! `Engine::recover` with a `ManualClock`), check the four points above for every
//! acknowledgement of every round so far, close, and go on. The seed is printed
//! (`INV_CRASH_SEED` replays it). Every wait is bounded; the whole test takes a few seconds and
//! deletes its folder. It ends with `crash_recovery: N passed, 0 failed` (one per round) and
//! exits non-zero on any failure.

use inv_engine::archive::KeyArchive;
use inv_engine::archive::redb::RedbArchive;
use inv_engine::checkpoint::Checkpoint;
use inv_engine::engine::CheckpointPolicy;
use inv_engine::testing::commands::{
    adjust_with_reason, commit, commit_lines, dispose, extend, record_return, release, reserve_on,
    return_line, sale, set_safety_stock,
};
use inv_engine::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "INV_CRASH_CHILD";
const ROUND_ENV: &str = "INV_CRASH_ROUND";
const SEED_ENV: &str = "INV_CRASH_SEED";
const ROUNDS_ENV: &str = "INV_CRASH_ROUNDS";
const ARCHIVE: &str = "archive.jsonl";
const SUBMITTERS: u64 = 4;
const SKUS: u64 = 16;
const LOCATIONS: [&str; 3] = ["dc-1", "dc-2", "store-1"];
/// A child that is never killed (a hung parent) stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
/// The whole test's budget; each wait inside is bounded well below it.
const TEST_BUDGET: Duration = Duration::from_secs(120);

/// One acknowledged result, as the child prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ack {
    lsn: u64,
    duplicate: bool,
    outcome: Outcome,
    command: Command,
}

fn config() -> LedgerConfig {
    LedgerConfig {
        shards: 16,
        // A short history window, so that checkpoints trim the log within a round and the
        // crash can land between a trim and what follows it.
        history_ms: 100,
        ..LedgerConfig::default()
    }
}

/// Records and ended holds leave memory for the key archive (`keys.redb`) 20 ms after their
/// last decision, at the next checkpoint: the child checkpoints several times a round, so
/// kills land before, during and after evictions, and the checks below read what was
/// acknowledged back through the archive.
fn key_tiers() -> MemoryPolicy {
    MemoryPolicy {
        key_memory_ms: 20,
        ..MemoryPolicy::default()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(PathBuf::from(dir));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("crash_recovery: test");
        return;
    }
    let started = Instant::now();
    let mut passed = 0;
    let result = parent(&mut passed);
    match result {
        Ok(()) => {
            println!(
                "crash_recovery: {passed} passed, 0 failed ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
        Err(failure) => {
            eprintln!("crash_recovery: FAILED: {failure}");
            println!("crash_recovery: {passed} passed, 1 failed");
            std::process::exit(1);
        }
    }
}

// --------------------------------------------------------------------------------------------
// The child

/// Prints one line and flushes it; a parent that went away ends the child.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(4);
    }
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} must be set to a number"))
}

/// A `RedbLog` that copies every event a checkpoint is about to trim into `archive.jsonl`
/// first, so the test can still replay the whole history. Everything else is delegated.
struct ArchivingLog {
    inner: Arc<RedbLog>,
    archive: Mutex<Archive>,
}

struct Archive {
    file: File,
    /// The first LSN not yet archived.
    next: Lsn,
}

impl ArchivingLog {
    fn new(inner: Arc<RedbLog>, path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // Everything before the stored checkpoint was archived by an earlier process.
        let next = inner.checkpoint_lsn().unwrap_or(Lsn(1));
        Ok(Self {
            inner,
            archive: Mutex::new(Archive { file, next }),
        })
    }
}

impl EventLog for ArchivingLog {
    fn append(&self, event: &Arc<Event>) -> Result<(), LogError> {
        self.inner.append(event)
    }

    fn wait_durable(&self, lsn: Lsn) -> Result<(), LogError> {
        self.inner.wait_durable(lsn)
    }

    fn durable_lsn(&self) -> Lsn {
        self.inner.durable_lsn()
    }

    fn read_from(&self, from: Lsn, max: usize) -> Result<Vec<Arc<Event>>, LogError> {
        self.inner.read_from(from, max)
    }

    fn admit(&self) -> Result<(), LogError> {
        self.inner.admit()
    }

    fn health(&self) -> Result<(), LogError> {
        self.inner.health()
    }

    fn set_durable_listener(&self, listener: DurableListener) {
        self.inner.set_durable_listener(listener);
    }

    fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        self.inner.latest_checkpoint()
    }

    fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let mut archive = archive_lock(&self.archive);
        while archive.next < checkpoint.next_lsn {
            let want = (checkpoint.next_lsn.0 - archive.next.0).min(4_096) as usize;
            let events = self.inner.read_from(archive.next, want)?;
            let Some(last) = events.last() else {
                return Err(LogError::Io(format!(
                    "archive: nothing to read at lsn {}",
                    archive.next
                )));
            };
            let next = last.lsn.next();
            let mut text = String::new();
            for event in &events {
                let line = serde_json::to_string(event.as_ref())
                    .map_err(|e| LogError::Io(format!("archive: {e}")))?;
                text.push_str(&line);
                text.push('\n');
            }
            archive
                .file
                .write_all(text.as_bytes())
                .map_err(|e| LogError::Io(format!("archive: {e}")))?;
            archive.next = next;
        }
        self.inner.write_checkpoint(checkpoint)
    }
}

fn archive_lock(archive: &Mutex<Archive>) -> std::sync::MutexGuard<'_, Archive> {
    archive
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn child(dir: PathBuf) {
    let round = env_u64(ROUND_ENV);
    let seed = env_u64(SEED_ENV);
    let inner = Arc::new(RedbLog::open(&dir, RedbLogOptions::default()).expect("child: log opens"));
    let log = Arc::new(ArchivingLog::new(inner, &dir.join(ARCHIVE)).expect("child: archive opens"));
    let keys = RedbArchive::open(&dir).expect("child: key archive opens");
    let engine = Arc::new(
        Engine::recover_with(
            config(),
            log as Arc<dyn EventLog>,
            Arc::new(SystemClock),
            Some(Arc::new(keys)),
            key_tiers(),
        )
        .expect("child: recovers"),
    );
    say(&format!("READY {}", engine.ledger().next_lsn()));

    let mut rng = Rng(seed ^ round.wrapping_mul(0xA24B_AED4_963E_E407));
    let policy = CheckpointPolicy {
        every_events: rng.range(40, 400),
        every_ms: 25,
    };
    let checkpointer = {
        let engine = Arc::clone(&engine);
        let pause = Duration::from_millis(rng.range(1, 15));
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(pause);
                match engine.checkpoint_if_due(&policy) {
                    Ok(Some(lsn)) => say(&format!("CKPT {lsn}")),
                    Ok(None) => {}
                    Err(error) => {
                        eprintln!("child: checkpoint failed: {error}");
                        std::process::exit(3);
                    }
                }
            }
        })
    };
    let expirer = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if let Err(error) = engine.expire_due(32) {
                    eprintln!("child: expiry failed: {error}");
                    std::process::exit(3);
                }
            }
        })
    };
    for thread in 0..SUBMITTERS {
        let engine = Arc::clone(&engine);
        let seed = rng.next();
        std::thread::spawn(move || Submitter::new(round, thread, seed).run(&engine));
    }
    // Killed long before this, unless the parent is gone.
    std::thread::sleep(CHILD_LIFETIME);
    drop((checkpointer, expirer));
    std::process::exit(2);
}

/// One submitter thread's workload and what it knows of its own holds and returns.
struct Submitter {
    round: u64,
    thread: u64,
    rng: Rng,
    n: u64,
    /// Holds this thread placed and has not ended: id and lines.
    open: Vec<(String, Vec<Line>)>,
    /// Units this thread's returns put in quarantine: return id, sku, location, units left.
    quarantined: Vec<(String, String, String, u64)>,
    store_seq: u64,
    /// Recent commands, for retries.
    sent: Vec<Command>,
}

impl Submitter {
    fn new(round: u64, thread: u64, seed: u64) -> Self {
        Self {
            round,
            thread,
            rng: Rng(seed),
            n: 0,
            open: Vec::new(),
            quarantined: Vec::new(),
            store_seq: 0,
            sent: Vec::new(),
        }
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}-{}-{}", self.round, self.thread, self.n)
    }

    fn position(&mut self) -> (String, String) {
        let sku = format!("sku-{:02}", self.rng.below(SKUS));
        let location = LOCATIONS[self.rng.below(LOCATIONS.len() as u64) as usize].to_owned();
        (sku, location)
    }

    fn run(mut self, engine: &Engine) {
        loop {
            self.n += 1;
            let command = self.next_command();
            match engine.submit(command.clone()) {
                Ok(Ok(receipt)) => {
                    let ack = Ack {
                        lsn: receipt.lsn.0,
                        duplicate: receipt.duplicate,
                        outcome: receipt.outcome.clone(),
                        command: command.clone(),
                    };
                    let json = serde_json::to_string(&ack).expect("child: ack encodes");
                    say(&format!("ACK {json}"));
                    if !receipt.duplicate {
                        self.learn(&command, &receipt.outcome);
                    }
                    self.sent.push(command);
                    if self.sent.len() > 64 {
                        self.sent.remove(0);
                    }
                }
                // A retry is sent exactly as first sent: its key can never conflict.
                Ok(Err(refusal @ Refusal::KeyConflict { .. })) => {
                    eprintln!("child: submit refused: {refusal}");
                    std::process::exit(3);
                }
                // Refusals of commands on holds or returns that ended meanwhile.
                Ok(Err(_)) => self.forget(&command),
                Err(SubmitError::Busy { .. }) => std::thread::sleep(Duration::from_millis(1)),
                // Every command is well-formed, and the log never fails here.
                Err(error) => {
                    eprintln!("child: submit failed: {error}");
                    std::process::exit(3);
                }
            }
        }
    }

    fn next_command(&mut self) -> Command {
        let pick = self.rng.below(100);
        match pick {
            0..14 => {
                let (sku, location) = self.position();
                let delta = if self.rng.below(5) == 0 {
                    -(self.rng.range(1, 5) as i64)
                } else {
                    self.rng.range(1, 20) as i64
                };
                adjust_with_reason(&self.id("a"), &sku, &location, delta, "crash test")
            }
            14..44 => {
                let mut lines = Vec::new();
                for _ in 0..self.rng.range(1, 2) {
                    let (sku, location) = self.position();
                    if !lines
                        .iter()
                        .any(|l: &Line| l.sku.as_str() == sku && l.location.as_str() == location)
                    {
                        lines.push(Line::new(&sku, &location, self.rng.range(1, 4)));
                    }
                }
                // A quarter lapse within a second or two; the rest outlive the test.
                let ttl_ms = if self.rng.below(4) == 0 {
                    self.rng.range(1_000, 2_000)
                } else {
                    self.rng.range(600_000, 3_600_000)
                };
                let channel = ["web", "amazon-us"][(pick % 2) as usize];
                reserve_on(channel, &self.id("r"), lines, ttl_ms)
            }
            44..70 if !self.open.is_empty() => {
                let at = self.rng.below(self.open.len() as u64) as usize;
                let (id, lines) = self.open[at].clone();
                match pick {
                    44..54 if self.rng.below(2) == 0 => {
                        let line = &lines[0];
                        let part = Line {
                            qty: self.rng.range(1, line.qty),
                            ..line.clone()
                        };
                        commit_lines(&id, vec![part])
                    }
                    44..54 => commit(&id),
                    54..62 => release(&id),
                    _ => {
                        let request_id = self.id("x");
                        extend(&id, &request_id, self.rng.range(600_000, 3_600_000))
                    }
                }
            }
            70..80 => {
                // Mostly in order, sometimes a gap.
                self.store_seq += 1 + u64::from(self.rng.below(8) == 0);
                let (sku, location) = self.position();
                sale(
                    &format!("st{}-{}", self.round, self.thread),
                    &self.id("t"),
                    self.store_seq,
                    now_ms().saturating_sub(self.rng.below(5_000)),
                    vec![Line::new(&sku, &location, self.rng.range(1, 2))],
                )
            }
            80..88 => {
                let (sku, location) = self.position();
                let disposition = if self.rng.below(2) == 0 {
                    ReturnDisposition::Inspect
                } else {
                    ReturnDisposition::Restock
                };
                let id = self.id("ret");
                let line = return_line(&sku, &location, self.rng.range(1, 3), disposition);
                record_return(&id, vec![line])
            }
            88..93 if !self.quarantined.is_empty() => {
                let at = self.rng.below(self.quarantined.len() as u64) as usize;
                let (return_id, sku, location, left) = self.quarantined[at].clone();
                let id = self.id("d");
                let qty = self.rng.range(1, left);
                let action = if self.rng.below(2) == 0 {
                    DispositionAction::Restock
                } else {
                    DispositionAction::Scrap
                };
                dispose(&id, &return_id, &sku, &location, qty, action)
            }
            93..96 => {
                let (sku, location) = self.position();
                set_safety_stock(&self.id("ss"), &sku, &location, self.rng.below(4))
            }
            96..100 if !self.sent.is_empty() => {
                let at = self.rng.below(self.sent.len() as u64) as usize;
                self.sent[at].clone()
            }
            _ => {
                let (sku, location) = self.position();
                adjust_with_reason(&self.id("a"), &sku, &location, 10, "restock")
            }
        }
    }

    /// Updates what this thread knows after an accepted command.
    fn learn(&mut self, command: &Command, outcome: &Outcome) {
        match (command, outcome) {
            (Command::Reserve(c), Outcome::Granted { .. }) => {
                self.open
                    .push((c.reservation_id.to_string(), c.lines.clone()));
            }
            (Command::Commit(_) | Command::Release(_), _)
            | (Command::Extend(_), Outcome::Expired) => {
                self.forget(command);
            }
            (Command::Extend(_), Outcome::HoldAlreadyEnded(_)) => self.forget(command),
            (Command::RecordReturn(c), Outcome::Recorded) => {
                for line in &c.lines {
                    if line.disposition == ReturnDisposition::Inspect {
                        self.quarantined.push((
                            c.return_id.to_string(),
                            line.sku.to_string(),
                            line.location.to_string(),
                            line.qty,
                        ));
                    }
                }
            }
            (Command::Dispose(c), Outcome::Recorded) => {
                if let Some(at) = self.quarantined.iter().position(|q| {
                    q.0 == c.return_id.as_str()
                        && q.1 == c.sku.as_str()
                        && q.2 == c.location.as_str()
                }) {
                    self.quarantined[at].3 -= c.qty;
                    if self.quarantined[at].3 == 0 {
                        self.quarantined.remove(at);
                    }
                }
            }
            _ => {}
        }
    }

    /// Drops a hold or return this thread should no longer act on.
    fn forget(&mut self, command: &Command) {
        match command {
            Command::Commit(Commit { reservation_id, .. })
            | Command::Release(Release { reservation_id })
            | Command::Extend(Extend { reservation_id, .. }) => {
                self.open.retain(|(id, _)| id != reservation_id.as_str());
            }
            Command::Dispose(c) => {
                self.quarantined.retain(|q| q.0 != c.return_id.as_str());
            }
            _ => {}
        }
    }
}

// --------------------------------------------------------------------------------------------
// The parent

/// Kills (SIGKILL) and reaps the child when dropped, so no path leaves one running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one round's check saw, for its report line.
struct RoundReport {
    events: u64,
    first_retained: u64,
    recover_ms: f64,
    holds_checked: usize,
    carried_over: usize,
    /// Entries in the key archive when the folder was opened.
    archived: usize,
}

fn parent(passed: &mut usize) -> Result<(), String> {
    let deadline = Instant::now() + TEST_BUDGET;
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() ^ u64::from(std::process::id()).rotate_left(32));
    let rounds: u64 = std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!("crash_recovery: seed {seed} ({SEED_ENV}={seed} to replay), {rounds} rounds");
    let folder = tempfile::Builder::new()
        .prefix("inv-crash-")
        .tempdir()
        .map_err(|e| format!("temp folder: {e}"))?;
    let dir = folder.path().to_owned();
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut rng = Rng(seed);
    let mut acks: Vec<(u64, Ack)> = Vec::new();
    let mut next_lsn = 1u64;
    let mut total_checkpoints = 0;
    for round in 1..=rounds {
        if Instant::now() > deadline {
            return Err(format!(
                "over the {TEST_BUDGET:?} budget before round {round}"
            ));
        }
        let run_ms = rng.range(100, 600);
        let (lines, status) = run_child(&exe, &dir, round, seed, run_ms)?;
        if status.signal() != Some(9) {
            return Err(format!(
                "round {round}: the child was not killed by SIGKILL but ended with {status}"
            ));
        }
        let mut ready = None;
        let mut checkpoints = 0;
        let mut round_acks = 0;
        for line in &lines {
            if let Some(lsn) = line.strip_prefix("READY ") {
                ready = lsn.parse::<u64>().ok();
            } else if let Some(json) = line.strip_prefix("ACK ") {
                let ack: Ack = serde_json::from_str(json)
                    .map_err(|e| format!("round {round}: bad ack {json}: {e}"))?;
                acks.push((round, ack));
                round_acks += 1;
            } else if line.starts_with("CKPT ") {
                checkpoints += 1;
            } else {
                return Err(format!("round {round}: unexpected child output {line:?}"));
            }
        }
        // The child recovered exactly what the previous check saw.
        if ready != Some(next_lsn) {
            return Err(format!(
                "round {round}: the child recovered to next lsn {ready:?}, the parent had {next_lsn}"
            ));
        }
        total_checkpoints += checkpoints;
        let report = verify(&dir, round, &acks)
            .map_err(|failure| format!("round {round} (ran {run_ms} ms): {failure}"))?;
        next_lsn = report.events + 1;
        println!(
            "crash_recovery: round {round}: killed after {} ms, {} acks, {} checkpoints; \
             recovered {} events (checkpoint at lsn {}, tail {}) in {:.0} ms; {} holds checked \
             ({} open from earlier rounds); {} keys archived",
            run_ms,
            round_acks,
            checkpoints,
            report.events,
            report.first_retained,
            report.events + 1 - report.first_retained,
            report.recover_ms,
            report.holds_checked,
            report.carried_over,
            report.archived,
        );
        *passed += 1;
    }
    if total_checkpoints == 0 {
        return Err(
            "no round wrote a checkpoint: recovery from a checkpoint was not tested".into(),
        );
    }
    drop(folder);
    Ok(())
}

/// Starts the child, waits for READY, lets it run `run_ms`, kills it with SIGKILL and returns
/// its complete output lines and exit status.
fn run_child(
    exe: &Path,
    dir: &Path,
    round: u64,
    seed: u64,
    run_ms: u64,
) -> Result<(Vec<String>, std::process::ExitStatus), String> {
    let child = std::process::Command::new(exe)
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .env(SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("round {round}: spawn: {e}"))?;
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().ok_or("no child stdout")?;
    let (sender, receiver) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || read_lines(stdout, &sender));

    // Wait for READY (recovery in the child), then let it run.
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    loop {
        let left = ready_by.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let is_ready = line.starts_with("READY ");
                lines.push(line);
                if is_ready {
                    break;
                }
            }
            Err(_) => {
                return Err(format!(
                    "round {round}: the child did not report READY within 20 s"
                ));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(run_ms));
    if let Ok(Some(status)) = child.0.try_wait() {
        return Err(format!(
            "round {round}: the child ended by itself ({status}) before the kill"
        ));
    }
    child
        .0
        .kill()
        .map_err(|e| format!("round {round}: kill: {e}"))?;
    let waited_until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < waited_until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => return Err(format!("round {round}: the child outlived SIGKILL")),
            Err(e) => return Err(format!("round {round}: wait: {e}")),
        }
    };
    // The pipe closes with the child: the reader sees EOF and ends.
    reader
        .join()
        .map_err(|_| format!("round {round}: the reader thread panicked"))?;
    lines.extend(receiver.try_iter());
    Ok((lines, status))
}

/// Sends every complete line of `from`; a last line cut off by the kill is dropped.
fn read_lines(from: impl Read, to: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                if to
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => return,
        }
    }
}

/// Reads `archive.jsonl`, cutting off a last line the kill left incomplete (so the next child
/// appends after a whole line). Returns the events by LSN; an LSN written twice must be the
/// same event both times.
fn read_archive(dir: &Path) -> Result<BTreeMap<u64, Event>, String> {
    let path = dir.join(ARCHIVE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(whole as u64))
            .map_err(|e| format!("truncating the archive: {e}"))?;
    }
    let mut events = BTreeMap::new();
    for line in bytes[..whole].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_slice(line).map_err(|e| format!("archive line: {e}"))?;
        if let Some(previous) = events.insert(event.lsn.0, event.clone())
            && previous != event
        {
            return Err(format!(
                "the archive has two different events at lsn {}",
                event.lsn
            ));
        }
    }
    Ok(events)
}

fn digest_of(history: &[Arc<Event>]) -> Result<(u64, Ledger), String> {
    let ledger = Ledger::new(config(), Arc::new(DiscardLog::default()));
    for event in history {
        ledger
            .replay(event)
            .map_err(|e| format!("from-scratch replay: {e}"))?;
    }
    ledger
        .check_invariants()
        .map_err(|e| format!("from-scratch replay breaks an invariant: {e}"))?;
    Ok((ledger.digest(), ledger))
}

/// Opens the folder as a restarted server would and checks everything the module doc lists.
fn verify(dir: &Path, round: u64, acks: &[(u64, Ack)]) -> Result<RoundReport, String> {
    let clock = Arc::new(ManualClock::new(now_ms()));
    let started = Instant::now();
    let log = Arc::new(RedbLog::open(dir, RedbLogOptions::default()).map_err(|e| e.to_string())?);
    let keys: Arc<dyn KeyArchive> =
        Arc::new(RedbArchive::open(dir).map_err(|e| format!("key archive: {e}"))?);
    let engine = Engine::recover_with(
        config(),
        Arc::clone(&log) as Arc<dyn EventLog>,
        Arc::clone(&clock) as Arc<dyn Clock>,
        Some(Arc::clone(&keys)),
        key_tiers(),
    )
    .map_err(|e| format!("recovery: {e}"))?;
    let recover_ms = started.elapsed().as_secs_f64() * 1e3;
    engine
        .ledger()
        .check_invariants()
        .map_err(|e| format!("recovered ledger breaks an invariant: {e}"))?;

    // 3. The history: the archive below the checkpoint, the log from it on.
    let checkpoint = log.latest_checkpoint().map_err(|e| e.to_string())?;
    let first = log.checkpoint_lsn().map_or(1, |l| l.0);
    if checkpoint.as_ref().map(|c| c.next_lsn.0) != log.checkpoint_lsn().map(|l| l.0) {
        return Err("latest_checkpoint and checkpoint_lsn disagree".into());
    }
    // The log keeps the history window below the checkpoint (see
    // `Checkpoint::history_start_lsn`), and nothing before it.
    let kept_from = checkpoint.as_ref().map_or(1, |c| c.history_start_lsn().0);
    if kept_from > first {
        return Err(format!(
            "the history starts at {kept_from}, after the checkpoint at {first}"
        ));
    }
    if kept_from > 1 {
        let below = log.read_from(Lsn(kept_from - 1), 1);
        if below
            != Err(LogError::Trimmed {
                first_retained: Lsn(kept_from),
            })
        {
            return Err(format!(
                "read_from({}) should be refused as trimmed: {below:?}",
                kept_from - 1
            ));
        }
    }
    if kept_from < first {
        let kept = log
            .read_from(Lsn(kept_from), 1)
            .map_err(|e| format!("reading the kept history: {e}"))?;
        if kept.first().map(|e| e.lsn.0) != Some(kept_from) {
            return Err(format!(
                "the history from {kept_from} is not kept: {kept:?}"
            ));
        }
    }
    let tail = log
        .read_from(Lsn(first), usize::MAX)
        .map_err(|e| format!("reading the tail: {e}"))?;
    let archive = read_archive(dir)?;
    let mut history: Vec<Arc<Event>> = Vec::new();
    for lsn in 1..first {
        let event = archive
            .get(&lsn)
            .ok_or_else(|| format!("lsn {lsn} is neither in the archive nor in the log"))?;
        history.push(Arc::new(event.clone()));
    }
    for event in &tail {
        if let Some(archived) = archive.get(&event.lsn.0)
            && archived != event.as_ref()
        {
            return Err(format!(
                "the archive and the log differ at lsn {}",
                event.lsn
            ));
        }
        history.push(Arc::clone(event));
    }
    for (i, event) in history.iter().enumerate() {
        if event.lsn.0 != i as u64 + 1 {
            return Err(format!(
                "the history has lsn {} where {} belongs",
                event.lsn,
                i + 1
            ));
        }
    }
    let events = history.len() as u64;
    if engine.ledger().next_lsn().0 != events + 1 || log.durable_lsn().0 != events {
        return Err(format!(
            "{events} events in the history, but the ledger is at next lsn {} and the log \
             durable to {}",
            engine.ledger().next_lsn(),
            log.durable_lsn()
        ));
    }

    // 2. Nothing half-applied: a replay from scratch, twice, and the checkpoint + tail afresh.
    let recovered = engine.ledger().digest();
    let (first_replay, _) = digest_of(&history)?;
    let (second_replay, replayed) = digest_of(&history)?;
    if first_replay != second_replay {
        return Err("two from-scratch replays of the same history differ".into());
    }
    if recovered != first_replay {
        return Err(format!(
            "the recovered ledger (digest {recovered:x}) differs from a from-scratch replay of \
             its {events} events ({first_replay:x})"
        ));
    }
    if let Some(checkpoint) = &checkpoint {
        let mut again = Ledger::from_checkpoint(
            config(),
            Arc::new(DiscardLog::default()) as Arc<dyn EventLog>,
            checkpoint,
        )
        .map_err(|e| format!("loading the checkpoint: {e}"))?;
        // What the checkpoint no longer holds is in the key archive, as recovery finds it.
        again
            .attach_archive(Arc::clone(&keys))
            .map_err(|e| format!("indexing the key archive: {e}"))?;
        for event in &tail {
            again
                .replay(event)
                .map_err(|e| format!("tail on the checkpoint: {e}"))?;
        }
        if again.digest() != recovered {
            return Err("the checkpoint plus the tail, loaded afresh, differ".into());
        }
    }
    drop(replayed);

    // 1. Every acknowledgement is in the history, and is answered again as a duplicate.
    let by_lsn = |lsn: u64| history.get(lsn.wrapping_sub(1) as usize);
    for (ack_round, ack) in acks {
        let event = by_lsn(ack.lsn).ok_or_else(|| {
            format!(
                "acknowledged lsn {} (round {ack_round}) is missing: the history ends at {events}",
                ack.lsn
            )
        })?;
        let (command, outcome) = event.fact.to_decision();
        let same_command = if ack.duplicate {
            command.idempotency_key() == ack.command.idempotency_key()
        } else {
            command == ack.command
        };
        if !same_command || outcome != ack.outcome {
            return Err(format!(
                "acknowledged lsn {} (round {ack_round}) was {:?} -> {:?}, the history has \
                 {:?} -> {:?}",
                ack.lsn, ack.command, ack.outcome, command, outcome
            ));
        }
        if ack.lsn >= first && !ack.duplicate {
            // In the log itself, not only the archive.
            let read = log.read_from(Lsn(ack.lsn), 1).map_err(|e| e.to_string())?;
            let acked = (ack.command.clone(), ack.outcome.clone());
            if read.first().map(|e| e.fact.to_decision()) != Some(acked) {
                return Err(format!("read_from({}) disagrees with its ack", ack.lsn));
            }
        }
    }
    let before = engine.ledger().next_lsn();
    for (ack_round, ack) in acks {
        let receipt = engine
            .submit(ack.command.clone())
            .map_err(|e| format!("re-submitting lsn {} (round {ack_round}): {e}", ack.lsn))?
            .map_err(|refusal| {
                format!(
                    "re-submitting lsn {} (round {ack_round}) was refused: {refusal}",
                    ack.lsn
                )
            })?;
        if !receipt.duplicate || receipt.lsn.0 != ack.lsn || receipt.outcome != ack.outcome {
            return Err(format!(
                "re-submitting acknowledged lsn {} (round {ack_round}) gave {receipt:?}, not a \
                 duplicate of {:?}",
                ack.lsn, ack.outcome
            ));
        }
    }
    if engine.ledger().next_lsn() != before || engine.ledger().digest() != recovered {
        return Err("re-submitting acknowledged commands changed the ledger".into());
    }

    // 4. Holds: the state and expiry the history says, and the acknowledged expiry.
    #[derive(Clone, Copy)]
    struct Expected {
        state: HoldState,
        expires_at_ms: u64,
        expiry_lsn: u64,
        round_placed: u64,
    }
    let mut holds: HashMap<String, Expected> = HashMap::new();
    let round_of = {
        let mut map: HashMap<u64, u64> = HashMap::new();
        for (r, ack) in acks {
            map.entry(ack.lsn).or_insert(*r);
        }
        map
    };
    for event in &history {
        let Some(id) = event.fact.reservation_id() else {
            continue;
        };
        let key = id.to_string();
        match &event.fact {
            Fact::HoldPlaced { expires_at_ms, .. } => {
                holds.insert(
                    key,
                    Expected {
                        state: HoldState::Open,
                        expires_at_ms: *expires_at_ms,
                        expiry_lsn: event.lsn.0,
                        round_placed: round_of.get(&event.lsn.0).copied().unwrap_or(round),
                    },
                );
            }
            Fact::HoldExtended { expires_at_ms, .. } => {
                let hold = holds.get_mut(&key).ok_or("extend of an unknown hold")?;
                hold.expires_at_ms = *expires_at_ms;
                hold.expiry_lsn = event.lsn.0;
            }
            Fact::HoldCommitted { .. } => {
                holds
                    .get_mut(&key)
                    .ok_or("commit of an unknown hold")?
                    .state = HoldState::Committed;
            }
            Fact::HoldReleased(_) => {
                holds
                    .get_mut(&key)
                    .ok_or("release of an unknown hold")?
                    .state = HoldState::Released;
            }
            Fact::HoldExpired(_) => {
                holds
                    .get_mut(&key)
                    .ok_or("expiry of an unknown hold")?
                    .state = HoldState::Expired;
            }
            _ => {}
        }
    }
    let now = clock.now_ms();
    let mut carried_over = 0;
    for (id, expected) in &holds {
        let view = engine
            .reservation(id)
            .expect("the key archive reads")
            .ok_or_else(|| format!("hold {id} is gone after recovery"))?;
        let state = if expected.state == HoldState::Open && now >= expected.expires_at_ms {
            HoldState::Expired // lapsed; the view says so before the expiry event
        } else {
            expected.state
        };
        if view.state != state || view.expires_at_ms != expected.expires_at_ms {
            return Err(format!(
                "hold {id}: recovered {:?} expiring at {}, the history says {state:?} at {}",
                view.state, view.expires_at_ms, expected.expires_at_ms
            ));
        }
        if expected.state == HoldState::Open && expected.round_placed < round {
            carried_over += 1;
        }
    }
    for (_, ack) in acks {
        let (Command::Reserve(Reserve { reservation_id, .. })
        | Command::Extend(Extend { reservation_id, .. })) = &ack.command
        else {
            continue;
        };
        let (Outcome::Granted { expires_at_ms } | Outcome::Extended { expires_at_ms }) =
            ack.outcome
        else {
            continue;
        };
        let expected = holds[reservation_id.as_str()];
        if expected.expiry_lsn == ack.lsn && expected.expires_at_ms != expires_at_ms {
            return Err(format!(
                "hold {reservation_id}: acknowledged expiry {expires_at_ms}, recovered {}",
                expected.expires_at_ms
            ));
        }
    }

    let archived = engine.ledger().archived_keys().0;
    drop(engine);
    Arc::into_inner(log)
        .ok_or("the log is still shared")?
        .close()
        .map_err(|e| format!("closing: {e}"))?;
    Ok(RoundReport {
        events,
        first_retained: first,
        recover_ms,
        holds_checked: holds.len(),
        carried_over,
        archived,
    })
}
