# The conditional VAE, its penalties, counterfactual expression and scores, and de-novo MINE
# from R: shapes, determinism, save/load, the penalties' effect, the idioms and bad input.

sce <- kang_subsample(400)
x <- SingleCellExperiment::counts(sce)
cond <- sce$batch
small <- list(n_hidden = 32, n_layers = 1, n_latent = 6, batch_size = 128, verbose = FALSE)
cvae <- function(...) do.call(calculateCVAE, c(list(x, cond), utils::modifyList(small, list(...))))

fit <- cvae(penalty = "comp", max_epochs = 3, seed = 1)
model <- attr(fit, "model")

test_that("calculateCVAE returns a named latent and a CVAE model with its penalty", {
    expect_equal(dim(fit), c(ncol(x), 6L))
    expect_identical(rownames(fit), colnames(x))
    expect_identical(colnames(fit), paste0("CVAE_", 1:6))
    expect_true(all(is.finite(fit)))
    expect_s3_class(model, "cellweave_cvae")
    expect_s3_class(model, "cellweave_scvi")
    expect_true(model$arch$encode_covariates)
    expect_equal(model$arch$posterior_sd, 0.1)
    expect_true(all(is.finite(model$history$train_comp)))
    expect_output(print(model), "Conditional VAE")
    expect_output(print(model), "penalty:   comp, weight 1 \\(final value")
    expect_output(print(model), "KL weight 0.001")
})

test_that("every penalty trains and records its term; scVI takes them too", {
    for (p in c("mmd", "trvae", "mine", "hsic")) {
        m <- attr(cvae(penalty = p, max_epochs = 2), "model")
        term <- switch(p, trvae = "train_mmd_decoder", paste0("train_", p))
        expect_true(term %in% names(m$history), info = p)
        expect_true(all(is.finite(m$history[[term]])), info = p)
    }
    s <- attr(calculateSCVI(x, cond, max_epochs = 2, penalty = "hsic", penalty_weight = 10,
                            verbose = FALSE), "model")
    expect_true(all(is.finite(s$history$train_hsic)))
    expect_output(print(s), "penalty:   hsic, weight 10")
    expect_null(attr(calculateSCVI(x, cond, max_epochs = 1, verbose = FALSE), "model")$train$penalty)
})

test_that("a weighted penalty lowers the dependence it measures", {
    free <- attr(cvae(penalty = "comp", penalty_weight = 0, max_epochs = 12, seed = 3), "model")
    held <- attr(cvae(penalty = "comp", penalty_weight = 20, max_epochs = 12, seed = 3), "model")
    n <- nrow(free$history)
    expect_lt(held$history$train_comp[n], free$history$train_comp[n])
    free <- attr(cvae(penalty = "mmd", penalty_weight = 0, max_epochs = 12, seed = 3), "model")
    held <- attr(cvae(penalty = "mmd", penalty_weight = 200, max_epochs = 12, seed = 3), "model")
    expect_lt(held$history$train_mmd[n], free$history$train_mmd[n])
})

test_that("the Gaussian likelihood on log-normalised expression trains, decodes and reloads", {
    g <- attr(cvae(gene_likelihood = "gaussian", penalty = "comp", max_epochs = 6, seed = 2), "model")
    expect_equal(g$arch$gene_likelihood, "gaussian")
    expect_lt(g$history$train_reconstruction[6], g$history$train_reconstruction[1])
    expect_output(print(g), "GAUSSIAN likelihood")
    e <- counterfactual(g, x[, 1:20], cond[1:20], to = "stim")
    expect_equal(unname(colSums(e)), rep(1, 20), tolerance = 1e-4)
    path <- tempfile(fileext = ".rds")
    saveRDS(g, path)
    expect_identical(latent(readRDS(path), x, cond), latent(g, x, cond))
})

test_that("CoMP counts the cell in its own mixture unless asked not to, which bounds the penalty", {
    left_out <- attr(cvae(penalty = "comp", max_epochs = 2, seed = 4,
                          penalty_options = list(include_self = FALSE)), "model")
    counted <- attr(cvae(penalty = "comp", max_epochs = 2, seed = 4), "model")
    expect_false(left_out$train$penalty$include_self)
    expect_false(identical(counted$weights, left_out$weights))
    # With the cell counted, its own mixture holds q(z_i | x_i): the log-ratio stays above
    # about -log(cells of its condition in a minibatch) - d / 2 (here about -7).
    expect_true(all(counted$history$train_comp > -log(128) - 6 / 2 - 3))
    expect_error(cvae(penalty = "comp", penalty_options = list(include_self = NA)),
                 "`penalty_options\\$include_self` must be TRUE or FALSE")
})

test_that("the same seed gives the same bits, and a saved model predicts the same bits", {
    again <- cvae(penalty = "comp", max_epochs = 3, seed = 1)
    expect_identical(attr(again, "model")$weights, model$weights)
    path <- tempfile(fileext = ".rds")
    saveRDS(model, path)
    reloaded <- readRDS(path)
    expect_identical(latent(reloaded, x, cond), latent(model, x, cond))
    expect_identical(unname(latent(model, x, cond)), unname(unclass(fit)[seq_along(fit)]) |>
                         matrix(nrow = nrow(fit)))
})

