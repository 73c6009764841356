# scANVI from R: label transfer from scVI, probabilities, save/load, hierarchy, seed labels,
# the kNN and cluster baselines, query mapping, the Bioconductor and Seurat idioms, bad input.

sce <- kang_subsample(600)
x <- SingleCellExperiment::counts(sce)
b <- sce$batch
truth <- as.character(sce$cell_type)
# Every third cell's label is hidden.
hidden <- seq_along(truth) %% 3 == 0
labels <- ifelse(hidden, NA, truth)

z_scvi <- calculateSCVI(x, b, max_epochs = 30, verbose = FALSE, seed = 1)
scvi_model <- attr(z_scvi, "model")
# 600 cells give 5 minibatches an epoch: more epochs than scvi-tools' 10 to learn the labels.
fit <- calculateSCANVI(x, b, labels, scvi = scvi_model, max_epochs = 40, verbose = FALSE, seed = 1)
model <- attr(fit, "model")
pred <- attr(fit, "predictions")
probs <- attr(fit, "probabilities")

test_that("calculateSCANVI from scVI returns latent, predictions and the posterior", {
    expect_equal(dim(fit), c(ncol(x), 10L))
    expect_identical(rownames(fit), colnames(x))
    expect_identical(colnames(fit), paste0("scANVI_", 1:10))
    expect_s3_class(model, "cellweave_scanvi")
    # The labels in the order of the factor's levels.
    expect_identical(model$labels, intersect(levels(sce$cell_type), truth))
    expect_equal(nrow(model$history), 40L)
    expect_true("train_classification" %in% names(model$history))
    expect_equal(dim(probs), c(ncol(x), length(model$labels)))
    expect_equal(unname(rowSums(probs)), rep(1, ncol(x)), tolerance = 1e-5)
    expect_identical(as.character(pred$label), model$labels[max.col(probs, "first")])
    expect_equal(pred$probability, apply(probs, 1, max), ignore_attr = TRUE)
    # The labelled cells are learnt, the hidden ones transferred.
    expect_gt(mean(as.character(pred$label)[!hidden] == truth[!hidden]), 0.93)
    expect_gt(mean(as.character(pred$label)[hidden] == truth[hidden]), 0.8)
    expect_output(print(model), "600 cells \\(400 labelled\\)")
})

test_that("a saved and reloaded model predicts the same bits; same seed, same result", {
    path <- tempfile(fileext = ".rds")
    saveRDS(model, path)
    reloaded <- readRDS(path)
    p1 <- predict(model, x, b, type = "prob")
    expect_identical(predict(reloaded, x, b, type = "prob"), p1)
    expect_equal(p1, probs, tolerance = 1e-6)
    expect_identical(unname(as.character(predict(reloaded, x, b))), as.character(pred$label))
    expect_equal(latent(reloaded, x, b), fit[, ], ignore_attr = TRUE, tolerance = 1e-6)
    # scvi-tools' epochs for a model warm-started from scVI: min(10, max(2, round(400 / 3))).
    short <- calculateSCANVI(x, b, labels, scvi = scvi_model, verbose = FALSE, seed = 1)
    expect_equal(nrow(attr(short, "model")$history), 10L)
    again <- calculateSCANVI(x, b, labels, scvi = scvi_model, verbose = FALSE, seed = 1)
    expect_identical(attr(again, "model")$weights, attr(short, "model")$weights)
})

test_that("scANVI trains from scratch and runs on SingleCellExperiment and Seurat", {
    z <- calculateSCANVI(x, b, labels, max_epochs = 3, n_latent = 6, verbose = FALSE)
    expect_equal(ncol(z), 6L)
    expect_false(attr(z, "model")$from_scvi)
    out <- runSCANVI(sce, batch = "batch", labels = labels, max_epochs = 2, verbose = FALSE)
    expect_equal(dim(SingleCellExperiment::reducedDim(out, "SCANVI")), c(ncol(x), 10L))
    expect_s3_class(out$SCANVI_label, "factor")
    expect_true(all(out$SCANVI_probability > 0 & out$SCANVI_probability <= 1))
    expect_s3_class(S4Vectors::metadata(out)$SCANVI, "cellweave_scanvi")
    skip_if_not_installed("SeuratObject")
    seurat <- SeuratObject::CreateSeuratObject(counts = x, meta.data = data.frame(
        batch = b, labels = labels, row.names = colnames(x)))
    seurat <- RunSCANVI(seurat, group.by.vars = "batch", labels = "labels", max_epochs = 2,
                        verbose = FALSE)
    expect_equal(dim(SeuratObject::Embeddings(seurat, "scanvi")), c(ncol(x), 10L))
    expect_true(all(seurat$scanvi_label %in% model$labels))
})

