//! The rows of the `log_throughput` example (its text report).

use crate::format::{duration_us, si};
use crate::sections::{Figure, fig};
use crate::text::{after, leading_number, line, need};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run's report in `log_throughput`'s output.
struct LogRun {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    busy: Option<f64>,
    batch_mean: Option<f64>,
}

/// `log_throughput`'s runs, by label and submitter count ("durable sync x8", 64).
fn log_runs(output: &str) -> BTreeMap<(String, u64), LogRun> {
    let mut runs = BTreeMap::new();
    let mut last: Option<(String, u64)> = None;
    for line in output.lines() {
        if let Some((left, right)) = line.split_once(" submitters: ") {
            let mut words: Vec<&str> = left.split_whitespace().collect();
            let Some(threads) = words.pop().and_then(|t| t.parse::<u64>().ok()) else {
                continue;
            };
            let label = words.join(" ");
            let (Some(rate), Some(p50), Some(p99)) = (
                leading_number(right).map(|(v, _)| v),
                after(right, "ack p50 "),
                after(right, "p99 "),
            ) else {
                continue;
            };
            let key = (label, threads);
            runs.insert(
                key.clone(),
                LogRun {
                    rate,
                    p50_us: p50,
                    p99_us: p99,
                    busy: None,
                    batch_mean: None,
                },
            );
            last = Some(key);
        } else if let Some(run) = last.as_ref().and_then(|k| runs.get_mut(k)) {
            if line.contains("submits refused Busy") {
                let before = line.split(" submits refused Busy").next().unwrap_or("");
                run.busy = before
                    .rsplit(';')
                    .next()
                    .and_then(|s| leading_number(s).map(|(v, _)| v));
            } else if line.contains("writer: ") {
                run.batch_mean = after(line, "batches, mean ");
            }
        }
    }
    runs
}

pub(crate) fn log_rows(output: &str) -> Result<Vec<Figure>, String> {
    let mut rows = Vec::new();
    let disk = line(output, "disk: ")?;
    rows.push(fig(
        "log.fsync",
        "the disk alone: 4 KiB append + `sync_data`",
        format!(
            "median {}, p99 {}",
            duration_us(need(after(disk, "median "), "the fsync median")?),
            duration_us(need(after(disk, "p99 "), "the fsync p99")?)
        ),
    ));
    for batch in [1u64, 64, 4096] {
        let prefix = "redb alone, one record per batch:";
        let found = output.lines().find(|l| {
            l.starts_with(prefix)
                && leading_number(&l[prefix.len()..]).map(|(v, _)| v as u64) == Some(batch)
        });
        let found = found.ok_or_else(|| format!("no redb line for {batch} events"))?;
        rows.push(fig(
            &format!("log.redb_{batch}"),
            format!(
                "redb alone: one fsync commit of {batch} event{} (one record)",
                if batch == 1 { "" } else { "s" }
            ),
            format!(
                "median {}",
                duration_us(need(after(found, "median "), "a redb median")?)
            ),
        ));
    }
    let runs = log_runs(output);
    let wanted: [(&str, &str, u64, &str); 10] = [
        (
            "log.none_1",
            "no log",
            1,
            "engine with no log (the submitters' ceiling), 1 submitter",
        ),
        ("log.none_2", "no log", 2, "same, 2 submitters"),
        (
            "log.sync_1",
            "durable sync",
            1,
            "durable `Sync`, closed loop, 1 submitter",
        ),
        (
            "log.sync_16",
            "durable sync",
            16,
            "durable `Sync`, closed loop, 16 submitters",
        ),
        (
            "log.sync_64",
            "durable sync",
            64,
            "durable `Sync`, closed loop, 64 submitters",
        ),
        (
            "log.sync_64x4",
            "durable sync x4",
            64,
            "durable `Sync`, 64 submitters x 4 in flight",
        ),
        (
            "log.sync_64x8",
            "durable sync x8",
            64,
            "durable `Sync`, 64 submitters x 8 in flight",
        ),
        (
            "log.async_1",
            "async 10ms",
            1,
            "`Async` (10 ms flush), 1 submitter",
        ),
        ("log.async_2", "async 10ms", 2, "`Async`, 2 submitters"),
        ("log.async_64", "async 10ms", 64, "`Async`, 64 submitters"),
    ];
    for (id, label, threads, what) in wanted {
        let run = runs
            .get(&(label.to_owned(), threads))
            .ok_or_else(|| format!("no {label} run with {threads} submitters"))?;
        let mut figure = format!("{} reserves/s", si(run.rate));
        if label != "no log" {
            let _ = write!(
                figure,
                "; ack p50 {}, p99 {}",
                duration_us(run.p50_us),
                duration_us(run.p99_us)
            );
        }
        if let Some(mean) = run.batch_mean.filter(|_| label.starts_with("durable")) {
            let _ = write!(figure, "; mean batch {mean:.1} events");
        }
        if let Some(busy) = run.busy.filter(|&b| b > 0.0) {
            let _ = write!(figure, "; {} submits refused `Busy`", si(busy));
        }
        rows.push(fig(id, what, figure));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_log_runs() {
        let out = "\
durable sync x8 64 submitters:    364000 reserves/s (1092000 in 3.00 s); ack p50 1200 us, p99 3300 us, p99.9 4000 us, max 5000 us
                    cpu: process 5.00 core-s of 6.00 available; log writer thread 1.00 core-s; 12 submits refused Busy
                    writer: 5000 batches, mean 212.0 events, largest 600, 5000 fsync commits; per batch: insert 20 us, commit 295 us; busy 50% of wall time
";
        let runs = log_runs(out);
        let r = &runs[&("durable sync x8".to_owned(), 64)];
        assert_eq!((r.rate, r.p50_us, r.p99_us), (364_000.0, 1_200.0, 3_300.0));
        assert_eq!(r.busy, Some(12.0));
        assert_eq!(r.batch_mean, Some(212.0));
    }
}
