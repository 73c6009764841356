//! scvi-tools' `Encoder`: `FcLayers`, then a mean head and a variance head
//! (variance = exp(head) + `VAR_EPS`), with a reparameterised sample drawn by the step context.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;

use super::{Covariates, FcLayers, linear};
use crate::engine::{Minibatch, StepContext};

/// Variance floor of the Gaussian posteriors (scvi-tools' `var_eps`).
pub const VAR_EPS: f64 = 1e-4;

/// A diagonal Gaussian q and its sample (the mean when the context does not sample).
pub struct GaussianSample {
    pub mean: Tensor<2>,
    pub var: Tensor<2>,
    pub sample: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: FcLayers,
    pub mean: Linear,
    pub log_var: Linear,
}

/// How an encoder is built (scvi-tools' `Encoder` arguments).
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub d_in: usize,
    pub d_out: usize,
    pub n_hidden: usize,
    pub n_layers: usize,
    pub n_cat_list: Vec<usize>,
    pub inject_covariates: bool,
    pub dropout_rate: f64,
}

impl EncoderConfig {
    pub fn init(&self, rng: &mut Xoshiro256PlusPlus, device: &Device) -> Encoder {
        let layers = FcLayers::new(
            rng,
            self.d_in,
            self.n_hidden,
            self.n_layers,
            &self.n_cat_list,
            self.inject_covariates,
            self.dropout_rate,
            device,
        );
        Encoder {
            layers,
            mean: linear(rng, self.n_hidden, self.d_out, device),
            log_var: linear(rng, self.n_hidden, self.d_out, device),
        }
    }
}

impl Encoder {
    /// q of the log1p counts of a minibatch.
    pub fn forward_counts(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        covariates: &Covariates,
    ) -> GaussianSample {
        let h = self.layers.forward_counts(ctx, batch, covariates);
        self.heads(ctx, h)
    }

    /// q of a dense input (e.g. a latent, for hierarchical models).
    pub fn forward(
        &self,
        ctx: &mut StepContext<'_>,
        x: Tensor<2>,
        covariates: &Covariates,
    ) -> GaussianSample {
        let h = self.layers.forward(ctx, x, covariates);
        self.heads(ctx, h)
    }

    fn heads(&self, ctx: &mut StepContext<'_>, h: Tensor<2>) -> GaussianSample {
        let mean = self.mean.forward(h.clone());
        let var = self.log_var.forward(h).exp().add_scalar(VAR_EPS);
        let sample = ctx.sample_normal(&mean, &var);
        GaussianSample { mean, var, sample }
    }
}
