//! Neural-network building blocks shared by the models, in scvi-tools' shapes: `FcLayers`
//! (Linear -> BatchNorm -> ReLU -> Dropout, categorical covariates concatenated as asked),
//! the Gaussian `Encoder`, the count `Decoder` with its likelihood head (`CountHead`), a
//! `Classifier`, and PyTorch-style initialisation from our own seeded RNG.
//!
//! Randomness (initial weights, dropout masks, reparameterisation noise) comes from the
//! caller's `Xoshiro256PlusPlus`, never from a backend's RNG: that is what makes a seed give the
//! same bits on every CPU backend.

pub mod classifier;
pub mod decoder;
pub mod encoder;
pub mod fc;
pub mod host;
pub mod weights;

pub use classifier::Classifier;
pub use decoder::{CountHead, Decoder};
pub use encoder::Encoder;
pub use fc::{BatchNorm1d, Covariates, FcLayers};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

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
