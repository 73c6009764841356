# scVI from R: shapes, determinism, save/load, expression, the Bioconductor and Seurat
# idioms, and every bad input.

sce <- kang_subsample(300)
x <- SingleCellExperiment::counts(sce)
b <- sce$batch

fit <- calculateSCVI(x, b, max_epochs = 3, verbose = FALSE, seed = 1)
model <- attr(fit, "model")

test_that("calculateSCVI returns a named latent matrix and a model", {
    expect_equal(dim(fit), c(ncol(x), 10L))
    expect_identical(rownames(fit), colnames(x))
    expect_identical(colnames(fit), paste0("scVI_", 1:10))
    expect_true(all(is.finite(fit)))
    expect_s3_class(model, "cellweave_scvi")
    expect_equal(nrow(model$history), 3L)
    expect_true(all(is.finite(model$history$validation_elbo)))
    expect_output(print(model), "2000 genes x 300 cells, 2 batches")
})

test_that("training lowers the loss", {
    z <- calculateSCVI(x, b, max_epochs = 15, verbose = FALSE, seed = 2)
    h <- attr(z, "model")$history
    expect_lt(h$train_reconstruction[15], h$train_reconstruction[1])
    expect_lt(h$validation_elbo[15], h$validation_elbo[1])
})

test_that("the same seed gives the same bits, another seed another result", {
    again <- calculateSCVI(x, b, max_epochs = 3, verbose = FALSE, seed = 1)
    expect_identical(unclass(again)[seq_along(fit)], unclass(fit)[seq_along(fit)])
    expect_identical(attr(again, "model")$weights, model$weights)
    other <- calculateSCVI(x, b, max_epochs = 3, verbose = FALSE, seed = 2)
    expect_false(isTRUE(all.equal(as.vector(other), as.vector(fit))))
})

test_that("a saved and reloaded model predicts the same bits", {
    path <- tempfile(fileext = ".rds")
    saveRDS(model, path)
    reloaded <- readRDS(path)
    z1 <- latent(model, x, b)
    expect_identical(latent(reloaded, x, b), z1)
    expect_equal(unname(z1), unname(fit[, ]), ignore_attr = TRUE)
    expect_identical(normalizedExpression(reloaded, x, b), normalizedExpression(model, x, b))
})

test_that("normalizedExpression scales frequencies and decodes other batches", {
    e <- normalizedExpression(model, x, b)
    expect_equal(dim(e), dim(x))
    expect_identical(dimnames(e), dimnames(x))
    expect_equal(unname(colSums(e)), rep(1, ncol(x)), tolerance = 1e-4)
    e4 <- normalizedExpression(model, x, b, library_size = 1e4)
    expect_equal(e4, e * 1e4, tolerance = 1e-5)
    counterfactual <- normalizedExpression(model, x, b, transform_batch = "stim",
                                           library_size = "observed")
    expect_equal(unname(colSums(counterfactual)), unname(Matrix::colSums(x)), tolerance = 1e-4)
    # Decoding every cell with the same batch differs from decoding with its own.
    expect_false(isTRUE(all.equal(normalizedExpression(model, x, b, transform_batch = "ctrl"), e)))
    # Averaging over both batches is the mean of the two decodings.
    both <- normalizedExpression(model, x, b, transform_batch = c("ctrl", "stim"))
    each <- (normalizedExpression(model, x, b, transform_batch = "ctrl") +
             normalizedExpression(model, x, b, transform_batch = "stim")) / 2
    expect_equal(both, each, tolerance = 1e-5)
})

test_that("normalizedExpression returns a subset of genes, the same values as the full matrix", {
    e <- normalizedExpression(model, x, b, transform_batch = "ctrl")
    genes <- rownames(x)[c(10, 3, 2000)]
    sub <- normalizedExpression(model, x, b, transform_batch = "ctrl", genes = genes)
    expect_identical(dimnames(sub), list(genes, colnames(x)))
    expect_identical(sub, e[genes, ])
    expect_identical(normalizedExpression(model, x, b, transform_batch = "ctrl", genes = c(10, 3, 2000)), sub)
    expect_error(normalizedExpression(model, x, b, genes = "not-a-gene"), "`genes` names genes the model was not trained on")
    expect_error(normalizedExpression(model, x, b, genes = 0), "`genes` must be gene names or indices in 1..2000")
})

test_that("a damaged saved model gives an R error, not a crash", {
    bad <- model
    bad$weights[13:16] <- as.raw(0xff) # tensor count 2^32 - 1
    expect_error(latent(bad, x, b), "claim 4294967295 tensors")
    bad <- model
    bad$arch$n_hidden <- 1e9
    expect_error(latent(bad, x, b), "architecture is damaged: `n_hidden`")
    bad <- model
    bad$arch$n_hidden <- 64
    expect_error(latent(bad, x, b), "does not match its weights")
    bad <- model
    bad$weights <- bad$weights[1:100]
    expect_error(latent(bad, x, b), "truncated|larger than the bytes|claim")
    bad <- model
    bad$weights[9:12] <- as.raw(c(1, 0, 0, 0)) # a model saved before weights by name
    expect_error(latent(bad, x, b), "older cellweave")
})

test_that("newdata genes are matched by name", {
    shuffled <- x[rev(rownames(x)), ]
    expect_equal(latent(model, shuffled, b), latent(model, x, b))
    expect_error(latent(model, x[-(1:5), ], b), "`newdata` lacks 5 of the model's 2000 genes")
    expect_error(latent(model, x, rep("other", ncol(x))), "`batch` has levels the model was not trained on: other")
    expect_error(latent(model, x), "`batch` is required")
})

