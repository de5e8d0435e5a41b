//! Multilayer perceptrons: activations, the forward pass and the exact backward pass dE/dG.
//!
//! Layer l maps y_{l−1} (width n_in) to y_l = f(s·(W y_{l−1} + b)) (width n_out), with W stored
//! row-major (`W[o·n_in + i]`, so each output is one contiguous dot product), b of length n_out
//! and s = 1/n_in when the layer normalises (n2p2's `normalize_nodes`), else 1. The last layer has
//! one output: the atomic network energy.

use crate::math::Real;

/// Activation functions (blob codes as discriminants; n2p2 letters in the docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Activation {
    /// `l`: x.
    Linear = 0,
    /// `t`: tanh x.
    Tanh = 1,
    /// `s`: logistic 1/(1 + e^−x).
    Logistic = 2,
    /// `p`: softplus ln(1 + e^x).
    Softplus = 3,
    /// Shifted softplus ln(1 + e^x) − ln 2 (SchNet), zero at the origin.
    ShiftedSoftplus = 4,
    /// SiLU / swish x/(1 + e^−x).
    Silu = 5,
    /// `r`: max(x, 0).
    Relu = 6,
    /// `g`: Gaussian exp(−x²/2).
    Gaussian = 7,
    /// `c`: cos x.
    Cos = 8,
    /// `S`: 1 − logistic.
    RevLogistic = 9,
    /// `e`: exp(−x).
    ExpNeg = 10,
    /// `h`: x².
    Square = 11,
}

impl Activation {
    /// All activations in code order.
    pub const ALL: [Activation; 12] = [
        Activation::Linear,
        Activation::Tanh,
        Activation::Logistic,
        Activation::Softplus,
        Activation::ShiftedSoftplus,
        Activation::Silu,
        Activation::Relu,
        Activation::Gaussian,
        Activation::Cos,
        Activation::RevLogistic,
        Activation::ExpNeg,
        Activation::Square,
    ];

    /// The activation with blob code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The blob code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// n2p2's letter for this activation, if n2p2 has it.
    pub fn n2p2_letter(self) -> Option<char> {
        Some(match self {
            Activation::Linear => 'l',
            Activation::Tanh => 't',
            Activation::Logistic => 's',
            Activation::Softplus => 'p',
            Activation::Relu => 'r',
            Activation::Gaussian => 'g',
            Activation::Cos => 'c',
            Activation::RevLogistic => 'S',
            Activation::ExpNeg => 'e',
            Activation::Square => 'h',
            Activation::ShiftedSoftplus | Activation::Silu => return None,
        })
    }

