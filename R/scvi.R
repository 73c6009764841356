# scVI: a variational autoencoder for counts (Lopez et al. 2018), with scvi-tools' defaults.

#' Integrate cells with scVI
#'
#' Trains scVI (a zero-inflated negative binomial variational autoencoder conditioned on
#' batch; scvi-tools' model and defaults) on raw counts and returns the posterior-mean
#' latent representation, a batch-corrected embedding for clustering, neighbours and UMAP.
#'
#' @param x A genes x cells matrix of raw counts (`dgCMatrix` or numeric matrix).
#' @param batch Batch of each cell (vector or factor, one value per cell), or `NULL` for one
#'   batch.
#' @param n_latent Dimension of the latent space.
#' @param n_hidden Nodes per hidden layer.
#' @param n_layers Hidden layers in the encoder and decoder.
#' @param dropout_rate Dropout rate of the encoder.
#' @param gene_likelihood `"zinb"` (zero-inflated negative binomial), `"nb"`, or `"gaussian"`
#'   (a Gaussian on log-normalised expression, log1p of counts per 10,000, with one standard
#'   deviation per cell: CoMP's decoder; its ELBO is not comparable with the count models').
#' @param use_observed_lib_size Use each cell's total count as its library size (`TRUE`,
#'   default) or learn it as a latent variable with a per-batch log-normal prior.
#' @param encode_covariates Give the batch to the encoder too.
#' @param deeply_inject_covariates Give the batch to every hidden layer (not only the first).
#' @param max_epochs Training epochs; `NULL` picks scvi-tools' heuristic
#'   `min(round(20000 / n_cells * 400), 400)`.
#' @param batch_size Cells per minibatch.
#' @param lr,weight_decay,eps Adam's learning rate, weight decay and epsilon.
#' @param n_epochs_kl_warmup Epochs over which the KL weight rises from 0 to 1.
#' @param train_size Share of cells used for training; the rest gives the validation ELBO.
#' @param early_stopping Stop when the validation ELBO has not improved for
#'   `early_stopping_patience` epochs.
#' @param early_stopping_patience Epochs without improvement before stopping.
#' @param seed Random seed: the same seed gives the same result on the same device.
#' @param device `"cpu"` (default), `"cpu:flex"` or `"cpu:ndarray"` to pick a CPU backend, or
#'   `"cuda"` with a GPU build.
#' @param penalty A batch-independence penalty on the latent space (see [calculateCVAE()]):
#'   `"none"` (default), `"mmd"`, `"trvae"`, `"comp"`, `"mine"` or `"hsic"` (seed 000's
#'   scVI+HSIC).
#' @param penalty_weight The penalty's weight in the loss.
#' @param penalty_options Settings of the penalty (see [calculateCVAE()]).
#' @param verbose Show progress: a bar redrawn in place in an interactive session, a line
#'   every tenth of the epochs otherwise.
#' @param allow_non_integer Accept non-integer values (with a warning) instead of an error.
#' @return `calculateSCVI()`: a cells x `n_latent` matrix; its attribute `"model"` is the
#'   fitted model (class `cellweave_scvi`), which [latent()] and [normalizedExpression()]
#'   apply to new data and `saveRDS()` keeps.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' z <- calculateSCVI(SingleCellExperiment::counts(sce)[, 1:500], sce$batch[1:500],
#'                    max_epochs = 5, verbose = FALSE)
#' dim(z)
#' attr(z, "model")
#' @export
calculateSCVI <- function(x, batch = NULL, n_latent = 10, n_hidden = 128, n_layers = 1,
                          dropout_rate = 0.1, gene_likelihood = "zinb",
                          use_observed_lib_size = TRUE, encode_covariates = FALSE,
                          deeply_inject_covariates = TRUE, max_epochs = NULL,
                          batch_size = 128, lr = 1e-3, weight_decay = 1e-6, eps = 0.01,
                          n_epochs_kl_warmup = 400, train_size = 0.9, early_stopping = FALSE,
                          early_stopping_patience = 45, seed = 0, device = "cpu",
                          penalty = "none", penalty_weight = 1, penalty_options = list(),
                          verbose = TRUE, allow_non_integer = FALSE) {
    x <- .check_counts(x, "x", allow_non_integer = .check_flag(allow_non_integer, "allow_non_integer"))
    n_cells <- ncol(x)
    if (n_cells < 3L) .stop_arg("x", "needs at least 3 cells, not ", n_cells, ".")
    if (is.null(batch)) batch <- rep("batch", n_cells)
    batch <- .check_grouping(batch, n_cells, "batch")
    arch <- .scvi_architecture(nrow(x), nlevels(batch), n_latent, n_hidden, n_layers,
                                dropout_rate, gene_likelihood, use_observed_lib_size,
                                encode_covariates, deeply_inject_covariates)
    train <- .train_options(max_epochs, batch_size, lr, eps, weight_decay, n_epochs_kl_warmup,
                            train_size, early_stopping, early_stopping_patience, seed)
    train$penalty <- .penalty_options(penalty, penalty_weight, penalty_options, batch,
                                      "batch", train$batch_size)
    .fit_scvi_family(x, batch, arch, train, device, verbose, "cellweave_scvi")
}

