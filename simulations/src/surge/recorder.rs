//! What a surge scenario measures while it runs: per RPC, the latency of every answer (an
//! hdrhistogram for the whole run and a coarser one per time bucket, for the chart), business
//! rejections, and errors by gRPC code.
//!
//! One [`Recorder`] is shared by every task of a scenario behind a std `Mutex`: a flash sale has
//! thousands of buyer tasks, and a histogram per task (as the measuring scenarios keep per
//! caller) would cost ~100 KiB each. The critical section is a few array increments with no
//! await, so a std mutex is the right lock; next to an RPC of tens of microseconds it does not
//! show.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Highest latency recorded, in µs; slower answers are recorded as this.
const LATENCY_US_MAX: u64 = 60_000_000;
/// Most time buckets a timeline keeps; later answers land in the last one. At the default
/// width this is well over an hour.
const BUCKETS_MAX: usize = 4_096;

/// Every RPC's numbers since the recorder started.
pub struct Recorder {
    started: Instant,
    /// Width of one timeline bucket: the chart's resolution.
    bucket: Duration,
    ops: Mutex<BTreeMap<&'static str, OpRecord>>,
    phases: Mutex<Phases>,
}

/// Answers by named phase of a scenario, exact to the answer rather than to a timeline
/// bucket: a phase may be far shorter than a bucket (a release build pushes and reconciles
/// the CI-size snapshot in tens of milliseconds).
#[derive(Default)]
struct Phases {
    current: Option<&'static str>,
    latency_us: BTreeMap<(&'static str, &'static str), Histogram<u32>>,
}

struct OpRecord {
    latency_us: Histogram<u64>,
    /// Per bucket: latencies at two significant digits (enough for a chart, ~20 KiB each),
    /// allocated when the bucket gets its first answer.
    buckets: Vec<Option<Histogram<u32>>>,
    /// Per bucket: failed tries (a refusal while a budget is in use shows here over time).
    bucket_errors: Vec<u64>,
    /// When the first and the latest answer came, in seconds since the start: the span the
    /// RPC was in use, which a row's throughput is measured over (a scenario's phases each
    /// use a few RPCs, so the whole run's length would understate every one of them).
    first_s: f64,
    last_s: f64,
    rejected: u64,
    errors: BTreeMap<String, u64>,
}

impl OpRecord {
    fn new() -> OpRecord {
        OpRecord {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("valid histogram bounds"),
            buckets: Vec::new(),
            bucket_errors: Vec::new(),
            first_s: f64::MAX,
            last_s: 0.0,
            rejected: 0,
            errors: BTreeMap::new(),
        }
    }
}

/// One RPC's line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RpcRow {
    pub op: String,
    /// Answers received (business rejections included).
    pub ok: u64,
    /// From the first call answered being sent to the last answer, in seconds: the RPC's
    /// active span, which `ops_per_s` is measured over.
    pub seconds: f64,
    /// Answers that were business refusals (out of stock).
    pub rejected: u64,
    /// Failed calls by gRPC code name (`item:CODE` for failed items of a batch, `CLIENT_TIMEOUT`
    /// for calls the client gave up on).
    pub errors: BTreeMap<String, u64>,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One RPC in one time bucket: the chart's data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelinePoint {
    pub op: String,
    /// Start of the bucket, seconds since the scenario started.
    pub t_s: f64,
    /// Answers in the bucket, per second.
    pub ops_per_s: f64,
    /// Failed tries in the bucket, per second.
    pub errors_per_s: f64,
    /// 0 when the bucket had only failures.
    pub p99_us: u64,
}

impl Recorder {
    pub fn new(bucket: Duration) -> Recorder {
        Recorder {
            started: Instant::now(),
            bucket: bucket.max(Duration::from_millis(10)),
            ops: Mutex::new(BTreeMap::new()),
            phases: Mutex::new(Phases::default()),
        }
    }

    /// From now on, answers also count in phase `name`, until the next phase begins or
    /// [`Recorder::end_phases`].
    pub fn begin_phase(&self, name: &'static str) {
        self.lock_phases().current = Some(name);
    }

    /// Answers from now on count in no phase.
    pub fn end_phases(&self) {
        self.lock_phases().current = None;
    }

