//! Adam on host memory, for the parameters whose gradients are computed on the host (the
//! sparse-input and gene-output layers): one fused pass per parameter instead of a dozen tensor
//! operations. Same update as PyTorch's `Adam(lr, betas, eps, weight_decay)` (L2 decay added to
//! the gradient) and burn's `AdamConfig` with the same settings.

use std::collections::HashMap;

use burn::module::ParamId;
use rayon::prelude::*;

struct Moments {
    first: Vec<f32>,
    second: Vec<f32>,
    step: i32,
}

pub struct HostAdam {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    moments: HashMap<ParamId, Moments>,
}

impl HostAdam {
    pub fn new(eps: f32, weight_decay: f32) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps,
            weight_decay,
            moments: HashMap::new(),
        }
    }

    /// One update of `param` (identified by `id` across steps) with gradient `grad`.
    pub fn step(&mut self, lr: f32, id: ParamId, param: &mut [f32], grad: &[f32]) {
        assert_eq!(
            param.len(),
            grad.len(),
            "parameter and gradient sizes differ"
        );
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let m = self.moments.entry(id).or_insert_with(|| Moments {
            first: vec![0.0; param.len()],
            second: vec![0.0; param.len()],
            step: 0,
        });
        m.step += 1;
        let step_size = lr / (1.0 - b1.powi(m.step));
        let inv_sqrt_bc2 = 1.0 / (1.0 - b2.powi(m.step)).sqrt();
        const CHUNK: usize = 1 << 14;
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.first.par_chunks_mut(CHUNK))
            .zip(m.second.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m1), m2)| {
                for i in 0..p.len() {
                    let g = g[i] + wd * p[i];
                    m1[i] = b1 * m1[i] + (1.0 - b1) * g;
                    m2[i] = b2 * m2[i] + (1.0 - b2) * g * g;
                    p[i] -= step_size * m1[i] / (m2[i].sqrt() * inv_sqrt_bc2 + eps);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Device, Tensor, TensorData};

    /// Five steps of the host Adam and of burn's Adam from the same start and gradients.
    #[test]
    fn matches_burns_adam() {
        let device = Device::flex().autodiff();
        let start: Vec<f32> = (0..40).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut host = start.clone();
        let mut param = Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(start, [40]),
            &device,
        ));
        let id = param.id;
        let mut burn_adam = AdamConfig::new()
            .with_epsilon(0.01)
            .with_weight_decay(Some(WeightDecayConfig::new(1e-2)))
            .init();
        let mut adam = HostAdam::new(0.01, 1e-2);
        for step in 0..5 {
            let grad: Vec<f32> = (0..40)
                .map(|i| ((i + step * 3) as f32 * 0.31).cos())
                .collect();
            adam.step(1e-2, id, &mut host, &grad);
            let mut grads = GradientsParams::new();
            grads.register(
                id,
                Tensor::<1>::from_data(TensorData::new(grad, [40]), &device.clone().inner()),
            );
            param = burn_adam.step(1e-2, param, grads);
        }
        let burn_values = crate::nn::to_host(param.val());
        for (a, b) in host.iter().zip(&burn_values) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
