//! Errors of the compute path. Blob errors live in [`crate::blob::BlobError`].

use core::fmt;

/// Why a computation could not run. After a successful blob load these are the only failures:
/// bad input or a buffer that is too small, each naming what and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputeError {
    /// Atom `atom` has more than `capacity` neighbours within the model cutoff.
    NeighborOverflow {
        /// Index of the central atom.
        atom: usize,
        /// The neighbour capacity of the workspace.
        capacity: usize,
    },
    /// The workspace was sized for fewer atoms than the system has.
    TooManyAtoms {
        /// Atoms in the system.
        atoms: usize,
        /// Atoms the workspace was sized for.
        capacity: usize,
    },
    /// A caller buffer is shorter than needed.
    BufferTooSmall {
        /// Which buffer.
        what: &'static str,
        /// Elements needed.
        needed: usize,
        /// Elements supplied.
        got: usize,
    },
    /// Input slices disagree in length.
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Supplied length.
        got: usize,
    },
    /// Atom `atom` has a species index the model does not know.
    UnknownSpecies {
        /// Atom index.
        atom: usize,
        /// The offending species index.
        species: u8,
    },
    /// A coordinate of atom `atom` is NaN or infinite.
    NonFinitePosition {
        /// Atom index.
        atom: usize,
    },
    /// Atoms `i` and `j` (possibly an image of `j`) are at the same place.
    OverlappingAtoms {
        /// First atom.
        i: usize,
        /// Second atom.
        j: usize,
    },
    /// The cell is singular or not finite.
    InvalidCell,
    /// The model data broke an invariant that blob validation guarantees (cannot happen for a
    /// blob accepted by [`crate::Model::from_blob`]; reported instead of panicking).
    CorruptModel,
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ComputeError::NeighborOverflow { atom, capacity } => write!(
                f,
                "atom {atom} has more than {capacity} neighbours within the cutoff; \
                 size the workspace for more neighbours"
            ),
            ComputeError::TooManyAtoms { atoms, capacity } => write!(
                f,
                "system has {atoms} atoms but the workspace was sized for {capacity}"
            ),
            ComputeError::BufferTooSmall { what, needed, got } => {
                write!(f, "{what} buffer too small: need {needed}, got {got}")
            }
            ComputeError::LengthMismatch {
                what,
                expected,
                got,
            } => write!(f, "{what}: expected length {expected}, got {got}"),
            ComputeError::UnknownSpecies { atom, species } => {
                write!(
                    f,
                    "atom {atom} has species index {species} unknown to the model"
                )
            }
            ComputeError::NonFinitePosition { atom } => {
                write!(f, "atom {atom} has a NaN or infinite coordinate")
            }
            ComputeError::OverlappingAtoms { i, j } => {
                write!(f, "atoms {i} and {j} overlap (distance 0)")
            }
            ComputeError::InvalidCell => write!(f, "the cell is singular or not finite"),
            ComputeError::CorruptModel => write!(f, "model data inconsistent (internal error)"),
        }
    }
}

impl core::error::Error for ComputeError {}
