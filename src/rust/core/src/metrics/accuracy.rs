//! Accuracies of a labelling against the truth: weighted accuracy (mean of per-class
//! accuracies, scANVI's paper) and unsupervised clustering accuracy (accuracy after the best
//! one-to-one matching of clusters to labels, found by the Hungarian algorithm).

use super::{Groups, check_len};
use crate::error::Result;

/// Mean over true classes of the share of the class's cells predicted as that class.
/// `predicted` and `truth` are codes on the same set of classes.
pub fn weighted_accuracy(predicted: &[u32], truth: &[u32]) -> Result<f64> {
    check_len(predicted, truth.len(), "predicted")?;
    let groups = Groups::new(truth, "truth")?;
    let mut correct = vec![0usize; groups.n_groups];
    for (i, (&p, &t)) in predicted.iter().zip(truth).enumerate() {
        if p == t {
            correct[groups.codes[i] as usize] += 1;
        }
    }
    let per_class: f64 = correct
        .iter()
        .zip(&groups.counts)
        .map(|(&c, &n)| c as f64 / n as f64)
        .sum();
    Ok(per_class / groups.n_groups as f64)
}

/// Share of cells whose cluster is matched to their label by the one-to-one matching of
/// clusters to labels that maximises the number of such cells.
pub fn unsupervised_clustering_accuracy(clusters: &[u32], labels: &[u32]) -> Result<f64> {
    check_len(clusters, labels.len(), "clusters")?;
    let gc = Groups::new(clusters, "clusters")?;
    let gl = Groups::new(labels, "labels")?;
    let size = gc.n_groups.max(gl.n_groups);
    let mut counts = vec![vec![0i64; size]; size];
    for (c, l) in gc.codes.iter().zip(&gl.codes) {
        counts[*c as usize][*l as usize] += 1;
    }
    // Maximise matches = minimise (max - count).
    let max = counts.iter().flatten().copied().max().unwrap_or(0);
    let cost: Vec<Vec<i64>> = counts
        .iter()
        .map(|r| r.iter().map(|&v| max - v).collect())
        .collect();
    let assignment = hungarian(&cost);
    let matched: i64 = assignment
        .iter()
        .enumerate()
        .map(|(r, &c)| counts[r][c])
        .sum();
    Ok(matched as f64 / labels.len() as f64)
}

/// Minimum-cost perfect matching of a square cost matrix: `result[row] = column`
/// (Kuhn-Munkres with potentials, O(n^3)).
pub fn hungarian(cost: &[Vec<i64>]) -> Vec<usize> {
    let n = cost.len();
    const INF: i64 = i64::MAX / 4;
    // 1-based arrays with a virtual column 0, the classic formulation.
    let mut u = vec![0i64; n + 1];
    let mut v = vec![0i64; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![INF; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = INF;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut result = vec![0usize; n];
    for j in 1..=n {
        if p[j] > 0 {
            result[p[j] - 1] = j - 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_optimum() {
        let cost = vec![vec![4, 1, 3], vec![2, 0, 5], vec![3, 2, 2]];
        let a = hungarian(&cost);
        let total: i64 = a.iter().enumerate().map(|(r, &c)| cost[r][c]).sum();
        assert_eq!(total, 5); // 1 + 2 + 2
        // Brute force over all permutations of 4.
        let cost = vec![
            vec![7, 3, 9, 1],
            vec![2, 8, 4, 6],
            vec![5, 5, 1, 9],
            vec![3, 7, 2, 4],
        ];
        let best = permutations(4)
            .iter()
            .map(|p| (0..4).map(|r| cost[r][p[r]]).sum::<i64>())
            .min()
            .unwrap();
        let a = hungarian(&cost);
        assert_eq!(
            a.iter().enumerate().map(|(r, &c)| cost[r][c]).sum::<i64>(),
            best
        );
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 1 {
            return vec![vec![0]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for pos in 0..n {
                let mut q = p.clone();
                q.insert(pos, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn accuracies() {
        // Clusters are a relabelling of the labels except one cell.
        let labels = [0, 0, 0, 1, 1, 2];
        let clusters = [5, 5, 4, 4, 4, 3];
        assert!(
            (unsupervised_clustering_accuracy(&clusters, &labels).unwrap() - 5.0 / 6.0).abs()
                < 1e-12
        );
        // More clusters than labels: only one cluster per label counts.
        assert!(
            (unsupervised_clustering_accuracy(&[0, 1, 2, 3], &[0, 0, 1, 1]).unwrap() - 0.5).abs()
                < 1e-12
        );
        // Class 0: 2/3 right, class 1: 1/2, class 2: 1/1.
        let pred = [0, 0, 1, 1, 0, 2];
        assert!(
            (weighted_accuracy(&pred, &labels).unwrap() - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs()
                < 1e-12
        );
    }
}
