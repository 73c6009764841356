# scANVI: semi-supervised scVI that transfers cell-type labels (Xu et al. 2021), with
# scvi-tools' defaults; seed labels from marker genes; the kNN and cluster-vote baselines.

#' Transfer cell-type labels with scANVI
#'
#' Trains scANVI, the semi-supervised extension of scVI (scvi-tools' model and defaults), on raw
#' counts where some cells carry a label and the others are unlabelled. It returns a latent
#' representation that respects both batch and labels, each cell's predicted label, and the
#' full posterior q(label | cell). Start from a trained scVI (`scvi =`, as scvi-tools'
#' `SCANVI.from_scvi_model`: the scVI weights are the starting point and training is short) or
#' train from scratch.
#'
#' With `hierarchy`, labels form two levels (seed 003, Supplementary Note 4): q(label | z) is the
#' probability of the label among its siblings times that of its parent, and predictions come at
#' both levels.
#'
#' @param x A genes x cells matrix of raw counts (`dgCMatrix` or numeric matrix).
#' @param batch Batch of each cell, or `NULL` for one batch.
#' @param labels Label of each cell; cells whose label is `NA` or equals `unlabeled` are
#'   unlabelled and get a predicted label.
#' @param unlabeled The value of `labels` that marks an unlabelled cell (besides `NA`).
#' @param scvi A model from [calculateSCVI()] to start from (its genes, batches and network);
#'   `NULL` trains from scratch.
#' @param hierarchy A two-column table (data.frame or matrix): parent label, child label, one
#'   row per child. `labels` are children; every child label is a class even when no cell has it.
#' @param linear_classifier A linear classifier q(label | z) instead of one with hidden layers.
#' @param classification_ratio Weight of the labelled cells' classification loss.
#' @param n_latent,n_hidden,n_layers,dropout_rate,gene_likelihood,use_observed_lib_size,encode_covariates,deeply_inject_covariates
#'   The network, as in [calculateSCVI()]; with `scvi` they come from that model.
#' @param max_epochs Training epochs; `NULL`: scvi-tools' heuristic (from a trained scVI,
#'   `min(10, max(2, round(h / 3)))` where h is scVI's heuristic).
#' @inheritParams calculateSCVI
#' @return `calculateSCANVI()`: a cells x `n_latent` matrix with attributes `"model"` (class
#'   `cellweave_scanvi`, for [predict()], [latent()] and `saveRDS()`), `"predictions"` (a
#'   data.frame: `label`, its `probability`; with a hierarchy also `parent` and
#'   `parent_probability`) and `"probabilities"` (cells x labels).
#' @examples
#' sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
#' labels <- as.character(sce$cell_type)
#' labels[seq(1, ncol(sce), by = 3)] <- NA
#' z <- calculateSCANVI(SingleCellExperiment::counts(sce), sce$batch, labels,
#'                      max_epochs = 5, verbose = FALSE)
#' head(attr(z, "predictions"))
#' @export
calculateSCANVI <- function(x, batch = NULL, labels, unlabeled = NA, scvi = NULL, hierarchy = NULL,
                            linear_classifier = FALSE, classification_ratio = 50,
                            n_latent = 10, n_hidden = 128, n_layers = 1, dropout_rate = 0.1,
                            gene_likelihood = "zinb", use_observed_lib_size = TRUE,
                            encode_covariates = FALSE, deeply_inject_covariates = TRUE,
                            max_epochs = NULL, batch_size = 128, lr = 1e-3, weight_decay = 1e-6,
                            eps = 0.01, n_epochs_kl_warmup = 400, train_size = 0.9, seed = 0,
                            device = "cpu", verbose = TRUE, allow_non_integer = FALSE) {
    x <- .check_counts(x, "x", allow_non_integer = .check_flag(allow_non_integer, "allow_non_integer"))
    if (!is.null(scvi)) {
        if (!inherits(scvi, "cellweave_scvi")) {
            .stop_arg("scvi", "must be a model from calculateSCVI(), not a ", class(scvi)[1], ".")
        }
        network_args <- c("n_latent", "n_hidden", "n_layers", "dropout_rate", "gene_likelihood",
                          "use_observed_lib_size", "encode_covariates", "deeply_inject_covariates")
        here <- environment()
        given <- network_args[!vapply(network_args, function(a) eval(call("missing", as.name(a)), here), TRUE)]
        if (length(given)) {
            .stop_arg(given[1], "comes from `scvi` when a trained scVI is given: leave it unset.")
        }
        x <- .on_model_genes(scvi, x, "x")
    }
    n_cells <- ncol(x)
    if (n_cells < 3L) .stop_arg("x", "needs at least 3 cells, not ", n_cells, ".")
    if (is.null(batch)) {
        batch <- rep(if (is.null(scvi)) "batch" else scvi$batch_levels[1], n_cells)
    }
    batch <- .check_grouping(batch, n_cells, "batch")
    if (!is.null(scvi)) {
        unknown <- setdiff(levels(batch), scvi$batch_levels)
        if (length(unknown)) {
            .stop_arg("batch", "has levels `scvi` was not trained on: ", paste(unknown, collapse = ", "),
                      " (map new batches with mapQuery()).")
        }
        batch <- factor(as.character(batch), levels = scvi$batch_levels)
    }
    if (missing(labels)) .stop_arg("labels", "is required.")
    tree <- .check_hierarchy(hierarchy)
    coded <- .code_labels(labels, unlabeled, n_cells, tree)

    if (is.null(scvi)) {
        arch <- .scvi_architecture(nrow(x), nlevels(batch), n_latent, n_hidden, n_layers,
                                    dropout_rate, gene_likelihood, use_observed_lib_size,
                                    encode_covariates, deeply_inject_covariates)
        batch_levels <- levels(batch)
    } else {
        arch <- scvi$arch
        batch_levels <- scvi$batch_levels
    }
    arch$n_labels <- length(coded$levels)
    arch$linear_classifier <- .check_flag(linear_classifier, "linear_classifier")
    arch$hierarchy <- if (is.null(tree)) NULL else match(tree$parent_of[coded$levels], tree$groups) - 1L
    arch$n_groups <- if (is.null(tree)) 0L else length(tree$groups)
    train <- .train_options(max_epochs, batch_size, lr, eps, weight_decay, n_epochs_kl_warmup,
                            train_size, early_stopping = FALSE, early_stopping_patience = 45, seed)
    classification_ratio <- .check_scalar_num(classification_ratio, "classification_ratio", min = 0)
    device <- .check_device(device)
    progress <- .progress_style(.check_flag(verbose, "verbose"))

    fit <- cw_scanvi_train(x@p, x@i, as.double(x@x), dim(x), as.integer(batch) - 1L, coded$codes,
                           arch, train, classification_ratio,
                           if (is.null(scvi)) NULL else scvi$arch,
                           if (is.null(scvi)) NULL else scvi$weights, device, progress)
    model <- structure(list(
        arch = arch,
        train = train,
        classification_ratio = classification_ratio,
        genes = rownames(x),
        batch_levels = batch_levels,
        labels = coded$levels,
        groups = if (is.null(tree)) NULL else tree$groups,
        n_cells = n_cells,
        n_labelled = sum(coded$codes < length(coded$levels)),
        from_scvi = !is.null(scvi),
        weights = fit$weights,
        history = as.data.frame(fit$history),
        device = fit$device,
        version = as.character(utils::packageVersion("cellweave"))
    ), class = "cellweave_scanvi")
    .scanvi_result(model, fit$latent, fit$probabilities, colnames(x))
}

