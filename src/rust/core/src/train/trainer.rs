//! The one training loop every model uses (scvi-tools' TrainingPlan + Trainer): minibatches from
//! a sampler, KL warm-up, penalties, parameter groups each with its Adam, host-side parameters
//! updated by the host Adam on their master copies (`HostStore`), the validation ELBO, early stopping, the history, the NaN guard, and
//! the observer (progress, Ctrl-C). Losses stay on the device and are read back once per epoch.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;

use super::adam::HostAdam;
use super::{
    DataSplit, EarlyStopping, EpochRecord, LossRecord, Sampler, StepProfile, TrainConfig,
    TrainingObserver, check_finite, kl_weight,
};
use crate::engine::{CountData, Engine, Mode, StepContext};
use crate::error::{Error, Result};
use crate::models::GenerativeModule;
use crate::nn::host::HostStore;
use crate::nn::{to_host, weights};
use crate::penalties::Penalty;

/// Cells per pass when nothing is trained (validation, prediction).
pub const EVAL_CHUNK: usize = 1024;

/// Parameters with an optimiser of their own (a prior's, a classifier's); every other parameter
/// is in the main group, optimised with the `TrainConfig`'s settings.
pub struct ParamGroup {
    pub name: String,
    pub params: Vec<ParamId>,
    pub lr: f64,
    pub adam_eps: f64,
    pub weight_decay: f64,
}

/// What a fit trains when not everything does (scArches query mapping): only `params`; of
/// those in `frozen_rows`, the first rows (of a `[d_in, d_out]` weight: the inputs before a
/// layer's covariate block) keep their values exactly, weight decay included.
#[derive(Debug, Clone, Default)]
pub struct Trainable {
    pub params: HashSet<ParamId>,
    /// Leading frozen rows and the row width, per parameter.
    pub frozen_rows: HashMap<ParamId, (usize, usize)>,
}

impl Trainable {
    fn contains(this: &Option<Trainable>, id: &ParamId) -> bool {
        this.as_ref().is_none_or(|t| t.params.contains(id))
    }

    /// `values` with the frozen leading rows of each parameter taken from `saved`.
    fn restore_rows(
        &self,
        saved: &HashMap<ParamId, Vec<f32>>,
        values: &mut HashMap<ParamId, Vec<f32>>,
    ) {
        for (id, v) in values.iter_mut() {
            if let (Some(&(rows, width)), Some(old)) = (self.frozen_rows.get(id), saved.get(id)) {
                v[..rows * width].copy_from_slice(&old[..rows * width]);
            }
        }
    }
}

/// How a model is trained beyond the `TrainConfig`.
pub struct TrainingPlan {
    pub engine: Engine,
    pub sampler: Sampler,
    pub groups: Vec<ParamGroup>,
    /// Penalties on the representation, each with the annotation holding its condition codes.
    pub penalties: Vec<(Box<dyn Penalty>, usize)>,
    /// `None`: every parameter trains.
    pub trainable: Option<Trainable>,
}

impl TrainingPlan {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            sampler: Sampler::Random,
            groups: Vec::new(),
            penalties: Vec::new(),
            trainable: None,
        }
    }

    /// Adds `config`'s penalty, if any, against annotation `annotation` (`n_conditions`
    /// levels), with minibatches that hold every condition. `device`: the training device.
    pub fn with_penalty(
        mut self,
        config: &TrainConfig,
        annotation: usize,
        n_conditions: usize,
        n_latent: usize,
        device: &Device,
    ) -> Result<Self> {
        if let Some(spec) = &config.penalty {
            spec.validate(n_conditions, config.batch_size)?;
            let penalty = spec.build(
                n_conditions,
                n_latent,
                config.seed,
                &device.clone().autodiff(),
            );
            self.penalties.push((penalty, annotation));
            self.sampler = Sampler::Balanced { annotation };
        }
        Ok(self)
    }
}

/// A trained module and its history.
pub struct Fit<M> {
    pub module: M,
    pub history: Vec<EpochRecord>,
    pub profile: StepProfile,
}

pub(crate) fn adam(lr_eps_wd: (f64, f64)) -> ModuleOptimizer {
    let (eps, wd) = lr_eps_wd;
    AdamConfig::new()
        .with_epsilon(eps as f32)
        .with_weight_decay((wd > 0.0).then(|| WeightDecayConfig::new(wd as f32)))
        .init()
}

struct Ids(Vec<ParamId>);

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

