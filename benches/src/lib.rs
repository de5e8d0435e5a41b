//! Benchmark helpers live in `benches/water.rs`.
