//! What every model's training shares: the train/validation split, minibatch samplers, KL
//! warm-up, the max-epochs heuristic, early stopping, the per-epoch history, the observer through
//! which a caller shows progress and asks to stop, and the one training loop (`fit`).

pub mod adam;
mod trainer;

pub(crate) use trainer::adam;
pub use trainer::{EVAL_CHUNK, Fit, ParamGroup, Trainable, TrainingPlan, evaluate, fit};

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::penalties::PenaltySpec;

/// Optimisation settings (scvi-tools 1.4 defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// `None`: `max_epochs_heuristic(n_cells)`.
    pub max_epochs: Option<usize>,
    pub batch_size: usize,
    pub lr: f64,
    pub adam_eps: f64,
    pub weight_decay: f64,
    /// The KL weight rises linearly from 0 to 1 over this many epochs.
    pub n_epochs_kl_warmup: usize,
    /// Share of cells used for training; the rest is the validation set.
    pub train_size: f64,
    pub early_stopping: bool,
    pub early_stopping_patience: usize,
    pub early_stopping_min_delta: f64,
    pub seed: u64,
    /// The KL weight the warm-up reaches (beta; 1 for the ELBO).
    pub kl_weight: f64,
    /// A batch-independence penalty on the representation, against the model's condition.
    pub penalty: Option<PenaltySpec>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_epochs: None,
            batch_size: 128,
            lr: 1e-3,
            adam_eps: 0.01,
            weight_decay: 1e-6,
            n_epochs_kl_warmup: 400,
            train_size: 0.9,
            early_stopping: false,
            early_stopping_patience: 45,
            early_stopping_min_delta: 0.0,
            seed: 0,
            kl_weight: 1.0,
            penalty: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_epochs == Some(0) {
            return Err(Error::invalid("max_epochs", "must be >= 1"));
        }
        if self.batch_size < 2 {
            return Err(Error::invalid(
                "batch_size",
                "must be >= 2 (batch normalisation needs 2 cells)",
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("lr", "must be a positive number"));
        }
        if !(self.kl_weight >= 0.0 && self.kl_weight.is_finite()) {
            return Err(Error::invalid("kl_weight", "must be a non-negative number"));
        }
        if !(self.train_size > 0.0 && self.train_size <= 1.0) {
            return Err(Error::invalid("train_size", "must be in (0, 1]"));
        }
        if self.early_stopping && self.train_size >= 1.0 {
            return Err(Error::invalid(
                "early_stopping",
                "needs a validation set: train_size < 1",
            ));
        }
        Ok(())
    }

    pub fn epochs_for(&self, n_cells: usize) -> usize {
        self.max_epochs
            .unwrap_or_else(|| max_epochs_heuristic(n_cells))
    }
}

/// scvi-tools' default number of epochs: min(round(20000 / n_cells * 400), 400), with Python's
/// rounding of halves to even.
pub fn max_epochs_heuristic(n_cells: usize) -> usize {
    let epochs = (20_000.0 / n_cells.max(1) as f64 * 400.0).round_ties_even() as usize;
    epochs.clamp(1, 400)
}

/// KL weight at 0-based `epoch`: epoch / warm-up, capped at 1 (scvi-tools' schedule).
pub fn kl_weight(epoch: usize, n_epochs_kl_warmup: usize) -> f64 {
    if n_epochs_kl_warmup == 0 {
        1.0
    } else {
        (epoch as f64 / n_epochs_kl_warmup as f64).min(1.0)
    }
}

/// Cells for training and for validation.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

