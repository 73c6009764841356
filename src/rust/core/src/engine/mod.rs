//! The two step engines that run the same model code.
//!
//! A model calls the step context for the work whose input or output is cells x genes: the first
//! layer of an encoder on the counts (`first_linear`), the count likelihood of the decoder's head
//! (`count_log_likelihood`) and the decoded expression (`expression_frequencies`). How that work
//! is done is the engine's business:
//!
//! - `Engine::HostFused` (the CPU default): the first layer multiplies the sparse counts on the
//!   host, the head and the likelihood run in the fused host kernel, and those layers' weights are
//!   updated by the host Adam. Their results enter the autodiff graph as tensors whose gradients
//!   are exact for any weighting of the cells: each cell's log-likelihood is built as
//!   `<h_i, g_i> + l_i dl_i + p_i`, where `g_i`, `dl_i` are that cell's own gradients and the
//!   "probe" `p` (a leaf holding the rest of the value) tells by its gradient, after the backward
//!   pass, how the loss weighted each cell; the head's weight and dispersion gradients are then
//!   summed with those weights.
//! - `Engine::Tensor`: everything in tensor ops on the device (the minibatch densified there, lgamma
//!   from tensor ops, burn's optimiser for every parameter), for accelerators.

use burn::module::ParamId;
use burn::nn::Linear;
use burn::tensor::Gradients;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

use crate::data::CsrMatrix;
use crate::distributions::{
    DecoderOutputs, GeneLikelihood, LikelihoodResult, log_likelihood, tensor_ops,
};
use crate::error::{Error, Result};
use crate::nn::host::{Gradients as HostGradients, HostLinear, HostStore};
use crate::nn::{CountHead, Covariates, dropout_mask, tensor_2d, to_host};

/// Which implementation runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    HostFused,
    Tensor,
}

impl Engine {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "host" => Ok(Self::HostFused),
            "tensor" => Ok(Self::Tensor),
            other => Err(Error::invalid(
                "engine",
                format!("unknown engine \"{other}\": use \"host\" or \"tensor\""),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::HostFused => "host",
            Self::Tensor => "tensor",
        }
    }
}

/// What a pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Gradients, dropout and sampled latents.
    Train,
    /// No gradients or dropout; latents sampled (the validation ELBO).
    Evaluate,
    /// No gradients or dropout; latents at their posterior means.
    Predict,
}

/// The cells a model is trained on or applied to: counts (cells x genes), categorical
/// annotations (batch, labels, other covariates), and what is derived from them once.
pub struct CountData<'a> {
    pub counts: &'a CsrMatrix,
    /// Each annotation: a code per cell and its number of levels (the model knows which is which).
    pub categorical: Vec<(&'a [u32], usize)>,
    /// log1p of `counts.values` (the encoders' input).
    pub log1p_values: Vec<f32>,
    /// ln of each cell's total count.
    pub log_library: Vec<f32>,
}

impl<'a> CountData<'a> {
    /// Checks that counts are finite, non-negative and that no cell is empty. `categorical`:
    /// (argument name, codes, number of levels) of each annotation, checked against the cells.
    pub fn new(counts: &'a CsrMatrix, categorical: &[(&str, &'a [u32], usize)]) -> Result<Self> {
        for &(name, codes, levels) in categorical {
            if codes.len() != counts.n_rows {
                return Err(Error::invalid(
                    name,
                    format!("has {} values for {} cells", codes.len(), counts.n_rows),
                ));
            }
            if let Some(c) = codes.iter().find(|&&c| c as usize >= levels) {
                return Err(Error::invalid(
                    name,
                    format!("code {c} is not one of the model's {levels} levels"),
                ));
            }
        }
        if counts.values.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::invalid("x", "counts must be finite and >= 0"));
        }
        let log_library: Vec<f32> = counts.row_sums().iter().map(|s| s.ln() as f32).collect();
        if let Some(i) = log_library.iter().position(|l| !l.is_finite()) {
            return Err(Error::invalid(
                "x",
                format!("cell {} has zero total counts", i + 1),
            ));
        }
        Ok(Self {
            counts,
            categorical: categorical.iter().map(|&(_, c, l)| (c, l)).collect(),
            log1p_values: counts.values.iter().map(|v| v.ln_1p()).collect(),
            log_library,
        })
    }
}

