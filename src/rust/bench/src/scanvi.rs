//! `cellweave-bench scanvi`: trains scVI, then scANVI from it (scvi-tools' `from_scvi_model`),
//! on a data folder with some cells labelled; reports label accuracy on the unlabelled cells
//! (scANVI and the kNN vote on the scVI latent) and seconds per epoch.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cellweave_core::data::DenseMatrix;
use cellweave_core::data::mtx::{Table, encode_labels};
use cellweave_core::device::ComputeDevice;
use cellweave_core::engine::Engine;
use cellweave_core::label_transfer::knn_vote;
use cellweave_core::models::scanvi::{
    LabelledCounts, ScanviArchitecture, ScanviModel, ScanviTraining,
};
use cellweave_core::models::scvi::{CountsAndBatch, ScviArchitecture, ScviModel};
use cellweave_core::train::{EpochRecord, TrainConfig, TrainingObserver};

use crate::common::{
    number, option_name, peak_rss_mib, process_cpu_seconds, read_folder, set_threads, value,
};

const USAGE: &str = "usage: cellweave-bench scanvi --data DIR --labels FILE [--genes FILE]
       [--batch-key batch] [--truth-key cell_type] [--scvi-epochs 400] [--epochs N]
       [--threads N] [--device cpu] [--engine host|tensor] [--seed 0] [--out-dir DIR]
       [--scvi-weights FILE]
DIR holds counts.mtx.gz (genes x cells), genes.tsv and cells.tsv (header, cell_id first).
FILE: a TSV with a header and columns cell_id and label; an empty label, NA, or a cell not
listed is unlabelled. --epochs: scANVI's (default: scvi-tools' heuristic for a pretrained model).
--out-dir gets scvi_latent.tsv, scanvi_latent.tsv and predictions.tsv.
--scvi-weights: the trained scVI's weights; read when the file exists (scVI is not trained
again: same data, genes and defaults), else written after training.";

struct Quiet;

impl TrainingObserver for Quiet {
    fn on_epoch_end(&mut self, r: &EpochRecord, max_epochs: usize) {
        if r.epoch % (max_epochs / 10).max(1) == 0 || r.epoch == max_epochs {
            eprintln!(
                "epoch {:>4}/{max_epochs}  loss {:.2}  {:.3} s",
                r.epoch, r.train.loss, r.seconds
            );
        }
    }

