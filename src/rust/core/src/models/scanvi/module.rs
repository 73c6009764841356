//! The scANVI module (scvi-tools' `SCANVAE`, seed 003): the scVI module for x given z1 (shared,
//! not copied), a classifier q(c | z1), and the label-conditioned hierarchy
//! u = z2 ~ N(0, I), z1 | z2, c ~ N(f(z2, c)), with q(z2 | z1, c). Optionally a two-level label
//! hierarchy: q(c | z) = softmax of c among its siblings x q(parent(c) | z).

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;

use crate::engine::{Minibatch, StepContext};
use crate::error::{Error, Result};
use crate::models::scvi::{ScviArchitecture, ScviGenerative, ScviInference, ScviModule};
use crate::models::{GenerativeModule, LossOutput, LossTerm, Representation};
use crate::nn::decoder::GaussianDecoder;
use crate::nn::encoder::EncoderConfig;
use crate::nn::{Classifier, Covariates, Encoder};
use crate::priors::{Prior, StandardNormal, gaussian_log_density};

/// The annotation of `CountData` holding the label codes (`n_labels` = unlabelled).
pub const LABELS: usize = 1;

/// Two levels of labels: the parent (group) of each label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelHierarchy {
    /// `parent[c]` in `0..n_groups` for each label `c`.
    pub parent: Vec<u32>,
    pub n_groups: usize,
}

impl LabelHierarchy {
    pub fn new(parent: Vec<u32>, n_groups: usize) -> Result<Self> {
        if n_groups < 1 {
            return Err(Error::invalid(
                "hierarchy",
                "needs at least one parent label",
            ));
        }
        if let Some(p) = parent.iter().find(|&&p| p as usize >= n_groups) {
            return Err(Error::invalid(
                "hierarchy",
                format!("parent code {p} is not one of the {n_groups} parents"),
            ));
        }
        if let Some(g) = (0..n_groups as u32).find(|g| !parent.contains(g)) {
            return Err(Error::invalid(
                "hierarchy",
                format!("parent {} has no child label", g + 1),
            ));
        }
        Ok(Self { parent, n_groups })
    }

    /// The labels of each group.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.n_groups];
        for (c, &p) in self.parent.iter().enumerate() {
            m[p as usize].push(c);
        }
        m
    }

    /// Group probabilities (`n x n_groups`) from label probabilities (`n x n_labels`), row-major.
    pub fn group_probabilities(&self, probs: &[f64], n_labels: usize) -> Vec<f64> {
        let n = probs.len() / n_labels.max(1);
        let mut out = vec![0f64; n * self.n_groups];
        for i in 0..n {
            for (c, &p) in self.parent.iter().enumerate() {
                out[i * self.n_groups + p as usize] += probs[i * n_labels + c];
            }
        }
        out
    }
}

/// The structure of a scANVI network.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanviArchitecture {
    pub scvi: ScviArchitecture,
    /// Labels, the unlabelled category excluded.
    pub n_labels: usize,
    /// One linear layer as the classifier (else one hidden layer per `n_layers`).
    pub linear_classifier: bool,
    pub hierarchy: Option<LabelHierarchy>,
}

