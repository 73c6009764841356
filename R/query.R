# Query mapping (scArches, as scvi-tools' load_query_data): a trained reference extended with a
# query's new batches, training only what scvi-tools trains for a query by default.

#' Map a query data set onto a trained reference
#'
#' Extends a trained scVI or scANVI model with the batches of a query data set and trains it on
#' the query as scArches does (scvi-tools' `load_query_data` defaults): only the batch columns of
#' the layers that take the batch, the library encoder and the decoders' batch-norm parameters
#' train; the encoder, the rest of the decoder and (for scANVI) the classifier keep the
#' reference's weights. With the default `encode_covariates = FALSE` the encoder is frozen whole,
#' so the query's latent and labels are those of the reference's encoder and classifier; the
#' training fits the decoder to the query's batches (for its normalised and counterfactual
#' expression).
#'
#' @param model A model from [calculateSCVI()] or [calculateSCANVI()].
#' @param query A genes x cells count matrix with the model's genes (matched by name), or a
#'   `SingleCellExperiment` (its `"counts"` assay).
#' @param batch Batch of each query cell, or a column of `colData(query)`: batches the reference
#'   has keep their columns, the others are added.
#' @param labels For a scANVI reference, labels of some query cells (`NA` for unlabelled); by
#'   default every query cell is unlabelled.
#' @param max_epochs Training epochs; `NULL`: scvi-tools' heuristic for the query's size.
#' @inheritParams calculateSCVI
#' @return A cells x `n_latent` matrix, the query's latent, with attribute `"model"` (the query
#'   model: the reference's batches and the query's); for scANVI also `"predictions"` and
#'   `"probabilities"` as [calculateSCANVI()] gives them.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' ctrl <- sce$batch == "ctrl"
#' ref <- calculateSCANVI(SingleCellExperiment::counts(sce)[, ctrl], sce$batch[ctrl],
#'                        sce$cell_type[ctrl], max_epochs = 5, verbose = FALSE)
#' mapped <- mapQuery(attr(ref, "model"), sce[, !ctrl], batch = "batch", max_epochs = 2,
#'                    verbose = FALSE)
#' table(attr(mapped, "predictions")$label, sce$cell_type[!ctrl])
#' @export
mapQuery <- function(model, query, batch = NULL, labels = NULL, max_epochs = NULL,
                     batch_size = 128, lr = 1e-3, weight_decay = 1e-6, eps = 0.01,
                     n_epochs_kl_warmup = 400, train_size = 0.9, seed = 0, verbose = TRUE) {
    if (!inherits(model, c("cellweave_scvi", "cellweave_scanvi"))) {
        .stop_arg("model", "must be a model from calculateSCVI() or calculateSCANVI(), not a ",
                  class(model)[1], ".")
    }
    if (methods::is(query, "SingleCellExperiment")) {
        cell_data <- SummarizedExperiment::colData(query)
        batch <- .resolve_cell_vector(batch, cell_data, ncol(query), "batch")
        if (!is.null(labels)) labels <- .resolve_cell_vector(labels, cell_data, ncol(query), "labels")
        query <- SummarizedExperiment::assay(query, "counts", withDimnames = TRUE)
    }
    x <- .on_model_genes(model, query, "query")
    batch <- .check_grouping(batch, ncol(x), "batch")
    batch_levels <- union(model$batch_levels, levels(batch))
    codes <- match(as.character(batch), batch_levels) - 1L
    train <- .train_options(max_epochs, batch_size, lr, eps, weight_decay, n_epochs_kl_warmup,
                            train_size, early_stopping = FALSE, early_stopping_patience = 45, seed)
    progress <- .progress_style(.check_flag(verbose, "verbose"))
    query_model <- model
    query_model$arch$n_batch <- length(batch_levels)
    query_model$batch_levels <- batch_levels
    query_model$n_cells <- ncol(x)
    query_model$reference_batches <- model$batch_levels
    query_model$train <- train

    if (inherits(model, "cellweave_scvi")) {
        fit <- cw_scvi_map_query(model$arch, model$weights, model$device, x@p, x@i, as.double(x@x),
                                 dim(x), codes, length(batch_levels), train, progress)
        query_model[c("weights", "device")] <- fit[c("weights", "device")]
        query_model$history <- as.data.frame(fit$history)
        z <- fit$latent
        dimnames(z) <- list(colnames(x), paste0("scVI_", seq_len(ncol(z))))
        attr(z, "model") <- query_model
        return(z)
    }
    label_codes <- rep(length(model$labels), ncol(x))
    if (!is.null(labels)) {
        if (length(labels) != ncol(x)) {
            .stop_arg("labels", "has length ", length(labels), " but the query has ", ncol(x), " cells.")
        }
        given <- !is.na(labels)
        unknown <- setdiff(unique(as.character(labels[given])), model$labels)
        if (length(unknown)) {
            .stop_arg("labels", "has labels the model does not know: ",
                      paste(utils::head(unknown, 5), collapse = ", "), ".")
        }
        label_codes[given] <- match(as.character(labels[given]), model$labels) - 1L
    }
    fit <- cw_scanvi_map_query(model$arch, model$weights, model$device, x@p, x@i, as.double(x@x),
                               dim(x), codes, as.integer(label_codes), length(batch_levels),
                               train, progress)
    query_model[c("weights", "device")] <- fit[c("weights", "device")]
    query_model$history <- as.data.frame(fit$history)
    query_model$n_labelled <- sum(label_codes < length(model$labels))
    .scanvi_result(query_model, fit$latent, fit$probabilities, colnames(x))
}
