//! Integration metrics: the scIB suite and the seed papers' metrics.
