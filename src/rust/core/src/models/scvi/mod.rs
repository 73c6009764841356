//! scVI (Lopez et al. 2018; scvi-tools 1.4 defaults): train on sparse counts, then the
//! posterior-mean latent, batch-corrected or counterfactual expression, save and load.
//!
//! The training step runs the network in burn (autodiff on the chosen device) and the count
//! likelihood in the fused kernel of `distributions::count_likelihood`; the kernel's gradients
//! enter the graph through a surrogate sum(gradient * output), whose backward pass is exactly
//! the chain rule through the network.

mod module;

use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use module::{CountsBatch, Inference, StepNoise, kl_normal, kl_standard_normal};
pub use module::{ScviArchitecture, ScviModule};

use crate::data::{CsrMatrix, DenseMatrix};
use crate::device::ComputeDevice;
use crate::distributions::{DecoderOutputs, LikelihoodResult, log_likelihood};
use crate::error::{Error, Result};
use crate::nn::host::Gradients as HostGradients;
use crate::nn::{dropout_mask, one_hot, standard_normal, tensor_1d, tensor_2d, to_host, weights};
use crate::train::adam::HostAdam;
use crate::train::{
    DataSplit, EarlyStopping, EpochRecord, LossRecord, StepProfile, TrainConfig, TrainingObserver,
    check_finite, kl_weight, minibatches,
};

/// Cells per forward pass when nothing is trained (latent, expression, validation).
const EVAL_CHUNK: usize = 1024;

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
    module: ScviModule,
    pub device: ComputeDevice,
    /// Per-batch mean and variance of the log library size (prior of the latent library).
    pub library_log_mean: Vec<f64>,
    pub library_log_var: Vec<f64>,
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
    fn check(&self, arch: &ScviArchitecture) -> Result<Vec<f32>> {
        if self.counts.n_cols != arch.n_genes {
            return Err(Error::invalid(
                "x",
                format!(
                    "has {} genes but the model was trained on {}",
                    self.counts.n_cols, arch.n_genes
                ),
            ));
        }
        if self.batch.len() != self.counts.n_rows {
            return Err(Error::invalid(
                "batch",
                format!(
                    "has {} values for {} cells",
                    self.batch.len(),
                    self.counts.n_rows
                ),
            ));
        }
        if let Some(b) = self.batch.iter().find(|&&b| b as usize >= arch.n_batch) {
            return Err(Error::invalid(
                "batch",
                format!(
                    "code {b} is not one of the model's {} batches",
                    arch.n_batch
                ),
            ));
        }
        if self
            .counts
            .values
            .iter()
            .any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(Error::invalid("x", "counts must be finite and >= 0"));
        }
        let log_library: Vec<f32> = self
            .counts
            .row_sums()
            .iter()
            .map(|s| s.ln() as f32)
            .collect();
        if let Some(i) = log_library.iter().position(|l| !l.is_finite()) {
            return Err(Error::invalid(
                "x",
                format!("cell {} has zero total counts", i + 1),
            ));
        }
        Ok(log_library)
    }
}

/// Everything a forward pass needs besides the network.
struct Batchwise<'a> {
    arch: &'a ScviArchitecture,
    data: CountsAndBatch<'a>,
    /// log1p of the stored counts (the encoders' input).
    log1p_values: Vec<f32>,
    log_library: &'a [f32],
    library_log_mean: &'a [f64],
    library_log_var: &'a [f64],
}

/// One forward pass over `rows`: the network's outputs and the likelihood terms.
struct Pass {
    codes: Vec<u32>,
    inference: Inference,
    library: Tensor<2>,
    decoder_hidden: Tensor<2>,
    log_lik: Vec<f64>,
    /// With a gradient: d loss / d decoder hidden layer (host), the kernel's gradients, and the
    /// output heads' parameter gradients.
    gradients: Option<(Vec<f32>, LikelihoodResult<f32>, HostGradients)>,
}

