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

#' Every metric: name, aggregate it counts towards, and the sets it belongs to.
#' @noRd
cw_metric_catalogue <- function() .Call(wrap__cw_metric_catalogue)

#' Scores one embedding with the metrics named in `metrics`.
#' `batch`, `labels`: 0-based codes; `unintegrated`: NULL or a matrix; `references`: NULL or a
#' list of matrices, one per batch code; `options`: seed, local_k, local_alpha,
#' local_condition (-1 or a 0-based batch code), purity_k.
#' @noRd
cw_metrics_score <- function(x, batch, labels, unintegrated, references, metrics, options) .Call(wrap__cw_metrics_score, x, batch, labels, unintegrated, references, metrics, options)

#' Weighted accuracy of 0-based class codes.
#' @noRd
cw_weighted_accuracy <- function(predicted, truth) .Call(wrap__cw_weighted_accuracy, predicted, truth)

