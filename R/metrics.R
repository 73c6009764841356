# Integration metrics: the scIB suite (as scib-metrics 0.5.10 computes it) and the seed papers'
# metrics, on one or more embeddings, and a results table plot.

#' Score integrated embeddings with the scIB metrics
#'
#' Computes the single-cell integration benchmark (scIB) metrics with the definitions and
#' defaults of scib-metrics 0.5.10 (the reference implementation behind scvi-tools'
#' `Benchmarker`), the aggregate scores (batch correction, bio conservation and
#' total = 0.4 batch + 0.6 bio), and optionally the metrics of the seed papers. One
#' nearest-neighbour graph per embedding is computed once and shared by every graph-based
#' metric.
#'
#' Metric sets (combine them with metric names, e.g. `c("scib", "UCA")`):
#' * `"scib"`: the Benchmarker's defaults: Isolated labels, KMeans NMI, KMeans ARI,
#'   Silhouette label, cLISI (bio conservation); BRAS, iLISI, KBET, Graph connectivity,
#'   PCR comparison (batch correction).
#' * `"scib_full"`: `"scib"` plus Leiden NMI and ARI (best NMI over resolutions 0.2 to 2) and
#'   the classic scIB batch silhouette (`"Silhouette batch"`, reported, not aggregated).
#' * `"seed"`: Batch entropy (50 neighbours), kNN MI (Ross' estimator, k = 3), kBET rejection
#'   and kNN silhouette (k = `local_k`, level `local_alpha`; CoMP's kBET_k,alpha and s_k,c),
#'   m-kBET and Mean kNN silhouette (the same within each label, averaged), UCA (accuracy of
#'   k-means clusters after Hungarian matching), kNN purity (when `reference` is given).
#' * `"all"`: everything (kNN purity when `reference` is given).
#'
#' KMeans NMI/ARI (and UCA) are means over 10 k-means++ runs: scib-metrics runs k-means once,
#' a draw whose spread over seeds is about 0.02, which the mean estimates with less noise.
#' Where scib-metrics gives NaN (e.g. no label with cells from two batches for BRAS or kBET)
#' the value is `NA` with a warning that says why; aggregates average the available values.
#'
#' @param x An embedding (numeric matrix, cells x dimensions), a named list of embeddings of the
#'   same cells, a `SingleCellExperiment` (embeddings from `reducedDims`) or a `Seurat` object
#'   (embeddings from its reductions).
#' @param batch Batch of each cell, or the name of a `colData`/`meta.data` column.
#' @param label Cell type of each cell, or the name of a `colData`/`meta.data` column.
#' @param unintegrated The embedding before integration (for PCR comparison): a matrix, or for
#'   a `SingleCellExperiment`/`Seurat` object a reducedDim/reduction name. `NULL` leaves PCR
#'   comparison `NA` (with a warning).
#' @param metrics Metric set names and/or metric names (see Details).
#' @param dimred For a `SingleCellExperiment`, the `reducedDim` names to score; for a `Seurat`
#'   object, the reduction names. `NULL`: all of them.
#' @param reference For kNN purity: a list with one embedding per batch of that batch's cells
#'   alone (rows in the order the cells appear in `x`), named by batch level.
#' @param local_k,local_alpha Neighbourhood size and test level of kBET rejection and the kNN
#'   silhouette (CoMP's defaults 100 and 0.01).
#' @param local_condition A batch level: the kNN silhouette averages over its cells only
#'   (CoMP's s_k,c); `NULL` averages over all cells.
#' @param purity_k Neighbourhood size of kNN purity.
#' @param seed Random seed (k-means, batch entropy's pools, kBET's eigensolver start).
#' @param verbose Report each embedding's time.
#' @return A `data.frame`, one row per embedding (row names and column `embedding`), one column
#'   per metric, then `Batch correction`, `Bio conservation` and `Total`. Attribute
#'   `"metric_type"` names each column's type; `"timings"` holds seconds per step and
#'   embedding. [plotMetrics()] draws it.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' logc <- log1p(t(as.matrix(SingleCellExperiment::counts(sce)[1:300, ])))
#' pca <- stats::prcomp(logc, rank. = 10)$x
#' res <- integrationMetrics(list(PCA = pca, PCA5 = pca[, 1:5]), sce$batch, sce$cell_type,
#'                           unintegrated = pca)
#' res[, c("iLISI", "cLISI", "Total")]
#' @export
integrationMetrics <- function(x, batch, label, unintegrated = NULL, metrics = "scib",
                               dimred = NULL, reference = NULL, local_k = 100,
                               local_alpha = 0.01, local_condition = NULL, purity_k = 30,
                               seed = 0, verbose = FALSE) {
    input <- .metrics_embeddings(x, dimred, batch, label, unintegrated)
    embeddings <- input$embeddings
    n_cells <- nrow(embeddings[[1]])
    batch <- .check_grouping(input$batch, n_cells, "batch", min_levels = 2L)
    label <- .check_grouping(input$label, n_cells, "label", min_levels = 2L)
    singletons <- names(which(table(label) == 1L))
    if (length(singletons)) {
        warning(sprintf("`label` has %d level(s) with a single cell (%s): their silhouette counts as 0 and kBET skips them.",
                        length(singletons), paste(utils::head(singletons, 3), collapse = ", ")),
                call. = FALSE)
    }
    selected <- .metric_selection(metrics, has_reference = !is.null(reference))
    unintegrated <- input$unintegrated
    if (!is.null(unintegrated)) unintegrated <- .check_embedding(unintegrated, "unintegrated", n_cells)
    if (is.null(unintegrated) && "PCR comparison" %in% selected) {
        warning("PCR comparison needs `unintegrated` (the embedding before integration); it is NA.",
                call. = FALSE)
    }
    references <- NULL
    if ("kNN purity" %in% selected) references <- .metric_references(reference, batch)
    condition <- -1 # none
    if (!is.null(local_condition)) {
        if (!is.character(local_condition) && !is.factor(local_condition) || length(local_condition) != 1L ||
            !as.character(local_condition) %in% levels(batch)) {
            .stop_arg("local_condition", "must be one batch level (", paste(levels(batch), collapse = ", "), ").")
        }
        condition <- match(as.character(local_condition), levels(batch)) - 1
    }
    options <- list(
        seed = .check_scalar_int(seed, "seed", min = 0),
        local_k = .check_scalar_int(local_k, "local_k", min = 1),
        local_alpha = .check_scalar_num(local_alpha, "local_alpha", min = 0, max = 1, min_inclusive = FALSE),
        local_condition = condition,
        purity_k = .check_scalar_int(purity_k, "purity_k", min = 1)
    )
    verbose <- .check_flag(verbose, "verbose")
    batch_codes <- as.integer(batch) - 1L
    label_codes <- as.integer(label) - 1L
    rows <- vector("list", length(embeddings))
    timings <- vector("list", length(embeddings))
    reasons <- character(0)
    for (e in seq_along(embeddings)) {
        name <- names(embeddings)[e]
        emb <- .check_embedding(embeddings[[e]], sprintf("x[[\"%s\"]]", name), n_cells)
        started <- proc.time()[["elapsed"]]
        r <- cw_metrics_score(emb, batch_codes, label_codes, unintegrated, references, selected, options)
        if (verbose) message(sprintf("%s: %.1f s", name, proc.time()[["elapsed"]] - started))
        values <- r$values
        values[is.nan(values)] <- NA_real_
        rows[[e]] <- c(values, `Batch correction` = r$batch_correction,
                       `Bio conservation` = r$bio_conservation, Total = r$total)
        timings[[e]] <- r$timings
        reasons <- c(reasons, sprintf("%s: %s", name, r$warnings))
    }
    reasons <- reasons[!grepl("PCR comparison: `unintegrated`: is needed", reasons, fixed = TRUE)]
    for (w in unique(sub("^[^:]*: ", "", reasons))) warning(w, call. = FALSE)
    values <- do.call(rbind, rows)
    values[is.nan(values)] <- NA_real_
    out <- data.frame(embedding = names(embeddings), values, check.names = FALSE,
                      row.names = names(embeddings))
    catalogue <- .metric_catalogue()
    type <- c("Embedding", catalogue$type[match(selected, catalogue$name)],
              rep("Aggregate score", 3))
    names(type) <- colnames(out)
    attr(out, "metric_type") <- type
    attr(out, "timings") <- stats::setNames(timings, names(embeddings))
    out
}

