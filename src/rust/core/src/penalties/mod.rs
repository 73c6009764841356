//! Penalties on the latent representation's dependence on a condition (batch, stimulation):
//! a scalar function of (representation, condition codes) on a minibatch, with gradient, added
//! to the loss under its name. A penalty may own parameters and train them itself in
//! `before_step`, which the trainer calls before each VAE step on the detached representation
//! (MINE's adversary).
//!
//! - `mmd`: maximum mean discrepancy on z (VFAE) or on the decoder's first layer (trVAE);
//! - `comp`: CoMP's contrastive mixture of posteriors (seed 001);
//! - `mine`: the Donsker-Varadhan mutual information bound with an adversarial statistics
//!   network (seed 000), and `mine::estimate` to measure a trained latent;
//! - `hsic`: the Hilbert-Schmidt independence criterion (seed 000's scVI+HSIC baseline).

pub mod comp;
pub mod hsic;
pub mod mine;
pub mod mmd;

use burn::tensor::{Device, Tensor};

pub use comp::Comp;
pub use hsic::Hsic;
pub use mine::{Mine, MineConfig};
pub use mmd::{Mmd, MmdSite};

use crate::error::{Error, Result};
use crate::models::Representation;

pub trait Penalty {
    /// The name of the loss term (history, Pareto objectives).
    fn name(&self) -> &str;
    /// The term's weight in the loss.
    fn weight(&self) -> f64;
    /// The penalty (shape `[1]`) of a minibatch whose cells have the condition codes
    /// `conditions`.
    fn value(&mut self, rep: &Representation, conditions: &[u32]) -> Tensor<1>;
    /// Trains the penalty's own parameters, if any, on the detached representation.
    fn before_step(&mut self, _rep: &Representation, _conditions: &[u32]) -> Result<()> {
        Ok(())
    }
}

/// Which penalty, with its settings (the seeds' defaults in `PenaltySpec::default_for`).
#[derive(Debug, Clone, PartialEq)]
pub enum PenaltyKind {
    Mmd { site: MmdSite, bandwidths: Vec<f64> },
    Comp { include_self: bool },
    Mine(MineConfig),
    Hsic,
}

/// A penalty and its weight in the loss, as a model's training takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PenaltySpec {
    pub kind: PenaltyKind,
    pub weight: f64,
}

impl PenaltySpec {
    /// `name` ("mmd", "trvae", "comp", "mine", "hsic") with the seeds' default settings.
    pub fn default_for(name: &str, weight: f64) -> Result<Self> {
        let kind = match name {
            "mmd" => PenaltyKind::Mmd {
                site: MmdSite::Latent,
                bandwidths: mmd::LATENT_BANDWIDTHS.to_vec(),
            },
            "trvae" => PenaltyKind::Mmd {
                site: MmdSite::DecoderFirstLayer,
                bandwidths: mmd::WIDE_BANDWIDTHS.to_vec(),
            },
            "comp" => PenaltyKind::Comp { include_self: true },
            "mine" => PenaltyKind::Mine(MineConfig::default()),
            "hsic" => PenaltyKind::Hsic,
            other => {
                return Err(Error::invalid(
                    "penalty",
                    format!(
                        "must be one of \"mmd\", \"trvae\", \"comp\", \"mine\", \"hsic\", not \"{other}\""
                    ),
                ));
            }
        };
        Ok(Self { kind, weight })
    }

