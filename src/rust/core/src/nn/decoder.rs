//! scvi-tools' `DecoderSCVI`: `FcLayers` from the latent (covariates injected as configured) into
//! the count likelihood head every count model shares.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

use super::{Covariates, FcLayers, linear, tensor_1d};
use crate::distributions::GeneLikelihood;
use crate::engine::StepContext;

/// The count likelihood head: hidden -> expression-frequency logits (softmax gives rho),
/// zero-inflation logits (ZINB), and gene-wise log inverse dispersions (theta = exp(log_theta)).
/// The step engine evaluates it (fused on the host, or in tensor ops on the device). With the
/// Gaussian likelihood, `scale` gives the mean log-normalised expression and `sd` each cell's
/// standard deviation (0.01 + softplus), as CoMP's decoder does.
#[derive(Module, Debug)]
pub struct CountHead {
    pub scale: Linear,
    pub dropout: Option<Linear>,
    pub sd: Option<Linear>,
    pub log_theta: Param<Tensor<1>>,
}

impl CountHead {
    pub fn new(
        rng: &mut Xoshiro256PlusPlus,
        n_hidden: usize,
        n_genes: usize,
        likelihood: GeneLikelihood,
        device: &Device,
    ) -> Self {
        let scale = linear(rng, n_hidden, n_genes, device);
        let dropout =
            (likelihood == GeneLikelihood::Zinb).then(|| linear(rng, n_hidden, n_genes, device));
        // scvi-tools: px_r = torch.randn(n_input).
        let r: Vec<f32> = (0..n_genes).map(|_| StandardNormal.sample(rng)).collect();
        let sd = (likelihood == GeneLikelihood::Gaussian).then(|| linear(rng, n_hidden, 1, device));
        Self {
            scale,
            dropout,
            sd,
            log_theta: Param::from_tensor(tensor_1d(r, device)),
        }
    }

    pub fn likelihood(&self) -> GeneLikelihood {
        if self.sd.is_some() {
            GeneLikelihood::Gaussian
        } else if self.dropout.is_some() {
            GeneLikelihood::Zinb
        } else {
            GeneLikelihood::Nb
        }
    }

    pub fn n_genes(&self) -> usize {
        self.scale.weight.val().dims()[1]
    }
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub layers: FcLayers,
    pub head: CountHead,
}

/// How a count decoder is built.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub d_in: usize,
    pub n_genes: usize,
    pub n_hidden: usize,
    pub n_layers: usize,
    pub n_cat_list: Vec<usize>,
    pub inject_covariates: bool,
    pub likelihood: GeneLikelihood,
}

impl DecoderConfig {
    pub fn init(&self, rng: &mut Xoshiro256PlusPlus, device: &Device) -> Decoder {
        let layers = FcLayers::new(
            rng,
            self.d_in,
            self.n_hidden,
            self.n_layers,
            &self.n_cat_list,
            self.inject_covariates,
            0.0,
            device,
        );
        Decoder {
            layers,
            head: CountHead::new(rng, self.n_hidden, self.n_genes, self.likelihood, device),
        }
    }
}

impl Decoder {
    /// The last hidden layer (the head's input) for latent `z`.
    pub fn hidden(
        &self,
        ctx: &mut StepContext<'_>,
        z: Tensor<2>,
        covariates: &Covariates,
    ) -> Tensor<2> {
        self.layers.forward(ctx, z, covariates)
    }

    /// (The first hidden layer, the last): trVAE's MMD acts on the first.
    pub fn hidden_with_first(
        &self,
        ctx: &mut StepContext<'_>,
        z: Tensor<2>,
        covariates: &Covariates,
    ) -> (Tensor<2>, Tensor<2>) {
        self.layers.forward_with_first(ctx, z, covariates)
    }
}

/// scvi-tools' Gaussian `Decoder` (a latent from a latent, as scANVI's p(z1 | z2, c)):
/// `FcLayers` without dropout, then a mean head and a variance head (variance = exp(head)).
#[derive(Module, Debug)]
pub struct GaussianDecoder {
    pub layers: FcLayers,
    pub mean: Linear,
    pub log_var: Linear,
}

impl GaussianDecoder {
    pub fn new(
        rng: &mut Xoshiro256PlusPlus,
        d_in: usize,
        d_out: usize,
        n_hidden: usize,
        n_layers: usize,
        n_cat_list: &[usize],
        device: &Device,
    ) -> Self {
        let layers = FcLayers::new(rng, d_in, n_hidden, n_layers, n_cat_list, true, 0.0, device);
        Self {
            layers,
            mean: super::linear(rng, n_hidden, d_out, device),
            log_var: super::linear(rng, n_hidden, d_out, device),
        }
    }

    /// Mean and variance of p(output | input, covariates).
    pub fn forward(
        &self,
        ctx: &mut StepContext<'_>,
        x: Tensor<2>,
        covariates: &Covariates,
    ) -> (Tensor<2>, Tensor<2>) {
        let h = self.layers.forward(ctx, x, covariates);
        (self.mean.forward(h.clone()), self.log_var.forward(h).exp())
    }
}
