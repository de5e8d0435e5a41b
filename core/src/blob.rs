//! The weight blob: a versioned, checksummed, little-endian binary container for a compiled
//! potential. The full specification is `docs/blob-format.md`; this module holds its constants,
//! the header and section-table parser, and [`BlobError`].
//!
//! Checks run in this order, so that each kind of damage gets its own error: length of the
//! fixed header, magic, format version, endianness mark, declared length (truncation), CRC-32,
//! float kind, section table, then the semantic validation in [`crate::Model::from_blob`].

use core::fmt;

use crate::bytes::{u16_at, u32_at, u8_at};
use crate::crc32::Crc32;

/// First eight bytes of every blob.
pub const MAGIC: [u8; 8] = *b"MLFFBLOB";
/// The format version this core reads and the writer produces.
pub const FORMAT_VERSION: u16 = 1;
/// Written as a little-endian `u16`; reads back as 0x0201 from a big-endian writer.
pub const ENDIAN_MARK: u16 = 0x0102;
/// Fixed header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Bytes per section-table entry.
pub const SECTION_ENTRY: usize = 16;
/// Byte offset of the CRC-32 field in the header.
pub const CRC_OFFSET: usize = 24;
/// Alignment of every section start (relative to the blob start). The zero-copy path needs the
/// blob itself to start at an address aligned to the float size (8 for f64, 4 for f32).
pub const SECTION_ALIGN: usize = 8;

/// Section tags.
pub mod tag {
    /// Model header: counts and the offset of the global reals.
    pub const MODEL: [u8; 4] = *b"MODL";
    /// Species records.
    pub const SPECIES: [u8; 4] = *b"SPEC";
    /// Descriptor group records.
    pub const GROUPS: [u8; 4] = *b"GRPS";
    /// Layer records.
    pub const LAYERS: [u8; 4] = *b"LAYR";
    /// Feature indices of the groups' functions (`u32`).
    pub const INDEX: [u8; 4] = *b"INDX";
    /// All real numbers, in the blob's float kind.
    pub const REALS: [u8; 4] = *b"REAL";
    /// Optional UTF-8 provenance text (ignored by the core).
    pub const TEXT: [u8; 4] = *b"TEXT";
}

/// `MODL` section length.
pub const MODEL_LEN: usize = 32;
/// `SPEC` record length.
pub const SPECIES_RECORD: usize = 32;
/// `LAYR` record length.
pub const LAYER_RECORD: usize = 16;
/// Number of global reals: energy scale, energy shift, cutoff, source length unit (Å), source
/// energy unit (eV).
pub const GLOBALS: usize = 5;
/// Layer flag: divide pre-activations by the input width (n2p2 `normalize_nodes`).
pub const LAYER_NORMALIZE: u8 = 1;
/// Most layers (hidden + output) per network.
pub const MAX_LAYERS: usize = 16;

/// How the features were scaled (informational; the blob always stores the affine form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ScalingMode {
    /// G.
    None = 0,
    /// Smin + (Smax − Smin)(G − Gmin)/(Gmax − Gmin).
    MinMax = 1,
    /// G − Gmean.
    Center = 2,
    /// Smin + (Smax − Smin)(G − Gmean)/(Gmax − Gmin).
    CenterRange = 3,
    /// Smin + (Smax − Smin)(G − Gmean)/σ.
    Sigma = 4,
}

impl ScalingMode {
    /// The mode with code `code`.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => ScalingMode::None,
            1 => ScalingMode::MinMax,
            2 => ScalingMode::Center,
            3 => ScalingMode::CenterRange,
            4 => ScalingMode::Sigma,
            _ => return None,
        })
    }
}

