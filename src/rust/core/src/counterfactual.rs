//! Counterfactual expression and its evaluation (seed 001, Figure 5; scGen's test): a cell's
//! posterior mean decoded with another condition ("this control cell, had it been
//! stimulated"), scored per cell type against the observed change between the conditions.
//!
//! Changes are log fold changes of mean normalised expression, log1p(mean 10^4 x / total),
//! between the conditions. Observed: the stimulated cells' minus the control cells', from the
//! counts. Predicted: the control cells decoded as stimulated minus the same cells decoded as
//! control (10^4 rho: the decoder's expected normalised expression). Both sides are logs of
//! means: a mean of log-normalised counts would not be comparable with the decoder's
//! expectation (the zeros of a lowly expressed gene pull the mean of logs far below the log of
//! the mean, which would make every model seem to underestimate induced genes).

use crate::data::CsrMatrix;
use crate::error::{Error, Result};
use crate::models::scvi::{CountsAndBatch, LibraryScale, ScviModel};

/// Log-normalisation's scale: counts per 10^4.
pub const SCALE: f64 = 1e4;

/// One cell type's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualScore {
    pub cell_type: usize,
    /// Cells of the source (control) and target (stimulated) condition.
    pub n_from: usize,
    pub n_to: usize,
    /// Squared Pearson correlation and mean absolute error of the predicted vs the observed
    /// log fold changes, over the `n_top` genes of largest observed change and over all genes.
    pub r2_top: f64,
    pub mae_top: f64,
    pub r2_all: f64,
    pub mae_all: f64,
    /// Mean predicted minus observed change over the top genes that go up (down) on
    /// stimulation: negative for up (positive for down) when a model underestimates the change.
    pub bias_up: f64,
    pub bias_down: f64,
    pub n_up: usize,
}

/// log1p of the mean of SCALE x / total per group over the rows of `counts` (`groups[r]`: the
/// row's group, `None` to leave it out), straight from the sparse counts.
pub fn observed_log_means(
    counts: &CsrMatrix,
    groups: &[Option<usize>],
    n_groups: usize,
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let g = counts.n_cols;
    let mut sums = vec![vec![0f64; g]; n_groups];
    let mut sizes = vec![0usize; n_groups];
    let totals = counts.row_sums();
    for (r, group) in groups.iter().enumerate() {
        let Some(k) = *group else { continue };
        sizes[k] += 1;
        if totals[r] <= 0.0 {
            continue;
        }
        let (cols, values) = counts.row(r);
        for (&j, &v) in cols.iter().zip(values) {
            sums[k][j as usize] += SCALE * v as f64 / totals[r];
        }
    }
    log_of_means(&mut sums, &sizes);
    (sums, sizes)
}

/// log1p of the mean of SCALE rho per group of the cells `rows` of `data`, each decoded with
/// condition `decode_as` (`groups[i]` is the group of `rows[i]`).
pub fn predicted_log_means(
    model: &ScviModel,
    data: CountsAndBatch<'_>,
    rows: &[usize],
    groups: &[usize],
    n_groups: usize,
    decode_as: u32,
) -> Result<Vec<Vec<f64>>> {
    let g = model.arch.n_genes;
    let counts = data.counts.select_rows(rows);
    let batch: Vec<u32> = rows.iter().map(|&r| data.batch[r]).collect();
    let subset = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let mut sums = vec![vec![0f64; g]; n_groups];
    let mut sizes = vec![0usize; n_groups];
    model.normalized_expression(
        subset,
        &[decode_as],
        LibraryScale::Constant(SCALE),
        None,
        &mut |first, block| {
            for (i, row) in block.chunks(g).enumerate() {
                let k = groups[first + i];
                sizes[k] += 1;
                for (s, &v) in sums[k].iter_mut().zip(row) {
                    *s += v as f64;
                }
            }
        },
    )?;
    log_of_means(&mut sums, &sizes);
    Ok(sums)
}

/// Group sums to log1p of the group means.
fn log_of_means(sums: &mut [Vec<f64>], sizes: &[usize]) {
    for (s, &n) in sums.iter_mut().zip(sizes) {
        let n = n.max(1) as f64;
        s.iter_mut().for_each(|v| *v = (*v / n).ln_1p());
    }
}

fn squared_pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy * sxy / (sxx * syy)
}

fn mean_abs_error(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (a - b).abs()).sum::<f64>() / x.len().max(1) as f64
}

/// Scores of predicted against observed per-gene changes: (r2_top, mae_top, r2_all, mae_all,
/// bias_up, bias_down, n_up) over the `n_top` genes of largest |observed|.
pub fn score_changes(
    observed: &[f64],
    predicted: &[f64],
    n_top: usize,
) -> (f64, f64, f64, f64, f64, f64, usize) {
    let mut order: Vec<usize> = (0..observed.len()).collect();
    order.sort_by(|&a, &b| observed[b].abs().total_cmp(&observed[a].abs()));
    order.truncate(n_top.min(observed.len()));
    let pick = |v: &[f64], genes: &[usize]| -> Vec<f64> { genes.iter().map(|&j| v[j]).collect() };
    let (obs_top, pred_top) = (pick(observed, &order), pick(predicted, &order));
    let bias = |up: bool| -> (f64, usize) {
        let genes: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&j| (observed[j] > 0.0) == up)
            .collect();
        let sum: f64 = genes.iter().map(|&j| predicted[j] - observed[j]).sum();
        (sum / genes.len().max(1) as f64, genes.len())
    };
    let (bias_up, n_up) = bias(true);
    let (bias_down, _) = bias(false);
    (
        squared_pearson(&obs_top, &pred_top),
        mean_abs_error(&obs_top, &pred_top),
        squared_pearson(observed, predicted),
        mean_abs_error(observed, predicted),
        bias_up,
        bias_down,
        n_up,
    )
}

