//! extendr glue for scVI: converts R values, calls the core, converts back.

use std::time::Instant;

use cellweave_core::data::CsrMatrix;
use cellweave_core::device::ComputeDevice;
use cellweave_core::distributions::GeneLikelihood;
use cellweave_core::engine::Engine;
use cellweave_core::models::scvi::{CountsAndBatch, LibraryScale, ScviArchitecture, ScviModel};
use cellweave_core::penalties::{PenaltyKind, PenaltySpec};
use cellweave_core::train::{EpochRecord, TrainConfig, TrainingObserver};
use extendr_api::Result;
use extendr_api::prelude::*;

use crate::convert::{Options, csr_from_slots, doubles, ints, r_err, to_r};
use crate::interrupt::{console, interrupt_pending};

/// Counts from the slots of a dgCMatrix (genes x cells) and 0-based batch codes.
pub(crate) fn counts_and_codes(
    p: &Robj,
    i: &Robj,
    x: &Robj,
    dim: &Robj,
    batch: &Robj,
) -> Result<(CsrMatrix, Vec<u32>)> {
    let counts = csr_from_slots(
        ints(p, "p")?,
        ints(i, "i")?,
        doubles(x, "x")?,
        ints(dim, "Dim")?,
    )?;
    let codes = crate::convert::codes_from_r(ints(batch, "batch")?, "batch")?;
    Ok((counts, codes))
}

pub(crate) fn architecture(o: &Options) -> Result<ScviArchitecture> {
    let likelihood = o.string("gene_likelihood")?;
    Ok(ScviArchitecture {
        n_genes: o.usize("n_genes")?,
        n_batch: o.usize("n_batch")?,
        n_latent: o.usize("n_latent")?,
        n_hidden: o.usize("n_hidden")?,
        n_layers: o.usize("n_layers")?,
        dropout_rate: o.f64("dropout_rate")?,
        likelihood: GeneLikelihood::parse(&likelihood).ok_or_else(|| {
            Error::Other(format!(
                "`gene_likelihood` must be \"zinb\", \"nb\" or \"gaussian\", not \"{likelihood}\""
            ))
        })?,
        latent_library: o.bool("latent_library")?,
        encode_covariates: o.bool("encode_covariates")?,
        deeply_inject_covariates: o.bool("deeply_inject_covariates")?,
        posterior_sd: o.opt_f64("posterior_sd")?,
    })
}

/// The penalty of a `train` list: `penalty` is NULL or a list with `name`, `weight` and the
/// penalty's settings (`bandwidths`; `include_self`; `mine_hidden`, `mine_layers`, `mine_lr`,
/// `mine_steps`, `mine_moving_average`), each optional.
fn penalty_spec(o: &Options) -> Result<Option<PenaltySpec>> {
    let Some(p) = o.optional("penalty") else {
        return Ok(None);
    };
    let list: List = p
        .try_into()
        .map_err(|_| Error::Other("option `penalty` must be a list".into()))?;
    let p = Options(&list);
    let mut spec = to_r(PenaltySpec::default_for(
        &p.string("name")?,
        p.f64("weight")?,
    ))?;
    match &mut spec.kind {
        PenaltyKind::Mmd { bandwidths, .. } => {
            if let Some(b) = p.optional("bandwidths") {
                *bandwidths = doubles(&b, "mmd_bandwidths")?.to_vec();
            }
        }
        PenaltyKind::Mine(c) => {
            if let Some(v) = p.opt_f64("mine_hidden")? {
                c.n_hidden = v as usize;
            }
            if let Some(v) = p.opt_f64("mine_layers")? {
                c.n_layers = v as usize;
            }
            if let Some(v) = p.opt_f64("mine_lr")? {
                c.lr = v;
            }
            if let Some(v) = p.opt_f64("mine_steps")? {
                c.steps = v as usize;
            }
            if let Some(v) = p.opt_f64("mine_moving_average")? {
                c.moving_average_rate = v;
            }
        }
        PenaltyKind::Comp { include_self } => {
            if p.optional("include_self").is_some() {
                *include_self = p.bool("include_self")?;
            }
        }
        PenaltyKind::Hsic => {}
    }
    Ok(Some(spec))
}

