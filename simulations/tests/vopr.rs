//! The simulator's own tests: that it catches a planted bug within a bounded number of seeds,
//! that a correct engine passes, and that a seed replays bit for bit.
//!
//! The planted bug is the oversell the simulator exists to catch: with
//! `inv_engine::testing::planted::set_skip_availability_check(true)` a reserve is granted
//! whatever its lines' availability. The switch is per thread, and the simulator decides every
//! request on the calling thread, so these tests may run in parallel.

use inv_engine::testing::planted;
use inv_sim::vopr::{self, RunOptions, RunResult, ShrinkBudget};
use std::time::Duration;

/// Seeds the planted bug must be caught within, at `PLANTED_STEPS` steps each.
const PLANTED_SEEDS_MAX: u64 = 20;
const PLANTED_STEPS: usize = 2_000;

fn options(seed: u64, steps: usize) -> RunOptions {
    RunOptions {
        seed,
        steps,
        digest_every: 1,
        shrink: None,
    }
}

/// Turns the planted bug off again even if the test fails.
struct Planted;

impl Planted {
    fn plant() -> Planted {
        planted::set_skip_availability_check(true);
        Planted
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        planted::set_skip_availability_check(false);
    }
}

#[test]
fn a_reserve_that_skips_the_availability_check_is_caught_within_twenty_seeds() {
    let _planted = Planted::plant();
    let caught = (0..PLANTED_SEEDS_MAX).find_map(|seed| {
        let result = vopr::run(&options(seed, PLANTED_STEPS));
        result.violation().map(|v| (seed, v.clone()))
    });
    let (seed, violation) = caught.expect("the planted oversell was not caught");
    assert_eq!(
        violation.invariant, "no_oversell",
        "seed {seed}: {violation:?}"
    );

    // The reproduction is short and still fails the same way.
    let shrunk = vopr::run(&RunOptions {
        shrink: Some(ShrinkBudget {
            runs_max: 400,
            time_max: Duration::from_secs(60),
        }),
        ..options(seed, PLANTED_STEPS)
    });
    // Shown with --nocapture: the report a developer would see.
    println!("{}", shrunk.report(&options(seed, PLANTED_STEPS)));
    let RunResult::Failed {
        shrunk: Some(shrunk),
        ..
    } = &shrunk
    else {
        panic!("seed {seed} passed on its second run");
    };
    assert_eq!(shrunk.violation.invariant, "no_oversell");
    assert!(
        shrunk.ops.len() <= 10,
        "shrunk to {} ops:\n{}",
        shrunk.ops.len(),
        shrunk
            .ops
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_correct_engine_passes_a_few_seeds() {
    for seed in 0..3 {
        let result = vopr::run(&options(seed, 600));
        if let RunResult::Failed { violation, .. } = &result {
            panic!("seed {seed}: {violation:?}");
        }
    }
}

#[test]
fn two_runs_of_one_seed_print_the_same_final_line() {
    let options = options(7, 600);
    let first = vopr::run(&options).report(&options);
    let second = vopr::run(&options).report(&options);
    assert_eq!(first, second);
    let last = first.lines().last().expect("a final line");
    assert!(
        last.starts_with("vopr seed=7 steps=600 events="),
        "final line: {last}"
    );
}