# The latent matrix with the model, the predictions and the probabilities as attributes.
.scanvi_result <- function(model, latent, probabilities, cells) {
    dimnames(latent) <- list(cells, paste0("scANVI_", seq_len(ncol(latent))))
    dimnames(probabilities) <- list(cells, model$labels)
    attr(latent, "model") <- model
    attr(latent, "predictions") <- .scanvi_predictions(model, probabilities)
    attr(latent, "probabilities") <- probabilities
    latent
}

.scanvi_predictions <- function(model, probabilities) {
    best <- max.col(probabilities, ties.method = "first")
    out <- data.frame(
        label = factor(model$labels[best], levels = model$labels),
        probability = probabilities[cbind(seq_len(nrow(probabilities)), best)],
        row.names = rownames(probabilities)
    )
    if (!is.null(model$groups)) {
        groups <- .group_probabilities(model, probabilities)
        g <- max.col(groups, ties.method = "first")
        out$parent <- factor(model$groups[g], levels = model$groups)
        out$parent_probability <- groups[cbind(seq_len(nrow(groups)), g)]
    }
    out
}

# Cells x parents: each parent's probability is the sum over its children.
.group_probabilities <- function(model, probabilities) {
    parent <- factor(model$groups[model$arch$hierarchy + 1L], levels = model$groups)
    indicator <- stats::model.matrix(~ parent - 1)
    out <- probabilities %*% indicator
    dimnames(out) <- list(rownames(probabilities), model$groups)
    out
}

