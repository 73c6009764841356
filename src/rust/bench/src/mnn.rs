//! `cellweave-bench mnn`: fastMNN on a data folder (log-normalised, cosine-normalised,
//! multi-batch PCA) or on an embedding TSV.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::classic::{FastMnnConfig, MergeOrder, fast_mnn, reduced_mnn};
use cellweave_core::data::mtx::{Table, read_embedding_tsv};

use crate::classic_io::{batch_codes, log_expression, next_option, parsed, text, write_embedding};
use crate::common::peak_rss_mib;

const USAGE: &str =
    "usage: cellweave-bench mnn (--data DIR [--genes FILE] | --embedding pcs.tsv --cells cells.tsv)
       [--batch-key batch] [--target-sum 1e4] [--k 20] [--d 50] [--ndist 3] [--auto-merge] [--seed 0] --out mnn.tsv
Threads: RAYON_NUM_THREADS.";

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let (mut data, mut genes, mut embedding, mut cells, mut out): (
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
        Option<PathBuf>,
    ) = (None, None, None, None, None);
    let mut key = "batch".to_string();
    let mut target_sum = 1e4;
    let mut config = FastMnnConfig::default();
    while let Some(name) = next_option(&mut parser, USAGE)? {
        match name.as_str() {
            "data" => data = Some(text(&mut parser)?.into()),
            "genes" => genes = Some(text(&mut parser)?.into()),
            "embedding" => embedding = Some(text(&mut parser)?.into()),
            "cells" => cells = Some(text(&mut parser)?.into()),
            "out" => out = Some(text(&mut parser)?.into()),
            "batch-key" => key = text(&mut parser)?,
            "target-sum" => target_sum = parsed(&mut parser, &name)?,
            "k" => config.k = parsed(&mut parser, &name)?,
            "d" => config.pca.n_components = parsed(&mut parser, &name)?,
            "ndist" => config.ndist = parsed(&mut parser, &name)?,
            "auto-merge" => config.merge_order = MergeOrder::Auto,
            "seed" => config.pca.seed = parsed(&mut parser, &name)?,
            "help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    let out = out.ok_or(format!("--out is required\n{USAGE}"))?;
    let err = |e: cellweave_core::Error| e.to_string();
    let (ids, result, seconds) = match (data, embedding) {
        (Some(dir), None) => {
            let (x, table) = log_expression(&dir, genes.as_deref(), target_sum)?;
            let ids = table.column(&table.columns[0]).map_err(err)?;
            let (batch, _) = batch_codes(&table, &ids, &key)?;
            let start = Instant::now();
            let result = fast_mnn(&x, &batch, &config, &|| false).map_err(err)?;
            (ids, result, start.elapsed().as_secs_f64())
        }
        (None, Some(path)) => {
            let cells = cells.ok_or(format!("--cells is required with --embedding\n{USAGE}"))?;
            let (ids, x) = read_embedding_tsv(&path).map_err(err)?;
            let table = Table::read(&cells).map_err(err)?;
            let (batch, _) = batch_codes(&table, &ids, &key)?;
            let start = Instant::now();
            let result = reduced_mnn(&x, &batch, &config, &|| false).map_err(err)?;
            (ids, result, start.elapsed().as_secs_f64())
        }
        _ => return Err(format!("give either --data or --embedding\n{USAGE}")),
    };
    write_embedding(&out, &ids, &result.corrected, "MNN_")?;
    for step in &result.steps {
        println!(
            "merge {:?} <- {:?}: {} MNN pairs, batch size {:.3}{}",
            step.left,
            step.right,
            step.n_pairs,
            step.batch_size,
            if step.skipped { " (skipped)" } else { "" }
        );
    }
    println!(
        "mnn: {} cells x {} dims in {seconds:.2} s; peak RSS {:.0} MiB",
        result.corrected.n_rows,
        result.corrected.n_cols,
        peak_rss_mib()
    );
    println!("mnn seconds: {seconds:.3}");
    Ok(())
}