impl DataSplit {
    /// A random split: ceil(train_size * n) training cells. As scvi-tools does for its default
    /// split, when the training cells would leave a last minibatch of 1 or 2 cells (batch
    /// normalisation on them is noise), those cells move to the validation set (or, without
    /// one, are left out).
    pub fn random(
        n_cells: usize,
        train_size: f64,
        batch_size: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Self {
        let mut order: Vec<usize> = (0..n_cells).collect();
        order.shuffle(rng);
        let mut n_train = ((train_size * n_cells as f64).ceil() as usize).min(n_cells);
        let has_validation = n_train < n_cells;
        let tail = n_train % batch_size.max(1);
        if (1..3).contains(&tail) && n_train > tail {
            n_train -= tail;
        }
        let mut validation = order.split_off(n_train);
        if !has_validation {
            validation.clear();
        }
        Self {
            train: order,
            validation,
        }
    }
}

/// How the training cells are grouped into minibatches.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Shuffled minibatches.
    Random,
    /// Every minibatch holds cells of every condition (the codes of annotation `annotation`):
    /// each condition's cells are shuffled and dealt over the minibatches in proportion.
    Balanced { annotation: usize },
    /// Shuffled minibatches of all training cells, each paired with a minibatch of labelled
    /// training cells drawn at random (scvi-tools' semi-supervised loader).
    SemiSupervised { labelled: Vec<bool> },
}

/// One step's cells: the minibatch and, for the semi-supervised sampler, its labelled partner.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledBatch {
    pub rows: Vec<usize>,
    pub labelled: Vec<usize>,
}

impl Sampler {
    /// One epoch's minibatches over `cells`. A last minibatch of fewer than 3 cells is dropped
    /// (the split avoids making one); so is a condition absent from the training cells.
    pub fn epoch(
        &self,
        cells: &[usize],
        batch_size: usize,
        annotations: &[(&[u32], usize)],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<SampledBatch> {
        let plain = |rows: Vec<usize>| SampledBatch {
            rows,
            labelled: Vec::new(),
        };
        match self {
            Sampler::Random => minibatches(cells, batch_size, rng)
                .into_iter()
                .map(plain)
                .collect(),
            Sampler::Balanced { annotation } => {
                let (codes, levels) = annotations[*annotation];
                let n_batches = cells.len().div_ceil(batch_size).max(1);
                let mut batches = vec![Vec::new(); n_batches];
                for level in 0..levels as u32 {
                    let mut members: Vec<usize> = cells
                        .iter()
                        .copied()
                        .filter(|&c| codes[c] == level)
                        .collect();
                    members.shuffle(rng);
                    // Dealt round-robin, so each minibatch gets its share; with fewer cells of a
                    // condition than minibatches, they are drawn again.
                    let m = members.len();
                    if m == 0 {
                        continue;
                    }
                    let rounds = n_batches.max(m);
                    for k in 0..rounds {
                        let cell = if k < m {
                            members[k]
                        } else {
                            members[rng.random_range(0..m)]
                        };
                        batches[k % n_batches].push(cell);
                    }
                }
                for b in &mut batches {
                    b.shuffle(rng);
                }
                batches
                    .into_iter()
                    .filter(|b| b.len() >= 3)
                    .map(plain)
                    .collect()
            }
            Sampler::SemiSupervised { labelled } => {
                let pool: Vec<usize> = cells.iter().copied().filter(|&c| labelled[c]).collect();
                minibatches(cells, batch_size, rng)
                    .into_iter()
                    .map(|rows| {
                        let k = if pool.is_empty() { 0 } else { rows.len() };
                        let labelled = (0..k)
                            .map(|_| pool[rng.random_range(0..pool.len())])
                            .collect();
                        SampledBatch { rows, labelled }
                    })
                    .collect()
            }
        }
    }
}

/// A shuffled pass over `cells` in minibatches of `batch_size`. A last minibatch of fewer than
/// 3 cells is dropped: batch normalisation on one or two cells is noise.
pub fn minibatches(
    cells: &[usize],
    batch_size: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<Vec<usize>> {
    let mut order = cells.to_vec();
    order.shuffle(rng);
    order
        .chunks(batch_size)
        .filter(|c| c.len() >= 3 || c.len() == order.len())
        .map(|c| c.to_vec())
        .collect()
}

/// Losses averaged over the cells of one pass. `elbo` = reconstruction + full KL.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LossRecord {
    /// The training objective (KL(z) weighted by the warm-up, extra terms by their weights).
    pub loss: f64,
    pub reconstruction: f64,
    pub kl_z: f64,
    pub kl_library: f64,
    pub elbo: f64,
    /// Named extra terms (classification, penalties), unweighted.
    pub extra: Vec<(String, f64)>,
}

impl LossRecord {
    /// KL(z) + KL(library).
    pub fn kl_local(&self) -> f64 {
        self.kl_z + self.kl_library
    }

