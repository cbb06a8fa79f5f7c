//! How figures are written: counts, rates, durations and dates.

use std::time::SystemTime;

/// `1234567.0` -> "1.23M", `45600.0` -> "45.6k", `123.0` -> "123".
pub(crate) fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A duration given in nanoseconds, in the unit that reads best.
pub(crate) fn duration_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A duration given in whole microseconds (as the tools report latencies).
pub(crate) fn duration_us(us: f64) -> String {
    if us < 1e3 {
        format!("{us:.0} µs")
    } else {
        duration_ns(us * 1e3)
    }
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// UTC "YYYY-MM-DD HH:MM" of `t`.
pub(crate) fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(si(1_390_000.0), "1.39M");
        assert_eq!(si(92_400.0), "92k");
        assert_eq!(si(4_000.0), "4.0k");
        assert_eq!(duration_ns(48.2), "48 ns");
        assert_eq!(duration_ns(720.0), "720 ns");
        assert_eq!(duration_ns(1_500.0), "1.50 µs");
        assert_eq!(duration_us(760.0), "760 µs");
        assert_eq!(duration_us(9.0), "9 µs");
        assert_eq!(duration_us(1_600.0), "1.6 ms");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(utc(SystemTime::UNIX_EPOCH), "1970-01-01 00:00 UTC");
    }
}
