#' Version of the Rust core, for `cellweave::coreVersion()` style checks.
#' @noRd
cw_core_version <- function() .Call(wrap__cw_core_version)

#' Trains scVI. Returns the latent (cells x n_latent), the weights (raw), the library prior,
#' the history and the device used.
#' @noRd
cw_scvi_train <- function(p, i, x, dim, batch, arch, train, device, verbose) .Call(wrap__cw_scvi_train, p, i, x, dim, batch, arch, train, device, verbose)

#' Posterior-mean latent of new cells under a saved model.
#' @noRd
cw_scvi_latent <- function(arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch) .Call(wrap__cw_scvi_latent, arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch)

#' Decoded expression (cells x genes) of new cells under a saved model.
#' `library_size`: a positive number, or NA for each cell's observed total count.
#' @noRd
cw_scvi_expression <- function(arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch, transform_batch, library_size) .Call(wrap__cw_scvi_expression, arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch, transform_batch, library_size)

#' Mean ELBO, reconstruction error and KL of cells under a saved model.
#' @noRd
cw_scvi_elbo <- function(arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch, seed) .Call(wrap__cw_scvi_elbo, arch, library_log_mean, library_log_var, weights, device, p, i, x, dim, batch, seed)

#' Harmony on an embedding (`x`: cells x dims, column-major values). `batches`: a list of
#' 0-based integer codes, one vector per batch variable.
#' @noRd
cw_harmony <- function(x, nrow, ncol, batches, options, verbose) .Call(wrap__cw_harmony, x, nrow, ncol, batches, options, verbose)

#' fastMNN on log-expression given as the slots of a dgCMatrix (genes x cells).
#' @noRd
cw_fastmnn <- function(p, i, x, dim, batch, options) .Call(wrap__cw_fastmnn, p, i, x, dim, batch, options)

#' fastMNN on a low-dimensional embedding (cells x dims, column-major values).
#' @noRd
cw_reduced_mnn <- function(x, nrow, ncol, batch, options) .Call(wrap__cw_reduced_mnn, x, nrow, ncol, batch, options)

