//! Count distributions and the special functions they need: the fused host kernel
//! (`count_likelihood`) and the same likelihoods in tensor operations (`tensor_ops`).

pub mod count_likelihood;
pub mod fastmath;
pub mod special;
pub mod tensor_ops;

pub use count_likelihood::{DecoderOutputs, GeneLikelihood, LikelihoodResult, log_likelihood};