    fn lock_phases(&self) -> std::sync::MutexGuard<'_, Phases> {
        // As for `ops`: a poisoned lock holds nothing half-made that a report minds.
        self.phases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers of `op` received in any of `phases`, and their latency at each of `quantiles`,
    /// in µs; `None` without answers there.
    pub fn quantiles_in(
        &self,
        op: &'static str,
        phases: &[&'static str],
        quantiles: &[f64],
    ) -> Option<(u64, Vec<u64>)> {
        let recorded = self.lock_phases();
        let histograms = phases
            .iter()
            .filter_map(|phase| recorded.latency_us.get(&(*phase, op)));
        quantiles_of(histograms, 3, quantiles)
    }

    fn with<R>(&self, op: &'static str, f: impl FnOnce(&mut OpRecord) -> R) -> R {
        // A panic while holding the lock cannot leave a histogram half-updated in a way that
        // matters for a report, so a poisoned lock is used as it is.
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        f(ops.entry(op).or_insert_with(OpRecord::new))
    }

    /// An answer to a call of `op` started at `started`.
    pub fn ok(&self, op: &'static str, started: Instant) {
        let now = Instant::now();
        let us = u64::try_from(now.duration_since(started).as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, LATENCY_US_MAX);
        let index = self.bucket_index(now);
        let at_s = now.duration_since(self.started).as_secs_f64();
        self.with(op, |record| {
            record.latency_us.saturating_record(us);
            record.first_s = record.first_s.min(at_s - us as f64 / 1e6);
            record.last_s = record.last_s.max(at_s);
            if record.buckets.len() <= index {
                record.buckets.resize_with(index + 1, || None);
            }
            record.buckets[index]
                .get_or_insert_with(|| {
                    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("valid bounds")
                })
                .saturating_record(us);
        });
        let mut phases = self.lock_phases();
        if let Some(phase) = phases.current {
            phases
                .latency_us
                .entry((phase, op))
                .or_insert_with(|| {
                    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
                })
                .saturating_record(us);
        }
    }

    fn bucket_index(&self, now: Instant) -> usize {
        ((now.duration_since(self.started).as_nanos() / self.bucket.as_nanos()) as usize)
            .min(BUCKETS_MAX - 1)
    }

    /// An answer that was a business refusal (also recorded with [`Recorder::ok`]).
    pub fn rejected(&self, op: &'static str) {
        self.with(op, |record| record.rejected += 1);
    }

    /// A failed call (or batch item) of `op`.
    pub fn error(&self, op: &'static str, name: impl Into<String>) {
        let name = name.into();
        let index = self.bucket_index(Instant::now());
        self.with(op, |record| {
            *record.errors.entry(name).or_default() += 1;
            if record.bucket_errors.len() <= index {
                record.bucket_errors.resize(index + 1, 0);
            }
            record.bucket_errors[index] += 1;
        });
    }

    /// Seconds since the recorder started.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Answers of `op` so far.
    pub fn count(&self, op: &'static str) -> u64 {
        self.with(op, |record| record.latency_us.len())
    }

    /// One row per RPC, its throughput measured over its active span (at least one bucket).
    pub fn rows(&self) -> Vec<RpcRow> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.iter()
            .map(|(op, record)| {
                let h = &record.latency_us;
                let seconds = if h.is_empty() {
                    0.0
                } else {
                    (record.last_s - record.first_s.max(0.0)).max(self.bucket.as_secs_f64())
                };
                RpcRow {
                    op: (*op).to_owned(),
                    ok: h.len(),
                    seconds,
                    rejected: record.rejected,
                    errors: record.errors.clone(),
                    ops_per_s: h.len() as f64 / seconds.max(1e-9),
                    p50_us: h.value_at_quantile(0.50),
                    p99_us: h.value_at_quantile(0.99),
                    p999_us: h.value_at_quantile(0.999),
                    max_us: h.max(),
                }
            })
            .collect()
    }

    /// Every RPC's throughput and p99 per time bucket (buckets without answers are skipped).
    pub fn timeline(&self) -> Vec<TimelinePoint> {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let width_s = self.bucket.as_secs_f64();
        let mut points = Vec::new();
        for (op, record) in ops.iter() {
            for i in 0..record.buckets.len().max(record.bucket_errors.len()) {
                let bucket = record.buckets.get(i).and_then(Option::as_ref);
                let errors = record.bucket_errors.get(i).copied().unwrap_or(0);
                if bucket.is_none() && errors == 0 {
                    continue;
                }
                points.push(TimelinePoint {
                    op: (*op).to_owned(),
                    t_s: i as f64 * width_s,
                    ops_per_s: bucket.map_or(0.0, |h| h.len() as f64 / width_s),
                    errors_per_s: errors as f64 / width_s,
                    p99_us: bucket.map_or(0, |h| h.value_at_quantile(0.99)),
                });
            }
        }
        points
    }

    /// The p99 of `op` over the answers received between `from_s` and `to_s` (seconds since
    /// the start, at bucket resolution); `None` without answers there.
    pub fn p99_between(&self, op: &'static str, from_s: f64, to_s: f64) -> Option<u64> {
        self.quantiles_between(op, from_s, to_s, &[0.99])
            .map(|(_, values)| values[0])
    }

