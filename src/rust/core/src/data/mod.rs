//! Plain data types at the boundary of the core: sparse counts and dense row-major matrices.

pub mod mtx;

use crate::error::{Error, Result};

/// Sparse counts, one row per cell (CSR). An R `dgCMatrix` of genes x cells has exactly
/// this layout (its column pointers are our row pointers), so conversion is a copy, not a
/// transpose.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    /// `n_rows + 1` offsets into `indices` / `values`.
    pub indptr: Vec<usize>,
    /// Column index of each stored value, sorted within a row.
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl CsrMatrix {
    /// Checks the structure (offsets, index bounds, sorted columns) and returns the matrix.
    pub fn new(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        let bad = |m: &str| Err(Error::Format(format!("malformed sparse matrix: {m}")));
        if indptr.len() != n_rows + 1 || indptr[0] != 0 {
            return bad("row offsets do not match the number of rows");
        }
        if indices.len() != values.len() || *indptr.last().unwrap() != indices.len() {
            return bad("offsets, indices and values disagree in length");
        }
        for r in 0..n_rows {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if a > b {
                return bad("row offsets decrease");
            }
            let row = &indices[a..b];
            if row.iter().any(|&c| c as usize >= n_cols) {
                return bad("column index out of range");
            }
            if row.windows(2).any(|w| w[0] >= w[1]) {
                return bad("column indices not strictly increasing within a row");
            }
        }
        Ok(Self {
            n_rows,
            n_cols,
            indptr,
            indices,
            values,
        })
    }

    /// The stored (column, value) pairs of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Sum of each row.
    pub fn row_sums(&self) -> Vec<f64> {
        (0..self.n_rows)
            .map(|r| self.row(r).1.iter().map(|&v| v as f64).sum())
            .collect()
    }

    /// The rows `rows`, in that order, as a new matrix.
    pub fn select_rows(&self, rows: &[usize]) -> CsrMatrix {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0);
        let nnz: usize = rows
            .iter()
            .map(|&r| self.indptr[r + 1] - self.indptr[r])
            .sum();
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        for &r in rows {
            let (c, v) = self.row(r);
            indices.extend_from_slice(c);
            values.extend_from_slice(v);
            indptr.push(indices.len());
        }
        CsrMatrix {
            n_rows: rows.len(),
            n_cols: self.n_cols,
            indptr,
            indices,
            values,
        }
    }

    /// Keeps the columns `cols` (in that order), renumbered 0..cols.len().
    pub fn select_cols(&self, cols: &[usize]) -> CsrMatrix {
        let mut new_index = vec![u32::MAX; self.n_cols];
        for (j, &c) in cols.iter().enumerate() {
            new_index[c] = j as u32;
        }
        let mut indptr = Vec::with_capacity(self.n_rows + 1);
        indptr.push(0);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        let mut row_buf: Vec<(u32, f32)> = Vec::new();
        for r in 0..self.n_rows {
            let (c, v) = self.row(r);
            row_buf.clear();
            row_buf.extend(
                c.iter()
                    .zip(v)
                    .filter(|(c, _)| new_index[**c as usize] != u32::MAX)
                    .map(|(c, v)| (new_index[*c as usize], *v)),
            );
            row_buf.sort_unstable_by_key(|e| e.0);
            for &(c, v) in &row_buf {
                indices.push(c);
                values.push(v);
            }
            indptr.push(indices.len());
        }
        CsrMatrix {
            n_rows: self.n_rows,
            n_cols: cols.len(),
            indptr,
            indices,
            values,
        }
    }

    /// Writes rows `rows` densely into `out` (row-major, `rows.len() x n_cols`).
    /// Used to densify one minibatch at a time, never the whole matrix.
    pub fn densify_rows_into(&self, rows: &[usize], out: &mut [f32]) {
        debug_assert_eq!(out.len(), rows.len() * self.n_cols);
        out.fill(0.0);
        for (i, &r) in rows.iter().enumerate() {
            let dst = &mut out[i * self.n_cols..(i + 1) * self.n_cols];
            let (c, v) = self.row(r);
            for (&c, &v) in c.iter().zip(v) {
                dst[c as usize] = v;
            }
        }
    }
}

/// A dense row-major matrix of f64 (cells x dimensions for embeddings).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    pub data: Vec<f64>,
}

impl DenseMatrix {
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != n_rows * n_cols {
            return Err(Error::Format(format!(
                "dense matrix of {n_rows} x {n_cols} needs {} values, got {}",
                n_rows * n_cols,
                data.len()
            )));
        }
        Ok(Self {
            n_rows,
            n_cols,
            data,
        })
    }

    pub fn zeros(n_rows: usize, n_cols: usize) -> Self {
        Self {
            n_rows,
            n_cols,
            data: vec![0.0; n_rows * n_cols],
        }
    }

    /// From column-major values (R's layout).
    pub fn from_col_major(n_rows: usize, n_cols: usize, col_major: &[f64]) -> Result<Self> {
        let mut m = Self::zeros(n_rows, n_cols);
        if col_major.len() != n_rows * n_cols {
            return Err(Error::Format(
                "column-major data has the wrong length".into(),
            ));
        }
        for j in 0..n_cols {
            for i in 0..n_rows {
                m.data[i * n_cols + j] = col_major[j * n_rows + i];
            }
        }
        Ok(m)
    }

    /// Column-major copy (R's layout).
    pub fn to_col_major(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.data.len()];
        for i in 0..self.n_rows {
            for j in 0..self.n_cols {
                out[j * self.n_rows + i] = self.data[i * self.n_cols + j];
            }
        }
        out
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// The rows `rows`, in that order (indices must be in range).
    pub fn select_rows(&self, rows: &[usize]) -> DenseMatrix {
        let mut data = Vec::with_capacity(rows.len() * self.n_cols);
        for &r in rows {
            data.extend_from_slice(self.row(r));
        }
        DenseMatrix {
            n_rows: rows.len(),
            n_cols: self.n_cols,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> CsrMatrix {
        // [[1, 0, 2], [0, 0, 0], [0, 3, 4]]
        CsrMatrix::new(
            3,
            3,
            vec![0, 2, 2, 4],
            vec![0, 2, 1, 2],
            vec![1., 2., 3., 4.],
        )
        .unwrap()
    }

    #[test]
    fn structure_is_checked() {
        assert!(CsrMatrix::new(1, 2, vec![0, 2], vec![1, 0], vec![1., 1.]).is_err());
        assert!(CsrMatrix::new(1, 2, vec![0, 1], vec![2], vec![1.]).is_err());
        assert!(CsrMatrix::new(2, 2, vec![0, 1], vec![0], vec![1.]).is_err());
    }

    #[test]
    fn select_and_densify() {
        let m = example();
        assert_eq!(m.row_sums(), vec![3.0, 0.0, 7.0]);
        let sub = m.select_rows(&[2, 0]).select_cols(&[2, 0]);
        let mut dense = vec![0f32; 4];
        sub.densify_rows_into(&[0, 1], &mut dense);
        assert_eq!(dense, vec![4., 0., 2., 1.]);
    }

    #[test]
    fn col_major_round_trip() {
        let m = DenseMatrix::from_col_major(2, 3, &[1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!(m.row(0), &[1., 3., 5.]);
        assert_eq!(m.to_col_major(), vec![1., 2., 3., 4., 5., 6.]);
    }
}
