//! Extended XYZ: the ASE-written reference files read with the values they hold, bit-exact
//! round trips (real files and a frame with every quoting trick), one error per kind of
//! malformed input naming file, line and field, and streaming.
//!
//! Reference data: `$MLFF_REFDATA` (default `../shared/data` relative to the workspace root);
//! tests that need it print a message and pass when it is missing, unless
//! `MLFF_REQUIRE_REFDATA=1`.

use std::io::{BufReader, Read};

use mlff_train::extxyz::{
    parse_extxyz, read_extxyz, write_extxyz, write_frame, Column, ColumnData, ExtxyzReader, Frame,
    InfoValue,
};

mod common;
use common::refdata;
use common::Scratch;

fn tmpdir(name: &str) -> Scratch {
    Scratch::new("extxyz", name)
}

fn info<'a>(f: &'a Frame, key: &str) -> &'a InfoValue {
    f.info(key).unwrap_or_else(|| panic!("no info key {key}"))
}

fn to_text(frames: &[Frame]) -> String {
    let mut buf = Vec::new();
    for f in frames {
        write_frame(&mut buf, f).unwrap();
    }
    String::from_utf8(buf).unwrap()
}

/// Write → read must give the same frames, bit for bit. The comment line is rebuilt by the
/// writer, so `structure.comment` (the raw line) is the one field allowed to differ; writing
/// the re-read frames must then give the same bytes.
fn assert_round_trip(frames: &[Frame]) {
    let text = to_text(frames);
    let back = parse_extxyz(&text, "round-trip").unwrap();
    assert_eq!(back.len(), frames.len());
    for (k, (a, b)) in frames.iter().zip(&back).enumerate() {
        let (mut a, mut b) = (a.clone(), b.clone());
        a.structure.comment.clear();
        b.structure.comment.clear();
        assert_eq!(a, b, "frame {k}");
        // `==` says 0.0 == -0.0; Debug prints the shortest round-trip form of each f64, so
        // equal Debug text means equal bits.
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "frame {k}");
    }
    assert_eq!(to_text(&back), text, "writing is not idempotent");
}

#[test]
fn ethanol_train_streams_all_frames_with_their_values() {
    let Some(path) = refdata("gfn2/ethanol_gfn2_train.extxyz") else {
        return;
    };
    let mut n = 0;
    let mut first = None;
    let mut last = None;
    for f in ExtxyzReader::open(&path).unwrap() {
        let f = f.unwrap();
        assert_eq!(f.natoms(), 9);
        assert_eq!(
            f.structure.symbols,
            ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
        );
        assert_eq!(f.structure.forces.len(), 9);
        assert!(f.structure.energy.is_some());
        if first.is_none() {
            first = Some(f.clone());
        }
        last = Some(f);
        n += 1;
    }
    assert_eq!(n, 2400);
    let f = first.unwrap();
    assert_eq!(f.structure.energy, Some(-309.3912282970272));
    assert_eq!(
        f.structure.positions[0],
        [-0.21086491, 1.17684971, -0.36093319]
    );
    assert_eq!(f.structure.forces[0], [2.36921972, 0.91725814, -0.44872309]);
    assert_eq!(f.structure.lattice, None);
    assert_eq!(f.pbc, [false; 3]);
    assert_eq!(f.stress, None);
    assert_eq!(f.virial, None);
    assert!(f.arrays.is_empty());
    assert_eq!(f.info.len(), 2);
    assert_eq!(
        info(&f, "config_type"),
        &InfoValue::Str("ethanol_md_500K".into())
    );
    assert_eq!(info(&f, "md_step"), &InfoValue::Int(2010));
    assert!(f
        .structure
        .comment
        .starts_with("Properties=species:S:1:pos:R:3:forces:R:3 "));
    let l = last.unwrap();
    assert_eq!(info(&l, "md_step"), &InfoValue::Int(31990));
    assert_eq!(l.structure.energy, Some(-309.5517711896944));
    assert_eq!(
        l.structure.positions[8],
        [-0.76345962, 1.88190314, -0.76681664]
    );
    assert_eq!(
        l.structure.forces[8],
        [-0.09228561, -0.70360043, 0.42690648]
    );
}

