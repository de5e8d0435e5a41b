//! Compact functions of the polynomial symmetry functions (n2p2 types 20–25; M. P. Bircher,
//! A. Singraber, C. Dellago, Mach. Learn.: Sci. Technol. 2, 035026 (2021)).
//!
//! C(a; left, right) with centre c = (left + right)/2, half-width w = (right − left)/2 and
//! x = |a − c|/w:
//!
//! ```text
//! C(a) = core(x)            symmetric subtypes  p1 … p4, e
//! C(a) = core((2 − x)·x)    asymmetric subtypes p1a … p4a   (the radial factors only)
//! C(a) = 0                  for x ≥ 1, i.e. outside (left, right)
//! ```
//!
//! The cores are the shapes of the cutoff functions with the same names (`Poly1`…`Poly4`,
//! `Exp`; [`crate::cutoff::shaped_xy`] is the one implementation): core(0) = 1, core(1) = 0, and
//! core′ vanishes at both ends. So C is continuously differentiable everywhere, also at the
//! centre (|a − c| has a kink there, but core′(0) = 0) and at the window edges.
//!
//! Reading of the asymmetric variant, where `../shared/N2P2-FORMAT.md` is terse: the argument
//! stays x = |a − c|/w, so the "asymmetric" function is still even about the centre; what the
//! substitution x → (2 − x)x = 1 − (1 − x)² changes is the profile (flatter at the top, steeper
//! towards the edges). This is n2p2's `CoreFunction` and the only reading with core((2 − x)x)
//! that stays smooth: with a signed x ∈ (−1, 1), (2 − x)x would leave [0, 1) on the left half.
//! Its derivative is (2 − 2x)·core′((2 − x)x), again zero at x = 0 and x = 1.
//!
//! Numerical guard: near the edges, 1 − x is formed as min(a − left, right − a)/w (exact
//! differences near either edge, Sterbenz) rather than as 1 − x, for the same reason as in
//! [`crate::cutoff`]; for the asymmetric cores 1 − (2 − x)x = (1 − x)² exactly.
// Without the `polynomial` feature only the codes are used (to validate blobs).
#![cfg_attr(not(feature = "polynomial"), allow(dead_code))]

use crate::cutoff::{shaped_xy, CutoffKind};
use crate::math::Real;

/// The core function of a compact function (n2p2's `CoreFunction::Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactCore {
    /// `p1`: (2x − 3)x² + 1.
    Poly1,
    /// `p2`: ((15 − 6x)x − 10)x³ + 1.
    Poly2,
    /// `p3`: (x(x(20x − 70) + 84) − 35)x⁴ + 1.
    Poly3,
    /// `p4`: (x(x((315 − 70x)x − 540) + 420) − 126)x⁵ + 1.
    Poly4,
    /// `e`: exp(1 − 1/(1 − x²)).
    Exp,
}

impl CompactCore {
    /// All cores.
    pub const ALL: [CompactCore; 5] = [
        CompactCore::Poly1,
        CompactCore::Poly2,
        CompactCore::Poly3,
        CompactCore::Poly4,
        CompactCore::Exp,
    ];

    /// The cutoff function with the same shape (whose code is the low nibble of the blob code).
    pub fn cutoff_kind(self) -> CutoffKind {
        match self {
            CompactCore::Poly1 => CutoffKind::Poly1,
            CompactCore::Poly2 => CutoffKind::Poly2,
            CompactCore::Poly3 => CutoffKind::Poly3,
            CompactCore::Poly4 => CutoffKind::Poly4,
            CompactCore::Exp => CutoffKind::Exp,
        }
    }

    /// The core whose cutoff-function twin is `kind` (`None` for the other cutoff kinds).
    pub fn from_cutoff_kind(kind: CutoffKind) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.cutoff_kind() == kind)
    }
}

/// The compact-function subtype of a polynomial group (n2p2's `p1`…`p4`, `e`, with a trailing
/// `a` for the asymmetric radial variant), stored in the group record's cutoff byte.
///
/// Blob code: bit 4 (0x10) marks a compact code, bit 5 (0x20) the asymmetric variant, and the
/// low nibble is the [`CutoffKind`] code of the core (4 = exp, 5–8 = poly1–poly4); bits 6–7 are
/// 0. So `p1` … `p4` are 0x15 … 0x18, `e` is 0x14, `p2a` is 0x36 and `ea` 0x34.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactKind {
    /// The core function.
    pub core: CompactCore,
    /// The asymmetric radial variant: core((2 − x)x) instead of core(x) for the radial factors
    /// (the angular factor always uses the symmetric core).
    pub asymmetric: bool,
}