    /// The activation n2p2 writes as `letter`.
    pub fn from_n2p2_letter(letter: char) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.n2p2_letter() == Some(letter))
    }

    /// `(f(x), f'(x))`.
    #[inline(always)]
    pub fn eval<T: Real>(self, x: T) -> (T, T) {
        // n2p2 clamps the logistic family beyond |x| > 35, where e^−35 ≈ 6e−16 is below f64
        // resolution; we do the same so that imported models agree to the last bit.
        let clamp = T::from_f64(35.0);
        match self {
            Activation::Linear => (x, T::ONE),
            Activation::Tanh => {
                let t = x.tanh();
                (t, T::ONE - t * t)
            }
            Activation::Logistic | Activation::RevLogistic => {
                let (s, ds) = if x > clamp {
                    (T::ONE, T::ZERO)
                } else if x < -clamp {
                    (T::ZERO, T::ZERO)
                } else {
                    let s = T::ONE / (T::ONE + (-x).exp());
                    (s, s * (T::ONE - s))
                };
                if self == Activation::Logistic {
                    (s, ds)
                } else {
                    (T::ONE - s, -ds)
                }
            }
            Activation::Softplus | Activation::ShiftedSoftplus => {
                let (f, df) = if x > clamp {
                    (x, T::ONE)
                } else if x < -clamp {
                    (T::ZERO, T::ZERO)
                } else {
                    let e = x.exp();
                    (e.ln_1p(), e / (T::ONE + e))
                };
                if self == Activation::Softplus {
                    (f, df)
                } else {
                    (f - T::from_f64(core::f64::consts::LN_2), df)
                }
            }
            Activation::Silu => {
                // Stable logistic for either sign of x.
                let s = if x >= T::ZERO {
                    T::ONE / (T::ONE + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (T::ONE + e)
                };
                (x * s, s + x * s * (T::ONE - s))
            }
            Activation::Relu => {
                if x > T::ZERO {
                    (x, T::ONE)
                } else {
                    (T::ZERO, T::ZERO)
                }
            }
            Activation::Gaussian => {
                let g = (-T::HALF * x * x).exp();
                (g, -x * g)
            }
            Activation::Cos => (x.cos(), -x.sin()),
            Activation::ExpNeg => {
                let e = (-x).exp();
                (e, -e)
            }
            Activation::Square => (x * x, T::TWO * x),
        }
    }

    /// `(f(x), f'(x), f''(x))`, for training (the gradient of the force loss needs f'').
    /// f and f' are computed by the same expressions and under the same clamps as
    /// [`Activation::eval`], so they equal its results bit for bit; beyond the clamps
    /// (|x| > 35 for the logistic and softplus families) f'' is zero, as f' is constant there.
    #[inline]
    pub fn eval2<T: Real>(self, x: T) -> (T, T, T) {
        let clamp = T::from_f64(35.0);
        match self {
            Activation::Linear => (x, T::ONE, T::ZERO),
            Activation::Tanh => {
                let t = x.tanh();
                let d = T::ONE - t * t;
                (t, d, -T::TWO * t * d)
            }
            Activation::Logistic | Activation::RevLogistic => {
                // σ' = σ(1 − σ), σ'' = σ'(1 − 2σ).
                let (s, ds, dds) = if x > clamp {
                    (T::ONE, T::ZERO, T::ZERO)
                } else if x < -clamp {
                    (T::ZERO, T::ZERO, T::ZERO)
                } else {
                    let s = T::ONE / (T::ONE + (-x).exp());
                    let ds = s * (T::ONE - s);
                    (s, ds, ds * (T::ONE - T::TWO * s))
                };
                if self == Activation::Logistic {
                    (s, ds, dds)
                } else {
                    (T::ONE - s, -ds, -dds)
                }
            }
            Activation::Softplus | Activation::ShiftedSoftplus => {
                // f' = σ(x) = e/(1 + e), f'' = σ(1 − σ) = e/(1 + e)², written with 1/(1 + e)
                // so that it keeps its relative accuracy where σ is close to 1.
                let (f, df, ddf) = if x > clamp {
                    (x, T::ONE, T::ZERO)
                } else if x < -clamp {
                    (T::ZERO, T::ZERO, T::ZERO)
                } else {
                    let e = x.exp();
                    let df = e / (T::ONE + e);
                    (e.ln_1p(), df, df / (T::ONE + e))
                };
                if self == Activation::Softplus {
                    (f, df, ddf)
                } else {
                    (f - T::from_f64(core::f64::consts::LN_2), df, ddf)
                }
            }
            Activation::Silu => {
                let s = if x >= T::ZERO {
                    T::ONE / (T::ONE + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (T::ONE + e)
                };
                // (xσ)'' = σ(1 − σ)(2 + x(1 − 2σ)).
                let ds = s * (T::ONE - s);
                (
                    x * s,
                    s + x * s * (T::ONE - s),
                    ds * (T::TWO + x * (T::ONE - T::TWO * s)),
                )
            }
            Activation::Relu => {
                if x > T::ZERO {
                    (x, T::ONE, T::ZERO)
                } else {
                    (T::ZERO, T::ZERO, T::ZERO)
                }
            }
            Activation::Gaussian => {
                let g = (-T::HALF * x * x).exp();
                (g, -x * g, (x * x - T::ONE) * g)
            }
            Activation::Cos => {
                let c = x.cos();
                (c, -x.sin(), -c)
            }
            Activation::ExpNeg => {
                let e = (-x).exp();
                (e, -e, e)
            }
            Activation::Square => (x * x, T::TWO * x, T::TWO),
        }
    }
}

/// One dense layer viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a, T> {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Activation.
    pub activation: Activation,
    /// Pre-activation scale s (1 or 1/n_in).
    pub scale: T,
    /// Row-major weights, `n_out × n_in`.
    pub weights: &'a [T],
    /// Biases, `n_out`.
    pub biases: &'a [T],
}

