//! Per-principal call rates: a token bucket per principal (docs/security.md, "Quotas").

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A call rate: `calls_per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub calls_per_second: u32,
    pub burst: u32,
}

impl Quota {
    /// Checks a rate as written; `key` (`quota.erp.`) leads the field in the error. `burst`
    /// defaults to the rate.
    pub(super) fn parse(
        key: &str,
        calls_per_second: i64,
        burst: Option<i64>,
    ) -> Result<Quota, String> {
        let positive = |field: &str, value: i64| {
            u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
                format!(
                    "{key}{field}: {value} is not a whole number from 1 to {}",
                    u32::MAX
                )
            })
        };
        let calls_per_second = positive("calls_per_second", calls_per_second)?;
        let burst = positive("burst", burst.unwrap_or(i64::from(calls_per_second)))?;
        Ok(Quota {
            calls_per_second,
            burst,
        })
    }
}

/// A token bucket: holds up to `burst` calls, refilled at `calls_per_second` from a monotonic
/// clock. Its own small lock: one principal's calls never wait on another's.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Calls left (fractional while refilling) and when they were counted.
    level: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(quota: Quota, now: Instant) -> Bucket {
        Bucket {
            level: Mutex::new((f64::from(quota.burst), now)),
        }
    }

    /// Takes one call, or answers how long until one is there (nothing is taken then).
    pub(super) fn take(&self, quota: Quota, now: Instant) -> Result<(), Duration> {
        let mut level = self.level.lock().unwrap_or_else(|e| e.into_inner());
        let rate = f64::from(quota.calls_per_second);
        // `saturating_duration_since`: a clock read before the last one counts as no time.
        let elapsed = now.saturating_duration_since(level.1).as_secs_f64();
        let tokens = (level.0 + elapsed * rate).min(f64::from(quota.burst));
        *level = (tokens, now.max(level.1));
        if tokens >= 1.0 {
            level.0 = tokens - 1.0;
            Ok(())
        } else {
            // Whole milliseconds, rounded up: a client that waits this long finds a call there.
            let millis = ((1.0 - tokens) / rate * 1_000.0).ceil();
            Err(Duration::from_millis(millis as u64).max(Duration::from_millis(1)))
        }
    }
}
