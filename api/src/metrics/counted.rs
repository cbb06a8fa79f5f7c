//! The series counted as things happen: the registry, their label sets, the recorders the
//! service calls, and the whole exposition ([`Metrics::render`]).

use super::CHANNELS_MAX;
use super::scraped::Snapshot;
use crate::convert;
use crate::shared::Shared;
use inv_engine::{Outcome, Receipt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tonic::Code;

/// Buckets of `inventory_grpc_request_duration_seconds`: a check answers in tens of
/// microseconds, a write waits for an fsync (a millisecond to tens of ms), a change feed lives
/// for minutes (those land in `+Inf`).
const DURATION_BUCKETS_SECONDS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The method label of a path that names none of the service's methods.
const METHOD_UNKNOWN: &str = "unknown";
/// The channel label past [`CHANNELS_MAX`], and for a channel that is not a valid id.
const CHANNEL_OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    grpc_method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrincipalLabels {
    principal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

type DurationFamily = Family<RpcLabels, Histogram, fn() -> Histogram>;

/// The call counter and the duration histogram of one (method, code) label set.
type CallSeries = (Counter, Histogram);

/// gRPC status codes: 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// The methods a connector waits on: while they are being called, bulk work gives way.
const HOT_METHODS: [&str; 8] = [
    "Reserve",
    "Commit",
    "Release",
    "Extend",
    "GetReservation",
    "Check",
    "CheckSku",
    "CheckSellable",
];

/// The series counted as things happen, and the registry they are encoded from.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// The `Inventory` service's method names: the only values `grpc_method` takes (besides
    /// `unknown`), each with its index in `method_names`.
    methods: HashMap<String, usize>,
    /// By index; the last is `unknown`.
    method_names: Vec<String>,
    /// The call series of each (method, code), by method index and code: filled on first use
    /// and then shared with the families, so counting a call allocates nothing and takes no
    /// lock on a family's map (this runs on every call, Checks included).
    call_series: Vec<[OnceLock<CallSeries>; CODES]>,
    grpc_requests: Family<RpcLabels, Counter>,
    grpc_duration: DurationFamily,
    reserve_requests: Family<ChannelLabels, Counter>,
    /// Channel label values in use (`other` included), at most [`CHANNELS_MAX`].
    channels_labelled: AtomicUsize,
    reserve_grants: Counter,
    reserve_rejections: Counter,
    hold_expiries: Counter,
    bulk_paced: Counter<f64, AtomicU64>,
    /// By principal: names come from the principals file, a set the operator bounds.
    quota_refusals: Family<PrincipalLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let grpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "inventory_grpc_requests",
            "gRPC calls of the Inventory service that ended, by method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS_SECONDS));
        registry.register(
            "inventory_grpc_request_duration_seconds",
            "Time from a call's arrival to its last byte (a stream's whole life), by method and status code",
            grpc_duration.clone(),
        );
        let reserve_requests = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "inventory_reserve_requests",
            "Reserve calls (unary and on Session streams) by sales channel, valid or not",
            reserve_requests.clone(),
        );
        let reserve_grants = Counter::default();
        registry.register(
            "inventory_reserve_grants",
            "Reserves granted: holds placed (retries answered from the idempotency index are not counted)",
            reserve_grants.clone(),
        );
        let reserve_rejections = Counter::default();
        registry.register(
            "inventory_reserve_rejections",
            "Reserves refused for lack of available stock, i.e. oversells prevented (retries not counted)",
            reserve_rejections.clone(),
        );
        let hold_expiries = Counter::default();
        registry.register(
            "inventory_hold_expiries",
            "Holds whose TTL passed and whose expiry the expiry sweep recorded",
            hold_expiries.clone(),
        );
        let bulk_paced = Counter::<f64, AtomicU64>::default();
        registry.register(
            "inventory_bulk_paced_seconds",
            "Time the bulk lane slept between chunks to leave the hot path its share (--bulk-percent-under-load)",
            bulk_paced.clone(),
        );
        let quota_refusals = Family::<PrincipalLabels, Counter>::default();
        registry.register(
            "inventory_quota_refusals",
            "Calls refused RESOURCE_EXHAUSTED QUOTA_EXCEEDED: the principal was over its call rate",
            quota_refusals.clone(),
        );
        registry.register(
            "inventory_build",
            "The server's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let mut method_names: Vec<String> = service_methods().into_iter().collect();
        method_names.sort_unstable();
        let methods = method_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        method_names.push(METHOD_UNKNOWN.to_owned());
        let call_series = method_names
            .iter()
            .map(|_| std::array::from_fn(|_| OnceLock::new()))
            .collect();
        Self {
            registry,
            methods,
            method_names,
            call_series,
            grpc_requests,
            grpc_duration,
            reserve_requests,
            channels_labelled: AtomicUsize::new(0),
            reserve_grants,
            reserve_rejections,
            hold_expiries,
            bulk_paced,
            quota_refusals,
        }
    }

    /// The `grpc_method` label of a request path (`/inventory.v1.Inventory/Reserve`), as an
    /// index of `method_names`.
    pub(super) fn method_of(&self, path: &str) -> usize {
        let name = path.rsplit('/').next().unwrap_or_default();
        self.methods
            .get(name)
            .copied()
            .unwrap_or(self.method_names.len() - 1)
    }

    /// Calls of the hot path's unary methods that have ended, whatever their code: only
    /// whether it moves matters (`Shared::hot_activity`). Reads the series already made.
    pub fn hot_calls(&self) -> u64 {
        HOT_METHODS
            .iter()
            .filter_map(|name| self.methods.get(*name))
            .flat_map(|&method| self.call_series[method].iter())
            .filter_map(OnceLock::get)
            .map(|(calls, _)| calls.get())
            .sum()
    }

    pub(super) fn observe_call(&self, method: usize, code: Code, elapsed: Duration) {
        // Every code is in 0..CODES; anything else would be counted as Unknown.
        let code_index = (code as usize).min(CODES - 1);
        let (calls, duration) = self.call_series[method][code_index].get_or_init(|| {
            let labels = RpcLabels {
                grpc_method: self.method_names[method].clone(),
                grpc_code: code_name(code).to_owned(),
            };
            (
                self.grpc_requests.get_or_create(&labels).clone(),
                self.grpc_duration.get_or_create(&labels).clone(),
            )
        });
        calls.inc();
        duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a Reserve call under its channel.
    pub fn observe_reserve_channel(&self, channel: &str) {
        let valid = convert::id_problem(channel).is_none() && channel != CHANNEL_OTHER;
        let labels = ChannelLabels {
            channel: if valid { channel } else { CHANNEL_OTHER }.to_owned(),
        };
        if let Some(counter) = self.reserve_requests.get(&labels) {
            counter.inc();
            return;
        }
        // A new channel takes one of CHANNELS_MAX places. Two first calls of the same channel
        // racing here may both take one: the bound holds, it is only reached a little sooner.
        let placed = self
            .channels_labelled
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < CHANNELS_MAX).then_some(n + 1)
            })
            .is_ok();
        let labels = if placed {
            labels
        } else {
            ChannelLabels {
                channel: CHANNEL_OTHER.to_owned(),
            }
        };
        self.reserve_requests.get_or_create(&labels).inc();
    }

    /// Counts a Reserve's decision, once: a retry answered from the idempotency index is the
    /// same decision again.
    pub fn observe_reserve_outcome(&self, receipt: &Receipt) {
        if receipt.duplicate {
            return;
        }
        match receipt.outcome {
            Outcome::Granted { .. } => {
                self.reserve_grants.inc();
            }
            Outcome::Insufficient { .. } => {
                self.reserve_rejections.inc();
            }
            _ => {}
        }
    }

    /// Counts a call refused for its principal's quota.
    pub fn observe_quota_refusal(&self, principal: &str) {
        let labels = PrincipalLabels {
            principal: principal.to_owned(),
        };
        self.quota_refusals.get_or_create(&labels).inc();
    }

    pub fn observe_expiries(&self, expired: usize) {
        self.hold_expiries.inc_by(expired as u64);
    }

    pub fn observe_bulk_paced(&self, slept: Duration) {
        self.bulk_paced.inc_by(slept.as_secs_f64());
    }

    /// The whole exposition: the counted series, then a snapshot of the engine.
    pub fn render(&self, shared: &Shared) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        let mut scraped = Registry::default();
        scraped.register_collector(Box::new(Snapshot::read(shared)));
        scraped.register_collector(Box::new(crate::reconcile::metrics::scrape(shared)));
        prometheus_client::encoding::prometheus_text::encode(&mut text, &scraped)?;
        Ok(text)
    }
}

