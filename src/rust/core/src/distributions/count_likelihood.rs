//! Negative binomial and zero-inflated negative binomial log-likelihoods of counts, with their
//! gradients, in one fused pass over a minibatch.
//!
//! Why fused: in a tensor framework the ZINB term is dozens of element-wise kernels forward and
//! backward, each a full pass over a cells x genes block (it dominates scvi-tools' step). Here one
//! pass per cell computes the softmax, the likelihood and the gradients with respect to the
//! decoder's outputs; the training step injects those gradients into the autodiff graph.
//!
//! Parameterisation (scvi-tools'): for cell i and gene g, mean mu = exp(l_i) * softmax(s_i)_g with
//! l the log library size and s the decoder's scale logits; inverse dispersion theta_g = exp(r_g);
//! zero-inflation logit pi_ig. All in log space:
//!   log NB(x; mu, theta) = theta (log theta - log(theta+mu)) + x (log mu - log(theta+mu))
//!                          + lgamma(x+theta) - lgamma(theta) - lgamma(x+1)
//!   log ZINB(0)          = softplus(-pi + theta (log theta - log(theta+mu))) - softplus(-pi)
//!   log ZINB(x > 0)      = -pi - softplus(-pi) + log NB(x; mu, theta)

use num_traits::Float;
use rayon::prelude::*;

use super::fastmath::KernelFloat;

use super::special::{digamma, ln_gamma};
use crate::data::CsrMatrix;
use crate::simd::has_avx2_fma;

/// The distribution of a gene's counts given the latent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneLikelihood {
    /// Zero-inflated negative binomial.
    Zinb,
    /// Negative binomial.
    Nb,
    /// A Gaussian on log-normalised expression, log1p(10^4 x / total), with one standard
    /// deviation per cell (CoMP's decoder); not a count likelihood, so its ELBO is not comparable
    /// with the count models'.
    Gaussian,
}

impl GeneLikelihood {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "zinb" => Some(Self::Zinb),
            "nb" => Some(Self::Nb),
            "gaussian" => Some(Self::Gaussian),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Zinb => "zinb",
            Self::Nb => "nb",
            Self::Gaussian => "gaussian",
        }
    }
}

/// The decoder's outputs for a minibatch of `n` cells and `g` genes (row-major).
pub struct DecoderOutputs<'a, F> {
    /// `n x g` logits whose softmax is the expression frequency rho.
    pub scale_logits: &'a [F],
    /// `n x g` zero-inflation logits (ZINB only).
    pub dropout_logits: Option<&'a [F]>,
    /// `g` log inverse dispersions r (theta = exp(r)).
    pub log_theta: &'a [F],
    /// `n` log library sizes.
    pub log_library: &'a [F],
}

/// Per-cell log-likelihoods and, when asked for, the gradients of
/// `grad_scale * sum_i log p(x_i)` with respect to every decoder output.
#[derive(Debug, Clone)]
pub struct LikelihoodResult<F> {
    pub log_lik: Vec<f64>,
    pub d_scale_logits: Vec<F>,
    pub d_dropout_logits: Vec<F>,
    /// d/d log theta of `grad_scale * sum_i v_i log p(x_i)` (`v`: the theta weights, 1 when not
    /// given).
    pub d_log_theta: Vec<F>,
    pub d_log_library: Vec<F>,
}

/// Cells per parallel task. Fixed (not derived from the thread count) so that the reduction
/// over cells for d_log_theta happens in the same order on every machine: same seed, same bits.
const CELLS_PER_TASK: usize = 8;

/// Gene-wise terms shared by every cell of a minibatch.
struct GeneTerms<'a, F> {
    log_theta: &'a [F],
    theta: Vec<F>,
    lgamma_theta: Vec<f64>,
    digamma_theta: Vec<f64>,
}

/// One cell's outputs: its log-likelihood is returned; gradients (already multiplied by the
/// grad scale `c`; for the dispersions by `c_theta`) are written to the slices, and `d_theta`
/// accumulates.
struct CellOutputs<'a, F> {
    d_scale: &'a mut [F],
    d_dropout: &'a mut [F],
    d_theta: &'a mut [F],
    /// Scratch space of one gene-length each.
    rho: &'a mut [F],
    work: &'a mut [F],
}

