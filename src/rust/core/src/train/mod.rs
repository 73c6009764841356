//! What every model's training shares: the train/validation split, minibatches, KL warm-up,
//! the max-epochs heuristic, early stopping, the per-epoch history, and the observer through
//! which a caller shows progress and asks to stop.

pub mod adam;

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

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

/// scvi-tools' default number of epochs: min(round(20000 / n_cells * 400), 400).
pub fn max_epochs_heuristic(n_cells: usize) -> usize {
    let epochs = (20_000.0 / n_cells.max(1) as f64 * 400.0).round() as usize;
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
    /// A random split: ceil(train_size * n) training cells.
    pub fn random(n_cells: usize, train_size: f64, rng: &mut Xoshiro256PlusPlus) -> Self {
        let mut order: Vec<usize> = (0..n_cells).collect();
        order.shuffle(rng);
        let n_train = ((train_size * n_cells as f64).ceil() as usize).min(n_cells);
        let validation = order.split_off(n_train);
        Self {
            train: order,
            validation,
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
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LossRecord {
    /// The training objective (KL weighted by the warm-up).
    pub loss: f64,
    pub reconstruction: f64,
    pub kl_local: f64,
    pub elbo: f64,
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
    /// Network forward pass (encoder, sampling, decoder).
    pub forward: f64,
    /// Decoder outputs to the likelihood kernel, its evaluation and gradients.
    pub likelihood: f64,
    /// KL terms, the surrogate loss and the backward pass.
    pub backward: f64,
    /// The optimiser's update.
    pub optimizer: f64,
}

impl StepProfile {
    /// Milliseconds per step of each phase: (forward, likelihood, backward, optimizer).
    pub fn per_step_ms(&self) -> [f64; 4] {
        let k = 1e3 / self.steps.max(1) as f64;
        [
            self.forward * k,
            self.likelihood * k,
            self.backward * k,
            self.optimizer * k,
        ]
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
        assert_eq!(kl_weight(0, 400), 0.0);
        assert_eq!(kl_weight(100, 400), 0.25);
        assert_eq!(kl_weight(1000, 400), 1.0);
        assert_eq!(kl_weight(3, 0), 1.0);
    }

    #[test]
    fn split_is_a_partition_and_seeded() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let s = DataSplit::random(101, 0.9, &mut rng);
        assert_eq!(s.train.len(), 91);
        assert_eq!(s.validation.len(), 10);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        let again = DataSplit::random(101, 0.9, &mut Xoshiro256PlusPlus::seed_from_u64(1));
        assert_eq!(s, again);
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
