//! All-pairs distances, one block of rows at a time (for silhouettes and radius counts):
//! a block's distances to every row come from one f32 matrix product, so n^2 distances cost
//! O(n^2 d) flops without ever holding an n x n matrix.

use crate::simd::clear_upper_simd_state;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::data::DenseMatrix;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    Euclidean,
    /// 1 - cos(angle), clipped to [0, 2] (scib-metrics' cosine distance).
    Cosine,
}

/// Rows of a matrix prepared for blocked distance computation.
pub struct PairwiseRows {
    n: usize,
    d: usize,
    data: Vec<f32>,
    sq_norms: Vec<f32>,
    max_sq_norm: f32,
    distance: Distance,
}

/// Rows per block: a block's distances (BLOCK x n f32) stay a few MB at n = 20k.
const BLOCK: usize = 64;

impl PairwiseRows {
    /// The rows `rows` of `x` (in that order).
    pub fn new(x: &DenseMatrix, rows: &[usize], distance: Distance) -> Self {
        let d = x.n_cols;
        let n = rows.len();
        let mut data = Vec::with_capacity(n * d);
        match distance {
            Distance::Euclidean => {
                // Centring first keeps |a|^2 + |b|^2 - 2ab accurate in f32.
                let mut mean = vec![0.0f64; d];
                for &r in rows {
                    for (m, v) in mean.iter_mut().zip(x.row(r)) {
                        *m += v;
                    }
                }
                mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
                for &r in rows {
                    data.extend(x.row(r).iter().zip(&mean).map(|(v, m)| (v - m) as f32));
                }
            }
            Distance::Cosine => {
                for &r in rows {
                    let row = x.row(r);
                    let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
                    data.extend(row.iter().map(|v| (v * scale) as f32));
                }
            }
        }
        let sq_norms: Vec<f32> = data
            .chunks(d.max(1))
            .take(n)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let max_sq_norm = sq_norms.iter().fold(0.0f32, |m, &v| m.max(v));
        Self {
            n,
            d,
            data,
            sq_norms,
            max_sq_norm,
            distance,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.n
    }

    /// Bound on the error of a squared Euclidean distance from `map_blocks` involving row `i`
    /// (f32 rounding of |a|^2 + |b|^2 - 2ab grows with the norms).
    pub fn sq_error_bound(&self, i: usize) -> f64 {
        2e-6 * (self.sq_norms[i] as f64 + self.max_sq_norm as f64) + 1e-30
    }

    /// Calls `f(first_row, distances)` for consecutive blocks of rows, in parallel, where
    /// `distances` is row-major `rows_in_block x n` and the distance of a row to itself is 0.
    /// Returns the per-block results in block order.
    pub fn map_blocks<R, F>(&self, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(usize, &[f32]) -> R + Sync,
    {
        let n = self.n;
        let d = self.d;
        let all = MatRef::from_row_major_slice(&self.data, n, d);
        let n_blocks = n.div_ceil(BLOCK);
        (0..n_blocks)
            .into_par_iter()
            .map(|b| {
                let start = b * BLOCK;
                let rows = BLOCK.min(n - start);
                let mut dist = vec![0f32; rows * n];
                {
                    let q = MatRef::from_row_major_slice(
                        &self.data[start * d..(start + rows) * d],
                        rows,
                        d,
                    );
                    let dst = MatMut::from_row_major_slice_mut(&mut dist, rows, n);
                    matmul(dst, Accum::Replace, q, all.transpose(), 1.0f32, Par::Seq);
                }
                clear_upper_simd_state();
                for i in 0..rows {
                    let row = &mut dist[i * n..(i + 1) * n];
                    match self.distance {
                        Distance::Euclidean => {
                            let qi = self.sq_norms[start + i];
                            for (v, &nj) in row.iter_mut().zip(&self.sq_norms) {
                                *v = (qi + nj - 2.0 * *v).max(0.0).sqrt();
                            }
                        }
                        Distance::Cosine => {
                            for v in row.iter_mut() {
                                *v = (1.0 - *v).clamp(0.0, 2.0);
                            }
                        }
                    }
                    row[start + i] = 0.0;
                }
                f(start, &dist)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_direct_computation() {
        let (x, _) = crate::metrics::test_data::blobs(
            &[vec![0.0, 0.0, 5.0], vec![3.0, 1.0, 0.0]],
            70,
            1.0,
            3,
        );
        let rows: Vec<usize> = (0..x.n_rows).rev().collect();
        for distance in [Distance::Euclidean, Distance::Cosine] {
            let p = PairwiseRows::new(&x, &rows, distance);
            let blocks = p.map_blocks(|start, dist| (start, dist.to_vec()));
            for (start, dist) in blocks {
                for (i, row) in dist.chunks(rows.len()).enumerate() {
                    let a = x.row(rows[start + i]);
                    for (j, &got) in row.iter().enumerate() {
                        let b = x.row(rows[j]);
                        let expected = match distance {
                            Distance::Euclidean => a
                                .iter()
                                .zip(b)
                                .map(|(u, v)| (u - v) * (u - v))
                                .sum::<f64>()
                                .sqrt(),
                            Distance::Cosine => {
                                let dot: f64 = a.iter().zip(b).map(|(u, v)| u * v).sum();
                                let na: f64 = a.iter().map(|u| u * u).sum::<f64>().sqrt();
                                let nb: f64 = b.iter().map(|u| u * u).sum::<f64>().sqrt();
                                (1.0 - dot / (na * nb)).clamp(0.0, 2.0)
                            }
                        };
                        assert!(
                            (got as f64 - expected).abs() < 1e-3,
                            "{distance:?} {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}
