//! The blob: round trip through the writer and the core, and every kind of damage → its own
//! error, never a panic.

use mlff_core::blob::{self, BlobError, HEADER_LEN};
use mlff_core::Model;
use mlff_tests::*;
use mlff_train::io::AlignedBlob;
use mlff_train::random::SplitMix64;
use mlff_train::writer::{reseal, write_blob, Precision};

fn raw(p: Precision) -> Vec<u8> {
    write_blob(&default_model(), p).unwrap()
}

/// Loads through the copying path (any precision, any alignment).
fn load(bytes: &[u8]) -> Result<(), BlobError> {
    let mut storage = vec![0.0f64; 1 << 16];
    Model::<f64>::from_blob_in(bytes, &mut storage).map(|_| ())
}

/// Byte offset of section `tag` in a blob.
fn section(bytes: &[u8], tag: [u8; 4]) -> (usize, usize) {
    let n = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    for e in bytes[HEADER_LEN..HEADER_LEN + 16 * n].chunks(16) {
        if e[..4] == tag {
            let off = u32::from_le_bytes(e[4..8].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(e[8..12].try_into().unwrap()) as usize;
            return (off, len);
        }
    }
    panic!("no section {tag:?}");
}

#[test]
fn round_trip_predicts_what_the_reference_computes() {
    let spec = default_model();
    let s = triclinic(7, 4.3, 5);
    let (want, _) = reference_energy(&spec, &s);
    let b = AlignedBlob::new(&write_blob(&spec, Precision::F64).unwrap());
    let zero_copy = eval_core::<f64>(b.bytes(), &s).unwrap();
    assert!((zero_copy.energy - want).abs() <= tol::REFERENCE * want.abs());
    // The copying loader, from a misaligned start, gives bit-identical results.
    let mut shifted = vec![0u8; b.bytes().len() + 1];
    shifted[1..].copy_from_slice(b.bytes());
    let bytes = &shifted[1..];
    let aligned = bytes.as_ptr().align_offset(8) == 0;
    if !aligned {
        assert_eq!(
            Model::<f64>::from_blob(bytes).err(),
            Some(BlobError::Misaligned { required: 8 })
        );
    }
    let copied = eval_core::<f64>(bytes, &s).unwrap();
    assert_eq!(copied.energy.to_bits(), zero_copy.energy.to_bits());
    assert_eq!(copied.forces, zero_copy.forces);
    // Writing is deterministic.
    assert_eq!(write_blob(&spec, Precision::F64).unwrap(), b.bytes());
    // Precision: zero copy needs matching reals.
    assert_eq!(
        Model::<f32>::from_blob(b.bytes()).err(),
        Some(BlobError::PrecisionMismatch {
            blob: 8,
            requested: 4
        })
    );
    let mut small = vec![0.0f64; 3];
    assert!(matches!(
        Model::<f64>::from_blob_in(b.bytes(), &mut small),
        Err(BlobError::CapacityTooSmall { got: 3, .. })
    ));
    let m = Model::<f64>::from_blob(b.bytes()).unwrap();
    assert_eq!(m.text(), "test model");
    assert_eq!(m.species_index(8), Some(1));
    assert_eq!(m.atomic_number(0), Some(1));
}

#[test]
fn every_truncation_is_reported() {
    for p in [Precision::F64, Precision::F32] {
        let b = raw(p);
        for len in 0..b.len() {
            let want = if len < HEADER_LEN {
                HEADER_LEN
            } else {
                b.len()
            };
            assert_eq!(
                load(&b[..len]),
                Err(BlobError::Truncated {
                    needed: want,
                    got: len
                }),
                "len {len}"
            );
        }
        assert_eq!(load(&b), Ok(()));
    }
}

#[test]
fn every_single_byte_flip_is_reported() {
    let b = raw(Precision::F64);
    for i in 0..b.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut c = b.clone();
            c[i] ^= mask;
            let err = load(&c).expect_err("a flipped blob must not load");
            let ok = match i {
                0..=7 => err == BlobError::BadMagic,
                8..=9 => matches!(err, BlobError::UnsupportedVersion { .. }),
                10..=11 => err == BlobError::WrongEndianness,
                16..=19 => matches!(
                    err,
                    BlobError::Truncated { .. } | BlobError::ChecksumMismatch { .. }
                ),
                _ => matches!(err, BlobError::ChecksumMismatch { .. }),
            };
            assert!(ok, "byte {i} ^ {mask:#x}: {err:?}");
        }
    }
}

