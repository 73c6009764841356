//! scvi-tools' `FCLayers`: Linear -> BatchNorm -> ReLU -> Dropout, with categorical covariates
//! (`n_cat_list`) one-hot encoded and concatenated to the input of the first layer, and of every
//! layer when they are "deeply injected". As in scvi-tools, a covariate with one level is dropped.

use burn::module::{Module, Param, RunningState};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::module::batch_norm_train;
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;

use super::{linear, one_hot, tensor_1d};
use crate::engine::{Minibatch, StepContext};

/// scvi-tools' BatchNorm1d settings (momentum 0.01, eps 1e-3).
const BN_MOMENTUM: f64 = 0.01;
const BN_EPSILON: f64 = 1e-3;

/// PyTorch's `BatchNorm1d`: batch statistics in training (autodiff device), running statistics
/// otherwise. Unlike burn's `BatchNorm`, the running variance is updated with the unbiased
/// (n - 1) batch variance, as PyTorch does, so trained running statistics match scvi-tools'.
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
}

impl BatchNorm1d {
    pub fn new(d: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(tensor_1d(vec![1.0; d], device)),
            bias: Param::from_tensor(tensor_1d(vec![0.0; d], device)),
            running_mean: RunningState::new(tensor_1d(vec![0.0; d], device)),
            running_var: RunningState::new(tensor_1d(vec![1.0; d], device)),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        if !device.is_autodiff() {
            return burn::tensor::module::batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                BN_EPSILON,
            );
        }
        let n = x.dims()[0] as f64;
        let out = batch_norm_train(x, self.weight.val(), self.bias.val(), BN_EPSILON);
        let unbiased = n / (n - 1.0).max(1.0);
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - BN_MOMENTUM)
            .add(out.mean.detach().mul_scalar(BN_MOMENTUM));
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - BN_MOMENTUM)
            .add(out.variance.detach().mul_scalar(BN_MOMENTUM * unbiased));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        out.output
    }
}

/// The categorical covariates of a minibatch's cells: codes and level counts per covariate
/// (in `n_cat_list` order), and the one-hot columns of those with more than one level.
pub struct Covariates {
    pub codes: Vec<(Vec<u32>, usize)>,
    pub one_hot: Option<Tensor<2>>,
}

impl Covariates {
    pub fn new(codes: Vec<(Vec<u32>, usize)>, device: &Device) -> Self {
        let parts: Vec<Tensor<2>> = codes
            .iter()
            .filter(|(_, levels)| *levels > 1)
            .map(|(c, levels)| one_hot(c, *levels, device))
            .collect();
        let one_hot = (!parts.is_empty()).then(|| Tensor::cat(parts, 1));
        Self { codes, one_hot }
    }

    /// No covariates.
    pub fn none() -> Self {
        Self {
            codes: Vec::new(),
            one_hot: None,
        }
    }

    /// Width of the one-hot block.
    pub fn width(&self) -> usize {
        one_hot_width(&self.codes.iter().map(|c| c.1).collect::<Vec<_>>())
    }

    /// The one-hot columns set for cell `i` (offsets into the one-hot block).
    pub fn active_columns(&self, i: usize) -> Vec<usize> {
        let mut offset = 0;
        let mut cols = Vec::with_capacity(self.codes.len());
        for (codes, levels) in self.codes.iter().filter(|c| c.1 > 1) {
            cols.push(offset + codes[i] as usize);
            offset += levels;
        }
        cols
    }
}

/// One-hot width of a list of categorical covariates (one-level covariates are dropped).
pub fn one_hot_width(n_cat_list: &[usize]) -> usize {
    n_cat_list.iter().filter(|&&n| n > 1).sum()
}

/// Linear -> BatchNorm -> ReLU (dropout drawn by the step context).
#[derive(Module, Debug)]
pub struct FcLayer {
    pub linear: Linear,
    pub norm: BatchNorm1d,
}

#[derive(Module, Debug)]
pub struct FcLayers {
    pub layers: Vec<FcLayer>,
    /// Width of the covariates' one-hot block.
    pub n_cat: usize,
    pub inject_covariates: bool,
    pub dropout_rate: f64,
}

