//! fastMNN (Haghverdi et al. 2018; batchelor's `fastMNN`): cosine normalisation and a
//! multi-batch PCA, then batches merged one at a time: mutual nearest neighbours (MNN pairs)
//! between the merged set and the next batch, per-cell correction vectors averaged over each
//! cell's pairs, removal of variation along the average batch vector from both sides, and a
//! locally weighted correction of every cell of the new batch (tricube kernel over its k
//! nearest MNN cells, bandwidth `ndist` times the median distance), as batchelor does.

use rayon::prelude::*;

use crate::data::{CsrMatrix, DenseMatrix};
use crate::error::{Error, Result};
use crate::neighbors::knn_query_exact;
use crate::pca::{PcaConfig, cosine_normalize, multi_batch_pca};

#[derive(Debug, Clone, PartialEq)]
pub enum MergeOrder {
    /// Batches in the order of their codes.
    Input,
    /// These batch codes, in this order (a permutation of the batches present).
    Given(Vec<u32>),
    /// Repeatedly merge the two groups with the most MNN pairs (batchelor's auto.merge).
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FastMnnConfig {
    /// Nearest neighbours for MNN pairs and for the smoothing of correction vectors.
    pub k: usize,
    /// Tricube bandwidth in multiples of the median neighbour distance.
    pub ndist: f64,
    /// Cosine-normalise cells before the PCA (expression input only).
    pub cos_norm: bool,
    /// PCA of expression input; `n_components` is fastMNN's `d`.
    pub pca: PcaConfig,
    pub merge_order: MergeOrder,
    /// Skip a merge whose relative batch-effect magnitude is below this (0: never skip).
    pub min_batch_skip: f64,
}

impl Default for FastMnnConfig {
    fn default() -> Self {
        Self {
            k: 20,
            ndist: 3.0,
            cos_norm: true,
            pca: PcaConfig {
                n_components: 50,
                ..PcaConfig::default()
            },
            merge_order: MergeOrder::Input,
            min_batch_skip: 0.0,
        }
    }
}

/// What happened at one merge.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeStep {
    /// Batch codes already merged (the reference) and those corrected towards them.
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub n_pairs: usize,
    /// Average correction vector (the batch vector removed from both sides).
    pub batch_vector: Vec<f64>,
    /// Norm of the average vector over the root-mean-square norm of the per-cell vectors:
    /// near 1 for a consistent batch effect, near 0 for none.
    pub batch_size: f64,
    pub skipped: bool,
    /// Share of each batch's variance removed at this step, as (batch code, share).
    pub lost_variance: Vec<(u32, f64)>,
}

#[derive(Debug, Clone)]
pub struct FastMnnResult {
    /// Corrected low-dimensional coordinates, cells in input order.
    pub corrected: DenseMatrix,
    pub steps: Vec<MergeStep>,
    /// Genes x d rotation of the multi-batch PCA (expression input only).
    pub rotation: Option<DenseMatrix>,
}

/// fastMNN on log-expression values (cells x genes).
pub fn fast_mnn(
    x: &CsrMatrix,
    batch: &[u32],
    config: &FastMnnConfig,
    should_stop: &dyn Fn() -> bool,
) -> Result<FastMnnResult> {
    check_batches(batch, x.n_rows)?;
    let normalised;
    let input = if config.cos_norm {
        normalised = cosine_normalize(x)?;
        &normalised
    } else {
        x
    };
    let pca = multi_batch_pca(input, batch, &config.pca)?;
    let mut out = reduced_mnn(&pca.scores, batch, config, should_stop)?;
    out.rotation = Some(pca.loadings);
    Ok(out)
}

