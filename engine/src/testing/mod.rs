//! Helpers for tests, simulations and benchmarks (feature `testing`, off by default, so none of
//! this is in a production build).
//!
//! - [`commands`]: builders of every kind of command, with defaults for the fields a test
//!   does not care about.
//! - [`faults`] (with feature `redb`): [`faults::FaultyFileBackend`], a redb storage backend
//!   that loses unsynced writes and fails on command, and its [`faults::FaultSwitch`]; open a
//!   log on it with `RedbLog::open_with_backend`.
//! - [`planted`]: per-thread switches that plant a bug (a reserve that skips its availability
//!   check), for showing that the simulator catches it.
//!
//! A crate's tests turn the feature on with a dev-dependency; the engine's own tests through
//! a dev-dependency on itself (`engine/Cargo.toml`).

pub mod commands;
#[cfg(feature = "redb")]
pub mod faults;
pub mod planted;
