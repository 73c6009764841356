//! Deep generative models. Each model is a burn module (inference -> generative -> loss) plus
//! a user-facing model type (train, latent, expression).

pub mod scvi;
