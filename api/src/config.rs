//! The server's settings: [`ServerConfig`], its limits and timings.
//!
//! # One declaration per setting
//! Each limit is declared once, as a field of `ServerConfig`: the doc comment is its help text,
//! `#[arg(default_value_t = ..)]` its default, and the field name every spelling of it. The
//! `inventory` binary flattens the struct into the flags of `serve` (`--writes-in-flight-max`),
//! and its `settings` module derives from the same name the environment variable
//! (`INVENTORY_WRITES_IN_FLIGHT_MAX`) and the key of the config file's `[server]` table
//! (`writes_in_flight_max`), so the three cannot disagree. `ServerConfig::default()` is that
//! declaration parsed with no arguments (and no environment), so the defaults a library caller
//! gets are the ones `inventory serve --help` shows.
//!
//! # Acknowledgement is not a setting
//! A write is acknowledged once its event is durable, unless the log itself acknowledges on
//! append (`RedbLog` with `Durability::Async`). Choosing that by hand could acknowledge writes
//! a crash then loses, so it is not here: the server asks the engine
//! (`Engine::acks_on_append`, from the log).

use crate::ServeError;
use clap::{ArgAction, Args, FromArgMatches};
use inv_engine::CheckpointPolicy;
use inv_engine::reconcile::snapshot::SNAPSHOT_CHUNK_ROWS_MAX;
use tokio::sync::Semaphore;

/// The server's limits and timings. Every field has a default suited to one process on a
/// small machine; the `inventory` binary fills them from flags, environment and the config
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct ServerConfig {
    /// Largest request the server decodes, in bytes. A RecordSales batch of 1,000 sales of a
    /// few lines each is well under 1 MiB; 8 MiB leaves room for wide baskets. A larger
    /// message (also one message of a stream) is answered RESOURCE_EXHAUSTED
    /// (MESSAGE_TOO_LARGE) before it is read.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub request_bytes_max: usize,
    /// Largest response the server encodes, in bytes (a Check of 1,000 positions is ~100 KiB;
    /// StoreStatus of every store is the largest answer).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub response_bytes_max: usize,
    /// Interactive writes in progress at once (most of that time is the wait for the log's
    /// group commit, which costs a task, not a thread); past this, RESOURCE_EXHAUSTED. The
    /// log's own queue bound (--queue-events-max) applies as well.
    #[arg(long, value_name = "N", default_value_t = 8_192)]
    pub writes_in_flight_max: usize,
    /// Bulk calls (RecordSales, RecordReturns) accepted at once; their own budget, so they
    /// never delay interactive writes. Past this, RESOURCE_EXHAUSTED before the request is
    /// read. They run one at a time on the bulk lane (interleaved by chunks), so 2 keeps the
    /// lane busy (one deciding while another waits for its group commit) without letting
    /// many batches' memory queue up.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub bulk_in_flight_max: usize,
    /// Niceness of the bulk lane's thread (0-19; 0 runs it at the server's priority), so the
    /// hot path comes first. Higher gives the hot path more of a busy machine; the lane takes
    /// the same short engine locks as hot writes, and a thread niced to 19 that is preempted
    /// holding one stalls them, so the default is in between (measured with `load --scenario
    /// backfill`). Linux only.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub bulk_nice: i32,
    /// Run the bulk lane's threads in Linux's idle scheduling class (SCHED_IDLE): they get a
    /// core only when no other thread wants it. Beside a backfill the hot path's p99 stays far
    /// closer to its p99 alone, but on a machine the hot path keeps busy a backfill slows to a
    /// crawl until the load drops (docs/design.md, "The hot path beside bulk work"). Linux
    /// only.
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, default_value_t = false)]
    pub bulk_idle: bool,
    /// Percent of the time the bulk lane may be busy while the hot path is being called
    /// (5-100; 100 turns pacing off). Niceness alone leaves a 2-core machine's hot path half as
    /// fast during a backfill, because the log writer and the network, which the lane's sales
    /// keep busy, are not niced; so after each chunk the lane sleeps to keep this duty cycle.
    /// With no hot call since its last chunk it runs flat out. See docs/design.md ("The hot
    /// path beside bulk work").
    #[arg(long, value_name = "PERCENT", default_value_t = 25)]
    pub bulk_percent_under_load: u32,
    /// Open WatchAvailability streams. Past this, RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "N", default_value_t = 1_024)]
    pub watch_streams_max: usize,
    /// How often the expirer looks for lapsed holds, in ms. Lapsed holds stop counting against
    /// availability at once; this only bounds how late their expiry events are recorded.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub expire_interval_ms: u64,
    /// Most holds expired per round (more rounds follow at once while there is a backlog).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub expire_batch_max: usize,
    /// How long shutdown waits for in-flight calls before closing connections anyway, in ms.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    /// Write a checkpoint once this many events were logged since the last one; 0 turns the
    /// count trigger off. Bounds what a restart replays.
    #[arg(long, value_name = "N", default_value_t = CheckpointPolicy::default().every_events)]
    pub checkpoint_every_events: u64,
    /// Write a checkpoint once this long has passed since the last one and something was
    /// logged, in ms; 0 turns the time trigger off.
    #[arg(long, value_name = "MS", default_value_t = CheckpointPolicy::default().every_ms)]
    pub checkpoint_every_ms: u64,
    /// Most rows in one chunk of a PushSnapshot stream (at most the engine's own bound,
    /// 10,000): with the bytes bound, what a push holds in memory at once, however large the
    /// snapshot. A larger chunk is INVALID_ARGUMENT naming `chunk.rows`.
    #[arg(long, value_name = "N", default_value_t = SNAPSHOT_CHUNK_ROWS_MAX)]
    pub snapshot_chunk_rows_max: usize,
    /// Largest chunk of a PushSnapshot stream, encoded, in bytes. A larger chunk is
    /// INVALID_ARGUMENT naming `chunk`. (--request-bytes-max bounds every message before it is
    /// read, so a chunk over that is refused by the transport instead.)
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub snapshot_chunk_bytes_max: usize,
    /// Stores given series of their own on /metrics (`inventory_store_*{store_id}`): the worst
    /// this many, by sale lag, then by missing sales, then by id, so a fleet of thousands of
    /// stores cannot blow up Prometheus' cardinality; `inventory_stores` counts them all and
    /// StoreStatus lists them all. 0: no per-store series.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub metrics_stores_max: usize,
}