    /// From the minibatch sums of `LossOutput::sums` over `n_cells` cells.
    pub fn from_sums(
        sums: &[f64],
        n_cells: usize,
        names: &[String],
        kl_weight: f64,
        weights: &[f64],
    ) -> Self {
        let n = n_cells.max(1) as f64;
        let mean = |k: usize| sums.get(k).copied().unwrap_or(0.0) / n;
        let (reconstruction, kl_z, kl_library) = (mean(0), mean(1), mean(2));
        let extra: Vec<(String, f64)> = names
            .iter()
            .enumerate()
            .map(|(k, name)| (name.clone(), mean(3 + k)))
            .collect();
        let extra_loss: f64 = extra.iter().zip(weights).map(|((_, v), w)| v * w).sum();
        LossRecord {
            loss: reconstruction + kl_weight * kl_z + kl_library + extra_loss,
            reconstruction,
            kl_z,
            kl_library,
            elbo: reconstruction + kl_z + kl_library,
            extra,
        }
    }
}

/// One row of the training history.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub kl_weight: f64,
    pub train: LossRecord,
    pub validation: Option<LossRecord>,
    pub seconds: f64,
}

/// Where the training time went: seconds summed over all optimisation steps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepProfile {
    pub steps: usize,
    /// Minibatch, forward pass and loss (the likelihood included).
    pub forward: f64,
    /// The backward pass and the host-side gradients.
    pub backward: f64,
    /// The optimisers' updates.
    pub optimizer: f64,
}

impl StepProfile {
    /// Milliseconds per step of each phase: (forward, backward, optimizer).
    pub fn per_step_ms(&self) -> [f64; 3] {
        let k = 1e3 / self.steps.max(1) as f64;
        [self.forward * k, self.backward * k, self.optimizer * k]
    }
}

/// Receives each finished epoch and is asked, between minibatches, whether to stop.
pub trait TrainingObserver {
    fn on_epoch_end(&mut self, record: &EpochRecord, max_epochs: usize);
    /// True to stop training now (e.g. the user pressed Ctrl-C).
    fn should_stop(&mut self) -> bool;
}

/// An observer that shows nothing and never stops training.
pub struct Silent;

impl TrainingObserver for Silent {
    fn on_epoch_end(&mut self, _: &EpochRecord, _: usize) {}
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// Stops when the validation ELBO has not improved by `min_delta` for `patience` epochs.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    patience: usize,
    min_delta: f64,
    best: f64,
    since_best: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize, min_delta: f64) -> Self {
        Self {
            patience,
            min_delta,
            best: f64::INFINITY,
            since_best: 0,
        }
    }

    /// Records an epoch's validation ELBO (lower is better); true when training should stop.
    pub fn update(&mut self, validation_elbo: f64) -> bool {
        if validation_elbo < self.best - self.min_delta {
            self.best = validation_elbo;
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        self.since_best >= self.patience
    }
}

