//! The inventory availability and reservation engine's domain core.
//!
//! Retail channels reserve, commit and release holds on stock; stores post sales; returns come
//! back; the ERP adjusts. Each of these is a [`Command`] with an idempotency key. The engine
//! decides it against the [`Ledger`], gives the resulting [`Event`] the next log sequence
//! number ([`Lsn`]), and applies it. State is exactly the fold of the events in LSN order.
//!
//! # Layout
//! - [`types`]: ids (newtypes) and [`Lsn`].
//! - [`command`]: what clients ask for, with validation, idempotency keys and fingerprints.
//! - [`outcome`]: what the engine decided; business refusals are values, not errors.
//! - [`event`]: command + decision time + outcome; what the log stores and replay applies.
//! - [`hold`]: the hold state machine.
//! - [`ledger`]: sharded state and the decide / sequence / apply protocol.
//! - [`log`]: the [`EventLog`] interface, in-memory logs, the event encoding, and (feature
//!   `redb`, on by default) `RedbLog`, the durable log.
//! - [`clock`]: injected time.
//! - [`engine`]: ledger + clock + durable acknowledgement.
//! - `sync`: the std/loom switch every lock goes through.
//! - [`limits`]: every bound, with its reason.
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
mod sync;
pub mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use command::*;
pub use engine::{CheckpointPolicy, Engine};
pub use error::{LogError, ReplayError, SubmitError};
pub use event::Event;
pub use hold::HoldState;
pub use ledger::{
    Availability, HoldView, Ledger, LedgerConfig, PositionView, Receipt, StoreStatus,
};
#[cfg(feature = "redb")]
pub use log::redb::{OpenError, RedbLog, RedbLogOptions};
pub use log::{DiscardLog, DurableListener, EventLog, MemLog};
pub use outcome::{Outcome, ShortLine};
pub use types::*;
