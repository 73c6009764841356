# The conditional VAE with batch-independence penalties (seeds 000 and 001: MMD, CoMP, MINE,
# HSIC), counterfactual expression and its evaluation, and de-novo MINE.

#' Integrate cells with a conditional VAE and a batch-independence penalty
#'
#' Trains a conditional VAE, the encoder q(z | x, c) and decoder p(x | z, c) given the
#' condition c (batch, stimulation, technology), on raw counts with scVI's count likelihood,
#' with a penalty that makes the latent space independent of the condition:
#'
#' * `"mmd"`: maximum mean discrepancy between the conditions' z (VFAE; seed 000's estimator:
#'   z standardised in the minibatch, the mean of RBF kernels at `bandwidths` 1, 2, 5, 8, 10,
#'   square root);
#' * `"trvae"`: the same on the decoder's first hidden layer (trVAE), at wider bandwidths;
#' * `"comp"`: CoMP (seed 001), the log-ratio of the mixture of posteriors of a cell's own
#'   condition to that of the other conditions, at the cell's z;
#' * `"mine"`: the mutual information between z and c bounded by MINE (seed 000), its
#'   statistics network trained adversarially before each step (`mine_steps`, `mine_lr`,
#'   `mine_hidden`, `mine_layers`, `mine_moving_average`);
#' * `"hsic"`: the Hilbert-Schmidt independence criterion between z and the one-hot condition.
#'
#' With a penalty, every minibatch holds cells of every condition. The defaults are CoMP's
#' settings for Kang et al.'s IFN-beta PBMCs: 3 layers of 512, 40 latent dimensions, minibatches
#' of 512, no dropout, a fixed posterior standard deviation of 0.1 and a small KL weight.
#' [counterfactual()] decodes cells with another condition; [counterfactualScores()] scores
#' that against the observed change.
#'
#' @inheritParams calculateSCVI
#' @param condition The condition of each cell (vector or factor).
#' @param penalty `"none"`, `"mmd"`, `"trvae"`, `"comp"`, `"mine"` or `"hsic"`.
#' @param penalty_weight The penalty's weight in the loss (CoMP's is 1; MMD, MINE and HSIC
#'   values are of order 1 against a reconstruction of hundreds of nats, so they need more).
#' @param penalty_options A list of the penalty's settings: `bandwidths` for `"mmd"` and
#'   `"trvae"`; `include_self` for `"comp"` (`TRUE`, default: a cell counts in its
#'   own condition's mixture, as the paper's eq. 4 prints it, which bounds the penalty;
#'   `FALSE`: left out, as CoMP's code does, which leaves it unbounded below and can over-mix); `mine_hidden` (128), `mine_layers` (10), `mine_lr` (5e-5), `mine_steps` (5
#'   steps of the statistics network before each VAE step) and `mine_moving_average` (0.001)
#'   for `"mine"`.
#' @param posterior_sd A fixed standard deviation of q(z | x, c) (CoMP's 0.1), or `NULL` to
#'   learn it as scVI does.
#' @param kl_weight The weight of the KL term (beta).
#' @param deeply_inject_covariates Give the condition to every hidden layer (not only the
#'   first) of the encoder and decoder.
#' @return `calculateCVAE()`: a cells x `n_latent` matrix; its attribute `"model"` (class
#'   `cellweave_cvae`, which is also a `cellweave_scvi`) works with [latent()],
#'   [normalizedExpression()], [counterfactual()] and `saveRDS()`.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' z <- calculateCVAE(SingleCellExperiment::counts(sce)[, 1:600], sce$batch[1:600],
#'                    penalty = "comp", n_hidden = 64, n_layers = 1, n_latent = 8,
#'                    batch_size = 128, max_epochs = 3, verbose = FALSE)
#' attr(z, "model")
#' @export
calculateCVAE <- function(x, condition, penalty = c("none", "mmd", "trvae", "comp", "mine", "hsic"),
                          penalty_weight = 1, penalty_options = list(), n_latent = 40,
                          n_hidden = 512, n_layers = 3, dropout_rate = 0, posterior_sd = 0.1,
                          gene_likelihood = "zinb", kl_weight = 1e-3,
                          deeply_inject_covariates = FALSE, max_epochs = NULL,
                          batch_size = 512, lr = 1e-3, weight_decay = 1e-6, eps = 0.01,
                          n_epochs_kl_warmup = 0, train_size = 0.9, early_stopping = FALSE,
                          early_stopping_patience = 45, seed = 0, device = "cpu",
                          verbose = TRUE, allow_non_integer = FALSE) {
    x <- .check_counts(x, "x", allow_non_integer = .check_flag(allow_non_integer, "allow_non_integer"))
    n_cells <- ncol(x)
    if (n_cells < 3L) .stop_arg("x", "needs at least 3 cells, not ", n_cells, ".")
    condition <- .check_grouping(condition, n_cells, "condition", min_levels = 2L)
    arch <- .scvi_architecture(nrow(x), nlevels(condition), n_latent, n_hidden, n_layers,
                                dropout_rate, gene_likelihood, use_observed_lib_size = TRUE,
                                encode_covariates = TRUE, deeply_inject_covariates,
                                posterior_sd = posterior_sd)
    train <- .train_options(max_epochs, batch_size, lr, eps, weight_decay, n_epochs_kl_warmup,
                            train_size, early_stopping, early_stopping_patience, seed,
                            kl_weight = kl_weight)
    train$penalty <- .penalty_options(penalty, penalty_weight, penalty_options, condition,
                                      "condition", train$batch_size)
    .fit_scvi_family(x, condition, arch, train, device, verbose, "cellweave_cvae")
}