# A hierarchy table as the parent of each child label; NULL stays NULL.
.check_hierarchy <- function(hierarchy) {
    if (is.null(hierarchy)) return(NULL)
    if (!(is.data.frame(hierarchy) || is.matrix(hierarchy)) || ncol(hierarchy) != 2L) {
        .stop_arg("hierarchy", "must be a two-column table (parent, child), not ",
                  if (is.null(dim(hierarchy))) class(hierarchy)[1] else paste(ncol(hierarchy), "columns"), ".")
    }
    parent <- as.character(hierarchy[, 1])
    child <- as.character(hierarchy[, 2])
    if (anyNA(parent) || anyNA(child) || any(parent == "") || any(child == "")) {
        .stop_arg("hierarchy", "contains NA or empty labels.")
    }
    if (anyDuplicated(child)) {
        .stop_arg("hierarchy", "gives label '", child[anyDuplicated(child)],
                  "' more than once: each child label has one parent.")
    }
    if (length(child) < 2L) .stop_arg("hierarchy", "needs at least 2 child labels.")
    list(parent_of = stats::setNames(parent, child), children = child,
         groups = unique(parent))
}

# Label codes for the core (0-based; `length(levels)` = unlabelled) and the label levels.
.code_labels <- function(labels, unlabeled, n_cells, tree) {
    if (is.data.frame(labels)) .stop_arg("labels", "must be a vector, not a data.frame.")
    if (length(labels) != n_cells) {
        .stop_arg("labels", "has length ", length(labels), " but there are ", n_cells, " cells.")
    }
    if (length(unlabeled) != 1L) .stop_arg("unlabeled", "must be a single value.")
    values <- as.character(labels)
    missing_label <- is.na(values)
    if (!is.na(unlabeled)) missing_label <- missing_label | values == as.character(unlabeled)
    if (all(missing_label)) {
        .stop_arg("labels", "marks every cell unlabelled: give the label of at least some cells.")
    }
    given <- values[!missing_label]
    if (is.null(tree)) {
        levels <- if (is.factor(labels)) intersect(levels(labels), given) else sort(unique(given))
        if (length(levels) < 2L) {
            .stop_arg("labels", "has ", length(levels), " label among the labelled cells; at least 2 are needed.")
        }
    } else {
        absent <- setdiff(unique(given), tree$children)
        if (length(absent)) {
            .stop_arg("hierarchy", "lacks label(s) given in `labels`: ",
                      paste(utils::head(absent, 5), collapse = ", "), ".")
        }
        levels <- tree$children
    }
    codes <- match(values, levels) - 1L
    codes[missing_label] <- length(levels)
    list(codes = as.integer(codes), levels = levels)
}

#' @rdname calculateSCANVI
#' @param sce A `SingleCellExperiment`.
#' @param assay.type The assay holding raw counts.
#' @param subset.row Genes to use (names, indices or logical); `NULL` for all (or, with
#'   `scvi`, that model's genes).
#' @param name Name of the `reducedDim` to store; the predictions go into `colData` as
#'   `<name>_label` and `<name>_probability` (and `<name>_parent`, `<name>_parent_probability`
#'   with a hierarchy), the model into `metadata(sce)[[name]]`.
#' @param ... Arguments passed to `calculateSCANVI()`.
#' @return `runSCANVI()`: `sce` with the embedding, the predictions and the model.
#' @export
runSCANVI <- function(sce, batch = NULL, labels, assay.type = "counts", subset.row = NULL, ...,
                      name = "SCANVI") {
    x <- .sce_counts(sce, assay.type, subset.row)
    cell_data <- SummarizedExperiment::colData(sce)
    batch <- .resolve_cell_vector(batch, cell_data, ncol(sce), "batch")
    if (missing(labels)) .stop_arg("labels", "is required.")
    labels <- .resolve_cell_vector(labels, cell_data, ncol(sce), "labels")
    z <- calculateSCANVI(x, batch, labels, ...)
    model <- attr(z, "model")
    predictions <- attr(z, "predictions")
    attributes(z)[c("model", "predictions", "probabilities")] <- NULL
    SingleCellExperiment::reducedDim(sce, name) <- z
    for (column in names(predictions)) {
        SummarizedExperiment::colData(sce)[[paste0(name, "_", column)]] <- predictions[[column]]
    }
    S4Vectors::metadata(sce)[[name]] <- model
    sce
}