impl<'a> Batchwise<'a> {
    fn new(
        arch: &'a ScviArchitecture,
        data: CountsAndBatch<'a>,
        log_library: &'a [f32],
        library_log_mean: &'a [f64],
        library_log_var: &'a [f64],
    ) -> Self {
        Self {
            arch,
            data,
            log1p_values: data.counts.values.iter().map(|v| v.ln_1p()).collect(),
            log_library,
            library_log_mean,
            library_log_var,
        }
    }

    /// The encoder's view of the cells `rows` (whose batch codes are `codes`).
    fn minibatch<'b>(&'b self, rows: &'b [usize], codes: &'b [u32]) -> CountsBatch<'b> {
        CountsBatch {
            counts: self.data.counts,
            log1p_values: &self.log1p_values,
            rows,
            batch: codes,
        }
    }

    /// Posterior mean of z for `rows` (evaluation mode) and the rows' batch one-hot.
    fn posterior_mean(
        &self,
        module: &ScviModule,
        rows: &[usize],
        device: &Device,
    ) -> (Tensor<2>, Tensor<2>) {
        let codes: Vec<u32> = rows.iter().map(|&r| self.data.batch[r]).collect();
        let one_hot = one_hot(&codes, self.arch.n_batch, device);
        let input = self.minibatch(rows, &codes);
        (
            module.inference(&input, &one_hot, None, false, device).z,
            one_hot,
        )
    }

    fn noise(&self, rng: &mut Xoshiro256PlusPlus, n: usize, device: &Device) -> StepNoise {
        let a = self.arch;
        let masks = |rng: &mut Xoshiro256PlusPlus, layers: usize| -> Vec<Tensor<2>> {
            if a.dropout_rate > 0.0 {
                (0..layers)
                    .map(|_| dropout_mask(rng, n, a.n_hidden, a.dropout_rate, device))
                    .collect()
            } else {
                Vec::new()
            }
        };
        StepNoise {
            eps_z: standard_normal(rng, n, a.n_latent, device),
            eps_l: a.latent_library.then(|| standard_normal(rng, n, 1, device)),
            z_masks: masks(rng, a.n_layers),
            l_masks: if a.latent_library {
                masks(rng, 1)
            } else {
                Vec::new()
            },
        }
    }

    fn forward(
        &self,
        module: &ScviModule,
        rows: &[usize],
        noise: Option<&StepNoise>,
        grad_scale: Option<f32>,
        device: &Device,
        profile: &mut StepProfile,
    ) -> Pass {
        let start = Instant::now();
        let n = rows.len();
        let codes: Vec<u32> = rows.iter().map(|&r| self.data.batch[r]).collect();
        let one_hot = one_hot(&codes, self.arch.n_batch, device);
        let input = self.minibatch(rows, &codes);
        let inference = module.inference(&input, &one_hot, noise, grad_scale.is_some(), device);
        let library = match &inference.library {
            Some((_, _, l)) => l.clone(),
            None => tensor_2d(
                rows.iter().map(|&r| self.log_library[r]).collect(),
                n,
                1,
                device,
            ),
        };
        let decoder_hidden = module.decoder_hidden(inference.z.clone(), &one_hot);
        let hidden = to_host(decoder_hidden.clone());
        let (scale_head, dropout_head) = module.decoder_heads();
        let scale = scale_head.forward(&hidden, n);
        let dropout = dropout_head.as_ref().map(|d| d.forward(&hidden, n));
        let network_done = Instant::now();
        profile.forward += (network_done - start).as_secs_f64();

        let log_theta = to_host(module.px_r.val());
        let log_library = to_host(library.clone());
        let outputs = DecoderOutputs {
            scale_logits: &scale,
            dropout_logits: dropout.as_deref(),
            log_theta: &log_theta,
            log_library: &log_library,
        };
        let mut result = log_likelihood(
            self.arch.likelihood,
            self.data.counts,
            rows,
            &outputs,
            grad_scale,
        );
        let log_lik = std::mem::take(&mut result.log_lik);
        let gradients = grad_scale.map(|_| {
            let mut d_hidden = vec![0f32; n * self.arch.n_hidden];
            let mut heads = HostGradients::default();
            scale_head.backward(
                &hidden,
                &result.d_scale_logits,
                n,
                &mut d_hidden,
                &mut heads,
            );
            if let Some(head) = &dropout_head {
                head.backward(
                    &hidden,
                    &result.d_dropout_logits,
                    n,
                    &mut d_hidden,
                    &mut heads,
                );
            }
            (d_hidden, result, heads)
        });
        profile.likelihood += network_done.elapsed().as_secs_f64();
        Pass {
            codes,
            inference,
            library,
            decoder_hidden,
            log_lik,
            gradients,
        }
    }

    /// Per-cell KL of z and of the latent library (zeros without one): `n x 1` each.
    fn kl_terms(
        &self,
        pass: &Pass,
        rows: &[usize],
        device: &Device,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let kl_z = kl_standard_normal(
            pass.inference.qz_mean.clone(),
            pass.inference.qz_var.clone(),
        );
        let kl_l = pass.inference.library.as_ref().map(|(m, v, _)| {
            let n = rows.len();
            let prior = |stat: &[f64]| -> Tensor<2> {
                tensor_2d(
                    rows.iter()
                        .map(|&r| stat[self.data.batch[r] as usize] as f32)
                        .collect(),
                    n,
                    1,
                    device,
                )
            };
            kl_normal(
                m.clone(),
                v.clone(),
                prior(self.library_log_mean),
                prior(self.library_log_var),
            )
        });
        (kl_z, kl_l)
    }

    /// Mean losses of a pass (cells weighted equally).
    fn record(
        &self,
        pass: &Pass,
        kl_z: &Tensor<2>,
        kl_l: Option<&Tensor<2>>,
        kl_weight: f64,
    ) -> LossRecord {
        let n = pass.log_lik.len() as f64;
        let reconstruction = -pass.log_lik.iter().sum::<f64>() / n;
        let mean = |t: &Tensor<2>| to_host(t.clone()).iter().map(|&v| v as f64).sum::<f64>() / n;
        let kl_z = mean(kl_z);
        let kl_l = kl_l.map(mean).unwrap_or(0.0);
        LossRecord {
            loss: reconstruction + kl_weight * kl_z + kl_l,
            reconstruction,
            kl_local: kl_z + kl_l,
            elbo: reconstruction + kl_z + kl_l,
        }
    }

    /// The training loss on `rows` (KL weighted by `kl_weight`) and its gradients with respect
    /// to every parameter: the autodiff ones, and those of the host-side layers (the decoder
    /// heads' directly, the encoders' first layers' from the gradients of their outputs).
    fn loss_and_gradients(
        &self,
        module: &ScviModule,
        rows: &[usize],
        noise: &StepNoise,
        kl_weight: f64,
        device: &Device,
        profile: &mut StepProfile,
    ) -> (LossRecord, GradientsParams, HostGradients) {
        let n = rows.len();
        let pass = self.forward(
            module,
            rows,
            Some(noise),
            Some(-1.0 / n as f32),
            device,
            profile,
        );
        let backward_start = Instant::now();
        let (kl_z, kl_l) = self.kl_terms(&pass, rows, device);
        let record = self.record(&pass, &kl_z, kl_l.as_ref(), kl_weight);
        let (d_hidden, likelihood, mut host) =
            pass.gradients.expect("a training pass has gradients");
        // d/dtheta of sum(t * c) with c constant is c: the surrogate carries the host gradients
        // into the graph.
        let mut surrogate =
            (pass.decoder_hidden * tensor_2d(d_hidden, n, self.arch.n_hidden, device)).sum()
                + (module.px_r.val() * tensor_1d(likelihood.d_log_theta, device)).sum()
                + kl_z.mean().mul_scalar(kl_weight);
        if let Some(kl_l) = kl_l {
            surrogate = surrogate
                + (pass.library * tensor_2d(likelihood.d_log_library, n, 1, device)).sum()
                + kl_l.mean();
        }
        let grads = surrogate.backward();
        for (layer, output) in &pass.inference.first_layers {
            let d_output = to_host(
                output
                    .grad(&grads)
                    .expect("first-layer outputs track gradients"),
            );
            let covariate = (layer.d_in > self.arch.n_genes).then_some(pass.codes.as_slice());
            layer.backward_sparse(
                self.data.counts,
                rows,
                &self.log1p_values,
                covariate,
                &d_output,
                &mut host,
            );
        }
        let gradients = GradientsParams::from_grads(grads, module);
        profile.backward += backward_start.elapsed().as_secs_f64();
        (record, gradients, host)
    }

    /// One optimisation step on `rows`; returns the updated module and the step's losses.
    #[allow(clippy::too_many_arguments)]
    fn train_step(
        &self,
        module: ScviModule,
        optim: &mut Optimizers,
        rows: &[usize],
        kl_weight: f64,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
        epoch: usize,
        profile: &mut StepProfile,
    ) -> Result<(ScviModule, LossRecord)> {
        let noise = self.noise(rng, rows.len(), device);
        let (record, gradients, host) =
            self.loss_and_gradients(&module, rows, &noise, kl_weight, device, profile);
        check_finite(record.loss, epoch, "training loss")?;
        let optimizer_start = Instant::now();
        let module = optim.burn.step(optim.lr, module, gradients);
        let mut updated = host.into_params();
        for p in &mut updated {
            optim
                .host
                .step(optim.lr as f32, p.id, &mut p.values, &p.gradient);
        }
        let module = weights::replace_params(module, updated);
        profile.optimizer += optimizer_start.elapsed().as_secs_f64();
        profile.steps += 1;
        Ok((module, record))
    }

    /// Losses of an evaluation-mode pass over `cells` (z sampled, full KL).
    fn evaluate(
        &self,
        module: &ScviModule,
        cells: &[usize],
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> LossRecord {
        let mut total = LossRecord::default();
        for chunk in cells.chunks(EVAL_CHUNK) {
            let noise = StepNoise {
                z_masks: Vec::new(),
                l_masks: Vec::new(),
                ..self.noise(rng, chunk.len(), device)
            };
            let pass = self.forward(
                module,
                chunk,
                Some(&noise),
                None,
                device,
                &mut StepProfile::default(),
            );
            let (kl_z, kl_l) = self.kl_terms(&pass, chunk, device);
            let r = self.record(&pass, &kl_z, kl_l.as_ref(), 1.0);
            let w = chunk.len() as f64 / cells.len() as f64;
            total.loss += w * r.loss;
            total.reconstruction += w * r.reconstruction;
            total.kl_local += w * r.kl_local;
            total.elbo += w * r.elbo;
        }
        total
    }
}

