//! Metrics in the Prometheus text format (version 0.0.4), served over HTTP at `/metrics`.
//!
//! Two kinds of series, kept apart on purpose:
//! - **Counted as things happen** ([`Metrics`]): gRPC calls and their latency per method and
//!   status code (the [`Instrumented`] layer around the `Inventory` service, so no handler
//!   counts its own calls), Reserve calls per channel, grants, rejections (oversells
//!   prevented) and expiries. These are atomics in a `prometheus_client` registry; counting
//!   costs a map lookup and an atomic add.
//! - **Read at scrape** ([`Snapshot`]): what the engine already knows and would only be
//!   duplicated (and drift) if mirrored into gauges: open holds, LSNs, per-store sale lag and
//!   gaps, store sequence anomalies (a total over every store), fail-stop, the concurrency budgets in use, and the event log's writer statistics
//!   (`Engine::log_stats`, when the log keeps them). A scrape takes a few short engine locks,
//!   the same ones a `StoreStatus` call takes.
//!
//! Every label has a bounded set of values: `grpc_method` is one of the service's methods (read
//! from the file descriptor set, so a new RPC is covered without an edit here; anything else
//! is `unknown`), `grpc_code` one of the 17 canonical codes, `channel` at most
//! [`CHANNELS_MAX`] distinct values (then `other`), `store_id` the worst
//! `ServerConfig::metrics_stores_max` stores by sale lag (100 by default, at most
//! [`STORES_LISTED_MAX`]). A client cannot grow the scrape without bound by sending new names.
//!
//! Names follow the Prometheus conventions: the `inventory_` prefix, base units in the name
//! (`_seconds`, `_events`), `_total` on counters. `promtool check metrics` passes on the output
//! (see `tests/tests/metrics.rs`).
//!
//! Layout: `counted.rs` holds [`Metrics`] (the registry, the label sets and the recorders the
//! service calls), `scraped.rs` the [`Snapshot`] read from the engine at scrape, `layer.rs` the
//! [`Instrumented`] gRPC layer that times every call, and `endpoint.rs` the HTTP endpoint that
//! serves the exposition. The bounds on label values are here, as the crate exports them.
//! Reconciliation's series (runs, drift, rows staged, drifts held) live with it, in
//! `reconcile/metrics.rs`, and are encoded after the snapshot.
//!
//! [`Snapshot`]: scraped::Snapshot

mod counted;
mod endpoint;
mod layer;
mod scraped;

pub(crate) use counted::Metrics;
pub(crate) use endpoint::serve_http;
pub(crate) use layer::Instrumented;

/// Distinct `channel` label values kept for Reserve calls; later channels count as `other`.
/// Channels are a handful of sales channels in practice; the bound only stops a client that
/// invents a new channel per request from growing every scrape.
pub const CHANNELS_MAX: usize = 64;
/// Stores listed with a `store_id` label; past this (sorted by id) the rest are only counted
/// in `inventory_stores`. Ten thousand stores is a large retailer.
pub const STORES_LISTED_MAX: usize = 10_000;
