//! Approximate kNN by nearest-neighbour descent (Dong, Moses & Li 2011; the algorithm of
//! pynndescent, which scib-metrics itself uses): start from random neighbour lists and
//! repeatedly compare each cell's neighbours with each other ("a neighbour of a neighbour is
//! likely a neighbour"), sampling at most `max_candidates` new and old candidates per cell, until
//! fewer than `delta * n * k` lists change. Cost ~ n * max_candidates^2 * d per iteration instead
//! of n^2 d. Sampling is seeded per cell and updates are applied in cell order, so the result
//! does not depend on the number of threads.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use super::{KnnGraph, euclidean};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// Cells whose local joins run at once (bounds the memory of pending updates).
const JOIN_CHUNK: usize = 4096;

#[derive(Debug, Clone)]
pub struct DescentConfig {
    pub max_iterations: usize,
    /// Candidates sampled per cell and iteration (pynndescent's `max_candidates`).
    pub max_candidates: usize,
    /// Stop when fewer than `delta * n * k` neighbour slots changed in an iteration.
    pub delta: f64,
    pub seed: u64,
}

impl Default for DescentConfig {
    fn default() -> Self {
        Self {
            max_iterations: 15,
            max_candidates: 60,
            delta: 0.001,
            seed: 0,
        }
    }
}

/// One cell's current neighbours, sorted by distance: (distance, index, new?).
struct Neighbours {
    entries: Vec<(f32, u32, bool)>,
}

impl Neighbours {
    fn worst(&self) -> f32 {
        self.entries.last().map_or(f32::INFINITY, |e| e.0)
    }

