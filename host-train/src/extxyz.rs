//! Extended XYZ, read and written as ASE's `ase.io.extxyz` does.
//!
//! Hand-written on purpose. The crates.io candidates were checked (2026): `extxyz` 0.2.0
//! (gchemol; last release Feb 2024, winnow 0.5 + grep-reader) and `extxyz-ng` 0.0.2 (a
//! pre-release port of libAtoms' parser, nom 8) follow the libAtoms grammar rather than ASE's
//! (ASE accepts any bare value, single quotes, `[...]`, commas between numbers, escapes outside
//! quotes) and report errors without file and line; `chemfiles` builds a C++ library with
//! cmake. None checks the fields this crate relies on (finite positions, known elements,
//! symmetric stress). The format is small; one file of plain Rust is easier to trust.
//!
//! # Format
//!
//! ```text
//! 2                                                          <- atom count
//! Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc="T T T"
//! O  0.0 0.0 0.0  0.1 0.2 0.3                                <- one line per atom, columns
//! H  1.0 0.0 0.0  0.0 0.0 0.0                                   as `Properties` says
//! ```
//!
//! Comment line (ASE's `key_val_str_to_dict`): whitespace-separated `key=value` pairs, spaces
//! allowed around `=`; keys and values may be quoted with `"…"`, `'…'`, `{…}` or `[…]`;
//! a backslash takes the next character literally, inside or outside quotes; a key without
//! `=` is the flag `true`. Values are typed as ASE types them: split on whitespace and commas,
//! all integers → [`InfoValue::Int`] (or an array), else all floats → [`InfoValue::Float`],
//! else all of `T F True False true false TRUE FALSE` → [`InfoValue::Bool`], else the string
//! verbatim (also `uid`, and ASE's `_JSON …` values, which stay strings).
//!
//! Keys taken out of the comment line into typed fields:
//!
//! | key | field | rule |
//! |---|---|---|
//! | `Lattice` | `structure.lattice` | 9 numbers, rows are the cell vectors `a b c` |
//! | `Properties` | the atom columns | `name:type:width` triplets, type `S R I L`; default `species:S:1:pos:R:3` |
//! | `pbc` | [`Frame::pbc`] | 3 logicals (or one for all); default `T T T` with a lattice, else `F F F` |
//! | `energy` | `structure.energy` | a number; if absent, `free_energy` (which also stays in `info`) |
//! | `stress` | [`Frame::stress`] | 9 numbers, 3×3 (must be symmetric), or 6 Voigt `xx yy zz yz xz xy` |
//! | `virial` | [`Frame::virial`] | 9 numbers, 3×3 in ASE's (Fortran) order |
//!
//! Columns: `species` (S:1) → `structure.symbols` (capitalised as ASE does: `CU` → `Cu`),
//! `pos` (R:3) → `structure.positions`, `forces` (or `force`) (R:3) → `structure.forces`;
//! every other column (e.g. per-atom `energies`) → [`Frame::arrays`].
//!
//! Frames follow each other; blank lines at the end of the file are allowed, blank lines
//! between frames are an error (ASE would silently stop reading there). `\r\n` is accepted.
//!
//! # Writing
//!
//! [`write_frame`] writes what ASE writes (`Lattice`, `Properties`, the info pairs, `energy`,
//! `stress` as 9 values, `virial`, `pbc`), floats in Rust's shortest round-trip form, so that
//! reading back gives bit-identical values (ASE's own writer rounds positions and forces to
//! `%16.8f`; this one keeps every digit). The comment line is rebuilt from the typed fields:
//! `structure.comment` (which the reader fills with the raw comment line) is not written.
//! Values that would not read back as written (a one-element array reads back as a scalar, a
//! string `"3"` as an integer, an empty string, which ASE misreads, a symbol ASE does not
//! know) are refused with an error instead of changing silently.
//!
//! Checked against ASE 3.29 by hand: ASE reads this writer's output of the reference files
//! with identical positions, cell, energy, forces, stress and info, and ASE-written frames
//! with every info and column type pass through read → write unchanged as ASE sees them.

use std::fmt::{self, Display, Write as _};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::elements::atomic_number;
use crate::structure::Structure;

/// One frame of an extended XYZ file: the [`Structure`] plus everything else the file says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    /// Symbols, positions, lattice, forces and energy. `comment` holds the raw comment line
    /// when read (and is ignored when written).
    pub structure: Structure,
    /// Periodicity along the three lattice vectors.
    pub pbc: [bool; 3],
    /// Stress in Voigt order `xx yy zz yz xz xy`, eV/Å³, ASE's sign (positive = tensile).
    pub stress: Option<[f64; 6]>,
    /// Virial, 3×3, as ASE holds it (the file's 9 values read in Fortran order).
    pub virial: Option<[[f64; 3]; 3]>,
    /// All other comment-line pairs, in file order.
    pub info: Vec<(String, InfoValue)>,
    /// All other per-atom columns, in `Properties` order.
    pub arrays: Vec<Column>,
}