/// A minibatch: the rows of the data, and for the tensor engine their dense counts and log1p
/// counts on the device.
pub struct Minibatch<'a> {
    pub data: &'a CountData<'a>,
    pub rows: Vec<usize>,
    /// Labelled cells paired with this minibatch by the semi-supervised sampler.
    pub labelled_rows: Vec<usize>,
    dense: Option<(Tensor<2>, Tensor<2>)>,
}

impl<'a> Minibatch<'a> {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The codes of annotation `k` for the minibatch's cells.
    pub fn codes(&self, k: usize) -> Vec<u32> {
        let codes = self.data.categorical[k].0;
        self.rows.iter().map(|&r| codes[r]).collect()
    }

    /// The annotations `which` as the covariates of an `FcLayers`.
    pub fn covariates(&self, which: &[usize], device: &Device) -> Covariates {
        Covariates::new(
            which
                .iter()
                .map(|&k| (self.codes(k), self.data.categorical[k].1))
                .collect(),
            device,
        )
    }

    /// Observed log library sizes (`n x 1`).
    pub fn log_library(&self, device: &Device) -> Tensor<2> {
        let l = self
            .rows
            .iter()
            .map(|&r| self.data.log_library[r])
            .collect();
        tensor_2d(l, self.rows.len(), 1, device)
    }
}

/// The host-side work of one pass whose gradients are computed after the backward pass.
enum HostRecord<'s> {
    FirstLayer {
        layer: HostLinear<'s>,
        /// The pass's cells (a step may run an encoder on a second minibatch).
        rows: Vec<usize>,
        /// One-hot columns of each cell (offsets past the genes).
        columns: Vec<Vec<usize>>,
        output: Tensor<2>,
    },
    Head {
        likelihood: GeneLikelihood,
        scale: HostLinear<'s>,
        dropout: Option<HostLinear<'s>>,
        log_theta_id: ParamId,
        log_theta: Vec<f32>,
        hidden: Vec<f32>,
        /// For the dispersion gradient when cells are weighted unequally.
        log_library: Vec<f32>,
        kernel: LikelihoodResult<f32>,
        probe: Tensor<2>,
    },
}

/// One pass of a model: the engine, the mode, the RNG every random draw comes from (so a seed
/// gives the same bits on every CPU backend), and the host work awaiting its gradients.
pub struct StepContext<'r> {
    pub engine: Engine,
    pub mode: Mode,
    /// The device of this pass (autodiff in training).
    pub device: Device,
    rng: &'r mut Xoshiro256PlusPlus,
    /// The host engine's master copies of host-side parameters, when training keeps them.
    store: Option<&'r HostStore>,
    records: Vec<HostRecord<'r>>,
}

impl<'r> StepContext<'r> {
    pub fn new(
        engine: Engine,
        mode: Mode,
        device: Device,
        rng: &'r mut Xoshiro256PlusPlus,
    ) -> Self {
        Self {
            engine,
            mode,
            device,
            rng,
            store: None,
            records: Vec::new(),
        }
    }

    /// Reads host-side parameters from `store` where it has them (instead of the module).
    pub fn with_host_store(mut self, store: &'r HostStore) -> Self {
        self.store = Some(store);
        self
    }

    fn tracks_gradients(&self) -> bool {
        self.mode == Mode::Train
    }

    /// The rows `rows` of `data` as a minibatch for this engine.
    pub fn minibatch<'a>(&self, data: &'a CountData<'a>, rows: Vec<usize>) -> Minibatch<'a> {
        let dense = (self.engine == Engine::Tensor).then(|| densify(data, &rows, &self.device));
        Minibatch {
            data,
            rows,
            labelled_rows: Vec::new(),
            dense,
        }
    }

    /// Inverted dropout with this pass's RNG (training only).
    pub fn dropout(&mut self, h: Tensor<2>, rate: f64) -> Tensor<2> {
        if self.mode != Mode::Train || rate <= 0.0 {
            return h;
        }
        let [n, d] = h.dims();
        h * dropout_mask(self.rng, n, d, rate, &self.device)
    }

