//! Conversions between R values and core types, and core errors to R errors.
//! R validates arguments first (so messages name the user's argument); these checks are the
//! last line of defence against malformed input reaching the core.

use cellweave_core::data::{CsrMatrix, DenseMatrix};
use extendr_api::Result;
use extendr_api::prelude::*;

/// A core error as an R error (its message names the argument where there is one).
pub fn r_err(e: cellweave_core::Error) -> Error {
    Error::Other(e.to_string())
}

/// Shorthand for `result.map_err(r_err)`.
pub fn to_r<T>(r: cellweave_core::Result<T>) -> Result<T> {
    r.map_err(r_err)
}

/// A `dgCMatrix` of genes x cells given as its slots (`p`, `i`, `x`, `Dim`) is a CSR matrix of
/// cells x genes.
pub fn csr_from_slots(p: &[i32], i: &[i32], x: &[f64], dim: &[i32]) -> Result<CsrMatrix> {
    if dim.len() != 2 || dim[0] < 0 || dim[1] < 0 {
        return Err(Error::Other(
            "`Dim` must hold two non-negative integers".into(),
        ));
    }
    let (n_genes, n_cells) = (dim[0] as usize, dim[1] as usize);
    let indptr: Vec<usize> = p.iter().map(|&v| v.max(0) as usize).collect();
    let indices: Vec<u32> = i.iter().map(|&v| v.max(0) as u32).collect();
    let values: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    to_r(CsrMatrix::new(n_cells, n_genes, indptr, indices, values))
}

/// A numeric R matrix (column-major, `nrow x ncol`) as a row-major dense matrix.
pub fn dense_from_r(values: &[f64], nrow: usize, ncol: usize) -> Result<DenseMatrix> {
    to_r(DenseMatrix::from_col_major(nrow, ncol, values))
}

/// A dense matrix as an R numeric matrix.
pub fn dense_to_r(m: &DenseMatrix) -> Robj {
    let cols = m.n_cols;
    let data = &m.data;
    RMatrix::new_matrix(m.n_rows, m.n_cols, |r, c| data[r * cols + c]).into()
}

/// Integer codes from R (0-based already) as u32, rejecting negatives.
pub fn codes_from_r(codes: &[i32], what: &str) -> Result<Vec<u32>> {
    codes
        .iter()
        .map(|&c| {
            if c < 0 {
                Err(Error::Other(format!(
                    "`{what}`: codes must be non-negative"
                )))
            } else {
                Ok(c as u32)
            }
        })
        .collect()
}

/// The integer values of an R integer vector, or an error naming `what`.
pub fn ints<'a>(x: &'a Robj, what: &str) -> Result<&'a [i32]> {
    x.as_integer_slice()
        .ok_or_else(|| Error::Other(format!("`{what}` must be an integer vector")))
}

/// The values of an R double vector, or an error naming `what`.
pub fn doubles<'a>(x: &'a Robj, what: &str) -> Result<&'a [f64]> {
    x.as_real_slice()
        .ok_or_else(|| Error::Other(format!("`{what}` must be a double vector")))
}

/// Named options passed from R as a list of scalars.
pub struct Options<'a>(pub &'a List);

impl Options<'_> {
    fn get(&self, name: &str) -> Result<Robj> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Other(format!("missing option `{name}`")))
    }

    pub fn f64(&self, name: &str) -> Result<f64> {
        self.get(name)?
            .as_real()
            .or_else(|| self.get(name).ok()?.as_integer().map(|v| v as f64))
            .ok_or_else(|| Error::Other(format!("option `{name}` must be a number")))
    }

    pub fn usize(&self, name: &str) -> Result<usize> {
        let v = self.f64(name)?;
        if v < 0.0 || v.fract() != 0.0 {
            return Err(Error::Other(format!(
                "option `{name}` must be a non-negative whole number"
            )));
        }
        Ok(v as usize)
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        self.get(name)?
            .as_bool()
            .ok_or_else(|| Error::Other(format!("option `{name}` must be TRUE or FALSE")))
    }

    pub fn string(&self, name: &str) -> Result<String> {
        self.get(name)?
            .as_str()
            .map(|s| s.to_string())
            .ok_or_else(|| Error::Other(format!("option `{name}` must be a string")))
    }

    /// The option, or None when it is absent or NULL (options added after a model was saved).
    pub fn optional(&self, name: &str) -> Option<Robj> {
        self.get(name).ok().filter(|v| !v.is_null())
    }

    /// A number, or None when absent or NULL.
    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        match self.optional(name) {
            None => Ok(None),
            Some(_) => self.f64(name).map(Some),
        }
    }

    /// A number, or NULL (None).
    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>> {
        if self.get(name)?.is_null() {
            Ok(None)
        } else {
            self.usize(name).map(Some)
        }
    }
}
