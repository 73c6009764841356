//! Classical integration baselines on a PCA: Harmony and fastMNN.

pub mod harmony;
pub mod mnn;

pub use harmony::{HarmonyConfig, HarmonyResult, harmony};
pub use mnn::{FastMnnConfig, FastMnnResult, MergeOrder, MergeStep, fast_mnn, reduced_mnn};