pub(crate) fn train_config(o: &Options) -> Result<TrainConfig> {
    Ok(TrainConfig {
        max_epochs: o.opt_usize("max_epochs")?,
        batch_size: o.usize("batch_size")?,
        lr: o.f64("lr")?,
        adam_eps: o.f64("adam_eps")?,
        weight_decay: o.f64("weight_decay")?,
        n_epochs_kl_warmup: o.usize("n_epochs_kl_warmup")?,
        train_size: o.f64("train_size")?,
        early_stopping: o.bool("early_stopping")?,
        early_stopping_patience: o.usize("early_stopping_patience")?,
        early_stopping_min_delta: o.f64("early_stopping_min_delta")?,
        seed: o.usize("seed")? as u64,
        kl_weight: o.opt_f64("kl_weight")?.unwrap_or(1.0),
        penalty: penalty_spec(o)?,
    })
}

/// How training reports progress on R's console.
#[derive(Clone, Copy, PartialEq)]
enum ProgressStyle {
    None,
    /// One line redrawn in place (an interactive console).
    Bar,
    /// A new line every tenth of the epochs (a log file or a non-interactive session).
    Lines,
}

/// Progress on R's console (epoch, loss, ETA) and Ctrl-C checks between minibatches.
pub(crate) struct ConsoleProgress {
    style: ProgressStyle,
    start: Instant,
    last_print: Option<Instant>,
}

impl ConsoleProgress {
    /// `style`: "bar", "lines" or anything else for none.
    pub(crate) fn new(style: &str) -> Self {
        let style = match style {
            "bar" => ProgressStyle::Bar,
            "lines" => ProgressStyle::Lines,
            _ => ProgressStyle::None,
        };
        Self {
            style,
            start: Instant::now(),
            last_print: None,
        }
    }

    /// A training error as an R error, after ending a half-drawn progress bar.
    pub(crate) fn fail(&self, e: cellweave_core::Error) -> Error {
        if self.style == ProgressStyle::Bar && self.last_print.is_some() {
            console("\n");
        }
        r_err(e)
    }
}

impl TrainingObserver for ConsoleProgress {
    fn on_epoch_end(&mut self, r: &EpochRecord, max_epochs: usize) {
        let done = r.epoch == max_epochs;
        let due = match self.style {
            ProgressStyle::None => false,
            // At most ~5 updates a second: printing is not free on a slow console.
            ProgressStyle::Bar => {
                done || self
                    .last_print
                    .is_none_or(|t| t.elapsed().as_secs_f64() >= 0.2)
            }
            ProgressStyle::Lines => done || r.epoch % max_epochs.div_ceil(10) == 0,
        };
        if !due {
            return;
        }
        self.last_print = Some(Instant::now());
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = elapsed / r.epoch as f64 * (max_epochs - r.epoch) as f64;
        let width = 24;
        let filled = (width * r.epoch) / max_epochs.max(1);
        let bar: String = "=".repeat(filled) + &" ".repeat(width - filled);
        let validation = r
            .validation
            .as_ref()
            .map(|v| format!(", validation ELBO {:.1}", v.elbo))
            .unwrap_or_default();
        let (start, end) = match self.style {
            ProgressStyle::Bar => ("\r", if done { "\n" } else { "" }),
            _ => ("", "\n"),
        };
        console(&format!(
            "{start}Epoch {:>4}/{} [{}] loss {:.1}{} | {} left   {end}",
            r.epoch,
            max_epochs,
            bar,
            r.train.loss,
            validation,
            format_seconds(if done { 0.0 } else { eta }),
        ));
    }