#' @rdname calculateCVAE
#' @param sce A `SingleCellExperiment`.
#' @param assay.type The assay holding raw counts.
#' @param subset.row Genes to use (names, indices or logical); `NULL` for all.
#' @param name Name of the `reducedDim` to store (the model goes into `metadata(sce)[[name]]`).
#' @param ... Arguments passed to `calculateCVAE()`.
#' @return `runCVAE()`: `sce` with `reducedDim(sce, name)` and the model in `metadata()`.
#' @export
runCVAE <- function(sce, condition, assay.type = "counts", subset.row = NULL, ...,
                    name = "CVAE") {
    x <- .sce_counts(sce, assay.type, subset.row)
    condition <- .resolve_cell_vector(condition, SummarizedExperiment::colData(sce), ncol(sce),
                                      "condition")
    z <- calculateCVAE(x, condition, ...)
    model <- attr(z, "model")
    attr(z, "model") <- NULL
    SingleCellExperiment::reducedDim(sce, name) <- z
    S4Vectors::metadata(sce)[[name]] <- model
    sce
}

#' @rdname calculateCVAE
#' @param object A Seurat object.
#' @param assay Assay to use (default: the active assay).
#' @param features Genes to use; `NULL`: the variable features when set, else all.
#' @param reduction.name,reduction.key Name and key of the stored `DimReduc`.
#' @return `RunCVAE()`: `object` with a `DimReduc` (the model in its `misc` slot).
#' @export
RunCVAE <- function(object, condition, assay = NULL, features = NULL, ...,
                    reduction.name = "cvae", reduction.key = "CVAE_") {
    assay <- .seurat_assay(object, assay)
    x <- .seurat_counts(object, assay, features)
    condition <- .resolve_cell_vector(condition, object[[]], ncol(object), "condition")
    z <- calculateCVAE(x, condition, ...)
    model <- attr(z, "model")
    attr(z, "model") <- NULL
    colnames(z) <- paste0(reduction.key, seq_len(ncol(z)))
    object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
        embeddings = z, key = reduction.key, assay = assay, misc = list(model = model))
    object
}

#' @export
print.cellweave_cvae <- function(x, ...) {
    a <- x$arch
    cat("Conditional VAE (cellweave ", x$version, ")\n", sep = "")
    cat(sprintf("  data:      %d genes x %d cells, %d conditions (%s)\n", a$n_genes, x$n_cells,
                a$n_batch, paste(utils::head(x$batch_levels, 6), collapse = ", ")))
    cat(sprintf("  network:   latent %d, %d hidden layer%s of %d, %s posterior sd, %s likelihood, KL weight %g\n",
                a$n_latent, a$n_layers, if (a$n_layers == 1) "" else "s", a$n_hidden,
                if (is.null(a$posterior_sd)) "learned" else format(a$posterior_sd),
                toupper(a$gene_likelihood), x$train$kl_weight %||% 1))
    if (is.null(x$train$penalty)) cat("  penalty:   none\n")
    .print_penalty_and_training(x)
    invisible(x)
}

