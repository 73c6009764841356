//! Maximum mean discrepancy as seed 000 codes it: the representation standardised per
//! dimension within the minibatch, the mean of RBF kernels exp(-sqrt(d) |x - y|^2 / (2 b^2))
//! over the bandwidths b, the biased estimator (diagonals included), and its square root.
//! Each condition's cells are compared with the other conditions' cells; with more than two
//! conditions the values are averaged.

use burn::tensor::Tensor;

use super::{Penalty, select_rows, squared_distances};
use crate::models::Representation;

/// Seed 000's bandwidths, for z.
pub const LATENT_BANDWIDTHS: [f64; 5] = [1.0, 2.0, 5.0, 8.0, 10.0];
/// Wider scales for a wide layer (trVAE's site: hundreds of units, where the sqrt(d) factor
/// makes the narrow kernels vanish between distinct cells).
pub const WIDE_BANDWIDTHS: [f64; 10] = [1.0, 2.0, 5.0, 8.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Where the discrepancy is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmdSite {
    /// The posterior sample z (VFAE).
    Latent,
    /// The decoder's first hidden layer (trVAE).
    DecoderFirstLayer,
}

#[derive(Debug, Clone)]
pub struct Mmd {
    pub weight: f64,
    pub site: MmdSite,
    pub bandwidths: Vec<f64>,
}

impl Mmd {
    fn kernel_mean(&self, d2: Tensor<2>, dims: usize) -> Tensor<1> {
        let root_d = (dims as f64).sqrt();
        let mut k: Option<Tensor<2>> = None;
        for &b in &self.bandwidths {
            let kb = d2.clone().mul_scalar(-root_d / (2.0 * b * b)).exp();
            k = Some(match k {
                Some(acc) => acc + kb,
                None => kb,
            });
        }
        k.expect("at least one bandwidth")
            .mean()
            .div_scalar(self.bandwidths.len() as f64)
    }

    /// MMD^2 between the rows `a` and the rows `b` of `x`.
    fn squared(&self, x: &Tensor<2>, a: &[usize], b: &[usize]) -> Tensor<1> {
        let dims = x.dims()[1];
        let (xa, xb) = (select_rows(x.clone(), a), select_rows(x.clone(), b));
        self.kernel_mean(squared_distances(xa.clone(), xa.clone()), dims)
            + self.kernel_mean(squared_distances(xb.clone(), xb.clone()), dims)
            - self
                .kernel_mean(squared_distances(xa, xb), dims)
                .mul_scalar(2.0)
    }

    /// The discrepancy of `x` (`n x d`) between conditions.
    pub fn of(&self, x: Tensor<2>, conditions: &[u32]) -> Tensor<1> {
        let [n, d] = x.dims();
        let mean = x.clone().mean_dim(0);
        let centred = x - mean.expand([n, d]);
        let std = centred
            .clone()
            .powi_scalar(2)
            .sum_dim(0)
            .div_scalar((n.max(2) - 1) as f64)
            .add_scalar(1e-8)
            .sqrt();
        let standardised = centred / std.expand([n, d]);
        let mut levels: Vec<u32> = conditions.to_vec();
        levels.sort_unstable();
        levels.dedup();
        if levels.len() < 2 {
            return Tensor::zeros([1], &standardised.device());
        }
        // With two conditions, each one against the rest is the same comparison.
        let compared = if levels.len() == 2 { 1 } else { levels.len() };
        let mut total: Option<Tensor<1>> = None;
        for &level in levels.iter().take(compared) {
            let (inside, outside): (Vec<usize>, Vec<usize>) =
                (0..n).partition(|&i| conditions[i] == level);
            let mmd2 = self.squared(&standardised, &inside, &outside);
            // The square root's gradient is bounded away from MMD^2 = 0.
            let value = mmd2.clamp_min(0.0).add_scalar(1e-8).sqrt();
            total = Some(match total {
                Some(t) => t + value,
                None => value,
            });
        }
        total
            .expect("two or more conditions")
            .div_scalar(compared as f64)
    }
}

impl Penalty for Mmd {
    fn name(&self) -> &str {
        match self.site {
            MmdSite::Latent => "mmd",
            MmdSite::DecoderFirstLayer => "mmd_decoder",
        }
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn value(&mut self, rep: &Representation, conditions: &[u32]) -> Tensor<1> {
        let x = match self.site {
            MmdSite::Latent => rep.z.clone(),
            MmdSite::DecoderFirstLayer => rep.decoder_first.clone(),
        };
        self.of(x, conditions)
    }
}
