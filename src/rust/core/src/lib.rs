//! cellweave-core: the science behind the cellweave R package. No R in here; the compute
//! device is always a parameter.

pub mod classic;
pub mod counterfactual;
pub mod data;
pub mod device;
pub mod distributions;
pub mod engine;
pub mod error;
pub mod label_transfer;
pub mod metrics;
pub mod models;
pub mod neighbors;
pub mod nn;
pub mod pca;
pub mod penalties;
pub mod priors;
pub mod simd;
pub mod train;

pub use error::{Error, Result};
