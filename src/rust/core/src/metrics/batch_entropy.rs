//! Entropy of batch mixing (scVI paper, seed 003; used by seed 000): for random cells, the
//! entropy (natural log) of the batch frequencies among their 50 nearest neighbours; averaged
//! over `n_samples_per_pool` cells and then over `n_pools` random pools (scVI's defaults 50 and
//! 100). Higher is better mixed; the maximum is ln(number of batches).

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::{Groups, check_len};
use crate::error::{Error, Result};
use crate::neighbors::KnnGraph;

#[derive(Debug, Clone)]
pub struct BatchEntropyConfig {
    pub n_pools: usize,
    pub n_samples_per_pool: usize,
    pub seed: u64,
}

impl Default for BatchEntropyConfig {
    fn default() -> Self {
        Self {
            n_pools: 50,
            n_samples_per_pool: 100,
            seed: 0,
        }
    }
}

/// Entropy of the batches of one cell's neighbours.
fn neighbourhood_entropy(neighbours: &[u32], batch: &Groups, counts: &mut [usize]) -> f64 {
    counts.fill(0);
    for &j in neighbours {
        counts[batch.codes[j as usize] as usize] += 1;
    }
    let k = neighbours.len() as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / k;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Batch entropy mixing on `graph` (use 50 neighbours, self excluded).
pub fn batch_entropy(graph: &KnnGraph, batch: &[u32], config: &BatchEntropyConfig) -> Result<f64> {
    check_len(batch, graph.n_queries, "batch")?;
    if config.n_pools == 0 || config.n_samples_per_pool == 0 {
        return Err(Error::invalid(
            "n_pools",
            "pools and samples per pool must be positive",
        ));
    }
    let groups = Groups::new(batch, "batch")?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let mut counts = vec![0usize; groups.n_groups];
    let mut total = 0.0;
    for _ in 0..config.n_pools {
        let mut pool = 0.0;
        for _ in 0..config.n_samples_per_pool {
            let i = rng.random_range(0..graph.n_queries);
            pool += neighbourhood_entropy(graph.neighbors(i), &groups, &mut counts);
        }
        total += pool / config.n_samples_per_pool as f64;
    }
    Ok(total / config.n_pools as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::neighbors::knn_exact;

    #[test]
    fn mixed_reaches_ln2_separated_zero() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![30.0, 0.0]], 300, 1.0, 1);
        let g = knn_exact(&x, 50).unwrap();
        let cfg = BatchEntropyConfig::default();
        let mixed = random_codes(x.n_rows, 2, 2);
        let be = batch_entropy(&g, &mixed, &cfg).unwrap();
        assert!(be > 0.6 && be <= 2f64.ln() + 1e-12, "{be}");
        assert_eq!(batch_entropy(&g, &labels, &cfg).unwrap(), 0.0);
    }
}
