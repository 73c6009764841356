//! Diffusion-map embedding of a connectivity graph (scanpy's and scib-metrics' recipe):
//! density normalisation K = Q^-1 W Q^-1 (q = degrees), symmetric transitions
//! T = Z^-1 K Z^-1 (z = sqrt of K's row sums), the eigenpairs of T of largest magnitude, and
//! each eigenvector scaled by lambda / (1 - lambda) (by 1 where lambda rounds to 1 in f32, as
//! scib-metrics' float32 arithmetic does), so Euclidean distances approximate diffusion
//! distances with the number of steps integrated out.
//!
//! Eigenpairs: dense decomposition for small graphs, otherwise Lanczos with full
//! reorthogonalisation on T^2 followed by a Rayleigh-Ritz step with T. A disconnected graph is block-diagonal, so each component is decomposed on its
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
use crate::simd::clear_upper_simd_state;

/// Ritz pairs count as converged when residual x weight is below this share of the largest
/// weight (and the residual below `MAX_RESIDUAL`).
const RITZ_TOLERANCE: f64 = 1e-5;
const MAX_RESIDUAL: f64 = 1e-2;

/// Eigenpairs a component computes beyond its share of the wanted ones.
const COMPONENT_MARGIN: usize = 15;

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
    // The leading eigenpairs of a block-diagonal matrix are those of its blocks: each component
    // first computes about its share of them (plus a margin), and a component whose smallest
    // computed magnitude still reaches the overall cut is recomputed in full.
    let decompose = |c: usize, want: usize| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let block = if n_comp == 1 {
            transitions.clone()
        } else {
            transitions.induced(&members[c])
        };
        top_eigenpairs(&block, want.min(block.n), seed.wrapping_add(c as u64))
    };
    let full_want = |c: usize| n_comps.min(members[c].len());
    let share_want = |c: usize| {
        let share = (n_comps * members[c].len()).div_ceil(n) + COMPONENT_MARGIN;
        share.min(full_want(c))
    };
    let mut per_component = (0..n_comp)
        .into_par_iter()
        .map(|c| decompose(c, share_want(c)))
        .collect::<Result<Vec<_>>>()?;
    let mut magnitudes: Vec<f64> = per_component
        .iter()
        .flat_map(|(v, _)| v.iter().map(|x| x.abs()))
        .collect();
    magnitudes.sort_by(|a, b| b.total_cmp(a));
    let cut = magnitudes.get(n_comps - 1).copied().unwrap_or(0.0);
    let redo: Vec<usize> = (0..n_comp)
        .filter(|&c| {
            let (values, _) = &per_component[c];
            values.len() < full_want(c) && values.last().is_some_and(|v| v.abs() >= cut)
        })
        .collect();
    let redone = redo
        .par_iter()
        .map(|&c| decompose(c, full_want(c)))
        .collect::<Result<Vec<_>>>()?;
    for (&c, result) in redo.iter().zip(redone) {
        per_component[c] = result;
    }
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

/// Rows per parallel task of the Lanczos products: fixed, so that sums (and results) do not
/// depend on the number of threads; small graphs run on the calling thread.
const ROW_CHUNK: usize = 1024;

