//! `cellweave-bench harmony`: Harmony on an embedding TSV (e.g. the output of `pca`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::classic::{HarmonyConfig, harmony};
use cellweave_core::data::mtx::{Table, read_embedding_tsv};

use crate::classic_io::{batch_codes, cpu_seconds, next_option, parsed, text, write_embedding};
use crate::common::peak_rss_mib;

const USAGE: &str =
    "usage: cellweave-bench harmony --embedding pca.tsv --cells cells.tsv [--batch-key batch]...
       [--theta 2] [--lambda 1] [--sigma 0.1] [--nclust K] [--max-iter 10] [--max-iter-cluster 20]
       [--epsilon-cluster 1e-5] [--epsilon-harmony 1e-4] [--seed 0] --out harmony.tsv
Repeat --batch-key for several batch variables. Threads: RAYON_NUM_THREADS.";

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let (mut embedding, mut cells, mut out): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
    let mut keys: Vec<String> = Vec::new();
    let mut config = HarmonyConfig::default();
    while let Some(name) = next_option(&mut parser, USAGE)? {
        match name.as_str() {
            "embedding" => embedding = Some(text(&mut parser)?.into()),
            "cells" => cells = Some(text(&mut parser)?.into()),
            "out" => out = Some(text(&mut parser)?.into()),
            "batch-key" => keys.push(text(&mut parser)?),
            "theta" => config.theta = vec![parsed(&mut parser, &name)?],
            "lambda" => config.lambda = vec![parsed(&mut parser, &name)?],
            "sigma" => config.sigma = parsed(&mut parser, &name)?,
            "nclust" => config.n_clusters = Some(parsed(&mut parser, &name)?),
            "max-iter" => config.max_iter = parsed(&mut parser, &name)?,
            "max-iter-cluster" => config.max_iter_cluster = parsed(&mut parser, &name)?,
            "epsilon-cluster" => config.epsilon_cluster = parsed(&mut parser, &name)?,
            "epsilon-harmony" => config.epsilon_harmony = parsed(&mut parser, &name)?,
            "seed" => config.seed = parsed(&mut parser, &name)?,
            "help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    let embedding = embedding.ok_or(format!("--embedding is required\n{USAGE}"))?;
    let cells = cells.ok_or(format!("--cells is required\n{USAGE}"))?;
    let out = out.ok_or(format!("--out is required\n{USAGE}"))?;
    if keys.is_empty() {
        keys.push("batch".into());
    }
    let (ids, x) = read_embedding_tsv(&embedding).map_err(|e| e.to_string())?;
    let table = Table::read(&cells).map_err(|e| e.to_string())?;
    let batches = keys
        .iter()
        .map(|k| batch_codes(&table, &ids, k).map(|(codes, _)| codes))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let result = harmony(&x, &batches, &config, &|| false, &mut |round, objective| {
        eprintln!("round {round}: objective {objective:.4}");
    })
    .map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    write_embedding(&out, &ids, &result.embedding, "harmony_")?;
    println!(
        "harmony: {} cells x {} dims, K = {}, {} rounds ({} clustering iterations), converged: {}; {seconds:.2} s; peak RSS {:.0} MiB",
        x.n_rows,
        x.n_cols,
        result.n_clusters,
        result.cluster_iterations.len(),
        result.cluster_iterations.iter().sum::<usize>(),
        result.converged,
        peak_rss_mib()
    );
    println!("harmony seconds: {seconds:.3}");
    println!("harmony cpu seconds: {cpu:.3}");
    Ok(())
}