#' Counterfactual expression
#'
#' Decodes each cell's posterior-mean latent with the condition `to`: "this control cell, had
#' it been stimulated". Works for every model of the scVI family ([calculateSCVI()],
#' [calculateCVAE()], with or without a penalty); the condition is the model's batch.
#'
#' @param model A model from [calculateCVAE()] or [calculateSCVI()].
#' @param newdata A genes x cells count matrix with the model's genes, or a
#'   `SingleCellExperiment`.
#' @param condition The observed condition of each cell in `newdata` (its encoder input), or
#'   a column name of `colData(newdata)`.
#' @param to The condition to decode with (one of the model's).
#' @param library_size A positive number (1: expression frequencies; 1e4: counts per 10,000)
#'   or `"observed"` for each cell's own total count.
#' @param genes Genes to return; `NULL` for all.
#' @return A genes x cells matrix of normalised expression.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' z <- calculateCVAE(SingleCellExperiment::counts(sce)[, 1:600], sce$batch[1:600],
#'                    n_hidden = 64, n_layers = 1, n_latent = 8, batch_size = 128,
#'                    max_epochs = 3, verbose = FALSE)
#' ctrl <- which(sce$batch[1:600] == "ctrl")
#' e <- counterfactual(attr(z, "model"), SingleCellExperiment::counts(sce)[, ctrl],
#'                     condition = sce$batch[ctrl], to = "stim", library_size = 1e4)
#' dim(e)
#' @export
counterfactual <- function(model, newdata, condition, to, library_size = 1, genes = NULL) {
    if (!inherits(model, "cellweave_scvi")) {
        .stop_arg("model", "must be a model from calculateCVAE() or calculateSCVI(), not a ",
                  class(model)[1], ".")
    }
    .check_condition_level(model, to, "to")
    normalizedExpression(model, newdata, batch = condition, transform_batch = to,
                         library_size = library_size, genes = genes)
}

# `value` (argument `arg`) must be one condition of the model.
.check_condition_level <- function(model, value, arg) {
    if (!is.character(value) && !is.factor(value) || length(value) != 1L || is.na(value) ||
        !as.character(value) %in% model$batch_levels) {
        .stop_arg(arg, "must be one of the model's conditions (",
                  paste(model$batch_levels, collapse = ", "), "), not ", .describe(value), ".")
    }
    as.character(value)
}

#' Score counterfactual expression against the observed change
#'
#' Seed 001's test (its Figure 5) and scGen's: per cell type, the log fold change of mean
#' normalised expression (log1p of the mean counts per 10,000) from condition `from` to `to`
#' observed in the data, against the change the model predicts for the `from` cells (their
#' expected expression decoded with `to` against decoded with `from`, so that only the change
#' is scored). Both are logs of means: a mean of log-normalised counts is pulled down by the
#' zeros of lowly expressed genes and is not comparable with a decoder's expectation. Over the `n_top`
#' genes of largest observed change and over all genes: the squared Pearson correlation
#' (`r2_*`) and the mean absolute error (`mae_*`) of the log fold changes; and the mean
#' error over the top genes going up (`bias_up`, negative when the model underestimates them)
#' and down (`bias_down`). For the out-of-distribution version, train without the `to` cells
#' of one cell type and score that type.
#'
#' @param model A model from [calculateCVAE()] or [calculateSCVI()].
#' @param x A genes x cells count matrix with the model's genes, or a `SingleCellExperiment`.
#' @param condition The condition of each cell, or a column name of `colData(x)`.
#' @param cell_type The cell type of each cell, or a column name of `colData(x)`.
#' @param from,to The source (e.g. control) and target (e.g. stimulated) conditions.
#' @param n_top Genes of largest observed change to score.
#' @param min_cells Cell types with fewer cells in either condition are left out.
#' @return A data.frame, one row per cell type.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' z <- calculateCVAE(SingleCellExperiment::counts(sce), sce$batch, n_hidden = 64,
#'                    n_layers = 1, n_latent = 8, batch_size = 128, max_epochs = 3,
#'                    verbose = FALSE)
#' counterfactualScores(attr(z, "model"), sce, "batch", "cell_type", from = "ctrl", to = "stim")
#' @export
counterfactualScores <- function(model, x, condition, cell_type, from, to, n_top = 50,
                                 min_cells = 10) {
    if (!inherits(model, "cellweave_scvi")) {
        .stop_arg("model", "must be a model from calculateCVAE() or calculateSCVI(), not a ",
                  class(model)[1], ".")
    }
    if (methods::is(x, "SingleCellExperiment")) {
        cell_data <- SummarizedExperiment::colData(x)
        cell_type <- .resolve_cell_vector(cell_type, cell_data, ncol(x), "cell_type")
    }
    input <- .scvi_newdata(model, x, condition)
    types <- .check_grouping(cell_type, ncol(input$x), "cell_type")
    from <- .check_condition_level(model, from, "from")
    to <- .check_condition_level(model, to, "to")
    if (from == to) .stop_arg("to", "must differ from `from` (both \"", to, "\").")
    n_top <- .check_scalar_int(n_top, "n_top", min = 2, max = model$arch$n_genes)
    min_cells <- .check_scalar_int(min_cells, "min_cells", min = 1)
    s <- cw_counterfactual_scores(model$arch, model$weights, model$device, input$x@p, input$x@i,
                                  as.double(input$x@x), dim(input$x), input$codes,
                                  as.integer(types) - 1L, nlevels(types),
                                  match(from, model$batch_levels) - 1L,
                                  match(to, model$batch_levels) - 1L, n_top, min_cells)
    data.frame(cell_type = levels(types)[s$cell_type], n_from = as.integer(s$n_from),
               n_to = as.integer(s$n_to), r2_top = s$r2_top, mae_top = s$mae_top,
               r2_all = s$r2_all, mae_all = s$mae_all, bias_up = s$bias_up,
               bias_down = s$bias_down, n_up = as.integer(s$n_up), stringsAsFactors = FALSE)
}

