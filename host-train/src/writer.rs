//! The blob writer: the only way blobs are made. Layout in `docs/blob-format.md`; the constants
//! come from `mlff_core::blob` so reader and writer cannot drift apart.

use anyhow::{anyhow, bail, Context, Result};
use mlff_core::blob::{self, tag, ENDIAN_MARK, FORMAT_VERSION, HEADER_LEN, MAGIC, SECTION_ALIGN};
use mlff_core::blob::{SECTION_ENTRY, SPECIES_RECORD};

use crate::spec::{DescriptorSpec, KindSpec, ModelSpec};

/// Precision of the reals stored in a blob.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 4-byte reals (firmware, f32 inference).
    F32,
    /// 8-byte reals (host inference, training parity).
    F64,
}

impl Precision {
    /// Bytes per real.
    pub fn bytes(self) -> u8 {
        match self {
            Precision::F32 => 4,
            Precision::F64 => 8,
        }
    }
}

#[derive(Default)]
struct Builder {
    reals: Vec<f64>,
    index: Vec<u32>,
    groups: Vec<u8>,
    species: Vec<u8>,
    layers: Vec<u8>,
}

fn put_u32(v: &mut Vec<u8>, x: usize) -> Result<()> {
    let x = u32::try_from(x).context("blob field exceeds u32")?;
    v.extend_from_slice(&x.to_le_bytes());
    Ok(())
}

/// Group key: functions sharing kind, neighbour species, cutoff (or compact) function and
/// radius.
#[derive(PartialEq, Eq, Hash, Clone, Copy)]
struct GroupKey {
    kind: KindSpec,
    /// The group record's cutoff byte: the cutoff-function code, or for the polynomial kinds
    /// the compact-function code (`mlff_core::descriptor::compact::CompactKind`).
    cutoff: u8,
    e1: usize,
    e2: usize,
    rc: u64,
    alpha: u64,
}

/// The group key of descriptor `d`: neighbour species normalised (e1 ≤ e2 for angular kinds,
/// 0xFF where unused), cutoff byte, r_c and α (0 for the polynomial kinds, which ignore it).
fn group_key(d: &DescriptorSpec) -> GroupKey {
    let (e1, e2) = if d.kind.is_weighted() {
        (0xFF, 0xFF)
    } else if d.kind.is_angular() {
        (d.e1.min(d.e2), d.e1.max(d.e2))
    } else {
        (d.e1, 0xFF)
    };
    let (cutoff, alpha) = if d.kind.is_polynomial() {
        (d.compact().code(), 0.0f64)
    } else {
        (d.cutoff.core().code(), d.alpha)
    };
    GroupKey {
        kind: d.kind,
        cutoff,
        e1,
        e2,
        rc: d.rc.to_bits(),
        alpha: alpha.to_bits(),
    }
}

/// Degrees to radians as n2p2 computes it (angle · π / 180).
fn radians(deg: f64) -> f64 {
    deg * std::f64::consts::PI / 180.0
}

/// The blob's parameter lanes of `d`, in lane order (the first `n_params()` are stored):
/// η, r_s, ζ, λ for the Gaussian kinds; r_l, θ_left, θ_right (radians) for the polynomial ones.
fn lanes(d: &DescriptorSpec) -> [f64; 4] {
    if d.kind.is_polynomial() {
        [d.rl, radians(d.angle_left), radians(d.angle_right), 0.0]
    } else {
        [d.eta, d.rs, d.zeta, d.lambda]
    }
}