test_that("bad input gives a clear error naming the argument", {
    bad <- x
    bad[1, 1] <- -1
    expect_error(calculateSCVI(bad, b), "`x` contains negative values")
    bad <- as.matrix(x[, 1:20])
    bad[2, 2] <- NA
    expect_error(calculateSCVI(bad, b[1:20]), "`x` contains NA")
    frac <- x
    frac[1, 2] <- 0.5
    expect_error(calculateSCVI(frac, b), "`x` contains non-integer values")
    expect_warning(calculateSCVI(frac[, 1:20], b[1:20], max_epochs = 1, verbose = FALSE,
                                 allow_non_integer = TRUE), "non-integer")
    empty <- x
    empty[, 3] <- 0
    expect_error(calculateSCVI(Matrix::drop0(empty), b), "`x` has 1 cell\\(s\\) with zero total counts")
    expect_error(calculateSCVI(x, b[-1]), "`batch` has length 299 but there are 300 cells")
    nab <- as.character(b)
    nab[4] <- NA
    expect_error(calculateSCVI(x, nab), "`batch` contains NA")
    expect_error(calculateSCVI(x, b, n_latent = 0), "`n_latent` must be >= 1")
    expect_error(calculateSCVI(x, b, max_epochs = 0), "`max_epochs` must be >= 1")
    expect_error(calculateSCVI(x, b, gene_likelihood = "poisson"), "`gene_likelihood` must be one of")
    expect_error(calculateSCVI(x, b, device = "tpu"), "`device` must be one of")
    expect_error(calculateSCVI(x, b, device = "cuda", verbose = FALSE), "device `cuda` is not available")
    expect_error(calculateSCVI(x, b, lr = -1), "`lr` must be >")
    expect_error(calculateSCVI("counts", b), "`x` must be a genes x cells count matrix")
})

test_that("a diverging run stops with a message naming the epoch", {
    expect_error(calculateSCVI(x, b, lr = 1e8, max_epochs = 20, verbose = FALSE),
                 "non-finite loss at epoch 1")
})

test_that("early stopping ends training when the validation ELBO stalls", {
    z <- calculateSCVI(x, b, early_stopping = TRUE, early_stopping_patience = 3,
                       max_epochs = 200, verbose = FALSE)
    h <- attr(z, "model")$history
    expect_lt(nrow(h), 200)
    best <- which.min(h$validation_elbo)
    expect_equal(nrow(h), best + 3)
    expect_error(calculateSCVI(x, b, early_stopping = TRUE, train_size = 1), "`early_stopping` needs a validation set")
})

test_that("the NB likelihood and a latent library size train too", {
    z <- calculateSCVI(x, b, max_epochs = 2, gene_likelihood = "nb", use_observed_lib_size = FALSE,
                       encode_covariates = TRUE, n_layers = 2, verbose = FALSE)
    m <- attr(z, "model")
    expect_true(all(is.finite(z)))
    expect_true(m$arch$latent_library)
    expect_identical(latent(m, x, b), latent(readRDS({p <- tempfile(); saveRDS(m, p); p}), x, b))
    expect_output(print(m), "NB likelihood, latent library size")
})

test_that("runSCVI stores a reducedDim and the model (SingleCellExperiment)", {
    out <- runSCVI(sce, batch = "batch", max_epochs = 2, verbose = FALSE, name = "SCVI")
    z <- SingleCellExperiment::reducedDim(out, "SCVI")
    expect_equal(dim(z), c(ncol(sce), 10L))
    expect_identical(rownames(z), colnames(sce))
    expect_s3_class(S4Vectors::metadata(out)$SCVI, "cellweave_scvi")
    expect_equal(latent(S4Vectors::metadata(out)$SCVI, out, batch = "batch"), z)
    sub <- runSCVI(sce, batch = "batch", subset.row = 1:500, max_epochs = 1, verbose = FALSE)
    expect_equal(S4Vectors::metadata(sub)$SCVI$arch$n_genes, 500L)
    expect_error(runSCVI(sce, batch = "nope"), "`batch` names no column")
    expect_error(runSCVI(sce, assay.type = "logcounts"), "`assay.type` names no assay")
    expect_error(runSCVI(x), "`sce` must be a SingleCellExperiment")
})

test_that("RunSCVI stores a DimReduc with the model (Seurat)", {
    skip_if_not_installed("SeuratObject")
    so <- SeuratObject::CreateSeuratObject(counts = x, meta.data = as.data.frame(SummarizedExperiment::colData(sce)))
    so <- RunSCVI(so, group.by.vars = "batch", max_epochs = 2, verbose = FALSE)
    red <- so[["scvi"]]
    expect_s4_class(red, "DimReduc")
    expect_identical(SeuratObject::Key(red), "scVI_")
    emb <- SeuratObject::Embeddings(red)
    expect_equal(dim(emb), c(ncol(x), 10L))
    expect_identical(rownames(emb), colnames(x))
    expect_s3_class(SeuratObject::Misc(red, "model"), "cellweave_scvi")
    expect_error(RunSCVI(so, group.by.vars = "nope"), "`group.by.vars` names no column")
})

test_that("Ctrl-C stops training cleanly and the session stays usable", {
    skip_on_os("windows")
    # A SIGINT from another process while training runs (what Ctrl-C sends).
    system(sprintf("sleep 2 && kill -INT %d", Sys.getpid()), wait = FALSE)
    expect_error(calculateSCVI(x, b, max_epochs = 5000, verbose = FALSE), "interrupted by the user")
    z <- calculateSCVI(x[, 1:50], b[1:50], max_epochs = 1, verbose = FALSE)
    expect_equal(dim(z), c(50L, 10L))
})
