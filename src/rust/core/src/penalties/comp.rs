//! CoMP (seed 001, eq. 4-5): the contrastive mixture of posteriors. For each cell i of a
//! minibatch, the log-ratio of the mixture of the posteriors of the cells of its own condition
//! (itself included, or left out) to the mixture of the posteriors of the other conditions' cells, both
//! evaluated at z_i. Zero in expectation when q(z | c) does not depend on c.

use burn::tensor::Tensor;

use super::{Penalty, condition_masks};
use crate::models::Representation;
use crate::nn::tensor_2d;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Large enough that exp() of it is 0, small enough to stay finite in f32 sums.
const LOG_ZERO: f32 = -1e30;

#[derive(Debug, Clone)]
pub struct Comp {
    pub weight: f64,
    /// Count the cell in its own condition's mixture, as seed 001's eq. 4 prints it (the
    /// default). Left out (METHODS' and the reference code's form), the penalty has no lower
    /// bound: cells can over-mix, each nearer to the other condition's posteriors than to its
    /// own's; on Kang with stimulated CD14 monocytes held out that run diverged (issue 10).
    pub include_self: bool,
}

/// log q(z_i | x_j) for every pair (`n x n`): row i is z_i, column j the posterior of cell j.
pub fn pairwise_log_posterior(z: Tensor<2>, mean: Tensor<2>, var: Tensor<2>) -> Tensor<2> {
    let [n, d] = z.dims();
    let precision = var.clone().recip();
    let z2_term = z
        .clone()
        .powi_scalar(2)
        .matmul(precision.clone().transpose());
    let cross = z.matmul((mean.clone() * precision.clone()).transpose());
    let mean_term = (mean.powi_scalar(2) * precision).sum_dim(1).transpose();
    // sum_d (z_id - m_jd)^2 / v_jd, expanded into matrix products; >= 0 up to rounding.
    let quadratic = (z2_term - cross.mul_scalar(2.0) + mean_term.expand([n, n])).clamp_min(0.0);
    let log_det = var.log().sum_dim(1).transpose().expand([n, n]);
    (quadratic + log_det)
        .add_scalar(d as f64 * LN_2PI)
        .mul_scalar(-0.5)
}

/// Row-wise log of the mean of exp(`log_values`) over the entries where `log_mask` is 0.
fn masked_log_mean_exp(log_values: Tensor<2>, log_mask: Tensor<2>, counts: Tensor<2>) -> Tensor<2> {
    let masked = log_values + log_mask;
    let max = masked.clone().max_dim(1).detach();
    let [n, m] = masked.dims();
    (masked - max.clone().expand([n, m])).exp().sum_dim(1).log() + max - counts.log()
}

/// The CoMP penalty of a minibatch: the mean over the cells that have both another cell of
/// their condition and a cell of another condition.
pub fn comp_penalty(rep: &Representation, conditions: &[u32], include_self: bool) -> Tensor<1> {
    let device = rep.z.device();
    let n = conditions.len();
    let masks = condition_masks(conditions);
    let log_q = pairwise_log_posterior(rep.z.clone(), rep.mean.clone(), rep.var.clone());
    let as_log_mask = |same_side: bool| -> Vec<f32> {
        masks
            .pairs
            .iter()
            .map(|&p| {
                let inside = p == Some(same_side) || (same_side && include_self && p.is_none());
                if inside { 0.0 } else { LOG_ZERO }
            })
            .collect()
    };
    let n_same: Vec<f32> = masks
        .n_same
        .iter()
        .map(|&c| c + if include_self { 1.0 } else { 0.0 })
        .collect();
    let column = |v: &[f32]| tensor_2d(v.iter().map(|&c| c.max(1.0)).collect(), n, 1, &device);
    let same = masked_log_mean_exp(
        log_q.clone(),
        tensor_2d(as_log_mask(true), n, n, &device),
        column(&n_same),
    );
    let other = masked_log_mean_exp(
        log_q,
        tensor_2d(as_log_mask(false), n, n, &device),
        column(&masks.n_other),
    );
    let usable: Vec<f32> = n_same
        .iter()
        .zip(&masks.n_other)
        .map(|(&s, &o)| if s > 0.0 && o > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let n_usable = usable.iter().sum::<f32>().max(1.0);
    ((same - other) * tensor_2d(usable, n, 1, &device))
        .sum()
        .div_scalar(n_usable as f64)
        .reshape([1])
}

impl Penalty for Comp {
    fn name(&self) -> &str {
        "comp"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn value(&mut self, rep: &Representation, conditions: &[u32]) -> Tensor<1> {
        comp_penalty(rep, conditions, self.include_self)
    }
}