#' Measure how much an embedding knows about the condition with MINE
#'
#' De-novo MINE (seed 000): trains a fresh statistics network T(z, c) on `embedding` and
#' returns the Donsker-Varadhan lower bound on the mutual information between the embedding
#' and the condition (nats; at most the condition's entropy, ln 2 for two balanced
#' conditions; about 0 when independent). The network trains on `train_size` of the cells
#' and the bound is reported on the rest (`heldout`) and on the training cells (`train`).
#'
#' @param embedding A cells x dimensions matrix (a latent representation).
#' @param condition The condition of each cell.
#' @param epochs,batch_size,lr Training of the statistics network (seed 000: 400 epochs of
#'   minibatches of 128 at 5e-5).
#' @param n_hidden,n_layers Its width and depth (10 ELU layers of 128).
#' @param moving_average_rate Rate of the moving average in its bias-corrected gradient.
#' @param train_size Share of cells it trains on.
#' @param seed Random seed.
#' @param device Compute device (see [calculateSCVI()]).
#' @return A named vector `c(heldout, train)`; attribute `"history"`: the bound on the
#'   training cells after each epoch.
#' @examples
#' z <- matrix(rnorm(2000), 1000, 2)
#' condition <- rep(c("a", "b"), 500)
#' z[condition == "b", 1] <- z[condition == "b", 1] + 3
#' mineEstimate(z, condition, epochs = 20, lr = 1e-3)
#' @export
mineEstimate <- function(embedding, condition, epochs = 400, batch_size = 128, lr = 5e-5,
                         n_hidden = 128, n_layers = 10, moving_average_rate = 0.001,
                         train_size = 0.8, seed = 0, device = "cpu") {
    embedding <- .check_embedding(embedding, "embedding")
    condition <- .check_grouping(condition, nrow(embedding), "condition", min_levels = 2L)
    if (nrow(embedding) < 4L) .stop_arg("embedding", "needs at least 4 cells.")
    options <- list(
        epochs = .check_scalar_int(epochs, "epochs", min = 1),
        batch_size = .check_scalar_int(batch_size, "batch_size", min = 2),
        lr = .check_scalar_num(lr, "lr", min = 0, min_inclusive = FALSE),
        n_hidden = .check_scalar_int(n_hidden, "n_hidden", min = 1, max = 16384),
        n_layers = .check_scalar_int(n_layers, "n_layers", min = 1, max = 64),
        moving_average_rate = .check_scalar_num(moving_average_rate, "moving_average_rate",
                                                min = 0, max = 1, min_inclusive = FALSE),
        train_size = .check_scalar_num(train_size, "train_size", min = 0, max = 1,
                                       min_inclusive = FALSE),
        seed = .check_scalar_int(seed, "seed", min = 0),
        device = .check_device(device)
    )
    if (options$train_size >= 1) .stop_arg("train_size", "must be < 1: the bound is reported on the rest.")
    r <- cw_mine_estimate(embedding, nrow(embedding), ncol(embedding), as.integer(condition) - 1L,
                          nlevels(condition), options)
    structure(c(heldout = r$heldout, train = r$train), history = r$history)
}