test_that("a two-level hierarchy gives predictions and probabilities at both levels", {
    lineage <- c("B" = "lymphoid", "CD4 T" = "lymphoid", "CD8 T" = "lymphoid", "NK" = "lymphoid",
                 "CD14 Mono" = "myeloid", "CD16 Mono" = "myeloid", "DC" = "myeloid",
                 "pDC" = "myeloid", "Mk" = "other", "Eryth" = "other", "Unknown" = "other")
    tree <- data.frame(parent = lineage, child = names(lineage))
    h <- calculateSCANVI(x, b, labels, scvi = scvi_model, hierarchy = tree, verbose = FALSE, seed = 1)
    m <- attr(h, "model")
    p <- attr(h, "predictions")
    expect_identical(m$labels, names(lineage))
    expect_identical(m$groups, c("lymphoid", "myeloid", "other"))
    expect_output(print(m), "hierarchy: 3 parents")
    child_probs <- predict(m, x, b, type = "prob")
    parent_probs <- predict(m, x, b, type = "prob", level = "parent")
    # A parent's probability is the sum of its children's.
    expect_equal(parent_probs[, "myeloid"],
                 rowSums(child_probs[, names(lineage)[lineage == "myeloid"]]), tolerance = 1e-6)
    expect_identical(as.character(p$parent), colnames(parent_probs)[max.col(parent_probs, "first")])
    expect_gt(mean(as.character(p$parent)[hidden] == lineage[truth[hidden]]), 0.85)
    expect_gt(mean(as.character(p$label)[hidden] == truth[hidden]), 0.7)
    expect_error(predict(model, x, b, level = "parent"), "level")
    # Every label must be in the hierarchy; a child has one parent.
    expect_error(calculateSCANVI(x, b, labels, scvi = scvi_model, hierarchy = tree[-1, ]),
                 "hierarchy.*B")
    expect_error(calculateSCANVI(x, b, labels, scvi = scvi_model, hierarchy = rbind(tree, tree[1, ])),
                 "hierarchy")
    expect_error(calculateSCANVI(x, b, labels, scvi = scvi_model, hierarchy = lineage), "hierarchy")
})

test_that("seedLabels picks the top-scoring cells per label from marker genes", {
    markers <- list("B" = c("MS4A1", "CD79A"), "CD14 Mono" = c("CD14", "LYZ"), "NK" = c("GNLY", "NKG7"))
    seeds <- seedLabels(sce, markers, n = 20)
    expect_length(seeds, ncol(x))
    expect_identical(names(seeds), colnames(x))
    scores <- attr(seeds, "scores")
    expect_equal(dim(scores), c(ncol(x), 3L))
    # At most 20 cells per label (cells in two top sets stay unlabelled), the 20 best scores.
    counts <- table(seeds)
    expect_true(all(counts <= 20) && all(counts >= 15))
    top_b <- order(-scores[, "B"])[1:20]
    expect_true(all(is.na(seeds[top_b]) | seeds[top_b] == "B"))
    # The seeds agree with the published labels.
    expect_gt(mean(seeds[!is.na(seeds)] == truth[!is.na(seeds)]), 0.9)
    # A signature score by hand: log(1 + 1e4 x / total), z-scored per gene, averaged.
    e <- log1p(1e4 * t(t(as.matrix(x[c("MS4A1", "CD79A"), ])) / Matrix::colSums(x)))
    zs <- (e - rowMeans(e)) / apply(e, 1, stats::sd)
    expect_equal(unname(scores[, "B"]), unname(colMeans(zs)), tolerance = 1e-10)
    # A negative marker counts with a minus sign.
    signed <- data.frame(label = c("B", "B", "NK"), gene = c("MS4A1", "LYZ", "GNLY"), sign = c("+", "-", "+"))
    s2 <- attr(seedLabels(x, signed, n = 5), "scores")
    e2 <- log1p(1e4 * t(t(as.matrix(x[c("MS4A1", "LYZ"), ])) / Matrix::colSums(x)))
    z2 <- (e2 - rowMeans(e2)) / apply(e2, 1, stats::sd)
    expect_equal(unname(s2[, "B"]), unname((z2[1, ] - z2[2, ]) / 2), tolerance = 1e-10)
    expect_error(seedLabels(sce, list(B = c("MS4A1", "NOTAGENE"), NK = "GNLY")), "markers.*NOTAGENE")
    expect_error(seedLabels(sce, list(B = "MS4A1")), "markers")
    expect_error(seedLabels(sce, c("MS4A1", "GNLY")), "markers")
})

