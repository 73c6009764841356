//! Harmony (Korsunsky et al. 2019): alternate a soft k-means with an entropy term (sigma) and
//! a batch-diversity penalty (theta) on the cosine-normalised embedding, and a
//! mixture-of-experts ridge regression (lambda) that removes each cluster's batch effect from
//! the ORIGINAL embedding, until the objective stops changing.
//!
//! Defaults are Seurat v5's settings for Harmony: theta 2, sigma 0.1, lambda 1,
//! K = min(round(N / 30), 100), 10 rounds, 20 clustering iterations with tolerance 1e-5,
//! Harmony tolerance 1e-4, blocks of 5% of the cells.
//!
//! Choices that differ from the R package and harmonypy (and why):
//! - Cells are processed in an order fixed by their content and the seed, not by their
//!   position, so permuting the input permutes the output and changes nothing else.
//! - As in R harmony, a round whose objective rises ends the iteration (once the corrections
//!   settle, the objective only moves by the noise of the random block order), but not the
//!   first round: there a rise comes from the first correction, and stopping on it left two
//!   fully separated batches uncorrected in harmonypy.
//! - With several batch variables a cell's penalty is the product of its per-variable
//!   factors, as the objective's gradient implies (R harmony sums them).
//! - k-means++ with one start initialises the centroids (R harmony calls stats::kmeans with
//!   10 starts; the soft clustering that follows forgets most of the start).
//!
//! Like the R package and harmonypy, the clustering state (cosine-normalised cells,
//! centroids, distances, memberships) is single precision; sums over cells, the objective and
//! the ridge correction are double precision.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::data::DenseMatrix;
use crate::distributions::fastmath::exp_f32_in_place;
use crate::error::{Error, Result};
use crate::simd::clear_upper_simd_state;

/// Cells per parallel task; fixed so that sums do not depend on the number of threads.
const CHUNK: usize = 1024;
/// Lloyd iterations of the k-means initialisation (stats::kmeans' iter.max).
const KMEANS_ITERATIONS: usize = 25;
/// Clustering iterations compared in the convergence window (R harmony's window_size).
const WINDOW: usize = 3;
/// Log-memberships are held at least this high relative to a cell's largest (see
/// `soft_assign`).
const LOG_FLOOR: f32 = -40.0;

/// Sum of `f(i)` over `0..len` in 8 interleaved single-precision lanes (so that it
/// vectorises), added up in double precision.
#[inline(always)]
fn lane_sum(len: usize, f: impl Fn(usize) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let full = len / 8 * 8;
    for base in (0..full).step_by(8) {
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane += f(base + j);
        }
    }
    let tail: f64 = (full..len).map(|i| f(i) as f64).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// Turns a cell's logits into memberships (softmax) in place and returns the cell's terms of
/// the objective: k-means error sum(r * dist) and entropy sum(r * ln r). Memberships more
/// than e^40 below the cell's largest are held at that floor (their exact value cannot
/// matter, and the floor keeps the exponentials branch-free).
fn soft_assign(logit: &mut [f32], dist: &[f32], shifted: &mut [f32]) -> (f64, f64) {
    // Maximum over 8 interleaved lanes (vectorises; the logits are finite).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = logit.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for (l, s) in logit.iter_mut().zip(shifted.iter_mut()) {
        *s = (*l - max).max(LOG_FLOOR);
        *l = *s;
    }
    // Plain-arithmetic exp (vectorised; glibc's was a sixth of Harmony's run time).
    exp_f32_in_place(logit);
    let len = logit.len();
    let total = lane_sum(len, |i| logit[i]);
    let weighted_log = lane_sum(len, |i| logit[i] * shifted[i]);
    let inv_total = (1.0 / total) as f32;
    logit.iter_mut().for_each(|l| *l *= inv_total);
    let kmeans = lane_sum(len, |i| logit[i] * dist[i]);
    // ln r = shifted - ln(total).
    (kmeans, weighted_log / total - total.ln())
}

#[derive(Debug, Clone, PartialEq)]
pub struct HarmonyConfig {
    /// Diversity penalty: one value for every batch variable, or one per variable.
    pub theta: Vec<f64>,
    /// Ridge penalty of the batch coefficients: one value, or one per batch variable.
    pub lambda: Vec<f64>,
    /// Width of the soft clusters (entropy weight).
    pub sigma: f64,
    /// Number of clusters; `None`: min(round(N / 30), 100).
    pub n_clusters: Option<usize>,
    /// Expected cells per cluster below which theta is shrunk for small batches; 0 = off.
    pub tau: f64,
    /// Share of cells whose cluster memberships are updated together.
    pub block_size: f64,
    /// Maximum rounds of clustering + correction.
    pub max_iter: usize,
    /// Maximum soft k-means iterations per round.
    pub max_iter_cluster: usize,
    /// Relative change of the windowed clustering objective that ends a round's clustering.
    pub epsilon_cluster: f64,
    /// Relative change of the objective between rounds that ends Harmony.
    pub epsilon_harmony: f64,
    pub seed: u64,
}

