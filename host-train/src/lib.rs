//! # mlff-train
//!
//! The host side of mlff: model specifications ([`spec`]), the blob writer ([`writer`]) — the only
//! way blobs are made — structure readers ([`structure`]), n2p2 descriptor sets ([`n2p2`]),
//! random-weight models for benchmarks ([`random`]), atomic file output ([`io`]), and the `mlff`
//! command. Every prediction goes through `mlff-core`.

pub mod elements;
pub mod extxyz;
pub mod io;
pub mod n2p2;
pub mod predict;
pub mod random;
pub mod spec;
pub mod structure;
pub mod train;
pub mod writer;
