//! One set of command builders for tests, simulations and benchmarks, instead of a copy in
//! every test file. Each builds one [`Command`] from the fields a test usually varies; the
//! rest take the defaults below. Ids, SKUs and locations are names (`&str`).
//!
//! ```
//! use inv_engine::testing::commands::{adjust, commit, reserve};
//! let stock = adjust("a1", "sku-1", "dc-1", 10);
//! let hold = reserve("r1", "sku-1", "dc-1", 2); // channel "web", TTL_MS
//! let sold = commit("r1");                      // every held line
//! # let _ = (stock, hold, sold);
//! ```

use crate::command::{
    AcknowledgeStoreAnomaly, Adjust, AnomalyAction, Command, Commit, Dispose, DispositionAction,
    Extend, Line, RecordReturn, RecordSale, Release, Reserve, ReturnDisposition, ReturnLine,
    SetSafetyStock,
};
use crate::types::{
    AdjustmentId, Channel, DispositionId, Location, RequestId, ReservationId, ReturnId, Sku,
    StoreId, TxnId,
};

/// The channel of [`reserve`] and [`reserve_lines`].
pub const CHANNEL: &str = "web";
/// The hold TTL of [`reserve`]: a minute.
pub const TTL_MS: u64 = 60_000;
/// The reason of [`adjust`].
pub const REASON: &str = "test";

/// `delta` units on hand at (`sku`, `location`), for [`REASON`].
pub fn adjust(id: &str, sku: &str, location: &str, delta: i64) -> Command {
    adjust_with_reason(id, sku, location, delta, REASON)
}

/// [`adjust`] with its reason.
pub fn adjust_with_reason(
    id: &str,
    sku: &str,
    location: &str,
    delta: i64,
    reason: &str,
) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId::from(id),
        sku: Sku::from(sku),
        location: Location::from(location),
        delta,
        reason: reason.into(),
    })
}

/// A hold of `qty` units on one line, for [`CHANNEL`], lasting [`TTL_MS`].
pub fn reserve(id: &str, sku: &str, location: &str, qty: u64) -> Command {
    reserve_lines(id, vec![Line::new(sku, location, qty)], TTL_MS)
}

/// A hold on `lines`, for [`CHANNEL`], lasting `ttl_ms`.
pub fn reserve_lines(id: &str, lines: Vec<Line>, ttl_ms: u64) -> Command {
    reserve_on(CHANNEL, id, lines, ttl_ms)
}

/// A hold on `lines` for `channel`, lasting `ttl_ms`.
pub fn reserve_on(channel: &str, id: &str, lines: Vec<Line>, ttl_ms: u64) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId::from(id),
        channel: Channel::from(channel),
        lines,
        ttl_ms,
    })
}

/// Commits every line hold `id` holds, in full.
pub fn commit(id: &str) -> Command {
    Command::Commit(Commit {
        reservation_id: ReservationId::from(id),
        lines: None,
    })
}

/// Commits `lines` of hold `id` and releases the rest.
pub fn commit_lines(id: &str, lines: Vec<Line>) -> Command {
    Command::Commit(Commit {
        reservation_id: ReservationId::from(id),
        lines: Some(lines),
    })
}

pub fn release(id: &str) -> Command {
    Command::Release(Release {
        reservation_id: ReservationId::from(id),
    })
}

/// Moves hold `id`'s expiry to `ttl_ms` from now, as request `request_id`.
pub fn extend(id: &str, request_id: &str, ttl_ms: u64) -> Command {
    Command::Extend(Extend {
        reservation_id: ReservationId::from(id),
        request_id: RequestId::from(request_id),
        ttl_ms,
    })
}

/// Sale `txn` of store `store`, its `store_seq`-th, at `occurred_at_ms` on the store's clock.
pub fn sale(
    store: &str,
    txn: &str,
    store_seq: u64,
    occurred_at_ms: u64,
    lines: Vec<Line>,
) -> Command {
    Command::RecordSale(RecordSale {
        store_id: StoreId::from(store),
        txn_id: TxnId::from(txn),
        store_seq,
        occurred_at_ms,
        lines,
    })
}

/// Return `id` of `lines` (see [`return_line`]).
pub fn record_return(id: &str, lines: Vec<ReturnLine>) -> Command {
    Command::RecordReturn(RecordReturn {
        return_id: ReturnId::from(id),
        lines,
    })
}

/// One line of [`record_return`].
pub fn return_line(
    sku: &str,
    location: &str,
    qty: u64,
    disposition: ReturnDisposition,
) -> ReturnLine {
    ReturnLine {
        sku: Sku::from(sku),
        location: Location::from(location),
        qty,
        disposition,
    }
}

/// Decides the fate of `qty` units return `return_id` quarantined at (`sku`, `location`).
pub fn dispose(
    id: &str,
    return_id: &str,
    sku: &str,
    location: &str,
    qty: u64,
    action: DispositionAction,
) -> Command {
    Command::Dispose(Dispose {
        disposition_id: DispositionId::from(id),
        return_id: ReturnId::from(return_id),
        sku: Sku::from(sku),
        location: Location::from(location),
        qty,
        action,
    })
}

/// Sets the units of (`sku`, `location`) no channel may sell, as request `request_id`.
pub fn set_safety_stock(request_id: &str, sku: &str, location: &str, qty: u64) -> Command {
    Command::SetSafetyStock(SetSafetyStock {
        request_id: RequestId::from(request_id),
        sku: Sku::from(sku),
        location: Location::from(location),
        qty,
    })
}

/// An operator's verdict on the sequence anomaly of sale `txn` of store `store`.
pub fn acknowledge_anomaly(store: &str, txn: &str, action: AnomalyAction) -> Command {
    Command::AcknowledgeStoreAnomaly(AcknowledgeStoreAnomaly {
        store_id: StoreId::from(store),
        txn_id: TxnId::from(txn),
        action,
    })
}