# The catalogue of metrics known to the core (name, type, set membership).
.metric_catalogue <- function() {
    as.data.frame(cw_metric_catalogue(), stringsAsFactors = FALSE)
}

# Metric names from set names and metric names, in catalogue order.
# kNN purity joins a set only when `reference` is given (naming it alone asks for it).
.metric_selection <- function(metrics, has_reference = FALSE) {
    if (!is.character(metrics) || !length(metrics) || anyNA(metrics)) {
        .stop_arg("metrics", "must be metric set names (\"scib\", \"scib_full\", \"seed\", \"all\") or metric names.")
    }
    cat <- .metric_catalogue()
    picked <- character(0)
    for (m in metrics) {
        picked <- c(picked, switch(m,
            scib = cat$name[cat$scib],
            scib_full = c(cat$name[cat$scib], "Leiden NMI", "Leiden ARI", "Silhouette batch"),
            seed = setdiff(cat$name[cat$seed], if (!has_reference) "kNN purity"),
            all = setdiff(cat$name, if (!has_reference) "kNN purity"),
            if (m %in% cat$name) m else
                .stop_arg("metrics", sprintf('names no metric or set: "%s". Sets: scib, scib_full, seed, all; metrics: %s.',
                                             m, paste(cat$name, collapse = ", ")))))
    }
    cat$name[cat$name %in% picked]
}

