# integrationMetrics(), plotMetrics(), weightedAccuracy().

kang <- local({
    requireNamespace("SingleCellExperiment", quietly = TRUE) # dim() and [ of the S4 object
    sce <- readRDS(system.file("extdata", "kang_ifnb_subsample.rds", package = "cellweave"))
    keep <- seq(1, ncol(sce), by = 3) # 1,000 cells keep the file fast
    sce <- sce[, keep]
    logc <- log1p(t(as.matrix(SingleCellExperiment::counts(sce)[1:300, ])))
    pca <- stats::prcomp(logc, rank. = 10)$x
    rownames(pca) <- colnames(sce)
    list(sce = sce, pca = pca)
})

read_fixture <- function(name) {
    path <- file.path("..", "fixtures", "metrics", name)
    utils::read.delim(gzfile(path), check.names = FALSE, row.names = 1)
}

test_that("deterministic scIB metrics agree with scib-metrics 0.5.10 on the Kang fixture", {
    skip_if_not(file.exists(file.path("..", "fixtures", "metrics", "cells.tsv.gz")))
    cells <- read_fixture("cells.tsv.gz")
    pre <- as.matrix(read_fixture("pca50.tsv.gz"))
    harmony <- as.matrix(read_fixture("harmony50.tsv.gz"))
    ref <- utils::read.csv(file.path("..", "fixtures", "metrics", "scib_metrics.csv"),
                           row.names = 1, check.names = FALSE)
    res <- integrationMetrics(list(harmony50 = harmony), cells$batch, cells$cell_type,
                              unintegrated = pre, metrics = "scib_full")
    for (m in c("Silhouette label", "BRAS", "Isolated labels", "PCR comparison")) {
        expect_equal(res["harmony50", m], as.numeric(ref["harmony50", m]), tolerance = 1e-3, label = m)
    }
    expect_equal(res["harmony50", "Silhouette batch"], as.numeric(ref["harmony50", "silhouette_batch_classic"]),
                 tolerance = 1e-3)
    for (m in c("iLISI", "cLISI", "KBET", "Graph connectivity", "KMeans NMI", "KMeans ARI",
                "Leiden NMI", "Leiden ARI", "Batch correction", "Bio conservation", "Total")) {
        expect_lt(abs(res["harmony50", m] - as.numeric(ref["harmony50", m])), 0.02, label = m)
    }
})

test_that("a matrix and a named list give one row per embedding with aggregates", {
    res <- integrationMetrics(list(PCA = kang$pca, PCA5 = kang$pca[, 1:5]), kang$sce$batch,
                              kang$sce$cell_type, unintegrated = kang$pca)
    expect_s3_class(res, "data.frame")
    expect_equal(rownames(res), c("PCA", "PCA5"))
    expect_equal(res$embedding, c("PCA", "PCA5"))
    expect_true(all(c("iLISI", "cLISI", "KBET", "BRAS", "Total") %in% colnames(res)))
    type <- attr(res, "metric_type")
    expect_equal(unname(type[c("iLISI", "cLISI", "Total")]),
                 c("Batch correction", "Bio conservation", "Aggregate score"))
    batch_cols <- names(type)[type == "Batch correction"]
    expect_equal(res$`Batch correction`, unname(rowMeans(res[, batch_cols])), tolerance = 1e-12)
    expect_equal(res$Total, 0.4 * res$`Batch correction` + 0.6 * res$`Bio conservation`, tolerance = 1e-12)
    one <- integrationMetrics(kang$pca, kang$sce$batch, kang$sce$cell_type, unintegrated = kang$pca)
    expect_equal(one$embedding, "embedding")
    expect_equal(unlist(one[1, -1]), unlist(res["PCA", -1]))
    # Same seed, same numbers; cell order does not matter beyond k-means' random starts.
    perm <- sample(nrow(kang$pca))
    shuffled <- integrationMetrics(kang$pca[perm, ], kang$sce$batch[perm], kang$sce$cell_type[perm],
                                   unintegrated = kang$pca[perm, ])
    for (m in c("Silhouette label", "BRAS", "iLISI", "cLISI", "KBET", "Graph connectivity", "Isolated labels")) {
        expect_equal(shuffled[[m]], one[[m]], tolerance = 1e-6, label = m)
    }
})

