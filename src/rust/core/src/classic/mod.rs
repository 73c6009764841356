//! Classical integration baselines on a PCA: Harmony and fastMNN.
