//! The value types of settings that clap cannot parse by itself: each is its own `FromStr`, so
//! a flag, an environment variable and a config file's value are checked by the same code.

use inv_engine::{BeyondTolerance, Location};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `--reconcile-every`: a period in ms, 0 for off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub u64);

impl std::str::FromStr for Every {
    type Err = String;

    /// `off` or `0`, else a duration as the client subcommands take them (`15m`, `1h30m`).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(Every(0));
        }
        let duration = crate::cli::parse_duration(text)?;
        u64::try_from(duration.as_millis())
            .map(Every)
            .map_err(|_| format!("{text:?} is too long"))
    }
}

/// A percentage with up to two decimals, as basis points (1% = 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

impl std::str::FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_end_matches('%');
        let bad = || format!("{text:?} is not a percentage from 0 to 100 with up to two decimals");
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() || fraction.len() > 2 {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let fraction: u32 = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<2}").parse().map_err(|_| bad())?
        };
        let bp = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(fraction))
            .filter(|bp| *bp <= 10_000)
            .ok_or_else(bad)?;
        Ok(Percent(bp))
    }
}

/// One value of `--drift-tolerance-location`: tolerances by location (`none`: no entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationTolerances(pub Vec<(Location, u64, u32, Option<BeyondTolerance>)>);

impl std::str::FromStr for LocationTolerances {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("none") || text.trim().is_empty() {
            return Ok(LocationTolerances(Vec::new()));
        }
        text.split(';')
            .map(|entry| {
                let bad = |why: &str| {
                    format!("{entry:?}: {why} (expected LOC=UNITS,PERCENT[,apply|hold])")
                };
                let (location, tolerance) =
                    entry.trim().split_once('=').ok_or_else(|| bad("no `=`"))?;
                // The engine's own id rule, so a tolerance never names a location no command
                // could (over 128 bytes, say).
                if let Some(problem) = inv_engine::id_problem(location) {
                    return Err(bad(&format!("the location {problem}")));
                }
                let parts: Vec<&str> = tolerance.split(',').map(str::trim).collect();
                let (units, percent, beyond) = match parts.as_slice() {
                    [units, percent] => (units, percent, None),
                    [units, percent, beyond] => (units, percent, Some(*beyond)),
                    _ => return Err(bad("expected two or three values after `=`")),
                };
                let units: u64 = units.parse().map_err(|_| bad("UNITS is not a number"))?;
                let Percent(bp) = percent.parse().map_err(|e: String| bad(&e))?;
                let beyond = match beyond {
                    None => None,
                    Some(b) if b.eq_ignore_ascii_case("apply") => Some(BeyondTolerance::Apply),
                    Some(b) if b.eq_ignore_ascii_case("hold") => Some(BeyondTolerance::Hold),
                    Some(_) => return Err(bad("the third value must be apply or hold")),
                };
                Ok((Location::from(location), units, bp, beyond))
            })
            .collect::<Result<_, _>>()
            .map(LocationTolerances)
    }
}

/// Where the metrics endpoint listens: an address, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        text.parse()
            .map(MetricsListen::On)
            .map_err(|e| format!("{text:?} is neither an address (host:port) nor `off`: {e}"))
    }
}

/// A file, or `none` (also an empty value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOrNone(pub Option<PathBuf>);

impl std::str::FromStr for FileOrNone {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() || text.trim().eq_ignore_ascii_case("none") {
            return Ok(FileOrNone(None));
        }
        Ok(FileOrNone(Some(PathBuf::from(text))))
    }
}
