//! Diffusion-map embedding of a connectivity graph (scanpy's and scib-metrics' recipe):
//! density normalisation K = Q^-1 W Q^-1 (q = degrees), symmetric transitions
//! T = Z^-1 K Z^-1 (z = sqrt of K's row sums), the eigenpairs of T of largest magnitude, and
//! each eigenvector scaled by lambda / (1 - lambda) (by 1 where lambda rounds to 1 in f32, as
//! scib-metrics' float32 arithmetic does), so Euclidean distances approximate diffusion
//! distances with the number of steps integrated out.
//!
//! Eigenpairs: dense decomposition for small graphs, Lanczos with full reorthogonalisation
//! otherwise. A disconnected graph is block-diagonal, so each component is decomposed on its
//! own and the eigenpairs merged (a single Krylov sequence would find a repeated eigenvalue
//! once only).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use super::umap_graph::WeightedGraph;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// Ritz pairs count as converged when residual x weight is below this share of the largest
/// weight (and the residual below `MAX_RESIDUAL`).
const RITZ_TOLERANCE: f64 = 1e-5;
const MAX_RESIDUAL: f64 = 1e-2;

/// Graphs up to this many nodes are decomposed densely.
const DENSE_LIMIT: usize = 700;

/// Diffusion-map embedding with `n_comps` components (cells x n_comps).
pub fn diffusion_embedding(conn: &WeightedGraph, n_comps: usize, seed: u64) -> Result<DenseMatrix> {
    let n = conn.n;
    if n_comps == 0 || n_comps >= n {
        return Err(Error::invalid(
            "n_comps",
            format!(
                "must be between 1 and {} for {n} cells",
                n.saturating_sub(1)
            ),
        ));
    }
    let transitions = symmetric_transitions(conn)?;
    let (n_comp, comp) = transitions.components();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_comp];
    for (v, &c) in comp.iter().enumerate() {
        members[c].push(v);
    }
    // (eigenvalue, component, eigenvector on the component's nodes)
    let per_component = members
        .par_iter()
        .enumerate()
        .map(|(c, nodes)| {
            let block = if n_comp == 1 {
                transitions.clone()
            } else {
                transitions.induced(nodes)
            };
            let want = n_comps.min(block.n);
            top_eigenpairs(&block, want, seed.wrapping_add(c as u64))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut pairs: Vec<(f64, usize, Vec<f64>)> = Vec::new();
    for (c, (values, vectors)) in per_component.into_iter().enumerate() {
        for (v, vector) in values.into_iter().zip(vectors) {
            pairs.push((v, c, vector));
        }
    }
    pairs.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()).then(a.1.cmp(&b.1)));
    pairs.truncate(n_comps);
    let mut out = DenseMatrix::zeros(n, n_comps);
    for (col, (value, c, vector)) in pairs.iter().enumerate() {
        let scale = multiscale(*value);
        for (&node, &x) in members[*c].iter().zip(vector) {
            out.data[node * n_comps + col] = x * scale;
        }
    }
    Ok(out)
}

/// lambda / (1 - lambda) after scib-metrics' float32 `lambda + 1e-8`; 1 where that is 1.
fn multiscale(value: f64) -> f64 {
    let e = value as f32 + 1e-8f32;
    if e == 1.0 {
        1.0
    } else {
        (e / (1.0 - e)) as f64
    }
}

/// T = Z^-1 Q^-1 W Q^-1 Z^-1 on the same sparsity pattern as W.
fn symmetric_transitions(conn: &WeightedGraph) -> Result<WeightedGraph> {
    let q = conn.degrees();
    if q.iter().any(|&d| !(d > 0.0)) {
        return Err(Error::invalid(
            "graph",
            "has isolated cells; diffusion needs every cell connected",
        ));
    }
    let mut k = conn.clone();
    for i in 0..conn.n {
        let (a, b) = (conn.indptr[i], conn.indptr[i + 1]);
        for e in a..b {
            k.weights[e] = conn.weights[e] / (q[i] * q[conn.indices[e] as usize]);
        }
    }
    let z: Vec<f64> = k.degrees().iter().map(|v| v.sqrt()).collect();
    for i in 0..conn.n {
        let (a, b) = (conn.indptr[i], conn.indptr[i + 1]);
        for e in a..b {
            k.weights[e] /= z[i] * z[conn.indices[e] as usize];
        }
    }
    Ok(k)
}