impl Default for HarmonyConfig {
    fn default() -> Self {
        Self {
            theta: vec![2.0],
            lambda: vec![1.0],
            sigma: 0.1,
            n_clusters: None,
            tau: 0.0,
            block_size: 0.05,
            max_iter: 10,
            max_iter_cluster: 20,
            epsilon_cluster: 1e-5,
            epsilon_harmony: 1e-4,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HarmonyResult {
    /// The corrected embedding, cells in input order.
    pub embedding: DenseMatrix,
    /// Objective after initialisation and after each round's clustering.
    pub objective: Vec<f64>,
    /// Soft k-means iterations in each round.
    pub cluster_iterations: Vec<usize>,
    /// True when the objective settled before `max_iter` rounds.
    pub converged: bool,
    pub n_clusters: usize,
}

/// Progress after each round: (round, objective).
pub type RoundObserver<'a> = &'a mut dyn FnMut(usize, f64);

/// Harmony on `embedding` (cells x dimensions, e.g. 50 PCs). `batches` holds one code vector
/// per batch variable (codes 0..levels). `should_stop` is polled between iterations.
pub fn harmony(
    embedding: &DenseMatrix,
    batches: &[Vec<u32>],
    config: &HarmonyConfig,
    should_stop: &dyn Fn() -> bool,
    on_round: RoundObserver,
) -> Result<HarmonyResult> {
    let design = Design::new(embedding, batches, config)?;
    let n = embedding.n_rows;
    let d = embedding.n_cols;

    // Canonical order: sort cells by a hash of their content, so that results do not depend
    // on input order (ties are identical cells, interchangeable).
    let keys: Vec<u64> = (0..n)
        .map(|i| cell_key(config.seed, embedding.row(i), batches, i))
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (keys[i], i));
    let mut z = vec![0.0; n * d];
    for (slot, &i) in order.iter().enumerate() {
        z[slot * d..(slot + 1) * d].copy_from_slice(embedding.row(i));
    }
    let cell_batches: Vec<u32> = order
        .iter()
        .flat_map(|&i| {
            design.cell_batches[i * design.n_vars..(i + 1) * design.n_vars]
                .iter()
                .copied()
        })
        .collect();
    let design = Design {
        cell_batches,
        ..design
    };

    let mut state = State::new(z, d, &design, config)?;
    state.initialise(config)?;
    let mut objective = vec![state.objective()];
    let mut cluster_iterations = Vec::new();
    let mut converged = false;
    for round in 1..=config.max_iter {
        let iterations = state.cluster(config, should_stop)?;
        cluster_iterations.push(iterations);
        objective.push(state.objective());
        state.correct()?;
        on_round(round, *objective.last().unwrap_or(&f64::NAN));
        let (old, new) = (
            objective[objective.len() - 2],
            objective[objective.len() - 1],
        );
        let decrease = (old - new) / old.abs();
        let settled = if round == 1 {
            decrease.abs() < config.epsilon_harmony
        } else {
            decrease < config.epsilon_harmony
        };
        if settled {
            converged = true;
            break;
        }
    }

    let mut out = vec![0.0; n * d];
    for (slot, &i) in order.iter().enumerate() {
        out[i * d..(i + 1) * d].copy_from_slice(&state.z_corr[slot * d..(slot + 1) * d]);
    }
    Ok(HarmonyResult {
        embedding: DenseMatrix::new(n, d, out)?,
        objective,
        cluster_iterations,
        converged,
        n_clusters: state.k,
    })
}

/// The batch design: every cell's batch in each variable as a global batch index.
struct Design {
    n_vars: usize,
    /// Total number of batches over all variables.
    n_batches: usize,
    /// Cells x variables, global batch indices.
    cell_batches: Vec<u32>,
    /// Share of cells in each batch (sums to 1 within a variable).
    proportion: Vec<f64>,
    /// Diversity penalty of each batch.
    theta: Vec<f64>,
    /// Ridge penalty of each batch.
    lambda: Vec<f64>,
}

impl Design {
    fn new(embedding: &DenseMatrix, batches: &[Vec<u32>], config: &HarmonyConfig) -> Result<Self> {
        let n = embedding.n_rows;
        if n < 2 || embedding.n_cols == 0 {
            return Err(Error::invalid(
                "x",
                "needs at least 2 cells and 1 dimension",
            ));
        }
        if embedding.data.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("x", "contains NA or infinite values"));
        }
        if batches.is_empty() {
            return Err(Error::invalid("batch", "is required"));
        }
        let n_vars = batches.len();
        let per_var = |values: &[f64], name: &str| -> Result<Vec<f64>> {
            match values.len() {
                1 => Ok(vec![values[0]; n_vars]),
                len if len == n_vars => Ok(values.to_vec()),
                len => Err(Error::invalid(
                    name,
                    format!("needs one value or one per batch variable ({n_vars}), not {len}"),
                )),
            }
        };
        let theta_var = per_var(&config.theta, "theta")?;
        let lambda_var = per_var(&config.lambda, "lambda")?;
        if theta_var.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(Error::invalid("theta", "must be finite and >= 0"));
        }
        if lambda_var.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(Error::invalid("lambda", "must be finite and > 0"));
        }
        check_positive(config.sigma, "sigma")?;
        if !(config.block_size > 0.0 && config.block_size <= 1.0) {
            return Err(Error::invalid("block_size", "must be in (0, 1]"));
        }
        if !(config.tau >= 0.0 && config.tau.is_finite()) {
            return Err(Error::invalid("tau", "must be finite and >= 0"));
        }
        if config.max_iter_cluster == 0 {
            return Err(Error::invalid("max_iter_cluster", "must be at least 1"));
        }
        let k = match config.n_clusters {
            Some(k) => k,
            None => default_n_clusters(n),
        };
        if k == 0 || k > n {
            return Err(Error::invalid(
                "nclust",
                format!("must be between 1 and the number of cells ({n}), not {k}"),
            ));
        }

        let mut offsets = Vec::with_capacity(n_vars);
        let mut sizes: Vec<f64> = Vec::new();
        let mut theta = Vec::new();
        let mut lambda = Vec::new();
        for (v, codes) in batches.iter().enumerate() {
            if codes.len() != n {
                return Err(Error::invalid(
                    "batch",
                    format!("has {} values but there are {n} cells", codes.len()),
                ));
            }
            let levels = codes.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
            let mut counts = vec![0.0; levels];
            for &c in codes {
                counts[c as usize] += 1.0;
            }
            let present = counts.iter().filter(|&&c| c > 0.0).count();
            if present < 2 {
                let what = if n_vars == 1 {
                    "batch".to_string()
                } else {
                    format!("batch variable {}", v + 1)
                };
                return Err(Error::invalid(
                    "batch",
                    format!(
                        "{what} has a single level: Harmony needs cells from at least 2 batches"
                    ),
                ));
            }
            offsets.push(sizes.len() as u32);
            for &count in &counts {
                // Shrink theta for batches too small to fill clusters (tau > 0), as Harmony does.
                let shrink = if config.tau > 0.0 {
                    1.0 - (-(count / (k as f64 * config.tau)).powi(2)).exp()
                } else {
                    1.0
                };
                theta.push(theta_var[v] * shrink);
                lambda.push(lambda_var[v]);
            }
            sizes.extend(counts);
        }
        let cell_batches = (0..n)
            .flat_map(|i| {
                batches
                    .iter()
                    .zip(&offsets)
                    .map(move |(codes, off)| off + codes[i])
            })
            .collect();
        Ok(Self {
            n_vars,
            n_batches: sizes.len(),
            cell_batches,
            proportion: sizes.iter().map(|s| s / n as f64).collect(),
            theta,
            lambda,
        })
    }

    fn of(&self, cell: usize) -> &[u32] {
        &self.cell_batches[cell * self.n_vars..(cell + 1) * self.n_vars]
    }
}