/// Evaluates the log-likelihood of the counts of `rows` (cells of `counts`) under the decoder
/// outputs; with `grad_scale = Some(c)` also the gradients of `c * sum_i log p(x_i)`, except that
/// the dispersions' gradient weights cell i by `theta_weights[i]` when given.
pub fn log_likelihood<F: KernelFloat>(
    likelihood: GeneLikelihood,
    counts: &CsrMatrix,
    rows: &[usize],
    out: &DecoderOutputs<'_, F>,
    grad_scale: Option<F>,
    theta_weights: Option<&[F]>,
) -> LikelihoodResult<F> {
    let n = rows.len();
    let g = counts.n_cols;
    assert_eq!(
        out.scale_logits.len(),
        n * g,
        "scale logits must be cells x genes"
    );
    assert_eq!(out.log_theta.len(), g, "one dispersion per gene");
    assert_eq!(out.log_library.len(), n, "one library size per cell");
    let zinb = likelihood == GeneLikelihood::Zinb;
    if zinb {
        assert_eq!(
            out.dropout_logits.map(|d| d.len()),
            Some(n * g),
            "ZINB needs dropout logits"
        );
    }
    let with_grad = grad_scale.is_some();
    let c = grad_scale.unwrap_or(F::zero());
    let theta: Vec<F> = out.log_theta.iter().map(|r| r.exp()).collect();
    let genes = GeneTerms {
        log_theta: out.log_theta,
        lgamma_theta: theta.iter().map(|t| ln_gamma(to64(*t))).collect(),
        digamma_theta: theta.iter().map(|t| digamma(to64(*t))).collect(),
        theta,
    };

    let mut log_lik = vec![0f64; n];
    // Filled only with a gradient; allocated always so every task gets its slices (cheap).
    let mut d_scale = vec![F::zero(); n * g];
    let mut d_dropout = vec![F::zero(); n * g];
    let mut d_library = vec![F::zero(); n];
    let avx2 = has_avx2_fma();

    // Each task owns a block of cells and returns its partial gradient for r (summed in task
    // order afterwards: the same bits on every machine).
    let partial_d_theta: Vec<Vec<F>> = log_lik
        .par_chunks_mut(CELLS_PER_TASK)
        .zip(d_scale.par_chunks_mut(CELLS_PER_TASK * g))
        .zip(d_dropout.par_chunks_mut(CELLS_PER_TASK * g))
        .zip(d_library.par_chunks_mut(CELLS_PER_TASK))
        .enumerate()
        .map(|(task, (((ll_out, ds_out), dd_out), dl_out))| {
            let mut d_theta = vec![F::zero(); g];
            let mut rho = vec![F::zero(); g];
            let mut work = vec![F::zero(); g];
            for (k, ll_slot) in ll_out.iter_mut().enumerate() {
                let i = task * CELLS_PER_TASK + k;
                let cell = Cell {
                    scale_logits: &out.scale_logits[i * g..(i + 1) * g],
                    dropout_logits: out
                        .dropout_logits
                        .filter(|_| zinb)
                        .map(|d| &d[i * g..(i + 1) * g]),
                    log_library: out.log_library[i],
                    counts: counts.row(rows[i]),
                };
                let outputs = CellOutputs {
                    d_scale: &mut ds_out[k * g..(k + 1) * g],
                    d_dropout: if zinb {
                        &mut dd_out[k * g..(k + 1) * g]
                    } else {
                        &mut []
                    },
                    d_theta: &mut d_theta,
                    rho: &mut rho,
                    work: &mut work,
                };
                let c_theta = c * theta_weights.map_or(F::one(), |w| w[i]);
                #[cfg(target_arch = "x86_64")]
                let (ll, d_l) = if avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    unsafe { cell_avx2(&cell, &genes, outputs, with_grad, c, c_theta) }
                } else {
                    cell_generic(&cell, &genes, outputs, with_grad, c, c_theta)
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (ll, d_l) = {
                    let _ = avx2;
                    cell_generic(&cell, &genes, outputs, with_grad, c, c_theta)
                };
                *ll_slot = ll;
                dl_out[k] = d_l;
            }
            d_theta
        })
        .collect();
    let mut d_theta = vec![F::zero(); if with_grad { g } else { 0 }];
    if with_grad {
        for part in &partial_d_theta {
            for (a, &b) in d_theta.iter_mut().zip(part) {
                *a = *a + b;
            }
        }
    }

    if !with_grad {
        d_scale = Vec::new();
        d_library = Vec::new();
    }
    if !(with_grad && zinb) {
        d_dropout = Vec::new();
    }
    LikelihoodResult {
        log_lik,
        d_scale_logits: d_scale,
        d_dropout_logits: d_dropout,
        d_log_theta: d_theta,
        d_log_library: d_library,
    }
}

