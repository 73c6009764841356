//! extendr glue for the conditional VAE family's own functions: counterfactual scores and
//! de-novo MINE. (Training and decoding go through the scVI glue: a CVAE is an scVI module.)

use cellweave_core::counterfactual::counterfactual_scores;
use cellweave_core::models::scvi::CountsAndBatch;
use cellweave_core::penalties::MineConfig;
use cellweave_core::penalties::mine::{EstimateConfig, estimate};
use extendr_api::Result;
use extendr_api::prelude::*;

use crate::convert::{Options, codes_from_r, dense_from_r, doubles, ints, to_r};
use crate::interrupt::interrupt_pending;
use crate::scvi::{counts_and_codes, load};

/// Per cell type: the predicted change from condition `from` to `to` (0-based codes) against
/// the observed one. `cell_type`: 0-based codes of `n_types` types.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_counterfactual_scores(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    condition: Robj,
    cell_type: Robj,
    n_types: f64,
    from: f64,
    to: f64,
    n_top: f64,
    min_cells: f64,
) -> Result<Robj> {
    let model = load(arch, weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &condition)?;
    let types = codes_from_r(ints(&cell_type, "cell_type")?, "cell_type")?;
    let scores = to_r(counterfactual_scores(
        &model,
        CountsAndBatch {
            counts: &counts,
            batch: &codes,
        },
        &types,
        n_types as usize,
        from as u32,
        to as u32,
        n_top as usize,
        min_cells as usize,
    ))?;
    let col = |f: &dyn Fn(&cellweave_core::counterfactual::CounterfactualScore) -> f64| -> Robj {
        scores.iter().map(f).collect::<Vec<f64>>().into()
    };
    let list = List::from_names_and_values(
        [
            "cell_type",
            "n_from",
            "n_to",
            "r2_top",
            "mae_top",
            "r2_all",
            "mae_all",
            "bias_up",
            "bias_down",
            "n_up",
        ],
        [
            scores
                .iter()
                .map(|s| s.cell_type as i32 + 1)
                .collect::<Vec<i32>>()
                .into(),
            col(&|s| s.n_from as f64),
            col(&|s| s.n_to as f64),
            col(&|s| s.r2_top),
            col(&|s| s.mae_top),
            col(&|s| s.r2_all),
            col(&|s| s.mae_all),
            col(&|s| s.bias_up),
            col(&|s| s.bias_down),
            col(&|s| s.n_up as f64),
        ],
    )?;
    Ok(list.into())
}

/// De-novo MINE: trains a fresh statistics network on `embedding` (cells x d) against the
/// condition codes and returns the bound on the training and held-out cells and its history.
/// @noRd
#[extendr]
fn cw_mine_estimate(
    embedding: Robj,
    n_cells: f64,
    n_dims: f64,
    condition: Robj,
    n_conditions: f64,
    options: List,
) -> Result<Robj> {
    let embedding = dense_from_r(
        doubles(&embedding, "embedding")?,
        n_cells as usize,
        n_dims as usize,
    )?;
    let codes = codes_from_r(ints(&condition, "condition")?, "condition")?;
    let o = Options(&options);
    let config = EstimateConfig {
        network: MineConfig {
            n_hidden: o.usize("n_hidden")?,
            n_layers: o.usize("n_layers")?,
            lr: o.f64("lr")?,
            moving_average_rate: o.f64("moving_average_rate")?,
            ..MineConfig::default()
        },
        epochs: o.usize("epochs")?,
        batch_size: o.usize("batch_size")?,
        train_size: o.f64("train_size")?,
        seed: o.usize("seed")? as u64,
    };
    let device = to_r(cellweave_core::device::ComputeDevice::parse(
        &o.string("device")?,
    ))?;
    let device = to_r(device.burn_device())?;
    let result = to_r(estimate(
        &embedding,
        &codes,
        n_conditions as usize,
        &config,
        &device,
        &mut interrupt_pending,
    ))?;
    let list = List::from_names_and_values(
        ["train", "heldout", "history"],
        [
            result.train.into(),
            result.test.into(),
            result.history.into(),
        ] as [Robj; 3],
    )?;
    Ok(list.into())
}

extendr_module! {
    mod cvae;
    fn cw_counterfactual_scores;
    fn cw_mine_estimate;
}