/// The optimisers of one training run: burn's Adam for the autodiff parameters and the host
/// Adam, with the same settings, for the host-side layers' parameters.
struct Optimizers {
    burn: ModuleOptimizer,
    host: HostAdam,
    lr: f64,
}

/// Mean and (population) variance of the log library size within each batch.
fn library_prior(log_library: &[f32], batch: &[u32], n_batch: usize) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0f64; n_batch];
    let mut sum_sq = vec![0f64; n_batch];
    let mut count = vec![0f64; n_batch];
    for (&l, &b) in log_library.iter().zip(batch) {
        let (l, b) = (l as f64, b as usize);
        sum[b] += l;
        sum_sq[b] += l * l;
        count[b] += 1.0;
    }
    let mean: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
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
    /// Trains scVI on `data` (cells x genes counts, a batch code per cell).
    pub fn train(
        arch: ScviArchitecture,
        config: &TrainConfig,
        data: CountsAndBatch<'_>,
        device: ComputeDevice,
        observer: &mut dyn TrainingObserver,
    ) -> Result<ScviModel> {
        validate_architecture(&arch)?;
        config.validate()?;
        let log_library = data.check(&arch)?;
        let n_cells = data.counts.n_rows;
        if n_cells < 3 {
            return Err(Error::invalid(
                "x",
                format!("needs at least 3 cells to train, got {n_cells}"),
            ));
        }
        let inner = device.burn_device()?;
        let ad = inner.clone().autodiff();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let mut module = ScviModule::new(&arch, &mut rng, &ad);
        let (library_log_mean, library_log_var) =
            library_prior(&log_library, data.batch, arch.n_batch);
        let split = DataSplit::random(n_cells, config.train_size, &mut rng);
        let mut optim = Optimizers {
            burn: AdamConfig::new()
                .with_epsilon(config.adam_eps as f32)
                .with_weight_decay(
                    (config.weight_decay > 0.0)
                        .then(|| WeightDecayConfig::new(config.weight_decay as f32)),
                )
                .init(),
            host: HostAdam::new(config.adam_eps as f32, config.weight_decay as f32),
            lr: config.lr,
        };
        let max_epochs = config.epochs_for(n_cells);
        let mut early_stopping = config.early_stopping.then(|| {
            EarlyStopping::new(
                config.early_stopping_patience,
                config.early_stopping_min_delta,
            )
        });
        let work = Batchwise::new(
            &arch,
            data,
            &log_library,
            &library_log_mean,
            &library_log_var,
        );
        let mut history = Vec::with_capacity(max_epochs);
        let mut profile = StepProfile::default();
        for epoch in 0..max_epochs {
            let start = Instant::now();
            let w = kl_weight(epoch, config.n_epochs_kl_warmup);
            let mut train = LossRecord::default();
            let mut seen = 0usize;
            for rows in minibatches(&split.train, config.batch_size, &mut rng) {
                if observer.should_stop() {
                    return Err(Error::Interrupted);
                }
                let (updated, r) = work.train_step(
                    module,
                    &mut optim,
                    &rows,
                    w,
                    &mut rng,
                    &ad,
                    epoch + 1,
                    &mut profile,
                )?;
                module = updated;
                let k = rows.len() as f64;
                train.loss += k * r.loss;
                train.reconstruction += k * r.reconstruction;
                train.kl_local += k * r.kl_local;
                train.elbo += k * r.elbo;
                seen += rows.len();
            }
            let s = seen.max(1) as f64;
            train = LossRecord {
                loss: train.loss / s,
                reconstruction: train.reconstruction / s,
                kl_local: train.kl_local / s,
                elbo: train.elbo / s,
            };
            let validation = (!split.validation.is_empty())
                .then(|| work.evaluate(&module.valid(), &split.validation, &mut rng, &inner));
            if let Some(v) = &validation {
                check_finite(v.elbo, epoch + 1, "validation ELBO")?;
            }
            let record = EpochRecord {
                epoch: epoch + 1,
                kl_weight: w,
                train,
                validation,
                seconds: start.elapsed().as_secs_f64(),
            };
            observer.on_epoch_end(&record, max_epochs);
            history.push(record);
            if let (Some(es), Some(v)) = (early_stopping.as_mut(), validation) {
                if es.update(v.elbo) {
                    break;
                }
            }
        }
        Ok(ScviModel {
            arch,
            module: module.valid(),
            device,
            library_log_mean,
            library_log_var,
            history,
            profile,
        })
    }

    /// Rebuilds a model from its architecture, library prior and saved weights.
    pub fn from_parts(
        arch: ScviArchitecture,
        library_log_mean: Vec<f64>,
        library_log_var: Vec<f64>,
        weights_bytes: &[u8],
        device: ComputeDevice,
    ) -> Result<ScviModel> {
        validate_architecture(&arch)?;
        if library_log_mean.len() != arch.n_batch || library_log_var.len() != arch.n_batch {
            return Err(Error::Format(
                "library prior does not match the number of batches".into(),
            ));
        }
        let inner = device.burn_device()?;
        let skeleton = ScviModule::new(&arch, &mut Xoshiro256PlusPlus::seed_from_u64(0), &inner);
        let module = weights::load_bytes(skeleton, weights_bytes)?;
        Ok(ScviModel {
            arch,
            module,
            device,
            library_log_mean,
            library_log_var,
            history: Vec::new(),
            profile: StepProfile::default(),
        })
    }

    pub fn weights_bytes(&self) -> Vec<u8> {
        weights::to_bytes(&self.module)
    }

    fn batchwise<'a>(&'a self, data: CountsAndBatch<'a>, log_library: &'a [f32]) -> Batchwise<'a> {
        Batchwise::new(
            &self.arch,
            data,
            log_library,
            &self.library_log_mean,
            &self.library_log_var,
        )
    }

    /// Posterior mean of z for every cell (cells x n_latent).
    pub fn latent(&self, data: CountsAndBatch<'_>) -> Result<DenseMatrix> {
        let log_library = data.check(&self.arch)?;
        let work = self.batchwise(data, &log_library);
        let device = self.device.burn_device()?;
        let n = data.counts.n_rows;
        let d = self.arch.n_latent;
        let mut out = Vec::with_capacity(n * d);
        let all: Vec<usize> = (0..n).collect();
        for rows in all.chunks(EVAL_CHUNK) {
            let (z, _) = work.posterior_mean(&self.module, rows, &device);
            out.extend(to_host(z).into_iter().map(|v| v as f64));
        }
        DenseMatrix::new(n, d, out)
    }

    /// Decoded expression (cells x genes, row-major): the posterior-mean z of each cell decoded
    /// with each batch of `transform_batch` (its own batch when empty) and averaged, scaled by
    /// `library`. Decoding with another batch than the cell's gives batch-corrected or
    /// counterfactual expression.
    pub fn normalized_expression(
        &self,
        data: CountsAndBatch<'_>,
        transform_batch: &[u32],
        library: LibraryScale,
    ) -> Result<Vec<f32>> {
        let log_library = data.check(&self.arch)?;
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
        let work = self.batchwise(data, &log_library);
        let device = self.device.burn_device()?;
        let n = data.counts.n_rows;
        let g = self.arch.n_genes;
        let mut out = vec![0f32; n * g];
        let all: Vec<usize> = (0..n).collect();
        for (chunk_index, rows) in all.chunks(EVAL_CHUNK).enumerate() {
            let (z, own) = work.posterior_mean(&self.module, rows, &device);
            let decoders: Vec<Tensor<2>> = if transform_batch.is_empty() {
                vec![own]
            } else {
                transform_batch
                    .iter()
                    .map(|&b| one_hot(&vec![b; rows.len()], self.arch.n_batch, &device))
                    .collect()
            };
            let weight = 1.0 / decoders.len() as f32;
            let block = &mut out[chunk_index * EVAL_CHUNK * g..][..rows.len() * g];
            let (scale_head, _) = self.module.decoder_heads();
            for one_hot in &decoders {
                let hidden = to_host(self.module.decoder_hidden(z.clone(), one_hot));
                let logits = scale_head.forward(&hidden, rows.len());
                for (i, &r) in rows.iter().enumerate() {
                    let scale = match library {
                        LibraryScale::Constant(c) => c as f32,
                        LibraryScale::Observed => log_library[r].exp(),
                    };
                    softmax_accumulate(
                        &logits[i * g..(i + 1) * g],
                        weight * scale,
                        &mut block[i * g..(i + 1) * g],
                    );
                }
            }
        }
        Ok(out)
    }

    /// ELBO per cell (reconstruction + KL, averaged over cells) with z sampled once.
    pub fn elbo(&self, data: CountsAndBatch<'_>, seed: u64) -> Result<LossRecord> {
        let log_library = data.check(&self.arch)?;
        let work = self.batchwise(data, &log_library);
        let device = self.device.burn_device()?;
        let all: Vec<usize> = (0..data.counts.n_rows).collect();
        Ok(work.evaluate(
            &self.module,
            &all,
            &mut Xoshiro256PlusPlus::seed_from_u64(seed),
            &device,
        ))
    }
}

