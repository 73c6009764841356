//! UMAP connectivities of a kNN graph (umap-learn's `fuzzy_simplicial_set` with
//! local_connectivity 1, set_op_mix_ratio 1), the graph scanpy and scib-metrics cluster and
//! diffuse on: per cell, rho = distance to the nearest non-identical neighbour and sigma such
//! that sum_j exp(-(d_j - rho) / sigma) = log2(k); w_ij = exp(-(d_ij - rho_i) / sigma_i);
//! then the fuzzy union w + w^T - w * w^T.

use rayon::prelude::*;

use crate::distributions::fastmath::{exp_f64, exp_f64_in_place};
use crate::neighbors::KnnGraph;

/// A symmetric sparse weighted graph without self-loops (CSR, columns sorted per row).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedGraph {
    pub n: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub weights: Vec<f64>,
}

impl WeightedGraph {
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.weights[a..b])
    }

    /// The subgraph on `nodes` (renumbered 0..nodes.len() in that order).
    pub fn induced(&self, nodes: &[usize]) -> WeightedGraph {
        let mut new_id = vec![u32::MAX; self.n];
        for (k, &v) in nodes.iter().enumerate() {
            new_id[v] = k as u32;
        }
        let mut indptr = Vec::with_capacity(nodes.len() + 1);
        indptr.push(0);
        let mut indices = Vec::new();
        let mut weights = Vec::new();
        let mut row: Vec<(u32, f64)> = Vec::new();
        for &v in nodes {
            let (cols, w) = self.row(v);
            row.clear();
            row.extend(
                cols.iter()
                    .zip(w)
                    .filter(|(c, _)| new_id[**c as usize] != u32::MAX)
                    .map(|(c, w)| (new_id[*c as usize], *w)),
            );
            row.sort_unstable_by_key(|e| e.0);
            for &(c, w) in &row {
                indices.push(c);
                weights.push(w);
            }
            indptr.push(indices.len());
        }
        WeightedGraph {
            n: nodes.len(),
            indptr,
            indices,
            weights,
        }
    }

    /// Connected components: a component id per node (ids in order of first node).
    pub fn components(&self) -> (usize, Vec<usize>) {
        let mut comp = vec![usize::MAX; self.n];
        let mut n_comp = 0;
        let mut stack = Vec::new();
        for s in 0..self.n {
            if comp[s] != usize::MAX {
                continue;
            }
            comp[s] = n_comp;
            stack.push(s);
            while let Some(v) = stack.pop() {
                for &u in self.row(v).0 {
                    if comp[u as usize] == usize::MAX {
                        comp[u as usize] = n_comp;
                        stack.push(u as usize);
                    }
                }
            }
            n_comp += 1;
        }
        (n_comp, comp)
    }

    /// Weighted degree of every node.
    pub fn degrees(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.row(i).1.iter().sum()).collect()
    }
}

const SMOOTH_K_TOLERANCE: f64 = 1e-5;
const MIN_K_DIST_SCALE: f64 = 1e-3;
const SIGMA_SEARCH_STEPS: usize = 64;

/// rho and sigma of one cell; `dists` are the distances to its neighbours with the cell itself
/// first (distance 0), as umap-learn receives them.
fn smooth_knn_dist(dists: &[f64], target: f64, mean_all: f64) -> (f64, f64) {
    let rho = dists.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
    let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
    let mut terms = vec![0.0f64; dists.len() - 1];
    for _ in 0..SIGMA_SEARCH_STEPS {
        // The first entry is the cell itself. Distances within rho count 1 = e^0.
        for (t, &d) in terms.iter_mut().zip(&dists[1..]) {
            *t = -((d - rho).max(0.0) / mid);
        }
        exp_f64_in_place(&mut terms);
        let psum: f64 = terms.iter().sum();
        if (psum - target).abs() < SMOOTH_K_TOLERANCE {
            break;
        }
        if psum > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi == f64::INFINITY {
                mid * 2.0
            } else {
                (lo + hi) / 2.0
            };
        }
    }
    let mean_row = dists.iter().sum::<f64>() / dists.len() as f64;
    let floor = MIN_K_DIST_SCALE * if rho > 0.0 { mean_row } else { mean_all };
    (rho, mid.max(floor))
}

