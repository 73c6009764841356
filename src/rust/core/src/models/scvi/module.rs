//! The scVI module (scvi-tools' `VAE` with its defaults), made of the shared parts: z encoder on
//! log1p counts, optional library encoder, count decoder with the batch injected as configured,
//! the standard-normal prior.

use burn::module::{Module, RunningState};
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;

use crate::distributions::GeneLikelihood;
use crate::engine::{Minibatch, StepContext};
use crate::error::{Error, Result};
use crate::models::{GenerativeModule, LossOutput, Representation};
use crate::nn::decoder::DecoderConfig;
use crate::nn::encoder::{EncoderConfig, GaussianSample};
use crate::nn::weights::NamedTensors;
use crate::nn::{Covariates, Decoder, Encoder, tensor_1d, tensor_2d};
use crate::priors::{Prior, StandardNormal};

/// The annotation of `CountData` that holds the batch.
pub const BATCH: usize = 0;

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
    /// Give the batch to the encoders too.
    pub encode_covariates: bool,
    /// Inject the batch into every hidden layer (not only the first) of the decoder, and of the
    /// encoders when they take it.
    pub deeply_inject_covariates: bool,
    /// A fixed posterior standard deviation (CoMP's encoder: q(z | x, c) = N(mu(x, c), sd^2 I));
    /// `None`: learned, as in scVI.
    pub posterior_sd: Option<f64>,
}

