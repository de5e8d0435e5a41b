//! Atomic structures in host memory, and the n2p2 `input.data` reader.
//!
//! The extended-XYZ reader and a hardened `input.data` path with streaming come with the I/O
//! work; this reader is complete for the format (several structures per file, optional lattice,
//! leading whitespace) and reports errors with file and line.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// One structure. Units as in the file unless converted by the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Structure {
    /// Free comment.
    pub comment: String,
    /// Lattice vectors as rows, if periodic.
    pub lattice: Option<[[f64; 3]; 3]>,
    /// Element symbols.
    pub symbols: Vec<String>,
    /// Cartesian positions.
    pub positions: Vec<[f64; 3]>,
    /// Reference forces, if given.
    pub forces: Vec<[f64; 3]>,
    /// Reference energy, if given.
    pub energy: Option<f64>,
    /// Lattice axes that are not periodic (a slab's vacuum direction: extended XYZ `pbc="T T F"`).
    /// Without a lattice every axis is open whatever this says.
    pub open: [bool; 3],
}

impl Structure {
    /// Periodicity along each lattice vector: periodic where there is a lattice and the axis is
    /// not [`Structure::open`].
    pub fn pbc(&self) -> [bool; 3] {
        let periodic = self.lattice.is_some();
        self.open.map(|open| periodic && !open)
    }

    /// Multiplies positions and lattice by `factor` (e.g. Bohr → Å), forces by `1/factor` times
    /// `energy_factor`, and the energy by `energy_factor`.
    pub fn convert_units(&mut self, length: f64, energy: f64) {
        for p in &mut self.positions {
            p.iter_mut().for_each(|x| *x *= length);
        }
        if let Some(l) = &mut self.lattice {
            l.iter_mut().flatten().for_each(|x| *x *= length);
        }
        for f in &mut self.forces {
            f.iter_mut().for_each(|x| *x *= energy / length);
        }
        if let Some(e) = &mut self.energy {
            *e *= energy;
        }
    }
}

impl Structure {
    /// The `reps[0] × reps[1] × reps[2]` supercell of a periodic structure (LAMMPS's
    /// `replicate`): lattice vectors scaled, atoms copied image by image (a outermost, c
    /// innermost, the original order within each image). Reference energy and forces are
    /// replicated too (the energy multiplied by the number of images).
    pub fn replicate(&self, reps: [usize; 3]) -> Result<Structure> {
        let Some(l) = self.lattice else {
            bail!("cannot replicate a structure without a lattice");
        };
        if reps.contains(&0) {
            bail!("replication counts must be at least 1, got {reps:?}");
        }
        let images = reps[0] * reps[1] * reps[2];
        let mut out = Structure {
            comment: self.comment.clone(),
            lattice: Some(core::array::from_fn(|k| l[k].map(|x| x * reps[k] as f64))),
            energy: self.energy.map(|e| e * images as f64),
            open: self.open,
            ..Structure::default()
        };
        for a in 0..reps[0] {
            for b in 0..reps[1] {
                for c in 0..reps[2] {
                    let t: [f64; 3] = core::array::from_fn(|x| {
                        a as f64 * l[0][x] + b as f64 * l[1][x] + c as f64 * l[2][x]
                    });
                    out.symbols.extend(self.symbols.iter().cloned());
                    out.positions.extend(
                        self.positions
                            .iter()
                            .map(|p| [0, 1, 2].map(|x| p[x] + t[x])),
                    );
                    out.forces.extend(self.forces.iter().copied());
                }
            }
        }
        Ok(out)
    }
}

/// Parses a finite number for field `field` at `file:line` (missing, non-numeric and NaN/∞
/// values are errors naming the field).
pub(crate) fn num(tok: Option<&str>, file: &str, line: usize, field: &str) -> Result<f64> {
    let t = tok.with_context(|| format!("{file}:{line}: missing field `{field}`"))?;
    let v: f64 = t
        .parse()
        .with_context(|| format!("{file}:{line}: field `{field}` is not a number: {t:?}"))?;
    if !v.is_finite() {
        bail!("{file}:{line}: field `{field}` is not finite: {t:?}");
    }
    Ok(v)
}

/// A streaming reader of n2p2 `input.data`: yields one structure at a time, reading the
/// source line by line (training sets can be far larger than memory). Stops after an error.
pub struct InputDataReader<R> {
    src: R,
    name: String,
    line: usize,
    buf: String,
    done: bool,
}

impl InputDataReader<std::io::BufReader<std::fs::File>> {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self::new(
            std::io::BufReader::new(f),
            path.display().to_string(),
        ))
    }
}

impl<R: std::io::BufRead> InputDataReader<R> {
    /// Reads from `src`; `name` names it in errors.
    pub fn new(src: R, name: impl Into<String>) -> Self {
        InputDataReader {
            src,
            name: name.into(),
            line: 0,
            buf: String::new(),
            done: false,
        }
    }

