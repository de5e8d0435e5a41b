//! The feature-vector layout: one place that says where each symmetry function's value lives.
//!
//! For a central atom of species e the network input is G_e, a vector of `n_features(e)` values
//! in the order the blob lists them (its "feature order"); each blob group carries, per function,
//! the feature index it writes. Groups are an evaluation device, the feature order is the
//! contract with the network weights and the scaling rows.
//!
//! The writer in `mlff-train` emits features in this canonical order (n2p2's sorted order for
//! imported models follows the same plan: by kind, then parameters):
//!
//! ```text
//! G_e = [ radial block            | angular blocks                                        ]
//!       [ G2(e←0) | G2(e←1) | ... | G4/G5(e←{0,0}) | G4/G5(e←{0,1}) | G4/G5(e←{1,1}) | ...]
//!         ^ one block per neighbour species s, in species-index order; inside a block the
//!           functions keep the order they were given (e.g. by cutoff, η, r_s);
//!                                   ^ one block per unordered species pair {a ≤ b}, in the
//!                                     order (0,0), (0,1), ..., (1,1), ...
//! ```
//!
//! Offsets: for a descriptor set generated with `R` radial functions per neighbour species and
//! `A` angular functions per species pair over `S` species, the radial block of neighbour species
//! s starts at `s·R`, and the angular block of pair (a ≤ b) at `S·R + p(a, b)·A` with
//! `p(a, b) = a·S − a(a−1)/2 + (b − a)` (row-major over the upper triangle).
//! Any other order is legal in a blob; validation checks that each species' groups cover
//! `0..n_features` exactly once.

/// Start of the radial block of neighbour species `s` in a generated layout with `r` radial
/// functions per species.
pub const fn radial_offset(s: usize, r: usize) -> usize {
    s * r
}

/// Start of the angular block of the unordered species pair {a, b} in a generated layout with
/// `n_species` species, `r` radial functions per species and `a_per_pair` angular functions per
/// pair.
pub const fn angular_offset(
    a: usize,
    b: usize,
    n_species: usize,
    r: usize,
    a_per_pair: usize,
) -> usize {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let pair = lo * n_species - (lo * lo.saturating_sub(1)) / 2 + (hi - lo);
    n_species * r + pair * a_per_pair
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_tile_the_vector() {
        // 3 species, 4 radial, 2 angular per pair: 12 radial + 6 pairs × 2 = 24 features.
        let mut seen = [false; 24];
        for s in 0..3 {
            for k in 0..4 {
                seen[radial_offset(s, 4) + k] = true;
            }
        }
        for a in 0..3 {
            for b in a..3 {
                for k in 0..2 {
                    let i = angular_offset(a, b, 3, 4, 2) + k;
                    assert!(!seen[i], "overlap at {i}");
                    seen[i] = true;
                }
            }
        }
        assert!(seen.iter().all(|&x| x));
        assert_eq!(angular_offset(2, 1, 3, 4, 2), angular_offset(1, 2, 3, 4, 2));
    }
}
