# fastMNN (Haghverdi et al. 2018; batchelor's fastMNN): mutual-nearest-neighbour correction in
# a multi-batch PCA. Bioconductor interface.

#' Integrate batches with fastMNN
#'
#' batchelor's `fastMNN()`: cosine normalisation of log-expression, a PCA in which every batch
#' weighs the same, then batches merged one at a time: mutual nearest neighbours (MNN pairs)
#' between the merged cells and the next batch give correction vectors, variation along the
#' average batch vector is removed from both sides, and every cell of the new batch moves by a
#' tricube-weighted average of the correction vectors of its `k` nearest MNN cells.
#'
#' @param x Log-expression values, genes x cells (`dgCMatrix` or numeric matrix), e.g.
#'   `logcounts(sce)`; or with `pc.input = TRUE` a cells x dimensions matrix (already a
#'   multi-batch PCA, batchelor's `reducedMNN()`).
#' @param batch Batch of each cell (vector or factor).
#' @param k Nearest neighbours for MNN pairs and for smoothing the correction vectors.
#' @param d Number of principal components.
#' @param ndist Bandwidth of the tricube kernel in multiples of the median neighbour distance.
#' @param cos.norm Cosine-normalise each cell before the PCA.
#' @param subset.row Genes to use (names, indices or logical); `NULL` for all.
#' @param merge.order Batches in the order to merge them (levels of `batch`, or their
#'   indices); `NULL` for the order of the levels. The first is the reference: the others are
#'   corrected towards it. The order matters: corrected cells tend to gather on the side of the
#'   reference populations that faces them, so a large, compact batch makes the better
#'   reference (on Kang IFN-beta PBMCs, iLISI 0.37 with the stimulated cells as reference, 0.08
#'   with the controls).
#' @param auto.merge Merge first the two groups of batches with the most MNN pairs, repeatedly;
#'   as in batchelor, the later group of a pair is the reference (with two batches, the second).
#' @param min.batch.skip Skip a merge whose relative batch effect is below this.
#' @param pc.input `x` is a cells x dimensions matrix: skip normalisation and PCA.
#' @param seed Random seed of the PCA.
#' @return `calculateFastMNN()`: a cells x `d` matrix of corrected coordinates with the
#'   attributes `"merge.info"` (a data.frame: the batches on each side of each merge, MNN
#'   pairs, relative batch size, skipped), `"lost.var"` (share of each batch's variance removed
#'   at each merge) and, for expression input, `"rotation"` (genes x `d`).
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' cells <- c(1:300, 1501:1800) # 300 control and 300 stimulated cells
#' counts <- SingleCellExperiment::counts(sce)[, cells]
#' logexp <- log1p(Matrix::t(Matrix::t(counts) * (1e4 / Matrix::colSums(counts))))
#' z <- calculateFastMNN(logexp, sce$batch[cells], d = 20)
#' dim(z)
#' attr(z, "merge.info")
#' @export
calculateFastMNN <- function(x, batch, k = 20, d = 50, ndist = 3, cos.norm = TRUE, subset.row = NULL,
                             merge.order = NULL, auto.merge = FALSE, min.batch.skip = 0,
                             pc.input = FALSE, seed = 0) {
    pc.input <- .check_flag(pc.input, "pc.input")
    if (pc.input) {
        x <- .check_embedding(x, "x")
        n_cells <- nrow(x)
        cell_names <- rownames(x)
    } else {
        x <- .check_log_expression(x, "x")
        if (!is.null(subset.row)) x <- .subset_rows(x, subset.row)
        n_cells <- ncol(x)
        cell_names <- colnames(x)
    }
    batch <- .check_batch_variables(batch, n_cells, "batch", "fastMNN")
    if (length(batch) != 1L) .stop_arg("batch", "must be one batch variable, not ", length(batch), ".")
    batch <- batch[[1]]
    options <- list(
        k = .check_scalar_int(k, "k", min = 1, max = n_cells),
        ndist = .check_scalar_num(ndist, "ndist", min = 0, min_inclusive = FALSE),
        cos_norm = .check_flag(cos.norm, "cos.norm"),
        d = if (pc.input) 1L else .check_scalar_int(d, "d", min = 1, max = min(nrow(x), n_cells - 1L)),
        merge_order = .check_merge_order(merge.order, batch),
        auto_merge = .check_flag(auto.merge, "auto.merge"),
        min_batch_skip = .check_scalar_num(min.batch.skip, "min.batch.skip", min = 0),
        seed = .check_scalar_int(seed, "seed", min = 0)
    )
    codes <- as.integer(batch) - 1L
    fit <- if (pc.input) {
        cw_reduced_mnn(x, nrow(x), ncol(x), codes, options)
    } else {
        cw_fastmnn(x@p, x@i, as.double(x@x), dim(x), codes, options)
    }
    z <- fit$corrected
    dimnames(z) <- list(cell_names, if (pc.input && !is.null(colnames(x))) colnames(x) else paste0("MNN_", seq_len(ncol(z))))
    lv <- levels(batch)
    steps <- fit$steps
    attr(z, "merge.info") <- data.frame(
        left = vapply(steps, function(s) paste(lv[s$left + 1L], collapse = ","), ""),
        right = vapply(steps, function(s) paste(lv[s$right + 1L], collapse = ","), ""),
        pairs = vapply(steps, function(s) s$n_pairs, 0L),
        batch.size = vapply(steps, function(s) s$batch_size, 0),
        skipped = vapply(steps, function(s) s$skipped, NA),
        stringsAsFactors = FALSE
    )
    lost <- matrix(0, length(steps), length(lv), dimnames = list(NULL, lv))
    for (i in seq_along(steps)) lost[i, steps[[i]]$lost_batches + 1L] <- steps[[i]]$lost_variance
    attr(z, "lost.var") <- lost
    if (!is.null(fit$rotation)) {
        rotation <- fit$rotation
        dimnames(rotation) <- list(rownames(x), colnames(z))
        attr(z, "rotation") <- rotation
    }
    z
}

