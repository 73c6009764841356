//! Silhouettes as scib-metrics 0.5.10 computes them: per-cell silhouettes (sklearn's
//! definition, singletons and 0/0 scoring 0), silhouette label, the classic scIB batch
//! silhouette and BRAS (batch removal adapted silhouette: cosine distance, mean distance to
//! all other batches).

use super::pairwise::{Distance, PairwiseRows};
use super::{Groups, check_len};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// How the distance of a cell to "other" clusters is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetweenClusters {
    /// Mean distance to the nearest other cluster (the classic silhouette).
    Nearest,
    /// Mean distance to all cells of all other clusters (BRAS).
    MeanOther,
}

/// Silhouette of every cell of `x` with respect to `codes`, in cell order.
pub fn silhouette_samples(
    x: &DenseMatrix,
    codes: &[u32],
    distance: Distance,
    between: BetweenClusters,
) -> Result<Vec<f64>> {
    check_len(codes, x.n_rows, "labels")?;
    let rows: Vec<usize> = (0..x.n_rows).collect();
    Ok(silhouette_of_rows(
        x,
        &rows,
        &Groups::new(codes, "labels")?,
        distance,
        between,
    ))
}

/// Silhouettes of the cells `rows` among themselves; `groups` holds one code per row.
fn silhouette_of_rows(
    x: &DenseMatrix,
    rows: &[usize],
    groups: &Groups,
    distance: Distance,
    between: BetweenClusters,
) -> Vec<f64> {
    // Sort the cells by group so that a cell's distances to each group are contiguous.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| groups.codes[i]);
    let sorted_rows: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
    let mut bounds = vec![0usize; groups.n_groups + 1];
    for g in 0..groups.n_groups {
        bounds[g + 1] = bounds[g] + groups.counts[g];
    }
    let n = rows.len();
    let prepared = PairwiseRows::new(x, &sorted_rows, distance);
    let blocks = prepared.map_blocks(|start, dist| {
        let mut out = Vec::with_capacity(dist.len() / n.max(1));
        let mut sums = vec![0.0f64; groups.n_groups];
        for (i, row) in dist.chunks(n).enumerate() {
            let own = groups.codes[order[start + i]] as usize;
            for g in 0..groups.n_groups {
                sums[g] = wide_sum(&row[bounds[g]..bounds[g + 1]]);
            }
            out.push(silhouette_from_sums(&sums, &groups.counts, own, between));
        }
        out
    });
    let mut result = vec![0.0; n];
    for (pos, s) in blocks.into_iter().flatten().enumerate() {
        result[order[pos]] = s;
    }
    result
}

/// Sum in double precision over 8 interleaved lanes: one running sum would wait on each
/// addition's latency (this loop is most of a silhouette's time), eight vectorise.
fn wide_sum(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    lanes.iter().sum::<f64>() + tail
}

fn silhouette_from_sums(
    sums: &[f64],
    counts: &[usize],
    own: usize,
    between: BetweenClusters,
) -> f64 {
    if counts[own] <= 1 {
        return 0.0; // a singleton's silhouette is 0 (sklearn; scib-metrics' nan_to_num)
    }
    let a = sums[own] / (counts[own] - 1) as f64;
    let b = match between {
        BetweenClusters::Nearest => (0..sums.len())
            .filter(|&g| g != own && counts[g] > 0)
            .map(|g| sums[g] / counts[g] as f64)
            .fold(f64::INFINITY, f64::min),
        BetweenClusters::MeanOther => {
            let other: usize = counts.iter().sum::<usize>() - counts[own];
            let total: f64 = sums.iter().sum::<f64>() - sums[own];
            total / other as f64
        }
    };
    let s = (b - a) / a.max(b);
    if s.is_finite() { s } else { 0.0 }
}

/// Silhouette label: (mean silhouette of cells w.r.t. their labels + 1) / 2, Euclidean.
pub fn silhouette_label(x: &DenseMatrix, labels: &[u32]) -> Result<f64> {
    let s = silhouette_samples(x, labels, Distance::Euclidean, BetweenClusters::Nearest)?;
    Ok(rescale(mean(&s)))
}

/// Batch silhouette within each label: mean over labels of the mean of 1 - |s_batch| over the
/// label's cells. Labels with one batch, or with as many batches as cells, are skipped. Returns
/// an error when every label is skipped (scib-metrics raises there).
pub fn silhouette_batch(
    x: &DenseMatrix,
    labels: &[u32],
    batch: &[u32],
    distance: Distance,
    between: BetweenClusters,
) -> Result<f64> {
    check_len(labels, x.n_rows, "labels")?;
    check_len(batch, x.n_rows, "batch")?;
    let label_groups = Groups::new(labels, "labels")?;
    let batch_groups = Groups::new(batch, "batch")?;
    let mut per_label = Vec::new();
    for members in label_groups.members() {
        let sub = batch_groups.subset(&members);
        if sub.n_groups == 1 || sub.n_groups == members.len() {
            continue;
        }
        let s = silhouette_of_rows(x, &members, &sub, distance, between);
        per_label.push(mean(&s.iter().map(|v| 1.0 - v.abs()).collect::<Vec<_>>()));
    }
    if per_label.is_empty() {
        return Err(Error::invalid(
            "batch",
            "no label has cells from two or more batches, so the batch silhouette is undefined",
        ));
    }
    Ok(mean(&per_label))
}