#[test]
fn structural_damage_behind_a_valid_checksum_gets_named_errors() {
    let b = raw(Precision::F64);
    let (modl, _) = section(&b, blob::tag::MODEL);
    let (grps, _) = section(&b, blob::tag::GROUPS);
    let (layr, _) = section(&b, blob::tag::LAYERS);
    let (indx, _) = section(&b, blob::tag::INDEX);
    let (real, real_len) = section(&b, blob::tag::REALS);
    let group_reals = u32::from_le_bytes(b[grps + 8..grps + 12].try_into().unwrap()) as usize;
    let layer_reals = u32::from_le_bytes(b[layr + 12..layr + 16].try_into().unwrap()) as usize;
    // The first table entry is MODL's; the second gets its offset in "overlapping sections".
    assert_eq!(&b[HEADER_LEN..HEADER_LEN + 4], b"MODL");
    let second_tag: [u8; 4] = b[HEADER_LEN + 16..HEADER_LEN + 20].try_into().unwrap();
    let put_f64 = move |c: &mut Vec<u8>, k: usize, x: f64| {
        c[real + 8 * k..real + 8 * k + 8].copy_from_slice(&x.to_le_bytes())
    };
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit, BlobError)> = vec![
        (
            "float kind",
            Box::new(|c| c[12] = 3),
            BlobError::UnsupportedFloat { bytes: 3 },
        ),
        (
            "no species",
            Box::new(move |c| c[modl..modl + 4].copy_from_slice(&0u32.to_le_bytes())),
            BlobError::ShapeMismatch {
                what: "species count",
                index: 0,
            },
        ),
        (
            "descriptor kind",
            Box::new(move |c| c[grps] = 5),
            BlobError::UnknownCode {
                what: "descriptor kind",
                code: 5,
            },
        ),
        (
            "cutoff code",
            Box::new(move |c| c[grps + 1] = 42),
            BlobError::UnknownCode {
                what: "cutoff function",
                code: 42,
            },
        ),
        (
            "group species",
            Box::new(move |c| c[grps + 2] = 9),
            BlobError::ShapeMismatch {
                what: "group species",
                index: 0,
            },
        ),
        (
            "activation",
            Box::new(move |c| c[layr + 8] = 99),
            BlobError::UnknownCode {
                what: "activation",
                code: 99,
            },
        ),
        (
            "layer flags",
            Box::new(move |c| c[layr + 9] = 6),
            BlobError::UnknownCode {
                what: "layer flags",
                code: 6,
            },
        ),
        (
            "layer width",
            Box::new(move |c| c[layr..layr + 4].copy_from_slice(&7u32.to_le_bytes())),
            BlobError::ShapeMismatch {
                what: "layer width",
                index: 0,
            },
        ),
        (
            "NaN weight",
            Box::new(move |c| put_f64(c, layer_reals, f64::NAN)),
            BlobError::InvalidValue {
                what: "weights",
                index: 0,
            },
        ),
        (
            "negative cutoff",
            Box::new(move |c| put_f64(c, group_reals, -1.0)),
            BlobError::InvalidValue {
                what: "group cutoff radius",
                index: 0,
            },
        ),
        (
            "alpha 1",
            Box::new(move |c| put_f64(c, group_reals + 1, 1.0)),
            BlobError::InvalidValue {
                what: "group cutoff alpha",
                index: 0,
            },
        ),
        (
            "infinite eta",
            Box::new(move |c| put_f64(c, group_reals + 2, f64::INFINITY)),
            BlobError::InvalidValue {
                what: "descriptor parameters",
                index: 0,
            },
        ),
        (
            "duplicate feature",
            Box::new(move |c| c[indx..indx + 4].copy_from_slice(&1u32.to_le_bytes())),
            BlobError::ShapeMismatch {
                what: "feature coverage",
                index: 0,
            },
        ),
        (
            "feature index",
            Box::new(move |c| c[indx..indx + 4].copy_from_slice(&999u32.to_le_bytes())),
            BlobError::ShapeMismatch {
                what: "feature index",
                index: 0,
            },
        ),
        (
            "missing section",
            Box::new(|c| c[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(b"XXXX")),
            BlobError::MissingSection { tag: *b"MODL" },
        ),
        (
            "duplicate section",
            Box::new(|c| c[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(b"MODL")),
            BlobError::DuplicateSection { tag: *b"MODL" },
        ),
        (
            "section bounds",
            Box::new(|c| {
                c[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&u32::MAX.to_le_bytes())
            }),
            BlobError::BadSection { tag: *b"MODL" },
        ),
        (
            "overlapping sections",
            Box::new(|c| c.copy_within(HEADER_LEN + 4..HEADER_LEN + 8, HEADER_LEN + 20)),
            BlobError::OverlappingSections {
                first: *b"MODL",
                second: second_tag,
            },
        ),
        (
            "section count",
            Box::new(|c| c[20..24].copy_from_slice(&1_000_000u32.to_le_bytes())),
            BlobError::ShapeMismatch {
                what: "section count",
                index: 0,
            },
        ),
        (
            "real count",
            Box::new(move |c| {
                let n = (real_len / 8 + 1) as u32;
                c[modl + 16..modl + 20].copy_from_slice(&n.to_le_bytes());
            }),
            BlobError::ShapeMismatch {
                what: "real count",
                index: 0,
            },
        ),
    ];
    for (name, edit, want) in cases {
        let mut c = b.clone();
        edit(&mut c);
        reseal(&mut c);
        assert_eq!(load(&c), Err(want), "{name}");
    }
    // Lambda and zeta live in angular groups: find the first angular group record.
    let n_groups = u32::from_le_bytes(b[modl + 4..modl + 8].try_into().unwrap()) as usize;
    let g = (0..n_groups).find(|g| b[grps + 24 * g] != 2).unwrap();
    let r0 =
        u32::from_le_bytes(b[grps + 24 * g + 8..grps + 24 * g + 12].try_into().unwrap()) as usize;
    let n =
        u32::from_le_bytes(b[grps + 24 * g + 4..grps + 24 * g + 8].try_into().unwrap()) as usize;
    for (lane, x, what) in [(2, 0.5, "zeta"), (3, 0.5, "lambda")] {
        let mut c = b.clone();
        put_f64(&mut c, r0 + 2 + lane * n, x);
        reseal(&mut c);
        assert_eq!(load(&c), Err(BlobError::InvalidValue { what, index: g }));
    }
}

#[test]
fn random_damage_never_panics() {
    let b = raw(Precision::F64);
    let s = cluster(6, 3.0, 1);
    let mut rng = SplitMix64::new(99);
    let (mut loaded, mut rejected) = (0, 0);
    for _ in 0..3000 {
        let mut c = b.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = HEADER_LEN + (rng.next_u64() as usize) % (c.len() - HEADER_LEN);
            c[i] = rng.next_u64() as u8;
        }
        reseal(&mut c);
        let a = AlignedBlob::new(&c);
        match Model::<f64>::from_blob(a.bytes()) {
            Ok(_) => {
                loaded += 1;
                // A blob that validates must compute without panicking (it may still fail).
                let _ = eval_core::<f64>(a.bytes(), &s);
                let _ = eval_core::<f32>(a.bytes(), &s);
            }
            Err(_) => rejected += 1,
        }
    }
    eprintln!("random damage: {loaded} still valid, {rejected} rejected");
    assert!(rejected > 0 && loaded > 0);
}
