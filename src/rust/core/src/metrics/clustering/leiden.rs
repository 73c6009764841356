//! Leiden community detection (Traag, Waltman & van Eck 2019) optimising modularity with a
//! resolution parameter, as igraph's `community_leiden(objective_function = "modularity")`
//! does: fast local moving, randomised refinement (randomness beta = 0.01), aggregation on the
//! refined partition, repeated until every community is one node; the whole procedure runs
//! `n_iterations` times, each starting from the previous result.
//!
//! Quality: sum over communities of [w_in(C) - resolution * K_C^2 / (2m)], K_C the summed
//! degrees, 2m the total degree.

use std::collections::VecDeque;

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};
use crate::metrics::umap_graph::WeightedGraph;

#[derive(Debug, Clone)]
pub struct LeidenConfig {
    pub resolution: f64,
    /// Randomness of the refinement step.
    pub beta: f64,
    pub n_iterations: usize,
    pub seed: u64,
}

impl Default for LeidenConfig {
    fn default() -> Self {
        Self {
            resolution: 1.0,
            beta: 0.01,
            n_iterations: 2,
            seed: 42,
        }
    }
}

/// One level of the aggregation: adjacency without self-loops and node weights (degrees in the
/// original graph).
struct Level {
    indptr: Vec<usize>,
    neighbors: Vec<u32>,
    weights: Vec<f64>,
    node_weight: Vec<f64>,
}

impl Level {
    fn n(&self) -> usize {
        self.node_weight.len()
    }

    fn edges(&self, v: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (a, b) = (self.indptr[v], self.indptr[v + 1]);
        self.neighbors[a..b]
            .iter()
            .zip(&self.weights[a..b])
            .map(|(&u, &w)| (u as usize, w))
    }

    /// The graph of the groups `group[v]` (0..n_groups), edge weights summed.
    fn aggregate(&self, group: &[usize], n_groups: usize) -> Level {
        let mut node_weight = vec![0.0; n_groups];
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
        for v in 0..self.n() {
            node_weight[group[v]] += self.node_weight[v];
            members[group[v]].push(v);
        }
        let mut indptr = Vec::with_capacity(n_groups + 1);
        indptr.push(0);
        let mut neighbors = Vec::new();
        let mut weights = Vec::new();
        let mut acc = vec![0.0f64; n_groups];
        let mut touched: Vec<usize> = Vec::new();
        for (g, ms) in members.iter().enumerate() {
            for &v in ms {
                for (u, w) in self.edges(v) {
                    let h = group[u];
                    if h == g {
                        continue;
                    }
                    if acc[h] == 0.0 {
                        touched.push(h);
                    }
                    acc[h] += w;
                }
            }
            touched.sort_unstable();
            for &h in &touched {
                neighbors.push(h as u32);
                weights.push(acc[h]);
                acc[h] = 0.0;
            }
            touched.clear();
            indptr.push(neighbors.len());
        }
        Level {
            indptr,
            neighbors,
            weights,
            node_weight,
        }
    }
}

/// Renumbers `membership` to 0..k in order of first appearance; returns k.
fn renumber(membership: &mut [usize]) -> usize {
    let mut map = vec![
        usize::MAX;
        membership.len().max(1) + membership.iter().copied().max().unwrap_or(0) + 1
    ];
    let mut next = 0;
    for m in membership.iter_mut() {
        if map[*m] == usize::MAX {
            map[*m] = next;
            next += 1;
        }
        *m = map[*m];
    }
    next
}

struct Optimiser<'a> {
    resolution: f64,
    beta: f64,
    rng: &'a mut Xoshiro256PlusPlus,
}

