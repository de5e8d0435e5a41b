//! The one math facade of the core: every transcendental function goes through [`Real`], so host
//! tests and firmware run the same code, and a target-specific approximation can be swapped in
//! here only.
//!
//! `f64` forwards to `libm`. `f32` uses f32-native `exp`, `tanh`, `cos` and `sin` from
//! [`crate::f32math`] (libm's compute in f64 internally: software double arithmetic on an
//! f32-only FPU), with the maximum errors stated and tested there, on every target, so that host
//! and firmware agree bit for bit.

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point type the core computes in: `f32` or `f64`.
pub trait Real:
    sealed::Sealed
    + Copy
    + Default
    + PartialEq
    + PartialOrd
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// 2.
    const TWO: Self;
    /// 1/2.
    const HALF: Self;
    /// π.
    const PI: Self;
    /// Size in bytes (4 or 8); also the float-kind code of a blob.
    const BYTES: usize;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Converts from a small integer count (exact below 2^24).
    fn from_usize(n: usize) -> Self;
    /// Converts to an integer count, truncating toward zero and saturating at 0 and `u32::MAX`
    /// (NaN gives 0). One instruction where the FPU has this precision; `to_f64() as u32` would
    /// be software double arithmetic on an f32-only FPU.
    fn to_u32(self) -> u32;
    /// Converts from a signed index (exact below 2^24 in magnitude for `f32`).
    fn from_isize(n: isize) -> Self;
    /// Converts to a signed index, truncating toward zero and saturating (NaN gives 0); one
    /// instruction where the FPU has this precision (see [`Real::to_u32`]).
    fn trunc_isize(self) -> isize;
    /// Decodes a little-endian value of either float kind (`bytes.len()` 4 or 8), converting to
    /// `Self`; `None` for any other length.
    fn from_le_slice(bytes: &[u8]) -> Option<Self>;

    /// e^x.
    fn exp(self) -> Self;
    /// e^x for x ≤ 0, the same bits as [`Real::exp`] there (positive x count as 0): without
    /// the overflow side, which the Gaussians and cutoff functions never need, it is a few
    /// instructions shorter.
    fn exp_nonpos(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// ln(1 + x), accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// 1/√x for positive normal x, by Newton's iteration from a bit-level seed: straight-line
    /// arithmetic that vectorises (the libm `sqrt` on x86-64 is a scalar intrinsic). Within
    /// 3 ulp in f64 and 2 in f32 (tested in `f64math` / `f32math`).
    fn recip_sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Cosine (radians).
    fn cos(self) -> Self;
    /// Sine (radians).
    fn sin(self) -> Self;
    /// (sin x, cos x) in one range reduction.
    fn sin_cos(self) -> (Self, Self);
    /// (sin x, cos x) for 0 ≤ x ≤ π/2 only (no range reduction; the cosine cutoff's argument).
    fn sin_cos_quadrant(self) -> (Self, Self);
    /// Arc cosine, in [0, π] for x ∈ [−1, 1] (NaN outside).
    fn acos(self) -> Self;
    /// x^y for real y.
    fn powf(self, y: Self) -> Self;
    /// Largest integer ≤ x.
    fn floor(self) -> Self;
    /// |x|.
    fn abs(self) -> Self;
    /// True unless NaN or ±∞.
    fn is_finite(self) -> bool;

    /// x^n for a non-negative integer n by repeated squaring (exact operation count, no libm).
    #[inline(always)]
    fn powu(self, mut n: u32) -> Self {
        let mut base = self;
        let mut acc = Self::ONE;
        while n > 0 {
            if n & 1 == 1 {
                acc *= base;
            }
            base *= base;
            n >>= 1;
        }
        acc
    }

    /// The larger of two values (NaN-propagation unspecified).
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }

    /// The smaller of two values (NaN-propagation unspecified).
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $bytes:expr, $exp:path, $exp_nonpos:path, $ln:path, $ln1p:path, $sqrt:path, $rsqrt:path, $tanh:path, $cos:path,
     $sin:path, $sincos:path, $sincos_q:path, $acos:path, $pow:path, $floor:path, $abs:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const TWO: Self = 2.0;
            const HALF: Self = 0.5;
            const PI: Self = core::f64::consts::PI as $t;
            const BYTES: usize = $bytes;

            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            #[inline(always)]
            fn to_u32(self) -> u32 {
                self as u32
            }
            #[inline(always)]
            fn from_isize(n: isize) -> Self {
                n as $t
            }
            #[inline(always)]
            fn trunc_isize(self) -> isize {
                self as isize
            }
            #[inline(always)]
            fn from_le_slice(bytes: &[u8]) -> Option<Self> {
                if let Ok(b) = <[u8; 8]>::try_from(bytes) {
                    Some(f64::from_le_bytes(b) as $t)
                } else if let Ok(b) = <[u8; 4]>::try_from(bytes) {
                    Some(f32::from_le_bytes(b) as $t)
                } else {
                    None
                }
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn exp_nonpos(self) -> Self {
                $exp_nonpos(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                $ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                $ln1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $sqrt(self)
            }
            #[inline(always)]
            fn recip_sqrt(self) -> Self {
                $rsqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                $cos(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                $sin(self)
            }
            #[inline(always)]
            fn sin_cos(self) -> (Self, Self) {
                $sincos(self)
            }
            #[inline(always)]
            fn sin_cos_quadrant(self) -> (Self, Self) {
                $sincos_q(self)
            }
            #[inline(always)]
            fn acos(self) -> Self {
                $acos(self)
            }
            #[inline(always)]
            fn powf(self, y: Self) -> Self {
                $pow(self, y)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                $floor(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $abs(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}

impl_real!(
    f64,
    8,
    crate::f64math::exp,
    crate::f64math::exp_nonpos,
    libm::log,
    libm::log1p,
    arch::sqrt,
    crate::f64math::recip_sqrt,
    crate::f64math::tanh,
    libm::cos,
    libm::sin,
    libm::sincos,
    libm::sincos,
    libm::acos,
    libm::pow,
    libm::floor,
    libm::fabs
);
// f32: exp, tanh, cos and sin are f32-native (crate::f32math, errors stated and tested there);
// the rest is libm.
impl_real!(
    f32,
    4,
    crate::f32math::exp,
    crate::f32math::exp_nonpos,
    libm::logf,
    libm::log1pf,
    arch::sqrtf,
    crate::f32math::recip_sqrt,
    crate::f32math::tanh,
    crate::f32math::cos,
    crate::f32math::sin,
    crate::f32math::sin_cos,
    crate::f32math::sin_cos_quadrant,
    libm::acosf,
    libm::powf,
    libm::floorf,
    libm::fabsf
);

/// Per-target pieces of the facade (`unsafe` allowed here, as in `bytes`).
///
/// `sqrt`, `sqrtf`: the FPU's square-root instruction where the target has one, libm's (a
/// software loop) elsewhere. IEEE 754 requires a correctly rounded square root and libm's is
/// correctly rounded too, so both give the same bits for every input (NaN payloads aside):
/// host and firmware still agree bit for bit. The firmware demo's on-target test checks it.
#[allow(unsafe_code)]
mod arch {
    /// √x on x86-64 through the SSE2 packed intrinsic on one lane. libm's `sqrt` there is an
    /// `asm!` block (`sqrtsd`), which LLVM cannot see into, so loops of square roots stayed
    /// scalar; the intrinsic is LLVM's own square root, which it vectorises (`vsqrtpd`, e.g.
    /// in the neighbour search's distance loop). Same instruction, same bits.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    pub fn sqrt(x: f64) -> f64 {
        use core::arch::x86_64::{_mm_cvtsd_f64, _mm_set_sd, _mm_sqrt_pd};
        // SAFETY: SSE2 instructions on a target that has them (the `cfg` above); registers
        // only.
        unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(x))) }
    }

    /// √x by libm elsewhere (its own hardware instruction where it has one).
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    #[inline(always)]
    pub fn sqrt(x: f64) -> f64 {
        libm::sqrt(x)
    }

    /// √x on x86-64, as [`sqrt`].
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    pub fn sqrtf(x: f32) -> f32 {
        use core::arch::x86_64::{_mm_cvtss_f32, _mm_set_ss, _mm_sqrt_ps};
        // SAFETY: SSE instructions on a target that has them (SSE2 implies SSE); registers
        // only.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ps(_mm_set_ss(x))) }
    }

    /// √x by `vsqrt.f32` on ARM with the hard-float ABI (which implies a VFP unit).
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    #[inline(always)]
    pub fn sqrtf(x: f32) -> f32 {
        let bits: u32;
        // The `sreg` operand class needs the `vfp2` target feature, which is unstable and
        // implies double-precision VFP (an f32-only FPU such as the Cortex-M4F's would trap on
        // the f64 code LLVM then emits), so the value goes through a core register and `s0`
        // is saved and restored around the instruction.
        // SAFETY: VFP instructions on a target that has them; `s0` is restored before the
        // block ends and the stack is used only for that push/pop.
        unsafe {
            core::arch::asm!(
                "vpush {{s0}}",
                "vmov s0, {b}",
                "vsqrt.f32 s0, s0",
                "vmov {b}, s0",
                "vpop {{s0}}",
                b = inout(reg) x.to_bits() => bits,
                options(pure, nomem, preserves_flags),
            )
        };
        f32::from_bits(bits)
    }

    /// √x by `fsqrt.s` on RISC-V with the F extension (`mlff_riscv_f`, set by build.rs:
    /// stable rustc does not expose `target_feature = "f"` to `cfg`).
    #[cfg(all(any(target_arch = "riscv32", target_arch = "riscv64"), mlff_riscv_f))]
    #[inline(always)]
    pub fn sqrtf(x: f32) -> f32 {
        let y: f32;
        // SAFETY: one F-extension instruction on registers; the target has the extension.
        unsafe {
            core::arch::asm!(
                "fsqrt.s {y}, {x}",
                y = lateout(freg) y,
                x = in(freg) x,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        y
    }

    /// √x in software (libm) where there is no FPU square root.
    #[cfg(not(any(
        all(target_arch = "arm", target_abi = "eabihf"),
        all(any(target_arch = "riscv32", target_arch = "riscv64"), mlff_riscv_f),
        all(target_arch = "x86_64", target_feature = "sse2")
    )))]
    #[inline(always)]
    pub fn sqrtf(x: f32) -> f32 {
        libm::sqrtf(x)
    }
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn powu_matches_pow() {
        for &x in &[0.0f64, 0.3, 1.7, 2.0] {
            for n in 0..12u32 {
                let want = libm::pow(x, n as f64);
                let got = x.powu(n);
                assert!((got - want).abs() <= 1e-14 * want.abs().max(1.0), "{x}^{n}");
            }
        }
    }

    #[test]
    fn from_le_slice_reads_both_kinds() {
        assert_eq!(f64::from_le_slice(&1.5f64.to_le_bytes()), Some(1.5));
        assert_eq!(f64::from_le_slice(&1.5f32.to_le_bytes()), Some(1.5));
        assert_eq!(f32::from_le_slice(&[0u8; 3]), None);
    }

    /// The square root of the facade (hardware on targets with an FPU, see `arch`) gives the
    /// bits of libm's correctly rounded one; on the host this is SSE2's, the firmware
    /// demo's on-target test (firmware-demo/tests/on_target.rs) runs the same check on the FPUs.
    #[test]
    fn sqrt_matches_libm_bits() {
        for bits in (0..=u32::MAX)
            .step_by(4099)
            .chain([0x8000_0000, 0x7f80_0000, 1, 0x7f7f_ffff])
        {
            let x = f32::from_bits(bits);
            let (got, want) = (Real::sqrt(x), libm::sqrtf(x));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e}"
            );
        }
        // f64: the same sweep over the top 32 bits, with low bits that are not all zero.
        for hi in (0..=u32::MAX)
            .step_by(4099)
            .chain([0x8000_0000, 0x7ff0_0000, 0, 0x7fef_ffff])
        {
            let x = f64::from_bits(u64::from(hi) << 32 | u64::from(hi.wrapping_mul(2_654_435_761)));
            let (got, want) = (Real::sqrt(x), libm::sqrt(x));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e}"
            );
        }
    }
}
