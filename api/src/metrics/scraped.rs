//! What is read from the engine at scrape rather than counted: open holds, LSNs, stores,
//! fail-stop, budgets in use and the log writer's statistics.

use super::STORES_LISTED_MAX;
use crate::shared::Shared;
use inv_engine::archive::ArchiveStats;
use inv_engine::log::{BATCH_SIZE_BUCKETS, LogStats};
use inv_engine::{MemoryUse, StoreStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::fmt;

/// What the engine knows, read once per scrape and encoded as gauges and counters.
#[derive(Debug)]
pub(super) struct Snapshot {
    holds_open: u64,
    next_lsn: u64,
    durable_lsn: u64,
    fail_stopped: bool,
    writes_in_flight: u64,
    bulk_in_flight: u64,
    watch_streams: u64,
    stores_total: u64,
    /// Sequence anomalies awaiting a verdict, over every store (listed or not): an alert
    /// must not miss one because its store's lag is small.
    store_seq_anomalies: u64,
    /// The worst `ServerConfig::metrics_stores_max` (at most [`STORES_LISTED_MAX`]), by
    /// sale lag, then missing sales, then id.
    stores: Vec<StoreStatus>,
    log: Option<LogStats>,
    memory: MemoryUse,
    memory_limit_bytes: u64,
    memory_exhausted: bool,
    archive: Option<ArchiveStats>,
}

impl Snapshot {
    pub(super) fn read(shared: &Shared) -> Self {
        let engine = &shared.engine;
        let mut stores = engine.store_statuses();
        let stores_total = stores.len() as u64;
        let store_seq_anomalies = stores.iter().map(|s| s.anomalies.len() as u64).sum();
        stores.sort_unstable_by(|a, b| {
            (b.newest_lag_ms, b.missing_count)
                .cmp(&(a.newest_lag_ms, a.missing_count))
                .then_with(|| a.store_id.cmp(&b.store_id))
        });
        stores.truncate(shared.config.metrics_stores_max.min(STORES_LISTED_MAX));
        let in_use = |budget: &tokio::sync::Semaphore, max: usize| {
            max.saturating_sub(budget.available_permits()) as u64
        };
        let config = &shared.config;
        Self {
            holds_open: engine.holds_open() as u64,
            next_lsn: engine.head_lsn().0 + 1,
            durable_lsn: engine.durable_lsn().0,
            fail_stopped: shared.is_failed(),
            writes_in_flight: in_use(&shared.writes, config.writes_in_flight_max),
            bulk_in_flight: in_use(&shared.bulk, config.bulk_in_flight_max),
            watch_streams: in_use(&shared.watches, config.watch_streams_max),
            stores_total,
            store_seq_anomalies,
            stores,
            log: engine.log_stats(),
            memory: engine.ledger().memory_use(),
            memory_limit_bytes: engine.memory_policy().limit_bytes,
            memory_exhausted: engine.memory_exhausted(),
            archive: engine.ledger().archive_stats(),
        }
    }
}

/// Help text ends with a full stop, as the registry writes it for the counted series.
fn sentence(help: &str) -> String {
    format!("{help}.")
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &sentence(help), None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// `name` without `_total`: the encoder appends it to counters.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeCounterValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &sentence(help), None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One gauge series per store.
fn store_gauge(
    encoder: &mut DescriptorEncoder,
    stores: &[StoreStatus],
    name: &str,
    help: &str,
    value: impl Fn(&StoreStatus) -> f64,
) -> fmt::Result {
    if stores.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, &sentence(help), None, MetricType::Gauge)?;
    for store in stores {
        metric
            .encode_family(&[("store_id", store.store_id.as_str())])?
            .encode_gauge(&value(store))?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        gauge(
            e,
            "inventory_holds_open",
            "Open holds, including lapsed ones whose expiry is not yet recorded",
            self.holds_open,
        )?;
        gauge(
            e,
            "inventory_ledger_next_lsn",
            "The log sequence number the next accepted event will get",
            self.next_lsn,
        )?;
        gauge(
            e,
            "inventory_log_durable_lsn",
            "Every event up to this log sequence number is durable",
            self.durable_lsn,
        )?;
        gauge(
            e,
            "inventory_fail_stopped",
            "1 once the event log failed: writes are refused and health is NOT_SERVING until a restart",
            u64::from(self.fail_stopped),
        )?;
        gauge(
            e,
            "inventory_writes_in_flight",
            "Interactive writes in progress (of writes_in_flight_max)",
            self.writes_in_flight,
        )?;
        gauge(
            e,
            "inventory_bulk_calls_in_flight",
            "RecordSales and RecordReturns calls in progress (of bulk_in_flight_max)",
            self.bulk_in_flight,
        )?;
        gauge(
            e,
            "inventory_watch_streams_open",
            "Open WatchAvailability streams (of watch_streams_max)",
            self.watch_streams,
        )?;
        gauge(
            e,
            "inventory_stores",
            "Stores that have posted sales",
            self.stores_total,
        )?;
        gauge(
            e,
            "inventory_store_seq_anomalies",
            "Sales whose store sequence number jumped beyond --store-seq-jump-max, awaiting \
             `inventory store-ack`, over every store",
            self.store_seq_anomalies,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sale_lag_seconds",
            "Server time minus till time of the store's newest sale when it was recorded",
            |s| s.newest_lag_ms as f64 / 1_000.0,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sale_gaps",
            "Open gaps (missing ranges) in the store's sale sequence",
            |s| s.gaps.len() as f64,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_sales_missing",
            "Sequence numbers missing between the store's contiguous and newest sale",
            |s| s.missing_count as f64,
        )?;
        store_gauge(
            e,
            &self.stores,
            "inventory_store_contiguous_seq",
            "Every sale sequence number of the store up to this one has been received",
            |s| s.contiguous_seq as f64,
        )?;
        if let Some(log) = &self.log {
            encode_log_stats(e, log)?;
        }
        self.encode_memory(e)?;
        // Reconciliation has its own series (`reconcile::metrics`), registered beside these.
        Ok(())
    }
}

impl Snapshot {
    fn encode_memory(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = &self.memory;
        let mut metric = e.encode_descriptor(
            "inventory_memory_bytes",
            &sentence(
                "The ledger's memory by part, estimated from counts (see docs/operations.md); \
                 the sum is judged against inventory_memory_limit_bytes",
            ),
            None,
            MetricType::Gauge,
        )?;
        for (part, bytes) in [
            ("positions", m.positions),
            ("holds", m.holds),
            ("keys", m.keys),
            ("store_gaps", m.store_gaps),
            ("archive_index", m.archive_index),
        ] {
            metric
                .encode_family(&[("part", part)])?
                .encode_gauge(&bytes)?;
        }
        gauge(
            e,
            "inventory_memory_limit_bytes",
            "The ledger's memory budget (--memory-limit-bytes); 0: none",
            self.memory_limit_bytes,
        )?;
        gauge(
            e,
            "inventory_memory_exhausted",
            "1 while the ledger's memory is past its limit: writes that add state are refused",
            u64::from(self.memory_exhausted),
        )?;
        gauge(
            e,
            "inventory_keys_in_memory",
            "Idempotency records kept in memory: hold entries and key-shard records",
            m.hold_entries + m.key_records,
        )?;
        gauge(
            e,
            "inventory_keys_archived",
            "Entries in the key archive (keys.redb), as its in-memory index counts them",
            m.archived_keys,
        )?;
        if let Some(archive) = &self.archive {
            gauge(
                e,
                "inventory_key_archive_file_bytes",
                "Size of the key archive's file (keys.redb)",
                archive.file_bytes,
            )?;
        }
        Ok(())
    }
}

fn encode_log_stats(e: &mut DescriptorEncoder, log: &LogStats) -> fmt::Result {
    counter(
        e,
        "inventory_log_batches",
        "Write batches the log writer committed (each one redb write transaction)",
        log.batches,
    )?;
    counter(
        e,
        "inventory_log_fsyncs",
        "Commits with an fsync (sync durability: every batch; async: the periodic flushes)",
        log.fsync_commits,
    )?;
    counter(
        e,
        "inventory_log_commit_seconds",
        "Time the log writer spent in commits, fsync included; divide by inventory_log_batches_total for the mean commit latency",
        log.commit_ns as f64 / 1e9,
    )?;
    counter(
        e,
        "inventory_log_insert_seconds",
        "Time the log writer spent encoding and inserting events",
        log.insert_ns as f64 / 1e9,
    )?;
    counter(
        e,
        "inventory_log_checkpoints",
        "Checkpoints the log wrote",
        log.checkpoints,
    )?;
    // Bucket i counts batches of 2^i to 2^(i+1) - 1 events; `le` is that inclusive upper
    // bound, and the last bucket is open-ended.
    let buckets: Vec<(f64, u64)> = (0..BATCH_SIZE_BUCKETS)
        .map(|i| {
            let (_, high) = LogStats::bucket_bounds(i);
            let le = if high == u64::MAX {
                f64::INFINITY
            } else {
                high as f64
            };
            (le, log.batch_sizes[i])
        })
        .collect();
    let count: u64 = log.batch_sizes.iter().sum();
    e.encode_descriptor(
        "inventory_log_batch_events",
        "Events per committed write batch (group commit size).",
        None,
        MetricType::Histogram,
    )?
    .encode_histogram::<NoLabelSet>(log.events as f64, count, &buckets, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn log_stats_encode_as_a_histogram_of_batch_sizes() {
        let mut log = LogStats {
            batches: 3,
            events: 1 + 2 + 5,
            ..LogStats::default()
        };
        log.batch_sizes[0] = 1; // 1 event
        log.batch_sizes[1] = 1; // 2 events
        log.batch_sizes[2] = 1; // 5 events
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot {
            holds_open: 0,
            next_lsn: 9,
            durable_lsn: 8,
            fail_stopped: false,
            writes_in_flight: 0,
            bulk_in_flight: 0,
            watch_streams: 0,
            stores_total: 0,
            store_seq_anomalies: 0,
            stores: Vec::new(),
            log: Some(log),
            memory: MemoryUse::default(),
            memory_limit_bytes: 0,
            memory_exhausted: false,
            archive: None,
        }));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        for line in [
            "inventory_log_batch_events_bucket{le=\"1\"} 1",
            "inventory_log_batch_events_bucket{le=\"3\"} 2",
            "inventory_log_batch_events_bucket{le=\"7\"} 3",
            "inventory_log_batch_events_bucket{le=\"+Inf\"} 3",
            "inventory_log_batch_events_sum 8.0",
            "inventory_log_batch_events_count 3",
            "inventory_log_batches_total 3",
            "inventory_ledger_next_lsn 9",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        // The 0.0.4 text format has no `# EOF` (that is OpenMetrics).
        assert!(!text.contains("# EOF"));
    }
}