impl ScanviArchitecture {
    pub fn validate(&self) -> Result<()> {
        self.scvi.validate()?;
        if !(2..=1 << 16).contains(&self.n_labels) {
            return Err(Error::invalid(
                "labels",
                format!("needs between 2 and 65536 labels, has {}", self.n_labels),
            ));
        }
        if let Some(h) = &self.hierarchy {
            if h.parent.len() != self.n_labels {
                return Err(Error::invalid(
                    "hierarchy",
                    format!(
                        "gives parents of {} labels, the model has {}",
                        h.parent.len(),
                        self.n_labels
                    ),
                ));
            }
            LabelHierarchy::new(h.parent.clone(), h.n_groups)?;
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct ScanviModule {
    /// The scVI part: encoders of z1 (and l) and the count decoder.
    pub vae: ScviModule,
    pub classifier: Classifier,
    /// The parent-level classifier of a two-level hierarchy.
    pub classifier_groups: Option<Classifier>,
    pub encoder_z2_z1: Encoder,
    pub decoder_z1_z2: GaussianDecoder,
    pub n_labels: usize,
    /// The weight of the labelled cells' cross-entropy (scvi-tools' 50).
    pub classification_ratio: f64,
    /// Each group's member labels (empty without a hierarchy).
    #[module(skip)]
    pub groups: Vec<Vec<usize>>,
}

impl ScanviModule {
    pub fn new(
        arch: &ScanviArchitecture,
        library: Option<(&[f64], &[f64])>,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Self {
        let s = &arch.scvi;
        let vae = ScviModule::new(s, library, rng, device);
        let (cls_layers, cls_hidden) = if arch.linear_classifier {
            (0, 0)
        } else {
            (s.n_layers, s.n_hidden)
        };
        let classifier = Classifier::new(
            rng,
            s.n_latent,
            cls_hidden,
            cls_layers,
            arch.n_labels,
            s.dropout_rate,
            device,
        );
        let classifier_groups = arch.hierarchy.as_ref().map(|h| {
            Classifier::new(
                rng,
                s.n_latent,
                cls_hidden,
                cls_layers,
                h.n_groups,
                s.dropout_rate,
                device,
            )
        });
        let encoder_z2_z1 = EncoderConfig {
            d_in: s.n_latent,
            d_out: s.n_latent,
            n_hidden: s.n_hidden,
            n_layers: s.n_layers,
            n_cat_list: vec![arch.n_labels],
            inject_covariates: true,
            dropout_rate: s.dropout_rate,
        }
        .init(rng, device);
        let decoder_z1_z2 = GaussianDecoder::new(
            rng,
            s.n_latent,
            s.n_latent,
            s.n_hidden,
            s.n_layers,
            &[arch.n_labels],
            device,
        );
        Self {
            vae,
            classifier,
            classifier_groups,
            encoder_z2_z1,
            decoder_z1_z2,
            n_labels: arch.n_labels,
            classification_ratio: 50.0,
            groups: arch.hierarchy.as_ref().map_or(Vec::new(), |h| h.members()),
        }
    }

    /// log q(c | z) (`n x n_labels`): the classifier's softmax, or with a hierarchy each label's
    /// softmax among its siblings plus its parent's log probability.
    pub fn classify(&self, ctx: &mut StepContext<'_>, z: Tensor<2>) -> Tensor<2> {
        let logits = self.classifier.logits(ctx, z.clone());
        let Some(groups_classifier) = &self.classifier_groups else {
            return log_softmax(logits, 1);
        };
        let log_groups = log_softmax(groups_classifier.logits(ctx, z), 1);
        let device = logits.device();
        let index = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device)
        };
        let mut parts = Vec::with_capacity(self.groups.len());
        let mut order = Vec::with_capacity(self.n_labels);
        for (g, members) in self.groups.iter().enumerate() {
            let within = log_softmax(
                logits
                    .clone()
                    .select(1, index(members.iter().map(|&c| c as i64).collect())),
                1,
            );
            let parent = log_groups.clone().select(1, index(vec![g as i64]));
            parts.push(within + parent);
            order.extend(members.iter().copied());
        }
        let mut inverse = vec![0i64; self.n_labels];
        for (position, &c) in order.iter().enumerate() {
            inverse[c] = position as i64;
        }
        Tensor::cat(parts, 1).select(1, index(inverse))
    }
}

/// -mean log q(c_i | z_i) over cells with codes `labels`.
fn cross_entropy(log_probs: Tensor<2>, labels: &[u32]) -> Tensor<1> {
    let n = labels.len();
    let device = log_probs.device();
    let index = Tensor::<2, Int>::from_data(
        TensorData::new(labels.iter().map(|&c| c as i64).collect::<Vec<_>>(), [n, 1]),
        &device,
    );
    log_probs.gather(1, index).mean().neg()
}

/// `(C n) x 1`, label-major, as `n x C`.
fn per_label(t: Tensor<2>, n_labels: usize) -> Tensor<2> {
    let n = t.dims()[0] / n_labels;
    t.reshape([n_labels, n]).transpose()
}

impl GenerativeModule for ScanviModule {
    type Inference = ScviInference;
    type Generative = ScviGenerative;

    fn inference(&self, ctx: &mut StepContext<'_>, batch: &Minibatch<'_>) -> ScviInference {
        self.vae.inference(ctx, batch)
    }

    fn generative(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        inference: &ScviInference,
    ) -> ScviGenerative {
        self.vae.generative(ctx, batch, inference)
    }

    /// scvi-tools' unlabelled objective for every cell of the minibatch (the label summed out
    /// under q(c | z1)), plus `classification_ratio` x the cross-entropy of the labelled cells
    /// paired with it. As there, the z1 terms log q(z1 | x) - E_c log p(z1 | z2, c) join the
    /// reconstruction (not warmed up), and every KL, the library's included, is warmed up.
    fn loss(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        inference: &ScviInference,
        generative: &ScviGenerative,
    ) -> LossOutput {
        let scvi = self.vae.loss(ctx, batch, inference, generative);
        let c = self.n_labels;
        let device = ctx.device.clone();
        let z1 = inference.qz.sample.clone();
        let n = z1.dims()[0];
        let z1s = Tensor::cat(vec![z1.clone(); c], 0);
        let ys: Vec<u32> = (0..c as u32)
            .flat_map(|y| std::iter::repeat_n(y, n))
            .collect();
        let label_covariates = Covariates::new(vec![(ys, c)], &device);
        let qz2 = self
            .encoder_z2_z1
            .forward(ctx, z1s.clone(), &label_covariates);
        let (pz1_mean, pz1_var) =
            self.decoder_z1_z2
                .forward(ctx, qz2.sample.clone(), &label_covariates);
        let kl_z2 = per_label(StandardNormal.kl(&qz2), c);
        let z1_given_label = per_label(gaussian_log_density(z1s, pz1_mean, pz1_var).neg(), c);
        let log_q_z1 = gaussian_log_density(
            z1.clone(),
            inference.qz.mean.clone(),
            inference.qz.var.clone(),
        );
        let log_probs = self.classify(ctx, z1);
        let probs = log_probs.clone().exp();
        let reconstruction =
            scvi.reconstruction + log_q_z1 + (z1_given_label * probs.clone()).sum_dim(1);
        let log_prior = -(c as f64).ln();
        let mut kl = (kl_z2 * probs.clone()).sum_dim(1)
            + (probs * log_probs.sub_scalar(log_prior)).sum_dim(1);
        if let Some(kl_library) = scvi.kl_library {
            kl = kl + kl_library;
        }
        let mut extra = Vec::new();
        if !batch.labelled_rows.is_empty() {
            let labelled = ctx.minibatch(batch.data, batch.labelled_rows.clone());
            let q = self.vae.inference(ctx, &labelled);
            let log_probs = self.classify(ctx, q.qz.mean);
            extra.push(LossTerm {
                name: "classification".into(),
                value: cross_entropy(log_probs, &labelled.codes(LABELS)),
                weight: self.classification_ratio,
            });
        }
        debug_assert_eq!(n, batch.len());
        LossOutput {
            reconstruction,
            kl_z: kl,
            kl_library: None,
            extra,
        }
    }

    fn representation(inference: &ScviInference, generative: &ScviGenerative) -> Representation {
        crate::models::scvi::scvi_representation(inference, generative)
    }
}

/// Label probabilities as a host matrix (`n x C`, row-major) from log probabilities.
pub fn probabilities_to_host(log_probs: Tensor<2>) -> Vec<f64> {
    crate::nn::to_host(log_probs.exp())
        .into_iter()
        .map(f64::from)
        .collect()
}