/// One cell's decoder outputs and counts.
struct Cell<'a, F> {
    scale_logits: &'a [F],
    dropout_logits: Option<&'a [F]>,
    log_library: F,
    counts: (&'a [u32], &'a [f32]),
}

/// `cell_generic` compiled for AVX2 + FMA: the dense loops over genes vectorise 8-wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn cell_avx2<F: KernelFloat>(
    cell: &Cell<'_, F>,
    genes: &GeneTerms<'_, F>,
    out: CellOutputs<'_, F>,
    with_grad: bool,
    c: F,
    c_theta: F,
) -> (f64, F) {
    cell_generic(cell, genes, out, with_grad, c, c_theta)
}

/// The likelihood of one cell: a dense pass over all genes as if every count were zero (plain
/// arithmetic, vectorised), then a sparse pass that replaces the terms of the non-zero counts
/// (lgamma and digamma, scalar). Returns (log-likelihood, d/d log library).
#[inline(always)]
fn cell_generic<F: KernelFloat>(
    cell: &Cell<'_, F>,
    genes: &GeneTerms<'_, F>,
    out: CellOutputs<'_, F>,
    with_grad: bool,
    c: F,
    c_theta: F,
) -> (f64, F) {
    let s = cell.scale_logits;
    let g = s.len();
    let l = cell.log_library;
    let library = l.fast_exp();
    let one = F::one();
    // Slices of exactly g elements let the compiler drop bounds checks and vectorise; sums go
    // through `lane_sum` (a float sum in one accumulator cannot be vectorised).
    let theta = &genes.theta[..g];
    let log_theta = &genes.log_theta[..g];
    let rho = &mut out.rho[..g];
    let work = &mut out.work[..g];
    let d_scale = &mut out.d_scale[..g];
    let d_theta = &mut out.d_theta[..g];
    // Softmax with the max subtracted.
    let m = lane_max(s);
    for j in 0..g {
        rho[j] = (s[j] - m).fast_exp();
    }
    let z = lane_sum(rho);
    let inv_z = z.recip();
    let log_z = z.fast_ln();
    for r in rho.iter_mut() {
        *r = *r * inv_z;
    }

    // Dense pass: every gene as a zero count. `work` holds the per-gene log-likelihood terms.
    match cell.dropout_logits {
        Some(pi) => {
            let pi = &pi[..g];
            let d_dropout = &mut out.d_dropout[..g];
            for j in 0..g {
                let (th, r) = (theta[j], log_theta[j]);
                let mu = library * rho[j];
                let log_th_mu = (th + mu).fast_ln();
                let inv_th_mu = (th + mu).recip();
                let nb0 = th * (r - log_th_mu);
                let (sp_t, sig_t) = softplus_sigmoid(nb0 - pi[j]);
                let (sp_mp, sig_mp) = softplus_sigmoid(-pi[j]);
                work[j] = sp_t - sp_mp;
                d_scale[j] = -sig_t * th * mu * inv_th_mu;
                d_dropout[j] = c * (sig_mp - sig_t);
                d_theta[j] =
                    d_theta[j] + c_theta * sig_t * th * (r - log_th_mu + one - th * inv_th_mu);
            }
        }
        None => {
            for j in 0..g {
                let (th, r) = (theta[j], log_theta[j]);
                let mu = library * rho[j];
                let log_th_mu = (th + mu).fast_ln();
                let inv_th_mu = (th + mu).recip();
                work[j] = th * (r - log_th_mu);
                d_scale[j] = -th * mu * inv_th_mu;
                d_theta[j] = d_theta[j] + c_theta * th * (r - log_th_mu + one - th * inv_th_mu);
            }
        }
    }
    let mut sum_da = lane_sum(d_scale);
    let rho = &*rho;
    let mut ll = to64(lane_sum(work));

    // Sparse pass: the non-zero counts replace their zero-count terms.
    let (cols, vals) = cell.counts;
    for (&col, &x) in cols.iter().zip(vals) {
        if x == 0.0 {
            continue;
        }
        let j = col as usize;
        let (th, r) = (genes.theta[j], genes.log_theta[j]);
        let mu = library * rho[j];
        let log_mu = l + s[j] - m - log_z;
        let log_th_mu = (th + mu).fast_ln();
        let inv_th_mu = (th + mu).recip();
        let nb0 = th * (r - log_th_mu);
        let xf = F::from(x).expect("a count converts to a float");
        let (lgamma_ratio, digamma_diff) = gamma_ratio_terms(
            x as f64,
            to64(th),
            genes.lgamma_theta[j],
            genes.digamma_theta[j],
        );
        // lgamma(x + 1) is a constant of the data; kept so values match scvi-tools'.
        let log_nb = to64(nb0 + xf * (log_mu - log_th_mu)) + lgamma_ratio - ln_factorial(x as f64);
        let da = th * (xf - mu) * inv_th_mu;
        let dr = th
            * (r - log_th_mu + one - (th + xf) * inv_th_mu
                + F::from(digamma_diff).expect("finite"));
        let (zero_term, zero_da, zero_dr);
        match cell.dropout_logits {
            Some(pi) => {
                let p = pi[j];
                let (sp_t, sig_t) = softplus_sigmoid(nb0 - p);
                let (sp_mp, sig_mp) = softplus_sigmoid(-p);
                zero_term = to64(sp_t - sp_mp);
                zero_da = -sig_t * th * mu * inv_th_mu;
                zero_dr = sig_t * th * (r - log_th_mu + one - th * inv_th_mu);
                ll += -to64(p) - to64(sp_mp) + log_nb - zero_term;
                if with_grad {
                    out.d_dropout[j] = c * (sig_mp - one);
                }
            }
            None => {
                zero_term = to64(nb0);
                zero_da = -th * mu * inv_th_mu;
                zero_dr = th * (r - log_th_mu + one - th * inv_th_mu);
                ll += log_nb - zero_term;
            }
        }
        d_scale[j] = da;
        sum_da = sum_da + da - zero_da;
        d_theta[j] = d_theta[j] + c_theta * (dr - zero_dr);
    }

    if !with_grad {
        return (ll, F::zero());
    }
    // Through the softmax: d/ds_j = da_j - rho_j * sum_k da_k; d/dl = sum_k da_k.
    for j in 0..g {
        d_scale[j] = c * (d_scale[j] - rho[j] * sum_da);
    }
    (ll, c * sum_da)
}

