//! scVI (Lopez et al. 2018; scvi-tools 1.4 defaults): the module (`module.rs`) trained by the
//! shared trainer, then the posterior-mean latent, batch-corrected or counterfactual expression,
//! the ELBO, and weights saved and loaded by name.

mod module;

use burn::module::Module;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

pub use module::{
    BATCH, LibraryPrior, ScviArchitecture, ScviGenerative, ScviInference, ScviModule,
    scvi_representation,
};

use crate::data::{CsrMatrix, DenseMatrix};
use crate::device::ComputeDevice;
use crate::engine::{CountData, Engine, Mode, StepContext};
use crate::error::{Error, Result};
use crate::models::GenerativeModule;
use crate::nn::{to_host, weights};
use crate::train::{
    DataSplit, EVAL_CHUNK, EpochRecord, LossRecord, StepProfile, TrainConfig, TrainingObserver,
    TrainingPlan, evaluate, fit,
};

/// How to scale the decoded expression frequencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LibraryScale {
    /// Frequencies that sum to `size` per cell (1: scvi-tools' default; 1e4: counts per 10k).
    Constant(f64),
    /// Each cell's own observed total count: expected counts (counterfactual expression when
    /// decoded with another batch).
    Observed,
}

/// A trained scVI model (inference copy of the network, no autodiff).
pub struct ScviModel {
    pub arch: ScviArchitecture,
    pub module: ScviModule,
    pub device: ComputeDevice,
    pub engine: Engine,
    pub history: Vec<EpochRecord>,
    /// Where the training time went.
    pub profile: StepProfile,
}

/// The data a model sees: counts (cells x genes) and each cell's batch code.
#[derive(Clone, Copy)]
pub struct CountsAndBatch<'a> {
    pub counts: &'a CsrMatrix,
    pub batch: &'a [u32],
}

impl<'a> CountsAndBatch<'a> {
    pub(crate) fn prepare(&self, arch: &ScviArchitecture) -> Result<CountData<'a>> {
        if self.counts.n_cols != arch.n_genes {
            return Err(Error::invalid(
                "x",
                format!(
                    "has {} genes but the model was trained on {}",
                    self.counts.n_cols, arch.n_genes
                ),
            ));
        }
        CountData::new(self.counts, &[("batch", self.batch, arch.n_batch)])
    }
}

/// Mean and (population) variance of the log library size within each batch.
pub(crate) fn library_prior(
    log_library: &[f32],
    batch: &[u32],
    n_batch: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0f64; n_batch];
    let mut sum_sq = vec![0f64; n_batch];
    let mut count = vec![0f64; n_batch];
    for (&l, &b) in log_library.iter().zip(batch) {
        let (l, b) = (l as f64, b as usize);
        sum[b] += l;
        sum_sq[b] += l * l;
        count[b] += 1.0;
    }
    let mean: Vec<f64> = (0..n_batch)
        .map(|b| {
            if count[b] > 0.0 {
                sum[b] / count[b]
            } else {
                0.0
            }
        })
        .collect();
    let var = (0..n_batch)
        .map(|b| {
            if count[b] > 0.0 {
                (sum_sq[b] / count[b] - mean[b] * mean[b]).max(1e-4)
            } else {
                1.0
            }
        })
        .collect();
    (mean, var)
}

