//! Planted bugs: switches that break the engine on purpose, so a test can show that the
//! deterministic simulator (`inv-sim`'s `vopr`) catches the kind of bug it exists to catch.
//!
//! Each switch is per thread, not process-wide: `cargo test` runs tests on parallel threads,
//! and a test that plants a bug must not leak it into a neighbour that expects a correct
//! engine. The simulator decides every command on the thread that calls it (recovery's reader
//! thread only reads), so setting the switch on that thread is enough. Everything here is
//! behind the `testing` feature: a production build has neither the switches nor the checks.

use std::cell::Cell;

thread_local! {
    static SKIP_AVAILABILITY_CHECK: Cell<bool> = const { Cell::new(false) };
}

/// While on (on this thread), a reserve is granted whatever the availability of its lines on
/// positions that exist: the oversell the simulator's "no hold granted beyond availability"
/// invariant must catch. (A line on a position that does not exist is still refused: a hold
/// there could not be applied at all, and the engine would panic, a louder bug than this.)
pub fn set_skip_availability_check(on: bool) {
    SKIP_AVAILABILITY_CHECK.with(|switch| switch.set(on));
}

/// Whether the reserve decision skips its availability check on this thread.
pub fn skip_availability_check() -> bool {
    SKIP_AVAILABILITY_CHECK.with(Cell::get)
}
