//! Exact kNN: squared distances of a block of queries to all reference points by one matrix
//! product (|a|^2 + |b|^2 - 2 a.b, in f32 for speed), selection of the k smallest, then the
//! selected distances recomputed exactly in f64 (the product form loses precision for close
//! points).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::KnnGraph;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

const BLOCK: usize = 256;

/// k nearest neighbours of every row of `data` among the other rows.
pub fn knn_exact(data: &DenseMatrix, k: usize) -> Result<KnnGraph> {
    if k == 0 || k >= data.n_rows {
        return Err(Error::invalid(
            "k",
            format!(
                "must be between 1 and the number of cells - 1 ({}), not {k}",
                data.n_rows.saturating_sub(1)
            ),
        ));
    }
    Ok(search(data, data, k, true))
}

/// k nearest rows of `reference` for every row of `query`.
pub fn knn_query_exact(reference: &DenseMatrix, query: &DenseMatrix, k: usize) -> Result<KnnGraph> {
    if reference.n_cols != query.n_cols {
        return Err(Error::invalid(
            "query",
            format!(
                "has {} dimensions, the reference {}",
                query.n_cols, reference.n_cols
            ),
        ));
    }
    if k == 0 || k > reference.n_rows {
        return Err(Error::invalid(
            "k",
            format!(
                "must be between 1 and the number of reference cells ({}), not {k}",
                reference.n_rows
            ),
        ));
    }
    Ok(search(reference, query, k, false))
}

fn search(reference: &DenseMatrix, query: &DenseMatrix, k: usize, exclude_self: bool) -> KnnGraph {
    let d = reference.n_cols;
    let n_ref = reference.n_rows;
    // Centring on the reference mean keeps |q|^2 + |r|^2 - 2 q.r accurate in f32.
    let mut mean = vec![0.0f64; d];
    for i in 0..n_ref {
        for (m, v) in mean.iter_mut().zip(reference.row(i)) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n_ref.max(1) as f64);
    let centred = |m: &DenseMatrix, rows: std::ops::Range<usize>| -> Vec<f32> {
        rows.flat_map(|i| {
            m.row(i)
                .iter()
                .zip(&mean)
                .map(|(v, c)| (v - c) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
    };
    let ref32 = centred(reference, 0..n_ref);
    let ref_norms: Vec<f32> = ref32
        .chunks(d.max(1))
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let ref_mat = MatRef::from_row_major_slice(&ref32, n_ref, d);
    let n_q = query.n_rows;
    let mut indices = vec![0u32; n_q * k];
    let mut distances = vec![0f64; n_q * k];
    indices
        .par_chunks_mut(BLOCK * k)
        .zip(distances.par_chunks_mut(BLOCK * k))
        .enumerate()
        .for_each(|(block, (idx_out, dist_out))| {
            let start = block * BLOCK;
            let rows = idx_out.len() / k;
            let q32 = centred(query, start..start + rows);
            let q_mat = MatRef::from_row_major_slice(&q32, rows, d);
            // dots[i, j] = q_i . r_j, stored row-major (rows x n_ref).
            let mut dots = vec![0f32; rows * n_ref];
            {
                let dst = MatMut::from_row_major_slice_mut(&mut dots, rows, n_ref);
                matmul(
                    dst,
                    Accum::Replace,
                    q_mat,
                    ref_mat.transpose(),
                    1.0f32,
                    Par::Seq,
                );
            }
            // Keep a margin beyond k so that f32 rounding cannot drop a true neighbour.
            let keep = (k + 8).min(n_ref - usize::from(exclude_self));
            let mut heap: BinaryHeap<(OrdF32, u32)> = BinaryHeap::with_capacity(keep + 1);
            for i in 0..rows {
                let qi = start + i;
                let qn: f32 = q32[i * d..(i + 1) * d].iter().map(|v| v * v).sum();
                let row = &dots[i * n_ref..(i + 1) * n_ref];
                // Bounded max-heap: most candidates fail the comparison with the current worst.
                heap.clear();
                let mut worst = f32::INFINITY;
                for (j, &dot) in row.iter().enumerate() {
                    let dist = (qn + ref_norms[j] - 2.0 * dot).max(0.0);
                    if dist >= worst && heap.len() == keep {
                        continue;
                    }
                    if exclude_self && j == qi {
                        continue;
                    }
                    heap.push((OrdF32(dist), j as u32));
                    if heap.len() > keep {
                        heap.pop();
                    }
                    if heap.len() == keep {
                        worst = heap.peek().map_or(f32::INFINITY, |e| e.0.0);
                    }
                }
                let qrow = query.row(qi);
                let mut exact: Vec<(f64, u32)> = heap
                    .iter()
                    .map(|&(_, j)| {
                        let r = reference.row(j as usize);
                        let s: f64 = qrow.iter().zip(r).map(|(a, b)| (a - b) * (a - b)).sum();
                        (s.sqrt(), j)
                    })
                    .collect();
                exact.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (slot, &(dist, j)) in exact.iter().take(k).enumerate() {
                    idx_out[i * k + slot] = j;
                    dist_out[i * k + slot] = dist;
                }
            }
        });
    KnnGraph {
        n_queries: n_q,
        k,
        indices,
        distances,
    }
}

/// f32 with a total order (for the selection heap).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);

impl Eq for OrdF32 {}

impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn brute_force(data: &DenseMatrix, k: usize) -> Vec<Vec<u32>> {
        (0..data.n_rows)
            .map(|i| {
                let mut d: Vec<(f64, u32)> = (0..data.n_rows)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let s: f64 = data
                            .row(i)
                            .iter()
                            .zip(data.row(j))
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        (s, j as u32)
                    })
                    .collect();
                d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                d.iter().take(k).map(|x| x.1).collect()
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_across_blocks() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 600; // more than two blocks
        let data =
            DenseMatrix::new(n, 5, (0..n * 5).map(|_| rng.random::<f64>()).collect()).unwrap();
        let g = knn_exact(&data, 7).unwrap();
        let expected = brute_force(&data, 7);
        for i in 0..n {
            assert_eq!(g.neighbors(i), expected[i].as_slice(), "row {i}");
            assert!(g.distances_of(i).windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn query_against_reference() {
        let reference = DenseMatrix::new(3, 1, vec![0.0, 10.0, 20.0]).unwrap();
        let query = DenseMatrix::new(2, 1, vec![9.0, 19.0]).unwrap();
        let g = knn_query_exact(&reference, &query, 2).unwrap();
        assert_eq!(g.neighbors(0), &[1, 0]);
        assert_eq!(g.neighbors(1), &[2, 1]);
        assert_eq!(g.distances_of(0), &[1.0, 9.0]);
    }

    #[test]
    fn k_is_checked() {
        let data = DenseMatrix::new(3, 1, vec![0.0, 1.0, 2.0]).unwrap();
        assert!(knn_exact(&data, 3).is_err());
        assert!(knn_exact(&data, 0).is_err());
        assert_eq!(knn_exact(&data, 2).unwrap().truncate(1).neighbors(0), &[1]);
    }
}
