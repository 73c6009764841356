//! MINE (Belghazi et al. 2018) as seed 000 uses it: a statistics network T(z, s) on z and the
//! one-hot condition (10 ELU layers of 128); the Donsker-Varadhan bound
//! mean T(z, s) - log mean exp T(z', s) with z' the minibatch's z shuffled (pairs drawn from
//! the product of the marginals). As a penalty, T is trained adversarially with its own Adam
//! before each VAE step, its gradient corrected for the bias of the log by a moving average of
//! mean exp T; the VAE then minimises the bound. `estimate` trains a fresh T on a fixed latent
//! and reports the bound: seed 000's measure of batch dependence (de-novo MINE).

use burn::module::Module;
use burn::nn::Linear;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::elu;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;

use super::{Penalty, select_rows};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::models::Representation;
use crate::nn::{one_hot, tensor_2d, to_host};

/// The statistics network and its training (seed 000's settings by default).
#[derive(Debug, Clone, PartialEq)]
pub struct MineConfig {
    pub n_hidden: usize,
    pub n_layers: usize,
    /// T's Adam learning rate.
    pub lr: f64,
    /// Rate of the moving average of mean exp T in T's gradient.
    pub moving_average_rate: f64,
    /// T's steps (on the current minibatch) before each VAE step. Seed 000 runs a whole epoch
    /// of T steps before each VAE step; a few on the minibatch keep T close at a fraction of
    /// the cost.
    pub steps: usize,
}

impl Default for MineConfig {
    fn default() -> Self {
        Self {
            n_hidden: 128,
            n_layers: 10,
            lr: 5e-5,
            moving_average_rate: 0.001,
            steps: 5,
        }
    }
}