impl Frame {
    /// A frame holding `structure`, periodic along its lattice vectors except its open axes
    /// ([`Structure::pbc`]).
    pub fn new(structure: Structure) -> Self {
        Frame {
            pbc: structure.pbc(),
            structure,
            ..Frame::default()
        }
    }

    /// Number of atoms.
    pub fn natoms(&self) -> usize {
        self.structure.positions.len()
    }

    /// The info value stored under `key`.
    pub fn info(&self, key: &str) -> Option<&InfoValue> {
        self.info.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The extra per-atom column called `name`.
    pub fn array(&self, name: &str) -> Option<&Column> {
        self.arrays.iter().find(|c| c.name == name)
    }

    /// Per-atom energies (ASE's `energies` column, R:1), if present.
    pub fn energies(&self) -> Option<&[f64]> {
        match self.array("energies") {
            Some(Column {
                width: 1,
                data: ColumnData::Real(v),
                ..
            }) => Some(v),
            _ => None,
        }
    }
}

/// A typed comment-line value, typed as ASE types it (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum InfoValue {
    /// Anything that is not numbers or logicals, verbatim (quotes and escapes removed).
    Str(String),
    /// One integer.
    Int(i64),
    /// One real number.
    Float(f64),
    /// One logical (`T`, `F`, `True`, … or a bare key).
    Bool(bool),
    /// Two or more integers.
    IntArray(Vec<i64>),
    /// Two or more numbers, at least one not an integer.
    FloatArray(Vec<f64>),
    /// Two or more logicals.
    BoolArray(Vec<bool>),
}