/// K = min(round(N / 30), 100), at least 1.
pub fn default_n_clusters(n_cells: usize) -> usize {
    ((n_cells as f64 / 30.0).round() as usize).clamp(1, 100)
}

fn check_positive(value: f64, name: &str) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            format!("must be a positive number, not {value}"),
        ))
    }
}

/// A 64-bit hash of a cell's coordinates, batches and the seed (splitmix64 steps). The index
/// only enters for cells whose coordinates are not finite, which `Design` already rejects.
fn cell_key(seed: u64, row: &[f64], batches: &[Vec<u32>], i: usize) -> u64 {
    let mut h = splitmix(seed ^ 0x5eed_cafe_f00d_u64);
    for v in row {
        h = splitmix(h ^ v.to_bits());
    }
    for codes in batches {
        h = splitmix(h ^ u64::from(codes[i]));
    }
    h
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Rows of `m` (row-major, `cols` wide) scaled to unit length, in single precision.
fn unit_rows(m: &[f64], cols: usize) -> Vec<f32> {
    m.chunks(cols)
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            row.iter().map(move |v| (v * scale) as f32)
        })
        .collect()
}

/// Rows of `m` (row-major, `cols` wide) scaled to unit length.
fn normalize_rows(m: &mut [f32], cols: usize) {
    for row in m.chunks_mut(cols) {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
        }
    }
}

/// `a . b'` for `a` (n x d) and `b` (k x d), row-major n x k, in fixed row chunks.
fn dots(a: &[f32], b: &[f32], d: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; a.len() / d * k];
    dots_into(a, b, d, k, &mut out);
    out
}

/// `dots` into an existing buffer of n x k.
fn dots_into(a: &[f32], b: &[f32], d: usize, k: usize, out: &mut [f32]) {
    let bm = MatRef::from_row_major_slice(b, k, d);
    out.par_chunks_mut(CHUNK * k)
        .enumerate()
        .for_each(|(c, dst)| {
            let rows = dst.len() / k;
            let am =
                MatRef::from_row_major_slice(&a[c * CHUNK * d..(c * CHUNK + rows) * d], rows, d);
            let dm = MatMut::from_row_major_slice_mut(dst, rows, k);
            matmul(dm, Accum::Replace, am, bm.transpose(), 1.0f32, Par::Seq);
            clear_upper_simd_state();
        });
}