/// Serialises `spec` into a blob whose reals are stored in `precision`.
pub fn write_blob(spec: &ModelSpec, precision: Precision) -> Result<Vec<u8>> {
    spec.check()?;
    let mut b = Builder::default();
    let globals = b.reals.len();
    b.reals.extend_from_slice(&[
        spec.energy_scale,
        spec.energy_shift,
        spec.cutoff(),
        spec.source_length_unit,
        spec.source_energy_unit,
    ]);
    for s in &spec.species {
        // Group the descriptors, keeping first-appearance order of groups and of functions.
        let mut keys: Vec<GroupKey> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (f, d) in s.descriptors.iter().enumerate() {
            let key = group_key(d);
            match keys.iter().position(|k| *k == key) {
                Some(g) => members[g].push(f),
                None => {
                    keys.push(key);
                    members.push(vec![f]);
                }
            }
        }
        let group_start = b.groups.len() / mlff_core::descriptor::GROUP_RECORD;
        for (key, fs) in keys.iter().zip(&members) {
            let kind = key.kind.core();
            let r0 = b.reals.len();
            b.reals.push(f64::from_bits(key.rc));
            b.reals.push(f64::from_bits(key.alpha));
            for lane in 0..kind.n_params() {
                b.reals
                    .extend(fs.iter().map(|&f| lanes(&s.descriptors[f])[lane]));
            }
            let i0 = b.index.len();
            for &f in fs {
                b.index.push(u32::try_from(f)?);
            }
            b.groups.push(kind.code());
            b.groups.push(key.cutoff);
            b.groups.push(key.e1 as u8);
            b.groups.push(key.e2 as u8);
            put_u32(&mut b.groups, fs.len())?;
            put_u32(&mut b.groups, r0)?;
            put_u32(&mut b.groups, i0)?;
            b.groups.extend_from_slice(&[0u8; 8]);
        }
        let sr = b.reals.len();
        b.reals.push(s.reference_energy);
        let nf = s.descriptors.len();
        let scaling = |k: usize, f: usize| {
            let a = s
                .scaling
                .get(f)
                .copied()
                .unwrap_or(crate::spec::Affine::IDENTITY);
            [a.sub, a.mul, a.add][k]
        };
        for k in 0..3 {
            b.reals.extend((0..nf).map(|f| scaling(k, f)));
        }
        let layer_start = b.layers.len() / blob::LAYER_RECORD;
        for l in &s.layers {
            let off = b.reals.len();
            b.reals.extend_from_slice(&l.weights);
            b.reals.extend_from_slice(&l.biases);
            put_u32(&mut b.layers, l.n_in)?;
            put_u32(&mut b.layers, l.n_out)?;
            b.layers.push(l.activation.core().code());
            b.layers.push(if l.normalize {
                blob::LAYER_NORMALIZE
            } else {
                0
            });
            b.layers.extend_from_slice(&[0, 0]);
            put_u32(&mut b.layers, off)?;
        }
        let rec_start = b.species.len();
        put_u32(&mut b.species, usize::from(s.z))?;
        put_u32(&mut b.species, nf)?;
        put_u32(&mut b.species, group_start)?;
        put_u32(&mut b.species, keys.len())?;
        put_u32(&mut b.species, layer_start)?;
        put_u32(&mut b.species, s.layers.len())?;
        put_u32(&mut b.species, sr)?;
        put_u32(&mut b.species, 0)?;
        debug_assert_eq!(b.species.len() - rec_start, SPECIES_RECORD);
    }
    let mut model = Vec::new();
    for x in [
        spec.species.len(),
        b.groups.len() / mlff_core::descriptor::GROUP_RECORD,
        b.layers.len() / blob::LAYER_RECORD,
        b.index.len(),
        b.reals.len(),
        spec.scaling_mode.code() as usize,
        globals,
        0,
    ] {
        put_u32(&mut model, x)?;
    }
    let mut index = Vec::with_capacity(4 * b.index.len());
    for i in &b.index {
        index.extend_from_slice(&i.to_le_bytes());
    }
    if precision == Precision::F32 {
        if let Some(k) = b
            .reals
            .iter()
            .position(|x| x.is_nan() || x.abs() > f64::from(f32::MAX))
        {
            bail!(
                "value {} (real #{k}) does not fit in f32; write an f64 blob",
                b.reals[k]
            );
        }
    }
    let mut reals = Vec::with_capacity(8 * b.reals.len());
    for &x in &b.reals {
        match precision {
            Precision::F64 => reals.extend_from_slice(&x.to_le_bytes()),
            Precision::F32 => reals.extend_from_slice(&(x as f32).to_le_bytes()),
        }
    }
    let sections: [([u8; 4], &[u8]); 7] = [
        (tag::MODEL, &model),
        (tag::SPECIES, &b.species),
        (tag::GROUPS, &b.groups),
        (tag::LAYERS, &b.layers),
        (tag::INDEX, &index),
        (tag::TEXT, spec.text.as_bytes()),
        (tag::REALS, &reals),
    ];
    let mut out = vec![0u8; HEADER_LEN + SECTION_ENTRY * sections.len()];
    let mut table = Vec::new();
    for (t, data) in sections {
        while out.len() % SECTION_ALIGN != 0 {
            out.push(0);
        }
        table.extend_from_slice(&t);
        put_u32(&mut table, out.len())?;
        put_u32(&mut table, data.len())?;
        put_u32(&mut table, 0)?;
        out.extend_from_slice(data);
    }
    while out.len() % SECTION_ALIGN != 0 {
        out.push(0);
    }
    out[HEADER_LEN..HEADER_LEN + table.len()].copy_from_slice(&table);
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[10..12].copy_from_slice(&ENDIAN_MARK.to_le_bytes());
    out[12] = precision.bytes();
    let total = out.len();
    out[16..20].copy_from_slice(&u32::try_from(total)?.to_le_bytes());
    out[20..24].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    let crc = blob::checksum(&out);
    out[blob::CRC_OFFSET..blob::CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    // The core is the judge: a blob it would refuse is never handed out.
    let mut storage = vec![0.0f64; b.reals.len()];
    mlff_core::Model::<f64>::from_blob_in(&out, &mut storage)
        .map_err(|e| anyhow!("internal error: the written blob does not validate: {e}"))?;
    Ok(out)
}

/// Recomputes and stores the checksum of a blob (for tests that build damaged blobs on purpose).
pub fn reseal(blob_bytes: &mut [u8]) {
    let crc = blob::checksum(blob_bytes);
    if let Some(c) = blob_bytes.get_mut(blob::CRC_OFFSET..blob::CRC_OFFSET + 4) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{generated_set, random_model};
    use crate::spec::ActivationSpec;

    fn spec() -> ModelSpec {
        let set = generated_set(&["H", "O"], 4.0, 3, 1, &[4], ActivationSpec::Tanh).unwrap();
        random_model(&set, 3)
    }

    #[test]
    fn refuses_what_the_core_would_refuse() {
        let mut s = spec();
        s.species[1].layers[0].weights[2] = f64::NAN;
        let e = write_blob(&s, Precision::F64).unwrap_err().to_string();
        assert!(
            e.contains("species O layer 0") && e.contains("finite"),
            "{e}"
        );
        let mut s = spec();
        s.species[0].layers[1].biases[0] = 1e300;
        let e = write_blob(&s, Precision::F32).unwrap_err().to_string();
        assert!(e.contains("does not fit in f32"), "{e}");
        assert!(write_blob(&s, Precision::F64).is_ok());
        let mut s = spec();
        s.species[0].z = 0;
        assert!(write_blob(&s, Precision::F64)
            .unwrap_err()
            .to_string()
            .contains("1..=118"));
        let mut s = spec();
        s.species[0].descriptors[0].e1 = 5;
        assert!(write_blob(&s, Precision::F64)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
    }

    #[test]
    fn groups_share_cutoff_and_species() {
        let b = write_blob(&spec(), Precision::F64).unwrap();
        let mut storage = vec![0.0; mlff_core::Model::<f64>::reals_needed(&b).unwrap()];
        let m = mlff_core::Model::<f64>::from_blob_in(&b, &mut storage).unwrap();
        // Per species: 2 neighbour species × 3 radial + 3 pairs × 2 η × 1 ζ × 2 λ angular.
        assert_eq!(m.n_features(0), Some(2 * 3 + 3 * 2 * 2));
        let sections = mlff_core::blob::parse(&b).unwrap();
        assert_eq!(
            sections.groups.len() / mlff_core::descriptor::GROUP_RECORD,
            2 * 5
        );
    }
}