impl CompactKind {
    /// Set in every compact code.
    pub const FLAG: u8 = 0x10;
    /// Set for the asymmetric variant.
    pub const ASYMMETRIC: u8 = 0x20;

    /// The blob code.
    pub fn code(self) -> u8 {
        let asym = if self.asymmetric { Self::ASYMMETRIC } else { 0 };
        Self::FLAG | asym | self.core.cutoff_kind().code()
    }

    /// The kind with blob code `code`; `None` for anything that is not a compact code.
    pub fn from_code(code: u8) -> Option<Self> {
        if code & !(Self::FLAG | Self::ASYMMETRIC | 0x0F) != 0 || code & Self::FLAG == 0 {
            return None;
        }
        let core = CompactCore::from_cutoff_kind(CutoffKind::from_code(code & 0x0F)?)?;
        Some(CompactKind {
            core,
            asymmetric: code & Self::ASYMMETRIC != 0,
        })
    }
}

/// Largest deviation (radians) tolerated where an angular window must be centred at 0 or π, and
/// beyond the [0, π] bounds, so that windows written in degrees and rounded to radians (and to
/// `f32`) validate.
pub const ANGLE_TOLERANCE: f64 = 1e-6;

/// A window (left, right) prepared for evaluation: centre and inverse half-width.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window<T> {
    left: T,
    right: T,
    centre: T,
    inv_w: T,
}

impl<T: Real> Window<T> {
    /// The window (left, right); left < right (checked at blob load).
    #[inline(always)]
    pub fn new(left: T, right: T) -> Self {
        Window {
            left,
            right,
            centre: T::HALF * (left + right),
            inv_w: T::TWO / (right - left),
        }
    }

    /// C(a) and dC/da with core `core`, symmetric or `asymmetric`; (0, 0) outside the window.
    #[inline(always)]
    pub fn eval(&self, core: CutoffKind, asymmetric: bool, a: T) -> (T, T) {
        let t = (a - self.centre) * self.inv_w;
        // Clamped to the support: at x = 1 (y = 0) every core gives exactly (0, 0), so points
        // outside the window need no branch.
        let x = t.abs().min(T::ONE);
        let y = ((a - self.left).min(self.right - a) * self.inv_w).max(T::ZERO);
        let (f, dfdx) = if asymmetric {
            // core(u) with u = (2 − x)x, 1 − u = y² exactly; du/dx = 2 − 2x = 2y.
            let (f, d) = shaped_xy(core, (T::TWO - x) * x, y * y);
            (f, d * T::TWO * y)
        } else {
            shaped_xy(core, x, y)
        };
        let dxda = if t < T::ZERO { -self.inv_w } else { self.inv_w };
        (f, dfdx * dxda)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reject_others() {
        let mut n = 0;
        for code in 0..=255u8 {
            if let Some(k) = CompactKind::from_code(code) {
                assert_eq!(k.code(), code);
                n += 1;
            }
        }
        assert_eq!(n, 10);
        for core in CompactCore::ALL {
            for asymmetric in [false, true] {
                let k = CompactKind { core, asymmetric };
                assert_eq!(CompactKind::from_code(k.code()), Some(k));
            }
        }
        assert_eq!(
            CompactKind::from_code(0x16).map(|k| k.core),
            Some(CompactCore::Poly2)
        );
        assert_eq!(CompactKind::from_code(0x11), None);
        assert_eq!(CompactKind::from_code(0x06), None);
        assert_eq!(CompactKind::from_code(0x56), None);
    }

    #[test]
    fn values_edges_and_derivatives() {
        for core in CompactCore::ALL {
            for asym in [false, true] {
                let k = core.cutoff_kind();
                let w = Window::new(-0.5f64, 3.5);
                assert_eq!(w.eval(k, asym, 1.5), (1.0, 0.0));
                for a in [-0.5, -2.0, 3.5, 7.0] {
                    assert_eq!(w.eval(k, asym, a), (0.0, 0.0), "{core:?} {asym} {a}");
                }
                for i in 1..400 {
                    let a = -0.5 + 4.0 * i as f64 / 400.0;
                    let h = 1e-6;
                    let fd = (w.eval(k, asym, a + h).0 - w.eval(k, asym, a - h).0) / (2.0 * h);
                    let (f, d) = w.eval(k, asym, a);
                    assert!((0.0..=1.0).contains(&f));
                    assert!((fd - d).abs() < 1e-7, "{core:?} {asym} a {a}: {fd} vs {d}");
                    // Even about the centre.
                    let (g, e) = w.eval(k, asym, 3.0 - a);
                    assert!((f - g).abs() < 1e-12 && (d + e).abs() < 1e-9);
                }
            }
        }
    }
}