/// The `Inventory` service's method names, from the descriptors the server also registers for
/// reflection.
fn service_methods() -> HashSet<String> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(inv_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled-in file descriptor set decodes");
    set.file
        .iter()
        .filter(|file| file.package() == "inventory.v1")
        .flat_map(|file| &file.service)
        .filter(|service| service.name() == "Inventory")
        .flat_map(|service| &service.method)
        .map(|method| method.name().to_owned())
        .collect()
}

/// The canonical name of a status code, as gRPC's own libraries print it (`OK`, `NotFound`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_service_is_a_method_label() {
        let methods = service_methods();
        for name in [
            "Reserve",
            "Commit",
            "Check",
            "WatchAvailability",
            "StoreStatus",
        ] {
            assert!(methods.contains(name), "{name} missing from {methods:?}");
        }
        let metrics = Metrics::new();
        let name = |path: &str| metrics.method_names[metrics.method_of(path)].as_str();
        assert_eq!(name("/inventory.v1.Inventory/Reserve"), "Reserve");
        assert_eq!(name("/inventory.v1.Inventory/NoSuchThing"), METHOD_UNKNOWN);
        assert_eq!(name("/inventory.v1.Inventory/Unknown"), METHOD_UNKNOWN);
    }

    #[test]
    fn channels_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..(CHANNELS_MAX * 2) {
            metrics.observe_reserve_channel(&format!("channel-{i}"));
        }
        metrics.observe_reserve_channel("bad\nchannel");
        assert_eq!(
            metrics.channels_labelled.load(Ordering::Acquire),
            CHANNELS_MAX
        );
        let other = ChannelLabels {
            channel: CHANNEL_OTHER.to_owned(),
        };
        let count = metrics
            .reserve_requests
            .get(&other)
            .map(|c| c.get())
            .unwrap_or(0);
        assert_eq!(count, CHANNELS_MAX as u64 + 1);
    }
}