/// Why a blob was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobError {
    /// Fewer bytes than the header or the declared length need.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The first eight bytes are not `MLFFBLOB`.
    BadMagic,
    /// A format version this core does not read.
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The endianness mark is not the little-endian one.
    WrongEndianness,
    /// The CRC-32 does not match the content.
    ChecksumMismatch {
        /// Stored in the header.
        stored: u32,
        /// Computed over the blob.
        computed: u32,
    },
    /// The float kind is neither 4 (f32) nor 8 (f64) bytes.
    UnsupportedFloat {
        /// Bytes per real declared.
        bytes: u8,
    },
    /// A required section is missing.
    MissingSection {
        /// Its tag.
        tag: [u8; 4],
    },
    /// A section appears twice.
    DuplicateSection {
        /// Its tag.
        tag: [u8; 4],
    },
    /// A section lies outside the blob, overlaps the header or is misaligned.
    BadSection {
        /// Its tag.
        tag: [u8; 4],
    },
    /// Two sections share bytes (a writer bug: each byte has one meaning).
    OverlappingSections {
        /// The section that starts first (or the first in the reader's order, for equal starts).
        first: [u8; 4],
        /// The section that starts inside it.
        second: [u8; 4],
    },
    /// The zero-copy path needs the blob to start at an address aligned to this many bytes.
    Misaligned {
        /// Required alignment.
        required: usize,
    },
    /// The zero-copy path needs the blob's float kind to be the compute precision.
    PrecisionMismatch {
        /// Bytes per real in the blob.
        blob: u8,
        /// Bytes per real requested.
        requested: u8,
    },
    /// Caller storage for the copying path is too small.
    CapacityTooSmall {
        /// Reals needed.
        needed: usize,
        /// Reals supplied.
        got: usize,
    },
    /// Counts, sizes or offsets disagree (`what` names the field, `index` the record).
    ShapeMismatch {
        /// The field.
        what: &'static str,
        /// The record (species, group or layer index).
        index: usize,
    },
    /// A value is non-finite or outside its domain.
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The record.
        index: usize,
    },
    /// An enumeration code (descriptor kind, cutoff, activation, scaling) is unknown.
    UnknownCode {
        /// The field.
        what: &'static str,
        /// The code found.
        code: u32,
    },
    /// More species or layers than this build supports.
    TooLarge {
        /// What.
        what: &'static str,
        /// Found.
        found: usize,
        /// Supported maximum.
        max: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn tag(t: &[u8; 4]) -> &str {
            core::str::from_utf8(t).unwrap_or("????")
        }
        match self {
            BlobError::Truncated { needed, got } => {
                write!(f, "blob truncated: need {needed} bytes, got {got}")
            }
            BlobError::BadMagic => write!(f, "not an mlff blob (bad magic)"),
            BlobError::UnsupportedVersion { found } => write!(
                f,
                "unsupported blob format version {found} (this build reads {FORMAT_VERSION})"
            ),
            BlobError::WrongEndianness => write!(f, "blob endianness mark is not little-endian"),
            BlobError::ChecksumMismatch { stored, computed } => write!(
                f,
                "blob checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BlobError::UnsupportedFloat { bytes } => {
                write!(f, "unsupported float size {bytes} (expected 4 or 8)")
            }
            BlobError::MissingSection { tag: t } => write!(f, "missing section {}", tag(t)),
            BlobError::DuplicateSection { tag: t } => write!(f, "duplicate section {}", tag(t)),
            BlobError::BadSection { tag: t } => {
                write!(f, "section {} out of bounds or misaligned", tag(t))
            }
            BlobError::OverlappingSections { first, second } => {
                write!(f, "sections {} and {} overlap", tag(first), tag(second))
            }
            BlobError::Misaligned { required } => write!(
                f,
                "blob must start at a {required}-byte aligned address for zero-copy loading"
            ),
            BlobError::PrecisionMismatch { blob, requested } => write!(
                f,
                "blob stores {}-byte reals, zero-copy load requested {}-byte reals",
                blob, requested
            ),
            BlobError::CapacityTooSmall { needed, got } => {
                write!(f, "real storage too small: need {needed}, got {got}")
            }
            BlobError::ShapeMismatch { what, index } => {
                write!(f, "shape mismatch in {what} (record {index})")
            }
            BlobError::InvalidValue { what, index } => {
                write!(f, "invalid value in {what} (record {index})")
            }
            BlobError::UnknownCode { what, code } => write!(f, "unknown {what} code {code}"),
            BlobError::TooLarge { what, found, max } => {
                write!(f, "too many {what}: {found} (this build supports {max})")
            }
        }
    }
}

impl core::error::Error for BlobError {}

/// The checked header and section table of a blob.
#[derive(Clone, Copy, Debug)]
pub struct Sections<'a> {
    /// Bytes per real (4 or 8).
    pub float_bytes: u8,
    /// The blob up to its declared length.
    pub bytes: &'a [u8],
    /// `MODL`.
    pub model: &'a [u8],
    /// `SPEC`.
    pub species: &'a [u8],
    /// `GRPS`.
    pub groups: &'a [u8],
    /// `LAYR`.
    pub layers: &'a [u8],
    /// `INDX`.
    pub index: &'a [u8],
    /// `REAL`.
    pub reals: &'a [u8],
    /// `TEXT` (empty when absent).
    pub text: &'a [u8],
}

impl<'a> Sections<'a> {
    /// Number of reals in the `REAL` section.
    pub fn n_reals(&self) -> usize {
        self.reals.len() / usize::from(self.float_bytes.max(1))
    }
}

