//! `cellweave-bench cvae`: trains the conditional VAE (or scVI) with a batch-independence
//! penalty on a data folder, writes the latent and the counterfactual scores, and reports the
//! time per training step (the penalty's cost) and de-novo MINE on the latent.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cellweave_core::counterfactual::counterfactual_scores;
use cellweave_core::data::mtx::encode_labels;
use cellweave_core::device::ComputeDevice;
use cellweave_core::engine::Engine;
use cellweave_core::models::scvi::{CountsAndBatch, ScviArchitecture, ScviModel};
use cellweave_core::penalties::{PenaltyKind, PenaltySpec, mine};
use cellweave_core::train::TrainConfig;

use crate::common::{number, option_name, read_folder, set_threads, value};
use crate::scvi::Progress;

const USAGE: &str =
    "usage: cellweave-bench cvae --data DIR [--genes FILE] [--model cvae|scvi]
       [--penalty none|mmd|trvae|comp|mine|hsic] [--weight 1] [--epochs N] [--batch-size N]
       [--kl-weight B] [--condition-key batch] [--label-key cell_type] [--from ctrl] [--to stim]
       [--holdout-type NAME] [--comp-leave-self-out] [--mine-epochs N] [--threads N] [--engine host|tensor] [--seed 0]
       [--max-cells N] [--out-latent FILE] [--out-scores FILE]
--holdout-type leaves the `--to` cells of that type out of training (scGen's out-of-distribution test);
the scores are computed on all cells. CVAE defaults: CoMP's Kang settings (3 x 512, d = 40,
batch 512, KL weight 1e-3, no warm-up); scVI: scvi-tools' defaults.";