impl MineConfig {
    pub fn validate(&self) -> Result<()> {
        if self.n_hidden < 1 || self.n_hidden > 1 << 14 {
            return Err(Error::invalid("mine_hidden", "must be in 1..16384"));
        }
        if self.n_layers < 1 || self.n_layers > 64 {
            return Err(Error::invalid("mine_layers", "must be in 1..64"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid("mine_lr", "must be a positive number"));
        }
        if !(self.moving_average_rate > 0.0 && self.moving_average_rate <= 1.0) {
            return Err(Error::invalid("mine_moving_average", "must be in (0, 1]"));
        }
        if self.steps < 1 {
            return Err(Error::invalid("mine_steps", "must be >= 1"));
        }
        Ok(())
    }
}

/// T(z, s): ELU hidden layers and a scalar output. Initialised as PyTorch's `nn.Linear`, not
/// with seed 000's N(0, 0.02): through 10 such layers the output and its gradients are ~1e-7
/// and T does not learn.
#[derive(Module, Debug)]
pub struct StatisticsNetwork {
    pub hidden: Vec<Linear>,
    pub output: Linear,
}

impl StatisticsNetwork {
    pub fn new(
        config: &MineConfig,
        d_in: usize,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Self {
        let hidden = (0..config.n_layers)
            .map(|k| {
                let d = if k == 0 { d_in } else { config.n_hidden };
                crate::nn::linear(rng, d, config.n_hidden, device)
            })
            .collect();
        Self {
            hidden,
            output: crate::nn::linear(rng, config.n_hidden, 1, device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for layer in &self.hidden {
            h = elu(layer.forward(h), 1.0);
        }
        self.output.forward(h)
    }
}

/// The joint and the shuffled (product-of-marginals) inputs of T.
fn inputs(
    z: Tensor<2>,
    conditions: &[u32],
    n_conditions: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> (Tensor<2>, Tensor<2>) {
    let n = conditions.len();
    let s = one_hot(conditions, n_conditions, &z.device());
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let shuffled = select_rows(z.clone(), &order);
    (
        Tensor::cat(vec![z, s.clone()], 1),
        Tensor::cat(vec![shuffled, s], 1),
    )
}

/// The Donsker-Varadhan bound from T on joint and marginal pairs, log mean exp by logsumexp.
fn donsker_varadhan(t_joint: Tensor<2>, t_marginal: Tensor<2>) -> Tensor<1> {
    let n = t_marginal.dims()[0] as f64;
    let max = t_marginal.clone().max().detach();
    let log_mean_exp = (t_marginal - max.clone().reshape([1, 1])).exp().sum().log() + max - n.ln();
    t_joint.mean() - log_mean_exp
}

/// T, its optimiser and the moving average: what trains the adversary.
struct Adversary {
    /// Taken out while the optimiser steps it.
    network: Option<StatisticsNetwork>,
    optimizer: ModuleOptimizer,
    moving_average: Option<f64>,
    config: MineConfig,
    n_conditions: usize,
    rng: Xoshiro256PlusPlus,
}

impl Adversary {
    fn new(
        config: MineConfig,
        n_latent: usize,
        n_conditions: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4d49_4e45);
        let network = StatisticsNetwork::new(&config, n_latent + n_conditions, &mut rng, device);
        Self {
            network: Some(network),
            optimizer: crate::train::adam((1e-8, 0.0)),
            moving_average: None,
            config,
            n_conditions,
            rng,
        }
    }

    /// One ascent step of T on detached `z`: the bias-corrected surrogate
    /// -(mean T(joint) - mean exp T(marginal) / moving average).
    fn step(&mut self, z: Tensor<2>, conditions: &[u32]) -> Result<()> {
        let network = self
            .network
            .take()
            .expect("the network is put back after each step");
        let (joint, marginal) = inputs(z, conditions, self.n_conditions, &mut self.rng);
        let t_joint = network.forward(joint);
        let exp_marginal = network.forward(marginal).exp();
        let mean_exp = exp_marginal.clone().mean();
        let current = f64::from(to_host(mean_exp.clone().detach())[0]);
        if !current.is_finite() {
            self.network = Some(network);
            return Err(Error::NonFinite {
                epoch: 0,
                detail: "MINE's statistics network diverged (mean exp T is not finite); try a smaller `mine_lr`".into(),
            });
        }
        let rate = self.config.moving_average_rate;
        let average = match self.moving_average {
            None => current,
            Some(m) => (1.0 - rate) * m + rate * current,
        };
        self.moving_average = Some(average);
        let surrogate = (t_joint.mean() - mean_exp.div_scalar(average.max(1e-30))).neg();
        let grads = GradientsParams::from_grads(surrogate.backward(), &network);
        self.network = Some(self.optimizer.step(self.config.lr, network, grads));
        Ok(())
    }

    fn network(&self) -> &StatisticsNetwork {
        self.network
            .as_ref()
            .expect("the network is put back after each step")
    }

    /// The bound on `z` (with gradient through `z` when it has one).
    fn bound(&mut self, z: Tensor<2>, conditions: &[u32]) -> Tensor<1> {
        let (joint, marginal) = inputs(z, conditions, self.n_conditions, &mut self.rng);
        let network = self
            .network
            .as_ref()
            .expect("the network is put back after each step");
        donsker_varadhan(network.forward(joint), network.forward(marginal))
    }
}

/// MINE as a penalty: T trained before each VAE step, the VAE minimising the bound.
pub struct Mine {
    pub weight: f64,
    adversary: Adversary,
}

impl Mine {
    /// `device`: the autodiff device the VAE trains on.
    pub fn new(
        config: MineConfig,
        weight: f64,
        n_latent: usize,
        n_conditions: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        Self {
            weight,
            adversary: Adversary::new(config, n_latent, n_conditions, seed, device),
        }
    }
}

impl Penalty for Mine {
    fn name(&self) -> &str {
        "mine"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn value(&mut self, rep: &Representation, conditions: &[u32]) -> Tensor<1> {
        self.adversary.bound(rep.z.clone(), conditions)
    }

    fn before_step(&mut self, rep: &Representation, conditions: &[u32]) -> Result<()> {
        for _ in 0..self.adversary.config.steps {
            self.adversary.step(rep.z.clone(), conditions)?;
        }
        Ok(())
    }
}

/// How a fresh T is trained to measure a fixed latent (seed 000: 400 epochs, lr 5e-5,
/// minibatches of 128, 80% of the cells to train on).
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateConfig {
    pub network: MineConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub train_size: f64,
    pub seed: u64,
}

impl Default for EstimateConfig {
    fn default() -> Self {
        Self {
            network: MineConfig::default(),
            epochs: 400,
            batch_size: 128,
            train_size: 0.8,
            seed: 0,
        }
    }
}

/// De-novo MINE: the bound on the training cells and on the held-out cells once T is trained,
/// and the training cells' bound after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub train: f64,
    pub test: f64,
    pub history: Vec<f64>,
}

/// Trains a fresh statistics network on `embedding` (cells x d) against `conditions` and
/// reports the Donsker-Varadhan bound (nats).
pub fn estimate(
    embedding: &DenseMatrix,
    conditions: &[u32],
    n_conditions: usize,
    config: &EstimateConfig,
    device: &Device,
    should_stop: &mut dyn FnMut() -> bool,
) -> Result<Estimate> {
    config.network.validate()?;
    let n = embedding.n_rows;
    if conditions.len() != n {
        return Err(Error::invalid(
            "condition",
            format!("has {} values for {n} cells", conditions.len()),
        ));
    }
    if n_conditions < 2 {
        return Err(Error::invalid("condition", "needs at least 2 conditions"));
    }
    if config.epochs < 1 {
        return Err(Error::invalid("epochs", "must be >= 1"));
    }
    if config.batch_size < 2 {
        return Err(Error::invalid("batch_size", "must be >= 2"));
    }
    if !(config.train_size > 0.0 && config.train_size < 1.0) {
        return Err(Error::invalid("train_size", "must be in (0, 1)"));
    }
    let n_train = ((config.train_size * n as f64).round() as usize).clamp(1, n.saturating_sub(1));
    if n < 4 || n_train < 2 || n - n_train < 2 {
        return Err(Error::invalid(
            "embedding",
            format!("needs at least 4 cells, got {n}"),
        ));
    }
    let ad = device.clone().autodiff();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let (train, test) = order.split_at(n_train);
    let d = embedding.n_cols;
    let rows_of = |cells: &[usize], device: &Device| -> (Tensor<2>, Vec<u32>) {
        let values = cells
            .iter()
            .flat_map(|&c| embedding.row(c).iter().map(|&v| v as f32))
            .collect();
        (
            tensor_2d(values, cells.len(), d, device),
            cells.iter().map(|&c| conditions[c]).collect(),
        )
    };
    let mut adversary = Adversary::new(config.network.clone(), d, n_conditions, config.seed, &ad);
    let mut history = Vec::with_capacity(config.epochs);
    let (z_train, s_train) = rows_of(train, device);
    let mut cells = train.to_vec();
    for _ in 0..config.epochs {
        cells.shuffle(&mut rng);
        for chunk in cells.chunks(config.batch_size).filter(|c| c.len() >= 2) {
            if should_stop() {
                return Err(Error::Interrupted);
            }
            let (z, s) = rows_of(chunk, &ad);
            adversary.step(z, &s)?;
        }
        let trained = adversary.network().valid();
        let (joint, marginal) = inputs(z_train.clone(), &s_train, n_conditions, &mut adversary.rng);
        history.push(f64::from(
            to_host(donsker_varadhan(
                trained.forward(joint),
                trained.forward(marginal),
            ))[0],
        ));
    }
    let trained = adversary.network().valid();
    let mut bound_on = |cells: &[usize]| -> f64 {
        let (z, s) = rows_of(cells, device);
        let (joint, marginal) = inputs(z, &s, n_conditions, &mut adversary.rng);
        f64::from(
            to_host(donsker_varadhan(
                trained.forward(joint),
                trained.forward(marginal),
            ))[0],
        )
    };
    let train_value = bound_on(train);
    let test_value = bound_on(test);
    Ok(Estimate {
        train: train_value,
        test: test_value,
        history,
    })
}