fn spmv(a: &WeightedGraph, x: &[f64], y: &mut [f64]) {
    let rows = |offset: usize, y: &mut [f64]| {
        for (r, yi) in y.iter_mut().enumerate() {
            let (cols, w) = a.row(offset + r);
            // Four partial sums: one running sum would wait on each addition's latency.
            let mut acc = [0.0f64; 4];
            let (cols4, w4) = (cols.chunks_exact(4), w.chunks_exact(4));
            let tail: f64 = cols4
                .remainder()
                .iter()
                .zip(w4.remainder())
                .map(|(&j, &w)| w * x[j as usize])
                .sum();
            for (c, w) in cols4.zip(w4) {
                for lane in 0..4 {
                    acc[lane] += w[lane] * x[c[lane] as usize];
                }
            }
            *yi = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
        }
    };
    if y.len() <= ROW_CHUNK {
        rows(0, y);
    } else {
        y.par_chunks_mut(ROW_CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| rows(c * ROW_CHUNK, chunk));
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
        lanczos_squared_top(a, want, seed)
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
/// Both products run over fixed row chunks in parallel, the chunks' coefficients summed in
/// order.
fn orthogonalise(basis: &[f64], n: usize, m: usize, w: &mut [f64]) {
    if m == 0 {
        return;
    }
    let v = MatRef::from_column_major_slice(&basis[..m * n], n, m);
    let chunks = n.div_ceil(ROW_CHUNK);
    for _ in 0..2 {
        let before = dot(w, w);
        let partial = |c: usize| -> Vec<f64> {
            let (start, end) = (c * ROW_CHUNK, ((c + 1) * ROW_CHUNK).min(n));
            let mut coef = vec![0.0f64; m];
            let wr = MatRef::from_column_major_slice(&w[start..end], end - start, 1);
            let dst = MatMut::from_column_major_slice_mut(&mut coef, m, 1);
            let rows = v.subrows(start, end - start);
            matmul(dst, Accum::Replace, rows.transpose(), wr, 1.0, Par::Seq);
            clear_upper_simd_state();
            coef
        };
        let partials: Vec<Vec<f64>> = if chunks == 1 {
            vec![partial(0)]
        } else {
            (0..chunks).into_par_iter().map(partial).collect()
        };
        let mut coef = partials[0].clone();
        for p in &partials[1..] {
            coef.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        let c = MatRef::from_column_major_slice(&coef, m, 1);
        let update = |(chunk, w_chunk): (usize, &mut [f64])| {
            let start = chunk * ROW_CHUNK;
            let len = w_chunk.len();
            let dst = MatMut::from_column_major_slice_mut(w_chunk, len, 1);
            matmul(dst, Accum::Add, v.subrows(start, len), c, -1.0, Par::Seq);
            clear_upper_simd_state();
        };
        if chunks == 1 {
            update((0, w));
        } else {
            w.par_chunks_mut(ROW_CHUNK).enumerate().for_each(update);
        }
        if dot(w, w) > 0.5 * before {
            break;
        }
    }
}

/// Lanczos steps between two convergence screens (a screen costs a few steps' time).
const SCREEN_EVERY: usize = 12;

/// Extra Ritz vectors of T^2 kept for the Rayleigh-Ritz step on T.
const SQUARED_EXTRA: usize = 20;

/// Lanczos on T^2: the eigenvalues of largest magnitude of T (both signs) become the largest of
/// T^2, at one end of its spectrum, where Lanczos converges fastest (the unwanted ones crowd
/// near 0). A Rayleigh-Ritz step with T on the leading Ritz vectors of T^2 then separates
/// +lambda from -lambda and gives T's eigenpairs; convergence is judged on T's residuals.
fn lanczos_squared_top(
    a: &WeightedGraph,
    want: usize,
    seed: u64,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let n = a.n;
    let p = (want + SQUARED_EXTRA).min(n);
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
    let mut half = vec![0.0; n];
    let mut next_check = (2 * (p + 40)).min(n);
    let mut next_screen = (want + 20).min(n);
    loop {
        let m = alpha.len();
        let v = &basis[m * n..(m + 1) * n];
        spmv(a, v, &mut half);
        spmv(a, &half, &mut w);
        alpha.push(dot(v, &w));
        let m1 = m + 1;
        orthogonalise(&basis, n, m1, &mut w);
        let be = dot(&w, &w).sqrt();
        let full = m1 == n;
        // Cheap screen first (O(m^2), no work of length n): the full Rayleigh-Ritz check below
        // costs about as much as tens of Lanczos steps, so it runs only once the Ritz values
        // of T^2 look converged.
        let mut screened = false;
        if m1 >= next_screen && !full {
            screened = ritz_estimates_converged(&alpha, &beta, be, want);
            next_screen = (m1 + SCREEN_EVERY).min(n);
        }
        if screened || m1 >= next_check || full {
            let (_, vectors) = tridiagonal_eigen(&alpha, &beta)?;
            // Leading Ritz vectors of T^2 (values ascending: take the last p).
            let take = p.min(m1);
            let mut s = Mat::<f64>::zeros(m1, take);
            for c in 0..take {
                for r in 0..m1 {
                    s[(r, c)] = vectors[(r, m1 - 1 - c)];
                }
            }
            let v_mat = MatRef::from_column_major_slice(&basis[..m1 * n], n, m1);
            let mut y = Mat::<f64>::zeros(n, take);
            matmul(y.as_mut(), Accum::Replace, v_mat, s.as_ref(), 1.0, Par::Seq);
            // Rayleigh-Ritz with T on span(y).
            let mut ty = Mat::<f64>::zeros(n, take);
            let mut col = vec![0.0; n];
            let mut out = vec![0.0; n];
            for c in 0..take {
                for r in 0..n {
                    col[r] = y[(r, c)];
                }
                spmv(a, &col, &mut out);
                for r in 0..n {
                    ty[(r, c)] = out[r];
                }
            }
            let mut h = Mat::<f64>::zeros(take, take);
            matmul(
                h.as_mut(),
                Accum::Replace,
                y.as_ref().transpose(),
                ty.as_ref(),
                1.0,
                Par::Seq,
            );
            let hs = Mat::<f64>::from_fn(take, take, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
            let evd = hs
                .self_adjoint_eigen(Side::Lower)
                .map_err(|e| Error::Format(format!("eigendecomposition failed: {e:?}")))?;
            let theta: Vec<f64> = (0..take).map(|i| evd.S()[i]).collect();
            let idx = pick_largest(&theta, want.min(take));
            let u = Mat::<f64>::from_fn(take, idx.len(), |r, c| evd.U()[(r, idx[c])]);
            let mut x = Mat::<f64>::zeros(n, idx.len());
            let mut tx = Mat::<f64>::zeros(n, idx.len());
            matmul(
                x.as_mut(),
                Accum::Replace,
                y.as_ref(),
                u.as_ref(),
                1.0,
                Par::Seq,
            );
            matmul(
                tx.as_mut(),
                Accum::Replace,
                ty.as_ref(),
                u.as_ref(),
                1.0,
                Par::Seq,
            );
            clear_upper_simd_state();
            let values: Vec<f64> = idx.iter().map(|&i| theta[i]).collect();
            let weights: Vec<f64> = values.iter().map(|&v| multiscale(v).abs()).collect();
            let max_weight = weights.iter().fold(1.0f64, |m, &w| m.max(w));
            let converged = idx.len() == want
                && (0..want).all(|c| {
                    let residual = (0..n)
                        .map(|r| {
                            let e = tx[(r, c)] - values[c] * x[(r, c)];
                            e * e
                        })
                        .sum::<f64>()
                        .sqrt();
                    residual <= MAX_RESIDUAL && residual * weights[c] <= RITZ_TOLERANCE * max_weight
                });
            if converged || full {
                return Ok((
                    values,
                    (0..idx.len())
                        .map(|c| (0..n).map(|r| x[(r, c)]).collect())
                        .collect(),
                ));
            }
            // A failed check is retried when the screen passes again or, as a backstop for a
            // screen that never passes, after as many steps again.
            next_check = (2 * m1).min(n);
        }
        if be <= 1e-10 {
            beta.push(0.0);
            let fresh = random_unit(&basis, m1);
            basis.extend_from_slice(&fresh);
        } else {
            beta.push(be);
            basis.extend(w.iter().map(|x| x / be));
        }
    }
}

/// Whether the `want` leading Ritz pairs of T^2 from a Lanczos tridiagonal (`alpha`, `beta`;
/// `next_beta` the norm of the next residual) look converged enough for T's criterion. The
/// Ritz residual of T^2 is next_beta x |last component of the Ritz vector| (the standard
/// Lanczos bound); a T residual near lambda is about that over |lambda| (between that and half
/// of it), weighted with the larger, positive-lambda weight: a screen erring towards checking.
fn ritz_estimates_converged(alpha: &[f64], beta: &[f64], next_beta: f64, want: usize) -> bool {
    let m = alpha.len();
    if m < want {
        return false;
    }
    let Some((values, last)) = tridiagonal_values_last_components(alpha, beta) else {
        return false;
    };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    order.truncate(want);
    let weight = |theta: f64| multiscale(theta.max(0.0).sqrt()).abs();
    let max_weight = order.iter().fold(1.0f64, |w, &i| w.max(weight(values[i])));
    order.iter().all(|&i| {
        let lambda = values[i].max(0.0).sqrt();
        if !(lambda > 0.0) {
            return false;
        }
        let residual = next_beta * last[i].abs() / lambda;
        residual <= MAX_RESIDUAL && residual * weight(values[i]) <= RITZ_TOLERANCE * max_weight
    })
}

/// Eigenvalues of the symmetric tridiagonal matrix (diagonal `alpha`, off-diagonal `beta`) and
/// the last component of each eigenvector, by implicit QL with Wilkinson shifts that applies
/// its rotations to the last row of the eigenvector matrix only (O(m^2) in all). `None` if an
/// eigenvalue fails to converge.
fn tridiagonal_values_last_components(alpha: &[f64], beta: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let m = alpha.len();
    let mut d = alpha.to_vec();
    let mut e: Vec<f64> = beta.iter().take(m.saturating_sub(1)).copied().collect();
    e.push(0.0);
    let mut z = vec![0.0; m];
    z[m - 1] = 1.0;
    for l in 0..m {
        let mut iterations = 0;
        loop {
            // Find a negligible off-diagonal element at or after l.
            let mut split = l;
            while split + 1 < m {
                let dd = d[split].abs() + d[split + 1].abs();
                if e[split].abs() <= f64::EPSILON * dd {
                    break;
                }
                split += 1;
            }
            if split == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                return None;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            // Plain square roots (not hypot): the entries are of order one, far from overflow.
            let mut r = (g * g + 1.0).sqrt();
            g = d[split] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut i = split;
            let mut underflow = false;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = (f * f + g * g).sqrt();
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[split] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                let zf = z[i + 1];
                z[i + 1] = s * z[i] + c * zf;
                z[i] = c * z[i] - s * zf;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[split] = 0.0;
        }
    }
    Some((d, z))
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
    fn squared_lanczos_agrees_with_dense() {
        let (x, _) = blobs(&[vec![0.0, 0.0, 0.0], vec![4.0, 0.0, 0.0]], 450, 1.0, 5);
        let conn = umap_connectivities(&knn_exact(&x, 14).unwrap());
        let t = symmetric_transitions(&conn).unwrap();
        let want = 300;
        let (dv, dvec) = dense_top(&t, want).unwrap();
        let (lv, lvec) = lanczos_squared_top(&t, want, 1).unwrap();
        assert!(
            dv.iter().any(|&v| v < 0.0),
            "the test needs negative eigenvalues among the wanted"
        );
        // Heavy leading pairs tight; every pair within its weighted residual tolerance (a Ritz
        // value lies within the residual norm of an eigenvalue).
        let weight = |v: f64| multiscale(v).abs();
        let max_weight = dv.iter().fold(1.0f64, |m, &v| m.max(weight(v)));
        let (all, _) = dense_top(&t, t.n).unwrap();
        for i in 0..want {
            if i < 10 {
                assert!((dv[i] - lv[i]).abs() < 1e-9, "{i}: {} vs {}", dv[i], lv[i]);
                continue;
            }
            let tol = MAX_RESIDUAL.min(RITZ_TOLERANCE * max_weight / weight(lv[i]));
            let nearest = all
                .iter()
                .map(|v| (v - lv[i]).abs())
                .fold(f64::INFINITY, f64::min);
            assert!(
                nearest < tol,
                "{i}: {} is {nearest} from the spectrum",
                lv[i]
            );
        }
        for i in 0..3 {
            let c = dot(&dvec[i], &lvec[i]).abs();
            assert!(c > 1.0 - 1e-6, "vector {i}: |cos| = {c}");
        }
    }

    #[test]
    fn tridiagonal_last_components_match_the_dense_decomposition() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let m = 60;
        let alpha: Vec<f64> = (0..m).map(|_| StandardNormal.sample(&mut rng)).collect();
        let beta: Vec<f64> = (0..m - 1)
            .map(|_| 0.1 + f64::abs(StandardNormal.sample(&mut rng)))
            .collect();
        let (values, vectors) = tridiagonal_eigen(&alpha, &beta).unwrap();
        let (mut got, last) = tridiagonal_values_last_components(&alpha, &beta).unwrap();
        let mut pairs: Vec<(f64, f64)> = got.iter().copied().zip(last).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        got.sort_by(f64::total_cmp);
        for i in 0..m {
            assert!((values[i] - pairs[i].0).abs() < 1e-10, "value {i}");
            let expected = vectors[(m - 1, i)].abs();
            assert!(
                (expected - pairs[i].1.abs()).abs() < 1e-9,
                "last component {i}"
            );
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
    fn per_component_embedding_matches_the_whole_matrix() {
        // Three components of unequal size: distances in the embedding must equal those from
        // the dense decomposition of the whole block-diagonal matrix.
        let mut data = Vec::new();
        for (centre, n) in [(0.0, 100), (1000.0, 200), (2000.0, 300)] {
            let (x, _) = blobs(&[vec![centre, 0.0]], n, 1.0, n as u64);
            data.extend(x.data);
        }
        let x = DenseMatrix::new(600, 2, data).unwrap();
        let conn = umap_connectivities(&knn_exact(&x, 9).unwrap());
        assert_eq!(conn.components().0, 3);
        let n_comps = 40;
        let emb = diffusion_embedding(&conn, n_comps, 0).unwrap();
        let (values, vectors) = dense_top(&symmetric_transitions(&conn).unwrap(), n_comps).unwrap();
        let reference = |i: usize, j: usize| -> f64 {
            values
                .iter()
                .zip(&vectors)
                .map(|(&v, vec)| (multiscale(v) * (vec[i] - vec[j])).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        for (i, j) in [(0, 1), (5, 150), (120, 480), (599, 3), (250, 260)] {
            let got: f64 = (0..n_comps)
                .map(|c| (emb.data[i * n_comps + c] - emb.data[j * n_comps + c]).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (got - reference(i, j)).abs() < 1e-6 * (1.0 + reference(i, j)),
                "{i},{j}: {got} vs {}",
                reference(i, j)
            );
        }
    }

    #[test]
    fn multiscale_mimics_float32() {
        assert_eq!(multiscale(1.0 - 1e-12), 1.0);
        assert!((multiscale(0.5) - 1.0).abs() < 1e-6);
        assert!((multiscale(0.9) - 9.0).abs() < 1e-4);
    }
}
