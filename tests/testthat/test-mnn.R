test_that("fastMNN mixes the Kang batches and keeps cell types apart", {
    d <- classic_data()
    z <- calculateFastMNN(d$logexp, d$batch, d = 20)
    expect_equal(dim(z), c(700L, 20L))
    expect_equal(rownames(z), colnames(d$logexp))
    expect_lt(neighbour_share(d$pcs, d$batch), 0.1)
    expect_gt(neighbour_share(z, d$batch), 0.25)
    expect_gt(neighbour_share(z, d$label, same = TRUE), 0.97 * neighbour_share(d$pcs, d$label, same = TRUE))
    info <- attr(z, "merge.info")
    expect_equal(info$left, "ctrl")
    expect_equal(info$right, "stim")
    expect_gt(info$pairs, 100)
    expect_equal(dim(attr(z, "rotation")), c(nrow(d$logexp), 20L))
    expect_equal(rownames(attr(z, "rotation")), rownames(d$logexp))
    expect_equal(colnames(attr(z, "lost.var")), c("ctrl", "stim"))
    # A dense matrix and a gene subset give the same kind of result.
    genes <- rownames(d$logexp)[1:300]
    z2 <- calculateFastMNN(as.matrix(d$logexp), d$batch, d = 10, subset.row = genes)
    expect_equal(rownames(attr(z2, "rotation")), genes)
})

test_that("a strong global shift is corrected, whatever the cell order", {
    s <- shifted_batches()
    z <- calculateFastMNN(s$x, s$batch, pc.input = TRUE)
    expect_equal(colnames(z), colnames(s$x))
    expect_gt(neighbour_share(z, s$batch), 0.25)
    expect_gt(neighbour_share(z, s$label, same = TRUE), 0.97)
    perm <- sample(nrow(s$x))
    zp <- calculateFastMNN(s$x[perm, ], s$batch[perm], pc.input = TRUE)
    expect_equal(unclass(zp)[order(perm), ], unclass(z)[, ], ignore_attr = TRUE, tolerance = 1e-8)
})

test_that("merge order can be given or chosen automatically", {
    s <- shifted_batches(n = 900, shift = 8, seed = 3)
    # Batches a1 and a2 have no shift between them: auto.merge joins them first.
    b <- ifelse(s$batch == "b", "b", ifelse(seq_along(s$batch) %% 3 == 0, "a2", "a1"))
    auto <- attr(calculateFastMNN(s$x, b, pc.input = TRUE, auto.merge = TRUE), "merge.info")
    expect_setequal(c(auto$left[1], auto$right[1]), c("a1", "a2"))
    given <- attr(calculateFastMNN(s$x, b, pc.input = TRUE, merge.order = c("b", "a1", "a2")), "merge.info")
    expect_equal(given$left, c("b", "b,a1"))
    expect_equal(given$right, c("a1", "a2"))
    expect_equal(attr(calculateFastMNN(s$x, b, pc.input = TRUE, merge.order = c(3, 1, 2)), "merge.info"), given)
})

test_that("fastMNN rejects bad input with messages naming the argument", {
    d <- classic_data()
    x <- d$logexp
    b <- d$batch
    expect_error(calculateFastMNN(x, rep("one", ncol(x))), "`batch` has a single level")
    expect_error(calculateFastMNN("x", b), "`x` must be a genes x cells matrix")
    x_na <- x
    x_na[1, 1] <- NA
    expect_error(calculateFastMNN(x_na, b), "`x` contains NA")
    expect_error(calculateFastMNN(x, b[-1]), "`batch` has length")
    expect_error(calculateFastMNN(x, b, k = 0), "`k`")
    expect_error(calculateFastMNN(x, b, d = 5000), "`d`")
    expect_error(calculateFastMNN(x, b, ndist = -1), "`ndist`")
    expect_error(calculateFastMNN(x, b, subset.row = "NOT_A_GENE"), "`subset.row`")
    expect_error(calculateFastMNN(x, b, merge.order = c("ctrl", "ctrl")), "`merge.order`")
    expect_error(calculateFastMNN(x, b, auto.merge = NA), "`auto.merge`")
    expect_error(calculateFastMNN(x, list(b, b)), "`batch` must be one batch variable")
    empty <- x
    empty[, 7] <- 0
    expect_error(calculateFastMNN(Matrix::drop0(empty), b), "`x`.*only zeros")
    expect_error(calculateFastMNN(d$pcs, b, pc.input = "yes"), "`pc.input`")
})

test_that("runFastMNN works on a SingleCellExperiment, from expression or a reduced dimension", {
    d <- classic_data()
    sce <- runFastMNN(d$sce, "batch", d = 15)
    z <- SingleCellExperiment::reducedDim(sce, "MNN")
    expect_equal(dim(z), c(ncol(sce), 15L))
    expect_equal(rownames(z), colnames(sce))
    sce <- runFastMNN(sce, sce$batch, dimred = "PCA", name = "MNN_PCA")
    expect_equal(dim(SingleCellExperiment::reducedDim(sce, "MNN_PCA")), dim(d$pcs))
    no_log <- d$sce
    SummarizedExperiment::assay(no_log, "logcounts") <- NULL
    expect_error(runFastMNN(no_log, "batch"), "`assay.type` names no assay.*logNormCounts")
    expect_error(runFastMNN(sce, "batch", dimred = "TSNE"), "`dimred` names no reducedDim")
    expect_error(runFastMNN(sce, "nope"), "`batch` names no column")
    expect_error(runFastMNN(d$logexp, "batch"), "`sce` must be a SingleCellExperiment")
})
