//! Inputs and outputs shared by the `pca`, `harmony` and `mnn` commands: a data folder
//! (counts.mtx.gz genes x cells, genes.tsv, cells.tsv), gene lists, embedding TSVs and options.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use cellweave_core::data::mtx::{Table, read_first_column, read_mtx_genes_by_cells};
use cellweave_core::data::{CsrMatrix, DenseMatrix};
use cellweave_core::pca::log_normalize;

use crate::common::gene_columns;

/// Log-normalised expression (library size over ALL genes, then log1p) of a data folder,
/// restricted to the genes listed in `genes` (in that order) when given; with the cell table.
pub fn log_expression(
    dir: &Path,
    genes: Option<&Path>,
    target_sum: f64,
) -> Result<(CsrMatrix, Table), String> {
    let err = |e: cellweave_core::Error| e.to_string();
    let counts = read_mtx_genes_by_cells(&dir.join("counts.mtx.gz")).map_err(err)?;
    let gene_ids = read_first_column(&dir.join("genes.tsv")).map_err(err)?;
    let cells = Table::read(&dir.join("cells.tsv")).map_err(err)?;
    if cells.rows.len() != counts.n_rows || gene_ids.len() != counts.n_cols {
        return Err("counts.mtx.gz, genes.tsv and cells.tsv disagree in size".into());
    }
    let mut x = log_normalize(&counts, target_sum).map_err(err)?;
    if let Some(path) = genes {
        let cols = gene_columns(&gene_ids, path)?;
        x = x.select_cols(&cols);
    }
    Ok((x, cells))
}

/// Integer codes of `key` in the cell table, matched to `ids` (cell ids in embedding order).
pub fn batch_codes(
    cells: &Table,
    ids: &[String],
    key: &str,
) -> Result<(Vec<u32>, Vec<String>), String> {
    let cell_ids = cells.column(&cells.columns[0]).map_err(|e| e.to_string())?;
    let values = cells.column(key).map_err(|e| e.to_string())?;
    let by_id: HashMap<&str, &str> = cell_ids
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();
    let mut levels: Vec<String> = values.clone();
    levels.sort();
    levels.dedup();
    let codes = ids
        .iter()
        .map(|id| {
            let v = by_id
                .get(id.as_str())
                .ok_or(format!("cell `{id}` is not in the cell table"))?;
            Ok(levels.iter().position(|l| l == v).unwrap_or(0) as u32)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((codes, levels))
}

/// Writes an embedding TSV: header `cell_id<TAB>PREFIX1...`, one row per cell.
pub fn write_embedding(
    path: &Path,
    ids: &[String],
    m: &DenseMatrix,
    prefix: &str,
) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let header: Vec<String> = (1..=m.n_cols).map(|j| format!("{prefix}{j}")).collect();
    let io = |e: std::io::Error| e.to_string();
    writeln!(w, "cell_id\t{}", header.join("\t")).map_err(io)?;
    for (i, id) in ids.iter().enumerate() {
        let row: Vec<String> = m.row(i).iter().map(|v| format!("{v:.7}")).collect();
        writeln!(w, "{id}\t{}", row.join("\t")).map_err(io)?;
    }
    Ok(())
}

/// The next `--name` of the command line, or None at the end.
pub fn next_option(parser: &mut lexopt::Parser, usage: &str) -> Result<Option<String>, String> {
    match parser.next().map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(lexopt::Arg::Long(name)) => Ok(Some(name.to_string())),
        Some(lexopt::Arg::Short('h')) => Ok(Some("help".into())),
        Some(other) => Err(format!("unexpected argument {other:?}\n{usage}")),
    }
}

pub fn text(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v: OsString| format!("not valid text: {v:?}"))
}

pub fn parsed<T: std::str::FromStr>(parser: &mut lexopt::Parser, name: &str) -> Result<T, String> {
    let v = text(parser)?;
    v.parse()
        .map_err(|_| format!("--{name}: cannot read `{v}`"))
}

/// CPU time (user + system, all threads) this process has used, in seconds (Linux
/// /proc/self/stat; NaN elsewhere). On a busy machine it measures work better than wall time.
pub fn cpu_seconds() -> f64 {
    let ticks_per_second = 100.0; // USER_HZ, 100 on every Linux configuration in use
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks_per_second)
        })
        .unwrap_or(f64::NAN)
}