    /// The name of the loss term this penalty adds.
    pub fn name(&self) -> &'static str {
        match &self.kind {
            PenaltyKind::Mmd {
                site: MmdSite::Latent,
                ..
            } => "mmd",
            PenaltyKind::Mmd {
                site: MmdSite::DecoderFirstLayer,
                ..
            } => "mmd_decoder",
            PenaltyKind::Comp { .. } => "comp",
            PenaltyKind::Mine(_) => "mine",
            PenaltyKind::Hsic => "hsic",
        }
    }

    /// Checks the settings against the data: `n_conditions` levels, minibatches of
    /// `batch_size` cells.
    pub fn validate(&self, n_conditions: usize, batch_size: usize) -> Result<()> {
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            return Err(Error::invalid(
                "penalty_weight",
                "must be a non-negative number",
            ));
        }
        if n_conditions < 2 {
            return Err(Error::invalid(
                "condition",
                format!(
                    "a {} penalty needs at least 2 conditions, got {n_conditions}",
                    self.name()
                ),
            ));
        }
        // Each minibatch holds every condition, CoMP's own-condition mixture a second cell.
        if batch_size < 2 * n_conditions {
            return Err(Error::invalid(
                "batch_size",
                format!(
                    "must hold at least 2 cells of each of the {n_conditions} conditions: use batch_size >= {}",
                    2 * n_conditions
                ),
            ));
        }
        match &self.kind {
            PenaltyKind::Mmd { bandwidths, .. } => {
                if bandwidths.is_empty() || bandwidths.iter().any(|&b| !(b > 0.0 && b.is_finite()))
                {
                    return Err(Error::invalid(
                        "bandwidths",
                        "must be one or more positive numbers",
                    ));
                }
            }
            PenaltyKind::Mine(c) => c.validate()?,
            PenaltyKind::Comp { .. } | PenaltyKind::Hsic => {}
        }
        Ok(())
    }

    /// The penalty, ready to train: MINE's network is built on `device` (autodiff) from `seed`.
    pub fn build(
        &self,
        n_conditions: usize,
        n_latent: usize,
        seed: u64,
        device: &Device,
    ) -> Box<dyn Penalty> {
        match &self.kind {
            PenaltyKind::Mmd { site, bandwidths } => Box::new(Mmd {
                weight: self.weight,
                site: *site,
                bandwidths: bandwidths.clone(),
            }),
            PenaltyKind::Comp { include_self } => Box::new(Comp {
                weight: self.weight,
                include_self: *include_self,
            }),
            PenaltyKind::Mine(config) => Box::new(Mine::new(
                config.clone(),
                self.weight,
                n_latent,
                n_conditions,
                seed,
                device,
            )),
            PenaltyKind::Hsic => Box::new(Hsic {
                weight: self.weight,
                n_conditions,
            }),
        }
    }
}

/// Who shares a condition with whom in a minibatch.
pub(crate) struct ConditionMasks {
    /// Row-major `n x n`: `Some(true)` same condition (another cell), `Some(false)` another
    /// condition, `None` the cell itself.
    pub pairs: Vec<Option<bool>>,
    /// Per cell: the other cells of its condition, and the cells of other conditions.
    pub n_same: Vec<f32>,
    pub n_other: Vec<f32>,
}

pub(crate) fn condition_masks(conditions: &[u32]) -> ConditionMasks {
    let n = conditions.len();
    let mut pairs = Vec::with_capacity(n * n);
    let mut n_same = vec![0f32; n];
    let mut n_other = vec![0f32; n];
    for (i, &ci) in conditions.iter().enumerate() {
        for (j, &cj) in conditions.iter().enumerate() {
            pairs.push(if i == j {
                None
            } else if ci == cj {
                n_same[i] += 1.0;
                Some(true)
            } else {
                n_other[i] += 1.0;
                Some(false)
            });
        }
    }
    ConditionMasks {
        pairs,
        n_same,
        n_other,
    }
}

/// Squared Euclidean distances between the rows of `a` and of `b` (`na x nb`).
pub(crate) fn squared_distances(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [na, _] = a.dims();
    let [nb, _] = b.dims();
    let aa = a.clone().powi_scalar(2).sum_dim(1);
    let bb = b.clone().powi_scalar(2).sum_dim(1).transpose();
    (aa.expand([na, nb]) + bb.expand([na, nb]) - a.matmul(b.transpose()).mul_scalar(2.0))
        .clamp_min(0.0)
}

/// The rows of `x` at `rows`.
pub(crate) fn select_rows(x: Tensor<2>, rows: &[usize]) -> Tensor<2> {
    let index = Tensor::<1, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        &x.device(),
    );
    x.select(0, index)
}

#[cfg(test)]
mod tests;