test_that("transferLabels votes among the nearest labelled cells or within clusters", {
    knn <- transferLabels(z_scvi[, ], labels, k = 10)
    expect_s3_class(knn, "factor")
    expect_identical(as.character(knn)[!hidden], truth[!hidden])
    expect_gt(mean(as.character(knn)[hidden] == truth[hidden]), 0.7)
    # k = 1 on a toy embedding: the nearest labelled cell's label.
    toy <- matrix(c(0, 0.1, 5, 5.2, 0, 0, 0, 0), ncol = 2)
    expect_identical(as.character(transferLabels(toy, c("a", NA, "b", NA), k = 1)), c("a", "a", "b", "b"))
    cluster <- transferLabels(z_scvi[, ], labels, method = "cluster")
    expect_true(nlevels(attr(cluster, "clusters")) > 3)
    expect_identical(as.character(cluster)[!hidden], truth[!hidden])
    expect_gt(mean(as.character(cluster)[hidden] == truth[hidden]), 0.6)
    expect_error(transferLabels(z_scvi[, ], rep(NA, ncol(x))), "labels.*unlabelled")
    expect_error(transferLabels(z_scvi[, ], labels[-1]), "labels")
})

test_that("mapQuery extends a reference with the query's batches, the encoder frozen", {
    ctrl <- b == "ctrl"
    ref <- calculateSCANVI(x[, ctrl], b[ctrl], labels[ctrl], max_epochs = 15, verbose = FALSE, seed = 2)
    ref_model <- attr(ref, "model")
    mapped <- mapQuery(ref_model, x[, !ctrl], batch = b[!ctrl], max_epochs = 3, verbose = FALSE)
    qm <- attr(mapped, "model")
    expect_identical(qm$batch_levels, c("ctrl", "stim"))
    expect_identical(qm$reference_batches, "ctrl")
    expect_equal(nrow(qm$history), 3L)
    # The encoder is the reference's: the query's latent is the reference's encoding of it.
    expect_equal(mapped[, ], latent(ref_model, x[, !ctrl], rep("ctrl", sum(!ctrl))), tolerance = 1e-6)
    expect_equal(latent(qm, x[, !ctrl], b[!ctrl]), mapped[, ], tolerance = 1e-6)
    # The reference classifier labels the query.
    expect_gt(mean(as.character(attr(mapped, "predictions")$label) == truth[!ctrl]), 0.6)
    expect_identical(colnames(attr(mapped, "probabilities")), ref_model$labels)
    # scVI references map too; the query model decodes the query's own batch.
    scvi_ref <- attr(calculateSCVI(x[, ctrl], max_epochs = 3, verbose = FALSE), "model")
    z <- mapQuery(scvi_ref, x[, !ctrl], batch = rep("stim", sum(!ctrl)), max_epochs = 2, verbose = FALSE)
    expect_equal(dim(z), c(sum(!ctrl), 10L))
    e <- normalizedExpression(attr(z, "model"), x[, !ctrl], rep("stim", sum(!ctrl)))
    expect_equal(unname(colSums(e)), rep(1, sum(!ctrl)), tolerance = 1e-4)
    expect_error(mapQuery(ref_model, x[-(1:5), !ctrl], batch = b[!ctrl]), "query.*lacks 5")
    expect_error(mapQuery(ref_model, x[, !ctrl], batch = b[!ctrl], labels = rep("alien", sum(!ctrl))),
                 "labels.*alien")
    expect_error(mapQuery(list(), x, b), "model")
})

test_that("bad input gets a clear error naming the argument", {
    expect_error(calculateSCANVI(x, b, rep(NA, ncol(x))), "labels.*every cell unlabelled")
    expect_error(calculateSCANVI(x, b, rep("Unknown", ncol(x)), unlabeled = "Unknown"),
                 "labels.*every cell unlabelled")
    expect_error(calculateSCANVI(x, b, labels[-1]), "labels.*length")
    expect_error(calculateSCANVI(x, b), "labels.*required")
    expect_error(calculateSCANVI(x, b, ifelse(hidden, NA, "B")), "labels.*at least 2")
    expect_error(calculateSCANVI(x, b, labels, scvi = scvi_model, n_latent = 5), "n_latent.*scvi")
    expect_error(calculateSCANVI(x, b, labels, scvi = model), "scvi.*calculateSCVI")
    expect_error(calculateSCANVI(x[-(1:5), ], b, labels, scvi = scvi_model), "x.*lacks 5")
    expect_error(calculateSCANVI(x, ifelse(b == "ctrl", "ctrl", "other"), labels, scvi = scvi_model),
                 "batch.*other")
    expect_error(calculateSCANVI(x, b, labels, classification_ratio = -1), "classification_ratio")
    expect_error(predict(model, x[1:10, ], b), "newdata")
    # A damaged saved model is an error, not a crash.
    broken <- model
    broken$weights <- broken$weights[1:100]
    expect_error(predict(broken, x, b), "weights|damaged|format|truncated")
    broken <- model
    broken$arch$n_labels <- 3L
    expect_error(predict(broken, x, b), "architecture|classifier")
})