# Per-batch reference embeddings for kNN purity, in batch level order.
.metric_references <- function(reference, batch) {
    if (is.null(reference)) {
        .stop_arg("reference", "is needed for kNN purity: a list of one embedding per batch, named by batch level.")
    }
    if (!is.list(reference) || is.null(names(reference)) || !setequal(names(reference), levels(batch))) {
        .stop_arg("reference", "must be a list named by the batch levels (", paste(levels(batch), collapse = ", "), ").")
    }
    lapply(levels(batch), function(b) {
        .check_embedding(reference[[b]], sprintf("reference[[\"%s\"]]", b), sum(batch == b))
    })
}

# Embeddings, batch, label and the unintegrated embedding from any supported input.
.metrics_embeddings <- function(x, dimred, batch, label, unintegrated) {
    if (methods::is(x, "SingleCellExperiment")) {
        available <- SingleCellExperiment::reducedDimNames(x)
        dimred <- .metric_dimred(dimred, available, "reducedDim")
        embeddings <- lapply(dimred, function(d) SingleCellExperiment::reducedDim(x, d))
        names(embeddings) <- dimred
        cell_data <- SummarizedExperiment::colData(x)
        if (is.character(unintegrated) && length(unintegrated) == 1L) {
            if (!unintegrated %in% available) {
                .stop_arg("unintegrated", sprintf('names no reducedDim of `x` ("%s" not found).', unintegrated))
            }
            unintegrated <- SingleCellExperiment::reducedDim(x, unintegrated)
        }
        n_cells <- ncol(x)
    } else if (methods::is(x, "Seurat")) {
        .require_seurat()
        available <- SeuratObject::Reductions(x)
        dimred <- .metric_dimred(dimred, available, "reduction")
        embeddings <- lapply(dimred, function(d) SeuratObject::Embeddings(x, reduction = d))
        names(embeddings) <- dimred
        cell_data <- x[[]]
        if (is.character(unintegrated) && length(unintegrated) == 1L) {
            if (!unintegrated %in% available) {
                .stop_arg("unintegrated", sprintf('names no reduction of `x` ("%s" not found).', unintegrated))
            }
            unintegrated <- SeuratObject::Embeddings(x, reduction = unintegrated)
        }
        n_cells <- ncol(x)
    } else {
        if (!is.null(dimred)) .stop_arg("dimred", "is only for SingleCellExperiment or Seurat input.")
        if (is.matrix(x) || is.data.frame(x)) {
            embeddings <- list(embedding = x)
        } else if (is.list(x) && length(x)) {
            if (is.null(names(x)) || any(names(x) == "") || anyDuplicated(names(x))) {
                .stop_arg("x", "must be a list with unique names (one per embedding).")
            }
            embeddings <- x
        } else {
            .stop_arg("x", "must be a matrix, a named list of matrices, a SingleCellExperiment or a Seurat object, not a ",
                      class(x)[1], ".")
        }
        first <- embeddings[[1]]
        n_cells <- if (is.matrix(first) || is.data.frame(first)) nrow(first) else length(batch)
        cell_data <- NULL
        for (nm in names(embeddings)) {
            e <- embeddings[[nm]]
            if ((is.matrix(e) || is.data.frame(e)) && nrow(e) != n_cells) {
                .stop_arg("x", sprintf('embeddings differ in cells: "%s" has %d rows, "%s" %d.',
                                       names(embeddings)[1], n_cells, nm, nrow(e)))
            }
        }
    }
    if (!is.null(cell_data)) {
        batch <- .resolve_cell_vector(batch, cell_data, n_cells, "batch")
        label <- .resolve_cell_vector(label, cell_data, n_cells, "label")
    }
    list(embeddings = embeddings, batch = batch, label = label, unintegrated = unintegrated)
}

