//! k-means: k-means++ seeding with greedy local trials (2 + ln k candidates per centre, as in
//! scikit-learn and scib-metrics), then Lloyd iterations until no cell changes cluster. Several
//! seeded starts run in parallel; the one with the lowest inertia wins.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::data::DenseMatrix;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct KMeansConfig {
    /// Independent starts; the lowest inertia is kept.
    pub n_init: usize,
    pub max_iter: usize,
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            n_init: 10,
            max_iter: 300,
            seed: 0,
        }
    }
}

/// Cluster of every row of `x` (0..k) and the inertia (sum of squared distances to centres)
/// of the best of `n_init` runs.
pub fn kmeans(x: &DenseMatrix, k: usize, config: &KMeansConfig) -> Result<(Vec<u32>, f64)> {
    let runs = kmeans_runs(x, k, config)?;
    Ok(runs
        .into_iter()
        .enumerate()
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1).then(a.0.cmp(&b.0)))
        .map(|(_, r)| r)
        .expect("at least one run"))
}

/// Every one of the `n_init` independent runs (clusters, inertia), in run order.
pub fn kmeans_runs(
    x: &DenseMatrix,
    k: usize,
    config: &KMeansConfig,
) -> Result<Vec<(Vec<u32>, f64)>> {
    if k == 0 || k > x.n_rows {
        return Err(Error::invalid(
            "k",
            format!(
                "must be between 1 and the number of cells ({}), not {k}",
                x.n_rows
            ),
        ));
    }
    Ok((0..config.n_init.max(1))
        .into_par_iter()
        .map(|run| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                config.seed.wrapping_add(run as u64 * 0x9E37_79B9),
            );
            let centres = plus_plus(x, k, &mut rng);
            lloyd(x, centres, k, config.max_iter)
        })
        .collect())
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index drawn with probability proportional to `weights` (uniform when all are zero).
fn draw(weights: &[f64], total: f64, rng: &mut Xoshiro256PlusPlus) -> usize {
    if !(total > 0.0) {
        return rng.random_range(0..weights.len());
    }
    let mut target = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        target -= w;
        if target < 0.0 {
            return i;
        }
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

fn plus_plus(x: &DenseMatrix, k: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let n = x.n_rows;
    let d = x.n_cols;
    let trials = 2 + (k as f64).ln() as usize;
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centres.extend_from_slice(x.row(first));
    let mut closest: Vec<f64> = (0..n).map(|i| sq_dist(x.row(i), x.row(first))).collect();
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let cand = draw(&closest, total, rng);
            let updated: Vec<f64> = closest
                .par_iter()
                .enumerate()
                .map(|(i, &c)| c.min(sq_dist(x.row(i), x.row(cand))))
                .collect();
            let potential: f64 = updated.iter().sum();
            if best.as_ref().is_none_or(|b| potential < b.0) {
                best = Some((potential, cand, updated));
            }
        }
        let (_, cand, updated) = best.expect("at least one trial");
        centres.extend_from_slice(x.row(cand));
        closest = updated;
    }
    centres
}

fn lloyd(x: &DenseMatrix, mut centres: Vec<f64>, k: usize, max_iter: usize) -> (Vec<u32>, f64) {
    let n = x.n_rows;
    let d = x.n_cols;
    let mut assignment = vec![u32::MAX; n];
    let mut inertia = 0.0;
    for _ in 0..max_iter.max(1) {
        let nearest: Vec<(u32, f64)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let row = x.row(i);
                let mut best = (0u32, f64::INFINITY);
                for c in 0..k {
                    let dist = sq_dist(row, &centres[c * d..(c + 1) * d]);
                    if dist < best.1 {
                        best = (c as u32, dist);
                    }
                }
                best
            })
            .collect();
        let changed = nearest.iter().zip(&assignment).any(|(a, b)| a.0 != *b);
        inertia = nearest.iter().map(|a| a.1).sum();
        for (a, b) in assignment.iter_mut().zip(&nearest) {
            *a = b.0;
        }
        if !changed {
            break;
        }
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (i, &c) in assignment.iter().enumerate() {
            counts[c as usize] += 1;
            for (s, v) in sums[c as usize * d..(c as usize + 1) * d]
                .iter_mut()
                .zip(x.row(i))
            {
                *s += v;
            }
        }
        for c in 0..k {
            // An emptied cluster keeps its centre.
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = sums[c * d + j] / counts[c] as f64;
                }
            }
        }
    }
    (assignment, inertia)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::nmi_ari::ari;
    use crate::metrics::test_data::*;

    #[test]
    fn recovers_separated_blobs_deterministically() {
        let (x, truth) = blobs(
            &[
                vec![0.0, 0.0],
                vec![8.0, 0.0],
                vec![0.0, 8.0],
                vec![8.0, 8.0],
            ],
            50,
            1.0,
            1,
        );
        let cfg = KMeansConfig::default();
        let (labels, inertia) = kmeans(&x, 4, &cfg).unwrap();
        assert!((ari(&labels, &truth).unwrap() - 1.0).abs() < 1e-12);
        assert!(inertia > 0.0);
        assert_eq!(kmeans(&x, 4, &cfg).unwrap().0, labels);
        assert!(kmeans(&x, 0, &cfg).is_err());
    }
}