/// Sizes beyond which a saved architecture is taken as damaged.
const LIMITS: [(&str, usize); 5] = [
    ("n_genes", 1 << 24),
    ("batch", 1 << 20),
    ("n_latent", 1 << 12),
    ("n_hidden", 1 << 16),
    ("n_layers", 64),
];

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
            posterior_sd: None,
        }
    }

    /// The conditional VAE of CoMP (seed 001) for `n_conditions` conditions, with its Kang
    /// settings: the condition given to the encoder and to the decoder's first layer, 3 layers
    /// of 512, d = 40, no dropout, a fixed posterior standard deviation of 0.1; the count
    /// likelihood of scVI.
    pub fn cvae(n_genes: usize, n_conditions: usize) -> Self {
        Self {
            n_latent: 40,
            n_hidden: 512,
            n_layers: 3,
            dropout_rate: 0.0,
            encode_covariates: true,
            deeply_inject_covariates: false,
            posterior_sd: Some(0.1),
            ..Self::new(n_genes, n_conditions)
        }
    }

    pub fn validate(&self) -> Result<()> {
        let sizes = [
            self.n_genes,
            self.n_batch,
            self.n_latent,
            self.n_hidden,
            self.n_layers,
        ];
        for ((name, limit), v) in LIMITS.iter().zip(sizes) {
            if v < 1 {
                return Err(Error::invalid(*name, "must be >= 1"));
            }
            if v > *limit {
                return Err(Error::invalid(
                    *name,
                    format!("{v} exceeds the limit {limit}"),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(Error::invalid("dropout_rate", "must be in [0, 1)"));
        }
        if let Some(sd) = self.posterior_sd {
            if !(sd > 0.0 && sd.is_finite()) {
                return Err(Error::invalid("posterior_sd", "must be a positive number"));
            }
        }
        Ok(())
    }

    /// The architecture of a query model: this one with `n_batch` batches (at least as many).
    pub fn for_query(&self, n_batch: usize) -> Result<Self> {
        if n_batch < self.n_batch {
            return Err(Error::invalid(
                "batch",
                format!(
                    "the query model needs the reference's {} batches and the query's, got {n_batch}",
                    self.n_batch
                ),
            ));
        }
        Ok(Self {
            n_batch,
            ..self.clone()
        })
    }

    /// Checks the architecture against saved weights before a network is built from it: a
    /// damaged model must fail here, not in a failed allocation.
    pub fn check_weights(&self, weights: &NamedTensors) -> Result<()> {
        self.validate().map_err(|e| {
            Error::Format(format!("the saved model's architecture is damaged: {e}"))
        })?;
        let cat = if self.n_batch > 1 { self.n_batch } else { 0 };
        let enc_cat = if self.encode_covariates { cat } else { 0 };
        let expect = [
            (
                "z_encoder.layers.layers.0.linear.weight".to_string(),
                vec![self.n_genes + enc_cat, self.n_hidden],
            ),
            (
                format!(
                    "z_encoder.layers.layers.{}.linear.weight",
                    self.n_layers - 1
                ),
                vec![
                    if self.n_layers == 1 {
                        self.n_genes + enc_cat
                    } else {
                        self.n_hidden
                            + if self.deeply_inject_covariates {
                                enc_cat
                            } else {
                                0
                            }
                    },
                    self.n_hidden,
                ],
            ),
            (
                "z_encoder.mean.weight".to_string(),
                vec![self.n_hidden, self.n_latent],
            ),
            (
                "decoder.layers.layers.0.linear.weight".to_string(),
                vec![self.n_latent + cat, self.n_hidden],
            ),
            (
                "decoder.head.scale.weight".to_string(),
                vec![self.n_hidden, self.n_genes],
            ),
        ];
        for (name, dims) in &expect {
            match weights.dims(name) {
                Some(d) if d == dims.as_slice() => {}
                found => {
                    return Err(Error::Format(format!(
                        "the saved model's architecture does not match its weights: `{name}` is {found:?}, the architecture says {dims:?}"
                    )));
                }
            }
        }
        let extra_layer = format!("z_encoder.layers.layers.{}.linear.weight", self.n_layers);
        if weights.contains(&extra_layer)
            || weights.contains("decoder.head.dropout.weight")
                != (self.likelihood == GeneLikelihood::Zinb)
            || weights.contains("decoder.head.sd.weight")
                != (self.likelihood == GeneLikelihood::Gaussian)
            || weights.contains("l_encoder.mean.weight") != self.latent_library
        {
            return Err(Error::Format(
                "the saved model's architecture does not match its weights (layers, likelihood or library)".into(),
            ));
        }
        Ok(())
    }
}

/// The latent library's prior: per-batch mean and variance of the log library size (not trained).
#[derive(Module, Debug)]
pub struct LibraryPrior {
    pub log_mean: RunningState<Tensor<1>>,
    pub log_var: RunningState<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct ScviModule {
    pub z_encoder: Encoder,
    /// A fixed posterior standard deviation (the encoder's variance head unused).
    pub posterior_sd: Option<f64>,
    pub l_encoder: Option<Encoder>,
    pub decoder: Decoder,
    pub library_prior: Option<LibraryPrior>,
}

pub struct ScviInference {
    pub qz: GaussianSample,
    pub ql: Option<GaussianSample>,
    /// The log library the decoder uses (`n x 1`): observed, or sampled from q(l).
    pub log_library: Tensor<2>,
    /// The batch as the decoder's covariate.
    pub batch: Covariates,
}

pub struct ScviGenerative {
    /// The decoder's first hidden layer (trVAE's MMD site).
    pub first_hidden: Tensor<2>,
    /// The decoder's last hidden layer: the count head's input.
    pub hidden: Tensor<2>,
}

impl ScviModule {
    /// A freshly initialised network; `library` is the per-batch (mean, variance) of the log
    /// library size, needed with a latent library.
    pub fn new(
        arch: &ScviArchitecture,
        library: Option<(&[f64], &[f64])>,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Self {
        let encoder_cats = if arch.encode_covariates {
            vec![arch.n_batch]
        } else {
            Vec::new()
        };
        let encoder = |d_out: usize, n_layers: usize| EncoderConfig {
            d_in: arch.n_genes,
            d_out,
            n_hidden: arch.n_hidden,
            n_layers,
            n_cat_list: encoder_cats.clone(),
            inject_covariates: arch.deeply_inject_covariates,
            dropout_rate: arch.dropout_rate,
        };
        let z_encoder = encoder(arch.n_latent, arch.n_layers).init(rng, device);
        let l_encoder = arch.latent_library.then(|| encoder(1, 1).init(rng, device));
        let decoder = DecoderConfig {
            d_in: arch.n_latent,
            n_genes: arch.n_genes,
            n_hidden: arch.n_hidden,
            n_layers: arch.n_layers,
            n_cat_list: vec![arch.n_batch],
            inject_covariates: arch.deeply_inject_covariates,
            likelihood: arch.likelihood,
        }
        .init(rng, device);
        let library_prior = arch.latent_library.then(|| {
            let (mean, var) = library.unwrap_or((&[], &[]));
            let v = |x: &[f64], default: f32| -> Tensor<1> {
                let values = (0..arch.n_batch)
                    .map(|b| x.get(b).map_or(default, |&v| v as f32))
                    .collect();
                tensor_1d(values, device)
            };
            LibraryPrior {
                log_mean: RunningState::new(v(mean, 0.0)),
                log_var: RunningState::new(v(var, 1.0)),
            }
        });
        Self {
            z_encoder,
            posterior_sd: arch.posterior_sd,
            l_encoder,
            decoder,
            library_prior,
        }
    }

    fn encoder_covariates(&self, batch: &Minibatch<'_>, device: &Device) -> Covariates {
        if self.z_encoder.layers.n_cat > 0 {
            batch.covariates(&[BATCH], device)
        } else {
            Covariates::none()
        }
    }
}

impl GenerativeModule for ScviModule {
    type Inference = ScviInference;
    type Generative = ScviGenerative;

    fn inference(&self, ctx: &mut StepContext<'_>, batch: &Minibatch<'_>) -> ScviInference {
        let device = ctx.device.clone();
        let encoder_cov = self.encoder_covariates(batch, &device);
        let mut qz = self.z_encoder.forward_counts(ctx, batch, &encoder_cov);
        if let Some(sd) = self.posterior_sd {
            let var = qz.mean.clone().zeros_like().add_scalar(sd * sd);
            let sample = ctx.sample_normal(&qz.mean, &var);
            qz = GaussianSample {
                mean: qz.mean,
                var,
                sample,
            };
        }
        let ql = self
            .l_encoder
            .as_ref()
            .map(|enc| enc.forward_counts(ctx, batch, &encoder_cov));
        let log_library = match &ql {
            Some(q) => q.sample.clone(),
            None => batch.log_library(&device),
        };
        ScviInference {
            qz,
            ql,
            log_library,
            batch: batch.covariates(&[BATCH], &device),
        }
    }

    fn generative(
        &self,
        ctx: &mut StepContext<'_>,
        _batch: &Minibatch<'_>,
        inference: &ScviInference,
    ) -> ScviGenerative {
        let (first_hidden, hidden) =
            self.decoder
                .hidden_with_first(ctx, inference.qz.sample.clone(), &inference.batch);
        ScviGenerative {
            first_hidden,
            hidden,
        }
    }

    fn loss(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        inference: &ScviInference,
        generative: &ScviGenerative,
    ) -> LossOutput {
        let log_lik = ctx.count_log_likelihood(
            &self.decoder.head,
            generative.hidden.clone(),
            inference.log_library.clone(),
            batch,
        );
        let kl_library = match (&inference.ql, &self.library_prior) {
            (Some(q), Some(prior)) => {
                let codes = batch.codes(BATCH);
                let n = codes.len();
                let pick = |stat: &RunningState<Tensor<1>>| -> Tensor<2> {
                    let values = crate::nn::to_host(stat.value());
                    let v = codes.iter().map(|&b| values[b as usize]).collect();
                    tensor_2d(v, n, 1, &ctx.device)
                };
                Some(kl_normal(
                    q.mean.clone(),
                    q.var.clone(),
                    pick(&prior.log_mean),
                    pick(&prior.log_var),
                ))
            }
            _ => None,
        };
        LossOutput {
            reconstruction: log_lik.neg(),
            kl_z: StandardNormal.kl(&inference.qz),
            kl_library,
            extra: Vec::new(),
        }
    }

    fn representation(inference: &ScviInference, generative: &ScviGenerative) -> Representation {
        scvi_representation(inference, generative)
    }
}

/// z, its posterior and the decoder's first layer, for penalties.
pub fn scvi_representation(
    inference: &ScviInference,
    generative: &ScviGenerative,
) -> Representation {
    Representation {
        z: inference.qz.sample.clone(),
        mean: inference.qz.mean.clone(),
        var: inference.qz.var.clone(),
        decoder_first: generative.first_hidden.clone(),
    }
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
