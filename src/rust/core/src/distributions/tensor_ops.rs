//! The count likelihoods in tensor operations, for the step engine that keeps the whole step on
//! the device (burn has no lgamma: it is built here from tensor ops, so autodiff gives its
//! derivative). Same parameterisation as the fused host kernel (`count_likelihood`), in log space.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softplus};

use super::GeneLikelihood;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// ln Γ(z) element-wise for z > 0: the recurrence shifts z by 6 (three products of two factors,
/// so no overflow below 1e18), then the Stirling series to 1/z^5 (error < 3e-9 at z >= 6).
pub fn ln_gamma(z: Tensor<2>) -> Tensor<2> {
    let pair = |a: f64| (z.clone().add_scalar(a) * z.clone().add_scalar(a + 1.0)).log();
    let shift = pair(0.0) + pair(2.0) + pair(4.0);
    let w = z.add_scalar(6.0);
    let inv = w.clone().recip();
    let inv2 = inv.clone().powi_scalar(2);
    let series = inv
        * (inv2.clone() * (inv2.mul_scalar(1.0 / 1260.0).sub_scalar(1.0 / 360.0)))
            .add_scalar(1.0 / 12.0);
    (w.clone().sub_scalar(0.5) * w.clone().log() - w).add_scalar(HALF_LN_2PI) + series - shift
}

/// Per-cell log-likelihood (`n x 1`) of dense counts `x` (`n x g`) under scale logits `s`
/// (`n x g`), zero-inflation logits `pi` (ZINB), log inverse dispersions `log_theta` (`g`) and
/// log library sizes `log_library` (`n x 1`).
pub fn log_likelihood(
    likelihood: GeneLikelihood,
    x: Tensor<2>,
    scale_logits: Tensor<2>,
    dropout_logits: Option<Tensor<2>>,
    log_theta: Tensor<1>,
    log_library: Tensor<2>,
) -> Tensor<2> {
    let [n, g] = x.dims();
    let log_theta = log_theta.unsqueeze::<2>().expand([n, g]);
    let theta = log_theta.clone().exp();
    let log_mu = log_softmax(scale_logits, 1) + log_library.expand([n, g]);
    // log(theta + mu) as a log-sum-exp of the two logs: stable for any magnitudes.
    let hi = log_theta.clone().max_pair(log_mu.clone());
    let lo = log_theta.clone().min_pair(log_mu.clone());
    let log_theta_mu = hi.clone() + (lo - hi).exp().log1p();
    let nb_zero = theta.clone() * (log_theta - log_theta_mu.clone());
    let log_nb =
        nb_zero.clone() + x.clone() * (log_mu - log_theta_mu) + ln_gamma(x.clone() + theta.clone())
            - ln_gamma(theta)
            - ln_gamma(x.clone().add_scalar(1.0));
    let per_gene = match likelihood {
        GeneLikelihood::Nb => log_nb,
        GeneLikelihood::Zinb => {
            let pi = dropout_logits.expect("ZINB needs zero-inflation logits");
            let softplus_neg_pi = softplus(pi.clone().neg(), 1.0);
            let zero = softplus(nb_zero - pi.clone(), 1.0) - softplus_neg_pi.clone();
            let non_zero = log_nb - pi - softplus_neg_pi;
            non_zero.mask_where(x.lower_elem(0.5), zero)
        }
        GeneLikelihood::Gaussian => unreachable!("the Gaussian head is not a count likelihood"),
    };
    per_gene.sum_dim(1)
}
