//! extendr glue for scANVI and the label-transfer baselines: converts R values, calls the
//! core, converts back.

use cellweave_core::device::ComputeDevice;
use cellweave_core::label_transfer::{cluster_vote, knn_vote};
use cellweave_core::models::scanvi::{
    LabelHierarchy, LabelledCounts, ScanviArchitecture, ScanviModel, ScanviTraining,
};
use cellweave_core::models::scvi::CountsAndBatch;
use extendr_api::Result;
use extendr_api::prelude::*;

use crate::convert::{Options, codes_from_r, dense_to_r, ints, to_r};
use crate::scvi::{ConsoleProgress, architecture, counts_and_codes, engine_for, history_to_r};

/// The scANVI architecture: the scVI options plus `n_labels`, `linear_classifier`, and
/// `hierarchy` (each label's 0-based parent code, or NULL) with `n_groups`.
fn scanvi_architecture(arch: &List) -> Result<ScanviArchitecture> {
    let o = Options(arch);
    let parent = arch
        .iter()
        .find(|(n, _)| *n == "hierarchy")
        .map(|(_, v)| v)
        .filter(|v| !v.is_null());
    let hierarchy = match parent {
        None => None,
        Some(v) => Some(to_r(LabelHierarchy::new(
            codes_from_r(ints(&v, "hierarchy")?, "hierarchy")?,
            o.usize("n_groups")?,
        ))?),
    };
    Ok(ScanviArchitecture {
        scvi: architecture(&o)?,
        n_labels: o.usize("n_labels")?,
        linear_classifier: o.bool("linear_classifier")?,
        hierarchy,
    })
}

fn load(arch: &List, weights: &Robj, device: &str) -> Result<ScanviModel> {
    let arch = scanvi_architecture(arch)?;
    let bytes = weights
        .as_raw_slice()
        .ok_or_else(|| Error::Other("the model's weights must be a raw vector".into()))?;
    let device = to_r(ComputeDevice::parse(device))?;
    to_r(ScanviModel::from_parts(
        arch,
        bytes,
        device,
        engine_for(device),
    ))
}

/// Latent and label probabilities as an R list.
fn outputs(model: &ScanviModel, data: CountsAndBatch<'_>) -> Result<(Robj, Robj)> {
    let (latent, probs) = to_r(model.latent_and_probabilities(data))?;
    Ok((dense_to_r(&latent), dense_to_r(&probs)))
}

/// A trained model as R's list: latent and label probabilities of `data`, weights, history and
/// device.
fn fitted_to_r(model: &ScanviModel, data: CountsAndBatch<'_>) -> Result<Robj> {
    let (latent, probs) = outputs(model, data)?;
    let list = List::from_names_and_values(
        ["latent", "probabilities", "weights", "history", "device"],
        [
            latent,
            probs,
            Raw::from_bytes(&model.weights_bytes()).into(),
            history_to_r(&model.history)?,
            model.device.name().into(),
        ],
    )?;
    Ok(list.into())
}

/// Trains scANVI, from scratch or (with `scvi_arch`, `scvi_weights`) from a trained scVI.
/// `labels`: 0-based codes, `n_labels` for an unlabelled cell. Returns the latent, the label
/// probabilities (cells x labels), the weights, the history and the device used.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scanvi_train(
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    labels: Robj,
    arch: List,
    train: List,
    classification_ratio: f64,
    scvi_arch: Robj,
    scvi_weights: Robj,
    device: &str,
    progress: &str,
) -> Result<Robj> {
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let label_codes = codes_from_r(ints(&labels, "labels")?, "labels")?;
    let arch = scanvi_architecture(&arch)?;
    let config = crate::scvi::train_config(&Options(&train))?;
    let pretrained = if scvi_weights.is_null() {
        None
    } else {
        let scvi_arch = List::try_from(scvi_arch)
            .map_err(|_| Error::Other("`scvi`: the model's architecture must be a list".into()))?;
        Some(crate::scvi::load(scvi_arch, scvi_weights, device)?)
    };
    let device = to_r(ComputeDevice::parse(device))?;
    let mut progress = ConsoleProgress::new(progress);
    let model = ScanviModel::train(
        arch,
        &config,
        ScanviTraining {
            classification_ratio,
        },
        LabelledCounts {
            counts: &counts,
            batch: &codes,
            labels: &label_codes,
        },
        pretrained.as_ref(),
        device,
        engine_for(device),
        &mut progress,
    )
    .map_err(|e| progress.fail(e))?;
    fitted_to_r(
        &model,
        CountsAndBatch {
            counts: &counts,
            batch: &codes,
        },
    )
}

