//! k-nearest-neighbour purity (scVI paper, seed 003): for the cells of each batch, the Jaccard
//! index between their k-NN set in a reference embedding of that batch alone and their k-NN set
//! among the same cells in the integrated embedding; averaged over cells, then over batches.
//! 1 = each batch's own neighbourhood structure is kept.

use super::check_len;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::neighbors::knn_exact;

/// Mean Jaccard index of the neighbour sets of two graphs on the same cells.
fn mean_jaccard(a: &crate::neighbors::KnnGraph, b: &crate::neighbors::KnnGraph) -> f64 {
    let mut total = 0.0;
    for i in 0..a.n_queries {
        let mut x = a.neighbors(i).to_vec();
        let mut y = b.neighbors(i).to_vec();
        x.sort_unstable();
        y.sort_unstable();
        let (mut p, mut q, mut common) = (0, 0, 0usize);
        while p < x.len() && q < y.len() {
            match x[p].cmp(&y[q]) {
                std::cmp::Ordering::Equal => {
                    common += 1;
                    p += 1;
                    q += 1;
                }
                std::cmp::Ordering::Less => p += 1,
                std::cmp::Ordering::Greater => q += 1,
            }
        }
        total += common as f64 / (x.len() + y.len() - common) as f64;
    }
    total / a.n_queries as f64
}

/// kNN purity of `integrated` given `references[b]`, an embedding of the cells of batch code
/// `b` only (rows in the order those cells appear in `integrated`). Returns one value per k.
pub fn knn_purity(
    integrated: &DenseMatrix,
    batch: &[u32],
    references: &[DenseMatrix],
    ks: &[usize],
) -> Result<Vec<f64>> {
    check_len(batch, integrated.n_rows, "batch")?;
    let n_codes = *batch.iter().max().unwrap_or(&0) as usize + 1;
    if references.len() != n_codes {
        return Err(Error::invalid(
            "reference",
            format!(
                "needs one embedding per batch ({n_codes}), got {}",
                references.len()
            ),
        ));
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_codes];
    for (i, &b) in batch.iter().enumerate() {
        members[b as usize].push(i);
    }
    let mut per_k = vec![Vec::new(); ks.len()];
    for (b, rows) in members.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        let reference = &references[b];
        if reference.n_rows != rows.len() {
            return Err(Error::invalid(
                "reference",
                format!(
                    "embedding of batch {b} has {} cells, the batch has {}",
                    reference.n_rows,
                    rows.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(rows.len() * integrated.n_cols);
        for &i in rows {
            data.extend_from_slice(integrated.row(i));
        }
        let own = DenseMatrix::new(rows.len(), integrated.n_cols, data)?;
        let k_max = *ks
            .iter()
            .max()
            .ok_or_else(|| Error::invalid("k", "is empty"))?;
        if k_max >= rows.len() {
            return Err(Error::invalid(
                "k",
                format!(
                    "must be below the size of every batch ({} cells)",
                    rows.len()
                ),
            ));
        }
        let g_ref = knn_exact(reference, k_max)?;
        let g_int = knn_exact(&own, k_max)?;
        for (slot, &k) in ks.iter().enumerate() {
            per_k[slot].push(mean_jaccard(&g_ref.truncate(k), &g_int.truncate(k)));
        }
    }
    Ok(per_k
        .iter()
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    #[test]
    fn unchanged_embedding_is_pure_and_noise_is_not() {
        let (x, _) = blobs(&[vec![0.0, 0.0, 0.0]], 200, 1.0, 1);
        let batch = random_codes(200, 2, 2);
        let split = |m: &DenseMatrix, b: u32| {
            let rows: Vec<usize> = (0..200).filter(|&i| batch[i] == b).collect();
            let mut d = Vec::new();
            for &r in &rows {
                d.extend_from_slice(m.row(r));
            }
            DenseMatrix::new(rows.len(), m.n_cols, d).unwrap()
        };
        let refs = vec![split(&x, 0), split(&x, 1)];
        let same = knn_purity(&x, &batch, &refs, &[10, 30]).unwrap();
        assert!(same.iter().all(|&v| (v - 1.0).abs() < 1e-12));
        let (noise, _) = blobs(&[vec![0.0, 0.0, 0.0]], 200, 1.0, 9);
        let other = knn_purity(&noise, &batch, &refs, &[10]).unwrap();
        assert!(other[0] < 0.2, "{}", other[0]);
        assert!(knn_purity(&x, &batch, &refs[..1], &[10]).is_err());
    }
}
