//! Penalties on the latent representation's dependence on a condition (batch, stimulation):
//! a scalar function of (z, condition codes) on a minibatch, with gradient, added to the loss
//! under its name. A penalty may own parameters and train them itself in `before_step`, which
//! the trainer calls before each VAE step on the detached representation (MINE's adversary).

use burn::tensor::Tensor;

use crate::error::Result;
use crate::nn::tensor_2d;

pub trait Penalty {
    /// The name of the loss term (history, Pareto objectives).
    fn name(&self) -> &str;
    /// The term's weight in the loss.
    fn weight(&self) -> f64;
    /// The penalty of representation `z` (`n x d`) whose cells have the condition codes
    /// `conditions` (shape `[1]`).
    fn value(&self, z: Tensor<2>, conditions: &[u32]) -> Tensor<1>;
    /// Trains the penalty's own parameters, if any, on the detached representation.
    fn before_step(&mut self, _z: Tensor<2>, _conditions: &[u32]) -> Result<()> {
        Ok(())
    }
}

/// Maximum mean discrepancy between the conditions' latent distributions (Gaussian kernels at
/// several bandwidths, summed), averaged over the pairs of conditions present in the minibatch.
#[derive(Debug, Clone)]
pub struct Mmd {
    pub weight: f64,
    /// Kernel bandwidths (squared lengths) gamma in exp(-|x - y|^2 / gamma).
    pub bandwidths: Vec<f64>,
}

impl Mmd {
    fn kernel_mean(&self, a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
        let [na, _] = a.dims();
        let [nb, _] = b.dims();
        let aa = a.clone().powi_scalar(2).sum_dim(1); // na x 1
        let bb = b.clone().powi_scalar(2).sum_dim(1).transpose(); // 1 x nb
        let d2 = (aa.expand([na, nb]) + bb.expand([na, nb])
            - a.matmul(b.transpose()).mul_scalar(2.0))
        .clamp_min(0.0);
        let mut k = d2.clone().mul_scalar(-1.0 / self.bandwidths[0]).exp();
        for &g in &self.bandwidths[1..] {
            k = k + d2.clone().mul_scalar(-1.0 / g).exp();
        }
        k.mean()
    }
}

impl Penalty for Mmd {
    fn name(&self) -> &str {
        "mmd"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn value(&self, z: Tensor<2>, conditions: &[u32]) -> Tensor<1> {
        let device = z.device();
        let mut levels: Vec<u32> = conditions.to_vec();
        levels.sort_unstable();
        levels.dedup();
        let groups: Vec<Tensor<2>> = levels
            .iter()
            .map(|&c| {
                let rows: Vec<i64> = conditions
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v == c)
                    .map(|(i, _)| i as i64)
                    .collect();
                let k = rows.len();
                let index = Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(rows, [k]),
                    &device,
                );
                z.clone().select(0, index)
            })
            .collect();
        let mut total = tensor_2d(vec![0.0], 1, 1, &device).reshape([1]);
        let mut pairs = 0;
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                let (a, b) = (groups[i].clone(), groups[j].clone());
                total = total
                    + self.kernel_mean(a.clone(), a.clone())
                    + self.kernel_mean(b.clone(), b.clone())
                    - self.kernel_mean(a, b).mul_scalar(2.0);
                pairs += 1;
            }
        }
        if pairs > 1 {
            total = total.div_scalar(pairs as f64);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{standard_normal, to_host};
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    #[test]
    fn mmd_separates_shifted_conditions_and_has_a_gradient() {
        let device = Device::flex().autodiff();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let n = 200;
        let z = standard_normal(&mut rng, n, 3, &device);
        let conditions: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let shift: Vec<f32> = (0..n * 3)
            .map(|i| if (i / 3) % 2 == 1 { 2.0 } else { 0.0 })
            .collect();
        let shifted = z.clone() + tensor_2d(shift, n, 3, &device);
        let mmd = Mmd {
            weight: 1.0,
            bandwidths: vec![1.0, 4.0],
        };
        let same = to_host(mmd.value(z, &conditions))[0];
        let leaf = shifted.detach().require_grad();
        let value = mmd.value(leaf.clone(), &conditions);
        let apart = to_host(value.clone())[0];
        assert!(
            same < 0.05 && apart > 10.0 * same.max(1e-3),
            "same {same}, shifted {apart}"
        );
        let grads = value.backward();
        let g = to_host(leaf.grad(&grads).expect("gradient"));
        assert!(g.iter().any(|v| v.abs() > 1e-4));
    }
}