/// fastMNN on a low-dimensional embedding (cells x dims, e.g. a multi-batch PCA):
/// batchelor's `reducedMNN`.
pub fn reduced_mnn(
    x: &DenseMatrix,
    batch: &[u32],
    config: &FastMnnConfig,
    should_stop: &dyn Fn() -> bool,
) -> Result<FastMnnResult> {
    let levels = check_batches(batch, x.n_rows)?;
    if config.k == 0 {
        return Err(Error::invalid("k", "must be at least 1"));
    }
    if !(config.ndist > 0.0 && config.ndist.is_finite()) {
        return Err(Error::invalid("ndist", "must be a positive number"));
    }
    if x.data.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("x", "contains NA or infinite values"));
    }
    let d = x.n_cols;
    let mut nodes: Vec<Node> = levels
        .iter()
        .map(|&b| {
            let cells: Vec<usize> = (0..x.n_rows).filter(|&i| batch[i] == b).collect();
            let data = cells
                .iter()
                .flat_map(|&i| x.row(i).iter().copied())
                .collect();
            Node {
                batches: vec![b],
                origin: vec![b; cells.len()],
                cells,
                data,
                extras: Vec::new(),
            }
        })
        .collect();
    let order = match &config.merge_order {
        MergeOrder::Input => Some(levels.clone()),
        MergeOrder::Given(order) => {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if sorted != levels {
                return Err(Error::invalid(
                    "merge.order",
                    "must name every batch exactly once (a permutation of the batches present)",
                ));
            }
            Some(order.clone())
        }
        MergeOrder::Auto => None,
    };

    let mut steps = Vec::new();
    let merged = match order {
        Some(order) => {
            let position = |b: u32| levels.iter().position(|&l| l == b).unwrap_or(0);
            let mut by_code: Vec<Option<Node>> = nodes.drain(..).map(Some).collect();
            let mut take = |b: u32| {
                by_code[position(b)]
                    .take()
                    .ok_or_else(|| Error::invalid("merge.order", "repeats a batch"))
            };
            let mut acc = take(order[0])?;
            for &b in &order[1..] {
                if should_stop() {
                    return Err(Error::Interrupted);
                }
                let (node, step) = merge(acc, take(b)?, d, config)?;
                steps.push(step);
                acc = node;
            }
            acc
        }
        None => {
            // Pair counts between every two remaining groups, the larger index on the left.
            let mut counts: Vec<Vec<usize>> = Vec::new();
            for i in 0..nodes.len() {
                let row = (0..i)
                    .map(|j| count_pairs(&nodes[i], &nodes[j], d, config.k))
                    .collect::<Result<Vec<_>>>()?;
                counts.push(row);
            }
            while nodes.len() > 1 {
                if should_stop() {
                    return Err(Error::Interrupted);
                }
                let (mut best, mut best_ij) = (0usize, (1usize, 0usize));
                for i in 1..nodes.len() {
                    for j in 0..i {
                        if counts[i][j] > best {
                            best = counts[i][j];
                            best_ij = (i, j);
                        }
                    }
                }
                let (i, j) = best_ij;
                let left = nodes.remove(i); // i > j: remove i first
                let right = nodes.remove(j);
                counts.remove(i);
                counts.remove(j);
                for row in counts.iter_mut() {
                    if row.len() > i {
                        row.remove(i);
                    }
                    if row.len() > j {
                        row.remove(j);
                    }
                }
                let (node, step) = merge(left, right, d, config)?;
                steps.push(step);
                let row = nodes
                    .iter()
                    .map(|other| count_pairs(&node, other, d, config.k))
                    .collect::<Result<Vec<_>>>()?;
                counts.push(row);
                nodes.push(node);
            }
            nodes
                .pop()
                .ok_or_else(|| Error::invalid("batch", "is empty"))?
        }
    };

    let mut corrected = DenseMatrix::zeros(x.n_rows, d);
    for (slot, &cell) in merged.cells.iter().enumerate() {
        corrected
            .row_mut(cell)
            .copy_from_slice(&merged.data[slot * d..(slot + 1) * d]);
    }
    Ok(FastMnnResult {
        corrected,
        steps,
        rotation: None,
    })
}

