//! Principal component regression (Büttner et al. 2019) and scIB's PCR comparison.
//!
//! scib-metrics regresses every principal component (all of them) on the centred one-hot batch
//! and weights each R^2 by the component's variance. Because the components are a rotation of
//! the centred data, sum_i R^2_i var_i / sum_i var_i equals the share of the total sum of
//! squares explained by batch means (between-batch SS / total SS), which is computed here
//! directly in O(n d), without an SVD.

use super::{Groups, check_len};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// Share of the variance of `x` explained by `batch` (0..1).
pub fn pcr(x: &DenseMatrix, batch: &[u32]) -> Result<f64> {
    check_len(batch, x.n_rows, "batch")?;
    let groups = Groups::new(batch, "batch")?;
    let d = x.n_cols;
    let mut means = vec![vec![0.0f64; d]; groups.n_groups];
    let mut total = vec![0.0f64; d];
    for i in 0..x.n_rows {
        let g = groups.codes[i] as usize;
        for (j, v) in x.row(i).iter().enumerate() {
            means[g][j] += v;
            total[j] += v;
        }
    }
    let n = x.n_rows as f64;
    total.iter_mut().for_each(|t| *t /= n);
    for (g, m) in means.iter_mut().enumerate() {
        m.iter_mut().for_each(|v| *v /= groups.counts[g] as f64);
    }
    let mut tss = 0.0;
    for i in 0..x.n_rows {
        tss += x
            .row(i)
            .iter()
            .zip(&total)
            .map(|(v, m)| (v - m) * (v - m))
            .sum::<f64>();
    }
    let ess: f64 = means
        .iter()
        .zip(&groups.counts)
        .map(|(m, &c)| {
            c as f64
                * m.iter()
                    .zip(&total)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
        })
        .sum();
    if tss <= 0.0 {
        return Err(Error::invalid("x", "has no variance"));
    }
    Ok(ess / tss)
}

/// PCR comparison: (PCR before - PCR after) / PCR before, floored at 0 (1 = batch variance
/// removed). `None` when the unintegrated embedding has no batch variance to remove.
pub fn pcr_comparison(
    unintegrated: &DenseMatrix,
    integrated: &DenseMatrix,
    batch: &[u32],
) -> Result<Option<f64>> {
    if unintegrated.n_rows != integrated.n_rows {
        return Err(Error::invalid(
            "unintegrated",
            format!(
                "has {} cells, the embedding {}",
                unintegrated.n_rows, integrated.n_rows
            ),
        ));
    }
    let before = pcr(unintegrated, batch)?;
    let after = pcr(integrated, batch)?;
    if before <= 0.0 {
        return Ok(None);
    }
    Ok(Some(((before - after) / before).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;

    #[test]
    fn pure_batch_shift_is_explained() {
        // Two batches at +-1 on one axis, no other variance: PCR = 1.
        let x = DenseMatrix::new(4, 2, vec![1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0]).unwrap();
        assert!((pcr(&x, &[0, 0, 1, 1]).unwrap() - 1.0).abs() < 1e-12);
        assert!(pcr(&x, &[0, 1, 0, 1]).unwrap().abs() < 1e-12);
    }

    #[test]
    fn agrees_with_scib_metrics_on_kang() {
        let cells = kang_cells();
        let pre = kang_embedding("pca50");
        for emb in ["pca10", "harmony50"] {
            let got = pcr_comparison(&pre, &kang_embedding(emb), &cells.batch)
                .unwrap()
                .unwrap();
            let expected = kang_reference(emb, "PCR comparison");
            assert!((got - expected).abs() < 1e-3, "{emb}: {got} vs {expected}");
        }
        assert_eq!(pcr_comparison(&pre, &pre, &cells.batch).unwrap(), Some(0.0));
    }
}
