//! Isolated labels (scib-metrics' silhouette variant): the labels present in the fewest
//! batches, each scored by the mean rescaled silhouette (w.r.t. all labels) of its cells.

use super::pairwise::Distance;
use super::silhouette::{BetweenClusters, silhouette_samples};
use super::{Groups, check_len};
use crate::data::DenseMatrix;
use crate::error::Result;

/// Labels present in no more batches than any other label (scib-metrics' default threshold),
/// as codes of `labels`.
pub fn isolated_label_codes(labels: &[u32], batch: &[u32]) -> Result<Vec<u32>> {
    check_len(batch, labels.len(), "batch")?;
    let label_groups = Groups::new(labels, "labels")?;
    let batch_groups = Groups::new(batch, "batch")?;
    let mut seen = vec![vec![false; batch_groups.n_groups]; label_groups.n_groups];
    for (l, b) in label_groups.codes.iter().zip(&batch_groups.codes) {
        seen[*l as usize][*b as usize] = true;
    }
    let n_batches: Vec<usize> = seen
        .iter()
        .map(|s| s.iter().filter(|&&x| x).count())
        .collect();
    let threshold = *n_batches.iter().min().unwrap_or(&0);
    // Map dense label groups back to the caller's codes.
    let mut original = vec![0u32; label_groups.n_groups];
    for (i, &c) in labels.iter().enumerate() {
        original[label_groups.codes[i] as usize] = c;
    }
    Ok((0..label_groups.n_groups)
        .filter(|&g| n_batches[g] <= threshold)
        .map(|g| original[g])
        .collect())
}

/// Isolated label score from per-cell silhouettes w.r.t. `labels` (Euclidean, nearest).
pub fn isolated_labels_from_silhouettes(
    silhouettes: &[f64],
    labels: &[u32],
    batch: &[u32],
) -> Result<f64> {
    check_len(silhouettes, labels.len(), "silhouettes")?;
    let isolated = isolated_label_codes(labels, batch)?;
    let scores: Vec<f64> = isolated
        .iter()
        .map(|&code| {
            let (sum, n) = silhouettes
                .iter()
                .zip(labels)
                .filter(|(_, l)| **l == code)
                .fold((0.0, 0usize), |(s, n), (v, _)| (s + (v + 1.0) / 2.0, n + 1));
            sum / n as f64
        })
        .collect();
    Ok(scores.iter().sum::<f64>() / scores.len() as f64)
}

/// Isolated label score of an embedding.
pub fn isolated_labels(x: &DenseMatrix, labels: &[u32], batch: &[u32]) -> Result<f64> {
    let s = silhouette_samples(x, labels, Distance::Euclidean, BetweenClusters::Nearest)?;
    isolated_labels_from_silhouettes(&s, labels, batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    #[test]
    fn picks_labels_in_fewest_batches() {
        let labels = [0, 0, 1, 1, 2, 2, 5];
        let batch = [0, 1, 0, 0, 1, 0, 1];
        assert_eq!(isolated_label_codes(&labels, &batch).unwrap(), vec![1, 5]);
    }

    #[test]
    fn agrees_with_scib_metrics_on_kang() {
        let cells = kang_cells();
        for emb in ["pca10", "harmony50"] {
            let got = isolated_labels(&kang_embedding(emb), &cells.labels, &cells.batch).unwrap();
            let expected = kang_reference(emb, "Isolated labels");
            assert!((got - expected).abs() < 1e-3, "{emb}: {got} vs {expected}");
        }
    }
}
