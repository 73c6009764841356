//! kBET (Büttner et al. 2019): does the batch composition of a cell's neighbourhood match the
//! global one? A chi-squared test per cell; the acceptance rate is the share of cells whose
//! test does not reject at level alpha.
//!
//! `kbet_per_label` is scib-metrics 0.5.10's scIB variant: per label, on the label's subgraph
//! of the UMAP connectivities of the 50-NN graph, neighbourhoods of k0 cells (k0 = a quarter of
//! the mean batch size in the label, clamped to 10..70) are taken in a diffusion-map embedding
//! (100 components), plus the cell itself; the score is the mean acceptance over labels.

use rayon::prelude::*;

use super::diffusion::diffusion_embedding;
use super::umap_graph::WeightedGraph;
use super::{Groups, check_len, nan_mean};
use crate::distributions::special::ln_gamma;
use crate::error::{Error, Result};
use crate::neighbors::{KnnGraph, knn_exact};

#[derive(Debug, Clone)]
pub struct KbetConfig {
    pub alpha: f64,
    pub diffusion_n_comps: usize,
    pub seed: u64,
}

impl Default for KbetConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            diffusion_n_comps: 100,
            seed: 0,
        }
    }
}

/// Regularised lower incomplete gamma P(a, x) (series below a + 1, continued fraction above).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let mut ap = a;
        let mut sum = 1.0 / a;
        let mut del = sum;
        for _ in 0..1000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (sum.ln() - x + a * x.ln() - gln).exp().min(1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (1.0 - (-x + a * x.ln() - gln).exp() * h).max(0.0)
    }
}

/// p-value of a chi-squared statistic with `dof` degrees of freedom.
pub fn chi2_sf(stat: f64, dof: usize) -> f64 {
    if dof == 0 {
        return 1.0;
    }
    1.0 - gamma_p(dof as f64 / 2.0, stat / 2.0)
}

/// Per-cell p-values of kBET's test given each cell's neighbourhood (indices into `batch`,
/// including the cell itself where the caller wants it) and the expected batch frequencies of
/// `batch`.
pub fn kbet_p_values(neighbourhoods: &[&[u32]], batch: &Groups) -> Vec<f64> {
    let n = batch.len() as f64;
    let freq: Vec<f64> = batch.counts.iter().map(|&c| c as f64 / n).collect();
    let dof = batch.n_groups - 1;
    let mut observed = vec![0.0f64; batch.n_groups];
    neighbourhoods
        .iter()
        .map(|hood| {
            observed.fill(0.0);
            for &j in hood.iter() {
                observed[batch.codes[j as usize] as usize] += 1.0;
            }
            let k = hood.len() as f64;
            let stat: f64 = observed
                .iter()
                .zip(&freq)
                .map(|(o, f)| {
                    let e = f * k;
                    (o - e) * (o - e) / e
                })
                .sum();
            chi2_sf(stat, dof)
        })
        .collect()
}

/// Acceptance rate over cells of the test on `graph`'s neighbourhoods, each with the cell
/// itself added (scib-metrics' neighbour lists include self).
pub fn kbet_acceptance_with_self(graph: &KnnGraph, batch: &Groups, alpha: f64) -> f64 {
    let hoods: Vec<Vec<u32>> = (0..graph.n_queries)
        .map(|i| {
            let mut h = Vec::with_capacity(graph.k + 1);
            h.push(i as u32);
            h.extend_from_slice(graph.neighbors(i));
            h
        })
        .collect();
    let refs: Vec<&[u32]> = hoods.iter().map(|h| h.as_slice()).collect();
    let p = kbet_p_values(&refs, batch);
    p.iter().filter(|&&p| p >= alpha).count() as f64 / p.len() as f64
}