fn spmv(a: &WeightedGraph, x: &[f64], y: &mut [f64]) {
    for (i, yi) in y.iter_mut().enumerate() {
        let (cols, w) = a.row(i);
        *yi = cols.iter().zip(w).map(|(&j, &w)| w * x[j as usize]).sum();
    }
}

/// The `want` eigenpairs of largest magnitude of the symmetric matrix `a` (zero diagonal),
/// eigenvalues in decreasing magnitude; vectors of length n.
pub fn top_eigenpairs(
    a: &WeightedGraph,
    want: usize,
    seed: u64,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    if a.n <= DENSE_LIMIT {
        dense_top(a, want)
    } else {
        lanczos_top(a, want, seed)
    }
}

fn pick_largest(values: &[f64], want: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].abs().total_cmp(&values[i].abs()).then(i.cmp(&j)));
    order.truncate(want);
    order
}

fn dense_top(a: &WeightedGraph, want: usize) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let n = a.n;
    let mut m = Mat::<f64>::zeros(n, n);
    for i in 0..n {
        let (cols, w) = a.row(i);
        for (&j, &w) in cols.iter().zip(w) {
            m[(i, j as usize)] = w;
        }
    }
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Format(format!("eigendecomposition failed: {e:?}")))?;
    let values: Vec<f64> = (0..n).map(|i| evd.S()[i]).collect();
    let u = evd.U();
    let idx = pick_largest(&values, want);
    Ok((
        idx.iter().map(|&i| values[i]).collect(),
        idx.iter()
            .map(|&i| (0..n).map(|r| u[(r, i)]).collect())
            .collect(),
    ))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Orthogonalises `w` against the first `m` columns of the column-major `basis` by classical
/// Gram-Schmidt, repeated once when the first pass cancelled most of `w` ("twice is enough").
fn orthogonalise(basis: &[f64], n: usize, m: usize, w: &mut [f64]) {
    if m == 0 {
        return;
    }
    let v = MatRef::from_column_major_slice(&basis[..m * n], n, m);
    let mut coef = vec![0.0f64; m];
    for _ in 0..2 {
        let before = dot(w, w);
        {
            let wr = MatRef::from_column_major_slice(w, n, 1);
            let dst = MatMut::from_column_major_slice_mut(&mut coef, m, 1);
            matmul(dst, Accum::Replace, v.transpose(), wr, 1.0, Par::Seq);
        }
        let c = MatRef::from_column_major_slice(&coef, m, 1);
        let dst = MatMut::from_column_major_slice_mut(w, n, 1);
        matmul(dst, Accum::Add, v, c, -1.0, Par::Seq);
        if dot(w, w) > 0.5 * before {
            break;
        }
    }
}

fn lanczos_top(a: &WeightedGraph, want: usize, seed: u64) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let n = a.n;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut random_unit = |basis: &[f64], m: usize| -> Vec<f64> {
        loop {
            let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
            orthogonalise(basis, n, m, &mut v);
            let norm = dot(&v, &v).sqrt();
            if norm > 1e-8 {
                v.iter_mut().for_each(|x| *x /= norm);
                return v;
            }
        }
    };
    let mut basis: Vec<f64> = random_unit(&[], 0);
    let mut alpha: Vec<f64> = Vec::new();
    let mut beta: Vec<f64> = Vec::new();
    let mut w = vec![0.0; n];
    // Convergence checks cost O(m^3): start where ~100 pairs usually need, then space them.
    let mut next_check = (2 * want + 20).min(n);
    loop {
        let m = alpha.len();
        let v = &basis[m * n..(m + 1) * n];
        spmv(a, v, &mut w);
        let al = dot(v, &w);
        alpha.push(al);
        let m1 = m + 1;
        orthogonalise(&basis, n, m1, &mut w);
        let be = dot(&w, &w).sqrt();
        let full = m1 == n;
        if m1 >= next_check || full {
            let (values, vectors) = tridiagonal_eigen(&alpha, &beta)?;
            let idx = pick_largest(&values, want);
            // A pair's error enters the embedding scaled by its multiscale weight, so the
            // residual is judged relative to the largest weight: the heavy leading pairs must
            // be accurate, the light tail may be rougher.
            let weights: Vec<f64> = idx.iter().map(|&i| multiscale(values[i]).abs()).collect();
            let max_weight = weights.iter().fold(1.0f64, |m, &w| m.max(w));
            let converged = idx.iter().zip(&weights).all(|(&i, &wt)| {
                let residual = (be * vectors[(m1 - 1, i)]).abs();
                residual <= MAX_RESIDUAL && residual * wt <= RITZ_TOLERANCE * max_weight
            });
            if converged || full {
                let ritz = MatRef::from_column_major_slice(&basis[..m1 * n], n, m1);
                let mut s = Mat::<f64>::zeros(m1, idx.len());
                for (c, &i) in idx.iter().enumerate() {
                    for r in 0..m1 {
                        s[(r, c)] = vectors[(r, i)];
                    }
                }
                let mut y = Mat::<f64>::zeros(n, idx.len());
                matmul(y.as_mut(), Accum::Replace, ritz, s.as_ref(), 1.0, Par::Seq);
                return Ok((
                    idx.iter().map(|&i| values[i]).collect(),
                    (0..idx.len())
                        .map(|c| (0..n).map(|r| y[(r, c)]).collect())
                        .collect(),
                ));
            }
            next_check = (m1 + (m1 / 5).max(20)).min(n);
        }
        if be <= 1e-10 {
            // Invariant subspace found: continue with a fresh direction (the tridiagonal
            // matrix decouples, beta = 0).
            beta.push(0.0);
            let fresh = random_unit(&basis, m1);
            basis.extend_from_slice(&fresh);
        } else {
            beta.push(be);
            basis.extend(w.iter().map(|x| x / be));
        }
    }
}

