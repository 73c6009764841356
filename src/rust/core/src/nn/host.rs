//! Dense and sparse products on the host, for the layers whose input or output is cells x genes.
//!
//! Why: on CPU the two widest layers of a count model (genes -> hidden on sparse counts,
//! hidden -> genes into the likelihood) cost most when run as generic tensor ops: the input is
//! densified although most counts are zero, and the outputs and their gradients travel between
//! the network and the likelihood kernel. Here the first layer multiplies the sparse counts
//! directly and the output layer feeds the kernel in place; only hidden-sized tensors go back
//! to the autodiff graph. All products are deterministic (no reduction order depends on threads).

use std::borrow::Cow;
use std::collections::HashMap;

use burn::module::ParamId;
use burn::nn::Linear;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::to_host;
use crate::data::CsrMatrix;

/// The master copies of the host-side parameters during training: the host Adam updates them
/// in place, and the module's tensors are written from them once per epoch, so a step copies
/// no weights between the module and the host.
#[derive(Default)]
pub struct HostStore {
    pub values: HashMap<ParamId, Vec<f32>>,
}

/// A burn `Linear` layer on the host for one pass (its values borrowed from the `HostStore`, or
/// copied from the module): forward and backward products run here; the weight gradients go
/// back to the optimiser under the layer's parameter ids.
pub struct HostLinear<'s> {
    pub d_in: usize,
    pub d_out: usize,
    /// `d_in x d_out`, row-major (burn's layout).
    pub weight: Cow<'s, [f32]>,
    pub bias: Cow<'s, [f32]>,
    weight_id: ParamId,
    bias_id: Option<ParamId>,
}

impl<'s> HostLinear<'s> {
    pub fn of(linear: &Linear, store: Option<&'s HostStore>) -> Self {
        let [d_in, d_out] = linear.weight.val().dims();
        let stored = |id: ParamId| {
            store
                .and_then(|s| s.values.get(&id))
                .map(|v| Cow::Borrowed(v.as_slice()))
        };
        Self {
            d_in,
            d_out,
            weight: stored(linear.weight.id)
                .unwrap_or_else(|| Cow::Owned(to_host(linear.weight.val()))),
            bias: match &linear.bias {
                Some(b) => stored(b.id).unwrap_or_else(|| Cow::Owned(to_host(b.val()))),
                None => Cow::Owned(vec![0.0; d_out]),
            },
            weight_id: linear.weight.id,
            bias_id: linear.bias.as_ref().map(|b| b.id),
        }
    }

    /// `x (n x d_in) W + b`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = matmul_ab(x, &self.weight, n, self.d_in, self.d_out);
        for row in out.chunks_exact_mut(self.d_out) {
            for (o, &b) in row.iter_mut().zip(self.bias.iter()) {
                *o += b;
            }
        }
        out
    }

    /// Adds d/d x of `sum(d_output * output)` to `d_x` (`n x d_in`).
    pub fn backward_input(&self, d_output: &[f32], n: usize, d_x: &mut [f32]) {
        matmul_abt_add(d_x, d_output, &self.weight, n, self.d_out, self.d_in);
    }

    /// Records the weight and bias gradients of `sum_i w_i sum(d_output_i * output_i)` for
    /// inputs `x` (`n x d_in`).
    pub fn backward_weights(
        &self,
        x: &[f32],
        d_output: &[f32],
        w: &[f32],
        n: usize,
        grads: &mut Gradients,
    ) {
        let uniform = w.iter().all(|&v| v == w[0]);
        let (d_weight, d_bias) = if uniform {
            // The usual case (a mean over cells): one scale for the whole product.
            let d_weight = matmul_atb_scaled(x, d_output, n, self.d_in, self.d_out, w[0]);
            let mut d_bias = column_sums(d_output, n, self.d_out);
            d_bias.iter_mut().for_each(|v| *v *= w[0]);
            (d_weight, d_bias)
        } else {
            let weighted: Vec<f32> = x
                .chunks_exact(self.d_in)
                .zip(w)
                .flat_map(|(row, &wi)| row.iter().map(move |&v| v * wi))
                .collect();
            let d_weight = matmul_atb(&weighted, d_output, n, self.d_in, self.d_out);
            let mut d_bias = vec![0f32; self.d_out];
            for (row, &wi) in d_output.chunks_exact(self.d_out).zip(w) {
                for (o, &v) in d_bias.iter_mut().zip(row) {
                    *o += wi * v;
                }
            }
            (d_weight, d_bias)
        };
        grads.push(self.weight_id, d_weight);
        if let Some(id) = self.bias_id {
            grads.push(id, d_bias);
        }
    }

    /// The first layer of an encoder on counts: `x W[..g] + sum_c W[g + c] + b` for the cells
    /// `rows` of `counts` (`g` genes), with `values` in place of the stored counts (e.g. their
    /// log1p, same order) and the one-hot covariate columns `columns[i]` of cell i (their
    /// weight rows follow the genes'). The counts stay sparse.
    pub fn forward_sparse(
        &self,
        counts: &CsrMatrix,
        rows: &[usize],
        values: &[f32],
        columns: &[Vec<usize>],
    ) -> Vec<f32> {
        let h = self.d_out;
        let g = counts.n_cols;
        let mut out = sparse_matmul(counts, rows, values, &self.weight, h);
        for (i, row) in out.chunks_exact_mut(h).enumerate() {
            for (o, &b) in row.iter_mut().zip(self.bias.iter()) {
                *o += b;
            }
            for &c in &columns[i] {
                let c = g + c;
                for (o, &w) in row.iter_mut().zip(&self.weight[c * h..(c + 1) * h]) {
                    *o += w;
                }
            }
        }
        out
    }

    /// Weight and bias gradients of `forward_sparse` given d loss / d output (`n x d_out`).
    pub fn backward_sparse(
        &self,
        counts: &CsrMatrix,
        rows: &[usize],
        values: &[f32],
        columns: &[Vec<usize>],
        d_output: &[f32],
        grads: &mut Gradients,
    ) {
        let h = self.d_out;
        let g = counts.n_cols;
        let mut d_weight = vec![0f32; self.d_in * h];
        sparse_transpose_matmul(counts, rows, values, d_output, h, &mut d_weight);
        for (i, d) in d_output.chunks_exact(h).enumerate() {
            for &c in &columns[i] {
                let c = g + c;
                for (o, &v) in d_weight[c * h..(c + 1) * h].iter_mut().zip(d) {
                    *o += v;
                }
            }
        }
        grads.push(self.weight_id, d_weight);
        if let Some(id) = self.bias_id {
            grads.push(id, column_sums(d_output, d_output.len() / h, h));
        }
    }
}

