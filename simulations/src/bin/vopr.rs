//! `vopr`: runs the deterministic simulator (see `inv_sim::vopr`) on one seed or a range of
//! consecutive seeds. Prints every seed before running it; on a failure prints the seed, the
//! step, the invariant and a shrunk reproduction, and exits with status 1. The last line of a
//! passing seed is the same, byte for byte, on every run of that seed and step count.

use anyhow::{Result, bail};
use clap::Parser;
use inv_sim::vopr::{self, RunOptions, RunResult, STEPS_MAX, ShrinkBudget};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Write as _;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulation of the engine under faults (seeded; replayable)")]
struct Args {
    /// The first seed; without it one is drawn from the OS and printed.
    #[arg(long)]
    seed: Option<u64>,
    /// Operations per seed.
    #[arg(long, default_value_t = 2_000)]
    steps: usize,
    /// How many consecutive seeds to run, from --seed on.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Start no new seed after this many seconds (a started seed runs to its end).
    #[arg(long)]
    time_budget_secs: Option<f64>,
    /// Compare the live digest with the replayed one every N steps (1: every step, which
    /// is about ten times slower: the digest is O(ledger)).
    #[arg(long, default_value_t = vopr::DIGEST_EVERY_DEFAULT)]
    digest_every: usize,
    /// Report a failure as found, without shrinking it.
    #[arg(long)]
    no_shrink: bool,
    /// Longest the shrinker may take, in seconds.
    #[arg(long, default_value_t = 60)]
    shrink_secs: u64,
}

/// A seed from the OS: std's `RandomState` draws its keys from the OS's randomness.
fn os_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.steps == 0 || args.steps > STEPS_MAX {
        bail!("--steps must be in 1..={STEPS_MAX}");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let first = match args.seed {
        Some(seed) => seed,
        None => {
            let seed = os_seed();
            println!("seed {seed} (drawn from the OS)");
            seed
        }
    };
    vopr::quiet_panics();
    let budget = args.time_budget_secs.map(Duration::from_secs_f64);
    let started = Instant::now();
    let mut passed = 0u64;
    for i in 0..args.seeds {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            eprintln!("time budget reached after {passed} seeds");
            break;
        }
        let seed = first.wrapping_add(i);
        if args.seeds > 1 {
            println!("seed {seed}");
        }
        let _ = std::io::stdout().flush();
        let options = RunOptions {
            seed,
            steps: args.steps,
            digest_every: args.digest_every,
            shrink: (!args.no_shrink).then_some(ShrinkBudget {
                time_max: Duration::from_secs(args.shrink_secs),
                ..ShrinkBudget::default()
            }),
        };
        let seed_started = Instant::now();
        let result = vopr::run(&options);
        println!("{}", result.report(&options));
        eprintln!("seed {seed}: {:.2} s", seed_started.elapsed().as_secs_f64());
        if let RunResult::Failed { .. } = result {
            std::process::exit(1);
        }
        passed += 1;
    }
    if args.seeds > 1 {
        println!(
            "vopr passed {passed} seeds from {first}, {} steps each",
            args.steps
        );
    }
    Ok(())
}