impl Optimiser<'_> {
    /// Queue-based local moving; returns whether any node moved.
    fn fast_move(&mut self, level: &Level, comm: &mut [usize]) -> bool {
        let n = level.n();
        let mut comm_weight = vec![0.0; n.max(1)];
        let mut comm_size = vec![0usize; n.max(1)];
        for v in 0..n {
            comm_weight[comm[v]] += level.node_weight[v];
            comm_size[comm[v]] += 1;
        }
        let mut empty: Vec<usize> = (0..n).filter(|&c| comm_size[c] == 0).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(self.rng);
        let mut queue: VecDeque<usize> = order.into_iter().collect();
        let mut in_queue = vec![true; n];
        let mut w_to = vec![0.0f64; n.max(1)];
        let mut seen: Vec<usize> = Vec::new();
        let mut moved = false;
        while let Some(v) = queue.pop_front() {
            in_queue[v] = false;
            let old = comm[v];
            for (u, w) in level.edges(v) {
                let c = comm[u];
                if w_to[c] == 0.0 {
                    seen.push(c);
                }
                w_to[c] += w;
            }
            let kv = level.node_weight[v];
            comm_weight[old] -= kv;
            comm_size[old] -= 1;
            if comm_size[old] == 0 {
                empty.push(old);
            }
            let mut best = old;
            let mut best_gain = w_to[old] - self.resolution * kv * comm_weight[old];
            for &c in &seen {
                let gain = w_to[c] - self.resolution * kv * comm_weight[c];
                if gain > best_gain {
                    best_gain = gain;
                    best = c;
                }
            }
            if best_gain < 0.0 {
                // An empty community (gain 0); the stack is cleaned lazily.
                while let Some(&e) = empty.last() {
                    if comm_size[e] == 0 {
                        best = e;
                        break;
                    }
                    empty.pop();
                }
            }
            comm_weight[best] += kv;
            comm_size[best] += 1;
            comm[v] = best;
            for &c in &seen {
                w_to[c] = 0.0;
            }
            seen.clear();
            if best != old {
                moved = true;
                for (u, _) in level.edges(v) {
                    if !in_queue[u] && comm[u] != best {
                        in_queue[u] = true;
                        queue.push_back(u);
                    }
                }
            }
        }
        moved
    }

    /// Refinement: within each community, singletons merge into well-connected sub-clusters,
    /// chosen at random with probability proportional to exp(gain / beta).
    fn refine(&mut self, level: &Level, comm: &[usize], n_comm: usize) -> Vec<usize> {
        let n = level.n();
        let total_in_comm = {
            let mut t = vec![0.0; n_comm];
            for v in 0..n {
                t[comm[v]] += level.node_weight[v];
            }
            t
        };
        let mut refined: Vec<usize> = (0..n).collect();
        let mut sub_weight = level.node_weight.clone();
        let mut singleton = vec![true; n];
        // Weight of each sub-cluster's edges to the rest of its community.
        let mut external: Vec<f64> = (0..n)
            .map(|v| {
                level
                    .edges(v)
                    .filter(|&(u, _)| comm[u] == comm[v])
                    .map(|(_, w)| w)
                    .sum()
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(self.rng);
        let mut w_to = vec![0.0f64; n.max(1)];
        let mut seen: Vec<usize> = Vec::new();
        let mut candidates: Vec<(usize, f64)> = Vec::new();
        for v in order {
            if !singleton[v] {
                continue;
            }
            let s = comm[v];
            let kv = level.node_weight[v];
            let total = total_in_comm[s];
            if external[v] < self.resolution * kv * (total - kv) {
                continue;
            }
            for (u, w) in level.edges(v) {
                if comm[u] != s {
                    continue;
                }
                let c = refined[u];
                if w_to[c] == 0.0 {
                    seen.push(c);
                }
                w_to[c] += w;
            }
            candidates.clear();
            // Staying alone has gain 0.
            candidates.push((v, 0.0));
            for &c in &seen {
                if c == v {
                    continue;
                }
                let kc = sub_weight[c];
                if external[c] < self.resolution * kc * (total - kc) {
                    continue;
                }
                let gain = w_to[c] - self.resolution * kv * kc;
                if gain >= 0.0 {
                    candidates.push((c, gain));
                }
            }
            let max_gain = candidates
                .iter()
                .map(|c| c.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let probs: Vec<f64> = candidates
                .iter()
                .map(|c| ((c.1 - max_gain) / self.beta).exp())
                .collect();
            let sum: f64 = probs.iter().sum();
            let mut r = self.rng.random::<f64>() * sum;
            let mut chosen = candidates[candidates.len() - 1].0;
            for (c, p) in candidates.iter().zip(&probs) {
                r -= p;
                if r < 0.0 {
                    chosen = c.0;
                    break;
                }
            }
            if chosen != v {
                let wv = w_to[chosen];
                external[chosen] = external[chosen] + external[v] - 2.0 * wv;
                sub_weight[chosen] += kv;
                refined[v] = chosen;
                singleton[v] = false;
                singleton[chosen] = false;
            }
            for &c in &seen {
                w_to[c] = 0.0;
            }
            seen.clear();
        }
        refined
    }
}

/// Leiden communities of `graph` (symmetric, weights > 0): a community id per node, 0..k.
pub fn leiden(graph: &WeightedGraph, config: &LeidenConfig) -> Result<Vec<u32>> {
    if !(config.resolution > 0.0) || !(config.beta > 0.0) {
        return Err(Error::invalid(
            "resolution",
            "resolution and beta must be positive",
        ));
    }
    let n = graph.n;
    let degrees = graph.degrees();
    let two_m: f64 = degrees.iter().sum();
    if n == 0 || two_m <= 0.0 {
        return Ok((0..n as u32).collect());
    }
    let base = Level {
        indptr: graph.indptr.clone(),
        neighbors: graph.indices.clone(),
        weights: graph.weights.clone(),
        node_weight: degrees,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
    let mut opt = Optimiser {
        // Gains compare w(v, C) with resolution * k_v * K_C / (2m).
        resolution: config.resolution / two_m,
        beta: config.beta,
        rng: &mut rng,
    };
    let mut membership: Vec<usize> = (0..n).collect();
    for _ in 0..config.n_iterations.max(1) {
        // `node_of[v]`: the node of the current level that holds original node v.
        let mut node_of: Vec<usize> = (0..n).collect();
        let mut level_owned: Option<Level> = None;
        let mut comm = membership.clone();
        loop {
            let level = level_owned.as_ref().unwrap_or(&base);
            opt.fast_move(level, &mut comm);
            let n_comm = renumber(&mut comm);
            if n_comm == level.n() {
                break;
            }
            let mut refined = opt.refine(level, &comm, n_comm);
            let mut n_refined = renumber(&mut refined);
            if n_refined >= level.n() {
                // Refinement merged nothing: aggregate on the communities themselves.
                refined = comm.clone();
                n_refined = n_comm;
            }
            let next = level.aggregate(&refined, n_refined);
            let mut next_comm = vec![0usize; n_refined];
            for v in 0..level.n() {
                next_comm[refined[v]] = comm[v];
            }
            for slot in node_of.iter_mut() {
                *slot = refined[*slot];
            }
            comm = next_comm;
            level_owned = Some(next);
        }
        membership = node_of.iter().map(|&v| comm[v]).collect();
        renumber(&mut membership);
    }
    Ok(membership.into_iter().map(|m| m as u32).collect())
}

/// Modularity of a partition at a resolution (for tests and diagnostics).
pub fn modularity(graph: &WeightedGraph, membership: &[u32], resolution: f64) -> f64 {
    let degrees = graph.degrees();
    let two_m: f64 = degrees.iter().sum();
    let k = membership
        .iter()
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut inside = vec![0.0; k];
    let mut total = vec![0.0; k];
    for v in 0..graph.n {
        total[membership[v] as usize] += degrees[v];
        let (cols, w) = graph.row(v);
        for (&u, &w) in cols.iter().zip(w) {
            if membership[u as usize] == membership[v] {
                inside[membership[v] as usize] += w;
            }
        }
    }
    inside
        .iter()
        .zip(&total)
        .map(|(i, t)| i / two_m - resolution * (t / two_m).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::nmi_ari::ari;
    use crate::metrics::test_data::*;
    use crate::metrics::umap_graph::umap_connectivities;
    use crate::neighbors::knn_exact;

    /// Two cliques of `size` joined by one edge.
    fn two_cliques(size: usize) -> WeightedGraph {
        let n = 2 * size;
        let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for block in 0..2 {
            for i in 0..size {
                for j in 0..size {
                    if i != j {
                        rows[block * size + i].push(((block * size + j) as u32, 1.0));
                    }
                }
            }
        }
        rows[0].push((size as u32, 1.0));
        rows[size].push((0, 1.0));
        let mut g = WeightedGraph {
            n,
            indptr: vec![0],
            indices: vec![],
            weights: vec![],
        };
        for mut r in rows {
            r.sort_by_key(|e| e.0);
            for (j, w) in r {
                g.indices.push(j);
                g.weights.push(w);
            }
            g.indptr.push(g.indices.len());
        }
        g
    }

    #[test]
    fn finds_two_cliques() {
        let g = two_cliques(8);
        let m = leiden(&g, &LeidenConfig::default()).unwrap();
        let truth: Vec<u32> = (0..16).map(|i| (i / 8) as u32).collect();
        assert_eq!(ari(&m, &truth).unwrap(), 1.0);
        assert!(modularity(&g, &m, 1.0) > 0.4);
    }

    #[test]
    fn blobs_recovered_and_resolution_controls_granularity() {
        let (x, truth) = blobs(
            &[vec![0.0, 0.0], vec![12.0, 0.0], vec![0.0, 12.0]],
            150,
            1.0,
            3,
        );
        let conn = umap_connectivities(&knn_exact(&x, 14).unwrap());
        let coarse = leiden(
            &conn,
            &LeidenConfig {
                resolution: 0.2,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(ari(&coarse, &truth).unwrap() > 0.95);
        let fine = leiden(
            &conn,
            &LeidenConfig {
                resolution: 2.0,
                ..Default::default()
            },
        )
        .unwrap();
        let count = |m: &[u32]| *m.iter().max().unwrap() + 1;
        assert!(count(&fine) > count(&coarse));
        // Same seed, same result.
        assert_eq!(
            leiden(
                &conn,
                &LeidenConfig {
                    resolution: 2.0,
                    ..Default::default()
                }
            )
            .unwrap(),
            fine
        );
        // Better than the partition into singletons and into one community.
        let q = modularity(&conn, &coarse, 0.2);
        assert!(q > modularity(&conn, &vec![0; conn.n], 0.2));
    }
}
