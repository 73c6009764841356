//! scANVI (Xu et al. 2021, seed 003; scvi-tools 1.4 defaults): semi-supervised scVI that
//! transfers labels with posterior probabilities q(c | z). Trained from scratch or warm-started
//! from a trained scVI by weight name (`from_scvi_model`), with scvi-tools' epoch heuristic.

mod module;

use burn::module::Module;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub use module::{LABELS, LabelHierarchy, ScanviArchitecture, ScanviModule};

use crate::data::{CsrMatrix, DenseMatrix};
use crate::device::ComputeDevice;
use crate::engine::{CountData, Engine, Mode, StepContext};
use crate::error::{Error, Result};
use crate::models::GenerativeModule;
use crate::models::scvi::{BATCH, CountsAndBatch, ScviModel};
use crate::nn::weights::{self, NamedTensors};
use crate::train::{
    DataSplit, EVAL_CHUNK, EpochRecord, Sampler, StepProfile, TrainConfig, TrainingObserver,
    TrainingPlan, fit, max_epochs_heuristic,
};

/// Cells with their batch and label codes (`n_labels` marks an unlabelled cell).
#[derive(Clone, Copy)]
pub struct LabelledCounts<'a> {
    pub counts: &'a CsrMatrix,
    pub batch: &'a [u32],
    pub labels: &'a [u32],
}

/// scvi-tools' scANVI epochs: the scVI heuristic, or for a model warm-started from scVI
/// min(10, max(2, round(heuristic / 3))).
pub fn scanvi_epochs_heuristic(n_cells: usize, pretrained: bool) -> usize {
    let h = max_epochs_heuristic(n_cells);
    if pretrained {
        ((h as f64 / 3.0).round_ties_even() as usize).clamp(2, 10)
    } else {
        h
    }
}

/// A trained scANVI model (inference copy of the network).
pub struct ScanviModel {
    pub arch: ScanviArchitecture,
    pub module: ScanviModule,
    pub device: ComputeDevice,
    pub engine: Engine,
    pub history: Vec<EpochRecord>,
    pub profile: StepProfile,
}

/// How training goes beyond the `TrainConfig`.
#[derive(Debug, Clone, Copy)]
pub struct ScanviTraining {
    /// Weight of the labelled cells' cross-entropy.
    pub classification_ratio: f64,
}

impl Default for ScanviTraining {
    fn default() -> Self {
        Self {
            classification_ratio: 50.0,
        }
    }
}

