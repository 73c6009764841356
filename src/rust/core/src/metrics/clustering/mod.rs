//! Clusterings the metrics compare with labels: k-means (k-means++ initialisation, Lloyd
//! iterations) and Leiden community detection on a weighted graph.

pub mod kmeans;
pub mod leiden;

pub use kmeans::{KMeansConfig, kmeans, kmeans_runs};
pub use leiden::{LeidenConfig, leiden};