/// Latent and label probabilities of cells under a saved scANVI model.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scanvi_predict(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
) -> Result<Robj> {
    let model = load(&arch, &weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let (latent, probs) = outputs(
        &model,
        CountsAndBatch {
            counts: &counts,
            batch: &codes,
        },
    )?;
    let list = List::from_names_and_values(["latent", "probabilities"], [latent, probs])?;
    Ok(list.into())
}

/// Maps query cells onto a saved scANVI reference (scArches): the model grows to `n_batch`
/// batches and trains what a query trains. `labels`: codes as in training (`n_labels` =
/// unlabelled). Returns the query's latent and label probabilities, the weights and the history.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scanvi_map_query(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    labels: Robj,
    n_batch: f64,
    train: List,
    progress: &str,
) -> Result<Robj> {
    let reference = load(&arch, &weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let label_codes = codes_from_r(ints(&labels, "labels")?, "labels")?;
    let config = crate::scvi::train_config(&Options(&train))?;
    let mut progress = ConsoleProgress::new(progress);
    let model = reference
        .map_query(
            LabelledCounts {
                counts: &counts,
                batch: &codes,
                labels: &label_codes,
            },
            n_batch as usize,
            &config,
            &mut progress,
        )
        .map_err(|e| progress.fail(e))?;
    fitted_to_r(
        &model,
        CountsAndBatch {
            counts: &counts,
            batch: &codes,
        },
    )
}

/// Label codes (0-based, NA = unlabelled) of R as the core's options.
fn seed_codes(labels: &Robj) -> Result<Vec<Option<u32>>> {
    let v = ints(labels, "labels")?;
    v.iter()
        .map(|&c| {
            if c == i32::MIN {
                Ok(None)
            } else if c < 0 {
                Err(Error::Other("`labels`: codes must be non-negative".into()))
            } else {
                Ok(Some(c as u32))
            }
        })
        .collect()
}

fn embedding(values: &Robj) -> Result<cellweave_core::data::DenseMatrix> {
    let m = RMatrix::<f64>::try_from(values.clone())
        .map_err(|_| Error::Other("`embedding` must be a numeric matrix".into()))?;
    crate::convert::dense_from_r(m.data(), m.nrows(), m.ncols())
}

/// kNN majority vote: 0-based label codes of every cell.
/// @noRd
#[extendr]
fn cw_knn_vote(embedding_r: Robj, labels: Robj, n_labels: f64, k: f64) -> Result<Robj> {
    let e = embedding(&embedding_r)?;
    let out = to_r(knn_vote(
        &e,
        &seed_codes(&labels)?,
        n_labels as usize,
        k as usize,
    ))?;
    Ok(out.iter().map(|&c| c as i32).collect::<Vec<i32>>().into())
}

/// Cluster majority vote: 0-based label codes and Leiden clusters of every cell.
/// @noRd
#[extendr]
fn cw_cluster_vote(
    embedding_r: Robj,
    labels: Robj,
    n_labels: f64,
    k: f64,
    resolution: f64,
    seed: f64,
) -> Result<Robj> {
    let e = embedding(&embedding_r)?;
    let (out, clusters) = to_r(cluster_vote(
        &e,
        &seed_codes(&labels)?,
        n_labels as usize,
        k as usize,
        resolution,
        seed as u64,
    ))?;
    let list = List::from_names_and_values(
        ["labels", "clusters"],
        [
            Robj::from(out.iter().map(|&c| c as i32).collect::<Vec<i32>>()),
            Robj::from(clusters.iter().map(|&c| c as i32).collect::<Vec<i32>>()),
        ],
    )?;
    Ok(list.into())
}

extendr_module! {
    mod scanvi;
    fn cw_scanvi_train;
    fn cw_scanvi_predict;
    fn cw_scanvi_map_query;
    fn cw_knn_vote;
    fn cw_cluster_vote;
}
