//! Local mixing of conditions in kNN neighbourhoods, as the CoMP paper (seed 001) reports it:
//! kBET_{k,alpha}, the rejection rate of kBET's chi-squared test on each cell's k nearest
//! neighbours (0 = perfectly mixed), and the kNN silhouette s_{k,c}, the mean over cells of
//! condition c of (b - a) / max(a, b) with a, b the mean distances to the neighbours of the
//! same and of another condition (0 = mixed, 1 = separated). The per-label versions
//! (m-kBET and the mean silhouette) compute each within every label and average over labels.

use super::kbet::kbet_p_values;
use super::{Groups, check_len, nan_mean};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::neighbors::{KnnGraph, knn_exact};

/// kBET_{k,alpha}: share of cells whose neighbourhood (k neighbours, self excluded) rejects
/// the global batch composition at level `alpha`.
pub fn kbet_rejection(graph: &KnnGraph, batch: &[u32], alpha: f64) -> Result<f64> {
    check_len(batch, graph.n_queries, "batch")?;
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::invalid("alpha", "must be between 0 and 1"));
    }
    let groups = Groups::new(batch, "batch")?;
    if groups.n_groups < 2 {
        return Err(Error::invalid("batch", "needs at least 2 batches for kBET"));
    }
    let hoods: Vec<&[u32]> = (0..graph.n_queries).map(|i| graph.neighbors(i)).collect();
    let p = kbet_p_values(&hoods, &groups);
    Ok(p.iter().filter(|&&p| p < alpha).count() as f64 / p.len() as f64)
}

/// kNN silhouette of every cell with respect to `batch` on `graph` (self excluded): 1 when
/// every neighbour shares the cell's batch, -1 when none does.
pub fn knn_silhouette_samples(graph: &KnnGraph, batch: &[u32]) -> Result<Vec<f64>> {
    check_len(batch, graph.n_queries, "batch")?;
    Ok((0..graph.n_queries)
        .map(|i| {
            let (mut same, mut n_same, mut other, mut n_other) = (0.0, 0usize, 0.0, 0usize);
            for (&j, &d) in graph.neighbors(i).iter().zip(graph.distances_of(i)) {
                if batch[j as usize] == batch[i] {
                    same += d;
                    n_same += 1;
                } else {
                    other += d;
                    n_other += 1;
                }
            }
            if n_other == 0 {
                return 1.0;
            }
            if n_same == 0 {
                return -1.0;
            }
            let (a, b) = (same / n_same as f64, other / n_other as f64);
            let m = a.max(b);
            if m > 0.0 { (b - a) / m } else { 0.0 }
        })
        .collect())
}

/// s_{k,c}: mean kNN silhouette over the cells of batch code `condition` (all cells if None).
pub fn knn_silhouette(graph: &KnnGraph, batch: &[u32], condition: Option<u32>) -> Result<f64> {
    let s = knn_silhouette_samples(graph, batch)?;
    let picked: Vec<f64> = s
        .iter()
        .zip(batch)
        .filter(|(_, b)| condition.is_none_or(|c| **b == c))
        .map(|(v, _)| *v)
        .collect();
    if picked.is_empty() {
        return Err(Error::invalid("condition", "no cell has that batch"));
    }
    Ok(picked.iter().sum::<f64>() / picked.len() as f64)
}

/// Per-label local mixing: m-kBET (mean over labels of kBET_{k,alpha} within the label) and
/// the mean kNN silhouette within labels. Labels with one batch or fewer than 3 cells are
/// skipped; `None` when every label is.
pub fn per_label_local_mixing(
    x: &DenseMatrix,
    batch: &[u32],
    labels: &[u32],
    k: usize,
    alpha: f64,
    condition: Option<u32>,
) -> Result<(Option<f64>, Option<f64>)> {
    check_len(batch, x.n_rows, "batch")?;
    check_len(labels, x.n_rows, "labels")?;
    let groups = Groups::new(labels, "labels")?;
    let mut kbets = Vec::new();
    let mut sils = Vec::new();
    for members in groups.members() {
        let sub_batch: Vec<u32> = members.iter().map(|&i| batch[i]).collect();
        let n_batches = Groups::new(&sub_batch, "batch")?.n_groups;
        if n_batches < 2 || members.len() < 3 {
            continue;
        }
        let mut data = Vec::with_capacity(members.len() * x.n_cols);
        for &i in &members {
            data.extend_from_slice(x.row(i));
        }
        let sub = DenseMatrix::new(members.len(), x.n_cols, data)?;
        let graph = knn_exact(&sub, k.min(members.len() - 1))?;
        kbets.push(kbet_rejection(&graph, &sub_batch, alpha)?);
        if condition.is_none_or(|c| sub_batch.contains(&c)) {
            sils.push(knn_silhouette(&graph, &sub_batch, condition)?);
        }
    }
    let finite = |v: Vec<f64>| {
        if v.is_empty() {
            None
        } else {
            Some(nan_mean(&v))
        }
    };
    Ok((finite(kbets), finite(sils)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    #[test]
    fn mixed_is_near_zero_and_separated_is_high() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![30.0, 0.0]], 200, 1.0, 1);
        let graph = knn_exact(&x, 30).unwrap();
        let mixed = random_codes(x.n_rows, 2, 2);
        assert!(kbet_rejection(&graph, &mixed, 0.01).unwrap() < 0.05);
        assert!(kbet_rejection(&graph, &labels, 0.01).unwrap() > 0.99);
        assert!(knn_silhouette(&graph, &mixed, None).unwrap().abs() < 0.1);
        assert_eq!(knn_silhouette(&graph, &labels, Some(1)).unwrap(), 1.0);
        let (mk, ms) = per_label_local_mixing(&x, &mixed, &labels, 30, 0.01, None).unwrap();
        assert!(mk.unwrap() < 0.05 && ms.unwrap().abs() < 0.1);
        assert_eq!(
            per_label_local_mixing(&x, &labels, &labels, 30, 0.01, None).unwrap(),
            (None, None)
        );
    }
}