impl Default for ServerConfig {
    /// The defaults declared on the fields above, the same that `--help` shows.
    fn default() -> Self {
        // The declaration has no `env`: the binary adds the variables, so no environment
        // variable can change a library default.
        let matches = Self::augment_args(clap::Command::new("defaults").no_binary_name(true))
            .try_get_matches_from(std::iter::empty::<&str>())
            .expect("every setting of ServerConfig has a default that parses");
        Self::from_arg_matches(&matches)
            .expect("every setting of ServerConfig has a default that parses")
    }
}

impl ServerConfig {
    /// Blocking threads the server may use at once: one per change-feed read, plus the expirer
    /// and the checkpointer, plus one per snapshot push being staged (bulk calls and
    /// reconciliations run on a thread of their own). Size the runtime's blocking pool to at
    /// least this.
    pub fn blocking_threads_max(&self) -> usize {
        self.watch_streams_max + 2 + crate::reconcile::PUSHES_IN_FLIGHT_MAX
    }

    /// When the checkpointer writes a checkpoint.
    pub fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            every_events: self.checkpoint_every_events,
            every_ms: self.checkpoint_every_ms,
        }
    }

    /// Refuses settings that would make the server unusable.
    pub fn validate(&self) -> Result<(), ServeError> {
        let positive: [(&str, u64); 9] = [
            ("request_bytes_max", self.request_bytes_max as u64),
            (
                "snapshot_chunk_rows_max",
                self.snapshot_chunk_rows_max as u64,
            ),
            (
                "snapshot_chunk_bytes_max",
                self.snapshot_chunk_bytes_max as u64,
            ),
            ("response_bytes_max", self.response_bytes_max as u64),
            ("writes_in_flight_max", self.writes_in_flight_max as u64),
            ("bulk_in_flight_max", self.bulk_in_flight_max as u64),
            ("watch_streams_max", self.watch_streams_max as u64),
            ("expire_interval_ms", self.expire_interval_ms),
            ("expire_batch_max", self.expire_batch_max as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ServeError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.metrics_stores_max > crate::STORES_LISTED_MAX {
            return Err(ServeError::Config(format!(
                "metrics_stores_max must be at most {}, got {}",
                crate::STORES_LISTED_MAX,
                self.metrics_stores_max
            )));
        }
        if !(0..=19).contains(&self.bulk_nice) {
            return Err(ServeError::Config(format!(
                "bulk_nice must be in 0..=19, got {}",
                self.bulk_nice
            )));
        }
        if !(5..=100).contains(&self.bulk_percent_under_load) {
            return Err(ServeError::Config(format!(
                "bulk_percent_under_load must be in 5..=100, got {}",
                self.bulk_percent_under_load
            )));
        }
        if self.snapshot_chunk_rows_max > SNAPSHOT_CHUNK_ROWS_MAX {
            return Err(ServeError::Config(format!(
                "snapshot_chunk_rows_max must be at most {SNAPSHOT_CHUNK_ROWS_MAX}, got {}",
                self.snapshot_chunk_rows_max
            )));
        }
        // tokio's semaphores hold at most this many permits.
        for (name, value) in [
            ("writes_in_flight_max", self.writes_in_flight_max),
            ("bulk_in_flight_max", self.bulk_in_flight_max),
            ("watch_streams_max", self.watch_streams_max),
        ] {
            if value > Semaphore::MAX_PERMITS {
                return Err(ServeError::Config(format!(
                    "{name} must be at most {}",
                    Semaphore::MAX_PERMITS
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_declared_ones() {
        let config = ServerConfig::default();
        assert_eq!(config.request_bytes_max, 8 << 20);
        assert_eq!(config.writes_in_flight_max, 8_192);
        assert_eq!(config.bulk_nice, 10);
        assert_eq!(config.checkpoint_policy(), CheckpointPolicy::default());
        config.validate().expect("the defaults are valid");
    }
}
