//! extendr glue for the classic family (Harmony, fastMNN): converts R values, calls the core,
//! converts back.

use cellweave_core::classic::{
    FastMnnConfig, FastMnnResult, HarmonyConfig, MergeOrder, MergeStep, fast_mnn, harmony,
    reduced_mnn,
};
use cellweave_core::pca::PcaConfig;
use extendr_api::Result;
use extendr_api::prelude::*;

use crate::convert::{
    Options, codes_from_r, csr_from_slots, dense_from_r, dense_to_r, doubles, ints, to_r,
};
use crate::interrupt::{console, interrupt_pending};

/// A numeric vector option of the list (e.g. one theta per batch variable).
fn vector_option(options: &List, name: &str) -> Result<Vec<f64>> {
    let value = options
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| Error::Other(format!("missing option `{name}`")))?;
    Ok(doubles(&value, name)?.to_vec())
}

fn harmony_config(options: &List) -> Result<HarmonyConfig> {
    let o = Options(options);
    Ok(HarmonyConfig {
        theta: vector_option(options, "theta")?,
        lambda: vector_option(options, "lambda")?,
        sigma: o.f64("sigma")?,
        n_clusters: o.opt_usize("nclust")?,
        tau: o.f64("tau")?,
        block_size: o.f64("block_size")?,
        max_iter: o.usize("max_iter")?,
        max_iter_cluster: o.usize("max_iter_cluster")?,
        epsilon_cluster: o.f64("epsilon_cluster")?,
        epsilon_harmony: o.f64("epsilon_harmony")?,
        seed: o.usize("seed")? as u64,
    })
}

/// Harmony on an embedding (`x`: cells x dims, column-major values). `batches`: a list of
/// 0-based integer codes, one vector per batch variable.
/// @noRd
#[extendr]
fn cw_harmony(
    x: Robj,
    nrow: i32,
    ncol: i32,
    batches: List,
    options: List,
    verbose: bool,
) -> Result<Robj> {
    let embedding = dense_from_r(
        doubles(&x, "x")?,
        nrow.max(0) as usize,
        ncol.max(0) as usize,
    )?;
    let codes = batches
        .iter()
        .map(|(_, v)| codes_from_r(ints(&v, "batch")?, "batch"))
        .collect::<Result<Vec<_>>>()?;
    let config = harmony_config(&options)?;
    let max_iter = config.max_iter;
    let result = to_r(harmony(
        &embedding,
        &codes,
        &config,
        &interrupt_pending,
        &mut |round, objective| {
            if verbose {
                console(&format!(
                    "Harmony round {round}/{max_iter}: objective {objective:.4}\n"
                ));
            }
        },
    ))?;
    let list = List::from_names_and_values(
        [
            "embedding",
            "objective",
            "cluster_iterations",
            "converged",
            "n_clusters",
        ],
        [
            dense_to_r(&result.embedding),
            result.objective.into(),
            result
                .cluster_iterations
                .iter()
                .map(|&i| i as i32)
                .collect::<Vec<i32>>()
                .into(),
            result.converged.into(),
            (result.n_clusters as i32).into(),
        ] as [Robj; 5],
    )?;
    Ok(list.into())
}

fn mnn_config(options: &List) -> Result<FastMnnConfig> {
    let o = Options(options);
    let order = vector_option(options, "merge_order")?;
    let merge_order = if o.bool("auto_merge")? {
        MergeOrder::Auto
    } else if order.is_empty() {
        MergeOrder::Input
    } else {
        MergeOrder::Given(order.iter().map(|&v| v as u32).collect())
    };
    Ok(FastMnnConfig {
        k: o.usize("k")?,
        ndist: o.f64("ndist")?,
        cos_norm: o.bool("cos_norm")?,
        pca: PcaConfig {
            n_components: o.usize("d")?,
            seed: o.usize("seed")? as u64,
            ..PcaConfig::default()
        },
        merge_order,
        min_batch_skip: o.f64("min_batch_skip")?,
    })
}

fn step_to_r(step: &MergeStep) -> Result<Robj> {
    let codes = |v: &[u32]| -> Robj { v.iter().map(|&b| b as i32).collect::<Vec<i32>>().into() };
    let (lost_batches, lost): (Vec<i32>, Vec<f64>) = step
        .lost_variance
        .iter()
        .map(|&(b, v)| (b as i32, v))
        .unzip();
    let list = List::from_names_and_values(
        [
            "left",
            "right",
            "n_pairs",
            "batch_vector",
            "batch_size",
            "skipped",
            "lost_batches",
            "lost_variance",
        ],
        [
            codes(&step.left),
            codes(&step.right),
            (step.n_pairs as i32).into(),
            step.batch_vector.clone().into(),
            step.batch_size.into(),
            step.skipped.into(),
            lost_batches.into(),
            lost.into(),
        ] as [Robj; 8],
    )?;
    Ok(list.into())
}

fn mnn_to_r(result: FastMnnResult) -> Result<Robj> {
    let steps = result
        .steps
        .iter()
        .map(step_to_r)
        .collect::<Result<Vec<Robj>>>()?;
    let rotation = result
        .rotation
        .as_ref()
        .map(dense_to_r)
        .unwrap_or_else(|| ().into());
    let list = List::from_names_and_values(
        ["corrected", "rotation", "steps"],
        [
            dense_to_r(&result.corrected),
            rotation,
            List::from_values(steps).into(),
        ] as [Robj; 3],
    )?;
    Ok(list.into())
}

/// fastMNN on log-expression given as the slots of a dgCMatrix (genes x cells).
/// @noRd
#[extendr]
fn cw_fastmnn(p: Robj, i: Robj, x: Robj, dim: Robj, batch: Robj, options: List) -> Result<Robj> {
    let values = csr_from_slots(
        ints(&p, "p")?,
        ints(&i, "i")?,
        doubles(&x, "x")?,
        ints(&dim, "Dim")?,
    )?;
    let codes = codes_from_r(ints(&batch, "batch")?, "batch")?;
    let config = mnn_config(&options)?;
    mnn_to_r(to_r(fast_mnn(
        &values,
        &codes,
        &config,
        &interrupt_pending,
    ))?)
}

/// fastMNN on a low-dimensional embedding (cells x dims, column-major values).
/// @noRd
#[extendr]
fn cw_reduced_mnn(x: Robj, nrow: i32, ncol: i32, batch: Robj, options: List) -> Result<Robj> {
    let embedding = dense_from_r(
        doubles(&x, "x")?,
        nrow.max(0) as usize,
        ncol.max(0) as usize,
    )?;
    let codes = codes_from_r(ints(&batch, "batch")?, "batch")?;
    let config = mnn_config(&options)?;
    mnn_to_r(to_r(reduced_mnn(
        &embedding,
        &codes,
        &config,
        &interrupt_pending,
    ))?)
}

extendr_module! {
    mod classic;
    fn cw_harmony;
    fn cw_fastmnn;
    fn cw_reduced_mnn;
}
