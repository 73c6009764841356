//! `cellweave-bench metrics`: scores embeddings from TSV files with the metric suite and prints
//! the table, per-step timings, the total time and peak memory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::data::DenseMatrix;
use cellweave_core::metrics::scib::{Metric, SuiteConfig, SuiteInputs, score_embedding};

use crate::common::peak_rss_mib;

const USAGE: &str = "usage: cellweave-bench metrics --cells CELLS.tsv --batch-key KEY --label-key KEY \
--emb NAME=FILE.tsv [--emb ...] [--unintegrated FILE.tsv] [--metrics scib|scib-full|seed|all] [--out RESULTS.tsv]
Embedding files: tab-separated, a header row, cell_id first, one column per dimension (rows in any order).
--unintegrated also scores that embedding first, as `Unintegrated` (like score_embeddings.py).";

struct Args {
    cells: PathBuf,
    batch_key: String,
    label_key: String,
    embeddings: Vec<(String, PathBuf)>,
    unintegrated: Option<PathBuf>,
    metrics: String,
    out: Option<PathBuf>,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let (mut cells, mut batch_key, mut label_key, mut unintegrated, mut out) =
        (None, None, None, None, None);
    let mut embeddings = Vec::new();
    let mut metrics = "scib".to_string();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("cells") => cells = Some(PathBuf::from(value(&mut p)?)),
            Long("batch-key") => batch_key = Some(value(&mut p)?),
            Long("label-key") => label_key = Some(value(&mut p)?),
            Long("emb") => {
                let v = value(&mut p)?;
                let (name, path) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--emb needs NAME=FILE, not `{v}`"))?;
                embeddings.push((name.to_string(), PathBuf::from(path)));
            }
            Long("unintegrated") => unintegrated = Some(PathBuf::from(value(&mut p)?)),
            Long("metrics") => metrics = value(&mut p)?,
            Long("out") => out = Some(PathBuf::from(value(&mut p)?)),
            Long("help") | Short('h') => return Err(USAGE.to_string()),
            other => return Err(format!("{}\n{USAGE}", other.unexpected())),
        }
    }
    let missing = |what: &str| format!("{what} is required\n{USAGE}");
    if embeddings.is_empty() && unintegrated.is_none() {
        return Err(missing("--emb"));
    }
    Ok(Args {
        cells: cells.ok_or_else(|| missing("--cells"))?,
        batch_key: batch_key.ok_or_else(|| missing("--batch-key"))?,
        label_key: label_key.ok_or_else(|| missing("--label-key"))?,
        embeddings,
        unintegrated,
        metrics,
        out,
    })
}

fn value(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "arguments must be UTF-8".to_string())
}

/// Cell ids and the codes (levels sorted) of two columns of cells.tsv.
fn read_cells(
    path: &PathBuf,
    batch_key: &str,
    label_key: &str,
) -> Result<(Vec<String>, Vec<u32>, Vec<u32>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("cells file is empty")?
        .split('\t')
        .collect();
    let col = |key: &str| {
        header
            .iter()
            .position(|h| *h == key)
            .ok_or_else(|| format!("cells file has no column `{key}`"))
    };
    let (bc, lc) = (col(batch_key)?, col(label_key)?);
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let codes = |c: usize| -> Result<Vec<u32>, String> {
        let mut levels: Vec<&str> = rows
            .iter()
            .map(|r| r.get(c).copied().unwrap_or(""))
            .collect();
        levels.sort_unstable();
        levels.dedup();
        rows.iter()
            .map(|r| {
                Ok(levels
                    .binary_search(&r.get(c).copied().unwrap_or(""))
                    .map_err(|_| "bad row")? as u32)
            })
            .collect()
    };
    Ok((
        rows.iter().map(|r| r[0].to_string()).collect(),
        codes(bc)?,
        codes(lc)?,
    ))
}

