//! A log writer's counters ([`LogStats`]), for benchmarks, metrics and diagnosis. `RedbLog`
//! keeps them; `EventLog::stats` gives them to the engine, whose servers export them.

use std::time::Duration;

/// Batch-size histogram buckets: bucket `i` counts batches of `2^i ..= 2^(i+1) - 1` events; the
/// last bucket also takes anything larger.
pub const BATCH_SIZE_BUCKETS: usize = 17;

/// Counters from the writer thread, for benchmarks and diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Commits that carried events.
    pub batches: u64,
    /// Events committed.
    pub events: u64,
    /// Commits with an fsync (in `Sync` mode, every batch; in `Async`, the flushes).
    pub fsync_commits: u64,
    /// Batches by size: see [`BATCH_SIZE_BUCKETS`].
    pub batch_sizes: [u64; BATCH_SIZE_BUCKETS],
    pub batch_events_largest: u64,
    /// Time spent encoding and inserting events, in ns.
    pub insert_ns: u64,
    /// Time spent in redb's commit (including its fsync), in ns.
    pub commit_ns: u64,
    /// Checkpoints written (each switched to by its own fsync commit, not counted in
    /// `fsync_commits`).
    pub checkpoints: u64,
    /// Size of the newest checkpoint written, in bytes.
    pub checkpoint_bytes_last: u64,
    /// Events deleted because a checkpoint covered them.
    pub events_trimmed: u64,
    /// Time from the writer taking each checkpoint to its switch being durable, in ns (event
    /// batches keep committing meanwhile).
    pub checkpoint_ns: u64,
    /// Commits that carried checkpoint chunks (alone or with an event batch), plus switches.
    pub checkpoint_commits: u64,
    /// The longest single commit made while a checkpoint was being written (staging, a batch
    /// with chunks, or the switch), in ns: about the longest an event waited because of one.
    pub checkpoint_commit_ns_max: u64,
}

impl LogStats {
    /// The sizes bucket `i` counts, inclusive.
    pub fn bucket_bounds(i: usize) -> (u64, u64) {
        let low = 1u64 << i;
        let high = if i + 1 == BATCH_SIZE_BUCKETS {
            u64::MAX
        } else {
            (low << 1) - 1
        };
        (low, high)
    }

    #[cfg_attr(
        not(feature = "redb"),
        allow(dead_code, reason = "only the redb writer keeps stats")
    )]
    pub(crate) fn record_batch(
        &mut self,
        events: u64,
        insert_ns: u64,
        commit_ns: u64,
        fsync: bool,
    ) {
        self.batches += 1;
        self.events += events;
        self.fsync_commits += u64::from(fsync);
        let bucket = (events.max(1).ilog2() as usize).min(BATCH_SIZE_BUCKETS - 1);
        self.batch_sizes[bucket] += 1;
        self.batch_events_largest = self.batch_events_largest.max(events);
        self.insert_ns += insert_ns;
        self.commit_ns += commit_ns;
    }
}

/// `duration` in whole nanoseconds, saturating.
#[cfg_attr(
    not(feature = "redb"),
    allow(dead_code, reason = "only the redb writer keeps stats")
)]
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