# Trains an scVI-family network (scVI, the CVAE) and returns its latent with the model attached.
.fit_scvi_family <- function(x, batch, arch, train, device, verbose, class) {
    device <- .check_device(device)
    progress <- .progress_style(.check_flag(verbose, "verbose"))
    fit <- cw_scvi_train(x@p, x@i, as.double(x@x), dim(x), as.integer(batch) - 1L,
                         arch, train, device, progress)
    model <- structure(list(
        arch = arch,
        train = train,
        genes = rownames(x),
        batch_levels = levels(batch),
        n_cells = ncol(x),
        weights = fit$weights,
        history = as.data.frame(fit$history),
        device = fit$device,
        version = as.character(utils::packageVersion("cellweave"))
    ), class = unique(c(class, "cellweave_scvi")))
    z <- fit$latent
    dimnames(z) <- list(colnames(x), paste0(.latent_key(model), seq_len(ncol(z))))
    attr(z, "model") <- model
    z
}

# Column prefix of a model's latent.
.latent_key <- function(model) if (inherits(model, "cellweave_cvae")) "CVAE_" else "scVI_"

# A penalty's options for the trainer (NULL for none), checked: `groups` is the grouping the
# penalty works against (argument `group_arg`), which needs 2 levels and minibatches that hold
# 2 cells of each.
.penalty_options <- function(penalty, penalty_weight, penalty_options, groups, group_arg,
                             batch_size) {
    choices <- c("none", "mmd", "trvae", "comp", "mine", "hsic")
    if (identical(penalty, choices)) penalty <- "none"
    penalty <- .check_choice(penalty, "penalty", choices)
    if (penalty == "none") return(NULL)
    weight <- .check_scalar_num(penalty_weight, "penalty_weight", min = 0)
    if (nlevels(groups) < 2L) {
        .stop_arg(group_arg, "has ", nlevels(groups), " level; a \"", penalty,
                  "\" penalty needs at least 2.")
    }
    if (batch_size < 2L * nlevels(groups)) {
        .stop_arg("batch_size", "must hold 2 cells of each of the ", nlevels(groups), " levels of `",
                  group_arg, "` for a penalty: use batch_size >= ", 2L * nlevels(groups), ", not ",
                  batch_size, ".")
    }
    if (!is.list(penalty_options)) .stop_arg("penalty_options", "must be a list.")
    allowed <- switch(penalty,
        mmd = , trvae = "bandwidths",
        comp = "include_self",
        mine = c("mine_hidden", "mine_layers", "mine_lr", "mine_steps", "mine_moving_average"),
        character(0))
    unknown <- setdiff(names(penalty_options), allowed)
    if (length(penalty_options) && (is.null(names(penalty_options)) || length(unknown))) {
        .stop_arg("penalty_options", "has settings a \"", penalty, "\" penalty does not take (",
                  paste(unknown, collapse = ", "), "); it takes: ",
                  if (length(allowed)) paste(allowed, collapse = ", ") else "none", ".")
    }
    o <- list(name = penalty, weight = weight)
    if (!is.null(b <- penalty_options$bandwidths)) {
        if (!is.numeric(b) || !length(b) || anyNA(b) || any(!is.finite(b)) || any(b <= 0)) {
            .stop_arg("penalty_options", "$bandwidths must be positive numbers.")
        }
        o$bandwidths <- as.double(b)
    }
    if (!is.null(penalty_options$include_self)) {
        o$include_self <- .check_flag(penalty_options$include_self, "penalty_options$include_self")
    }
    ints <- c(mine_hidden = 1, mine_layers = 1, mine_steps = 1)
    for (k in intersect(names(penalty_options), names(ints))) {
        o[[k]] <- .check_scalar_int(penalty_options[[k]], paste0("penalty_options$", k), min = 1,
                                    max = 1e4)
    }
    if (!is.null(penalty_options$mine_lr)) {
        o$mine_lr <- .check_scalar_num(penalty_options$mine_lr, "penalty_options$mine_lr",
                                       min = 0, min_inclusive = FALSE)
    }
    if (!is.null(penalty_options$mine_moving_average)) {
        o$mine_moving_average <- .check_scalar_num(penalty_options$mine_moving_average,
                                                   "penalty_options$mine_moving_average",
                                                   min = 0, max = 1, min_inclusive = FALSE)
    }
    o
}