/// The batch codes present (sorted); at least two are needed.
fn check_batches(batch: &[u32], n: usize) -> Result<Vec<u32>> {
    if batch.len() != n {
        return Err(Error::invalid(
            "batch",
            format!("has {} values but there are {n} cells", batch.len()),
        ));
    }
    let mut levels: Vec<u32> = batch.to_vec();
    levels.sort_unstable();
    levels.dedup();
    if levels.len() < 2 {
        return Err(Error::invalid(
            "batch",
            "has a single level: fastMNN needs cells from at least 2 batches",
        ));
    }
    Ok(levels)
}

/// A group of already merged batches.
struct Node {
    batches: Vec<u32>,
    /// Global indices of the node's cells, in the order of `data`'s rows.
    cells: Vec<usize>,
    /// Batch of each row.
    origin: Vec<u32>,
    data: Vec<f64>,
    /// Batch vectors removed at earlier merges inside this node.
    extras: Vec<Vec<f64>>,
}

fn dense(data: &[f64], d: usize) -> DenseMatrix {
    DenseMatrix {
        n_rows: data.len() / d,
        n_cols: d,
        data: data.to_vec(),
    }
}

/// Mutual nearest neighbour pairs (left row, right row), sorted.
fn find_mnn(left: &[f64], right: &[f64], d: usize, k: usize) -> Result<Vec<(usize, usize)>> {
    let (l, r) = (dense(left, d), dense(right, d));
    // For each right cell its nearest left cells, and vice versa.
    let right_to_left = knn_query_exact(&l, &r, k.min(l.n_rows))?;
    let left_to_right = knn_query_exact(&r, &l, k.min(r.n_rows))?;
    let mut pairs = Vec::new();
    for li in 0..l.n_rows {
        for &ri in left_to_right.neighbors(li) {
            if right_to_left.neighbors(ri as usize).contains(&(li as u32)) {
                pairs.push((li, ri as usize));
            }
        }
    }
    Ok(pairs)
}

/// Moves every row to the mean position along `vector` (removes variation along it).
fn center_along(data: &mut [f64], d: usize, vector: &[f64]) {
    let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
    if !(norm > 0.0) {
        return;
    }
    let unit: Vec<f64> = vector.iter().map(|v| v / norm).collect();
    let loc: Vec<f64> = data
        .chunks(d)
        .map(|row| row.iter().zip(&unit).map(|(a, b)| a * b).sum())
        .collect();
    let central = loc.iter().sum::<f64>() / loc.len().max(1) as f64;
    for (row, l) in data.chunks_mut(d).zip(&loc) {
        for (v, u) in row.iter_mut().zip(&unit) {
            *v += (central - l) * u;
        }
    }
}

fn orthogonalize(data: &mut [f64], d: usize, vectors: &[Vec<f64>]) {
    for v in vectors {
        center_along(data, d, v);
    }
}

fn count_pairs(a: &Node, b: &Node, d: usize, k: usize) -> Result<usize> {
    let mut left = a.data.clone();
    let mut right = b.data.clone();
    orthogonalize(&mut right, d, &a.extras);
    orthogonalize(&mut left, d, &b.extras);
    Ok(find_mnn(&left, &right, d, k)?.len())
}

/// Averaged correction vector (left - right over the pairs) of each right cell in a pair.
fn averaged_corrections(
    left: &[f64],
    right: &[f64],
    d: usize,
    pairs: &[(usize, usize)],
) -> (Vec<usize>, Vec<f64>) {
    let n_right = right.len() / d;
    let mut sums = vec![0.0; n_right * d];
    let mut counts = vec![0usize; n_right];
    for &(l, r) in pairs {
        counts[r] += 1;
        for j in 0..d {
            sums[r * d + j] += left[l * d + j] - right[r * d + j];
        }
    }
    let cells: Vec<usize> = (0..n_right).filter(|&r| counts[r] > 0).collect();
    let mut vectors = Vec::with_capacity(cells.len() * d);
    for &r in &cells {
        vectors.extend(
            sums[r * d..(r + 1) * d]
                .iter()
                .map(|s| s / counts[r] as f64),
        );
    }
    (cells, vectors)
}

