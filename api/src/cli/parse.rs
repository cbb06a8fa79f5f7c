//! The textual forms of arguments and file cells: `SKU@LOCATION=QTY`, `SKU@LOCATION` and
//! durations such as `15m`.

use inv_proto::v1 as pb;
use std::time::Duration;

/// `SKU@LOCATION=QTY`, split at the last `=` and the last `@` before it.
pub fn parse_line(text: &str) -> Result<pb::Line, String> {
    const SYNTAX: &str = "expected SKU@LOCATION=QTY, e.g. sneaker-42@store-7=2";
    let (position, qty) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?}: no `=QTY`; {SYNTAX}"))?;
    let (sku, location) = position
        .rsplit_once('@')
        .ok_or_else(|| format!("{text:?}: no `@LOCATION`; {SYNTAX}"))?;
    if sku.is_empty() {
        return Err(format!("{text:?}: empty SKU; {SYNTAX}"));
    }
    if location.is_empty() {
        return Err(format!("{text:?}: empty LOCATION; {SYNTAX}"));
    }
    let qty: u64 = qty
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: QTY {qty:?} is not a whole number; {SYNTAX}"))?;
    if qty == 0 {
        return Err(format!("{text:?}: QTY must be at least 1"));
    }
    Ok(pb::Line {
        sku: sku.to_owned(),
        location: location.to_owned(),
        qty,
    })
}

/// `SKU@LOCATION`, split at the last `@`.
pub(super) fn parse_position(text: &str) -> Result<pb::Position, String> {
    let (sku, location) = text
        .rsplit_once('@')
        .ok_or_else(|| format!("{text:?}: expected SKU@LOCATION"))?;
    if sku.is_empty() || location.is_empty() {
        return Err(format!("{text:?}: expected SKU@LOCATION, both non-empty"));
    }
    Ok(pb::Position {
        sku: sku.to_owned(),
        location: location.to_owned(),
    })
}

/// A duration as one or more NUMBER+UNIT parts, units `ms`, `s`, `m`, `h`, `d`: `500ms`,
/// `15m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let syntax = || format!("{text:?}: expected a duration like 500ms, 90s, 15m, 2h or 1d");
    let mut total_ms: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(syntax());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(syntax());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| syntax())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(syntax()),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?}: too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_at_the_last_separators() {
        let line = parse_line("sneaker-42@store-7=2").expect("valid");
        assert_eq!(
            (line.sku.as_str(), line.location.as_str(), line.qty),
            ("sneaker-42", "store-7", 2)
        );
        let line = parse_line("a@b@c=3").expect("valid");
        assert_eq!((line.sku.as_str(), line.location.as_str()), ("a@b", "c"));
        for bad in [
            "sneaker",
            "sneaker@dc",
            "sneaker=2",
            "@dc=1",
            "s@=1",
            "s@dc=0",
            "s@dc=x",
        ] {
            assert!(parse_line(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "15", "m", "15 minutes", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