#' @rdname calculateSCVI
#' @param sce A `SingleCellExperiment`.
#' @param assay.type The assay holding raw counts.
#' @param subset.row Genes to use (names, indices or logical); `NULL` for all.
#' @param name Name of the `reducedDim` to store (the model goes into `metadata(sce)[[name]]`).
#' @param ... Arguments passed to `calculateSCVI()`.
#' @return `runSCVI()`: `sce` with `reducedDim(sce, name)` and the model in `metadata()`.
#' @export
runSCVI <- function(sce, batch = NULL, assay.type = "counts", subset.row = NULL, ...,
                    name = "SCVI") {
    x <- .sce_counts(sce, assay.type, subset.row)
    batch <- .resolve_cell_vector(batch, SummarizedExperiment::colData(sce), ncol(sce), "batch")
    z <- calculateSCVI(x, batch, ...)
    model <- attr(z, "model")
    attr(z, "model") <- NULL
    SingleCellExperiment::reducedDim(sce, name) <- z
    S4Vectors::metadata(sce)[[name]] <- model
    sce
}

#' @rdname calculateSCVI
#' @param object A Seurat object.
#' @param group.by.vars Name of the meta.data column with the batch.
#' @param assay Assay to use (default: the active assay).
#' @param features Genes to use; `NULL`: the variable features when set, else all.
#' @param reduction.name,reduction.key Name and key of the stored `DimReduc`.
#' @return `RunSCVI()`: `object` with a `DimReduc` (the model in its `misc` slot).
#' @export
RunSCVI <- function(object, group.by.vars = NULL, assay = NULL, features = NULL, ...,
                    reduction.name = "scvi", reduction.key = "scVI_") {
    assay <- .seurat_assay(object, assay)
    x <- .seurat_counts(object, assay, features)
    batch <- NULL
    if (!is.null(group.by.vars)) {
        batch <- .resolve_cell_vector(group.by.vars, object[[]], ncol(object), "group.by.vars")
    }
    z <- calculateSCVI(x, batch, ...)
    model <- attr(z, "model")
    attr(z, "model") <- NULL
    colnames(z) <- paste0(reduction.key, seq_len(ncol(z)))
    object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
        embeddings = z, key = reduction.key, assay = assay, misc = list(model = model))
    object
}

#' Apply a fitted scVI model to cells
#'
#' `latent()` gives the posterior-mean latent representation of cells; `normalizedExpression()`
#' decodes it. Decoding with the cells' own batch gives denoised expression; with
#' `transform_batch` every cell is decoded as if measured in that batch (or the average over
#' several), which is batch-corrected expression; with `library_size = "observed"` the result is
#' on the counts scale of each cell: with another batch, its counterfactual expression.
#'
#' @param model A model from [calculateSCVI()] (also `metadata(sce)$SCVI` or
#'   `Misc(seurat[["scvi"]])$model`).
#' @param newdata A genes x cells count matrix with the model's genes (rows are matched by name),
#'   or a `SingleCellExperiment` (its `"counts"` assay).
#' @param batch Batch of each cell in `newdata` (levels must be among the model's), or a
#'   column name of `colData(newdata)`; `NULL` when the model has a single batch.
#' @param ... Unused.
#' @return `latent()`: a cells x `n_latent` matrix.
#' @export
latent <- function(model, newdata, batch = NULL, ...) UseMethod("latent")

