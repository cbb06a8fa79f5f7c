//! Shared helpers for the benchmarks (see `benches/` and `src/bin/`).