    /// A reparameterised sample of N(mean, var); the mean itself in `Mode::Predict`.
    pub fn sample_normal(&mut self, mean: &Tensor<2>, var: &Tensor<2>) -> Tensor<2> {
        if self.mode == Mode::Predict {
            return mean.clone();
        }
        let [n, d] = mean.dims();
        let eps: Vec<f32> = (0..n * d)
            .map(|_| StandardNormal.sample(&mut *self.rng))
            .collect();
        mean.clone() + var.clone().sqrt() * tensor_2d(eps, n, d, &self.device)
    }

    /// `[log1p(x), one-hot covariates] W + b` for the minibatch's cells.
    pub fn first_linear(
        &mut self,
        layer: &Linear,
        batch: &Minibatch<'_>,
        covariates: &Covariates,
    ) -> Tensor<2> {
        match self.engine {
            Engine::Tensor => {
                let (_, log1p) = batch.dense.as_ref().expect("tensor-engine minibatch");
                let x = match &covariates.one_hot {
                    Some(cat) => Tensor::cat(vec![log1p.clone(), cat.clone()], 1),
                    None => log1p.clone(),
                };
                layer.forward(x)
            }
            Engine::HostFused => {
                let host = HostLinear::of(layer, self.store);
                let columns: Vec<Vec<usize>> = (0..batch.len())
                    .map(|i| covariates.active_columns(i))
                    .collect();
                let data = batch.data;
                let pre =
                    host.forward_sparse(data.counts, &batch.rows, &data.log1p_values, &columns);
                let t = tensor_2d(pre, batch.len(), host.d_out, &self.device);
                if !self.tracks_gradients() {
                    return t;
                }
                let t = t.require_grad();
                self.records.push(HostRecord::FirstLayer {
                    layer: host,
                    rows: batch.rows.clone(),
                    columns,
                    output: t.clone(),
                });
                t
            }
        }
    }

    /// Each cell's log-likelihood (`n x 1`) of its counts under the head's distribution given the
    /// decoder's last hidden layer and the log library sizes (`n x 1`).
    pub fn count_log_likelihood(
        &mut self,
        head: &CountHead,
        hidden: Tensor<2>,
        log_library: Tensor<2>,
        batch: &Minibatch<'_>,
    ) -> Tensor<2> {
        let likelihood = head.likelihood();
        if likelihood == GeneLikelihood::Gaussian {
            return self.gaussian_log_likelihood(head, hidden, batch);
        }
        match self.engine {
            Engine::Tensor => {
                let (x, _) = batch.dense.as_ref().expect("tensor-engine minibatch");
                tensor_ops::log_likelihood(
                    likelihood,
                    x.clone(),
                    head.scale.forward(hidden.clone()),
                    head.dropout.as_ref().map(|d| d.forward(hidden)),
                    head.log_theta.val(),
                    log_library,
                )
            }
            Engine::HostFused => {
                let n = batch.len();
                let scale = HostLinear::of(&head.scale, self.store);
                let dropout = head.dropout.as_ref().map(|d| HostLinear::of(d, self.store));
                let hidden_host = to_host(hidden.clone());
                let scale_logits = scale.forward(&hidden_host, n);
                let dropout_logits = dropout.as_ref().map(|d| d.forward(&hidden_host, n));
                let log_theta = self
                    .store
                    .and_then(|s| s.values.get(&head.log_theta.id).cloned())
                    .unwrap_or_else(|| to_host(head.log_theta.val()));
                let log_library_host = to_host(log_library.clone());
                let outputs = DecoderOutputs {
                    scale_logits: &scale_logits,
                    dropout_logits: dropout_logits.as_deref(),
                    log_theta: &log_theta,
                    log_library: &log_library_host,
                };
                let with_grad = self.tracks_gradients();
                let mut kernel = log_likelihood(
                    likelihood,
                    batch.data.counts,
                    &batch.rows,
                    &outputs,
                    with_grad.then_some(1.0),
                    None,
                );
                let log_lik = std::mem::take(&mut kernel.log_lik);
                if !with_grad {
                    let values = log_lik.iter().map(|&v| v as f32).collect();
                    return tensor_2d(values, n, 1, &self.device);
                }
                // d log p(x_i) / d h_i, through both output layers.
                let h = scale.d_in;
                let mut d_hidden = vec![0f32; n * h];
                scale.backward_input(&kernel.d_scale_logits, n, &mut d_hidden);
                if let Some(d) = &dropout {
                    d.backward_input(&kernel.d_dropout_logits, n, &mut d_hidden);
                }
                let constant: Vec<f32> = (0..n)
                    .map(|i| {
                        let linear: f64 = hidden_host[i * h..(i + 1) * h]
                            .iter()
                            .zip(&d_hidden[i * h..(i + 1) * h])
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            + log_library_host[i] as f64 * kernel.d_log_library[i] as f64;
                        (log_lik[i] - linear) as f32
                    })
                    .collect();
                // The probe is the constant part itself, as a leaf: its gradient is w_i.
                let probe = tensor_2d(constant, n, 1, &self.device).require_grad();
                let d_library = std::mem::take(&mut kernel.d_log_library);
                let value = (hidden * tensor_2d(d_hidden, n, h, &self.device)).sum_dim(1)
                    + log_library * tensor_2d(d_library, n, 1, &self.device)
                    + probe.clone();
                self.records.push(HostRecord::Head {
                    likelihood,
                    scale,
                    dropout,
                    log_theta_id: head.log_theta.id,
                    log_theta,
                    hidden: hidden_host,
                    log_library: log_library_host,
                    kernel,
                    probe,
                });
                value
            }
        }
    }