#' @rdname latent
#' @export
latent.cellweave_scvi <- function(model, newdata, batch = NULL, ...) {
    input <- .scvi_newdata(model, newdata, batch)
    z <- cw_scvi_latent(model$arch, model$weights, model$device, input$x@p, input$x@i,
                        as.double(input$x@x), dim(input$x), input$codes)
    dimnames(z) <- list(colnames(input$x), paste0(.latent_key(model), seq_len(ncol(z))))
    z
}

#' @rdname latent
#' @param transform_batch Batch level(s) to decode with; `NULL`: each cell's own batch.
#' @param library_size A positive number (the default 1 gives expression frequencies; 1e4 gives
#'   counts per 10,000) or `"observed"` for each cell's own total count.
#' @param genes Genes to return (names or indices among the model's genes); `NULL` for all.
#'   Cells are decoded in chunks, so only the returned genes x cells matrix is held in memory.
#' @return `normalizedExpression()`: a genes x cells matrix.
#' @export
normalizedExpression <- function(model, newdata, batch = NULL, transform_batch = NULL,
                                 library_size = 1, genes = NULL, ...) {
    UseMethod("normalizedExpression")
}

#' @rdname latent
#' @export
normalizedExpression.cellweave_scvi <- function(model, newdata, batch = NULL, transform_batch = NULL,
                                                library_size = 1, genes = NULL, ...) {
    input <- .scvi_newdata(model, newdata, batch)
    gene_index <- NULL
    if (!is.null(genes)) gene_index <- .model_gene_index(model, genes)
    codes <- integer(0)
    if (!is.null(transform_batch)) {
        transform_batch <- as.character(transform_batch)
        unknown <- setdiff(transform_batch, model$batch_levels)
        if (anyNA(transform_batch) || length(unknown)) {
            .stop_arg("transform_batch", "must name batches of the model (",
                      paste(model$batch_levels, collapse = ", "), "), not ",
                      paste(unknown, collapse = ", "), ".")
        }
        codes <- match(transform_batch, model$batch_levels) - 1L
    }
    if (identical(library_size, "observed")) {
        library_size <- NULL
    } else {
        library_size <- .check_scalar_num(library_size, "library_size", min = 0, min_inclusive = FALSE)
    }
    e <- cw_scvi_expression(model$arch, model$weights, model$device, input$x@p, input$x@i,
                            as.double(input$x@x), dim(input$x), input$codes,
                            as.integer(codes), library_size,
                            if (is.null(gene_index)) NULL else as.integer(gene_index))
    gene_names <- rownames(input$x)
    if (!is.null(gene_index)) gene_names <- gene_names[gene_index]
    dimnames(e) <- list(gene_names, colnames(input$x))
    e
}

# The raw counts of a SingleCellExperiment's assay, on the genes `subset.row` (all when NULL).
.sce_counts <- function(sce, assay.type, subset.row) {
    if (!methods::is(sce, "SingleCellExperiment")) {
        .stop_arg("sce", "must be a SingleCellExperiment, not a ", class(sce)[1], ".")
    }
    if (!assay.type %in% SummarizedExperiment::assayNames(sce)) {
        .stop_arg("assay.type", sprintf('names no assay of `sce` ("%s" not found).', assay.type))
    }
    x <- SummarizedExperiment::assay(sce, assay.type, withDimnames = TRUE)
    if (!is.null(subset.row)) x <- x[subset.row, , drop = FALSE]
    x
}

# The assay of a Seurat object to use (the default assay when NULL), checked.
.seurat_assay <- function(object, assay) {
    .require_seurat()
    if (!methods::is(object, "Seurat")) {
        .stop_arg("object", "must be a Seurat object, not a ", class(object)[1], ".")
    }
    assay <- assay %||% SeuratObject::DefaultAssay(object)
    if (!assay %in% SeuratObject::Assays(object)) {
        .stop_arg("assay", sprintf('names no assay of `object` ("%s" not found).', assay))
    }
    assay
}

