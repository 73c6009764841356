//! PCA of sparse counts (normalise, log1p, implicit centring) and the multi-batch PCA.
