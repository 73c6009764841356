//! scvi-tools' `Classifier`: `FcLayers` (no covariates) then a linear layer to class logits.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;

use super::{Covariates, FcLayers, linear};
use crate::engine::StepContext;

#[derive(Module, Debug)]
pub struct Classifier {
    /// Absent with zero hidden layers (a linear classifier).
    pub layers: Option<FcLayers>,
    pub logits: Linear,
}

impl Classifier {
    pub fn new(
        rng: &mut Xoshiro256PlusPlus,
        d_in: usize,
        n_hidden: usize,
        n_layers: usize,
        n_classes: usize,
        dropout_rate: f64,
        device: &Device,
    ) -> Self {
        let layers = (n_layers > 0).then(|| {
            FcLayers::new(
                rng,
                d_in,
                n_hidden,
                n_layers,
                &[],
                false,
                dropout_rate,
                device,
            )
        });
        let d = if n_layers > 0 { n_hidden } else { d_in };
        Self {
            layers,
            logits: linear(rng, d, n_classes, device),
        }
    }

    /// Class logits (`n x n_classes`).
    pub fn logits(&self, ctx: &mut StepContext<'_>, x: Tensor<2>) -> Tensor<2> {
        let h = match &self.layers {
            Some(layers) => layers.forward(ctx, x, &Covariates::none()),
            None => x,
        };
        self.logits.forward(h)
    }

    /// Log class probabilities (`n x n_classes`).
    pub fn log_probs(&self, ctx: &mut StepContext<'_>, x: Tensor<2>) -> Tensor<2> {
        log_softmax(self.logits(ctx, x), 1)
    }
}