/// Eigen-decomposition of the symmetric tridiagonal matrix with diagonal `alpha` and
/// off-diagonal `beta` (values ascending, vectors as columns).
fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> Result<(Vec<f64>, Mat<f64>)> {
    let m = alpha.len();
    let mut t = Mat::<f64>::zeros(m, m);
    for i in 0..m {
        t[(i, i)] = alpha[i];
        if i + 1 < m {
            t[(i + 1, i)] = beta[i];
            t[(i, i + 1)] = beta[i];
        }
    }
    let evd = t
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Format(format!("eigendecomposition failed: {e:?}")))?;
    let values = (0..m).map(|i| evd.S()[i]).collect();
    Ok((values, evd.U().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::metrics::umap_graph::umap_connectivities;
    use crate::neighbors::knn_exact;

    #[test]
    fn lanczos_agrees_with_dense() {
        let (x, _) = blobs(&[vec![0.0, 0.0, 0.0], vec![4.0, 0.0, 0.0]], 450, 1.0, 5);
        let conn = umap_connectivities(&knn_exact(&x, 14).unwrap());
        let t = symmetric_transitions(&conn).unwrap();
        let (dv, dvec) = dense_top(&t, 30).unwrap();
        let (lv, lvec) = lanczos_top(&t, 30, 1).unwrap();
        assert!(
            (dv[0] - 1.0).abs() < 1e-10,
            "top eigenvalue of a transition matrix is 1"
        );
        for i in 0..30 {
            assert!((dv[i] - lv[i]).abs() < 1e-8, "{i}: {} vs {}", dv[i], lv[i]);
        }
        // Well-separated leading vectors agree up to sign.
        for i in 0..3 {
            let c = dot(&dvec[i], &lvec[i]).abs();
            assert!(c > 1.0 - 1e-6, "vector {i}: |cos| = {c}");
        }
    }

    #[test]
    fn disconnected_graph_has_one_unit_eigenvalue_per_component() {
        let (x, _) = blobs(&[vec![0.0, 0.0], vec![1000.0, 0.0]], 60, 1.0, 2);
        let conn = umap_connectivities(&knn_exact(&x, 9).unwrap());
        assert_eq!(conn.components().0, 2);
        let emb = diffusion_embedding(&conn, 10, 0).unwrap();
        assert_eq!((emb.n_rows, emb.n_cols), (120, 10));
        // The two unit-eigenvalue components are each supported on one blob.
        let support = |col: usize| {
            (0..120)
                .filter(|&r| emb.data[r * 10 + col].abs() > 1e-12)
                .count()
        };
        assert_eq!(support(0), 60);
        assert_eq!(support(1), 60);
    }

    #[test]
    fn multiscale_mimics_float32() {
        assert_eq!(multiscale(1.0 - 1e-12), 1.0);
        assert!((multiscale(0.5) - 1.0).abs() < 1e-6);
        assert!((multiscale(0.9) - 9.0).abs() < 1e-4);
    }
}
