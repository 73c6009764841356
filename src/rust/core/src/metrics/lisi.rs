//! LISI (Korsunsky et al. 2019) as scib-metrics 0.5.10 computes it: for each cell, Gaussian
//! weights exp(-beta d) on its neighbours' distances (d not squared) with beta found by binary
//! search to a perplexity, the Simpson index sum_c (sum of weights of group c)^2, LISI =
//! 1 / Simpson. iLISI and cLISI are the medians, rescaled to [0, 1].

use rayon::prelude::*;

use super::{Groups, check_len, nan_median};
use crate::distributions::fastmath::exp_f64_in_place;
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

#[derive(Debug, Clone)]
pub struct LisiConfig {
    /// Effective neighbourhood size; scib-metrics uses floor(k_with_self / 3) = 30 for k = 90.
    pub perplexity: f64,
    /// Tolerance of the entropy in the binary search.
    pub tol: f64,
    /// Binary search steps at most.
    pub max_tries: usize,
}

impl Default for LisiConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            tol: 1e-5,
            max_tries: 50,
        }
    }
}

/// Entropy and normalised weights of one cell's neighbours at precision `beta`.
fn weights_at(dists: &[f64], beta: f64, p: &mut [f64]) -> f64 {
    // The exponentials in a loop of their own, which vectorises.
    for (w, &d) in p.iter_mut().zip(dists) {
        *w = -d * beta;
    }
    exp_f64_in_place(p);
    let mut sum = 0.0;
    let mut weighted = 0.0;
    for (w, &d) in p.iter().zip(dists) {
        sum += *w;
        weighted += d * *w;
    }
    if sum == 0.0 {
        p.fill(0.0);
        return 0.0;
    }
    for w in p.iter_mut() {
        *w /= sum;
    }
    sum.ln() + beta * weighted / sum
}

/// LISI of every cell from its neighbours (self excluded) and the codes of all cells.
/// A cell whose weights all vanish gets -1 (scib-metrics' convention).
pub fn lisi(graph: &KnnGraph, codes: &[u32], config: &LisiConfig) -> Result<Vec<f64>> {
    check_len(codes, graph.n_queries, "labels")?;
    if !(config.perplexity > 0.0) {
        return Err(Error::invalid("perplexity", "must be positive"));
    }
    let groups = Groups::new(codes, "labels")?;
    let target = config.perplexity.ln();
    Ok((0..graph.n_queries)
        .into_par_iter()
        .map_init(
            || (vec![0.0; graph.k], vec![0.0; groups.n_groups]),
            |(p, mass), i| {
                let dists = graph.distances_of(i);
                let mut beta = 1.0f64;
                let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
                let mut h = weights_at(dists, beta, p);
                let mut diff = h - target;
                let mut tries = 0;
                while diff.abs() >= config.tol && tries < config.max_tries {
                    if diff > 0.0 {
                        lo = beta;
                        beta = if hi == f64::INFINITY {
                            beta * 2.0
                        } else {
                            (beta + hi) / 2.0
                        };
                    } else {
                        hi = beta;
                        beta = if lo == f64::NEG_INFINITY {
                            beta / 2.0
                        } else {
                            (beta + lo) / 2.0
                        };
                    }
                    h = weights_at(dists, beta, p);
                    diff = h - target;
                    tries += 1;
                }
                if h == 0.0 {
                    return -1.0;
                }
                mass.fill(0.0);
                for (&j, &w) in graph.neighbors(i).iter().zip(p.iter()) {
                    mass[groups.codes[j as usize] as usize] += w;
                }
                1.0 / mass.iter().map(|m| m * m).sum::<f64>()
            },
        )
        .collect())
}

/// iLISI: (median LISI of batches - 1) / (n_batches - 1); 1 is perfect mixing.
pub fn ilisi(graph: &KnnGraph, batch: &[u32], config: &LisiConfig) -> Result<f64> {
    let n_batches = Groups::new(batch, "batch")?.n_groups;
    if n_batches < 2 {
        return Err(Error::invalid(
            "batch",
            "needs at least 2 batches for iLISI",
        ));
    }
    let median = nan_median(&lisi(graph, batch, config)?);
    Ok((median - 1.0) / (n_batches - 1) as f64)
}

/// cLISI: (n_labels - median LISI of labels) / (n_labels - 1); 1 is perfect separation.
pub fn clisi(graph: &KnnGraph, labels: &[u32], config: &LisiConfig) -> Result<f64> {
    let n_labels = Groups::new(labels, "labels")?.n_groups;
    if n_labels < 2 {
        return Err(Error::invalid(
            "labels",
            "needs at least 2 labels for cLISI",
        ));
    }
    let median = nan_median(&lisi(graph, labels, config)?);
    Ok((n_labels as f64 - median) / (n_labels - 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::neighbors::knn_exact;

    #[test]
    fn mixed_batches_score_one_and_separated_zero() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![30.0, 0.0]], 200, 1.0, 1);
        let g = knn_exact(&x, 89).unwrap();
        let cfg = LisiConfig::default();
        let mixed = random_codes(x.n_rows, 2, 2);
        assert!(ilisi(&g, &mixed, &cfg).unwrap() > 0.9);
        assert!(ilisi(&g, &labels, &cfg).unwrap() < 0.01);
        assert!(clisi(&g, &labels, &cfg).unwrap() > 0.99);
        assert!(clisi(&g, &mixed, &cfg).unwrap() < 0.1);
    }

    #[test]
    fn equal_distances_give_the_group_count() {
        // Three neighbours at the same distance, three groups: LISI = 3.
        let g = KnnGraph {
            n_queries: 4,
            k: 3,
            indices: vec![1, 2, 3, 0, 2, 3, 0, 1, 3, 0, 1, 2],
            distances: vec![1.0; 12],
        };
        let l = lisi(
            &g,
            &[0, 0, 1, 2],
            &LisiConfig {
                perplexity: 2.0,
                ..Default::default()
            },
        )
        .unwrap();
        assert!((l[0] - 3.0).abs() < 1e-9);
        assert!((l[1] - 3.0).abs() < 1e-9);
        // Two of cell 2's neighbours share a group: 1 / ((2/3)^2 + (1/3)^2) = 1.8.
        assert!((l[2] - 1.8).abs() < 1e-9);
    }
}
