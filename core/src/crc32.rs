//! CRC-32 (IEEE 802.3 / zlib / PNG polynomial, reflected 0xEDB88320, init and final xor
//! 0xFFFFFFFF), used for the blob checksum.
//!
//! Written here because no allowed core dependency provides it: `crc32fast` and `crc` would be
//! the crates to reach for on a host, but the core keeps its dependency list to `libm`. The tables
//! are built at compile time: a byte table (1 KiB of read-only data) on hosts, a nibble table
//! (64 bytes, two lookups per byte) on microcontrollers, where flash is scarce and the blob is
//! checked once at boot.

// Evaluated at compile time: an out-of-range index would be a build error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn make_table<const N: usize>() -> [u32; N] {
    // N = 2^bits entries, each the CRC of its index shifted through `bits` steps.
    let bits = N.trailing_zeros();
    let mut table = [0u32; N];
    let mut i = 0;
    while i < N {
        let mut c = i as u32;
        let mut k = 0;
        while k < bits {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(any(test, target_arch = "x86_64", target_arch = "aarch64"))]
static TABLE: [u32; 256] = make_table();
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
static NIBBLES: [u32; 16] = make_table();

/// One byte through the byte table.
#[cfg(any(test, target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn step_byte(c: u32, b: u8) -> u32 {
    let idx = ((c ^ u32::from(b)) & 0xFF) as u8;
    // `idx` is a u8, so the lookup is always in range; `get` keeps the no-panic lint happy.
    TABLE.get(usize::from(idx)).copied().unwrap_or(0) ^ (c >> 8)
}

/// One byte through the nibble table, low nibble first (the same result as [`step_byte`]).
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[inline(always)]
fn step_nibbles(c: u32, b: u8) -> u32 {
    let look =
        |c: u32, x: u32| NIBBLES.get(((c ^ x) & 0xF) as usize).copied().unwrap_or(0) ^ (c >> 4);
    look(look(c, u32::from(b)), u32::from(b >> 4))
}

/// Running CRC-32 state: feed bytes with [`Crc32::update`], read with [`Crc32::finish`].
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A fresh state.
    pub const fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            {
                c = step_byte(c, b);
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            {
                c = step_nibbles(c, b);
            }
        }
        self.0 = c;
    }

    /// The checksum of everything fed so far.
    pub fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// CRC-32 of one byte slice.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The standard check value of CRC-32/ISO-HDLC and two more published vectors.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        let mut c = Crc32::new();
        c.update(b"12345");
        c.update(b"6789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn nibble_table_equals_byte_table() {
        // Every byte from every state bit pattern of a sweep: the microcontroller path (nibbles)
        // and the host path (bytes) agree.
        let mut c = 0xFFFF_FFFFu32;
        for i in 0..4096u32 {
            let b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
            assert_eq!(step_nibbles(c, b), step_byte(c, b), "state {c:#x} byte {b}");
            c = step_byte(c, b) ^ i;
        }
    }
}