.metric_dimred <- function(dimred, available, what) {
    if (is.null(dimred)) dimred <- available
    if (!length(dimred)) .stop_arg("x", sprintf("has no %s to score.", what))
    if (!is.character(dimred) || anyNA(dimred)) .stop_arg("dimred", "must be ", what, " names.")
    missing <- setdiff(dimred, available)
    if (length(missing)) {
        .stop_arg("dimred", sprintf('names no %s of `x`: %s (available: %s).', what,
                                    paste(missing, collapse = ", "), paste(available, collapse = ", ")))
    }
    dimred
}

#' Plot integration metrics as a results table
#'
#' Draws the output of [integrationMetrics()] like scib-metrics' results table: one row per
#' embedding (best total score on top), one column per metric grouped by type, each cell
#' coloured by the metric's value scaled within its column and labelled with the value.
#'
#' @param results A `data.frame` from [integrationMetrics()].
#' @param digits Digits shown in the cells.
#' @return A `ggplot` object.
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' logc <- log1p(t(as.matrix(SingleCellExperiment::counts(sce)[1:300, ])))
#' pca <- stats::prcomp(logc, rank. = 10)$x
#' res <- integrationMetrics(list(PCA = pca, PCA5 = pca[, 1:5]), sce$batch, sce$cell_type,
#'                           unintegrated = pca)
#' plotMetrics(res)
#' @export
plotMetrics <- function(results, digits = 2) {
    type <- attr(results, "metric_type")
    if (!is.data.frame(results) || is.null(type) || !"embedding" %in% colnames(results)) {
        .stop_arg("results", "must be the data.frame that integrationMetrics() returns.")
    }
    digits <- .check_scalar_int(digits, "digits", min = 0, max = 6)
    metrics <- setdiff(colnames(results), "embedding")
    order <- if ("Total" %in% metrics) order(results$Total, decreasing = TRUE, na.last = TRUE) else seq_len(nrow(results))
    embedding_levels <- rev(results$embedding[order])
    long <- do.call(rbind, lapply(metrics, function(m) {
        v <- as.numeric(results[[m]])
        range <- suppressWarnings(range(v, na.rm = TRUE))
        scaled <- if (all(is.finite(range)) && diff(range) > 0) (v - range[1]) / diff(range) else rep(0.5, length(v))
        data.frame(embedding = results$embedding, metric = m, type = type[[m]], value = v,
                   scaled = scaled, stringsAsFactors = FALSE)
    }))
    type_levels <- intersect(c("Bio conservation", "Batch correction", "Other", "Aggregate score"), unique(long$type))
    long$type <- factor(long$type, levels = type_levels)
    long$metric <- factor(long$metric, levels = metrics)
    long$embedding <- factor(long$embedding, levels = embedding_levels)
    long$text <- ifelse(is.na(long$value), "NA", formatC(long$value, format = "f", digits = digits))
    ggplot2::ggplot(long, ggplot2::aes(x = .data$metric, y = .data$embedding, fill = .data$scaled)) +
        ggplot2::geom_tile(colour = "white", linewidth = 0.6) +
        ggplot2::geom_text(ggplot2::aes(label = .data$text), size = 3) +
        ggplot2::facet_grid(. ~ type, scales = "free_x", space = "free_x") +
        ggplot2::scale_fill_gradient2(low = "#762a83", mid = "#f7f7f7", high = "#1b7837", midpoint = 0.5,
                                      limits = c(0, 1), na.value = "grey85", name = "scaled\nwithin\ncolumn") +
        ggplot2::labs(x = NULL, y = NULL) +
        ggplot2::theme_minimal(base_size = 10) +
        ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1),
                       panel.grid = ggplot2::element_blank(),
                       strip.text = ggplot2::element_text(face = "bold"))
}

#' Weighted accuracy of predicted labels
#'
#' The mean over true classes of the share of each class's cells predicted correctly (the
#' accuracy scANVI's paper reports; rare classes weigh as much as common ones).
#'
#' @param predicted Predicted label of each cell.
#' @param truth True label of each cell.
#' @return A number between 0 and 1.
#' @examples
#' weightedAccuracy(c("T", "T", "B", "B", "NK"), c("T", "B", "B", "B", "NK"))
#' @export
weightedAccuracy <- function(predicted, truth) {
    truth <- .check_grouping(truth, length(truth), "truth")
    if (length(predicted) != length(truth)) {
        .stop_arg("predicted", "has length ", length(predicted), " but `truth` has ", length(truth), ".")
    }
    if (anyNA(predicted)) .stop_arg("predicted", "contains NA.")
    levels_all <- union(levels(truth), unique(as.character(predicted)))
    cw_weighted_accuracy(match(as.character(predicted), levels_all) - 1L,
                         match(as.character(truth), levels_all) - 1L)
}
