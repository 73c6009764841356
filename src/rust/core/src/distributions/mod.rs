//! Count distributions and the special functions they need.

pub mod count_likelihood;
pub mod fastmath;
pub mod special;

pub use count_likelihood::{DecoderOutputs, GeneLikelihood, LikelihoodResult, log_likelihood};
