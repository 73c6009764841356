//! NMI (arithmetic normalisation) and ARI between two partitions, as scikit-learn defines them.

use super::{Groups, check_len};
use crate::error::Result;

/// Contingency counts of two partitions, with the row and column sums.
struct Contingency {
    table: Vec<Vec<u64>>,
    rows: Vec<u64>,
    cols: Vec<u64>,
    n: u64,
}

fn contingency(a: &[u32], b: &[u32]) -> Result<Contingency> {
    check_len(b, a.len(), "clusters")?;
    let ga = Groups::new(a, "labels")?;
    let gb = Groups::new(b, "clusters")?;
    let mut table = vec![vec![0u64; gb.n_groups]; ga.n_groups];
    for (x, y) in ga.codes.iter().zip(&gb.codes) {
        table[*x as usize][*y as usize] += 1;
    }
    Ok(Contingency {
        table,
        rows: ga.counts.iter().map(|&c| c as u64).collect(),
        cols: gb.counts.iter().map(|&c| c as u64).collect(),
        n: a.len() as u64,
    })
}

fn entropy(counts: &[u64], n: u64) -> f64 {
    let n = n as f64;
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            p * p.ln()
        })
        .sum::<f64>()
}

/// Normalised mutual information, MI / mean(H(a), H(b)); 1 when both are single partitions.
pub fn nmi(a: &[u32], b: &[u32]) -> Result<f64> {
    let c = contingency(a, b)?;
    if c.rows.len() == 1 && c.cols.len() == 1 {
        return Ok(1.0);
    }
    let n = c.n as f64;
    let mut mi = 0.0;
    for (i, row) in c.table.iter().enumerate() {
        for (j, &nij) in row.iter().enumerate() {
            if nij > 0 {
                let nij = nij as f64;
                mi += nij / n * (nij * n / (c.rows[i] as f64 * c.cols[j] as f64)).ln();
            }
        }
    }
    let h = 0.5 * (entropy(&c.rows, c.n) + entropy(&c.cols, c.n));
    Ok((mi.max(0.0) / h.max(f64::EPSILON)).min(1.0))
}

fn comb2(x: u64) -> f64 {
    let x = x as f64;
    x * (x - 1.0) / 2.0
}

/// Adjusted Rand index (1 for identical partitions, ~0 for independent ones).
pub fn ari(a: &[u32], b: &[u32]) -> Result<f64> {
    let c = contingency(a, b)?;
    let n_rows = c.rows.len();
    let n_cols = c.cols.len();
    // scikit-learn's special cases: both trivial, or both all-singletons.
    if (n_rows == 1 && n_cols == 1) || (n_rows as u64 == c.n && n_cols as u64 == c.n) || c.n == 0 {
        return Ok(1.0);
    }
    let sum_cells: f64 = c.table.iter().flatten().map(|&v| comb2(v)).sum();
    let sum_rows: f64 = c.rows.iter().map(|&v| comb2(v)).sum();
    let sum_cols: f64 = c.cols.iter().map(|&v| comb2(v)).sum();
    let expected = sum_rows * sum_cols / comb2(c.n);
    let max = 0.5 * (sum_rows + sum_cols);
    if max == expected {
        return Ok(1.0);
    }
    Ok((sum_cells - expected) / (max - expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Values from scikit-learn 1.x.
        let a = [0, 0, 0, 1, 1, 1];
        let b = [0, 0, 1, 1, 2, 2];
        assert!((nmi(&a, &b).unwrap() - 0.5158037429793889).abs() < 1e-12);
        assert!((ari(&a, &b).unwrap() - 0.24242424242424246).abs() < 1e-12);
        assert_eq!(nmi(&a, &[5, 5, 5, 7, 7, 7]).unwrap(), 1.0);
        assert_eq!(ari(&a, &[5, 5, 5, 7, 7, 7]).unwrap(), 1.0);
        assert!(ari(&[0, 1, 0, 1], &[0, 0, 1, 1]).unwrap() < 0.0);
    }
}