#[test]
fn aspirin_opt_reads() {
    let Some(path) = refdata("gfn2/aspirin_gfn2_opt.extxyz") else {
        return;
    };
    let frames = read_extxyz(&path).unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.natoms(), 21);
    assert_eq!(f.structure.energy, Some(-1078.4375937105383));
    assert_eq!(f.structure.symbols[0], "C");
    assert_eq!(
        f.structure.positions[0],
        [-2.45756122, -2.36516756, 0.11091055]
    );
    assert_eq!(
        f.structure.forces[0],
        [-0.00092501, -0.00080971, -0.00037956]
    );
    assert_eq!(f.structure.symbols[20], "H");
    assert_eq!(
        f.structure.forces[20],
        [-0.00061905, -0.00202274, -0.00095272]
    );
    assert!(f.info.is_empty());
    assert_eq!(f.pbc, [false; 3]);
    assert_round_trip(&frames);
}

#[test]
fn cu_emt_train_reads_bulk_vacancy_and_slab_cells() {
    let Some(path) = refdata("emt/cu_emt_train.extxyz") else {
        return;
    };
    let frames = read_extxyz(&path).unwrap();
    assert_eq!(frames.len(), 1200);
    let count = |n| frames.iter().filter(|f| f.natoms() == n).count();
    assert_eq!((count(108), count(107), count(96)), (960, 120, 120));
    for f in &frames {
        assert_eq!(f.pbc, [true; 3]);
        assert!(f.structure.lattice.is_some() && f.stress.is_some());
        assert!(f.structure.symbols.iter().all(|s| s == "Cu"));
        assert_eq!(f.structure.forces.len(), f.natoms());
    }

    let f = &frames[0];
    let lat = f.structure.lattice.unwrap();
    assert_eq!(
        lat[0],
        [
            10.821763383970463,
            -0.08134880882711246,
            0.26849490832898587
        ]
    );
    assert_eq!(lat[2][2], 10.815726611380448);
    assert_eq!(f.structure.energy, Some(4.599393068031263));
    // The file's 9 values are the full tensor; Voigt order is xx yy zz yz xz xy.
    assert_eq!(
        f.stress.unwrap(),
        [
            -0.023753223093661322,
            -0.02838195142465205,
            -0.025824494467688256,
            -0.010907105830186226,
            0.025829355552492553,
            -0.00976913797668389,
        ]
    );
    assert_eq!(
        f.structure.positions[0],
        [-0.04101848, 0.01578138, 0.06292596]
    );
    assert_eq!(
        f.structure.forces[0],
        [-0.08549759, 0.19516945, -0.28654472]
    );
    assert_eq!(
        info(f, "config_type"),
        &InfoValue::Str("cu_bulk108_T300_r0".into())
    );
    assert_eq!(info(f, "md_step"), &InfoValue::Int(550));

    // Frame 1080: the first hexagonal slab, 96 atoms, c = 30.36 Å with vacuum, pbc still T T T.
    let s = &frames[1080];
    assert_eq!(s.natoms(), 96);
    assert_eq!(
        info(s, "config_type"),
        &InfoValue::Str("cu_slab96_T300_r0".into())
    );
    let lat = s.structure.lattice.unwrap();
    assert_eq!(lat[0], [9.928859704757143, 0.06343963534198659, 0.0]);
    assert_eq!(lat[1], [5.0193701881915525, 8.858484734606506, 0.0]);
    assert_eq!(lat[2], [0.0, 0.0, 30.362933700662047]);
    assert_eq!(s.stress.unwrap()[2], -7.366251943565343e-05);
    assert_eq!(s.structure.energy, Some(14.78061275126063));
    assert_eq!(
        s.structure.positions[0],
        [1.31607109, 0.49029204, 9.80297774]
    );
    let (zmin, zmax) = s
        .structure
        .positions
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p[2]), b.max(p[2])));
    assert!(zmin > 9.0 && zmax < 21.0, "slab spans {zmin}..{zmax}");

    let mut sample: Vec<Frame> = frames[..5].to_vec();
    sample.extend_from_slice(&frames[958..963]); // bulk → vacancy boundary
    sample.extend_from_slice(&frames[1078..1083]); // vacancy → slab boundary
    sample.push(frames[1199].clone());
    assert_round_trip(&sample);
}