/// Total variance (sum over dimensions) of the rows of `data` from `batch`.
fn batch_variance(data: &[f64], d: usize, origin: &[u32], batch: u32) -> f64 {
    let rows: Vec<&[f64]> = data
        .chunks(d)
        .zip(origin)
        .filter(|(_, o)| **o == batch)
        .map(|(r, _)| r)
        .collect();
    if rows.len() < 2 {
        return 0.0;
    }
    let n = rows.len() as f64;
    (0..d)
        .map(|j| {
            let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
            rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / (n - 1.0)
        })
        .sum()
}

fn merge(
    mut left: Node,
    mut right: Node,
    d: usize,
    config: &FastMnnConfig,
) -> Result<(Node, MergeStep)> {
    let before: Vec<(u32, f64)> = left
        .batches
        .iter()
        .map(|&b| (b, batch_variance(&left.data, d, &left.origin, b)))
        .chain(
            right
                .batches
                .iter()
                .map(|&b| (b, batch_variance(&right.data, d, &right.origin, b))),
        )
        .collect();
    orthogonalize(&mut right.data, d, &left.extras);
    orthogonalize(&mut left.data, d, &right.extras);
    let pairs = find_mnn(&left.data, &right.data, d, config.k)?;
    if pairs.is_empty() {
        return Err(Error::invalid(
            "k",
            format!(
                "found no mutual nearest neighbours between batches {:?} and {:?}; try a larger k",
                left.batches, right.batches
            ),
        ));
    }
    let (_, vectors) = averaged_corrections(&left.data, &right.data, d, &pairs);
    let n_vec = vectors.len() / d;
    let overall: Vec<f64> = (0..d)
        .map(|j| (0..n_vec).map(|c| vectors[c * d + j]).sum::<f64>() / n_vec as f64)
        .collect();
    let mean_sq = vectors
        .chunks(d)
        .map(|v| v.iter().map(|x| x * x).sum::<f64>())
        .sum::<f64>()
        / n_vec as f64;
    let batch_size = if mean_sq > 0.0 {
        (overall.iter().map(|x| x * x).sum::<f64>() / mean_sq).sqrt()
    } else {
        0.0
    };
    let skipped = batch_size < config.min_batch_skip;
    if !skipped {
        center_along(&mut left.data, d, &overall);
        center_along(&mut right.data, d, &overall);
        let (mnn_cells, vectors) = averaged_corrections(&left.data, &right.data, d, &pairs);
        tricube_correct(
            &mut right.data,
            d,
            &mnn_cells,
            &vectors,
            config.k,
            config.ndist,
        )?;
    }
    let after: Vec<f64> = left
        .batches
        .iter()
        .map(|&b| batch_variance(&left.data, d, &left.origin, b))
        .chain(
            right
                .batches
                .iter()
                .map(|&b| batch_variance(&right.data, d, &right.origin, b)),
        )
        .collect();
    let lost_variance = before
        .iter()
        .zip(after)
        .map(|(&(b, old), new)| (b, if old > 0.0 { 1.0 - new / old } else { 0.0 }))
        .collect();
    let step = MergeStep {
        left: left.batches.clone(),
        right: right.batches.clone(),
        n_pairs: pairs.len(),
        batch_vector: overall.clone(),
        batch_size,
        skipped,
        lost_variance,
    };
    let mut extras = left.extras;
    extras.extend(right.extras);
    extras.push(overall);
    left.batches.extend(right.batches);
    left.cells.extend(right.cells);
    left.origin.extend(right.origin);
    left.data.extend(right.data);
    Ok((
        Node {
            batches: left.batches,
            cells: left.cells,
            origin: left.origin,
            data: left.data,
            extras,
        },
        step,
    ))
}

