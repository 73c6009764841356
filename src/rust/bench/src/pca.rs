//! `cellweave-bench pca`: log-normalised PCA of a data folder, written as an embedding TSV.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::pca::{PcaConfig, pca};

use crate::classic_io::{log_expression, next_option, parsed, text, write_embedding};
use crate::common::peak_rss_mib;

const USAGE: &str =
    "usage: cellweave-bench pca --data DIR [--genes FILE] [--n-comps 50] [--target-sum 10000]
       [--scale] [--n-iter 4] [--seed 0] --out pca.tsv
Library-size normalisation over all genes + log1p, then the genes of FILE, centred PCA.
Threads: RAYON_NUM_THREADS.";

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let (mut data, mut genes, mut out): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
    let mut config = PcaConfig::default();
    let mut target_sum = 1e4;
    while let Some(name) = next_option(&mut parser, USAGE)? {
        match name.as_str() {
            "data" => data = Some(text(&mut parser)?.into()),
            "genes" => genes = Some(text(&mut parser)?.into()),
            "out" => out = Some(text(&mut parser)?.into()),
            "n-comps" => config.n_components = parsed(&mut parser, &name)?,
            "target-sum" => target_sum = parsed(&mut parser, &name)?,
            "scale" => config.scale = true,
            "n-iter" => config.n_iter = parsed(&mut parser, &name)?,
            "seed" => config.seed = parsed(&mut parser, &name)?,
            "help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    let data = data.ok_or(format!("--data is required\n{USAGE}"))?;
    let out = out.ok_or(format!("--out is required\n{USAGE}"))?;
    let (x, cells) = log_expression(&data, genes.as_deref(), target_sum)?;
    let start = Instant::now();
    let fitted = pca(&x, &config).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let ids = cells.column(&cells.columns[0]).map_err(|e| e.to_string())?;
    write_embedding(&out, &ids, &fitted.scores, "PC")?;
    let explained: f64 = fitted.variance.iter().sum::<f64>() / fitted.total_variance;
    println!(
        "pca: {} cells x {} genes -> {} components in {seconds:.2} s; variance explained {:.1}%; peak RSS {:.0} MiB",
        x.n_rows,
        x.n_cols,
        config.n_components,
        100.0 * explained,
        peak_rss_mib()
    );
    Ok(())
}