impl FcLayers {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Xoshiro256PlusPlus,
        d_in: usize,
        d_hidden: usize,
        n_layers: usize,
        n_cat_list: &[usize],
        inject_covariates: bool,
        dropout_rate: f64,
        device: &Device,
    ) -> Self {
        let n_cat = one_hot_width(n_cat_list);
        let layers = (0..n_layers)
            .map(|k| {
                let base = if k == 0 { d_in } else { d_hidden };
                let d = base
                    + if k == 0 || inject_covariates {
                        n_cat
                    } else {
                        0
                    };
                FcLayer {
                    linear: linear(rng, d, d_hidden, device),
                    norm: BatchNorm1d::new(d_hidden, device),
                }
            })
            .collect();
        Self {
            layers,
            n_cat,
            inject_covariates,
            dropout_rate,
        }
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    fn check(&self, covariates: &Covariates) {
        assert_eq!(
            covariates.width(),
            self.n_cat,
            "the covariates given do not match the layers' n_cat_list"
        );
    }

    /// The stack on a dense input.
    pub fn forward(
        &self,
        ctx: &mut StepContext<'_>,
        x: Tensor<2>,
        covariates: &Covariates,
    ) -> Tensor<2> {
        self.forward_with_first(ctx, x, covariates).1
    }

    /// The stack on a dense input: (the first layer's output, the last layer's).
    pub fn forward_with_first(
        &self,
        ctx: &mut StepContext<'_>,
        x: Tensor<2>,
        covariates: &Covariates,
    ) -> (Tensor<2>, Tensor<2>) {
        self.check(covariates);
        let x = match &covariates.one_hot {
            Some(cat) => Tensor::cat(vec![x, cat.clone()], 1),
            None => x,
        };
        let pre = self.layers[0].linear.forward(x);
        self.forward_from_first_linear(ctx, pre, covariates)
    }

    /// The stack on the log1p counts of a minibatch: the step engine computes the first layer
    /// (from the sparse counts on the host, or densified on the device).
    pub fn forward_counts(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        covariates: &Covariates,
    ) -> Tensor<2> {
        self.check(covariates);
        let pre = ctx.first_linear(&self.layers[0].linear, batch, covariates);
        self.forward_from_first_linear(ctx, pre, covariates).1
    }

    fn forward_from_first_linear(
        &self,
        ctx: &mut StepContext<'_>,
        first_linear: Tensor<2>,
        covariates: &Covariates,
    ) -> (Tensor<2>, Tensor<2>) {
        let mut h = relu(self.layers[0].norm.forward(first_linear));
        h = ctx.dropout(h, self.dropout_rate);
        let first = h.clone();
        for layer in self.layers.iter().skip(1) {
            if let Some(cat) = covariates
                .one_hot
                .as_ref()
                .filter(|_| self.inject_covariates)
            {
                h = Tensor::cat(vec![h, cat.clone()], 1);
            }
            h = relu(layer.norm.forward(layer.linear.forward(h)));
            h = ctx.dropout(h, self.dropout_rate);
        }
        (first, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Mode};
    use crate::nn::{tensor_2d, to_host};
    use rand::SeedableRng;

    /// PyTorch's convention: the running variance moves towards the unbiased batch variance
    /// (n - 1), while the batch is normalised with the biased one.
    #[test]
    fn batch_norm_running_variance_is_unbiased_as_in_pytorch() {
        let device = Device::flex().autodiff();
        let bn = BatchNorm1d::new(1, &device);
        let x = tensor_2d(vec![1.0, 2.0, 4.0, 7.0], 4, 1, &device);
        let out = to_host(bn.forward(x));
        // mean 3.5, biased variance 5.25, unbiased 7.
        let expected = (1.0f32 - 3.5) / (5.25f32 + 1e-3).sqrt();
        assert!((out[0] - expected).abs() < 1e-5);
        let running_var = to_host(bn.running_var.value_sync())[0];
        let running_mean = to_host(bn.running_mean.value_sync())[0];
        assert!(
            (running_var - (0.99 + 0.01 * 7.0)).abs() < 1e-6,
            "{running_var}"
        );
        assert!((running_mean - 0.035).abs() < 1e-6);
    }

    #[test]
    fn covariates_drop_one_level_annotations_and_place_columns() {
        let device = Device::flex();
        let cov = Covariates::new(
            vec![(vec![0, 0], 1), (vec![1, 0], 2), (vec![2, 0], 3)],
            &device,
        );
        assert_eq!(cov.width(), 5);
        assert_eq!(cov.active_columns(0), vec![1, 4]);
        assert_eq!(cov.active_columns(1), vec![0, 2]);
        assert_eq!(
            to_host(cov.one_hot.unwrap()),
            vec![0., 1., 0., 0., 1., 1., 0., 1., 0., 0.]
        );
        assert!(
            Covariates::new(vec![(vec![0, 0], 1)], &device)
                .one_hot
                .is_none()
        );
    }

    #[test]
    fn classifier_gives_log_probabilities() {
        let device = Device::flex();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let classifier = crate::nn::Classifier::new(&mut rng, 4, 8, 1, 3, 0.1, &device);
        let mut ctx = crate::engine::StepContext::new(
            Engine::Tensor,
            Mode::Predict,
            device.clone(),
            &mut rng,
        );
        let x = tensor_2d((0..20).map(|v| v as f32 * 0.1).collect(), 5, 4, &device);
        let lp = to_host(classifier.log_probs(&mut ctx, x));
        assert_eq!(lp.len(), 15);
        for row in lp.chunks(3) {
            let total: f32 = row.iter().map(|v| v.exp()).sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
    }
}