#' @rdname calculateFastMNN
#' @param sce A `SingleCellExperiment`.
#' @param assay.type The assay of log-expression values (e.g. from `scater::logNormCounts()`).
#' @param dimred Name of a reduced dimension (a multi-batch PCA) to correct instead of the
#'   expression values; `NULL` to run the PCA here.
#' @param name Name of the `reducedDim` to store the result in.
#' @param ... Arguments passed to `calculateFastMNN()` (e.g. `subset.row`, `k`, `d`).
#' @return `runFastMNN()`: `sce` with `reducedDim(sce, name)`.
#' @export
runFastMNN <- function(sce, batch, ..., assay.type = "logcounts", dimred = NULL, name = "MNN") {
    if (!methods::is(sce, "SingleCellExperiment")) {
        .stop_arg("sce", "must be a SingleCellExperiment, not a ", class(sce)[1], ".")
    }
    batch <- .resolve_cell_vector(batch, SummarizedExperiment::colData(sce), ncol(sce), "batch")
    if (!is.null(dimred)) {
        z <- calculateFastMNN(.get_dimred(sce, dimred), batch, ..., pc.input = TRUE)
    } else {
        if (!is.character(assay.type) || length(assay.type) != 1L ||
            !assay.type %in% SummarizedExperiment::assayNames(sce)) {
            .stop_arg("assay.type", sprintf('names no assay of `sce` (%s not found); ', .describe(assay.type)),
                      "compute log-expression first, e.g. sce <- scater::logNormCounts(sce).")
        }
        x <- SummarizedExperiment::assay(sce, assay.type, withDimnames = TRUE)
        z <- calculateFastMNN(x, batch, ...)
    }
    SingleCellExperiment::reducedDim(sce, name) <- z
    sce
}

# Log-expression (genes x cells): numeric, finite, as a dgCMatrix (a dense matrix is made sparse).
.check_log_expression <- function(x, arg) {
    if (is.matrix(x) && is.numeric(x)) x <- methods::as(Matrix::Matrix(x, sparse = TRUE), "CsparseMatrix")
    if (methods::is(x, "sparseMatrix") && !methods::is(x, "dgCMatrix")) {
        x <- methods::as(methods::as(methods::as(x, "CsparseMatrix"), "generalMatrix"), "dMatrix")
    }
    if (!methods::is(x, "dgCMatrix")) {
        .stop_arg(arg, "must be a genes x cells matrix of log-expression values (dgCMatrix or numeric ",
                  "matrix), not a ", class(x)[1], ".")
    }
    if (ncol(x) < 3L || nrow(x) < 2L) .stop_arg(arg, "needs at least 3 cells and 2 genes.")
    if (anyNA(x@x) || any(!is.finite(x@x))) .stop_arg(arg, "contains NA or infinite values.")
    x
}

.subset_rows <- function(x, subset.row) {
    if (is.character(subset.row)) {
        unknown <- setdiff(subset.row, rownames(x))
        if (length(unknown)) .stop_arg("subset.row", "names genes not in `x` (e.g. ", unknown[1], ").")
    } else if (is.logical(subset.row)) {
        if (length(subset.row) != nrow(x) || anyNA(subset.row)) {
            .stop_arg("subset.row", "as a logical vector needs one TRUE/FALSE per gene (", nrow(x), ").")
        }
    } else if (!is.numeric(subset.row) || anyNA(subset.row) || any(subset.row < 1 | subset.row > nrow(x))) {
        .stop_arg("subset.row", "must be gene names, indices in 1..", nrow(x), " or a logical vector.")
    }
    x <- x[subset.row, , drop = FALSE]
    if (nrow(x) < 2L) .stop_arg("subset.row", "keeps fewer than 2 genes.")
    x
}

# merge.order as 0-based codes of `batch`'s levels (empty for the order of the levels).
.check_merge_order <- function(merge.order, batch) {
    if (is.null(merge.order)) return(numeric(0))
    lv <- levels(batch)
    idx <- if (is.character(merge.order) || is.factor(merge.order)) {
        match(as.character(merge.order), lv)
    } else if (is.numeric(merge.order)) {
        merge.order
    } else {
        NA
    }
    if (anyNA(idx) || length(idx) != length(lv) || !setequal(idx, seq_along(lv))) {
        .stop_arg("merge.order", "must list every batch exactly once (",
                  paste0('"', lv, '"', collapse = ", "), "), as names or indices.")
    }
    as.double(idx - 1L)
}