impl ScanviModel {
    /// Trains scANVI; with `pretrained`, its scVI weights are the starting point.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        arch: ScanviArchitecture,
        config: &TrainConfig,
        training: ScanviTraining,
        data: LabelledCounts<'_>,
        pretrained: Option<&ScviModel>,
        device: ComputeDevice,
        engine: Engine,
        observer: &mut dyn TrainingObserver,
    ) -> Result<ScanviModel> {
        arch.validate()?;
        config.validate()?;
        if config.penalty.is_some() {
            return Err(Error::invalid(
                "penalty",
                "is not available for scANVI: train a penalised scVI and start scANVI from it",
            ));
        }
        if !(training.classification_ratio >= 0.0 && training.classification_ratio.is_finite()) {
            return Err(Error::invalid(
                "classification_ratio",
                "must be a finite number >= 0",
            ));
        }
        if let Some(p) = pretrained {
            if p.arch != arch.scvi {
                return Err(Error::invalid(
                    "scvi",
                    "has another architecture (genes, batches, layers or likelihood) than the scANVI model asked for",
                ));
            }
        }
        let n_cells = data.counts.n_rows;
        if n_cells < 3 {
            return Err(Error::invalid(
                "x",
                format!("needs at least 3 cells to train, got {n_cells}"),
            ));
        }
        let cells = prepare(&arch, data)?;
        let labelled: Vec<bool> = data
            .labels
            .iter()
            .map(|&c| (c as usize) < arch.n_labels)
            .collect();
        if !labelled.iter().any(|&l| l) {
            return Err(Error::invalid(
                "labels",
                "marks every cell unlabelled: give the label of at least some cells",
            ));
        }
        let mut config = config.clone();
        if config.max_epochs.is_none() {
            config.max_epochs = Some(scanvi_epochs_heuristic(n_cells, pretrained.is_some()));
        }
        let inner = device.burn_device()?;
        let ad = inner.clone().autodiff();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let library = pretrained
            .and_then(|p| p.library_prior())
            .map(|(m, v)| {
                (
                    m.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                    v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                )
            })
            .unwrap_or_else(|| {
                crate::models::scvi::library_prior(
                    &cells.log_library,
                    data.batch,
                    arch.scvi.n_batch,
                )
            });
        let mut module = ScanviModule::new(&arch, Some((&library.0, &library.1)), &mut rng, &ad);
        module.classification_ratio = training.classification_ratio;
        if let Some(p) = pretrained {
            module = with_scvi_weights(module, &weights::named_tensors(&p.module))?;
        }
        let split = DataSplit::random(n_cells, config.train_size, config.batch_size, &mut rng);
        let mut plan = TrainingPlan::new(engine);
        plan.sampler = Sampler::SemiSupervised { labelled };
        let trained = fit(
            module, &cells, &split, &config, &mut plan, &inner, &mut rng, observer,
        )?;
        Ok(ScanviModel {
            arch,
            module: trained.module.valid(),
            device,
            engine,
            history: trained.history,
            profile: trained.profile,
        })
    }

    /// This reference extended to `n_batch` batches (its own first, then the query's) and
    /// trained on the query `data` (batch codes in that numbering; labels, when any, as in
    /// training) as scArches does: see `models::query` for what trains; the classifier and the
    /// z2 networks stay the reference's.
    pub fn map_query(
        &self,
        data: LabelledCounts<'_>,
        n_batch: usize,
        config: &TrainConfig,
        observer: &mut dyn TrainingObserver,
    ) -> Result<ScanviModel> {
        config.validate()?;
        let arch = ScanviArchitecture {
            scvi: self.arch.scvi.for_query(n_batch)?,
            ..self.arch.clone()
        };
        let cells = prepare(&arch, data)?;
        let inner = self.device.burn_device()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let (mean, var) =
            crate::models::scvi::library_prior(&cells.log_library, data.batch, n_batch);
        let mut fresh = ScanviModule::new(
            &arch,
            Some((&mean, &var)),
            &mut rng,
            &inner.clone().autodiff(),
        );
        fresh.classification_ratio = self.module.classification_ratio;
        let labelled: Vec<bool> = data
            .labels
            .iter()
            .map(|&c| (c as usize) < arch.n_labels)
            .collect();
        let mut plan = TrainingPlan::new(self.engine);
        if labelled.iter().any(|&l| l) {
            plan.sampler = Sampler::SemiSupervised { labelled };
        }
        let trained = crate::models::query::fit_query(
            &weights::named_tensors(&self.module),
            fresh,
            self.arch.scvi.n_batch,
            &cells,
            config,
            plan,
            &inner,
            &mut rng,
            observer,
        )?;
        Ok(ScanviModel {
            arch,
            module: trained.module.valid(),
            device: self.device,
            engine: self.engine,
            history: trained.history,
            profile: trained.profile,
        })
    }

    /// Rebuilds a model from its architecture and saved weights (checked before building).
    pub fn from_parts(
        arch: ScanviArchitecture,
        weights_bytes: &[u8],
        device: ComputeDevice,
        engine: Engine,
    ) -> Result<ScanviModel> {
        arch.validate().map_err(|e| {
            Error::Format(format!("the saved model's architecture is damaged: {e}"))
        })?;
        let tensors = weights::decode(weights_bytes)?;
        let scvi_part = NamedTensors(
            tensors
                .0
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("vae.").map(|s| (s.to_string(), v.clone())))
                .collect(),
        );
        arch.scvi.check_weights(&scvi_part)?;
        let d = if arch.linear_classifier {
            arch.scvi.n_latent
        } else {
            arch.scvi.n_hidden
        };
        let expect_groups = arch.hierarchy.as_ref().map(|h| vec![d, h.n_groups]);
        if tensors.dims("classifier.logits.weight") != Some(&[d, arch.n_labels][..])
            || tensors.dims("classifier_groups.logits.weight") != expect_groups.as_deref()
        {
            return Err(Error::Format(
                "the saved model's architecture does not match its weights (classifier)".into(),
            ));
        }
        let inner = device.burn_device()?;
        let skeleton = ScanviModule::new(
            &arch,
            None,
            &mut Xoshiro256PlusPlus::seed_from_u64(0),
            &inner,
        );
        let module = weights::load_named(skeleton, &tensors, true)?;
        Ok(ScanviModel {
            arch,
            module,
            device,
            engine,
            history: Vec::new(),
            profile: StepProfile::default(),
        })
    }

    pub fn weights_bytes(&self) -> Vec<u8> {
        weights::to_bytes(&self.module)
    }

    /// Posterior mean of z for every cell and, for each, q(c | z) (`n x n_labels`, rows sum to
    /// one), at the posterior mean as scvi-tools' `predict`.
    pub fn latent_and_probabilities(
        &self,
        data: CountsAndBatch<'_>,
    ) -> Result<(DenseMatrix, DenseMatrix)> {
        let cells = data.prepare(&self.arch.scvi)?;
        let device = self.device.burn_device()?;
        let n = data.counts.n_rows;
        let (d, c) = (self.arch.scvi.n_latent, self.arch.n_labels);
        let mut latent = Vec::with_capacity(n * d);
        let mut probs = Vec::with_capacity(n * c);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        for start in (0..n).step_by(EVAL_CHUNK) {
            let rows: Vec<usize> = (start..(start + EVAL_CHUNK).min(n)).collect();
            let mut ctx = StepContext::new(self.engine, Mode::Predict, device.clone(), &mut rng);
            let batch = ctx.minibatch(&cells, rows);
            let inference = self.module.inference(&mut ctx, &batch);
            let log_probs = self.module.classify(&mut ctx, inference.qz.mean.clone());
            latent.extend(
                crate::nn::to_host(inference.qz.mean)
                    .into_iter()
                    .map(f64::from),
            );
            probs.extend(module::probabilities_to_host(log_probs));
        }
        Ok((
            DenseMatrix::new(n, d, latent)?,
            DenseMatrix::new(n, c, probs)?,
        ))
    }
}

