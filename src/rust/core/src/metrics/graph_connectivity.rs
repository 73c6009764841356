//! Graph connectivity (scIB): for each label, the share of its cells in the largest strongly
//! connected component of the directed kNN graph restricted to that label; the mean over labels.
//! scib-metrics uses the 15-NN graph with self included, i.e. 14 neighbours per cell.

use super::{Groups, check_len};
use crate::error::Result;
use crate::neighbors::KnnGraph;

pub fn graph_connectivity(graph: &KnnGraph, labels: &[u32]) -> Result<f64> {
    check_len(labels, graph.n_queries, "labels")?;
    let groups = Groups::new(labels, "labels")?;
    let mut local = vec![u32::MAX; graph.n_queries];
    let mut shares = Vec::with_capacity(groups.n_groups);
    for members in groups.members() {
        for (k, &v) in members.iter().enumerate() {
            local[v] = k as u32;
        }
        let adjacency: Vec<Vec<u32>> = members
            .iter()
            .map(|&v| {
                graph
                    .neighbors(v)
                    .iter()
                    .map(|&u| local[u as usize])
                    .filter(|&u| u != u32::MAX)
                    .collect()
            })
            .collect();
        let sizes = strongly_connected_component_sizes(&adjacency);
        shares.push(*sizes.iter().max().unwrap_or(&0) as f64 / members.len() as f64);
        for &v in &members {
            local[v] = u32::MAX;
        }
    }
    Ok(shares.iter().sum::<f64>() / shares.len() as f64)
}

/// Sizes of the strongly connected components of a directed graph (iterative Tarjan).
pub fn strongly_connected_component_sizes(adjacency: &[Vec<u32>]) -> Vec<usize> {
    let n = adjacency.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut sizes = Vec::new();
    let mut counter = 0;
    // Call stack of (node, next edge position).
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(top) = calls.last_mut() {
            let v = top.0;
            if top.1 < adjacency[v].len() {
                let w = adjacency[v][top.1] as usize;
                top.1 += 1;
                if index[w] == UNSEEN {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut size = 0;
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        size += 1;
                        if w == v {
                            break;
                        }
                    }
                    sizes.push(size);
                }
            }
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_data::*;
    use crate::neighbors::knn_exact;

    #[test]
    fn tarjan_finds_components() {
        // 0 -> 1 -> 2 -> 0 is a cycle; 3 -> 0 hangs off it; 4 <-> 5.
        let adj = vec![vec![1], vec![2], vec![0], vec![0], vec![5], vec![4]];
        let mut sizes = strongly_connected_component_sizes(&adj);
        sizes.sort();
        assert_eq!(sizes, vec![1, 2, 3]);
    }

    #[test]
    fn split_label_scores_half() {
        // Label 0 in two far-apart blobs of equal size, label 1 in one blob.
        let (x, blob) = blobs(
            &[vec![0.0, 0.0], vec![100.0, 0.0], vec![0.0, 100.0]],
            50,
            1.0,
            2,
        );
        let labels: Vec<u32> = blob.iter().map(|&b| if b == 2 { 1 } else { 0 }).collect();
        let g = knn_exact(&x, 14).unwrap();
        let gc = graph_connectivity(&g, &labels).unwrap();
        assert!((gc - 0.75).abs() < 1e-12, "{gc}");
    }
}