    fn next_structure(&mut self) -> Result<Option<Structure>> {
        let file = self.name.clone();
        let file = file.as_str();
        let mut cur: Option<(Structure, Vec<[f64; 3]>, usize)> = None;
        loop {
            self.buf.clear();
            let n = self
                .src
                .read_line(&mut self.buf)
                .with_context(|| format!("{file}:{}: read error", self.line + 1))?;
            if n == 0 {
                if let Some((_, _, start)) = cur {
                    bail!("{file}:{start}: structure not closed by `end` (file truncated?)");
                }
                return Ok(None);
            }
            self.line += 1;
            let line = self.line;
            let raw = self.buf.as_str();
            let mut tok = raw.split_whitespace();
            let Some(key) = tok.next() else { continue };
            match key {
                "begin" => {
                    if cur.is_some() {
                        bail!("{file}:{line}: `begin` inside a structure (missing `end`)");
                    }
                    cur = Some((Structure::default(), Vec::new(), line));
                }
                "end" => {
                    let Some((mut s, lat, start)) = cur.take() else {
                        bail!("{file}:{line}: `end` without `begin`");
                    };
                    match lat.len() {
                        0 => {}
                        3 => s.lattice = Some([lat[0], lat[1], lat[2]]),
                        n => bail!("{file}:{start}: structure has {n} lattice lines (need 0 or 3)"),
                    }
                    if s.positions.is_empty() {
                        bail!("{file}:{start}: structure has no atoms");
                    }
                    return Ok(Some(s));
                }
                _ => {
                    let Some((s, lat, _)) = cur.as_mut() else {
                        bail!("{file}:{line}: `{key}` outside begin/end");
                    };
                    parse_field(key, raw, &mut tok, s, lat, file, line)?;
                }
            }
        }
    }
}

impl<R: std::io::BufRead> Iterator for InputDataReader<R> {
    type Item = Result<Structure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_structure().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// One line inside begin/end.
fn parse_field<'a>(
    key: &str,
    raw: &str,
    tok: &mut impl Iterator<Item = &'a str>,
    s: &mut Structure,
    lat: &mut Vec<[f64; 3]>,
    file: &str,
    line: usize,
) -> Result<()> {
    match key {
        "comment" => {
            s.comment = raw
                .trim_start()
                .trim_start_matches("comment")
                .trim()
                .to_string()
        }
        "lattice" => {
            let mut v = [0.0; 3];
            for (c, name) in v.iter_mut().zip(["ax", "ay", "az"]) {
                *c = num(tok.next(), file, line, name)?;
            }
            lat.push(v);
        }
        "atom" => {
            let mut p = [0.0; 3];
            for (c, name) in p.iter_mut().zip(["x", "y", "z"]) {
                *c = num(tok.next(), file, line, name)?;
            }
            let sym = tok
                .next()
                .with_context(|| format!("{file}:{line}: missing field `element`"))?;
            if crate::elements::atomic_number(sym).is_none() {
                bail!("{file}:{line}: unknown element {sym:?}");
            }
            num(tok.next(), file, line, "charge")?;
            num(tok.next(), file, line, "n")?;
            let mut f = [0.0; 3];
            for (c, name) in f.iter_mut().zip(["fx", "fy", "fz"]) {
                *c = num(tok.next(), file, line, name)?;
            }
            s.symbols.push(sym.to_string());
            s.positions.push(p);
            s.forces.push(f);
        }
        "energy" => s.energy = Some(num(tok.next(), file, line, "energy")?),
        "charge" => {
            num(tok.next(), file, line, "charge")?;
        }
        other => bail!("{file}:{line}: unknown keyword `{other}`"),
    }
    Ok(())
}

/// Parses n2p2 `input.data` text; `file` names the source in errors.
pub fn parse_input_data(text: &str, file: &str) -> Result<Vec<Structure>> {
    InputDataReader::new(text.as_bytes(), file).collect()
}

/// Reads an n2p2 `input.data` file.
pub fn read_input_data(path: &Path) -> Result<Vec<Structure>> {
    InputDataReader::open(path)?.collect()
}

/// Writes structures in n2p2 `input.data` format.
pub fn format_input_data(structures: &[Structure]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for st in structures {
        let _ = writeln!(s, "begin");
        if !st.comment.is_empty() {
            let _ = writeln!(s, "comment {}", st.comment);
        }
        if let Some(l) = st.lattice {
            for v in l {
                let _ = writeln!(s, "lattice {:.10} {:.10} {:.10}", v[0], v[1], v[2]);
            }
        }
        for (i, (p, sym)) in st.positions.iter().zip(&st.symbols).enumerate() {
            let f = st.forces.get(i).copied().unwrap_or([0.0; 3]);
            let _ = writeln!(
                s,
                "atom {:.10} {:.10} {:.10} {sym} 0.0 0.0 {:.10} {:.10} {:.10}",
                p[0], p[1], p[2], f[0], f[1], f[2]
            );
        }
        let _ = writeln!(s, "energy {:.10}", st.energy.unwrap_or(0.0));
        let _ = writeln!(s, "charge 0.0");
        let _ = writeln!(s, "end");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = " begin\ncomment a test\nlattice 5 0 0\nlattice 0 5 0\nlattice 0 0 5\n\
        atom 0 0 0 O 0 0 0.1 0.2 0.3\natom 1 0 0 H 0 0 0 0 0\nenergy -1.5\ncharge 0\nend\n";

    #[test]
    fn reads_and_round_trips() {
        let s = parse_input_data(ONE, "t").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].symbols, ["O", "H"]);
        assert_eq!(s[0].forces[0], [0.1, 0.2, 0.3]);
        assert_eq!(s[0].energy, Some(-1.5));
        assert_eq!(s[0].lattice.unwrap()[1], [0.0, 5.0, 0.0]);
        let again = parse_input_data(&format_input_data(&s), "t2").unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = ONE.replace("atom 1 0 0 H", "atom 1 x 0 H");
        let e = format!("{:#}", parse_input_data(&bad, "f.data").unwrap_err());
        assert!(e.contains("f.data:7") && e.contains("`y`"), "{e}");
        let trunc = &ONE[..ONE.find("energy").unwrap()];
        let e = format!("{:#}", parse_input_data(trunc, "f.data").unwrap_err());
        assert!(e.contains("f.data:1") && e.contains("not closed"), "{e}");
        let short = ONE.replace("0.1 0.2 0.3", "0.1 0.2");
        let e = format!("{:#}", parse_input_data(&short, "f.data").unwrap_err());
        assert!(e.contains("f.data:6") && e.contains("`fz`"), "{e}");
    }
}
