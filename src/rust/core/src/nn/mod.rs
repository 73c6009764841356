//! Neural-network building blocks shared by the models: scvi-tools' `FCLayers` (Linear ->
//! BatchNorm -> ReLU -> Dropout, with categorical covariates concatenated to the input of
//! every layer that asks for them) and PyTorch-style initialisation from our own seeded RNG.
//!
//! Randomness (initial weights, dropout masks, reparameterisation noise) comes from the
//! caller's `Xoshiro256PlusPlus`, never from a backend's RNG: that is what makes a seed give the
//! same bits on every CPU backend.

pub mod host;
pub mod weights;

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

/// scvi-tools' BatchNorm1d settings (momentum 0.01, eps 1e-3).
const BN_MOMENTUM: f64 = 0.01;
const BN_EPSILON: f64 = 1e-3;

/// A tensor built from host values.
pub fn tensor_2d(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

pub fn tensor_1d(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Host copy of a tensor's values (row-major).
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data converts to f32")
}

/// One-hot rows for category codes.
pub fn one_hot(codes: &[u32], n_levels: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0f32; codes.len() * n_levels];
    for (i, &c) in codes.iter().enumerate() {
        v[i * n_levels + c as usize] = 1.0;
    }
    tensor_2d(v, codes.len(), n_levels, device)
}

/// A standard-normal matrix from the caller's RNG.
pub fn standard_normal(
    rng: &mut Xoshiro256PlusPlus,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Tensor<2> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| StandardNormal.sample(rng))
        .collect();
    tensor_2d(v, rows, cols, device)
}

/// An inverted-dropout mask: 0 with probability `rate`, else 1 / (1 - rate).
pub fn dropout_mask(
    rng: &mut Xoshiro256PlusPlus,
    rows: usize,
    cols: usize,
    rate: f64,
    device: &Device,
) -> Tensor<2> {
    let keep = (1.0 / (1.0 - rate)) as f32;
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if rng.random::<f64>() < rate {
                0.0
            } else {
                keep
            }
        })
        .collect();
    tensor_2d(v, rows, cols, device)
}

/// A linear layer initialised like PyTorch's `nn.Linear`: weight and bias uniform on
/// (-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn linear(rng: &mut Xoshiro256PlusPlus, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut uniform = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
            .collect()
    };
    let weight = tensor_2d(uniform(d_in * d_out), d_in, d_out, device);
    let bias = tensor_1d(uniform(d_out), device);
    Linear {
        weight: Param::from_tensor(weight),
        bias: Some(Param::from_tensor(bias)),
    }
}

/// Linear -> BatchNorm -> ReLU (dropout is applied by the caller's mask).
#[derive(Module, Debug)]
pub struct FcLayer {
    pub linear: Linear,
    pub norm: BatchNorm,
}

/// A stack of `FcLayer`s. Categorical covariates (one-hot) are concatenated to the input of
/// the first layer, and of every layer when `inject_covariates` ("deeply injected").
#[derive(Module, Debug)]
pub struct FcLayers {
    pub layers: Vec<FcLayer>,
    pub n_cat: usize,
    pub inject_covariates: bool,
}

impl FcLayers {
    pub fn new(
        rng: &mut Xoshiro256PlusPlus,
        d_in: usize,
        d_hidden: usize,
        n_layers: usize,
        n_cat: usize,
        inject_covariates: bool,
        device: &Device,
    ) -> Self {
        let layers = (0..n_layers)
            .map(|k| {
                let base = if k == 0 { d_in } else { d_hidden };
                let takes_cat = n_cat > 0 && (k == 0 || inject_covariates);
                let d = base + if takes_cat { n_cat } else { 0 };
                FcLayer {
                    linear: linear(rng, d, d_hidden, device),
                    norm: BatchNormConfig::new(d_hidden)
                        .with_momentum(BN_MOMENTUM)
                        .with_epsilon(BN_EPSILON)
                        .init(device),
                }
            })
            .collect();
        Self {
            layers,
            n_cat,
            inject_covariates,
        }
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// `masks`: one dropout mask per layer (training), or none (evaluation, or no dropout).
    pub fn forward(
        &self,
        x: Tensor<2>,
        covariates: Option<&Tensor<2>>,
        masks: &[Tensor<2>],
    ) -> Tensor<2> {
        let x = match covariates.filter(|_| self.n_cat > 0) {
            Some(cat) => Tensor::cat(vec![x, cat.clone()], 1),
            None => x,
        };
        let pre = self.layers[0].linear.forward(x);
        self.forward_from_first_linear(pre, covariates, masks)
    }

    /// The stack given the first layer's linear output (computed elsewhere, e.g. on the host
    /// from sparse counts).
    pub fn forward_from_first_linear(
        &self,
        first_linear: Tensor<2>,
        covariates: Option<&Tensor<2>>,
        masks: &[Tensor<2>],
    ) -> Tensor<2> {
        let mut h = relu(self.layers[0].norm.forward(first_linear));
        if let Some(mask) = masks.first() {
            h = h * mask.clone();
        }
        for (k, layer) in self.layers.iter().enumerate().skip(1) {
            if let Some(cat) = covariates.filter(|_| self.n_cat > 0 && self.inject_covariates) {
                h = Tensor::cat(vec![h, cat.clone()], 1);
            }
            h = relu(layer.norm.forward(layer.linear.forward(h)));
            if let Some(mask) = masks.get(k) {
                h = h * mask.clone();
            }
        }
        h
    }
}
