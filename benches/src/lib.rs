//! Shared helpers for the benchmarks (see `benches/`) and the memory measurement
//! (`src/bin/memory.rs`): names, command builders and stocking, all against the real engine API
//! with an explicit decision time (no clock) and no persistence.

use compact_str::{CompactString, format_compact};
use inv_engine::{
    Adjust, AdjustmentId, Channel, Command, Ledger, Line, Outcome, Release, ReservationId, Reserve,
};

/// Decision time used by the benchmarks: a fixed instant, so no hold ever lapses mid-run.
pub const NOW_MS: u64 = 1_700_000_000_000;
/// Hold TTL used by the benchmarks (15 minutes).
pub const TTL_MS: u64 = 15 * 60_000;
/// Stock per position: the largest single adjustment the engine accepts, so a reserve+release
/// loop never runs out.
pub const BIG_STOCK: i64 = 1_000_000_000;

/// The sku name for index `i` (13 bytes: stored inline by `CompactString`).
pub fn sku_name(i: usize) -> CompactString {
    format_compact!("SKU-{i:09}")
}

/// The location name for index `j`.
pub fn location_name(j: usize) -> CompactString {
    format_compact!("LOC-{j:04}")
}

/// An adjustment of `delta` units on one position.
pub fn adjust(id: CompactString, sku: &str, location: &str, delta: i64) -> Command {
    Command::Adjust(Adjust {
        adjustment_id: AdjustmentId(id),
        sku: sku.into(),
        location: location.into(),
        delta,
        reason: CompactString::const_new("receipt"),
    })
}

/// A reserve of `qty` units on each `(sku, location)` line.
pub fn reserve(id: CompactString, lines: &[(CompactString, CompactString)], qty: u64) -> Command {
    Command::Reserve(Reserve {
        reservation_id: ReservationId(id),
        channel: Channel::from("web"),
        lines: lines
            .iter()
            .map(|(sku, location)| Line::new(sku, location, qty))
            .collect(),
        ttl_ms: TTL_MS,
    })
}

/// The release of a hold.
pub fn release(id: CompactString) -> Command {
    Command::Release(Release {
        reservation_id: ReservationId(id),
    })
}

/// Creates `skus * locations_per_sku` positions (sku-major), each with `delta` units on hand, by
/// one `Adjust` per position at `now_ms`. Adjustment ids are `{prefix}{n}`. Returns the number of
/// adjustments submitted.
pub fn stock(
    ledger: &Ledger,
    prefix: &str,
    skus: usize,
    locations_per_sku: usize,
    delta: i64,
    now_ms: u64,
) -> usize {
    let locations: Vec<CompactString> = (0..locations_per_sku).map(location_name).collect();
    let mut n = 0;
    for i in 0..skus {
        let sku = sku_name(i);
        for location in &locations {
            let receipt = ledger
                .submit(
                    adjust(format_compact!("{prefix}{n}"), &sku, location, delta),
                    now_ms,
                )
                .expect("stocking adjustment well-formed")
                .expect("stocking adjustment accepted");
            assert_eq!(receipt.outcome, Outcome::Recorded);
            n += 1;
        }
    }
    n
}

/// A cheap deterministic pseudo-random sequence (xorshift64*), so benchmarks visit positions
/// in a scattered but repeatable order without pulling in `rand`.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for picking benchmark positions.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