/// Gradients of the host-side parameters, by parameter id; the host Adam applies them.
#[derive(Default)]
pub struct Gradients {
    entries: Vec<(ParamId, Vec<f32>)>,
}

impl Gradients {
    /// Adds `gradient` to parameter `id`'s (a layer used by two passes of one step sums both).
    pub fn push(&mut self, id: ParamId, gradient: Vec<f32>) {
        match self.entries.iter_mut().find(|e| e.0 == id) {
            Some((_, g)) => g.iter_mut().zip(&gradient).for_each(|(a, b)| *a += b),
            None => self.entries.push((id, gradient)),
        }
    }

    /// The gradient of parameter `id`, if it was computed here.
    pub fn gradient(&self, id: ParamId) -> Option<&[f32]> {
        self.entries
            .iter()
            .find(|e| e.0 == id)
            .map(|e| e.1.as_slice())
    }

    pub fn into_entries(self) -> Vec<(ParamId, Vec<f32>)> {
        self.entries
    }
}

/// `a (m x k) @ b (k x n)`, row-major.
pub fn matmul_ab(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    if m * n > 0 {
        matmul(
            MatMut::from_row_major_slice_mut(&mut out, m, n),
            Accum::Replace,
            MatRef::from_row_major_slice(a, m, k),
            MatRef::from_row_major_slice(b, k, n),
            1.0f32,
            par(m * n * k),
        );
    }
    out
}

/// `a^T (k x m) @ b (m x n)` for row-major `a (m x k)`, `b (m x n)`.
pub fn matmul_atb(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    matmul_atb_scaled(a, b, m, k, n, 1.0)
}

/// `alpha a^T b`, as `matmul_atb`.
pub fn matmul_atb_scaled(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
) -> Vec<f32> {
    let mut out = vec![0f32; k * n];
    if k * n > 0 {
        matmul(
            MatMut::from_row_major_slice_mut(&mut out, k, n),
            Accum::Replace,
            MatRef::from_row_major_slice(a, m, k).transpose(),
            MatRef::from_row_major_slice(b, m, n),
            alpha,
            par(m * n * k),
        );
    }
    out
}

/// `out (m x k) += a (m x n) @ b^T` for row-major `b (k x n)`.
pub fn matmul_abt_add(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize) {
    if m * k > 0 {
        matmul(
            MatMut::from_row_major_slice_mut(out, m, k),
            Accum::Add,
            MatRef::from_row_major_slice(a, m, n),
            MatRef::from_row_major_slice(b, k, n).transpose(),
            1.0f32,
            par(m * n * k),
        );
    }
}