/// lgamma(x + theta) - lgamma(theta) and digamma(x + theta) - digamma(theta). Counts are
/// mostly small integers, for which the ratio is a finite product: ln prod_{k<x}(theta + k) and
/// sum_{k<x} 1/(theta + k), far cheaper than two series evaluations.
#[inline]
fn gamma_ratio_terms(x: f64, theta: f64, lgamma_theta: f64, digamma_theta: f64) -> (f64, f64) {
    if x == x.floor() && x <= 16.0 && theta < 1e6 {
        let mut product = 1.0;
        let mut inv_sum = 0.0;
        let mut k = 0.0;
        while k < x {
            product *= theta + k;
            inv_sum += 1.0 / (theta + k);
            k += 1.0;
        }
        (product.ln(), inv_sum)
    } else {
        (
            ln_gamma(x + theta) - lgamma_theta,
            digamma(x + theta) - digamma_theta,
        )
    }
}

/// ln(x!) (= lgamma(x + 1)), from a table for integers below 1024.
#[inline]
fn ln_factorial(x: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = Vec::with_capacity(1024);
        let mut acc = 0.0f64;
        t.push(0.0);
        for k in 1..1024 {
            acc += (k as f64).ln();
            t.push(acc);
        }
        t
    });
    if x == x.floor() && x >= 0.0 && x < 1024.0 {
        table[x as usize]
    } else {
        ln_gamma(x + 1.0)
    }
}

