// scratch: time neighbour search alone
use mlff_core::*;
use std::time::Instant;
fn cpu_ns() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap()
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&a[1]).unwrap();
    let blob = mlff_train::io::AlignedBlob::new(&bytes);
    let model = Model::<f64>::from_blob(blob.bytes()).unwrap();
    let mut s = mlff_train::structure::read_input_data(std::path::Path::new(&a[2]))
        .unwrap()
        .remove(0);
    s.convert_units(mlff_train::n2p2::BOHR, 1.0);
    let species: Vec<u8> = s
        .symbols
        .iter()
        .map(|x| {
            if x == "H" {
                model.species_index(1).unwrap()
            } else {
                model.species_index(8).unwrap()
            }
        })
        .collect();
    let n = s.positions.len();
    let sys = System {
        positions: &s.positions,
        species: &species,
        cell: s.lattice.map(Cell::periodic),
    };
    let cs = CellListSize::new(model.n_species(), n);
    let (mut r, mut i) = (vec![0.0; cs.reals], vec![0u32; cs.indices]);
    let cap = 256;
    let (mut nr, mut ni) = (vec![0.0; 12 * cap], vec![0u32; 3 * cap]);
    let mut set = NeighborSet::new(cap, &mut nr, &mut ni).unwrap();
    let mut ts = vec![];
    let mut cs = vec![];
    for rep in 0..30 {
        let t0 = Instant::now();
        let cells = model.cell_list(&sys, &mut r, &mut i).unwrap();
        let t1 = Instant::now();
        let c1 = cpu_ns();
        let mut tot = 0usize;
        for at in 0..n {
            cells.neighbors_of(at, &mut set).unwrap();
            tot += set.len();
        }
        let t2 = Instant::now();
        let c2 = cpu_ns();
        cs.push((c2 - c1) * 1e-3 / n as f64);
        ts.push((t2 - t1).as_secs_f64() * 1e6 / n as f64);
        if rep == 0 {
            println!(
                "rep {rep}: grid {:?} build {:.3} us/atom, search {:.3} us/atom, mean nb {:.1}",
                cells.grid(),
                (t1 - t0).as_secs_f64() * 1e6 / n as f64,
                (t2 - t1).as_secs_f64() * 1e6 / n as f64,
                tot as f64 / n as f64
            );
        }
    }
    //println!("scanned/atom {:.1} spans/atom {:.1}", mlff_core::neighbors::SCANNED.load(std::sync::atomic::Ordering::Relaxed) as f64 / (30.0 * n as f64), mlff_core::neighbors::SPANS.load(std::sync::atomic::Ordering::Relaxed) as f64 / (30.0 * n as f64));
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "cpu us/atom: min {:.3} median {:.3}",
        cs[0],
        cs[cs.len() / 2]
    );
    println!(
        "search us/atom: min {:.3} median {:.3}",
        ts[0],
        ts[ts.len() / 2]
    );
}
