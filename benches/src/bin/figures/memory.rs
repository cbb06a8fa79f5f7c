//! The rows of the `memory` binary (its text tables) and of `map_memory --json`.

use crate::format::thousands;
use crate::sections::{Figure, fig};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The `memory` binary's tables: per row name, (N, B/item, B/key).
fn memory_table(output: &str) -> BTreeMap<String, Vec<(u64, f64, f64)>> {
    let mut rows: BTreeMap<String, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for line in output.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        // The target column is "-" or "<= 128 ok" / "<= 128 MISS".
        let target = match tokens.last() {
            Some(&"ok") | Some(&"MISS") => 3,
            Some(&"-") => 1,
            _ => continue,
        };
        if tokens.len() < target + 7 {
            continue;
        }
        let numbers = &tokens[tokens.len() - target - 6..tokens.len() - target];
        let name = tokens[..tokens.len() - target - 6].join(" ");
        let (Ok(n), Ok(per_item), Ok(per_key)) = (
            numbers[0].parse::<u64>(),
            numbers[1].parse::<f64>(),
            numbers[3].parse::<f64>(),
        ) else {
            continue;
        };
        rows.entry(name).or_default().push((n, per_item, per_key));
    }
    rows
}

/// "115.2 B (N = 1,000,000), 118.9 B (N = 600,000)".
fn per_n(values: &[(u64, f64)]) -> String {
    values
        .iter()
        .map(|(n, b)| format!("{b:.0} B at N = {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn memory_rows(output: &str) -> Result<Vec<Figure>, String> {
    let table = memory_table(output);
    let get = |name: &str| {
        table
            .get(name)
            .ok_or_else(|| format!("no row {name:?} in the memory output"))
    };
    let items = |name: &str| -> Result<String, String> {
        let rows = get(name)?;
        Ok(per_n(
            &rows.iter().map(|&(n, b, _)| (n, b)).collect::<Vec<_>>(),
        ))
    };
    let mut rows = vec![
        fig(
            "memory.position_1",
            "position, 1 location per sku (its key's cost subtracted)",
            items("position, 1 location per sku")?,
        ),
        fig(
            "memory.position_4",
            "position, 4 locations per sku",
            items("position, 4 locations per sku")?,
        ),
        fig(
            "memory.open_hold",
            "open single-line hold, 1 hold per sku, all told (hold, records, indexes, ladder line)",
            items("open single-line hold, 1 hold per sku")?,
        ),
        fig(
            "memory.open_hold_shared",
            "open single-line hold, 1,000 holds per sku, all told",
            items("open single-line hold, 1,000 holds per sku")?,
        ),
        fig(
            "memory.ended_hold",
            "ended (released) single-line hold kept for the retention window, 1 hold per sku",
            items("ended (released) single-line hold, 1 hold per sku")?,
        ),
    ];
    let keys = get("position, 1 location per sku")?;
    rows.push(fig(
        "memory.key",
        "idempotency key of an `Adjust` (keys-only control)",
        per_n(&keys.iter().map(|&(n, _, k)| (n, k)).collect::<Vec<_>>()),
    ));
    Ok(rows)
}

#[derive(Deserialize)]
struct MapMemoryRow {
    table: String,
    positions: u64,
    locations_per_sku: u64,
    bytes_per_position: f64,
}

pub(crate) fn map_memory_rows(output: &str) -> Result<Vec<Figure>, String> {
    let rows: Vec<MapMemoryRow> =
        serde_json::from_str(output).map_err(|e| format!("map_memory --json: {e}"))?;
    let mut figures = Vec::new();
    for (table, what) in [
        (
            "ledger",
            "the engine's sku table (through `Ledger::submit`)",
        ),
        ("dashmap", "`DashMap` of the same entries"),
    ] {
        for locations in [1, 4] {
            let values: Vec<(u64, f64)> = rows
                .iter()
                .filter(|r| r.table == table && r.locations_per_sku == locations)
                .map(|r| (r.positions, r.bytes_per_position))
                .collect();
            if values.is_empty() {
                return Err(format!("no {table} row with {locations} locations per sku"));
            }
            figures.push(fig(
                &format!("map_memory.{table}_{locations}"),
                format!(
                    "{what}, {locations} location{} per sku",
                    if locations == 1 { "" } else { "s" }
                ),
                per_n(&values),
            ));
        }
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_memory_table() {
        let out = "\
item                                                             N   B/item allocs/item   B/key  with keys after purge      target
position, 1 location per sku                               1000000    115.2        1.00    71.3      186.5       140.0   <= 128 ok
open single-line hold, 1,000 holds per sku                   60000    180.0        1.00    71.3      180.0       150.0   <= 256 ok
ended (released) single-line hold, 1 hold per sku           100000    200.0        1.00    71.3      200.0       150.0           -
";
        let t = memory_table(out);
        assert_eq!(
            t["position, 1 location per sku"],
            vec![(1_000_000, 115.2, 71.3)]
        );
        assert_eq!(t["open single-line hold, 1,000 holds per sku"][0].0, 60_000);
        assert_eq!(
            t["ended (released) single-line hold, 1 hold per sku"][0].1,
            200.0
        );
    }
}
