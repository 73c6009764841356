//! extendr glue for the metrics family: converts R values, calls the core, converts back.

use cellweave_core::data::DenseMatrix;
use cellweave_core::metrics::accuracy::weighted_accuracy;
use cellweave_core::metrics::scib::{
    Metric, MetricKind, SuiteConfig, SuiteInputs, score_embedding,
};
use extendr_api::Result;
use extendr_api::prelude::*;

use crate::convert::{Options, codes_from_r, dense_from_r, doubles, ints, to_r};
use crate::interrupt::interrupt_pending;

/// A numeric R matrix (cells x dims) as a dense matrix.
fn matrix(x: &Robj, what: &str) -> Result<DenseMatrix> {
    let values = doubles(x, what)?;
    let dim = x
        .dim()
        .ok_or_else(|| Error::Other(format!("`{what}` must be a matrix")))?;
    let dim: Vec<usize> = dim
        .iter()
        .map(|d| Option::<i32>::from(d).unwrap_or(0).max(0) as usize)
        .collect();
    if dim.len() != 2 {
        return Err(Error::Other(format!("`{what}` must be a matrix")));
    }
    dense_from_r(values, dim[0], dim[1])
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::BioConservation => "Bio conservation",
        MetricKind::BatchCorrection => "Batch correction",
        MetricKind::Other => "Other",
    }
}

/// Every metric: name, aggregate it counts towards, and the sets it belongs to.
/// @noRd
#[extendr]
fn cw_metric_catalogue() -> Result<Robj> {
    let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let kinds: Vec<&str> = Metric::ALL.iter().map(|m| kind_name(m.kind())).collect();
    let scib: Vec<bool> = Metric::ALL
        .iter()
        .map(|m| Metric::SCIB.contains(m))
        .collect();
    let seed: Vec<bool> = Metric::ALL
        .iter()
        .map(|m| Metric::SEED.contains(m))
        .collect();
    let list = List::from_names_and_values(
        ["name", "type", "scib", "seed"],
        [
            names.into_robj(),
            kinds.into_robj(),
            scib.into_robj(),
            seed.into_robj(),
        ],
    )?;
    Ok(list.into())
}

/// Scores one embedding with the metrics named in `metrics`.
/// `batch`, `labels`: 0-based codes; `unintegrated`: NULL or a matrix; `references`: NULL or a
/// list of matrices, one per batch code; `options`: seed, local_k, local_alpha,
/// local_condition (-1 or a 0-based batch code), purity_k.
/// @noRd
#[extendr]
fn cw_metrics_score(
    x: Robj,
    batch: Robj,
    labels: Robj,
    unintegrated: Robj,
    references: Robj,
    metrics: Vec<String>,
    options: List,
) -> Result<Robj> {
    let x = matrix(&x, "x")?;
    let batch = codes_from_r(ints(&batch, "batch")?, "batch")?;
    let labels = codes_from_r(ints(&labels, "label")?, "label")?;
    let unintegrated = if unintegrated.is_null() {
        None
    } else {
        Some(matrix(&unintegrated, "unintegrated")?)
    };
    let references: Option<Vec<DenseMatrix>> = if references.is_null() {
        None
    } else {
        let list = references
            .as_list()
            .ok_or_else(|| Error::Other("`reference` must be a list of matrices".into()))?;
        Some(
            list.values()
                .map(|m| matrix(&m, "reference"))
                .collect::<Result<_>>()?,
        )
    };
    let selected = metrics
        .iter()
        .map(|name| {
            Metric::from_name(name)
                .ok_or_else(|| Error::Other(format!("`metrics`: unknown metric \"{name}\"")))
        })
        .collect::<Result<Vec<_>>>()?;
    let o = Options(&options);
    let seed = o.usize("seed")? as u64;
    let condition = o.f64("local_condition")?;
    let mut config = SuiteConfig {
        metrics: selected,
        local_k: o.usize("local_k")?,
        local_alpha: o.f64("local_alpha")?,
        local_condition: if condition < 0.0 {
            None
        } else {
            Some(condition as u32)
        },
        purity_k: o.usize("purity_k")?,
        ..Default::default()
    };
    config.kmeans.seed = seed;
    config.kbet.seed = seed;
    config.batch_entropy.seed = seed;
    let inputs = SuiteInputs {
        batch: &batch,
        labels: &labels,
        unintegrated: unintegrated.as_ref(),
        references: references.as_deref(),
    };
    let scores = to_r(score_embedding(&x, &inputs, &config, &interrupt_pending))?;
    let names: Vec<&str> = scores.values.iter().map(|(m, _)| m.name()).collect();
    let mut values: Robj = scores
        .values
        .iter()
        .map(|(_, v)| *v)
        .collect::<Vec<f64>>()
        .into_robj();
    values.set_names(names)?;
    let step_names: Vec<&str> = scores.timings.iter().map(|(s, _)| *s).collect();
    let mut timings: Robj = scores
        .timings
        .iter()
        .map(|(_, t)| *t)
        .collect::<Vec<f64>>()
        .into_robj();
    timings.set_names(step_names)?;
    let list = List::from_names_and_values(
        [
            "values",
            "batch_correction",
            "bio_conservation",
            "total",
            "warnings",
            "timings",
        ],
        [
            values,
            scores.batch_correction.into(),
            scores.bio_conservation.into(),
            scores.total.into(),
            scores.warnings.into_robj(),
            timings,
        ],
    )?;
    Ok(list.into())
}

/// Weighted accuracy of 0-based class codes.
/// @noRd
#[extendr]
fn cw_weighted_accuracy(predicted: Robj, truth: Robj) -> Result<f64> {
    let predicted = codes_from_r(ints(&predicted, "predicted")?, "predicted")?;
    let truth = codes_from_r(ints(&truth, "truth")?, "truth")?;
    to_r(weighted_accuracy(&predicted, &truth))
}

extendr_module! {
    mod metrics;
    fn cw_metric_catalogue;
    fn cw_metrics_score;
    fn cw_weighted_accuracy;
}