    /// Inserts `j` at `dist` if it beats the worst and is not already present.
    fn try_insert(&mut self, dist: f32, j: u32, k: usize) -> bool {
        if self.entries.len() == k && dist >= self.worst() {
            return false;
        }
        if self.entries.iter().any(|e| e.1 == j) {
            return false;
        }
        let pos = self.entries.partition_point(|e| (e.0, e.1) < (dist, j));
        self.entries.insert(pos, (dist, j, true));
        if self.entries.len() > k {
            self.entries.pop();
        }
        true
    }
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Approximate k nearest neighbours of every row among the other rows (self excluded).
pub fn knn_descent(data: &DenseMatrix, k: usize, config: &DescentConfig) -> Result<KnnGraph> {
    let n = data.n_rows;
    if k == 0 || k >= n {
        return Err(Error::invalid(
            "k",
            format!(
                "must be between 1 and the number of cells - 1 ({}), not {k}",
                n.saturating_sub(1)
            ),
        ));
    }
    let d = data.n_cols;
    let x32: Vec<f32> = data.data.iter().map(|&v| v as f32).collect();
    let row = |i: usize| &x32[i * d..(i + 1) * d];
    // Random initial lists.
    let mut lists: Vec<Neighbours> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                config.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut nb = Neighbours {
                entries: Vec::with_capacity(k + 1),
            };
            while nb.entries.len() < k {
                let j = rng.random_range(0..n);
                if j != i {
                    nb.try_insert(sq_dist(row(i), row(j)), j as u32, k);
                }
            }
            nb
        })
        .collect();
    let sample = config.max_candidates.max(1);
    for iteration in 0..config.max_iterations {
        // Candidate lists: sampled new and old neighbours, plus reverse ones.
        let mut new_c: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut old_c: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, list) in lists.iter_mut().enumerate() {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                config.seed
                    ^ ((iteration as u64) << 40)
                    ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            );
            let mut fresh: Vec<usize> = (0..list.entries.len())
                .filter(|&p| list.entries[p].2)
                .collect();
            // Partial shuffle: the first `sample` are a random subset.
            for a in 0..fresh.len().min(sample) {
                let b = rng.random_range(a..fresh.len());
                fresh.swap(a, b);
            }
            fresh.truncate(sample);
            for &p in &fresh {
                list.entries[p].2 = false;
                new_c[i].push(list.entries[p].1);
            }
            for e in &list.entries {
                if !e.2 && !new_c[i].contains(&e.1) {
                    old_c[i].push(e.1);
                }
            }
        }
        let mut new_rev: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut old_rev: Vec<Vec<u32>> = vec![Vec::new(); n];
        for i in 0..n {
            for &j in &new_c[i] {
                new_rev[j as usize].push(i as u32);
            }
            for &j in &old_c[i] {
                old_rev[j as usize].push(i as u32);
            }
        }
        // Local joins in parallel over chunks of cells, each proposing (a, b, distance) pairs
        // that beat the current worst neighbour of a or b; updates applied in cell order.
        let mut changes = 0usize;
        let mut worst: Vec<f32> = lists.iter().map(|l| l.worst()).collect();
        for chunk_start in (0..n).step_by(JOIN_CHUNK) {
            let chunk_end = (chunk_start + JOIN_CHUNK).min(n);
            let proposals: Vec<Vec<(u32, u32, f32)>> = (chunk_start..chunk_end)
                .into_par_iter()
                .map(|i| {
                    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                        config.seed
                            ^ ((iteration as u64) << 48)
                            ^ (i as u64).wrapping_mul(0x94D0_49BB_1331_11EB),
                    );
                    let mut pick = |own: &[u32], rev: &[u32]| -> Vec<u32> {
                        let mut all: Vec<u32> = own.iter().chain(rev).copied().collect();
                        all.sort_unstable();
                        all.dedup();
                        for a in 0..all.len().min(sample) {
                            let b = rng.random_range(a..all.len());
                            all.swap(a, b);
                        }
                        all.truncate(sample);
                        all
                    };
                    let new_all = pick(&new_c[i], &new_rev[i]);
                    let old_all = pick(&old_c[i], &old_rev[i]);
                    let mut out = Vec::new();
                    for (a_pos, &a) in new_all.iter().enumerate() {
                        for &b in new_all[a_pos + 1..].iter().chain(old_all.iter()) {
                            if a == b {
                                continue;
                            }
                            let dist = sq_dist(row(a as usize), row(b as usize));
                            if dist < worst[a as usize] || dist < worst[b as usize] {
                                out.push((a, b, dist));
                            }
                        }
                    }
                    out
                })
                .collect();
            for batch in &proposals {
                for &(a, b, dist) in batch {
                    for (p, q) in [(a, b), (b, a)] {
                        let list = &mut lists[p as usize];
                        if dist < list.worst() && list.try_insert(dist, q, k) {
                            changes += 1;
                            worst[p as usize] = list.worst();
                        }
                    }
                }
            }
        }
        if (changes as f64) < config.delta * (n * k) as f64 {
            break;
        }
    }
    // Exact f64 distances of the neighbours found, sorted (ties by index).
    let mut indices = vec![0u32; n * k];
    let mut distances = vec![0f64; n * k];
    indices
        .par_chunks_mut(k)
        .zip(distances.par_chunks_mut(k))
        .enumerate()
        .for_each(|(i, (idx, dist))| {
            let mut exact: Vec<(f64, u32)> = lists[i]
                .entries
                .iter()
                .map(|e| (euclidean(data.row(i), data.row(e.1 as usize)), e.1))
                .collect();
            exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (slot, (dd, j)) in exact.into_iter().enumerate() {
                idx[slot] = j;
                dist[slot] = dd;
            }
        });
    Ok(KnnGraph {
        n_queries: n,
        k,
        indices,
        distances,
    })
}

/// Share of the exact neighbours that `approx` found (mean over cells).
pub fn recall(approx: &KnnGraph, exact: &KnnGraph) -> f64 {
    let k = exact.k.min(approx.k);
    let mut hits = 0usize;
    for i in 0..exact.n_queries {
        let truth = &exact.neighbors(i)[..k];
        hits += approx.neighbors(i)[..k]
            .iter()
            .filter(|j| truth.contains(j))
            .count();
    }
    hits as f64 / (exact.n_queries * k) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::blobs;
    use crate::neighbors::knn_exact;

    #[test]
    fn high_recall_and_deterministic() {
        let centres: Vec<Vec<f64>> = (0..5)
            .map(|c| (0..10).map(|j| ((c * 7 + j) % 5) as f64 * 3.0).collect())
            .collect();
        let (x, _) = blobs(&centres, 600, 1.0, 1);
        let cfg = DescentConfig::default();
        let approx = knn_descent(&x, 15, &cfg).unwrap();
        let exact = knn_exact(&x, 15).unwrap();
        let r = recall(&approx, &exact);
        assert!(r > 0.97, "recall {r}");
        assert_eq!(knn_descent(&x, 15, &cfg).unwrap(), approx);
        for i in 0..x.n_rows {
            assert!(!approx.neighbors(i).contains(&(i as u32)));
            assert!(approx.distances_of(i).windows(2).all(|w| w[0] <= w[1]));
        }
        assert!(knn_descent(&x, x.n_rows, &cfg).is_err());
    }
}