/// Adds to each row of `data` the tricube-weighted average of the correction vectors of its
/// k nearest MNN cells (bandwidth: ndist times the distance to the middle neighbour).
fn tricube_correct(
    data: &mut [f64],
    d: usize,
    mnn_cells: &[usize],
    vectors: &[f64],
    k: usize,
    ndist: f64,
) -> Result<()> {
    let reference: Vec<f64> = mnn_cells
        .iter()
        .flat_map(|&c| data[c * d..(c + 1) * d].iter().copied())
        .collect();
    let query = dense(data, d);
    let graph = knn_query_exact(&dense(&reference, d), &query, k.min(mnn_cells.len()))?;
    let kk = graph.k;
    let middle = kk.div_ceil(2) - 1;
    data.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        let dist = graph.distances_of(i);
        let bandwidth = (dist[middle] * ndist).max(1e-8);
        let weights: Vec<f64> = dist
            .iter()
            .map(|&x| (1.0 - (x / bandwidth).min(1.0).powi(3)).powi(3))
            .collect();
        let total: f64 = weights.iter().sum();
        for (&j, w) in graph.neighbors(i).iter().zip(&weights) {
            let v = &vectors[j as usize * d..(j as usize + 1) * d];
            for (x, vv) in row.iter_mut().zip(v) {
                *x += w / total * vv;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classic::harmony::tests::{mixing_and_purity, shifted_batches};
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::seq::SliceRandom;

    #[test]
    fn corrects_a_strong_global_shift() {
        let (x, batch, label) = shifted_batches(1200, 12.0, 3);
        let (mix_before, _) = mixing_and_purity(&x, &batch, &label);
        let out = reduced_mnn(&x, &batch, &FastMnnConfig::default(), &|| false).unwrap();
        let (mix, purity) = mixing_and_purity(&out.corrected, &batch, &label);
        assert!(mix > 0.25, "mixing {mix_before} -> {mix}");
        assert!(purity > 0.97, "purity {purity}");
        let step = &out.steps[0];
        assert_eq!((step.left.clone(), step.right.clone()), (vec![0], vec![1]));
        // A consistent shift has a large relative batch size; no shift, a small one.
        let (same, same_batch, _) = shifted_batches(1200, 0.0, 3);
        let none = reduced_mnn(&same, &same_batch, &FastMnnConfig::default(), &|| false).unwrap();
        assert!(
            step.batch_size > 0.5 && none.steps[0].batch_size < 0.2,
            "{} vs {}",
            step.batch_size,
            none.steps[0].batch_size
        );
        // The reference batch only moves along the batch vector.
        let first = (0..1200).find(|&i| batch[i] == 0).unwrap();
        let delta: Vec<f64> = x
            .row(first)
            .iter()
            .zip(out.corrected.row(first))
            .map(|(a, b)| b - a)
            .collect();
        let v = &step.batch_vector;
        let cos = delta.iter().zip(v).map(|(a, b)| a * b).sum::<f64>()
            / (delta.iter().map(|a| a * a).sum::<f64>().sqrt()
                * v.iter().map(|b| b * b).sum::<f64>().sqrt());
        assert!(cos.abs() > 1.0 - 1e-9);
    }

    #[test]
    fn single_batch_and_bad_order_are_errors() {
        let (x, _, _) = shifted_batches(100, 0.0, 1);
        let err = reduced_mnn(&x, &vec![2; 100], &FastMnnConfig::default(), &|| false).unwrap_err();
        assert!(err.to_string().contains("single level"), "{err}");
        let batch: Vec<u32> = (0..100).map(|i| (i % 2) as u32).collect();
        let cfg = FastMnnConfig {
            merge_order: MergeOrder::Given(vec![0, 0]),
            ..Default::default()
        };
        assert!(
            reduced_mnn(&x, &batch, &cfg, &|| false)
                .unwrap_err()
                .to_string()
                .contains("merge.order")
        );
    }

    #[test]
    fn cell_order_does_not_change_the_result() {
        let (x, batch, _) = shifted_batches(500, 6.0, 4);
        let mut perm: Vec<usize> = (0..500).collect();
        perm.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(2));
        let data = perm.iter().flat_map(|&i| x.row(i).to_vec()).collect();
        let xp = DenseMatrix::new(500, x.n_cols, data).unwrap();
        let bp: Vec<u32> = perm.iter().map(|&i| batch[i]).collect();
        let a = reduced_mnn(&x, &batch, &FastMnnConfig::default(), &|| false).unwrap();
        let b = reduced_mnn(&xp, &bp, &FastMnnConfig::default(), &|| false).unwrap();
        for (slot, &i) in perm.iter().enumerate() {
            for (u, v) in a.corrected.row(i).iter().zip(b.corrected.row(slot)) {
                assert!((u - v).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn three_batches_in_given_and_automatic_order() {
        // Batches 0 and 2 share a shift, batch 1 is far: auto merges 0 and 2 first.
        let (x, two, label) = shifted_batches(1500, 10.0, 5);
        let batch: Vec<u32> = (0..1500)
            .map(|i| {
                if two[i] == 1 {
                    1
                } else if i % 3 == 0 {
                    2
                } else {
                    0
                }
            })
            .collect();
        let cfg = FastMnnConfig {
            merge_order: MergeOrder::Auto,
            ..Default::default()
        };
        // Two batches: the later one is the reference (the left side), as in batchelor, whose
        // pair counts sit in the row of the later group.
        let auto_two = reduced_mnn(&x, &two, &cfg, &|| false).unwrap();
        assert_eq!(
            (
                auto_two.steps[0].left.clone(),
                auto_two.steps[0].right.clone()
            ),
            (vec![1], vec![0])
        );
        let auto = reduced_mnn(&x, &batch, &cfg, &|| false).unwrap();
        assert_eq!(auto.steps.len(), 2);
        let mut first: Vec<u32> = auto.steps[0]
            .left
            .iter()
            .chain(&auto.steps[0].right)
            .copied()
            .collect();
        first.sort_unstable();
        assert_eq!(first, vec![0, 2]);
        let given = FastMnnConfig {
            merge_order: MergeOrder::Given(vec![1, 0, 2]),
            ..Default::default()
        };
        let out = reduced_mnn(&x, &batch, &given, &|| false).unwrap();
        assert_eq!(out.steps[0].left, vec![1]);
        assert_eq!(out.steps[1].left, vec![1, 0]);
        let b01: Vec<u32> = batch.iter().map(|&b| u32::from(b == 1)).collect();
        let (mix, purity) = mixing_and_purity(&out.corrected, &b01, &label);
        assert!(mix > 0.3 && purity > 0.95, "mix {mix}, purity {purity}");
    }

    #[test]
    fn expression_input_runs_the_multi_batch_pca() {
        // Two batches of 3 cell types over 60 genes; batch 1 has a multiplicative gene effect.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        use rand::RngExt;
        let (n, g) = (400, 60);
        let (mut indptr, mut indices, mut values) = (vec![0], Vec::new(), Vec::new());
        let mut batch = Vec::new();
        let mut label = Vec::new();
        for i in 0..n {
            let (t, b) = (i % 3, (i / 3) % 2);
            for j in 0..g {
                let marker = if j % 3 == t { 3.0 } else { 0.3 };
                let effect = if b == 1 && j < 20 { 2.5 } else { 1.0 };
                let v = marker * effect * (0.5 + rng.random::<f64>());
                if rng.random::<f64>() < 0.7 {
                    indices.push(j as u32);
                    values.push(v as f32);
                }
            }
            indptr.push(indices.len());
            batch.push(b as u32);
            label.push(t as u32);
        }
        let x = CsrMatrix::new(n, g, indptr, indices, values).unwrap();
        let cfg = FastMnnConfig {
            pca: PcaConfig {
                n_components: 10,
                ..Default::default()
            },
            ..Default::default()
        };
        let out = fast_mnn(&x, &batch, &cfg, &|| false).unwrap();
        assert_eq!((out.corrected.n_rows, out.corrected.n_cols), (400, 10));
        assert_eq!(
            out.rotation.as_ref().map(|r| (r.n_rows, r.n_cols)),
            Some((60, 10))
        );
        let (mix, purity) = mixing_and_purity(&out.corrected, &batch, &label);
        assert!(mix > 0.3 && purity > 0.95, "mix {mix}, purity {purity}");
    }
}