/// The classic scIB batch silhouette (Euclidean, nearest other batch).
pub fn silhouette_batch_classic(x: &DenseMatrix, labels: &[u32], batch: &[u32]) -> Result<f64> {
    silhouette_batch(
        x,
        labels,
        batch,
        Distance::Euclidean,
        BetweenClusters::Nearest,
    )
}

/// BRAS: batch silhouette with cosine distance and the mean distance to all other batches.
pub fn bras(x: &DenseMatrix, labels: &[u32], batch: &[u32]) -> Result<f64> {
    silhouette_batch(
        x,
        labels,
        batch,
        Distance::Cosine,
        BetweenClusters::MeanOther,
    )
}

pub(crate) fn rescale(asw: f64) -> f64 {
    (asw + 1.0) / 2.0
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    /// Direct O(n^2) silhouette in f64, the textbook definition.
    fn naive(x: &DenseMatrix, codes: &[u32]) -> Vec<f64> {
        let n = x.n_rows;
        let k = *codes.iter().max().unwrap() as usize + 1;
        (0..n)
            .map(|i| {
                let mut sums = vec![0.0; k];
                let mut counts = vec![0usize; k];
                for j in 0..n {
                    let d: f64 = x
                        .row(i)
                        .iter()
                        .zip(x.row(j))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt();
                    sums[codes[j] as usize] += d;
                    counts[codes[j] as usize] += 1;
                }
                let own = codes[i] as usize;
                if counts[own] == 1 {
                    return 0.0;
                }
                let a = sums[own] / (counts[own] - 1) as f64;
                let b = (0..k)
                    .filter(|&g| g != own && counts[g] > 0)
                    .map(|g| sums[g] / counts[g] as f64)
                    .fold(f64::INFINITY, f64::min);
                (b - a) / a.max(b)
            })
            .collect()
    }

    #[test]
    fn matches_the_textbook_definition() {
        let (x, _) = blobs(
            &[vec![0.0, 0.0], vec![2.0, 1.0], vec![-1.0, 3.0]],
            60,
            1.0,
            1,
        );
        let mut codes = random_codes(x.n_rows, 4, 2);
        codes[5] = 9; // a singleton
        let got =
            silhouette_samples(&x, &codes, Distance::Euclidean, BetweenClusters::Nearest).unwrap();
        let expected = naive(&x, &codes);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-4, "{g} vs {e}");
        }
        assert_eq!(got[5], 0.0);
    }

    #[test]
    fn separated_labels_score_high_and_mixed_batches_score_near_one() {
        let (x, labels) = blobs(
            &[vec![0.0, 0.0], vec![10.0, 0.0], vec![0.0, 10.0]],
            300,
            1.0,
            4,
        );
        assert!(silhouette_label(&x, &labels).unwrap() > 0.85);
        let batch = random_codes(x.n_rows, 2, 5);
        assert!(silhouette_batch_classic(&x, &labels, &batch).unwrap() > 0.9);
        let b = bras(&x, &labels, &batch).unwrap();
        // BRAS is noisier (random batch halves still differ a little in mean distance).
        assert!(b > 0.85, "{b}");
        // Batch = label: every label has one batch, nothing to score.
        assert!(bras(&x, &labels, &labels).is_err());
    }

    #[test]
    fn invariant_to_cell_order() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![3.0, 0.0]], 100, 1.0, 6);
        let batch = random_codes(x.n_rows, 3, 7);
        let perm = shuffled(x.n_rows, 8);
        let xp = x.select_rows(&perm);
        let lp: Vec<u32> = perm.iter().map(|&p| labels[p]).collect();
        let bp: Vec<u32> = perm.iter().map(|&p| batch[p]).collect();
        assert!(
            (silhouette_label(&x, &labels).unwrap() - silhouette_label(&xp, &lp).unwrap()).abs()
                < 1e-6
        );
        assert!((bras(&x, &labels, &batch).unwrap() - bras(&xp, &lp, &bp).unwrap()).abs() < 1e-6);
    }

    #[test]
    fn agrees_with_scib_metrics_on_kang() {
        let cells = kang_cells();
        for emb in ["pca10", "harmony50"] {
            let x = kang_embedding(emb);
            let sl = silhouette_label(&x, &cells.labels).unwrap();
            let br = bras(&x, &cells.labels, &cells.batch).unwrap();
            let cl = silhouette_batch_classic(&x, &cells.labels, &cells.batch).unwrap();
            for (name, got) in [
                ("Silhouette label", sl),
                ("BRAS", br),
                ("silhouette_batch_classic", cl),
            ] {
                let expected = kang_reference(emb, name);
                assert!(
                    (got - expected).abs() < 1e-3,
                    "{emb} {name}: {got} vs scib-metrics {expected}"
                );
            }
        }
    }
}
