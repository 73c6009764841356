//! The label-transfer baselines scANVI is compared with (seed 003): a majority vote among the
//! k nearest labelled cells of an embedding, and a majority vote of the labelled cells within
//! each Leiden cluster of the embedding's kNN graph.

use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::metrics::clustering::{LeidenConfig, leiden};
use crate::metrics::umap_graph::umap_connectivities;
use crate::neighbors::{NeighborMethod, knn, knn_query_exact};

/// `labels[i]` is `Some(code)` for a labelled cell, `None` for one to predict.
fn check(embedding: &DenseMatrix, labels: &[Option<u32>], n_labels: usize) -> Result<Vec<usize>> {
    if labels.len() != embedding.n_rows {
        return Err(Error::invalid(
            "labels",
            format!(
                "has {} values but the embedding has {} cells",
                labels.len(),
                embedding.n_rows
            ),
        ));
    }
    if let Some(c) = labels.iter().flatten().find(|&&c| c as usize >= n_labels) {
        return Err(Error::invalid(
            "labels",
            format!("code {c} is not below the {n_labels} labels"),
        ));
    }
    let labelled: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    if labelled.is_empty() {
        return Err(Error::invalid(
            "labels",
            "marks every cell unlabelled: give the label of at least some cells",
        ));
    }
    Ok(labelled)
}

/// The most frequent code of `votes` (weights per code), ties to the smaller code.
fn majority(votes: &[f64]) -> u32 {
    let mut best = 0;
    for (c, &v) in votes.iter().enumerate() {
        if v > votes[best] {
            best = c;
        }
    }
    best as u32
}

/// Each cell's label: its own when labelled, else the majority among its `k` nearest labelled
/// cells (ties to the nearest neighbour's label among the tied).
pub fn knn_vote(
    embedding: &DenseMatrix,
    labels: &[Option<u32>],
    n_labels: usize,
    k: usize,
) -> Result<Vec<u32>> {
    let labelled = check(embedding, labels, n_labels)?;
    if k < 1 {
        return Err(Error::invalid("k", "must be at least 1"));
    }
    let k = k.min(labelled.len());
    let unlabelled: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_none()).collect();
    let mut out: Vec<u32> = labels.iter().map(|l| l.unwrap_or(0)).collect();
    if unlabelled.is_empty() {
        return Ok(out);
    }
    let reference = embedding.select_rows(&labelled);
    let query = embedding.select_rows(&unlabelled);
    let graph = knn_query_exact(&reference, &query, k)?;
    for (q, &cell) in unlabelled.iter().enumerate() {
        let mut votes = vec![0f64; n_labels];
        let neighbours = graph.neighbors(q);
        for &j in neighbours {
            votes[labels[labelled[j as usize]].expect("labelled") as usize] += 1.0;
        }
        let top = votes.iter().cloned().fold(0.0, f64::max);
        // Among tied labels, the one of the nearest neighbour.
        out[cell] = neighbours
            .iter()
            .map(|&j| labels[labelled[j as usize]].expect("labelled"))
            .find(|&c| votes[c as usize] == top)
            .unwrap_or_else(|| majority(&votes));
    }
    Ok(out)
}

/// Each cell's label: its own when labelled, else the majority label of the labelled cells of
/// its Leiden cluster (kNN graph with `k_graph` neighbours, UMAP connectivities, as scanpy's
/// default neighbours + Leiden); a cluster without labelled cells takes the label of the
/// nearest labelled cell of each of its cells.
pub fn cluster_vote(
    embedding: &DenseMatrix,
    labels: &[Option<u32>],
    n_labels: usize,
    k_graph: usize,
    resolution: f64,
    seed: u64,
) -> Result<(Vec<u32>, Vec<u32>)> {
    check(embedding, labels, n_labels)?;
    if !(resolution > 0.0 && resolution.is_finite()) {
        return Err(Error::invalid("resolution", "must be a positive number"));
    }
    let graph = knn(embedding, k_graph.max(1), NeighborMethod::Auto)?;
    let clusters = leiden(
        &umap_connectivities(&graph),
        &LeidenConfig {
            resolution,
            seed,
            ..LeidenConfig::default()
        },
    )?;
    let n_clusters = clusters.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut votes = vec![vec![0f64; n_labels]; n_clusters];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = l {
            votes[clusters[i] as usize][*c as usize] += 1.0;
        }
    }
    let nearest = knn_vote(embedding, labels, n_labels, 1)?;
    let out = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.unwrap_or_else(|| {
                let v = &votes[clusters[i] as usize];
                if v.iter().any(|&x| x > 0.0) {
                    majority(v)
                } else {
                    nearest[i]
                }
            })
        })
        .collect();
    Ok((out, clusters))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well separated groups of cells along the first axis.
    fn two_groups() -> DenseMatrix {
        let rows: Vec<f64> = (0..40)
            .flat_map(|i| {
                let x = if i < 20 { 0.0 } else { 10.0 } + (i % 7) as f64 * 0.1;
                [x, (i % 5) as f64 * 0.1]
            })
            .collect();
        DenseMatrix::new(40, 2, rows).unwrap()
    }

    #[test]
    fn knn_vote_takes_the_neighbours_label_and_keeps_given_labels() {
        let e = two_groups();
        let mut labels = vec![None; 40];
        labels[0] = Some(1);
        labels[1] = Some(1);
        labels[2] = Some(0); // a mislabelled seed: outvoted by k = 3
        labels[25] = Some(0);
        labels[26] = Some(0);
        labels[27] = Some(0);
        let out = knn_vote(&e, &labels, 2, 3).unwrap();
        assert_eq!(out[2], 0, "a labelled cell keeps its label");
        assert!(out[3..20].iter().all(|&c| c == 1), "{out:?}");
        assert!(out[20..25].iter().all(|&c| c == 0), "{out:?}");
        // With k = 1 the nearest labelled cell decides: cell 9 (0.2, 0.4) is nearest cell 2.
        let one = knn_vote(&e, &labels, 2, 1).unwrap();
        assert_eq!(one[9], 0);
        assert_eq!(out[9], 1);
    }

    #[test]
    fn cluster_vote_labels_each_cluster_by_its_seeds() {
        let e = two_groups();
        let mut labels = vec![None; 40];
        labels[5] = Some(2);
        labels[30] = Some(0);
        labels[31] = Some(0);
        let (out, clusters) = cluster_vote(&e, &labels, 3, 10, 1.0, 0).unwrap();
        assert_ne!(clusters[0], clusters[39]);
        assert!(out[..20].iter().all(|&c| c == 2), "{out:?}");
        assert!(out[20..].iter().all(|&c| c == 0), "{out:?}");
    }

    #[test]
    fn every_cell_unlabelled_is_an_error_naming_labels() {
        let e = two_groups();
        let err = knn_vote(&e, &[None; 40], 2, 10).unwrap_err().to_string();
        assert!(err.contains("labels"), "{err}");
        let err = knn_vote(&e, &[Some(3); 40], 2, 10).unwrap_err().to_string();
        assert!(err.contains("labels"), "{err}");
    }
}