/// Per cell type with at least `min_cells` cells in both conditions: the predicted change from
/// condition `from` to `to` against the observed one (`data.batch` holds the conditions).
#[allow(clippy::too_many_arguments)]
pub fn counterfactual_scores(
    model: &ScviModel,
    data: CountsAndBatch<'_>,
    cell_type: &[u32],
    n_types: usize,
    from: u32,
    to: u32,
    n_top: usize,
    min_cells: usize,
) -> Result<Vec<CounterfactualScore>> {
    let n = data.counts.n_rows;
    if cell_type.len() != n {
        return Err(Error::invalid(
            "cell_type",
            format!("has {} values for {n} cells", cell_type.len()),
        ));
    }
    let n_conditions = model.arch.n_batch as u32;
    for (name, c) in [("from", from), ("to", to)] {
        if c >= n_conditions {
            return Err(Error::invalid(name, "is not one of the model's conditions"));
        }
    }
    if from == to {
        return Err(Error::invalid("to", "must differ from `from`"));
    }
    if n_top < 2 {
        return Err(Error::invalid("n_top", "must be >= 2"));
    }
    let group_of = |condition: u32| -> Vec<Option<usize>> {
        (0..n)
            .map(|r| (data.batch[r] == condition).then_some(cell_type[r] as usize))
            .collect()
    };
    let (obs_from, n_from) = observed_log_means(data.counts, &group_of(from), n_types);
    let (obs_to, n_to) = observed_log_means(data.counts, &group_of(to), n_types);
    let kept: Vec<usize> = (0..n_types)
        .filter(|&t| n_from[t] >= min_cells.max(1) && n_to[t] >= min_cells.max(1))
        .collect();
    let rows: Vec<usize> = (0..n)
        .filter(|&r| data.batch[r] == from && kept.contains(&(cell_type[r] as usize)))
        .collect();
    let groups: Vec<usize> = rows.iter().map(|&r| cell_type[r] as usize).collect();
    let pred_to = predicted_log_means(model, data, &rows, &groups, n_types, to)?;
    let pred_from = predicted_log_means(model, data, &rows, &groups, n_types, from)?;
    Ok(kept
        .into_iter()
        .map(|t| {
            let observed: Vec<f64> = obs_to[t]
                .iter()
                .zip(&obs_from[t])
                .map(|(a, b)| a - b)
                .collect();
            let predicted: Vec<f64> = pred_to[t]
                .iter()
                .zip(&pred_from[t])
                .map(|(a, b)| a - b)
                .collect();
            let (r2_top, mae_top, r2_all, mae_all, bias_up, bias_down, n_up) =
                score_changes(&observed, &predicted, n_top);
            CounterfactualScore {
                cell_type: t,
                n_from: n_from[t],
                n_to: n_to[t],
                r2_top,
                mae_top,
                r2_all,
                mae_all,
                bias_up,
                bias_down,
                n_up,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_a_perfect_and_of_a_halved_prediction() {
        let observed = [2.0, -1.5, 0.1, 0.0, 1.0, -0.05];
        let (r2, mae, r2_all, mae_all, up, down, n_up) = score_changes(&observed, &observed, 3);
        assert!((r2 - 1.0).abs() < 1e-12 && mae == 0.0 && (r2_all - 1.0).abs() < 1e-12);
        assert_eq!((mae_all, up, down, n_up), (0.0, 0.0, 0.0, 2));
        // Half of each change: still perfectly correlated, but the up-genes underestimated.
        let halved: Vec<f64> = observed.iter().map(|v| v / 2.0).collect();
        let (r2, mae, _, _, up, down, _) = score_changes(&observed, &halved, 3);
        assert!((r2 - 1.0).abs() < 1e-12);
        // Top 3 by |change|: 2.0, -1.5, 1.0 -> errors 1.0, 0.75, 0.5.
        assert!((mae - 0.75).abs() < 1e-12, "{mae}");
        assert!(
            (up - -0.75).abs() < 1e-12 && (down - 0.75).abs() < 1e-12,
            "{up} {down}"
        );
    }

    #[test]
    fn observed_means_are_logs_of_mean_normalised_expression() {
        // Two cells, two genes: [1, 3] (total 4) and [2, 0] (total 2).
        let counts =
            CsrMatrix::new(2, 2, vec![0, 2, 3], vec![0, 1, 0], vec![1.0, 3.0, 2.0]).unwrap();
        let (means, sizes) = observed_log_means(&counts, &[Some(0), Some(0)], 1);
        assert_eq!(sizes, vec![2]);
        let expect0 = (SCALE * (0.25 + 1.0) / 2.0).ln_1p();
        let expect1 = (SCALE * 0.75 / 2.0).ln_1p();
        assert!((means[0][0] - expect0).abs() < 1e-9 && (means[0][1] - expect1).abs() < 1e-9);
    }
}
