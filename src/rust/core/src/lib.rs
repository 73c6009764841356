//! cellweave-core: the science behind the cellweave R package. No R in here; the compute
//! device is always a parameter.

pub mod classic;
pub mod data;
pub mod error;
pub mod metrics;
pub mod neighbors;
pub mod pca;

pub use error::{Error, Result};
