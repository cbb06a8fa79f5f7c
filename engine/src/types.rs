//! Identifiers and small value types shared by every module.
//!
//! Ids are newtypes over an inline string (`CompactString` keeps ids of up to 24 bytes without a
//! heap allocation), so a `Sku` cannot be passed where a `Location` is expected. Quantities are
//! `u64` on the wire and `i64` where a balance may go negative (`on_hand` after a POS sale).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Log sequence number: the position of an event in the one total order of accepted events.
/// The first event has LSN 1; `Lsn(0)` means "nothing yet".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl From<u64> for Lsn {
    fn from(lsn: u64) -> Self {
        Lsn(lsn)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub CompactString);

        impl $name {
            pub fn new(id: impl Into<CompactString>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(CompactString::from(id))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.0.as_str()
            }
        }
    };
}

string_id!(
    /// A stock-keeping unit as the retailer names it.
    Sku
);
string_id!(
    /// A place stock is held: a store, a warehouse, a dark store.
    Location
);
string_id!(
    /// The connector's id for a hold; the engine never invents one (TigerBeetle's rule: the
    /// client creates the id, so a retry after a timeout is safe).
    ReservationId
);
string_id!(
    /// A sales channel ("amazon-us", "web", "store-0042"), kept on a hold for reporting.
    Channel
);
string_id!(
    /// A point-of-sale store (or till) that posts sales in sequence.
    StoreId
);
string_id!(
    /// A POS transaction id, unique per store.
    TxnId
);
string_id!(
    /// A customer return as the returns platform names it.
    ReturnId
);
string_id!(
    /// The id of one inspection decision on returned units.
    DispositionId
);
string_id!(
    /// The id of one stock adjustment (goods receipt, cycle count correction).
    AdjustmentId
);
string_id!(
    /// A client-chosen id for a request that has no natural id of its own (extend, safety stock).
    RequestId
);
string_id!(
    /// The ERP's id for one stock snapshot; its idempotency key.
    SnapshotId
);
string_id!(
    /// Who issued a command: the name of an authenticated principal (a connector, a store
    /// system, the ERP sync, an operator), recorded in its event so the log answers "who
    /// reserved, who adjusted, who released". Commands issued with authentication off, and
    /// the engine's own (the expiry sweep), have none.
    PrincipalName
);

/// A position's location as stored: an index into the ledger's location table. Stores and
/// warehouses number in the thousands while positions number in the millions, so positions
/// carry 4 bytes instead of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocationId(pub u32);

/// A channel name as stored on a hold (interned for the same reason as [`LocationId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u32);