/// Trains `module` (built on the autodiff version of `device`) on the training cells of `split`.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: GenerativeModule>(
    mut module: M,
    data: &CountData<'_>,
    split: &DataSplit,
    config: &TrainConfig,
    plan: &mut TrainingPlan,
    device: &Device,
    rng: &mut Xoshiro256PlusPlus,
    observer: &mut dyn TrainingObserver,
) -> Result<Fit<M>> {
    let ad = device.clone().autodiff();
    let max_epochs = config.epochs_for(data.counts.n_rows);
    let mut main = adam((config.adam_eps, config.weight_decay));
    // Host-side parameters are updated on the host, each with its group's settings.
    let mut host_adams: Vec<(HostAdam, f64)> = vec![(
        HostAdam::new(config.adam_eps as f32, config.weight_decay as f32),
        config.lr,
    )];
    host_adams.extend(plan.groups.iter().map(|g| {
        (
            HostAdam::new(g.adam_eps as f32, g.weight_decay as f32),
            g.lr,
        )
    }));
    let host_group =
        |id: &ParamId| -> usize { plan_groups_position(&plan.groups, id).map_or(0, |k| k + 1) };
    let mut group_optims: Vec<ModuleOptimizer> = plan
        .groups
        .iter()
        .map(|g| adam((g.adam_eps, g.weight_decay)))
        .collect();
    let grouped: HashSet<ParamId> = plan.groups.iter().flat_map(|g| g.params.clone()).collect();
    let main_ids: Vec<ParamId> = {
        let mut ids = Ids(Vec::new());
        module.visit(&mut ids);
        ids.0
            .into_iter()
            .filter(|id| !grouped.contains(id) && Trainable::contains(&plan.trainable, id))
            .collect()
    };
    let group_ids: Vec<Vec<ParamId>> = plan
        .groups
        .iter()
        .map(|g| {
            g.params
                .iter()
                .filter(|id| Trainable::contains(&plan.trainable, id))
                .copied()
                .collect()
        })
        .collect();
    // Parameters with frozen rows, on the device (host-side ones are restored in the store).
    let row_frozen: HashSet<ParamId> = plan
        .trainable
        .as_ref()
        .map(|t| t.frozen_rows.keys().copied().collect())
        .unwrap_or_default();
    let mut early_stopping = config.early_stopping.then(|| {
        EarlyStopping::new(
            config.early_stopping_patience,
            config.early_stopping_min_delta,
        )
    });
    let mut history = Vec::with_capacity(max_epochs);
    let mut profile = StepProfile::default();
    let mut names: Vec<String> = Vec::new();
    let mut store = HostStore::default();
    let mut weights_of_extra: Vec<f64> = Vec::new();

    for epoch in 0..max_epochs {
        let start = Instant::now();
        let w = config.kl_weight * kl_weight(epoch, config.n_epochs_kl_warmup);
        let mut sums: Option<Tensor<1>> = None;
        let mut seen = 0usize;
        let batches = plan
            .sampler
            .epoch(&split.train, config.batch_size, &data.categorical, rng);
        for sampled in batches {
            if observer.should_stop() {
                return Err(Error::Interrupted);
            }
            let t0 = Instant::now();
            let mut ctx =
                StepContext::new(plan.engine, Mode::Train, ad.clone(), rng).with_host_store(&store);
            let mut batch = ctx.minibatch(data, sampled.rows);
            batch.labelled_rows = sampled.labelled;
            let (inference, generative, mut loss) = module.forward(&mut ctx, &batch);
            if !plan.penalties.is_empty() {
                let representation = M::representation(&inference, &generative);
                let detached = representation.detach();
                for (penalty, annotation) in plan.penalties.iter_mut() {
                    let codes = batch.codes(*annotation);
                    penalty.before_step(&detached, &codes)?;
                    loss.extra.push(crate::models::LossTerm {
                        name: penalty.name().to_string(),
                        value: penalty.value(&representation, &codes),
                        weight: penalty.weight(),
                    });
                }
            }
            if names.is_empty() && !loss.extra.is_empty() {
                names = loss.extra_names();
                weights_of_extra = loss.extra.iter().map(|t| t.weight).collect();
            }
            let objective = loss.objective(w);
            let step_sums = loss.sums();
            sums = Some(match sums {
                Some(s) => s + step_sums,
                None => step_sums,
            });
            seen += batch.len();
            let t1 = Instant::now();
            let mut grads = objective.backward();
            let host = ctx.host_gradients(&grads, &batch);
            let t2 = Instant::now();
            let saved_rows = (!row_frozen.is_empty()).then(|| {
                let on_device: HashSet<ParamId> = row_frozen
                    .iter()
                    .filter(|id| !store.values.contains_key(id))
                    .copied()
                    .collect();
                weights::param_values(&module, &on_device)
            });
            if plan.groups.is_empty() && plan.trainable.is_none() {
                let g = GradientsParams::from_grads(grads, &module);
                module = main.step(config.lr, module, g);
            } else {
                let g = GradientsParams::from_params(&mut grads, &module, &main_ids);
                module = main.step(config.lr, module, g);
                for ((group, ids), optim) in plan
                    .groups
                    .iter()
                    .zip(&group_ids)
                    .zip(group_optims.iter_mut())
                {
                    let g = GradientsParams::from_params(&mut grads, &module, ids);
                    module = optim.step(group.lr, module, g);
                }
            }
            if let (Some(saved), Some(t)) = (&saved_rows, &plan.trainable) {
                let ids: HashSet<ParamId> = saved.keys().copied().collect();
                let mut values = weights::param_values(&module, &ids);
                t.restore_rows(saved, &mut values);
                module = weights::replace_params(module, values);
            }
            let missing: HashSet<ParamId> = host
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| {
                    !store.values.contains_key(id) && Trainable::contains(&plan.trainable, id)
                })
                .collect();
            if !missing.is_empty() {
                store
                    .values
                    .extend(weights::param_values(&module, &missing));
            }
            for (id, gradient) in &host {
                if !Trainable::contains(&plan.trainable, id) {
                    continue;
                }
                let (adam, lr) = &mut host_adams[host_group(id)];
                let values = store.values.get_mut(id).expect("stored above");
                let frozen = plan.trainable.as_ref().and_then(|t| t.frozen_rows.get(id));
                let saved: Option<Vec<f32>> =
                    frozen.map(|&(rows, width)| values[..rows * width].to_vec());
                adam.step(*lr as f32, *id, values, gradient);
                if let Some(saved) = saved {
                    values[..saved.len()].copy_from_slice(&saved);
                }
            }
            let t3 = Instant::now();
            profile.forward += (t1 - t0).as_secs_f64();
            profile.backward += (t2 - t1).as_secs_f64();
            profile.optimizer += (t3 - t2).as_secs_f64();
            profile.steps += 1;
        }
        // The module's host-side parameters are brought up to date once an epoch.
        if !store.values.is_empty() {
            module = weights::replace_params(module, store.values.clone());
        }
        // The one read-back of the epoch's losses; a non-finite value stops training here.
        let sums: Vec<f64> = sums
            .map(|s| to_host(s).into_iter().map(f64::from).collect())
            .unwrap_or_default();
        let train = LossRecord::from_sums(&sums, seen, &names, w, &weights_of_extra);
        check_finite(train.loss, epoch + 1, "training loss")?;
        let validation = if split.validation.is_empty() {
            None
        } else {
            let v = evaluate(
                &module.valid(),
                data,
                &split.validation,
                plan.engine,
                device,
                rng,
            );
            check_finite(v.elbo, epoch + 1, "validation ELBO")?;
            Some(v)
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            kl_weight: w,
            train,
            validation: validation.clone(),
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
    Ok(Fit {
        module,
        history,
        profile,
    })
}

fn plan_groups_position(groups: &[ParamGroup], id: &ParamId) -> Option<usize> {
    groups.iter().position(|g| g.params.contains(id))
}

/// Losses of an evaluation pass (no dropout, latents sampled, full KL) over `cells`.
pub fn evaluate<M: GenerativeModule>(
    module: &M,
    data: &CountData<'_>,
    cells: &[usize],
    engine: Engine,
    device: &Device,
    rng: &mut Xoshiro256PlusPlus,
) -> LossRecord {
    let mut sums: Option<Vec<f64>> = None;
    let mut names = Vec::new();
    let mut weights = Vec::new();
    for chunk in cells.chunks(EVAL_CHUNK) {
        let mut ctx = StepContext::new(engine, Mode::Evaluate, device.clone(), rng);
        let batch = ctx.minibatch(data, chunk.to_vec());
        let (_, _, loss) = module.forward(&mut ctx, &batch);
        if names.is_empty() {
            names = loss.extra_names();
            weights = loss.extra.iter().map(|t| t.weight).collect();
        }
        let s: Vec<f64> = to_host(loss.sums()).into_iter().map(f64::from).collect();
        sums = Some(match sums {
            Some(acc) => acc.iter().zip(&s).map(|(a, b)| a + b).collect(),
            None => s,
        });
    }
    LossRecord::from_sums(
        &sums.unwrap_or_default(),
        cells.len(),
        &names,
        1.0,
        &weights,
    )
}
