//! Mutual information between a continuous embedding and a discrete batch by the k-nearest-
//! neighbour estimator of Ross (2014), as scikit-learn's `mutual_info_classif` computes it for
//! one feature, here with Euclidean distances in the whole embedding:
//! I = psi(N) + <psi(k)> - <psi(N_b)> - <psi(m)>, with, per cell, d its distance to its k-th
//! nearest neighbour of the same batch (N_b cells) and m the number of cells (itself included)
//! closer than d. Cells alone in their batch are left out. In nats, floored at 0.

use super::check_len;
use super::pairwise::{Distance, PairwiseRows};
use crate::data::DenseMatrix;
use crate::distributions::special::digamma;
use crate::error::{Error, Result};
use crate::neighbors::{euclidean, knn_exact};

pub fn knn_mutual_information(x: &DenseMatrix, batch: &[u32], k: usize) -> Result<f64> {
    check_len(batch, x.n_rows, "batch")?;
    if k == 0 {
        return Err(Error::invalid("k", "must be at least 1"));
    }
    let n_codes = *batch.iter().max().unwrap_or(&0) as usize + 1;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_codes];
    for (i, &b) in batch.iter().enumerate() {
        members[b as usize].push(i);
    }
    // Per kept cell: radius, k used, size of its batch.
    let mut radius = vec![f64::NAN; x.n_rows];
    let mut k_used = vec![0usize; x.n_rows];
    let mut batch_size = vec![0usize; x.n_rows];
    for rows in members.iter().filter(|r| r.len() > 1) {
        let mut data = Vec::with_capacity(rows.len() * x.n_cols);
        for &i in rows {
            data.extend_from_slice(x.row(i));
        }
        let sub = DenseMatrix::new(rows.len(), x.n_cols, data)?;
        let kk = k.min(rows.len() - 1);
        let g = knn_exact(&sub, kk)?;
        for (local, &i) in rows.iter().enumerate() {
            radius[i] = g.distances_of(local)[kk - 1];
            k_used[i] = kk;
            batch_size[i] = rows.len();
        }
    }
    let kept: Vec<usize> = (0..x.n_rows).filter(|&i| batch_size[i] > 1).collect();
    if kept.len() < 2 {
        return Err(Error::invalid(
            "batch",
            "needs a batch with at least 2 cells",
        ));
    }
    let prepared = PairwiseRows::new(x, &kept, Distance::Euclidean);
    // Counts from f32 distances, with pairs near the radius rechecked in f64.
    let counts: Vec<usize> = prepared
        .map_blocks(|start, dist| {
            let n = kept.len();
            dist.chunks(n)
                .enumerate()
                .map(|(r, row)| {
                    let i = kept[start + r];
                    let rad = radius[i];
                    let rad2 = rad * rad;
                    let band = prepared.sq_error_bound(start + r);
                    let mut m = 1; // the cell itself
                    for (c, &d) in row.iter().enumerate() {
                        let j = kept[c];
                        if j == i {
                            continue;
                        }
                        let d2 = (d as f64) * (d as f64);
                        if d2 < rad2 - band {
                            m += 1;
                        } else if d2 <= rad2 + band {
                            // Too close to the radius to trust f32: recompute exactly, as
                            // the kNN search computed the radius (the k-th neighbour itself
                            // must not count).
                            if euclidean(x.row(i), x.row(j)) < rad {
                                m += 1;
                            }
                        }
                    }
                    m
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
    let n = kept.len() as f64;
    let psi_k = kept.iter().map(|&i| digamma(k_used[i] as f64)).sum::<f64>() / n;
    let psi_nb = kept
        .iter()
        .map(|&i| digamma(batch_size[i] as f64))
        .sum::<f64>()
        / n;
    let psi_m = counts.iter().map(|&m| digamma(m as f64)).sum::<f64>() / n;
    Ok((digamma(n) + psi_k - psi_nb - psi_m).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    #[test]
    fn independent_is_near_zero_and_separated_is_entropy_of_batch() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![50.0, 0.0]], 300, 1.0, 1);
        let random = random_codes(x.n_rows, 2, 5);
        let mi_random = knn_mutual_information(&x, &random, 3).unwrap();
        assert!(mi_random < 0.05, "{mi_random}");
        // Batch fully determined by position: I = H(batch) = ln 2.
        let mi_sep = knn_mutual_information(&x, &labels, 3).unwrap();
        assert!((mi_sep - 2f64.ln()).abs() < 0.05, "{mi_sep}");
    }
}
