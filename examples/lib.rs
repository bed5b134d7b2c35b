//! Home package of the workspace's cross-layer examples; run one with `cargo run --example NAME`.
//!
//! Each crate keeps its own single-layer examples under `crates/<crate>/examples/`; the programs in this folder
//! compose several layers, the way another product would embed them.