/// Sum with 8 independent accumulators (vectorisable; fixed order, so deterministic).
#[inline(always)]
fn lane_sum<F: KernelFloat>(v: &[F]) -> F {
    let mut acc = [F::zero(); 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for k in 0..8 {
            acc[k] = acc[k] + chunk[k];
        }
    }
    let mut total =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &t in tail {
        total = total + t;
    }
    total
}

/// Maximum with 8 independent accumulators (vectorisable).
#[inline(always)]
fn lane_max<F: KernelFloat>(v: &[F]) -> F {
    let mut acc = [F::neg_infinity(); 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for k in 0..8 {
            acc[k] = acc[k].max(chunk[k]);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(F::neg_infinity(), |a, &b| a.max(b))
}

/// softplus(x) and sigmoid(x) sharing one exponential (branch-free, so loops vectorise).
#[inline(always)]
fn softplus_sigmoid<F: KernelFloat>(x: F) -> (F, F) {
    let e = (-x.abs()).fast_exp();
    let one_plus_e = F::one() + e;
    let sp = x.max(F::zero()) + one_plus_e.fast_ln();
    let inv = one_plus_e.recip();
    // sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
    let sig = if x >= F::zero() { inv } else { e * inv };
    (sp, sig)
}

#[inline(always)]
fn to64<F: Float>(v: F) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// (x, mu, theta, pi, log NB, log ZINB) from scipy.stats.nbinom(n = theta,
    /// p = theta / (theta + mu)) and log(sigmoid(pi) [x = 0] + (1 - sigmoid(pi)) NB(x)).
    const REFERENCE: &[(f32, f64, f64, f64, f64, f64)] = &[
        (0.0, 0.5, 2.0, -1.0, -0.4462871026284194, -0.305413127034395),
        (
            0.0,
            30.0,
            0.3,
            1.5,
            -1.3845361550523778,
            -0.14703806924319052,
        ),
        (3.0, 2.5, 1.2, 0.2, -2.185169521019689, -2.9833083904012807),
        (
            17.0,
            40.0,
            5.0,
            -2.0,
            -4.291422874847545,
            -4.418350885890518,
        ),
        (
            1.0,
            0.01,
            0.05,
            3.0,
            -4.796607820621744,
            -7.8451951721954885,
        ),
        (
            250.0,
            180.0,
            12.0,
            0.0,
            -5.911890255262296,
            -6.605037435822242,
        ),
    ];

    /// One cell per reference case, one gene each, so mu is exactly the reference mean:
    /// a single gene has softmax 1 and mu = exp(l).
    fn reference_value(case: &(f32, f64, f64, f64, f64, f64), likelihood: GeneLikelihood) -> f64 {
        let &(x, mu, theta, pi, _, _) = case;
        let counts = if x > 0.0 {
            CsrMatrix::new(1, 1, vec![0, 1], vec![0], vec![x]).unwrap()
        } else {
            CsrMatrix::new(1, 1, vec![0, 0], vec![], vec![]).unwrap()
        };
        let scale = [0.0f64];
        let dropout = [pi];
        let log_theta = [theta.ln()];
        let log_library = [mu.ln()];
        let out = DecoderOutputs {
            scale_logits: &scale,
            dropout_logits: Some(&dropout),
            log_theta: &log_theta,
            log_library: &log_library,
        };
        log_likelihood(likelihood, &counts, &[0], &out, None, None).log_lik[0]
    }

    #[test]
    fn nb_and_zinb_match_scipy() {
        for case in REFERENCE {
            let nb = reference_value(case, GeneLikelihood::Nb);
            let zinb = reference_value(case, GeneLikelihood::Zinb);
            assert!((nb - case.4).abs() < 1e-10, "NB {case:?}: {nb}");
            assert!((zinb - case.5).abs() < 1e-10, "ZINB {case:?}: {zinb}");
        }
    }

    #[test]
    fn f32_evaluation_is_close_to_f64() {
        let (counts, rows, data) = random_problem(11);
        let r64 = log_likelihood(
            GeneLikelihood::Zinb,
            &counts,
            &rows,
            &data.view(),
            None,
            None,
        );
        let d32: Vec<Vec<f32>> = [
            &data.scale,
            &data.dropout,
            &data.log_theta,
            &data.log_library,
        ]
        .iter()
        .map(|v| v.iter().map(|&x| x as f32).collect())
        .collect();
        let out32 = DecoderOutputs {
            scale_logits: &d32[0],
            dropout_logits: Some(&d32[1]),
            log_theta: &d32[2],
            log_library: &d32[3],
        };
        let r32 = log_likelihood(GeneLikelihood::Zinb, &counts, &rows, &out32, None, None);
        for (a, b) in r64.log_lik.iter().zip(&r32.log_lik) {
            assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    struct Problem {
        scale: Vec<f64>,
        dropout: Vec<f64>,
        log_theta: Vec<f64>,
        log_library: Vec<f64>,
    }

    impl Problem {
        fn view(&self) -> DecoderOutputs<'_, f64> {
            DecoderOutputs {
                scale_logits: &self.scale,
                dropout_logits: Some(&self.dropout),
                log_theta: &self.log_theta,
                log_library: &self.log_library,
            }
        }
    }

    /// 13 cells (more than one parallel task) x 6 genes, about half the counts zero; the
    /// minibatch takes the cells in a shuffled order.
    fn random_problem(seed: u64) -> (CsrMatrix, Vec<usize>, Problem) {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let (n, g) = (13, 6);
        let mut indptr = vec![0];
        let (mut indices, mut values) = (vec![], vec![]);
        for _ in 0..n {
            for j in 0..g {
                if rng.random::<f64>() < 0.5 {
                    indices.push(j as u32);
                    values.push((1.0 + 30.0 * rng.random::<f64>()).floor() as f32);
                }
            }
            indptr.push(indices.len());
        }
        let counts = CsrMatrix::new(n, g, indptr, indices, values).unwrap();
        let mut rows: Vec<usize> = (0..n).collect();
        rows.reverse();
        let mut u = |a: f64, b: f64| a + (b - a) * rng.random::<f64>();
        let problem = Problem {
            scale: (0..n * g).map(|_| u(-2.0, 2.0)).collect(),
            dropout: (0..n * g).map(|_| u(-3.0, 3.0)).collect(),
            log_theta: (0..g).map(|_| u(-1.5, 2.5)).collect(),
            log_library: (0..n).map(|_| u(1.0, 5.0)).collect(),
        };
        (counts, rows, problem)
    }

    fn total(likelihood: GeneLikelihood, counts: &CsrMatrix, rows: &[usize], p: &Problem) -> f64 {
        log_likelihood(likelihood, counts, rows, &p.view(), None, None)
            .log_lik
            .iter()
            .sum()
    }

    /// Central finite differences of the summed log-likelihood against every analytic gradient.
    #[test]
    fn gradients_match_finite_differences() {
        for likelihood in [GeneLikelihood::Zinb, GeneLikelihood::Nb] {
            let (counts, rows, mut p) = random_problem(3);
            let scale = -0.5;
            let res = log_likelihood(likelihood, &counts, &rows, &p.view(), Some(scale), None);
            let h = 1e-5;
            let fields = ["scale logits", "log theta", "log library", "dropout logits"];
            for (field, what) in fields.iter().enumerate() {
                let analytic: &[f64] = match field {
                    0 => &res.d_scale_logits,
                    1 => &res.d_log_theta,
                    2 => &res.d_log_library,
                    _ => &res.d_dropout_logits,
                };
                if field == 3 && likelihood == GeneLikelihood::Nb {
                    assert!(analytic.is_empty());
                    continue;
                }
                for (k, &a) in analytic.iter().enumerate() {
                    *slot(&mut p, field, k) += h;
                    let up = total(likelihood, &counts, &rows, &p);
                    *slot(&mut p, field, k) -= 2.0 * h;
                    let down = total(likelihood, &counts, &rows, &p);
                    *slot(&mut p, field, k) += h;
                    let fd = scale * (up - down) / (2.0 * h);
                    assert!(
                        (fd - a).abs() < 1e-6 * fd.abs().max(1.0),
                        "{likelihood:?} {what}[{k}]: finite difference {fd} vs analytic {a}"
                    );
                }
            }
        }
    }

    /// With theta weights, the dispersion gradient is the weighted sum of each cell's own.
    #[test]
    fn theta_weights_weight_each_cells_dispersion_gradient() {
        let (counts, rows, p) = random_problem(5);
        assert!(rows.len() > CELLS_PER_TASK);
        let weights: Vec<f64> = (0..rows.len()).map(|i| 0.5 + i as f64).collect();
        let weighted = log_likelihood(
            GeneLikelihood::Zinb,
            &counts,
            &rows,
            &p.view(),
            Some(-2.0),
            Some(&weights),
        );
        let g = counts.n_cols;
        let mut expected = vec![0f64; g];
        for (i, &r) in rows.iter().enumerate() {
            let one = Problem {
                scale: p.scale[i * g..(i + 1) * g].to_vec(),
                dropout: p.dropout[i * g..(i + 1) * g].to_vec(),
                log_theta: p.log_theta.clone(),
                log_library: vec![p.log_library[i]],
            };
            let single = log_likelihood(
                GeneLikelihood::Zinb,
                &counts,
                &[r],
                &one.view(),
                Some(-2.0),
                None,
            );
            for (e, d) in expected.iter_mut().zip(&single.d_log_theta) {
                *e += weights[i] * d;
            }
        }
        for (a, b) in weighted.d_log_theta.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    fn slot(p: &mut Problem, field: usize, k: usize) -> &mut f64 {
        match field {
            0 => &mut p.scale[k],
            1 => &mut p.log_theta[k],
            2 => &mut p.log_library[k],
            _ => &mut p.dropout[k],
        }
    }

    #[test]
    fn small_count_shortcuts_agree_with_the_series() {
        for &theta in &[1e-3, 0.37, 2.0, 55.0, 9e5] {
            for x in 0..=16 {
                let x = x as f64;
                let (lr, dd) = gamma_ratio_terms(x, theta, ln_gamma(theta), digamma(theta));
                let lr_ref = ln_gamma(x + theta) - ln_gamma(theta);
                let dd_ref = digamma(x + theta) - digamma(theta);
                assert!(
                    (lr - lr_ref).abs() < 1e-9 * lr_ref.abs().max(1.0),
                    "lgamma ratio x={x} theta={theta}"
                );
                assert!(
                    (dd - dd_ref).abs() < 1e-9 * dd_ref.abs().max(1.0),
                    "digamma diff x={x} theta={theta}"
                );
                assert!(
                    (ln_factorial(x) - ln_gamma(x + 1.0)).abs() < 1e-9 * ln_factorial(x).max(1.0)
                );
            }
        }
        assert!((ln_factorial(2000.0) - ln_gamma(2001.0)).abs() < 1e-9 * ln_gamma(2001.0));
    }

    #[test]
    fn no_gradient_buffers_without_a_gradient() {
        let (counts, rows, p) = random_problem(5);
        assert!(rows.len() > CELLS_PER_TASK);
        let res = log_likelihood(GeneLikelihood::Zinb, &counts, &rows, &p.view(), None, None);
        assert!(res.d_scale_logits.is_empty() && res.d_log_theta.is_empty());
        assert_eq!(res.log_lik.len(), rows.len());
        assert!(res.log_lik.iter().all(|v| v.is_finite() && *v < 0.0));
    }
}
