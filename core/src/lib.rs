//! # mlff-core
//!
//! A `no_std`, allocation-free evaluator for Behler–Parrinello machine-learning force fields:
//! atom-centred symmetry functions (ACSF) feed one multilayer perceptron per element, the atomic
//! energies sum to the total energy, and forces and virial are its exact negative gradient.
//!
//! The model comes from a versioned, checksummed weight blob ([`blob`], format in
//! `docs/blob-format.md`) that is validated once by [`Model::from_blob`] and then read in place.
//! Every buffer is supplied by the caller through a [`Workspace`]; when one is too small the call
//! returns an error naming the atom and the capacity, and nothing is truncated.
//!
//! Data flow of one call of [`Model::compute`]:
//! positions → cell list ([`neighbors`]) → per atom: neighbours sorted by element →
//! descriptors ([`descriptor`]) → scaling → network forward and backward ([`mlp`]) → dE/dG →
//! descriptor back-propagation → forces scattered onto the neighbours, virial, energy.
//!
//! Units: Å, eV, eV/Å. Total energy and virial are accumulated in `f64` in both precisions.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![forbid(unsafe_op_in_unsafe_fn)]
// The no-panic lints (Cargo.toml [lints]) guard the library; unit tests may index and unwrap.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod blob;
pub mod cell;
pub mod chunk;
pub mod crc32;
pub mod cutoff;
pub mod descriptor;
pub mod error;
pub mod f32math;
pub mod f64math;
pub mod math;
pub mod mlp;
pub mod model;
pub mod neighbors;
pub mod workspace;

mod bytes;

pub use blob::BlobError;
pub use cell::Cell;
pub use chunk::{ChunkForces, ChunkForcesSize};
pub use cutoff::CutoffKind;
pub use descriptor::DescriptorKind;
pub use error::ComputeError;
pub use math::Real;
pub use mlp::Activation;
pub use model::{ChunkOutputs, Model, Outputs, Probe, Results, Stage, System};
pub use neighbors::{CellList, CellListSize, NeighborSet, Visited};
pub use workspace::{Workspace, WorkspaceSize};