impl ScviModel {
    /// Trains scVI on `data` (cells x genes counts, a batch code per cell) with `engine`.
    pub fn train(
        arch: ScviArchitecture,
        config: &TrainConfig,
        data: CountsAndBatch<'_>,
        device: ComputeDevice,
        engine: Engine,
        observer: &mut dyn TrainingObserver,
    ) -> Result<ScviModel> {
        arch.validate()?;
        config.validate()?;
        let cells = data.prepare(&arch)?;
        let n_cells = data.counts.n_rows;
        if n_cells < 3 {
            return Err(Error::invalid(
                "x",
                format!("needs at least 3 cells to train, got {n_cells}"),
            ));
        }
        let inner = device.burn_device()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let (mean, var) = library_prior(&cells.log_library, data.batch, arch.n_batch);
        let module = ScviModule::new(
            &arch,
            Some((&mean, &var)),
            &mut rng,
            &inner.clone().autodiff(),
        );
        let split = DataSplit::random(n_cells, config.train_size, config.batch_size, &mut rng);
        let mut plan = TrainingPlan::new(engine).with_penalty(
            config,
            BATCH,
            arch.n_batch,
            arch.n_latent,
            &inner,
        )?;
        let trained = fit(
            module, &cells, &split, config, &mut plan, &inner, &mut rng, observer,
        )?;
        Ok(ScviModel {
            arch,
            module: trained.module.valid(),
            device,
            engine,
            history: trained.history,
            profile: trained.profile,
        })
    }

    /// This reference extended to `n_batch` batches (its own first, then the query's) and
    /// trained on the query `data` (batch codes in that numbering) as scArches does: see
    /// `models::query` for what trains.
    pub fn map_query(
        &self,
        data: CountsAndBatch<'_>,
        n_batch: usize,
        config: &TrainConfig,
        observer: &mut dyn TrainingObserver,
    ) -> Result<ScviModel> {
        config.validate()?;
        let arch = self.arch.for_query(n_batch)?;
        let cells = data.prepare(&arch)?;
        let inner = self.device.burn_device()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let (mean, var) = library_prior(&cells.log_library, data.batch, n_batch);
        let fresh = ScviModule::new(
            &arch,
            Some((&mean, &var)),
            &mut rng,
            &inner.clone().autodiff(),
        );
        let trained = crate::models::query::fit_query(
            &weights::named_tensors(&self.module),
            fresh,
            self.arch.n_batch,
            &cells,
            config,
            TrainingPlan::new(self.engine),
            &inner,
            &mut rng,
            observer,
        )?;
        Ok(ScviModel {
            arch,
            module: trained.module.valid(),
            device: self.device,
            engine: self.engine,
            history: trained.history,
            profile: trained.profile,
        })
    }

