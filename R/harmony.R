# Harmony (Korsunsky et al. 2019): batch correction of a PCA by soft clustering with a batch
# diversity penalty and per-cluster ridge regression. Bioconductor and Seurat interfaces.

#' Integrate batches with Harmony
#'
#' Corrects an embedding (usually the PCA of log-normalised expression) for batch effects with
#' Harmony: soft k-means on the cosine-normalised embedding with an entropy term (`sigma`) and a
#' penalty for clusters dominated by one batch (`theta`), then a mixture-of-experts ridge
#' regression (`lambda`) that removes each cluster's batch effect from the original embedding;
#' repeated until the objective settles. The defaults are Seurat v5's Harmony settings.
#'
#' Results do not depend on the order of the cells: cells are visited in an order fixed by
#' their coordinates, batch and `seed`. The same seed gives the same result.
#'
#' @param x A cells x dimensions numeric matrix, e.g. `reducedDim(sce, "PCA")`.
#' @param batch Batch of each cell (vector or factor), or a data.frame or list of several such
#'   variables (e.g. sample and donor) to correct for at once.
#' @param theta Diversity penalty: one value, or one per batch variable. 0 disables it.
#' @param sigma Width of the soft clusters.
#' @param lambda Ridge penalty of the batch coefficients (> 0): one value or one per variable.
#'   Larger values correct less.
#' @param nclust Number of clusters; `NULL` for `min(round(n_cells / 30), 100)`.
#' @param tau Expected cells per cluster below which theta is reduced for small batches
#'   (0: off).
#' @param block_size Share of cells whose memberships are updated together.
#' @param max_iter Maximum rounds of clustering and correction.
#' @param max_iter_cluster Maximum clustering iterations per round.
#' @param epsilon_cluster,epsilon_harmony Relative changes of the objective below which a
#'   round's clustering, and Harmony, stop.
#' @param seed Random seed (cluster initialisation and update order).
#' @param verbose Print the objective after each round.
#' @return `calculateHarmony()`: a cells x dimensions matrix of corrected coordinates with the
#'   attributes `"objective"` (after initialisation and after each round), `"iterations"`
#'   (clustering iterations per round), `"converged"` and `"nclust"`.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' cells <- c(1:300, 1501:1800) # 300 control and 300 stimulated cells
#' counts <- SingleCellExperiment::counts(sce)[1:500, cells]
#' logexp <- log1p(Matrix::t(Matrix::t(counts) * (1e4 / Matrix::colSums(counts))))
#' pcs <- prcomp(t(as.matrix(logexp)), rank. = 20)$x
#' z <- calculateHarmony(pcs, sce$batch[cells])
#' dim(z)
#' attr(z, "converged")
#' @export
calculateHarmony <- function(x, batch, theta = 2, sigma = 0.1, lambda = 1, nclust = NULL, tau = 0,
                             block_size = 0.05, max_iter = 10, max_iter_cluster = 20,
                             epsilon_cluster = 1e-5, epsilon_harmony = 1e-4, seed = 0,
                             verbose = FALSE) {
    x <- .check_embedding(x, "x")
    n_cells <- nrow(x)
    batches <- .check_batch_variables(batch, n_cells, "batch", "Harmony")
    n_vars <- length(batches)
    options <- list(
        theta = .check_per_variable(theta, n_vars, "theta", min = 0),
        lambda = .check_per_variable(lambda, n_vars, "lambda", min = 0, min_inclusive = FALSE),
        sigma = .check_scalar_num(sigma, "sigma", min = 0, min_inclusive = FALSE),
        nclust = if (is.null(nclust)) NULL else .check_scalar_int(nclust, "nclust", min = 1, max = n_cells),
        tau = .check_scalar_num(tau, "tau", min = 0),
        block_size = .check_scalar_num(block_size, "block_size", min = 0, max = 1, min_inclusive = FALSE),
        max_iter = .check_scalar_int(max_iter, "max_iter", min = 1),
        max_iter_cluster = .check_scalar_int(max_iter_cluster, "max_iter_cluster", min = 1),
        epsilon_cluster = .check_scalar_num(epsilon_cluster, "epsilon_cluster", min = 0),
        epsilon_harmony = .check_scalar_num(epsilon_harmony, "epsilon_harmony", min = 0),
        seed = .check_scalar_int(seed, "seed", min = 0)
    )
    verbose <- .check_flag(verbose, "verbose")
    codes <- lapply(batches, function(f) as.integer(f) - 1L)
    fit <- cw_harmony(x, nrow(x), ncol(x), codes, options, verbose)
    z <- fit$embedding
    dimnames(z) <- list(rownames(x), colnames(x) %||% paste0("harmony_", seq_len(ncol(z))))
    attr(z, "objective") <- fit$objective
    attr(z, "iterations") <- fit$cluster_iterations
    attr(z, "converged") <- fit$converged
    attr(z, "nclust") <- fit$n_clusters
    z
}

#' @rdname calculateHarmony
#' @param sce A `SingleCellExperiment` with a PCA in `reducedDim(sce, dimred)` (e.g. from
#'   `scater::runPCA()`).
#' @param dimred Name of the reduced dimension to correct.
#' @param n_dimred Number of its first dimensions to use; `NULL` for all.
#' @param name Name of the `reducedDim` to store the result in.
#' @param ... Arguments passed to `calculateHarmony()`.
#' @return `runHarmony()`: `sce` with `reducedDim(sce, name)`.
#' @export
runHarmony <- function(sce, batch, ..., dimred = "PCA", n_dimred = NULL, name = "HARMONY") {
    if (!methods::is(sce, "SingleCellExperiment")) {
        .stop_arg("sce", "must be a SingleCellExperiment, not a ", class(sce)[1], ".")
    }
    x <- .get_dimred(sce, dimred, n_dimred)
    batch <- .resolve_batch_columns(batch, SummarizedExperiment::colData(sce), ncol(sce), "batch")
    SingleCellExperiment::reducedDim(sce, name) <- calculateHarmony(x, batch, ...)
    sce
}

