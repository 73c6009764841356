//! Exact kNN: squared distances of a block of queries to all reference points by one matrix
//! product (|a|^2 + |b|^2 - 2 a.b, in f32 for speed), selection of the k smallest, then the
//! selected distances recomputed exactly in f64 (the product form loses precision for close
//! points).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use rayon::prelude::*;

use super::{KnnGraph, euclidean};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::simd::clear_upper_simd_state;

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
            clear_upper_simd_state();
            // Keep a margin beyond k so that f32 rounding cannot drop a true neighbour.
            let keep = (k + 8).min(n_ref - usize::from(exclude_self));
            let mut chosen: Vec<(f32, u32)> = Vec::with_capacity(2 * keep);
            let mut subset_min: Vec<f32> = Vec::new();
            for i in 0..rows {
                let qi = start + i;
                let qn: f32 = q32[i * d..(i + 1) * d].iter().map(|v| v * v).sum();
                let row = &mut dots[i * n_ref..(i + 1) * n_ref];
                // Squared distances in place (a loop that vectorises).
                for (v, &norm) in row.iter_mut().zip(&ref_norms) {
                    *v = (qn + norm - 2.0 * *v).max(0.0);
                }
                if exclude_self && qi < n_ref {
                    row[qi] = f32::INFINITY;
                }
                select_smallest(row, keep, &mut subset_min, &mut chosen);
                let qrow = query.row(qi);
                let mut exact: Vec<(f64, u32)> = chosen
                    .iter()
                    .map(|&(_, j)| {
                        let r = reference.row(j as usize);
                        (euclidean(qrow, r), j)
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

/// Lanes of the vertical minimum: a row is read as consecutive vectors of this many values.
const LANES: usize = 8;
/// Vectors per group: each (group, lane) subset holds this many candidates.
const GROUP: usize = 16;

/// The `keep` smallest values of `row` as (value, index), ties by index, in `chosen`
/// (unordered). The row is partitioned into small subsets whose minima are computed with
/// vertical (vectorised) minimums; the keep-th smallest subset minimum bounds the keep-th
/// smallest value (at least `keep` subsets reach it), so only subsets whose minimum is within
/// the bound need a look.
fn select_smallest(
    row: &[f32],
    keep: usize,
    subset_min: &mut Vec<f32>,
    chosen: &mut Vec<(f32, u32)>,
) {
    let by_value = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    chosen.clear();
    let span = LANES * GROUP;
    let groups = row.len() / span;
    subset_min.clear();
    for group in row.chunks_exact(span) {
        let mut lanes = [f32::INFINITY; LANES];
        for vector in group.chunks_exact(LANES) {
            for (m, &v) in lanes.iter_mut().zip(vector) {
                *m = if v < *m { v } else { *m };
            }
        }
        subset_min.extend_from_slice(&lanes);
    }
    let tail_start = groups * span;
    let bound = if subset_min.len() >= keep {
        let mut minima = subset_min.clone();
        let (_, kth, _) = minima.select_nth_unstable_by(keep - 1, |a, b| a.total_cmp(b));
        *kth
    } else {
        f32::INFINITY
    };
    for (s, &m) in subset_min.iter().enumerate() {
        if m > bound {
            continue;
        }
        let (group, lane) = (s / LANES, s % LANES);
        for t in 0..GROUP {
            let j = group * span + t * LANES + lane;
            if row[j] <= bound {
                chosen.push((row[j], j as u32));
            }
        }
    }
    for (j, &v) in row.iter().enumerate().skip(tail_start) {
        if v <= bound {
            chosen.push((v, j as u32));
        }
    }
    // Excluded entries (infinite) never count.
    chosen.retain(|c| c.0.is_finite());
    if chosen.len() > keep {
        chosen.select_nth_unstable_by(keep - 1, by_value);
        chosen.truncate(keep);
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