    fn should_stop(&mut self) -> bool {
        false
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn write_latent(path: &Path, ids: &[String], m: &DenseMatrix, prefix: &str) -> Result<(), String> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
    let header: Vec<String> = (1..=m.n_cols).map(|j| format!("{prefix}_{j}")).collect();
    writeln!(f, "cell_id\t{}", header.join("\t")).map_err(|e| e.to_string())?;
    for (i, id) in ids.iter().enumerate() {
        let row: Vec<String> = m.row(i).iter().map(|v| format!("{v:.6}")).collect();
        writeln!(f, "{id}\t{}", row.join("\t")).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Accuracy and balanced accuracy (mean per-label recall) of `pred` on the cells `rows`.
fn accuracies(pred: &[String], truth: &[String], rows: &[usize]) -> (f64, f64) {
    let mut per: HashMap<&str, (f64, f64)> = HashMap::new();
    let mut hits = 0.0;
    for &i in rows {
        let ok = (pred[i] == truth[i]) as u8 as f64;
        hits += ok;
        let e = per.entry(truth[i].as_str()).or_default();
        e.0 += ok;
        e.1 += 1.0;
    }
    let balanced = per.values().map(|(h, n)| h / n).sum::<f64>() / per.len().max(1) as f64;
    (hits / rows.len().max(1) as f64, balanced)
}

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut data: Option<PathBuf> = None;
    let mut labels_file: Option<PathBuf> = None;
    let mut genes: Option<PathBuf> = None;
    let mut out_dir: Option<PathBuf> = None;
    let mut scvi_weights: Option<PathBuf> = None;
    let mut batch_key = "batch".to_string();
    let mut truth_key = "cell_type".to_string();
    let mut scvi_epochs = 400usize;
    let mut epochs: Option<usize> = None;
    let mut threads: Option<usize> = None;
    let mut device = "cpu".to_string();
    let mut engine = "host".to_string();
    let mut seed = 0u64;
    while let Some(name) = option_name(&mut parser, USAGE)? {
        match name.as_str() {
            "data" => data = Some(value(&mut parser)?.into()),
            "labels" => labels_file = Some(value(&mut parser)?.into()),
            "genes" => genes = Some(value(&mut parser)?.into()),
            "out-dir" => out_dir = Some(value(&mut parser)?.into()),
            "scvi-weights" => scvi_weights = Some(value(&mut parser)?.into()),
            "batch-key" => batch_key = value(&mut parser)?,
            "truth-key" => truth_key = value(&mut parser)?,
            "scvi-epochs" => scvi_epochs = number(&mut parser, "scvi-epochs")?,
            "epochs" => epochs = Some(number(&mut parser, "epochs")?),
            "threads" => threads = Some(number(&mut parser, "threads")?),
            "device" => device = value(&mut parser)?,
            "engine" => engine = value(&mut parser)?,
            "seed" => seed = number(&mut parser, "seed")? as u64,
            "help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    let data = data.ok_or(format!("--data is required\n{USAGE}"))?;
    let labels_file = labels_file.ok_or(format!("--labels is required\n{USAGE}"))?;
    if let Some(t) = threads {
        set_threads(t);
    }
    let err = |e: cellweave_core::Error| e.to_string();

    let (counts, cells) = read_folder(&data, genes.as_deref())?;
    let cell_ids = cells.column("cell_id").map_err(err)?;
    let truth = cells.column(&truth_key).map_err(err)?;
    let (batch, batch_levels) = encode_labels(&cells.column(&batch_key).map_err(err)?);
    let given = Table::read(&labels_file).map_err(err)?;
    let given: HashMap<String, String> = given
        .column("cell_id")
        .map_err(err)?
        .into_iter()
        .zip(given.column("label").map_err(err)?)
        .filter(|(_, l)| !l.is_empty() && l != "NA")
        .collect();
    let mut levels: Vec<String> = given.values().cloned().collect();
    levels.sort();
    levels.dedup();
    let code: HashMap<&str, u32> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let unlabelled_code = levels.len() as u32;
    let label_codes: Vec<u32> = cell_ids
        .iter()
        .map(|id| given.get(id).map_or(unlabelled_code, |l| code[l.as_str()]))
        .collect();
    let unlabelled: Vec<usize> = (0..cell_ids.len())
        .filter(|&i| label_codes[i] == unlabelled_code)
        .collect();
    eprintln!(
        "{} cells x {} genes, {} batches, {} labels, {} cells unlabelled",
        counts.n_rows,
        counts.n_cols,
        batch_levels.len(),
        levels.len(),
        unlabelled.len()
    );

    let device = ComputeDevice::parse(&device).map_err(err)?;
    let engine = Engine::parse(&engine).map_err(err)?;
    let scvi_arch = ScviArchitecture::new(counts.n_cols, batch_levels.len());
    let input = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let t = Instant::now();
    let saved = scvi_weights.as_ref().filter(|p| p.exists());
    let scvi = match saved {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("scVI weights read from {}", path.display());
            ScviModel::from_parts(scvi_arch.clone(), &bytes, device, engine).map_err(err)?
        }
        None => ScviModel::train(
            scvi_arch.clone(),
            &TrainConfig {
                max_epochs: Some(scvi_epochs),
                seed,
                ..TrainConfig::default()
            },
            input,
            device,
            engine,
            &mut Quiet,
        )
        .map_err(err)?,
    };
    if let (Some(path), None) = (&scvi_weights, saved) {
        std::fs::write(path, scvi.weights_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let scvi_s = t.elapsed().as_secs_f64();
    let scvi_latent = scvi.latent(input).map_err(err)?;

    let arch = ScanviArchitecture {
        scvi: scvi_arch,
        n_labels: levels.len(),
        linear_classifier: false,
        hierarchy: None,
    };
    let t = Instant::now();
    let cpu_start = process_cpu_seconds();
    let scanvi = ScanviModel::train(
        arch,
        &TrainConfig {
            max_epochs: epochs,
            seed,
            ..TrainConfig::default()
        },
        ScanviTraining::default(),
        LabelledCounts {
            counts: &counts,
            batch: &batch,
            labels: &label_codes,
        },
        Some(&scvi),
        device,
        engine,
        &mut Quiet,
    )
    .map_err(err)?;
    let scanvi_s = t.elapsed().as_secs_f64();
    let scanvi_cpu = process_cpu_seconds() - cpu_start;
    let (latent, probs) = scanvi.latent_and_probabilities(input).map_err(err)?;
    let n_labels = levels.len();
    let (pred, best): (Vec<String>, Vec<f64>) = (0..probs.n_rows)
        .map(|i| {
            let row = probs.row(i);
            let c = (0..n_labels)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("labels");
            (levels[c].clone(), row[c])
        })
        .unzip();
    let seeds: Vec<Option<u32>> = label_codes
        .iter()
        .map(|&c| (c != unlabelled_code).then_some(c))
        .collect();
    let knn: Vec<String> = knn_vote(&scvi_latent, &seeds, n_labels, 10)
        .map_err(err)?
        .into_iter()
        .map(|c| levels[c as usize].clone())
        .collect();

    let scvi_epoch: Vec<f64> = scvi.history.iter().map(|r| r.seconds).collect();
    let epoch_s: Vec<f64> = scanvi.history.iter().map(|r| r.seconds).collect();
    let (acc, bal) = accuracies(&pred, &truth, &unlabelled);
    let (knn_acc, knn_bal) = accuracies(&knn, &truth, &unlabelled);
    println!("device                 {}", device.name());
    println!("threads                {}", rayon::current_num_threads());
    println!(
        "cells x genes          {} x {}",
        counts.n_rows, counts.n_cols
    );
    println!("unlabelled cells       {}", unlabelled.len());
    if scvi_epoch.is_empty() {
        println!("scVI epochs            0 (weights read)");
    } else {
        println!(
            "scVI epochs            {} ({scvi_s:.1} s, median {:.4} s/epoch)",
            scvi_epoch.len(),
            median(&scvi_epoch)
        );
    }
    println!("scANVI epochs          {}", epoch_s.len());
    println!("scANVI train seconds   {scanvi_s:.2}");
    println!(
        "scANVI seconds/epoch   {:.4} (mean {:.4})",
        median(&epoch_s),
        epoch_s.iter().sum::<f64>() / epoch_s.len() as f64
    );
    println!(
        "scANVI cpu s/epoch     {:.4}",
        scanvi_cpu / epoch_s.len() as f64
    );
    println!("accuracy unlabelled    {acc:.4} (balanced {bal:.4})");
    println!("kNN(10) on scVI        {knn_acc:.4} (balanced {knn_bal:.4})");
    println!("peak RSS MiB           {:.0}", peak_rss_mib());

    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        write_latent(
            &dir.join("scvi_latent.tsv"),
            &cell_ids,
            &scvi_latent,
            "scVI",
        )?;
        write_latent(&dir.join("scanvi_latent.tsv"), &cell_ids, &latent, "scANVI")?;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join("predictions.tsv")).map_err(|e| e.to_string())?,
        );
        writeln!(
            f,
            "cell_id\tlabelled\tprediction\tprobability\tknn_scvi\ttruth"
        )
        .map_err(|e| e.to_string())?;
        for i in 0..cell_ids.len() {
            writeln!(
                f,
                "{}\t{}\t{}\t{:.6}\t{}\t{}",
                cell_ids[i],
                seeds[i].is_some(),
                pred[i],
                best[i],
                knn[i],
                truth[i]
            )
            .map_err(|e| e.to_string())?;
        }
        eprintln!("outputs written to {}", dir.display());
    }
    Ok(())
}