    fn should_stop(&mut self) -> bool {
        interrupt_pending()
    }
}

fn format_seconds(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

pub(crate) fn history_to_r(history: &[EpochRecord]) -> Result<Robj> {
    let col = |f: &dyn Fn(&EpochRecord) -> f64| -> Robj {
        history.iter().map(f).collect::<Vec<f64>>().into()
    };
    let na = f64::NAN;
    let mut names: Vec<String> = [
        "epoch",
        "kl_weight",
        "train_loss",
        "train_reconstruction",
        "train_kl_local",
        "train_kl_z",
        "train_kl_library",
        "train_elbo",
        "validation_elbo",
        "validation_reconstruction",
        "validation_kl_local",
        "seconds",
    ]
    .map(String::from)
    .to_vec();
    let mut values = vec![
        col(&|r| r.epoch as f64),
        col(&|r| r.kl_weight),
        col(&|r| r.train.loss),
        col(&|r| r.train.reconstruction),
        col(&|r| r.train.kl_local()),
        col(&|r| r.train.kl_z),
        col(&|r| r.train.kl_library),
        col(&|r| r.train.elbo),
        col(&|r| r.validation.as_ref().map_or(na, |v| v.elbo)),
        col(&|r| r.validation.as_ref().map_or(na, |v| v.reconstruction)),
        col(&|r| r.validation.as_ref().map_or(na, |v| v.kl_local())),
        col(&|r| r.seconds),
    ];
    // Extra terms (scANVI's classification, penalties), unweighted, per epoch.
    let extra: Vec<String> = history
        .first()
        .map(|r| r.train.extra.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    for (k, name) in extra.iter().enumerate() {
        names.push(format!("train_{name}"));
        values.push(col(&|r| r.train.extra.get(k).map_or(na, |e| e.1)));
    }
    Ok(List::from_names_and_values(names, values)?.into())
}

/// The step engine a device runs: the host-fused one on CPU, the pure-tensor one on accelerators.
pub(crate) fn engine_for(device: ComputeDevice) -> Engine {
    match device {
        ComputeDevice::Cuda => Engine::Tensor,
        _ => Engine::HostFused,
    }
}

/// Trains scVI. Returns the latent (cells x n_latent), the weights (raw, by name), the history
/// and the device used.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scvi_train(
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    arch: List,
    train: List,
    device: &str,
    progress: &str,
) -> Result<Robj> {
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let arch = architecture(&Options(&arch))?;
    let config = train_config(&Options(&train))?;
    let device = to_r(ComputeDevice::parse(device))?;
    let mut progress = ConsoleProgress::new(progress);
    let data = CountsAndBatch {
        counts: &counts,
        batch: &codes,
    };
    let model = ScviModel::train(
        arch,
        &config,
        data,
        device,
        engine_for(device),
        &mut progress,
    )
    .map_err(|e| progress.fail(e))?;
    fitted_to_r(&model, data)
}

/// A trained model as R's list: the latent of `data`, the weights, the history and the device.
fn fitted_to_r(model: &ScviModel, data: CountsAndBatch<'_>) -> Result<Robj> {
    let latent = to_r(model.latent(data))?;
    let list = List::from_names_and_values(
        ["latent", "weights", "history", "device"],
        [
            crate::convert::dense_to_r(&latent),
            Raw::from_bytes(&model.weights_bytes()).into(),
            history_to_r(&model.history)?,
            model.device.name().into(),
        ],
    )?;
    Ok(list.into())
}

pub(crate) fn load(arch: List, weights: Robj, device: &str) -> Result<ScviModel> {
    let arch = architecture(&Options(&arch))?;
    let bytes = weights
        .as_raw_slice()
        .ok_or_else(|| Error::Other("the model's weights must be a raw vector".into()))?;
    let device = to_r(ComputeDevice::parse(device))?;
    to_r(ScviModel::from_parts(
        arch,
        bytes,
        device,
        engine_for(device),
    ))
}

/// Posterior-mean latent of new cells under a saved model.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scvi_latent(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
) -> Result<Robj> {
    let model = load(arch, weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let latent = to_r(model.latent(CountsAndBatch {
        counts: &counts,
        batch: &codes,
    }))?;
    Ok(crate::convert::dense_to_r(&latent))
}

/// Decoded expression of new cells under a saved model: a genes x cells matrix of the genes
/// `genes` (1-based; all when NULL), filled a chunk of cells at a time.
/// `library_size`: a positive number, or NULL for each cell's observed total count.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scvi_expression(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    transform_batch: Robj,
    library_size: Robj,
    genes: Robj,
) -> Result<Robj> {
    let model = load(arch, weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let transform = crate::convert::codes_from_r(
        ints(&transform_batch, "transform_batch")?,
        "transform_batch",
    )?;
    let library = if library_size.is_null() {
        LibraryScale::Observed
    } else {
        LibraryScale::Constant(doubles(&library_size, "library_size")?[0])
    };
    let genes: Option<Vec<usize>> = if genes.is_null() {
        None
    } else {
        Some(
            ints(&genes, "genes")?
                .iter()
                .map(|&j| {
                    if j < 1 {
                        Err(Error::Other("`genes`: indices must be >= 1".into()))
                    } else {
                        Ok(j as usize - 1)
                    }
                })
                .collect::<Result<_>>()?,
        )
    };
    let width = genes.as_ref().map_or(counts.n_cols, |g| g.len());
    let data = CountsAndBatch {
        counts: &counts,
        batch: &codes,
    };
    let mut out = RMatrix::<f64>::new_matrix(width, counts.n_rows, |_, _| 0.0);
    let values = out.data_mut();
    // Column-major genes x cells: each cell's genes are contiguous, as in the row-major block.
    to_r(model.normalized_expression(
        data,
        &transform,
        library,
        genes.as_deref(),
        &mut |start, block| {
            for (o, &v) in values[start * width..start * width + block.len()]
                .iter_mut()
                .zip(block)
            {
                *o = v as f64;
            }
        },
    ))?;
    Ok(out.into())
}

/// Maps query cells onto a saved reference (scArches): the model grows to `n_batch` batches
/// (`batch`: codes in that numbering) and trains what a query trains. Returns the query's latent,
/// the query model's weights and the history.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scvi_map_query(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    n_batch: f64,
    train: List,
    progress: &str,
) -> Result<Robj> {
    let reference = load(arch, weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let config = train_config(&Options(&train))?;
    let data = CountsAndBatch {
        counts: &counts,
        batch: &codes,
    };
    let mut progress = ConsoleProgress::new(progress);
    let model = reference
        .map_query(data, n_batch as usize, &config, &mut progress)
        .map_err(|e| progress.fail(e))?;
    fitted_to_r(&model, data)
}

/// Mean ELBO, reconstruction error and KL of cells under a saved model.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn cw_scvi_elbo(
    arch: List,
    weights: Robj,
    device: &str,
    p: Robj,
    i: Robj,
    x: Robj,
    dim: Robj,
    batch: Robj,
    seed: f64,
) -> Result<Robj> {
    let model = load(arch, weights, device)?;
    let (counts, codes) = counts_and_codes(&p, &i, &x, &dim, &batch)?;
    let r = to_r(model.elbo(
        CountsAndBatch {
            counts: &counts,
            batch: &codes,
        },
        seed as u64,
    ))?;
    let list = List::from_names_and_values(
        ["elbo", "reconstruction", "kl_local"],
        [r.elbo.into(), r.reconstruction.into(), r.kl_local().into()] as [Robj; 3],
    )?;
    Ok(list.into())
}

extendr_module! {
    mod scvi;
    fn cw_scvi_train;
    fn cw_scvi_latent;
    fn cw_scvi_expression;
    fn cw_scvi_elbo;
    fn cw_scvi_map_query;
}
