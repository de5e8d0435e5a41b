//! Little-endian reads from a byte slice and the one zero-copy cast of the core.
//! This is the only module that allows `unsafe`.
#![allow(unsafe_code)]

use crate::math::Real;

/// Reads a little-endian `u32` at byte offset `off`; `None` when out of range.
#[inline(always)]
pub(crate) fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = bytes.get(off..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Reads a little-endian `u16` at byte offset `off`; `None` when out of range.
#[inline(always)]
pub(crate) fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    let b: [u8; 2] = bytes.get(off..end)?.try_into().ok()?;
    Some(u16::from_le_bytes(b))
}

/// Reads a byte at offset `off`; `None` when out of range.
#[inline(always)]
pub(crate) fn u8_at(bytes: &[u8], off: usize) -> Option<u8> {
    bytes.get(off).copied()
}

/// Views `bytes` as a slice of `T` without copying, when the bytes are little-endian values of
/// exactly `T`'s width on a little-endian target and the start is aligned for `T`.
/// Returns `None` otherwise (the caller then decodes into its own storage).
pub(crate) fn cast_reals<T: Real>(bytes: &[u8]) -> Option<&[T]> {
    if cfg!(target_endian = "big") || bytes.len() % T::BYTES != 0 {
        return None;
    }
    // SAFETY: `T` is `f32` or `f64` (the trait is sealed): plain-old-data with no invalid bit
    // patterns and size `T::BYTES`. `align_to` only returns a non-empty middle part that is
    // correctly aligned and in bounds; we accept the result only when the prefix and suffix are
    // empty, so the view covers exactly `bytes` and borrows it for the same lifetime.
    let (head, body, tail) = unsafe { bytes.align_to::<T>() };
    if head.is_empty() && tail.is_empty() {
        Some(body)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1u8, 0, 0, 0, 2];
        assert_eq!(u32_at(&b, 0), Some(1));
        assert_eq!(u32_at(&b, 2), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
        assert_eq!(u16_at(&b, 3), Some(512));
        assert_eq!(u8_at(&b, 5), None);
    }

    #[test]
    fn cast_requires_alignment() {
        #[repr(C, align(8))]
        struct Aligned([u8; 40]);
        let v = [1.0f64, 2.0, 3.0];
        let mut buf = Aligned([0u8; 40]);
        for (c, x) in buf.0.chunks_exact_mut(8).zip(v.iter()) {
            c.copy_from_slice(&x.to_le_bytes());
        }
        assert_eq!(cast_reals::<f64>(&buf.0[..24]), Some(&v[..]));
        assert_eq!(cast_reals::<f64>(&buf.0[1..25]), None);
        assert_eq!(cast_reals::<f64>(&buf.0[..7]), None);
        assert!(cast_reals::<f32>(&buf.0[4..12]).is_some());
    }
}