fn prepare<'a>(arch: &ScanviArchitecture, data: LabelledCounts<'a>) -> Result<CountData<'a>> {
    if data.counts.n_cols != arch.scvi.n_genes {
        return Err(Error::invalid(
            "x",
            format!(
                "has {} genes but the model has {}",
                data.counts.n_cols, arch.scvi.n_genes
            ),
        ));
    }
    let cells = CountData::new(
        data.counts,
        &[
            ("batch", data.batch, arch.scvi.n_batch),
            ("labels", data.labels, arch.n_labels + 1),
        ],
    )?;
    debug_assert_eq!(BATCH, 0);
    debug_assert_eq!(LABELS, 1);
    Ok(cells)
}

/// `module` with the scVI part set from a trained scVI's weights (by name, sizes checked), as
/// scvi-tools' `from_scvi_model` loads the scVI state dict into scANVI.
fn with_scvi_weights(module: ScanviModule, scvi: &NamedTensors) -> Result<ScanviModule> {
    let mut tensors = weights::named_tensors(&module);
    for (name, value) in &scvi.0 {
        let key = format!("vae.{name}");
        match tensors.0.get_mut(&key) {
            Some(slot) if slot.0 == value.0 => {
                *slot = value.clone();
            }
            _ => {
                return Err(Error::invalid(
                    "scvi",
                    format!("its tensor `{name}` has no counterpart of the same size in scANVI"),
                ));
            }
        }
    }
    weights::load_named(module, &tensors, true)
}

#[cfg(test)]
mod tests;