/// A non-finite loss stops training with a message naming the epoch.
pub fn check_finite(value: f64, epoch: usize, what: &str) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            epoch,
            detail: format!("{what} = {value}; try a smaller `lr` or check the input counts"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn heuristic_and_warmup_follow_scvi_tools() {
        assert_eq!(max_epochs_heuristic(13_999), 400);
        assert_eq!(max_epochs_heuristic(40_000), 200);
        assert_eq!(max_epochs_heuristic(100_000), 80);
        assert_eq!(max_epochs_heuristic(10_000_000), 1);
        // 20000 / 64000 * 400 = 125 exactly; 20000 / 32000 * 400 = 250; 2.5 rounds to 2.
        assert_eq!(max_epochs_heuristic(3_200_000), 2);
        assert_eq!(max_epochs_heuristic(64_000), 125);
        assert_eq!(kl_weight(0, 400), 0.0);
        assert_eq!(kl_weight(100, 400), 0.25);
        assert_eq!(kl_weight(1000, 400), 1.0);
        assert_eq!(kl_weight(3, 0), 1.0);
    }

    #[test]
    fn split_is_a_partition_and_seeded() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let s = DataSplit::random(101, 0.9, 128, &mut rng);
        assert_eq!(s.train.len(), 91);
        assert_eq!(s.validation.len(), 10);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        let again = DataSplit::random(101, 0.9, 128, &mut Xoshiro256PlusPlus::seed_from_u64(1));
        assert_eq!(s, again);
        // scvi-tools: ceil(0.9 * 144) = 130 = 128 + 2 -> the 2 move to validation.
        let s = DataSplit::random(144, 0.9, 128, &mut rng);
        assert_eq!((s.train.len(), s.validation.len()), (128, 16));
        // Without a validation set they are left out.
        let s = DataSplit::random(129, 1.0, 128, &mut rng);
        assert_eq!((s.train.len(), s.validation.len()), (128, 0));
    }

    #[test]
    fn minibatches_cover_cells_and_drop_a_tiny_tail() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let cells: Vec<usize> = (0..258).collect();
        let mb = minibatches(&cells, 128, &mut rng);
        assert_eq!(mb.len(), 2); // 128 + 128, the tail of 2 dropped
        let mb = minibatches(&cells[..131], 128, &mut rng);
        assert_eq!(mb.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![128, 3]);
    }

    #[test]
    fn balanced_minibatches_hold_every_condition() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        // 300 cells of condition 0, 20 of condition 1.
        let codes: Vec<u32> = (0..320).map(|i| u32::from(i >= 300)).collect();
        let cells: Vec<usize> = (0..320).collect();
        let annotations = [(codes.as_slice(), 2)];
        let batches = Sampler::Balanced { annotation: 0 }.epoch(&cells, 64, &annotations, &mut rng);
        assert_eq!(batches.len(), 5);
        for b in &batches {
            assert!(b.rows.iter().any(|&c| codes[c] == 0) && b.rows.iter().any(|&c| codes[c] == 1));
        }
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 320, "every cell is used");
        // A random sampler of the same cells leaves some minibatch without condition 1 far more
        // often than not; the semi-supervised one pairs each minibatch with labelled cells.
        let labelled: Vec<bool> = (0..320).map(|i| i % 10 == 0).collect();
        let semi = Sampler::SemiSupervised {
            labelled: labelled.clone(),
        }
        .epoch(&cells, 64, &annotations, &mut rng);
        assert_eq!(semi.len(), 5);
        for b in &semi {
            assert_eq!(b.labelled.len(), b.rows.len());
            assert!(b.labelled.iter().all(|&c| labelled[c]));
        }
    }

    #[test]
    fn early_stopping_waits_for_patience() {
        let mut es = EarlyStopping::new(2, 0.0);
        assert!(!es.update(10.0));
        assert!(!es.update(9.0));
        assert!(!es.update(9.5));
        assert!(es.update(9.2));
    }

    #[test]
    fn non_finite_names_the_epoch() {
        let e = check_finite(f64::NAN, 7, "train loss")
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch 7"), "{e}");
        assert!(check_finite(1.0, 1, "x").is_ok());
    }
}