# The counts of a Seurat assay on `features` (NULL: the variable features when set, else all).
.seurat_counts <- function(object, assay, features) {
    x <- SeuratObject::GetAssayData(object, assay = assay, slot = "counts")
    if (is.null(features)) {
        features <- SeuratObject::VariableFeatures(object, assay = assay)
        if (length(features) == 0L) features <- rownames(x)
    }
    x[features, , drop = FALSE]
}

# The scVI network's options, checked (the names are the arguments of calculateSCVI()).
.scvi_architecture <- function(n_genes, n_batch, n_latent, n_hidden, n_layers, dropout_rate,
                               gene_likelihood, use_observed_lib_size, encode_covariates,
                               deeply_inject_covariates, posterior_sd = NULL) {
    list(
        n_genes = n_genes,
        n_batch = n_batch,
        n_latent = .check_scalar_int(n_latent, "n_latent", min = 1),
        n_hidden = .check_scalar_int(n_hidden, "n_hidden", min = 1),
        n_layers = .check_scalar_int(n_layers, "n_layers", min = 1),
        dropout_rate = .check_scalar_num(dropout_rate, "dropout_rate", min = 0, max = 0.99),
        gene_likelihood = .check_choice(gene_likelihood, "gene_likelihood", c("zinb", "nb", "gaussian")),
        latent_library = !.check_flag(use_observed_lib_size, "use_observed_lib_size"),
        encode_covariates = .check_flag(encode_covariates, "encode_covariates"),
        deeply_inject_covariates = .check_flag(deeply_inject_covariates, "deeply_inject_covariates"),
        posterior_sd = if (is.null(posterior_sd)) NULL else
            .check_scalar_num(posterior_sd, "posterior_sd", min = 0, min_inclusive = FALSE)
    )
}

# The trainer's options, checked (the names are the arguments of calculateSCVI()).
.train_options <- function(max_epochs, batch_size, lr, eps, weight_decay, n_epochs_kl_warmup,
                           train_size, early_stopping, early_stopping_patience, seed,
                           kl_weight = 1) {
    train <- list(
        max_epochs = if (is.null(max_epochs)) NULL else .check_scalar_int(max_epochs, "max_epochs", min = 1),
        batch_size = .check_scalar_int(batch_size, "batch_size", min = 3),
        lr = .check_scalar_num(lr, "lr", min = 0, min_inclusive = FALSE),
        adam_eps = .check_scalar_num(eps, "eps", min = 0, min_inclusive = FALSE),
        weight_decay = .check_scalar_num(weight_decay, "weight_decay", min = 0),
        n_epochs_kl_warmup = .check_scalar_int(n_epochs_kl_warmup, "n_epochs_kl_warmup", min = 0),
        train_size = .check_scalar_num(train_size, "train_size", min = 0, max = 1, min_inclusive = FALSE),
        early_stopping = .check_flag(early_stopping, "early_stopping"),
        early_stopping_patience = .check_scalar_int(early_stopping_patience, "early_stopping_patience", min = 1),
        early_stopping_min_delta = 0,
        seed = .check_scalar_int(seed, "seed", min = 0),
        kl_weight = .check_scalar_num(kl_weight, "kl_weight", min = 0)
    )
    if (train$early_stopping && train$train_size >= 1) {
        .stop_arg("early_stopping", "needs a validation set: use train_size < 1.")
    }
    train
}

# How training reports progress: a bar redrawn in place interactively, lines otherwise.
.progress_style <- function(verbose) {
    if (!verbose) "none" else if (interactive()) "bar" else "lines"
}

# 1-based positions of `genes` (names or indices) among the model's genes.
.model_gene_index <- function(model, genes) {
    n <- model$arch$n_genes
    if (is.character(genes)) {
        idx <- match(genes, model$genes)
        if (is.null(model$genes) || anyNA(idx)) {
            .stop_arg("genes", "names genes the model was not trained on (e.g. ",
                      paste(utils::head(genes[is.na(idx)], 3), collapse = ", "), ").")
        }
        return(idx)
    }
    if (!is.numeric(genes) || anyNA(genes) || any(genes != round(genes)) ||
        any(genes < 1) || any(genes > n)) {
        .stop_arg("genes", "must be gene names or indices in 1..", n, ".")
    }
    as.integer(genes)
}

