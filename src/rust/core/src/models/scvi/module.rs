//! The scVI network (scvi-tools' `VAE` with its defaults): encoder q(z|x) on log1p counts,
//! optional encoder q(l|x) for a latent library size, decoder p(x|z,s) with the batch
//! one-hot concatenated into its hidden layers, gene-wise inverse dispersion.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

use crate::data::CsrMatrix;
use crate::distributions::GeneLikelihood;
use crate::nn::host::HostLinear;
use crate::nn::{FcLayers, linear, tensor_1d, tensor_2d};

/// Variance floor of the Gaussian posteriors (scvi-tools' `var_eps`).
const VAR_EPS: f64 = 1e-4;

/// The structure of an scVI network (what must be known to rebuild it from saved weights).
#[derive(Debug, Clone, PartialEq)]
pub struct ScviArchitecture {
    pub n_genes: usize,
    pub n_batch: usize,
    pub n_latent: usize,
    pub n_hidden: usize,
    pub n_layers: usize,
    pub dropout_rate: f64,
    pub likelihood: GeneLikelihood,
    /// Model the library size as a latent variable (else use the observed total count).
    pub latent_library: bool,
    /// Concatenate the batch one-hot to the encoder's input.
    pub encode_covariates: bool,
    /// With `encode_covariates` or in the decoder, inject the batch into every hidden layer.
    pub deeply_inject_covariates: bool,
}

impl ScviArchitecture {
    /// scvi-tools' defaults for `n_genes` genes and `n_batch` batches.
    pub fn new(n_genes: usize, n_batch: usize) -> Self {
        Self {
            n_genes,
            n_batch,
            n_latent: 10,
            n_hidden: 128,
            n_layers: 1,
            dropout_rate: 0.1,
            likelihood: GeneLikelihood::Zinb,
            latent_library: false,
            encode_covariates: false,
            deeply_inject_covariates: true,
        }
    }
}

/// A Gaussian encoder: hidden layers, then mean and variance (exp + floor) heads.
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: FcLayers,
    pub mean: Linear,
    pub log_var: Linear,
}

impl Encoder {
    fn new(
        rng: &mut Xoshiro256PlusPlus,
        d_in: usize,
        d_out: usize,
        arch: &ScviArchitecture,
        n_layers: usize,
        device: &Device,
    ) -> Self {
        let n_cat = if arch.encode_covariates {
            arch.n_batch
        } else {
            0
        };
        let layers = FcLayers::new(
            rng,
            d_in,
            arch.n_hidden,
            n_layers,
            n_cat,
            arch.deeply_inject_covariates,
            device,
        );
        Self {
            layers,
            mean: linear(rng, arch.n_hidden, d_out, device),
            log_var: linear(rng, arch.n_hidden, d_out, device),
        }
    }

    /// (mean, variance) of q given the first layer's linear output.
    pub fn forward(
        &self,
        first_linear: Tensor<2>,
        batch: Option<&Tensor<2>>,
        masks: &[Tensor<2>],
    ) -> (Tensor<2>, Tensor<2>) {
        let h = self
            .layers
            .forward_from_first_linear(first_linear, batch, masks);
        let mean = self.mean.forward(h.clone());
        let var = self.log_var.forward(h).exp().add_scalar(VAR_EPS);
        (mean, var)
    }
}

/// The decoder: hidden layers (batch injected), then expression-frequency logits and, for
/// ZINB, zero-inflation logits.
#[derive(Module, Debug)]
pub struct Decoder {
    pub layers: FcLayers,
    pub scale: Linear,
    pub dropout: Option<Linear>,
}

#[derive(Module, Debug)]
pub struct ScviModule {
    pub z_encoder: Encoder,
    pub l_encoder: Option<Encoder>,
    pub decoder: Decoder,
    /// Gene-wise log inverse dispersion r (theta = exp(r)).
    pub px_r: Param<Tensor<1>>,
}

/// The cells a pass sees: rows of a sparse count matrix and their batch codes.
pub struct CountsBatch<'a> {
    pub counts: &'a CsrMatrix,
    /// log1p of `counts.values` (the encoder's input), computed once per data set.
    pub log1p_values: &'a [f32],
    pub rows: &'a [usize],
    /// Batch code of each of `rows`.
    pub batch: &'a [u32],
}

/// Random draws for one training step: reparameterisation noise and dropout masks.
pub struct StepNoise {
    pub eps_z: Tensor<2>,
    pub eps_l: Option<Tensor<2>>,
    pub z_masks: Vec<Tensor<2>>,
    pub l_masks: Vec<Tensor<2>>,
}

pub struct Inference {
    /// The encoders' first-layer outputs, computed on the host from the sparse counts, with the
    /// host copies of those layers: z encoder first, then the library encoder.
    pub first_layers: Vec<(HostLinear, Tensor<2>)>,
    pub qz_mean: Tensor<2>,
    pub qz_var: Tensor<2>,
    pub z: Tensor<2>,
    /// Latent library: (mean, variance, sampled log library), each `n x 1`.
    pub library: Option<(Tensor<2>, Tensor<2>, Tensor<2>)>,
}