    /// Answers of `op` received between `from_s` and `to_s` (seconds since the start, at
    /// bucket resolution, two significant digits) and their latency at each of `quantiles`, in
    /// µs; `None` without answers there. For windows of many buckets (a ramp's quarters);
    /// a phase shorter than a bucket needs [`Recorder::begin_phase`].
    pub fn quantiles_between(
        &self,
        op: &'static str,
        from_s: f64,
        to_s: f64,
        quantiles: &[f64],
    ) -> Option<(u64, Vec<u64>)> {
        let width_s = self.bucket.as_secs_f64();
        self.with(op, |record| {
            let histograms = record.buckets.iter().enumerate().filter_map(|(i, bucket)| {
                let t = i as f64 * width_s;
                bucket.as_ref().filter(|_| t >= from_s && t < to_s)
            });
            quantiles_of(histograms, 2, quantiles)
        })
    }
}

/// How many answers `histograms` hold together, and their latency at each of `quantiles`
/// (merged at `significant_digits`); `None` without answers.
fn quantiles_of<'a>(
    histograms: impl Iterator<Item = &'a Histogram<u32>>,
    significant_digits: u8,
    quantiles: &[f64],
) -> Option<(u64, Vec<u64>)> {
    let mut merged: Histogram<u32> =
        Histogram::new_with_bounds(1, LATENCY_US_MAX, significant_digits).expect("valid bounds");
    for histogram in histograms {
        merged.add(histogram).expect("same bounds");
    }
    (!merged.is_empty()).then(|| {
        let values = quantiles
            .iter()
            .map(|&q| merged.value_at_quantile(q))
            .collect();
        (merged.len(), values)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers land in their op's row and in the time bucket they arrived in.
    #[test]
    fn answers_and_errors_are_counted_per_op_and_bucket() {
        let recorder = Recorder::new(Duration::from_millis(10));
        let started = Instant::now();
        recorder.ok("reserve", started);
        recorder.ok("reserve", started);
        recorder.rejected("reserve");
        recorder.error("reserve", "RESOURCE_EXHAUSTED");
        recorder.ok("check", started);
        let rows = recorder.rows();
        assert_eq!(rows.len(), 2);
        let reserve = rows.iter().find(|r| r.op == "reserve").expect("a row");
        assert_eq!(reserve.ok, 2);
        assert_eq!(reserve.rejected, 1);
        assert_eq!(reserve.errors["RESOURCE_EXHAUSTED"], 1);
        let timeline = recorder.timeline();
        let answers: f64 = timeline
            .iter()
            .filter(|p| p.op == "reserve")
            .map(|p| p.ops_per_s * 0.01)
            .sum();
        assert!((answers - 2.0).abs() < 1e-6, "{timeline:?}");
        assert!(recorder.p99_between("reserve", 0.0, 100.0).is_some());
        assert!(recorder.p99_between("reserve", 50.0, 100.0).is_none());
        let (answers, quantiles) = recorder
            .quantiles_between("reserve", 0.0, 100.0, &[0.5, 0.99])
            .expect("answers in the window");
        assert_eq!(answers, 2);
        assert_eq!(quantiles.len(), 2);
        assert!(
            recorder
                .quantiles_between("reserve", 50.0, 100.0, &[0.5])
                .is_none()
        );
    }

    /// A phase holds exactly the answers received while it was open, however short it was.
    #[test]
    fn answers_count_in_the_phase_they_arrive_in() {
        let recorder = Recorder::new(Duration::from_millis(500));
        let started = Instant::now();
        recorder.ok("reserve", started);
        recorder.begin_phase("before");
        recorder.ok("reserve", started);
        recorder.ok("check", started);
        recorder.begin_phase("push");
        recorder.ok("reserve", started);
        recorder.begin_phase("reconcile");
        recorder.ok("reserve", started);
        recorder.ok("reserve", started);
        recorder.end_phases();
        recorder.ok("reserve", started);
        let answers = |phases: &[&'static str]| {
            recorder
                .quantiles_in("reserve", phases, &[0.5, 0.99])
                .map_or(0, |(answers, _)| answers)
        };
        assert_eq!(answers(&["before"]), 1);
        assert_eq!(answers(&["push"]), 1);
        assert_eq!(answers(&["reconcile"]), 2);
        assert_eq!(answers(&["push", "reconcile"]), 3);
        assert_eq!(answers(&["after"]), 0);
        assert_eq!(recorder.count("reserve"), 6);
        let (checks, quantiles) = recorder
            .quantiles_in("check", &["before", "push"], &[0.5, 0.99, 0.999])
            .expect("a check in the window");
        assert_eq!((checks, quantiles.len()), (1, 3));
    }
}
