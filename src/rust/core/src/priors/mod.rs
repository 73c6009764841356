//! Priors on the latent z. A prior replaces the KL(z) term only: the standard normal's KL is
//! analytic; a prior with a density but no closed-form KL (VampPrior, GMM, VMM) implements
//! `log_prob` and takes the Monte-Carlo KL, -H[q] - log p(z) at the posterior sample. A prior
//! with parameters is a burn module inside the model; the trainer steps them with their own
//! optimiser when the model names them as a parameter group (`train::ParamGroup`).

use burn::tensor::Tensor;

use crate::nn::encoder::GaussianSample;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

pub trait Prior {
    /// KL(q(z|x) || p(z)) per cell (`n x 1`), exact or a one-sample estimate.
    fn kl(&self, q: &GaussianSample) -> Tensor<2>;
}

/// N(0, I), scVI's prior.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardNormal;

impl Prior for StandardNormal {
    fn kl(&self, q: &GaussianSample) -> Tensor<2> {
        (q.var.clone() + q.mean.clone().powi_scalar(2) - q.var.clone().log())
            .sub_scalar(1.0)
            .sum_dim(1)
            .mul_scalar(0.5)
    }
}

/// The entropy of a diagonal Gaussian q per cell (`n x 1`).
pub fn gaussian_entropy(q: &GaussianSample) -> Tensor<2> {
    let d = q.var.dims()[1] as f64;
    q.var
        .clone()
        .log()
        .sum_dim(1)
        .add_scalar(d * (1.0 + LN_2PI))
        .mul_scalar(0.5)
}

/// log N(z; mean, var) summed over dimensions (`n x 1`); mean and var broadcast over cells.
pub fn gaussian_log_density(z: Tensor<2>, mean: Tensor<2>, var: Tensor<2>) -> Tensor<2> {
    let d = z.dims()[1] as f64;
    ((z - mean).powi_scalar(2) / var.clone() + var.log())
        .sum_dim(1)
        .add_scalar(d * LN_2PI)
        .mul_scalar(-0.5)
}

/// The Monte-Carlo KL hook for priors with a density: -H[q] - log p(z) at q's sample, given
/// `log_prior` = log p(z) per cell. Unbiased for KL(q || p).
pub fn monte_carlo_kl(q: &GaussianSample, log_prior: Tensor<2>) -> Tensor<2> {
    gaussian_entropy(q).neg() - log_prior
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Mode, StepContext};
    use crate::nn::{tensor_2d, to_host};
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    /// The Monte-Carlo KL against N(0, I) averages to the analytic KL.
    #[test]
    fn monte_carlo_kl_agrees_with_the_analytic_one() {
        let device = Device::flex();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut ctx = StepContext::new(Engine::Tensor, Mode::Evaluate, device.clone(), &mut rng);
        let n = 20_000;
        let mean = tensor_2d(
            (0..n * 2).map(|i| (i % 7) as f32 * 0.3 - 1.0).collect(),
            n,
            2,
            &device,
        );
        let var = tensor_2d(
            (0..n * 2).map(|i| 0.2 + (i % 3) as f32 * 0.4).collect(),
            n,
            2,
            &device,
        );
        let sample = ctx.sample_normal(&mean, &var);
        let q = GaussianSample { mean, var, sample };
        let exact: f64 = to_host(StandardNormal.kl(&q))
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / n as f64;
        let zeros = Tensor::<2>::zeros([1, 2], &device);
        let ones = Tensor::<2>::ones([1, 2], &device);
        let log_p = gaussian_log_density(q.sample.clone(), zeros, ones);
        let mc: f64 = to_host(monte_carlo_kl(&q, log_p))
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / n as f64;
        assert!(
            (mc - exact).abs() < 0.03 * exact,
            "Monte-Carlo {mc} vs analytic {exact}"
        );
    }
}
