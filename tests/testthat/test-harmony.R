test_that("Harmony mixes the Kang batches and keeps cell types apart", {
    d <- classic_data()
    z <- calculateHarmony(d$pcs, d$batch)
    expect_equal(dim(z), dim(d$pcs))
    expect_equal(dimnames(z), dimnames(d$pcs))
    before <- neighbour_share(d$pcs, d$batch)
    after <- neighbour_share(z, d$batch)
    expect_lt(before, 0.1)
    expect_gt(after, 0.3)
    expect_gt(neighbour_share(z, d$label, same = TRUE), 0.97 * neighbour_share(d$pcs, d$label, same = TRUE))
    expect_type(attr(z, "objective"), "double")
    expect_equal(length(attr(z, "objective")), length(attr(z, "iterations")) + 1L)
    expect_equal(attr(z, "nclust"), round(nrow(z) / 30))
})

test_that("a strong global shift between fully separated batches is corrected", {
    s <- shifted_batches()
    expect_equal(neighbour_share(s$x, s$batch), 0)
    z <- calculateHarmony(s$x, s$batch)
    expect_gt(neighbour_share(z, s$batch), 0.35)
    expect_gt(neighbour_share(z, s$label, same = TRUE), 0.97)
    expect_gt(length(attr(z, "iterations")), 1L)
})

test_that("Harmony is deterministic for a seed and ignores cell order", {
    s <- shifted_batches(n = 400, shift = 6, seed = 2)
    a <- calculateHarmony(s$x, s$batch, seed = 3)
    expect_identical(a, calculateHarmony(s$x, s$batch, seed = 3))
    expect_false(isTRUE(all.equal(a, calculateHarmony(s$x, s$batch, seed = 4))))
    perm <- sample(nrow(s$x))
    b <- calculateHarmony(s$x[perm, ], s$batch[perm], seed = 3)
    expect_equal(unclass(b)[order(perm), ], unclass(a)[, ], ignore_attr = TRUE, tolerance = 1e-8)
})

test_that("several batch variables and per-variable parameters are accepted", {
    s <- shifted_batches(n = 400, shift = 6, seed = 5)
    donor <- rep(c("d1", "d2", "d3"), length.out = 400)
    z <- calculateHarmony(s$x, data.frame(batch = s$batch, donor = donor), theta = c(2, 1), lambda = c(1, 2))
    expect_gt(neighbour_share(z, s$batch), 0.3)
    expect_error(calculateHarmony(s$x, list(s$batch, donor), theta = c(1, 2, 3)), "`theta`")
})

test_that("Harmony rejects bad input with messages naming the argument", {
    s <- shifted_batches(n = 200, shift = 4, seed = 6)
    x <- s$x
    b <- s$batch
    expect_error(calculateHarmony(x, rep("only", 200)), "`batch` has a single level")
    expect_error(calculateHarmony(x, list(b, rep("d", 200))), "`batch\\[\\[2\\]\\]` has a single level")
    expect_error(calculateHarmony("x", b), "`x` must be a numeric matrix")
    x_na <- x
    x_na[1, 1] <- NA
    expect_error(calculateHarmony(x_na, b), "`x` contains NA")
    x_zero <- x
    x_zero[5, ] <- 0
    expect_error(calculateHarmony(x_zero, b), "`x`.*all coordinates zero")
    expect_error(calculateHarmony(x, b[-1]), "`batch` has length 199")
    expect_error(calculateHarmony(x, replace(b, 3, NA)), "`batch` contains NA")
    expect_error(calculateHarmony(x, b, theta = -1), "`theta`")
    expect_error(calculateHarmony(x, b, lambda = 0), "`lambda`")
    expect_error(calculateHarmony(x, b, sigma = 0), "`sigma`")
    expect_error(calculateHarmony(x, b, nclust = 500), "`nclust`")
    expect_error(calculateHarmony(x, b, block_size = 0), "`block_size`")
    expect_error(calculateHarmony(x, b, max_iter = 0), "`max_iter`")
    expect_error(calculateHarmony(x, b, max_iter_cluster = 1.5), "`max_iter_cluster`")
    expect_error(calculateHarmony(x, b, epsilon_harmony = NA), "`epsilon_harmony`")
    expect_error(calculateHarmony(x, b, seed = -1), "`seed`")
    expect_error(calculateHarmony(x, b, verbose = "yes"), "`verbose`")
})

test_that("runHarmony works on a SingleCellExperiment with scater's PCA", {
    skip_if_not_installed("scater")
    d <- classic_data()
    sce <- d$sce
    SingleCellExperiment::reducedDim(sce, "PCA") <- NULL
    expect_error(runHarmony(sce, "batch"), "`dimred` names no reducedDim.*scater::runPCA")
    sce <- scater::runPCA(sce, ncomponents = 15, exprs_values = "logcounts")
    sce <- runHarmony(sce, "batch", n_dimred = 10)
    z <- SingleCellExperiment::reducedDim(sce, "HARMONY")
    expect_equal(dim(z), c(ncol(sce), 10L))
    expect_equal(rownames(z), colnames(sce))
    expect_gt(neighbour_share(z, d$batch), 0.3)
    sce <- runHarmony(sce, sce$batch, name = "H2", seed = 1)
    expect_true("H2" %in% SingleCellExperiment::reducedDimNames(sce))
    expect_error(runHarmony(sce, "no_such_column"), "`batch` names no column")
    expect_error(runHarmony(d$pcs, "batch"), "`sce` must be a SingleCellExperiment")
    expect_error(runHarmony(sce, "batch", n_dimred = 99), "`n_dimred`")
    path <- tempfile(fileext = ".rds")
    saveRDS(sce, path)
    expect_equal(SingleCellExperiment::reducedDim(readRDS(path), "HARMONY"), z)
})

test_that("RunHarmony stores a DimReduc in a Seurat object", {
    skip_if_not_installed("SeuratObject")
    d <- classic_data()
    obj <- SeuratObject::CreateSeuratObject(SingleCellExperiment::counts(d$sce),
                                            meta.data = data.frame(batch = d$batch, donor = rep(c("x", "y"), 350),
                                                                   row.names = colnames(d$sce)))
    expect_error(RunHarmony(obj, "batch"), "`reduction.use` must name a reduction")
    pcs <- d$pcs
    colnames(pcs) <- paste0("PC_", seq_len(ncol(pcs)))
    obj[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = pcs, key = "PC_", assay = "RNA")
    obj <- RunHarmony(obj, "batch", dims.use = 1:15)
    red <- obj[["harmony"]]
    expect_s4_class(red, "DimReduc")
    expect_equal(SeuratObject::Key(red), "harmony_")
    expect_equal(SeuratObject::DefaultAssay(red), "RNA")
    z <- SeuratObject::Embeddings(red)
    expect_equal(dim(z), c(700L, 15L))
    expect_equal(colnames(z), paste0("harmony_", 1:15))
    expect_gt(neighbour_share(z, d$batch), 0.3)
    obj <- RunHarmony(obj, c("batch", "donor"), reduction.name = "h2", reduction.key = "h2_")
    expect_true("h2" %in% SeuratObject::Reductions(obj))
    expect_error(RunHarmony(obj, "nope"), "`group.by.vars` names no column")
    expect_error(RunHarmony(obj, "batch", dims.use = 0:3), "`dims.use`")
    expect_error(RunHarmony(d$sce, "batch"), "`object` must be a Seurat object")
})