#[test]
fn cu_emt_800k_start_has_no_forces_or_energy() {
    let Some(path) = refdata("emt/cu_emt_800K_start.extxyz") else {
        return;
    };
    let frames = read_extxyz(&path).unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.natoms(), 256);
    assert!(f.structure.forces.is_empty());
    assert_eq!(f.structure.energy, None);
    assert_eq!(f.stress, None);
    assert!(f.info.is_empty());
    let a = 14.359302148011547;
    assert_eq!(
        f.structure.lattice,
        Some([[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]])
    );
    assert_eq!(f.pbc, [true; 3]);
    assert_eq!(f.structure.positions[1], [0.0, 1.79491277, 1.79491277]);
    assert_eq!(
        f.structure.positions[255],
        [12.56438938, 12.56438938, 10.76947661]
    );
    assert_round_trip(&frames);
}

#[test]
fn ethanol_round_trips_through_a_file() {
    let Some(path) = refdata("gfn2/ethanol_gfn2_train.extxyz") else {
        return;
    };
    let frames: Vec<Frame> = ExtxyzReader::open(&path)
        .unwrap()
        .take(40)
        .collect::<anyhow::Result<_>>()
        .unwrap();
    assert_round_trip(&frames);
    let d = tmpdir("ethanol");
    let out = d.join("sub.extxyz");
    write_extxyz(&out, &frames).unwrap();
    let back = read_extxyz(&out).unwrap();
    assert_eq!(back.len(), 40);
    for (a, b) in frames.iter().zip(&back) {
        assert_eq!(a.structure.positions, b.structure.positions);
        assert_eq!(a.structure.forces, b.structure.forces);
        assert_eq!(a.structure.energy, b.structure.energy);
        assert_eq!(a.info, b.info);
    }
    // Only the target is left behind: the atomic writer's temporary file is gone.
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["sub.extxyz"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// Every quoting rule of ASE's comment parser, extra columns of all four types, `force` as the
/// forces column, 6-value stress, an asymmetric virial, `free_energy` as the only energy.
const TRICKY: &str = concat!(
    "3\r\n",
    r#"Lattice="4 0 0 0 4.5 0 0 0 5" Properties=species:S:1:pos:R:3:force:R:3:energies:R:1:tag:I:1:fixed:L:3:label:S:1"#,
    r#" "multi word key"="a value with \"quotes\" and spaces" curly={1 2 3} sq=[1.5, 2] flag"#,
    r#" other_flag=F dir='x y' stress="1.5 2 3 4 5 6" virial="1 2 3 4 5 6 7 8 9""#,
    r#" free_energy=-3.25 uid=007 json="_JSON [[1, 2], [3, 4]]" big=123456789012345678901"#,
    r#" back=a\\b spaced = 7 tiny=5e-324 neg0=-0.0 pbc="T F T""#,
    "\r\n",
    "cu 0 0 0  0.1 0.2 0.3  -1.0  7 T F T  first\r\n",
    "H  1.25 0 0  0 0 -0.5  -0.5  -2 F F F  2nd\r\n",
    "O  0 1e-3 2.5  1 1 1  0  0 True False True  x_y\r\n",
    "\r\n\r\n",
);

#[test]
fn tricky_frame_reads_and_round_trips() {
    let frames = parse_extxyz(TRICKY, "tricky.xyz").unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    let s = &f.structure;
    assert_eq!(s.symbols, ["Cu", "H", "O"]); // capitalised as ASE does
    assert_eq!(s.positions[2], [0.0, 1e-3, 2.5]);
    assert_eq!(s.forces[1], [0.0, 0.0, -0.5]);
    assert_eq!(s.lattice.unwrap()[1], [0.0, 4.5, 0.0]);
    assert_eq!(s.energy, Some(-3.25));
    assert_eq!(f.pbc, [true, false, true]);
    assert_eq!(f.stress, Some([1.5, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(
        f.virial,
        Some([[1.0, 4.0, 7.0], [2.0, 5.0, 8.0], [3.0, 6.0, 9.0]])
    );
    assert_eq!(f.energies(), Some(&[-1.0, -0.5, 0.0][..]));
    let want_arrays = vec![
        Column {
            name: "energies".into(),
            width: 1,
            data: ColumnData::Real(vec![-1.0, -0.5, 0.0]),
        },
        Column {
            name: "tag".into(),
            width: 1,
            data: ColumnData::Int(vec![7, -2, 0]),
        },
        Column {
            name: "fixed".into(),
            width: 3,
            data: ColumnData::Bool(vec![
                true, false, true, false, false, false, true, false, true,
            ]),
        },
        Column {
            name: "label".into(),
            width: 1,
            data: ColumnData::Str(vec!["first".into(), "2nd".into(), "x_y".into()]),
        },
    ];
    assert_eq!(f.arrays, want_arrays);
    use InfoValue::*;
    let want_info: Vec<(String, InfoValue)> = vec![
        (
            "multi word key".into(),
            Str(r#"a value with "quotes" and spaces"#.into()),
        ),
        ("curly".into(), IntArray(vec![1, 2, 3])),
        ("sq".into(), FloatArray(vec![1.5, 2.0])),
        ("flag".into(), Bool(true)),
        ("other_flag".into(), Bool(false)),
        ("dir".into(), Str("x y".into())),
        ("free_energy".into(), Float(-3.25)),
        ("uid".into(), Str("007".into())),
        ("json".into(), Str("_JSON [[1, 2], [3, 4]]".into())),
        ("big".into(), Float(123456789012345678901.0)),
        ("back".into(), Str(r"a\b".into())),
        ("spaced".into(), Int(7)),
        ("tiny".into(), Float(5e-324)),
        ("neg0".into(), Float(-0.0)),
    ];
    assert_eq!(f.info, want_info);
    assert!(matches!(f.info("neg0"), Some(Float(z)) if z.is_sign_negative()));
    assert_round_trip(&frames);
}

#[test]
fn built_frames_round_trip_and_unwritable_values_are_refused() {
    let mut f = Frame::new(mlff_train::structure::Structure {
        comment: "ignored".into(),
        lattice: Some([[3.0, 0.0, 0.0], [0.1, 3.0, 0.0], [0.0, 0.0, 3.0]]),
        symbols: vec!["Si".into(), "Si".into()],
        positions: vec![[0.0, 0.0, 0.0], [0.1 + 0.2, 1.0 / 3.0, -1e-300]],
        forces: vec![],
        energy: Some(-10.0),
        open: [false; 3],
    });
    f.info
        .push(("note".into(), InfoValue::Str("has = and , and {x}".into())));
    f.info
        .push(("T".into(), InfoValue::BoolArray(vec![true, true])));
    assert_eq!(f.pbc, [true; 3]);
    assert_round_trip(std::slice::from_ref(&f));

    let refuse = |g: &Frame, what: &str| {
        let e = format!("{:#}", write_frame(&mut Vec::new(), g).unwrap_err());
        assert!(e.contains(what), "{e}");
    };
    let mut g = f.clone();
    g.info.push(("n".into(), InfoValue::Str("3".into())));
    refuse(&g, "`n`");
    let mut g = f.clone();
    g.info.push(("blank".into(), InfoValue::Str(" ".into())));
    refuse(&g, "`blank`");
    let mut g = f.clone();
    g.info
        .push(("one".into(), InfoValue::FloatArray(vec![1.0])));
    refuse(&g, "`one`");
    let mut g = f.clone();
    g.info.push(("energy".into(), InfoValue::Float(1.0)));
    refuse(&g, "`energy`");
    let mut g = f.clone();
    g.structure.positions[1][2] = f64::NAN;
    refuse(&g, "`pos`");
    let mut g = f.clone();
    g.arrays.push(Column {
        name: "forces".into(),
        width: 3,
        data: ColumnData::Real(vec![0.0; 6]),
    });
    refuse(&g, "`forces`");
    let mut g = f.clone();
    g.arrays.push(Column {
        name: "q".into(),
        width: 1,
        data: ColumnData::Real(vec![0.0; 3]),
    });
    refuse(&g, "`q`");
    let mut g = f.clone();
    g.structure.symbols[0] = "Xx".into();
    refuse(&g, "Xx");
}

const GOOD: &str = "2\n\
Lattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"T T T\"\n\
O 0.0 0.0 0.0 0.1 0.2 0.3\n\
H 1.0 0.0 0.0 0.0 0.0 0.0\n";

/// Parses `text` as `bad.xyz` and checks that the error names `bad.xyz:<line>` and `field`.
fn expect_error(text: &str, line: usize, field: &str) {
    let e = match parse_extxyz(text, "bad.xyz") {
        Ok(_) => panic!("no error for\n{text}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains(&format!("bad.xyz:{line}:")) && e.contains(field),
        "expected bad.xyz:{line} and {field:?} in: {e}"
    );
}

#[test]
fn malformed_input_names_file_line_and_field() {
    assert_eq!(parse_extxyz(GOOD, "good.xyz").unwrap().len(), 1);
    // Truncated frame: 2 atoms announced, 1 atom line.
    let trunc = GOOD.rsplit_once("H 1.0").unwrap().0;
    expect_error(trunc, 4, "`natoms`");
    // Truncated before the comment line.
    expect_error("2\n", 2, "comment line");
    // Wrong column count.
    expect_error(
        &GOOD.replace("0.1 0.2 0.3", "0.1 0.2"),
        3,
        "`Properties` needs 7",
    );
    expect_error(&GOOD.replace("0.1 0.2 0.3", "0.1 0.2 0.3 9"), 3, "columns");
    // Non-numeric fields.
    expect_error(
        &GOOD.replace("0.1 0.2 0.3", "0.1 abc 0.3"),
        3,
        "`forces`[1]",
    );
    expect_error(&GOOD.replace("H 1.0", "H 1.0.0"), 4, "`pos`[0]");
    // Bad atom count line.
    expect_error(&GOOD.replacen("2\n", "two\n", 1), 1, "`natoms`");
    expect_error(&GOOD.replacen("2\n", "-2\n", 1), 1, "`natoms`");
    // Lattice with 8 numbers, or not numbers.
    expect_error(
        &GOOD.replace("5 0 0 0 5 0 0 0 5", "5 0 0 0 5 0 0 0"),
        2,
        "`Lattice`",
    );
    expect_error(
        &GOOD.replace("5 0 0 0 5 0 0 0 5", "5 0 0 0 5 0 0 0 x"),
        2,
        "`Lattice`",
    );
    // Unknown element.
    expect_error(&GOOD.replace("H 1.0", "Xx 1.0"), 4, "`species`");
    // NaN / inf positions.
    expect_error(&GOOD.replace("H 1.0", "H NaN"), 4, "`pos`[0]");
    expect_error(
        &GOOD.replace("O 0.0 0.0 0.0", "O 0.0 0.0 inf"),
        3,
        "`pos`[2]",
    );
    // Properties without species or pos.
    let p = "species:S:1:pos:R:3:forces:R:3";
    expect_error(&GOOD.replace(p, "Z:I:1:pos:R:3:forces:R:3"), 2, "`species`");
    expect_error(
        &GOOD.replace(p, "species:S:1:xyz:R:3:forces:R:3"),
        2,
        "`pos`",
    );
    expect_error(
        &GOOD.replace(p, "species:S:1:pos:R:2:forces:R:4"),
        2,
        "`pos` must be R:3",
    );
    expect_error(&GOOD.replace(p, "species:S:1:pos:X:3"), 2, "unknown type");
    // Unterminated quote.
    expect_error(
        &GOOD.replace("5 0 0 0 5 0 0 0 5\"", "5 0 0 0 5 0 0 0 5"),
        2,
        "unterminated",
    );
    expect_error(&GOOD.replace("pbc=\"T T T\"", "pbc=\"T T T"), 2, "`pbc`");
    // Other header fields.
    expect_error(&GOOD.replace("energy=-1.5", "energy=low"), 2, "`energy`");
    expect_error(&GOOD.replace("energy=-1.5", "energy=nan"), 2, "`energy`");
    expect_error(&GOOD.replace("pbc=\"T T T\"", "pbc=\"T T\""), 2, "`pbc`");
    expect_error(
        &GOOD.replace("energy=-1.5", "energy=-1.5 energy=2"),
        2,
        "`energy`",
    );
    expect_error(
        &GOOD.replace("energy=-1.5", "stress=\"1 2 3 4 5 6 7 8 9\""),
        2,
        "`stress`",
    );
    // The second frame's errors carry the second frame's line numbers.
    let two = format!("{GOOD}{}", GOOD.replace("H 1.0", "H x"));
    expect_error(&two, 8, "`pos`[0]");
    // A frame shorter than its count runs into the next count line.
    let short = format!("{trunc}{GOOD}");
    expect_error(&short, 4, "next frame's atom count");
    // A blank line between frames (ASE would stop reading there).
    expect_error(&format!("{GOOD}\n{GOOD}"), 5, "blank line");
    // Blank trailing lines and CRLF are fine.
    let crlf = format!("{GOOD}\n\n").replace('\n', "\r\n");
    assert_eq!(
        parse_extxyz(&crlf, "crlf.xyz").unwrap()[0].structure.energy,
        Some(-1.5)
    );
}

#[test]
fn errors_from_files_name_the_path() {
    let d = tmpdir("bad");
    let path = d.join("broken.extxyz");
    std::fs::write(&path, GOOD.replace("H 1.0", "H ?")).unwrap();
    let e = format!("{:#}", read_extxyz(&path).unwrap_err());
    assert!(
        e.contains(&format!("{}:4:", path.display())) && e.contains("`pos`"),
        "{e}"
    );
    let e = format!("{:#}", read_extxyz(&d.join("missing.extxyz")).unwrap_err());
    assert!(e.contains("missing.extxyz"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// A source that fails when read: anything the reader pulls from it past the first frame
/// shows up as an error.
struct Broken;

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

#[test]
fn reader_streams_frame_by_frame() {
    // Frame 1 is read without touching what follows it.
    let src = BufReader::new(GOOD.as_bytes().chain(Broken));
    let mut r = ExtxyzReader::new(src, "stream");
    let f = r.next().unwrap().unwrap();
    assert_eq!(f.structure.energy, Some(-1.5));
    assert_eq!(r.line(), 4);
    let e = format!("{:#}", r.next().unwrap().unwrap_err());
    assert!(e.contains("stream:5") && e.contains("disk on fire"), "{e}");
    assert!(r.next().is_none(), "the reader stops after an error");

    // Later frames corrupt: the good ones come first, then the error, then the end.
    let text = format!(
        "{GOOD}{GOOD}{}",
        GOOD.replace("0.1 0.2 0.3", "0.1 0.2 oops")
    );
    let got: Vec<_> = ExtxyzReader::new(text.as_bytes(), "later.xyz").collect();
    assert_eq!(got.len(), 3);
    assert!(got[0].is_ok() && got[1].is_ok());
    let e = format!("{:#}", got[2].as_ref().unwrap_err());
    assert!(
        e.contains("later.xyz:11") && e.contains("`forces`[2]"),
        "{e}"
    );

    // On a real file: taking one frame consumes exactly its lines.
    if let Some(path) = refdata("emt/cu_emt_train.extxyz") {
        let mut r = ExtxyzReader::open(&path).unwrap();
        let f = r.next().unwrap().unwrap();
        assert_eq!(f.natoms(), 108);
        assert_eq!(r.line(), 110);
    }
}
