//! Integration metrics: the scIB suite as scib-metrics 0.5.10 defines it, and the seed papers'
//! metrics. Every metric takes an embedding (`DenseMatrix`, cells x dims) or a kNN graph
//! computed once per embedding, and per-cell group codes (`&[u32]`).

pub mod accuracy;
pub mod batch_entropy;
pub mod clustering;
pub mod diffusion;
pub mod graph_connectivity;
pub mod isolated_labels;
pub mod kbet;
pub mod knn_purity;
pub mod lisi;
pub mod local_mixing;
pub mod mutual_information;
pub mod nmi_ari;
pub mod pairwise;
pub mod pcr;
pub mod scib;
pub mod silhouette;
pub mod umap_graph;

use crate::error::{Error, Result};

/// Per-cell group codes recoded to `0..n_groups` in order of first code value, with the
/// members of each group. Codes that no cell uses do not count as groups (scib-metrics counts
/// the levels present, `np.unique`).
#[derive(Debug, Clone)]
pub struct Groups {
    pub codes: Vec<u32>,
    pub n_groups: usize,
    pub counts: Vec<usize>,
}

impl Groups {
    pub fn new(codes: &[u32], arg: &str) -> Result<Self> {
        if codes.is_empty() {
            return Err(Error::invalid(arg, "has no cells"));
        }
        let max = *codes.iter().max().unwrap_or(&0) as usize;
        let mut present = vec![false; max + 1];
        for &c in codes {
            present[c as usize] = true;
        }
        let mut dense = vec![u32::MAX; max + 1];
        let mut n_groups = 0u32;
        for (code, &p) in present.iter().enumerate() {
            if p {
                dense[code] = n_groups;
                n_groups += 1;
            }
        }
        let codes: Vec<u32> = codes.iter().map(|&c| dense[c as usize]).collect();
        let mut counts = vec![0usize; n_groups as usize];
        for &c in &codes {
            counts[c as usize] += 1;
        }
        Ok(Self {
            codes,
            n_groups: n_groups as usize,
            counts,
        })
    }

    /// Cell indices of each group, in cell order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = self.counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        for (i, &c) in self.codes.iter().enumerate() {
            out[c as usize].push(i);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The codes of the cells `rows`, recoded to the groups present among them.
    pub fn subset(&self, rows: &[usize]) -> Groups {
        let sub: Vec<u32> = rows.iter().map(|&r| self.codes[r]).collect();
        Groups::new(&sub, "codes").expect("a non-empty subset of valid codes")
    }
}

/// Checks that `codes` has one entry per cell.
pub(crate) fn check_len<T>(codes: &[T], n_cells: usize, arg: &str) -> Result<()> {
    if codes.len() != n_cells {
        return Err(Error::invalid(
            arg,
            format!("has {} values but there are {n_cells} cells", codes.len()),
        ));
    }
    Ok(())
}

/// Mean of the finite values (NaN when there is none), like `np.nanmean`.
pub(crate) fn nan_mean(values: &[f64]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Median of the non-NaN values (mean of the two middle ones for an even count), like
/// `np.nanmedian`.
pub(crate) fn nan_median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
pub(crate) mod test_data {
    //! Small synthetic embeddings and the shared Kang fixture for the metric tests.
    use crate::data::DenseMatrix;
    use rand::{RngExt, SeedableRng};
    use rand_distr::{Distribution, Normal};
    use std::io::Read;

    /// `n_per` cells around each of `centres` (rows of a `k x d` matrix) with unit noise.
    pub fn blobs(
        centres: &[Vec<f64>],
        n_per: usize,
        sd: f64,
        seed: u64,
    ) -> (DenseMatrix, Vec<u32>) {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let normal = Normal::new(0.0, sd).unwrap();
        let d = centres[0].len();
        let mut data = Vec::with_capacity(centres.len() * n_per * d);
        let mut codes = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..n_per {
                data.extend(centre.iter().map(|m| m + normal.sample(&mut rng)));
                codes.push(c as u32);
            }
        }
        (DenseMatrix::new(codes.len(), d, data).unwrap(), codes)
    }

    /// Random codes in `0..k`.
    pub fn random_codes(n: usize, k: u32, seed: u64) -> Vec<u32> {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(0..k)).collect()
    }

    pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut p: Vec<usize> = (0..n).collect();
        p.shuffle(&mut rng);
        p
    }

    fn fixture_path(name: &str) -> std::path::PathBuf {
        // Read at run time: a test binary built from another clone sharing the target dir
        // would otherwise look in that clone.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        std::path::Path::new(&manifest_dir)
            .join("../../../tests/fixtures/metrics")
            .join(name)
    }

    fn read_gz(name: &str) -> String {
        let file = std::fs::File::open(fixture_path(name)).expect("fixture file");
        let mut s = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// The Kang fixture: batch codes, label codes (levels sorted like pandas categories).
    pub struct Kang {
        pub batch: Vec<u32>,
        pub labels: Vec<u32>,
    }

    pub fn kang_cells() -> Kang {
        let text = read_gz("cells.tsv.gz");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        let code = |col: usize| -> Vec<u32> {
            let mut levels: Vec<&str> = rows.iter().map(|r| r[col]).collect();
            levels.sort_unstable();
            levels.dedup();
            rows.iter()
                .map(|r| levels.binary_search(&r[col]).unwrap() as u32)
                .collect()
        };
        Kang {
            batch: code(1),
            labels: code(2),
        }
    }

    /// An embedding of the fixture, rows in cells.tsv order.
    pub fn kang_embedding(name: &str) -> DenseMatrix {
        let text = read_gz(&format!("{name}.tsv.gz"));
        let mut lines = text.lines();
        let d = lines.next().unwrap().split('\t').count() - 1;
        let mut data = Vec::new();
        let mut n = 0;
        for l in lines {
            data.extend(l.split('\t').skip(1).map(|v| v.parse::<f64>().unwrap()));
            n += 1;
        }
        DenseMatrix::new(n, d, data).unwrap()
    }

    /// scib-metrics' value of `column` for embedding `row` in scib_metrics.csv.
    pub fn kang_reference(row: &str, column: &str) -> f64 {
        let text = std::fs::read_to_string(fixture_path("scib_metrics.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == column).expect("column");
        let line = lines
            .find(|l| l.split(',').next() == Some(row))
            .expect("row");
        line.split(',').nth(col).unwrap().parse().unwrap()
    }
}