pub fn main(args: Vec<OsString>) -> Result<(), String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut data: Option<PathBuf> = None;
    let mut genes: Option<PathBuf> = None;
    let mut out_latent: Option<PathBuf> = None;
    let mut out_scores: Option<PathBuf> = None;
    let mut model_name = "cvae".to_string();
    let mut penalty = "none".to_string();
    let mut weight = 1.0f64;
    let mut epochs: Option<usize> = None;
    let mut batch_size: Option<usize> = None;
    let mut kl_weight: Option<f64> = None;
    let mut condition_key = "batch".to_string();
    let mut label_key = "cell_type".to_string();
    let (mut from, mut to) = ("ctrl".to_string(), "stim".to_string());
    let mut holdout: Option<String> = None;
    let mut mine_epochs = 0usize;
    let mut comp_leave_self_out = false;
    let mut threads: Option<usize> = None;
    let mut engine = "host".to_string();
    let mut seed = 0u64;
    let mut max_cells: Option<usize> = None;
    let float = |s: String, name: &str| -> Result<f64, String> {
        s.parse().map_err(|_| format!("--{name} takes a number"))
    };
    while let Some(name) = option_name(&mut parser, USAGE)? {
        match name.as_str() {
            "data" => data = Some(value(&mut parser)?.into()),
            "genes" => genes = Some(value(&mut parser)?.into()),
            "out-latent" => out_latent = Some(value(&mut parser)?.into()),
            "out-scores" => out_scores = Some(value(&mut parser)?.into()),
            "model" => model_name = value(&mut parser)?,
            "penalty" => penalty = value(&mut parser)?,
            "weight" => weight = float(value(&mut parser)?, "weight")?,
            "epochs" => epochs = Some(number(&mut parser, "epochs")?),
            "batch-size" => batch_size = Some(number(&mut parser, "batch-size")?),
            "kl-weight" => kl_weight = Some(float(value(&mut parser)?, "kl-weight")?),
            "condition-key" => condition_key = value(&mut parser)?,
            "label-key" => label_key = value(&mut parser)?,
            "from" => from = value(&mut parser)?,
            "to" => to = value(&mut parser)?,
            "holdout-type" => holdout = Some(value(&mut parser)?),
            "comp-leave-self-out" => comp_leave_self_out = true,
            "mine-epochs" => mine_epochs = number(&mut parser, "mine-epochs")?,
            "threads" => threads = Some(number(&mut parser, "threads")?),
            "engine" => engine = value(&mut parser)?,
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

    let (mut counts, cells) = read_folder(&data, genes.as_deref())?;
    let mut cell_ids = cells.column("cell_id").map_err(err)?;
    let (mut condition, levels) = encode_labels(&cells.column(&condition_key).map_err(err)?);
    let (mut cell_type, types) = encode_labels(&cells.column(&label_key).map_err(err)?);
    if let Some(m) = max_cells.filter(|&m| m < counts.n_rows) {
        let rows: Vec<usize> = (0..m).map(|i| i * counts.n_rows / m).collect();
        counts = counts.select_rows(&rows);
        condition = rows.iter().map(|&r| condition[r]).collect();
        cell_type = rows.iter().map(|&r| cell_type[r]).collect();
        cell_ids = rows.iter().map(|&r| cell_ids[r].clone()).collect();
    }
    let code_of = |name: &str| -> Result<u32, String> {
        levels
            .iter()
            .position(|l| l == name)
            .map(|p| p as u32)
            .ok_or(format!("condition `{name}` is not in `{condition_key}`"))
    };
    let (from_code, to_code) = (code_of(&from)?, code_of(&to)?);

    let (arch, mut config) = match model_name.as_str() {
        "cvae" => (
            ScviArchitecture::cvae(counts.n_cols, levels.len()),
            TrainConfig {
                batch_size: 512,
                kl_weight: 1e-3,
                n_epochs_kl_warmup: 0,
                ..TrainConfig::default()
            },
        ),
        "scvi" => (
            ScviArchitecture::new(counts.n_cols, levels.len()),
            TrainConfig::default(),
        ),
        other => return Err(format!("--model: cvae or scvi, not {other}")),
    };
    config.max_epochs = epochs;
    config.seed = seed;
    if let Some(b) = batch_size {
        config.batch_size = b;
    }
    if let Some(k) = kl_weight {
        config.kl_weight = k;
    }
    if penalty != "none" {
        let mut spec = PenaltySpec::default_for(&penalty, weight).map_err(err)?;
        if let PenaltyKind::Comp { include_self } = &mut spec.kind {
            *include_self = !comp_leave_self_out;
        }
        config.penalty = Some(spec);
    }

    // Training cells: all, or all but the held-out type's target-condition cells.
    let training: Vec<usize> = match &holdout {
        None => (0..counts.n_rows).collect(),
        Some(name) => {
            let t = types
                .iter()
                .position(|l| l == name)
                .ok_or(format!("cell type `{name}` is not in `{label_key}`"))?
                as u32;
            (0..counts.n_rows)
                .filter(|&r| !(cell_type[r] == t && condition[r] == to_code))
                .collect()
        }
    };
    let train_counts = counts.select_rows(&training);
    let train_condition: Vec<u32> = training.iter().map(|&r| condition[r]).collect();
    eprintln!(
        "{model_name} + {penalty} (weight {weight}): {} training cells of {} x {} genes",
        training.len(),
        counts.n_rows,
        counts.n_cols
    );
    let n_epochs = config.epochs_for(train_counts.n_rows);
    let mut progress = Progress {
        every: (n_epochs / 10).max(1),
    };
    let device = ComputeDevice::parse("cpu").map_err(err)?;
    let engine = Engine::parse(&engine).map_err(err)?;
    let t_train = Instant::now();
    let model = ScviModel::train(
        arch,
        &config,
        CountsAndBatch {
            counts: &train_counts,
            batch: &train_condition,
        },
        device,
        engine,
        &mut progress,
    )
    .map_err(err)?;
    let train_s = t_train.elapsed().as_secs_f64();
    let input = CountsAndBatch {
        counts: &counts,
        batch: &condition,
    };
    let latent = model.latent(input).map_err(err)?;
    let last = model.history.last().expect("at least one epoch");
    let [fwd, bwd, opt] = model.profile.per_step_ms();
    println!("model             {model_name}");
    println!("penalty           {penalty}");
    println!("weight            {weight}");
    println!("epochs            {}", model.history.len());
    println!("train seconds     {train_s:.1}");
    println!(
        "ms per step       {:.2} (forward, penalty and likelihood {fwd:.2}, backward {bwd:.2}, optimizer {opt:.2})",
        fwd + bwd + opt
    );
    println!("final train loss  {:.3}", last.train.loss);
    for (name, v) in &last.train.extra {
        println!("final {name:<11} {v:.5}");
    }
    println!(
        "final valid ELBO  {:.3}",
        last.validation.as_ref().map_or(f64::NAN, |v| v.elbo)
    );
    if mine_epochs > 0 {
        let t = Instant::now();
        let estimate = mine::estimate(
            &latent,
            &condition,
            levels.len(),
            &mine::EstimateConfig {
                epochs: mine_epochs,
                seed,
                ..mine::EstimateConfig::default()
            },
            &device.burn_device().map_err(err)?,
            &mut || false,
        )
        .map_err(err)?;
        println!(
            "de-novo MINE      train {:.4}  held-out {:.4}  ({mine_epochs} epochs, {:.0} s)",
            estimate.train,
            estimate.test,
            t.elapsed().as_secs_f64()
        );
    }
    let scores = counterfactual_scores(
        &model,
        input,
        &cell_type,
        types.len(),
        from_code,
        to_code,
        50,
        10,
    )
    .map_err(err)?;
    println!("cell_type\tn_from\tn_to\tr2_top50\tmae_top50\tr2_all\tmae_all\tbias_up\tbias_down");
    for s in &scores {
        println!(
            "{}\t{}\t{}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{:.4}",
            types[s.cell_type],
            s.n_from,
            s.n_to,
            s.r2_top,
            s.mae_top,
            s.r2_all,
            s.mae_all,
            s.bias_up,
            s.bias_down
        );
    }
    if let Some(path) = out_scores {
        let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        writeln!(f, "cell_type\tn_from\tn_to\tr2_top50\tmae_top50\tr2_all\tmae_all\tbias_up\tbias_down\tn_up").map_err(|e| e.to_string())?;
        for s in &scores {
            writeln!(
                f,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                types[s.cell_type],
                s.n_from,
                s.n_to,
                s.r2_top,
                s.mae_top,
                s.r2_all,
                s.mae_all,
                s.bias_up,
                s.bias_down,
                s.n_up
            )
            .map_err(|e| e.to_string())?;
        }
    }
    if let Some(path) = out_latent {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        let header: Vec<String> = (1..=latent.n_cols).map(|j| format!("z_{j}")).collect();
        writeln!(f, "cell_id\t{}", header.join("\t")).map_err(|e| e.to_string())?;
        for (i, id) in cell_ids.iter().enumerate() {
            let row: Vec<String> = latent.row(i).iter().map(|v| format!("{v:.6}")).collect();
            writeln!(f, "{id}\t{}", row.join("\t")).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