#' @rdname calculateSCANVI
#' @param object A Seurat object.
#' @param group.by.vars Name of the meta.data column with the batch.
#' @param assay Assay to use (default: the active assay).
#' @param features Genes to use; `NULL`: the variable features when set, else all.
#' @param reduction.name,reduction.key Name and key of the stored `DimReduc`; the predictions go
#'   into meta.data as `<reduction.name>_label` and `<reduction.name>_probability`.
#' @return `RunSCANVI()`: `object` with a `DimReduc` (the model in its `misc` slot) and the
#'   predictions in its meta.data.
#' @export
RunSCANVI <- function(object, group.by.vars = NULL, labels, assay = NULL, features = NULL, ...,
                      reduction.name = "scanvi", reduction.key = "scANVI_") {
    assay <- .seurat_assay(object, assay)
    x <- .seurat_counts(object, assay, features)
    batch <- NULL
    if (!is.null(group.by.vars)) {
        batch <- .resolve_cell_vector(group.by.vars, object[[]], ncol(object), "group.by.vars")
    }
    if (missing(labels)) .stop_arg("labels", "is required.")
    labels <- .resolve_cell_vector(labels, object[[]], ncol(object), "labels")
    z <- calculateSCANVI(x, batch, labels, ...)
    model <- attr(z, "model")
    predictions <- attr(z, "predictions")
    attributes(z)[c("model", "predictions", "probabilities")] <- NULL
    colnames(z) <- paste0(reduction.key, seq_len(ncol(z)))
    object[[reduction.name]] <- SeuratObject::CreateDimReducObject(
        embeddings = z, key = reduction.key, assay = assay, misc = list(model = model))
    for (column in names(predictions)) {
        object[[paste0(reduction.name, "_", column)]] <- predictions[[column]]
    }
    object
}

#' Predict labels of cells with a fitted scANVI model
#'
#' @param object A model from [calculateSCANVI()] (also `metadata(sce)$SCANVI`).
#' @param newdata A genes x cells count matrix with the model's genes (matched by name), or a
#'   `SingleCellExperiment` (its `"counts"` assay).
#' @param batch Batch of each cell (levels among the model's), or a column of
#'   `colData(newdata)`; `NULL` when the model has a single batch.
#' @param type `"label"`: the most probable label of each cell (a factor); `"prob"`: the
#'   posterior probabilities (cells x labels).
#' @param level With a hierarchy, `"parent"` gives the parent level (probabilities summed over
#'   each parent's children).
#' @param ... Unused.
#' @return A factor (`type = "label"`) or a cells x labels matrix (`type = "prob"`).
#' @export
predict.cellweave_scanvi <- function(object, newdata, batch = NULL, type = c("label", "prob"),
                                     level = c("label", "parent"), ...) {
    type <- match.arg(type)
    level <- match.arg(level)
    if (level == "parent" && is.null(object$groups)) {
        .stop_arg("level", '"parent" needs a model trained with a hierarchy.')
    }
    out <- .scanvi_apply(object, newdata, batch)
    probabilities <- out$probabilities
    levels <- object$labels
    if (level == "parent") {
        probabilities <- .group_probabilities(object, probabilities)
        levels <- object$groups
    }
    if (type == "prob") return(probabilities)
    stats::setNames(factor(levels[max.col(probabilities, ties.method = "first")], levels = levels),
                    rownames(probabilities))
}

#' @rdname latent
#' @export
latent.cellweave_scanvi <- function(model, newdata, batch = NULL, ...) {
    .scanvi_apply(model, newdata, batch)$latent
}

.scanvi_apply <- function(model, newdata, batch) {
    input <- .scvi_newdata(model, newdata, batch)
    out <- cw_scanvi_predict(model$arch, model$weights, model$device, input$x@p, input$x@i,
                             as.double(input$x@x), dim(input$x), input$codes)
    dimnames(out$latent) <- list(colnames(input$x), paste0("scANVI_", seq_len(ncol(out$latent))))
    dimnames(out$probabilities) <- list(colnames(input$x), model$labels)
    out
}

