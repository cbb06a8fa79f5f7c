//! The inventory availability and reservation engine's domain core.
//!
//! Retail channels reserve, commit and release holds on stock; stores post sales; returns come
//! back; the ERP adjusts. Each of these is a [`Command`] with an idempotency key. The engine
//! decides it against the [`Ledger`]: either a [`Refusal`] (nothing changes, nothing is
//! logged) or a [`Fact`] in the past tense, which gets the next log sequence number ([`Lsn`])
//! as an [`Event`] and is applied. State is exactly the fold of the events in LSN order.
//!
//! # Layout
//! Imports run one way, down this list: the leaves at the bottom import nothing above them, the
//! log imports the event and checkpoint types but never the ledger, and the ledger imports the
//! log's interface only.
//! - [`engine`]: the facade servers and simulations hold: ledger + clock + durable
//!   acknowledgement, recovery and checkpoints.
//! - [`ledger`]: sharded state and the lock / decide / sequence / apply protocol (its module
//!   doc lists its files).
//! - [`log`]: the [`EventLog`] interface, in-memory logs, the pinned byte encoding of events and
//!   checkpoints, and (feature `redb`, on by default) `RedbLog`, the durable log.
//! - [`event`]: facts and events, the log's own types; [`checkpoint`]: the ledger at one LSN as
//!   plain data.
//! - [`command`]: what clients ask for, with validation, idempotency keys and fingerprints;
//!   [`outcome`]: recorded outcomes and unrecorded refusals, both values, not errors;
//!   [`error`]: malformed input and infrastructure failures, the only errors.
//! - `reconcile` (not under loom): ERP snapshots, staged and reconciled against the ledger as
//!   of their time; the snapshot store.
//! - [`hold`]: the hold state machine; [`stores`]: per-store sale sequencing.
//! - [`types`]: ids (newtypes) and [`Lsn`]; [`limits`]: every bound, with its reason;
//!   [`clock`]: injected time; `sync`: the std/loom switch every lock goes through.
//! - `testing` (feature `testing`, off by default): helpers for tests only: a fault-injecting
//!   storage backend and shared command builders.
//!
//! # Invariants (checked by `Ledger::check_invariants`, tests and simulations)
//! 1. On every position, `reserved` equals the sum of the open holds' quantities on it.
//! 2. No hold is granted beyond availability: a grant needs `available >= qty` on every line,
//!    where `available = on_hand - reserved - safety_stock` and lapsed holds do not count.
//! 3. `on_hand` changes only by sales and commits (down), restocks and dispositions back to
//!    stock (up), and adjustments; `quarantined` equals the units returns still hold for
//!    inspection.
//! 4. LSNs start at 1 and rise by one per event; replaying the events in order into an empty
//!    ledger gives the same digest, however many times it is done.
//! 5. A retried command (same key, same payload) changes nothing and gets the original LSN and
//!    outcome; the same key with another payload is refused, naming the field.

pub mod archive;
pub mod checkpoint;
pub mod clock;
pub mod command;
pub mod engine;
pub mod error;
pub mod event;
pub mod hold;
pub mod ledger;
pub mod limits;
pub mod log;
pub mod outcome;
#[cfg(not(loom))]
pub mod reconcile;
pub mod stores;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use checkpoint::Checkpoint;
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::*;
pub use engine::{CheckpointPolicy, Engine, MemoryPolicy};
pub use error::{LogError, ReplayError, SubmitError, Violation, Violations};
pub use event::{Event, Fact, HoldRequest};
pub use hold::HoldState;
pub use ledger::{
    Availability, Decision, Evicted, Eviction, HeldDriftView, HoldView, Ledger, LedgerConfig,
    MemoryUse, PositionView, Receipt,
};
#[cfg(feature = "redb")]
pub use log::redb::{OpenError, RedbLog, RedbLogOptions};
pub use log::{DiscardLog, DurableListener, EventLog, MemLog};
pub use outcome::{Outcome, Refusal, ShortLine};
pub use stores::{StoreAnomaly, StoreSequence, StoreStatus};
pub use types::*;