/// Threads only pay off for big products.
fn par(flops: usize) -> Par {
    if flops >= 1 << 20 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// Column sums of a row-major `m x n` matrix.
pub fn column_sums(a: &[f32], m: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    for row in a.chunks_exact(n).take(m) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// `x[rows] (b x g, sparse) @ w[..g] (g x h)` where x has the sparsity of `counts` and the
/// stored `values` (e.g. log1p counts): the first layer without densifying.
pub fn sparse_matmul(
    counts: &CsrMatrix,
    rows: &[usize],
    values: &[f32],
    w: &[f32],
    h: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; rows.len() * h];
    out.par_chunks_mut(h)
        .zip(rows.par_iter())
        .for_each(|(o, &r)| {
            let span = counts.indptr[r]..counts.indptr[r + 1];
            for (&c, &x) in counts.indices[span.clone()].iter().zip(&values[span]) {
                let wr = &w[c as usize * h..(c as usize + 1) * h];
                for (a, &b) in o.iter_mut().zip(wr) {
                    *a += x * b;
                }
            }
        });
    out
}

/// `x[rows]^T (g x b, sparse) @ d (b x h)` (x as in `sparse_matmul`), written into the first
/// `g` rows of a `(g + extra) x h` gradient: each gene's row is a sum over the minibatch's cells
/// in cell order.
pub fn sparse_transpose_matmul(
    counts: &CsrMatrix,
    rows: &[usize],
    values: &[f32],
    d: &[f32],
    h: usize,
    out: &mut [f32],
) {
    let g = counts.n_cols;
    // The minibatch transposed (genes -> (cell, value)), in cell order within each gene.
    let mut starts = vec![0usize; g + 1];
    for &r in rows {
        for &c in counts.row(r).0 {
            starts[c as usize + 1] += 1;
        }
    }
    for j in 0..g {
        starts[j + 1] += starts[j];
    }
    let mut fill = starts.clone();
    let mut entries = vec![(0u32, 0f32); starts[g]];
    for (i, &r) in rows.iter().enumerate() {
        let span = counts.indptr[r]..counts.indptr[r + 1];
        for (&c, &v) in counts.indices[span.clone()].iter().zip(&values[span]) {
            entries[fill[c as usize]] = (i as u32, v);
            fill[c as usize] += 1;
        }
    }
    out[..g * h]
        .par_chunks_mut(h)
        .enumerate()
        .for_each(|(j, o)| {
            o.fill(0.0);
            for &(i, x) in &entries[starts[j]..starts[j + 1]] {
                let dr = &d[i as usize * h..(i as usize + 1) * h];
                for (a, &b) in o.iter_mut().zip(dr) {
                    *a += x * b;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(counts: &CsrMatrix, rows: &[usize]) -> Vec<f32> {
        let mut d = vec![0f32; rows.len() * counts.n_cols];
        counts.densify_rows_into(rows, &mut d);
        d.iter_mut().for_each(|v| *v = v.ln_1p());
        d
    }

    #[test]
    fn products_agree_with_naive_loops() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let ab = matmul_ab(&a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                assert!((ab[i * n + j] - s).abs() < 1e-5);
            }
        }
        // a^T ab recovers sum_i a_it ab_ij
        let atb = matmul_atb(&a, &ab, m, k, n);
        for t in 0..k {
            for j in 0..n {
                let s: f32 = (0..m).map(|i| a[i * k + t] * ab[i * n + j]).sum();
                assert!((atb[t * n + j] - s).abs() < 1e-4);
            }
        }
        let mut out = vec![1f32; m * k];
        matmul_abt_add(&mut out, &ab, &b, m, n, k);
        for i in 0..m {
            for t in 0..k {
                let s: f32 = (0..n).map(|j| ab[i * n + j] * b[t * n + j]).sum();
                assert!((out[i * k + t] - 1.0 - s).abs() < 1e-4);
            }
        }
        assert_eq!(
            column_sums(&a, m, k)[2],
            (0..m).map(|i| a[i * k + 2]).sum::<f32>()
        );
    }

    #[test]
    fn sparse_products_agree_with_dense_ones() {
        let counts = CsrMatrix::new(
            4,
            5,
            vec![0, 2, 2, 5, 6],
            vec![0, 3, 1, 2, 4, 3],
            vec![1., 4., 2., 7., 1., 3.],
        )
        .unwrap();
        let rows = [3, 0, 2, 1];
        let h = 3;
        let w: Vec<f32> = (0..5 * h).map(|i| i as f32 * 0.1 - 0.5).collect();
        let x = dense(&counts, &rows);
        let expected = matmul_ab(&x, &w, 4, 5, h);
        let log1p: Vec<f32> = counts.values.iter().map(|v| v.ln_1p()).collect();
        let got = sparse_matmul(&counts, &rows, &log1p, &w, h);
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5);
        }
        let d: Vec<f32> = (0..4 * h).map(|i| (i as f32).sin()).collect();
        let expected = matmul_atb(&x, &d, 4, 5, h);
        let mut got = vec![9f32; 6 * h]; // one extra row beyond the genes stays untouched
        sparse_transpose_matmul(&counts, &rows, &log1p, &d, h, &mut got);
        for (a, b) in got[..5 * h].iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5);
        }
        assert!(got[5 * h..].iter().all(|&v| v == 9.0));
    }
}