#' @export
print.cellweave_scvi <- function(x, ...) {
    a <- x$arch
    h <- x$history
    cat("scVI model (cellweave ", x$version, ")\n", sep = "")
    cat(sprintf("  data:      %d genes x %d cells, %d batch%s (%s)\n", a$n_genes, x$n_cells,
                a$n_batch, if (a$n_batch == 1) "" else "es",
                paste(utils::head(x$batch_levels, 6), collapse = ", ")))
    cat(sprintf("  network:   latent %d, %d hidden layer%s of %d, dropout %g, %s likelihood, %s library size\n",
                a$n_latent, a$n_layers, if (a$n_layers == 1) "" else "s", a$n_hidden,
                a$dropout_rate, toupper(a$gene_likelihood),
                if (a$latent_library) "latent" else "observed"))
    .print_penalty_and_training(x)
    invisible(x)
}

# The penalty (with its final value) and the training lines of a model's print-out.
.print_penalty_and_training <- function(x) {
    h <- x$history
    p <- x$train$penalty
    if (!is.null(p)) {
        term <- grep("^train_(mmd|mmd_decoder|comp|mine|hsic)$", names(h), value = TRUE)
        cat(sprintf("  penalty:   %s, weight %g%s\n", p$name, p$weight,
                    if (length(term) && nrow(h))
                        sprintf(" (final value %.4g)", h[[term[1]]][nrow(h)]) else ""))
    }
    if (nrow(h)) {
        last <- h[nrow(h), ]
        cat(sprintf("  training:  %d epochs on %s (%.2f s/epoch), final loss %.2f", nrow(h), x$device,
                    mean(h$seconds), last$train_loss))
        if (!is.na(last$validation_elbo)) cat(sprintf(", validation ELBO %.2f", last$validation_elbo))
        cat("\n")
    }
}

# Counts of `newdata` on the model's genes, and 0-based batch codes.
.scvi_newdata <- function(model, newdata, batch) {
    if (methods::is(newdata, "SingleCellExperiment")) {
        batch <- .resolve_cell_vector(batch, SummarizedExperiment::colData(newdata), ncol(newdata), "batch")
        newdata <- SummarizedExperiment::assay(newdata, "counts", withDimnames = TRUE)
    }
    x <- .on_model_genes(model, newdata, "newdata")
    if (is.null(batch)) {
        if (length(model$batch_levels) > 1L) {
            .stop_arg("batch", "is required: the model has ", length(model$batch_levels), " batches.")
        }
        batch <- rep(model$batch_levels, ncol(x))
    }
    if (length(batch) != ncol(x)) {
        .stop_arg("batch", "has length ", length(batch), " but there are ", ncol(x), " cells.")
    }
    if (anyNA(batch)) .stop_arg("batch", "contains NA.")
    unknown <- setdiff(unique(as.character(batch)), model$batch_levels)
    if (length(unknown)) {
        .stop_arg("batch", "has levels the model was not trained on: ", paste(unknown, collapse = ", "), ".")
    }
    list(x = x, codes = match(as.character(batch), model$batch_levels) - 1L)
}

# The counts `x` (argument `arg`) as a dgCMatrix on the model's genes, in the model's order.
.on_model_genes <- function(model, x, arg) {
    x <- .check_counts(x, arg, allow_non_integer = TRUE)
    genes <- model$genes
    if (!is.null(genes) && !is.null(rownames(x))) {
        missing <- setdiff(genes, rownames(x))
        if (length(missing)) {
            .stop_arg(arg, "lacks ", length(missing), " of the model's ", length(genes),
                      " genes (e.g. ", paste(utils::head(missing, 3), collapse = ", "),
                      "): it must hold the genes the model was trained on.")
        }
        x <- x[genes, , drop = FALSE]
    } else if (nrow(x) != model$arch$n_genes) {
        .stop_arg(arg, "has ", nrow(x), " genes but the model was trained on ",
                  model$arch$n_genes, ".")
    }
    x
}