#' @rdname calculateHarmony
#' @param object A Seurat object with a PCA (e.g. from `Seurat::RunPCA()`).
#' @param group.by.vars Name(s) of the meta.data column(s) holding the batch variable(s).
#' @param reduction.use Name of the reduction to correct.
#' @param dims.use Dimensions of that reduction to use; `NULL` for all.
#' @param reduction.name,reduction.key Name and key of the stored `DimReduc`.
#' @return `RunHarmony()`: `object` with a `DimReduc` (the assay of `reduction.use` recorded).
#' @export
RunHarmony <- function(object, group.by.vars, reduction.use = "pca", dims.use = NULL, ...,
                       reduction.name = "harmony", reduction.key = "harmony_") {
    .require_seurat()
    if (!methods::is(object, "Seurat")) {
        .stop_arg("object", "must be a Seurat object, not a ", class(object)[1], ".")
    }
    if (!is.character(reduction.use) || length(reduction.use) != 1L ||
        !reduction.use %in% SeuratObject::Reductions(object)) {
        .stop_arg("reduction.use", "must name a reduction of `object` (",
                  paste0('"', SeuratObject::Reductions(object), '"', collapse = ", "),
                  "); run Seurat::RunPCA() first.")
    }
    source <- object[[reduction.use]]
    x <- SeuratObject::Embeddings(source)
    if (!is.null(dims.use)) {
        if (!is.numeric(dims.use) || anyNA(dims.use) || any(dims.use < 1) || any(dims.use > ncol(x))) {
            .stop_arg("dims.use", "must be dimensions between 1 and ", ncol(x), ".")
        }
        x <- x[, dims.use, drop = FALSE]
    }
    if (missing(group.by.vars) || !is.character(group.by.vars) || length(group.by.vars) < 1L) {
        .stop_arg("group.by.vars", "must name one or more meta.data columns.")
    }
    batch <- .resolve_batch_columns(group.by.vars, object[[]], ncol(object), "group.by.vars")
    z <- calculateHarmony(x, batch, ...)
    misc <- list(objective = attr(z, "objective"), converged = attr(z, "converged"))
    z <- matrix(z, nrow(z), ncol(z), dimnames = list(rownames(x), paste0(reduction.key, seq_len(ncol(z)))))
    object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
        embeddings = z, key = reduction.key, assay = SeuratObject::DefaultAssay(source), misc = misc)
    object
}

# One or more per-cell batch variables as a list of factors, each with at least 2 levels.
.check_batch_variables <- function(batch, n_cells, arg, method) {
    vars <- if (is.data.frame(batch) || (is.list(batch) && !is.factor(batch))) as.list(batch) else list(batch)
    if (length(vars) == 0L) .stop_arg(arg, "is required.")
    labels <- if (length(vars) == 1L) arg else sprintf("%s[[%d]]", arg, seq_along(vars))
    out <- mapply(function(v, label) {
        f <- .check_grouping(v, n_cells, label)
        if (nlevels(f) < 2L) {
            .stop_arg(label, "has a single level (\"", levels(f), "\"): ", method,
                      " needs cells from at least 2 batches.")
        }
        f
    }, vars, labels, SIMPLIFY = FALSE)
    unname(out)
}

# A numeric parameter given once or once per batch variable.
.check_per_variable <- function(value, n_vars, arg, min = -Inf, min_inclusive = TRUE) {
    if (!is.numeric(value) || !length(value) %in% c(1L, n_vars) || anyNA(value) || any(!is.finite(value))) {
        .stop_arg(arg, "must be one finite number or one per batch variable (", n_vars, "), not ",
                  .describe(value), ".")
    }
    if (any(if (min_inclusive) value < min else value <= min)) {
        .stop_arg(arg, "must be ", if (min_inclusive) ">= " else "> ", min, ".")
    }
    as.double(value)
}

# A reducedDim of `sce` by name, optionally its first `n_dimred` columns.
.get_dimred <- function(sce, dimred, n_dimred = NULL) {
    available <- SingleCellExperiment::reducedDimNames(sce)
    if (!is.character(dimred) || length(dimred) != 1L || !dimred %in% available) {
        .stop_arg("dimred", sprintf('names no reducedDim of `sce` (%s not found; available: %s); ',
                                    .describe(dimred),
                                    if (length(available)) paste0('"', available, '"', collapse = ", ") else "none"),
                  "compute one first, e.g. sce <- scater::runPCA(sce).")
    }
    x <- SingleCellExperiment::reducedDim(sce, dimred)
    if (!is.null(n_dimred)) {
        n_dimred <- .check_scalar_int(n_dimred, "n_dimred", min = 1, max = ncol(x))
        x <- x[, seq_len(n_dimred), drop = FALSE]
    }
    x
}

# Batch variable(s): column names of the cell metadata, or per-cell vectors as they are.
.resolve_batch_columns <- function(value, cell_data, n_cells, arg) {
    if (is.character(value) && length(value) >= 1L && length(value) != n_cells) {
        missing_cols <- setdiff(value, colnames(cell_data))
        if (length(missing_cols)) {
            .stop_arg(arg, sprintf("names no column of the cell metadata (%s not found).",
                                   paste0('"', missing_cols, '"', collapse = ", ")))
        }
        return(lapply(value, function(v) cell_data[[v]]))
    }
    value
}