    /// Rebuilds a model from its architecture and saved weights (by name). The architecture is
    /// checked against the weights' shapes before any network is built.
    pub fn from_parts(
        arch: ScviArchitecture,
        weights_bytes: &[u8],
        device: ComputeDevice,
        engine: Engine,
    ) -> Result<ScviModel> {
        let tensors = weights::decode(weights_bytes)?;
        arch.check_weights(&tensors)?;
        let inner = device.burn_device()?;
        let skeleton = ScviModule::new(
            &arch,
            None,
            &mut Xoshiro256PlusPlus::seed_from_u64(0),
            &inner,
        );
        let module = weights::load_named(skeleton, &tensors, true)?;
        Ok(ScviModel {
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

    /// Per-batch mean and variance of the log library (a latent library's prior).
    pub fn library_prior(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        self.module
            .library_prior
            .as_ref()
            .map(|p| (to_host(p.log_mean.value()), to_host(p.log_var.value())))
    }

    /// Posterior mean of z for every cell (cells x n_latent).
    pub fn latent(&self, data: CountsAndBatch<'_>) -> Result<DenseMatrix> {
        let cells = data.prepare(&self.arch)?;
        let device = self.device.burn_device()?;
        let n = data.counts.n_rows;
        let mut out = Vec::with_capacity(n * self.arch.n_latent);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        for start in (0..n).step_by(EVAL_CHUNK) {
            let rows: Vec<usize> = (start..(start + EVAL_CHUNK).min(n)).collect();
            let mut ctx = StepContext::new(self.engine, Mode::Predict, device.clone(), &mut rng);
            let batch = ctx.minibatch(&cells, rows);
            let inference = self.module.inference(&mut ctx, &batch);
            out.extend(to_host(inference.qz.mean).into_iter().map(f64::from));
        }
        DenseMatrix::new(n, self.arch.n_latent, out)
    }

    /// Decoded expression of the genes `genes` (all when `None`): the posterior-mean z of each
    /// cell decoded with each batch of `transform_batch` (its own batch when empty) and averaged,
    /// scaled by `library`. Decoding with another batch than the cell's gives batch-corrected or
    /// counterfactual expression. Cells are processed in chunks: `sink(first_cell, block)`
    /// receives each chunk's `cells x genes` block (row-major), so the caller can write it in
    /// place and nothing cells x all genes is held at once.
    pub fn normalized_expression(
        &self,
        data: CountsAndBatch<'_>,
        transform_batch: &[u32],
        library: LibraryScale,
        genes: Option<&[usize]>,
        sink: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        let cells = data.prepare(&self.arch)?;
        if let Some(b) = transform_batch
            .iter()
            .find(|&&b| b as usize >= self.arch.n_batch)
        {
            return Err(Error::invalid(
                "transform_batch",
                format!("batch code {b} is not one of the model's batches"),
            ));
        }
        if let LibraryScale::Constant(c) = library {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid("library_size", "must be a positive number"));
            }
        }
        let g = self.arch.n_genes;
        if let Some(j) = genes.and_then(|s| s.iter().find(|&&j| j >= g)) {
            return Err(Error::invalid(
                "genes",
                format!("gene index {} is beyond the model's {g} genes", j + 1),
            ));
        }
        let all: Vec<usize>;
        let genes = match genes {
            Some(s) => s,
            None => {
                all = (0..g).collect();
                &all
            }
        };
        let device = self.device.burn_device()?;
        let n = data.counts.n_rows;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        for start in (0..n).step_by(EVAL_CHUNK) {
            let rows: Vec<usize> = (start..(start + EVAL_CHUNK).min(n)).collect();
            let m = rows.len();
            let mut ctx = StepContext::new(self.engine, Mode::Predict, device.clone(), &mut rng);
            let batch = ctx.minibatch(&cells, rows.clone());
            let inference = self.module.inference(&mut ctx, &batch);
            let decode_with: Vec<crate::nn::Covariates> = if transform_batch.is_empty() {
                vec![inference.batch]
            } else {
                transform_batch
                    .iter()
                    .map(|&b| {
                        crate::nn::Covariates::new(vec![(vec![b; m], self.arch.n_batch)], &device)
                    })
                    .collect()
            };
            let weight = 1.0 / decode_with.len() as f32;
            let mut block = vec![0f32; m * genes.len()];
            for covariates in &decode_with {
                let hidden =
                    self.module
                        .decoder
                        .hidden(&mut ctx, inference.qz.mean.clone(), covariates);
                let rho = ctx.expression_frequencies(&self.module.decoder.head, hidden);
                for (i, &r) in rows.iter().enumerate() {
                    let scale = weight
                        * match library {
                            LibraryScale::Constant(c) => c as f32,
                            LibraryScale::Observed => cells.log_library[r].exp(),
                        };
                    let src = &rho[i * g..(i + 1) * g];
                    let dst = &mut block[i * genes.len()..(i + 1) * genes.len()];
                    for (o, &j) in dst.iter_mut().zip(genes) {
                        *o += scale * src[j];
                    }
                }
            }
            sink(start, &block);
        }
        Ok(())
    }

    /// Mean ELBO, reconstruction and KL over the cells, with z sampled once (evaluation mode).
    pub fn elbo(&self, data: CountsAndBatch<'_>, seed: u64) -> Result<LossRecord> {
        let cells = data.prepare(&self.arch)?;
        let device = self.device.burn_device()?;
        let all: Vec<usize> = (0..data.counts.n_rows).collect();
        Ok(evaluate(
            &self.module,
            &cells,
            &all,
            self.engine,
            &device,
            &mut Xoshiro256PlusPlus::seed_from_u64(seed),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests;