/// Checks the header, length, checksum and section table.
pub fn parse(bytes: &[u8]) -> Result<Sections<'_>, BlobError> {
    let got = bytes.len();
    let trunc = |needed| BlobError::Truncated { needed, got };
    let head = bytes.get(..HEADER_LEN).ok_or(trunc(HEADER_LEN))?;
    if head.get(..8) != Some(&MAGIC[..]) {
        return Err(BlobError::BadMagic);
    }
    let version = u16_at(head, 8).ok_or(trunc(HEADER_LEN))?;
    if version != FORMAT_VERSION {
        return Err(BlobError::UnsupportedVersion { found: version });
    }
    if u16_at(head, 10) != Some(ENDIAN_MARK) {
        return Err(BlobError::WrongEndianness);
    }
    let total = u32_at(head, 16).ok_or(trunc(HEADER_LEN))? as usize;
    if total > got {
        return Err(trunc(total));
    }
    let bytes = bytes.get(..total).ok_or(trunc(total))?;
    let stored = u32_at(head, CRC_OFFSET).ok_or(trunc(HEADER_LEN))?;
    let computed = checksum(bytes);
    if stored != computed {
        return Err(BlobError::ChecksumMismatch { stored, computed });
    }
    let float_bytes = u8_at(head, 12).ok_or(trunc(HEADER_LEN))?;
    if float_bytes != 4 && float_bytes != 8 {
        return Err(BlobError::UnsupportedFloat { bytes: float_bytes });
    }
    let n_sections = u32_at(head, 20).ok_or(trunc(HEADER_LEN))? as usize;
    let table_end = n_sections
        .checked_mul(SECTION_ENTRY)
        .and_then(|t| t.checked_add(HEADER_LEN))
        .filter(|&e| e <= total)
        .ok_or(BlobError::ShapeMismatch {
            what: "section count",
            index: 0,
        })?;
    let table = bytes.get(HEADER_LEN..table_end).unwrap_or(&[]);
    let find = |want: [u8; 4], required: bool| -> Result<&[u8], BlobError> {
        let mut found: Option<&[u8]> = None;
        for e in table.chunks_exact(SECTION_ENTRY) {
            if e.get(..4) != Some(&want[..]) {
                continue;
            }
            if found.is_some() {
                return Err(BlobError::DuplicateSection { tag: want });
            }
            let bad = BlobError::BadSection { tag: want };
            let off = u32_at(e, 4).ok_or(bad)? as usize;
            let len = u32_at(e, 8).ok_or(bad)? as usize;
            let end = off.checked_add(len).ok_or(bad)?;
            if off < table_end || off % SECTION_ALIGN != 0 || end > total {
                return Err(bad);
            }
            found = Some(bytes.get(off..end).ok_or(bad)?);
        }
        match found {
            Some(s) => Ok(s),
            None if required => Err(BlobError::MissingSection { tag: want }),
            None => Ok(&[]),
        }
    };
    let reals = find(tag::REALS, true)?;
    if reals.len() % usize::from(float_bytes) != 0 {
        return Err(BlobError::BadSection { tag: tag::REALS });
    }
    let s = Sections {
        float_bytes,
        bytes,
        model: find(tag::MODEL, true)?,
        species: find(tag::SPECIES, true)?,
        groups: find(tag::GROUPS, true)?,
        layers: find(tag::LAYERS, true)?,
        index: find(tag::INDEX, true)?,
        reals,
        text: find(tag::TEXT, false)?,
    };
    no_overlaps(&s)?;
    Ok(s)
}

/// Checks that no two sections share a byte (empty ones hold none).
#[inline(never)]
fn no_overlaps(s: &Sections<'_>) -> Result<(), BlobError> {
    const TAGS: [[u8; 4]; 7] = [
        tag::MODEL,
        tag::SPECIES,
        tag::GROUPS,
        tag::LAYERS,
        tag::INDEX,
        tag::REALS,
        tag::TEXT,
    ];
    // Byte range of each within the blob (every section is a sub-slice of `s.bytes`).
    let base = s.bytes.as_ptr() as usize;
    let spans = [
        s.model, s.species, s.groups, s.layers, s.index, s.reals, s.text,
    ]
    .map(|b| {
        let start = (b.as_ptr() as usize).wrapping_sub(base);
        (start, start.wrapping_add(b.len()))
    });
    for i in 0..spans.len() {
        for k in i + 1..spans.len() {
            let (Some(&(a0, a1)), Some(&(b0, b1))) = (spans.get(i), spans.get(k)) else {
                continue;
            };
            // (An empty section, or an absent `TEXT`, has a0 == a1 and overlaps nothing.)
            if a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1 {
                let (first, second) = if b0 < a0 { (k, i) } else { (i, k) };
                let name = |n: usize| TAGS.get(n).copied().unwrap_or(*b"????");
                return Err(BlobError::OverlappingSections {
                    first: name(first),
                    second: name(second),
                });
            }
        }
    }
    Ok(())
}

/// The CRC-32 of a blob: over every byte of its declared length except the four of the CRC
/// field itself.
pub fn checksum(blob: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(blob.get(..CRC_OFFSET).unwrap_or(blob));
    c.update(blob.get(CRC_OFFSET + 4..).unwrap_or(&[]));
    c.finish()
}
