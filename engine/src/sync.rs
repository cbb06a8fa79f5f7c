//! The one switch between std and loom synchronisation types.
//!
//! Every lock the ledger takes goes through here, so `RUSTFLAGS="--cfg loom"` lets loom see
//! (and permute) every acquisition the concurrency protocol depends on. Nothing else in the
//! engine may use `std::sync` locks or atomics directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock};

/// Locks a mutex: the engine's one policy for a poisoned lock, used by the ledger, the engine,
/// the redb log and the test helpers alike. A poisoned lock means another thread panicked
/// while it held the guard, which is an engine bug (domain code returns errors, it does not
/// panic); following TigerBeetle's "crash, don't limp" we propagate the panic rather than act
/// on state that may be half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("an engine lock was poisoned: a thread panicked mid-update")
}
