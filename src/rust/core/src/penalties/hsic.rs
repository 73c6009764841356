//! The Hilbert-Schmidt independence criterion between z and the one-hot condition, as seed
//! 000's scVI+HSIC baseline computes it (after Lopez et al.'s HCV): Gaussian kernels with the
//! bandwidth set from the dimension alone, gamma = 1 / (2 g^2), g = 2 Gamma((d+1)/2) /
//! Gamma(d/2) (the mean norm of a d-dimensional standard normal), the biased estimator, and
//! its square root.

use burn::tensor::Tensor;

use super::{Penalty, squared_distances};
use crate::distributions::special::ln_gamma;
use crate::models::Representation;
use crate::nn::one_hot;

#[derive(Debug, Clone)]
pub struct Hsic {
    pub weight: f64,
    pub n_conditions: usize,
}

/// The kernel's gamma for `d` dimensions.
pub fn gamma_for(d: usize) -> f64 {
    let d = d as f64;
    let g = 2.0 * (ln_gamma((d + 1.0) / 2.0) - ln_gamma(d / 2.0)).exp();
    1.0 / (2.0 * g * g)
}

/// sqrt(HSIC) between the rows of `x` and of `y` (the same cells).
pub fn hsic(x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    let kx = squared_distances(x.clone(), x.clone())
        .mul_scalar(-gamma_for(x.dims()[1]))
        .exp();
    let ky = squared_distances(y.clone(), y.clone())
        .mul_scalar(-gamma_for(y.dims()[1]))
        .exp();
    let joint = (kx.clone() * ky.clone()).mean();
    let product = kx.clone().mean() * ky.clone().mean();
    let cross = (kx.mean_dim(1) * ky.mean_dim(1)).mean().mul_scalar(2.0);
    (joint + product - cross)
        .clamp_min(0.0)
        .add_scalar(1e-10)
        .sqrt()
}

impl Penalty for Hsic {
    fn name(&self) -> &str {
        "hsic"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn value(&mut self, rep: &Representation, conditions: &[u32]) -> Tensor<1> {
        let device = rep.z.device();
        hsic(
            rep.z.clone(),
            one_hot(conditions, self.n_conditions, &device),
        )
    }
}