impl InfoValue {
    /// The value as one real number, if it is an `Int` or a `Float`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            InfoValue::Int(i) => Some(i as f64),
            InfoValue::Float(x) => Some(x),
            _ => None,
        }
    }

    /// The value as a string, if it is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            InfoValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// All numbers of the value (scalar or array), if it is numeric.
    fn numbers(&self) -> Option<Vec<f64>> {
        match self {
            InfoValue::Int(i) => Some(vec![*i as f64]),
            InfoValue::Float(x) => Some(vec![*x]),
            InfoValue::IntArray(v) => Some(v.iter().map(|&i| i as f64).collect()),
            InfoValue::FloatArray(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// One extra per-atom column (a `name:type:width` triplet of `Properties`).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Property name.
    pub name: String,
    /// Values per atom.
    pub width: usize,
    /// Values, atom-major: atom `i` owns `i * width .. (i + 1) * width`.
    pub data: ColumnData,
}

impl Column {
    /// Number of atoms the column holds values for.
    pub fn natoms(&self) -> usize {
        self.data.len() / self.width.max(1)
    }
}

/// The values of a [`Column`], by type.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// `S`: strings without whitespace.
    Str(Vec<String>),
    /// `R`: reals.
    Real(Vec<f64>),
    /// `I`: integers.
    Int(Vec<i64>),
    /// `L`: logicals `T`/`F`.
    Bool(Vec<bool>),
}

impl ColumnData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Str(v) => v.len(),
            ColumnData::Real(v) => v.len(),
            ColumnData::Int(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Properties` type letter.
    pub fn type_code(&self) -> char {
        match self {
            ColumnData::Str(_) => 'S',
            ColumnData::Real(_) => 'R',
            ColumnData::Int(_) => 'I',
            ColumnData::Bool(_) => 'L',
        }
    }

    fn empty(code: char) -> Self {
        match code {
            'S' => ColumnData::Str(Vec::new()),
            'I' => ColumnData::Int(Vec::new()),
            'L' => ColumnData::Bool(Vec::new()),
            _ => ColumnData::Real(Vec::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Streams the frames of an extended XYZ source, one at a time.
///
/// Errors name the source, the line and the field. After an error the iterator ends (the
/// position in the stream is no longer known to be at a frame boundary).
pub struct ExtxyzReader<R> {
    src: R,
    name: String,
    line: usize,
    text: String,
    done: bool,
}

impl ExtxyzReader<BufReader<File>> {
    /// Opens `path` for streaming; errors name the path.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self::new(BufReader::new(f), path.display().to_string()))
    }
}

impl<R: BufRead> ExtxyzReader<R> {
    /// Reads from `src`; `name` stands for the source in error messages.
    pub fn new(src: R, name: impl Into<String>) -> Self {
        ExtxyzReader {
            src,
            name: name.into(),
            line: 0,
            text: String::new(),
            done: false,
        }
    }

    /// Number of lines consumed so far.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Reads the next line into `self.text` without its line ending; false at the end.
    fn next_line(&mut self) -> Result<bool> {
        let mut buf = std::mem::take(&mut self.text).into_bytes();
        buf.clear();
        let n = self
            .src
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{}:{}: read error", self.name, self.line + 1))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        match String::from_utf8(buf) {
            Ok(s) => {
                self.text = s;
                Ok(true)
            }
            Err(e) => Err(anyhow!(
                "{}:{}: line is not UTF-8 ({})",
                self.name,
                self.line,
                e.utf8_error()
            )),
        }
    }

    fn at(&self) -> At<'_> {
        At {
            file: &self.name,
            line: self.line,
        }
    }

    fn read_frame(&mut self) -> Result<Option<Frame>> {
        // Atom count, skipping blank lines only if nothing follows them.
        let mut blank = None;
        let natoms = loop {
            if !self.next_line()? {
                return Ok(None);
            }
            let t = self.text.trim();
            if t.is_empty() {
                blank.get_or_insert(self.line);
                continue;
            }
            if let Some(b) = blank {
                return Err(anyhow!(
                    "{}:{b}: blank line before the frame at line {} (ASE stops reading at a \
                     blank line; remove it)",
                    self.name,
                    self.line
                ));
            }
            match t.parse::<usize>() {
                Ok(n) => break n,
                Err(_) => {
                    return self.at().fail(format_args!(
                        "bad atom count line: field `natoms` is not a non-negative integer: \
                         {t:?}"
                    ))
                }
            }
        };
        let start = self.line;

        if !self.next_line()? {
            return Err(anyhow!(
                "{}:{}: truncated frame: file ends before the comment line of the frame at \
                 line {start} (`natoms` = {natoms})",
                self.name,
                self.line + 1
            ));
        }
        let comment = self.text.clone();
        let header = Header::parse(&comment, self.at())?;
        let mut frame = header.frame;
        frame.structure.comment = comment;
        let cols = header.columns;
        let ncols: usize = cols.iter().map(|c| c.width).sum();

        // A corrupt count must not allocate gigabytes before the first atom line is read.
        let cap = natoms.min(1 << 16);
        let s = &mut frame.structure;
        s.symbols.reserve(cap);
        s.positions.reserve(cap);
        let mut extra: Vec<ColumnData> = cols
            .iter()
            .filter(|c| c.role == Role::Extra)
            .map(|c| ColumnData::empty(c.code))
            .collect();

        for i in 0..natoms {
            if !self.next_line()? {
                return Err(anyhow!(
                    "{}:{}: truncated frame: file ends after {i} of {natoms} atom lines \
                     (`natoms` at line {start})",
                    self.name,
                    self.line + 1
                ));
            }
            let at = self.at();
            let toks: Vec<&str> = self.text.split_whitespace().collect();
            if toks.len() != ncols {
                let hint = if toks.len() == 1 && toks[0].parse::<usize>().is_ok() {
                    format!(
                        " (looks like the next frame's atom count: this frame has {i} atom \
                         lines, `natoms` at line {start} says {natoms})"
                    )
                } else {
                    String::new()
                };
                return at.fail(format_args!(
                    "atom line has {} columns, `Properties` needs {ncols}{hint}",
                    toks.len()
                ));
            }
            let fr = &mut frame.structure;
            let mut off = 0;
            let mut k_extra = 0;
            for c in &cols {
                let field = &toks[off..off + c.width];
                match c.role {
                    Role::Species => {
                        let sym = capitalise(field[0]);
                        if atomic_number(&sym).is_none() {
                            return at.fail(format_args!(
                                "column {} (`{}`): unknown element symbol {:?}",
                                off + 1,
                                c.name,
                                field[0]
                            ));
                        }
                        fr.symbols.push(sym);
                    }
                    Role::Pos | Role::Forces => {
                        let mut v = [0.0; 3];
                        for (k, (x, t)) in v.iter_mut().zip(field).enumerate() {
                            *x = real(t, at, off + k, &c.name, k)?;
                            // Positions and forces feed the descriptors and the loss: a NaN
                            // here would poison a whole training run without a message.
                            if !x.is_finite() {
                                return at.fail(format_args!(
                                    "column {} (`{}`[{k}]) is not finite: {t:?}",
                                    off + k + 1,
                                    c.name
                                ));
                            }
                        }
                        if c.role == Role::Pos {
                            fr.positions.push(v);
                        } else {
                            fr.forces.push(v);
                        }
                    }
                    Role::Extra => {
                        let data = &mut extra[k_extra];
                        k_extra += 1;
                        for (k, t) in field.iter().enumerate() {
                            let bad = |what: &str| {
                                at.fail::<()>(format_args!(
                                    "column {} (`{}`[{k}]) is not {what}: {t:?}",
                                    off + k + 1,
                                    c.name
                                ))
                            };
                            match data {
                                ColumnData::Str(v) => v.push(t.to_string()),
                                ColumnData::Real(v) => v.push(real(t, at, off + k, &c.name, k)?),
                                ColumnData::Int(v) => match t.parse() {
                                    Ok(x) => v.push(x),
                                    Err(_) => bad("an integer")?,
                                },
                                ColumnData::Bool(v) => match parse_bool(t) {
                                    Some(x) => v.push(x),
                                    None => bad("a logical (T/F)")?,
                                },
                            }
                        }
                    }
                }
                off += c.width;
            }
        }
        frame.arrays = cols
            .iter()
            .filter(|c| c.role == Role::Extra)
            .zip(extra)
            .map(|(c, data)| Column {
                name: c.name.clone(),
                width: c.width,
                data,
            })
            .collect();
        Ok(Some(frame))
    }
}

impl<R: BufRead> Iterator for ExtxyzReader<R> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read_frame().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// Reads every frame of the extended XYZ file at `path`.
pub fn read_extxyz(path: &Path) -> Result<Vec<Frame>> {
    ExtxyzReader::open(path)?.collect()
}

/// Parses extended XYZ text; `name` stands for the source in error messages.
pub fn parse_extxyz(text: &str, name: &str) -> Result<Vec<Frame>> {
    ExtxyzReader::new(text.as_bytes(), name).collect()
}

/// A place in the input, for error messages.
#[derive(Clone, Copy)]
struct At<'a> {
    file: &'a str,
    line: usize,
}

impl At<'_> {
    fn err(self, msg: impl Display) -> anyhow::Error {
        anyhow!("{}:{}: {msg}", self.file, self.line)
    }

    fn fail<T>(self, msg: impl Display) -> Result<T> {
        Err(self.err(msg))
    }
}

fn real(t: &str, at: At, col: usize, name: &str, k: usize) -> Result<f64> {
    t.parse().map_err(|_| {
        at.err(format_args!(
            "column {} (`{name}`[{k}]) is not a real number: {t:?}",
            col + 1
        ))
    })
}

/// ASE's `str.capitalize()` of species names: first letter upper case, the rest lower case.
fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Logicals in atom columns (ASE's `parse_properties`).
fn parse_bool(t: &str) -> Option<bool> {
    match t {
        "T" | "True" => Some(true),
        "F" | "False" => Some(false),
        _ => None,
    }
}

/// Logicals in the comment line (ASE's `key_val_str_to_dict`).
fn parse_info_bool(t: &str) -> Option<bool> {
    match t {
        "T" | "True" | "true" | "TRUE" => Some(true),
        "F" | "False" | "false" | "FALSE" => Some(false),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Species,
    Pos,
    Forces,
    Extra,
}

#[derive(Debug)]
struct ColSpec {
    name: String,
    code: char,
    width: usize,
    role: Role,
}

/// What the comment line says: the frame without atoms, and the column layout.
struct Header {
    frame: Frame,
    columns: Vec<ColSpec>,
}

impl Header {
    fn parse(line: &str, at: At) -> Result<Header> {
        let pairs = split_pairs(line).map_err(|e| at.err(format_args!("comment line: {e}")))?;
        let mut frame = Frame::default();
        let mut props: Option<String> = None;
        let mut pbc: Option<[bool; 3]> = None;
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in &pairs {
            if seen.contains(&key.as_str()) {
                return at.fail(format_args!("comment line: key `{key}` given twice"));
            }
            seen.push(key);
            let v = match value {
                Some(raw) => classify(key, raw),
                None => InfoValue::Bool(true),
            };
            let numbers = |n: &[usize]| -> Result<Vec<f64>> {
                let xs = v.numbers().ok_or_else(|| {
                    at.err(format_args!(
                        "`{key}` is not numeric: {:?}",
                        value.as_deref().unwrap_or("")
                    ))
                })?;
                if !n.contains(&xs.len()) {
                    let want = n.iter().map(|k| k.to_string()).collect::<Vec<_>>();
                    return at.fail(format_args!(
                        "`{key}` needs {} numbers, found {}",
                        want.join(" or "),
                        xs.len()
                    ));
                }
                // Cell, energy and stress are training targets or geometry: never NaN/inf.
                if let Some(x) = xs.iter().find(|x| !x.is_finite()) {
                    return at.fail(format_args!("`{key}` holds a non-finite value {x}"));
                }
                Ok(xs)
            };
            match key.as_str() {
                "Lattice" => {
                    let x = numbers(&[9])?;
                    frame.structure.lattice =
                        Some([[x[0], x[1], x[2]], [x[3], x[4], x[5]], [x[6], x[7], x[8]]]);
                }
                "Properties" => match &v {
                    InfoValue::Str(s) => props = Some(s.clone()),
                    _ => return at.fail(format_args!("`Properties` is not a string: {v:?}")),
                },
                "pbc" => {
                    pbc = Some(match &v {
                        InfoValue::Bool(b) => [*b; 3],
                        InfoValue::BoolArray(b) if b.len() == 3 => [b[0], b[1], b[2]],
                        _ => {
                            return at.fail(format_args!(
                                "`pbc` needs 3 logicals (T/F), found {:?}",
                                value.as_deref().unwrap_or("")
                            ))
                        }
                    })
                }
                "energy" => frame.structure.energy = Some(numbers(&[1])?[0]),
                "stress" => {
                    let x = numbers(&[9, 6])?;
                    frame.stress = Some(if x.len() == 6 {
                        [x[0], x[1], x[2], x[3], x[4], x[5]]
                    } else {
                        // Fortran order, as ASE reads it: m[i][j] = x[i + 3j].
                        let m = |i: usize, j: usize| x[i + 3 * j];
                        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
                            if m(i, j) != m(j, i) {
                                return at.fail(format_args!(
                                    "`stress` is not symmetric ({} vs {}): the Voigt form \
                                     would drop one of them",
                                    m(i, j),
                                    m(j, i)
                                ));
                            }
                        }
                        [m(0, 0), m(1, 1), m(2, 2), m(1, 2), m(0, 2), m(0, 1)]
                    });
                }
                "virial" => {
                    let x = numbers(&[9])?;
                    let mut m = [[0.0; 3]; 3];
                    for (j, col) in x.chunks_exact(3).enumerate() {
                        for (i, &e) in col.iter().enumerate() {
                            m[i][j] = e;
                        }
                    }
                    frame.virial = Some(m);
                }
                _ => frame.info.push((key.clone(), v)),
            }
        }
        if frame.structure.energy.is_none() {
            if let Some(v) = frame.info("free_energy") {
                let e = v
                    .as_f64()
                    .filter(|e| e.is_finite())
                    .ok_or_else(|| at.err(format_args!("`free_energy` is not a number: {v:?}")))?;
                frame.structure.energy = Some(e);
            }
        }
        frame.pbc = pbc.unwrap_or([frame.structure.lattice.is_some(); 3]);
        // Open axes matter only with a lattice (without one the structure is open anyway).
        if frame.structure.lattice.is_some() {
            frame.structure.open = frame.pbc.map(|p| !p);
        }
        let props = props.as_deref().unwrap_or("species:S:1:pos:R:3");
        let columns =
            parse_properties(props).map_err(|e| at.err(format_args!("`Properties`: {e}")))?;
        Ok(Header { frame, columns })
    }
}

fn parse_properties(p: &str) -> Result<Vec<ColSpec>, String> {
    let f: Vec<&str> = p.split(':').collect();
    if f.len() % 3 != 0 {
        return Err(format!("{p:?} is not name:type:width triplets"));
    }
    let mut cols: Vec<ColSpec> = Vec::new();
    for t in f.chunks_exact(3) {
        let (name, ty, w) = (t[0], t[1], t[2]);
        if name.is_empty() {
            return Err(format!("empty property name in {p:?}"));
        }
        if cols.iter().any(|c| c.name == name) {
            return Err(format!("property `{name}` given twice"));
        }
        let code = match ty {
            "S" | "R" | "I" | "L" => ty.chars().next().unwrap_or('R'),
            _ => {
                return Err(format!(
                    "property `{name}` has unknown type {ty:?} (S, R, I or L)"
                ))
            }
        };
        let width: usize = match w.parse() {
            Ok(n) if n >= 1 => n,
            _ => return Err(format!("property `{name}` has bad width {w:?}")),
        };
        cols.push(ColSpec {
            name: name.to_string(),
            code,
            width,
            role: Role::Extra,
        });
    }
    let mut assign = |name: &str, role: Role, code: char, width: usize| -> Result<bool, String> {
        let Some(c) = cols.iter_mut().find(|c| c.name == name) else {
            return Ok(false);
        };
        if (c.code, c.width) != (code, width) {
            return Err(format!(
                "`{name}` must be {code}:{width}, found {}:{}",
                c.code, c.width
            ));
        }
        c.role = role;
        Ok(true)
    };
    if !assign("species", Role::Species, 'S', 1)? {
        return Err(format!("no `species` column in {p:?}"));
    }
    if !assign("pos", Role::Pos, 'R', 3)? {
        return Err(format!("no `pos` column in {p:?}"));
    }
    if !assign("forces", Role::Forces, 'R', 3)? {
        assign("force", Role::Forces, 'R', 3)?;
    }
    Ok(cols)
}

/// Splits a comment line into `(key, value)` pairs (`None`: a bare key), removing quotes and
/// escapes the way ASE's `key_val_str_to_dict` does.
fn split_pairs(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    enum Tok {
        Word(String),
        Eq,
    }
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                let next = chars.next().ok_or("line ends with a lone backslash")?;
                word.push(next);
                in_word = true;
            }
            '"' | '\'' | '{' | '[' => {
                let close = match ch {
                    '{' => '}',
                    '[' => ']',
                    q => q,
                };
                loop {
                    match chars.next() {
                        None => {
                            let key = match (toks.last(), toks.iter().rev().nth(1)) {
                                (Some(Tok::Eq), Some(Tok::Word(k))) => format!(" (value of `{k}`)"),
                                _ => String::new(),
                            };
                            return Err(format!("unterminated {ch}…{close} quote{key}"));
                        }
                        Some('\\') => {
                            word.push(chars.next().ok_or("line ends with a lone backslash")?)
                        }
                        Some(c) if c == close => break,
                        Some(c) => word.push(c),
                    }
                }
                in_word = true;
            }
            // Inside a value (`a=b=c`) `=` is a character, as ASE joins the parts with `=`.
            '=' if !(in_word && matches!(toks.last(), Some(Tok::Eq))) => {
                if in_word {
                    toks.push(Tok::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
                toks.push(Tok::Eq);
            }
            c if c.is_whitespace() => {
                if in_word {
                    toks.push(Tok::Word(std::mem::take(&mut word)));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        toks.push(Tok::Word(word));
    }
    let mut pairs = Vec::new();
    let mut it = toks.into_iter().peekable();
    while let Some(t) = it.next() {
        let Tok::Word(key) = t else {
            return Err("`=` without a key".into());
        };
        if key.is_empty() {
            return Err("empty key".into());
        }
        if matches!(it.peek(), Some(Tok::Eq)) {
            it.next();
            let value = match it.peek() {
                Some(Tok::Word(_)) => match it.next() {
                    Some(Tok::Word(v)) => v,
                    _ => String::new(),
                },
                _ => String::new(),
            };
            pairs.push((key, Some(value)));
        } else {
            pairs.push((key, None));
        }
    }
    Ok(pairs)
}

/// Types a comment-line value as ASE does (see the module docs).
fn classify(key: &str, raw: &str) -> InfoValue {
    // ASE keeps `uid` as text, whatever it looks like.
    if key.eq_ignore_ascii_case("uid") {
        return InfoValue::Str(raw.to_string());
    }
    let parts: Vec<&str> = raw
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    if parts.is_empty() {
        return InfoValue::Str(raw.to_string());
    }
    if let Ok(v) = parts
        .iter()
        .map(|t| t.parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
    {
        return match v[..] {
            [x] => InfoValue::Int(x),
            _ => InfoValue::IntArray(v),
        };
    }
    // Integers too large for i64 land here too, as ASE falls back to float on overflow.
    if let Ok(v) = parts
        .iter()
        .map(|t| t.parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
    {
        return match v[..] {
            [x] => InfoValue::Float(x),
            _ => InfoValue::FloatArray(v),
        };
    }
    if let Some(v) = parts
        .iter()
        .map(|t| parse_info_bool(t))
        .collect::<Option<Vec<_>>>()
    {
        return match v[..] {
            [x] => InfoValue::Bool(x),
            _ => InfoValue::BoolArray(v),
        };
    }
    InfoValue::Str(raw.to_string())
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Keys that come from typed fields and may not appear in [`Frame::info`].
const RESERVED: [&str; 6] = ["Lattice", "Properties", "pbc", "energy", "stress", "virial"];
/// Columns that come from the [`Structure`] and may not appear in [`Frame::arrays`].
const RESERVED_COLUMNS: [&str; 3] = ["species", "pos", "forces"];

/// A float that reads back bit-identically and still reads as a float (`3.0`, not `3`).
struct F(f64);

impl Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` is the shortest round-trip form and keeps the `.0` on integral values; it
        // honours the caller's width.
        fmt::Debug::fmt(&self.0, f)
    }
}

fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(" ")
}

fn tf(b: bool) -> &'static str {
    if b {
        "T"
    } else {
        "F"
    }
}

/// Quotes `s` if ASE's reader needs it to get `s` back.
fn quote(s: &str) -> String {
    let special = |c: char| c.is_whitespace() || "\"'{}[]\\=,".contains(c);
    if !s.is_empty() && !s.contains(special) {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The text of an info value, and a check that it reads back as the same type.
fn info_text(key: &str, v: &InfoValue) -> Result<String, String> {
    let (text, min_len) = match v {
        InfoValue::Str(s) => {
            if s.contains(['\n', '\r']) {
                return Err("a string with a line break".into());
            }
            // ASE reads `k=""` as an empty array and then glues the next pair onto it.
            if s.trim().is_empty() {
                return Err("an empty string, which ASE cannot read back".into());
            }
            if !matches!(classify(key, s), InfoValue::Str(_)) {
                return Err(format!(
                    "the string {s:?}, which would read back as a number or logical"
                ));
            }
            (s.clone(), 0)
        }
        InfoValue::Int(i) => (i.to_string(), 0),
        InfoValue::Float(x) => (F(*x).to_string(), 0),
        InfoValue::Bool(b) => (tf(*b).to_string(), 0),
        InfoValue::IntArray(a) => (join(a, |i| i.to_string()), a.len()),
        InfoValue::FloatArray(a) => (join(a, |x| F(*x).to_string()), a.len()),
        InfoValue::BoolArray(a) => (join(a, |b| tf(*b).to_string()), a.len()),
    };
    if matches!(
        v,
        InfoValue::IntArray(_) | InfoValue::FloatArray(_) | InfoValue::BoolArray(_)
    ) && min_len < 2
    {
        return Err(format!(
            "an array of {min_len} values, which would read back as a scalar or a string"
        ));
    }
    Ok(text)
}

/// Checks that `frame` can be written and read back unchanged.
fn check(frame: &Frame) -> Result<(), String> {
    let s = &frame.structure;
    let n = s.positions.len();
    if s.symbols.len() != n {
        return Err(format!("{} symbols for {n} positions", s.symbols.len()));
    }
    if !s.forces.is_empty() && s.forces.len() != n {
        return Err(format!("{} forces for {n} atoms", s.forces.len()));
    }
    for sym in &s.symbols {
        if atomic_number(sym).is_none() {
            return Err(format!("unknown element symbol {sym:?}"));
        }
    }
    fn finite(what: &str, xs: impl IntoIterator<Item = f64>) -> Result<(), String> {
        match xs.into_iter().find(|x| !x.is_finite()) {
            Some(x) => Err(format!("`{what}` holds a non-finite value {x}")),
            None => Ok(()),
        }
    }
    finite("pos", s.positions.iter().flatten().copied())?;
    finite("forces", s.forces.iter().flatten().copied())?;
    finite("Lattice", s.lattice.iter().flatten().flatten().copied())?;
    finite("energy", s.energy)?;
    finite("stress", frame.stress.iter().flatten().copied())?;
    finite("virial", frame.virial.iter().flatten().flatten().copied())?;
    let mut keys: Vec<&str> = Vec::new();
    for (k, v) in &frame.info {
        if RESERVED.contains(&k.as_str()) {
            return Err(format!("info key `{k}` is written from the typed field"));
        }
        if k.is_empty() || k.contains(['\n', '\r']) {
            return Err(format!("bad info key {k:?}"));
        }
        if keys.contains(&k.as_str()) {
            return Err(format!("info key `{k}` given twice"));
        }
        keys.push(k);
        info_text(k, v).map_err(|e| format!("info `{k}` is {e}"))?;
    }
    let mut names: Vec<&str> = Vec::new();
    for c in &frame.arrays {
        let name = c.name.as_str();
        let ok = !name.is_empty()
            && !name.contains(|ch: char| ch.is_whitespace() || "\"'{}[]\\=,:".contains(ch));
        if !ok {
            return Err(format!("bad column name {name:?}"));
        }
        if RESERVED_COLUMNS.contains(&name) || (name == "force" && s.forces.is_empty()) {
            return Err(format!(
                "column `{name}` would read back into the structure; put it there"
            ));
        }
        if names.contains(&name) {
            return Err(format!("column `{name}` given twice"));
        }
        names.push(name);
        if c.width == 0 || c.data.len() != c.width * n {
            return Err(format!(
                "column `{name}` holds {} values, {n} atoms × width {} needs {}",
                c.data.len(),
                c.width,
                c.width * n
            ));
        }
        if let ColumnData::Str(v) = &c.data {
            if let Some(t) = v
                .iter()
                .find(|t| t.is_empty() || t.contains(char::is_whitespace))
            {
                return Err(format!(
                    "column `{name}` holds {t:?} (empty or with whitespace)"
                ));
            }
        }
    }
    Ok(())
}

/// Writes one frame as ASE writes it (see the module docs). Refuses, naming the field, a
/// frame that would not read back unchanged.
pub fn write_frame<W: Write>(w: &mut W, frame: &Frame) -> Result<()> {
    check(frame).map_err(|e| anyhow!("cannot write extxyz frame: {e}"))?;
    let s = &frame.structure;
    let mut c = String::new();
    if let Some(l) = &s.lattice {
        let _ = write!(
            c,
            "Lattice=\"{}\" ",
            join(l.as_flattened(), |x| F(*x).to_string())
        );
    }
    c.push_str("Properties=species:S:1:pos:R:3");
    if !s.forces.is_empty() {
        c.push_str(":forces:R:3");
    }
    for col in &frame.arrays {
        let _ = write!(c, ":{}:{}:{}", col.name, col.data.type_code(), col.width);
    }
    for (k, v) in &frame.info {
        // `check` has vetted every value.
        let text = info_text(k, v).unwrap_or_default();
        let _ = write!(c, " {}={}", quote(k), quote(&text));
    }
    if let Some(e) = s.energy {
        let _ = write!(c, " energy={}", F(e));
    }
    if let Some([xx, yy, zz, yz, xz, xy]) = frame.stress {
        let m = [xx, xy, xz, xy, yy, yz, xz, yz, zz];
        let _ = write!(c, " stress=\"{}\"", join(&m, |x| F(*x).to_string()));
    }
    if let Some(m) = &frame.virial {
        // Fortran order, as ASE writes it: x[i + 3j] = m[i][j].
        let x: Vec<f64> = (0..3).flat_map(|j| (0..3).map(move |i| m[i][j])).collect();
        let _ = write!(c, " virial=\"{}\"", join(&x, |x| F(*x).to_string()));
    }
    let _ = write!(c, " pbc=\"{}\"", join(&frame.pbc, |b| tf(*b).to_string()));

    let mut out = String::with_capacity(c.len() + 64 * (s.positions.len() + 2));
    let _ = writeln!(out, "{}", s.positions.len());
    out.push_str(&c);
    out.push('\n');
    for (i, (sym, p)) in s.symbols.iter().zip(&s.positions).enumerate() {
        let _ = write!(
            out,
            "{sym:<2} {:>16} {:>16} {:>16}",
            F(p[0]),
            F(p[1]),
            F(p[2])
        );
        if let Some(f) = s.forces.get(i) {
            let _ = write!(out, " {:>16} {:>16} {:>16}", F(f[0]), F(f[1]), F(f[2]));
        }
        for col in &frame.arrays {
            let r = i * col.width..(i + 1) * col.width;
            match &col.data {
                ColumnData::Str(v) => v[r].iter().for_each(|t| {
                    let _ = write!(out, " {t}");
                }),
                ColumnData::Real(v) => v[r].iter().for_each(|x| {
                    let _ = write!(out, " {:>16}", F(*x));
                }),
                ColumnData::Int(v) => v[r].iter().for_each(|x| {
                    let _ = write!(out, " {x:>8}");
                }),
                ColumnData::Bool(v) => v[r].iter().for_each(|b| {
                    let _ = write!(out, " {}", tf(*b));
                }),
            }
        }
        out.push('\n');
    }
    w.write_all(out.as_bytes())
        .context("cannot write extxyz frame")
}

/// Writes `frames` to `path` atomically (see [`crate::io::write_atomic`]).
pub fn write_extxyz(path: &Path, frames: &[Frame]) -> Result<()> {
    let mut buf = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        write_frame(&mut buf, f).with_context(|| format!("{}: frame {k}", path.display()))?;
    }
    crate::io::write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_ase_quoting() {
        let p =
            split_pairs(r#" a=1 "b c"="x \"y\" z" d = {1 2 3} flag e=[T F] f='q r' g=a=b h=\"h"#)
                .unwrap();
        let want: Vec<(String, Option<String>)> = vec![
            ("a".into(), Some("1".into())),
            ("b c".into(), Some(r#"x "y" z"#.into())),
            ("d".into(), Some("1 2 3".into())),
            ("flag".into(), None),
            ("e".into(), Some("T F".into())),
            ("f".into(), Some("q r".into())),
            ("g".into(), Some("a=b".into())),
            ("h".into(), Some("\"h".into())),
        ];
        assert_eq!(p, want);
        assert!(split_pairs(r#"a="open"#)
            .unwrap_err()
            .contains("unterminated"));
        assert!(split_pairs("=3").unwrap_err().contains("without a key"));
    }

    #[test]
    fn values_typed_as_ase_types_them() {
        use InfoValue::*;
        assert_eq!(classify("k", "3"), Int(3));
        assert_eq!(classify("k", "3.0"), Float(3.0));
        assert_eq!(classify("k", "1,2, 3"), IntArray(vec![1, 2, 3]));
        assert_eq!(classify("k", "1 2.5"), FloatArray(vec![1.0, 2.5]));
        assert_eq!(classify("k", "99999999999999999999"), Float(1e20));
        assert_eq!(classify("k", "True"), Bool(true));
        assert_eq!(classify("k", "T F"), BoolArray(vec![true, false]));
        assert_eq!(classify("k", "t"), Str("t".into()));
        assert_eq!(classify("uid", "42"), Str("42".into()));
        assert_eq!(classify("k", ""), Str(String::new()));
    }

    #[test]
    fn floats_keep_their_type_and_bits() {
        for x in [3.0, -0.0, 1e300, 5e-324, 0.1 + 0.2, -1.5e-7] {
            let t = F(x).to_string();
            assert!(
                matches!(classify("k", &t), InfoValue::Float(y) if y.to_bits() == x.to_bits()),
                "{t}"
            );
        }
    }

    #[test]
    fn quoting_round_trips() {
        for s in [
            "plain",
            "two words",
            r#"q"uote"#,
            r"back\slash",
            "{b}",
            "",
            "a=b",
            "x,y",
        ] {
            let q = quote(s);
            let p = split_pairs(&format!("k={q}")).unwrap();
            assert_eq!(p[0].1.as_deref(), Some(s), "{q}");
        }
    }
}