    /// Expression frequencies (softmax of the scale logits), `n x g` row-major on the host.
    /// The Gaussian head's log-likelihood of the minibatch's log-normalised expression,
    /// log1p(10^4 x / total), per cell (`n x 1`), in tensor ops on both engines (the minibatch
    /// densified on the host).
    fn gaussian_log_likelihood(
        &mut self,
        head: &CountHead,
        hidden: Tensor<2>,
        batch: &Minibatch<'_>,
    ) -> Tensor<2> {
        let data = batch.data;
        let (n, g) = (batch.len(), data.counts.n_cols);
        let mut dense = vec![0f32; n * g];
        data.counts.densify_rows_into(&batch.rows, &mut dense);
        for (row, &r) in dense.chunks_exact_mut(g).zip(&batch.rows) {
            let scale = 1e4 / data.log_library[r].exp().max(1e-12);
            row.iter_mut().for_each(|v| *v = (*v * scale).ln_1p());
        }
        let x = tensor_2d(dense, n, g, &self.device);
        let mean = head.scale.forward(hidden.clone());
        let sd = burn::tensor::activation::softplus(
            head.sd
                .as_ref()
                .expect("a Gaussian head has an sd layer")
                .forward(hidden),
            1.0,
        )
        .add_scalar(0.01);
        let z2 = ((x - mean) / sd.clone().expand([n, g]))
            .powi_scalar(2)
            .sum_dim(1);
        (z2 + sd.log().mul_scalar(2.0 * g as f64))
            .add_scalar(g as f64 * 1.837_877_066_409_345_5)
            .mul_scalar(-0.5)
    }

    pub fn expression_frequencies(&mut self, head: &CountHead, hidden: Tensor<2>) -> Vec<f32> {
        if head.likelihood() == GeneLikelihood::Gaussian {
            // The mean log-normalised expression back on the frequency scale.
            let g = head.n_genes();
            let mut values = to_host(head.scale.forward(hidden));
            for row in values.chunks_exact_mut(g) {
                row.iter_mut().for_each(|v| *v = v.exp_m1().max(0.0));
                let total: f32 = row.iter().sum::<f32>().max(1e-30);
                row.iter_mut().for_each(|v| *v /= total);
            }
            return values;
        }
        match self.engine {
            Engine::Tensor => to_host(burn::tensor::activation::softmax(
                head.scale.forward(hidden),
                1,
            )),
            Engine::HostFused => {
                let n = hidden.dims()[0];
                let scale = HostLinear::of(&head.scale, None);
                let mut logits = scale.forward(&to_host(hidden), n);
                let g = scale.d_out;
                for row in logits.chunks_exact_mut(g) {
                    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut z = 0f32;
                    for v in row.iter_mut() {
                        *v = (*v - m).exp();
                        z += *v;
                    }
                    let k = 1.0 / z;
                    row.iter_mut().for_each(|v| *v *= k);
                }
                logits
            }
        }
    }