#' @export
print.cellweave_scanvi <- function(x, ...) {
    a <- x$arch
    h <- x$history
    cat("scANVI model (cellweave ", x$version, ")\n", sep = "")
    cat(sprintf("  data:      %d genes x %d cells (%d labelled), %d batch%s (%s)\n", a$n_genes,
                x$n_cells, x$n_labelled, a$n_batch, if (a$n_batch == 1) "" else "es",
                paste(utils::head(x$batch_levels, 6), collapse = ", ")))
    cat(sprintf("  labels:    %d (%s%s)\n", length(x$labels),
                paste(utils::head(x$labels, 6), collapse = ", "),
                if (length(x$labels) > 6) ", ..." else ""))
    if (!is.null(x$groups)) {
        cat(sprintf("  hierarchy: %d parents (%s%s)\n", length(x$groups),
                    paste(utils::head(x$groups, 6), collapse = ", "),
                    if (length(x$groups) > 6) ", ..." else ""))
    }
    cat(sprintf("  network:   latent %d, %d hidden layer%s of %d, %s likelihood, %s classifier\n",
                a$n_latent, a$n_layers, if (a$n_layers == 1) "" else "s", a$n_hidden,
                toupper(a$gene_likelihood), if (a$linear_classifier) "linear" else "hidden-layer"))
    if (nrow(h)) {
        last <- h[nrow(h), ]
        cat(sprintf("  training:  %d epochs%s on %s (%.2f s/epoch), final loss %.2f\n", nrow(h),
                    if (isTRUE(x$from_scvi)) " from scVI" else "", x$device, mean(h$seconds),
                    last$train_loss))
    }
    invisible(x)
}

#' Seed labels from marker genes
#'
#' Labels a few cells confidently from marker genes, the "seed" labels scANVI then propagates
#' (seed 003): each cell's expression is divided by its total count, transformed as
#' `log(1 + 1e4 x)` and z-scored per gene; a label's signature score is the mean over its
#' markers of the z-scores, negative markers counted with a minus sign. The `n` top-scoring
#' cells of each label are its seeds; a cell among the top of two labels stays unlabelled.
#'
#' @param x A `SingleCellExperiment` or a genes x cells count matrix (all genes: totals are
#'   taken over every gene, as the seed does).
#' @param markers A named list (label -> marker genes), or a data.frame with columns `label`,
#'   `gene` and optionally `sign` (`1`/`-1` or `"+"`/`"-"`) for negative markers.
#' @param n Seed cells per label.
#' @param assay.type With a `SingleCellExperiment`, the assay holding raw counts.
#' @return A character vector, one value per cell: its seed label, or `NA`. Its attribute
#'   `"scores"` holds the cells x labels signature scores.
#' @export
seedLabels <- function(x, markers, n = 50, assay.type = "counts") {
    if (methods::is(x, "SingleCellExperiment")) {
        if (!assay.type %in% SummarizedExperiment::assayNames(x)) {
            .stop_arg("assay.type", sprintf('names no assay of `x` ("%s" not found).', assay.type))
        }
        x <- SummarizedExperiment::assay(x, assay.type, withDimnames = TRUE)
    }
    x <- .check_counts(x, "x", allow_non_integer = TRUE)
    if (is.null(rownames(x))) .stop_arg("x", "needs gene names (rownames) to find the markers.")
    n <- .check_scalar_int(n, "n", min = 1)
    table <- .marker_table(markers)
    absent <- setdiff(unique(table$gene), rownames(x))
    if (length(absent)) {
        .stop_arg("markers", "names genes not in the data: ",
                  paste(utils::head(absent, 5), collapse = ", "),
                  if (length(absent) > 5) sprintf(" and %d more", length(absent) - 5) else "", ".")
    }
    genes <- unique(table$gene)
    totals <- Matrix::colSums(x)
    # Only the marker genes are made dense (markers x cells).
    e <- as.matrix(x[genes, , drop = FALSE])
    e <- log1p(1e4 * sweep(e, 2, totals, "/"))
    centre <- rowMeans(e)
    spread <- sqrt(rowSums((e - centre)^2) / (ncol(e) - 1))
    flat <- genes[spread == 0]
    if (length(flat)) {
        warning("`markers`: gene(s) with the same expression in every cell add nothing: ",
                paste(utils::head(flat, 5), collapse = ", "), call. = FALSE)
    }
    z <- (e - centre) / ifelse(spread > 0, spread, 1)
    labels <- unique(table$label)
    scores <- vapply(labels, function(l) {
        rows <- table[table$label == l, ]
        colMeans(z[rows$gene, , drop = FALSE] * rows$sign)
    }, numeric(ncol(x)))
    scores <- matrix(scores, ncol(x), length(labels), dimnames = list(colnames(x), labels))
    n_top <- min(n, ncol(x))
    chosen <- matrix(FALSE, ncol(x), length(labels))
    for (j in seq_along(labels)) {
        chosen[order(-scores[, j], seq_len(ncol(x)))[seq_len(n_top)], j] <- TRUE
    }
    out <- rep(NA_character_, ncol(x))
    once <- rowSums(chosen) == 1L
    out[once] <- labels[max.col(chosen[once, , drop = FALSE], ties.method = "first")]
    names(out) <- colnames(x)
    attr(out, "scores") <- scores
    out
}

