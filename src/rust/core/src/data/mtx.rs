//! Reading the shared data folders: MatrixMarket counts (genes x cells, optionally gzipped),
//! `genes.tsv` (no header) and `cells.tsv` (header, cell_id first).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{CsrMatrix, DenseMatrix};
use crate::error::{Error, Result};

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path)
        .map_err(|e| Error::Format(format!("cannot open {}: {e}", path.display())))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// Reads a MatrixMarket coordinate file of genes x cells and returns cells x genes (CSR).
pub fn read_mtx_genes_by_cells(path: &Path) -> Result<CsrMatrix> {
    let bad = |m: String| Error::Format(format!("{}: {m}", path.display()));
    let mut lines = open(path)?.lines();
    let header = lines.next().ok_or_else(|| bad("empty file".into()))??;
    if !header.starts_with("%%MatrixMarket matrix coordinate") {
        return Err(bad("not a MatrixMarket coordinate file".into()));
    }
    let symmetric = header.contains("symmetric");
    if symmetric {
        return Err(bad("symmetric matrices are not supported".into()));
    }
    let mut size_line = None;
    for line in lines.by_ref() {
        let line = line?;
        if !line.starts_with('%') && !line.trim().is_empty() {
            size_line = Some(line);
            break;
        }
    }
    let size_line = size_line.ok_or_else(|| bad("missing size line".into()))?;
    let dims: Vec<usize> = size_line
        .split_whitespace()
        .map(|t| {
            t.parse()
                .map_err(|_| bad(format!("bad size line `{size_line}`")))
        })
        .collect::<Result<_>>()?;
    if dims.len() != 3 {
        return Err(bad(format!("bad size line `{size_line}`")));
    }
    let (n_genes, n_cells, nnz) = (dims[0], dims[1], dims[2]);
    let mut triples: Vec<(u32, u32, f32)> = Vec::with_capacity(nnz);
    for line in lines {
        let line = line?;
        let mut it = line.split_ascii_whitespace();
        let (Some(g), Some(c), Some(v)) = (it.next(), it.next(), it.next()) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad(format!("bad entry `{line}`")));
        };
        let g: usize = g.parse().map_err(|_| bad(format!("bad entry `{line}`")))?;
        let c: usize = c.parse().map_err(|_| bad(format!("bad entry `{line}`")))?;
        let v: f32 = v.parse().map_err(|_| bad(format!("bad entry `{line}`")))?;
        if g == 0 || g > n_genes || c == 0 || c > n_cells {
            return Err(bad(format!("entry out of range `{line}`")));
        }
        triples.push(((c - 1) as u32, (g - 1) as u32, v));
    }
    if triples.len() != nnz {
        return Err(bad(format!(
            "expected {nnz} entries, found {}",
            triples.len()
        )));
    }
    triples.sort_unstable_by_key(|t| (t.0, t.1));
    let mut indptr = vec![0usize; n_cells + 1];
    for t in &triples {
        indptr[t.0 as usize + 1] += 1;
    }
    for i in 0..n_cells {
        indptr[i + 1] += indptr[i];
    }
    let indices = triples.iter().map(|t| t.1).collect();
    let values = triples.iter().map(|t| t.2).collect();
    CsrMatrix::new(n_cells, n_genes, indptr, indices, values)
}

/// First column of each line of a header-less TSV (e.g. `genes.tsv`, a gene list).
pub fn read_first_column(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in open(path)?.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(line.split('\t').next().unwrap_or("").trim().to_string());
    }
    Ok(out)
}

/// A TSV with a header: column names and rows of fields.
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table> {
        let mut lines = open(path)?.lines();
        let header = lines
            .next()
            .ok_or_else(|| Error::Format(format!("{}: empty file", path.display())))??;
        let columns: Vec<String> = header.split('\t').map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        for line in lines {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            rows.push(line.split('\t').map(|s| s.to_string()).collect());
        }
        Ok(Table { columns, rows })
    }

    /// The values of column `name`.
    pub fn column(&self, name: &str) -> Result<Vec<String>> {
        let j = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::invalid(name, format!("no column `{name}` in the table")))?;
        Ok(self
            .rows
            .iter()
            .map(|r| r.get(j).cloned().unwrap_or_default())
            .collect())
    }
}

/// Reads an embedding TSV (header, cell_id first, then one column per dimension).
/// Returns the cell ids and the matrix in file order.
pub fn read_embedding_tsv(path: &Path) -> Result<(Vec<String>, DenseMatrix)> {
    let table = Table::read(path)?;
    let n_cols = table.columns.len().saturating_sub(1);
    let mut ids = Vec::with_capacity(table.rows.len());
    let mut data = Vec::with_capacity(table.rows.len() * n_cols);
    for row in &table.rows {
        if row.len() != n_cols + 1 {
            return Err(Error::Format(format!(
                "{}: a row has {} fields, the header {}",
                path.display(),
                row.len(),
                n_cols + 1
            )));
        }
        ids.push(row[0].clone());
        for v in &row[1..] {
            data.push(v.parse::<f64>().map_err(|_| {
                Error::Format(format!("{}: `{v}` is not a number", path.display()))
            })?);
        }
    }
    let m = DenseMatrix::new(ids.len(), n_cols, data)?;
    Ok((ids, m))
}

/// Encodes labels as codes 0..k in order of first appearance; returns (codes, levels).
pub fn encode_labels(values: &[String]) -> (Vec<u32>, Vec<String>) {
    let mut levels: Vec<String> = Vec::new();
    let mut map = std::collections::HashMap::new();
    let codes = values
        .iter()
        .map(|v| {
            *map.entry(v.clone()).or_insert_with(|| {
                levels.push(v.clone());
                (levels.len() - 1) as u32
            })
        })
        .collect();
    (codes, levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_gzipped_matrix_market_as_cells_by_genes() {
        let dir = std::env::temp_dir().join(format!("cellweave-mtx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counts.mtx.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        // 3 genes x 2 cells: cell 1 has gene 1 = 5 and gene 3 = 1; cell 2 has gene 2 = 2.
        write!(gz, "%%MatrixMarket matrix coordinate integer general\n% a comment\n3 2 3\n3 1 1\n1 1 5\n2 2 2\n").unwrap();
        gz.finish().unwrap();
        let m = read_mtx_genes_by_cells(&path).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 3));
        assert_eq!(m.row(0), (&[0u32, 2][..], &[5f32, 1.0][..]));
        assert_eq!(m.row(1), (&[1u32][..], &[2f32][..]));

        let bad = dir.join("bad.mtx");
        std::fs::write(
            &bad,
            "%%MatrixMarket matrix coordinate integer general\n2 2 1\n3 1 1\n",
        )
        .unwrap();
        assert!(
            read_mtx_genes_by_cells(&bad)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_are_coded_in_order_of_appearance() {
        let values: Vec<String> = ["b", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (codes, levels) = encode_labels(&values);
        assert_eq!(codes, vec![0, 1, 0, 2]);
        assert_eq!(levels, vec!["b", "a", "c"]);
    }
}