/// kBET acceptance of one label's cells (`nodes`, indices into `conn`), or `None` where
/// scib-metrics gives NaN (fewer than 10 cells, or one batch).
fn kbet_one_label(
    conn: &WeightedGraph,
    nodes: &[usize],
    batch: &Groups,
    config: &KbetConfig,
) -> Result<Option<f64>> {
    let n_obs = nodes.len();
    let sub_batch = batch.subset(nodes);
    if n_obs < 10 || sub_batch.n_groups == 1 {
        return Ok(None);
    }
    let mean_batch = n_obs as f64 / sub_batch.n_groups as f64;
    let k0 = ((mean_batch / 4.0).floor() as usize).clamp(10, 70);
    let sub = conn.induced(nodes);
    let (n_comp, comp) = sub.components();
    let (graph, cells): (WeightedGraph, Vec<usize>) = if n_comp == 1 {
        (sub, (0..n_obs).collect())
    } else {
        let mut sizes = vec![0usize; n_comp];
        for &c in &comp {
            sizes[c] += 1;
        }
        let kept: Vec<usize> = (0..n_obs).filter(|&v| sizes[comp[v]] >= 3 * k0).collect();
        if (kept.len() as f64) / (n_obs as f64) < 0.75 {
            return Ok(Some(0.0)); // too many small components: 100% rejection
        }
        (sub.induced(&kept), kept)
    };
    let n = graph.n;
    let n_comps = config.diffusion_n_comps.min(n - 1);
    let embedding = diffusion_embedding(&graph, n_comps, config.seed)?;
    // k0 neighbours plus the cell itself (capped for labels of fewer than k0 + 1 cells).
    let knn = knn_exact(&embedding, k0.min(n - 1))?;
    let kept_batch = sub_batch.subset(&cells);
    Ok(Some(kbet_acceptance_with_self(
        &knn,
        &kept_batch,
        config.alpha,
    )))
}

/// Result of `kbet_per_label`: the score and the acceptance of each label (None where skipped).
#[derive(Debug, Clone)]
pub struct KbetPerLabel {
    pub score: f64,
    pub per_label: Vec<Option<f64>>,
}

/// scIB kBET per label from the UMAP connectivities of the 50-NN graph (self included).
pub fn kbet_per_label(
    conn: &WeightedGraph,
    batch: &[u32],
    labels: &[u32],
    config: &KbetConfig,
) -> Result<KbetPerLabel> {
    check_len(batch, conn.n, "batch")?;
    check_len(labels, conn.n, "labels")?;
    if !(config.alpha > 0.0 && config.alpha < 1.0) {
        return Err(Error::invalid("alpha", "must be between 0 and 1"));
    }
    let batch = Groups::new(batch, "batch")?;
    let label_groups = Groups::new(labels, "labels")?;
    let per_label = label_groups
        .members()
        .par_iter()
        .map(|nodes| kbet_one_label(conn, nodes, &batch, config))
        .collect::<Result<Vec<_>>>()?;
    let values: Vec<f64> = per_label.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    Ok(KbetPerLabel {
        score: nan_mean(&values),
        per_label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::metrics::umap_graph::umap_connectivities;

    #[test]
    fn chi2_matches_known_values() {
        // scipy.stats.chi2.sf
        assert!((chi2_sf(3.841458820694124, 1) - 0.05).abs() < 1e-10);
        assert!((chi2_sf(5.991464547107979, 2) - 0.05).abs() < 1e-10);
        assert!((chi2_sf(1.0, 3) - 0.8012519569012009).abs() < 1e-10);
        assert!((chi2_sf(40.0, 4) - 4.3284e-8).abs() < 1e-11);
    }

    #[test]
    fn mixed_batches_accepted_separated_rejected() {
        let (x, labels) = blobs(&[vec![0.0, 0.0], vec![20.0, 0.0]], 150, 1.0, 3);
        let conn = umap_connectivities(&knn_exact(&x, 49).unwrap());
        let mixed = random_codes(x.n_rows, 2, 4);
        let cfg = KbetConfig::default();
        let good = kbet_per_label(&conn, &mixed, &labels, &cfg).unwrap();
        assert!(good.score > 0.8, "{}", good.score);
        // Batch split within each label along a direction: label 0 -> batch by x sign.
        let split: Vec<u32> = (0..x.n_rows).map(|i| (x.row(i)[1] > 0.0) as u32).collect();
        let bad = kbet_per_label(&conn, &split, &labels, &cfg).unwrap();
        assert!(
            bad.score < good.score - 0.3,
            "{} vs {}",
            bad.score,
            good.score
        );
        // One batch per label: every label skipped, NaN.
        assert!(
            kbet_per_label(&conn, &labels, &labels, &cfg)
                .unwrap()
                .score
                .is_nan()
        );
    }
}