impl ScviModule {
    pub fn new(arch: &ScviArchitecture, rng: &mut Xoshiro256PlusPlus, device: &Device) -> Self {
        let d_in = arch.n_genes;
        let z_encoder = Encoder::new(rng, d_in, arch.n_latent, arch, arch.n_layers, device);
        let l_encoder = arch
            .latent_library
            .then(|| Encoder::new(rng, d_in, 1, arch, 1, device));
        let decoder = Decoder {
            layers: FcLayers::new(
                rng,
                arch.n_latent,
                arch.n_hidden,
                arch.n_layers,
                arch.n_batch,
                true,
                device,
            ),
            scale: linear(rng, arch.n_hidden, arch.n_genes, device),
            dropout: (arch.likelihood == GeneLikelihood::Zinb)
                .then(|| linear(rng, arch.n_hidden, arch.n_genes, device)),
        };
        let r: Vec<f32> = (0..arch.n_genes)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Self {
            z_encoder,
            l_encoder,
            decoder,
            px_r: Param::from_tensor(tensor_1d(r, device)),
        }
    }

    /// q(z|x) (and q(l|x)) of log1p counts; with `noise` samples z (and l), else z is the
    /// posterior mean. With `track_gradients` the first layers' outputs are autodiff leaves
    /// whose gradients give those layers' weight gradients (see `first_layer_gradients`).
    pub fn inference(
        &self,
        input: &CountsBatch<'_>,
        batch: &Tensor<2>,
        noise: Option<&StepNoise>,
        track_gradients: bool,
        device: &Device,
    ) -> Inference {
        let n = input.rows.len();
        let first = |encoder: &Encoder| -> (HostLinear, Tensor<2>) {
            let layer = HostLinear::of(&encoder.layers.layers[0].linear);
            let covariate = (encoder.layers.n_cat > 0).then_some(input.batch);
            let pre = layer.forward_sparse(input.counts, input.rows, input.log1p_values, covariate);
            let t = tensor_2d(pre, n, layer.d_out, device);
            (layer, if track_gradients { t.require_grad() } else { t })
        };
        let mut first_layers = vec![first(&self.z_encoder)];
        let (qz_mean, qz_var) = self.z_encoder.forward(
            first_layers[0].1.clone(),
            Some(batch),
            noise.map_or(&[], |n| n.z_masks.as_slice()),
        );
        let z = match noise {
            Some(n) => qz_mean.clone() + qz_var.clone().sqrt() * n.eps_z.clone(),
            None => qz_mean.clone(),
        };
        let library = self.l_encoder.as_ref().map(|enc| {
            first_layers.push(first(enc));
            let (m, v) = enc.forward(
                first_layers[1].1.clone(),
                Some(batch),
                noise.map_or(&[], |n| n.l_masks.as_slice()),
            );
            let l = match noise.and_then(|n| n.eps_l.as_ref()) {
                Some(eps) => m.clone() + v.clone().sqrt() * eps.clone(),
                None => m.clone(),
            };
            (m, v, l)
        });
        Inference {
            first_layers,
            qz_mean,
            qz_var,
            z,
            library,
        }
    }

    /// The decoder's last hidden layer for latent `z` and batch one-hot `batch`; the output
    /// heads (hidden -> genes) run on the host, next to the likelihood.
    pub fn decoder_hidden(&self, z: Tensor<2>, batch: &Tensor<2>) -> Tensor<2> {
        self.decoder.layers.forward(z, Some(batch), &[])
    }

    /// Host copies of the output heads: expression-frequency logits, zero-inflation logits.
    pub fn decoder_heads(&self) -> (HostLinear, Option<HostLinear>) {
        (
            HostLinear::of(&self.decoder.scale),
            self.decoder.dropout.as_ref().map(HostLinear::of),
        )
    }
}

/// KL(N(m, v) || N(0, I)) per cell, summed over dimensions: `n x 1`.
pub fn kl_standard_normal(mean: Tensor<2>, var: Tensor<2>) -> Tensor<2> {
    (var.clone() + mean.powi_scalar(2) - var.log())
        .sub_scalar(1.0)
        .sum_dim(1)
        .mul_scalar(0.5)
}

/// KL(N(m, v) || N(prior_mean, prior_var)) per cell for the log library: `n x 1`.
pub fn kl_normal(
    mean: Tensor<2>,
    var: Tensor<2>,
    prior_mean: Tensor<2>,
    prior_var: Tensor<2>,
) -> Tensor<2> {
    let diff = mean - prior_mean;
    ((prior_var.clone().log() - var.clone().log()) + (var + diff.powi_scalar(2)) / prior_var)
        .sub_scalar(1.0)
        .mul_scalar(0.5)
}