/// An embedding TSV with rows matched to `cells` by id.
fn read_embedding(path: &PathBuf, index: &HashMap<&str, usize>) -> Result<DenseMatrix, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let d = lines
        .next()
        .ok_or("empty embedding file")?
        .split('\t')
        .count()
        - 1;
    let mut data = vec![f64::NAN; index.len() * d];
    let mut seen = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let id = fields.next().unwrap_or("");
        let Some(&row) = index.get(id) else { continue };
        for (j, v) in fields.enumerate().take(d) {
            data[row * d + j] = v
                .parse()
                .map_err(|_| format!("{}: bad number `{v}`", path.display()))?;
        }
        seen += 1;
    }
    if seen != index.len() {
        return Err(format!(
            "{}: {seen} of {} cells found",
            path.display(),
            index.len()
        ));
    }
    DenseMatrix::new(index.len(), d, data).map_err(|e| e.to_string())
}

fn metric_set(name: &str) -> Result<Vec<Metric>, String> {
    let mut scib_full = Metric::SCIB.to_vec();
    scib_full.extend([
        Metric::LeidenNmi,
        Metric::LeidenAri,
        Metric::SilhouetteBatchClassic,
    ]);
    Ok(match name {
        "scib" => Metric::SCIB.to_vec(),
        "scib-full" => scib_full,
        "seed" => Metric::SEED
            .iter()
            .copied()
            .filter(|m| *m != Metric::KnnPurity)
            .collect(),
        "all" => Metric::ALL
            .iter()
            .copied()
            .filter(|m| *m != Metric::KnnPurity)
            .collect(),
        other => {
            return Err(format!(
                "unknown metric set `{other}` (scib, scib-full, seed, all)"
            ));
        }
    })
}

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let a = parse(args)?;
    let start = Instant::now();
    let (ids, batch, labels) = read_cells(&a.cells, &a.batch_key, &a.label_key)?;
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let unintegrated = a
        .unintegrated
        .as_ref()
        .map(|p| read_embedding(p, &index))
        .transpose()?;
    let mut embeddings = Vec::new();
    if let Some(u) = &unintegrated {
        embeddings.push(("Unintegrated".to_string(), u.clone()));
    }
    for (name, path) in &a.embeddings {
        embeddings.push((name.clone(), read_embedding(path, &index)?));
    }
    let read_s = start.elapsed().as_secs_f64();
    let config = SuiteConfig {
        metrics: metric_set(&a.metrics)?,
        ..Default::default()
    };
    let inputs = SuiteInputs {
        batch: &batch,
        labels: &labels,
        unintegrated: unintegrated.as_ref(),
        references: None,
    };
    let scoring = Instant::now();
    let mut table: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for (name, x) in &embeddings {
        let t = Instant::now();
        let scores =
            score_embedding(x, &inputs, &config, &|| false).map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "{name}: {} cells x {} dims, {:.2} s",
            x.n_rows,
            x.n_cols,
            t.elapsed().as_secs_f64()
        );
        for (step, s) in &scores.timings {
            eprintln!("    {step:<40} {s:8.3} s");
        }
        for w in &scores.warnings {
            eprintln!("    warning: {w}");
        }
        let mut row: Vec<(String, f64)> = scores
            .values
            .iter()
            .map(|(m, v)| (m.name().to_string(), *v))
            .collect();
        row.push(("Batch correction".into(), scores.batch_correction));
        row.push(("Bio conservation".into(), scores.bio_conservation));
        row.push(("Total".into(), scores.total));
        table.push((name.clone(), row));
    }
    let scoring_s = scoring.elapsed().as_secs_f64();
    let mut text = String::from("Embedding");
    for (col, _) in &table[0].1 {
        text.push('\t');
        text.push_str(col);
    }
    text.push('\n');
    for (name, row) in &table {
        text.push_str(name);
        for (_, v) in row {
            text.push_str(&format!("\t{v:.6}"));
        }
        text.push('\n');
    }
    print!("{text}");
    if let Some(out) = &a.out {
        std::fs::File::create(out)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    println!(
        "cellweave seconds: {scoring_s:.2} (scoring {} embeddings of {} cells; reading files {read_s:.2} s; threads {}); peak RSS {:.0} MiB",
        embeddings.len(),
        ids.len(),
        rayon_threads(),
        peak_rss_mib()
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