test_that("mixing and separation move the metrics the right way", {
    set.seed(1)
    n <- 400
    label <- rep(c("a", "b"), each = n / 2)
    batch <- rep(c("x", "y"), times = n / 2)
    centre <- ifelse(label == "a", 0, 20)
    mixed <- cbind(centre + rnorm(n), rnorm(n))
    separated <- cbind(centre + rnorm(n), ifelse(batch == "x", 0, 20) + rnorm(n))
    res <- integrationMetrics(list(mixed = mixed, separated = separated), batch, label,
                              metrics = c("iLISI", "cLISI", "Silhouette label", "kBET rejection", "Batch entropy"))
    expect_gt(res["mixed", "iLISI"], 0.8)
    expect_lt(res["separated", "iLISI"], 0.05)
    expect_gt(res["mixed", "Silhouette label"], 0.5)
    expect_gt(res["mixed", "cLISI"], 0.95)
    expect_lt(res["mixed", "kBET rejection"], 0.1)
    expect_gt(res["separated", "kBET rejection"], 0.9)
    expect_gt(res["mixed", "Batch entropy"], res["separated", "Batch entropy"])
})

test_that("seed metrics run, kNN purity with per-batch references", {
    b <- kang$sce$batch
    reference <- lapply(split(seq_along(b), b), function(i) kang$pca[i, ])
    res <- integrationMetrics(kang$pca, b, kang$sce$cell_type, metrics = "seed", reference = reference,
                              local_condition = "stim")
    expect_true(all(c("Batch entropy", "kNN MI", "kBET rejection", "kNN silhouette", "m-kBET",
                      "Mean kNN silhouette", "UCA", "kNN purity") %in% colnames(res)))
    expect_equal(res$`kNN purity`, 1) # the references are the embedding itself
    seed_cols <- names(attr(res, "metric_type"))[attr(res, "metric_type") == "Other"]
    expect_true(all(is.finite(unlist(res[1, seed_cols]))))
    expect_true(is.na(res$Total)) # no scIB metric selected: nothing to aggregate
    expect_error(integrationMetrics(kang$pca, b, kang$sce$cell_type, metrics = "kNN purity"), "`reference`")
    expect_error(integrationMetrics(kang$pca, b, kang$sce$cell_type, metrics = "seed",
                                    reference = reference[1]), "`reference`")
})

test_that("SingleCellExperiment and Seurat inputs take embedding names and metadata columns", {
    sce <- kang$sce
    SingleCellExperiment::reducedDim(sce, "PCA") <- kang$pca
    SingleCellExperiment::reducedDim(sce, "PCA5") <- kang$pca[, 1:5]
    res <- integrationMetrics(sce, "batch", "cell_type", unintegrated = "PCA", metrics = c("iLISI", "PCR comparison"))
    expect_equal(rownames(res), c("PCA", "PCA5"))
    expect_equal(res["PCA", "PCR comparison"], 0)
    only <- integrationMetrics(sce, "batch", "cell_type", dimred = "PCA5", metrics = "iLISI")
    expect_equal(only$iLISI, res["PCA5", "iLISI"])
    expect_error(integrationMetrics(sce, "batch", "cell_type", dimred = "UMAP"), "`dimred`")
    expect_error(integrationMetrics(sce, "nope", "cell_type"), "`batch`")

    skip_if_not_installed("SeuratObject")
    counts <- SingleCellExperiment::counts(sce)
    so <- SeuratObject::CreateSeuratObject(counts, meta.data = as.data.frame(SummarizedExperiment::colData(sce)))
    pca <- kang$pca
    colnames(pca) <- paste0("PC_", seq_len(ncol(pca)))
    so[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = pca, key = "PC_", assay = "RNA")
    res_seurat <- integrationMetrics(so, "batch", "cell_type", dimred = "pca", unintegrated = "pca",
                                     metrics = c("iLISI", "PCR comparison"))
    expect_equal(res_seurat$iLISI, res["PCA", "iLISI"])
    expect_error(integrationMetrics(so, "batch", "cell_type", dimred = "harmony"), "`dimred`")
})