# Markers as a data.frame (label, gene, sign).
.marker_table <- function(markers) {
    if (is.list(markers) && !is.data.frame(markers)) {
        if (is.null(names(markers)) || any(names(markers) == "")) {
            .stop_arg("markers", "must be a named list: label -> marker genes.")
        }
        markers <- data.frame(label = rep(names(markers), lengths(markers)),
                              gene = unlist(markers, use.names = FALSE), stringsAsFactors = FALSE)
    }
    if (!is.data.frame(markers) || !all(c("label", "gene") %in% names(markers))) {
        .stop_arg("markers", "must be a named list or a data.frame with columns label and gene.")
    }
    sign <- if ("sign" %in% names(markers)) markers$sign else rep(1, nrow(markers))
    if (is.character(sign)) sign <- ifelse(sign == "-", -1, ifelse(sign == "+", 1, NA))
    if (anyNA(sign) || !all(sign %in% c(-1, 1))) {
        .stop_arg("markers", "column sign must hold 1 / -1 or \"+\" / \"-\".")
    }
    out <- data.frame(label = as.character(markers$label), gene = as.character(markers$gene),
                      sign = as.numeric(sign), stringsAsFactors = FALSE)
    if (nrow(out) == 0L || anyNA(out$label) || anyNA(out$gene)) {
        .stop_arg("markers", "must give at least one gene per label, without NA.")
    }
    if (length(unique(out$label)) < 2L) .stop_arg("markers", "must cover at least 2 labels.")
    out
}

#' Transfer labels along an embedding (the baselines of scANVI)
#'
#' The label-transfer baselines of seed 003: each unlabelled cell takes the majority label of
#' its `k` nearest labelled cells (`method = "knn"`), or the majority label of the labelled
#' cells in its Leiden cluster (`method = "cluster"`; a kNN graph of 15 neighbours with UMAP
#' weights, as scanpy's defaults; a cluster without labelled cells takes each cell's nearest
#' labelled cell's label).
#'
#' @param embedding A cells x dimensions matrix (e.g. `reducedDim(sce, "SCVI")`).
#' @param labels Label of each cell, `NA` for those to predict.
#' @param k Neighbours in the vote.
#' @param method `"knn"` or `"cluster"`.
#' @param resolution Leiden resolution (`method = "cluster"`).
#' @param seed Leiden's random seed.
#' @return A factor of every cell's label (labelled cells keep theirs); with
#'   `method = "cluster"` its attribute `"clusters"` holds the Leiden clusters.
#' @export
transferLabels <- function(embedding, labels, k = 10, method = c("knn", "cluster"),
                           resolution = 1, seed = 0) {
    embedding <- .check_embedding(embedding, "embedding")
    method <- match.arg(method)
    if (length(labels) != nrow(embedding)) {
        .stop_arg("labels", "has length ", length(labels), " but `embedding` has ",
                  nrow(embedding), " cells.")
    }
    values <- as.character(labels)
    if (all(is.na(values))) {
        .stop_arg("labels", "marks every cell unlabelled: give the label of at least some cells.")
    }
    levels <- if (is.factor(labels)) intersect(levels(labels), values) else sort(unique(stats::na.omit(values)))
    codes <- match(values, levels) - 1L
    k <- .check_scalar_int(k, "k", min = 1)
    if (method == "knn") {
        out <- cw_knn_vote(embedding, codes, length(levels), k)
        return(stats::setNames(factor(levels[out + 1L], levels = levels), rownames(embedding)))
    }
    resolution <- .check_scalar_num(resolution, "resolution", min = 0, min_inclusive = FALSE)
    seed <- .check_scalar_int(seed, "seed", min = 0)
    out <- cw_cluster_vote(embedding, codes, length(levels), 15, resolution, seed)
    result <- stats::setNames(factor(levels[out$labels + 1L], levels = levels), rownames(embedding))
    attr(result, "clusters") <- factor(out$clusters + 1L)
    result
}
