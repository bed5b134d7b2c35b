//! Home package of the workspace's cross-layer benchmarks; run them with `cargo bench -p sbx-benches`.
//!
//! Single-crate benchmarks live in each crate's own `benches/`; results and method are in `docs/benchmarks.md`.