    /// The gradients of the host-side parameters (by id) of a training pass over `batch`, given
    /// the backward pass's gradients (none for the tensor engine).
    pub fn host_gradients(
        self,
        grads: &Gradients,
        batch: &Minibatch<'_>,
    ) -> Vec<(ParamId, Vec<f32>)> {
        let mut out = HostGradients::default();
        for record in self.records {
            match record {
                HostRecord::FirstLayer {
                    layer,
                    rows,
                    columns,
                    output,
                } => {
                    let Some(d_output) = output.grad(grads) else {
                        continue; // the loss does not depend on this encoder
                    };
                    let data = batch.data;
                    layer.backward_sparse(
                        data.counts,
                        &rows,
                        &data.log1p_values,
                        &columns,
                        &to_host(d_output),
                        &mut out,
                    );
                }
                HostRecord::Head {
                    likelihood,
                    scale,
                    dropout,
                    log_theta_id,
                    log_theta,
                    hidden,
                    log_library,
                    kernel,
                    probe,
                } => {
                    let Some(w) = probe.grad(grads) else {
                        continue;
                    };
                    // w_i = d loss / d log p(x_i).
                    let w = to_host(w);
                    let n = w.len();
                    scale.backward_weights(&hidden, &kernel.d_scale_logits, &w, n, &mut out);
                    if let Some(d) = &dropout {
                        d.backward_weights(&hidden, &kernel.d_dropout_logits, &w, n, &mut out);
                    }
                    // The kernel summed the cells' dispersion gradients unweighted; a loss that
                    // weights cells unequally needs a second, weighted pass.
                    let d_theta = if w.iter().all(|&v| v == w[0]) {
                        kernel.d_log_theta.iter().map(|&v| v * w[0]).collect()
                    } else {
                        // The head's outputs again (kept only for this rare case).
                        let scale_logits = scale.forward(&hidden, n);
                        let dropout_logits = dropout.as_ref().map(|d| d.forward(&hidden, n));
                        let outputs = DecoderOutputs {
                            scale_logits: &scale_logits,
                            dropout_logits: dropout_logits.as_deref(),
                            log_theta: &log_theta,
                            log_library: &log_library,
                        };
                        log_likelihood(
                            likelihood,
                            batch.data.counts,
                            &batch.rows,
                            &outputs,
                            Some(1.0),
                            Some(&w),
                        )
                        .d_log_theta
                    };
                    out.push(log_theta_id, d_theta);
                }
            }
        }
        out.into_entries()
    }
}

/// The minibatch's counts and log1p counts as dense `n x g` tensors, scattered on the device from
/// the sparse rows (only the stored values travel).
fn densify(data: &CountData<'_>, rows: &[usize], device: &Device) -> (Tensor<2>, Tensor<2>) {
    let g = data.counts.n_cols;
    let n = rows.len();
    let mut index = Vec::new();
    let mut values = Vec::new();
    let mut log1p = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        let span = data.counts.indptr[r]..data.counts.indptr[r + 1];
        for (&c, (&v, &l)) in data.counts.indices[span.clone()].iter().zip(
            data.counts.values[span.clone()]
                .iter()
                .zip(&data.log1p_values[span]),
        ) {
            index.push((i * g + c as usize) as i64);
            values.push(v);
            log1p.push(l);
        }
    }
    let nnz = index.len();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [nnz]), device);
    let scatter = |v: Vec<f32>| -> Tensor<2> {
        Tensor::<1>::zeros([n * g], device)
            .scatter(
                0,
                index.clone(),
                Tensor::<1>::from_data(TensorData::new(v, [nnz]), device),
                IndexingUpdateOp::Add,
            )
            .reshape([n, g])
    };
    (scatter(values), scatter(log1p))
}