/// out += weight * softmax(logits).
fn softmax_accumulate(logits: &[f32], weight: f32, out: &mut [f32]) {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let z: f32 = logits.iter().map(|&v| (v - m).exp()).sum();
    let k = weight / z;
    for (o, &v) in out.iter_mut().zip(logits) {
        *o += k * (v - m).exp();
    }
}

fn validate_architecture(arch: &ScviArchitecture) -> Result<()> {
    let positive = [
        ("n_genes", arch.n_genes),
        ("n_latent", arch.n_latent),
        ("n_hidden", arch.n_hidden),
        ("n_layers", arch.n_layers),
        ("batch", arch.n_batch),
    ];
    for (name, v) in positive {
        if v < 1 {
            return Err(Error::invalid(name, "must be >= 1"));
        }
    }
    if !(0.0..1.0).contains(&arch.dropout_rate) {
        return Err(Error::invalid("dropout_rate", "must be in [0, 1)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::GeneLikelihood;
    use burn::module::Param;
    use rand::RngExt;

    /// Counts of `n` cells x `g` genes from two batches with different means.
    fn synthetic(n: usize, g: usize, seed: u64) -> (CsrMatrix, Vec<u32>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut indptr = vec![0];
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        let batch: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        for &b in &batch {
            for j in 0..g {
                let rate = 0.3 + 2.0 * ((j + b as usize * 3) % 5) as f64;
                // A crude Poisson draw: enough for a test of the machinery.
                let mut k = 0;
                let mut p = (-rate).exp();
                let mut cdf = p;
                let u: f64 = rng.random();
                while u > cdf && k < 60 {
                    k += 1;
                    p *= rate / k as f64;
                    cdf += p;
                }
                if k > 0 {
                    indices.push(j as u32);
                    values.push(k as f32);
                }
            }
            if indptr.last() == Some(&indices.len()) {
                indices.push(0);
                values.push(1.0);
            }
            indptr.push(indices.len());
        }
        (
            CsrMatrix::new(n, g, indptr, indices, values).unwrap(),
            batch,
        )
    }

    fn host_param<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        to_host(p.val())
    }

    fn with_value<const D: usize>(p: &Param<Tensor<D>>, k: usize, value: f32) -> Param<Tensor<D>> {
        let t = p.val();
        let dims = t.dims();
        let mut v = to_host(t.clone());
        v[k] = value;
        Param::from_tensor(Tensor::from_data(
            burn::tensor::TensorData::new(v, dims),
            &t.device(),
        ))
    }

    /// The surrogate backward pass gives the gradient of the full loss (likelihood through the
    /// decoder and encoder, reparameterised z, KL, latent library) for several parameters.
    #[test]
    fn gradients_of_the_whole_loss_match_finite_differences() {
        let configs = [
            (GeneLikelihood::Zinb, false, false, 1),
            (GeneLikelihood::Nb, true, false, 1),
            (GeneLikelihood::Zinb, true, true, 2),
        ];
        for (likelihood, latent_library, encode_covariates, n_layers) in configs {
            let (counts, batch) = synthetic(24, 12, 3);
            let arch = ScviArchitecture {
                n_latent: 3,
                n_hidden: 8,
                likelihood,
                latent_library,
                encode_covariates,
                n_layers,
                ..ScviArchitecture::new(12, 2)
            };
            let data = CountsAndBatch {
                counts: &counts,
                batch: &batch,
            };
            let log_library = data.check(&arch).unwrap();
            let (mean, var) = library_prior(&log_library, &batch, 2);
            let work = Batchwise::new(&arch, data, &log_library, &mean, &var);
            let device = Device::flex().autodiff();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
            let module = ScviModule::new(&arch, &mut rng, &device);
            let rows: Vec<usize> = (0..24).collect();
            let noise = work.noise(&mut rng, rows.len(), &device);
            let kl_weight = 0.7;
            let mut profile = StepProfile::default();
            let loss = |m: &ScviModule| {
                work.loss_and_gradients(
                    m,
                    &rows,
                    &noise,
                    kl_weight,
                    &device,
                    &mut StepProfile::default(),
                )
                .0
                .loss
            };
            let (_, grads, host) =
                work.loss_and_gradients(&module, &rows, &noise, kl_weight, &device, &mut profile);

            let h = 2e-3f32;
            let mut checked = 0;
            let mut check = |name: &str, analytic: f32, plus: ScviModule, minus: ScviModule| {
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
                assert!(
                    (fd - analytic as f64).abs() < 0.03 * fd.abs().max(0.05),
                    "{likelihood:?} latent library {latent_library}: {name}: finite difference {fd} vs analytic {analytic}"
                );
                checked += 1;
            };
            // Gene dispersions.
            let g_r = to_host(grads.get::<1>(module.px_r.id).unwrap());
            let r = host_param(&module.px_r);
            for k in [0, 7] {
                let mut plus = module.clone();
                plus.px_r = with_value(&module.px_r, k, r[k] + h);
                let mut minus = module.clone();
                minus.px_r = with_value(&module.px_r, k, r[k] - h);
                check("px_r", g_r[k], plus, minus);
            }
            // Decoder output weights and the encoder's first layer and mean head.
            assert!(grads.get::<2>(module.decoder.scale.weight.id).is_none());
            let g_scale = host
                .gradient(module.decoder.scale.weight.id)
                .unwrap()
                .to_vec();
            let w = host_param(&module.decoder.scale.weight);
            for k in [3, 50] {
                let mut plus = module.clone();
                plus.decoder.scale.weight = with_value(&module.decoder.scale.weight, k, w[k] + h);
                let mut minus = module.clone();
                minus.decoder.scale.weight = with_value(&module.decoder.scale.weight, k, w[k] - h);
                check("decoder scale weight", g_scale[k], plus, minus);
            }
            let first = &module.z_encoder.layers.layers[0].linear.weight;
            let g_first = host.gradient(first.id).unwrap().to_vec();
            let w = host_param(first);
            let k = g_first
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            let mut plus = module.clone();
            plus.z_encoder.layers.layers[0].linear.weight = with_value(first, k, w[k] + h);
            let mut minus = module.clone();
            minus.z_encoder.layers.layers[0].linear.weight = with_value(first, k, w[k] - h);
            check("encoder first-layer weight", g_first[k], plus, minus);
            if encode_covariates {
                // The batch one-hot's rows follow the genes' (12 genes x 8 hidden units).
                let k = 12 * 8 + 8 + 3;
                let mut plus = module.clone();
                plus.z_encoder.layers.layers[0].linear.weight = with_value(first, k, w[k] + h);
                let mut minus = module.clone();
                minus.z_encoder.layers.layers[0].linear.weight = with_value(first, k, w[k] - h);
                check("encoder covariate weight", g_first[k], plus, minus);
            }
            let g_mean = to_host(grads.get::<2>(module.z_encoder.mean.weight.id).unwrap());
            let w = host_param(&module.z_encoder.mean.weight);
            for k in [0, 10] {
                let mut plus = module.clone();
                plus.z_encoder.mean.weight = with_value(&module.z_encoder.mean.weight, k, w[k] + h);
                let mut minus = module.clone();
                minus.z_encoder.mean.weight =
                    with_value(&module.z_encoder.mean.weight, k, w[k] - h);
                check("encoder mean weight", g_mean[k], plus, minus);
            }
            assert_eq!(checked, if encode_covariates { 8 } else { 7 });
        }
    }
}
