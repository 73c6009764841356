//! Deep generative models, in scvi-tools' shape: a module (`GenerativeModule`: inference ->
//! generative -> loss, returning one `LossOutput` with named per-cell terms) trained by the one
//! trainer (`train::fit`), wrapped by a user-facing model type (train, latent, expression, save).
//!
//! Adding a model (`models/<name>/`):
//! - `module.rs`: a `#[derive(Module)]` struct built from the shared parts in `nn` (`Encoder`,
//!   `Decoder` with its `CountHead`, `Classifier`, `FcLayers` with an `n_cat_list`), a prior from
//!   `priors`, and `impl GenerativeModule`. The count work goes through the `engine::StepContext`
//!   (`first_linear`, `count_log_likelihood`), so both step engines run it unchanged.
//! - `mod.rs`: the model type: an architecture struct, `train` (calls `train::fit`, with
//!   `ParamGroup`s for parameters that need their own optimiser, `Penalty`s, a `Sampler`),
//!   outputs, and `from_parts`/`weights_bytes` (weights by name, `nn::weights`).
//! - the R glue (`src/rust/r/src/<name>.rs`) and `R/<name>.R`.

pub(crate) mod query;
pub mod scanvi;
pub mod scvi;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::engine::{Minibatch, StepContext};

/// A loss term that is not per cell: a classification loss, a penalty, a prior's extra term.
pub struct LossTerm {
    pub name: String,
    /// Shape `[1]`.
    pub value: Tensor<1>,
    /// Its weight in the objective.
    pub weight: f64,
}

/// One pass's losses: per-cell terms (`n x 1`) and named extra terms.
pub struct LossOutput {
    /// -log p(x | z, l) per cell.
    pub reconstruction: Tensor<2>,
    /// KL(q(z | x) || p(z)) per cell: the part the KL warm-up scales.
    pub kl_z: Tensor<2>,
    /// KL of the latent library per cell, when there is one.
    pub kl_library: Option<Tensor<2>>,
    pub extra: Vec<LossTerm>,
}

impl LossOutput {
    /// The training objective: mean over cells of reconstruction + kl_weight KL(z) + KL(l),
    /// plus the weighted extra terms.
    pub fn objective(&self, kl_weight: f64) -> Tensor<1> {
        let mut total =
            self.reconstruction.clone().mean() + self.kl_z.clone().mean().mul_scalar(kl_weight);
        if let Some(kl) = &self.kl_library {
            total = total + kl.clone().mean();
        }
        for term in &self.extra {
            total = total + term.value.clone().mul_scalar(term.weight);
        }
        total
    }

    /// Detached minibatch sums `[reconstruction, KL(z), KL(l), extra...]` (extra terms times
    /// the number of cells), for the history: accumulated on the device, read back rarely.
    pub fn sums(&self) -> Tensor<1> {
        let n = self.reconstruction.dims()[0];
        let mut columns = vec![self.reconstruction.clone(), self.kl_z.clone()];
        columns.push(match &self.kl_library {
            Some(kl) => kl.clone(),
            None => Tensor::zeros([n, 1], &self.reconstruction.device()),
        });
        let per_cell: Tensor<1> = Tensor::cat(columns, 1).detach().sum_dim(0).reshape([3]);
        if self.extra.is_empty() {
            return per_cell;
        }
        let mut parts = vec![per_cell];
        for term in &self.extra {
            parts.push(term.value.clone().detach().mul_scalar(n as f64));
        }
        Tensor::cat(parts, 0)
    }

    pub fn extra_names(&self) -> Vec<String> {
        self.extra.iter().map(|t| t.name.clone()).collect()
    }
}

/// What a penalty on the latent space may look at, for one minibatch.
pub struct Representation {
    /// The posterior sample z (`n x d`).
    pub z: Tensor<2>,
    /// q(z | x)'s mean and variance (`n x d`): CoMP evaluates every cell's posterior at every z.
    pub mean: Tensor<2>,
    pub var: Tensor<2>,
    /// The decoder's first hidden layer (trVAE's MMD site).
    pub decoder_first: Tensor<2>,
}

impl Representation {
    /// A copy cut from the autodiff graph (what an adversary trains on).
    pub fn detach(&self) -> Self {
        Self {
            z: self.z.clone().detach(),
            mean: self.mean.clone().detach(),
            var: self.var.clone().detach(),
            decoder_first: self.decoder_first.clone().detach(),
        }
    }
}

/// A generative module in the scvi-tools sense.
pub trait GenerativeModule: Module + Clone {
    /// Encoders' outputs and posterior samples.
    type Inference;
    /// Decoder outputs: the likelihood's parameters.
    type Generative;

    fn inference(&self, ctx: &mut StepContext<'_>, batch: &Minibatch<'_>) -> Self::Inference;

    fn generative(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        inference: &Self::Inference,
    ) -> Self::Generative;

    fn loss(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
        inference: &Self::Inference,
        generative: &Self::Generative,
    ) -> LossOutput;

    /// What penalties act on.
    fn representation(inference: &Self::Inference, generative: &Self::Generative)
    -> Representation;

    /// inference -> generative -> loss.
    fn forward(
        &self,
        ctx: &mut StepContext<'_>,
        batch: &Minibatch<'_>,
    ) -> (Self::Inference, Self::Generative, LossOutput) {
        let inference = self.inference(ctx, batch);
        let generative = self.generative(ctx, batch, &inference);
        let loss = self.loss(ctx, batch, &inference, &generative);
        (inference, generative, loss)
    }
}