/// `w' . a` for `w` (n x k) and `a` (n x d): k x d row-major, summed over fixed chunks.
fn weighted_sums(w: &[f32], a: &[f32], k: usize, d: usize) -> Vec<f32> {
    let n = a.len() / d;
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let wm = MatRef::from_row_major_slice(&w[start * k..end * k], end - start, k);
            let am = MatRef::from_row_major_slice(&a[start * d..end * d], end - start, d);
            let mut part = vec![0.0f32; k * d];
            matmul(
                MatMut::from_row_major_slice_mut(&mut part, k, d),
                Accum::Replace,
                wm.transpose(),
                am,
                1.0f32,
                Par::Seq,
            );
            clear_upper_simd_state();
            part
        })
        .collect();
    let mut out = vec![0.0f64; k * d];
    for part in partials {
        out.iter_mut().zip(part).for_each(|(o, p)| *o += p as f64);
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// Summed memberships of a set of cells: per cluster (`sizes`, k) and per batch and cluster
/// (`observed`, batches x k).
struct Counts {
    sizes: Vec<f64>,
    observed: Vec<f64>,
}

impl Counts {
    fn zeros(n_batches: usize, k: usize) -> Self {
        Self {
            sizes: vec![0.0; k],
            observed: vec![0.0; n_batches * k],
        }
    }

    /// Counts of (cell, memberships) pairs, summed in the order given.
    fn of<'r>(design: &Design, k: usize, rows: impl Iterator<Item = (usize, &'r [f32])>) -> Self {
        let mut counts = Self::zeros(design.n_batches, k);
        for (i, ri) in rows {
            for (s, &v) in counts.sizes.iter_mut().zip(ri) {
                *s += v as f64;
            }
            for &b in design.of(i) {
                for (o, v) in counts.observed[b as usize * k..(b as usize + 1) * k]
                    .iter_mut()
                    .zip(ri)
                {
                    *o += *v as f64;
                }
            }
        }
        counts
    }

    fn add(&mut self, other: &Counts, sign: f64) {
        self.sizes
            .iter_mut()
            .zip(&other.sizes)
            .for_each(|(a, b)| *a += sign * b);
        self.observed
            .iter_mut()
            .zip(&other.observed)
            .for_each(|(a, b)| *a += sign * b);
    }
}

struct State<'a> {
    design: &'a Design,
    n: usize,
    d: usize,
    k: usize,
    sigma: f64,
    block_size: f64,
    rng: Xoshiro256PlusPlus,
    z_orig: Vec<f64>,
    z_corr: Vec<f64>,
    z_cos: Vec<f32>,
    /// Cluster centroids, k x d, unit rows.
    y: Vec<f32>,
    /// Cosine distances 2(1 - z_cos . y), n x k.
    dist: Vec<f32>,
    /// Soft assignments, n x k, rows sum to 1.
    r: Vec<f32>,
    /// Each cell's k-means error and entropy terms of the objective (from `soft_assign`).
    cell_terms: Vec<(f64, f64)>,
    /// Observed and expected counts of each batch in each cluster, batches x k (batch-major,
    /// so that a cell's updates run over contiguous clusters).
    observed: Vec<f64>,
    expected: Vec<f64>,
}

impl<'a> State<'a> {
    fn new(z: Vec<f64>, d: usize, design: &'a Design, config: &HarmonyConfig) -> Result<Self> {
        let n = z.len() / d;
        if let Some(i) = z.chunks(d).position(|row| row.iter().all(|&v| v == 0.0)) {
            return Err(Error::invalid(
                "x",
                format!("a cell (row {}) has all coordinates zero", i + 1),
            ));
        }
        let z_cos = unit_rows(&z, d);
        let k = config.n_clusters.unwrap_or_else(|| default_n_clusters(n));
        Ok(Self {
            design,
            n,
            d,
            k,
            sigma: config.sigma,
            block_size: config.block_size,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            z_corr: z.clone(),
            z_orig: z,
            z_cos,
            y: Vec::new(),
            dist: Vec::new(),
            r: Vec::new(),
            cell_terms: Vec::new(),
            observed: Vec::new(),
            expected: Vec::new(),
        })
    }