test_that("bad input gets a clear error naming the argument, or NA with a reason", {
    pca <- kang$pca
    b <- kang$sce$batch
    l <- kang$sce$cell_type
    l_na <- l
    l_na[3] <- NA
    expect_error(integrationMetrics(pca, b, l_na), "`label` contains NA")
    expect_error(integrationMetrics(pca, rep("x", nrow(pca)), l), "`batch` has 1 level")
    expect_error(integrationMetrics(pca, b, rep("t", nrow(pca))), "`label` has 1 level")
    expect_error(integrationMetrics(pca, b[-1], l), "`batch` has length")
    expect_error(integrationMetrics(pca, b, l, unintegrated = pca[-1, ]), "`unintegrated` has")
    expect_error(integrationMetrics(list(a = pca, b = pca[-1, ]), b, l), "embeddings differ")
    expect_error(integrationMetrics(list(pca, pca), b, l), "unique names")
    bad <- pca
    bad[1, 1] <- NA
    expect_error(integrationMetrics(bad, b, l, unintegrated = pca), "NA or infinite")
    few <- seq(1, nrow(pca), length.out = 60)
    expect_error(suppressWarnings(integrationMetrics(pca[few, ], b[few], l[few], unintegrated = pca[few, ])), "need more than")
    expect_error(integrationMetrics(pca, b, l, metrics = "bogus"), "`metrics`")
    expect_error(integrationMetrics(pca, b, l, dimred = "PCA"), "`dimred`")
    expect_error(integrationMetrics(pca, b, l, local_condition = "nope", metrics = "kNN silhouette"), "`local_condition`")
    # One cell of its own label: a warning, and the metrics are still computed.
    l_one <- as.character(l)
    l_one[1] <- "lonely"
    expect_warning(res <- integrationMetrics(pca, b, l_one, unintegrated = pca), "single cell")
    expect_false(anyNA(res$`Silhouette label`))
    # Where scib-metrics gives NaN: NA with a warning saying why (label = batch: no label has
    # two batches, so BRAS and kBET are undefined).
    expect_warning(expect_warning(
        res <- integrationMetrics(pca, b, b, metrics = c("BRAS", "KBET", "iLISI")),
        "BRAS"), "KBET")
    expect_true(is.na(res$BRAS))
    expect_true(is.na(res$KBET))
    expect_false(is.na(res$`Batch correction`)) # averages what is there
    expect_warning(integrationMetrics(pca, b, l, metrics = "PCR comparison"), "needs `unintegrated`")
})

test_that("plotMetrics draws a results table", {
    res <- integrationMetrics(list(PCA = kang$pca, PCA5 = kang$pca[, 1:5]), kang$sce$batch,
                              kang$sce$cell_type, unintegrated = kang$pca)
    p <- plotMetrics(res)
    expect_s3_class(p, "ggplot")
    built <- ggplot2::ggplot_build(p)
    expect_equal(nrow(built$data[[1]]), 2 * (ncol(res) - 1))
    expect_error(plotMetrics(data.frame(a = 1)), "`results`")
})

test_that("weightedAccuracy averages per-class accuracies", {
    expect_equal(weightedAccuracy(c("T", "T", "B", "B", "NK"), c("T", "B", "B", "B", "NK")),
                 (1 + 2 / 3 + 1) / 3)
    expect_equal(weightedAccuracy(c("x", "y"), c("a", "b")), 0)
    expect_error(weightedAccuracy(c("a"), c("a", "b")), "`predicted`")
    expect_error(weightedAccuracy(c("a", NA), c("a", "b")), "`predicted`")
})