/// UMAP connectivities of `graph` (self excluded), read as the (k+1)-NN graph including self
/// that umap-learn and scib-metrics use (so `k + 1` is their `n_neighbors`).
pub fn umap_connectivities(graph: &KnnGraph) -> WeightedGraph {
    let n = graph.n_queries;
    let k = graph.k;
    let n_neighbors = k + 1;
    let target = (n_neighbors as f64).log2();
    let mean_all = graph.distances.iter().sum::<f64>() / (n * n_neighbors).max(1) as f64;
    // Directed memberships, one row per cell.
    let directed: Vec<Vec<(u32, f64)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut dists = Vec::with_capacity(n_neighbors);
            dists.push(0.0);
            dists.extend_from_slice(graph.distances_of(i));
            let (rho, sigma) = smooth_knn_dist(&dists, target, mean_all);
            let mut row: Vec<(u32, f64)> = graph
                .neighbors(i)
                .iter()
                .zip(graph.distances_of(i))
                .filter(|(j, _)| **j as usize != i)
                .map(|(&j, &d)| {
                    let w = if d - rho <= 0.0 || sigma == 0.0 {
                        1.0
                    } else {
                        exp_f64(-(d - rho) / sigma)
                    };
                    (j, w)
                })
                .filter(|e| e.1 != 0.0)
                .collect();
            row.sort_unstable_by_key(|e| e.0);
            row.dedup_by_key(|e| e.0);
            row
        })
        .collect();
    // Fuzzy union: gather the transpose, then w + w^T - w w^T on the union of edges.
    let mut transposed: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for (i, row) in directed.iter().enumerate() {
        for &(j, w) in row {
            transposed[j as usize].push((i as u32, w));
        }
    }
    let rows: Vec<Vec<(u32, f64)>> = directed
        .into_par_iter()
        .zip(transposed.into_par_iter())
        .map(|(out, mut inc)| {
            inc.sort_unstable_by_key(|e| e.0);
            let mut merged = Vec::with_capacity(out.len() + inc.len());
            let (mut a, mut b) = (0, 0);
            while a < out.len() || b < inc.len() {
                let ja = out.get(a).map_or(u32::MAX, |e| e.0);
                let jb = inc.get(b).map_or(u32::MAX, |e| e.0);
                let (j, wa, wb) = if ja == jb {
                    a += 1;
                    b += 1;
                    (ja, out[a - 1].1, inc[b - 1].1)
                } else if ja < jb {
                    a += 1;
                    (ja, out[a - 1].1, 0.0)
                } else {
                    b += 1;
                    (jb, 0.0, inc[b - 1].1)
                };
                let w = wa + wb - wa * wb;
                if w != 0.0 {
                    merged.push((j, w));
                }
            }
            merged
        })
        .collect();
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let mut indices = Vec::new();
    let mut weights = Vec::new();
    for row in rows {
        for (j, w) in row {
            indices.push(j);
            weights.push(w);
        }
        indptr.push(indices.len());
    }
    WeightedGraph {
        n,
        indptr,
        indices,
        weights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::neighbors::knn_exact;

    #[test]
    fn sigma_hits_the_target_and_graph_is_symmetric() {
        let (x, _) = blobs(&[vec![0.0, 0.0, 0.0]], 300, 1.0, 3);
        let g = knn_exact(&x, 14).unwrap();
        let conn = umap_connectivities(&g);
        // Symmetric, weights in (0, 1], no self-loops.
        for i in 0..conn.n {
            let (cols, w) = conn.row(i);
            for (&j, &wij) in cols.iter().zip(w) {
                assert_ne!(j as usize, i);
                assert!(wij > 0.0 && wij <= 1.0);
                let (cj, wj) = conn.row(j as usize);
                let back = cj.iter().position(|&c| c as usize == i).expect("symmetric");
                assert!((wj[back] - wij).abs() < 1e-12);
            }
        }
        // The nearest neighbour of each cell has membership 1 from that cell's side.
        let mut d = vec![0.0];
        d.extend_from_slice(g.distances_of(0));
        let (rho, sigma) = smooth_knn_dist(&d, 15f64.log2(), 1.0);
        assert_eq!(rho, g.distances_of(0)[0]);
        let psum: f64 = d[1..]
            .iter()
            .map(|&v| (-(v - rho).max(0.0) / sigma).exp())
            .sum();
        assert!((psum - 15f64.log2()).abs() < 1e-4);
        assert_eq!(conn.components().0, 1);
    }
}
