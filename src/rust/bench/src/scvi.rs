//! `cellweave-bench scvi`: trains scVI on a data folder and reports speed and memory.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::data::mtx::encode_labels;
use cellweave_core::device::ComputeDevice;
use cellweave_core::distributions::GeneLikelihood;
use cellweave_core::engine::Engine;
use cellweave_core::models::scvi::{CountsAndBatch, ScviArchitecture, ScviModel};
use cellweave_core::train::{EpochRecord, TrainConfig, TrainingObserver};

use crate::common::{
    number, option_name, peak_rss_mib, process_cpu_seconds, read_folder, set_threads, value,
};

const USAGE: &str =
    "usage: cellweave-bench scvi --data DIR [--genes FILE] [--batch-key batch] [--epochs N]
       [--threads N] [--device cpu|cpu:flex|cpu:ndarray] [--engine host|tensor]
       [--likelihood zinb|nb] [--seed 0]
       [--max-cells N] [--out latent.tsv]
DIR holds counts.mtx.gz (genes x cells), genes.tsv and cells.tsv (header, cell_id first).";

pub struct Progress {
    pub every: usize,
}

impl TrainingObserver for Progress {
    fn on_epoch_end(&mut self, r: &EpochRecord, max_epochs: usize) {
        if r.epoch % self.every == 0 || r.epoch == max_epochs {
            eprintln!(
                "epoch {:>4}/{max_epochs}  loss {:.2}  validation ELBO {:.2}  {:.3} s",
                r.epoch,
                r.train.loss,
                r.validation.as_ref().map_or(f64::NAN, |v| v.elbo),
                r.seconds
            );
        }
    }

    fn should_stop(&mut self) -> bool {
        false
    }
}

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut data: Option<PathBuf> = None;
    let mut genes: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut batch_key = "batch".to_string();
    let mut epochs: Option<usize> = None;
    let mut threads: Option<usize> = None;
    let mut device = "cpu".to_string();
    let mut engine = "host".to_string();
    let mut likelihood = "zinb".to_string();
    let mut seed = 0u64;
    let mut max_cells: Option<usize> = None;
    while let Some(name) = option_name(&mut parser, USAGE)? {
        match name.as_str() {
            "data" => data = Some(value(&mut parser)?.into()),
            "genes" => genes = Some(value(&mut parser)?.into()),
            "out" => out = Some(value(&mut parser)?.into()),
            "batch-key" => batch_key = value(&mut parser)?,
            "epochs" => epochs = Some(number(&mut parser, "epochs")?),
            "threads" => threads = Some(number(&mut parser, "threads")?),
            "device" => device = value(&mut parser)?,
            "engine" => engine = value(&mut parser)?,
            "likelihood" => likelihood = value(&mut parser)?,
            "seed" => seed = number(&mut parser, "seed")? as u64,
            "max-cells" => max_cells = Some(number(&mut parser, "max-cells")?),
            "help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    let data = data.ok_or(format!("--data is required\n{USAGE}"))?;
    if let Some(t) = threads {
        set_threads(t);
    }
    let err = |e: cellweave_core::Error| e.to_string();

    let t_load = Instant::now();
    let (mut counts, cells) = read_folder(&data, genes.as_deref())?;
    let mut cell_ids = cells.column("cell_id").map_err(err)?;
    let (mut batch, levels) = encode_labels(&cells.column(&batch_key).map_err(err)?);
    if let Some(m) = max_cells.filter(|&m| m < counts.n_rows) {
        // An evenly spaced subset keeps both batches.
        let rows: Vec<usize> = (0..m).map(|i| i * counts.n_rows / m).collect();
        counts = counts.select_rows(&rows);
        batch = rows.iter().map(|&r| batch[r]).collect();
        cell_ids = rows.iter().map(|&r| cell_ids[r].clone()).collect();
    }
    eprintln!(
        "loaded {} cells x {} genes ({} batches) in {:.1} s",
        counts.n_rows,
        counts.n_cols,
        levels.len(),
        t_load.elapsed().as_secs_f64()
    );

    let mut arch = ScviArchitecture::new(counts.n_cols, levels.len());
    arch.likelihood = GeneLikelihood::parse(&likelihood).ok_or("--likelihood: zinb or nb")?;
    let config = TrainConfig {
        max_epochs: epochs,
        seed,
        ..TrainConfig::default()
    };
    let device = ComputeDevice::parse(&device).map_err(err)?;
    let engine = Engine::parse(&engine).map_err(err)?;
    let n_epochs = config.epochs_for(counts.n_rows);
    let mut progress = Progress {
        every: (n_epochs / 20).max(1),
    };
    let input = CountsAndBatch {
        counts: &counts,
        batch: &batch,
    };
    let t_train = Instant::now();
    let cpu_start = process_cpu_seconds();
    let model =
        ScviModel::train(arch, &config, input, device, engine, &mut progress).map_err(err)?;
    let train_s = t_train.elapsed().as_secs_f64();
    let train_cpu_s = process_cpu_seconds() - cpu_start;
    let epoch_s: Vec<f64> = model.history.iter().map(|r| r.seconds).collect();
    let mut sorted = epoch_s.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let n_train = (config.train_size * counts.n_rows as f64).ceil();
    let t_latent = Instant::now();
    let latent = model.latent(input).map_err(err)?;
    let latent_s = t_latent.elapsed().as_secs_f64();
    let last = model.history.last().expect("at least one epoch");

    println!("device            {}", device.name());
    println!("engine            {}", engine.name());
    println!("threads           {}", rayon::current_num_threads());
    println!("cells x genes     {} x {}", counts.n_rows, counts.n_cols);
    println!("epochs            {}", epoch_s.len());
    println!("train seconds     {train_s:.2}");
    println!(
        "seconds/epoch     {:.4} (mean {:.4})",
        median,
        epoch_s.iter().sum::<f64>() / epoch_s.len() as f64
    );
    println!("train cells/s     {:.0}", n_train / median);
    println!(
        "cpu seconds/epoch {:.4} (process CPU time over all epochs)",
        train_cpu_s / epoch_s.len() as f64
    );
    println!("latent seconds    {latent_s:.3}");
    println!("final train loss  {:.3}", last.train.loss);
    println!(
        "final valid ELBO  {:.3}",
        last.validation.as_ref().map_or(f64::NAN, |v| v.elbo)
    );
    let [fwd, bwd, opt] = model.profile.per_step_ms();
    println!(
        "ms per step       {:.2} (forward and likelihood {fwd:.2}, backward {bwd:.2}, optimizer {opt:.2})",
        fwd + bwd + opt
    );
    println!("peak RSS MiB      {:.0}", peak_rss_mib());

    if let Some(path) = out {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        let header: Vec<String> = (1..=latent.n_cols).map(|j| format!("scVI_{j}")).collect();
        writeln!(f, "cell_id\t{}", header.join("\t")).map_err(|e| e.to_string())?;
        for (i, id) in cell_ids.iter().enumerate() {
            let row: Vec<String> = latent.row(i).iter().map(|v| format!("{v:.6}")).collect();
            writeln!(f, "{id}\t{}", row.join("\t")).map_err(|e| e.to_string())?;
        }
        eprintln!("latent written to {}", path.display());
    }
    Ok(())
}