test_that("counterfactual decodes with the target condition, for the CVAE and scVI alike", {
    ctrl <- which(cond == "ctrl")
    e <- counterfactual(model, x[, ctrl], cond[ctrl], to = "stim", library_size = 1e4)
    expect_equal(dim(e), c(nrow(x), length(ctrl)))
    expect_equal(unname(colSums(e)), rep(1e4, length(ctrl)), tolerance = 1e-3)
    expect_identical(e, normalizedExpression(model, x[, ctrl], cond[ctrl], transform_batch = "stim",
                                             library_size = 1e4))
    own <- counterfactual(model, x[, ctrl], cond[ctrl], to = "ctrl", library_size = 1e4)
    expect_gt(max(abs(own - e)), 1e-3)
    s <- attr(calculateSCVI(x, cond, max_epochs = 2, verbose = FALSE), "model")
    expect_equal(dim(counterfactual(s, x[, ctrl], cond[ctrl], "stim", genes = 1:5)), c(5L, length(ctrl)))
    expect_error(counterfactual(model, x[, ctrl], cond[ctrl], to = "IFN"), "`to` must be one of the model's conditions \\(ctrl, stim\\)")
    expect_error(counterfactual(list(), x, cond, to = "stim"), "`model` must be a model")
})

test_that("counterfactualScores scores each cell type with enough cells in both conditions", {
    s <- counterfactualScores(model, sce, "batch", "cell_type", from = "ctrl", to = "stim",
                              n_top = 20, min_cells = 15)
    counts <- table(sce$cell_type, sce$batch)
    kept <- rownames(counts)[counts[, "ctrl"] >= 15 & counts[, "stim"] >= 15]
    expect_setequal(s$cell_type, kept)
    expect_identical(s$n_from, as.integer(counts[s$cell_type, "ctrl"]))
    expect_identical(s$n_to, as.integer(counts[s$cell_type, "stim"]))
    expect_true(all(s$r2_top >= 0 & s$r2_top <= 1 & s$mae_top >= 0 & s$mae_all >= 0))
    expect_true(all(s$n_up >= 0 & s$n_up <= 20))
    # The top genes change the most, so their errors are the larger ones.
    expect_true(all(s$mae_top >= s$mae_all))
    expect_error(counterfactualScores(model, sce, "batch", "cell_type", "ctrl", "ctrl"), "`to` must differ")
    expect_error(counterfactualScores(model, sce, "batch", "cell_type", "ctrl", "IFN"), "`to` must be one of")
    expect_error(counterfactualScores(model, sce, "batch", "nope", "ctrl", "stim"), "`cell_type` names no column")
})

test_that("mineEstimate finds the dependence that is there and none where there is none", {
    set.seed(1)
    z <- matrix(rnorm(1600), 800, 2)
    group <- rep(c("a", "b"), 400)
    apart <- z
    apart[group == "b", 1] <- apart[group == "b", 1] + 4
    dependent <- mineEstimate(apart, group, epochs = 30, lr = 1e-3, n_layers = 2, n_hidden = 32)
    independent <- mineEstimate(z, group, epochs = 30, lr = 1e-3, n_layers = 2, n_hidden = 32)
    expect_named(dependent, c("heldout", "train"))
    expect_gt(dependent[["heldout"]], 0.4)
    expect_lt(dependent[["heldout"]], log(2) + 0.05)
    expect_lt(abs(independent[["heldout"]]), 0.1)
    expect_length(attr(dependent, "history"), 30L)
    expect_error(mineEstimate(z, rep("a", 800)), "`condition` has 1 level")
    expect_error(mineEstimate(z, group[-1]), "`condition` has length 799")
    expect_error(mineEstimate(z, group, train_size = 1), "`train_size` must be < 1")
})

test_that("runCVAE and RunCVAE store the latent and the model", {
    out <- runCVAE(sce, "batch", penalty = "mmd", n_hidden = 32, n_layers = 1, n_latent = 6,
                   batch_size = 128, max_epochs = 1, verbose = FALSE)
    expect_equal(dim(SingleCellExperiment::reducedDim(out, "CVAE")), c(ncol(sce), 6L))
    expect_s3_class(S4Vectors::metadata(out)$CVAE, "cellweave_cvae")
    skip_if_not_installed("SeuratObject")
    so <- SeuratObject::CreateSeuratObject(counts = x, meta.data = as.data.frame(SummarizedExperiment::colData(sce)))
    so <- RunCVAE(so, "batch", n_hidden = 32, n_layers = 1, n_latent = 6, batch_size = 128,
                  max_epochs = 1, verbose = FALSE)
    red <- so[["cvae"]]
    expect_identical(SeuratObject::Key(red), "CVAE_")
    expect_s3_class(SeuratObject::Misc(red, "model"), "cellweave_cvae")
})

test_that("bad input gets a clear error naming the argument", {
    expect_error(calculateCVAE(x, rep("ctrl", ncol(x)), verbose = FALSE), "`condition` has 1 level")
    expect_error(cvae(penalty = "wasserstein"), "`penalty` must be one of")
    expect_error(cvae(penalty = "comp", batch_size = 3), "`batch_size` must hold 2 cells of each")
    expect_error(cvae(penalty = "comp", penalty_weight = -1), "`penalty_weight` must be >= 0")
    expect_error(cvae(penalty = "mmd", penalty_options = list(mine_lr = 1)),
                 "`penalty_options` has settings a \"mmd\" penalty does not take \\(mine_lr\\)")
    expect_error(cvae(penalty = "mmd", penalty_options = list(bandwidths = c(1, -2))),
                 "bandwidths must be positive")
    expect_error(cvae(penalty = "mine", penalty_options = list(mine_steps = 0)), "`penalty_options\\$mine_steps` must be >= 1")
    expect_error(cvae(posterior_sd = 0), "`posterior_sd` must be > 0")
    expect_error(cvae(kl_weight = -1), "`kl_weight` must be >= 0")
    expect_error(calculateSCVI(x, NULL, penalty = "hsic", verbose = FALSE), "`batch` has 1 level")
    damaged <- model
    damaged$arch$posterior_sd <- -1
    expect_error(latent(damaged, x, cond), "posterior_sd")
})
