//! Reading `--file` inputs: a file or stdin, JSON Lines or CSV, and the positions file of
//! `check --file`.

use super::parse::parse_position;
use anyhow::Context as _;
use clap::ValueEnum;
use inv_proto::v1 as pb;
use std::io::{BufRead, Read};
use std::path::Path;

/// How a `--file` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// A file's text, or stdin's for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The format `--format` names, else the one the file's extension says (`.csv`, else JSON Lines).
pub(super) fn format_of(path: &Path, format: Option<FileFormat>) -> FileFormat {
    format.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => FileFormat::Csv,
        _ => FileFormat::Jsonl,
    })
}

pub(super) fn read_positions(path: &Path) -> anyhow::Result<Vec<pb::Position>> {
    let text = read_input(path)?;
    let mut positions = Vec::new();
    for (number, line) in std::io::Cursor::new(text).lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        positions.push(
            parse_position(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), number + 1))?,
        );
    }
    anyhow::ensure!(
        !positions.is_empty(),
        "{} lists no positions",
        path.display()
    );
    Ok(positions)
}

/// One sku per line; blank lines and lines starting with `#` are skipped.
pub(super) fn read_skus(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = read_input(path)?;
    let skus: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!skus.is_empty(), "{} lists no skus", path.display());
    Ok(skus)
}

/// Reads `path` as JSON Lines or CSV (see `format_of`) and turns each record into a `T` with
/// `from_json` or `from_csv`; an error names the file and line (CSV row 1 is the header).
pub(super) fn file_records<T, J, C>(
    path: &Path,
    format: Option<FileFormat>,
    from_json: impl Fn(J) -> Result<T, String>,
    from_csv: impl Fn(C) -> Result<T, String>,
) -> anyhow::Result<Vec<T>>
where
    J: serde::de::DeserializeOwned,
    C: serde::de::DeserializeOwned,
{
    let text = read_input(path)?;
    let at = |n: usize| format!("{}:{n}", path.display());
    match format_of(path, format) {
        FileFormat::Jsonl => jsonl::<J>(&text)
            .map(|(n, record)| {
                let record = record.with_context(|| at(n))?;
                from_json(record).map_err(|e| anyhow::anyhow!("{}: {e}", at(n)))
            })
            .collect(),
        FileFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            reader
                .deserialize::<C>()
                .enumerate()
                .map(|(i, record)| {
                    let n = i + 2;
                    let record = record.with_context(|| at(n))?;
                    from_csv(record).map_err(|e| anyhow::anyhow!("{}: {e}", at(n)))
                })
                .collect()
        }
    }
}

/// The records of a JSON Lines text with their line numbers; blank lines are skipped.
fn jsonl<'a, T: serde::de::DeserializeOwned + 'a>(
    text: &'a str,
) -> impl Iterator<Item = (usize, anyhow::Result<T>)> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            (
                i + 1,
                serde_json::from_str(line).map_err(anyhow::Error::from),
            )
        })
}
