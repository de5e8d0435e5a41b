//! Periodic cells: lattice vectors as rows of a 3×3 matrix (ASE's convention), orthorhombic or
//! triclinic, with the fractional-coordinate map and the plane spacings the cell list needs.

use crate::error::ComputeError;
use crate::math::Real;

/// A simulation cell: lattice vectors `a`, `b`, `c` as rows, and per-axis periodicity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell<T> {
    /// Lattice vectors as rows (Å).
    pub vectors: [[T; 3]; 3],
    /// Periodic along a, b, c.
    pub pbc: [bool; 3],
}

/// 3-vector helpers (written out: the core keeps to `libm`; see `docs/architecture.md`).
#[inline(always)]
pub(crate) fn dot<T: Real>(a: [T; 3], b: [T; 3]) -> T {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline(always)]
pub(crate) fn cross<T: Real>(a: [T; 3], b: [T; 3]) -> [T; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

impl<T: Real> Cell<T> {
    /// A cell periodic in all three directions.
    pub fn periodic(vectors: [[T; 3]; 3]) -> Self {
        Cell {
            vectors,
            pbc: [true; 3],
        }
    }

    /// An orthorhombic cell with edge lengths `lx`, `ly`, `lz`, periodic in all directions.
    pub fn orthorhombic(lx: T, ly: T, lz: T) -> Self {
        let z = T::ZERO;
        Self::periodic([[lx, z, z], [z, ly, z], [z, z, lz]])
    }

    /// Signed volume a·(b×c).
    pub fn volume(&self) -> T {
        let [a, b, c] = self.vectors;
        dot(a, cross(b, c))
    }

    /// The reciprocal vectors (rows of the inverse transpose, without 2π): fractional
    /// coordinate s_k = recip[k]·r. Errors on a singular or non-finite cell.
    pub(crate) fn reciprocal(&self) -> Result<[[T; 3]; 3], ComputeError> {
        let [a, b, c] = self.vectors;
        let vol = self.volume();
        let finite = self.vectors.iter().flatten().all(|x| x.is_finite());
        // Guard: a degenerate cell (|V| tiny against the edge lengths cubed) has no fractional
        // coordinates; refuse it rather than divide by ~0.
        let scale = (dot(a, a) * dot(b, b) * dot(c, c)).sqrt();
        if !finite || !vol.is_finite() || vol.abs() <= T::from_f64(1e-9) * scale || scale == T::ZERO
        {
            return Err(ComputeError::InvalidCell);
        }
        let inv = T::ONE / vol;
        let mul = |v: [T; 3]| [v[0] * inv, v[1] * inv, v[2] * inv];
        Ok([mul(cross(b, c)), mul(cross(c, a)), mul(cross(a, b))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocal_inverts_triclinic() {
        let cell = Cell::periodic([[5.0f64, 0.0, 0.0], [1.2, 4.0, 0.0], [0.7, -0.9, 6.0]]);
        let r = cell.reciprocal().unwrap();
        for (i, ri) in r.iter().enumerate() {
            for (j, vj) in cell.vectors.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot(*ri, *vj) - want).abs() < 1e-14);
            }
        }
        let flat = Cell::periodic([[1.0f64, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(flat.reciprocal(), Err(ComputeError::InvalidCell));
        let nan = Cell::orthorhombic(f64::NAN, 1.0, 1.0);
        assert_eq!(nan.reciprocal(), Err(ComputeError::InvalidCell));
    }
}