impl<T: Real> Layer<'_, T> {
    /// y = f(s(W x + b)); stores f'(·) in `deriv`. Slices must have the layer's widths
    /// (checked at blob load; shorter slices only shorten the loops).
    #[inline]
    pub fn forward(&self, x: &[T], y: &mut [T], deriv: &mut [T]) {
        let rows = self.weights.chunks_exact(self.n_in.max(1));
        for (((row, &b), yo), dout) in rows
            .zip(self.biases.iter())
            .zip(y.iter_mut())
            .zip(deriv.iter_mut())
        {
            let mut acc = b;
            for (&w, &xi) in row.iter().zip(x.iter()) {
                acc += w * xi;
            }
            let (f, df) = self.activation.eval(acc * self.scale);
            *yo = f;
            *dout = df;
        }
    }

    /// Back-propagates: given dE/dy (overwritten with dE/dz, z the pre-activation) computes
    /// dE/dx = s·Wᵀ dE/dz into `dx`.
    #[inline]
    pub fn backward(&self, dy: &mut [T], deriv: &[T], dx: &mut [T]) {
        for d in dx.iter_mut() {
            *d = T::ZERO;
        }
        let rows = self.weights.chunks_exact(self.n_in.max(1));
        for ((row, g), &df) in rows.zip(dy.iter_mut()).zip(deriv.iter()) {
            *g = *g * df * self.scale;
            let gz = *g;
            for (d, &w) in dx.iter_mut().zip(row.iter()) {
                *d += w * gz;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `d(x)` against central differences of `f` for every activation on a grid.
    fn check_derivative(
        what: &str,
        f: impl Fn(Activation, f64) -> f64,
        d: impl Fn(Activation, f64) -> f64,
    ) {
        for a in Activation::ALL {
            for i in -40..=40 {
                let x = i as f64 * 0.1 + 0.013;
                let h = 1e-6;
                let fd = (f(a, x + h) - f(a, x - h)) / (2.0 * h);
                let want = d(a, x);
                assert!(
                    (fd - want).abs() < 1e-7 * (1.0 + want.abs()),
                    "{what} of {a:?} at {x}: {fd} vs {want}"
                );
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        check_derivative("f'", |a, x| a.eval(x).0, |a, x| a.eval(x).1);
    }

    #[test]
    fn second_derivatives_match_finite_differences() {
        check_derivative("f''", |a, x| a.eval(x).1, |a, x| a.eval2(x).2);
    }

    #[test]
    fn eval2_agrees_with_eval_bit_for_bit() {
        // Inside and beyond the ±35 clamps, both signs, f64 and f32.
        for a in Activation::ALL {
            for i in -400..=400 {
                let x = i as f64 * 0.1 + 0.013;
                let (f, d, d2) = a.eval2(x);
                assert_eq!((f.to_bits(), d.to_bits()), {
                    let (f1, d1) = a.eval(x);
                    (f1.to_bits(), d1.to_bits())
                });
                assert!(d2.is_finite(), "{a:?} at {x}");
                let (f, d, _) = a.eval2(x as f32);
                let (f1, d1) = a.eval(x as f32);
                assert_eq!((f.to_bits(), d.to_bits()), (f1.to_bits(), d1.to_bits()));
            }
            if !matches!(a, Activation::Square | Activation::Linear | Activation::Cos) {
                assert_eq!(a.eval2(1e3f64).2, 0.0, "{a:?}");
            }
        }
    }

    #[test]
    fn codes_and_letters_round_trip() {
        for a in Activation::ALL {
            assert_eq!(Activation::from_code(a.code()), Some(a));
            if let Some(l) = a.n2p2_letter() {
                assert_eq!(Activation::from_n2p2_letter(l), Some(a));
            }
        }
        assert_eq!(Activation::from_code(12), None);
        assert_eq!(Activation::ShiftedSoftplus.eval(0.0f64).0, 0.0);
    }
}
