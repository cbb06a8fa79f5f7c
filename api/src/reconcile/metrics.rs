//! The reconciliation series of `/metrics`. Counted as things happen (atomics, no labels a
//! client can grow): runs by result, positions drifted, absolute drift, rows staged, the time
//! of the last successful run. Read at scrape: the drifts held for review now (the ledger
//! knows them; a gauge mirrored here could drift from it).

use crate::shared::Shared;
use inv_engine::reconcile::Report;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `result` label values of `inventory_reconciliations_total`.
const RESULTS: [&str; 3] = ["reconciled", "dry_run", "failed"];

#[derive(Debug, Default)]
pub(crate) struct ReconcileMetrics {
    /// By `RESULTS` index.
    runs: [AtomicU64; 3],
    positions_drifted: AtomicU64,
    drift_units: AtomicU64,
    rows_staged: AtomicU64,
    /// Engine clock, ms; 0 before the first success.
    last_success_ms: AtomicU64,
}

impl ReconcileMetrics {
    /// A finished run: a dry run is counted as one, and changes nothing else.
    pub fn observe_report(&self, report: &Report, now_ms: u64) {
        if report.dry_run {
            self.runs[1].fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.runs[0].fetch_add(1, Ordering::Relaxed);
        self.positions_drifted
            .fetch_add(report.counts.drifted, Ordering::Relaxed);
        self.drift_units
            .fetch_add(report.counts.drift_abs_total, Ordering::Relaxed);
        self.last_success_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    pub fn observe_failed(&self) {
        self.runs[2].fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_staged(&self, rows: u64) {
        self.rows_staged.fetch_add(rows, Ordering::Relaxed);
    }

    /// The series as of now, with the drifts held read from the engine.
    pub fn scrape(&self, drifts_held: u64) -> Scrape {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Scrape {
            runs: [
                load(&self.runs[0]),
                load(&self.runs[1]),
                load(&self.runs[2]),
            ],
            positions_drifted: load(&self.positions_drifted),
            drift_units: load(&self.drift_units),
            rows_staged: load(&self.rows_staged),
            last_success_ms: load(&self.last_success_ms),
            drifts_held,
        }
    }
}

/// One scrape's values.
#[derive(Debug)]
pub(crate) struct Scrape {
    runs: [u64; 3],
    positions_drifted: u64,
    drift_units: u64,
    rows_staged: u64,
    last_success_ms: u64,
    drifts_held: u64,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let counter = prometheus_client::metrics::counter::ConstCounter::new(value);
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    counter.encode(metric)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value);
    let metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    gauge.encode(metric)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        {
            let mut family = e.encode_descriptor(
                "inventory_reconciliations",
                "Reconciliations of ERP snapshots that ended, by result (reconciled, dry_run, failed).",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in RESULTS.iter().zip(self.runs) {
                family
                    .encode_family(&[("result", *result)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                        &count, None,
                    )?;
            }
        }
        counter(
            e,
            "inventory_reconcile_positions_drifted",
            "Positions whose on_hand differed from the ERP's count at the snapshot's time (applied or held).",
            self.positions_drifted,
        )?;
        counter(
            e,
            "inventory_reconcile_drift_units",
            "Sum of |drift| over the drifted positions, in units.",
            self.drift_units,
        )?;
        counter(
            e,
            "inventory_snapshot_rows_staged",
            "Rows of ERP snapshots staged (retries of a staged snapshot not counted).",
            self.rows_staged,
        )?;
        gauge(
            e,
            "inventory_reconcile_last_success_timestamp_seconds",
            "When the last reconciliation (not a dry run) finished, server clock, Unix seconds; 0 before the first.",
            self.last_success_ms as f64 / 1_000.0,
        )?;
        gauge(
            e,
            "inventory_reconcile_drifts_held",
            "Drifts beyond the tolerance held for review (ResolveDrift) now.",
            self.drifts_held as f64,
        )?;
        Ok(())
    }
}

/// The series for one scrape of `shared`'s server.
pub(crate) fn scrape(shared: &Shared) -> Scrape {
    let held = shared.engine.held_drifts_count() as u64;
    shared.reconciler.metrics.scrape(held)
}