    /// k-means++ + Lloyd on the cosine-normalised cells, then soft assignments without the
    /// diversity penalty (as Harmony's init_cluster).
    fn initialise(&mut self, _config: &HarmonyConfig) -> Result<()> {
        let (n, d, k) = (self.n, self.d, self.k);
        let x = &self.z_cos;
        // Squared distance to a centre that is one of the (unit-length) cells: 2 - 2 x.c.
        let sq_dist = |i: usize, c: &[f32]| -> f64 {
            let row = &x[i * d..(i + 1) * d];
            (2.0 - 2.0 * lane_sum(d, |j| row[j] * c[j])).max(0.0)
        };
        let first = self.rng.random_range(0..n);
        let mut centers: Vec<f32> = x[first * d..(first + 1) * d].to_vec();
        let mut nearest: Vec<f64> = (0..n).map(|i| sq_dist(i, &centers[0..d])).collect();
        for c in 1..k {
            let total: f64 = nearest.iter().sum();
            let pick = if total > 0.0 {
                let mut target = self.rng.random::<f64>() * total;
                let mut chosen = n - 1;
                for (i, &w) in nearest.iter().enumerate() {
                    if target < w {
                        chosen = i;
                        break;
                    }
                    target -= w;
                }
                chosen
            } else {
                self.rng.random_range(0..n) // every cell already sits on a centre
            };
            centers.extend_from_slice(&x[pick * d..(pick + 1) * d]);
            let new_center = centers[c * d..(c + 1) * d].to_vec();
            nearest.par_iter_mut().enumerate().for_each(|(i, best)| {
                let dd = sq_dist(i, &new_center);
                if dd < *best {
                    *best = dd;
                }
            });
        }
        let mut assignment = vec![usize::MAX; n];
        for _ in 0..KMEANS_ITERATIONS {
            let center_sq: Vec<f32> = centers
                .chunks(d)
                .map(|c| c.iter().map(|v| v * v).sum())
                .collect();
            let cross = dots(x, &centers, d, k);
            let new_assignment: Vec<usize> = cross
                .par_chunks(k)
                .map(|row| {
                    let mut best = (f32::INFINITY, 0);
                    for (c, (&dot, &sq)) in row.iter().zip(&center_sq).enumerate() {
                        let v = sq - 2.0 * dot;
                        if v < best.0 {
                            best = (v, c);
                        }
                    }
                    best.1
                })
                .collect();
            let changed = new_assignment != assignment;
            assignment = new_assignment;
            let mut sums = vec![0.0f64; k * d];
            let mut counts = vec![0usize; k];
            for (i, &c) in assignment.iter().enumerate() {
                counts[c] += 1;
                for (s, &v) in sums[c * d..(c + 1) * d]
                    .iter_mut()
                    .zip(&x[i * d..(i + 1) * d])
                {
                    *s += v as f64;
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    for j in 0..d {
                        centers[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                    }
                } // an emptied cluster keeps its centre
            }
            if !changed {
                break;
            }
        }
        normalize_rows(&mut centers, d);
        self.y = centers;
        self.update_distances();
        // Soft assignments from distances alone.
        let inv_sigma = (1.0 / self.sigma) as f32;
        let mut r: Vec<f32> = self.dist.iter().map(|dv| -dv * inv_sigma).collect();
        self.cell_terms = r
            .par_chunks_mut(k)
            .zip(self.dist.par_chunks(k))
            .map_init(
                || vec![0.0f32; k],
                |scratch, (ri, di)| soft_assign(ri, di, scratch),
            )
            .collect();
        self.r = r;
        self.recount();
        Ok(())
    }

    fn update_distances(&mut self) {
        let (d, k) = (self.d, self.k);
        self.dist.resize(self.n * k, 0.0);
        dots_into(&self.z_cos, &self.y, d, k, &mut self.dist);
        self.dist.par_iter_mut().for_each(|v| *v = 2.0 * (1.0 - *v));
    }

    /// Observed (sum of memberships per cluster and batch) and expected (cluster size times
    /// batch proportion) counts from all memberships.
    fn recount(&mut self) {
        let k = self.k;
        let counts = Counts::of(self.design, k, self.r.chunks(k).enumerate());
        self.set_counts(&counts);
    }

    fn expected_from(&self, sizes: &[f64]) -> Vec<f64> {
        let nb = self.design.n_batches;
        let mut expected = vec![0.0; nb * self.k];
        for b in 0..nb {
            for (e, s) in expected[b * self.k..(b + 1) * self.k].iter_mut().zip(sizes) {
                *e = s * self.design.proportion[b];
            }
        }
        expected
    }

    /// k-means error + sigma * entropy + sigma * theta-weighted diversity (cross entropy).
    fn objective(&self) -> f64 {
        let kmeans: f64 = self.cell_terms.iter().map(|t| t.0).sum();
        let entropy: f64 = self.cell_terms.iter().map(|t| t.1).sum();
        let nb = self.design.n_batches;
        let mut cross = 0.0;
        for c in 0..self.k {
            for b in 0..nb {
                let (o, e) = (self.observed[b * self.k + c], self.expected[b * self.k + c]);
                cross += self.design.theta[b] * o * ((o + 1.0) / (e + 1.0)).ln();
            }
        }
        kmeans + self.sigma * entropy + self.sigma * cross
    }

    /// Soft k-means with the diversity penalty until the windowed objective settles.
    /// Returns the number of iterations.
    fn cluster(&mut self, config: &HarmonyConfig, should_stop: &dyn Fn() -> bool) -> Result<usize> {
        let mut history = Vec::with_capacity(config.max_iter_cluster);
        for iteration in 0..config.max_iter_cluster {
            if should_stop() {
                return Err(Error::Interrupted);
            }
            let mut y = weighted_sums(&self.r, &self.z_cos, self.k, self.d);
            normalize_rows(&mut y, self.d);
            self.y = y;
            self.update_distances();
            self.update_memberships();
            history.push(self.objective());
            if iteration > WINDOW {
                let len = history.len();
                let old: f64 = history[len - 1 - WINDOW..len - 1].iter().sum();
                let new: f64 = history[len - WINDOW..].iter().sum();
                if (old - new) / old.abs() < config.epsilon_cluster {
                    return Ok(iteration + 1);
                }
            }
        }
        Ok(config.max_iter_cluster)
    }

    /// One pass of block updates of the memberships in a random order: each block leaves the
    /// counts, gets memberships from distances and the penalty ((E + 1) / (O + 1))^theta of the
    /// others, and returns.
    fn update_memberships(&mut self) {
        let (n, k, nb) = (self.n, self.k, self.design.n_batches);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        let block = ((n as f64 * self.block_size).ceil() as usize).max(1);
        let inv_sigma = (1.0 / self.sigma) as f32;
        let design = self.design;
        let blocks: Vec<&[usize]> = order.chunks(block).collect();
        // Every block's current counts in one pass over the memberships; their sum is the
        // total (recomputed each pass, so block updates cannot drift).
        let r = &self.r;
        let old: Vec<Counts> = blocks
            .par_iter()
            .map(|cells| {
                Counts::of(
                    design,
                    k,
                    cells.iter().map(|&i| (i, &r[i * k..(i + 1) * k])),
                )
            })
            .collect();
        let mut total = Counts::zeros(nb, k);
        for counts in &old {
            total.add(counts, 1.0);
        }
        for (cells, old) in blocks.iter().zip(&old) {
            total.add(old, -1.0);
            let log_penalty: Vec<f32> = (0..nb * k)
                .map(|bc| {
                    let (o, e) = (
                        total.observed[bc],
                        total.sizes[bc % k] * design.proportion[bc / k],
                    );
                    (design.theta[bc / k] * ((e + 1.0) / (o + 1.0)).ln()) as f32
                })
                .collect();
            let dist = &self.dist;
            let mut memberships = vec![0.0f32; cells.len() * k];
            let terms: Vec<(f64, f64)> = memberships
                .par_chunks_mut(k)
                .zip(cells.par_iter())
                .map_init(
                    || vec![0.0f32; k],
                    |scratch, (logit, &i)| {
                        let di = &dist[i * k..(i + 1) * k];
                        for (l, dv) in logit.iter_mut().zip(di) {
                            *l = -dv * inv_sigma;
                        }
                        for &b in design.of(i) {
                            for (l, p) in logit
                                .iter_mut()
                                .zip(&log_penalty[b as usize * k..(b as usize + 1) * k])
                            {
                                *l += p;
                            }
                        }
                        soft_assign(logit, di, scratch)
                    },
                )
                .collect();
            let new = Counts::of(
                design,
                k,
                cells
                    .iter()
                    .zip(memberships.chunks(k))
                    .map(|(&i, row)| (i, row)),
            );
            total.add(&new, 1.0);
            for ((&i, row), t) in cells.iter().zip(memberships.chunks(k)).zip(terms) {
                self.r[i * k..(i + 1) * k].copy_from_slice(row);
                self.cell_terms[i] = t;
            }
        }
        self.set_counts(&total);
    }

    fn set_counts(&mut self, counts: &Counts) {
        self.observed = counts.observed.clone();
        self.expected = self.expected_from(&counts.sizes);
    }

    /// Mixture-of-experts ridge correction: per cluster, regress the original embedding on
    /// [intercept, batch indicators] weighted by membership (ridge lambda on the batch terms
    /// only) and subtract the membership-weighted batch terms from each cell.
    fn correct(&mut self) -> Result<()> {
        let (n, d, k, nb, nv) = (
            self.n,
            self.d,
            self.k,
            self.design.n_batches,
            self.design.n_vars,
        );
        let p = nb + 1; // intercept + batches
        let design = self.design;
        let r = &self.r;
        let z = &self.z_orig;
        // Per chunk: sums over cells of r_ik * z_i by batch (nb x k x d) and the membership
        // co-occurrence of batch pairs (k x nb x nb), summed over chunks in order.
        let partials: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let mut by_batch = vec![0.0; nb * k * d];
                let mut pairs = vec![0.0; k * nb * nb];
                for i in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
                    let ri = &r[i * k..(i + 1) * k];
                    let zi = &z[i * d..(i + 1) * d];
                    let bs = design.of(i);
                    for &b in bs {
                        let dst = &mut by_batch[b as usize * k * d..(b as usize + 1) * k * d];
                        for (c, &rv) in ri.iter().enumerate() {
                            let rv = rv as f64;
                            for (o, zv) in dst[c * d..(c + 1) * d].iter_mut().zip(zi) {
                                *o += rv * zv;
                            }
                        }
                    }
                    for &b1 in bs {
                        for &b2 in bs {
                            for (c, &rv) in ri.iter().enumerate() {
                                pairs[c * nb * nb + b1 as usize * nb + b2 as usize] += rv as f64;
                            }
                        }
                    }
                }
                (by_batch, pairs)
            })
            .collect();
        let mut by_batch = vec![0.0; nb * k * d];
        let mut pairs = vec![0.0; k * nb * nb];
        for (bb, pp) in partials {
            by_batch.iter_mut().zip(bb).for_each(|(o, v)| *o += v);
            pairs.iter_mut().zip(pp).for_each(|(o, v)| *o += v);
        }
        // The first variable's batches partition the cells: their sums give the intercept row.
        let first_var: Vec<usize> = {
            let mut seen = vec![false; nb];
            for i in 0..n {
                seen[design.of(i)[0] as usize] = true;
            }
            (0..nb).filter(|&b| seen[b]).collect()
        };
        // Coefficients of each cluster: p x d, intercept row zeroed.
        let coefficients: Vec<Result<Vec<f64>>> = (0..k)
            .into_par_iter()
            .map(|c| {
                let mut a = Mat::<f64>::zeros(p, p);
                let mut rhs = Mat::<f64>::zeros(p, d);
                let size: f64 = first_var
                    .iter()
                    .map(|&b| pairs[c * nb * nb + b * nb + b])
                    .sum();
                a[(0, 0)] = size;
                for b1 in 0..nb {
                    let o = pairs[c * nb * nb + b1 * nb + b1];
                    a[(0, b1 + 1)] = o;
                    a[(b1 + 1, 0)] = o;
                    for b2 in 0..nb {
                        a[(b1 + 1, b2 + 1)] = pairs[c * nb * nb + b1 * nb + b2];
                    }
                    a[(b1 + 1, b1 + 1)] += design.lambda[b1];
                    for j in 0..d {
                        let v = by_batch[b1 * k * d + c * d + j];
                        rhs[(b1 + 1, j)] = v;
                    }
                }
                for &b in &first_var {
                    for j in 0..d {
                        rhs[(0, j)] += by_batch[b * k * d + c * d + j];
                    }
                }
                if size <= 0.0 {
                    return Ok(vec![0.0; p * d]); // an empty cluster corrects nothing
                }
                let llt = a.llt(Side::Lower).map_err(|_| {
                    Error::Format("Harmony's ridge system is not positive definite".into())
                })?;
                let mut w = rhs;
                llt.solve_in_place(&mut w);
                let mut out = vec![0.0; p * d];
                for row in 1..p {
                    for j in 0..d {
                        out[row * d + j] = w[(row, j)];
                    }
                }
                Ok(out)
            })
            .collect();
        let coefficients: Vec<Vec<f64>> = coefficients.into_iter().collect::<Result<_>>()?;
        let mut z_corr = self.z_orig.clone();
        z_corr.par_chunks_mut(d).enumerate().for_each(|(i, zi)| {
            let ri = &r[i * k..(i + 1) * k];
            for &b in design.of(i) {
                let row = b as usize + 1;
                for (c, &rv) in ri.iter().enumerate() {
                    let w = &coefficients[c][row * d..(row + 1) * d];
                    for (o, wv) in zi.iter_mut().zip(w) {
                        *o -= rv as f64 * wv;
                    }
                }
            }
        });
        let _ = nv;
        self.z_cos = unit_rows(&z_corr, d);
        self.z_corr = z_corr;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::neighbors::knn_exact;

    /// Two batches of 4 cell types in 10 dimensions; batch 1 is shifted by `shift` along a
    /// fixed direction, far more than the within-type spread (sd 1): fully separated.
    pub(crate) fn shifted_batches(
        n: usize,
        shift: f64,
        seed: u64,
    ) -> (DenseMatrix, Vec<u32>, Vec<u32>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let d = 10;
        let types = 4;
        let centers: Vec<f64> = (0..types * d)
            .map(|_| (rng.random::<f64>() - 0.5) * 12.0)
            .collect();
        let mut direction: Vec<f64> = (0..d).map(|_| rng.random::<f64>() - 0.5).collect();
        let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
        direction.iter_mut().for_each(|v| *v /= norm);
        let mut data = Vec::with_capacity(n * d);
        let (mut batch, mut label) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (t, b) = (i % types, (i / types) % 2);
            for j in 0..d {
                let noise: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                data.push(centers[t * d + j] + noise + b as f64 * shift * direction[j]);
            }
            batch.push(b as u32);
            label.push(t as u32);
        }
        // Centre, as a PCA would be.
        for j in 0..d {
            let mean = (0..n).map(|i| data[i * d + j]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| data[i * d + j] -= mean);
        }
        (DenseMatrix::new(n, d, data).unwrap(), batch, label)
    }

    /// Share of each cell's 15 nearest neighbours with another batch / the same label.
    pub(crate) fn mixing_and_purity(x: &DenseMatrix, batch: &[u32], label: &[u32]) -> (f64, f64) {
        let g = knn_exact(x, 15).unwrap();
        let (mut other, mut same) = (0usize, 0usize);
        for i in 0..x.n_rows {
            for &j in g.neighbors(i) {
                other += usize::from(batch[j as usize] != batch[i]);
                same += usize::from(label[j as usize] == label[i]);
            }
        }
        let total = (x.n_rows * 15) as f64;
        (other as f64 / total, same as f64 / total)
    }

    fn run(x: &DenseMatrix, batch: &[u32], config: &HarmonyConfig) -> HarmonyResult {
        harmony(x, &[batch.to_vec()], config, &|| false, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn corrects_a_strong_global_shift() {
        let (x, batch, label) = shifted_batches(1200, 12.0, 3);
        let (mix_before, purity_before) = mixing_and_purity(&x, &batch, &label);
        assert!(
            mix_before < 0.01,
            "batches should start separated ({mix_before})"
        );
        let out = run(&x, &batch, &HarmonyConfig::default());
        let (mix, purity) = mixing_and_purity(&out.embedding, &batch, &label);
        // Perfect mixing of two equal batches is 0.5.
        assert!(
            mix > 0.35,
            "mixing {mix_before} -> {mix}; objective {:?}",
            out.objective
        );
        assert!(
            purity > 0.97 * purity_before,
            "label purity {purity_before} -> {purity}"
        );
        assert!(out.cluster_iterations.len() > 1, "stopped after one round");
    }

    #[test]
    fn single_batch_is_an_error() {
        let (x, _, _) = shifted_batches(100, 0.0, 1);
        let err = harmony(
            &x,
            &[vec![0; 100]],
            &HarmonyConfig::default(),
            &|| false,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("single level"), "{err}");
        let two_vars = [vec![0, 1].repeat(50), vec![3; 100]];
        let err = harmony(
            &x,
            &two_vars,
            &HarmonyConfig::default(),
            &|| false,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("batch variable 2"), "{err}");
    }

    #[test]
    fn deterministic_for_a_seed_and_thread_count_free() {
        let (x, batch, _) = shifted_batches(600, 8.0, 5);
        let cfg = HarmonyConfig {
            seed: 11,
            ..Default::default()
        };
        let pool = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        };
        let a = pool(1).install(|| run(&x, &batch, &cfg));
        let b = pool(2).install(|| run(&x, &batch, &cfg));
        assert_eq!(a.embedding.data, b.embedding.data);
        let c = run(
            &x,
            &batch,
            &HarmonyConfig {
                seed: 12,
                ..cfg.clone()
            },
        );
        assert_ne!(a.embedding.data, c.embedding.data);
    }

    #[test]
    fn cell_order_does_not_change_the_result() {
        let (x, batch, _) = shifted_batches(600, 8.0, 6);
        let n = x.n_rows;
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(9));
        let mut data = Vec::new();
        for &i in &perm {
            data.extend_from_slice(x.row(i));
        }
        let xp = DenseMatrix::new(n, x.n_cols, data).unwrap();
        let bp: Vec<u32> = perm.iter().map(|&i| batch[i]).collect();
        let a = run(&x, &batch, &HarmonyConfig::default());
        let b = run(&xp, &bp, &HarmonyConfig::default());
        for (slot, &i) in perm.iter().enumerate() {
            for (u, v) in a.embedding.row(i).iter().zip(b.embedding.row(slot)) {
                assert!((u - v).abs() < 1e-9, "cell {i}: {u} vs {v}");
            }
        }
    }

    #[test]
    fn two_batch_variables_and_interrupts() {
        let (x, batch, label) = shifted_batches(800, 8.0, 7);
        // A second, unrelated variable (e.g. donor) that Harmony must not let break mixing.
        let donor: Vec<u32> = (0..800).map(|i| ((i / 8) % 3) as u32).collect();
        let cfg = HarmonyConfig {
            theta: vec![2.0, 1.0],
            ..Default::default()
        };
        let out = harmony(&x, &[batch.clone(), donor], &cfg, &|| false, &mut |_, _| {}).unwrap();
        let (mix, purity) = mixing_and_purity(&out.embedding, &batch, &label);
        assert!(mix > 0.3 && purity > 0.95, "mix {mix}, purity {purity}");
        let err = harmony(
            &x,
            &[batch],
            &HarmonyConfig::default(),
            &|| true,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, Error::Interrupted));
    }

    #[test]
    fn ridge_step_removes_a_pure_batch_shift_within_one_cluster() {
        // One cluster: the correction is a ridge regression of the embedding on batch, so the
        // batch means move together by size / (size + lambda) of their gap.
        let (x, batch, _) = shifted_batches(400, 5.0, 8);
        let cfg = HarmonyConfig {
            n_clusters: Some(1),
            max_iter: 1,
            ..Default::default()
        };
        let out = run(&x, &batch, &cfg);
        let mean = |m: &DenseMatrix, b: u32, j: usize| {
            let rows: Vec<f64> = (0..m.n_rows)
                .filter(|&i| batch[i] == b)
                .map(|i| m.row(i)[j])
                .collect();
            rows.iter().sum::<f64>() / rows.len() as f64
        };
        for j in 0..x.n_cols {
            let before = mean(&x, 1, j) - mean(&x, 0, j);
            let after = mean(&out.embedding, 1, j) - mean(&out.embedding, 0, j);
            // With 200 cells per batch and lambda 1, each batch keeps 1/201 of its offset.
            assert!(
                (after - before / 201.0).abs() < 1e-9,
                "dimension {j}: {before} -> {after}"
            );
        }
    }
}
